//! `GET /v1/webhook-endpoints/{id}/attempts` and
//! `POST /v1/webhook-endpoints/{id}/attempts/{attempt_id}/retry`: every request made to an
//! endpoint (time, event, status code, latency, error; never the secret or the receiver's
//! body), and sending an attempt's event again.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, ApiErrors, NotFoundError, Problem};
use super::webhook_endpoints::load;
use crate::domain::FieldError;
use crate::store::webhook_deliveries::{self as store, AttemptRow};

pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(retry))
}

/// One request to an endpoint.
#[derive(Serialize, ToSchema)]
pub struct Attempt {
    pub id: Uuid,
    /// The delivery (one event to this endpoint) the attempt belongs to.
    pub delivery_id: Uuid,
    /// The `webhook-id` header sent.
    pub webhook_id: String,
    /// `message.sent`, `message.delivered`, …
    pub event_type: String,
    pub message_id: Uuid,
    /// 1 for the first try of the delivery, 2 for the first retry, …
    pub attempt: i32,
    pub attempted_at: DateTime<Utc>,
    /// The receiver's HTTP status; `null` when no answer came (timeout, refused connection).
    pub status_code: Option<i32>,
    pub latency_ms: i32,
    pub succeeded: bool,
    pub error: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct AttemptPage {
    pub items: Vec<Attempt>,
    /// Pass as `cursor` for the next page; `null` on the last.
    pub next_cursor: Option<String>,
}

/// `202` of a retry.
#[derive(Serialize, ToSchema)]
pub struct RetryQueued {
    /// The new delivery of the same event (same `webhook-id`).
    pub delivery_id: Uuid,
}

impl From<&AttemptRow> for Attempt {
    fn from(r: &AttemptRow) -> Attempt {
        Attempt {
            id: r.id,
            delivery_id: r.delivery_id,
            webhook_id: format!("msg_{}", r.event_id.simple()),
            event_type: r.event_type.clone(),
            message_id: r.message_id,
            attempt: r.attempt,
            attempted_at: r.attempted_at,
            status_code: r.status_code,
            latency_ms: r.latency_ms,
            succeeded: r.succeeded,
            error: r.error.clone(),
        }
    }
}

fn encode_cursor(row: &AttemptRow) -> String {
    super::query::encode_time_cursor(row.attempted_at, row.id)
}

#[utoipa::path(
    get,
    path = "/v1/webhook-endpoints/{id}/attempts",
    operation_id = "list_webhook_attempts",
    tag = "webhook-endpoints",
    summary = "Every request made to the endpoint, newest first",
    params(
        ("id" = Uuid, Path, description = "The endpoint's id"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
        ("limit" = Option<i64>, Query, description = "1 to 200, default 50"),
    ),
    responses(
        (status = 200, description = "A page of attempts", body = AttemptPage),
        ApiErrors,
        NotFoundError,
    )
)]
pub async fn list(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let endpoint = load(&state, &caller, &id).await?;
    let mut errors = Vec::new();
    let before = match query
        .get("cursor")
        .map(|c| super::query::decode_time_cursor(c))
    {
        None => None,
        Some(Some(c)) => Some(c),
        Some(None) => {
            errors.push(FieldError::new("cursor", "is not a cursor from this API"));
            None
        }
    };
    let limit = match query.get("limit").map(|v| v.parse::<i64>()) {
        None => 50,
        Some(Ok(n)) if (1..=200).contains(&n) => n,
        Some(_) => {
            errors.push(FieldError::new("limit", "must be 1 to 200"));
            50
        }
    };
    if !errors.is_empty() {
        let mut e = ApiError::validation(errors);
        e.status = StatusCode::BAD_REQUEST;
        return Err(e);
    }
    let rows = store::list_attempts(
        &state.pool,
        &endpoint.tenant_id,
        endpoint.id,
        before,
        limit + 1,
    )
    .await
    .map_err(|e| ApiError::database("list webhook attempts", e))?;
    let has_more = rows.len() as i64 > limit;
    let page: Vec<&AttemptRow> = rows.iter().take(limit as usize).collect();
    let next_cursor = has_more
        .then(|| page.last().map(|r| encode_cursor(r)))
        .flatten();
    Ok(axum::Json(AttemptPage {
        items: page.into_iter().map(Attempt::from).collect(),
        next_cursor,
    })
    .into_response())
}

#[utoipa::path(
    post,
    path = "/v1/webhook-endpoints/{id}/attempts/{attempt_id}/retry",
    operation_id = "retry_webhook_attempt",
    tag = "webhook-endpoints",
    summary = "Send an attempt's event to the endpoint again (a new delivery, same webhook-id)",
    params(
        ("id" = Uuid, Path, description = "The endpoint's id"),
        ("attempt_id" = Uuid, Path, description = "One of its attempts"),
    ),
    responses(
        (status = 202, description = "Queued", body = RetryQueued),
        ApiErrors,
        (status = 404, description = "No such endpoint or attempt for this tenant", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The endpoint is disabled; enable it first", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn retry(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path((id, attempt_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let endpoint = load(&state, &caller, &id).await?;
    if !endpoint.enabled {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "endpoint_disabled",
            "the endpoint is disabled; enable it (PATCH {\"enabled\": true}) first",
        ));
    }
    let attempt_id =
        Uuid::parse_str(&attempt_id).map_err(|_| ApiError::not_found("webhook attempt"))?;
    let delivery_id =
        store::redeliver_attempt(&state.pool, &endpoint.tenant_id, endpoint.id, attempt_id)
            .await
            .map_err(|e| ApiError::database("redeliver webhook attempt", e))?
            .ok_or_else(|| ApiError::not_found("webhook attempt"))?;
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(RetryQueued { delivery_id }),
    )
        .into_response())
}
