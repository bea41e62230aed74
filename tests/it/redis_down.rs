//! Redis unavailable: intake keeps accepting sends (the database's unique index is the
//! idempotency backstop) and workers deliver with per-process breaker and rate-limit state.

use crate::common;

use common::{Options, TestApp};
use serde_json::json;

#[tokio::test]
async fn with_redis_down_sends_are_accepted_delivered_and_still_deduplicated() {
    // Nothing listens on port 9: every Redis call fails at once.
    let app = TestApp::spawn_with(Options {
        vars: vec![("REDIS_URL", "redis://127.0.0.1:9".into())],
        worker: true,
    })
    .await;
    app.system_provider("acme", "sms", "console", "deliver", 1)
        .await;
    let body = json!({"channel": "sms", "to": "+14155550100", "content": {"text": "Code 1"}});
    let first = app
        .as_tenant(reqwest::Method::POST, "/v1/send", "acme")
        .header("Idempotency-Key", "redis-down-1")
        .json(&body)
        .send()
        .await
        .expect("request");
    assert_eq!(first.status(), 202);
    let first_id = first.json::<serde_json::Value>().await.expect("json")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let done = app.wait_for_status("acme", &first_id, &["sent"]).await;
    assert_eq!(
        app.event_types(&done).await,
        ["accepted", "attempt", "sent"]
    );

    // Without Redis the same key cannot be answered from the claim; it is accepted again,
    // and the worker's unique (tenant, idempotency_key) drops the second copy unsent.
    let again = app
        .as_tenant(reqwest::Method::POST, "/v1/send", "acme")
        .header("Idempotency-Key", "redis-down-1")
        .json(&body)
        .send()
        .await
        .expect("request");
    assert_eq!(again.status(), 202);
    let later = app
        .send_ok(
            "acme",
            json!({"channel": "sms", "to": "+14155550100", "content": {"text": "Code 2"}}),
        )
        .await;
    app.wait_for_status("acme", &later, &["sent"]).await;
    let r = app
        .as_tenant(reqwest::Method::GET, "/v1/messages", "acme")
        .send()
        .await
        .expect("request");
    let listed: serde_json::Value = r.json().await.expect("json");
    let items = listed["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(items.len(), 2, "one row per distinct send: {listed}");
    let readyz = app
        .http
        .get(app.url("/readyz"))
        .send()
        .await
        .expect("request");
    assert_eq!(readyz.status(), 503, "readiness reports Redis down");
    app.cleanup().await;
}
