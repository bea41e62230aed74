//! Vonage SMS delivery receipts (DLRs), accepted only when signed.
//!
//! With signed webhooks enabled on the Vonage account, every DLR carries `timestamp`, `nonce`
//! and `sig`. The signature is computed over the other parameters sorted by name, written as
//! `&name=value` one after another, with any `&` or `=` inside a value replaced by `_`; for the
//! HMAC methods that string is keyed with the account's signature secret and the digest is
//! sent in upper-case hex. This service accepts HMAC-SHA256 (the default) and HMAC-SHA512, set
//! on the provider as `signature_method`; the secret is `signature_secret`.

use hmac::{Hmac, Mac};
use sha2::{Sha256, Sha512};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use serde_json::{Map, Value};

use super::VonageConfig;
use crate::providers::description::typed_config;
use crate::providers::{
    Receipt, ReceiptOutcome, ReceiptRequest, VerifiedReceipt, WebhookError, receipt_secret,
};

/// How far the signed `timestamp` may be from now, either way.
pub const TIMESTAMP_TOLERANCE_SECS: u64 = 5 * 60;

/// The string Vonage signs.
fn signing_string(params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().filter(|(k, _)| k != "sig").collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = String::new();
    for (name, value) in sorted {
        out.push('&');
        out.push_str(name);
        out.push('=');
        out.push_str(&value.replace(['&', '='], "_"));
    }
    out
}

