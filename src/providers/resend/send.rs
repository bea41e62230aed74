//! Sending through Resend and checking its credentials, and the classification of Resend's
//! documented errors (`{statusCode, message, name}`).

use std::time::Duration;

use async_trait::async_trait;
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, HeaderValue};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{KIND, ResendConfig};
use crate::domain::{Content, Recipient};
use crate::providers::email_common::{bodies, credential_header, non_blank, reply_to, sender};
use crate::providers::http::{self, Answer};
use crate::providers::scrub::scrub;
use crate::providers::{
    BuildError, CheckReport, ErrorClass, OutboundMessage, Provider, ProviderContext, ProviderError,
    ProviderKind, SendReceipt,
};

const PROVIDER: &str = "resend";
/// Tags per message we pass along (our `message_id` tag included).
const MAX_TAGS: usize = 10;
/// One configured Resend account.
pub struct ResendProvider {
    http: reqwest::Client,
    /// Parsed once: a send then does not parse its URL again.
    emails_url: reqwest::Url,
    domains_url: reqwest::Url,
    /// `Bearer <api key>`, marked sensitive so it never shows in reqwest's debug output.
    auth: HeaderValue,
    /// Kept only to scrub it from provider messages before they are stored.
    api_key: String,
    from: String,
    reply_to: Option<String>,
}

impl std::fmt::Debug for ResendProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResendProvider")
            .field("emails_url", &self.emails_url.as_str())
            .field("from", &self.from)
            .field("api_key", &"****")
            .finish()
    }
}

impl ResendProvider {
    /// The adapter of a typed configuration.
    pub fn new(config: ResendConfig, ctx: &ProviderContext) -> Result<ResendProvider, BuildError> {
        let api_key = config.api_key.expose_secret().trim().to_owned();
        let auth = credential_header("api_key", &format!("Bearer {api_key}"))?;
        let base = ctx.bases.resend.trim_end_matches('/');
        let url = |path: &str| {
            reqwest::Url::parse(&format!("{base}/{path}"))
                .map_err(|_| BuildError::whole("the operator's Resend API base is not a URL"))
        };
        Ok(ResendProvider {
            http: ctx.http.clone(),
            emails_url: url("emails")?,
            domains_url: url("domains")?,
            auth,
            api_key,
            from: sender(&config.from)?,
            reply_to: config.reply_to,
        })
    }
}

/// The JSON body of `POST /emails` (field names from Resend's OpenAPI `SendEmailRequest`).
#[derive(Debug, Serialize)]
struct SendEmailRequest<'a> {
    from: &'a str,
    to: [&'a str; 1],
    subject: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    html: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reply_to: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tags: Vec<Tag>,
}

#[derive(Debug, Serialize)]
struct Tag {
    name: String,
    value: String,
}

#[derive(Debug, Deserialize)]
struct SendEmailResponse {
    id: Option<String>,
}

/// Resend's error body: `{statusCode, message, name}`.
#[derive(Debug, Default, Deserialize)]
struct ErrorBody {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ListDomainsResponse {
    #[serde(default)]
    data: Vec<DomainItem>,
    #[serde(default)]
    has_more: bool,
}

#[derive(Debug, Deserialize)]
struct DomainItem {
    name: Option<String>,
    status: Option<String>,
}

impl ResendProvider {
    fn request_body<'a>(
        &'a self,
        message: &'a OutboundMessage<'_>,
    ) -> Result<SendEmailRequest<'a>, ProviderError> {
        let to = match message.to {
            Recipient::Email(address) => address.as_str(),
            Recipient::Phone(_) => {
                return Err(ProviderError::recipient(
                    "resend: sends email only, the recipient is a phone number",
                )
                .with_code("unsupported_recipient"));
            }
        };
        let content = message.content;
        let text = non_blank(content.text.as_deref());
        let html = non_blank(content.html.as_deref());
        if text.is_none() && html.is_none() {
            return Err(
                ProviderError::recipient("resend: the message has neither text nor html")
                    .with_code("empty_content"),
            );
        }
        Ok(SendEmailRequest {
            from: &self.from,
            to: [to],
            subject: content.subject.as_deref().unwrap_or_default(),
            text,
            html,
            reply_to: reply_to(self.reply_to.as_deref(), message.metadata),
            tags: tags(message),
        })
    }

    /// Turns a non-2xx answer into a classified error whose message is safe to store.
    fn classify(&self, answer: &Answer, content: Option<&Content>) -> ProviderError {
        let status = answer.status;
        let retry_after = answer.retry_after();
        let parsed: ErrorBody = answer.json().unwrap_or_default();
        let name = parsed.name.as_deref().unwrap_or_default();
        let detail = parsed.message.as_deref().unwrap_or_default();
        let class = classify(status.as_u16(), name, detail, retry_after);
        let code = if name.is_empty() {
            format!("http_{}", status.as_u16())
        } else {
            name.to_owned()
        };
        let detail = scrub(detail, &[&self.api_key], &bodies(content));
        let message = if detail.is_empty() {
            format!("{PROVIDER}: {code} (HTTP {})", status.as_u16())
        } else {
            format!("{PROVIDER}: {code} (HTTP {}): {detail}", status.as_u16())
        };
        ProviderError {
            class,
            message,
            code: None,
            outcome_unknown: false,
        }
        .with_code(code)
    }
}

