//! Mailgun's event webhooks: signature verification and the mapping of Mailgun's events to
//! the receipt outcomes the service records.
//!
//! Mailgun posts JSON `{"signature": {"timestamp", "token", "signature"}, "event-data": {…}}`.
//! The signature is the hex HMAC-SHA256 of `timestamp` followed by `token`, keyed with the
//! account's HTTP webhook signing key (configured on the provider as `webhook_signing_key`).

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use serde_json::Map;

use super::MailgunConfig;
use crate::providers::description::typed_config;
use crate::providers::{
    Receipt, ReceiptOutcome, ReceiptRequest, VerifiedReceipt, WebhookError, receipt_secret,
};

/// The registry's receipt entry: the signature with the configured signing key, then the
/// event.
pub fn receipts(
    request: &ReceiptRequest<'_>,
    config: &Map<String, Value>,
) -> Result<Vec<VerifiedReceipt>, WebhookError> {
    let config: MailgunConfig =
        typed_config(config).map_err(|_| WebhookError::NotConfigured("webhook_signing_key"))?;
    let key = receipt_secret(config.webhook_signing_key.as_ref(), "webhook_signing_key")?;
    let (receipt, receipt_id) = verify_and_parse(key, request.body, request.now)?;
    Ok(receipt
        .map(|receipt| VerifiedReceipt {
            receipt,
            receipt_id,
            message_id: None,
        })
        .into_iter()
        .collect())
}

/// How far the signed timestamp may be from now, either way.
pub const TIMESTAMP_TOLERANCE_SECS: u64 = 5 * 60;

fn text<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut at = value;
    for key in path {
        at = at.get(*key)?;
    }
    at.as_str().filter(|s| !s.trim().is_empty())
}

