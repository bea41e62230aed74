//! Sending through Mailgun and checking the key and sending domain, and the classification
//! of Mailgun's errors (`{"message": …}`, or a bare `Forbidden` for a bad key).

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::header::{AUTHORIZATION, HeaderValue};
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::Value;
use url::Url;

use super::{KIND, MailgunConfig, Region};
use crate::domain::{Content, Recipient};
use crate::providers::email_common::{bodies, credential_header, non_blank, reply_to, sender};
use crate::providers::http::{self, Answer};
use crate::providers::scrub::scrub;
use crate::providers::{
    BuildError, CheckReport, ErrorClass, OutboundMessage, Provider, ProviderContext, ProviderError,
    ProviderKind, SendReceipt,
};

const PROVIDER: &str = "mailgun";
/// User variables per message we pass along (our `message_id` included).
const MAX_VARIABLES: usize = 10;

/// One configured Mailgun sending domain.
pub struct MailgunProvider {
    http: reqwest::Client,
    messages_url: String,
    domain_url: String,
    domain: String,
    /// `Basic base64(api:<key>)`, marked sensitive.
    auth: HeaderValue,
    /// Kept only to scrub it from provider messages.
    api_key: String,
    from: String,
    reply_to: Option<String>,
}

impl std::fmt::Debug for MailgunProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailgunProvider")
            .field("messages_url", &self.messages_url)
            .field("from", &self.from)
            .field("api_key", &"****")
            .finish()
    }
}

impl MailgunProvider {
    /// The adapter of a typed configuration, on the US or EU API base by `region`.
    pub fn new(
        config: MailgunConfig,
        ctx: &ProviderContext,
    ) -> Result<MailgunProvider, BuildError> {
        let api_key = config.api_key.expose_secret().trim().to_owned();
        let domain = config.domain.trim().to_owned();
        let base = match config.region {
            Some(Region::Eu) => &ctx.bases.mailgun_eu,
            Some(Region::Us) | None => &ctx.bases.mailgun,
        };
        let credentials = STANDARD.encode(format!("api:{api_key}"));
        let auth = credential_header("api_key", &format!("Basic {credentials}"))?;
        Ok(MailgunProvider {
            http: ctx.http.clone(),
            messages_url: endpoint(base, &["v3", &domain, "messages"])?,
            domain_url: endpoint(base, &["v3", "domains", &domain])?,
            domain,
            auth,
            api_key,
            from: sender(&config.from)?,
            reply_to: config.reply_to,
        })
    }
}

/// `base` plus path segments, each percent-encoded (the domain is tenant-supplied).
fn endpoint(base: &str, segments: &[&str]) -> Result<String, BuildError> {
    let mut url = Url::parse(base)
        .map_err(|_| BuildError::whole("mailgun: the operator's API base is not a URL"))?;
    url.path_segments_mut()
        .map_err(|_| BuildError::whole("mailgun: the operator's API base cannot take a path"))?
        .pop_if_empty()
        .extend(segments);
    Ok(url.into())
}

#[derive(Debug, Deserialize)]
struct SendAnswer {
    id: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ErrorAnswer {
    message: Option<String>,
}

#[derive(Debug, Deserialize)]
struct DomainAnswer {
    domain: Option<DomainInfo>,
}

#[derive(Debug, Deserialize)]
struct DomainInfo {
    state: Option<String>,
}

impl MailgunProvider {
    fn form<'a>(
        &'a self,
        message: &'a OutboundMessage<'_>,
    ) -> Result<Vec<(String, String)>, ProviderError> {
        let to = match message.to {
            Recipient::Email(address) => address.as_str(),
            Recipient::Phone(_) => {
                return Err(ProviderError::recipient(
                    "mailgun: sends email only, the recipient is a phone number",
                )
                .with_code("unsupported_recipient"));
            }
        };
        let content = message.content;
        let text = non_blank(content.text.as_deref());
        let html = non_blank(content.html.as_deref());
        if text.is_none() && html.is_none() {
            return Err(
                ProviderError::recipient("mailgun: the message has neither text nor html")
                    .with_code("empty_content"),
            );
        }
        let mut form: Vec<(String, String)> = vec![
            ("from".into(), self.from.clone()),
            ("to".into(), to.to_owned()),
            (
                "subject".into(),
                content.subject.clone().unwrap_or_default(),
            ),
        ];
        form.extend(text.map(|t| ("text".to_owned(), t.to_owned())));
        form.extend(html.map(|h| ("html".to_owned(), h.to_owned())));
        if let Some(reply_to) = reply_to(self.reply_to.as_deref(), message.metadata) {
            form.push(("h:Reply-To".into(), reply_to.to_owned()));
        }
        form.extend(variables(message));
        Ok(form)
    }

