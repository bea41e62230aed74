//! The `mailgun` kind (email): sends email through `POST {base}/v3/{domain}/messages` (form fields,
//! HTTP Basic `api:<key>`), on the US or EU API base by `config.region`, checks the key and the
//! sending domain through `GET {base}/v3/domains/{domain}`, and classifies Mailgun's errors
//! (`{"message": …}`, or a bare `Forbidden` for a bad key) into the delivery policy's classes.
//!
//! Mailgun has no idempotency key: a retry after a timeout can send twice. Our message id
//! travels as the user variable `v:message_id`, which Mailgun echoes in its webhooks.
//!
//! Sending and the check live in `send.rs`, the signed event webhooks in `webhook.rs`.

mod send;
pub mod webhook;

use std::sync::Arc;

use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{Map, Value};

pub use send::MailgunProvider;

use super::description::{BuildError, Example, FieldSpec, FieldType, KindSpec, typed_config};
use super::{Provider, ProviderContext, ProviderKind};
use crate::domain::Channel;

pub const KIND: ProviderKind = ProviderKind::new("mailgun");

pub static SPEC: KindSpec = KindSpec {
    kind: KIND,
    label: "Mailgun",
    description: "Email through Mailgun's messages API (US or EU region)",
    channels: &[Channel::Email],
    fields: &[
        FieldSpec::new(
            "api_key",
            "API key",
            FieldType::Secret,
            true,
            "A Mailgun API key (or a sending key of the domain).",
            Example::Text("key-0123456789abcdef0123456789abcdef"),
        ),
        FieldSpec::new(
            "domain",
            "Sending domain",
            FieldType::Text,
            true,
            "The Mailgun domain to send through.",
            Example::Text("mg.acme.example"),
        ),
        FieldSpec::new(
            "from",
            "From",
            FieldType::Text,
            true,
            "The sender, usually on the sending domain: an address or Name <address>.",
            Example::Text("Acme <noreply@mg.acme.example>"),
        ),
        FieldSpec {
            options: &["us", "eu"],
            ..FieldSpec::new(
                "region",
                "Region",
                FieldType::Select,
                false,
                "Where the Mailgun account lives. Default us.",
                Example::Text("us"),
            )
        },
        FieldSpec::new(
            "reply_to",
            "Reply-To",
            FieldType::Text,
            false,
            "Optional address replies go to (a message's metadata.reply_to is used otherwise).",
            Example::Text("support@acme.example"),
        ),
        FieldSpec::new(
            "webhook_signing_key",
            "Webhook signing key",
            FieldType::Secret,
            false,
            "The account's HTTP webhook signing key; without it receipts are refused.",
            Example::Text("whkey-0123456789abcdef0123456789ab"),
        ),
    ],
    build,
    receipts: Some(webhook::receipts),
};

/// Which of Mailgun's API bases the account lives on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Region {
    Us,
    Eu,
}

/// The `mailgun` kind's configuration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailgunConfig {
    pub api_key: SecretString,
    pub domain: String,
    pub from: String,
    pub region: Option<Region>,
    pub reply_to: Option<String>,
    pub webhook_signing_key: Option<SecretString>,
}

/// Builds the adapter from its whole decrypted configuration.
pub fn build(
    config: &Map<String, Value>,
    ctx: &ProviderContext,
) -> Result<Arc<dyn Provider>, BuildError> {
    Ok(Arc::new(MailgunProvider::new(typed_config(config)?, ctx)?))
}
