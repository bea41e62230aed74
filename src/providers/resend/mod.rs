//! The `resend` kind (email): sends email through `POST {base}/emails`, checks credentials through
//! `GET {base}/domains`, and classifies Resend's documented errors (`{statusCode, message,
//! name}`) into the delivery policy's classes. Sending and the check live in `send.rs`;
//! webhook signature checks and event parsing in `webhook.rs` (re-exported here).
//!
//! Every send carries `Idempotency-Key: <our message id>`: Resend keeps the key for 24 hours, so
//! a retry after a timeout returns the first answer instead of sending the email twice.

mod send;
mod webhook;

use std::sync::Arc;

use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{Map, Value};

pub use send::{ResendProvider, classify};
pub use webhook::{event_receipt, parse_event, verify_webhook};

use super::description::{BuildError, Example, FieldSpec, FieldType, KindSpec, typed_config};
use super::{Provider, ProviderContext, ProviderKind};
use crate::domain::Channel;

pub const KIND: ProviderKind = ProviderKind::new("resend");

pub static SPEC: KindSpec = KindSpec {
    kind: KIND,
    label: "Resend",
    description: "Email through Resend's API",
    channels: &[Channel::Email],
    fields: &[
        FieldSpec::new(
            "api_key",
            "API key",
            FieldType::Secret,
            true,
            "A Resend API key (re_…); a key restricted to sending is enough.",
            Example::Text("re_0123456789abcdefghijklmnop"),
        ),
        FieldSpec::new(
            "from",
            "From",
            FieldType::Text,
            true,
            "The sender, on a domain verified in Resend: an address or Name <address>.",
            Example::Text("Acme <noreply@acme.example>"),
        ),
        FieldSpec::new(
            "reply_to",
            "Reply-To",
            FieldType::Text,
            false,
            "Optional address replies go to (a message's metadata.reply_to is used otherwise).",
            Example::Text("support@acme.example"),
        ),
        FieldSpec::new(
            "webhook_secret",
            "Webhook signing secret",
            FieldType::Secret,
            false,
            "The signing secret (whsec_…) of the Resend webhook pointed at this provider's \
             receipt URL; without it receipts are refused.",
            Example::Text("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
        ),
    ],
    build,
    receipts: Some(webhook::receipts),
};

/// The `resend` kind's configuration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResendConfig {
    pub api_key: SecretString,
    pub from: String,
    pub reply_to: Option<String>,
    pub webhook_secret: Option<SecretString>,
}

/// Builds the adapter from its whole decrypted configuration.
pub fn build(
    config: &Map<String, Value>,
    ctx: &ProviderContext,
) -> Result<Arc<dyn Provider>, BuildError> {
    Ok(Arc::new(ResendProvider::new(typed_config(config)?, ctx)?))
}
