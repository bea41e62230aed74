//! The `smtp` adapter: sends email through a tenant's own SMTP server with lettre.
//!
//! Configuration (see [`super::kinds`]): `host`, `port`, `username?`, `password*?`,
//! `tls: "starttls" | "implicit" | "none"`, `from`, `reply_to?`.
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
//! Unless the operator allows private hosts, the host must be public: a literal IP address is
//! checked when the adapter is built; a name is resolved at every send and check (DNS can
//! change) and refused if *any* of its addresses is loopback, private, link-local, CGNAT,
//! unique-local, documentation, multicast or otherwise non-public (see
//! [`is_private_or_local`]). lettre is then told to connect to the checked address itself (TLS
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

use std::{
    error::Error as _,
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use async_trait::async_trait;
use base64::Engine as _;
use lettre::{
    Address, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
    message::{Mailbox, MultiPart, SinglePart},
    transport::smtp::{
        Error as SmtpError,
        authentication::Credentials,
        client::{Tls, TlsParameters},
    },
};
use serde_json::{Map, Value};
use tokio::time::{Instant, timeout_at};

use super::{
    CheckReport, ErrorClass, OutboundMessage, Provider, ProviderContext, ProviderError,
    ProviderKind, SendReceipt, factory::BuildError,
};
use crate::domain::Recipient;

type Transport = AsyncSmtpTransport<Tokio1Executor>;

/// Longest piece of a server reply kept in an error message.
const MAX_REPLY_CHARS: usize = 300;

/// Builds the adapter from its whole (decrypted, validated) configuration.
pub fn build(
    config: &Map<String, Value>,
    ctx: &ProviderContext,
) -> Result<Arc<dyn Provider>, BuildError> {
    Ok(Arc::new(SmtpProvider::from_config(config, ctx)?))
}

/// How the connection is secured, with the TLS parameters (checked against `host`).
#[derive(Clone)]
enum Security {
    Implicit(TlsParameters),
    Starttls(TlsParameters),
    Plaintext,
}

impl Security {
    fn describe(&self) -> &'static str {
        match self {
            Security::Implicit(_) => "implicit TLS",
            Security::Starttls(_) => "STARTTLS",
            Security::Plaintext => "plaintext",
        }
    }
}

/// Where lettre should connect.
enum Target {
    /// The configured host as written (private hosts allowed, or a literal IP checked at build).
    Configured,
    /// A name resolved and checked just now: connect to one of these addresses.
    Checked { first: IpAddr, all: Vec<IpAddr> },
}

/// The transport in use and the address it is pinned to (`None`: the configured host).
struct Current {
    addr: Option<IpAddr>,
    transport: Arc<Transport>,
}

/// An SMTP server configured by a tenant (or the operator).
pub struct SmtpProvider {
    /// Lower-case host name without a trailing dot, or an IP address.
    host: String,
    literal_ip: Option<IpAddr>,
    port: u16,
    security: Security,
    credentials: Option<Credentials>,
    username: Option<String>,
    /// Strings never to repeat from a server reply: the password and its AUTH encodings.
    redact: Vec<String>,
    from: Mailbox,
    /// Right-hand side of our Message-IDs: the domain of `from`.
    id_domain: String,
    reply_to: Option<Mailbox>,
    allow_private_hosts: bool,
    timeout: Duration,
    current: Mutex<Option<Current>>,
}

/// Never shows the credentials.
impl fmt::Debug for SmtpProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpProvider")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.security.describe())
            .field("username", &self.username)
            .field("from", &self.from.to_string())
            .field("allow_private_hosts", &self.allow_private_hosts)
            .finish_non_exhaustive()
    }
}

fn optional_str<'a>(
    config: &'a Map<String, Value>,
    name: &str,
) -> Result<Option<&'a str>, BuildError> {
    match config.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.as_str())),
        Some(_) => Err(BuildError(format!(
            "config.{name} must be a non-empty string"
        ))),
    }
}

fn required_str<'a>(config: &'a Map<String, Value>, name: &str) -> Result<&'a str, BuildError> {
    optional_str(config, name)?.ok_or_else(|| BuildError(format!("config.{name} is required")))
}

/// Splits `host` into a normalised name or a literal IP address.
fn parse_host(raw: &str) -> Result<(String, Option<IpAddr>), String> {
    let h = raw.trim();
    let unbracketed = h
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(h);
    if let Ok(ip) = unbracketed.parse::<IpAddr>() {
        return Ok((ip.to_string(), Some(ip)));
    }
    let name = h.strip_suffix('.').unwrap_or(h).to_ascii_lowercase();
    if name.is_empty() || name.len() > 253 {
        return Err("must be a host name or an IP address".into());
    }
    let labels: Vec<&str> = name.split('.').collect();
    for label in &labels {
        let ok = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok {
            return Err("must be a host name (letters, digits, '-', '.') or an IP address".into());
        }
    }
    // A name ending in an all-digit label ("127.1", "2130706433") is read as an IPv4 address by
    // some resolvers; no real top-level domain looks like that.
    if labels
        .last()
        .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err("looks like an incomplete IP address".into());
    }
    Ok((name, None))
}

