use serde::{Deserialize, Serialize};

/// Where a message is in its life.
///
/// `queued` → `sending` → `sent` → (`delivered` | `undelivered` | `bounced`), or `failed`, or
/// `expired`, or `suppressed` (the recipient is on the tenant's suppression list; no provider
/// was called). The worker treats every status from `sent` on as final: it never sends again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageStatus {
    Queued,
    Sending,
    Sent,
    Delivered,
    Undelivered,
    Bounced,
    Failed,
    Expired,
    Suppressed,
}

impl MessageStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageStatus::Queued => "queued",
            MessageStatus::Sending => "sending",
            MessageStatus::Sent => "sent",
            MessageStatus::Delivered => "delivered",
            MessageStatus::Undelivered => "undelivered",
            MessageStatus::Bounced => "bounced",
            MessageStatus::Failed => "failed",
            MessageStatus::Expired => "expired",
            MessageStatus::Suppressed => "suppressed",
        }
    }

    pub fn parse(s: &str) -> Option<MessageStatus> {
        Some(match s {
            "queued" => MessageStatus::Queued,
            "sending" => MessageStatus::Sending,
            "sent" => MessageStatus::Sent,
            "delivered" => MessageStatus::Delivered,
            "undelivered" => MessageStatus::Undelivered,
            "bounced" => MessageStatus::Bounced,
            "failed" => MessageStatus::Failed,
            "expired" => MessageStatus::Expired,
            "suppressed" => MessageStatus::Suppressed,
            _ => return None,
        })
    }

    /// True once the worker is done with the message: it must never be sent again.
    pub fn is_final(self) -> bool {
        !matches!(self, MessageStatus::Queued | MessageStatus::Sending)
    }
}

impl std::fmt::Display for MessageStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One step in a message's life, recorded in `message_events`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Accepted,
    Attempt,
    RetryScheduled,
    Failover,
    CircuitOpen,
    Sent,
    Delivered,
    Undelivered,
    Bounced,
    Complained,
    Failed,
    Expired,
    /// The recipient is on the tenant's suppression list: no provider was called.
    Suppressed,
    DeadLettered,
    /// An operator re-drove a dead letter: the message is `queued` again.
    Replayed,
    Duplicate,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Accepted => "accepted",
            EventKind::Attempt => "attempt",
            EventKind::RetryScheduled => "retry_scheduled",
            EventKind::Failover => "failover",
            EventKind::CircuitOpen => "circuit_open",
            EventKind::Sent => "sent",
            EventKind::Delivered => "delivered",
            EventKind::Undelivered => "undelivered",
            EventKind::Bounced => "bounced",
            EventKind::Complained => "complained",
            EventKind::Failed => "failed",
            EventKind::Expired => "expired",
            EventKind::Suppressed => "suppressed",
            EventKind::DeadLettered => "dead_lettered",
            EventKind::Replayed => "replayed",
            EventKind::Duplicate => "duplicate",
        }
    }
}
