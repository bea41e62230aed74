//! Helpers shared by the HTTP email adapters (Resend, SendGrid, Postmark, Mailgun): credential
//! headers, blank checks, the reply-to choice, and the bodies to scrub from provider text.

use reqwest::header::HeaderValue;
use serde_json::Value;

use super::BuildError;
use crate::domain::Content;

/// A header value carrying a credential: refused when an HTTP header cannot carry it, and
/// marked sensitive so it stays out of debug output.
pub(crate) fn credential_header(field: &str, value: &str) -> Result<HeaderValue, BuildError> {
    let mut header = HeaderValue::from_str(value)
        .map_err(|_| BuildError::field(field, "contains characters an HTTP header cannot carry"))?;
    header.set_sensitive(true);
    Ok(header)
}

pub(crate) fn non_blank(s: Option<&str>) -> Option<&str> {
    s.filter(|s| !s.trim().is_empty())
}

/// `config.reply_to`, else `metadata.reply_to` when it is a plausible single address (no line
/// breaks or control characters; anything else is ignored rather than sent).
pub(crate) fn reply_to<'a>(
    configured: Option<&'a str>,
    metadata: Option<&'a Value>,
) -> Option<&'a str> {
    configured.or_else(|| {
        metadata?
            .get("reply_to")?
            .as_str()
            .map(str::trim)
            .filter(|s| s.contains('@') && s.len() <= 320 && !s.chars().any(char::is_control))
    })
}

/// The parts of a message never to repeat from a provider's text (none for a check).
pub(crate) fn bodies(content: Option<&Content>) -> Vec<&str> {
    content
        .map(|c| {
            c.text
                .iter()
                .chain(c.html.iter())
                .map(String::as_str)
                .collect()
        })
        .unwrap_or_default()
}

/// The configured `from`, refused unless it holds an email address.
pub(crate) fn sender(from: &str) -> Result<String, BuildError> {
    let from = from.trim();
    if from.contains('@') {
        Ok(from.to_owned())
    } else {
        Err(BuildError::field("from", "must contain an email address"))
    }
}
