//! Suppression: hard bounces, complaints and opt-outs put a recipient on the tenant's list;
//! a send to a listed recipient ends `suppressed` without any provider call; removing the
//! entry lets the next send out; other tenants are unaffected.

use std::time::Duration;

use crate::common;

use common::{Options, TestApp};
use hmac::{Hmac, Mac};
use reqwest::Method;
use serde_json::{Value, json};
use sha2::Sha256;
use wiremock::matchers::{body_string_contains, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const MAILGUN_KEY: &str = "mailgun-webhook-signing-key-0123";
const SID: &str = "AC0123456789abcdef0123456789abcdef";

/// Short enough that a removal is seen quickly, long enough to exercise the cache.
fn options(vars: Vec<(&'static str, String)>) -> Options {
    let mut vars = vars;
    vars.push(("COMMUNICATION_SUPPRESSION_CACHE_MS", "300".into()));
    Options { vars, worker: true }
}

async fn call(
    app: &TestApp,
    m: Method,
    path: &str,
    tenant: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = app.as_tenant(m, path, tenant);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.expect("request");
    let code = r.status().as_u16();
    (code, r.json().await.unwrap_or(Value::Null))
}

fn mailgun_bounce(message_id: &str) -> Vec<u8> {
    let timestamp = chrono::Utc::now().timestamp();
    let token = "tok-bounce";
    let mut mac = Hmac::<Sha256>::new_from_slice(MAILGUN_KEY.as_bytes()).expect("key");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(token.as_bytes());
    let signature = hex::encode(mac.finalize().into_bytes());
    serde_json::to_vec(&json!({
        "signature": {"timestamp": timestamp.to_string(), "token": token, "signature": signature},
        "event-data": {"id": "ev-1", "event": "failed", "severity": "permanent",
                       "message": {"headers": {"message-id": message_id}},
                       "delivery-status": {"code": 550}},
    }))
    .expect("json")
}

fn mailgun_accepts(times: u64) -> Mock {
    Mock::given(method("POST"))
        .and(path("/v3/mg.acme.test/messages"))
        .and(body_string_contains("to=ada%40example.com"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "<20261201.1@mg.acme.test>", "message": "Queued. Thank you."})))
        .expect(times)
}

async fn send_email(app: &TestApp, tenant: &str, to: &str) -> String {
    app.send_ok(
        tenant,
        json!({"channel": "email", "to": to, "content": {"subject": "Receipt", "text": "Total: 12 EUR"}}),
    )
    .await
}

#[tokio::test]
async fn a_bounce_suppresses_the_address_until_removed_and_other_tenants_still_send() {
    let mailgun = MockServer::start().await;
    let app = TestApp::spawn_with(options(vec![("MAILGUN_BASE_URL", mailgun.uri())])).await;
    let p = app
        .create_provider(
            "acme",
            json!({"name": "mg", "channel": "email", "kind": "mailgun",
                   "config": {"api_key": "key-0123456789", "domain": "mg.acme.test",
                              "from": "shop@acme.test", "webhook_signing_key": MAILGUN_KEY}}),
        )
        .await;
    let pid = p["id"].as_str().expect("id").to_owned();
    app.system_provider("globex", "email", "console", "deliver", 1)
        .await;

    mailgun_accepts(1).mount(&mailgun).await;
    let first = send_email(&app, "acme", "ada@example.com").await;
    app.wait_for_status("acme", &first, &["sent"]).await;
    let r = app
        .http
        .post(app.url(&format!("/v1/webhooks/mailgun/{pid}")))
        .header("content-type", "application/json")
        .body(mailgun_bounce("20261201.1@mg.acme.test"))
        .send()
        .await
        .expect("receipt");
    assert_eq!(r.status(), 200);
    app.wait_for_status("acme", &first, &["bounced"]).await;
    let (code, list) = call(
        &app,
        Method::GET,
        "/v1/suppressions?channel=email",
        "acme",
        None,
    )
    .await;
    assert_eq!(code, 200, "{list}");
    let items = list["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{list}");
    assert_eq!(items[0]["recipient"], "ada@example.com");
    assert_eq!(items[0]["reason"], "hard_bounce");
    assert_eq!(items[0]["message_id"], first.as_str());
    mailgun.verify().await;

    // The next send, in another spelling of the address, never reaches the provider (once
    // the worker's cached copy of the list, loaded before the bounce, has expired).
    tokio::time::sleep(Duration::from_millis(400)).await;
    mailgun.reset().await;
    mailgun_accepts(0).mount(&mailgun).await;
    let second = send_email(&app, "acme", "Ada@Example.com").await;
    let done = app.wait_for_status("acme", &second, &["suppressed"]).await;
    let events = app.event_types(&done).await;
    assert!(events.contains(&"suppressed".to_owned()), "{events:?}");
    assert!(!events.contains(&"attempt".to_owned()), "{events:?}");
    assert_eq!(done["attempts"], 0, "{done}");
    mailgun.verify().await;

    // Another tenant's send to the same address goes out.
    let theirs = send_email(&app, "globex", "ada@example.com").await;
    app.wait_for_status("globex", &theirs, &["sent"]).await;

    // Removing the entry lets the next send out (once the worker's cached list expires).
    let sid = items[0]["id"].as_str().expect("id");
    let (code, _) = call(
        &app,
        Method::DELETE,
        &format!("/v1/suppressions/{sid}"),
        "acme",
        None,
    )
    .await;
    assert_eq!(code, 204);
    tokio::time::sleep(Duration::from_millis(400)).await;
    mailgun.reset().await;
    mailgun_accepts(1).mount(&mailgun).await;
    let third = send_email(&app, "acme", "ada@example.com").await;
    app.wait_for_status("acme", &third, &["sent"]).await;
    mailgun.verify().await;
    app.cleanup().await;
}

