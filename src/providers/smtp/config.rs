//! An SMTP configuration turned into what the adapter needs: the host (a normalised name or a
//! literal IP checked against the address policy), the connection security with its TLS
//! parameters, the login and the strings never to repeat from a server reply, and the
//! sender. Every problem is reported at once, each naming its field.

use std::net::IpAddr;

use base64::Engine as _;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::TlsParameters;
use secrecy::ExposeSecret;

use super::{SmtpConfig, TlsMode};
use crate::address_policy;
use crate::providers::description::{BuildError, Problems};

/// How the connection is secured, with the TLS parameters (checked against `host`).
#[derive(Clone)]
pub(super) enum Security {
    Implicit(TlsParameters),
    Starttls(TlsParameters),
    Plaintext,
}

impl Security {
    pub(super) fn describe(&self) -> &'static str {
        match self {
            Security::Implicit(_) => "implicit TLS",
            Security::Starttls(_) => "STARTTLS",
            Security::Plaintext => "plaintext",
        }
    }
}

/// A checked configuration.
pub(super) struct Settings {
    /// Lower-case host name without a trailing dot, or an IP address.
    pub host: String,
    pub literal_ip: Option<IpAddr>,
    pub port: u16,
    pub security: Security,
    pub credentials: Option<Credentials>,
    pub username: Option<String>,
    /// Strings never to repeat from a server reply: the password and its AUTH encodings.
    pub redact: Vec<String>,
    pub from: Mailbox,
    /// Right-hand side of our Message-IDs: the domain of `from`.
    pub id_domain: String,
    pub reply_to: Option<Mailbox>,
}

impl Settings {
    /// Checks `config`; `allow_private_hosts` is the operator's allowance for private hosts
    /// and plaintext.
    pub(super) fn new(
        config: SmtpConfig,
        allow_private_hosts: bool,
    ) -> Result<Settings, BuildError> {
        let mut problems = Problems::default();
        let host = match parse_host(&config.host) {
            Ok(parsed) => Some(parsed),
            Err(e) => {
                problems.add("host", e);
                None
            }
        };
        if let Err(refused) = address_policy::check_literal_host(&config.host, allow_private_hosts)
        {
            problems.add("host", refused.to_string());
        }
        let port = u16::try_from(config.port).ok().filter(|p| *p != 0);
        if port.is_none() {
            problems.add("port", "must be a port number 1-65535");
        }
        let security = host.as_ref().and_then(|(name, _)| {
            let mut tls = || match TlsParameters::new(name.clone()) {
                Ok(p) => Some(p),
                Err(e) => {
                    problems.add("host", format!("cannot be used for TLS: {e}"));
                    None
                }
            };
            match config.tls {
                TlsMode::Implicit => tls().map(Security::Implicit),
                TlsMode::Starttls => tls().map(Security::Starttls),
                TlsMode::None if allow_private_hosts => Some(Security::Plaintext),
                TlsMode::None => {
                    problems.add(
                        "tls",
                        "\"none\" (plaintext SMTP) is only allowed when the operator sets \
                         COMMUNICATION_ALLOW_PRIVATE_HOSTS=true; use \"starttls\" or \"implicit\"",
                    );
                    None
                }
            }
        });
        let username = config
            .username
            .map(|u| u.trim().to_owned())
            .filter(|u| !u.is_empty());
        let password = config
            .password
            .map(|p| p.expose_secret().to_owned())
            .filter(|p| !p.is_empty());
        let (credentials, redact) = match (&username, password) {
            (Some(user), Some(pass)) => {
                let b64 = base64::engine::general_purpose::STANDARD;
                let redact = vec![
                    pass.clone(),
                    b64.encode(&pass),
                    b64.encode(format!("\0{user}\0{pass}")),
                ];
                (Some(Credentials::new(user.clone(), pass)), redact)
            }
            (None, None) => (None, Vec::new()),
            (Some(_), None) => {
                problems.add("password", "username and password go together");
                (None, Vec::new())
            }
            (None, Some(_)) => {
                problems.add("username", "username and password go together");
                (None, Vec::new())
            }
        };
        let from = match config.from.trim().parse::<Mailbox>() {
            Ok(from) => Some(from),
            Err(_) => {
                problems.add("from", "is not a valid email address");
                None
            }
        };
        let reply_to = match config
            .reply_to
            .as_deref()
            .map(|r| r.trim().parse::<Mailbox>())
        {
            Some(Ok(r)) => Some(r),
            Some(Err(_)) => {
                problems.add("reply_to", "is not a valid email address");
                None
            }
            None => None,
        };
        problems.into_result()?;
        let (Some((host, literal_ip)), Some(port), Some(security), Some(from)) =
            (host, port, security, from)
        else {
            return Err(BuildError::whole("smtp: the configuration is incomplete"));
        };
        let domain = from.email.domain();
        let id_domain = if domain.is_ascii() {
            domain.to_ascii_lowercase()
        } else {
            // A Message-ID must be ASCII; an internationalised sender domain gets a stand-in.
            "message-id.invalid".to_owned()
        };
        Ok(Settings {
            host,
            literal_ip,
            port,
            security,
            credentials,
            username,
            redact,
            from,
            id_domain,
            reply_to,
        })
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::description::typed_config;
    use serde_json::{Value, json};

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    fn build_error(v: Value, allow: bool) -> String {
        let config: SmtpConfig = match typed_config(v.as_object().expect("object")) {
            Ok(c) => c,
            Err(e) => return e.to_string(),
        };
        match Settings::new(config, allow) {
            Ok(_) => panic!("configuration should be refused"),
            Err(e) => e.to_string(),
        }
    }

    fn builds(v: Value, allow: bool) -> bool {
        let config: SmtpConfig = typed_config(v.as_object().expect("object")).expect("typed");
        Settings::new(config, allow).is_ok()
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
        assert!(builds(cfg, true));
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
        assert!(builds(ok, true));
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
}
