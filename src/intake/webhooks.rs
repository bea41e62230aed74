//! `POST /v1/webhooks/{kind}/{provider_id}`: delivery receipts. No bearer auth: the provider's
//! signature, checked with the provider row's own secret, is the credential. Receipts are
//! applied idempotently and in any order; a status only moves forward.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use uuid::Uuid;

use super::AppState;
use super::error::ApiError;
use crate::domain::{EventKind, MessageStatus};
use crate::providers::{Receipt, ReceiptOutcome, WebhookError, resend, twilio};
use crate::store::{messages as store_messages, providers as store_providers};
use crate::worker::resolver::decrypt_config;

fn refused(e: WebhookError) -> ApiError {
    match e {
        WebhookError::MissingSignature | WebhookError::BadSignature => {
            ApiError::unauthorized(format!("webhook {e}"))
        }
        WebhookError::Stale => ApiError::bad_request("stale_webhook", format!("webhook {e}")),
        WebhookError::Malformed(m) => ApiError::bad_request("malformed_webhook", m),
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

#[utoipa::path(
    post,
    path = "/v1/webhooks/{kind}/{provider_id}",
    tag = "webhooks",
    summary = "A provider's signed delivery receipt",
    security(()),
    params(
        ("kind" = String, Path, description = "The provider kind that signs the receipt, e.g. twilio or resend"),
        ("provider_id" = Uuid, Path, description = "The provider row whose secret verifies the signature"),
    ),
    responses(
        (status = 200, description = "Applied or ignored", body = super::openapi::WebhookAck),
        (status = 400, description = "Malformed or stale receipt", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong signature", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown endpoint or message", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 500, description = "Unexpected failure (details only in the service's log)", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 503, description = "A dependency is down; retry later (Retry-After)", body = super::openapi::Problem, content_type = "application/problem+json")
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
    let config = decrypt_config(&state.keyring, &row)
        .map_err(|e| ApiError::internal("stored secrets cannot be opened", e))?;
    let secret = |name: &str| config.get(name).and_then(|v| v.as_str()).unwrap_or("");
    let (receipt, receipt_id): (Option<Receipt>, String) = match kind.as_str() {
        "twilio" => {
            let Some(base) = &state.public_url else {
                return Err(ApiError::not_found("webhook endpoint"));
            };
            let params: Vec<(String, String)> = url::form_urlencoded::parse(&body)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            let signature = header(&headers, "x-twilio-signature");
            if signature.is_empty() {
                return Err(refused(WebhookError::MissingSignature));
            }
            // The URL Twilio signed is the callback URL we gave it, built from our public base.
            let url = match uri.query() {
                Some(q) => format!("{base}{}?{q}", uri.path()),
                None => format!("{base}{}", uri.path()),
            };
            if !twilio::verify_signature(secret("auth_token"), &url, &params, signature) {
                return Err(refused(WebhookError::BadSignature));
            }
            let receipt = twilio::parse_status_callback(&params).map_err(refused)?;
            let id = format!("{}:{:?}", receipt.provider_message_id, receipt.outcome);
            (Some(receipt), id)
        }
        "resend" => {
            let key = secret("webhook_secret");
            if key.is_empty() {
                return Err(ApiError::unauthorized(
                    "this provider has no webhook_secret configured",
                ));
            }
            resend::verify_webhook(
                key,
                header(&headers, "svix-id"),
                header(&headers, "svix-timestamp"),
                header(&headers, "svix-signature"),
                &body,
                chrono::Utc::now().timestamp(),
            )
            .map_err(refused)?;
            let receipt = resend::event_receipt(&body).map_err(refused)?;
            (receipt, header(&headers, "svix-id").to_owned())
        }
        _ => return Err(ApiError::not_found("webhook endpoint")),
    };
    let Some(receipt) = receipt else {
        return Ok((StatusCode::OK, axum::Json(json!({"status": "ignored"}))).into_response());
    };
    let (event_kind, status) = match receipt.outcome {
        ReceiptOutcome::InProgress => {
            return Ok((StatusCode::OK, axum::Json(json!({"status": "ignored"}))).into_response());
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
    // Not recorded (yet): a non-2xx lets providers that retry webhooks try again later.
    let Some((message_id, tenant_id, _)) = found else {
        return Err(ApiError::not_found("message"));
    };
    let now_status = store_messages::apply_receipt(
        &state.pool,
        message_id,
        &tenant_id,
        provider_id,
        event_kind.as_str(),
        status.map(|s| s.as_str()),
        &receipt_id,
        json!({"receipt_id": receipt_id, "provider_status": receipt.detail}),
    )
    .await
    .map_err(|e| ApiError::database("apply receipt", e))?;
    Ok((
        StatusCode::OK,
        axum::Json(json!({"message_id": message_id, "status": now_status})),
    )
        .into_response())
}
