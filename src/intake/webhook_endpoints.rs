//! `POST|GET /v1/webhook-endpoints`, `GET|PATCH|DELETE /v1/webhook-endpoints/{id}`,
//! `POST /v1/webhook-endpoints/{id}/rotate-secret`: a tenant's status-webhook endpoints.
//!
//! The `whsec_…` signing secret is answered only at creation and rotation, and stored sealed.
//! URLs must be https and public unless private hosts are allowed (`notify::target`).

use std::collections::HashSet;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use secrecy::ExposeSecret;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, ApiErrors, BodyErrors, NotFoundError, Problem};
use super::json::{JsonBody, RequestFields};
use crate::domain::FieldError;
use crate::notify::events::EventType;
use crate::notify::{signing, target};
use crate::store::webhook_endpoints::{self as store, EndpointChange, EndpointRow, NewEndpoint};

/// How long a rotated-out secret keeps signing beside the new one.
pub const PREVIOUS_SECRET_GRACE: chrono::Duration = chrono::Duration::hours(24);
/// Most endpoints a tenant may have.
pub const MAX_ENDPOINTS_PER_TENANT: usize = 20;

pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(get, patch, delete))
        .routes(routes!(rotate_secret))
}

/// Body of `POST /v1/webhook-endpoints`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EndpointCreate {
    /// Where events are POSTed: https, a public host.
    #[schema(example = "https://hooks.example.com/communication")]
    pub url: String,
    /// At least one of `message.sent`, `message.delivered`, `message.undelivered`,
    /// `message.bounced`, `message.failed`, `message.expired`, `message.suppressed`.
    #[schema(example = json!(["message.delivered", "message.failed"]))]
    pub events: Vec<String>,
    pub description: Option<String>,
    /// Default true.
    pub enabled: Option<bool>,
}

impl RequestFields for EndpointCreate {}

/// Body of `PATCH /v1/webhook-endpoints/{id}`: only the fields to change; `description: null`
/// clears it; `enabled: true` re-enables an endpoint disabled after failures.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EndpointPatch {
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
    pub enabled: Option<bool>,
}

impl RequestFields for EndpointPatch {}