impl SmtpProvider {
    /// Reads and checks the configuration; nothing is connected yet.
    pub fn from_config(
        config: &Map<String, Value>,
        ctx: &ProviderContext,
    ) -> Result<SmtpProvider, BuildError> {
        let (host, literal_ip) = parse_host(required_str(config, "host")?)
            .map_err(|e| BuildError(format!("config.host {e}")))?;
        let port = config
            .get("port")
            .and_then(Value::as_u64)
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| *p != 0)
            .ok_or_else(|| BuildError("config.port must be a port number 1-65535".into()))?;

        if let Some(ip) = literal_ip
            && !ctx.allow_private_hosts
            && is_private_or_local(ip)
        {
            return Err(BuildError(format!(
                "config.host {ip} is a private or local address; SMTP hosts must be public \
                 unless the operator sets COMMUNICATION_ALLOW_PRIVATE_HOSTS=true"
            )));
        }

        let tls_parameters = || {
            TlsParameters::new(host.clone())
                .map_err(|e| BuildError(format!("config.host cannot be used for TLS: {e}")))
        };
        let security = match required_str(config, "tls")? {
            "implicit" => Security::Implicit(tls_parameters()?),
            "starttls" => Security::Starttls(tls_parameters()?),
            "none" if ctx.allow_private_hosts => Security::Plaintext,
            "none" => {
                return Err(BuildError(
                    "config.tls \"none\" (plaintext SMTP) is only allowed when the operator sets \
                     COMMUNICATION_ALLOW_PRIVATE_HOSTS=true; use \"starttls\" or \"implicit\""
                        .into(),
                ));
            }
            _ => {
                return Err(BuildError(
                    "config.tls must be starttls, implicit or none".into(),
                ));
            }
        };

        let username = optional_str(config, "username")?;
        let password = optional_str(config, "password")?;
        let (credentials, redact) = match (username, password) {
            (Some(user), Some(pass)) => {
                let b64 = base64::engine::general_purpose::STANDARD;
                let redact = vec![
                    pass.to_owned(),
                    b64.encode(pass),
                    b64.encode(format!("\0{user}\0{pass}")),
                ];
                (
                    Some(Credentials::new(user.to_owned(), pass.to_owned())),
                    redact,
                )
            }
            (None, None) => (None, Vec::new()),
            _ => {
                return Err(BuildError(
                    "config.username and config.password go together".into(),
                ));
            }
        };

        let from: Mailbox = required_str(config, "from")?
            .trim()
            .parse()
            .map_err(|_| BuildError("config.from is not a valid email address".into()))?;
        let domain = from.email.domain();
        let id_domain = if domain.is_ascii() {
            domain.to_ascii_lowercase()
        } else {
            // A Message-ID must be ASCII; an internationalised sender domain gets a stand-in.
            "message-id.invalid".to_owned()
        };
        let reply_to = optional_str(config, "reply_to")?
            .map(|r| r.trim().parse::<Mailbox>())
            .transpose()
            .map_err(|_| BuildError("config.reply_to is not a valid email address".into()))?;

