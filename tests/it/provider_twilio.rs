//! The Twilio adapter against a local stand-in for Twilio's REST API: the exact documented
//! request (method, path, Basic auth, form encoding, every field), the classification of
//! Twilio's documented error responses, the credentials check, and the status-callback
//! helpers (signature verification with independently computed vectors, receipt parsing).

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use communication::config::ProviderBases;
use communication::domain::{Channel, Content, Recipient};
use communication::providers::twilio;
use communication::providers::{
    ErrorClass, OutboundMessage, ProviderContext, ProviderError, ReceiptOutcome, SendReceipt,
    WebhookError,
};
use hmac::{Hmac, Mac};
use serde_json::{Map, Value, json};
use sha1::Sha1;
use uuid::Uuid;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::email_support::{config, context_with};
use crate::matchers::{FormIs, basic_auth};

const ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";
const AUTH_TOKEN: &str = "tok9f8e7d6c5b4a39281706f5e4d3c2b1a0";
const API_KEY_SID: &str = "SK0123456789abcdef0123456789abcdef";
const API_KEY_SECRET: &str = "keysecret5b4a39281706f5e4d3c2b1a0";
const FROM: &str = "+15005550006";
const SERVICE_SID: &str = "MG0123456789abcdef0123456789abcdef";
const TO: &str = "+14155550100";
const TEXT: &str = "Your login code is 482913";
const PUBLIC_URL: &str = "https://comms.example.com";
const CALLBACK: &str =
    "https://comms.example.com/v1/webhooks/twilio/3f2c8a4e-1d2b-4c5d-9e8f-0a1b2c3d4e5f";

fn messages_path() -> String {
    format!("/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json")
}

fn account_path() -> String {
    format!("/2010-04-01/Accounts/{ACCOUNT_SID}.json")
}

fn context(server_uri: &str, timeout: Duration) -> ProviderContext {
    context_with(
        ProviderBases {
            twilio: server_uri.to_string(),
            ..Default::default()
        },
        timeout,
        Some(PUBLIC_URL),
    )
}

fn token_config() -> Map<String, Value> {
    config(json!({"account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN, "from": FROM}))
}

/// Twilio's documented 201 answer to create-Message (trimmed example from the OpenAPI).
fn created_message() -> Value {
    json!({
        "account_sid": ACCOUNT_SID,
        "api_version": "2010-04-01",
        "body": TEXT,
        "direction": "outbound-api",
        "error_code": null,
        "error_message": null,
        "from": FROM,
        "num_segments": "1",
        "sid": "SMaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "status": "queued",
        "to": TO,
        "uri": format!("/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/SMaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.json")
    })
}

/// Twilio's documented error body.
fn twilio_error(http: u16, code: u32, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(http).set_body_json(json!({
        "code": code,
        "message": message,
        "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
        "status": http
    }))
}

async fn send_to(
    server_uri: &str,
    config: &Map<String, Value>,
    timeout: Duration,
    status_callback: Option<String>,
) -> Result<SendReceipt, ProviderError> {
    let provider = twilio::build(config, &context(server_uri, timeout)).expect("adapter builds");
    let to = Recipient::parse(Channel::Sms, TO).expect("valid number");
    let content = Content {
        text: Some(TEXT.to_string()),
        ..Default::default()
    };
    let message = OutboundMessage {
        id: Uuid::new_v4(),
        tenant_id: "tenant-a",
        channel: Channel::Sms,
        to: &to,
        content: &content,
        metadata: None,
        status_callback,
    };
    provider.send(&message).await
}

async fn send(server: &MockServer) -> Result<SendReceipt, ProviderError> {
    send_to(
        &server.uri(),
        &token_config(),
        Duration::from_secs(5),
        Some(CALLBACK.to_string()),
    )
    .await
}

// ---------------------------------------------------------------- the documented request

#[tokio::test]
async fn a_send_posts_the_documented_form_with_basic_auth_and_records_the_sid() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(messages_path()))
        .and(header(
            "authorization",
            basic_auth(ACCOUNT_SID, AUTH_TOKEN).as_str(),
        ))
        .and(header("content-type", "application/x-www-form-urlencoded"))
        .and(FormIs::new(&[
            ("To", TO),
            ("From", FROM),
            ("Body", TEXT),
            ("StatusCallback", CALLBACK),
        ]))
        .respond_with(ResponseTemplate::new(201).set_body_json(created_message()))
        .expect(1)
        .mount(&server)
        .await;

    let receipt = send(&server).await.expect("twilio accepted the message");
    assert_eq!(
        receipt.provider_message_id.as_deref(),
        Some("SMaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
    );
}

#[tokio::test]
async fn no_status_callback_is_sent_when_none_was_requested() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(messages_path()))
        .and(FormIs::new(&[("To", TO), ("From", FROM), ("Body", TEXT)]))
        .respond_with(ResponseTemplate::new(201).set_body_json(created_message()))
        .expect(1)
        .mount(&server)
        .await;

    send_to(&server.uri(), &token_config(), Duration::from_secs(5), None)
        .await
        .expect("sent");
}

