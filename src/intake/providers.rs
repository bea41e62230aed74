//! `/v1/providers`: a tenant's providers (or, with the service token and no tenant, the
//! platform's). Secret fields are sealed before storage and masked in every response.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::AppState;
use super::auth::Caller;
use super::error::ApiError;
use super::json::{Fields, JsonObject, OptionalJsonObject};
use super::{idempotency, send};
use crate::crypto::provider_aad;
use crate::domain::{Channel, Content, FieldError, MessageDraft, TenantId, ValidMessage};
use crate::providers::kinds::{ProviderKind, SplitConfig, mask_secret, validate_config};
use crate::providers::{ErrorClass, build_provider};
use crate::store::providers::{self as store, ProviderRow};
use crate::worker::resolver::decrypt_config;

const CREATE_FIELDS: &[&str] = &["name", "channel", "kind", "priority", "enabled", "config"];
const PATCH_FIELDS: &[&str] = &["name", "priority", "enabled", "config"];
const TEST_FIELDS: &[&str] = &["send_to"];
/// A test message nobody received within ten minutes is not worth sending any more.
const TEST_MESSAGE_TTL_SECONDS: u64 = 600;

fn check_name(fields: &mut Fields, name: &Option<String>) {
    if let Some(n) = name
        && (n.trim().is_empty() || n.chars().count() > 100)
    {
        fields
            .errors
            .push(FieldError::new("name", "must be 1 to 100 characters"));
    }
}

/// The provider as callers see it: secrets masked (at most their last 4 characters).
fn view(state: &AppState, row: &ProviderRow) -> Value {
    let mut config = row.settings.as_object().cloned().unwrap_or_default();
    let secrets = decrypt_config(&state.keyring, row).ok();
    for name in &row.secret_fields {
        let masked = secrets
            .as_ref()
            .and_then(|s| s.get(name))
            .map(mask_secret)
            .unwrap_or_else(|| Value::String("****".into()));
        config.insert(name.clone(), masked);
    }
    json!({
        "id": row.id,
        "name": row.name,
        "channel": row.channel,
        "kind": row.kind,
        "priority": row.priority,
        "enabled": row.enabled,
        "config": config,
        "scope": if row.tenant_id.is_some() { "tenant" } else { "platform" },
        "last_test": row.last_test_at.map(|at| json!({
            "at": at, "ok": row.last_test_ok, "detail": row.last_test_detail,
        })),
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    })
}