        Ok(SmtpProvider {
            host,
            literal_ip,
            port,
            security,
            credentials,
            username: username.map(str::to_owned),
            redact,
            from,
            id_domain,
            reply_to,
            allow_private_hosts: ctx.allow_private_hosts,
            timeout: ctx.timeout,
            current: Mutex::new(None),
        })
    }

    /// Decides where to connect, resolving and checking the host when it must be public.
    async fn target(&self) -> Result<Target, ProviderError> {
        if self.allow_private_hosts || self.literal_ip.is_some() {
            return Ok(Target::Configured);
        }
        let resolved = tokio::net::lookup_host((self.host.as_str(), self.port))
            .await
            .map_err(|e| {
                ProviderError::transient(format!("smtp: could not resolve {}: {e}", self.host))
            })?;
        let mut all: Vec<IpAddr> = Vec::new();
        for addr in resolved {
            let ip = addr.ip();
            if is_private_or_local(ip) {
                // The address itself is not shown: it would tell a tenant about internal DNS.
                return Err(ProviderError::provider(format!(
                    "smtp: {} resolves to a private or local address; SMTP hosts must be \
                     public unless the operator sets COMMUNICATION_ALLOW_PRIVATE_HOSTS=true",
                    self.host
                )));
            }
            if !all.contains(&ip) {
                all.push(ip);
            }
        }
        match all.first() {
            Some(&first) => Ok(Target::Checked { first, all }),
            None => Err(ProviderError::transient(format!(
                "smtp: {} resolves to no address",
                self.host
            ))),
        }
    }

    /// A new transport connecting to `addr` (or the configured host when `None`).
    fn new_transport(&self, addr: Option<IpAddr>) -> Transport {
        let server = addr.map_or_else(|| self.host.clone(), |ip| ip.to_string());
        let tls = match &self.security {
            Security::Implicit(p) => Tls::Wrapper(p.clone()),
            Security::Starttls(p) => Tls::Required(p.clone()),
            Security::Plaintext => Tls::None,
        };
        let mut builder = Transport::builder_dangerous(server)
            .port(self.port)
            .tls(tls)
            .timeout(Some(self.timeout));
        if let Some(credentials) = &self.credentials {
            builder = builder.credentials(credentials.clone());
        }
        builder.build()
    }

    /// The shared transport for `target`, reusing the current one when it still fits.
    fn transport_for(&self, target: &Target) -> Arc<Transport> {
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        let addr = match target {
            Target::Configured => {
                if let Some(c) = current.as_ref() {
                    return Arc::clone(&c.transport);
                }
                None
            }
            Target::Checked { first, all } => {
                if let Some(c) = current.as_ref()
                    && c.addr.is_some_and(|a| all.contains(&a))
                {
                    return Arc::clone(&c.transport);
                }
                Some(*first)
            }
        };
        let transport = Arc::new(self.new_transport(addr));
        let previous = current.replace(Current {
            addr,
            transport: Arc::clone(&transport),
        });
        drop(current);
        if let Some(previous) = previous {
            retire(previous.transport);
        }
        transport
    }

    /// Drops `transport` from use (after a timeout its pooled connection may be mid-transaction).
    fn discard(&self, transport: &Arc<Transport>) {
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        if current
            .as_ref()
            .is_some_and(|c| Arc::ptr_eq(&c.transport, transport))
        {
            let taken = current.take();
            drop(current);
            if let Some(c) = taken {
                retire(c.transport);
            }
        }
    }

    fn endpoint(&self) -> String {
        match self.literal_ip {
            Some(IpAddr::V6(_)) => format!("[{}]:{}", self.host, self.port),
            _ => format!("{}:{}", self.host, self.port),
        }
    }

    /// The message as it goes on the wire, and its Message-ID.
    fn compose(&self, message: &OutboundMessage<'_>) -> Result<(Message, String), ProviderError> {
        let to = match message.to {
            Recipient::Email(email) => email.as_str(),
            Recipient::Phone(_) => {
                return Err(ProviderError::recipient(
                    "smtp: sends email only; the recipient is not an email address",
                ));
            }
        };
        let to: Address = to.parse().map_err(|_| {
            ProviderError::recipient("smtp: the recipient address is not valid for SMTP")
        })?;
        let content = message.content;
        let non_blank = |s: &Option<String>| s.clone().filter(|s| !s.trim().is_empty());
        let message_id = format!("<{}@{}>", message.id, self.id_domain);

        let mut builder = Message::builder()
            .from(self.from.clone())
            .to(Mailbox::new(None, to))
            .subject(content.subject.clone().unwrap_or_default())
            .date_now()
            .message_id(Some(message_id.clone()));
        if let Some(reply_to) = self.reply_to_for(message) {
            builder = builder.reply_to(reply_to);
        }
        let built = match (non_blank(&content.text), non_blank(&content.html)) {
            (Some(text), Some(html)) => {
                builder.multipart(MultiPart::alternative_plain_html(text, html))
            }
            (Some(text), None) => builder.singlepart(SinglePart::plain(text)),
            (None, Some(html)) => builder.singlepart(SinglePart::html(html)),
            (None, None) => {
                return Err(ProviderError::recipient(
                    "smtp: the message has neither text nor html",
                ));
            }
        };
        let email = built.map_err(|e| {
            ProviderError::provider(format!("smtp: the message could not be built: {e}"))
        })?;
        Ok((email, message_id))
    }

    /// `metadata.reply_to` when it is a valid address (it is the more specific), else the
    /// configured `reply_to`.
    fn reply_to_for(&self, message: &OutboundMessage<'_>) -> Option<Mailbox> {
        if let Some(raw) = message
            .metadata
            .and_then(|m| m.get("reply_to"))
            .and_then(Value::as_str)
        {
            match raw.trim().parse::<Mailbox>() {
                Ok(mailbox) => return Some(mailbox),
                Err(_) => tracing::warn!(
                    message_id = %message.id,
                    "smtp: ignoring metadata.reply_to, it is not a valid address"
                ),
            }
        }
        self.reply_to.clone()
    }

    /// Classifies a lettre failure. `envelope` is (sender, recipient) for a send.
    fn classify(&self, err: &SmtpError, envelope: Option<(&str, &str)>) -> ProviderError {
        let endpoint = self.endpoint();
        if err.is_timeout() {
            // Past the connection, a timeout can come after the server took the message.
            return ProviderError::transient(format!("smtp: {endpoint} timed out"))
                .with_unknown_outcome();
        }
        if let Some(tls) = tls_failure(err) {
            return ProviderError::provider(format!("smtp: TLS with {endpoint} failed: {tls}"));
        }
        if let Some(code) = err.status() {
            let code = u16::from(code);
            let text = self.reply_text(err);
            if err.is_transient() {
                return ProviderError::transient(format!("smtp: temporary failure: {code} {text}"))
                    .with_code(code.to_string());
            }
            let (sender, recipient) = envelope.unzip();
            let (class, what) = permanent_reply_class(code, &text, sender, recipient);
            return ProviderError {
                class,
                message: format!("smtp: {what}: {code} {text}"),
                code: Some(code.to_string()),
                outcome_unknown: false,
            };
        }
        let detail = err
            .source()
            .map(|s| self.clean(&s.to_string()))
            .unwrap_or_default();
        if err.is_client() {
            return ProviderError::provider(format!(
                "smtp: {endpoint} cannot be used with this configuration: {detail}"
            ));
        }
        if err.is_response() {
            // lettre reports a connection closed while waiting for a reply as an
            // "incomplete response"; anything else is a reply that is not SMTP.
            if detail.contains("incomplete response") {
                return ProviderError::transient(format!("smtp: {endpoint} closed the connection"));
            }
            return ProviderError::provider(format!(
                "smtp: {endpoint} answered something that is not SMTP (check port and tls): \
                 {detail}"
            ));
        }
        // Connection, network and shutdown errors. A read or write that timed out on an open
        // connection may have come after the server took the message.
        let failed =
            ProviderError::transient(format!("smtp: connection to {endpoint} failed: {detail}"));
        let timed_out = err
            .source()
            .and_then(|s| s.downcast_ref::<std::io::Error>())
            .is_some_and(|io| {
                matches!(
                    io.kind(),
                    std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
                )
            });
        if timed_out {
            failed.with_unknown_outcome()
        } else {
            failed
        }
    }

    /// The server's reply text, safe to store.
    fn reply_text(&self, err: &SmtpError) -> String {
        err.source()
            .map(|s| self.clean(&s.to_string()))
            .unwrap_or_default()
    }

    /// Removes control characters and secrets, caps the length.
    fn clean(&self, text: &str) -> String {
        let mut out: String = text
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        for secret in &self.redact {
            if !secret.is_empty() {
                out = out.replace(secret.as_str(), "****");
            }
        }
        if out.chars().count() > MAX_REPLY_CHARS {
            out = out.chars().take(MAX_REPLY_CHARS).collect::<String>() + "…";
        }
        out.trim().to_owned()
    }
}

