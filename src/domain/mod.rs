//! Pure domain types: channels, recipients, content, tenants, statuses and event kinds.
//!
//! Everything that crosses the edge (HTTP body, queue envelope) is parsed into these types once;
//! code past the edge never re-validates. Nothing here does I/O.

mod content;
mod message;
mod priority;
mod recipient;
mod status;
mod suppression;
mod tenant;

pub use content::{Content, MAX_EMAIL_BODY_BYTES, MAX_SMS_CHARS, MAX_SUBJECT_CHARS};
pub use message::{
    FieldError, MAX_IDEMPOTENCY_KEY_CHARS, MAX_METADATA_BYTES, MAX_TTL_SECONDS, MessageDraft,
    ValidMessage, check_idempotency_key,
};
pub use priority::Priority;
pub use recipient::{EmailAddress, PhoneNumber, Recipient};
pub use status::{EventKind, MessageStatus};
pub use suppression::{SuppressionReason, normalize_recipient};
pub use tenant::TenantId;

use serde::{Deserialize, Serialize};

/// The two delivery channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Email,
    Sms,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Sms => "sms",
        }
    }

    pub fn parse(s: &str) -> Option<Channel> {
        match s {
            "email" => Some(Channel::Email),
            "sms" => Some(Channel::Sms),
            _ => None,
        }
    }

    pub const ALL: [Channel; 2] = [Channel::Email, Channel::Sms];
}

impl std::fmt::Display for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