#[tokio::test]
async fn a_messaging_service_is_used_instead_of_from_when_configured() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(messages_path()))
        .and(FormIs::new(&[
            ("To", TO),
            ("MessagingServiceSid", SERVICE_SID),
            ("Body", TEXT),
        ]))
        .respond_with(ResponseTemplate::new(201).set_body_json(created_message()))
        .expect(1)
        .mount(&server)
        .await;

    let cfg = config(json!({
        "account_sid": ACCOUNT_SID,
        "auth_token": AUTH_TOKEN,
        "from": FROM,
        "messaging_service_sid": SERVICE_SID
    }));
    send_to(&server.uri(), &cfg, Duration::from_secs(5), None)
        .await
        .expect("sent");
}

#[tokio::test]
async fn an_api_key_authenticates_instead_of_the_auth_token_when_configured() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(messages_path()))
        .and(header(
            "authorization",
            basic_auth(API_KEY_SID, API_KEY_SECRET).as_str(),
        ))
        .and(FormIs::new(&[("To", TO), ("From", FROM), ("Body", TEXT)]))
        .respond_with(ResponseTemplate::new(201).set_body_json(created_message()))
        .expect(1)
        .mount(&server)
        .await;

    let cfg = config(json!({
        "account_sid": ACCOUNT_SID,
        "auth_token": AUTH_TOKEN,
        "api_key_sid": API_KEY_SID,
        "api_key_secret": API_KEY_SECRET,
        "from": FROM
    }));
    send_to(&server.uri(), &cfg, Duration::from_secs(5), None)
        .await
        .expect("sent");
}

#[tokio::test]
async fn a_message_without_text_is_refused_without_calling_twilio() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(201).set_body_json(created_message()))
        .expect(0)
        .mount(&server)
        .await;

    let provider = twilio::build(
        &token_config(),
        &context(&server.uri(), Duration::from_secs(5)),
    )
    .expect("adapter builds");
    let to = Recipient::parse(Channel::Sms, TO).expect("valid number");
    let content = Content::default();
    let message = OutboundMessage {
        id: Uuid::new_v4(),
        tenant_id: "tenant-a",
        channel: Channel::Sms,
        to: &to,
        content: &content,
        metadata: None,
        status_callback: None,
    };
    let err = provider.send(&message).await.expect_err("nothing to send");
    assert_eq!(err.class, ErrorClass::RecipientPermanent);
}

#[tokio::test]
async fn an_account_sid_that_could_reshape_the_url_is_refused_at_build_time() {
    let cfg = config(json!({
        "account_sid": "AC123/../../other",
        "auth_token": AUTH_TOKEN,
        "from": FROM
    }));
    let result = twilio::build(&cfg, &context("http://127.0.0.1:9", Duration::from_secs(5)));
    assert!(result.is_err());
}

// ---------------------------------------------------------------- error classification

async fn failure_for(response: ResponseTemplate) -> ProviderError {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(messages_path()))
        .respond_with(response)
        .expect(1)
        .mount(&server)
        .await;
    send(&server).await.expect_err("twilio refused the message")
}

async fn assert_code_classified(http: u16, code: u32, message: &str, expected: ErrorClass) {
    let err = failure_for(twilio_error(http, code, message)).await;
    assert_eq!(err.class, expected, "code {code}: {err}");
    assert_eq!(err.code.as_deref(), Some(code.to_string().as_str()));
    assert!(err.message.contains(&code.to_string()), "{}", err.message);
}

