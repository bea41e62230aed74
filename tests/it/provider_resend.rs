//! The Resend adapter against a mock of Resend's API: the exact request Resend documents, the
//! classification of every documented error, credential checks, and webhook verification.

use crate::email_support as common;

use std::time::Duration;

use communication::config::ProviderBases;
use communication::domain::{Channel, Recipient};
use communication::providers::{
    ErrorClass, ProviderContext, ProviderError, ReceiptOutcome, WebhookError, resend,
};
use serde_json::{Value, json};
use wiremock::matchers::{body_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use common::{Draft, HTML, SUBJECT, TEXT, TO, assert_error, assert_safe, config, transient};

const KEY: &str = "re_test_Xy7Qk2Lm9Np4Rs6T";
const FROM: &str = "Acme <noreply@acme.example>";

fn ctx(server: &MockServer) -> ProviderContext {
    common::context(ProviderBases {
        resend: server.uri(),
        ..Default::default()
    })
}

fn resend_config() -> serde_json::Map<String, Value> {
    config(json!({"api_key": KEY, "from": FROM}))
}

fn expected_body(draft: &Draft) -> Value {
    json!({
        "from": FROM,
        "to": [TO],
        "subject": SUBJECT,
        "text": TEXT,
        "html": HTML,
        "tags": [{"name": "message_id", "value": draft.id.to_string()}],
    })
}

/// Sends one message against a mock answering `status` with `body` (JSON when it parses).
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
        .and(path("/emails"))
        .respond_with(response)
        .expect(1)
        .mount(&server)
        .await;
    let provider = resend::build(&resend_config(), &ctx(&server)).expect("builds");
    let draft = Draft::email();
    provider
        .send(&draft.outbound())
        .await
        .expect_err("the send fails")
}

fn resend_error(status: u16, name: &str, message: &str) -> String {
    json!({"statusCode": status, "name": name, "message": message}).to_string()
}

#[tokio::test]
async fn send_posts_the_documented_request_with_our_id_as_idempotency_key() {
    let server = MockServer::start().await;
    let draft = Draft::email();
    Mock::given(method("POST"))
        .and(path("/emails"))
        .and(header("authorization", format!("Bearer {KEY}").as_str()))
        .and(header("content-type", "application/json"))
        .and(header("idempotency-key", draft.id.to_string().as_str()))
        .and(body_json(expected_body(&draft)))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"id": "49a3999c-0ce1-4ea6-ab68-afcd6dc2e794"})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let provider = resend::build(&resend_config(), &ctx(&server)).expect("builds");

    let receipt = provider.send(&draft.outbound()).await.expect("sent");

    assert_eq!(
        receipt.provider_message_id.as_deref(),
        Some("49a3999c-0ce1-4ea6-ab68-afcd6dc2e794")
    );
}

#[tokio::test]
async fn a_retry_of_the_same_message_repeats_the_same_idempotency_key() {
    let server = MockServer::start().await;
    let draft = Draft::email();
    Mock::given(method("POST"))
        .and(path("/emails"))
        .and(header("idempotency-key", draft.id.to_string().as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "em_1"})))
        .expect(2)
        .mount(&server)
        .await;
    let provider = resend::build(&resend_config(), &ctx(&server)).expect("builds");

    provider.send(&draft.outbound()).await.expect("first");
    provider.send(&draft.outbound()).await.expect("second");
}

#[tokio::test]
async fn a_text_only_message_takes_reply_to_and_valid_tags_from_metadata() {
    let server = MockServer::start().await;
    let draft = Draft::text_only().with_metadata(json!({
        "reply_to": "support@acme.example",
        "tags": {"category": "otp", "bad name": "x", "flow": "sign in", "attempt": 2},
    }));
    Mock::given(method("POST"))
        .and(path("/emails"))
        .and(body_json(json!({
            "from": FROM,
            "to": [TO],
            "subject": SUBJECT,
            "text": TEXT,
            "reply_to": "support@acme.example",
            "tags": [
                {"name": "message_id", "value": draft.id.to_string()},
                {"name": "attempt", "value": "2"},
                {"name": "category", "value": "otp"},
            ],
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "em_2"})))
        .expect(1)
        .mount(&server)
        .await;
    let provider = resend::build(&resend_config(), &ctx(&server)).expect("builds");

    provider.send(&draft.outbound()).await.expect("sent");
}