/// Shuts a transport down in the background (closes its pooled connections).
fn retire(transport: Arc<Transport>) {
    if let Ok(handle) = tokio::runtime::Handle::try_current() {
        handle.spawn(async move { transport.shutdown().await });
    }
}

/// The rustls error behind a failure, if TLS is what failed. lettre reports handshake and
/// certificate failures as connection errors wrapping an `io::Error` that wraps the
/// `rustls::Error`, so the whole chain is searched.
fn tls_failure(err: &SmtpError) -> Option<String> {
    let mut next: Option<&(dyn std::error::Error + 'static)> = err.source();
    while let Some(e) = next {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls.to_string());
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
            && let Some(tls) = inner.downcast_ref::<rustls::Error>()
        {
            return Some(tls.to_string());
        }
        next = e.source();
    }
    err.is_tls().then(|| "TLS error".to_owned())
}

/// The RFC 3463 enhanced status code at the start of a reply text ("5.1.1 ...").
fn enhanced_status(text: &str) -> Option<(u8, u16, u16)> {
    let first = text.split_whitespace().next()?;
    let mut parts = first.split('.');
    let mut number = |max_len: usize| {
        parts
            .next()
            .filter(|p| {
                !p.is_empty() && p.len() <= max_len && p.bytes().all(|b| b.is_ascii_digit())
            })
            .and_then(|p| p.parse::<u16>().ok())
    };
    let class = number(1)?;
    let subject = number(3)?;
    let detail = number(3)?;
    if parts.next().is_some() || !matches!(class, 2 | 4 | 5) {
        return None;
    }
    Some((class as u8, subject, detail))
}

/// Phrases of replies refusing a recipient (lower case).
const RECIPIENT_PHRASES: &[&str] = &[
    "recipient",
    "rcpt",
    "user unknown",
    "unknown user",
    "no such user",
    "no such mailbox",
    "no mailbox",
    "unknown mailbox",
    "mailbox not found",
    "invalid mailbox",
    "user not found",
    "address not found",
    "does not exist",
    "not a valid mailbox",
    "mailbox is disabled",
    "mailbox disabled",
];

/// Phrases of replies refusing the sender, or refusing to relay for us (lower case).
const SENDER_PHRASES: &[&str] = &["sender", "mail from", "from address", "relay", "rcpthosts"];

