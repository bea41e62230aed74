//! `GET|POST /v1/suppressions`, `DELETE /v1/suppressions/{id}`: a tenant's suppression list.
//! Entries are added by hand here, and automatically by hard bounces and complaints (a
//! trigger on receipt events, see the migration) and by providers' refusals of a recipient
//! who opted out or does not exist (`worker::suppression`). A removal lets the next send out
//! once workers' cached lists expire (`COMMUNICATION_SUPPRESSION_CACHE_MS`, 5 s by default).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, ApiErrors, BodyErrors, NotFoundError};
use super::json::{JsonBody, RequestFields};
use crate::domain::{Channel, FieldError, Recipient, SuppressionReason, normalize_recipient};
use crate::store::suppressions::{
    self as store, NewSuppression, SuppressionFilter, SuppressionRow,
};

/// The routes of this module, for `intake::documented_routes`.
pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(delete))
}

/// Body of `POST /v1/suppressions`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SuppressionCreate {
    /// `email` or `sms`.
    #[schema(example = "email")]
    pub channel: String,
    /// An email address or an E.164 number, matching `channel`.
    #[schema(example = "ada@example.com")]
    pub recipient: String,
    /// `hard_bounce`, `complaint`, `opted_out`, `invalid_recipient` or `manual` (default).
    #[schema(example = "manual")]
    pub reason: Option<String>,
}

impl RequestFields for SuppressionCreate {}

/// One suppressed recipient.
#[derive(Serialize, ToSchema)]
pub struct Suppression {
    pub id: Uuid,
    /// `email` or `sms`.
    pub channel: String,
    /// Normalised: email addresses lower-cased.
    pub recipient: String,
    /// `hard_bounce`, `complaint`, `opted_out`, `invalid_recipient` or `manual`.
    pub reason: String,
    /// The message whose bounce, complaint or refusal added it.
    pub message_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
}

/// A page of suppressions, newest first.
#[derive(Serialize, ToSchema)]
pub struct SuppressionPage {
    pub items: Vec<Suppression>,
    /// Pass as `cursor` for the next page; `null` on the last.
    pub next_cursor: Option<String>,
}

impl From<&SuppressionRow> for Suppression {
    fn from(r: &SuppressionRow) -> Suppression {
        Suppression {
            id: r.id,
            channel: r.channel.clone(),
            recipient: r.recipient.clone(),
            reason: r.reason.clone(),
            message_id: r.message_id,
            created_at: r.created_at,
        }
    }
}

fn encode_cursor(row: &SuppressionRow) -> String {
    super::query::encode_time_cursor(row.created_at, row.id)
}

#[utoipa::path(
    get,
    path = "/v1/suppressions",
    operation_id = "list_suppressions",
    tag = "suppressions",
    summary = "List the tenant's suppressed recipients, newest first",
    params(
        ("channel" = Option<String>, Query, description = "email or sms"),
        ("recipient" = Option<String>, Query, description = "Only this recipient (with `channel`)"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
        ("limit" = Option<i64>, Query, description = "1 to 200, default 50"),
    ),
    responses(
        (status = 200, description = "A page of suppressions", body = SuppressionPage),
        ApiErrors,
    )
)]
pub async fn list(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let tenant = caller.tenant()?;
    let mut errors = Vec::new();
    let mut filter = SuppressionFilter::default();
    let channel = match query.get("channel").map(|c| Channel::parse(c)) {
        None => None,
        Some(Some(c)) => Some(c),
        Some(None) => {
            errors.push(FieldError::new("channel", "must be email or sms"));
            None
        }
    };
    filter.channel = channel.map(|c| c.as_str().to_owned());
    for (k, v) in &query {
        match k.as_str() {
            "channel" | "limit" => {}
            "recipient" => match channel {
                Some(c) => filter.recipient = Some(normalize_recipient(c, v)),
                None => errors.push(FieldError::new("recipient", "needs `channel` too")),
            },
            "cursor" => match super::query::decode_time_cursor(v) {
                Some(c) => filter.before = Some(c),
                None => errors.push(FieldError::new("cursor", "is not a cursor from this API")),
            },
            other => errors.push(FieldError::new(other, "is not a known filter")),
        }
    }
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
    let rows = store::list(&state.pool, tenant.as_str(), &filter, limit + 1)
        .await
        .map_err(|e| ApiError::database("list suppressions", e))?;
    let has_more = rows.len() as i64 > limit;
    let page: Vec<&SuppressionRow> = rows.iter().take(limit as usize).collect();
    let next_cursor = has_more
        .then(|| page.last().map(|r| encode_cursor(r)))
        .flatten();
    Ok(axum::Json(SuppressionPage {
        items: page.into_iter().map(Suppression::from).collect(),
        next_cursor,
    })
    .into_response())
}

#[utoipa::path(
    post,
    path = "/v1/suppressions",
    operation_id = "create_suppression",
    tag = "suppressions",
    summary = "Suppress a recipient by hand",
    description = "201 with the new entry; when the recipient is already suppressed, 200 with \
                   the existing entry (its reason unchanged).",
    request_body = SuppressionCreate,
    responses(
        (status = 201, description = "Suppressed", body = Suppression),
        (status = 200, description = "Already suppressed: the existing entry", body = Suppression),
        ApiErrors,
        BodyErrors,
    )
)]
pub async fn create(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    JsonBody(body): JsonBody<SuppressionCreate>,
) -> Result<Response, ApiError> {
    let tenant = caller.tenant()?;
    let mut errors = Vec::new();
    let channel = Channel::parse(&body.channel);
    if channel.is_none() {
        errors.push(FieldError::new("channel", "must be email or sms"));
    }
    let reason = match body.reason.as_deref() {
        None => Some(SuppressionReason::Manual),
        Some(r) => SuppressionReason::parse(r),
    };
    if reason.is_none() {
        errors.push(FieldError::new(
            "reason",
            "must be hard_bounce, complaint, opted_out, invalid_recipient or manual",
        ));
    }
    let recipient = channel.and_then(|c| match Recipient::parse(c, &body.recipient) {
        Ok(r) => Some(normalize_recipient(c, r.as_str())),
        Err(m) => {
            errors.push(FieldError::new("recipient", m));
            None
        }
    });
    let (Some(channel), Some(recipient), Some(reason), true) =
        (channel, recipient, reason, errors.is_empty())
    else {
        return Err(ApiError::validation(errors));
    };
    let (row, created) = store::add(
        &state.pool,
        &NewSuppression {
            tenant_id: tenant.as_str(),
            channel: channel.as_str(),
            recipient: &recipient,
            reason: reason.as_str(),
            message_id: None,
        },
    )
    .await
    .map_err(|e| ApiError::database("add suppression", e))?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(Suppression::from(&row))).into_response())
}

#[utoipa::path(
    delete,
    path = "/v1/suppressions/{id}",
    operation_id = "delete_suppression",
    tag = "suppressions",
    summary = "Remove a suppression: later sends to the recipient go out again",
    params(("id" = Uuid, Path, description = "The suppression's id")),
    responses(
        (status = 204, description = "Removed"),
        ApiErrors,
        NotFoundError,
    )
)]
pub async fn delete(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let tenant = caller.tenant()?;
    let id = Uuid::parse_str(&id).map_err(|_| ApiError::not_found("suppression"))?;
    let removed = store::delete(&state.pool, tenant.as_str(), id)
        .await
        .map_err(|e| ApiError::database("delete suppression", e))?;
    if removed {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::not_found("suppression"))
    }
}