/// A field that is present (`Some`, possibly `Some(None)` for `null`) or absent (`None`).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// An endpoint (never its secret).
#[derive(Serialize, ToSchema)]
pub struct Endpoint {
    pub id: Uuid,
    pub url: String,
    pub events: Vec<String>,
    pub description: Option<String>,
    pub enabled: bool,
    /// Why it is disabled (by the tenant, or after failing for days).
    pub disabled_reason: Option<String>,
    /// Since when every delivery has failed (`null` when the last one succeeded).
    pub failing_since: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// `201` of `POST /v1/webhook-endpoints`: the endpoint and its secret, shown only here.
#[derive(Serialize, ToSchema)]
pub struct EndpointCreated {
    #[serde(flatten)]
    pub endpoint: Endpoint,
    /// `whsec_…`: verifies our signatures (Standard Webhooks). Shown only once.
    pub secret: String,
}

/// Answer of `POST /v1/webhook-endpoints/{id}/rotate-secret`.
#[derive(Serialize, ToSchema)]
pub struct SecretRotated {
    /// The new `whsec_…` secret, shown only here.
    pub secret: String,
    /// Until then the previous secret signs too (a second signature in `webhook-signature`).
    pub previous_secret_expires_at: DateTime<Utc>,
}

/// `GET /v1/webhook-endpoints`.
#[derive(Serialize, ToSchema)]
pub struct EndpointList {
    pub items: Vec<Endpoint>,
}

impl From<&EndpointRow> for Endpoint {
    fn from(r: &EndpointRow) -> Endpoint {
        Endpoint {
            id: r.id,
            url: r.url.clone(),
            events: r.events.clone(),
            description: r.description.clone(),
            enabled: r.enabled,
            disabled_reason: r.disabled_reason.clone(),
            failing_since: r.failing_since,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

fn parse_id(id: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id).map_err(|_| ApiError::not_found("webhook endpoint"))
}

fn check_events(raw: &[String], errors: &mut Vec<FieldError>) -> Option<Vec<String>> {
    let mut seen = HashSet::new();
    let mut events = Vec::new();
    for item in raw {
        match EventType::parse(item) {
            Some(e) if seen.insert(e) => events.push(e.as_str().to_owned()),
            Some(_) => {}
            None => {
                let all: Vec<&str> = EventType::ALL.iter().map(|e| e.as_str()).collect();
                errors.push(FieldError::new(
                    "events",
                    format!("{item:?} is not an event type; use {}", all.join(", ")),
                ));
                return None;
            }
        }
    }
    if events.is_empty() {
        errors.push(FieldError::new(
            "events",
            "must name at least one event type",
        ));
        return None;
    }
    Some(events)
}

fn check_description(d: Option<String>, errors: &mut Vec<FieldError>) -> Option<String> {
    let d = d?;
    if d.chars().count() > 500 {
        errors.push(FieldError::new(
            "description",
            "must be at most 500 characters",
        ));
        return None;
    }
    Some(d)
}

async fn check_url(state: &AppState, url: &str, errors: &mut Vec<FieldError>) -> Option<String> {
    if url.len() > 2000 {
        errors.push(FieldError::new("url", "must be at most 2000 characters"));
        return None;
    }
    match target::check(url, state.provider_ctx.allow_private_hosts).await {
        Ok(u) => Some(u.to_string()),
        Err(m) => {
            errors.push(FieldError::new("url", m));
            None
        }
    }
}

#[utoipa::path(
    post,
    path = "/v1/webhook-endpoints",
    operation_id = "create_webhook_endpoint",
    tag = "webhook-endpoints",
    summary = "Add a status-webhook endpoint; its signing secret is shown only in this answer",
    request_body = EndpointCreate,
    responses(
        (status = 201, description = "Created, with the `whsec_…` secret", body = EndpointCreated),
        ApiErrors,
        BodyErrors,
        (status = 409, description = "The tenant has the most endpoints allowed", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields, e.g. a URL that is not public https (see `errors`)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    JsonBody(body): JsonBody<EndpointCreate>,
) -> Result<Response, ApiError> {
    let tenant = caller.tenant()?;
    let mut errors = Vec::new();
    let url = check_url(&state, &body.url, &mut errors).await;
    let events = check_events(&body.events, &mut errors);
    let description = check_description(body.description, &mut errors);
    let enabled = body.enabled.unwrap_or(true);
    let (Some(url), Some(events), true) = (url, events, errors.is_empty()) else {
        return Err(ApiError::validation(errors));
    };
    let existing = store::list(&state.pool, tenant.as_str())
        .await
        .map_err(|e| ApiError::database("list webhook endpoints", e))?;
    if existing.len() >= MAX_ENDPOINTS_PER_TENANT {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "too_many_endpoints",
            format!("a tenant may have at most {MAX_ENDPOINTS_PER_TENANT} webhook endpoints"),
        ));
    }
    let id = Uuid::new_v4();
    let secret = signing::generate_secret();
    let sealed = signing::seal(&state.keyring, tenant.as_str(), id, &secret);
    let row = store::insert(
        &state.pool,
        &NewEndpoint {
            id,
            tenant_id: tenant.as_str(),
            url: &url,
            events: &events,
            description: description.as_deref(),
            enabled,
            sealed_secret: &sealed,
        },
    )
    .await
    .map_err(|e| ApiError::database("insert webhook endpoint", e))?;
    let created = EndpointCreated {
        endpoint: Endpoint::from(&row),
        secret: secret.expose_secret().to_owned(),
    };
    Ok((StatusCode::CREATED, axum::Json(created)).into_response())
}

#[utoipa::path(
    get,
    path = "/v1/webhook-endpoints",
    operation_id = "list_webhook_endpoints",
    tag = "webhook-endpoints",
    summary = "List the tenant's webhook endpoints",
    responses(
        (status = 200, description = "Every endpoint, oldest first", body = EndpointList),
        ApiErrors,
    )
)]
pub async fn list(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Response, ApiError> {
    let tenant = caller.tenant()?;
    let rows = store::list(&state.pool, tenant.as_str())
        .await
        .map_err(|e| ApiError::database("list webhook endpoints", e))?;
    Ok(axum::Json(EndpointList {
        items: rows.iter().map(Endpoint::from).collect(),
    })
    .into_response())
}

#[utoipa::path(
    get,
    path = "/v1/webhook-endpoints/{id}",
    operation_id = "get_webhook_endpoint",
    tag = "webhook-endpoints",
    summary = "One webhook endpoint",
    params(("id" = Uuid, Path, description = "The endpoint's id")),
    responses(
        (status = 200, description = "The endpoint", body = Endpoint),
        ApiErrors,
        NotFoundError,
    )
)]
pub async fn get(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let row = load(&state, &caller, &id).await?;
    Ok(axum::Json(Endpoint::from(&row)).into_response())
}

