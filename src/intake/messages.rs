//! `GET /v1/messages/{id}` and `GET /v1/messages`: a tenant's messages and their events.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use uuid::Uuid;

use super::AppState;
use super::auth::Caller;
use super::error::ApiError;
use super::idempotency;
use crate::domain::{Channel, FieldError, MessageStatus};
use crate::store::messages::{self as store, MessageFilter, MessageRow};

fn view(row: &MessageRow) -> Value {
    json!({
        "id": row.id,
        "status": row.status,
        "channel": row.channel,
        "to": row.recipient,
        "provider_id": row.provider_id,
        "provider_kind": row.provider_kind,
        "provider_message_id": row.provider_message_id,
        "attempts": row.attempts,
        "last_error": row.last_error,
        "idempotency_key": row.idempotency_key,
        "metadata": row.metadata,
        "ttl_seconds": row.ttl_seconds,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
        "sent_at": row.sent_at,
        "completed_at": row.completed_at,
    })
}

#[utoipa::path(
    get,
    path = "/v1/messages/{id}",
    tag = "messages",
    summary = "A message with its events",
    params(("id" = Uuid, Path, description = "The resource id")),
    responses(
        (status = 200, description = "The message (`queued` while only accepted)", body = super::openapi::MessageView),
        (status = 401, description = "Missing or invalid credentials", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 403, description = "The credentials may not do this", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 400, description = "Invalid X-Tenant-Id", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such resource for this tenant", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 500, description = "Unexpected failure (details only in the service's log)", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 503, description = "A dependency is down; retry later (Retry-After)", body = super::openapi::Problem, content_type = "application/problem+json")
    )
)]
pub async fn get(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let tenant = caller.tenant()?;
    let id = Uuid::parse_str(&id).map_err(|_| ApiError::not_found("message"))?;
    let row = store::get_message(&state.pool, tenant.as_str(), id)
        .await
        .map_err(|e| ApiError::database("get message", e))?;
    if let Some(row) = row {
        let events = store::list_events(&state.pool, id)
            .await
            .map_err(|e| ApiError::database("list events", e))?;
        let mut body = view(&row);
        body["events"] = events
            .iter()
            .map(|e| {
                json!({
                    "type": e.kind,
                    "provider_id": e.provider_id,
                    "detail": e.detail,
                    "at": e.created_at,
                })
            })
            .collect();
        return Ok(axum::Json(body).into_response());
    }
    // Accepted but not yet recorded by a worker (a backlog): the intake's marker says so.
    let marker = idempotency::marker_key(&state.namespace, tenant.as_str(), id);
    let found = match state.redis.get().await {
        Ok(mut conn) => idempotency::get_marker(&mut conn, &marker)
            .await
            .ok()
            .flatten(),
        Err(_) => None,
    };
    let Some(found) = found else {
        return Err(ApiError::not_found("message"));
    };
    let marker: Value = serde_json::from_str(&found).unwrap_or(Value::Null);
    Ok(axum::Json(json!({
        "id": id,
        "status": MessageStatus::Queued,
        "channel": marker.get("channel"),
        "to": marker.get("to"),
        "provider_id": null,
        "provider_message_id": null,
        "attempts": 0,
        "last_error": null,
        "created_at": marker.get("created_at"),
        "events": [],
    }))
    .into_response())
}

fn encode_cursor(row: &MessageRow) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!(
        "{}|{}",
        row.created_at.to_rfc3339(),
        row.id
    ))
}

fn decode_cursor(s: &str) -> Option<(DateTime<Utc>, Uuid)> {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (at, id) = text.split_once('|')?;
    Some((
        DateTime::parse_from_rfc3339(at).ok()?.with_timezone(&Utc),
        Uuid::parse_str(id).ok()?,
    ))
}

#[utoipa::path(
    get,
    path = "/v1/messages",
    tag = "messages",
    summary = "List messages, newest first",
    params(
        ("status" = Option<String>, Query, description = "Only this status"),
        ("channel" = Option<String>, Query, description = "email or sms"),
        ("since" = Option<String>, Query, description = "RFC 3339, inclusive"),
        ("until" = Option<String>, Query, description = "RFC 3339, exclusive"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
        ("limit" = Option<i64>, Query, description = "1 to 200, default 50"),
    ),
    responses(
        (status = 200, description = "A page of messages", body = super::openapi::MessagePage),
        (status = 400, description = "Invalid filter (see `errors`)", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid credentials", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 403, description = "The credentials may not do this", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 500, description = "Unexpected failure (details only in the service's log)", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 503, description = "A dependency is down; retry later (Retry-After)", body = super::openapi::Problem, content_type = "application/problem+json")
    )
)]
pub async fn list(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let tenant = caller.tenant()?;
    let mut errors = Vec::new();
    let mut filter = MessageFilter::default();
    for (k, v) in &query {
        match k.as_str() {
            "status" => match MessageStatus::parse(v) {
                Some(s) => filter.status = Some(s.as_str().to_owned()),
                None => errors.push(FieldError::new("status", "is not a message status")),
            },
            "channel" => match Channel::parse(v) {
                Some(c) => filter.channel = Some(c.as_str().to_owned()),
                None => errors.push(FieldError::new("channel", "must be email or sms")),
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
        e.status = axum::http::StatusCode::BAD_REQUEST;
        return Err(e);
    }
    let rows = store::list_messages(&state.pool, tenant.as_str(), &filter, limit + 1)
        .await
        .map_err(|e| ApiError::database("list messages", e))?;
    let has_more = rows.len() as i64 > limit;
    let page: Vec<&MessageRow> = rows.iter().take(limit as usize).collect();
    let next_cursor = if has_more {
        page.last().map(|r| encode_cursor(r))
    } else {
        None
    };
    Ok(axum::Json(json!({
        "items": page.iter().map(|r| view(r)).collect::<Vec<_>>(),
        "next_cursor": next_cursor,
    }))
    .into_response())
}
