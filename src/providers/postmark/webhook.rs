//! Postmark's webhooks. Postmark does not sign webhooks; it sends the HTTP Basic credentials
//! written into the webhook URL (`https://user:password@host/...`), so the credential is the
//! pair configured on the provider as `webhook_username` / `webhook_password`, compared in
//! constant time. Delivery, Bounce and SpamComplaint records map to receipts.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;
use subtle::ConstantTimeEq;

use serde_json::Map;

use super::PostmarkConfig;
use crate::providers::description::typed_config;
use crate::providers::{
    Receipt, ReceiptOutcome, ReceiptRequest, VerifiedReceipt, WebhookError, receipt_secret,
};

/// The registry's receipt entry: the webhook's Basic credentials, then the record.
pub fn receipts(
    request: &ReceiptRequest<'_>,
    config: &Map<String, Value>,
) -> Result<Vec<VerifiedReceipt>, WebhookError> {
    let config: PostmarkConfig =
        typed_config(config).map_err(|_| WebhookError::NotConfigured("webhook_username"))?;
    let username = config
        .webhook_username
        .as_deref()
        .filter(|u| !u.is_empty())
        .ok_or(WebhookError::NotConfigured("webhook_username"))?;
    let password = receipt_secret(config.webhook_password.as_ref(), "webhook_password")?;
    verify_basic_auth(username, password, request.header("authorization"))?;
    let (receipt, receipt_id) = parse_record(request.body)?;
    Ok(receipt
        .map(|receipt| VerifiedReceipt {
            receipt,
            receipt_id,
            message_id: None,
        })
        .into_iter()
        .collect())
}

/// Checks the `Authorization` header against the configured Basic credentials.
pub fn verify_basic_auth(
    username: &str,
    password: &str,
    authorization: &str,
) -> Result<(), WebhookError> {
    if username.is_empty() || password.is_empty() {
        return Err(WebhookError::BadSignature);
    }
    let Some(encoded) = authorization
        .strip_prefix("Basic ")
        .or_else(|| authorization.strip_prefix("basic "))
    else {
        return Err(WebhookError::MissingSignature);
    };
    let expected = STANDARD.encode(format!("{username}:{password}"));
    if bool::from(expected.as_bytes().ct_eq(encoded.trim().as_bytes())) {
        Ok(())
    } else {
        Err(WebhookError::BadSignature)
    }
}

/// Bounce types after which the address will not take mail: a bounce, not a temporary miss.
const HARD_BOUNCES: &[&str] = &[
    "HardBounce",
    "BadEmailAddress",
    "ManuallyDeactivated",
    "Blocked",
    "DMARCPolicy",
    "SpamNotification",
    "Unsubscribe",
];
/// Bounce types Postmark may still get past (it retries, or the box is only full for now).
const IN_PROGRESS: &[&str] = &[
    "Transient",
    "DnsError",
    "AutoResponder",
    "Challenge",
    "OpenRelayTest",
];

/// The receipt of one Postmark webhook record (`None` for records the service does not
/// track, like opens and clicks) and an id that identifies the record for deduplication.
pub fn parse_record(body: &[u8]) -> Result<(Option<Receipt>, String), WebhookError> {
    let record: Value = serde_json::from_slice(body)
        .map_err(|_| WebhookError::Malformed("the body is not JSON".into()))?;
    let kind = record
        .get("RecordType")
        .and_then(Value::as_str)
        .ok_or_else(|| WebhookError::Malformed("RecordType is missing".into()))?;
    let message_id = record
        .get("MessageID")
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty());
    let (outcome, detail) = match kind {
        "Delivery" => (ReceiptOutcome::Delivered, "Delivery".to_owned()),
        "Bounce" => {
            let bounce = record.get("Type").and_then(Value::as_str).unwrap_or("");
            let outcome = if HARD_BOUNCES.contains(&bounce) {
                ReceiptOutcome::Bounced
            } else if IN_PROGRESS.contains(&bounce) {
                ReceiptOutcome::InProgress
            } else {
                ReceiptOutcome::Undelivered
            };
            (outcome, format!("Bounce {bounce}"))
        }
        "SpamComplaint" => (ReceiptOutcome::Complained, "SpamComplaint".to_owned()),
        _ => return Ok((None, kind.to_owned())),
    };
    let message_id =
        message_id.ok_or_else(|| WebhookError::Malformed("MessageID is missing".into()))?;
    // Bounce and complaint records carry their own numeric ID; deliveries do not.
    let record_id = match record.get("ID").and_then(Value::as_i64) {
        Some(id) => format!("{kind}:{id}"),
        None => format!("{kind}:{message_id}"),
    };
    Ok((
        Some(Receipt {
            provider_message_id: message_id.to_owned(),
            outcome,
            detail: Some(detail),
        }),
        record_id,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn basic_credentials_are_checked() {
        let header = format!("Basic {}", STANDARD.encode("hooks:pa55-word"));
        assert_eq!(verify_basic_auth("hooks", "pa55-word", &header), Ok(()));
        assert_eq!(
            verify_basic_auth("hooks", "other", &header),
            Err(WebhookError::BadSignature)
        );
        assert_eq!(
            verify_basic_auth("hooks", "pa55-word", ""),
            Err(WebhookError::MissingSignature)
        );
        assert_eq!(
            verify_basic_auth("", "", &header),
            Err(WebhookError::BadSignature)
        );
    }

    #[test]
    fn records_map_to_receipts() {
        let parse = |v: Value| parse_record(&serde_json::to_vec(&v).expect("json")).expect("ok");
        let (r, id) = parse(json!({"RecordType": "Delivery", "MessageID": "pm-1",
            "Recipient": "ada@example.com", "DeliveredAt": "2026-11-25T10:00:00Z"}));
        let r = r.expect("tracked");
        assert_eq!(r.outcome, ReceiptOutcome::Delivered);
        assert_eq!(r.provider_message_id, "pm-1");
        assert_eq!(id, "Delivery:pm-1");
        let (r, id) = parse(
            json!({"RecordType": "Bounce", "ID": 4323372036854775807_i64,
            "Type": "HardBounce", "TypeCode": 1, "MessageID": "pm-1"}),
        );
        assert_eq!(r.expect("tracked").outcome, ReceiptOutcome::Bounced);
        assert_eq!(id, "Bounce:4323372036854775807");
        let (r, _) = parse(
            json!({"RecordType": "Bounce", "ID": 2, "Type": "SoftBounce", "MessageID": "pm-1"}),
        );
        assert_eq!(r.expect("tracked").outcome, ReceiptOutcome::Undelivered);
        let (r, _) = parse(
            json!({"RecordType": "Bounce", "ID": 3, "Type": "Transient", "MessageID": "pm-1"}),
        );
        assert_eq!(r.expect("tracked").outcome, ReceiptOutcome::InProgress);
        let (r, _) = parse(json!({"RecordType": "SpamComplaint", "ID": 4, "MessageID": "pm-1"}));
        assert_eq!(r.expect("tracked").outcome, ReceiptOutcome::Complained);
        let (r, _) = parse(json!({"RecordType": "Open", "MessageID": "pm-1"}));
        assert!(r.is_none());
        assert!(matches!(
            parse_record(br#"{"RecordType":"Delivery"}"#),
            Err(WebhookError::Malformed(_))
        ));
    }
}
