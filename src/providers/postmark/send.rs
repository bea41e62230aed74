//! Sending through Postmark and checking its server token, and the classification of
//! Postmark's API error codes (`{ErrorCode, Message}`, mostly on HTTP 422).

use async_trait::async_trait;
use reqwest::header::{ACCEPT, HeaderMap, HeaderValue};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{KIND, PostmarkConfig};
use crate::domain::{Content, Recipient};
use crate::providers::email_common::{bodies, credential_header, non_blank, reply_to, sender};
use crate::providers::http::{self, Answer, retry_after_seconds};
use crate::providers::scrub::scrub;
use crate::providers::{
    BuildError, CheckReport, ErrorClass, OutboundMessage, Provider, ProviderContext, ProviderError,
    ProviderKind, SendReceipt,
};

const PROVIDER: &str = "postmark";
const TOKEN_HEADER: &str = "X-Postmark-Server-Token";
const DEFAULT_STREAM: &str = "outbound";
/// Postmark's metadata limits: 10 fields, names up to 20 characters, values up to 80.
const MAX_METADATA_FIELDS: usize = 10;
const MAX_METADATA_NAME: usize = 20;
const MAX_METADATA_VALUE: usize = 80;

/// One configured Postmark server (server token).
pub struct PostmarkProvider {
    http: reqwest::Client,
    email_url: String,
    server_url: String,
    /// The server token, marked sensitive.
    token: HeaderValue,
    /// Kept only to scrub it from provider messages.
    token_text: String,
    from: String,
    message_stream: String,
    reply_to: Option<String>,
}

impl std::fmt::Debug for PostmarkProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostmarkProvider")
            .field("email_url", &self.email_url)
            .field("from", &self.from)
            .field("message_stream", &self.message_stream)
            .field("server_token", &"****")
            .finish()
    }
}

impl PostmarkProvider {
    /// The adapter of a typed configuration.
    pub fn new(
        config: PostmarkConfig,
        ctx: &ProviderContext,
    ) -> Result<PostmarkProvider, BuildError> {
        let token = config.server_token.expose_secret().trim().to_owned();
        let token_header = credential_header("server_token", &token)?;
        let base = ctx.bases.postmark.trim_end_matches('/');
        let optional =
            |value: Option<String>| value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        Ok(PostmarkProvider {
            http: ctx.http.clone(),
            email_url: format!("{base}/email"),
            server_url: format!("{base}/server"),
            token: token_header,
            token_text: token,
            from: sender(&config.from)?,
            message_stream: optional(config.message_stream)
                .unwrap_or_else(|| DEFAULT_STREAM.into()),
            reply_to: optional(config.reply_to),
        })
    }
}

/// The JSON body of `POST /email` (Postmark's PascalCase field names).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct SendEmail<'a> {
    from: &'a str,
    to: &'a str,
    subject: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    text_body: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    html_body: Option<&'a str>,
    message_stream: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reply_to: Option<&'a str>,
    metadata: Map<String, Value>,
}

/// Postmark's answer to `/email`, success or error alike.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ApiAnswer {
    #[serde(rename = "MessageID")]
    message_id: Option<String>,
    error_code: Option<i64>,
    message: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ServerInfo {
    #[serde(rename = "ID")]
    id: Option<i64>,
    name: Option<String>,
}

impl PostmarkProvider {
    fn request_body<'a>(
        &'a self,
        message: &'a OutboundMessage<'_>,
    ) -> Result<SendEmail<'a>, ProviderError> {
        let to = match message.to {
            Recipient::Email(address) => address.as_str(),
            Recipient::Phone(_) => {
                return Err(ProviderError::recipient(
                    "postmark: sends email only, the recipient is a phone number",
                )
                .with_code("unsupported_recipient"));
            }
        };
        let content = message.content;
        let text_body = non_blank(content.text.as_deref());
        let html_body = non_blank(content.html.as_deref());
        if text_body.is_none() && html_body.is_none() {
            return Err(ProviderError::recipient(
                "postmark: the message has neither text nor html",
            )
            .with_code("empty_content"));
        }
        Ok(SendEmail {
            from: &self.from,
            to,
            subject: content.subject.as_deref().unwrap_or_default(),
            text_body,
            html_body,
            message_stream: &self.message_stream,
            reply_to: reply_to(self.reply_to.as_deref(), message.metadata),
            metadata: metadata(message),
        })
    }

    fn classify(&self, answer: &Answer, content: Option<&Content>) -> ProviderError {
        let status = answer.status;
        let parsed: ApiAnswer = answer.json().unwrap_or_default();
        let detail = parsed.message.as_deref().unwrap_or_default();
        let class = classify(status.as_u16(), parsed.error_code, detail, &answer.headers);
        let code = match parsed.error_code {
            Some(c) => c.to_string(),
            None => format!("http_{}", status.as_u16()),
        };
        let detail = scrub(detail, &[&self.token_text], &bodies(content));
        let mut text = format!("{PROVIDER}: error {code} (HTTP {})", status.as_u16());
        if !detail.is_empty() {
            text.push_str(": ");
            text.push_str(&detail);
        }
        ProviderError {
            class,
            message: text,
            code: Some(code),
            outcome_unknown: false,
        }
    }
}

