//! Sending through SendGrid's v3 Mail Send and checking the key's scopes, and the
//! classification of SendGrid's errors (`{"errors": [{field, message}]}`).

use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{KIND, SendgridConfig};
use crate::domain::{Content, Recipient};
use crate::providers::email_common::{bodies, credential_header, non_blank, reply_to, sender};
use crate::providers::http::{self, Answer, retry_after_seconds};
use crate::providers::scrub::scrub;
use crate::providers::{
    BuildError, CheckReport, ErrorClass, OutboundMessage, Provider, ProviderContext, ProviderError,
    ProviderKind, SendReceipt,
};

const PROVIDER: &str = "sendgrid";
/// Custom args per message we pass along (our `message_id` included).
const MAX_CUSTOM_ARGS: usize = 10;
/// The longest rate-limit wait we take from `X-RateLimit-Reset` as a hint.
const MAX_RESET_HINT: Duration = Duration::from_secs(3600);

/// One configured SendGrid account (API key).
pub struct SendgridProvider {
    http: reqwest::Client,
    send_url: String,
    scopes_url: String,
    /// `Bearer <api key>`, marked sensitive.
    auth: HeaderValue,
    /// Kept only to scrub it from provider messages.
    api_key: String,
    from: Mailbox,
    reply_to: Option<String>,
}

impl std::fmt::Debug for SendgridProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendgridProvider")
            .field("send_url", &self.send_url)
            .field("from", &self.from.email)
            .field("api_key", &"****")
            .finish()
    }
}

impl SendgridProvider {
    /// The adapter of a typed configuration.
    pub fn new(
        config: SendgridConfig,
        ctx: &ProviderContext,
    ) -> Result<SendgridProvider, BuildError> {
        let api_key = config.api_key.expose_secret().trim().to_owned();
        let auth = credential_header("api_key", &format!("Bearer {api_key}"))?;
        let base = ctx.bases.sendgrid.trim_end_matches('/');
        Ok(SendgridProvider {
            http: ctx.http.clone(),
            send_url: format!("{base}/v3/mail/send"),
            scopes_url: format!("{base}/v3/scopes"),
            auth,
            api_key,
            from: Mailbox::parse(&sender(&config.from)?),
            reply_to: config.reply_to,
        })
    }
}

/// SendGrid's `{email, name?}` object, split from `Name <address>` or a bare address.
#[derive(Debug, Clone, Serialize)]
struct Mailbox {
    email: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
}

impl Mailbox {
    fn parse(s: &str) -> Mailbox {
        let s = s.trim();
        if let Some(open) = s.rfind('<')
            && let Some(inner) = s.strip_suffix('>')
            && open < inner.len()
        {
            let name = s[..open].trim().trim_matches('"').trim();
            return Mailbox {
                email: inner[open + 1..].trim().to_owned(),
                name: (!name.is_empty()).then(|| name.to_owned()),
            };
        }
        Mailbox {
            email: s.to_owned(),
            name: None,
        }
    }
}

#[derive(Debug, Serialize)]
struct MailSend<'a> {
    personalizations: [Personalization<'a>; 1],
    from: &'a Mailbox,
    #[serde(skip_serializing_if = "Option::is_none")]
    reply_to: Option<Mailbox>,
    subject: &'a str,
    content: Vec<ContentPart<'a>>,
    custom_args: Map<String, Value>,
}

#[derive(Debug, Serialize)]
struct Personalization<'a> {
    to: [EmailOnly<'a>; 1],
}

#[derive(Debug, Serialize)]
struct EmailOnly<'a> {
    email: &'a str,
}

#[derive(Debug, Serialize)]
struct ContentPart<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    value: &'a str,
}

#[derive(Debug, Default, Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<ErrorItem>,
}