fn seal(state: &AppState, row: &mut ProviderRow, split: &SplitConfig) {
    row.settings = Value::Object(split.settings.clone());
    row.secret_fields = split.secrets.keys().cloned().collect();
    if split.secrets.is_empty() {
        row.secrets = None;
        row.key_id = None;
    } else {
        let plain = serde_json::to_vec(&split.secrets).unwrap_or_default();
        let aad = provider_aad(row.tenant_id.as_deref(), row.id);
        row.secrets = Some(state.keyring.encrypt(&plain, &aad));
        row.key_id = Some(state.keyring.active_key_id());
    }
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
    tag = "providers",
    summary = "Add a provider",
    request_body = super::openapi::ProviderCreate,
    responses(
        (status = 201, description = "Created; secrets masked", body = super::openapi::ProviderView),
        (status = 400, description = "Malformed JSON or header", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not application/json", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields (see `errors`)", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid credentials", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 403, description = "The credentials may not do this", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 409, description = "Name already used by this tenant", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 500, description = "Unexpected failure (details only in the service's log)", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 503, description = "A dependency is down; retry later (Retry-After)", body = super::openapi::Problem, content_type = "application/problem+json")
    )
)]
pub async fn create(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    let scope = caller.provider_scope().map(|t| t.as_str().to_owned());
    let mut fields = Fields::new(body);
    fields.only(CREATE_FIELDS);
    for required in ["name", "channel", "kind", "config"] {
        fields.require(required);
    }
    let name = fields.string("name");
    check_name(&mut fields, &name);
    let channel = fields.string("channel");
    let channel = match channel.as_deref().map(Channel::parse) {
        Some(None) => {
            fields
                .errors
                .push(FieldError::new("channel", "must be \"email\" or \"sms\""));
            None
        }
        Some(Some(c)) => Some(c),
        None => None,
    };
    let kind = match fields
        .string("kind")
        .as_deref()
        .map(|k| (k.to_owned(), ProviderKind::parse(k)))
    {
        Some((k, None)) => {
            let known: Vec<&str> = ProviderKind::ALL.iter().map(|k| k.as_str()).collect();
            fields.errors.push(FieldError::new(
                "kind",
                format!("{k:?} is not a provider kind; one of {}", known.join(", ")),
            ));
            None
        }
        Some((_, Some(k))) => Some(k),
        None => None,
    };
    if let (Some(k), Some(c)) = (kind, channel)
        && !k.supports(c)
    {
        fields.errors.push(FieldError::new(
            "channel",
            format!("{k} providers do not send {c}"),
        ));
    }
    let priority = fields.integer("priority", 0, 10_000).unwrap_or(100) as i32;
    let enabled = fields.bool("enabled").unwrap_or(true);
    let config = fields.object("config");
    let split = match (kind, &config) {
        (Some(k), Some(c)) => match validate_config(k, c) {
            Ok(s) => Some(s),
            Err(errs) => {
                fields.errors.extend(errs);
                None
            }
        },
        _ => None,
    };
    if !fields.errors.is_empty() {
        return Err(ApiError::validation(fields.errors));
    }
    let (Some(name), Some(channel), Some(kind), Some(split)) = (name, channel, kind, split) else {
        return Err(ApiError::validation(vec![FieldError::new(
            "",
            "invalid provider",
        )]));
    };
    let now = Utc::now();
    let mut row = ProviderRow {
        id: Uuid::new_v4(),
        tenant_id: scope,
        channel: channel.as_str().to_owned(),
        kind: kind.as_str().to_owned(),
        name: name.trim().to_owned(),
        priority,
        enabled,
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
    seal(&state, &mut row, &split);
    store::insert_provider(&state.pool, &row)
        .await
        .map_err(|e| conflict_or(e, "insert provider"))?;
    tracing::info!(provider_id = %row.id, kind = %row.kind, tenant_id = ?row.tenant_id, "provider created");
    Ok((StatusCode::CREATED, axum::Json(view(&state, &row))).into_response())
}

#[utoipa::path(
    get,
    path = "/v1/providers",
    tag = "providers",
    summary = "List the tenant's providers",
    responses(
        (status = 200, description = "Providers in priority order; secrets masked", body = super::openapi::ProviderList),
        (status = 400, description = "Invalid X-Tenant-Id", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid credentials", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 403, description = "The credentials may not do this", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 500, description = "Unexpected failure (details only in the service's log)", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 503, description = "A dependency is down; retry later (Retry-After)", body = super::openapi::Problem, content_type = "application/problem+json")
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
    let items: Vec<Value> = rows.iter().map(|r| view(&state, r)).collect();
    Ok(axum::Json(json!({ "items": items })).into_response())
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
    tag = "providers",
    summary = "One provider",
    params(("id" = Uuid, Path, description = "The resource id")),
    responses(
        (status = 200, description = "The provider; secrets masked", body = super::openapi::ProviderView),
        (status = 400, description = "Invalid X-Tenant-Id", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid credentials", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 403, description = "The credentials may not do this", body = super::openapi::Problem, content_type = "application/problem+json"),
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
    let row = load(&state, &caller, &id).await?;
    Ok(axum::Json(view(&state, &row)).into_response())
}

#[utoipa::path(
    patch,
    path = "/v1/providers/{id}",
    tag = "providers",
    summary = "Change a provider",
    params(("id" = Uuid, Path, description = "The resource id")),
    request_body = super::openapi::ProviderPatch,
    responses(
        (status = 200, description = "The changed provider; secrets masked", body = super::openapi::ProviderView),
        (status = 400, description = "Malformed JSON or header", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not application/json", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields (see `errors`)", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid credentials", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 403, description = "The credentials may not do this", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such resource for this tenant", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 409, description = "Name already used by this tenant", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 500, description = "Unexpected failure (details only in the service's log)", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 503, description = "A dependency is down; retry later (Retry-After)", body = super::openapi::Problem, content_type = "application/problem+json")
    )
)]
pub async fn patch(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    let mut row = load(&state, &caller, &id).await?;
    let kind = ProviderKind::parse(&row.kind)
        .ok_or_else(|| ApiError::internal("stored provider kind unknown", &row.kind))?;
    let mut fields = Fields::new(body);
    fields.only(PATCH_FIELDS);
    let name = fields.string("name");
    check_name(&mut fields, &name);
    let priority = fields.integer("priority", 0, 10_000);
    let enabled = fields.bool("enabled");
    let config_patch = fields.object("config");
    let mut split = None;
    if let Some(patch) = config_patch {
        // Merge: fields given replace, null removes, secrets left out keep their value.
        let mut merged: Map<String, Value> = decrypt_config(&state.keyring, &row)
            .map_err(|e| ApiError::internal("stored secrets cannot be opened", e))?;
        for (k, v) in patch {
            if v.is_null() {
                merged.remove(&k);
            } else {
                merged.insert(k, v);
            }
        }
        match validate_config(kind, &merged) {
            Ok(s) => split = Some(s),
            Err(errs) => fields.errors.extend(errs),
        }
    }
    if !fields.errors.is_empty() {
        return Err(ApiError::validation(fields.errors));
    }
    if let Some(n) = name {
        row.name = n.trim().to_owned();
    }
    if let Some(p) = priority {
        row.priority = p as i32;
    }
    if let Some(e) = enabled {
        row.enabled = e;
    }
    if let Some(split) = split {
        seal(&state, &mut row, &split);
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
    tag = "providers",
    summary = "Remove a provider",
    params(("id" = Uuid, Path, description = "The resource id")),
    responses(
        (status = 204, description = "Removed"),
        (status = 400, description = "Invalid X-Tenant-Id", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid credentials", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 403, description = "The credentials may not do this", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such resource for this tenant", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 500, description = "Unexpected failure (details only in the service's log)", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 503, description = "A dependency is down; retry later (Retry-After)", body = super::openapi::Problem, content_type = "application/problem+json")
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

/// The message `send_to` delivers: plain, and free of anything secret.
fn test_content(channel: Channel, provider_name: &str) -> Content {
    let text = format!(
        "Test message from logicspike-communication through the provider \"{provider_name}\". \
         If you received it, this provider delivers."
    );
    match channel {
        Channel::Email => Content {
            subject: Some("Test message from logicspike-communication".into()),
            text: Some(text),
            html: None,
        },
        Channel::Sms => Content {
            subject: None,
            text: Some(text),
            html: None,
        },
    }
}

/// Validates `{"send_to": "..."}` for this provider: a recipient of its channel, a provider
/// that belongs to a tenant and is enabled. Returns the message to send.
fn test_message(
    row: &ProviderRow,
    body: Option<Map<String, Value>>,
) -> Result<Option<(TenantId, ValidMessage)>, ApiError> {
    let Some(body) = body else {
        return Ok(None);
    };
    let mut fields = Fields::new(body);
    fields.only(TEST_FIELDS);
    let send_to = fields.string("send_to");
    if !fields.errors.is_empty() {
        return Err(ApiError::validation(fields.errors));
    }
    let Some(send_to) = send_to else {
        return Ok(None);
    };
    let Some(tenant) = row
        .tenant_id
        .as_deref()
        .and_then(|t| TenantId::parse(t).ok())
    else {
        return Err(ApiError::validation(vec![FieldError::new(
            "send_to",
            "a platform provider has no tenant to send a test message as; \
             test it by sending from a tenant with provider_id",
        )]));
    };
    if !row.enabled {
        return Err(ApiError::validation(vec![FieldError::new(
            "send_to",
            "the provider is disabled; enable it before sending a test message",
        )]));
    }
    let channel = Channel::parse(&row.channel)
        .ok_or_else(|| ApiError::internal("stored provider channel unknown", &row.channel))?;
    let draft = MessageDraft {
        channel: Some(row.channel.clone()),
        to: Some(send_to),
        content: Some(test_content(channel, &row.name)),
        provider_id: Some(row.id),
        metadata: Some(json!({"provider_test": true})),
        ttl_seconds: Some(TEST_MESSAGE_TTL_SECONDS),
        idempotency_key: None,
    };
    let message = draft.validate().map_err(|errors| {
        ApiError::validation(
            errors
                .into_iter()
                .map(|e| {
                    if e.field == "to" {
                        FieldError::new("send_to", e.message)
                    } else {
                        e
                    }
                })
                .collect(),
        )
    })?;
    Ok(Some((tenant, message)))
}

/// Publishes the test message exactly as `POST /v1/send` would (confirmed publish, queued
/// marker for reads), pinned to this provider.
async fn publish_test_message(
    state: &AppState,
    tenant: &TenantId,
    message: &ValidMessage,
) -> Result<Uuid, ApiError> {
    let id = Uuid::now_v7();
    let created_at = Utc::now();
    if let Ok(mut conn) = state.redis.get().await {
        let marker = idempotency::marker_key(&state.namespace, tenant.as_str(), id);
        let value = send::queued_marker(message, created_at);
        if let Err(e) = idempotency::set_marker(&mut conn, &marker, &value).await {
            tracing::warn!(error = %e, "could not leave the queued marker of a test message");
        }
    }
    send::publish_send(state, id, tenant, message, created_at)
        .await
        .map_err(|e| {
            tracing::warn!(message_id = %id, error = %e, "test message publish failed");
            ApiError::unavailable("the message broker")
        })?;
    Ok(id)
}

/// `POST /v1/providers/{id}/test`: checks the stored credentials without sending; with
/// `{"send_to": "..."}` and a passing check, also sends a real test message through the
/// pipeline, pinned to this provider.
#[utoipa::path(
    post,
    path = "/v1/providers/{id}/test",
    tag = "providers",
    summary = "Check credentials without sending",
    params(("id" = Uuid, Path, description = "The resource id")),
    request_body(content = Option<super::openapi::ProviderTestRequest>, description = "Optional: `send_to` also sends a real test message through the pipeline when the check passes", content_type = "application/json"),
    responses(
        (status = 200, description = "The check result (`ok` false when the provider refused); with `send_to`, the queued (or skipped) test message", body = super::openapi::ProviderCheck),
        (status = 413, description = "Body too large", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 415, description = "A body that is not application/json", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid `send_to` for this provider's channel, or a disabled or platform provider", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 400, description = "Invalid X-Tenant-Id", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid credentials", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 403, description = "The credentials may not do this", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such resource for this tenant", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 500, description = "Unexpected failure (details only in the service's log)", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 503, description = "A dependency is down; retry later (Retry-After)", body = super::openapi::Problem, content_type = "application/problem+json")
    )
)]
pub async fn test(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    OptionalJsonObject(body): OptionalJsonObject,
) -> Result<Response, ApiError> {
    let row = load(&state, &caller, &id).await?;
    let send = test_message(&row, body)?;
    let kind = ProviderKind::parse(&row.kind)
        .ok_or_else(|| ApiError::internal("stored provider kind unknown", &row.kind))?;
    let config = decrypt_config(&state.keyring, &row)
        .map_err(|e| ApiError::internal("stored secrets cannot be opened", e))?;
    let started = Instant::now();
    let result = match build_provider(kind, &config, &state.provider_ctx) {
        Ok(adapter) => adapter.check().await.map(|r| r.detail),
        Err(e) => Err(crate::providers::ProviderError::provider(e.0)),
    };
    let latency_ms = started.elapsed().as_millis() as u64;
    let (ok, detail, class) = match result {
        Ok(detail) => (true, detail, None),
        Err(e) => (false, e.message.clone(), Some(e.class)),
    };
    store::record_test_result(&state.pool, row.id, ok, &detail)
        .await
        .map_err(|e| ApiError::database("record provider test", e))?;
    let mut answer = json!({
        "id": row.id,
        "ok": ok,
        "detail": detail,
        "error_class": class.map(ErrorClass::as_str),
        "latency_ms": latency_ms,
        "tested_at": Utc::now(),
    });
    if let Some((tenant, message)) = send {
        // A failed check means the send would fail too: say so instead of queueing it.
        answer["test_message"] = if ok {
            let message_id = publish_test_message(&state, &tenant, &message).await?;
            json!({"id": message_id, "status": "queued"})
        } else {
            json!({"id": null, "status": "skipped", "detail": "not sent: the connection check failed"})
        };
    }
    Ok(axum::Json(answer).into_response())
}
