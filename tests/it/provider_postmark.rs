//! The Postmark adapter against a mock of Postmark's API: the exact `/email` request, the
//! MessageID, the classification of Postmark's documented error codes, and the token check.

use crate::email_support as common;

use std::time::Duration;

use communication::config::ProviderBases;
use communication::providers::{ErrorClass, ProviderContext, ProviderError, postmark};
use serde_json::{Value, json};
use wiremock::matchers::{body_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use common::{Draft, HTML, SUBJECT, TEXT, TO, assert_error, assert_safe, config, transient};

const TOKEN: &str = "3f1e0c2a-7b9d-4e51-a8c6-5d2f9b0e7a14";
const FROM: &str = "Acme <noreply@acme.example>";

fn ctx(server: &MockServer) -> ProviderContext {
    common::context(ProviderBases {
        postmark: server.uri(),
        ..Default::default()
    })
}

fn postmark_config() -> serde_json::Map<String, Value> {
    config(json!({"server_token": TOKEN, "from": FROM}))
}

fn expected_body(draft: &Draft, stream: &str) -> Value {
    json!({
        "From": FROM,
        "To": TO,
        "Subject": SUBJECT,
        "TextBody": TEXT,
        "HtmlBody": HTML,
        "MessageStream": stream,
        "Metadata": {"message_id": draft.id.to_string()}
    })
}

fn accepted() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "To": TO,
        "SubmittedAt": "2026-11-24T16:00:00.1234567-05:00",
        "MessageID": "b7bc2f4a-e38e-4336-af7d-e6c392c2f817",
        "ErrorCode": 0,
        "Message": "OK"
    }))
}

async fn error_for(status: u16, body: Value, retry_after: Option<&str>) -> ProviderError {
    let server = MockServer::start().await;
    let mut response = ResponseTemplate::new(status).set_body_json(body);
    if let Some(seconds) = retry_after {
        response = response.insert_header("retry-after", seconds);
    }
    Mock::given(method("POST"))
        .and(path("/email"))
        .respond_with(response)
        .expect(1)
        .mount(&server)
        .await;
    let provider = postmark::build(&postmark_config(), &ctx(&server)).expect("builds");
    let draft = Draft::email();
    provider
        .send(&draft.outbound())
        .await
        .expect_err("the send fails")
}

fn api_error(code: i64, message: &str) -> Value {
    json!({"ErrorCode": code, "Message": message})
}

#[tokio::test]
async fn send_posts_the_documented_request_and_returns_the_message_id() {
    let server = MockServer::start().await;
    let draft = Draft::email();
    Mock::given(method("POST"))
        .and(path("/email"))
        .and(header("x-postmark-server-token", TOKEN))
        .and(header("accept", "application/json"))
        .and(header("content-type", "application/json"))
        .and(body_json(expected_body(&draft, "outbound")))
        .respond_with(accepted())
        .expect(1)
        .mount(&server)
        .await;
    let provider = postmark::build(&postmark_config(), &ctx(&server)).expect("builds");

    let receipt = provider.send(&draft.outbound()).await.expect("sent");

    assert_eq!(
        receipt.provider_message_id.as_deref(),
        Some("b7bc2f4a-e38e-4336-af7d-e6c392c2f817")
    );
}

#[tokio::test]
async fn the_configured_message_stream_and_reply_to_are_sent() {
    let server = MockServer::start().await;
    let draft = Draft::email().with_metadata(json!({"reply_to": "other@acme.example"}));
    let mut body = expected_body(&draft, "transactional-otp");
    body["ReplyTo"] = json!("help@acme.example");
    Mock::given(method("POST"))
        .and(path("/email"))
        .and(body_json(body))
        .respond_with(accepted())
        .expect(1)
        .mount(&server)
        .await;
    let cfg = config(json!({
        "server_token": TOKEN,
        "from": FROM,
        "message_stream": "transactional-otp",
        "reply_to": "help@acme.example"
    }));
    let provider = postmark::build(&cfg, &ctx(&server)).expect("builds");

    provider.send(&draft.outbound()).await.expect("sent");
}

#[tokio::test]
async fn a_text_only_message_takes_reply_to_and_fitting_tags_from_metadata() {
    let server = MockServer::start().await;
    let draft = Draft::text_only().with_metadata(json!({
        "reply_to": "help@acme.example",
        "tags": {
            "category": "otp",
            "attempt": 2,
            "a_name_longer_than_twenty": "x",
            "long": "v".repeat(81)
        }
    }));
    Mock::given(method("POST"))
        .and(path("/email"))
        .and(body_json(json!({
            "From": FROM,
            "To": TO,
            "Subject": SUBJECT,
            "TextBody": TEXT,
            "MessageStream": "outbound",
            "ReplyTo": "help@acme.example",
            "Metadata": {
                "message_id": draft.id.to_string(),
                "attempt": "2",
                "category": "otp"
            }
        })))
        .respond_with(accepted())
        .expect(1)
        .mount(&server)
        .await;
    let provider = postmark::build(&postmark_config(), &ctx(&server)).expect("builds");

    provider.send(&draft.outbound()).await.expect("sent");
}

#[tokio::test]
async fn an_empty_body_never_reaches_postmark() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(accepted())
        .expect(0)
        .mount(&server)
        .await;
    let provider = postmark::build(&postmark_config(), &ctx(&server)).expect("builds");
    let mut empty = Draft::email();
    empty.content.text = Some(String::new());
    empty.content.html = None;

    let err = provider.send(&empty.outbound()).await.expect_err("refused");

    assert_error(&err, ErrorClass::RecipientPermanent, "empty_content", TOKEN);
}

