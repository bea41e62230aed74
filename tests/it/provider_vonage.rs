//! The Vonage adapter against a local stand-in for Vonage's SMS API: the exact documented
//! request (method, path, form encoding, every field), the classification of the documented
//! `messages[].status` values that come back with HTTP 200, transport failures, and the
//! balance check.

use std::time::Duration;

use communication::config::ProviderBases;
use communication::domain::{Channel, Content, Recipient};
use communication::providers::vonage;
use communication::providers::{
    ErrorClass, OutboundMessage, ProviderContext, ProviderError, SendReceipt,
};
use serde_json::{Map, Value, json};
use uuid::Uuid;
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::email_support::{config, context_with};
use crate::matchers::FormIs;

const API_KEY: &str = "a1b2c3d4";
const API_SECRET: &str = "Zx9Yw8Vu7Ts6Rq5P";
const SENDER: &str = "AcmeShop";
const TO: &str = "+447700900000";
const TO_DIGITS: &str = "447700900000";
const TEXT: &str = "Your login code is 482913";
const MESSAGE_ID: &str = "0A0000000123ABCD1";

fn context(server_uri: &str, timeout: Duration) -> ProviderContext {
    context_with(
        ProviderBases {
            vonage: server_uri.to_string(),
            ..Default::default()
        },
        timeout,
        Some("https://comms.example.com"),
    )
}

fn config_from(from: &str) -> Map<String, Value> {
    config(json!({"api_key": API_KEY, "api_secret": API_SECRET, "from": from}))
}

/// Vonage's documented answer for one accepted SMS.
fn accepted() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "message-count": "1",
        "messages": [{
            "to": TO_DIGITS,
            "message-id": MESSAGE_ID,
            "status": "0",
            "remaining-balance": "3.14159265",
            "message-price": "0.03330000",
            "network": "12345"
        }]
    }))
}

/// Vonage's documented answer for a refused SMS: HTTP 200, non-zero status.
fn refused(status: &str, error_text: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "message-count": "1",
        "messages": [{"status": status, "error-text": error_text}]
    }))
}

async fn send_with(
    server_uri: &str,
    from: &str,
    text: &str,
    id: Uuid,
    timeout: Duration,
) -> Result<SendReceipt, ProviderError> {
    let provider =
        vonage::build(&config_from(from), &context(server_uri, timeout)).expect("adapter builds");
    let to = Recipient::parse(Channel::Sms, TO).expect("valid number");
    let content = Content {
        text: Some(text.to_string()),
        ..Default::default()
    };
    let message = OutboundMessage {
        id,
        tenant_id: "tenant-a",
        channel: Channel::Sms,
        to: &to,
        content: &content,
        metadata: None,
        status_callback: Some("https://comms.example.com/v1/webhooks/vonage/x".into()),
    };
    provider.send(&message).await
}

async fn send(server: &MockServer) -> Result<SendReceipt, ProviderError> {
    send_with(
        &server.uri(),
        SENDER,
        TEXT,
        Uuid::new_v4(),
        Duration::from_secs(5),
    )
    .await
}

// ---------------------------------------------------------------- the documented request

#[tokio::test]
async fn a_send_posts_the_documented_form_with_the_number_without_plus() {
    let server = MockServer::start().await;
    let id = Uuid::new_v4();
    let id_text = id.to_string();
    Mock::given(method("POST"))
        .and(path("/sms/json"))
        .and(header("content-type", "application/x-www-form-urlencoded"))
        .and(FormIs::new(&[
            ("api_key", API_KEY),
            ("api_secret", API_SECRET),
            ("from", SENDER),
            ("to", TO_DIGITS),
            ("text", TEXT),
            ("client-ref", &id_text),
        ]))
        .respond_with(accepted())
        .expect(1)
        .mount(&server)
        .await;

    let receipt = send_with(&server.uri(), SENDER, TEXT, id, Duration::from_secs(5))
        .await
        .expect("vonage accepted the message");
    assert_eq!(receipt.provider_message_id.as_deref(), Some(MESSAGE_ID));
}

#[tokio::test]
async fn a_numeric_sender_is_sent_without_its_plus() {
    let server = MockServer::start().await;
    let id = Uuid::new_v4();
    let id_text = id.to_string();
    Mock::given(method("POST"))
        .and(path("/sms/json"))
        .and(FormIs::new(&[
            ("api_key", API_KEY),
            ("api_secret", API_SECRET),
            ("from", "15005550006"),
            ("to", TO_DIGITS),
            ("text", TEXT),
            ("client-ref", &id_text),
        ]))
        .respond_with(accepted())
        .expect(1)
        .mount(&server)
        .await;

    send_with(
        &server.uri(),
        "+15005550006",
        TEXT,
        id,
        Duration::from_secs(5),
    )
    .await
    .expect("sent");
}

