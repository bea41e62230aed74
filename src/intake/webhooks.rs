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
use crate::providers::{
    Receipt, ReceiptOutcome, WebhookError, mailgun, postmark, resend, sendgrid, twilio, vonage,
};
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

/// Form-encoded or JSON parameters (Vonage sends either, depending on the account's setting).
fn form_or_json_params(
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Vec<(String, String)>, WebhookError> {
    if header(headers, "content-type").contains("json") {
        let map: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(body)
            .map_err(|_| WebhookError::Malformed("the body is not a JSON object".into()))?;
        Ok(map
            .into_iter()
            .map(|(k, v)| {
                let text = match v {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                };
                (k, text)
            })
            .collect())
    } else {
        Ok(url::form_urlencoded::parse(body)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect())
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
    let now = chrono::Utc::now().timestamp();
    let require = |name: &str| -> Result<&str, ApiError> {
        let value = secret(name);
        if value.is_empty() {
            Err(ApiError::unauthorized(format!(
                "this provider has no {name} configured"
            )))
        } else {
            Ok(value)
        }
    };
    // Each receipt with its id (for deduplication) and, where the provider echoes it, our id.
    let receipts: Vec<(Receipt, String, Option<Uuid>)> = match kind.as_str() {
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
            vec![(receipt, id, None)]
        }
        "resend" => {
            resend::verify_webhook(
                require("webhook_secret")?,
                header(&headers, "svix-id"),
                header(&headers, "svix-timestamp"),
                header(&headers, "svix-signature"),
                &body,
                now,
            )
            .map_err(refused)?;
            let receipt = resend::event_receipt(&body).map_err(refused)?;
            receipt
                .map(|r| (r, header(&headers, "svix-id").to_owned(), None))
                .into_iter()
                .collect()
        }
        "mailgun" => {
            let (receipt, id) =
                mailgun::webhook::verify_and_parse(require("webhook_signing_key")?, &body, now)
                    .map_err(refused)?;
            receipt.map(|r| (r, id, None)).into_iter().collect()
        }
        "postmark" => {
            let username = require("webhook_username")?;
            postmark::webhook::verify_basic_auth(
                username,
                require("webhook_password")?,
                header(&headers, "authorization"),
            )
            .map_err(refused)?;
            let (receipt, id) = postmark::webhook::parse_record(&body).map_err(refused)?;
            receipt.map(|r| (r, id, None)).into_iter().collect()
        }
        "sendgrid" => {
            sendgrid::webhook::verify(
                require("webhook_public_key")?,
                header(&headers, "x-twilio-email-event-webhook-signature"),
                header(&headers, "x-twilio-email-event-webhook-timestamp"),
                &body,
                now,
            )
            .map_err(refused)?;
            sendgrid::webhook::parse_events(&body)
                .map_err(refused)?
                .into_iter()
                .map(|(r, id)| (r, id, None))
                .collect()
        }
        "vonage" => {
            let params = form_or_json_params(&headers, &body).map_err(refused)?;
            vonage::webhook::verify(
                secret("signature_method"),
                require("signature_secret")?,
                &params,
                now,
            )
            .map_err(refused)?;
            let (receipt, id, ours) = vonage::webhook::parse_dlr(&params).map_err(refused)?;
            vec![(receipt, id, ours)]
        }
        _ => return Err(ApiError::not_found("webhook endpoint")),
    };
    let mut results = Vec::with_capacity(receipts.len());
    let mut missing = 0usize;
    for (receipt, receipt_id, ours) in &receipts {
        match apply(&state, provider_id, receipt, receipt_id, *ours).await? {
            Some(applied) => results.push(applied),
            None => missing += 1,
        }
    }
    // Receipts for messages not recorded (yet): a non-2xx lets providers that retry webhooks
    // try again later; the ones already applied are deduplicated by their receipt id.
    if missing > 0 {
        return Err(ApiError::not_found("message"));
    }
    match results.len() {
        0 => Ok((StatusCode::OK, axum::Json(json!({"status": "ignored"}))).into_response()),
        1 => Ok((StatusCode::OK, axum::Json(results.remove(0))).into_response()),
        _ => Ok((StatusCode::OK, axum::Json(json!({"applied": results}))).into_response()),
    }
}

/// Applies one receipt; `None` when its message is not (yet) recorded. Receipts of messages
/// still on their way are acknowledged without a status change.
async fn apply(
    state: &AppState,
    provider_id: Uuid,
    receipt: &Receipt,
    receipt_id: &str,
    our_id: Option<Uuid>,
) -> Result<Option<serde_json::Value>, ApiError> {
    let (event_kind, status) = match receipt.outcome {
        ReceiptOutcome::InProgress => {
            return Ok(Some(json!({"status": "ignored"})));
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
    Ok(Some(
        json!({"message_id": message_id, "status": now_status}),
    ))
}
