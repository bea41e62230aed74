//! `/v1/providers`: a tenant's providers (or, with the service token and no tenant, the
//! platform's). A configuration is validated by building its adapter (the registry's one
//! `build`), so a provider that saves is a provider that can send. Secret fields are sealed by
//! [`ProviderSecrets`] before storage and masked in every response. `check.rs` holds
//! "test connection", `schema.rs` the request and response bodies.

pub mod check;
pub mod schema;

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde_json::{Map, Value};
use uuid::Uuid;

use self::schema::{ProviderCreate, ProviderList, ProviderPatch, ProviderTestResult, ProviderView};
use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, ApiErrors, BodyErrors, NotFoundError, Problem};
use super::json::JsonBody;
use crate::crypto::ProviderSecrets;
use crate::domain::{Channel, FieldError};
use crate::providers::description::{KindSpec, SplitConfig, mask_secret};
use crate::providers::registry;
use crate::store::providers::{self as store, ProviderRow};

fn check_name(errors: &mut Vec<FieldError>, name: Option<&str>) {
    if let Some(n) = name
        && (n.trim().is_empty() || n.chars().count() > 100)
    {
        errors.push(FieldError::new("name", "must be 1 to 100 characters"));
    }
}

fn check_priority(errors: &mut Vec<FieldError>, priority: Option<i64>) -> Option<i32> {
    match priority {
        Some(p) if (0..=10_000).contains(&p) => i32::try_from(p).ok(),
        Some(_) => {
            errors.push(FieldError::new(
                "priority",
                "must be an integer between 0 and 10000",
            ));
            None
        }
        None => None,
    }
}

/// Validates a whole configuration by building it; problems are `config.<field>` errors.
fn validate_config(
    state: &AppState,
    spec: &KindSpec,
    config: &Map<String, Value>,
    errors: &mut Vec<FieldError>,
) -> Option<SplitConfig> {
    match registry::validate(spec, config, &state.provider_ctx) {
        Ok(split) => Some(split),
        Err(e) => {
            errors.extend(e.problems);
            None
        }
    }
}

/// The provider as callers see it: secrets masked (at most their last 4 characters).
fn view(state: &AppState, row: &ProviderRow) -> ProviderView {
    let mut config = row.settings.as_object().cloned().unwrap_or_default();
    let secrets = ProviderSecrets::new(&state.keyring)
        .open(row.secrets_owner(), row.secrets.as_deref())
        .ok();
    for name in &row.secret_fields {
        let masked = secrets
            .as_ref()
            .and_then(|s| s.get(name))
            .map(mask_secret)
            .unwrap_or_else(|| Value::String("****".into()));
        config.insert(name.clone(), masked);
    }
    ProviderView {
        id: row.id,
        name: row.name.clone(),
        channel: row.channel.clone(),
        kind: row.kind.clone(),
        priority: row.priority,
        enabled: row.enabled,
        config,
        scope: if row.tenant_id.is_some() {
            "tenant"
        } else {
            "platform"
        }
        .to_owned(),
        last_test: row.last_test_at.map(|at| ProviderTestResult {
            at,
            ok: row.last_test_ok,
            detail: row.last_test_detail.clone(),
        }),
        created_at: row.created_at,
        updated_at: row.updated_at,
    }
}

/// Stores `split` on the row: settings in clear, secrets sealed for this row.
fn seal(state: &AppState, row: &mut ProviderRow, split: &SplitConfig) -> Result<(), ApiError> {
    let sealed = ProviderSecrets::new(&state.keyring)
        .seal(row.secrets_owner(), &split.secrets)
        .map_err(|e| ApiError::internal("provider secrets cannot be sealed", e))?;
    row.settings = Value::Object(split.settings.clone());
    row.secret_fields = split.secrets.keys().cloned().collect();
    row.key_id = sealed.as_ref().map(|s| s.key_id.clone());
    row.secrets = sealed.map(|s| s.blob);
    Ok(())
}

fn conflict_or(e: sqlx::Error, context: &str) -> ApiError {
    if crate::store::is_unique_violation(&e) {
        ApiError::new(
            StatusCode::CONFLICT,
            "name_taken",
            "a provider with this name already exists",
        )
    } else {
        ApiError::database(context, e)
    }
}