/// Verifies a Mailgun webhook body with the signing key and returns its receipt (`None` for
/// events the service does not track, like opens and clicks) and the event's id.
pub fn verify_and_parse(
    signing_key: &str,
    body: &[u8],
    now_unix: i64,
) -> Result<(Option<Receipt>, String), WebhookError> {
    let payload: Value = serde_json::from_slice(body)
        .map_err(|_| WebhookError::Malformed("the body is not JSON".into()))?;
    let (Some(timestamp), Some(token), Some(signature)) = (
        text(&payload, &["signature", "timestamp"]),
        text(&payload, &["signature", "token"]),
        text(&payload, &["signature", "signature"]),
    ) else {
        return Err(WebhookError::MissingSignature);
    };
    let at: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| WebhookError::Malformed("signature.timestamp is not a unix time".into()))?;
    if now_unix.abs_diff(at) > TIMESTAMP_TOLERANCE_SECS {
        return Err(WebhookError::Stale);
    }
    if signing_key.is_empty() {
        return Err(WebhookError::BadSignature);
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(signing_key.as_bytes())
        .map_err(|_| WebhookError::BadSignature)?;
    mac.update(timestamp.as_bytes());
    mac.update(token.as_bytes());
    let expected = hex::encode(mac.finalize().into_bytes());
    let given = signature.trim().to_ascii_lowercase();
    if !bool::from(expected.as_bytes().ct_eq(given.as_bytes())) {
        return Err(WebhookError::BadSignature);
    }
    let data = payload
        .get("event-data")
        .ok_or_else(|| WebhookError::Malformed("event-data is missing".into()))?;
    let event = text(data, &["event"])
        .ok_or_else(|| WebhookError::Malformed("event-data.event is missing".into()))?;
    let event_id = text(data, &["id"]).unwrap_or(token).to_owned();
    let outcome = match event {
        "accepted" => ReceiptOutcome::InProgress,
        "delivered" => ReceiptOutcome::Delivered,
        "failed" => match text(data, &["severity"]) {
            // Mailgun keeps retrying a temporary failure itself.
            Some("temporary") => ReceiptOutcome::InProgress,
            _ => ReceiptOutcome::Bounced,
        },
        "rejected" => ReceiptOutcome::Undelivered,
        "complained" => ReceiptOutcome::Complained,
        _ => return Ok((None, event_id)),
    };
    let message_id = text(data, &["message", "headers", "message-id"]).ok_or_else(|| {
        WebhookError::Malformed("event-data.message.headers.message-id is missing".into())
    })?;
    let code = data
        .get("delivery-status")
        .and_then(|s| s.get("code"))
        .and_then(Value::as_i64);
    let detail = match code {
        Some(code) => format!("{event} ({code})"),
        None => event.to_owned(),
    };
    Ok((
        Some(Receipt {
            provider_message_id: message_id.trim_matches(['<', '>']).to_owned(),
            outcome,
            detail: Some(detail),
        }),
        event_id,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const KEY: &str = "key-webhook-signing-0123456789";

    fn signed(event: Value, timestamp: i64, key: &str) -> Vec<u8> {
        let token = "a8ce0edb2dd8301dee6c2405235584e45aa91d1e9f979f3de0";
        let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("key");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(token.as_bytes());
        let signature = hex::encode(mac.finalize().into_bytes());
        serde_json::to_vec(&json!({
            "signature": {"timestamp": timestamp.to_string(), "token": token, "signature": signature},
            "event-data": event,
        }))
        .expect("json")
    }

    fn event(name: &str, severity: Option<&str>) -> Value {
        let mut e = json!({"id": "evt-1", "event": name, "timestamp": 1_700_000_000.5,
            "message": {"headers": {"message-id": "20261125.1@mg.acme.test"}},
            "delivery-status": {"code": 550}});
        if let Some(s) = severity {
            e["severity"] = json!(s);
        }
        e
    }

    #[test]
    fn a_signed_delivered_event_is_a_delivered_receipt() {
        let now = 1_764_000_000;
        let (receipt, id) =
            verify_and_parse(KEY, &signed(event("delivered", None), now, KEY), now).expect("ok");
        let receipt = receipt.expect("tracked");
        assert_eq!(receipt.outcome, ReceiptOutcome::Delivered);
        assert_eq!(receipt.provider_message_id, "20261125.1@mg.acme.test");
        assert_eq!(id, "evt-1");
    }

    #[test]
    fn failures_map_by_severity_and_untracked_events_are_ignored() {
        let now = 1_764_000_000;
        let outcome = |e: Value| {
            verify_and_parse(KEY, &signed(e, now, KEY), now)
                .expect("ok")
                .0
                .map(|r| r.outcome)
        };
        assert_eq!(
            outcome(event("failed", Some("permanent"))),
            Some(ReceiptOutcome::Bounced)
        );
        assert_eq!(
            outcome(event("failed", Some("temporary"))),
            Some(ReceiptOutcome::InProgress)
        );
        assert_eq!(
            outcome(event("complained", None)),
            Some(ReceiptOutcome::Complained)
        );
        assert_eq!(outcome(event("opened", None)), None);
    }

    #[test]
    fn tampered_wrong_key_unsigned_and_stale_bodies_are_refused() {
        let now = 1_764_000_000;
        let good = signed(event("delivered", None), now, KEY);
        let tampered = String::from_utf8(good.clone())
            .expect("utf8")
            .replace(&format!("\"{now}\""), &format!("\"{}\"", now + 1))
            .into_bytes();
        assert_eq!(
            verify_and_parse(KEY, &tampered, now).err(),
            Some(WebhookError::BadSignature)
        );
        assert_eq!(
            verify_and_parse("another-key", &good, now).err(),
            Some(WebhookError::BadSignature)
        );
        assert_eq!(
            verify_and_parse("", &good, now).err(),
            Some(WebhookError::BadSignature)
        );
        assert_eq!(
            verify_and_parse(KEY, &signed(event("delivered", None), now - 600, KEY), now).err(),
            Some(WebhookError::Stale)
        );
        let unsigned =
            serde_json::to_vec(&json!({"event-data": event("delivered", None)})).expect("json");
        assert_eq!(
            verify_and_parse(KEY, &unsigned, now).err(),
            Some(WebhookError::MissingSignature)
        );
        assert!(matches!(
            verify_and_parse(KEY, b"not json", now),
            Err(WebhookError::Malformed(_))
        ));
    }
}