const TRANSIENT: ErrorClass = ErrorClass::Transient { retry_after: None };

macro_rules! classifies {
    ($($name:ident: $http:expr, $code:expr, $message:expr => $class:expr;)*) => {$(
        #[tokio::test]
        async fn $name() {
            assert_code_classified($http, $code, $message, $class).await;
        }
    )*};
}

classifies! {
    error_21211_invalid_to_number_fails_the_message:
        400, 21211, "The 'To' number +14155550100 is not a valid phone number." => ErrorClass::RecipientPermanent;
    error_21610_unsubscribed_recipient_fails_the_message:
        400, 21610, "Attempt to send to unsubscribed recipient" => ErrorClass::RecipientPermanent;
    error_21612_unreachable_to_number_fails_the_message:
        400, 21612, "The 'To' phone number: +14155550100, is not currently reachable using the 'From' phone number: +15005550006 via SMS." => ErrorClass::RecipientPermanent;
    error_21614_to_not_a_mobile_number_fails_the_message:
        400, 21614, "'To' number is not a valid mobile number" => ErrorClass::RecipientPermanent;
    error_21268_premium_rate_destination_fails_the_message:
        400, 21268, "Sending to Premium rate or Information Service numbers is not allowed" => ErrorClass::RecipientPermanent;
    error_21608_trial_account_unverified_to_fails_over:
        400, 21608, "The number +14155550100 is unverified. Trial accounts cannot send messages to unverified numbers." => ErrorClass::ProviderPermanent;
    error_21408_region_not_enabled_fails_over:
        400, 21408, "Permission to send an SMS has not been enabled for the region indicated by the 'To' number: +14155550100." => ErrorClass::ProviderPermanent;
    error_20003_authentication_failure_fails_over:
        401, 20003, "Authenticate" => ErrorClass::ProviderPermanent;
    error_20404_unknown_account_fails_over:
        404, 20404, "The requested resource was not found" => ErrorClass::ProviderPermanent;
    error_21212_invalid_from_fails_over:
        400, 21212, "The 'From' number +15005550006 is not a valid phone number, shortcode, or alphanumeric sender ID." => ErrorClass::ProviderPermanent;
    error_21606_from_not_message_capable_fails_over:
        400, 21606, "The 'From' phone number provided is not a valid message-capable Twilio phone number for this destination." => ErrorClass::ProviderPermanent;
    error_21659_from_not_a_twilio_number_fails_over:
        400, 21659, "Source +15005550006 is not a Twilio phone number or Short Code country mismatch" => ErrorClass::ProviderPermanent;
    error_21660_from_of_another_account_fails_over:
        400, 21660, "Mismatch between the 'From' number +15005550006 and the account" => ErrorClass::ProviderPermanent;
    error_21617_text_over_twilio_limit_fails_over:
        400, 21617, "The concatenated message body exceeds the 1600 character limit." => ErrorClass::ProviderPermanent;
    error_21611_sender_queue_full_is_retried:
        400, 21611, "This 'From' number has exceeded the maximum number of queued messages" => TRANSIENT;
    error_20500_internal_error_is_retried:
        500, 20500, "Internal Server Error" => TRANSIENT;
    error_20503_service_unavailable_is_retried:
        503, 20503, "Service Unavailable" => TRANSIENT;
}

#[tokio::test]
async fn a_429_with_code_20429_is_transient_and_carries_retry_after() {
    let err = failure_for(
        twilio_error(429, 20429, "Too Many Requests").insert_header("Retry-After", "7"),
    )
    .await;
    assert_eq!(
        err.class,
        ErrorClass::Transient {
            retry_after: Some(Duration::from_secs(7))
        }
    );
    assert_eq!(err.code.as_deref(), Some("20429"));
}

#[tokio::test]
async fn a_5xx_without_a_twilio_body_is_transient() {
    let err =
        failure_for(ResponseTemplate::new(502).set_body_string("<html>Bad Gateway</html>")).await;
    assert_eq!(err.class, TRANSIENT);
    assert_eq!(err.code, None);
}

