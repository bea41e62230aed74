//! Providers are plugins behind one trait. The worker asks a [`Provider`] to send and gets back
//! either the provider's message id or a classified [`ProviderError`]; it never knows which
//! provider it talks to.
//!
//! Each kind lives in its own folder with one [`KindSpec`](description::KindSpec) describing
//! it (channels, configuration fields, how to build, how to read receipts); the
//! [`registry`] lists the kinds and is the one way to build an adapter. `context` is what
//! adapters share, `http` and `scrub` the call helper and text scrubber of the HTTP adapters.

pub mod context;
pub mod description;
mod email_common;
pub mod http;
pub mod mailgun;
pub mod postmark;
pub mod registry;
pub mod resend;
pub mod scrub;
pub mod sendgrid;
pub mod smtp;
pub mod system;
pub mod twilio;
pub mod vonage;

use std::time::Duration;

use async_trait::async_trait;
use uuid::Uuid;

use crate::domain::{Channel, Content, Recipient};

pub use context::ProviderContext;
pub use description::{BuildError, KindSpec, ProviderKind};
pub use http::retry_after_seconds;

/// What a send needs to know, borrowed from the envelope.
#[derive(Debug)]
pub struct OutboundMessage<'a> {
    /// Our message id: adapters whose provider accepts an idempotency key send it.
    pub id: Uuid,
    pub tenant_id: &'a str,
    pub channel: Channel,
    pub to: &'a Recipient,
    pub content: &'a Content,
    /// Tenant-supplied key/value pairs (e.g. tags, reply_to) adapters may pass along.
    pub metadata: Option<&'a serde_json::Value>,
    /// Where the provider should post delivery receipts, when the operator set a public URL.
    pub status_callback: Option<String>,
}

/// A provider accepted the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendReceipt {
    /// The provider's own id of the message (Twilio's SID, Resend's id, SMTP's Message-ID).
    pub provider_message_id: Option<String>,
}

/// How a failure should be handled by the delivery policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Try the same provider again later (timeouts, connection errors, 5xx, throttling).
    /// `retry_after` is the provider's own hint, when it gave one.
    Transient { retry_after: Option<Duration> },
    /// This provider cannot send anything right now (bad credentials, suspended account,
    /// unverified sender): fail over to the next provider at once.
    ProviderPermanent,
    /// The recipient cannot be reached by any provider: fail the message.
    RecipientPermanent,
}

impl ErrorClass {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Transient { .. } => "transient",
            ErrorClass::ProviderPermanent => "provider_permanent",
            ErrorClass::RecipientPermanent => "recipient_permanent",
        }
    }
}

/// A classified failure. `message` is safe to store and show: adapters never put secrets or
/// message bodies in it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{class_str}: {message}", class_str = self.class.as_str())]
pub struct ProviderError {
    pub class: ErrorClass,
    pub message: String,
    /// The provider's error code when it gave one (e.g. Twilio's 21211).
    pub code: Option<String>,
    /// The request may have reached the provider and been acted on although no answer we
    /// could read came back (a timeout, a broken or unreadable response): the message may
    /// have been sent. Never set when nothing reached the provider (a refused connection).
    pub outcome_unknown: bool,
}

impl ProviderError {
    pub fn transient(message: impl Into<String>) -> Self {
        ProviderError {
            class: ErrorClass::Transient { retry_after: None },
            message: message.into(),
            code: None,
            outcome_unknown: false,
        }
    }

    pub fn transient_after(message: impl Into<String>, retry_after: Option<Duration>) -> Self {
        ProviderError {
            class: ErrorClass::Transient { retry_after },
            message: message.into(),
            code: None,
            outcome_unknown: false,
        }
    }

    pub fn provider(message: impl Into<String>) -> Self {
        ProviderError {
            class: ErrorClass::ProviderPermanent,
            message: message.into(),
            code: None,
            outcome_unknown: false,
        }
    }

    pub fn recipient(message: impl Into<String>) -> Self {
        ProviderError {
            class: ErrorClass::RecipientPermanent,
            message: message.into(),
            code: None,
            outcome_unknown: false,
        }
    }

