//! Real adapters through the whole pipeline (provider APIs stood in for by wiremock), then
//! signed delivery receipts moving the messages on.

use crate::{common, matchers};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use common::{Options, TestApp};
use matchers::{post_webhook, svix_headers};
use serde_json::{Value, json};
use wiremock::matchers::{body_string_contains, header, header_exists, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const SID: &str = "AC0123456789abcdef0123456789abcdef";
const AUTH_TOKEN: &str = "twilio-test-auth-token-42";
const PUBLIC: &str = "https://comm.example.test";

/// Posts a Twilio status callback, signed when `signature` is given.
async fn post_twilio_callback(
    app: &TestApp,
    provider: &str,
    params: &[(&str, &str)],
    signature: Option<String>,
) -> (u16, Value) {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params.iter())
        .finish();
    let headers: Vec<(&str, String)> = signature
        .map(|sig| ("X-Twilio-Signature", sig))
        .into_iter()
        .collect();
    post_webhook(
        app,
        "twilio",
        provider,
        "application/x-www-form-urlencoded",
        &headers,
        body,
    )
    .await
}

fn twilio_signature(url: &str, params: &[(&str, &str)]) -> String {
    matchers::twilio_signature(AUTH_TOKEN, url, params)
}

#[tokio::test]
async fn an_sms_goes_out_through_twilio_and_a_signed_status_callback_marks_it_delivered() {
    let twilio = MockServer::start().await;
    let app = TestApp::spawn_with(Options {
        vars: vec![
            ("TWILIO_BASE_URL", twilio.uri()),
            ("COMMUNICATION_PUBLIC_URL", PUBLIC.into()),
        ],
        worker: true,
    })
    .await;
    let provider = app
        .create_provider(
            "acme",
            json!({"name": "twilio", "channel": "sms", "kind": "twilio",
                   "config": {"account_sid": SID, "auth_token": AUTH_TOKEN, "from": "+15005550006"}}),
        )
        .await;
    let pid = provider["id"].as_str().expect("id").to_owned();
    let callback = format!("{PUBLIC}/v1/webhooks/twilio/{pid}");
    let basic = format!("Basic {}", B64.encode(format!("{SID}:{AUTH_TOKEN}")));
    Mock::given(method("POST"))
        .and(path(format!("/2010-04-01/Accounts/{SID}/Messages.json")))
        .and(header("authorization", basic.as_str()))
        .and(body_string_contains("To=%2B14155550100"))
        .and(body_string_contains("From=%2B15005550006"))
        .and(body_string_contains("Body=Your+code+is+246810"))
        .and(body_string_contains(
            format!(
                "StatusCallback={}",
                url::form_urlencoded::byte_serialize(callback.as_bytes()).collect::<String>()
            )
            .as_str(),
        ))
        .respond_with(
            ResponseTemplate::new(201).set_body_json(json!({"sid": "SM0001", "status": "queued"})),
        )
        .expect(1)
        .mount(&twilio)
        .await;

    let id = app.send_sms("acme", "Your code is 246810").await;
    let sent = app.wait_for_status("acme", &id, &["sent"]).await;
    assert_eq!(sent["provider_message_id"], "SM0001");
    assert_eq!(sent["provider_kind"], "twilio");

    let delivered = [
        ("MessageSid", "SM0001"),
        ("MessageStatus", "delivered"),
        ("AccountSid", SID),
    ];
    let (code, _) = post_twilio_callback(&app, &pid, &delivered, None).await;
    assert_eq!(code, 401, "unsigned callbacks are refused");
    let (code, _) = post_twilio_callback(
        &app,
        &pid,
        &delivered,
        Some(twilio_signature("https://evil.test/x", &delivered)),
    )
    .await;
    assert_eq!(code, 401, "a signature over another URL is refused");
    let (code, body) = post_twilio_callback(
        &app,
        &pid,
        &delivered,
        Some(twilio_signature(&callback, &delivered)),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["status"], "delivered");
    // Replayed and late callbacks are recorded once and never move the message back.
    let (code, _) = post_twilio_callback(
        &app,
        &pid,
        &delivered,
        Some(twilio_signature(&callback, &delivered)),
    )
    .await;
    assert_eq!(code, 200);
    let late = [
        ("MessageSid", "SM0001"),
        ("MessageStatus", "undelivered"),
        ("ErrorCode", "30003"),
    ];
    let (code, body) =
        post_twilio_callback(&app, &pid, &late, Some(twilio_signature(&callback, &late))).await;
    assert_eq!(code, 200);
    assert_eq!(body["status"], "delivered");
    let (_, message) = app.message("acme", &id).await;
    assert_eq!(message["status"], "delivered");
    let types = app.event_types(&message).await;
    assert_eq!(types.iter().filter(|t| *t == "delivered").count(), 1);
    assert_eq!(types.iter().filter(|t| *t == "undelivered").count(), 1);
    app.cleanup().await;
}

