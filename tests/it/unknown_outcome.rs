//! A provider call whose outcome is unknown (it timed out after the request left): the retry
//! is marked as such, with whether the provider deduplicates on our id. Resend does (our id is
//! its Idempotency-Key, the same on every call); Mailgun does not.

use crate::common;

use std::time::Duration;

use common::{Options, TestApp};
use serde_json::{Value, json};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn event<'a>(message: &'a Value, kind: &str) -> &'a Value {
    message["events"]
        .as_array()
        .and_then(|events| events.iter().find(|e| e["type"] == kind))
        .unwrap_or(&Value::Null)
}

#[tokio::test]
async fn a_timed_out_resend_call_is_retried_with_the_same_key_and_marked_safe() {
    let mock = MockServer::start().await;
    let app = TestApp::spawn_with(Options {
        vars: vec![
            ("RESEND_BASE_URL", mock.uri()),
            ("COMMUNICATION_PROVIDER_TIMEOUT_MS", "300".into()),
        ],
        worker: true,
    })
    .await;
    let p = app
        .create_provider(
            "acme",
            json!({"name": "resend", "channel": "email", "kind": "resend",
                   "config": {"api_key": "re_test_0123456789", "from": "shop@acme.test"}}),
        )
        .await;
    let pid = p["id"].as_str().expect("id").to_owned();
    let id = app
        .send_ok(
            "acme",
            json!({"channel": "email", "to": "ada@example.com", "provider_id": pid,
                   "content": {"subject": "Code", "text": "Your code is 482913"}}),
        )
        .await;
    // The first call answers too late (the worker gives up after 300 ms), the second at once;
    // both must carry our message id as the Idempotency-Key.
    Mock::given(method("POST"))
        .and(path("/emails"))
        .and(header("idempotency-key", id.as_str()))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"id": "re-late"}))
                .set_delay(Duration::from_secs(3)),
        )
        .up_to_n_times(1)
        .expect(1)
        .mount(&mock)
        .await;
    Mock::given(method("POST"))
        .and(path("/emails"))
        .and(header("idempotency-key", id.as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "re-1"})))
        .expect(1)
        .mount(&mock)
        .await;

    let done = app.wait_for_status("acme", &id, &["sent", "failed"]).await;
    assert_eq!(done["status"], "sent", "{done}");
    assert_eq!(done["provider_message_id"], "re-1");
    let retry = event(&done, "retry_scheduled");
    assert_eq!(retry["detail"]["outcome_unknown"], true, "{done}");
    assert_eq!(retry["detail"]["provider_deduplicates"], true, "{done}");
    assert!(
        !done.to_string().contains("482913"),
        "no body in the record"
    );
    app.cleanup().await;
}

#[tokio::test]
async fn a_timed_out_mailgun_call_is_marked_as_possibly_sent_while_a_refused_connection_is_not() {
    let mock = MockServer::start().await;
    let app = TestApp::spawn_with(Options {
        vars: vec![
            ("MAILGUN_BASE_URL", mock.uri()),
            ("COMMUNICATION_PROVIDER_TIMEOUT_MS", "300".into()),
        ],
        worker: true,
    })
    .await;
    Mock::given(method("POST"))
        .and(path("/v3/mg.acme.test/messages"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"id": "<late@mg.acme.test>", "message": "Queued."}))
                .set_delay(Duration::from_secs(3)),
        )
        .up_to_n_times(1)
        .expect(1)
        .mount(&mock)
        .await;
    Mock::given(method("POST"))
        .and(path("/v3/mg.acme.test/messages"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "<mg-2@mg.acme.test>", "message": "Queued."})))
        .expect(1)
        .mount(&mock)
        .await;
    app.create_provider(
        "acme",
        json!({"name": "mailgun", "channel": "email", "kind": "mailgun",
               "config": {"api_key": "key-0123456789", "domain": "mg.acme.test",
                          "from": "shop@acme.test"}}),
    )
    .await;
    let id = app
        .send_ok(
            "acme",
            json!({"channel": "email", "to": "ada@example.com",
                   "content": {"subject": "Code", "text": "Hello"}}),
        )
        .await;
    let done = app.wait_for_status("acme", &id, &["sent", "failed"]).await;
    assert_eq!(done["status"], "sent", "{done}");
    let retry = event(&done, "retry_scheduled");
    assert_eq!(retry["detail"]["outcome_unknown"], true, "{done}");
    assert_eq!(retry["detail"]["provider_deduplicates"], false, "{done}");
    app.cleanup().await;

    // Nothing listening: the request never left, so the outcome is known (not sent).
    let app = TestApp::spawn_with(Options {
        vars: vec![("MAILGUN_BASE_URL", "http://127.0.0.1:9".into())],
        worker: true,
    })
    .await;
    app.create_provider(
        "acme",
        json!({"name": "mailgun", "channel": "email", "kind": "mailgun",
               "config": {"api_key": "key-0123456789", "domain": "mg.acme.test",
                          "from": "shop@acme.test"}}),
    )
    .await;
    let id = app
        .send_ok(
            "acme",
            json!({"channel": "email", "to": "ada@example.com",
                   "content": {"subject": "Code", "text": "Hello"}}),
        )
        .await;
    let done = app.wait_for_status("acme", &id, &["failed"]).await;
    let retry = event(&done, "retry_scheduled");
    assert!(retry.is_object(), "{done}");
    assert!(retry["detail"].get("outcome_unknown").is_none(), "{done}");
    app.cleanup().await;
}