    fn classify(&self, answer: &Answer, content: Option<&Content>) -> ProviderError {
        let status = answer.status;
        // Mailgun answers JSON `{"message": …}`, except for a bad key (plain `Forbidden`).
        let detail = match answer.json::<ErrorAnswer>() {
            Some(parsed) => parsed.message.unwrap_or_default(),
            None => String::from_utf8_lossy(&answer.body).into_owned(),
        };
        let (class, code) = classify(status.as_u16(), &detail, answer.retry_after());
        let detail = scrub(&detail, &[&self.api_key], &bodies(content));
        let mut text = format!("{PROVIDER}: {code} (HTTP {})", status.as_u16());
        if !detail.is_empty() {
            text.push_str(": ");
            text.push_str(&detail);
        }
        ProviderError {
            class,
            message: text,
            code: Some(code.to_owned()),
            outcome_unknown: false,
        }
    }
}

/// The classification table. Mailgun's errors carry no codes, so the codes below are ours,
/// derived from the status and Mailgun's messages.
///
/// | Mailgun says | class | code |
/// |---|---|---|
/// | 401 (`Forbidden`: wrong key or wrong region) | provider-permanent | `unauthorized` |
/// | 403 (domain not allowed to send, account disabled) | provider-permanent | `forbidden` |
/// | 404 (domain not found in this account/region) | provider-permanent | `domain_not_found` |
/// | 400 sandbox domain / "authorized recipients" | provider-permanent | `sandbox_recipient_not_authorized` |
/// | 400 about the `to` parameter ("'to' parameter is not a valid address") | recipient-permanent | `invalid_recipient` |
/// | 400 about the `from` parameter | provider-permanent | `invalid_sender` |
/// | other 400 | provider-permanent | `bad_request` |
/// | 413 | provider-permanent | `payload_too_large` |
/// | 429 | transient, honouring `Retry-After` | `rate_limited` |
/// | 408, 5xx | transient | `server_error` |
/// | anything else | provider-permanent | `http_error` |
fn classify(
    status: u16,
    message: &str,
    retry_after: Option<std::time::Duration>,
) -> (ErrorClass, &'static str) {
    let m = message.to_ascii_lowercase();
    match status {
        401 => (ErrorClass::ProviderPermanent, "unauthorized"),
        403 => (ErrorClass::ProviderPermanent, "forbidden"),
        404 => (ErrorClass::ProviderPermanent, "domain_not_found"),
        400 if m.contains("sandbox") || m.contains("authorized recipients") => (
            ErrorClass::ProviderPermanent,
            "sandbox_recipient_not_authorized",
        ),
        400 if about_to_parameter(&m) => (ErrorClass::RecipientPermanent, "invalid_recipient"),
        400 if m.contains("'from'") || m.starts_with("from ") || m.contains("from parameter") => {
            (ErrorClass::ProviderPermanent, "invalid_sender")
        }
        400 => (ErrorClass::ProviderPermanent, "bad_request"),
        413 => (ErrorClass::ProviderPermanent, "payload_too_large"),
        429 => (ErrorClass::Transient { retry_after }, "rate_limited"),
        408 | 500..=599 => (ErrorClass::Transient { retry_after }, "server_error"),
        _ => (ErrorClass::ProviderPermanent, "http_error"),
    }
}

/// Whether a lower-cased 400 message is about the recipient: "'to' parameter is not a valid
/// address", "to parameter is missing", "invalid to address".
fn about_to_parameter(m: &str) -> bool {
    m.contains("'to'")
        || m.contains("\"to\"")
        || m.starts_with("to parameter")
        || m.contains(" to parameter")
        || m.contains("invalid to ")
}

