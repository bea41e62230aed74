//! `POST /v1/providers/{id}/test`: "test connection" (the adapter's own check, sending
//! nothing), and with `send_to` a real test message through the pipeline, pinned to the
//! provider, when the check passed.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde_json::json;
use uuid::Uuid;

use super::load;
use super::schema::{ProviderCheck, ProviderTestMessage, ProviderTestRequest};
use crate::crypto::ProviderSecrets;
use crate::domain::{Channel, Content, FieldError, MessageDraft, Priority, TenantId, ValidMessage};
use crate::intake::auth::Caller;
use crate::intake::error::{ApiError, ApiErrors, BodyErrors, NotFoundError, Problem};
use crate::intake::json::JsonBody;
use crate::intake::{AppState, idempotency, send};
use crate::providers::{ErrorClass, ProviderError, registry};
use crate::store::providers::{self as store, ProviderRow};

/// A test message nobody received within ten minutes is not worth sending any more.
const TEST_MESSAGE_TTL_SECONDS: u64 = 600;

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
    request: ProviderTestRequest,
) -> Result<Option<(TenantId, ValidMessage)>, ApiError> {
    let Some(send_to) = request.send_to else {
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
    // Decided as a send without `priority` is (a test message is rare: its own round trip).
    let lane = state
        .lanes
        .decide(tenant, message.channel, Priority::default())
        .await;
    send::publish_send(state, id, tenant, message, None, lane, created_at)
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
    operation_id = "test_provider",
    tag = "providers",
    summary = "Check credentials without sending",
    params(("id" = Uuid, Path, description = "The resource id")),
    request_body(content = Option<ProviderTestRequest>, description = "Optional: `send_to` also sends a real test message through the pipeline when the check passes", content_type = "application/json"),
    responses(
        (status = 200, description = "The check result (`ok` false when the provider refused); with `send_to`, the queued (or skipped) test message", body = ProviderCheck),
        ApiErrors,
        BodyErrors,
        NotFoundError,
        (status = 422, description = "Invalid `send_to` for this provider's channel, or a disabled or platform provider", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn test(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    body: Option<JsonBody<ProviderTestRequest>>,
) -> Result<Response, ApiError> {
    let row = load(&state, &caller, &id).await?;
    let request = body.map(|JsonBody(b)| b).unwrap_or_default();
    let send = test_message(&row, request)?;
    let config = row
        .open_config(ProviderSecrets::new(&state.keyring))
        .map_err(|e| ApiError::internal("stored secrets cannot be opened", e))?;
    let started = Instant::now();
    let result = match registry::find(&row.kind) {
        Some(spec) => match registry::build(spec, &config, &state.provider_ctx) {
            Ok(adapter) => adapter.check().await.map(|r| r.detail),
            Err(e) => Err(ProviderError::provider(e.to_string())),
        },
        None => {
            return Err(ApiError::internal(
                "stored provider kind unknown",
                &row.kind,
            ));
        }
    };
    let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let (ok, detail, class) = match result {
        Ok(detail) => (true, detail, None),
        Err(e) => (false, e.message.clone(), Some(e.class)),
    };
    store::record_test_result(&state.pool, row.id, ok, &detail)
        .await
        .map_err(|e| ApiError::database("record provider test", e))?;
    let mut answer = ProviderCheck {
        id: row.id,
        ok,
        detail,
        error_class: class.map(|c| ErrorClass::as_str(c).to_owned()),
        latency_ms,
        tested_at: Utc::now(),
        test_message: None,
    };
    if let Some((tenant, message)) = send {
        // A failed check means the send would fail too: say so instead of queueing it.
        answer.test_message = Some(if ok {
            let message_id = publish_test_message(&state, &tenant, &message).await?;
            ProviderTestMessage {
                id: Some(message_id),
                status: "queued".into(),
                detail: None,
            }
        } else {
            ProviderTestMessage {
                id: None,
                status: "skipped".into(),
                detail: Some("not sent: the connection check failed".into()),
            }
        });
    }
    Ok(axum::Json(answer).into_response())
}