#[derive(Debug, Default, Deserialize)]
struct ErrorItem {
    #[serde(default)]
    field: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ScopesResponse {
    #[serde(default)]
    scopes: Vec<String>,
}

impl SendgridProvider {
    fn request_body<'a>(
        &'a self,
        message: &'a OutboundMessage<'_>,
    ) -> Result<MailSend<'a>, ProviderError> {
        let to = match message.to {
            Recipient::Email(address) => address.as_str(),
            Recipient::Phone(_) => {
                return Err(ProviderError::recipient(
                    "sendgrid: sends email only, the recipient is a phone number",
                )
                .with_code("unsupported_recipient"));
            }
        };
        let content = message.content;
        // SendGrid requires text/plain before text/html.
        let mut parts = Vec::with_capacity(2);
        if let Some(text) = non_blank(content.text.as_deref()) {
            parts.push(ContentPart {
                kind: "text/plain",
                value: text,
            });
        }
        if let Some(html) = non_blank(content.html.as_deref()) {
            parts.push(ContentPart {
                kind: "text/html",
                value: html,
            });
        }
        if parts.is_empty() {
            return Err(ProviderError::recipient(
                "sendgrid: the message has neither text nor html",
            )
            .with_code("empty_content"));
        }
        Ok(MailSend {
            personalizations: [Personalization {
                to: [EmailOnly { email: to }],
            }],
            from: &self.from,
            reply_to: reply_to(self.reply_to.as_deref(), message.metadata).map(Mailbox::parse),
            subject: content.subject.as_deref().unwrap_or_default(),
            content: parts,
            custom_args: custom_args(message),
        })
    }

    fn classify(&self, answer: &Answer, content: Option<&Content>) -> ProviderError {
        let status = answer.status;
        let parsed: ErrorBody = answer.json().unwrap_or_default();
        let (class, code) = classify(status.as_u16(), retry_hint(&answer.headers), &parsed.errors);
        let secrets = [self.api_key.as_str()];
        let bodies = bodies(content);
        let sanitize = |text: &str| scrub(text, &secrets, &bodies);
        let details: Vec<String> = parsed
            .errors
            .iter()
            .take(3)
            .map(|e| {
                let message = sanitize(e.message.as_deref().unwrap_or_default());
                match e.field.as_deref().filter(|f| !f.is_empty()) {
                    Some(field) => format!("{} ({})", message, sanitize(field)),
                    None => message,
                }
            })
            .filter(|d| !d.is_empty())
            .collect();
        let mut text = format!("{PROVIDER}: {code} (HTTP {})", status.as_u16());
        if !details.is_empty() {
            text.push_str(": ");
            text.push_str(&details.join("; "));
        }
        ProviderError {
            class,
            message: text,
            code: Some(code.to_owned()),
            outcome_unknown: false,
        }
    }
}

/// The classification table. SendGrid's errors carry no codes, so the codes below are ours,
/// derived from the status and the documented messages and fields.
///
/// | SendGrid says | class | code |
/// |---|---|---|
/// | 429 | transient, `Retry-After` or `X-RateLimit-Reset` | `rate_limited` |
/// | 408, 5xx | transient | `server_error` |
/// | 401 "Maximum credits exceeded" | provider-permanent | `credits_exceeded` |
/// | 401 "…not authorized to send mail" | provider-permanent | `not_authorized` |
/// | other 401 (invalid, expired or revoked key) | provider-permanent | `unauthorized` |
/// | 403 "…does not match a verified Sender Identity" | provider-permanent | `sender_not_verified` |
/// | other 403 | provider-permanent | `forbidden` |
/// | 400 with a field `personalizations.N.to…` | recipient-permanent | `invalid_recipient` |
/// | 400 with a field `from…` / `reply_to…` | provider-permanent | `invalid_sender` |
/// | other 400 | provider-permanent | `bad_request` |
/// | 413 | provider-permanent | `payload_too_large` |
/// | anything else | provider-permanent | `http_error` |
fn classify(
    status: u16,
    retry_after: Option<Duration>,
    errors: &[ErrorItem],
) -> (ErrorClass, &'static str) {
    let any_message = |needle: &str| {
        errors.iter().any(|e| {
            e.message
                .as_deref()
                .is_some_and(|m| m.to_ascii_lowercase().contains(needle))
        })
    };
    let any_field = |pred: &dyn Fn(&str) -> bool| {
        errors.iter().any(|e| {
            e.field
                .as_deref()
                .is_some_and(|f| pred(&f.to_ascii_lowercase()))
        })
    };
    match status {
        429 => (ErrorClass::Transient { retry_after }, "rate_limited"),
        408 | 500..=599 => (ErrorClass::Transient { retry_after }, "server_error"),
        401 if any_message("credits") => (ErrorClass::ProviderPermanent, "credits_exceeded"),
        401 if any_message("not authorized") => (ErrorClass::ProviderPermanent, "not_authorized"),
        401 => (ErrorClass::ProviderPermanent, "unauthorized"),
        403 if any_message("sender identity") => {
            (ErrorClass::ProviderPermanent, "sender_not_verified")
        }
        403 => (ErrorClass::ProviderPermanent, "forbidden"),
        400 if any_field(&|f| {
            f.starts_with("personalizations") && f.split('.').any(|p| p == "to")
        }) =>
        {
            (ErrorClass::RecipientPermanent, "invalid_recipient")
        }
        400 if any_field(&|f| f.starts_with("from") || f.starts_with("reply_to")) => {
            (ErrorClass::ProviderPermanent, "invalid_sender")
        }
        400 => (ErrorClass::ProviderPermanent, "bad_request"),
        413 => (ErrorClass::ProviderPermanent, "payload_too_large"),
        _ => (ErrorClass::ProviderPermanent, "http_error"),
    }
}