/// The classification table (see the module docs of `providers` for the classes).
///
/// | Resend says | class |
/// |---|---|
/// | `daily_quota_exceeded`, `monthly_quota_exceeded` (429) | provider-permanent: not soon |
/// | `rate_limit_exceeded` or any other 429 | transient, honouring `Retry-After` |
/// | `concurrent_idempotent_requests` (409) | transient: the first try is still running |
/// | `invalid_idempotent_request` or any other 409 | provider-permanent |
/// | 401 / 403 (`missing_api_key`, `invalid_api_key`, `restricted_api_key`, unverified domain, testing-only account, `invalid_from_address`) | provider-permanent |
/// | 400 / 422 `invalid_to_address`, or a validation error about the `to` field | recipient-permanent |
/// | any other 400 / 422 (invalid `from`, missing field, …) | provider-permanent |
/// | 408, 5xx (`application_error`, `internal_server_error`) | transient |
/// | anything else | provider-permanent |
pub fn classify(
    status: u16,
    name: &str,
    message: &str,
    retry_after: Option<Duration>,
) -> ErrorClass {
    match (status, name) {
        (_, "daily_quota_exceeded" | "monthly_quota_exceeded") => ErrorClass::ProviderPermanent,
        (_, "rate_limit_exceeded" | "concurrent_idempotent_requests") | (429, _) => {
            ErrorClass::Transient { retry_after }
        }
        (409, _) | (401 | 403, _) => ErrorClass::ProviderPermanent,
        (400 | 422, "invalid_to_address") => ErrorClass::RecipientPermanent,
        (400 | 422, _) if mentions_to_field(message) => ErrorClass::RecipientPermanent,
        (408, _) | (500..=599, _) => ErrorClass::Transient { retry_after },
        _ => ErrorClass::ProviderPermanent,
    }
}

/// Whether a validation message is about the recipient (`to`) field, e.g. "Invalid `to` field.
/// The email address needs to follow the `email@example.com` format." A message about `from`
/// or `reply_to` does not match.
fn mentions_to_field(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    [
        "`to`",
        "'to'",
        "\"to\"",
        "invalid to ",
        " to field",
        "to address",
    ]
    .iter()
    .any(|p| m.contains(p))
        || m.starts_with("to ")
}

#[async_trait]
impl Provider for ResendProvider {
    /// Resend keeps our `Idempotency-Key` (the message id) for 24 hours.
    fn deduplicates(&self) -> bool {
        true
    }

    fn kind(&self) -> ProviderKind {
        KIND
    }

    async fn send(&self, message: &OutboundMessage<'_>) -> Result<SendReceipt, ProviderError> {
        let body = self.request_body(message)?;
        let request = self
            .http
            .post(self.emails_url.clone())
            .header(AUTHORIZATION, self.auth.clone())
            .header("Idempotency-Key", idempotency_key(message.id))
            .json(&body);
        let answer = http::call(PROVIDER, request).await?;
        if answer.is_success() {
            // Resend accepted the email: an unreadable body must not turn into a retry.
            let id = match answer.json::<SendEmailResponse>() {
                Some(r) => r.id,
                None => {
                    tracing::warn!(message_id = %message.id, "resend accepted the email but its answer carried no id");
                    None
                }
            };
            return Ok(SendReceipt {
                provider_message_id: id,
            });
        }
        Err(self.classify(&answer, Some(message.content)))
    }

