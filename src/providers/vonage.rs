//! The `vonage` adapter (SMS). This file owns everything the service knows about Vonage's
//! (formerly Nexmo's) SMS API:
//!
//! - sending: `POST {base}/sms/json`, form fields `api_key`, `api_secret`, `from`, `to` (the
//!   E.164 number without its `+`), `text`, plus `client-ref` (our message id, echoed in
//!   Vonage's delivery receipts) and `type=unicode` when the text does not fit the GSM-7
//!   alphabet (with the default `type=text` Vonage would garble it);
//! - reading the answer: Vonage reports failures with HTTP 200 and a per-part
//!   `messages[].status` (see `class_for_status` for the table); the first part's
//!   `message-id` becomes the provider message id;
//! - the credentials check: `GET {base}/account/get-balance?api_key=…&api_secret=…`.
//!
//! Vonage takes no idempotency key: a retry after a timeout whose request did reach Vonage
//! can send the SMS twice.
//!
//! Delivery receipts: only with `signature_secret` configured (the account's signed-webhook
//! secret, HMAC-SHA256 or `signature_method: "sha512"`) does a send carry the per-message
//! `callback` URL the worker offers, because an unsigned receipt cannot be told from a forged
//! one. The receipts are verified in `vonage/webhook.rs`.

pub mod webhook;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::{
    CheckReport, ErrorClass, OutboundMessage, Provider, ProviderContext, ProviderError,
    ProviderKind, SendReceipt, factory::BuildError, retry_after_seconds,
};
use crate::domain::Recipient;

/// Provider messages stored in events are cut to this many characters.
const MAX_ERROR_CHARS: usize = 300;

/// One configured Vonage account.
pub struct VonageProvider {
    http: reqwest::Client,
    api_key: String,
    api_secret: String,
    from: String,
    sms_url: String,
    /// Receipts are requested only when they can be verified.
    signed_receipts: bool,
    /// Parsed once: the check appends the credentials as query parameters.
    balance_url: url::Url,
}

/// The secret stays out of `Debug`.
impl std::fmt::Debug for VonageProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VonageProvider")
            .field("api_key", &self.api_key)
            .field("api_secret", &"****")
            .field("from", &self.from)
            .field("sms_url", &self.sms_url)
            .finish()
    }
}

fn field<'a>(config: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    config
        .get(name)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

fn required<'a>(config: &'a Map<String, Value>, name: &str) -> Result<&'a str, BuildError> {
    field(config, name).ok_or_else(|| BuildError(format!("vonage: {name} is required")))
}

/// Builds the adapter from the whole decrypted configuration (validated by `kinds`).
pub fn build(
    config: &Map<String, Value>,
    ctx: &ProviderContext,
) -> Result<Arc<dyn Provider>, BuildError> {
    Ok(Arc::new(VonageProvider::from_config(config, ctx)?))
}

/// Vonage wants numbers in international format without the leading `+`; an alphanumeric
/// sender ID is passed as it is.
fn sender_id(from: &str) -> String {
    match from.strip_prefix('+') {
        Some(digits) if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => {
            digits.to_string()
        }
        _ => from.to_string(),
    }
}

impl VonageProvider {
    pub fn from_config(
        config: &Map<String, Value>,
        ctx: &ProviderContext,
    ) -> Result<VonageProvider, BuildError> {
        let api_key = required(config, "api_key")?;
        let api_secret = required(config, "api_secret")?;
        let from = required(config, "from")?;
        let base = ctx.bases.vonage.trim_end_matches('/');
        let balance_url = url::Url::parse(&format!("{base}/account/get-balance"))
            .map_err(|_| BuildError("vonage: the operator's API base is not a valid URL".into()))?;
        Ok(VonageProvider {
            http: ctx.http.clone(),
            api_key: api_key.to_string(),
            api_secret: api_secret.to_string(),
            from: sender_id(from),
            sms_url: format!("{base}/sms/json"),
            signed_receipts: config
                .get("signature_secret")
                .and_then(Value::as_str)
                .is_some_and(|s| !s.is_empty()),
            balance_url,
        })
    }

    /// Makes a provider's message safe to store: no secret, no message text, no control
    /// characters, bounded length. Redaction happens before truncation.
    fn scrub(&self, text: &str, body_text: Option<&str>) -> String {
        let mut out = text.to_string();
        if self.api_secret.len() >= 4 {
            out = out.replace(self.api_secret.as_str(), "[redacted]");
        }
        if let Some(body) = body_text.map(str::trim)
            && body.chars().count() >= 4
        {
            out = out.replace(body, "[message text]");
        }
        out.chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .take(MAX_ERROR_CHARS)
            .collect::<String>()
            .trim()
            .to_string()
    }
}