/// The caller's endpoint `id`, or 404.
pub(super) async fn load(
    state: &AppState,
    caller: &Caller,
    id: &str,
) -> Result<EndpointRow, ApiError> {
    let tenant = caller.tenant()?;
    store::get(&state.pool, tenant.as_str(), parse_id(id)?)
        .await
        .map_err(|e| ApiError::database("get webhook endpoint", e))?
        .ok_or_else(|| ApiError::not_found("webhook endpoint"))
}

#[utoipa::path(
    patch,
    path = "/v1/webhook-endpoints/{id}",
    operation_id = "update_webhook_endpoint",
    tag = "webhook-endpoints",
    summary = "Change an endpoint's url, events, description or enabled (enabling clears a disable)",
    params(("id" = Uuid, Path, description = "The endpoint's id")),
    request_body = EndpointPatch,
    responses(
        (status = 200, description = "The changed endpoint", body = Endpoint),
        ApiErrors,
        BodyErrors,
        NotFoundError,
    )
)]
pub async fn patch(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<EndpointPatch>,
) -> Result<Response, ApiError> {
    let tenant = caller.tenant()?;
    let id = parse_id(&id)?;
    let mut errors = Vec::new();
    let url = match &body.url {
        Some(u) => check_url(&state, u, &mut errors).await,
        None => None,
    };
    let change = EndpointChange {
        url,
        events: body
            .events
            .as_deref()
            .and_then(|e| check_events(e, &mut errors)),
        description: body.description.map(|d| check_description(d, &mut errors)),
        enabled: body.enabled,
    };
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let row = store::update(&state.pool, tenant.as_str(), id, &change)
        .await
        .map_err(|e| ApiError::database("update webhook endpoint", e))?
        .ok_or_else(|| ApiError::not_found("webhook endpoint"))?;
    Ok(axum::Json(Endpoint::from(&row)).into_response())
}

#[utoipa::path(
    delete,
    path = "/v1/webhook-endpoints/{id}",
    operation_id = "delete_webhook_endpoint",
    tag = "webhook-endpoints",
    summary = "Remove an endpoint: no more events are sent to it",
    params(("id" = Uuid, Path, description = "The endpoint's id")),
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
    let removed = store::delete(&state.pool, tenant.as_str(), parse_id(&id)?)
        .await
        .map_err(|e| ApiError::database("delete webhook endpoint", e))?;
    if removed {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::not_found("webhook endpoint"))
    }
}

#[utoipa::path(
    post,
    path = "/v1/webhook-endpoints/{id}/rotate-secret",
    operation_id = "rotate_webhook_secret",
    tag = "webhook-endpoints",
    summary = "Replace the signing secret; the previous one keeps signing for 24 hours",
    params(("id" = Uuid, Path, description = "The endpoint's id")),
    responses(
        (status = 200, description = "The new secret, shown only here", body = SecretRotated),
        ApiErrors,
        NotFoundError,
    )
)]
pub async fn rotate_secret(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let tenant = caller.tenant()?;
    let id = parse_id(&id)?;
    let secret = signing::generate_secret();
    let sealed = signing::seal(&state.keyring, tenant.as_str(), id, &secret);
    let until = Utc::now() + PREVIOUS_SECRET_GRACE;
    let rotated = store::rotate_secret(&state.pool, tenant.as_str(), id, &sealed, until)
        .await
        .map_err(|e| ApiError::database("rotate webhook secret", e))?;
    if !rotated {
        return Err(ApiError::not_found("webhook endpoint"));
    }
    Ok(axum::Json(SecretRotated {
        secret: secret.expose_secret().to_owned(),
        previous_secret_expires_at: until,
    })
    .into_response())
}
