//! The `twilio` adapter (SMS). This file owns everything the service knows about Twilio's
//! Programmable Messaging REST API:
//!
//! - sending: `POST {base}/2010-04-01/Accounts/{AccountSid}/Messages.json`, HTTP Basic auth
//!   (`account_sid:auth_token`, or `api_key_sid:api_key_secret` when both are configured),
//!   form fields `To`, `From` or `MessagingServiceSid`, `Body`, and `StatusCallback` when the
//!   worker asks for receipts; the returned `sid` becomes the provider message id;
//! - the credentials check: `GET {base}/2010-04-01/Accounts/{AccountSid}.json` (fetch Account);
//! - the classification of Twilio's errors (see `class_for_code` for the table);
//! - the two helpers the webhook endpoint needs for status callbacks: [`verify_signature`]
//!   (`X-Twilio-Signature`) and [`parse_status_callback`].
//!
//! Twilio takes no idempotency key: a retry after a timeout whose request did reach Twilio
//! can send the SMS twice. That is the price of at-least-once delivery with this provider.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::{Map, Value};
use sha1::Sha1;
use subtle::ConstantTimeEq;

use super::{
    CheckReport, ErrorClass, OutboundMessage, Provider, ProviderContext, ProviderError,
    ProviderKind, Receipt, ReceiptOutcome, SendReceipt, WebhookError, factory::BuildError,
    retry_after_seconds,
};
use crate::domain::Recipient;

/// Provider messages stored in events are cut to this many characters.
const MAX_ERROR_CHARS: usize = 300;

/// Who the message is sent from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Sender {
    /// `From`: a Twilio number, short code or alphanumeric sender ID.
    From(String),
    /// `MessagingServiceSid`: Twilio picks the sender from the service's pool. Preferred when
    /// both are configured, since the service also handles compliance and sender selection.
    MessagingService(String),
}

/// One configured Twilio account.
pub struct TwilioProvider {
    http: reqwest::Client,
    account_sid: String,
    /// Basic-auth user: the account SID or an API key SID.
    auth_user: String,
    /// Basic-auth password: the auth token or an API key secret.
    auth_secret: String,
    /// Every secret of this configuration, scrubbed from provider messages.
    secrets: Vec<String>,
    sender: Sender,
    messages_url: String,
    account_url: String,
}

/// Secrets stay out of `Debug`.
impl std::fmt::Debug for TwilioProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TwilioProvider")
            .field("account_sid", &self.account_sid)
            .field("auth_user", &self.auth_user)
            .field("auth_secret", &"****")
            .field("sender", &self.sender)
            .field("messages_url", &self.messages_url)
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
    field(config, name).ok_or_else(|| BuildError(format!("twilio: {name} is required")))
}

/// Builds the adapter from the whole decrypted configuration (validated by `kinds`).
pub fn build(
    config: &Map<String, Value>,
    ctx: &ProviderContext,
) -> Result<Arc<dyn Provider>, BuildError> {
    Ok(Arc::new(TwilioProvider::from_config(config, ctx)?))
}

impl TwilioProvider {
    pub fn from_config(
        config: &Map<String, Value>,
        ctx: &ProviderContext,
    ) -> Result<TwilioProvider, BuildError> {
        let account_sid = required(config, "account_sid")?;
        // The SID is a path segment of every URL: keep it to what Twilio SIDs are made of
        // (`AC` + 32 hex digits), so a stray `/`, `?` or `..` cannot reshape the request.
        if !account_sid.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(BuildError(
                "twilio: account_sid must contain only letters and digits (AC…)".into(),
            ));
        }
        let auth_token = required(config, "auth_token")?;
        let mut secrets = vec![auth_token.to_string()];
        let (auth_user, auth_secret) = match (
            field(config, "api_key_sid"),
            field(config, "api_key_secret"),
        ) {
            (Some(key_sid), Some(key_secret)) => {
                secrets.push(key_secret.to_string());
                (key_sid, key_secret)
            }
            (None, None) => (account_sid, auth_token),
            _ => {
                return Err(BuildError(
                    "twilio: api_key_sid and api_key_secret go together".into(),
                ));
            }
        };
        let sender = match (
            field(config, "messaging_service_sid"),
            field(config, "from"),
        ) {
            (Some(service), _) => Sender::MessagingService(service.to_string()),
            (None, Some(from)) => Sender::From(from.to_string()),
            (None, None) => {
                return Err(BuildError(
                    "twilio: either from or messaging_service_sid is required".into(),
                ));
            }
        };
        let base = ctx.bases.twilio.trim_end_matches('/');
        Ok(TwilioProvider {
            http: ctx.http.clone(),
            account_sid: account_sid.to_string(),
            auth_user: auth_user.to_string(),
            auth_secret: auth_secret.to_string(),
            secrets,
            sender,
            messages_url: format!("{base}/2010-04-01/Accounts/{account_sid}/Messages.json"),
            account_url: format!("{base}/2010-04-01/Accounts/{account_sid}.json"),
        })
    }

    /// Turns a non-2xx answer into a classified error. `body_text` is the SMS text being sent,
    /// scrubbed from the provider's message like the secrets.
    fn failure(
        &self,
        status: StatusCode,
        retry_after: Option<Duration>,
        response_body: &str,
        body_text: Option<&str>,
    ) -> ProviderError {
        let parsed = serde_json::from_str::<TwilioErrorBody>(response_body).ok();
        let code = parsed.as_ref().and_then(|e| e.code_number());
        let class = code
            .and_then(class_for_code)
            .unwrap_or_else(|| class_for_status(status));
        let class = match class {
            ErrorClass::Transient { .. } => ErrorClass::Transient { retry_after },
            other => other,
        };
        let detail = parsed
            .as_ref()
            .and_then(|e| e.message.as_deref())
            .map(|m| scrub(m, &self.secrets, body_text))
            .filter(|m| !m.is_empty());
        let mut message = format!("twilio: HTTP {}", status.as_u16());
        if let Some(code) = code {
            message.push_str(&format!(", error {code}"));
        }
        if let Some(detail) = detail {
            message.push_str(": ");
            message.push_str(&detail);
        }
        let error = ProviderError {
            class,
            message,
            code: None,
            outcome_unknown: false,
        };
        match code {
            Some(code) => error.with_code(code.to_string()),
            None => error,
        }
    }
}

