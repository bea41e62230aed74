//! The Mailgun adapter against a mock of Mailgun's API: the exact form request on the US and EU
//! bases, the message id, the classification of Mailgun's errors, and the domain check.

use crate::email_support as common;

use std::time::Duration;

use communication::config::ProviderBases;
use communication::providers::{ErrorClass, ProviderContext, ProviderError, mailgun};
use serde_json::{Value, json};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::matchers::{FormIs, basic_auth};

use common::{Draft, HTML, SUBJECT, TEXT, TO, assert_error, assert_safe, config, transient};

const KEY: &str = "key-3ax6xnjp29jd6fds4gc373sgvjxteol0";
const DOMAIN: &str = "mg.acme.example";
const FROM: &str = "Acme <noreply@mg.acme.example>";

fn ctx(server: &MockServer) -> ProviderContext {
    common::context(ProviderBases {
        mailgun: server.uri(),
        mailgun_eu: "http://127.0.0.1:9".into(),
        ..Default::default()
    })
}

fn mailgun_config() -> serde_json::Map<String, Value> {
    config(json!({"api_key": KEY, "domain": DOMAIN, "from": FROM}))
}

fn queued() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "id": "<20261124160000.1.ABCDEF@mg.acme.example>",
        "message": "Queued. Thank you."
    }))
}

async fn error_for(status: u16, body: &str, retry_after: Option<&str>) -> ProviderError {
    let server = MockServer::start().await;
    let mut response = match serde_json::from_str::<Value>(body) {
        Ok(json) => ResponseTemplate::new(status).set_body_json(json),
        Err(_) => ResponseTemplate::new(status).set_body_string(body),
    };
    if let Some(seconds) = retry_after {
        response = response.insert_header("retry-after", seconds);
    }
    Mock::given(method("POST"))
        .and(path(format!("/v3/{DOMAIN}/messages")))
        .respond_with(response)
        .expect(1)
        .mount(&server)
        .await;
    let provider = mailgun::build(&mailgun_config(), &ctx(&server)).expect("builds");
    let draft = Draft::email();
    provider
        .send(&draft.outbound())
        .await
        .expect_err("the send fails")
}

fn mailgun_error(message: &str) -> String {
    json!({ "message": message }).to_string()
}

#[tokio::test]
async fn send_posts_the_documented_form_and_returns_the_id_without_brackets() {
    let server = MockServer::start().await;
    let draft = Draft::email();
    let id = draft.id.to_string();
    Mock::given(method("POST"))
        .and(path(format!("/v3/{DOMAIN}/messages")))
        .and(header("authorization", basic_auth("api", KEY).as_str()))
        .and(header("content-type", "application/x-www-form-urlencoded"))
        .and(FormIs::new(&[
            ("from", FROM),
            ("to", TO),
            ("subject", SUBJECT),
            ("text", TEXT),
            ("html", HTML),
            ("v:message_id", &id),
        ]))
        .respond_with(queued())
        .expect(1)
        .mount(&server)
        .await;
    let provider = mailgun::build(&mailgun_config(), &ctx(&server)).expect("builds");

    let receipt = provider.send(&draft.outbound()).await.expect("sent");

    assert_eq!(
        receipt.provider_message_id.as_deref(),
        Some("20261124160000.1.ABCDEF@mg.acme.example")
    );
}

#[tokio::test]
async fn the_eu_region_sends_through_the_eu_base_only() {
    let us = MockServer::start().await;
    let eu = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(queued())
        .expect(0)
        .mount(&us)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("/v3/{DOMAIN}/messages")))
        .and(header("authorization", basic_auth("api", KEY).as_str()))
        .respond_with(queued())
        .expect(1)
        .mount(&eu)
        .await;
    let ctx = common::context(ProviderBases {
        mailgun: us.uri(),
        mailgun_eu: eu.uri(),
        ..Default::default()
    });
    let cfg = config(json!({"api_key": KEY, "domain": DOMAIN, "from": FROM, "region": "eu"}));
    let provider = mailgun::build(&cfg, &ctx).expect("builds");

    provider
        .send(&Draft::email().outbound())
        .await
        .expect("sent");
}

