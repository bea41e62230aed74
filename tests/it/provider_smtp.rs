//! The smtp adapter against a real SMTP server: `tests/support/smtp_server.py` (Python's
//! aiosmtpd), started per test on a free port of 127.0.0.1. It needs `python3` (or `$PYTHON`)
//! with `pip install aiosmtpd`; without them these tests fail and say so.
//!
//! The server writes each message it accepts to a directory as JSON, with its own MIME parse
//! of the message; the tests read those files back.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use communication::{
    config::ProviderBases,
    domain::{Channel, Content, EmailAddress, Recipient},
    providers::{ErrorClass, OutboundMessage, Provider, ProviderContext, ProviderError, smtp},
};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::email_support::config;
use crate::smtp_support;

use smtp_support::{PASSWORD, SmtpServer, USER, header};

/// With aws-lc-rs and ring both compiled, rustls has no default provider; the service installs
/// aws-lc-rs at start-up, and so do the tests.
fn install_crypto() {
    communication::telemetry::init_crypto_provider();
}

fn context(allow_private_hosts: bool, timeout: Duration) -> ProviderContext {
    ProviderContext::new(ProviderBases::default(), allow_private_hosts, timeout, None)
        .expect("provider context")
}

/// The adapter for a local plaintext server, with the operator allowing private hosts.
fn local_config(port: u16) -> Value {
    json!({
        "host": "127.0.0.1",
        "port": port,
        "tls": "none",
        "username": USER,
        "password": PASSWORD,
        "from": "Shop <shop@example.com>",
        "reply_to": "help@example.com",
    })
}

fn build(value: Value, allow_private_hosts: bool) -> Arc<dyn Provider> {
    build_with_timeout(value, allow_private_hosts, Duration::from_secs(10))
}

fn build_with_timeout(value: Value, allow: bool, timeout: Duration) -> Arc<dyn Provider> {
    match smtp::build(&config(value), &context(allow, timeout)) {
        Ok(provider) => provider,
        Err(e) => panic!("adapter should build: {e}"),
    }
}

fn build_error(value: Value, allow_private_hosts: bool) -> String {
    match smtp::build(
        &config(value),
        &context(allow_private_hosts, Duration::from_secs(5)),
    ) {
        Ok(_) => panic!("the configuration should be refused"),
        Err(e) => e.to_string(),
    }
}

fn email(address: &str) -> Recipient {
    Recipient::Email(EmailAddress::parse(address).expect("test address"))
}

fn content(text: Option<&str>, html: Option<&str>) -> Content {
    Content {
        subject: Some("Your code ✓ 123456".to_owned()),
        text: text.map(str::to_owned),
        html: html.map(str::to_owned),
    }
}

async fn send(
    provider: &dyn Provider,
    to: &str,
    content: &Content,
    metadata: Option<&Value>,
) -> (Uuid, Result<Option<String>, ProviderError>) {
    let id = Uuid::new_v4();
    let to = email(to);
    let message = OutboundMessage {
        id,
        tenant_id: "tenant-1",
        channel: Channel::Email,
        to: &to,
        content,
        metadata,
        status_callback: None,
    };
    let outcome = provider
        .send(&message)
        .await
        .map(|receipt| receipt.provider_message_id);
    (id, outcome)
}

async fn send_failure(provider: &dyn Provider, to: &str) -> ProviderError {
    let (_, outcome) = send(provider, to, &content(Some("hello"), None), None).await;
    match outcome {
        Ok(id) => panic!("the send should fail, but the server took it as {id:?}"),
        Err(e) => e,
    }
}

fn assert_no_secret(err: &ProviderError) {
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains(PASSWORD), "the password leaked: {shown}");
}

