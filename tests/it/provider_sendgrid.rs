//! The SendGrid adapter against a mock of SendGrid's v3 API: the exact Mail Send request, the
//! message id from `X-Message-Id`, the classification of documented errors, and the key check.

use crate::email_support as common;

use std::time::Duration;

use communication::config::ProviderBases;
use communication::providers::{ErrorClass, ProviderContext, ProviderError, sendgrid};
use serde_json::{Value, json};
use wiremock::matchers::{body_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use common::{Draft, HTML, SUBJECT, TEXT, TO, assert_error, assert_safe, config, transient};

const KEY: &str = "SG.test-key.Zq3Rk8Vw1Lm5Np7Tx9Yb";
const FROM: &str = "Acme <noreply@acme.example>";

fn ctx(server: &MockServer) -> ProviderContext {
    common::context(ProviderBases {
        sendgrid: server.uri(),
        ..Default::default()
    })
}

fn sendgrid_config() -> serde_json::Map<String, Value> {
    config(json!({"api_key": KEY, "from": FROM}))
}

fn expected_body(draft: &Draft) -> Value {
    json!({
        "personalizations": [{"to": [{"email": TO}]}],
        "from": {"email": "noreply@acme.example", "name": "Acme"},
        "subject": SUBJECT,
        "content": [
            {"type": "text/plain", "value": TEXT},
            {"type": "text/html", "value": HTML}
        ],
        "custom_args": {"message_id": draft.id.to_string()}
    })
}

async fn error_for(status: u16, body: Value, headers: &[(&str, &str)]) -> ProviderError {
    let server = MockServer::start().await;
    let mut response = ResponseTemplate::new(status).set_body_json(body);
    for (name, value) in headers {
        response = response.insert_header(*name, *value);
    }
    Mock::given(method("POST"))
        .and(path("/v3/mail/send"))
        .respond_with(response)
        .expect(1)
        .mount(&server)
        .await;
    let provider = sendgrid::build(&sendgrid_config(), &ctx(&server)).expect("builds");
    let draft = Draft::email();
    provider
        .send(&draft.outbound())
        .await
        .expect_err("the send fails")
}

fn errors(items: Value) -> Value {
    json!({"errors": items})
}

#[tokio::test]
async fn send_posts_the_documented_mail_send_request_and_reads_x_message_id() {
    let server = MockServer::start().await;
    let draft = Draft::email();
    Mock::given(method("POST"))
        .and(path("/v3/mail/send"))
        .and(header("authorization", format!("Bearer {KEY}").as_str()))
        .and(header("content-type", "application/json"))
        .and(body_json(expected_body(&draft)))
        .respond_with(ResponseTemplate::new(202).insert_header("X-Message-Id", "W3pBfXyqRkS1xQ"))
        .expect(1)
        .mount(&server)
        .await;
    let provider = sendgrid::build(&sendgrid_config(), &ctx(&server)).expect("builds");

    let receipt = provider.send(&draft.outbound()).await.expect("sent");

    assert_eq!(
        receipt.provider_message_id.as_deref(),
        Some("W3pBfXyqRkS1xQ")
    );
}

#[tokio::test]
async fn a_text_only_message_with_metadata_reply_to_and_tags_is_sent_as_documented() {
    let server = MockServer::start().await;
    let draft = Draft::text_only().with_metadata(json!({
        "reply_to": "Help Desk <help@acme.example>",
        "tags": {"category": "otp", "attempt": 2, "nested": {"no": 1}, "message_id": "spoof"}
    }));
    Mock::given(method("POST"))
        .and(path("/v3/mail/send"))
        .and(body_json(json!({
            "personalizations": [{"to": [{"email": TO}]}],
            "from": {"email": "noreply@acme.example", "name": "Acme"},
            "reply_to": {"email": "help@acme.example", "name": "Help Desk"},
            "subject": SUBJECT,
            "content": [{"type": "text/plain", "value": TEXT}],
            "custom_args": {
                "attempt": "2",
                "category": "otp",
                "message_id": draft.id.to_string()
            }
        })))
        .respond_with(ResponseTemplate::new(202).insert_header("X-Message-Id", "id-2"))
        .expect(1)
        .mount(&server)
        .await;
    let provider = sendgrid::build(&sendgrid_config(), &ctx(&server)).expect("builds");

    provider.send(&draft.outbound()).await.expect("sent");
}

#[tokio::test]
async fn the_configured_reply_to_wins_over_metadata() {
    let server = MockServer::start().await;
    let draft = Draft::email().with_metadata(json!({"reply_to": "other@acme.example"}));
    let mut body = expected_body(&draft);
    body["reply_to"] = json!({"email": "help@acme.example"});
    Mock::given(method("POST"))
        .and(path("/v3/mail/send"))
        .and(body_json(body))
        .respond_with(ResponseTemplate::new(202).insert_header("X-Message-Id", "id-3"))
        .expect(1)
        .mount(&server)
        .await;
    let cfg = config(json!({"api_key": KEY, "from": FROM, "reply_to": "help@acme.example"}));
    let provider = sendgrid::build(&cfg, &ctx(&server)).expect("builds");

    provider.send(&draft.outbound()).await.expect("sent");
}

#[tokio::test]
async fn an_empty_body_never_reaches_sendgrid() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(202))
        .expect(0)
        .mount(&server)
        .await;
    let provider = sendgrid::build(&sendgrid_config(), &ctx(&server)).expect("builds");
    let mut empty = Draft::email();
    empty.content.text = None;
    empty.content.html = None;

    let err = provider.send(&empty.outbound()).await.expect_err("refused");

    assert_error(&err, ErrorClass::RecipientPermanent, "empty_content", KEY);
}