#[tokio::test]
async fn the_configured_reply_to_wins_over_metadata() {
    let server = MockServer::start().await;
    let draft = Draft::email().with_metadata(json!({"reply_to": "other@acme.example"}));
    let mut body = expected_body(&draft);
    body["reply_to"] = json!("help@acme.example");
    Mock::given(method("POST"))
        .and(path("/emails"))
        .and(body_json(body))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "em_3"})))
        .expect(1)
        .mount(&server)
        .await;
    let cfg = config(json!({"api_key": KEY, "from": FROM, "reply_to": "help@acme.example"}));
    let provider = resend::build(&cfg, &ctx(&server)).expect("builds");

    provider.send(&draft.outbound()).await.expect("sent");
}

#[tokio::test]
async fn an_accepted_email_without_a_readable_id_is_still_sent() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/emails"))
        .respond_with(ResponseTemplate::new(200).set_body_string("not json"))
        .expect(1)
        .mount(&server)
        .await;
    let provider = resend::build(&resend_config(), &ctx(&server)).expect("builds");

    let receipt = provider
        .send(&Draft::email().outbound())
        .await
        .expect("sent");

    assert_eq!(receipt.provider_message_id, None);
}

#[tokio::test]
async fn a_phone_recipient_or_an_empty_body_never_reaches_resend() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .expect(0)
        .mount(&server)
        .await;
    let provider = resend::build(&resend_config(), &ctx(&server)).expect("builds");

    let mut phone = Draft::email();
    phone.to = Recipient::parse(Channel::Sms, "+14155550100").expect("valid number");
    let err = provider.send(&phone.outbound()).await.expect_err("refused");
    assert_error(
        &err,
        ErrorClass::RecipientPermanent,
        "unsupported_recipient",
        KEY,
    );

    let mut empty = Draft::email();
    empty.content.text = None;
    empty.content.html = Some("  ".into());
    let err = provider.send(&empty.outbound()).await.expect_err("refused");
    assert_error(&err, ErrorClass::RecipientPermanent, "empty_content", KEY);
}

#[tokio::test]
async fn a_missing_or_invalid_api_key_is_provider_permanent() {
    let err = error_for(
        401,
        &resend_error(
            401,
            "missing_api_key",
            "Missing API key in the authorization header.",
        ),
        None,
    )
    .await;
    assert_error(&err, ErrorClass::ProviderPermanent, "missing_api_key", KEY);

    let err = error_for(
        403,
        &resend_error(403, "invalid_api_key", "API key is invalid."),
        None,
    )
    .await;
    assert_error(&err, ErrorClass::ProviderPermanent, "invalid_api_key", KEY);
}

#[tokio::test]
async fn an_unverified_domain_or_testing_only_account_is_provider_permanent() {
    let err = error_for(
        403,
        &resend_error(
            403,
            "validation_error",
            "The acme.example domain is not verified. Please, add and verify your domain.",
        ),
        None,
    )
    .await;
    assert_error(&err, ErrorClass::ProviderPermanent, "validation_error", KEY);

    let err = error_for(
        403,
        &resend_error(
            403,
            "validation_error",
            "You can only send testing emails to your own email address (owner@acme.example).",
        ),
        None,
    )
    .await;
    assert_error(&err, ErrorClass::ProviderPermanent, "validation_error", KEY);
}

#[tokio::test]
async fn an_invalid_to_field_is_recipient_permanent() {
    let err = error_for(
        422,
        &resend_error(
            422,
            "validation_error",
            "Invalid `to` field. The email address needs to follow the `email@example.com` or `Name <email@example.com>` format.",
        ),
        None,
    )
    .await;
    assert_error(
        &err,
        ErrorClass::RecipientPermanent,
        "validation_error",
        KEY,
    );
}

