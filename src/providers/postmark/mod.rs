//! The `postmark` kind (email): sends email through `POST {base}/email` with the server token in
//! `X-Postmark-Server-Token`, checks the token through `GET {base}/server`, and classifies
//! Postmark's API error codes (`{ErrorCode, Message}`, mostly on HTTP 422) into the delivery
//! policy's classes.
//!
//! Postmark has no idempotency key: a retry after a timeout can send twice. Our message id
//! travels in `Metadata.message_id`, which Postmark echoes in its webhooks.
//!
//! Sending and the check live in `send.rs`; webhooks (Basic credentials) in `webhook.rs`.

mod send;
pub mod webhook;

use std::sync::Arc;

use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{Map, Value};

pub use send::PostmarkProvider;

use super::description::{BuildError, Example, FieldSpec, FieldType, KindSpec, typed_config};
use super::{Provider, ProviderContext, ProviderKind};
use crate::domain::Channel;

pub const KIND: ProviderKind = ProviderKind::new("postmark");

pub static SPEC: KindSpec = KindSpec {
    kind: KIND,
    label: "Postmark",
    description: "Email through Postmark's API",
    channels: &[Channel::Email],
    fields: &[
        FieldSpec::new(
            "server_token",
            "Server API token",
            FieldType::Secret,
            true,
            "The API token of the Postmark server to send through.",
            Example::Text("00000000-1111-2222-3333-444444444444"),
        ),
        FieldSpec::new(
            "from",
            "From",
            FieldType::Text,
            true,
            "A confirmed sender signature or an address on a verified domain.",
            Example::Text("Acme <noreply@acme.example>"),
        ),
        FieldSpec::new(
            "message_stream",
            "Message stream",
            FieldType::Text,
            false,
            "The server's message stream to send through. Default outbound.",
            Example::Text("outbound"),
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
            "webhook_username",
            "Webhook username",
            FieldType::Text,
            false,
            "The Basic auth username set on the Postmark webhook pointed at this provider's \
             receipt URL; receipts need it and the password.",
            Example::Text("postmark-hooks"),
        ),
        FieldSpec::new(
            "webhook_password",
            "Webhook password",
            FieldType::Secret,
            false,
            "The Basic auth password of that webhook.",
            Example::Text("hook-password-0123456789"),
        ),
    ],
    build,
    receipts: Some(webhook::receipts),
};

/// The `postmark` kind's configuration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostmarkConfig {
    pub server_token: SecretString,
    pub from: String,
    pub message_stream: Option<String>,
    pub reply_to: Option<String>,
    pub webhook_username: Option<String>,
    pub webhook_password: Option<SecretString>,
}

/// Builds the adapter from its whole decrypted configuration.
pub fn build(
    config: &Map<String, Value>,
    ctx: &ProviderContext,
) -> Result<Arc<dyn Provider>, BuildError> {
    Ok(Arc::new(PostmarkProvider::new(typed_config(config)?, ctx)?))
}