async fn post_resend(
    app: &TestApp,
    pid: &str,
    headers: &[(&str, String)],
    body: &str,
) -> (u16, Value) {
    post_webhook(app, "resend", pid, "application/json", headers, body).await
}

#[tokio::test]
async fn an_email_goes_out_through_resend_and_signed_webhooks_mark_it_delivered_then_bounced() {
    let resend = MockServer::start().await;
    let app = TestApp::spawn_with(Options {
        vars: vec![("RESEND_BASE_URL", resend.uri())],
        worker: true,
    })
    .await;
    let key_bytes = b"resend-webhook-signing-key-32b!!";
    let secret = format!("whsec_{}", B64.encode(key_bytes));
    let provider = app
        .create_provider(
            "acme",
            json!({"name": "resend", "channel": "email", "kind": "resend",
                   "config": {"api_key": "re_test_key_0123456789", "from": "Acme <no-reply@acme.test>", "webhook_secret": secret}}),
        )
        .await;
    let pid = provider["id"].as_str().expect("id").to_owned();
    assert_eq!(
        provider["config"]["webhook_secret"]
            .as_str()
            .map(|s| s.starts_with("****")),
        Some(true)
    );
    Mock::given(method("POST"))
        .and(path("/emails"))
        .and(header("authorization", "Bearer re_test_key_0123456789"))
        .and(header_exists("idempotency-key"))
        .and(body_string_contains("\"subject\":\"Your receipt\""))
        .and(body_string_contains("\"to\":[\"ada@example.com\"]"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"id": "4ef9a417-02e9-4d39-ad75-9611e0fcc33c"})),
        )
        .expect(1)
        .mount(&resend)
        .await;
    let r = app
        .send(
            "acme",
            json!({"channel": "email", "to": "ada@example.com",
                   "content": {"subject": "Your receipt", "text": "Thanks", "html": "<p>Thanks</p>"}}),
        )
        .await;
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().await.expect("json")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let sent = app.wait_for_status("acme", &id, &["sent"]).await;
    assert_eq!(
        sent["provider_message_id"],
        "4ef9a417-02e9-4d39-ad75-9611e0fcc33c"
    );
    let requests = resend.received_requests().await.unwrap_or_default();
    assert_eq!(
        requests[0]
            .headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok()),
        Some(id.as_str()),
        "our message id is Resend's idempotency key"
    );

    let now = chrono::Utc::now().timestamp();
    let delivered = json!({"type": "email.delivered", "created_at": "2026-11-25T10:00:00Z",
        "data": {"email_id": "4ef9a417-02e9-4d39-ad75-9611e0fcc33c", "to": ["ada@example.com"]}})
    .to_string();
    let (code, _) = post_resend(&app, &pid, &[], &delivered).await;
    assert_eq!(code, 401, "unsigned webhooks are refused");
    let (code, _) = post_resend(
        &app,
        &pid,
        &svix_headers(
            &format!("whsec_{}", B64.encode(b"wrong-key-wrong-key-wrong-key-00")),
            "msg_1",
            now,
            delivered.as_bytes(),
        ),
        &delivered,
    )
    .await;
    assert_eq!(code, 401);
    let (code, _) = post_resend(
        &app,
        &pid,
        &svix_headers(&secret, "msg_1", now - 3600, delivered.as_bytes()),
        &delivered,
    )
    .await;
    assert_eq!(code, 400, "stale webhooks are refused");
    let (code, body) = post_resend(
        &app,
        &pid,
        &svix_headers(&secret, "msg_1", now, delivered.as_bytes()),
        &delivered,
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["status"], "delivered");
    let bounced = json!({"type": "email.bounced", "created_at": "2026-11-25T10:05:00Z",
        "data": {"email_id": "4ef9a417-02e9-4d39-ad75-9611e0fcc33c", "bounce": {"type": "Permanent", "subType": "General"}}})
    .to_string();
    let (code, body) = post_resend(
        &app,
        &pid,
        &svix_headers(&secret, "msg_2", now, bounced.as_bytes()),
        &bounced,
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        body["status"], "bounced",
        "a later bounce is the truth for email"
    );
    let (_, message) = app.message("acme", &id).await;
    let types = app.event_types(&message).await;
    assert!(
        types.ends_with(&["delivered".to_string(), "bounced".to_string()]),
        "{types:?}"
    );
    app.cleanup().await;
}