#[tokio::test]
async fn an_invalid_from_address_or_missing_field_is_provider_permanent() {
    let err = error_for(
        422,
        &resend_error(
            422,
            "validation_error",
            "Invalid `from` field. The email address needs to follow the `email@example.com` or `Name <email@example.com>` format.",
        ),
        None,
    )
    .await;
    assert_error(&err, ErrorClass::ProviderPermanent, "validation_error", KEY);

    let err = error_for(
        422,
        &resend_error(422, "invalid_from_address", "Invalid `from` field."),
        None,
    )
    .await;
    assert_error(
        &err,
        ErrorClass::ProviderPermanent,
        "invalid_from_address",
        KEY,
    );

    let err = error_for(
        422,
        &resend_error(422, "missing_required_field", "Missing `subject` field."),
        None,
    )
    .await;
    assert_error(
        &err,
        ErrorClass::ProviderPermanent,
        "missing_required_field",
        KEY,
    );
}

#[tokio::test]
async fn a_rate_limit_is_transient_and_honours_retry_after() {
    let err = error_for(
        429,
        &resend_error(
            429,
            "rate_limit_exceeded",
            "Too many requests. You can only make 2 requests per second.",
        ),
        Some("7"),
    )
    .await;
    assert_error(&err, transient(Some(7)), "rate_limit_exceeded", KEY);
}

#[tokio::test]
async fn an_exhausted_daily_or_monthly_quota_is_provider_permanent() {
    for name in ["daily_quota_exceeded", "monthly_quota_exceeded"] {
        let err = error_for(
            429,
            &resend_error(429, name, "You have reached your email sending quota."),
            Some("3600"),
        )
        .await;
        assert_error(&err, ErrorClass::ProviderPermanent, name, KEY);
    }
}

#[tokio::test]
async fn a_concurrent_idempotent_request_is_transient_but_a_reused_key_is_not() {
    let err = error_for(
        409,
        &resend_error(
            409,
            "concurrent_idempotent_requests",
            "Same idempotency key used while original request is still in progress.",
        ),
        None,
    )
    .await;
    assert_error(&err, transient(None), "concurrent_idempotent_requests", KEY);

    let err = error_for(
        409,
        &resend_error(
            409,
            "invalid_idempotent_request",
            "Same idempotency key used with a different request payload.",
        ),
        None,
    )
    .await;
    assert_error(
        &err,
        ErrorClass::ProviderPermanent,
        "invalid_idempotent_request",
        KEY,
    );
}

#[tokio::test]
async fn server_errors_are_transient_even_without_a_json_body() {
    let err = error_for(
        500,
        &resend_error(
            500,
            "internal_server_error",
            "An unexpected error occurred.",
        ),
        None,
    )
    .await;
    assert_error(&err, transient(None), "internal_server_error", KEY);

    let err = error_for(503, "<html>Service Unavailable</html>", Some("30")).await;
    assert_error(&err, transient(Some(30)), "http_503", KEY);
}

#[tokio::test]
async fn a_provider_message_that_echoes_the_key_or_body_is_scrubbed() {
    let echo = format!("API key {KEY} cannot send \"{TEXT}\"");
    let err = error_for(403, &resend_error(403, "invalid_api_key", &echo), None).await;
    assert_error(&err, ErrorClass::ProviderPermanent, "invalid_api_key", KEY);
    assert!(err.message.contains("[redacted]"), "{}", err.message);
}

#[tokio::test]
async fn a_timeout_is_transient() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/emails"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"id": "late"}))
                .set_delay(Duration::from_secs(3)),
        )
        .expect(1)
        .mount(&server)
        .await;
    let ctx = common::context_with_timeout(
        ProviderBases {
            resend: server.uri(),
            ..Default::default()
        },
        Duration::from_millis(300),
    );
    let provider = resend::build(&resend_config(), &ctx).expect("builds");

    let err = provider
        .send(&Draft::email().outbound())
        .await
        .expect_err("times out");

    assert_eq!(err.class, transient(None));
    assert!(err.message.contains("timed out"), "{}", err.message);
    assert_safe(&err, KEY);
}