#[tokio::test]
async fn a_message_with_text_and_html_arrives_as_multipart_alternative_with_every_header() {
    install_crypto();
    let server = SmtpServer::start();
    let provider = build(local_config(server.port), true);
    let body = content(
        Some("Your code is 123456."),
        Some("<p>Your code is <b>123456</b>.</p>"),
    );

    let before = chrono::Utc::now();
    let (id, outcome) = send(provider.as_ref(), "ada@example.org", &body, None).await;
    let message_id = outcome.expect("sent").expect("a provider message id");

    assert_eq!(message_id, format!("<{id}@example.com>"));
    let got = server.message_with_id(&message_id);
    assert_eq!(got["mail_from"], "shop@example.com");
    assert_eq!(got["rcpt_tos"], json!(["ada@example.org"]));
    assert_eq!(got["auth_user"], USER, "the adapter should log in");

    let parsed = &got["parsed"];
    assert_eq!(parsed["content_type"], "multipart/alternative");
    let parts = parsed["parts"].as_array().expect("parts");
    assert_eq!(parts.len(), 2, "{parts:?}");
    assert_eq!(parts[0]["content_type"], "text/plain");
    assert_eq!(
        parts[0]["content"].as_str().map(str::trim_end),
        Some("Your code is 123456.")
    );
    assert_eq!(parts[1]["content_type"], "text/html");
    assert_eq!(
        parts[1]["content"].as_str().map(str::trim_end),
        Some("<p>Your code is <b>123456</b>.</p>")
    );

    assert_eq!(
        header(&got, "Subject").as_deref(),
        Some("Your code ✓ 123456")
    );
    assert_eq!(
        header(&got, "From").as_deref(),
        Some("Shop <shop@example.com>")
    );
    assert_eq!(header(&got, "To").as_deref(), Some("ada@example.org"));
    assert_eq!(
        header(&got, "Reply-To").as_deref(),
        Some("help@example.com")
    );
    assert_eq!(
        header(&got, "Message-ID").as_deref(),
        Some(message_id.as_str())
    );
    let date = header(&got, "Date").expect("a Date header");
    let date = chrono::DateTime::parse_from_rfc2822(&date).expect("an RFC 2822 date");
    let drift = (date.with_timezone(&chrono::Utc) - before)
        .num_seconds()
        .abs();
    assert!(drift < 120, "Date {date} is {drift} s away from now");
}

