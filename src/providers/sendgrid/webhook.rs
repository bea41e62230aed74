//! SendGrid's signed Event Webhook: ECDSA (P-256, SHA-256) verification and the mapping of
//! SendGrid's delivery events to receipts.
//!
//! SendGrid signs the bytes of `X-Twilio-Email-Event-Webhook-Timestamp` followed by the raw
//! body, and sends the base64 DER signature in `X-Twilio-Email-Event-Webhook-Signature`. The
//! verification key (`webhook_public_key` on the provider) is the base64 DER public key that
//! SendGrid shows when signed event webhooks are enabled. One request carries a JSON array of
//! events, possibly for many messages.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey;
use serde_json::Value;

use serde_json::Map;

use super::SendgridConfig;
use crate::providers::description::typed_config;
use crate::providers::{Receipt, ReceiptOutcome, ReceiptRequest, VerifiedReceipt, WebhookError};

/// The registry's receipt entry: the ECDSA signature with the configured verification key,
/// then every tracked event of the batch.
pub fn receipts(
    request: &ReceiptRequest<'_>,
    config: &Map<String, Value>,
) -> Result<Vec<VerifiedReceipt>, WebhookError> {
    let config: SendgridConfig =
        typed_config(config).map_err(|_| WebhookError::NotConfigured("webhook_public_key"))?;
    let key = config
        .webhook_public_key
        .as_deref()
        .filter(|k| !k.is_empty())
        .ok_or(WebhookError::NotConfigured("webhook_public_key"))?;
    verify(
        key,
        request.header("x-twilio-email-event-webhook-signature"),
        request.header("x-twilio-email-event-webhook-timestamp"),
        request.body,
        request.now,
    )?;
    Ok(parse_events(request.body)?
        .into_iter()
        .map(|(receipt, receipt_id)| VerifiedReceipt {
            receipt,
            receipt_id,
            message_id: None,
        })
        .collect())
}

/// How far the signed timestamp may be from now, either way.
pub const TIMESTAMP_TOLERANCE_SECS: u64 = 5 * 60;

/// Verifies a SendGrid Event Webhook request.
pub fn verify(
    public_key_base64: &str,
    signature_base64: &str,
    timestamp: &str,
    body: &[u8],
    now_unix: i64,
) -> Result<(), WebhookError> {
    if signature_base64.trim().is_empty() || timestamp.trim().is_empty() {
        return Err(WebhookError::MissingSignature);
    }
    let at: i64 = timestamp.trim().parse().map_err(|_| {
        WebhookError::Malformed("X-Twilio-Email-Event-Webhook-Timestamp is not a unix time".into())
    })?;
    if now_unix.abs_diff(at) > TIMESTAMP_TOLERANCE_SECS {
        return Err(WebhookError::Stale);
    }
    let key_der = STANDARD
        .decode(public_key_base64.trim())
        .map_err(|_| WebhookError::BadSignature)?;
    let key =
        VerifyingKey::from_public_key_der(&key_der).map_err(|_| WebhookError::BadSignature)?;
    let signature = STANDARD
        .decode(signature_base64.trim())
        .ok()
        .and_then(|der| Signature::from_der(&der).ok())
        .ok_or(WebhookError::BadSignature)?;
    let mut signed = Vec::with_capacity(timestamp.len() + body.len());
    signed.extend_from_slice(timestamp.as_bytes());
    signed.extend_from_slice(body);
    key.verify(&signed, &signature)
        .map_err(|_| WebhookError::BadSignature)
}

/// Our stored id is SendGrid's `X-Message-Id`; events carry `sg_message_id`, which is that id
/// followed by `.filter…` (or `.recvd-…`) routing suffixes.
fn base_message_id(sg_message_id: &str) -> &str {
    [".filter", ".recvd-", ".ismtpd"]
        .iter()
        .filter_map(|marker| sg_message_id.find(marker))
        .min()
        .map_or(sg_message_id, |at| &sg_message_id[..at])
}

