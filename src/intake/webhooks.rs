//! `POST /v1/webhooks/{kind}/{provider_id}`: delivery receipts. No bearer auth: the provider's
//! signature, checked with the provider row's own secret, is the credential. Receipts are
//! applied idempotently and in any order; a status only moves forward. The body is read as
//! bytes, not JSON: the signature covers those exact bytes, and each kind parses its own.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;
use uuid::Uuid;

use super::AppState;
use super::error::{ApiError, Problem, ServerErrors};
use crate::crypto::ProviderSecrets;
use crate::domain::{EventKind, MessageStatus};
use crate::providers::{Receipt, ReceiptOutcome, ReceiptRequest, WebhookError, registry};
use crate::store::{messages as store_messages, providers as store_providers};

/// What one receipt did.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookAck {
    /// The message the receipt applied to (absent when ignored).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub message_id: Option<Uuid>,
    /// The message's status after the receipt, or `ignored` (an event not tracked).
    pub status: String,
}

impl WebhookAck {
    fn ignored() -> WebhookAck {
        WebhookAck {
            message_id: None,
            status: "ignored".into(),
        }
    }
}

/// Answer to a delivery receipt: one receipt's result, or each one's for a provider that
/// posts several in one request.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum WebhookAnswer {
    One(WebhookAck),
    Many { applied: Vec<WebhookAck> },
}

fn refused(e: WebhookError) -> ApiError {
    match e {
        WebhookError::MissingSignature | WebhookError::BadSignature => {
            ApiError::unauthorized(format!("webhook {e}"))
        }
        WebhookError::NotConfigured(_) => ApiError::unauthorized(e.to_string()),
        WebhookError::Stale => ApiError::bad_request("stale_webhook", format!("webhook {e}")),
        WebhookError::Malformed(m) => ApiError::bad_request("malformed_webhook", m),
        WebhookError::NoEndpoint => ApiError::not_found("webhook endpoint"),
    }
}

#[utoipa::path(
    post,
    path = "/v1/webhooks/{kind}/{provider_id}",
    operation_id = "receive_provider_receipt",
    tag = "webhooks",
    summary = "A provider's signed delivery receipt",
    security(()),
    params(
        ("kind" = String, Path, description = "The provider kind that signs the receipt, e.g. twilio or resend"),
        ("provider_id" = Uuid, Path, description = "The provider row whose secret verifies the signature"),
    ),
    responses(
        (status = 200, description = "Applied or ignored", body = WebhookAnswer),
        ServerErrors,
        (status = 400, description = "Malformed or stale receipt", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong signature", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown endpoint or message", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn receive(
    State(state): State<Arc<AppState>>,
    Path((kind, provider_id)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let provider_id =
        Uuid::parse_str(&provider_id).map_err(|_| ApiError::not_found("webhook endpoint"))?;
    let row = store_providers::get_provider_any_tenant(&state.pool, provider_id)
        .await
        .map_err(|e| ApiError::database("load webhook provider", e))?
        .filter(|r| r.kind == kind)
        .ok_or_else(|| ApiError::not_found("webhook endpoint"))?;
    let spec = registry::find(&row.kind).ok_or_else(|| ApiError::not_found("webhook endpoint"))?;
    let Some(verify_receipts) = spec.receipts else {
        return Err(ApiError::not_found("webhook endpoint"));
    };
    let config = row
        .open_config(ProviderSecrets::new(&state.keyring))
        .map_err(|e| ApiError::internal("stored secrets cannot be opened", e))?;
    // A URL-signing provider signed the URL it was given: ours, on the public base.
    let public_url = state.public_url.as_ref().map(|base| match uri.query() {
        Some(q) => format!("{base}{}?{q}", uri.path()),
        None => format!("{base}{}", uri.path()),
    });
    let request = ReceiptRequest {
        headers: &headers,
        body: &body,
        public_url,
        now: chrono::Utc::now().timestamp(),
    };
    let receipts = verify_receipts(&request, &config).map_err(refused)?;
    let mut results = Vec::with_capacity(receipts.len());
    let mut missing = 0usize;
    for verified in &receipts {
        let applied = apply(
            &state,
            provider_id,
            &verified.receipt,
            &verified.receipt_id,
            verified.message_id,
        )
        .await?;
        match applied {
            Some(applied) => results.push(applied),
            None => missing += 1,
        }
    }
    // Receipts for messages not recorded (yet): a non-2xx lets providers that retry webhooks
    // try again later; the ones already applied are deduplicated by their receipt id.
    if missing > 0 {
        return Err(ApiError::not_found("message"));
    }
    let answer = match results.len() {
        0 => WebhookAnswer::One(WebhookAck::ignored()),
        1 => WebhookAnswer::One(results.remove(0)),
        _ => WebhookAnswer::Many { applied: results },
    };
    Ok((StatusCode::OK, axum::Json(answer)).into_response())
}

/// Applies one receipt; `None` when its message is not (yet) recorded. Receipts of messages
/// still on their way are acknowledged without a status change.
async fn apply(
    state: &AppState,
    provider_id: Uuid,
    receipt: &Receipt,
    receipt_id: &str,
    our_id: Option<Uuid>,
) -> Result<Option<WebhookAck>, ApiError> {
    let (event_kind, status) = match receipt.outcome {
        ReceiptOutcome::InProgress => {
            return Ok(Some(WebhookAck::ignored()));
        }
        ReceiptOutcome::Delivered => (EventKind::Delivered, Some(MessageStatus::Delivered)),
        ReceiptOutcome::Undelivered => (EventKind::Undelivered, Some(MessageStatus::Undelivered)),
        ReceiptOutcome::Bounced => (EventKind::Bounced, Some(MessageStatus::Bounced)),
        ReceiptOutcome::Complained => (EventKind::Complained, None),
    };
    let found = store_messages::find_by_provider_message(
        &state.pool,
        provider_id,
        &receipt.provider_message_id,
    )
    .await
    .map_err(|e| ApiError::database("find receipt message", e))?;
    let found = match (found, our_id) {
        (None, Some(id)) => store_messages::find_for_provider(&state.pool, provider_id, id)
            .await
            .map_err(|e| ApiError::database("find receipt message", e))?,
        (found, _) => found,
    };
    let Some((message_id, tenant_id, _)) = found else {
        return Ok(None);
    };
    let now_status = store_messages::apply_receipt(
        &state.pool,
        message_id,
        &tenant_id,
        provider_id,
        event_kind.as_str(),
        status.map(|s| s.as_str()),
        receipt_id,
        json!({"receipt_id": receipt_id, "provider_status": receipt.detail}),
    )
    .await
    .map_err(|e| ApiError::database("apply receipt", e))?;
    // No status: the message row is gone (removed since it was found); as not recorded.
    Ok(now_status.map(|status| WebhookAck {
        message_id: Some(message_id),
        status,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_keeps_the_json_it_always_had() {
        let id = Uuid::now_v7();
        let delivered = || WebhookAck {
            message_id: Some(id),
            status: "delivered".into(),
        };
        let json_of = |a: &WebhookAnswer| serde_json::to_value(a).expect("serializes");
        assert_eq!(
            json_of(&WebhookAnswer::One(WebhookAck::ignored())),
            json!({"status": "ignored"})
        );
        assert_eq!(
            json_of(&WebhookAnswer::One(delivered())),
            json!({"message_id": id, "status": "delivered"})
        );
        assert_eq!(
            json_of(&WebhookAnswer::Many {
                applied: vec![delivered(), WebhookAck::ignored()]
            }),
            json!({"applied": [{"message_id": id, "status": "delivered"}, {"status": "ignored"}]})
        );
    }
}