#[utoipa::path(
    post,
    path = "/v1/providers",
    operation_id = "create_provider",
    tag = "providers",
    summary = "Add a provider",
    request_body = ProviderCreate,
    responses(
        (status = 201, description = "Created; secrets masked", body = ProviderView),
        ApiErrors,
        BodyErrors,
        (status = 409, description = "Name already used by this tenant", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    JsonBody(body): JsonBody<ProviderCreate>,
) -> Result<Response, ApiError> {
    let scope = caller.provider_scope().map(|t| t.as_str().to_owned());
    let mut errors = Vec::new();
    check_name(&mut errors, Some(&body.name));
    let channel = Channel::parse(&body.channel);
    if channel.is_none() {
        errors.push(FieldError::new("channel", "must be \"email\" or \"sms\""));
    }
    let spec = registry::find(&body.kind);
    if spec.is_none() {
        let known: Vec<&str> = registry::KINDS.iter().map(|k| k.kind.as_str()).collect();
        errors.push(FieldError::new(
            "kind",
            format!(
                "{:?} is not a provider kind; one of {}",
                body.kind,
                known.join(", ")
            ),
        ));
    }
    if let (Some(k), Some(c)) = (spec, channel)
        && !k.supports(c)
    {
        errors.push(FieldError::new(
            "channel",
            format!("{} providers do not send {c}", k.kind),
        ));
    }
    let priority = check_priority(&mut errors, body.priority).unwrap_or(100);
    let split = spec.and_then(|k| validate_config(&state, k, &body.config, &mut errors));
    let (Some(channel), Some(spec), Some(split), true) = (channel, spec, split, errors.is_empty())
    else {
        return Err(ApiError::validation(errors));
    };
    let now = Utc::now();
    let mut row = ProviderRow {
        id: Uuid::new_v4(),
        tenant_id: scope,
        channel: channel.as_str().to_owned(),
        kind: spec.kind.as_str().to_owned(),
        name: body.name.trim().to_owned(),
        priority,
        enabled: body.enabled.unwrap_or(true),
        settings: Value::Null,
        secrets: None,
        key_id: None,
        secret_fields: Vec::new(),
        last_test_at: None,
        last_test_ok: None,
        last_test_detail: None,
        created_at: now,
        updated_at: now,
    };
    seal(&state, &mut row, &split)?;
    store::insert_provider(&state.pool, &row)
        .await
        .map_err(|e| conflict_or(e, "insert provider"))?;
    tracing::info!(provider_id = %row.id, kind = %row.kind, tenant_id = ?row.tenant_id, "provider created");
    Ok((StatusCode::CREATED, axum::Json(view(&state, &row))).into_response())
}

#[utoipa::path(
    get,
    path = "/v1/providers",
    operation_id = "list_providers",
    tag = "providers",
    summary = "List the tenant's providers",
    responses(
        (status = 200, description = "Providers in priority order; secrets masked", body = ProviderList),
        ApiErrors,
    )
)]
pub async fn list(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Response, ApiError> {
    let scope = caller.provider_scope().map(|t| t.as_str());
    let rows = store::list_providers(&state.pool, scope)
        .await
        .map_err(|e| ApiError::database("list providers", e))?;
    let items = rows.iter().map(|r| view(&state, r)).collect();
    Ok(axum::Json(ProviderList { items }).into_response())
}

fn parse_id(id: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id).map_err(|_| ApiError::not_found("provider"))
}

async fn load(state: &AppState, caller: &Caller, id: &str) -> Result<ProviderRow, ApiError> {
    let id = parse_id(id)?;
    let scope = caller.provider_scope().map(|t| t.as_str());
    store::get_provider(&state.pool, scope, id)
        .await
        .map_err(|e| ApiError::database("get provider", e))?
        .ok_or_else(|| ApiError::not_found("provider"))
}

#[utoipa::path(
    get,
    path = "/v1/providers/{id}",
    operation_id = "get_provider",
    tag = "providers",
    summary = "One provider",
    params(("id" = Uuid, Path, description = "The resource id")),
    responses(
        (status = 200, description = "The provider; secrets masked", body = ProviderView),
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
    Ok(axum::Json(view(&state, &row)).into_response())
}

#[utoipa::path(
    patch,
    path = "/v1/providers/{id}",
    operation_id = "update_provider",
    tag = "providers",
    summary = "Change a provider",
    params(("id" = Uuid, Path, description = "The resource id")),
    request_body = ProviderPatch,
    responses(
        (status = 200, description = "The changed provider; secrets masked", body = ProviderView),
        ApiErrors,
        BodyErrors,
        NotFoundError,
        (status = 409, description = "Name already used by this tenant", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn patch(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ProviderPatch>,
) -> Result<Response, ApiError> {
    let mut row = load(&state, &caller, &id).await?;
    let spec = registry::find(&row.kind)
        .ok_or_else(|| ApiError::internal("stored provider kind unknown", &row.kind))?;
    let mut errors = Vec::new();
    check_name(&mut errors, body.name.as_deref());
    let priority = check_priority(&mut errors, body.priority);
    let mut split = None;
    if let Some(patch) = body.config {
        // Merge: fields given replace, null removes, secrets left out keep their value.
        let mut merged = row
            .open_config(ProviderSecrets::new(&state.keyring))
            .map_err(|e| ApiError::internal("stored secrets cannot be opened", e))?;
        for (k, v) in patch {
            if v.is_null() {
                merged.remove(&k);
            } else {
                merged.insert(k, v);
            }
        }
        split = validate_config(&state, spec, &merged, &mut errors);
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let (name, enabled) = (body.name, body.enabled);
    if let Some(n) = name {
        row.name = n.trim().to_owned();
    }
    if let Some(p) = priority {
        row.priority = p;
    }
    if let Some(e) = enabled {
        row.enabled = e;
    }
    if let Some(split) = split {
        seal(&state, &mut row, &split)?;
    }
    let updated = store::update_provider(&state.pool, &row)
        .await
        .map_err(|e| conflict_or(e, "update provider"))?;
    if !updated {
        return Err(ApiError::not_found("provider"));
    }
    row.updated_at = Utc::now();
    Ok(axum::Json(view(&state, &row)).into_response())
}

#[utoipa::path(
    delete,
    path = "/v1/providers/{id}",
    operation_id = "delete_provider",
    tag = "providers",
    summary = "Remove a provider",
    params(("id" = Uuid, Path, description = "The resource id")),
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
    let id = parse_id(&id)?;
    let scope = caller.provider_scope().map(|t| t.as_str());
    let deleted = store::delete_provider(&state.pool, scope, id)
        .await
        .map_err(|e| ApiError::database("delete provider", e))?;
    if deleted {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::not_found("provider"))
    }
}
