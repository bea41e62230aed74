//! `GET /v1/dead-letters`, `POST /v1/dead-letters/{id}/replay` and
//! `POST /v1/dead-letters/replay` (bulk): the operator's view of `{ns}.dead`. Service token
//! only (a tenant API key gets 403); with `X-Tenant-Id` everything is scoped to that tenant.
//! Dead letters are listed without their content: the body can hold a one-time code.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::AppState;
use super::auth::Caller;
use super::error::ApiError;
use super::json::JsonObject;
use crate::dlq::{self, ReplayOutcome};
use crate::domain::{FieldError, TenantId};
use crate::store::dead_letters::{self as store, DeadLetterFilter, DeadLetterRow};

/// Most dead letters one bulk replay handles.
const MAX_BULK: usize = 500;

/// The tenant the operator acts for (`X-Tenant-Id`), or `None` for all tenants. Tenant API
/// keys are refused: dead letters are an operator tool.
fn operator_scope(caller: &Caller) -> Result<Option<&TenantId>, ApiError> {
    match caller {
        Caller::Service { tenant } => Ok(tenant.as_ref()),
        Caller::Tenant(_) => Err(ApiError::forbidden(
            "dead letters are managed with the service token",
        )),
    }
}

fn view(row: &DeadLetterRow) -> Value {
    json!({
        "id": row.id,
        "created_at": row.created_at,
        "tenant_id": row.tenant_id,
        "message_id": row.message_id,
        "kind": row.kind,
        "channel": row.channel,
        "routing_key": row.routing_key,
        "reason": row.reason,
        "replayable": row.replayable,
        "replayed": row.replayed_at.is_some(),
        "replayed_at": row.replayed_at,
        "replayed_by": row.replayed_by,
    })
}

fn encode_cursor(id: i64) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("dl|{id}"))
}

fn decode_cursor(s: &str) -> Option<i64> {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .ok()?;
    String::from_utf8(raw)
        .ok()?
        .strip_prefix("dl|")?
        .parse()
        .ok()
}

#[utoipa::path(
    get,
    path = "/v1/dead-letters",
    tag = "dead-letters",
    summary = "List dead letters, newest first (operators)",
    params(
        ("tenant" = Option<String>, Query, description = "Only this tenant's"),
        ("since" = Option<String>, Query, description = "RFC 3339, inclusive"),
        ("until" = Option<String>, Query, description = "RFC 3339, exclusive"),
        ("replayed" = Option<bool>, Query, description = "true or false"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
        ("limit" = Option<i64>, Query, description = "1 to 200, default 50"),
    ),
    responses(
        (status = 200, description = "A page of dead letters (never their content)", body = super::openapi::DeadLetterPage),
        (status = 400, description = "Invalid filter (see `errors`)", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid credentials", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Only the service token (operators) may do this", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 500, description = "Unexpected failure (details only in the service's log)", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 503, description = "A dependency is down; retry later (Retry-After)", body = super::openapi::Problem, content_type = "application/problem+json")
    )
)]
pub async fn list(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let scope = operator_scope(&caller)?;
    let mut errors = Vec::new();
    let mut filter = DeadLetterFilter {
        tenant: scope.map(|t| t.as_str().to_owned()),
        ..Default::default()
    };
    for (k, v) in &query {
        match k.as_str() {
            "tenant" => match TenantId::parse(v) {
                Ok(t) if scope.is_some_and(|s| s.as_str() != t.as_str()) => {
                    errors.push(FieldError::new("tenant", "differs from X-Tenant-Id"))
                }
                Ok(t) => filter.tenant = Some(t.as_str().to_owned()),
                Err(m) => errors.push(FieldError::new("tenant", m)),
            },
            "since" | "until" => match DateTime::parse_from_rfc3339(v) {
                Ok(t) => {
                    let t = t.with_timezone(&Utc);
                    if k == "since" {
                        filter.since = Some(t);
                    } else {
                        filter.until = Some(t);
                    }
                }
                Err(_) => errors.push(FieldError::new(k.clone(), "must be an RFC 3339 time")),
            },
            "replayed" => match v.as_str() {
                "true" => filter.replayed = Some(true),
                "false" => filter.replayed = Some(false),
                _ => errors.push(FieldError::new("replayed", "must be true or false")),
            },
            "cursor" => match decode_cursor(v) {
                Some(c) => filter.before = Some(c),
                None => errors.push(FieldError::new("cursor", "is not a cursor from this API")),
            },
            "limit" => {}
            other => errors.push(FieldError::new(other, "is not a known filter")),
        }
    }
    let limit = match query.get("limit") {
        None => 50,
        Some(v) => match v.parse::<i64>() {
            Ok(n) if (1..=200).contains(&n) => n,
            _ => {
                errors.push(FieldError::new("limit", "must be 1 to 200"));
                50
            }
        },
    };
    if !errors.is_empty() {
        let mut e = ApiError::validation(errors);
        e.status = StatusCode::BAD_REQUEST;
        return Err(e);
    }
    let rows = store::list_dead_letters(&state.pool, &filter, limit + 1)
        .await
        .map_err(|e| ApiError::database("list dead letters", e))?;
    let has_more = rows.len() as i64 > limit;
    let page = &rows[..rows.len().min(limit as usize)];
    let next_cursor = if has_more {
        page.last().map(|r| encode_cursor(r.id))
    } else {
        None
    };
    Ok(axum::Json(json!({
        "items": page.iter().map(view).collect::<Vec<_>>(),
        "next_cursor": next_cursor,
    }))
    .into_response())
}