/// The classification table, by Postmark's `ErrorCode` first, then the HTTP status.
///
/// | Postmark says | class |
/// |---|---|
/// | 406 inactive recipient (hard bounce, complaint, manual suppression) | recipient-permanent |
/// | 300 invalid email request, about `To` or the message itself | recipient-permanent |
/// | 300 about `From` / `ReplyTo` | provider-permanent |
/// | 10 bad or missing token, 400 sender signature not found, 401 sender signature not confirmed, 405 not allowed to send, 412 account pending, 413 account may not send | provider-permanent |
/// | 100 maintenance, 429 rate limit (code or status), HTTP 408, 5xx | transient, honouring `Retry-After` |
/// | HTTP 401 / 403 without a code | provider-permanent |
/// | any other code (402/403/409 bad JSON, 411 attachment, …) | provider-permanent |
fn classify(
    status: u16,
    error_code: Option<i64>,
    message: &str,
    headers: &HeaderMap,
) -> ErrorClass {
    let transient = || ErrorClass::Transient {
        retry_after: retry_after_seconds(headers),
    };
    match (error_code, status) {
        (Some(406), _) => ErrorClass::RecipientPermanent,
        (Some(300), _) if about_sender(message) => ErrorClass::ProviderPermanent,
        (Some(300), _) => ErrorClass::RecipientPermanent,
        (Some(10 | 400 | 401 | 405 | 412 | 413), _) => ErrorClass::ProviderPermanent,
        (Some(100 | 429), _) | (_, 429 | 408 | 500..=599) => transient(),
        _ => ErrorClass::ProviderPermanent,
    }
}

/// Whether an "invalid email request" message is about our sender settings, e.g. "Invalid
/// 'From' address: …" or "Error parsing 'ReplyTo': …".
fn about_sender(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    ["'from'", "from address", "'replyto'", "reply-to", "replyto"]
        .iter()
        .any(|p| m.contains(p))
}

#[async_trait]
impl Provider for PostmarkProvider {
    fn kind(&self) -> ProviderKind {
        KIND
    }

    async fn send(&self, message: &OutboundMessage<'_>) -> Result<SendReceipt, ProviderError> {
        let body = self.request_body(message)?;
        let request = self
            .http
            .post(&self.email_url)
            .header(TOKEN_HEADER, self.token.clone())
            .header(ACCEPT, "application/json")
            .json(&body);
        let reply = http::call(PROVIDER, request).await?;
        let answer: ApiAnswer = reply.json().unwrap_or_default();
        if reply.is_success() && answer.error_code.unwrap_or(0) == 0 {
            if answer.message_id.is_none() {
                tracing::warn!(message_id = %message.id, "postmark accepted the email without a MessageID");
            }
            return Ok(SendReceipt {
                provider_message_id: answer.message_id.filter(|id| !id.trim().is_empty()),
            });
        }
        Err(self.classify(&reply, Some(message.content)))
    }

    async fn check(&self) -> Result<CheckReport, ProviderError> {
        let request = self
            .http
            .get(&self.server_url)
            .header(TOKEN_HEADER, self.token.clone())
            .header(ACCEPT, "application/json");
        let reply = http::call(PROVIDER, request).await?;
        if !reply.is_success() {
            return Err(self.classify(&reply, None));
        }
        let server: ServerInfo = reply.json().ok_or_else(|| {
            ProviderError::transient("postmark: the server details could not be read")
                .with_code("unreadable_response")
        })?;
        let name = scrub(server.name.as_deref().unwrap_or("unnamed"), &[], &[]);
        let id = server.id.map(|i| format!(" (id {i})")).unwrap_or_default();
        Ok(CheckReport {
            detail: format!(
                "server token accepted for server {name}{id}; sending through stream {}",
                self.message_stream
            ),
        })
    }
}

/// `message_id` (ours) plus the tenant's `metadata.tags` object, within Postmark's limits
/// (10 fields, names ≤ 20 characters, values ≤ 80): entries that do not fit are dropped.
fn metadata(message: &OutboundMessage<'_>) -> Map<String, Value> {
    let mut fields = Map::new();
    fields.insert("message_id".into(), Value::String(message.id.to_string()));
    let Some(Value::Object(tags)) = message.metadata.and_then(|m| m.get("tags")) else {
        return fields;
    };
    let mut entries: Vec<(&String, &Value)> = tags.iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    for (name, value) in entries {
        if fields.len() >= MAX_METADATA_FIELDS {
            break;
        }
        let value = match value {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => continue,
        };
        if name != "message_id"
            && !name.is_empty()
            && name.chars().count() <= MAX_METADATA_NAME
            && value.chars().count() <= MAX_METADATA_VALUE
        {
            fields.insert(name.clone(), Value::String(value));
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_request_messages_about_the_sender_are_recognised() {
        assert!(about_sender(
            "Invalid 'From' address: 'noreply@'. It must contain the '@' symbol."
        ));
        assert!(about_sender(
            "Error parsing 'ReplyTo': Illegal email address"
        ));
        assert!(!about_sender(
            "Error parsing 'To': Illegal email address 'ada'. It must contain the '@' symbol."
        ));
        assert!(!about_sender(
            "Provide either email TextBody or HtmlBody or both."
        ));
    }
}
