//! `GET /v1/dead-letters`, `POST /v1/dead-letters/{id}/replay` and
//! `POST /v1/dead-letters/replay` (bulk): the operator's view of `{ns}.dead`. Service token
//! only (a tenant API key gets 403); with `X-Tenant-Id` everything is scoped to that tenant.
//! Dead letters are listed without their content: the body can hold a one-time code.

use std::sync::Arc;

use axum::Json;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, ApiErrors, BodyErrors, Problem};
use super::json::{FieldProblem, JsonBody, ProblemKind, RequestFields};
use super::query::{self, QueryParams};
use crate::dlq::{self, ReplayOutcome};
use crate::domain::{FieldError, TenantId};
use crate::store::dead_letters::{self as store, DeadLetterFilter, DeadLetterRow};

/// Most dead letters one bulk replay handles.
const MAX_BULK: usize = 500;

/// An operator (the service token) and the tenant it acts for (`X-Tenant-Id`), or `None` for
/// all tenants. Tenant API keys are refused (dead letters are an operator tool), before the
/// query or body is read.
pub struct Operator {
    scope: Option<TenantId>,
}

impl FromRequestParts<Arc<AppState>> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        match Caller::from_request_parts(parts, state).await? {
            Caller::Service { tenant } => Ok(Operator { scope: tenant }),
            Caller::Tenant(_) => Err(ApiError::forbidden(
                "dead letters are managed with the service token",
            )),
        }
    }
}

/// A dead letter as operators see it: never the message content.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeadLetterView {
    pub id: i64,
    pub created_at: DateTime<Utc>,
    pub tenant_id: Option<String>,
    pub message_id: Option<Uuid>,
    /// `failed` (every provider spent) or `invalid` (the envelope failed validation).
    pub kind: String,
    pub channel: Option<String>,
    /// The routing key it was delivered with: `{channel}.{lane}` (e.g. `sms.high`) for the
    /// lane it died in. A replay goes to the channel's entry queue, whatever the lane.
    pub routing_key: Option<String>,
    pub reason: String,
    pub replayable: bool,
    pub replayed: bool,
    pub replayed_at: Option<DateTime<Utc>>,
    pub replayed_by: Option<String>,
}

impl From<DeadLetterRow> for DeadLetterView {
    fn from(row: DeadLetterRow) -> DeadLetterView {
        DeadLetterView {
            id: row.id,
            created_at: row.created_at,
            tenant_id: row.tenant_id,
            message_id: row.message_id,
            kind: row.kind,
            channel: row.channel,
            routing_key: row.routing_key,
            reason: row.reason,
            replayable: row.replayable,
            replayed: row.replayed_at.is_some(),
            replayed_at: row.replayed_at,
            replayed_by: row.replayed_by,
        }
    }
}

/// A page of `GET /v1/dead-letters`.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeadLetterPage {
    pub items: Vec<DeadLetterView>,
    pub next_cursor: Option<String>,
}

/// Where a page ends: the last dead letter's id, opaque to callers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeadLetterCursor(i64);

impl DeadLetterCursor {
    fn encode(self) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("dl|{}", self.0))
    }

    fn decode(s: &str) -> Option<DeadLetterCursor> {
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s)
            .ok()?;
        String::from_utf8(raw)
            .ok()?
            .strip_prefix("dl|")?
            .parse()
            .ok()
            .map(DeadLetterCursor)
    }
}

impl<'de> Deserialize<'de> for DeadLetterCursor {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = std::borrow::Cow::<str>::deserialize(d)?;
        DeadLetterCursor::decode(&s).ok_or_else(|| serde::de::Error::custom("not a cursor"))
    }
}

/// The filters of `GET /v1/dead-letters`; an unknown one is refused.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeadLetterQuery {
    /// Only this tenant's.
    #[param(value_type = Option<String>)]
    pub tenant: Option<TenantId>,
    /// RFC 3339, inclusive.
    pub since: Option<DateTime<Utc>>,
    /// RFC 3339, exclusive.
    pub until: Option<DateTime<Utc>>,
    /// true or false.
    pub replayed: Option<bool>,
    /// `next_cursor` of the previous page.
    #[param(value_type = Option<String>)]
    pub cursor: Option<DeadLetterCursor>,
    /// 1 to 200, default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
}