#[tokio::test]
async fn text_outside_the_gsm_alphabet_is_sent_as_unicode() {
    let server = MockServer::start().await;
    let id = Uuid::new_v4();
    let id_text = id.to_string();
    let text = "Ваш код 482913 ✅";
    Mock::given(method("POST"))
        .and(path("/sms/json"))
        .and(FormIs::new(&[
            ("api_key", API_KEY),
            ("api_secret", API_SECRET),
            ("from", SENDER),
            ("to", TO_DIGITS),
            ("text", text),
            ("client-ref", &id_text),
            ("type", "unicode"),
        ]))
        .respond_with(accepted())
        .expect(1)
        .mount(&server)
        .await;

    send_with(&server.uri(), SENDER, text, id, Duration::from_secs(5))
        .await
        .expect("sent");
}

#[tokio::test]
async fn gsm_text_with_accents_and_euro_sign_stays_plain_text() {
    let server = MockServer::start().await;
    let id = Uuid::new_v4();
    let id_text = id.to_string();
    let text = "Café à 5€ {ok} [x] ~ | ^ ß Ñ ¿?";
    Mock::given(method("POST"))
        .and(path("/sms/json"))
        .and(FormIs::new(&[
            ("api_key", API_KEY),
            ("api_secret", API_SECRET),
            ("from", SENDER),
            ("to", TO_DIGITS),
            ("text", text),
            ("client-ref", &id_text),
        ]))
        .respond_with(accepted())
        .expect(1)
        .mount(&server)
        .await;

    send_with(&server.uri(), SENDER, text, id, Duration::from_secs(5))
        .await
        .expect("sent");
}

#[tokio::test]
async fn a_long_text_accepted_in_several_parts_records_the_first_part_id() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/sms/json"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "message-count": "2",
            "messages": [
                {"to": TO_DIGITS, "message-id": "PART-1", "status": "0"},
                {"to": TO_DIGITS, "message-id": "PART-2", "status": "0"}
            ]
        })))
        .expect(1)
        .mount(&server)
        .await;

    let receipt = send(&server).await.expect("sent");
    assert_eq!(receipt.provider_message_id.as_deref(), Some("PART-1"));
}

#[tokio::test]
async fn an_email_recipient_is_refused_without_calling_vonage() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(accepted())
        .expect(0)
        .mount(&server)
        .await;

    let provider = vonage::build(
        &config_from(SENDER),
        &context(&server.uri(), Duration::from_secs(5)),
    )
    .expect("adapter builds");
    let to = Recipient::parse(Channel::Email, "ada@example.com").expect("valid address");
    let content = Content {
        text: Some(TEXT.into()),
        ..Default::default()
    };
    let message = OutboundMessage {
        id: Uuid::new_v4(),
        tenant_id: "tenant-a",
        channel: Channel::Email,
        to: &to,
        content: &content,
        metadata: None,
        status_callback: None,
    };
    let err = provider.send(&message).await.expect_err("not an SMS");
    assert_eq!(err.class, ErrorClass::RecipientPermanent);
}

// ---------------------------------------------------------------- status classification

async fn failure_for(response: ResponseTemplate) -> ProviderError {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/sms/json"))
        .respond_with(response)
        .expect(1)
        .mount(&server)
        .await;
    send(&server).await.expect_err("vonage refused the message")
}

const TRANSIENT: ErrorClass = ErrorClass::Transient { retry_after: None };

macro_rules! classifies {
    ($($name:ident: $status:expr, $text:expr => $class:expr;)*) => {$(
        #[tokio::test]
        async fn $name() {
            let err = failure_for(refused($status, $text)).await;
            assert_eq!(err.class, $class, "status {}: {err}", $status);
            assert_eq!(err.code.as_deref(), Some($status));
            assert!(err.message.contains($text), "{}", err.message);
        }
    )*};
}

classifies! {
    status_1_throttled_is_retried: "1", "Throughput Rate Exceeded - please wait [ 10 ] and retry" => TRANSIENT;
    status_5_internal_error_is_retried: "5", "Internal Error" => TRANSIENT;
    status_10_too_many_binds_is_retried: "10", "Too Many Existing Binds" => TRANSIENT;
    status_2_missing_parameters_fails_over: "2", "Missing from param" => ErrorClass::ProviderPermanent;
    status_3_invalid_parameters_fails_over: "3", "Invalid from param" => ErrorClass::ProviderPermanent;
    status_4_invalid_credentials_fails_over: "4", "Bad Credentials" => ErrorClass::ProviderPermanent;
    status_8_account_barred_fails_over: "8", "Partner Account Barred" => ErrorClass::ProviderPermanent;
    status_9_quota_violation_fails_over: "9", "Partner Quota Exceeded" => ErrorClass::ProviderPermanent;
    status_12_message_too_long_fails_over: "12", "Message Too Long" => ErrorClass::ProviderPermanent;
    status_15_invalid_sender_fails_over: "15", "Illegal Sender Address - rejected" => ErrorClass::ProviderPermanent;
    status_29_non_whitelisted_destination_fails_over: "29", "Non White-listed Destination - rejected" => ErrorClass::ProviderPermanent;
    status_6_unroutable_number_fails_the_message: "6", "Unroutable message - rejected" => ErrorClass::RecipientPermanent;
    status_7_barred_number_fails_the_message: "7", "Number barred" => ErrorClass::RecipientPermanent;
    status_33_deactivated_number_fails_the_message: "33", "Number De-activated" => ErrorClass::RecipientPermanent;
    an_undocumented_status_fails_over_rather_than_failing_the_message: "99", "Something new" => ErrorClass::ProviderPermanent;
}