#[tokio::test]
async fn a_text_only_message_takes_reply_to_and_tags_from_metadata_as_variables() {
    let server = MockServer::start().await;
    let draft = Draft::text_only().with_metadata(json!({
        "reply_to": "help@acme.example",
        "tags": {"category": "otp", "attempt": 2, "bad name": "x", "message_id": "spoof"}
    }));
    let id = draft.id.to_string();
    Mock::given(method("POST"))
        .and(path(format!("/v3/{DOMAIN}/messages")))
        .and(FormIs::new(&[
            ("from", FROM),
            ("to", TO),
            ("subject", SUBJECT),
            ("text", TEXT),
            ("h:Reply-To", "help@acme.example"),
            ("v:message_id", &id),
            ("v:attempt", "2"),
            ("v:category", "otp"),
        ]))
        .respond_with(queued())
        .expect(1)
        .mount(&server)
        .await;
    let provider = mailgun::build(&mailgun_config(), &ctx(&server)).expect("builds");

    provider.send(&draft.outbound()).await.expect("sent");
}

#[tokio::test]
async fn the_configured_reply_to_wins_and_a_multiline_metadata_reply_to_is_ignored() {
    let server = MockServer::start().await;
    let draft = Draft::email().with_metadata(json!({
        "reply_to": "x@acme.example\r\nBcc: victim@example.com"
    }));
    let id = draft.id.to_string();
    Mock::given(method("POST"))
        .and(path(format!("/v3/{DOMAIN}/messages")))
        .and(FormIs::new(&[
            ("from", FROM),
            ("to", TO),
            ("subject", SUBJECT),
            ("text", TEXT),
            ("html", HTML),
            ("v:message_id", &id),
        ]))
        .respond_with(queued())
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("/v3/{DOMAIN}/messages")))
        .and(FormIs::new(&[
            ("from", FROM),
            ("to", TO),
            ("subject", SUBJECT),
            ("text", TEXT),
            ("html", HTML),
            ("h:Reply-To", "help@acme.example"),
            ("v:message_id", &id),
        ]))
        .respond_with(queued())
        .expect(1)
        .mount(&server)
        .await;

    let plain = mailgun::build(&mailgun_config(), &ctx(&server)).expect("builds");
    plain.send(&draft.outbound()).await.expect("sent");

    let cfg = config(json!({
        "api_key": KEY, "domain": DOMAIN, "from": FROM, "reply_to": "help@acme.example"
    }));
    let with_reply_to = mailgun::build(&cfg, &ctx(&server)).expect("builds");
    with_reply_to.send(&draft.outbound()).await.expect("sent");
}

#[tokio::test]
async fn an_empty_body_never_reaches_mailgun() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(queued())
        .expect(0)
        .mount(&server)
        .await;
    let provider = mailgun::build(&mailgun_config(), &ctx(&server)).expect("builds");
    let mut empty = Draft::email();
    empty.content.text = None;
    empty.content.html = None;

    let err = provider.send(&empty.outbound()).await.expect_err("refused");

    assert_error(&err, ErrorClass::RecipientPermanent, "empty_content", KEY);
}

#[tokio::test]
async fn a_wrong_key_forbidden_domain_or_unknown_domain_is_provider_permanent() {
    let err = error_for(401, "Forbidden", None).await;
    assert_error(&err, ErrorClass::ProviderPermanent, "unauthorized", KEY);

    let err = error_for(
        403,
        &mailgun_error("Domain mg.acme.example is not allowed to send: account disabled"),
        None,
    )
    .await;
    assert_error(&err, ErrorClass::ProviderPermanent, "forbidden", KEY);

    let err = error_for(
        404,
        &mailgun_error("Domain not found: mg.acme.example"),
        None,
    )
    .await;
    assert_error(&err, ErrorClass::ProviderPermanent, "domain_not_found", KEY);
}

#[tokio::test]
async fn an_invalid_to_parameter_is_recipient_permanent() {
    let err = error_for(
        400,
        &mailgun_error("'to' parameter is not a valid address. please check documentation"),
        None,
    )
    .await;
    assert_error(
        &err,
        ErrorClass::RecipientPermanent,
        "invalid_recipient",
        KEY,
    );
}