#[tokio::test]
async fn single_part_messages_are_plain_or_html_and_metadata_reply_to_wins() {
    install_crypto();
    let server = SmtpServer::start();
    let provider = build(local_config(server.port), true);

    let meta = json!({"reply_to": "Desk <desk@example.com>"});
    let (_, outcome) = send(
        provider.as_ref(),
        "ada@example.org",
        &content(Some("text only"), None),
        Some(&meta),
    )
    .await;
    let text_id = outcome.expect("sent").expect("message id");
    let (_, outcome) = send(
        provider.as_ref(),
        "ada@example.org",
        &content(None, Some("<p>html only</p>")),
        None,
    )
    .await;
    let html_id = outcome.expect("sent").expect("message id");

    let text = server.message_with_id(&text_id);
    assert_eq!(text["parsed"]["content_type"], "text/plain");
    assert_eq!(
        text["parsed"]["parts"][0]["content"]
            .as_str()
            .map(str::trim_end),
        Some("text only")
    );
    assert_eq!(
        header(&text, "Reply-To").as_deref(),
        Some("Desk <desk@example.com>")
    );

    let html = server.message_with_id(&html_id);
    assert_eq!(html["parsed"]["content_type"], "text/html");
    assert_eq!(html["parsed"]["parts"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        header(&html, "Reply-To").as_deref(),
        Some("help@example.com")
    );
}

#[tokio::test]
async fn messages_sent_concurrently_through_one_adapter_all_arrive() {
    install_crypto();
    let server = SmtpServer::start();
    let provider = build(local_config(server.port), true);
    let body = content(Some("hello"), None);

    let sends = (0..6).map(|_| send(provider.as_ref(), "ada@example.org", &body, None));
    let outcomes = futures::future::join_all(sends).await;
    let mut ids: Vec<String> = outcomes
        .into_iter()
        .map(|(_, o)| o.expect("sent").expect("message id"))
        .collect();
    // And one more after them, on the same transport.
    let (_, outcome) = send(provider.as_ref(), "ada@example.org", &body, None).await;
    ids.push(outcome.expect("sent").expect("message id"));

    assert_eq!(server.received().len(), 7);
    for id in &ids {
        server.message_with_id(id);
    }
}

#[tokio::test]
async fn a_wrong_password_is_a_provider_permanent_failure_that_does_not_show_the_password() {
    install_crypto();
    let server = SmtpServer::start();
    let mut cfg = local_config(server.port);
    cfg["password"] = json!("wrong-password-1");
    let provider = build(cfg, true);

    let err = send_failure(provider.as_ref(), "ada@example.org").await;

    assert_eq!(err.class, ErrorClass::ProviderPermanent, "{err}");
    assert_eq!(err.code.as_deref(), Some("535"), "{err}");
    assert!(!err.message.contains("wrong-password-1"), "{err}");
    assert!(server.received().is_empty());
}

#[tokio::test]
async fn an_unknown_recipient_is_a_recipient_permanent_failure() {
    install_crypto();
    let server = SmtpServer::start();
    let provider = build(local_config(server.port), true);

    let err = send_failure(provider.as_ref(), "unknown@example.org").await;

    assert_eq!(err.class, ErrorClass::RecipientPermanent, "{err}");
    assert_eq!(err.code.as_deref(), Some("550"), "{err}");
    assert!(err.message.contains("5.1.1"), "{err}");
    assert_no_secret(&err);
    assert!(server.received().is_empty());
}

#[tokio::test]
async fn a_recipient_refused_without_an_enhanced_status_code_is_still_a_recipient_failure() {
    install_crypto();
    let server = SmtpServer::start();
    let provider = build(local_config(server.port), true);

    let err = send_failure(provider.as_ref(), "nouser@example.org").await;

    assert_eq!(err.class, ErrorClass::RecipientPermanent, "{err}");
    assert!(err.message.contains("No such user here"), "{err}");
}

#[tokio::test]
async fn a_blocked_sender_is_a_provider_permanent_failure() {
    install_crypto();
    let server = SmtpServer::start();
    let mut cfg = local_config(server.port);
    cfg["from"] = json!("blocked@example.com");
    let provider = build(cfg, true);

    let err = send_failure(provider.as_ref(), "ada@example.org").await;

    assert_eq!(err.class, ErrorClass::ProviderPermanent, "{err}");
    assert_eq!(err.code.as_deref(), Some("553"), "{err}");
    assert!(server.received().is_empty());
}

#[tokio::test]
async fn a_temporarily_refused_recipient_is_a_transient_failure() {
    install_crypto();
    let server = SmtpServer::start();
    let provider = build(local_config(server.port), true);

    let err = send_failure(provider.as_ref(), "busy@example.org").await;

    assert!(matches!(err.class, ErrorClass::Transient { .. }), "{err}");
    assert_eq!(err.code.as_deref(), Some("451"), "{err}");
}

#[tokio::test]
async fn sending_without_a_login_to_a_server_that_requires_one_is_a_provider_permanent_failure() {
    install_crypto();
    let server = SmtpServer::start();
    let mut cfg = local_config(server.port);
    let map = cfg.as_object_mut().expect("object");
    map.remove("username");
    map.remove("password");
    let provider = build(cfg, true);

    let err = send_failure(provider.as_ref(), "ada@example.org").await;

    assert_eq!(err.class, ErrorClass::ProviderPermanent, "{err}");
    assert_eq!(err.code.as_deref(), Some("530"), "{err}");
}

#[tokio::test]
async fn a_server_that_does_not_require_a_login_takes_mail_without_one() {
    install_crypto();
    let server = SmtpServer::start_with(&["--no-auth-required"]);
    let mut cfg = local_config(server.port);
    let map = cfg.as_object_mut().expect("object");
    map.remove("username");
    map.remove("password");
    let provider = build(cfg, true);

    let (_, outcome) = send(
        provider.as_ref(),
        "ada@example.org",
        &content(Some("hi"), None),
        None,
    )
    .await;
    let id = outcome.expect("sent").expect("message id");

    assert_eq!(server.message_with_id(&id)["auth_user"], Value::Null);
}

#[tokio::test]
async fn nothing_listening_on_the_port_is_a_transient_failure() {
    install_crypto();
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("address").port()
    };
    let provider = build(local_config(port), true);

    let err = send_failure(provider.as_ref(), "ada@example.org").await;

    assert!(matches!(err.class, ErrorClass::Transient { .. }), "{err}");
    assert!(!err.outcome_unknown, "a refused connection sent nothing");
    let check = provider.check().await.expect_err("nothing to check");
    assert!(
        matches!(check.class, ErrorClass::Transient { .. }),
        "{check}"
    );
}