#[tokio::test]
async fn an_invalid_revoked_or_unauthorized_key_is_provider_permanent() {
    let cases = [
        (
            "The provided authorization grant is invalid, expired, or revoked",
            "unauthorized",
        ),
        ("Maximum credits exceeded", "credits_exceeded"),
        (
            "Authenticated user is not authorized to send mail",
            "not_authorized",
        ),
    ];
    for (message, code) in cases {
        let err = error_for(
            401,
            errors(json!([{"field": null, "message": message, "help": null}])),
            &[],
        )
        .await;
        assert_error(&err, ErrorClass::ProviderPermanent, code, KEY);
    }
}

#[tokio::test]
async fn an_unverified_sender_identity_is_provider_permanent() {
    let err = error_for(
        403,
        errors(json!([{
            "field": "from",
            "message": "The from address does not match a verified Sender Identity. Mail cannot be sent until this error is resolved.",
            "help": "https://sendgrid.com/docs/for-developers/sending-email/sender-identity/"
        }])),
        &[],
    )
    .await;
    assert_error(
        &err,
        ErrorClass::ProviderPermanent,
        "sender_not_verified",
        KEY,
    );
}

#[tokio::test]
async fn an_invalid_to_address_is_recipient_permanent() {
    let err = error_for(
        400,
        errors(json!([{
            "field": "personalizations.0.to.0.email",
            "message": "Does not contain a valid address.",
            "help": "http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html#message.personalizations.to"
        }])),
        &[],
    )
    .await;
    assert_error(
        &err,
        ErrorClass::RecipientPermanent,
        "invalid_recipient",
        KEY,
    );
    assert!(
        err.message.contains("personalizations.0.to.0.email"),
        "{}",
        err.message
    );
}

#[tokio::test]
async fn an_invalid_from_address_or_other_bad_request_is_provider_permanent() {
    let err = error_for(
        400,
        errors(json!([{"field": "from.email", "message": "Does not contain a valid address."}])),
        &[],
    )
    .await;
    assert_error(&err, ErrorClass::ProviderPermanent, "invalid_sender", KEY);

    let err = error_for(
        400,
        errors(json!([{"field": "subject", "message": "The subject is required."}])),
        &[],
    )
    .await;
    assert_error(&err, ErrorClass::ProviderPermanent, "bad_request", KEY);

    let err = error_for(413, errors(json!([{"message": "Payload too large"}])), &[]).await;
    assert_error(
        &err,
        ErrorClass::ProviderPermanent,
        "payload_too_large",
        KEY,
    );
}

