//! Why a recipient is on a tenant's suppression list, and the one normal form a suppressed
//! recipient is stored and looked up in.

use serde::{Deserialize, Serialize};

use super::Channel;

/// Why a recipient is suppressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SuppressionReason {
    /// A provider reported a permanent bounce (the address does not exist).
    HardBounce,
    /// The recipient marked a message as spam.
    Complaint,
    /// The recipient opted out (e.g. replied STOP to an SMS).
    OptedOut,
    /// A provider refused the recipient as invalid (e.g. not a mobile number).
    InvalidRecipient,
    /// Added by the tenant.
    Manual,
}

impl SuppressionReason {
    pub fn as_str(self) -> &'static str {
        match self {
            SuppressionReason::HardBounce => "hard_bounce",
            SuppressionReason::Complaint => "complaint",
            SuppressionReason::OptedOut => "opted_out",
            SuppressionReason::InvalidRecipient => "invalid_recipient",
            SuppressionReason::Manual => "manual",
        }
    }

    pub fn parse(s: &str) -> Option<SuppressionReason> {
        Some(match s {
            "hard_bounce" => SuppressionReason::HardBounce,
            "complaint" => SuppressionReason::Complaint,
            "opted_out" => SuppressionReason::OptedOut,
            "invalid_recipient" => SuppressionReason::InvalidRecipient,
            "manual" => SuppressionReason::Manual,
            _ => return None,
        })
    }
}

/// The form a recipient is suppressed under: email addresses lower-cased (mailbox providers
/// treat them case-insensitively, and a bounce must catch `Ada@X.com` as well as
/// `ada@x.com`), phone numbers as parsed (E.164 already).
pub fn normalize_recipient(channel: Channel, recipient: &str) -> String {
    match channel {
        Channel::Email => recipient.trim().to_lowercase(),
        Channel::Sms => recipient.trim().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_round_trip_and_emails_are_lower_cased() {
        for r in [
            SuppressionReason::HardBounce,
            SuppressionReason::Complaint,
            SuppressionReason::OptedOut,
            SuppressionReason::InvalidRecipient,
            SuppressionReason::Manual,
        ] {
            assert_eq!(SuppressionReason::parse(r.as_str()), Some(r));
        }
        assert_eq!(SuppressionReason::parse("soft_bounce"), None);
        assert_eq!(
            normalize_recipient(Channel::Email, "Ada@Example.COM"),
            "ada@example.com"
        );
        assert_eq!(
            normalize_recipient(Channel::Sms, "+14155550100"),
            "+14155550100"
        );
    }
}