#[tokio::test]
async fn a_sandbox_restriction_or_invalid_from_is_provider_permanent() {
    let err = error_for(
        400,
        &mailgun_error(
            "Sandbox subdomains are for test purposes only. Please add your own domain or add the address to authorized recipients in Account Settings.",
        ),
        None,
    )
    .await;
    assert_error(
        &err,
        ErrorClass::ProviderPermanent,
        "sandbox_recipient_not_authorized",
        KEY,
    );

    let err = error_for(
        400,
        &mailgun_error("'from' parameter is not a valid address. please check documentation"),
        None,
    )
    .await;
    assert_error(&err, ErrorClass::ProviderPermanent, "invalid_sender", KEY);

    let err = error_for(
        400,
        &mailgun_error("Need at least one of 'text' or 'html' parameters specified"),
        None,
    )
    .await;
    assert_error(&err, ErrorClass::ProviderPermanent, "bad_request", KEY);
}

#[tokio::test]
async fn a_rate_limit_is_transient_and_honours_retry_after() {
    let err = error_for(429, &mailgun_error("Too many requests"), Some("15")).await;
    assert_error(&err, transient(Some(15)), "rate_limited", KEY);
}

#[tokio::test]
async fn server_errors_are_transient() {
    for status in [500, 502, 503] {
        let err = error_for(status, "<html>upstream error</html>", None).await;
        assert_error(&err, transient(None), "server_error", KEY);
    }
}

#[tokio::test]
async fn a_provider_message_that_echoes_the_key_or_body_is_scrubbed() {
    let err = error_for(
        400,
        &mailgun_error(&format!("bad request with {KEY} and {TEXT}")),
        None,
    )
    .await;
    assert_error(&err, ErrorClass::ProviderPermanent, "bad_request", KEY);
    assert!(err.message.contains("[redacted]"), "{}", err.message);
}

#[tokio::test]
async fn a_timeout_is_transient() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!("/v3/{DOMAIN}/messages")))
        .respond_with(queued().set_delay(Duration::from_secs(3)))
        .expect(1)
        .mount(&server)
        .await;
    let ctx = common::context_with_timeout(
        ProviderBases {
            mailgun: server.uri(),
            ..Default::default()
        },
        Duration::from_millis(300),
    );
    let provider = mailgun::build(&mailgun_config(), &ctx).expect("builds");

    let err = provider
        .send(&Draft::email().outbound())
        .await
        .expect_err("times out");

    assert_eq!(err.class, transient(None));
    assert!(err.message.contains("timed out"), "{}", err.message);
    assert_safe(&err, KEY);
}

async fn check_against(status: u16, body: Value) -> Result<String, ProviderError> {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(format!("/v3/domains/{DOMAIN}")))
        .and(header("authorization", basic_auth("api", KEY).as_str()))
        .respond_with(ResponseTemplate::new(status).set_body_json(body))
        .expect(1)
        .mount(&server)
        .await;
    let provider = mailgun::build(&mailgun_config(), &ctx(&server)).expect("builds");
    provider.check().await.map(|r| r.detail)
}

fn domain(state: &str) -> Value {
    json!({
        "domain": {
            "name": DOMAIN,
            "state": state,
            "type": "custom",
            "created_at": "Tue, 24 Nov 2026 16:00:00 GMT"
        },
        "receiving_dns_records": [],
        "sending_dns_records": []
    })
}

#[tokio::test]
async fn check_accepts_an_active_domain() {
    let detail = check_against(200, domain("active")).await.expect("ok");
    assert!(detail.contains("is active"), "{detail}");
}

#[tokio::test]
async fn check_fails_for_an_unverified_or_disabled_domain() {
    let err = check_against(200, domain("unverified"))
        .await
        .expect_err("unverified");
    assert_error(
        &err,
        ErrorClass::ProviderPermanent,
        "domain_unverified",
        KEY,
    );

    let err = check_against(200, domain("disabled"))
        .await
        .expect_err("disabled");
    assert_error(&err, ErrorClass::ProviderPermanent, "domain_inactive", KEY);
}

#[tokio::test]
async fn check_fails_for_a_wrong_key_or_an_unknown_domain() {
    let err = check_against(401, json!("Forbidden"))
        .await
        .expect_err("wrong key");
    assert_error(&err, ErrorClass::ProviderPermanent, "unauthorized", KEY);

    let err = check_against(404, json!({"message": "Domain not found"}))
        .await
        .expect_err("unknown domain");
    assert_error(&err, ErrorClass::ProviderPermanent, "domain_not_found", KEY);
}
