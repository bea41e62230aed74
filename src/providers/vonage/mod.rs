//! The `vonage` kind (SMS) and everything the service knows about Vonage's
//! (formerly Nexmo's) SMS API:
//!
//! - sending: `POST {base}/sms/json`, form fields `api_key`, `api_secret`, `from`, `to` (the
//!   E.164 number without its `+`), `text`, plus `client-ref` (our message id, echoed in
//!   Vonage's delivery receipts) and `type=unicode` when the text does not fit the GSM-7
//!   alphabet (with the default `type=text` Vonage would garble it);
//! - reading the answer: Vonage reports failures with HTTP 200 and a per-part
//!   `messages[].status` (see `class_for_status` for the table); the first part's
//!   `message-id` becomes the provider message id;
//! - the credentials check: `GET {base}/account/get-balance?api_key=…&api_secret=…`.
//!
//! Vonage takes no idempotency key: a retry after a timeout whose request did reach Vonage
//! can send the SMS twice.
//!
//! Delivery receipts: only with `signature_secret` configured (the account's signed-webhook
//! secret, HMAC-SHA256 or `signature_method: "sha512"`) does a send carry the per-message
//! `callback` URL the worker offers, because an unsigned receipt cannot be told from a forged
//! one. The receipts are verified in `webhook.rs`; sending and the check live in `send.rs`.

mod send;
pub mod webhook;

use std::sync::Arc;

use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{Map, Value};

pub use send::VonageProvider;

use super::description::{BuildError, Example, FieldSpec, FieldType, KindSpec, typed_config};
use super::{Provider, ProviderContext, ProviderKind};
use crate::domain::Channel;

pub const KIND: ProviderKind = ProviderKind::new("vonage");

pub static SPEC: KindSpec = KindSpec {
    kind: KIND,
    label: "Vonage",
    description: "SMS through Vonage's (Nexmo's) SMS API",
    channels: &[Channel::Sms],
    fields: &[
        FieldSpec::new(
            "api_key",
            "API key",
            FieldType::Text,
            true,
            "Your Vonage account's API key, from the API dashboard.",
            Example::Text("a1b2c3d4"),
        ),
        FieldSpec::new(
            "api_secret",
            "API secret",
            FieldType::Secret,
            true,
            "The account's API secret.",
            Example::Text("A1b2C3d4E5f6G7h8"),
        ),
        FieldSpec::new(
            "from",
            "From",
            FieldType::Text,
            true,
            "The sending number (E.164) or alphanumeric sender ID.",
            Example::Text("+15005550006"),
        ),
        FieldSpec::new(
            "signature_secret",
            "Signature secret",
            FieldType::Secret,
            false,
            "The account's signed-webhook secret. Only with it are delivery receipts requested \
             (an unsigned receipt cannot be told from a forged one).",
            Example::Text("sigsecret0123456789abcdef"),
        ),
        FieldSpec {
            options: &["sha256", "sha512"],
            ..FieldSpec::new(
                "signature_method",
                "Signature method",
                FieldType::Select,
                false,
                "The account's HMAC signature method for webhooks. Default sha256.",
                Example::Text("sha256"),
            )
        },
    ],
    build,
    receipts: Some(webhook::receipts),
};

/// The `vonage` kind's configuration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VonageConfig {
    pub api_key: String,
    pub api_secret: SecretString,
    pub from: String,
    pub signature_secret: Option<SecretString>,
    pub signature_method: Option<String>,
}

/// Builds the adapter from its whole decrypted configuration.
pub fn build(
    config: &Map<String, Value>,
    ctx: &ProviderContext,
) -> Result<Arc<dyn Provider>, BuildError> {
    Ok(Arc::new(VonageProvider::new(typed_config(config)?, ctx)?))
}
