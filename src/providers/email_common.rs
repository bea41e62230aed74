//! Helpers shared by the HTTP email adapters (Resend, SendGrid, Postmark, Mailgun): reading
//! their configuration, credential headers, blank checks, the reply-to choice, and scrubbing
//! provider error text of secrets and bodies.

use reqwest::header::HeaderValue;
use serde_json::{Map, Value};

use super::factory::BuildError;

/// `config.{field}` as a non-blank string, or a build error naming the provider and field.
pub(crate) fn required<'a>(
    provider: &str,
    config: &'a Map<String, Value>,
    field: &str,
) -> Result<&'a str, BuildError> {
    config
        .get(field)
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| BuildError(format!("{provider}: config.{field} is required")))
}

/// A header value carrying a credential: refused when an HTTP header cannot carry it, and
/// marked sensitive so it stays out of debug output.
pub(crate) fn credential_header(
    provider: &str,
    field: &str,
    value: &str,
) -> Result<HeaderValue, BuildError> {
    let mut header = HeaderValue::from_str(value).map_err(|_| {
        BuildError(format!(
            "{provider}: {field} contains characters an HTTP header cannot carry"
        ))
    })?;
    header.set_sensitive(true);
    Ok(header)
}

/// Provider error text kept in errors and events is cut to this many characters.
const MAX_DETAIL_CHARS: usize = 300;

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

/// Makes a provider's message safe to store: secrets and bodies replaced, control characters
/// dropped, length bounded.
pub(crate) fn sanitize(detail: &str, scrub: &[&str]) -> String {
    let mut s = detail.to_owned();
    for secret in scrub {
        if secret.len() >= 6 {
            s = s.replace(secret, "[redacted]");
        }
    }
    let s: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_DETAIL_CHARS)
        .collect();
    s.trim().to_owned()
}