/// Twilio's error body: `{code, message, more_info, status}`.
#[derive(Debug, Deserialize)]
struct TwilioErrorBody {
    #[serde(default)]
    code: Option<Value>,
    #[serde(default)]
    message: Option<String>,
}

impl TwilioErrorBody {
    fn code_number(&self) -> Option<u64> {
        match self.code.as_ref()? {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
    }
}

/// The part of the created Message we keep.
#[derive(Debug, Deserialize)]
struct CreatedMessage {
    #[serde(default)]
    sid: Option<String>,
}

/// The part of the fetched Account we read (the response also carries the auth token: it is
/// deliberately not deserialized).
#[derive(Debug, Deserialize)]
struct AccountBody {
    #[serde(default)]
    status: Option<String>,
    #[serde(default, rename = "type")]
    account_type: Option<String>,
}

/// How Twilio's documented REST error codes are handled. Codes not listed fall back to the
/// HTTP status (`class_for_status`).
///
/// | code  | meaning (Twilio error dictionary)                               | class               |
/// |-------|-----------------------------------------------------------------|---------------------|
/// | 20003 | authentication failed (wrong SID/token, revoked API key)        | provider-permanent  |
/// | 20005 | account not active                                              | provider-permanent  |
/// | 20008 | resource not accessible with test credentials                   | provider-permanent  |
/// | 20404 | resource not found (wrong account SID)                          | provider-permanent  |
/// | 20429 | too many requests (never processed, safe to retry)              | transient           |
/// | 20500 | internal server error                                           | transient           |
/// | 20503 | service unavailable                                             | transient           |
/// | 21211 | invalid `To` phone number                                       | recipient-permanent |
/// | 21212 | invalid `From` phone number                                     | provider-permanent  |
/// | 21268 | `To` is a premium-rate / information-service number             | recipient-permanent |
/// | 21408 | geo permission for the destination region not enabled (account) | provider-permanent  |
/// | 21602 | message body is required                                        | provider-permanent  |
/// | 21603 | `From` is required                                              | provider-permanent  |
/// | 21606 | `From` is not a message-capable Twilio number for the destination | provider-permanent |
/// | 21608 | trial account: `To` is not a verified number                    | provider-permanent  |
/// | 21610 | recipient unsubscribed (replied STOP)                           | recipient-permanent |
/// | 21611 | `From` has too many queued messages                             | transient           |
/// | 21612 | `To` is not reachable via SMS (To/From cannot be connected)     | recipient-permanent |
/// | 21614 | `To` is not a valid mobile number (landline, …)                 | recipient-permanent |
/// | 21617 | body exceeds Twilio's 1600-character limit                      | provider-permanent  |
/// | 21659 | `From` is not a Twilio number                                   | provider-permanent  |
/// | 21660 | `From` does not belong to this account                          | provider-permanent  |
/// | 21661 | `From` is not SMS-capable                                       | provider-permanent  |
///
/// Choices made on purpose:
/// - 21408 and 21608 read like recipient problems but are limits of *this* Twilio account
///   (geo permissions, trial verification list): the recipient is fine and another provider
///   can reach them, so they fail over instead of failing the message.
/// - 21602 and 21617 are about the text; its length is capped at intake, so reaching Twilio
///   with them means Twilio's own limit differs, and another provider may still take it.
/// - 30xxx codes (carrier filtering 30007, unreachable handset 30003, …) are delivery-time
///   codes: they arrive in status callbacks, never in the create response, and end up in the
///   receipt detail via [`parse_status_callback`].
fn class_for_code(code: u64) -> Option<ErrorClass> {
    let transient = ErrorClass::Transient { retry_after: None };
    let class = match code {
        20429 | 20500 | 20503 | 21611 => transient,
        21211 | 21268 | 21610 | 21612 | 21614 => ErrorClass::RecipientPermanent,
        20003 | 20005 | 20008 | 20404 | 21212 | 21408 | 21602 | 21603 | 21606 | 21608 | 21617
        | 21659 | 21660 | 21661 => ErrorClass::ProviderPermanent,
        _ => return None,
    };
    Some(class)
}

/// The fallback when Twilio gave no code we know: 429 and 5xx are worth retrying, any other
/// refusal is taken as a problem of this provider's configuration (fail over, do not fail the
/// message on a guess).
fn class_for_status(status: StatusCode) -> ErrorClass {
    if status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
    {
        ErrorClass::Transient { retry_after: None }
    } else if status.is_client_error() {
        ErrorClass::ProviderPermanent
    } else {
        // 1xx/3xx where a 2xx was expected: something in between misbehaved.
        ErrorClass::Transient { retry_after: None }
    }
}

/// Makes a provider's message safe to store: no secrets, no message text, no control
/// characters, bounded length. Redaction happens before truncation so no prefix of a secret
/// survives.
fn scrub(text: &str, secrets: &[String], body_text: Option<&str>) -> String {
    let mut out = text.to_string();
    for secret in secrets {
        if secret.len() >= 4 {
            out = out.replace(secret.as_str(), "[redacted]");
        }
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

#[async_trait]
impl Provider for TwilioProvider {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Twilio
    }

    async fn send(&self, message: &OutboundMessage<'_>) -> Result<SendReceipt, ProviderError> {
        let Recipient::Phone(to) = message.to else {
            return Err(ProviderError::recipient(
                "twilio: sends SMS only, and the recipient is not a phone number",
            ));
        };
        let Some(body) = message
            .content
            .text
            .as_deref()
            .filter(|t| !t.trim().is_empty())
        else {
            return Err(ProviderError::recipient("twilio: the SMS has no text"));
        };
        let mut form: Vec<(&str, &str)> = Vec::with_capacity(4);
        form.push(("To", to.as_str()));
        match &self.sender {
            Sender::From(from) => form.push(("From", from)),
            Sender::MessagingService(sid) => form.push(("MessagingServiceSid", sid)),
        }
        form.push(("Body", body));
        if let Some(callback) = message.status_callback.as_deref() {
            form.push(("StatusCallback", callback));
        }

        let response = self
            .http
            .post(&self.messages_url)
            .basic_auth(&self.auth_user, Some(&self.auth_secret))
            .form(&form)
            .send()
            .await
            .map_err(|e| ProviderError::from_transport("twilio", &e))?;
        let status = response.status();
        let retry_after = retry_after_seconds(response.headers());
        if status.is_success() {
            // Twilio accepted the message. Failing to read its id must not turn into a retry
            // (that would send the SMS twice): record the send without an id instead.
            let sid = match response.json::<CreatedMessage>().await {
                Ok(created) => created.sid.filter(|s| !s.is_empty()),
                Err(_) => None,
            };
            if sid.is_none() {
                tracing::warn!(
                    message_id = %message.id,
                    "twilio accepted the message but its sid could not be read"
                );
            }
            return Ok(SendReceipt {
                provider_message_id: sid,
            });
        }
        let text = response.text().await.unwrap_or_default();
        Err(self.failure(status, retry_after, &text, Some(body)))
    }

    async fn check(&self) -> Result<CheckReport, ProviderError> {
        let response = self
            .http
            .get(&self.account_url)
            .basic_auth(&self.auth_user, Some(&self.auth_secret))
            .send()
            .await
            .map_err(|e| ProviderError::from_transport("twilio", &e))?;
        let status = response.status();
        let retry_after = retry_after_seconds(response.headers());
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            return Err(self.failure(status, retry_after, &text, None));
        }
        let account = response
            .json::<AccountBody>()
            .await
            .map_err(|_| ProviderError::transient("twilio: account could not be read"))?;
        let sid = &self.account_sid;
        match account.status.as_deref() {
            Some("active") => {
                let kind = account
                    .account_type
                    .as_deref()
                    .map(|t| format!(" ({t} account)"))
                    .unwrap_or_default();
                Ok(CheckReport {
                    detail: format!("twilio account {sid} is active{kind}"),
                })
            }
            Some(other) => {
                // `suspended` or `closed`: nothing can be sent through this account.
                let other: String = other
                    .chars()
                    .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .take(32)
                    .collect();
                Err(
                    ProviderError::provider(format!("twilio: account {sid} is {other}"))
                        .with_code(format!("account_{other}")),
                )
            }
            None => Err(ProviderError::provider(format!(
                "twilio: account {sid} reported no status"
            ))),
        }
    }
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