    pub fn with_code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self
    }

    /// Marks a failure after which the message may have been sent (see `outcome_unknown`).
    pub fn with_unknown_outcome(mut self) -> Self {
        self.outcome_unknown = true;
        self
    }

    /// Classifies a reqwest transport failure (no HTTP response was read). Only a failed
    /// connection is known not to have reached the provider.
    pub fn from_transport(provider: &str, e: &reqwest::Error) -> Self {
        if e.is_connect() {
            return ProviderError::transient(format!("{provider}: connection failed"));
        }
        let what = if e.is_timeout() {
            "timed out"
        } else if e.is_decode() || e.is_body() {
            "response could not be read"
        } else {
            "request failed"
        };
        ProviderError::transient(format!("{provider}: {what}")).with_unknown_outcome()
    }
}

/// The outcome of a credentials check ("test connection").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckReport {
    /// What was checked, e.g. "account ACxxx is active".
    pub detail: String,
}

/// One configured provider, ready to send.
#[async_trait]
pub trait Provider: Send + Sync {
    /// The kind of provider (for events and metrics).
    fn kind(&self) -> ProviderKind;

    /// Sends one message. Must respect its own timeout and classify every failure.
    async fn send(&self, message: &OutboundMessage<'_>) -> Result<SendReceipt, ProviderError>;

    /// Checks the credentials without sending a message where the provider allows it.
    async fn check(&self) -> Result<CheckReport, ProviderError>;

    /// Whether the provider deduplicates on our message id (an idempotency key it honours),
    /// so that calling it again after an unknown outcome cannot send twice.
    fn deduplicates(&self) -> bool {
        false
    }
}

/// What a provider's delivery receipt (status callback, webhook event) says about a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The provider's id of the message, as returned by [`Provider::send`].
    pub provider_message_id: String,
    pub outcome: ReceiptOutcome,
    /// The provider's own status or error code, for the event detail (no bodies, no secrets).
    pub detail: Option<String>,
}

/// The receipt outcomes the service records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptOutcome {
    /// Still on its way (queued/sent at the provider): recorded as an event only.
    InProgress,
    Delivered,
    Undelivered,
    Bounced,
    Complained,
}

/// Why a webhook request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    #[error("signature headers are missing")]
    MissingSignature,
    #[error("signature does not match")]
    BadSignature,
    #[error("timestamp is outside the accepted window")]
    Stale,
    #[error("payload is malformed: {0}")]
    Malformed(String),
    /// The provider row lacks the secret that verifies its receipts.
    #[error("this provider has no {0} configured")]
    NotConfigured(&'static str),
    /// This kind sends no receipts here, or cannot be verified in this deployment (no public
    /// URL for a signature over the URL).
    #[error("no receipts are accepted at this endpoint")]
    NoEndpoint,
}

/// A receipt request as it arrived, for a kind's receipt verifier.
#[derive(Debug)]
pub struct ReceiptRequest<'a> {
    pub headers: &'a reqwest::header::HeaderMap,
    pub body: &'a [u8],
    /// The full URL the provider requested, on the service's public base (path and query as
    /// received), when `COMMUNICATION_PUBLIC_URL` is set. Signatures over the URL use it.
    pub public_url: Option<String>,
    /// Unix seconds, for timestamp windows.
    pub now: i64,
}

impl ReceiptRequest<'_> {
    /// A header's value, or "" when absent or not text.
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// A verified receipt, with the id it is deduplicated by and, where the provider echoes it,
/// our message id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedReceipt {
    pub receipt: Receipt,
    pub receipt_id: String,
    pub message_id: Option<Uuid>,
}

/// The value of a secret a receipt verifier needs, or `NotConfigured`.
pub fn receipt_secret<'a>(
    secret: Option<&'a secrecy::SecretString>,
    name: &'static str,
) -> Result<&'a str, WebhookError> {
    use secrecy::ExposeSecret;
    secret
        .map(|s| s.expose_secret())
        .filter(|s| !s.is_empty())
        .ok_or(WebhookError::NotConfigured(name))
}

#[cfg(test)]
mod outcome_tests {
    use super::*;

    #[test]
    fn only_failures_marked_after_the_request_left_have_an_unknown_outcome() {
        assert!(
            ProviderError::transient("mailgun: timed out")
                .with_unknown_outcome()
                .outcome_unknown
        );
        assert!(
            !ProviderError::transient("smtp: resolving mail.example.com timed out").outcome_unknown
        );
        assert!(!ProviderError::transient("mailgun: connection failed").outcome_unknown);
        assert!(!ProviderError::transient_after("sendgrid: HTTP 503", None).outcome_unknown);
        assert!(!ProviderError::provider("postmark: rejected").outcome_unknown);
    }
}