#[tokio::test]
async fn a_server_that_never_answers_is_a_transient_failure_within_the_timeout() {
    install_crypto();
    // Accepts connections (the kernel does) but never sends a greeting.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    let provider = build_with_timeout(local_config(port), true, Duration::from_millis(500));

    let started = Instant::now();
    let err = send_failure(provider.as_ref(), "ada@example.org").await;

    assert!(matches!(err.class, ErrorClass::Transient { .. }), "{err}");
    assert!(
        err.outcome_unknown,
        "a timeout may come after the server took the message: {err:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    drop(listener);
}

#[tokio::test]
async fn check_succeeds_with_the_right_login_and_sends_nothing() {
    install_crypto();
    let server = SmtpServer::start();
    let provider = build(local_config(server.port), true);

    let report = provider.check().await.expect("check passes");

    assert!(
        report.detail.contains("logged in as mailer"),
        "{}",
        report.detail
    );
    assert!(report.detail.contains("plaintext"), "{}", report.detail);
    assert!(server.received().is_empty());
}

#[tokio::test]
async fn check_with_a_wrong_password_is_a_provider_permanent_failure() {
    install_crypto();
    let server = SmtpServer::start();
    let mut cfg = local_config(server.port);
    cfg["password"] = json!("wrong-password-2");
    let provider = build(cfg, true);

    let err = provider.check().await.expect_err("check fails");

    assert_eq!(err.class, ErrorClass::ProviderPermanent, "{err}");
    assert_eq!(err.code.as_deref(), Some("535"), "{err}");
    assert!(!err.message.contains("wrong-password-2"), "{err}");
}

#[tokio::test]
async fn plaintext_is_refused_unless_the_operator_allows_private_hosts() {
    install_crypto();
    let cfg = json!({
        "host": "mail.example.com",
        "port": 25,
        "tls": "none",
        "from": "shop@example.com",
    });

    let message = build_error(cfg, false);

    assert!(
        message.contains("COMMUNICATION_ALLOW_PRIVATE_HOSTS"),
        "{message}"
    );
    assert!(message.contains("config.tls"), "{message}");
}

#[tokio::test]
async fn a_loopback_ip_host_is_refused_at_build_unless_the_operator_allows_private_hosts() {
    install_crypto();
    for host in [
        "127.0.0.1",
        "::1",
        "10.0.0.1",
        "192.168.1.10",
        "169.254.169.254",
    ] {
        let cfg = json!({
            "host": host,
            "port": 587,
            "tls": "starttls",
            "from": "shop@example.com",
        });
        let message = build_error(cfg, false);
        assert!(message.contains("private or local"), "{host}: {message}");
    }
}

#[tokio::test]
async fn localhost_is_refused_at_send_and_check_time_unless_the_operator_allows_private_hosts() {
    install_crypto();
    let server = SmtpServer::start();
    let cfg = json!({
        "host": "localhost",
        "port": server.port,
        "tls": "starttls",
        "username": USER,
        "password": PASSWORD,
        "from": "shop@example.com",
    });
    let provider = build(cfg, false);

    let err = send_failure(provider.as_ref(), "ada@example.org").await;
    assert_eq!(err.class, ErrorClass::ProviderPermanent, "{err}");
    assert!(err.message.contains("private or local address"), "{err}");

    let err = provider.check().await.expect_err("check refused");
    assert_eq!(err.class, ErrorClass::ProviderPermanent, "{err}");
    assert!(err.message.contains("private or local address"), "{err}");

    assert!(server.received().is_empty());
}

#[tokio::test]
async fn implicit_tls_against_a_plaintext_server_is_a_provider_permanent_failure() {
    install_crypto();
    let server = SmtpServer::start();
    let mut cfg = local_config(server.port);
    cfg["tls"] = json!("implicit");
    let provider = build(cfg, true);

    let err = send_failure(provider.as_ref(), "ada@example.org").await;

    assert_eq!(err.class, ErrorClass::ProviderPermanent, "{err}");
    assert!(err.message.contains("TLS"), "{err}");
    assert_no_secret(&err);
    assert!(server.received().is_empty());
}

#[tokio::test]
async fn starttls_against_a_server_that_does_not_offer_it_is_a_provider_permanent_failure() {
    install_crypto();
    let server = SmtpServer::start();
    let mut cfg = local_config(server.port);
    cfg["tls"] = json!("starttls");
    let provider = build(cfg, true);

    let err = send_failure(provider.as_ref(), "ada@example.org").await;
    assert_eq!(err.class, ErrorClass::ProviderPermanent, "{err}");
    assert!(err.message.contains("STARTTLS"), "{err}");

    let err = provider.check().await.expect_err("check fails");
    assert_eq!(err.class, ErrorClass::ProviderPermanent, "{err}");
    assert!(server.received().is_empty());
}
