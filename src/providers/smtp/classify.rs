//! How a lettre failure is classified: no answer and 4xx replies are transient, TLS failures
//! and authentication refusals provider-permanent, and 5xx replies are read for whom they are
//! about (see the folder's module documentation for the rule).

use std::error::Error as _;

use lettre::transport::smtp::Error as SmtpError;

use super::SmtpProvider;
use crate::providers::{ErrorClass, ProviderError};

impl SmtpProvider {
    /// Classifies a lettre failure. `envelope` is (sender, recipient) for a send.
    pub(super) fn classify(
        &self,
        err: &SmtpError,
        envelope: Option<(&str, &str)>,
    ) -> ProviderError {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