    async fn check(&self) -> Result<CheckReport, ProviderError> {
        let request = self
            .http
            .get(self.domains_url.clone())
            .header(AUTHORIZATION, self.auth.clone());
        let answer = http::call(PROVIDER, request).await?;
        if !answer.is_success() {
            let parsed: ErrorBody = answer.json().unwrap_or_default();
            if answer.status == StatusCode::UNAUTHORIZED
                && parsed.name.as_deref() == Some("restricted_api_key")
            {
                // A sending-only key cannot list domains, and that is the key tenants should use.
                return Ok(CheckReport {
                    detail: "API key accepted (restricted to sending, domains not listed)".into(),
                });
            }
            return Err(self.classify(&answer, None));
        }
        let list: ListDomainsResponse = answer.json().ok_or_else(|| {
            ProviderError::transient("resend: the domain list could not be read")
                .with_code("unreadable_response")
        })?;
        let sender_domain = domain_of(&self.from);
        let found = list.data.iter().find(|d| {
            d.name
                .as_deref()
                .is_some_and(|n| n.eq_ignore_ascii_case(sender_domain))
        });
        match found {
            Some(d) if d.status.as_deref() == Some("verified") => Ok(CheckReport {
                detail: format!("API key accepted; sender domain {sender_domain} is verified"),
            }),
            Some(d) => {
                let state = d.status.as_deref().unwrap_or("unknown");
                Err(ProviderError::provider(format!(
                    "resend: sender domain {sender_domain} is not verified (status {})",
                    scrub(state, &[], &[])
                ))
                .with_code("domain_not_verified"))
            }
            None => Ok(CheckReport {
                detail: format!(
                    "API key accepted; {} domain(s){}, sender domain {sender_domain} not among them",
                    list.data.len(),
                    if list.has_more {
                        " on the first page"
                    } else {
                        ""
                    }
                ),
            }),
        }
    }
}

/// Our `message_id` tag, then the tenant's `metadata.tags` object (`{name: value}`, string,
/// number or boolean values). Resend allows only ASCII letters, digits, `_` and `-` (at most
/// 256) in names and values: entries that do not fit are dropped rather than failing the send.
fn tags(message: &OutboundMessage<'_>) -> Vec<Tag> {
    let mut tags = vec![Tag {
        name: "message_id".into(),
        value: message.id.to_string(),
    }];
    let Some(Value::Object(map)) = message.metadata.and_then(|m| m.get("tags")) else {
        return tags;
    };
    // Sorted by name, so the request does not depend on how the JSON object was ordered.
    let mut entries: Vec<(&String, &Value)> = map.iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    for (name, value) in entries {
        let value = match value {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => continue,
        };
        if tags.len() >= MAX_TAGS {
            break;
        }
        if name != "message_id" && tag_token(name) && tag_token(&value) {
            tags.push(Tag {
                name: name.clone(),
                value,
            });
        }
    }
    tags
}

/// Our message id as the `Idempotency-Key` header (a hyphenated UUID is always a valid
/// header value).
fn idempotency_key(id: uuid::Uuid) -> HeaderValue {
    let mut buf = uuid::Uuid::encode_buffer();
    let text = id.hyphenated().encode_lower(&mut buf);
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn tag_token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 256
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The domain of a sender like `Name <noreply@example.com>` or `noreply@example.com`.
fn domain_of(from: &str) -> &str {
    let address = match (from.rfind('<'), from.trim_end().strip_suffix('>')) {
        (Some(open), Some(inner)) if open < inner.len() => &inner[open + 1..],
        _ => from,
    };
    address
        .rsplit_once('@')
        .map(|(_, d)| d.trim())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sender_domain_is_found_with_or_without_a_display_name() {
        assert_eq!(domain_of("Acme <noreply@acme.example>"), "acme.example");
        assert_eq!(domain_of("noreply@acme.example"), "acme.example");
        assert_eq!(domain_of("nobody"), "");
    }

    #[test]
    fn validation_messages_about_from_or_reply_to_are_not_about_the_recipient() {
        assert!(mentions_to_field(
            "Invalid `to` field. The email address needs to follow the `email@example.com` format."
        ));
        assert!(!mentions_to_field(
            "Invalid `from` field. The email address needs to follow the `email@example.com` format."
        ));
        assert!(!mentions_to_field("Invalid `reply_to` field."));
    }
}