#[tokio::test]
async fn a_rate_limit_is_transient_and_honours_retry_after() {
    let err = error_for(
        429,
        errors(json!([{"field": null, "message": "too many requests"}])),
        &[("retry-after", "12")],
    )
    .await;
    assert_error(&err, transient(Some(12)), "rate_limited", KEY);
}

#[tokio::test]
async fn a_rate_limit_without_retry_after_waits_until_x_ratelimit_reset() {
    let reset = (chrono::Utc::now().timestamp() + 30).to_string();
    let err = error_for(
        429,
        errors(json!([{"message": "too many requests"}])),
        &[("x-ratelimit-reset", reset.as_str())],
    )
    .await;
    let ErrorClass::Transient {
        retry_after: Some(wait),
    } = err.class
    else {
        panic!("expected a transient error with a hint, got {err:?}");
    };
    assert!(
        (Duration::from_secs(28)..=Duration::from_secs(30)).contains(&wait),
        "{wait:?}"
    );
}

#[tokio::test]
async fn server_errors_are_transient() {
    for status in [500, 502, 503] {
        let err = error_for(status, json!({"errors": []}), &[]).await;
        assert_error(&err, transient(None), "server_error", KEY);
    }
}

#[tokio::test]
async fn a_provider_message_that_echoes_the_key_or_body_is_scrubbed() {
    let err = error_for(
        400,
        errors(json!([{"field": "content.0.value", "message": format!("{KEY} rejected {TEXT}")}])),
        &[],
    )
    .await;
    assert_error(&err, ErrorClass::ProviderPermanent, "bad_request", KEY);
}

#[tokio::test]
async fn a_timeout_is_transient() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v3/mail/send"))
        .respond_with(ResponseTemplate::new(202).set_delay(Duration::from_secs(3)))
        .expect(1)
        .mount(&server)
        .await;
    let ctx = common::context_with_timeout(
        ProviderBases {
            sendgrid: server.uri(),
            ..Default::default()
        },
        Duration::from_millis(300),
    );
    let provider = sendgrid::build(&sendgrid_config(), &ctx).expect("builds");

    let err = provider
        .send(&Draft::email().outbound())
        .await
        .expect_err("times out");

    assert_eq!(err.class, transient(None));
    assert!(err.message.contains("timed out"), "{}", err.message);
    assert_safe(&err, KEY);
}

#[tokio::test]
async fn check_accepts_a_key_with_the_mail_send_scope() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v3/scopes"))
        .and(header("authorization", format!("Bearer {KEY}").as_str()))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"scopes": ["mail.send", "sender_verification_eligible"]})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let provider = sendgrid::build(&sendgrid_config(), &ctx(&server)).expect("builds");

    let report = provider.check().await.expect("ok");

    assert!(report.detail.contains("mail.send"), "{}", report.detail);
}

#[tokio::test]
async fn check_fails_for_a_key_without_mail_send_or_a_revoked_key() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v3/scopes"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"scopes": ["stats.read"]})))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v3/scopes"))
        .respond_with(ResponseTemplate::new(401).set_body_json(errors(json!([{
            "field": null,
            "message": "The provided authorization grant is invalid, expired, or revoked"
        }]))))
        .expect(1)
        .mount(&server)
        .await;
    let provider = sendgrid::build(&sendgrid_config(), &ctx(&server)).expect("builds");

    let err = provider.check().await.expect_err("no scope");
    assert_error(&err, ErrorClass::ProviderPermanent, "missing_scope", KEY);

    let err = provider.check().await.expect_err("revoked");
    assert_error(&err, ErrorClass::ProviderPermanent, "unauthorized", KEY);
}