/// Decides whom a permanent (5xx) reply is about — see the module documentation for the rule.
/// `sender` and `recipient` are the envelope addresses of a send (`None` for a check).
/// Returns the class and a short description for the error message.
fn permanent_reply_class(
    code: u16,
    text: &str,
    sender: Option<&str>,
    recipient: Option<&str>,
) -> (ErrorClass, &'static str) {
    const SENDER_OR_MESSAGE: &str = "the server refused the sender or the message";
    const RECIPIENT: &str = "the server refused the recipient";
    let provider = |what| (ErrorClass::ProviderPermanent, what);
    let recipient_class = (ErrorClass::RecipientPermanent, RECIPIENT);

    // 1. Authentication.
    match code {
        530 => return provider("the server requires authentication"),
        534 | 538 => return provider("the server refused the authentication mechanism"),
        535 => return provider("the server rejected the credentials"),
        _ => {}
    }
    // 2. Enhanced status code.
    if let Some((5, subject, detail)) = enhanced_status(text) {
        match (subject, detail) {
            (1, 1..=4 | 6 | 10) | (2, 1 | 2) => return recipient_class,
            (1, 7 | 8) => return provider("the server refused the sender"),
            (7, 8) => return provider("the server rejected the credentials"),
            (7, _) => return provider("the server refused on policy grounds"),
            _ => {}
        }
    }
    // 3. The reply text.
    let lower = text.to_lowercase();
    if SENDER_PHRASES.iter().any(|p| lower.contains(p)) {
        return provider("the server refused the sender or will not relay");
    }
    if RECIPIENT_PHRASES.iter().any(|p| lower.contains(p)) {
        return recipient_class;
    }
    // 4. Which of our addresses the reply quotes.
    let quotes = |addr: Option<&str>| addr.is_some_and(|a| lower.contains(&a.to_lowercase()));
    match (quotes(sender), quotes(recipient)) {
        (false, true) => return recipient_class,
        (true, false) => return provider("the server refused the sender"),
        _ => {}
    }
    // 5. The basic code.
    if code == 551 {
        return recipient_class;
    }
    provider(SENDER_OR_MESSAGE)
}

#[async_trait]
impl Provider for SmtpProvider {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Smtp
    }

    async fn send(&self, message: &OutboundMessage<'_>) -> Result<SendReceipt, ProviderError> {
        let (email, message_id) = self.compose(message)?;
        let deadline = Instant::now() + self.timeout;
        let target = timeout_at(deadline, self.target()).await.map_err(|_| {
            ProviderError::transient(format!("smtp: resolving {} timed out", self.host))
        })??;
        let transport = self.transport_for(&target);
        match timeout_at(deadline, transport.send(email)).await {
            Ok(Ok(_reply)) => Ok(SendReceipt {
                provider_message_id: Some(message_id),
            }),
            Ok(Err(e)) => {
                let err = self.classify(&e, Some((self.from.email.as_ref(), message.to.as_str())));
                tracing::debug!(message_id = %message.id, error = %err, "smtp send failed");
                Err(err)
            }
            Err(_) => {
                self.discard(&transport);
                // The server may have taken the message before we gave up: a retry can
                // duplicate it, as with any SMTP client.
                Err(ProviderError::transient(format!(
                    "smtp: {} did not complete the transaction within {} ms",
                    self.endpoint(),
                    self.timeout.as_millis()
                ))
                .with_unknown_outcome())
            }
        }
    }

    /// Connects (TLS, AUTH) on a fresh connection and sends NOOP; sends no mail.
    async fn check(&self) -> Result<CheckReport, ProviderError> {
        let deadline = Instant::now() + self.timeout;
        let target = timeout_at(deadline, self.target()).await.map_err(|_| {
            ProviderError::transient(format!("smtp: resolving {} timed out", self.host))
        })??;
        let addr = match target {
            Target::Configured => None,
            Target::Checked { first, .. } => Some(first),
        };
        // A transport of its own, so the check really logs in instead of reusing a connection.
        let transport = Arc::new(self.new_transport(addr));
        let outcome = timeout_at(deadline, transport.test_connection()).await;
        retire(transport);
        match outcome {
            Ok(Ok(true)) => {
                let auth = match &self.username {
                    Some(user) => format!("logged in as {user}"),
                    None => "no login configured".to_owned(),
                };
                Ok(CheckReport {
                    detail: format!(
                        "{} accepted a {} connection, {auth}, and answered NOOP",
                        self.endpoint(),
                        self.security.describe()
                    ),
                })
            }
            Ok(Ok(false)) => Err(ProviderError::transient(format!(
                "smtp: {} connected but did not answer NOOP",
                self.endpoint()
            ))),
            Ok(Err(e)) => Err(self.classify(&e, None)),
            Err(_) => Err(ProviderError::transient(format!(
                "smtp: {} did not answer within {} ms",
                self.endpoint(),
                self.timeout.as_millis()
            ))),
        }
    }
}

