//! Sending through Twilio and checking its credentials: the request, the answer, and the
//! classification of Twilio's errors (see `class_for_code` for the table).

use async_trait::async_trait;
use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::Value;

use super::{KIND, TwilioConfig};
use crate::domain::Recipient;
use crate::providers::http::{self, Answer};
use crate::providers::scrub::scrub;
use crate::providers::{
    BuildError, CheckReport, ErrorClass, OutboundMessage, Provider, ProviderContext, ProviderError,
    ProviderKind, SendReceipt,
};

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

impl TwilioProvider {
    /// The adapter of a typed configuration; refuses what Twilio could never accept.
    pub fn new(config: TwilioConfig, ctx: &ProviderContext) -> Result<TwilioProvider, BuildError> {
        let account_sid = config.account_sid.trim().to_owned();
        // The SID is a path segment of every URL: keep it to what Twilio SIDs are made of
        // (`AC` + 32 hex digits), so a stray `/`, `?` or `..` cannot reshape the request.
        if !account_sid.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(BuildError::field(
                "account_sid",
                "must contain only letters and digits (AC…)",
            ));
        }
        let auth_token = config.auth_token.expose_secret().trim().to_owned();
        let mut secrets = vec![auth_token.clone()];
        let (auth_user, auth_secret) = match (config.api_key_sid, config.api_key_secret) {
            (Some(key_sid), Some(key_secret)) => {
                let key_secret = key_secret.expose_secret().trim().to_owned();
                secrets.push(key_secret.clone());
                (key_sid.trim().to_owned(), key_secret)
            }
            (None, None) => (account_sid.clone(), auth_token),
            _ => {
                return Err(BuildError::field(
                    "api_key_secret",
                    "api_key_sid and api_key_secret go together",
                ));
            }
        };
        let sender = match (config.messaging_service_sid, config.from) {
            (Some(service), _) => Sender::MessagingService(service.trim().to_owned()),
            (None, Some(from)) => Sender::From(from.trim().to_owned()),
            (None, None) => {
                return Err(BuildError::field(
                    "from",
                    "either from or messaging_service_sid is required",
                ));
            }
        };
        let base = ctx.bases.twilio.trim_end_matches('/');
        Ok(TwilioProvider {
            http: ctx.http.clone(),
            messages_url: format!("{base}/2010-04-01/Accounts/{account_sid}/Messages.json"),
            account_url: format!("{base}/2010-04-01/Accounts/{account_sid}.json"),
            account_sid,
            auth_user,
            auth_secret,
            secrets,
            sender,
        })
    }

    /// Turns a non-2xx answer into a classified error. `body_text` is the SMS text being sent,
    /// scrubbed from the provider's message like the secrets.
    fn classify(&self, answer: &Answer, body_text: Option<&str>) -> ProviderError {
        let status = answer.status;
        let retry_after = answer.retry_after();
        let parsed = answer.json::<TwilioErrorBody>();
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
            .map(|m| {
                let secrets: Vec<&str> = self.secrets.iter().map(String::as_str).collect();
                scrub(m, &secrets, body_text.as_slice())
            })
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

/// The fallback when Twilio gave no code we know (see [`http::class_for_status`]).
fn class_for_status(status: StatusCode) -> ErrorClass {
    http::class_for_status(status, None)
}

#[async_trait]
impl Provider for TwilioProvider {
    fn kind(&self) -> ProviderKind {
        KIND
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

        let request = self
            .http
            .post(&self.messages_url)
            .basic_auth(&self.auth_user, Some(&self.auth_secret))
            .form(&form);
        let answer = http::call("twilio", request).await?;
        if answer.is_success() {
            // Twilio accepted the message. Failing to read its id must not turn into a retry
            // (that would send the SMS twice): record the send without an id instead.
            let sid = answer
                .json::<CreatedMessage>()
                .and_then(|created| created.sid)
                .filter(|s| !s.is_empty());
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
        Err(self.classify(&answer, Some(body)))
    }

    async fn check(&self) -> Result<CheckReport, ProviderError> {
        let request = self
            .http
            .get(&self.account_url)
            .basic_auth(&self.auth_user, Some(&self.auth_secret));
        let answer = http::call("twilio", request).await?;
        if !answer.is_success() {
            return Err(self.classify(&answer, None));
        }
        let account = answer
            .json::<AccountBody>()
            .ok_or_else(|| ProviderError::transient("twilio: account could not be read"))?;
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