#[async_trait]
impl Provider for MailgunProvider {
    fn kind(&self) -> ProviderKind {
        KIND
    }

    async fn send(&self, message: &OutboundMessage<'_>) -> Result<SendReceipt, ProviderError> {
        let form = self.form(message)?;
        let request = self
            .http
            .post(&self.messages_url)
            .header(AUTHORIZATION, self.auth.clone())
            .form(&form);
        let reply = http::call(PROVIDER, request).await?;
        if reply.is_success() {
            // Mailgun's id is `<…@domain>`; webhooks name the message without the brackets.
            let id = match reply.json::<SendAnswer>() {
                Some(answer) => answer
                    .id
                    .map(|id| {
                        id.trim()
                            .trim_start_matches('<')
                            .trim_end_matches('>')
                            .to_owned()
                    })
                    .filter(|id| !id.is_empty()),
                None => None,
            };
            if id.is_none() {
                tracing::warn!(message_id = %message.id, "mailgun accepted the email but its answer carried no id");
            }
            return Ok(SendReceipt {
                provider_message_id: id,
            });
        }
        Err(self.classify(&reply, Some(message.content)))
    }

    async fn check(&self) -> Result<CheckReport, ProviderError> {
        let request = self
            .http
            .get(&self.domain_url)
            .header(AUTHORIZATION, self.auth.clone());
        let reply = http::call(PROVIDER, request).await?;
        if !reply.is_success() {
            return Err(self.classify(&reply, None));
        }
        let answer: DomainAnswer = reply.json().ok_or_else(|| {
            ProviderError::transient("mailgun: the domain details could not be read")
                .with_code("unreadable_response")
        })?;
        let domain = scrub(&self.domain, &[], &[]);
        match answer.domain.and_then(|d| d.state).as_deref() {
            Some("active") => Ok(CheckReport {
                detail: format!("API key accepted; domain {domain} is active"),
            }),
            Some("unverified") => Err(ProviderError::provider(format!(
                "mailgun: domain {domain} is unverified (DNS records not confirmed)"
            ))
            .with_code("domain_unverified")),
            other => Err(ProviderError::provider(format!(
                "mailgun: domain {domain} cannot send (state {})",
                scrub(other.unwrap_or("unknown"), &[], &[])
            ))
            .with_code("domain_inactive")),
        }
    }
}

/// `v:message_id` (ours) plus the tenant's `metadata.tags` object as `v:<name>` user variables;
/// names are limited to ASCII letters, digits, `_` and `-`, values to printable text.
fn variables(message: &OutboundMessage<'_>) -> Vec<(String, String)> {
    let mut vars = vec![("v:message_id".to_owned(), message.id.to_string())];
    let Some(Value::Object(tags)) = message.metadata.and_then(|m| m.get("tags")) else {
        return vars;
    };
    let mut entries: Vec<(&String, &Value)> = tags.iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    for (name, value) in entries {
        if vars.len() >= MAX_VARIABLES {
            break;
        }
        let value = match value {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => continue,
        };
        let name_ok = !name.is_empty()
            && name.len() <= 64
            && name != "message_id"
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if name_ok && value.len() <= 1000 && !value.chars().any(char::is_control) {
            vars.push((format!("v:{name}"), value));
        }
    }
    vars
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_domain_is_percent_encoded_into_the_path() {
        assert_eq!(
            endpoint(
                "https://api.mailgun.net/",
                &["v3", "mg.acme.example", "messages"]
            )
            .expect("url"),
            "https://api.mailgun.net/v3/mg.acme.example/messages"
        );
        assert_eq!(
            endpoint("http://127.0.0.1:9", &["v3", "a/b?c", "messages"]).expect("url"),
            "http://127.0.0.1:9/v3/a%2Fb%3Fc/messages"
        );
    }

    #[test]
    fn messages_about_the_to_parameter_are_recognised() {
        assert!(about_to_parameter(
            "'to' parameter is not a valid address. please check documentation"
        ));
        assert!(about_to_parameter("to parameter is missing"));
        assert!(!about_to_parameter("'from' parameter is missing"));
    }
}