impl RequestFields for DeadLetterQuery {
    fn field_error(problem: &FieldProblem) -> FieldError {
        let message = match problem.field() {
            "tenant" => return problem.generic(),
            "since" | "until" => "must be an RFC 3339 time",
            "replayed" => "must be true or false",
            "cursor" => "is not a cursor from this API",
            "limit" => "must be 1 to 200",
            _ => return problem.generic(),
        };
        FieldError::new(problem.field(), message)
    }
}

impl DeadLetterQuery {
    /// The store's filter within the operator's scope, and the page size.
    fn into_filter(self, scope: Option<&TenantId>) -> Result<(DeadLetterFilter, i64), ApiError> {
        let mut errors = Vec::new();
        let limit = self.limit.unwrap_or(50);
        if !(1..=200).contains(&limit) {
            errors.push(FieldError::new("limit", "must be 1 to 200"));
        }
        let tenant = match (self.tenant, scope) {
            (Some(t), Some(s)) if t != *s => {
                errors.push(FieldError::new("tenant", "differs from X-Tenant-Id"));
                None
            }
            (t, s) => t.or_else(|| s.cloned()),
        };
        if !errors.is_empty() {
            return Err(query::invalid(errors));
        }
        let filter = DeadLetterFilter {
            tenant: tenant.map(|t| t.as_str().to_owned()),
            since: self.since,
            until: self.until,
            replayed: self.replayed,
            before: self.cursor.map(|c| c.0),
        };
        Ok((filter, limit))
    }
}

