//! `GET|PUT|DELETE /v1/retention`: how many days a tenant's messages are kept before the
//! worker removes them (`crate::retention`). Reading is open to the tenant (API key) and the
//! service token with `X-Tenant-Id`; changing it is the operator's (service token only: a
//! tenant API key gets 403).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::auth::{Caller, OperatorFor};
use super::error::{ApiError, ApiErrors, BodyErrors, Problem};
use super::json::{FieldProblem, JsonBody, RequestFields};
use crate::config::RETENTION_DAYS;
use crate::domain::{FieldError, TenantId};
use crate::retention::store;

/// The routes of this module, for `intake::documented_routes`.
pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(get, put, delete))
}

/// A tenant's retention.
#[derive(Debug, Serialize, ToSchema)]
pub struct Retention {
    pub tenant_id: String,
    /// Messages accepted more than this many days ago are removed with their events.
    #[schema(example = 30)]
    pub days: u32,
    /// `true` when no override is set and `COMMUNICATION_RETENTION_DAYS` applies.
    pub default: bool,
    /// When the override was last set (absent for the default).
    pub updated_at: Option<DateTime<Utc>>,
}

/// Body of `PUT /v1/retention`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetentionUpdate {
    /// 1 to 3650.
    #[schema(example = 90, minimum = 1, maximum = 3650)]
    pub days: i64,
}

const DAYS_RANGE: &str = "must be an integer from 1 to 3650";

impl RequestFields for RetentionUpdate {
    fn field_error(problem: &FieldProblem) -> FieldError {
        if problem.field() == "days" && !matches!(problem.kind, super::json::ProblemKind::Missing) {
            FieldError::new("days", DAYS_RANGE)
        } else {
            problem.generic()
        }
    }
}

/// Only the service token may change a retention.
async fn current(state: &AppState, tenant: &TenantId) -> Result<Retention, ApiError> {
    let row = store::get_override(&state.pool, tenant.as_str())
        .await
        .map_err(|e| ApiError::database("read retention", e))?;
    Ok(match row {
        Some(r) => Retention {
            tenant_id: r.tenant_id,
            days: r.days.max(1) as u32,
            default: false,
            updated_at: Some(r.updated_at),
        },
        None => Retention {
            tenant_id: tenant.as_str().to_owned(),
            days: state.retention_days,
            default: true,
            updated_at: None,
        },
    })
}

#[utoipa::path(
    get,
    path = "/v1/retention",
    operation_id = "get_retention",
    tag = "retention",
    summary = "How many days the tenant's messages are kept",
    responses(
        (status = 200, description = "The tenant's retention", body = Retention),
        ApiErrors,
    )
)]
pub async fn get(State(state): State<Arc<AppState>>, caller: Caller) -> Result<Response, ApiError> {
    let tenant = caller.tenant()?;
    Ok(axum::Json(current(&state, tenant).await?).into_response())
}

#[utoipa::path(
    put,
    path = "/v1/retention",
    operation_id = "set_retention",
    tag = "retention",
    summary = "Set the tenant's retention (operators: service token and X-Tenant-Id)",
    description = "Messages older than `days` are removed, with their events, by the next \
                   retention pass; the usage counters of `GET /v1/stats` are kept.",
    request_body = RetentionUpdate,
    responses(
        (status = 200, description = "The tenant's retention now", body = Retention),
        ApiErrors,
        BodyErrors,
        (status = 403, description = "Only the service token (operators) may do this", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn put(
    State(state): State<Arc<AppState>>,
    OperatorFor(tenant): OperatorFor,
    JsonBody(body): JsonBody<RetentionUpdate>,
) -> Result<Response, ApiError> {
    let days = u32::try_from(body.days)
        .ok()
        .filter(|d| RETENTION_DAYS.contains(d))
        .ok_or_else(|| ApiError::validation(vec![FieldError::new("days", DAYS_RANGE)]))?;
    store::set_override(&state.pool, tenant.as_str(), days as i32)
        .await
        .map_err(|e| ApiError::database("set retention", e))?;
    Ok(axum::Json(current(&state, &tenant).await?).into_response())
}

#[utoipa::path(
    delete,
    path = "/v1/retention",
    operation_id = "reset_retention",
    tag = "retention",
    summary = "Remove the tenant's override: COMMUNICATION_RETENTION_DAYS applies again",
    responses(
        (status = 200, description = "The tenant's retention now (the default)", body = Retention),
        ApiErrors,
        (status = 403, description = "Only the service token (operators) may do this", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn delete(
    State(state): State<Arc<AppState>>,
    OperatorFor(tenant): OperatorFor,
) -> Result<Response, ApiError> {
    store::clear_override(&state.pool, tenant.as_str())
        .await
        .map_err(|e| ApiError::database("reset retention", e))?;
    Ok((StatusCode::OK, axum::Json(current(&state, &tenant).await?)).into_response())
}
