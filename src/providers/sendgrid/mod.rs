//! The `sendgrid` kind (email): sends email through `POST {base}/v3/mail/send` (v3 Mail Send, answered
//! `202 Accepted` with the message id in `X-Message-Id`), checks credentials through
//! `GET {base}/v3/scopes`, and classifies SendGrid's errors (`{"errors": [{field, message}]}`)
//! into the delivery policy's classes.
//!
//! SendGrid has no idempotency key: a retry after a timeout can send twice. Our message id
//! travels in `custom_args.message_id`, so SendGrid's event webhook can name it.
//!
//! Sending and the check live in `send.rs`, the signed Event Webhook in `webhook.rs`.

mod send;
pub mod webhook;

use std::sync::Arc;

use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{Map, Value};

pub use send::SendgridProvider;

use super::description::{BuildError, Example, FieldSpec, FieldType, KindSpec, typed_config};
use super::{Provider, ProviderContext, ProviderKind};
use crate::domain::Channel;

pub const KIND: ProviderKind = ProviderKind::new("sendgrid");

pub static SPEC: KindSpec = KindSpec {
    kind: KIND,
    label: "SendGrid",
    description: "Email through SendGrid's v3 Mail Send API",
    channels: &[Channel::Email],
    fields: &[
        FieldSpec::new(
            "api_key",
            "API key",
            FieldType::Secret,
            true,
            "A SendGrid API key (SG.…) with the mail.send scope.",
            Example::Text("SG.0123456789abcdefghij.klmnopqrstuvwxyz0123456789abcdefghijklm"),
        ),
        FieldSpec::new(
            "from",
            "From",
            FieldType::Text,
            true,
            "A verified sender identity: an address or Name <address>.",
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
            "webhook_public_key",
            "Event webhook verification key",
            FieldType::Text,
            false,
            "The public key SendGrid shows when signed event webhooks are enabled (base64); \
             without it receipts are refused.",
            Example::Text(
                "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEhO2Qg2Uf8Z9V+bOW8agZQvjbWCzK8Zy14E61FZq8h2E9PZichGm0ajoHVCjBfUmc7fnU+tFSFqP57LlRe0hBtQ==",
            ),
        ),
    ],
    build,
    receipts: Some(webhook::receipts),
};

/// The `sendgrid` kind's configuration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendgridConfig {
    pub api_key: SecretString,
    pub from: String,
    pub reply_to: Option<String>,
    pub webhook_public_key: Option<String>,
}

/// Builds the adapter from its whole decrypted configuration.
pub fn build(
    config: &Map<String, Value>,
    ctx: &ProviderContext,
) -> Result<Arc<dyn Provider>, BuildError> {
    Ok(Arc::new(SendgridProvider::new(typed_config(config)?, ctx)?))
}
