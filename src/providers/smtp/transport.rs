//! The SMTP adapter and its connections: one [`AsyncSmtpTransport`] per adapter, created on
//! first use and reused, pinned to the address the host was checked to resolve to, replaced
//! when that address changes or after a timeout. Also the composition of the message.

use std::{
    fmt,
    net::IpAddr,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use lettre::{
    Address, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
    message::{Mailbox, MultiPart, SinglePart},
    transport::smtp::{authentication::Credentials, client::Tls},
};
use serde_json::Value;

use super::SmtpConfig;
use super::config::{Security, Settings};
use crate::address_policy;
use crate::domain::Recipient;
use crate::providers::scrub::scrub;
use crate::providers::{BuildError, OutboundMessage, ProviderContext, ProviderError};

pub(super) type Transport = AsyncSmtpTransport<Tokio1Executor>;

/// Where lettre should connect.
pub(super) enum Target {
    /// The configured host as written (private hosts allowed, or a literal IP checked at build).
    Configured,
    /// A name resolved and checked just now: connect to one of these addresses.
    Checked { first: IpAddr, all: Vec<IpAddr> },
}

/// The transport in use and the address it is pinned to (`None`: the configured host).
pub(super) struct Current {
    addr: Option<IpAddr>,
    transport: Arc<Transport>,
}

/// An SMTP server configured by a tenant (or the operator).
pub struct SmtpProvider {
    /// Lower-case host name without a trailing dot, or an IP address.
    pub(super) host: String,
    literal_ip: Option<IpAddr>,
    port: u16,
    pub(super) security: Security,
    credentials: Option<Credentials>,
    pub(super) username: Option<String>,
    /// Strings never to repeat from a server reply: the password and its AUTH encodings.
    redact: Vec<String>,
    pub(super) from: Mailbox,
    /// Right-hand side of our Message-IDs: the domain of `from`.
    id_domain: String,
    reply_to: Option<Mailbox>,
    allow_private_hosts: bool,
    pub(super) timeout: Duration,
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

impl SmtpProvider {
    /// Checks the configuration; nothing is connected yet.
    pub fn new(config: SmtpConfig, ctx: &ProviderContext) -> Result<SmtpProvider, BuildError> {
        let settings = Settings::new(config, ctx.allow_private_hosts)?;
        Ok(SmtpProvider {
            host: settings.host,
            literal_ip: settings.literal_ip,
            port: settings.port,
            security: settings.security,
            credentials: settings.credentials,
            username: settings.username,
            redact: settings.redact,
            from: settings.from,
            id_domain: settings.id_domain,
            reply_to: settings.reply_to,
            allow_private_hosts: ctx.allow_private_hosts,
            timeout: ctx.timeout,
            current: Mutex::new(None),
        })
    }

    /// Decides where to connect, resolving and checking the host when it must be public.
    pub(super) async fn target(&self) -> Result<Target, ProviderError> {
        if self.allow_private_hosts || self.literal_ip.is_some() {
            return Ok(Target::Configured);
        }
        let resolved = address_policy::resolve_public(&self.host, self.port, false)
            .await
            .map_err(|refused| {
                if refused.is_policy() {
                    ProviderError::provider(format!("smtp: {refused}"))
                } else {
                    ProviderError::transient(format!("smtp: {refused}"))
                }
            })?;
        let mut all: Vec<IpAddr> = Vec::new();
        for addr in resolved {
            if !all.contains(&addr.ip()) {
                all.push(addr.ip());
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
    pub(super) fn new_transport(&self, addr: Option<IpAddr>) -> Transport {
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
    pub(super) fn transport_for(&self, target: &Target) -> Arc<Transport> {
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
    pub(super) fn discard(&self, transport: &Arc<Transport>) {
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

    pub(super) fn endpoint(&self) -> String {
        match self.literal_ip {
            Some(IpAddr::V6(_)) => format!("[{}]:{}", self.host, self.port),
            _ => format!("{}:{}", self.host, self.port),
        }
    }

    /// The message as it goes on the wire, and its Message-ID.
    pub(super) fn compose(
        &self,
        message: &OutboundMessage<'_>,
    ) -> Result<(Message, String), ProviderError> {
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

    /// A server's text, safe to store (the one scrubber: the password and its encodings out).
    pub(super) fn clean(&self, text: &str) -> String {
        let secrets: Vec<&str> = self.redact.iter().map(String::as_str).collect();
        scrub(text, &secrets, &[])
    }
}

/// Shuts a transport down in the background (closes its pooled connections).
pub(super) fn retire(transport: Arc<Transport>) {
    if let Ok(handle) = tokio::runtime::Handle::try_current() {
        handle.spawn(async move { transport.shutdown().await });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ProviderBases;
    use crate::domain::{Channel, Content, EmailAddress};
    use crate::providers::ErrorClass;
    use crate::providers::description::typed_config;
    use serde_json::json;
    use uuid::Uuid;

    fn provider(v: Value) -> SmtpProvider {
        let ctx = ProviderContext::new(
            ProviderBases::default(),
            false,
            Duration::from_secs(5),
            None,
        )
        .expect("context");
        let config: SmtpConfig = typed_config(v.as_object().expect("object")).expect("typed");
        SmtpProvider::new(config, &ctx).expect("valid")
    }

    #[test]
    fn debug_output_never_shows_the_password() {
        let p = provider(
            json!({"host": "mail.example.com", "port": 587, "tls": "starttls",
            "from": "a@example.com", "username": "u", "password": "hunter2-secret"}),
        );
        let shown = format!("{p:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(p.clean("535 echo hunter2-secret").contains("[redacted]"));
        assert!(!p.clean("535 echo hunter2-secret").contains("hunter2"));
    }

    #[test]
    fn a_composed_message_carries_every_header_and_our_message_id() {
        let p = provider(
            json!({"host": "mail.example.com", "port": 465, "tls": "implicit",
            "from": "Shop <shop@Example.com>", "reply_to": "help@example.com"}),
        );
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
        let p = provider(
            json!({"host": "mail.example.com", "port": 465, "tls": "implicit", "from": "a@example.com"}),
        );
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