/// Whether `ip` is anything but a public unicast address: loopback, private (10/8,
/// 172.16/12, 192.168/16), CGNAT (100.64/10), link-local (169.254/16, fe80::/10), unique-local
/// (fc00::/7), unspecified, "this network" (0/8), documentation and benchmarking ranges,
/// IETF protocol assignments, multicast, broadcast and reserved space. IPv6 addresses that
/// embed an IPv4 address (IPv4-mapped `::ffff:0:0/96`, NAT64 `64:ff9b::/96`, 6to4
/// `2002::/16`) are judged by that IPv4 address; IPv6 outside global unicast `2000::/3` is
/// never public.
pub fn is_private_or_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => ipv4_is_private_or_local(v4),
        IpAddr::V6(v6) => ipv6_is_private_or_local(v6),
    }
}

fn ipv4_is_private_or_local(ip: Ipv4Addr) -> bool {
    matches!(
        ip.octets(),
        [0, ..]                      // "this network", incl. 0.0.0.0
            | [10, ..]               // private
            | [100, 64..=127, ..]    // CGNAT 100.64/10
            | [127, ..]              // loopback
            | [169, 254, ..]         // link-local
            | [172, 16..=31, ..]     // private 172.16/12
            | [192, 0, 0 | 2, _]     // IETF protocol assignments, TEST-NET-1
            | [192, 88, 99, _]       // 6to4 relay anycast (deprecated)
            | [192, 168, ..]         // private
            | [198, 18 | 19, ..]     // benchmarking 198.18/15
            | [198, 51, 100, _]      // TEST-NET-2
            | [203, 0, 113, _]       // TEST-NET-3
            | [224..=255, ..] // multicast 224/4, reserved 240/4, broadcast
    )
}