/// The signature Vonage would send for these parameters.
pub fn sign(method: &str, secret: &str, params: &[(String, String)]) -> Option<String> {
    let data = signing_string(params);
    let digest = match method {
        "sha256" | "" => {
            let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).ok()?;
            mac.update(data.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
        "sha512" => {
            let mut mac = Hmac::<Sha512>::new_from_slice(secret.as_bytes()).ok()?;
            mac.update(data.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
        _ => return None,
    };
    Some(hex::encode_upper(digest))
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.trim().is_empty())
}

/// Verifies a signed DLR.
pub fn verify(
    method: &str,
    secret: &str,
    params: &[(String, String)],
    now_unix: i64,
) -> Result<(), WebhookError> {
    let (Some(given), Some(timestamp)) = (param(params, "sig"), param(params, "timestamp")) else {
        return Err(WebhookError::MissingSignature);
    };
    let at: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| WebhookError::Malformed("timestamp is not a unix time".into()))?;
    if now_unix.abs_diff(at) > TIMESTAMP_TOLERANCE_SECS {
        return Err(WebhookError::Stale);
    }
    if secret.is_empty() {
        return Err(WebhookError::BadSignature);
    }
    let expected = sign(method, secret, params).ok_or(WebhookError::BadSignature)?;
    let given = given.trim().to_ascii_uppercase();
    if bool::from(expected.as_bytes().ct_eq(given.as_bytes())) {
        Ok(())
    } else {
        Err(WebhookError::BadSignature)
    }
}

/// The receipt of a DLR, its id for deduplication, and our message id when Vonage echoed it
/// as `client-ref` (a long SMS is several parts with their own `messageId`s, and only the
/// first part's id is stored on the message).
pub fn parse_dlr(
    params: &[(String, String)],
) -> Result<(Receipt, String, Option<Uuid>), WebhookError> {
    let message_id = param(params, "messageId")
        .ok_or_else(|| WebhookError::Malformed("messageId is missing".into()))?;
    let status = param(params, "status")
        .ok_or_else(|| WebhookError::Malformed("status is missing".into()))?;
    let outcome = match status {
        "delivered" => ReceiptOutcome::Delivered,
        "expired" | "failed" | "rejected" => ReceiptOutcome::Undelivered,
        "accepted" | "buffered" | "unknown" => ReceiptOutcome::InProgress,
        other => {
            return Err(WebhookError::Malformed(format!(
                "status `{other}` is not a Vonage DLR status"
            )));
        }
    };
    let detail = match param(params, "err-code") {
        Some(code) if code != "0" => format!("{status} (err-code {code})"),
        _ => status.to_owned(),
    };
    let client_ref = param(params, "client-ref").and_then(|r| Uuid::parse_str(r).ok());
    Ok((
        Receipt {
            provider_message_id: message_id.to_owned(),
            outcome,
            detail: Some(detail),
        },
        format!("{message_id}:{status}"),
        client_ref,
    ))
}

/// The registry's receipt entry: a DLR (form-encoded or JSON, by the account's setting),
/// signed with the configured signature secret.
pub fn receipts(
    request: &ReceiptRequest<'_>,
    config: &Map<String, Value>,
) -> Result<Vec<VerifiedReceipt>, WebhookError> {
    let config: VonageConfig =
        typed_config(config).map_err(|_| WebhookError::NotConfigured("signature_secret"))?;
    let params = form_or_json_params(request)?;
    verify(
        config.signature_method.as_deref().unwrap_or(""),
        receipt_secret(config.signature_secret.as_ref(), "signature_secret")?,
        &params,
        request.now,
    )?;
    let (receipt, receipt_id, message_id) = parse_dlr(&params)?;
    Ok(vec![VerifiedReceipt {
        receipt,
        receipt_id,
        message_id,
    }])
}

/// Form-encoded or JSON parameters (Vonage sends either, depending on the account's setting).
fn form_or_json_params(
    request: &ReceiptRequest<'_>,
) -> Result<Vec<(String, String)>, WebhookError> {
    if request.header("content-type").contains("json") {
        let map: Map<String, Value> = serde_json::from_slice(request.body)
            .map_err(|_| WebhookError::Malformed("the body is not a JSON object".into()))?;
        Ok(map
            .into_iter()
            .map(|(k, v)| {
                let text = match v {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                (k, text)
            })
            .collect())
    } else {
        Ok(url::form_urlencoded::parse(request.body)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn the_signing_string_sorts_and_escapes() {
        let p = params(&[("b", "x=y&z"), ("a", "1"), ("sig", "ignored")]);
        assert_eq!(signing_string(&p), "&a=1&b=x_y_z");
    }

    #[test]
    fn a_signed_dlr_verifies_and_tampered_stale_or_unsigned_ones_do_not() {
        let now = 1_764_000_000_i64;
        let mut p = params(&[
            ("msisdn", "14155550100"),
            ("to", "Acme"),
            ("messageId", "0A0000000123ABCD1"),
            ("status", "delivered"),
            ("err-code", "0"),
            ("client-ref", "01a21302-8012-73e7-b9d7-4c678d59ca2e"),
            ("nonce", "5b8f2f52-c9a3-4b3e-8b2c-1c2d3e4f5a6b"),
        ]);
        p.push(("timestamp".into(), now.to_string()));
        let sig = sign("sha256", "vonage-sig-secret", &p).expect("sign");
        let mut signed = p.clone();
        signed.push(("sig".into(), sig.to_ascii_lowercase()));
        assert_eq!(verify("sha256", "vonage-sig-secret", &signed, now), Ok(()));
        assert_eq!(
            verify("sha512", "vonage-sig-secret", &signed, now),
            Err(WebhookError::BadSignature)
        );
        assert_eq!(
            verify("sha256", "other", &signed, now),
            Err(WebhookError::BadSignature)
        );
        let mut tampered = signed.clone();
        tampered[3].1 = "failed".into();
        assert_eq!(
            verify("sha256", "vonage-sig-secret", &tampered, now),
            Err(WebhookError::BadSignature)
        );
        assert_eq!(
            verify("sha256", "vonage-sig-secret", &signed, now + 3600),
            Err(WebhookError::Stale)
        );
        assert_eq!(
            verify("sha256", "vonage-sig-secret", &p, now),
            Err(WebhookError::MissingSignature)
        );
        let (receipt, id, client_ref) = parse_dlr(&signed).expect("dlr");
        assert_eq!(receipt.outcome, ReceiptOutcome::Delivered);
        assert_eq!(id, "0A0000000123ABCD1:delivered");
        assert!(client_ref.is_some());
    }

    #[test]
    fn statuses_map_to_outcomes() {
        let outcome = |s: &str| {
            parse_dlr(&params(&[("messageId", "m"), ("status", s)]))
                .map(|r| r.0.outcome)
                .ok()
        };
        assert_eq!(outcome("delivered"), Some(ReceiptOutcome::Delivered));
        assert_eq!(outcome("failed"), Some(ReceiptOutcome::Undelivered));
        assert_eq!(outcome("expired"), Some(ReceiptOutcome::Undelivered));
        assert_eq!(outcome("rejected"), Some(ReceiptOutcome::Undelivered));
        assert_eq!(outcome("buffered"), Some(ReceiptOutcome::InProgress));
        assert_eq!(outcome("weird"), None);
    }
}