#[tokio::test]
async fn a_503_with_retry_after_passes_the_hint_on() {
    let err = failure_for(ResponseTemplate::new(503).insert_header("Retry-After", "30")).await;
    assert_eq!(
        err.class,
        ErrorClass::Transient {
            retry_after: Some(Duration::from_secs(30))
        }
    );
}

#[tokio::test]
async fn an_undocumented_client_error_code_fails_over_rather_than_failing_the_message() {
    let err = failure_for(twilio_error(400, 29999, "Something new")).await;
    assert_eq!(err.class, ErrorClass::ProviderPermanent);
    assert_eq!(err.code.as_deref(), Some("29999"));
}

#[tokio::test]
async fn a_twilio_slower_than_the_timeout_is_transient() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(messages_path()))
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_json(created_message())
                .set_delay(Duration::from_secs(3)),
        )
        .expect(1)
        .mount(&server)
        .await;

    let err = send_to(
        &server.uri(),
        &token_config(),
        Duration::from_millis(200),
        None,
    )
    .await
    .expect_err("timed out");
    assert_eq!(err.class, TRANSIENT);
    assert!(err.message.contains("timed out"), "{}", err.message);
}

#[tokio::test]
async fn an_unreachable_twilio_is_transient() {
    // Nothing listens on the discard port of the loopback address.
    let err = send_to(
        "http://127.0.0.1:9",
        &token_config(),
        Duration::from_secs(2),
        None,
    )
    .await
    .expect_err("connection refused");
    assert_eq!(err.class, TRANSIENT);
}

#[tokio::test]
async fn error_messages_never_contain_the_auth_token_or_the_text() {
    // Twilio never echoes secrets, but if a message ever did, it must not reach storage.
    for (cfg, echo) in [
        (token_config(), format!("Echo: {AUTH_TOKEN} {TEXT}")),
        (
            config(json!({
                "account_sid": ACCOUNT_SID,
                "auth_token": AUTH_TOKEN,
                "api_key_sid": API_KEY_SID,
                "api_key_secret": API_KEY_SECRET,
                "from": FROM
            })),
            format!("Echo: {AUTH_TOKEN} {API_KEY_SECRET} {TEXT}"),
        ),
    ] {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path(messages_path()))
            .respond_with(twilio_error(400, 21211, &echo))
            .expect(1)
            .mount(&server)
            .await;
        let err = send_to(&server.uri(), &cfg, Duration::from_secs(5), None)
            .await
            .expect_err("refused");
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains(AUTH_TOKEN), "{shown}");
        assert!(!shown.contains(API_KEY_SECRET), "{shown}");
        assert!(!shown.contains(TEXT), "{shown}");
        assert!(!shown.contains("482913"), "{shown}");
    }
}

// ---------------------------------------------------------------- check()

fn fetched_account(status: &str) -> Value {
    // Twilio's fetch-Account answer includes the auth token itself.
    json!({
        "auth_token": AUTH_TOKEN,
        "friendly_name": "Acme",
        "owner_account_sid": ACCOUNT_SID,
        "sid": ACCOUNT_SID,
        "status": status,
        "type": "Full",
        "uri": format!("/2010-04-01/Accounts/{ACCOUNT_SID}.json")
    })
}

async fn check_against(response: ResponseTemplate) -> Result<String, ProviderError> {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(account_path()))
        .and(header(
            "authorization",
            basic_auth(ACCOUNT_SID, AUTH_TOKEN).as_str(),
        ))
        .respond_with(response)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(201).set_body_json(created_message()))
        .expect(0)
        .mount(&server)
        .await;
    let provider = twilio::build(
        &token_config(),
        &context(&server.uri(), Duration::from_secs(5)),
    )
    .expect("adapter builds");
    provider.check().await.map(|report| report.detail)
}

#[tokio::test]
async fn check_fetches_the_account_and_reports_it_active_without_sending() {
    let detail = check_against(ResponseTemplate::new(200).set_body_json(fetched_account("active")))
        .await
        .expect("account is active");
    assert!(detail.contains("active"), "{detail}");
    assert!(detail.contains(ACCOUNT_SID), "{detail}");
    assert!(!detail.contains(AUTH_TOKEN), "{detail}");
}