fn outcome_view(id: i64, outcome: &ReplayOutcome) -> Value {
    let mut v = json!({
        "dead_letter_id": id,
        "outcome": outcome.code(),
        "detail": match outcome {
            // The broker's error text stays in the log.
            ReplayOutcome::PublishFailed { .. } => {
                "the message broker did not take it; nothing changed, try again".to_owned()
            }
            other => other.describe(),
        },
    });
    if let ReplayOutcome::Replayed { message_id, .. } = outcome {
        v["message_id"] = json!(message_id);
        v["status"] = json!("queued");
    }
    v
}

/// Replays one dead letter: 202 when its message is queued again.
#[utoipa::path(
    post,
    path = "/v1/dead-letters/{id}/replay",
    tag = "dead-letters",
    summary = "Re-drive one dead letter (operators)",
    params(("id" = i64, Path, description = "The dead letter id")),
    responses(
        (status = 202, description = "Its message is queued again", body = super::openapi::ReplayResult),
        (status = 404, description = "No such dead letter (in this tenant)", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 409, description = "already_replayed, message_not_failed or replay_in_progress", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 422, description = "not_replayable: an invalid envelope, or no stored body", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid credentials", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Only the service token (operators) may do this", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 500, description = "Unexpected failure (details only in the service's log)", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 503, description = "A dependency is down; retry later (Retry-After)", body = super::openapi::Problem, content_type = "application/problem+json")
    )
)]
pub async fn replay(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let scope = operator_scope(&caller)?;
    let id: i64 = id.parse().map_err(|_| ApiError::not_found("dead letter"))?;
    let outcome = dlq::replay(
        &state.pool,
        &state.keyring,
        &state.publisher,
        id,
        scope.map(|t| t.as_str()),
        "api",
    )
    .await
    .map_err(|e| ApiError::database("replay dead letter", e))?;
    let status = match &outcome {
        ReplayOutcome::Replayed { .. } => {
            return Ok(
                (StatusCode::ACCEPTED, axum::Json(outcome_view(id, &outcome))).into_response(),
            );
        }
        ReplayOutcome::NotFound => return Err(ApiError::not_found("dead letter")),
        // The broker's error text stays in the log.
        ReplayOutcome::PublishFailed { .. } => {
            return Err(ApiError::unavailable("the message broker"));
        }
        ReplayOutcome::NotReplayable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        ReplayOutcome::AlreadyReplayed { .. }
        | ReplayOutcome::InProgress
        | ReplayOutcome::NotFailed { .. } => StatusCode::CONFLICT,
    };
    Err(ApiError::new(status, outcome.code(), outcome.describe()))
}

