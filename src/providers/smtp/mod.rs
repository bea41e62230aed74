//! The `smtp` kind: sends email through a tenant's own SMTP server with lettre.
//!
//! Configuration ([`SPEC`], [`SmtpConfig`]): `host`, `port`, `username?`, `password*?`,
//! `tls: "starttls" | "implicit" | "none"`, `from`, `reply_to?`. The folder: `config.rs`
//! checks a configuration, `transport.rs` holds the adapter and its connections,
//! `classify.rs` the error classification, `send.rs` sending and the connection check.
//!
//! - `implicit`: TLS from the first byte (SMTPS, usually port 465); `starttls`: plaintext
//!   greeting, then STARTTLS is *required* (usually 587; a server that does not offer it is
//!   refused before any credentials or mail are sent); `none`: plaintext, for local test
//!   servers only, so it is accepted only when the operator sets
//!   `COMMUNICATION_ALLOW_PRIVATE_HOSTS=true`.
//! - Certificates are checked against the webpki roots; rustls runs on aws-lc-rs.
//! - One [`AsyncSmtpTransport`] per adapter, created on first use and reused (with lettre's
//!   `pool` feature it keeps connections open between messages). It is replaced only when the
//!   address the host resolves to changes, or after a timeout (a connection abandoned mid-way
//!   through a transaction must never be reused).
//!
//! # Tenant-supplied hosts
//!
//! Unless the operator allows private hosts, the host must be public
//! ([`crate::address_policy`]): a literal IP address is checked when the configuration is
//! saved or built; a name is resolved at every send and check (DNS can change) and refused if
//! *any* of its addresses is loopback, private, link-local, CGNAT, unique-local,
//! documentation, multicast or otherwise non-public. lettre is then told to connect to the checked address itself (TLS
//! still verifies the certificate against the host name), so a second, different DNS answer
//! cannot slip a private address in between the check and the connection (DNS rebinding).
//!
//! # Error classification
//!
//! - No answer: connection refused or reset, DNS failure, timeouts, the server closing the
//!   connection → transient.
//! - Any 4xx reply (transient negative completion) → transient.
//! - TLS failures (handshake, certificate, STARTTLS not offered) → provider-permanent.
//! - 5xx replies: lettre reports the code and the server's text but not which command was
//!   refused, so `permanent_reply_class` decides, in this order:
//!   1. 530, 534, 535, 538 (authentication required / failed) → provider-permanent;
//!   2. the RFC 3463 enhanced status code when the server gives one: `5.1.1`–`5.1.4`,
//!      `5.1.6`, `5.1.10`, `5.2.1`, `5.2.2` (bad/moved/disabled/full destination mailbox) →
//!      recipient-permanent; `5.1.7`, `5.1.8` (bad sender) and any `5.7.x` (security,
//!      policy, relaying denied) → provider-permanent;
//!   3. the reply text: "sender", "mail from", "relay", "rcpthosts" (the server will not
//!      relay for this account) → provider-permanent; "recipient", "rcpt",
//!      "user unknown", "no such user", "does not exist", … → recipient-permanent;
//!   4. which of our two addresses the text quotes (only the recipient's → recipient, only
//!      the sender's → provider);
//!   5. otherwise 551 (user not local: a reply only RCPT TO can get) → recipient-permanent,
//!      and everything else (550/553 on MAIL FROM, 552/554 on DATA, 5xx on the greeting) →
//!      provider-permanent. When in doubt the rule picks provider-permanent: the worst case
//!      is a needless failover, whereas a wrong recipient-permanent would fail a message
//!      another provider could have delivered.
//! - Anything lettre refuses itself (no common AUTH mechanism, an unparsable reply) →
//!   provider-permanent.
//!
//! Error messages carry the SMTP code and the server's reply text (control characters
//! removed, length capped, the password and its base64 forms blanked out); never the
//! password or the message body.

mod classify;
mod config;
mod send;
mod transport;

use std::sync::Arc;

use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{Map, Value};

pub use transport::SmtpProvider;

use super::description::{
    BuildError, Example, FieldSpec, FieldType, KindSpec, Range, typed_config,
};
use super::{Provider, ProviderContext, ProviderKind};
use crate::domain::Channel;

pub const KIND: ProviderKind = ProviderKind::new("smtp");

pub static SPEC: KindSpec = KindSpec {
    kind: KIND,
    label: "SMTP",
    description: "Email through your own SMTP server",
    channels: &[Channel::Email],
    fields: &[
        FieldSpec::new(
            "host",
            "Host",
            FieldType::Text,
            true,
            "The SMTP server's host name (or public IP address).",
            Example::Text("smtp.acme.example"),
        ),
        FieldSpec {
            range: Some(Range {
                min: 1.0,
                exclusive: false,
                max: 65535.0,
                message: "must be a port number 1-65535",
            }),
            ..FieldSpec::new(
                "port",
                "Port",
                FieldType::Number,
                true,
                "Usually 587 with STARTTLS, 465 with implicit TLS.",
                Example::Integer(587),
            )
        },
        FieldSpec::new(
            "username",
            "Username",
            FieldType::Text,
            false,
            "The login, if the server requires one (with the password).",
            Example::Text("mailer@acme.example"),
        ),
        FieldSpec::new(
            "password",
            "Password",
            FieldType::Secret,
            false,
            "The login's password.",
            Example::Text("app-password-0123456789"),
        ),
        FieldSpec {
            options: &["starttls", "implicit", "none"],
            ..FieldSpec::new(
                "tls",
                "TLS",
                FieldType::Select,
                true,
                "starttls: plaintext greeting then STARTTLS, required (port 587); implicit: TLS \
                 from the first byte (port 465); none: plaintext, only for local test servers \
                 the operator allows.",
                Example::Text("starttls"),
            )
        },
        FieldSpec::new(
            "from",
            "From",
            FieldType::Text,
            true,
            "The sender: an address or Name <address>.",
            Example::Text("Acme <noreply@acme.example>"),
        ),
        FieldSpec::new(
            "reply_to",
            "Reply-To",
            FieldType::Text,
            false,
            "Optional address replies go to (a message's metadata.reply_to wins when valid).",
            Example::Text("support@acme.example"),
        ),
    ],
    build,
    receipts: None,
};

/// How the connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    Starttls,
    Implicit,
    None,
}

/// The `smtp` kind's configuration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u64,
    pub username: Option<String>,
    pub password: Option<SecretString>,
    pub tls: TlsMode,
    pub from: String,
    pub reply_to: Option<String>,
}

/// Builds the adapter from its whole (decrypted) configuration; nothing is connected yet.
pub fn build(
    config: &Map<String, Value>,
    ctx: &ProviderContext,
) -> Result<Arc<dyn Provider>, BuildError> {
    Ok(Arc::new(SmtpProvider::new(typed_config(config)?, ctx)?))
}
