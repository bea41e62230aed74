//! Resend's delivery webhooks: Svix signature verification and the mapping of Resend's event
//! types to the receipt outcomes the service records.
//!
//! Svix signs `{svix-id}.{svix-timestamp}.{raw body}` with HMAC-SHA256 under the base64 key
//! that follows `whsec_` in the endpoint's signing secret, and sends the base64 signature(s) in
//! `svix-signature` as space-separated `v1,<sig>` entries (several during a secret rotation).

use base64::Engine;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::{DecodePaddingMode, general_purpose};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use subtle::{Choice, ConstantTimeEq};

use serde_json::Map;

use super::ResendConfig;
use crate::providers::description::typed_config;
use crate::providers::{
    Receipt, ReceiptOutcome, ReceiptRequest, VerifiedReceipt, WebhookError, receipt_secret,
};

/// The registry's receipt entry: the Svix signature with the configured webhook secret, then
/// the event (deduplicated by `svix-id`; events about anything but delivery are ignored).
pub fn receipts(
    request: &ReceiptRequest<'_>,
    config: &Map<String, Value>,
) -> Result<Vec<VerifiedReceipt>, WebhookError> {
    let config: ResendConfig =
        typed_config(config).map_err(|_| WebhookError::NotConfigured("webhook_secret"))?;
    verify_webhook(
        receipt_secret(config.webhook_secret.as_ref(), "webhook_secret")?,
        request.header("svix-id"),
        request.header("svix-timestamp"),
        request.header("svix-signature"),
        request.body,
        request.now,
    )?;
    Ok(event_receipt(request.body)?
        .map(|receipt| VerifiedReceipt {
            receipt,
            receipt_id: request.header("svix-id").to_owned(),
            message_id: None,
        })
        .into_iter()
        .collect())
}

/// How far `svix-timestamp` may be from now, either way (Svix's own tolerance).
pub const TIMESTAMP_TOLERANCE_SECS: u64 = 5 * 60;

/// Standard base64 that accepts keys and signatures with or without padding.
const LENIENT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Verifies a Resend (Svix) webhook delivery.
///
/// `secret` is the endpoint's signing secret (`whsec_…`); the three header values are passed as
/// received (an absent header as `""`); `body` is the raw request body, before any JSON
/// parsing; `now_unix` is the current time in seconds.
///
/// Missing headers → [`WebhookError::MissingSignature`]; a timestamp that is not a number →
/// [`WebhookError::Malformed`]; more than five minutes from `now_unix` either way →
/// [`WebhookError::Stale`]; no `v1` entry matching (each compared in constant time), or an
/// unusable secret → [`WebhookError::BadSignature`].
pub fn verify_webhook(
    secret: &str,
    svix_id: &str,
    svix_timestamp: &str,
    svix_signature: &str,
    body: &[u8],
    now_unix: i64,
) -> Result<(), WebhookError> {
    if svix_id.trim().is_empty()
        || svix_timestamp.trim().is_empty()
        || svix_signature.trim().is_empty()
    {
        return Err(WebhookError::MissingSignature);
    }
    let timestamp: i64 = svix_timestamp
        .trim()
        .parse()
        .map_err(|_| WebhookError::Malformed("svix-timestamp is not a unix time".into()))?;
    if now_unix.abs_diff(timestamp) > TIMESTAMP_TOLERANCE_SECS {
        return Err(WebhookError::Stale);
    }
    let key = signing_key(secret).ok_or(WebhookError::BadSignature)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).map_err(|_| WebhookError::BadSignature)?;
    mac.update(svix_id.as_bytes());
    mac.update(b".");
    mac.update(svix_timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    let expected = mac.finalize().into_bytes();

    // Every candidate is compared, so the time taken does not tell which one matched.
    let mut matched = Choice::from(0);
    for entry in svix_signature.split_whitespace() {
        let Some(("v1", signature)) = entry.split_once(',') else {
            continue;
        };
        if let Ok(candidate) = LENIENT_BASE64.decode(signature) {
            matched |= candidate.as_slice().ct_eq(expected.as_slice());
        }
    }
    if bool::from(matched) {
        Ok(())
    } else {
        Err(WebhookError::BadSignature)
    }
}

