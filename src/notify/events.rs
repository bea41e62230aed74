//! The event types a webhook endpoint subscribes to: one per status a message can reach
//! after it leaves the worker's hands.

use crate::domain::MessageStatus;

/// `message.<status>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    Sent,
    Delivered,
    Undelivered,
    Bounced,
    Failed,
    Expired,
    Suppressed,
}

impl EventType {
    pub const ALL: [EventType; 7] = [
        EventType::Sent,
        EventType::Delivered,
        EventType::Undelivered,
        EventType::Bounced,
        EventType::Failed,
        EventType::Expired,
        EventType::Suppressed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Sent => "message.sent",
            EventType::Delivered => "message.delivered",
            EventType::Undelivered => "message.undelivered",
            EventType::Bounced => "message.bounced",
            EventType::Failed => "message.failed",
            EventType::Expired => "message.expired",
            EventType::Suppressed => "message.suppressed",
        }
    }

    pub fn parse(s: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|e| e.as_str() == s)
    }

    /// The event a message reaching `status` raises, if any.
    pub fn for_status(status: MessageStatus) -> Option<EventType> {
        Some(match status {
            MessageStatus::Queued | MessageStatus::Sending => return None,
            MessageStatus::Sent => EventType::Sent,
            MessageStatus::Delivered => EventType::Delivered,
            MessageStatus::Undelivered => EventType::Undelivered,
            MessageStatus::Bounced => EventType::Bounced,
            MessageStatus::Failed => EventType::Failed,
            MessageStatus::Expired => EventType::Expired,
            MessageStatus::Suppressed => EventType::Suppressed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_after_sending_has_its_event() {
        for e in EventType::ALL {
            assert_eq!(EventType::parse(e.as_str()), Some(e));
            let status = e.as_str().trim_start_matches("message.");
            assert_eq!(
                MessageStatus::parse(status).and_then(EventType::for_status),
                Some(e)
            );
        }
        assert_eq!(EventType::for_status(MessageStatus::Sending), None);
        assert_eq!(EventType::parse("message.opened"), None);
    }
}