/// `Retry-After` when SendGrid sends it; otherwise the wait until `X-RateLimit-Reset` (a unix
/// time), when it is in the near future.
fn retry_hint(headers: &HeaderMap) -> Option<Duration> {
    retry_after_seconds(headers).or_else(|| {
        let reset: i64 = headers
            .get("x-ratelimit-reset")?
            .to_str()
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let wait = reset.checked_sub(chrono::Utc::now().timestamp())?;
        let wait = Duration::from_secs(u64::try_from(wait).ok()?.max(1));
        (wait <= MAX_RESET_HINT).then_some(wait)
    })
}

#[async_trait]
impl Provider for SendgridProvider {
    fn kind(&self) -> ProviderKind {
        KIND
    }

    async fn send(&self, message: &OutboundMessage<'_>) -> Result<SendReceipt, ProviderError> {
        let body = self.request_body(message)?;
        let request = self
            .http
            .post(&self.send_url)
            .header(AUTHORIZATION, self.auth.clone())
            .json(&body);
        let answer = http::call(PROVIDER, request).await?;
        if answer.is_success() {
            let id = answer
                .headers
                .get("x-message-id")
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned);
            if id.is_none() {
                tracing::warn!(message_id = %message.id, "sendgrid accepted the email without an X-Message-Id");
            }
            return Ok(SendReceipt {
                provider_message_id: id,
            });
        }
        Err(self.classify(&answer, Some(message.content)))
    }

    async fn check(&self) -> Result<CheckReport, ProviderError> {
        let request = self
            .http
            .get(&self.scopes_url)
            .header(AUTHORIZATION, self.auth.clone());
        let answer = http::call(PROVIDER, request).await?;
        if !answer.is_success() {
            return Err(self.classify(&answer, None));
        }
        let scopes: ScopesResponse = answer.json().ok_or_else(|| {
            ProviderError::transient("sendgrid: the scope list could not be read")
                .with_code("unreadable_response")
        })?;
        if scopes.scopes.iter().any(|s| s == "mail.send") {
            Ok(CheckReport {
                detail: "API key accepted; it has the mail.send scope".into(),
            })
        } else {
            Err(
                ProviderError::provider("sendgrid: the API key lacks the mail.send scope")
                    .with_code("missing_scope"),
            )
        }
    }
}

/// `message_id` (ours) plus the tenant's `metadata.tags` object, values as strings (SendGrid
/// requires string custom args); entries of other types are dropped.
fn custom_args(message: &OutboundMessage<'_>) -> Map<String, Value> {
    let mut args = Map::new();
    if let Some(Value::Object(tags)) = message.metadata.and_then(|m| m.get("tags")) {
        let mut entries: Vec<(&String, &Value)> = tags.iter().collect();
        entries.sort_by(|a, b| a.0.cmp(b.0));
        for (name, value) in entries {
            if args.len() + 1 >= MAX_CUSTOM_ARGS {
                break;
            }
            let value = match value {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => continue,
            };
            if name != "message_id" && !name.is_empty() && name.len() <= 100 && value.len() <= 1000
            {
                args.insert(name.clone(), Value::String(value));
            }
        }
    }
    args.insert("message_id".into(), Value::String(message.id.to_string()));
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_display_name_is_split_from_the_address() {
        let m = Mailbox::parse("\"Acme Support\" <help@acme.example>");
        assert_eq!(m.email, "help@acme.example");
        assert_eq!(m.name.as_deref(), Some("Acme Support"));
        let m = Mailbox::parse("help@acme.example");
        assert_eq!(m.email, "help@acme.example");
        assert_eq!(m.name, None);
    }
}