#[tokio::test]
async fn an_inactive_recipient_is_recipient_permanent() {
    let err = error_for(
        422,
        api_error(
            406,
            "You tried to send to recipient(s) that have been marked as inactive. Found inactive addresses: ada@example.com. Inactive recipients are ones that have generated a hard bounce, a spam complaint, or a manual suppression.",
        ),
        None,
    )
    .await;
    assert_error(&err, ErrorClass::RecipientPermanent, "406", TOKEN);
}

#[tokio::test]
async fn an_invalid_to_address_is_recipient_permanent_but_an_invalid_from_is_not() {
    let err = error_for(
        422,
        api_error(
            300,
            "Error parsing 'To': Illegal email address 'ada@'. It must contain the '@' symbol.",
        ),
        None,
    )
    .await;
    assert_error(&err, ErrorClass::RecipientPermanent, "300", TOKEN);

    let err = error_for(
        422,
        api_error(300, "Invalid 'From' address: 'noreply@acme'."),
        None,
    )
    .await;
    assert_error(&err, ErrorClass::ProviderPermanent, "300", TOKEN);
}

#[tokio::test]
async fn token_sender_and_account_problems_are_provider_permanent() {
    let cases = [
        (
            401,
            10,
            "The Server Token you provided in the X-Postmark-Server-Token request header was invalid.",
        ),
        (
            422,
            400,
            "The 'From' address you supplied (noreply@acme.example) is not a Sender Signature on your account.",
        ),
        (422, 401, "Sender signature not confirmed."),
        (
            422,
            405,
            "Not allowed to send: you have run out of credits.",
        ),
        (
            422,
            412,
            "Your account is pending approval: you can only send to addresses on your own domain.",
        ),
        (422, 413, "Account may not send."),
    ];
    for (status, code, message) in cases {
        let err = error_for(status, api_error(code, message), None).await;
        assert_error(
            &err,
            ErrorClass::ProviderPermanent,
            &code.to_string(),
            TOKEN,
        );
    }
}

#[tokio::test]
async fn a_rate_limit_or_maintenance_is_transient_and_honours_retry_after() {
    let err = error_for(429, api_error(429, "Rate limit exceeded."), Some("20")).await;
    assert_error(&err, transient(Some(20)), "429", TOKEN);

    let err = error_for(503, api_error(100, "Maintenance."), None).await;
    assert_error(&err, transient(None), "100", TOKEN);
}

#[tokio::test]
async fn server_errors_are_transient_even_without_a_json_body() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/email"))
        .respond_with(ResponseTemplate::new(500).set_body_string("Internal Server Error"))
        .expect(1)
        .mount(&server)
        .await;
    let provider = postmark::build(&postmark_config(), &ctx(&server)).expect("builds");

    let err = provider
        .send(&Draft::email().outbound())
        .await
        .expect_err("fails");

    assert_error(&err, transient(None), "http_500", TOKEN);
}

#[tokio::test]
async fn a_provider_message_that_echoes_the_token_or_body_is_scrubbed() {
    let err = error_for(
        401,
        api_error(10, &format!("Token {TOKEN} is not valid for body {HTML}")),
        None,
    )
    .await;
    assert_error(&err, ErrorClass::ProviderPermanent, "10", TOKEN);
    assert!(err.message.contains("[redacted]"), "{}", err.message);
}

#[tokio::test]
async fn a_timeout_is_transient() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/email"))
        .respond_with(accepted().set_delay(Duration::from_secs(3)))
        .expect(1)
        .mount(&server)
        .await;
    let ctx = common::context_with_timeout(
        ProviderBases {
            postmark: server.uri(),
            ..Default::default()
        },
        Duration::from_millis(300),
    );
    let provider = postmark::build(&postmark_config(), &ctx).expect("builds");

    let err = provider
        .send(&Draft::email().outbound())
        .await
        .expect_err("times out");

    assert_eq!(err.class, transient(None));
    assert!(err.message.contains("timed out"), "{}", err.message);
    assert_safe(&err, TOKEN);
}

#[tokio::test]
async fn check_reads_the_server_with_the_token() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/server"))
        .and(header("x-postmark-server-token", TOKEN))
        .and(header("accept", "application/json"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "ID": 1234567,
            "Name": "Acme transactional",
            "ApiTokens": [TOKEN],
            "Color": "purple",
            "SmtpApiActivated": true
        })))
        .expect(1)
        .mount(&server)
        .await;
    let provider = postmark::build(&postmark_config(), &ctx(&server)).expect("builds");

    let report = provider.check().await.expect("ok");

    assert!(
        report.detail.contains("Acme transactional"),
        "{}",
        report.detail
    );
    assert!(!report.detail.contains(TOKEN), "{}", report.detail);
}

#[tokio::test]
async fn check_fails_with_a_bad_token_or_a_server_error() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/server"))
        .respond_with(ResponseTemplate::new(401).set_body_json(api_error(
            10,
            "The Server Token you provided in the X-Postmark-Server-Token request header was invalid.",
        )))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/server"))
        .respond_with(ResponseTemplate::new(503))
        .expect(1)
        .mount(&server)
        .await;
    let provider = postmark::build(&postmark_config(), &ctx(&server)).expect("builds");

    let err = provider.check().await.expect_err("bad token");
    assert_error(&err, ErrorClass::ProviderPermanent, "10", TOKEN);

    let err = provider.check().await.expect_err("server down");
    assert_error(&err, transient(None), "http_503", TOKEN);
}