/// The receipts in one request, each with its event id for deduplication. Events the service
/// does not track (opens, clicks, unsubscribes, processed) are left out.
pub fn parse_events(body: &[u8]) -> Result<Vec<(Receipt, String)>, WebhookError> {
    let events: Vec<Value> = serde_json::from_slice(body)
        .map_err(|_| WebhookError::Malformed("the body is not a JSON array of events".into()))?;
    let mut receipts = Vec::new();
    for (i, event) in events.iter().enumerate() {
        let name = event
            .get("event")
            .and_then(Value::as_str)
            .ok_or_else(|| WebhookError::Malformed(format!("event {i} has no `event`")))?;
        let outcome = match name {
            "delivered" => ReceiptOutcome::Delivered,
            "deferred" => ReceiptOutcome::InProgress,
            "bounce" => match event.get("type").and_then(Value::as_str) {
                // "blocked": the receiving server refused it for now (reputation, content).
                Some("blocked") => ReceiptOutcome::Undelivered,
                _ => ReceiptOutcome::Bounced,
            },
            "dropped" => ReceiptOutcome::Undelivered,
            "spamreport" => ReceiptOutcome::Complained,
            _ => continue,
        };
        let Some(sg_message_id) = event
            .get("sg_message_id")
            .and_then(Value::as_str)
            .filter(|s| !s.trim().is_empty())
        else {
            return Err(WebhookError::Malformed(format!(
                "event {i} has no sg_message_id"
            )));
        };
        let event_id = event
            .get("sg_event_id")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| format!("{sg_message_id}:{name}"));
        let detail = match event.get("status").and_then(Value::as_str) {
            Some(status) => format!("{name} {status}"),
            None => name.to_owned(),
        };
        receipts.push((
            Receipt {
                provider_message_id: base_message_id(sg_message_id).to_owned(),
                outcome,
                detail: Some(detail),
            },
            event_id,
        ));
    }
    Ok(receipts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::SigningKey;
    use p256::ecdsa::signature::Signer;
    use p256::pkcs8::EncodePublicKey;
    use serde_json::json;

    fn keys() -> (SigningKey, String) {
        let signing = SigningKey::from_slice(&[7u8; 32]).expect("key");
        let public = signing.verifying_key().to_public_key_der().expect("der");
        (signing, STANDARD.encode(public.as_bytes()))
    }

    fn sign(key: &SigningKey, timestamp: &str, body: &[u8]) -> String {
        let mut signed = timestamp.as_bytes().to_vec();
        signed.extend_from_slice(body);
        let signature: Signature = key.sign(&signed);
        STANDARD.encode(signature.to_der().as_bytes())
    }

    #[test]
    fn a_signed_body_verifies_and_tampering_staleness_or_another_key_do_not() {
        let (key, public) = keys();
        let now = 1_764_000_000_i64;
        let ts = now.to_string();
        let body =
            br#"[{"event":"delivered","sg_message_id":"abc.filter0001.1.2","sg_event_id":"e1"}]"#;
        let sig = sign(&key, &ts, body);
        assert_eq!(verify(&public, &sig, &ts, body, now), Ok(()));
        let mut tampered = body.to_vec();
        tampered[3] = b'E';
        assert_eq!(
            verify(&public, &sig, &ts, &tampered, now),
            Err(WebhookError::BadSignature)
        );
        let (_, other_public) = {
            let other = SigningKey::from_slice(&[9u8; 32]).expect("key");
            let der = other.verifying_key().to_public_key_der().expect("der");
            ((), STANDARD.encode(der.as_bytes()))
        };
        assert_eq!(
            verify(&other_public, &sig, &ts, body, now),
            Err(WebhookError::BadSignature)
        );
        let old = (now - 3600).to_string();
        let old_sig = sign(&key, &old, body);
        assert_eq!(
            verify(&public, &old_sig, &old, body, now),
            Err(WebhookError::Stale)
        );
        assert_eq!(
            verify(&public, "", &ts, body, now),
            Err(WebhookError::MissingSignature)
        );
        assert_eq!(
            verify("not a key", &sig, &ts, body, now),
            Err(WebhookError::BadSignature)
        );
    }

    #[test]
    fn events_map_to_receipts_with_the_x_message_id() {
        let body = serde_json::to_vec(&json!([
            {"event": "processed", "sg_message_id": "m1.filter0001.16648.5515E0B88.0", "sg_event_id": "p"},
            {"event": "delivered", "sg_message_id": "m1.filter0001.16648.5515E0B88.0", "sg_event_id": "d"},
            {"event": "bounce", "type": "bounce", "status": "5.1.1", "sg_message_id": "m2.filter0002.1.2.0", "sg_event_id": "b"},
            {"event": "bounce", "type": "blocked", "sg_message_id": "m3", "sg_event_id": "k"},
            {"event": "dropped", "sg_message_id": "m4.filter1", "sg_event_id": "x"},
            {"event": "spamreport", "sg_message_id": "m5.filter1", "sg_event_id": "s"},
            {"event": "open", "sg_message_id": "m1.filter1", "sg_event_id": "o"}
        ]))
        .expect("json");
        let receipts = parse_events(&body).expect("ok");
        let got: Vec<(&str, ReceiptOutcome, &str)> = receipts
            .iter()
            .map(|(r, id)| (r.provider_message_id.as_str(), r.outcome, id.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("m1", ReceiptOutcome::Delivered, "d"),
                ("m2", ReceiptOutcome::Bounced, "b"),
                ("m3", ReceiptOutcome::Undelivered, "k"),
                ("m4", ReceiptOutcome::Undelivered, "x"),
                ("m5", ReceiptOutcome::Complained, "s"),
            ]
        );
        assert!(matches!(
            parse_events(br#"{"event":"delivered"}"#),
            Err(WebhookError::Malformed(_))
        ));
    }
}