#[tokio::test]
async fn suppressions_are_added_listed_and_removed_by_hand_per_tenant() {
    let app = TestApp::spawn_with(options(vec![])).await;
    app.system_provider("acme", "sms", "console", "deliver", 1)
        .await;
    let add = |to: &str| json!({"channel": "sms", "recipient": to});
    let (code, one) = call(
        &app,
        Method::POST,
        "/v1/suppressions",
        "acme",
        Some(add("+14155550100")),
    )
    .await;
    assert_eq!(code, 201, "{one}");
    assert_eq!(one["reason"], "manual");
    assert_eq!(one["message_id"], Value::Null);
    let (code, again) = call(
        &app,
        Method::POST,
        "/v1/suppressions",
        "acme",
        Some(add("+14155550100")),
    )
    .await;
    assert_eq!(code, 200, "a duplicate answers the existing entry: {again}");
    assert_eq!(again["id"], one["id"]);
    let (code, _) = call(
        &app,
        Method::POST,
        "/v1/suppressions",
        "acme",
        Some(json!({"channel": "sms", "recipient": "+14155550101", "reason": "opted_out"})),
    )
    .await;
    assert_eq!(code, 201);
    let (code, bad) = call(
        &app,
        Method::POST,
        "/v1/suppressions",
        "acme",
        Some(json!({"channel": "sms", "recipient": "not-a-number", "reason": "bored"})),
    )
    .await;
    assert_eq!(code, 422, "{bad}");
    let fields: Vec<&str> = bad["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(|e| e["field"].as_str())
        .collect();
    assert!(
        fields.contains(&"recipient") && fields.contains(&"reason"),
        "{bad}"
    );

    // Pages of one, newest first, then a filter on the recipient.
    let (_, page) = call(&app, Method::GET, "/v1/suppressions?limit=1", "acme", None).await;
    assert_eq!(page["items"][0]["recipient"], "+14155550101", "{page}");
    let cursor = page["next_cursor"].as_str().expect("a next page");
    let (_, page2) = call(
        &app,
        Method::GET,
        &format!("/v1/suppressions?limit=1&cursor={cursor}"),
        "acme",
        None,
    )
    .await;
    assert_eq!(page2["items"][0]["recipient"], "+14155550100", "{page2}");
    assert_eq!(page2["next_cursor"], Value::Null);
    let (_, only) = call(
        &app,
        Method::GET,
        "/v1/suppressions?channel=sms&recipient=%2B14155550100",
        "acme",
        None,
    )
    .await;
    assert_eq!(only["items"].as_array().map(Vec::len), Some(1), "{only}");

    // A suppressed number's send ends suppressed; another tenant sees and removes nothing.
    let id = app.send_sms("acme", "Your code is 1234").await;
    app.wait_for_status("acme", &id, &["suppressed"]).await;
    let (_, theirs) = call(&app, Method::GET, "/v1/suppressions", "globex", None).await;
    assert_eq!(theirs["items"], json!([]));
    let sid = one["id"].as_str().expect("id");
    let path = format!("/v1/suppressions/{sid}");
    assert_eq!(
        call(&app, Method::DELETE, &path, "globex", None).await.0,
        404
    );
    assert_eq!(call(&app, Method::DELETE, &path, "acme", None).await.0, 204);
    assert_eq!(call(&app, Method::DELETE, &path, "acme", None).await.0, 404);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let id = app.send_sms("acme", "Your code is 5678").await;
    app.wait_for_status("acme", &id, &["sent"]).await;
    app.cleanup().await;
}

#[tokio::test]
async fn a_twilio_opt_out_refusal_suppresses_the_number_and_the_next_send_calls_no_provider() {
    let twilio = MockServer::start().await;
    let app = TestApp::spawn_with(options(vec![("TWILIO_BASE_URL", twilio.uri())])).await;
    app.create_provider(
        "acme",
        json!({"name": "twilio", "channel": "sms", "kind": "twilio",
               "config": {"account_sid": SID, "auth_token": "twilio-test-auth-token-42", "from": "+15005550006"}}),
    )
    .await;
    Mock::given(method("POST"))
        .and(path(format!("/2010-04-01/Accounts/{SID}/Messages.json")))
        .and(body_string_contains("To=%2B14155550100"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "code": 21610, "message": "Attempt to send to unsubscribed recipient",
            "more_info": "https://www.twilio.com/docs/errors/21610", "status": 400})))
        .expect(1)
        .mount(&twilio)
        .await;
    let first = app.send_sms("acme", "Your code is 1234").await;
    app.wait_for_status("acme", &first, &["failed"]).await;
    let (_, list) = call(
        &app,
        Method::GET,
        "/v1/suppressions?channel=sms",
        "acme",
        None,
    )
    .await;
    assert_eq!(list["items"][0]["recipient"], "+14155550100", "{list}");
    assert_eq!(list["items"][0]["reason"], "opted_out");
    assert_eq!(list["items"][0]["message_id"], first.as_str());

    let second = app.send_sms("acme", "Your code is 5678").await;
    app.wait_for_status("acme", &second, &["suppressed"]).await;
    twilio.verify().await;
    app.cleanup().await;
}
