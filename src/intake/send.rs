//! `POST /v1/send`: validate, claim the idempotency key, publish with a confirm, answer 202.
//! Never touches Postgres.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::AppState;
use super::auth::Caller;
use super::error::ApiError;
use super::idempotency::{self, Claim};
use super::json::{Fields, JsonObject};
use crate::domain::{
    Content, FieldError, MessageDraft, TenantId, ValidMessage, check_idempotency_key,
};
use crate::queue::{Envelope, PublishError};
use crate::trace_context::{self, TraceContext};
use tracing::Instrument;

const SEND_FIELDS: &[&str] = &[
    "channel",
    "to",
    "content",
    "provider_id",
    "metadata",
    "ttl_seconds",
];

fn accepted(id: Uuid, replayed: bool) -> Response {
    let mut response = (
        StatusCode::ACCEPTED,
        axum::Json(json!({"id": id, "status": "queued"})),
    )
        .into_response();
    if replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

/// The short-lived Redis marker that lets `GET /v1/messages/{id}` answer `queued` before a
/// worker has recorded the message.
pub(super) fn queued_marker(message: &ValidMessage, created_at: DateTime<Utc>) -> String {
    json!({
        "channel": message.channel,
        "to": message.to.as_str(),
        "created_at": created_at,
    })
    .to_string()
}

/// Publishes a send to `{ns}.send` and waits for the broker's confirm (timed).
pub(super) async fn publish_send(
    state: &AppState,
    id: Uuid,
    tenant: &TenantId,
    message: &ValidMessage,
    created_at: DateTime<Utc>,
) -> Result<(), PublishError> {
    let envelope = Envelope::new(id, tenant, message, created_at);
    let started = Instant::now();
    let published = state
        .publisher
        .publish(
            &state.publisher.topology().send_exchange(),
            message.channel.as_str(),
            &envelope.to_bytes(),
            Default::default(),
            Some(&id.to_string()),
        )
        .await;
    metrics::histogram!("communication_publish_confirm_seconds")
        .record(started.elapsed().as_secs_f64());
    published
}

#[utoipa::path(
    post,
    path = "/v1/send",
    tag = "send",
    summary = "Accept a message for delivery",
    request_body = super::openapi::SendRequest,
    params(
        ("Idempotency-Key" = Option<String>, Header, description = "Replay-safe key (same key and body: same id)"),
        ("traceparent" = Option<String>, Header, description = "W3C trace context to continue; an invalid one is ignored"),
        ("X-Tenant-Id" = Option<String>, Header, description = "The tenant, with the service token"),
    ),
    responses(
        (status = 202, description = "Accepted (confirmed by the broker); headers `traceparent`, and `Idempotent-Replayed: true` on a replay", body = super::openapi::SendAccepted),
        (status = 400, description = "Malformed JSON or header", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not application/json", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields (see `errors`); on /v1/send also an Idempotency-Key reused with another body", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid credentials", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 403, description = "The credentials may not do this", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 409, description = "Same Idempotency-Key still in flight", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 500, description = "Unexpected failure (details only in the service's log)", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 503, description = "A dependency is down; retry later (Retry-After)", body = super::openapi::Problem, content_type = "application/problem+json")
    )
)]
pub async fn send(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    headers: HeaderMap,
    JsonObject(body): JsonObject,
) -> Response {
    // A valid incoming `traceparent` is continued; an invalid or missing one starts a trace.
    let incoming = headers
        .get(trace_context::HEADER)
        .and_then(|v| v.to_str().ok());
    let trace = TraceContext::continue_from(incoming);
    let span = trace.send_span();
    let result = trace
        .scope(accept(state, caller, headers, body))
        .instrument(span)
        .await;
    let mut response = result.into_response();
    if let Ok(v) = HeaderValue::from_str(&trace.traceparent()) {
        response.headers_mut().insert(trace_context::HEADER, v);
    }
    response
}

async fn accept(
    state: Arc<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: serde_json::Map<String, Value>,
) -> Result<Response, ApiError> {
    let tenant = caller.tenant()?.clone();
    let idempotency_key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => {
            let key = v.to_str().map_err(|_| {
                ApiError::validation(vec![FieldError::new(
                    "Idempotency-Key",
                    "must be visible ASCII text",
                )])
            })?;
            check_idempotency_key(key)
                .map_err(|m| ApiError::validation(vec![FieldError::new("Idempotency-Key", m)]))?;
            Some(key.to_owned())
        }
    };
    // The fingerprint covers the whole body; serde_json's map is ordered, so it is canonical.
    let fingerprint = hex::encode(Sha256::digest(
        serde_json::to_vec(&Value::Object(body.clone())).unwrap_or_default(),
    ));
    let mut fields = Fields::new(body);
    fields.only(SEND_FIELDS);
    let channel = fields.string("channel");
    let to = fields.string("to");
    let content = match fields.raw("content").cloned() {
        None => None,
        Some(v @ Value::Object(_)) => match serde_json::from_value::<Content>(v) {
            Ok(c) => Some(c),
            Err(e) => {
                fields.errors.push(FieldError::new(
                    "content",
                    format!("must hold only subject, text and html strings ({e})"),
                ));
                None
            }
        },
        Some(_) => {
            fields
                .errors
                .push(FieldError::new("content", "must be a JSON object"));
            None
        }
    };
    let provider_id = fields.uuid("provider_id");
    let metadata = fields.raw("metadata").cloned();
    let ttl_seconds = fields
        .integer("ttl_seconds", 1, crate::domain::MAX_TTL_SECONDS as i64)
        .map(|t| t as u64);
    let mut errors = std::mem::take(&mut fields.errors);
    let draft = MessageDraft {
        channel,
        to,
        content: content.or_else(|| {
            // Keep "content is required" from being reported twice.
            if errors.iter().any(|e| e.field == "content") {
                Some(Content::default())
            } else {
                None
            }
        }),
        provider_id,
        metadata,
        ttl_seconds,
        idempotency_key: idempotency_key.clone(),
    };
    let message = match draft.validate() {
        Ok(m) if errors.is_empty() => m,
        Ok(_) => return Err(ApiError::validation(errors)),
        Err(more) => {
            for e in more {
                if !errors.iter().any(|x| e.field.starts_with(&x.field)) {
                    errors.push(e);
                }
            }
            return Err(ApiError::validation(errors));
        }
    };

    let id = Uuid::now_v7();
    let created_at = Utc::now();
    let marker = idempotency::marker_key(&state.namespace, tenant.as_str(), id);
    let marker_value = queued_marker(&message, created_at);
    let idem = idempotency_key
        .as_deref()
        .map(|k| idempotency::idem_key(&state.namespace, tenant.as_str(), k));

    // Redis: one round trip claims the key and leaves the queued marker. If Redis is down the
    // send is still accepted; the worker's unique (tenant, idempotency_key) is the backstop.
    let mut redis = match state.redis.get().await {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(error = %e, "Redis unavailable; accepting without idempotency claim");
            None
        }
    };
    if let Some(conn) = redis.as_mut() {
        let claimed = match &idem {
            Some(idem) => {
                idempotency::claim(conn, idem, &marker, &fingerprint, id, &marker_value).await
            }
            None => idempotency::set_marker(conn, &marker, &marker_value)
                .await
                .map(|_| Claim::Claimed),
        };
        match claimed {
            Ok(Claim::Claimed) => {}
            Ok(Claim::Existing {
                done,
                fingerprint: theirs,
                id: existing,
            }) => {
                if theirs != fingerprint {
                    return Err(ApiError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "idempotency_key_reused",
                        "this Idempotency-Key was used with a different request body",
                    ));
                }
                if !done {
                    return Err(ApiError::new(
                        StatusCode::CONFLICT,
                        "idempotency_key_in_flight",
                        "a request with this Idempotency-Key is still being processed",
                    ));
                }
                metrics::counter!("communication_idempotent_replays_total").increment(1);
                return Ok(accepted(existing, true));
            }
            Err(e) => {
                tracing::warn!(error = %e, "Redis claim failed; accepting without idempotency claim");
                redis = None;
            }
        }
    }

    let published = publish_send(&state, id, &tenant, &message, created_at).await;
    if let Err(e) = published {
        tracing::warn!(message_id = %id, error = %e, "publish failed; send refused with 503");
        if let Some(conn) = redis.as_mut()
            && let Err(re) =
                idempotency::release(conn, idem.as_deref(), &marker, &fingerprint, id).await
        {
            tracing::warn!(error = %re, "could not release idempotency claim");
        }
        return Err(ApiError::unavailable("the message broker"));
    }
    if let (Some(conn), Some(idem)) = (redis.as_mut(), idem.as_deref())
        && let Err(e) = idempotency::complete(conn, idem, &fingerprint, id).await
    {
        // The message is accepted; a retry with the key would answer 409 until the TTL ends.
        tracing::warn!(error = %e, "could not mark idempotency key done");
    }
    metrics::counter!("communication_accepted_total", "channel" => message.channel.as_str())
        .increment(1);
    tracing::debug!(message_id = %id, channel = message.channel.as_str(), "send accepted");
    Ok(accepted(id, false))
}