/// Vonage's answer to `POST /sms/json`: one entry per SMS part.
#[derive(Debug, Deserialize)]
struct SmsResponse {
    #[serde(default)]
    messages: Vec<SmsPart>,
}

#[derive(Debug, Deserialize)]
struct SmsPart {
    /// A string in Vonage's documentation ("0"); numbers are accepted too.
    #[serde(default)]
    status: Option<Value>,
    #[serde(default, rename = "message-id")]
    message_id: Option<String>,
    #[serde(default, rename = "error-text")]
    error_text: Option<String>,
}

impl SmsPart {
    fn status_code(&self) -> Option<u64> {
        match self.status.as_ref()? {
            Value::String(s) => s.trim().parse().ok(),
            Value::Number(n) => n.as_u64(),
            _ => None,
        }
    }
}

/// Vonage's answer to `GET /account/get-balance`.
#[derive(Debug, Deserialize)]
struct Balance {
    value: f64,
    #[serde(default, rename = "autoReload")]
    auto_reload: Option<bool>,
}

/// How the documented `messages[].status` values of the SMS API are handled.
///
/// | status | Vonage's meaning                                              | class               |
/// |--------|---------------------------------------------------------------|---------------------|
/// | 0      | success (accepted for delivery)                               | —                   |
/// | 1      | throttled: faster than the account's limit                    | transient           |
/// | 2      | missing parameters                                            | provider-permanent  |
/// | 3      | invalid parameters                                            | provider-permanent  |
/// | 4      | invalid credentials                                           | provider-permanent  |
/// | 5      | internal error                                                | transient           |
/// | 6      | invalid message: cannot be routed, e.g. unrecognised number prefix | recipient-permanent |
/// | 7      | number barred: the recipient is on the barred list            | recipient-permanent |
/// | 8      | partner account barred (account suspended)                    | provider-permanent  |
/// | 9      | partner quota violation (not enough credit)                   | provider-permanent  |
/// | 10     | too many existing binds (connections)                         | transient           |
/// | 11     | account not enabled for HTTP                                  | provider-permanent  |
/// | 12     | message too long                                              | provider-permanent  |
/// | 14     | invalid signature                                             | provider-permanent  |
/// | 15     | invalid sender address (sender ID not allowed)                | provider-permanent  |
/// | 22     | invalid network code                                          | provider-permanent  |
/// | 23     | invalid callback URL                                          | provider-permanent  |
/// | 29     | non-whitelisted destination (account still in demo mode)      | provider-permanent  |
/// | 32     | signature and API secret disallowed                           | provider-permanent  |
/// | 33     | number de-activated: the recipient cannot receive messages    | recipient-permanent |
/// | other  | not documented                                                | provider-permanent  |
///
/// Choices made on purpose:
/// - 2 and 3 are problems of the request this adapter built from this configuration: `to` is
///   a validated E.164 number before it gets here, so the usual culprit is the configured
///   `from`. Another provider can still send the message, so they fail over.
/// - Only the statuses that name the *recipient* (6 unroutable number, 7 barred, 33
///   de-activated) fail the message; everything about the account, sender or request fails
///   over; 29 (demo-mode allow list) is a limit of this account, not of the recipient.
/// - 12: text length is capped at intake, so a refusal is this provider's own limit.
/// - Unknown statuses fail over rather than fail the message on a guess.
fn class_for_status(status: u64) -> ErrorClass {
    match status {
        1 | 5 | 10 => ErrorClass::Transient { retry_after: None },
        6 | 7 | 33 => ErrorClass::RecipientPermanent,
        _ => ErrorClass::ProviderPermanent,
    }
}

/// The fallback for a non-2xx HTTP answer (Vonage normally answers 200 even for errors).
fn class_for_http(status: StatusCode, retry_after: Option<Duration>) -> ErrorClass {
    if status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
    {
        ErrorClass::Transient { retry_after }
    } else if status.is_client_error() {
        ErrorClass::ProviderPermanent
    } else {
        ErrorClass::Transient { retry_after }
    }
}

/// Whether `text` fits the GSM 03.38 default alphabet (basic set plus its extension table).
fn is_gsm7(text: &str) -> bool {
    const BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?\
                         ¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
    const EXTENSION: &str = "^{}\\[~]|€\u{000C}";
    text.chars()
        .all(|c| BASIC.contains(c) || EXTENSION.contains(c))
}

