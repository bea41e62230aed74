//! Twilio status callbacks: the `X-Twilio-Signature` check and the reading of the callback's
//! form parameters into a receipt.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha1::Sha1;
use subtle::ConstantTimeEq;

use super::TwilioConfig;
use crate::providers::description::typed_config;
use crate::providers::{
    Receipt, ReceiptOutcome, ReceiptRequest, VerifiedReceipt, WebhookError, receipt_secret,
};

/// The registry's receipt entry: the signature over our public URL (Twilio signs the URL it
/// was given), then the callback's parameters.
pub fn receipts(
    request: &ReceiptRequest<'_>,
    config: &Map<String, Value>,
) -> Result<Vec<VerifiedReceipt>, WebhookError> {
    let Some(url) = request.public_url.as_deref() else {
        return Err(WebhookError::NoEndpoint);
    };
    let config: TwilioConfig =
        typed_config(config).map_err(|_| WebhookError::NotConfigured("auth_token"))?;
    let auth_token = receipt_secret(Some(&config.auth_token), "auth_token")?;
    let params: Vec<(String, String)> = url::form_urlencoded::parse(request.body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let signature = request.header("x-twilio-signature");
    if signature.is_empty() {
        return Err(WebhookError::MissingSignature);
    }
    if !verify_signature(auth_token, url, &params, signature) {
        return Err(WebhookError::BadSignature);
    }
    let receipt = parse_status_callback(&params)?;
    let receipt_id = format!("{}:{:?}", receipt.provider_message_id, receipt.outcome);
    Ok(vec![VerifiedReceipt {
        receipt,
        receipt_id,
        message_id: None,
    }])
}

/// Checks Twilio's `X-Twilio-Signature` of a status callback.
///
/// Twilio signs `url` (the full URL it requested, query string included) followed by every
/// POST parameter's name and value, parameters sorted by name (byte order; equal names by
/// value), with HMAC-SHA1 keyed by the account's auth token, and sends it base64-encoded.
/// The comparison is constant-time. `url` must be exactly the URL Twilio was given (the
/// `StatusCallback` we sent), not one rebuilt from proxy-rewritten request headers.
pub fn verify_signature(
    auth_token: &str,
    url: &str,
    params: &[(String, String)],
    signature_b64: &str,
) -> bool {
    let Ok(given) = BASE64.decode(signature_b64.trim()) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(auth_token.as_bytes()) else {
        return false;
    };
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    let expected = mac.finalize().into_bytes();
    expected.as_slice().ct_eq(given.as_slice()).into()
}

fn param<'a>(params: &'a [(String, String)], names: &[&str]) -> Option<&'a str> {
    names.iter().find_map(|name| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    })
}

/// Reads a Twilio status callback (form parameters, signature already verified).
///
/// `MessageSid` (or the legacy `SmsSid`) is the provider message id; `MessageStatus` (or
/// `SmsStatus`) maps as: `accepted`, `scheduled`, `queued`, `sending`, `sent`,
/// `partially_delivered` → in progress; `delivered`, `read` → delivered; `undelivered`,
/// `failed`, `canceled` → undelivered. `ErrorCode`, when present, goes into the detail.
pub fn parse_status_callback(params: &[(String, String)]) -> Result<Receipt, WebhookError> {
    let sid = param(params, &["MessageSid", "SmsSid"])
        .ok_or_else(|| WebhookError::Malformed("MessageSid is missing".into()))?;
    let status = param(params, &["MessageStatus", "SmsStatus"])
        .ok_or_else(|| WebhookError::Malformed("MessageStatus is missing".into()))?;
    let outcome = match status {
        "accepted" | "scheduled" | "queued" | "sending" | "sent" | "partially_delivered" => {
            ReceiptOutcome::InProgress
        }
        "delivered" | "read" => ReceiptOutcome::Delivered,
        "undelivered" | "failed" | "canceled" => ReceiptOutcome::Undelivered,
        other => {
            let shown: String = other.chars().take(40).collect();
            return Err(WebhookError::Malformed(format!(
                "MessageStatus {shown:?} is not an outbound message status"
            )));
        }
    };
    let mut detail = format!("twilio status {status}");
    if let Some(code) = param(params, &["ErrorCode"]) {
        let code: String = code
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(16)
            .collect();
        detail.push_str(&format!(", error {code}"));
    }
    Ok(Receipt {
        provider_message_id: sid.to_string(),
        outcome,
        detail: Some(detail),
    })
}