/// The HMAC key: the base64 after `whsec_` (a bare base64 secret is accepted too).
fn signing_key(secret: &str) -> Option<Vec<u8>> {
    let encoded = secret.trim();
    let encoded = encoded.strip_prefix("whsec_").unwrap_or(encoded);
    let key = LENIENT_BASE64
        .decode(encoded)
        .or_else(|_| general_purpose::URL_SAFE_NO_PAD.decode(encoded))
        .ok()?;
    (!key.is_empty()).then_some(key)
}

/// Parses a verified Resend event into a receipt.
///
/// | Resend event | outcome |
/// |---|---|
/// | `email.sent`, `email.delivery_delayed`, `email.scheduled` | in progress |
/// | `email.delivered` | delivered |
/// | `email.bounced` | bounced |
/// | `email.complained` | complained |
/// | `email.failed`, `email.suppressed` | undelivered |
///
/// Events that say nothing about delivery (`email.opened`, `email.clicked`, `email.received`,
/// `contact.*`, `domain.*`, unknown types) are refused as [`WebhookError::Malformed`]; a
/// webhook handler that wants to acknowledge and ignore them uses [`event_receipt`].
pub fn parse_event(body: &[u8]) -> Result<Receipt, WebhookError> {
    let event: Value = serde_json::from_slice(body)
        .map_err(|_| WebhookError::Malformed("body is not JSON".into()))?;
    let kind = event_type(&event)?;
    receipt_of(&event, kind)?.ok_or_else(|| {
        WebhookError::Malformed(format!(
            "event type {} carries no delivery receipt",
            safe_token(kind)
        ))
    })
}

/// Like [`parse_event`], but answers `Ok(None)` for a well-formed event that carries no
/// delivery receipt, so the handler can answer 2xx and Resend stops redelivering it.
pub fn event_receipt(body: &[u8]) -> Result<Option<Receipt>, WebhookError> {
    let event: Value = serde_json::from_slice(body)
        .map_err(|_| WebhookError::Malformed("body is not JSON".into()))?;
    let kind = event_type(&event)?;
    receipt_of(&event, kind)
}

fn event_type(event: &Value) -> Result<&str, WebhookError> {
    event
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| WebhookError::Malformed("type is missing".into()))
}

fn receipt_of(event: &Value, kind: &str) -> Result<Option<Receipt>, WebhookError> {
    let outcome = match kind {
        "email.sent" | "email.delivery_delayed" | "email.scheduled" => ReceiptOutcome::InProgress,
        "email.delivered" => ReceiptOutcome::Delivered,
        "email.bounced" => ReceiptOutcome::Bounced,
        "email.complained" => ReceiptOutcome::Complained,
        "email.failed" | "email.suppressed" => ReceiptOutcome::Undelivered,
        _ => return Ok(None),
    };
    let data = event.get("data");
    let email_id = data
        .and_then(|d| d.get("email_id"))
        .and_then(Value::as_str)
        .filter(|id| !id.trim().is_empty())
        .ok_or_else(|| WebhookError::Malformed("data.email_id is missing".into()))?;
    Ok(Some(Receipt {
        provider_message_id: email_id.to_owned(),
        outcome,
        detail: Some(detail_of(kind, data)),
    }))
}

/// The event type plus the provider's own classification (bounce type and sub-type, failure
/// reason), never the bounce message, which can quote the recipient's mail server at length.
fn detail_of(kind: &str, data: Option<&Value>) -> String {
    let field = |outer: &str, inner: &str| {
        data.and_then(|d| d.get(outer))
            .and_then(|o| o.get(inner))
            .and_then(Value::as_str)
            .map(safe_token)
            .filter(|s| !s.is_empty())
    };
    let extra: Vec<String> = [
        field("bounce", "type"),
        field("bounce", "subType"),
        field("failed", "reason"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if extra.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}: {}", extra.join("/"))
    }
}

/// Keeps a provider-supplied token short and printable.
fn safe_token(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ' '))
        .take(64)
        .collect()
}
