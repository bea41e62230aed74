use serde::{Deserialize, Serialize};

use super::Channel;

pub const MAX_SUBJECT_CHARS: usize = 998;
/// Text and HTML parts of an email, each.
pub const MAX_EMAIL_BODY_BYTES: usize = 256 * 1024;
/// Ten concatenated segments' worth; providers reject longer bodies.
pub const MAX_SMS_CHARS: usize = 1600;

/// What a message says. Which parts are required depends on the channel; see [`Content::check`].
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Content {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
}

/// Bodies can carry one-time codes: `Debug` shows only their sizes.
impl std::fmt::Debug for Content {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Content")
            .field("subject_len", &self.subject.as_ref().map(|s| s.len()))
            .field("text_len", &self.text.as_ref().map(|s| s.len()))
            .field("html_len", &self.html.as_ref().map(|s| s.len()))
            .finish()
    }
}

fn blank(s: &Option<String>) -> bool {
    s.as_deref().map(|s| s.trim().is_empty()).unwrap_or(true)
}

impl Content {
    /// Checks the content against the channel's rules; each problem names its field.
    pub fn check(&self, channel: Channel) -> Vec<(String, String)> {
        let mut errors = Vec::new();
        match channel {
            Channel::Email => {
                if blank(&self.subject) {
                    errors.push(("content.subject".into(), "is required for email".into()));
                } else if let Some(s) = &self.subject {
                    if s.chars().count() > MAX_SUBJECT_CHARS {
                        errors.push((
                            "content.subject".into(),
                            format!("must be at most {MAX_SUBJECT_CHARS} characters"),
                        ));
                    }
                    if s.contains(['\r', '\n']) {
                        errors.push((
                            "content.subject".into(),
                            "must not contain line breaks".into(),
                        ));
                    }
                }
                if blank(&self.text) && blank(&self.html) {
                    errors.push((
                        "content".into(),
                        "email needs content.text and/or content.html".into(),
                    ));
                }
                for (name, part) in [("content.text", &self.text), ("content.html", &self.html)] {
                    if part.as_ref().map(|p| p.len()).unwrap_or(0) > MAX_EMAIL_BODY_BYTES {
                        errors.push((
                            name.into(),
                            format!("must be at most {MAX_EMAIL_BODY_BYTES} bytes"),
                        ));
                    }
                }
            }
            Channel::Sms => {
                if blank(&self.text) {
                    errors.push(("content.text".into(), "is required for sms".into()));
                } else if let Some(t) = &self.text
                    && t.chars().count() > MAX_SMS_CHARS
                {
                    errors.push((
                        "content.text".into(),
                        format!("must be at most {MAX_SMS_CHARS} characters"),
                    ));
                }
                if self.subject.is_some() {
                    errors.push(("content.subject".into(), "is not allowed for sms".into()));
                }
                if self.html.is_some() {
                    errors.push(("content.html".into(), "is not allowed for sms".into()));
                }
            }
        }
        errors
    }
}