#[tokio::test]
async fn a_refused_later_part_decides_the_outcome() {
    let err = failure_for(ResponseTemplate::new(200).set_body_json(json!({
        "message-count": "2",
        "messages": [
            {"to": TO_DIGITS, "message-id": "PART-1", "status": "0"},
            {"status": "1", "error-text": "Throughput Rate Exceeded"}
        ]
    })))
    .await;
    assert_eq!(err.class, TRANSIENT);
    assert_eq!(err.code.as_deref(), Some("1"));
}

#[tokio::test]
async fn an_http_429_is_transient_and_carries_retry_after() {
    let err = failure_for(ResponseTemplate::new(429).insert_header("Retry-After", "4")).await;
    assert_eq!(
        err.class,
        ErrorClass::Transient {
            retry_after: Some(Duration::from_secs(4))
        }
    );
}

#[tokio::test]
async fn an_http_5xx_is_transient() {
    let err = failure_for(ResponseTemplate::new(503)).await;
    assert_eq!(err.class, TRANSIENT);
}

#[tokio::test]
async fn an_http_401_fails_over() {
    let err = failure_for(ResponseTemplate::new(401)).await;
    assert_eq!(err.class, ErrorClass::ProviderPermanent);
}

#[tokio::test]
async fn an_unreadable_200_is_transient() {
    let err = failure_for(ResponseTemplate::new(200).set_body_string("<html>proxy</html>")).await;
    assert_eq!(err.class, TRANSIENT);
}

#[tokio::test]
async fn a_vonage_slower_than_the_timeout_is_transient() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/sms/json"))
        .respond_with(accepted().set_delay(Duration::from_secs(3)))
        .expect(1)
        .mount(&server)
        .await;

    let err = send_with(
        &server.uri(),
        SENDER,
        TEXT,
        Uuid::new_v4(),
        Duration::from_millis(200),
    )
    .await
    .expect_err("timed out");
    assert_eq!(err.class, TRANSIENT);
    assert!(err.message.contains("timed out"), "{}", err.message);
}

#[tokio::test]
async fn an_unreachable_vonage_is_transient() {
    let err = send_with(
        "http://127.0.0.1:9",
        SENDER,
        TEXT,
        Uuid::new_v4(),
        Duration::from_secs(2),
    )
    .await
    .expect_err("connection refused");
    assert_eq!(err.class, TRANSIENT);
}

#[tokio::test]
async fn error_messages_never_contain_the_api_secret_or_the_text() {
    let err = failure_for(refused(
        "4",
        &format!("Bad Credentials for secret {API_SECRET} sending {TEXT}"),
    ))
    .await;
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains(API_SECRET), "{shown}");
    assert!(!shown.contains(TEXT), "{shown}");
    assert!(!shown.contains("482913"), "{shown}");
}

// ---------------------------------------------------------------- check()

async fn check_against(response: ResponseTemplate) -> Result<String, ProviderError> {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/account/get-balance"))
        .and(query_param("api_key", API_KEY))
        .and(query_param("api_secret", API_SECRET))
        .respond_with(response)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/sms/json"))
        .respond_with(accepted())
        .expect(0)
        .mount(&server)
        .await;
    let provider = vonage::build(
        &config_from(SENDER),
        &context(&server.uri(), Duration::from_secs(5)),
    )
    .expect("adapter builds");
    provider.check().await.map(|report| report.detail)
}

#[tokio::test]
async fn check_reads_the_balance_without_sending() {
    let detail = check_against(
        ResponseTemplate::new(200).set_body_json(json!({"value": 10.28, "autoReload": false})),
    )
    .await
    .expect("credentials work");
    assert!(detail.contains("10.28"), "{detail}");
    assert!(detail.contains(API_KEY), "{detail}");
    assert!(!detail.contains(API_SECRET), "{detail}");
}

#[tokio::test]
async fn check_reports_refused_credentials_as_provider_permanent() {
    let err = check_against(ResponseTemplate::new(401))
        .await
        .expect_err("credentials refused");
    assert_eq!(err.class, ErrorClass::ProviderPermanent);
    assert!(!err.message.contains(API_SECRET));
}

#[tokio::test]
async fn check_reports_a_vonage_outage_as_transient() {
    let err = check_against(ResponseTemplate::new(500))
        .await
        .expect_err("outage");
    assert_eq!(err.class, TRANSIENT);
}