fn ipv6_is_private_or_local(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    let embedded = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    if let Some(v4) = ip.to_ipv4_mapped() {
        return ipv4_is_private_or_local(v4);
    }
    match s {
        // NAT64 well-known prefix 64:ff9b::/96 and 6to4 2002::/16 carry an IPv4 address.
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] | [0x2002, hi, lo, ..] => {
            ipv4_is_private_or_local(embedded(hi, lo))
        }
        // Outside global unicast 2000::/3: ::, ::1, IPv4-compatible, 64:ff9b:1::/48,
        // 100::/64, fc00::/7, fe80::/10, fec0::/10, ff00::/8, unassigned space.
        [first, ..] if first & 0xe000 != 0x2000 => true,
        // 2001::/23 IETF protocol assignments (Teredo, ORCHID, benchmarking, …),
        // 2001:db8::/32 and 3fff::/20 documentation.
        [0x2001, 0..=0x01ff, ..] | [0x2001, 0x0db8, ..] | [0x3fff, 0..=0x0fff, ..] => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ProviderBases;
    use crate::domain::{Channel, Content, EmailAddress};
    use serde_json::json;
    use uuid::Uuid;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn private_and_local_addresses_are_recognised() {
        for s in [
            "0.0.0.0",
            "0.1.2.3",
            "10.0.0.1",
            "10.255.255.255",
            "100.64.0.1",
            "100.127.255.254",
            "127.0.0.1",
            "127.8.9.10",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.19.255.255",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:10.1.2.3",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::7f00:1",
            "64:ff9b:1::1",
            "100::1",
            "2001::1",
            "2001:db8::1",
            "2002:7f00:1::1",
            "2002:c0a8:101::1",
            "3fff::1",
            "fc00::1",
            "fd12:3456:789a::1",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "ff02::1",
        ] {
            assert!(is_private_or_local(ip(s)), "{s} should be private or local");
        }
    }

    #[test]
    fn public_addresses_are_allowed() {
        for s in [
            "1.1.1.1",
            "8.8.8.8",
            "9.255.255.255",
            "11.0.0.1",
            "100.63.255.255",
            "100.128.0.1",
            "126.255.255.255",
            "128.0.0.1",
            "169.253.1.1",
            "172.15.255.255",
            "172.32.0.1",
            "192.0.1.1",
            "192.169.0.1",
            "198.17.255.255",
            "198.20.0.1",
            "203.0.114.1",
            "223.255.255.255",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
            "2001:4860:4860::8888",
            "2606:4700:4700::1111",
            "2a00:1450:4001:80b::200e",
            "3ffe::1",
        ] {
            assert!(!is_private_or_local(ip(s)), "{s} should be public");
        }
    }

    #[test]
    fn enhanced_status_codes_are_read_from_the_start_of_the_reply() {
        assert_eq!(enhanced_status("5.1.1 <a@b.c>: unknown"), Some((5, 1, 1)));
        assert_eq!(enhanced_status("5.1.10 null MX"), Some((5, 1, 10)));
        assert_eq!(enhanced_status("4.7.0 try later"), Some((4, 7, 0)));
        assert_eq!(enhanced_status("No such user here"), None);
        assert_eq!(enhanced_status("5.1 short"), None);
        assert_eq!(enhanced_status("5.1.1.1 long"), None);
        assert_eq!(enhanced_status("3.1.1 not a class"), None);
        assert_eq!(enhanced_status(""), None);
    }

    fn class_of(code: u16, text: &str) -> ErrorClass {
        permanent_reply_class(
            code,
            text,
            Some("shop@example.com"),
            Some("ada@example.org"),
        )
        .0
    }

    #[test]
    fn authentication_refusals_are_provider_failures() {
        assert_eq!(
            class_of(535, "5.7.8 Authentication credentials invalid"),
            ErrorClass::ProviderPermanent
        );
        assert_eq!(
            class_of(530, "5.7.0 Authentication required"),
            ErrorClass::ProviderPermanent
        );
        assert_eq!(
            class_of(534, "5.7.9 Authentication mechanism is too weak"),
            ErrorClass::ProviderPermanent
        );
        assert_eq!(
            class_of(538, "Encryption required"),
            ErrorClass::ProviderPermanent
        );
    }

    #[test]
    fn recipient_refusals_are_recipient_failures() {
        for (code, text) in [
            (
                550,
                "5.1.1 <ada@example.org>: Recipient address rejected: User unknown",
            ),
            (
                550,
                "5.1.1 The email account that you tried to reach does not exist.",
            ),
            (553, "5.1.3 Bad recipient address syntax"),
            (550, "5.2.1 Mailbox disabled"),
            (552, "5.2.2 Mailbox full"),
            (550, "No such user here"),
            (
                550,
                "Requested action not taken: mailbox unavailable <ada@example.org>",
            ),
            (551, "User not local; please try <ada@elsewhere.org>"),
        ] {
            assert_eq!(
                class_of(code, text),
                ErrorClass::RecipientPermanent,
                "{code} {text}"
            );
        }
    }

    #[test]
    fn sender_and_message_refusals_are_provider_failures() {
        for (code, text) in [
            (
                553,
                "5.7.1 <shop@example.com>: Sender address rejected: not owned by user",
            ),
            (550, "5.1.8 Bad sender's system address"),
            (550, "5.1.7 Bad sender's mailbox address syntax"),
            (553, "Requested action not taken: mailbox name not allowed"),
            (
                550,
                "Requested action not taken: mailbox unavailable <shop@example.com>",
            ),
            (554, "5.7.1 Relay access denied"),
            (
                553,
                "sorry, that domain isn't in my list of allowed rcpthosts (#5.7.1)",
            ),
            (550, "Relaying denied <ada@example.org>"),
            (550, "5.7.26 Unauthenticated email is not accepted (DMARC)"),
            (552, "5.3.4 Message size exceeds fixed limit"),
            (554, "Transaction failed"),
            (550, "Requested action not taken: mailbox unavailable"),
            (550, "5.1.0 Sender domain does not exist"),
        ] {
            assert_eq!(
                class_of(code, text),
                ErrorClass::ProviderPermanent,
                "{code} {text}"
            );
        }
    }

    #[test]
    fn a_reply_quoting_both_addresses_is_not_blamed_on_the_recipient() {
        let (class, _) = permanent_reply_class(
            550,
            "mailbox unavailable a@x.com",
            Some("a@x.com"),
            Some("a@x.com"),
        );
        assert_eq!(class, ErrorClass::ProviderPermanent);
    }

    fn ctx(allow_private_hosts: bool) -> ProviderContext {
        ProviderContext::new(
            ProviderBases::default(),
            allow_private_hosts,
            Duration::from_secs(5),
            None,
        )
        .expect("context")
    }

    fn config(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    fn build_error(v: Value, allow: bool) -> String {
        match SmtpProvider::from_config(&config(v), &ctx(allow)) {
            Ok(_) => panic!("configuration should be refused"),
            Err(BuildError(e)) => e,
        }
    }

    #[test]
    fn hosts_are_normalised_and_literal_ips_recognised() {
        assert_eq!(
            parse_host("Mail.Example.COM."),
            Ok(("mail.example.com".into(), None))
        );
        assert_eq!(
            parse_host("10.1.2.3"),
            Ok(("10.1.2.3".into(), Some(ip("10.1.2.3"))))
        );
        assert_eq!(parse_host("[::1]"), Ok(("::1".into(), Some(ip("::1")))));
        for bad in [
            "",
            "mail example.com",
            "a..b",
            "-a.com",
            "smtp://x.com",
            "user@x.com",
            "127.1",
            "2130706433",
        ] {
            assert!(parse_host(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn plaintext_needs_the_operator_to_allow_private_hosts() {
        let cfg =
            json!({"host": "mail.example.com", "port": 25, "tls": "none", "from": "a@example.com"});
        let e = build_error(cfg.clone(), false);
        assert!(e.contains("COMMUNICATION_ALLOW_PRIVATE_HOSTS"), "{e}");
        assert!(SmtpProvider::from_config(&config(cfg), &ctx(true)).is_ok());
    }

    #[test]
    fn private_literal_ips_are_refused_at_build() {
        for host in [
            "127.0.0.1",
            "10.0.0.5",
            "[::1]",
            "169.254.169.254",
            "::ffff:192.168.0.1",
        ] {
            let e = build_error(
                json!({"host": host, "port": 587, "tls": "starttls", "from": "a@example.com"}),
                false,
            );
            assert!(e.contains("private or local"), "{host}: {e}");
        }
        let ok =
            json!({"host": "127.0.0.1", "port": 587, "tls": "starttls", "from": "a@example.com"});
        assert!(SmtpProvider::from_config(&config(ok), &ctx(true)).is_ok());
    }

    #[test]
    fn broken_configurations_name_their_field() {
        let base = json!({"host": "mail.example.com", "port": 587, "tls": "starttls", "from": "a@example.com"});
        let with = |k: &str, v: Value| {
            let mut c = base.clone();
            c[k] = v;
            c
        };
        assert!(build_error(with("port", json!(0)), false).contains("config.port"));
        assert!(build_error(with("port", json!(70000)), false).contains("config.port"));
        assert!(build_error(with("tls", json!("maybe")), false).contains("config.tls"));
        assert!(build_error(with("from", json!("not an address")), false).contains("config.from"));
        assert!(build_error(with("reply_to", json!("nope")), false).contains("config.reply_to"));
        assert!(build_error(with("username", json!("u")), false).contains("go together"));
        assert!(build_error(with("password", json!("p")), false).contains("go together"));
        assert!(build_error(with("host", json!("bad host")), false).contains("config.host"));
    }

    #[test]
    fn debug_output_never_shows_the_password() {
        let p = SmtpProvider::from_config(
            &config(
                json!({"host": "mail.example.com", "port": 587, "tls": "starttls",
                "from": "a@example.com", "username": "u", "password": "hunter2-secret"}),
            ),
            &ctx(false),
        )
        .expect("valid");
        let shown = format!("{p:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(p.clean("535 echo hunter2-secret").contains("****"));
        assert!(!p.clean("535 echo hunter2-secret").contains("hunter2"));
    }

    #[test]
    fn a_composed_message_carries_every_header_and_our_message_id() {
        let p = SmtpProvider::from_config(
            &config(
                json!({"host": "mail.example.com", "port": 465, "tls": "implicit",
                "from": "Shop <shop@Example.com>", "reply_to": "help@example.com"}),
            ),
            &ctx(false),
        )
        .expect("valid");
        let to = Recipient::Email(EmailAddress::parse("ada@example.org").expect("address"));
        let content = Content {
            subject: Some("Your code".into()),
            text: Some("Code 123456".into()),
            html: None,
        };
        let id = Uuid::new_v4();
        let msg = OutboundMessage {
            id,
            tenant_id: "t1",
            channel: Channel::Email,
            to: &to,
            content: &content,
            metadata: None,
            status_callback: None,
        };
        let (email, message_id) = p.compose(&msg).expect("composed");
        assert_eq!(message_id, format!("<{id}@example.com>"));
        let raw = String::from_utf8(email.formatted()).expect("ascii");
        for needle in [
            "From: Shop <shop@Example.com>\r\n",
            "To: ada@example.org\r\n",
            "Reply-To: help@example.com\r\n",
            "Subject: Your code\r\n",
            "Date: ",
            &format!("Message-ID: <{id}@example.com>\r\n"),
            "Content-Type: text/plain; charset=utf-8\r\n",
        ] {
            assert!(raw.contains(needle), "{needle:?} missing from:\n{raw}");
        }
        assert!(!raw.contains("multipart"), "{raw}");
        assert_eq!(
            email.envelope().from().map(|a| a.to_string()),
            Some("shop@Example.com".into())
        );

        let meta = json!({"reply_to": "Desk <desk@example.com>"});
        let msg = OutboundMessage {
            metadata: Some(&meta),
            ..msg
        };
        let (email, _) = p.compose(&msg).expect("composed");
        let raw = String::from_utf8(email.formatted()).expect("ascii");
        assert!(
            raw.contains("Reply-To: Desk <desk@example.com>\r\n"),
            "{raw}"
        );
    }

    #[test]
    fn a_phone_recipient_is_refused_without_connecting() {
        let p = SmtpProvider::from_config(
            &config(json!({"host": "mail.example.com", "port": 465, "tls": "implicit", "from": "a@example.com"})),
            &ctx(false),
        )
        .expect("valid");
        let to =
            Recipient::Phone(crate::domain::PhoneNumber::parse("+14155550100").expect("phone"));
        let content = Content {
            subject: Some("s".into()),
            text: Some("t".into()),
            html: None,
        };
        let msg = OutboundMessage {
            id: Uuid::new_v4(),
            tenant_id: "t1",
            channel: Channel::Sms,
            to: &to,
            content: &content,
            metadata: None,
            status_callback: None,
        };
        let err = p.compose(&msg).expect_err("refused");
        assert_eq!(err.class, ErrorClass::RecipientPermanent);
    }
}