#[tokio::test]
async fn an_unreachable_api_is_transient() {
    let ctx = common::context(ProviderBases {
        resend: common::closed_port_base(),
        ..Default::default()
    });
    let provider = resend::build(&resend_config(), &ctx).expect("builds");

    let err = provider
        .send(&Draft::email().outbound())
        .await
        .expect_err("no server");

    assert_eq!(err.class, transient(None));
    assert_safe(&err, KEY);
}

#[tokio::test]
async fn check_lists_domains_and_reports_the_verified_sender_domain() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/domains"))
        .and(header("authorization", format!("Bearer {KEY}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "object": "list",
            "has_more": false,
            "data": [
                {"id": "d1", "name": "other.example", "status": "pending"},
                {"id": "d2", "name": "acme.example", "status": "verified", "region": "us-east-1"}
            ]
        })))
        .expect(1)
        .mount(&server)
        .await;
    let provider = resend::build(&resend_config(), &ctx(&server)).expect("builds");

    let report = provider.check().await.expect("ok");

    assert!(
        report.detail.contains("acme.example is verified"),
        "{}",
        report.detail
    );
}

#[tokio::test]
async fn check_fails_when_the_sender_domain_is_not_verified() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/domains"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "object": "list",
            "has_more": false,
            "data": [{"id": "d2", "name": "acme.example", "status": "pending"}]
        })))
        .expect(1)
        .mount(&server)
        .await;
    let provider = resend::build(&resend_config(), &ctx(&server)).expect("builds");

    let err = provider.check().await.expect_err("unverified");

    assert_error(
        &err,
        ErrorClass::ProviderPermanent,
        "domain_not_verified",
        KEY,
    );
}

#[tokio::test]
async fn check_accepts_a_key_restricted_to_sending() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/domains"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({
            "statusCode": 401,
            "name": "restricted_api_key",
            "message": "This API key is restricted to only send emails."
        })))
        .expect(1)
        .mount(&server)
        .await;
    let provider = resend::build(&resend_config(), &ctx(&server)).expect("builds");

    let report = provider.check().await.expect("a sending key is fine");

    assert!(report.detail.contains("restricted"), "{}", report.detail);
}

#[tokio::test]
async fn check_fails_with_an_invalid_key_or_a_server_error() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/domains"))
        .respond_with(ResponseTemplate::new(403).set_body_json(json!({
            "statusCode": 403, "name": "invalid_api_key", "message": "API key is invalid."
        })))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/domains"))
        .respond_with(ResponseTemplate::new(502))
        .expect(1)
        .mount(&server)
        .await;
    let provider = resend::build(&resend_config(), &ctx(&server)).expect("builds");

    let err = provider.check().await.expect_err("bad key");
    assert_error(&err, ErrorClass::ProviderPermanent, "invalid_api_key", KEY);

    let err = provider.check().await.expect_err("server down");
    assert_error(&err, transient(None), "http_502", KEY);
}

// ---- webhooks -------------------------------------------------------------------------------

/// Svix's published example: secret, id, timestamp, payload and the signature it expects.
const SVIX_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const SVIX_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
const SVIX_TS: i64 = 1_614_265_330;
const SVIX_PAYLOAD: &str = r#"{"test": 2432232314}"#;
const SVIX_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

