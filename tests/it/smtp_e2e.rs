//! The smtp provider through the whole pipeline against a real SMTP server process, and
//! "test connection" with `send_to`, which sends a real test message through the pipeline.

use crate::common;
use crate::smtp_support;

use common::TestApp;
use serde_json::{Value, json};
use smtp_support::{PASSWORD, SmtpServer, USER, header};

fn smtp_config(port: u16, password: &str) -> Value {
    json!({
        "host": "127.0.0.1",
        "port": port,
        "tls": "none",
        "username": USER,
        "password": password,
        "from": "Shop <shop@example.com>",
    })
}

async fn smtp_provider(app: &TestApp, tenant: &str, name: &str, config: Value) -> String {
    let p = app
        .create_provider(
            tenant,
            json!({"name": name, "channel": "email", "kind": "smtp", "config": config}),
        )
        .await;
    p["id"].as_str().expect("id").to_owned()
}

fn part<'a>(message: &'a Value, content_type: &str) -> Option<&'a str> {
    message["parsed"]["parts"]
        .as_array()?
        .iter()
        .find(|p| p["content_type"] == content_type)
        .and_then(|p| p["content"].as_str())
}

async fn provider_test(app: &TestApp, tenant: &str, id: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = app.as_tenant(
        reqwest::Method::POST,
        &format!("/v1/providers/{id}/test"),
        tenant,
    );
    if let Some(body) = body {
        req = req.json(&body);
    }
    let r = req.send().await.expect("request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn an_email_through_the_smtp_provider_arrives_with_both_parts_and_its_message_id() {
    let server = SmtpServer::start();
    let app = TestApp::spawn().await;
    smtp_provider(&app, "acme", "mail", smtp_config(server.port, PASSWORD)).await;

    let id = app
        .send_ok(
            "acme",
            json!({"channel": "email", "to": "ada@example.com",
                   "content": {"subject": "Your receipt", "text": "Total: 12 EUR",
                               "html": "<p>Total: <b>12 EUR</b></p>"}}),
        )
        .await;
    let done = app.wait_for_status("acme", &id, &["sent"]).await;
    assert_eq!(done["provider_kind"], "smtp", "{done}");
    let message_id = done["provider_message_id"]
        .as_str()
        .expect("provider message id")
        .to_owned();
    assert!(
        message_id.starts_with(&format!("<{id}@")),
        "the Message-ID carries our message id: {message_id}"
    );

    let received = server.message_with_id(&message_id);
    assert_eq!(received["auth_user"], USER, "AUTH was used");
    assert_eq!(received["mail_from"], "shop@example.com");
    assert_eq!(received["rcpt_tos"], json!(["ada@example.com"]));
    assert_eq!(
        header(&received, "Subject").as_deref(),
        Some("Your receipt")
    );
    assert_eq!(header(&received, "To").as_deref(), Some("ada@example.com"));
    assert_eq!(received["parsed"]["content_type"], "multipart/alternative");
    assert_eq!(
        part(&received, "text/plain").map(str::trim_end),
        Some("Total: 12 EUR")
    );
    assert_eq!(
        part(&received, "text/html").map(str::trim_end),
        Some("<p>Total: <b>12 EUR</b></p>")
    );
    assert_eq!(server.received().len(), 1, "exactly one message was sent");
    let events = app.event_types(&done).await;
    assert_eq!(events, ["accepted", "attempt", "sent"], "{done}");
    app.cleanup().await;
}

#[tokio::test]
async fn a_wrong_smtp_password_fails_over_to_the_next_provider() {
    let server = SmtpServer::start();
    let app = TestApp::spawn().await;
    let bad = app
        .create_provider(
            "acme",
            json!({"name": "bad-login", "channel": "email", "kind": "smtp", "priority": 1,
                   "config": smtp_config(server.port, "not-the-password")}),
        )
        .await;
    let good = app
        .create_provider(
            "acme",
            json!({"name": "good-login", "channel": "email", "kind": "smtp", "priority": 2,
                   "config": smtp_config(server.port, PASSWORD)}),
        )
        .await;
    let id = app
        .send_ok(
            "acme",
            json!({"channel": "email", "to": "ada@example.com",
                   "content": {"subject": "Hi", "text": "Hello"}}),
        )
        .await;
    let done = app.wait_for_status("acme", &id, &["sent", "failed"]).await;
    assert_eq!(done["status"], "sent", "{done}");
    assert_eq!(done["provider_id"], good["id"], "{done}");
    let events = app.event_types(&done).await;
    assert_eq!(
        events,
        ["accepted", "attempt", "failover", "attempt", "sent"],
        "{done}"
    );
    let failover = done["events"]
        .as_array()
        .expect("events")
        .iter()
        .find(|e| e["type"] == "failover")
        .cloned()
        .unwrap_or(Value::Null);
    let text = failover.to_string();
    assert!(text.contains("bad-login"), "{text}");
    assert!(
        !text.contains("not-the-password"),
        "no password in events: {text}"
    );
    assert_eq!(bad["config"]["password"], "****word", "{bad}");
    assert_eq!(server.received().len(), 1);
    app.cleanup().await;
}

#[tokio::test]
async fn test_with_send_to_checks_the_login_then_delivers_a_test_message_through_the_pipeline() {
    let server = SmtpServer::start();
    let app = TestApp::spawn().await;
    let pid = smtp_provider(&app, "acme", "mail", smtp_config(server.port, PASSWORD)).await;

    // Without a body: only the check, nothing is sent.
    let (status, plain) = provider_test(&app, "acme", &pid, None).await;
    assert_eq!(status, 200, "{plain}");
    assert_eq!(plain["ok"], true, "{plain}");
    assert!(plain.get("test_message").is_none(), "{plain}");

    let (status, body) = provider_test(
        &app,
        "acme",
        &pid,
        Some(json!({"send_to": "ops@example.com"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ok"], true, "{body}");
    assert_eq!(body["test_message"]["status"], "queued", "{body}");
    let id = body["test_message"]["id"]
        .as_str()
        .expect("test message id");
    let done = app.wait_for_status("acme", id, &["sent", "failed"]).await;
    assert_eq!(done["status"], "sent", "{done}");
    assert_eq!(done["provider_id"].as_str(), Some(pid.as_str()), "{done}");
    assert_eq!(done["metadata"]["provider_test"], true, "{done}");

    let received = server.received();
    assert_eq!(received.len(), 1, "only the test message was sent");
    assert_eq!(received[0]["rcpt_tos"], json!(["ops@example.com"]));
    let subject = header(&received[0], "Subject").unwrap_or_default();
    assert!(subject.contains("Test message"), "{subject}");
    let text = part(&received[0], "text/plain")
        .or_else(|| received[0]["parsed"]["parts"][0]["content"].as_str())
        .unwrap_or_default()
        .to_owned();
    assert!(text.contains("\"mail\""), "names the provider: {text}");
    app.cleanup().await;
}

#[tokio::test]
async fn test_with_send_to_sends_nothing_when_the_check_fails() {
    let server = SmtpServer::start();
    let app = TestApp::spawn().await;
    let pid = smtp_provider(&app, "acme", "mail", smtp_config(server.port, "wrong")).await;
    let (status, body) = provider_test(
        &app,
        "acme",
        &pid,
        Some(json!({"send_to": "ops@example.com"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ok"], false, "{body}");
    assert_eq!(body["error_class"], "provider_permanent", "{body}");
    assert_eq!(body["test_message"]["status"], "skipped", "{body}");
    assert!(body["test_message"]["id"].is_null(), "{body}");
    assert!(
        !body.to_string().contains("wrong\""),
        "no password echoed: {body}"
    );
    // A message queued behind it reaching `sent` shows the queue was worked through: had the
    // test message been queued, it would be listed too.
    app.system_provider("acme", "email", "console", "deliver", 9)
        .await;
    let later = app
        .send_ok(
            "acme",
            json!({"channel": "email", "to": "ada@example.com",
                   "content": {"subject": "Hi", "text": "Hello"},
                   "provider_id": null}),
        )
        .await;
    app.wait_for_status("acme", &later, &["sent", "failed"])
        .await;
    let r = app
        .as_tenant(reqwest::Method::GET, "/v1/messages", "acme")
        .send()
        .await
        .expect("request");
    let listed: Value = r.json().await.expect("json");
    let ids: Vec<&str> = listed["items"]
        .as_array()
        .map(|a| a.iter().filter_map(|m| m["id"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(ids, [later.as_str()], "{listed}");
    assert!(server.received().is_empty());
    app.cleanup().await;
}

#[tokio::test]
async fn send_to_is_validated_for_the_provider_channel_and_state() {
    let app = TestApp::spawn().await;
    let sms = app
        .system_provider("acme", "sms", "sms", "deliver", 1)
        .await;
    let email = app
        .system_provider("acme", "email", "email", "deliver", 1)
        .await;

    let cases = [
        (&sms, json!({"send_to": "not-a-number"}), 422, "send_to"),
        (&email, json!({"send_to": "+14155550100"}), 422, "send_to"),
        (&email, json!({"send_to": 42}), 422, "send_to"),
        (&email, json!({"sendto": "ops@example.com"}), 422, "sendto"),
    ];
    for (pid, body, want, field) in cases {
        let (status, answer) = provider_test(&app, "acme", pid, Some(body.clone())).await;
        assert_eq!(status, want, "{body} → {answer}");
        let fields: Vec<&str> = answer["errors"]
            .as_array()
            .map(|a| a.iter().filter_map(|e| e["field"].as_str()).collect())
            .unwrap_or_default();
        assert!(fields.contains(&field), "{body} → {answer}");
    }

    // Not JSON at all.
    let r = app
        .as_tenant(
            reqwest::Method::POST,
            &format!("/v1/providers/{email}/test"),
            "acme",
        )
        .header("content-type", "application/json")
        .body("{send_to")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 400);

    // A disabled provider cannot send its test message.
    let r = app
        .as_tenant(
            reqwest::Method::PATCH,
            &format!("/v1/providers/{email}"),
            "acme",
        )
        .json(&json!({"enabled": false}))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    let (status, answer) = provider_test(
        &app,
        "acme",
        &email,
        Some(json!({"send_to": "ops@example.com"})),
    )
    .await;
    assert_eq!(status, 422, "{answer}");
    assert!(answer.to_string().contains("disabled"), "{answer}");

    // A working system provider sends the test SMS through the pipeline.
    let (status, answer) =
        provider_test(&app, "acme", &sms, Some(json!({"send_to": "+14155550123"}))).await;
    assert_eq!(status, 200, "{answer}");
    let id = answer["test_message"]["id"].as_str().expect("id");
    let done = app.wait_for_status("acme", id, &["sent"]).await;
    assert_eq!(done["to"], "+14155550123", "{done}");
    app.cleanup().await;
}

#[tokio::test]
async fn a_mailbox_the_smtp_server_says_does_not_exist_is_suppressed_and_not_tried_again() {
    let server = SmtpServer::start();
    let app = TestApp::spawn_with(common::Options {
        vars: vec![("COMMUNICATION_SUPPRESSION_CACHE_MS", "300".into())],
        worker: true,
    })
    .await;
    smtp_provider(&app, "acme", "mail", smtp_config(server.port, PASSWORD)).await;
    let email = json!({"channel": "email", "to": "unknown@example.com",
                       "content": {"subject": "Your receipt", "text": "Total: 12 EUR"}});

    // The server answers RCPT with 550 5.1.1 (user unknown): the message fails, and the
    // address joins the tenant's suppression list with the message that found it out.
    let first = app.send_ok("acme", email.clone()).await;
    app.wait_for_status("acme", &first, &["failed"]).await;
    let r = app
        .as_tenant(
            reqwest::Method::GET,
            "/v1/suppressions?channel=email",
            "acme",
        )
        .send()
        .await
        .expect("list");
    assert_eq!(r.status(), 200);
    let list: Value = r.json().await.expect("json");
    let items = list["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{list}");
    assert_eq!(items[0]["recipient"], "unknown@example.com", "{list}");
    assert_eq!(items[0]["reason"], "invalid_recipient", "{list}");
    assert_eq!(items[0]["message_id"], first.as_str(), "{list}");

    // Once the worker's cached copy of the list (loaded before the refusal) has expired, the
    // next send ends `suppressed` without an attempt.
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let second = app.send_ok("acme", email).await;
    let done = app
        .wait_for_status("acme", &second, &["suppressed", "failed", "sent"])
        .await;
    assert_eq!(done["status"], "suppressed", "{done}");
    let events: Vec<&str> = done["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["type"].as_str())
        .collect();
    assert!(
        !events.contains(&"attempt"),
        "no provider was called: {events:?}"
    );
    app.cleanup().await;
}