#[tokio::test]
async fn check_reports_a_suspended_or_closed_account_as_provider_permanent() {
    for status in ["suspended", "closed"] {
        let err = check_against(ResponseTemplate::new(200).set_body_json(fetched_account(status)))
            .await
            .expect_err("account is not usable");
        assert_eq!(err.class, ErrorClass::ProviderPermanent);
        assert!(err.message.contains(status), "{}", err.message);
        assert!(!err.message.contains(AUTH_TOKEN));
    }
}

#[tokio::test]
async fn check_reports_refused_credentials_as_provider_permanent() {
    let err = check_against(twilio_error(401, 20003, "Authenticate"))
        .await
        .expect_err("credentials refused");
    assert_eq!(err.class, ErrorClass::ProviderPermanent);
    assert_eq!(err.code.as_deref(), Some("20003"));
}

#[tokio::test]
async fn check_reports_a_twilio_outage_as_transient() {
    let err = check_against(ResponseTemplate::new(503))
        .await
        .expect_err("outage");
    assert_eq!(err.class, TRANSIENT);
}

// ---------------------------------------------------------------- status callback signature

const SIGNED_URL: &str =
    "https://comms.example.com/v1/webhooks/twilio/3f2c8a4e-1d2b-4c5d-9e8f-0a1b2c3d4e5f?attempt=1";
const SIGNING_TOKEN: &str = "0123456789abcdef0123456789abcdef";
/// Computed outside Rust (Python's hmac/hashlib/base64) following Twilio's documented scheme
/// for `SIGNED_URL`, `SIGNING_TOKEN` and `callback_params()`.
const KNOWN_SIGNATURE: &str = "CLu9KMUvoINrPeAy8hb8ZYIuOSU=";