fn svix_sign(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> String {
    crate::matchers::svix_signature(secret, id, timestamp, body)
}

const SECRET: &str = "whsec_c2VjcmV0LWtleS1mb3ItcmVzZW5kLXdlYmhvb2tz";
const NOW: i64 = 1_764_000_000;

fn delivered_body() -> Vec<u8> {
    json!({
        "type": "email.delivered",
        "created_at": "2026-11-24T16:00:00.000Z",
        "data": {
            "email_id": "56761188-7520-42d8-8898-ff6fc54ce618",
            "from": FROM,
            "to": [TO],
            "subject": SUBJECT,
            "created_at": "2026-11-24T15:59:58.000Z"
        }
    })
    .to_string()
    .into_bytes()
}

#[test]
fn the_webhook_check_accepts_svixs_published_example() {
    assert_eq!(
        resend::verify_webhook(
            SVIX_SECRET,
            SVIX_ID,
            &SVIX_TS.to_string(),
            SVIX_SIGNATURE,
            SVIX_PAYLOAD.as_bytes(),
            SVIX_TS,
        ),
        Ok(())
    );
}

#[test]
fn the_test_signer_reproduces_svixs_published_signature() {
    assert_eq!(
        svix_sign(SVIX_SECRET, SVIX_ID, SVIX_TS, SVIX_PAYLOAD.as_bytes()),
        SVIX_SIGNATURE
    );
}

#[test]
fn the_webhook_check_accepts_a_delivery_signed_with_the_endpoint_secret() {
    let body = delivered_body();
    let signature = svix_sign(SECRET, "msg_1", NOW, &body);
    assert_eq!(
        resend::verify_webhook(
            SECRET,
            "msg_1",
            &NOW.to_string(),
            &signature,
            &body,
            NOW + 10
        ),
        Ok(())
    );
}

#[test]
fn the_webhook_check_rejects_a_tampered_body() {
    let body = delivered_body();
    let signature = svix_sign(SECRET, "msg_1", NOW, &body);
    let tampered = String::from_utf8(body)
        .expect("utf-8")
        .replace("email.delivered", "email.bounced");
    assert_eq!(
        resend::verify_webhook(
            SECRET,
            "msg_1",
            &NOW.to_string(),
            &signature,
            tampered.as_bytes(),
            NOW
        ),
        Err(WebhookError::BadSignature)
    );
}

#[test]
fn the_webhook_check_rejects_another_secret_id_or_timestamp() {
    let body = delivered_body();
    let signature = svix_sign(SVIX_SECRET, "msg_1", NOW, &body);
    let ts = NOW.to_string();
    assert_eq!(
        resend::verify_webhook(SECRET, "msg_1", &ts, &signature, &body, NOW),
        Err(WebhookError::BadSignature)
    );
    assert_eq!(
        resend::verify_webhook(SVIX_SECRET, "msg_2", &ts, &signature, &body, NOW),
        Err(WebhookError::BadSignature)
    );
    assert_eq!(
        resend::verify_webhook(
            SVIX_SECRET,
            "msg_1",
            &(NOW + 1).to_string(),
            &signature,
            &body,
            NOW
        ),
        Err(WebhookError::BadSignature)
    );
}

#[test]
fn the_webhook_check_rejects_timestamps_more_than_five_minutes_away() {
    let body = delivered_body();
    for (timestamp, verdict) in [
        (NOW - 301, Err(WebhookError::Stale)),
        (NOW + 301, Err(WebhookError::Stale)),
        (NOW - 300, Ok(())),
        (NOW + 300, Ok(())),
    ] {
        let signature = svix_sign(SECRET, "msg_1", timestamp, &body);
        assert_eq!(
            resend::verify_webhook(
                SECRET,
                "msg_1",
                &timestamp.to_string(),
                &signature,
                &body,
                NOW
            ),
            verdict,
            "timestamp {timestamp}"
        );
    }
}

#[test]
fn the_webhook_check_requires_all_three_headers() {
    let body = delivered_body();
    let ts = NOW.to_string();
    let signature = svix_sign(SECRET, "msg_1", NOW, &body);
    for (id, timestamp, sig) in [
        ("", ts.as_str(), signature.as_str()),
        ("msg_1", "", signature.as_str()),
        ("msg_1", ts.as_str(), ""),
        ("msg_1", ts.as_str(), "   "),
    ] {
        assert_eq!(
            resend::verify_webhook(SECRET, id, timestamp, sig, &body, NOW),
            Err(WebhookError::MissingSignature)
        );
    }
    assert!(matches!(
        resend::verify_webhook(SECRET, "msg_1", "yesterday", &signature, &body, NOW),
        Err(WebhookError::Malformed(_))
    ));
}

#[test]
fn the_webhook_check_accepts_any_matching_v1_entry_among_several() {
    let body = delivered_body();
    let good = svix_sign(SECRET, "msg_1", NOW, &body);
    let old = svix_sign(SVIX_SECRET, "msg_1", NOW, &body);
    let good_sig = good.trim_start_matches("v1,");
    let header = format!("{old} v1a,{good_sig} {good} v1,!!notbase64!!");
    assert_eq!(
        resend::verify_webhook(SECRET, "msg_1", &NOW.to_string(), &header, &body, NOW),
        Ok(())
    );
    // The right signature under another version tag does not count.
    let header = format!("{old} v2,{good_sig}");
    assert_eq!(
        resend::verify_webhook(SECRET, "msg_1", &NOW.to_string(), &header, &body, NOW),
        Err(WebhookError::BadSignature)
    );
}

#[test]
fn the_webhook_check_rejects_an_unusable_secret() {
    let body = delivered_body();
    let signature = svix_sign(SECRET, "msg_1", NOW, &body);
    for secret in ["", "whsec_", "whsec_***"] {
        assert_eq!(
            resend::verify_webhook(secret, "msg_1", &NOW.to_string(), &signature, &body, NOW),
            Err(WebhookError::BadSignature)
        );
    }
}

fn event(kind: &str, data: Value) -> Vec<u8> {
    json!({"type": kind, "created_at": "2026-11-24T16:00:00.000Z", "data": data})
        .to_string()
        .into_bytes()
}

#[test]
fn resend_events_map_to_receipt_outcomes_keyed_by_email_id() {
    for (kind, outcome) in [
        ("email.sent", ReceiptOutcome::InProgress),
        ("email.delivery_delayed", ReceiptOutcome::InProgress),
        ("email.delivered", ReceiptOutcome::Delivered),
        ("email.bounced", ReceiptOutcome::Bounced),
        ("email.complained", ReceiptOutcome::Complained),
        ("email.failed", ReceiptOutcome::Undelivered),
        ("email.suppressed", ReceiptOutcome::Undelivered),
    ] {
        let receipt = resend::parse_event(&event(kind, json!({"email_id": "em_42", "to": [TO]})))
            .expect("parses");
        assert_eq!(receipt.provider_message_id, "em_42", "{kind}");
        assert_eq!(receipt.outcome, outcome, "{kind}");
        assert_eq!(receipt.detail.as_deref(), Some(kind));
    }
}

#[test]
fn a_bounce_receipt_carries_the_bounce_type_but_not_its_message() {
    let body = event(
        "email.bounced",
        json!({
            "email_id": "em_42",
            "bounce": {
                "message": "550 5.1.1 The email account that you tried to reach does not exist.",
                "type": "Permanent",
                "subType": "General"
            }
        }),
    );
    let receipt = resend::parse_event(&body).expect("parses");
    assert_eq!(
        receipt.detail.as_deref(),
        Some("email.bounced: Permanent/General")
    );
}

#[test]
fn events_without_a_delivery_meaning_are_refused_by_parse_event_and_ignored_by_event_receipt() {
    for kind in [
        "email.opened",
        "email.clicked",
        "contact.created",
        "domain.updated",
    ] {
        let body = event(kind, json!({"email_id": "em_42"}));
        assert!(
            matches!(resend::parse_event(&body), Err(WebhookError::Malformed(_))),
            "{kind}"
        );
        assert_eq!(resend::event_receipt(&body), Ok(None), "{kind}");
    }
}

#[test]
fn malformed_events_are_refused() {
    assert!(matches!(
        resend::parse_event(b"not json"),
        Err(WebhookError::Malformed(_))
    ));
    assert!(matches!(
        resend::parse_event(br#"{"data": {"email_id": "em_1"}}"#),
        Err(WebhookError::Malformed(_))
    ));
    assert!(matches!(
        resend::parse_event(&event("email.delivered", json!({}))),
        Err(WebhookError::Malformed(_))
    ));
}