/// Replays several: `{"ids": [1, 2]}` or `{"all": true}` (the oldest not yet replayed, up to
/// 500 per call). Answers 200 with one result per dead letter.
#[utoipa::path(
    post,
    path = "/v1/dead-letters/replay",
    tag = "dead-letters",
    summary = "Re-drive several dead letters (operators)",
    request_body = super::openapi::ReplayManyRequest,
    responses(
        (status = 200, description = "One result per dead letter", body = super::openapi::ReplayManyResult),
        (status = 400, description = "Malformed JSON", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not application/json", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields (see `errors`)", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid credentials", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Only the service token (operators) may do this", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 500, description = "Unexpected failure (details only in the service's log)", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 503, description = "A dependency is down; retry later (Retry-After)", body = super::openapi::Problem, content_type = "application/problem+json")
    )
)]
pub async fn replay_many(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    let scope = operator_scope(&caller)?.map(|t| t.as_str().to_owned());
    let mut errors = Vec::new();
    for k in body.keys() {
        if k != "ids" && k != "all" {
            errors.push(FieldError::new(k.clone(), "is not a known field"));
        }
    }
    let all = match body.get("all") {
        None | Some(Value::Bool(false)) => false,
        Some(Value::Bool(true)) => true,
        Some(_) => {
            errors.push(FieldError::new("all", "must be a boolean"));
            false
        }
    };
    let ids: Vec<i64> = match body.get("ids") {
        None => Vec::new(),
        Some(Value::Array(a)) => {
            let parsed: Option<Vec<i64>> = a.iter().map(Value::as_i64).collect();
            match parsed {
                Some(ids) if ids.len() <= MAX_BULK => ids,
                Some(_) => {
                    errors.push(FieldError::new("ids", "holds at most 500 ids"));
                    Vec::new()
                }
                None => {
                    errors.push(FieldError::new("ids", "must be dead letter ids (integers)"));
                    Vec::new()
                }
            }
        }
        Some(_) => {
            errors.push(FieldError::new(
                "ids",
                "must be an array of dead letter ids",
            ));
            Vec::new()
        }
    };
    // Exactly one of the two: ids and no `all`, or `all` and no ids.
    if errors.is_empty() && all != ids.is_empty() {
        errors.push(FieldError::new("", "give either ids or all: true"));
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let ids = if all {
        store::pending_replay_ids(&state.pool, scope.as_deref(), MAX_BULK as i64)
            .await
            .map_err(|e| ApiError::database("list dead letters", e))?
    } else {
        ids
    };
    let mut results = Vec::with_capacity(ids.len());
    let mut replayed = 0;
    for id in ids {
        let outcome = dlq::replay(
            &state.pool,
            &state.keyring,
            &state.publisher,
            id,
            scope.as_deref(),
            "api",
        )
        .await
        .map_err(|e| ApiError::database("replay dead letter", e))?;
        if outcome.is_replayed() {
            replayed += 1;
        }
        results.push(outcome_view(id, &outcome));
    }
    Ok(axum::Json(json!({
        "replayed": replayed,
        "not_replayed": results.len() - replayed,
        "results": results,
    }))
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_foreign_ones_are_refused() {
        assert_eq!(decode_cursor(&encode_cursor(42)), Some(42));
        assert_eq!(decode_cursor("not-a-cursor"), None);
        // A /v1/messages cursor is not a dead-letter cursor.
        let foreign = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode("2026-11-25T10:00:00+00:00|01a2");
        assert_eq!(decode_cursor(&foreign), None);
    }

    #[test]
    fn a_failed_publish_is_reported_without_the_brokers_error_text() {
        let v = outcome_view(
            7,
            &ReplayOutcome::PublishFailed {
                reason: "RabbitMQ is unreachable: connection refused (os error 111)".into(),
            },
        );
        assert_eq!(v["outcome"], "publish_failed");
        assert!(!v["detail"].as_str().unwrap_or("").contains("os error"));
    }
}
