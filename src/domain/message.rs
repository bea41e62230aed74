use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::{Channel, Content, Recipient};

pub const MAX_METADATA_BYTES: usize = 8 * 1024;
/// A week: longer than any retry schedule, short enough to keep OTPs from living forever.
pub const MAX_TTL_SECONDS: u64 = 7 * 24 * 3600;
pub const MAX_IDEMPOTENCY_KEY_CHARS: usize = 255;

/// One validation problem, naming the field it concerns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// The fields of a send as they arrive, from HTTP or from the queue, before validation.
#[derive(Debug, Clone)]
pub struct MessageDraft {
    pub channel: Option<String>,
    pub to: Option<String>,
    pub content: Option<Content>,
    pub provider_id: Option<Uuid>,
    pub metadata: Option<serde_json::Value>,
    pub ttl_seconds: Option<u64>,
    pub idempotency_key: Option<String>,
}

/// A send that passed every rule. HTTP intake and the queue consumer both build it through
/// [`MessageDraft::validate`], so the two doors are exactly as strict as each other.
#[derive(Debug, Clone)]
pub struct ValidMessage {
    pub channel: Channel,
    pub to: Recipient,
    pub content: Content,
    pub provider_id: Option<Uuid>,
    pub metadata: Option<serde_json::Value>,
    pub ttl_seconds: Option<u64>,
    pub idempotency_key: Option<String>,
}

impl ValidMessage {
    /// The moment after which the message is worthless, if it has a TTL.
    pub fn expires_at(&self, created_at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.ttl_seconds
            .map(|t| created_at + chrono::Duration::seconds(t.min(MAX_TTL_SECONDS) as i64))
    }
}

pub fn check_idempotency_key(key: &str) -> Result<(), String> {
    if key.is_empty() || key.chars().count() > MAX_IDEMPOTENCY_KEY_CHARS {
        return Err(format!(
            "must be 1 to {MAX_IDEMPOTENCY_KEY_CHARS} characters"
        ));
    }
    if key.chars().any(|c| c.is_control()) {
        return Err("must not contain control characters".into());
    }
    Ok(())
}

impl MessageDraft {
    pub fn validate(self) -> Result<ValidMessage, Vec<FieldError>> {
        let mut errors = Vec::new();
        let channel = match self.channel.as_deref() {
            None => {
                errors.push(FieldError::new("channel", "is required"));
                None
            }
            Some(c) => match Channel::parse(c) {
                Some(c) => Some(c),
                None => {
                    errors.push(FieldError::new("channel", "must be \"email\" or \"sms\""));
                    None
                }
            },
        };
        let to = match (&self.to, channel) {
            (None, _) => {
                errors.push(FieldError::new("to", "is required"));
                None
            }
            (Some(_), None) => None,
            (Some(to), Some(channel)) => match Recipient::parse(channel, to) {
                Ok(r) => Some(r),
                Err(m) => {
                    errors.push(FieldError::new("to", m));
                    None
                }
            },
        };
        match (&self.content, channel) {
            (None, _) => errors.push(FieldError::new("content", "is required")),
            (Some(content), Some(channel)) => {
                for (field, message) in content.check(channel) {
                    errors.push(FieldError::new(field, message));
                }
            }
            (Some(_), None) => {}
        }
        if let Some(meta) = &self.metadata {
            if !meta.is_object() {
                errors.push(FieldError::new("metadata", "must be a JSON object"));
            } else if serde_json::to_vec(meta)
                .map(|v| v.len())
                .unwrap_or(usize::MAX)
                > MAX_METADATA_BYTES
            {
                errors.push(FieldError::new(
                    "metadata",
                    format!("must be at most {MAX_METADATA_BYTES} bytes of JSON"),
                ));
            }
        }
        if let Some(ttl) = self.ttl_seconds
            && (ttl == 0 || ttl > MAX_TTL_SECONDS)
        {
            errors.push(FieldError::new(
                "ttl_seconds",
                format!("must be between 1 and {MAX_TTL_SECONDS}"),
            ));
        }
        if let Some(key) = &self.idempotency_key
            && let Err(m) = check_idempotency_key(key)
        {
            errors.push(FieldError::new("idempotency_key", m));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        match (channel, to, self.content) {
            (Some(channel), Some(to), Some(content)) => Ok(ValidMessage {
                channel,
                to,
                content,
                provider_id: self.provider_id,
                metadata: self.metadata,
                ttl_seconds: self.ttl_seconds,
                idempotency_key: self.idempotency_key,
            }),
            _ => Err(vec![FieldError::new("", "invalid message")]),
        }
    }
}
