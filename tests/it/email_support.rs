//! Helpers shared by the provider adapter tests: configuration objects, contexts pointed at a
//! mock server, outbound email messages, and assertions that errors carry no secrets or
//! bodies. (Request matchers and signers are in `matchers`.)
#![allow(dead_code)]

use std::time::Duration;

use communication::config::ProviderBases;
use communication::domain::{Channel, Content, Recipient};
use communication::providers::{ErrorClass, OutboundMessage, ProviderContext, ProviderError};
use serde_json::{Map, Value};
use uuid::Uuid;

pub const TO: &str = "ada@example.com";
pub const SUBJECT: &str = "Your sign-in code";
pub const TEXT: &str = "Your code is 482913. It expires in 10 minutes.";
pub const HTML: &str = "<p>Your code is <b>482913</b>. It expires in 10 minutes.</p>";

pub fn config(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("config must be an object, got {other}"),
    }
}

pub fn context(bases: ProviderBases) -> ProviderContext {
    context_with_timeout(bases, Duration::from_secs(5))
}

pub fn context_with_timeout(bases: ProviderBases, timeout: Duration) -> ProviderContext {
    context_with(bases, timeout, None)
}

/// A context for tenant hosts that must be public, with the operator's public URL when given.
pub fn context_with(
    bases: ProviderBases,
    timeout: Duration,
    public_url: Option<&str>,
) -> ProviderContext {
    ProviderContext::new(bases, false, timeout, public_url.map(str::to_owned))
        .expect("http client builds")
}

/// The owned parts an [`OutboundMessage`] borrows.
pub struct Draft {
    pub id: Uuid,
    pub to: Recipient,
    pub content: Content,
    pub metadata: Option<Value>,
}

impl Draft {
    pub fn email() -> Draft {
        Draft {
            id: Uuid::new_v4(),
            to: Recipient::parse(Channel::Email, TO).expect("valid address"),
            content: Content {
                subject: Some(SUBJECT.into()),
                text: Some(TEXT.into()),
                html: Some(HTML.into()),
            },
            metadata: None,
        }
    }

    pub fn text_only() -> Draft {
        let mut d = Draft::email();
        d.content.html = None;
        d
    }

    pub fn with_metadata(mut self, metadata: Value) -> Draft {
        self.metadata = Some(metadata);
        self
    }

    pub fn outbound(&self) -> OutboundMessage<'_> {
        OutboundMessage {
            id: self.id,
            tenant_id: "tenant-a",
            channel: Channel::Email,
            to: &self.to,
            content: &self.content,
            metadata: self.metadata.as_ref(),
            status_callback: None,
        }
    }
}

/// Asserts the error's class and code, and that its text leaks neither the secret nor a body.
pub fn assert_error(err: &ProviderError, class: ErrorClass, code: &str, secret: &str) {
    assert_eq!(err.class, class, "unexpected class for {err:?}");
    assert_eq!(
        err.code.as_deref(),
        Some(code),
        "unexpected code for {err:?}"
    );
    assert_safe(err, secret);
}

pub fn assert_safe(err: &ProviderError, secret: &str) {
    let shown = format!("{err} {err:?}");
    for needle in [secret, TEXT, HTML, "482913"] {
        assert!(
            !shown.contains(needle),
            "error text leaks {needle:?}: {shown}"
        );
    }
}

pub fn transient(retry_after: Option<u64>) -> ErrorClass {
    ErrorClass::Transient {
        retry_after: retry_after.map(Duration::from_secs),
    }
}

/// A base URL on which nothing listens (wiremock pools its servers, so a dropped mock server
/// may still answer).
pub fn closed_port_base() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}
