//! The `twilio` kind (SMS) and everything the service knows about Twilio's Programmable
//! Messaging REST API:
//!
//! - sending (`send.rs`): `POST {base}/2010-04-01/Accounts/{AccountSid}/Messages.json`, HTTP
//!   Basic auth (`account_sid:auth_token`, or `api_key_sid:api_key_secret` when both are
//!   configured), form fields `To`, `From` or `MessagingServiceSid`, `Body`, and
//!   `StatusCallback` when the worker asks for receipts; the returned `sid` becomes the
//!   provider message id;
//! - the credentials check: `GET {base}/2010-04-01/Accounts/{AccountSid}.json` (fetch Account);
//! - status callbacks (`webhook.rs`): [`verify_signature`] (`X-Twilio-Signature`) and
//!   [`parse_status_callback`].
//!
//! Twilio takes no idempotency key: a retry after a timeout whose request did reach Twilio
//! can send the SMS twice. That is the price of at-least-once delivery with this provider.

mod send;
pub mod webhook;

use std::sync::Arc;

use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{Map, Value};

pub use send::TwilioProvider;
pub use webhook::{parse_status_callback, verify_signature};

use super::description::{BuildError, Example, FieldSpec, FieldType, KindSpec, typed_config};
use super::{Provider, ProviderContext, ProviderKind};
use crate::domain::Channel;

pub const KIND: ProviderKind = ProviderKind::new("twilio");

pub static SPEC: KindSpec = KindSpec {
    kind: KIND,
    label: "Twilio",
    description: "SMS through Twilio's Messages API",
    channels: &[Channel::Sms],
    fields: &[
        FieldSpec::new(
            "account_sid",
            "Account SID",
            FieldType::Text,
            true,
            "Your Twilio account's SID, from the Twilio console (AC followed by 32 hex digits).",
            Example::Text("AC0123456789abcdef0123456789abcdef"),
        ),
        FieldSpec::new(
            "auth_token",
            "Auth token",
            FieldType::Secret,
            true,
            "The account's auth token. It also verifies Twilio's status callbacks.",
            Example::Text("0123456789abcdef0123456789abcdef"),
        ),
        FieldSpec::new(
            "api_key_sid",
            "API key SID",
            FieldType::Text,
            false,
            "Optional: an API key (SK…) to send with instead of the auth token; needs the \
             API key secret too.",
            Example::Text("SK0123456789abcdef0123456789abcdef"),
        ),
        FieldSpec::new(
            "api_key_secret",
            "API key secret",
            FieldType::Secret,
            false,
            "The secret of the API key above.",
            Example::Text("keysecret0123456789abcdef01234567"),
        ),
        FieldSpec::new(
            "from",
            "From",
            FieldType::Text,
            false,
            "The sending number (E.164), short code or alphanumeric sender ID. Either this or \
             a messaging service SID is required.",
            Example::Text("+15005550006"),
        ),
        FieldSpec::new(
            "messaging_service_sid",
            "Messaging service SID",
            FieldType::Text,
            false,
            "Optional: a messaging service (MG…) that picks the sender; preferred over From \
             when both are set.",
            Example::Text("MG0123456789abcdef0123456789abcdef"),
        ),
    ],
    build,
    receipts: Some(webhook::receipts),
};

/// The `twilio` kind's configuration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TwilioConfig {
    pub account_sid: String,
    pub auth_token: SecretString,
    pub api_key_sid: Option<String>,
    pub api_key_secret: Option<SecretString>,
    pub from: Option<String>,
    pub messaging_service_sid: Option<String>,
}

/// Builds the adapter from its whole decrypted configuration.
pub fn build(
    config: &Map<String, Value>,
    ctx: &ProviderContext,
) -> Result<Arc<dyn Provider>, BuildError> {
    Ok(Arc::new(TwilioProvider::new(typed_config(config)?, ctx)?))
}