#[utoipa::path(
    get,
    path = "/v1/dead-letters",
    operation_id = "list_dead_letters",
    tag = "dead-letters",
    summary = "List dead letters, newest first (operators)",
    params(DeadLetterQuery),
    responses(
        (status = 200, description = "A page of dead letters (never their content)", body = DeadLetterPage),
        ApiErrors,
        (status = 403, description = "Only the service token (operators) may do this", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list(
    State(state): State<Arc<AppState>>,
    operator: Operator,
    QueryParams(query): QueryParams<DeadLetterQuery>,
) -> Result<Json<DeadLetterPage>, ApiError> {
    let (filter, limit) = query.into_filter(operator.scope.as_ref())?;
    let mut rows = store::list_dead_letters(&state.pool, &filter, limit + 1)
        .await
        .map_err(|e| ApiError::database("list dead letters", e))?;
    let has_more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next_cursor = if has_more {
        rows.last().map(|r| DeadLetterCursor(r.id).encode())
    } else {
        None
    };
    Ok(Json(DeadLetterPage {
        items: rows.into_iter().map(DeadLetterView::from).collect(),
        next_cursor,
    }))
}

/// The outcome of re-driving one dead letter.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReplayResult {
    pub dead_letter_id: i64,
    /// `replayed`, `already_replayed`, `message_not_failed`, `replay_in_progress`,
    /// `not_replayable`, `not_found` or `publish_failed`.
    pub outcome: &'static str,
    pub detail: String,
    /// Only when replayed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<Uuid>,
    /// `queued`, only when replayed.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub status: Option<&'static str>,
}

impl ReplayResult {
    fn of(id: i64, outcome: &ReplayOutcome) -> ReplayResult {
        let message_id = match outcome {
            ReplayOutcome::Replayed { message_id, .. } => Some(*message_id),
            _ => None,
        };
        ReplayResult {
            dead_letter_id: id,
            outcome: outcome.code(),
            detail: match outcome {
                // The broker's error text stays in the log.
                ReplayOutcome::PublishFailed { .. } => {
                    "the message broker did not take it; nothing changed, try again".to_owned()
                }
                other => other.describe(),
            },
            message_id,
            status: message_id.map(|_| "queued"),
        }
    }
}

/// Replays one dead letter: 202 when its message is queued again.
#[utoipa::path(
    post,
    path = "/v1/dead-letters/{id}/replay",
    operation_id = "replay_dead_letter",
    tag = "dead-letters",
    summary = "Re-drive one dead letter (operators)",
    params(("id" = i64, Path, description = "The dead letter id")),
    responses(
        (status = 202, description = "Its message is queued again", body = ReplayResult),
        ApiErrors,
        (status = 403, description = "Only the service token (operators) may do this", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such dead letter (in this tenant)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "already_replayed, message_not_failed or replay_in_progress", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "not_replayable: an invalid envelope, or no stored body", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn replay(
    State(state): State<Arc<AppState>>,
    operator: Operator,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let scope = operator.scope.as_ref();
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
            let body = Json(ReplayResult::of(id, &outcome));
            return Ok((StatusCode::ACCEPTED, body).into_response());
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

/// Body of `POST /v1/dead-letters/replay`: `ids`, or `all: true`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayManyRequest {
    /// Dead letter ids, at most 500.
    pub ids: Option<Vec<i64>>,
    /// Every dead letter not replayed yet, oldest first, up to 500 per call.
    pub all: Option<bool>,
}

impl RequestFields for ReplayManyRequest {
    fn field_error(problem: &FieldProblem) -> FieldError {
        match problem.field() {
            "all" => FieldError::new("all", "must be a boolean"),
            "ids"
                if problem.path == "ids"
                    && matches!(problem.kind, ProblemKind::WrongType { .. }) =>
            {
                FieldError::new("ids", "must be an array of dead letter ids")
            }
            "ids" => FieldError::new("ids", "must be dead letter ids (integers)"),
            _ => problem.generic(),
        }
    }
}

/// Answer of `POST /v1/dead-letters/replay`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReplayManyResult {
    pub replayed: usize,
    pub not_replayed: usize,
    pub results: Vec<ReplayResult>,
}

/// Replays several: `{"ids": [1, 2]}` or `{"all": true}` (the oldest not yet replayed, up to
/// 500 per call). Answers 200 with one result per dead letter.
#[utoipa::path(
    post,
    path = "/v1/dead-letters/replay",
    operation_id = "replay_dead_letters",
    tag = "dead-letters",
    summary = "Re-drive several dead letters (operators)",
    request_body = ReplayManyRequest,
    responses(
        (status = 200, description = "One result per dead letter", body = ReplayManyResult),
        ApiErrors,
        BodyErrors,
        (status = 403, description = "Only the service token (operators) may do this", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn replay_many(
    State(state): State<Arc<AppState>>,
    operator: Operator,
    JsonBody(body): JsonBody<ReplayManyRequest>,
) -> Result<Json<ReplayManyResult>, ApiError> {
    let scope = operator.scope.map(|t| t.as_str().to_owned());
    let all = body.all.unwrap_or(false);
    let ids = body.ids.unwrap_or_default();
    if ids.len() > MAX_BULK {
        return Err(ApiError::validation(vec![FieldError::new(
            "ids",
            "holds at most 500 ids",
        )]));
    }
    // Exactly one of the two: ids and no `all`, or `all` and no ids.
    if all != ids.is_empty() {
        return Err(ApiError::validation(vec![FieldError::new(
            "",
            "give either ids or all: true",
        )]));
    }
    let ids = if all {
        store::pending_replay_ids(&state.pool, scope.as_deref(), MAX_BULK as i64)
            .await
            .map_err(|e| ApiError::database("list dead letters", e))?
    } else {
        ids
    };
    let mut results = Vec::with_capacity(ids.len());
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
        results.push(ReplayResult::of(id, &outcome));
    }
    let replayed = results.iter().filter(|r| r.message_id.is_some()).count();
    Ok(Json(ReplayManyResult {
        replayed,
        not_replayed: results.len() - replayed,
        results,
    }))
}

#[cfg(test)]
mod tests;