#[async_trait]
impl Provider for VonageProvider {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Vonage
    }

    async fn send(&self, message: &OutboundMessage<'_>) -> Result<SendReceipt, ProviderError> {
        let Recipient::Phone(to) = message.to else {
            return Err(ProviderError::recipient(
                "vonage: sends SMS only, and the recipient is not a phone number",
            ));
        };
        let Some(body) = message
            .content
            .text
            .as_deref()
            .filter(|t| !t.trim().is_empty())
        else {
            return Err(ProviderError::recipient("vonage: the SMS has no text"));
        };
        let to = to.as_str().trim_start_matches('+');
        let client_ref = message.id.to_string();
        let mut form: Vec<(&str, &str)> = vec![
            ("api_key", &self.api_key),
            ("api_secret", &self.api_secret),
            ("from", &self.from),
            ("to", to),
            ("text", body),
            ("client-ref", &client_ref),
        ];
        if !is_gsm7(body) {
            form.push(("type", "unicode"));
        }
        if self.signed_receipts
            && let Some(callback) = message.status_callback.as_deref()
        {
            form.push(("callback", callback));
        }

        let response = self
            .http
            .post(&self.sms_url)
            .form(&form)
            .send()
            .await
            .map_err(|e| ProviderError::from_transport("vonage", &e))?;
        let status = response.status();
        let retry_after = retry_after_seconds(response.headers());
        if !status.is_success() {
            let class = class_for_http(status, retry_after);
            return Err(ProviderError {
                class,
                message: format!("vonage: HTTP {}", status.as_u16()),
                code: None,
                outcome_unknown: false,
            });
        }
        // Vonage reports refusals inside a 200, so an unreadable 200 says nothing about
        // whether the SMS was accepted; treat it as a transient failure.
        let answer = response
            .json::<SmsResponse>()
            .await
            .map_err(|_| ProviderError::transient("vonage: response could not be read"))?;
        let Some(first) = answer.messages.first() else {
            return Err(ProviderError::transient(
                "vonage: response listed no messages",
            ));
        };
        // A long text is split into parts, each with its own status; the first refused part
        // decides (parts before it may already be on their way).
        if let Some(failed) = answer
            .messages
            .iter()
            .find(|part| part.status_code() != Some(0))
        {
            let Some(code) = failed.status_code() else {
                return Err(ProviderError::transient(
                    "vonage: response carried no readable status",
                ));
            };
            let class = class_for_status(code);
            let mut text = format!("vonage: status {code}");
            if let Some(error_text) = failed.error_text.as_deref() {
                let error_text = self.scrub(error_text, Some(body));
                if !error_text.is_empty() {
                    text.push_str(": ");
                    text.push_str(&error_text);
                }
            }
            return Err(ProviderError {
                class,
                message: text,
                code: None,
                outcome_unknown: false,
            }
            .with_code(code.to_string()));
        }
        Ok(SendReceipt {
            provider_message_id: first.message_id.clone().filter(|id| !id.is_empty()),
        })
    }

    async fn check(&self) -> Result<CheckReport, ProviderError> {
        // The URL carries the secret (Vonage's documented form of this call): it is never
        // logged, and transport errors are reduced to their kind by `from_transport`.
        let mut url = self.balance_url.clone();
        url.query_pairs_mut()
            .append_pair("api_key", &self.api_key)
            .append_pair("api_secret", &self.api_secret);
        let response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| ProviderError::from_transport("vonage", &e))?;
        let status = response.status();
        let retry_after = retry_after_seconds(response.headers());
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(ProviderError::provider(format!(
                "vonage: HTTP {}: the api_key/api_secret were refused",
                status.as_u16()
            )));
        }
        if !status.is_success() {
            return Err(ProviderError {
                class: class_for_http(status, retry_after),
                message: format!("vonage: HTTP {}", status.as_u16()),
                code: None,
                outcome_unknown: false,
            });
        }
        let balance = response
            .json::<Balance>()
            .await
            .map_err(|_| ProviderError::transient("vonage: balance could not be read"))?;
        let reload = match balance.auto_reload {
            Some(true) => ", auto-reload on",
            Some(false) => ", auto-reload off",
            None => "",
        };
        Ok(CheckReport {
            detail: format!(
                "vonage account {} has a balance of {:.2}{reload}",
                self.api_key, balance.value
            ),
        })
    }
}
