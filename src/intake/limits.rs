//! `GET|PUT|DELETE /v1/limits` and `GET /v1/usage`: the operator's per-tenant limits and the
//! tenant's usage (see `crate::limits`). A tenant reads its own; only the service token (with
//! `X-Tenant-Id`) sets or clears them. Also [`refuse`], the 429 of a send over a limit.
//!
//! A change takes effect at once on the replica that served it and within
//! `COMMUNICATION_LIMITS_CACHE_MS` (5 s by default) on the others.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{Days, NaiveDate, Utc};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::auth::{Caller, OperatorFor};
use super::error::{ApiError, ApiErrors, BodyErrors};
use super::json::{FieldProblem, JsonBody, RequestFields};
use super::query::{QueryParams, invalid};
use crate::domain::FieldError;
use crate::limits::usage::{self, UsageView};
use crate::limits::{self, LIMIT_RANGE, LimitsUpdate, LimitsView, Refusal};

/// The routes of this module, for `intake::documented_routes`.
pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(get_limits, put_limits, delete_limits))
        .routes(routes!(get_usage))
}

impl RequestFields for LimitsUpdate {
    fn field_error(problem: &FieldProblem) -> FieldError {
        match problem.path.as_str() {
            "accept_rate_per_second" | "daily_quota.email" | "daily_quota.sms" => {
                FieldError::new(problem.path.clone(), LIMIT_RANGE)
            }
            _ => problem.generic(),
        }
    }
}

#[utoipa::path(
    get,
    path = "/v1/limits",
    operation_id = "get_limits",
    tag = "limits",
    summary = "The tenant's limits set by the operator",
    description = "A tenant API key reads its own tenant's; the service token names the tenant \
                   in `X-Tenant-Id`. `null` is unlimited.",
    responses(
        (status = 200, description = "The limits", body = LimitsView),
        ApiErrors,
    )
)]
pub async fn get_limits(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Json<LimitsView>, ApiError> {
    let tenant = caller.tenant()?;
    limits::show(&state.pool, tenant)
        .await
        .map(Json)
        .map_err(|e| ApiError::database("read tenant limits", e))
}

#[utoipa::path(
    put,
    path = "/v1/limits",
    operation_id = "put_limits",
    tag = "limits",
    summary = "Set the tenant's limits (service token only)",
    description = "Replaces the tenant's whole set of limits: a field left out or `null` is \
                   unlimited. Each limit is an integer from 1 to 10000000. Takes effect within \
                   `COMMUNICATION_LIMITS_CACHE_MS` on every intake replica.",
    request_body = LimitsUpdate,
    responses(
        (status = 200, description = "The limits now", body = LimitsView),
        ApiErrors,
        BodyErrors,
    )
)]
pub async fn put_limits(
    State(state): State<Arc<AppState>>,
    OperatorFor(tenant): OperatorFor,
    JsonBody(body): JsonBody<LimitsUpdate>,
) -> Result<Json<LimitsView>, ApiError> {
    let wanted = body.validate().map_err(ApiError::validation)?;
    let view = limits::replace(&state.pool, &tenant, wanted)
        .await
        .map_err(|e| ApiError::database("set tenant limits", e))?;
    state.limits.cache().invalidate(tenant.as_str()).await;
    tracing::info!(tenant = tenant.as_str(), "tenant limits set");
    Ok(Json(view))
}

#[utoipa::path(
    delete,
    path = "/v1/limits",
    operation_id = "delete_limits",
    tag = "limits",
    summary = "Remove every limit of the tenant (service token only)",
    responses(
        (status = 204, description = "The tenant is unlimited"),
        ApiErrors,
    )
)]
pub async fn delete_limits(
    State(state): State<Arc<AppState>>,
    OperatorFor(tenant): OperatorFor,
) -> Result<Response, ApiError> {
    limits::clear(&state.pool, &tenant)
        .await
        .map_err(|e| ApiError::database("clear tenant limits", e))?;
    state.limits.cache().invalidate(tenant.as_str()).await;
    tracing::info!(tenant = tenant.as_str(), "tenant limits cleared");
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Query of `GET /v1/usage`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageQuery {
    date: Option<String>,
}

impl RequestFields for UsageQuery {}

const DATE_RANGE: &str = "must be today or yesterday (UTC) as YYYY-MM-DD; older usage is not kept";

#[utoipa::path(
    get,
    path = "/v1/usage",
    operation_id = "get_usage",
    tag = "limits",
    summary = "The tenant's sends of one UTC day per channel, beside its daily quotas",
    description = "Counts every send accepted over HTTP (202, replays excluded), for every \
                   tenant. Kept for today and yesterday.",
    params(
        ("date" = Option<String>, Query, description = "`YYYY-MM-DD` (UTC): today (default) or yesterday"),
    ),
    responses(
        (status = 200, description = "The day's usage", body = UsageView),
        ApiErrors,
    )
)]
pub async fn get_usage(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    QueryParams(query): QueryParams<UsageQuery>,
) -> Result<Json<UsageView>, ApiError> {
    let tenant = caller.tenant()?;
    let today = Utc::now().date_naive();
    let day = match query.date.as_deref() {
        None => today,
        Some(d) => NaiveDate::parse_from_str(d, "%Y-%m-%d")
            .ok()
            .filter(|d| *d == today || Some(*d) == today.checked_sub_days(Days::new(1)))
            .ok_or_else(|| invalid(vec![FieldError::new("date", DATE_RANGE)]))?,
    };
    let current = limits::show(&state.pool, tenant)
        .await
        .map_err(|e| ApiError::database("read tenant limits", e))?
        .limits();
    let mut conn = state.redis.get().await.map_err(|e| {
        tracing::warn!(error = %e, "Redis unavailable for usage");
        ApiError::unavailable("Redis")
    })?;
    usage::read(
        &mut conn,
        state.limits.namespace(),
        tenant.as_str(),
        day,
        current,
    )
    .await
    .map(Json)
    .map_err(|e| {
        tracing::warn!(error = %e, "usage read failed");
        ApiError::unavailable("Redis")
    })
}

/// The answer to a send over a limit (its script wrote nothing: no claim to release, nothing
/// counted): counts it and builds the 429.
pub fn refuse(refusal: Refusal) -> ApiError {
    metrics::counter!("communication_intake_refused_total", "reason" => refusal.code())
        .increment(1);
    let detail = match refusal {
        Refusal::RateLimited { .. } => {
            "the tenant's accept rate is reached; retry after Retry-After seconds".to_owned()
        }
        Refusal::QuotaExceeded { channel, quota, .. } => format!(
            "the tenant's daily {channel} quota of {quota} is spent; it resets at 00:00 UTC"
        ),
    };
    ApiError::too_many(refusal.code(), detail, refusal.retry_after_secs())
}