/// A status callback as Twilio posts it, in the order Twilio happens to send the fields.
fn callback_params() -> Vec<(String, String)> {
    [
        ("SmsSid", "SM0123456789abcdef0123456789abcdef"),
        ("SmsStatus", "delivered"),
        ("MessageStatus", "delivered"),
        ("To", "+14155550100"),
        ("MessageSid", "SM0123456789abcdef0123456789abcdef"),
        ("AccountSid", "AC0123456789abcdef0123456789abcdef"),
        ("From", "+15005550006"),
        ("ApiVersion", "2010-04-01"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Twilio's algorithm spelled out by hand: the URL, then each name+value, names sorted.
fn independently_signed() -> String {
    let data = format!(
        "{SIGNED_URL}{}{}{}{}{}{}{}{}",
        "AccountSidAC0123456789abcdef0123456789abcdef",
        "ApiVersion2010-04-01",
        "From+15005550006",
        "MessageSidSM0123456789abcdef0123456789abcdef",
        "MessageStatusdelivered",
        "SmsSidSM0123456789abcdef0123456789abcdef",
        "SmsStatusdelivered",
        "To+14155550100",
    );
    let mut mac =
        Hmac::<Sha1>::new_from_slice(SIGNING_TOKEN.as_bytes()).expect("hmac takes any key");
    mac.update(data.as_bytes());
    BASE64.encode(mac.finalize().into_bytes())
}

#[test]
fn the_hand_built_signature_matches_the_externally_computed_vector() {
    assert_eq!(independently_signed(), KNOWN_SIGNATURE);
}

#[test]
fn a_correctly_signed_callback_verifies() {
    assert!(twilio::verify_signature(
        SIGNING_TOKEN,
        SIGNED_URL,
        &callback_params(),
        KNOWN_SIGNATURE
    ));
}

#[test]
fn the_order_params_arrive_in_does_not_matter() {
    let mut params = callback_params();
    params.reverse();
    assert!(twilio::verify_signature(
        SIGNING_TOKEN,
        SIGNED_URL,
        &params,
        KNOWN_SIGNATURE
    ));
}

#[test]
fn a_tampered_param_fails_verification() {
    let mut params = callback_params();
    for (name, value) in params.iter_mut() {
        if name == "MessageStatus" {
            *value = "undelivered".into();
        }
    }
    assert!(!twilio::verify_signature(
        SIGNING_TOKEN,
        SIGNED_URL,
        &params,
        KNOWN_SIGNATURE
    ));
}

#[test]
fn an_added_param_fails_verification() {
    let mut params = callback_params();
    params.push(("ErrorCode".into(), "30003".into()));
    assert!(!twilio::verify_signature(
        SIGNING_TOKEN,
        SIGNED_URL,
        &params,
        KNOWN_SIGNATURE
    ));
}

#[test]
fn a_different_url_fails_verification() {
    for url in [
        "https://comms.example.com/v1/webhooks/twilio/3f2c8a4e-1d2b-4c5d-9e8f-0a1b2c3d4e5f",
        "http://comms.example.com/v1/webhooks/twilio/3f2c8a4e-1d2b-4c5d-9e8f-0a1b2c3d4e5f?attempt=1",
        "https://evil.example.com/v1/webhooks/twilio/3f2c8a4e-1d2b-4c5d-9e8f-0a1b2c3d4e5f?attempt=1",
    ] {
        assert!(
            !twilio::verify_signature(SIGNING_TOKEN, url, &callback_params(), KNOWN_SIGNATURE),
            "{url}"
        );
    }
}

#[test]
fn a_different_auth_token_fails_verification() {
    assert!(!twilio::verify_signature(
        "fedcba9876543210fedcba9876543210",
        SIGNED_URL,
        &callback_params(),
        KNOWN_SIGNATURE
    ));
}

#[test]
fn a_missing_or_garbled_signature_fails_verification() {
    for signature in ["", "not base64!", "CLu9KMUvoINrPeAy8hb8ZYIuOSU", "AAAA"] {
        assert!(
            !twilio::verify_signature(SIGNING_TOKEN, SIGNED_URL, &callback_params(), signature),
            "{signature:?}"
        );
    }
}

// ---------------------------------------------------------------- status callback parsing

fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn a_delivered_callback_is_a_delivered_receipt_for_the_message_sid() {
    let receipt = twilio::parse_status_callback(&callback_params()).expect("valid callback");
    assert_eq!(
        receipt.provider_message_id,
        "SM0123456789abcdef0123456789abcdef"
    );
    assert_eq!(receipt.outcome, ReceiptOutcome::Delivered);
    assert!(receipt.detail.expect("detail").contains("delivered"));
}

#[test]
fn an_undelivered_callback_carries_the_error_code_in_its_detail() {
    for status in ["undelivered", "failed"] {
        let receipt = twilio::parse_status_callback(&params(&[
            ("MessageSid", "SM1"),
            ("MessageStatus", status),
            ("ErrorCode", "30003"),
        ]))
        .expect("valid callback");
        assert_eq!(receipt.outcome, ReceiptOutcome::Undelivered, "{status}");
        let detail = receipt.detail.expect("detail");
        assert!(detail.contains("30003"), "{detail}");
        assert!(detail.contains(status), "{detail}");
    }
}

#[test]
fn queued_sending_sent_and_accepted_callbacks_are_in_progress() {
    for status in ["queued", "sending", "sent", "accepted"] {
        let receipt = twilio::parse_status_callback(&params(&[
            ("MessageSid", "SM1"),
            ("MessageStatus", status),
        ]))
        .expect("valid callback");
        assert_eq!(receipt.outcome, ReceiptOutcome::InProgress, "{status}");
        assert_eq!(receipt.provider_message_id, "SM1");
    }
}

#[test]
fn a_callback_without_a_message_sid_is_malformed() {
    let err = twilio::parse_status_callback(&params(&[("MessageStatus", "delivered")]))
        .expect_err("no sid");
    assert!(matches!(err, WebhookError::Malformed(_)));
}

#[test]
fn a_callback_with_an_unknown_status_is_malformed() {
    let err = twilio::parse_status_callback(&params(&[
        ("MessageSid", "SM1"),
        ("MessageStatus", "received"),
    ]))
    .expect_err("inbound status");
    assert!(matches!(err, WebhookError::Malformed(_)));
}

#[test]
fn a_legacy_callback_with_only_sms_fields_is_understood() {
    let receipt =
        twilio::parse_status_callback(&params(&[("SmsSid", "SM2"), ("SmsStatus", "delivered")]))
            .expect("valid callback");
    assert_eq!(receipt.provider_message_id, "SM2");
    assert_eq!(receipt.outcome, ReceiptOutcome::Delivered);
}
