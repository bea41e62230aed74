//! SendGrid, Postmark, Mailgun and Vonage through the whole pipeline, each against a mock of
//! its API, and "test connection" over HTTP.

use crate::common;

use common::{Options, TestApp};
use serde_json::{Value, json};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

#[tokio::test]
async fn email_through_sendgrid_postmark_and_mailgun_reaches_sent_with_their_message_ids() {
    let mock = MockServer::start().await;
    let app = TestApp::spawn_with(Options {
        vars: vec![
            ("SENDGRID_BASE_URL", mock.uri()),
            ("POSTMARK_BASE_URL", mock.uri()),
            ("MAILGUN_BASE_URL", mock.uri()),
        ],
        worker: true,
    })
    .await;
    Mock::given(method("POST"))
        .and(path("/v3/mail/send"))
        .and(header("authorization", "Bearer SG.test-key-0123456789"))
        .respond_with(ResponseTemplate::new(202).insert_header("X-Message-Id", "sg-msg-1"))
        .expect(1)
        .mount(&mock)
        .await;
    Mock::given(method("POST"))
        .and(path("/email"))
        .and(header("x-postmark-server-token", "pm-server-token-0123"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "To": "ada@example.com", "SubmittedAt": "2026-11-25T10:00:00Z",
            "MessageID": "pm-msg-1", "ErrorCode": 0, "Message": "OK"})))
        .expect(1)
        .mount(&mock)
        .await;
    Mock::given(method("POST"))
        .and(path("/v3/mg.acme.test/messages"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "<mg-msg-1@mg.acme.test>", "message": "Queued. Thank you."})))
        .expect(1)
        .mount(&mock)
        .await;
    Mock::given(method("GET"))
        .and(path("/v3/scopes"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"scopes": ["mail.send"]})))
        .expect(1)
        .mount(&mock)
        .await;

    let cases = [
        (
            json!({"kind": "sendgrid", "config": {"api_key": "SG.test-key-0123456789", "from": "no-reply@acme.test"}}),
            "sg-msg-1",
        ),
        (
            json!({"kind": "postmark", "config": {"server_token": "pm-server-token-0123", "from": "no-reply@acme.test"}}),
            "pm-msg-1",
        ),
        (
            json!({"kind": "mailgun", "config": {"api_key": "key-0123456789", "domain": "mg.acme.test", "from": "no-reply@acme.test"}}),
            "mg-msg-1@mg.acme.test",
        ),
    ];
    for (i, (spec, expected)) in cases.iter().enumerate() {
        let mut body = spec.clone();
        body["name"] = json!(format!("p{i}"));
        body["channel"] = json!("email");
        let p = app.create_provider("acme", body).await;
        let pid = p["id"].as_str().expect("id").to_owned();
        if i == 0 {
            // "Test connection" over HTTP checks the credentials and stores the result.
            let r = app
                .as_tenant(
                    reqwest::Method::POST,
                    &format!("/v1/providers/{pid}/test"),
                    "acme",
                )
                .send()
                .await
                .expect("request");
            assert_eq!(r.status(), 200);
            let result: Value = r.json().await.expect("json");
            assert_eq!(result["ok"], true, "{result}");
            assert!(result["latency_ms"].is_u64());
            let stored: Value = app
                .as_tenant(
                    reqwest::Method::GET,
                    &format!("/v1/providers/{pid}"),
                    "acme",
                )
                .send()
                .await
                .expect("request")
                .json()
                .await
                .expect("json");
            assert_eq!(stored["last_test"]["ok"], true);
        }
        // Pin the send to this provider.
        let r = app
            .send(
                "acme",
                json!({"channel": "email", "to": "ada@example.com", "provider_id": pid,
                       "content": {"subject": "Reset", "text": "Reset your password", "html": "<p>Reset</p>"}}),
            )
            .await;
        assert_eq!(r.status(), 202);
        let id = r.json::<Value>().await.expect("json")["id"]
            .as_str()
            .expect("id")
            .to_owned();
        let sent = app.wait_for_status("acme", &id, &["sent"]).await;
        assert_eq!(sent["provider_message_id"], *expected, "{sent}");
    }
    app.cleanup().await;
}

#[tokio::test]
async fn sms_through_vonage_reaches_sent_with_its_message_id() {
    let vonage = MockServer::start().await;
    let app = TestApp::spawn_with(Options {
        vars: vec![("VONAGE_BASE_URL", vonage.uri())],
        worker: true,
    })
    .await;
    Mock::given(method("POST"))
        .and(path("/sms/json"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "message-count": "1",
            "messages": [{"to": "14155550100", "message-id": "vn-msg-1", "status": "0",
                          "remaining-balance": "3.14", "message-price": "0.01", "network": "12345"}]})))
        .expect(1)
        .mount(&vonage)
        .await;
    app.create_provider(
        "acme",
        json!({"name": "vonage", "channel": "sms", "kind": "vonage",
               "config": {"api_key": "abcd1234", "api_secret": "vonage-secret-99", "from": "AcmeShop"}}),
    )
    .await;
    let id = app.send_sms("acme", "Your code is 1357").await;
    let sent = app.wait_for_status("acme", &id, &["sent"]).await;
    assert_eq!(sent["provider_message_id"], "vn-msg-1");
    assert_eq!(sent["provider_kind"], "vonage");
    app.cleanup().await;
}
