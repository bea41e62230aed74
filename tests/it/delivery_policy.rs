//! Retry, failover, permanent failures, exhaustion and expiry, through the real broker's
//! delay queues (the tests use 100–400 ms delays and 3 attempts per provider).

use crate::common;

use std::time::Duration;

use common::{TestApp, envelope};
use serde_json::json;
use uuid::Uuid;

#[tokio::test]
async fn a_provider_permanent_failure_fails_over_to_the_next_provider_at_once() {
    let app = TestApp::spawn().await;
    let broken = app
        .system_provider("acme", "sms", "broken", "fail_permanent", 1)
        .await;
    let healthy = app
        .system_provider("acme", "sms", "healthy", "deliver", 2)
        .await;
    let id = app.send_sms("acme", "x").await;
    let body = app.wait_for_status("acme", &id, &["sent"]).await;
    assert_eq!(body["provider_id"], healthy.as_str());
    assert_eq!(
        app.event_types(&body).await,
        vec!["accepted", "attempt", "failover", "attempt", "sent"]
    );
    let failover = &body["events"][2];
    assert_eq!(failover["provider_id"], broken.as_str());
    assert_eq!(failover["detail"]["from"], "broken");
    assert_eq!(failover["detail"]["to"], "healthy");
    assert_eq!(failover["detail"]["class"], "provider_permanent");
    app.cleanup().await;
}

#[tokio::test]
async fn transient_failures_are_retried_through_delay_queues_then_failed_over() {
    let app = TestApp::spawn().await;
    app.system_provider("acme", "sms", "flaky", "fail_transient", 1)
        .await;
    app.system_provider("acme", "sms", "healthy", "deliver", 2)
        .await;
    let id = app.send_sms("acme", "x").await;
    let body = app.wait_for_status("acme", &id, &["sent"]).await;
    assert_eq!(
        app.event_types(&body).await,
        vec![
            "accepted",
            "attempt",
            "retry_scheduled",
            "attempt",
            "retry_scheduled",
            "attempt",
            "failover",
            "attempt",
            "sent"
        ]
    );
    assert_eq!(body["attempts"], 4);
    let events = body["events"].as_array().expect("events");
    for e in events.iter().filter(|e| e["type"] == "retry_scheduled") {
        let delay = e["detail"]["delay_ms"].as_u64().expect("delay");
        assert!(
            (100..=400).contains(&delay),
            "delay {delay} within the schedule"
        );
    }
    // The retry really waited: the second attempt comes at least one delay tier later.
    let at = |i: usize| {
        chrono::DateTime::parse_from_rfc3339(events[i]["at"].as_str().expect("at")).expect("time")
    };
    assert!(
        (at(3) - at(2)).num_milliseconds() >= 90,
        "retry waited in the delay queue"
    );
    assert!(
        body["last_error"]
            .as_str()
            .unwrap_or("")
            .contains("transient")
    );
    app.cleanup().await;
}

#[tokio::test]
async fn a_recipient_permanent_failure_fails_the_message_without_failover() {
    let app = TestApp::spawn().await;
    app.system_provider("acme", "sms", "picky", "fail_recipient", 1)
        .await;
    app.system_provider("acme", "sms", "healthy", "deliver", 2)
        .await;
    let id = app.send_sms("acme", "x").await;
    let body = app.wait_for_status("acme", &id, &["failed"]).await;
    assert_eq!(
        app.event_types(&body).await,
        vec!["accepted", "attempt", "failed"]
    );
    assert_eq!(body["attempts"], 1);
    app.cleanup().await;
}

#[tokio::test]
async fn when_every_provider_fails_the_message_fails_and_is_dead_lettered() {
    let app = TestApp::spawn().await;
    app.system_provider("acme", "email", "a", "fail_permanent", 1)
        .await;
    app.system_provider("acme", "email", "b", "fail_transient", 2)
        .await;
    let r = app
        .send(
            "acme",
            json!({"channel": "email", "to": "ada@example.com", "content": {"subject": "s", "text": "t"}}),
        )
        .await;
    assert_eq!(r.status(), 202);
    let id = r.json::<serde_json::Value>().await.expect("json")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let body = app.wait_for_status("acme", &id, &["failed"]).await;
    let types = app.event_types(&body).await;
    assert_eq!(types.last().map(String::as_str), Some("dead_lettered"));
    assert!(types.contains(&"failover".to_string()));
    assert_eq!(types.iter().filter(|t| *t == "retry_scheduled").count(), 2);
    let mut dead = Vec::new();
    for _ in 0..50 {
        dead.extend(app.drain_dead().await);
        if !dead.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(dead.len(), 1);
    let env: serde_json::Value = serde_json::from_slice(&dead[0].0).expect("envelope");
    assert_eq!(env["id"], id.as_str());
    assert!(dead[0].1.as_deref().unwrap_or("").contains("transient"));
    app.cleanup().await;
}

#[tokio::test]
async fn a_message_past_its_ttl_is_expired_and_never_sent() {
    let app = TestApp::spawn().await;
    app.system_provider("acme", "sms", "console", "deliver", 1)
        .await;
    let id = Uuid::new_v4();
    let mut env = envelope(
        "acme",
        id,
        "sms",
        "+14155550100",
        json!({"text": "old code"}),
    );
    env["ttl_seconds"] = json!(60);
    env["created_at"] = json!(chrono::Utc::now() - chrono::Duration::hours(2));
    app.publish_raw("sms", &serde_json::to_vec(&env).expect("json"))
        .await;
    let body = app
        .wait_for_status("acme", &id.to_string(), &["expired"])
        .await;
    assert_eq!(app.event_types(&body).await, vec!["accepted", "expired"]);
    assert_eq!(body["attempts"], 0);
    app.cleanup().await;
}

#[tokio::test]
async fn a_tenant_without_providers_uses_the_platform_providers() {
    let app = TestApp::spawn().await;
    // The service token without X-Tenant-Id manages platform providers.
    let r = app
        .http
        .post(app.url("/v1/providers"))
        .bearer_auth(common::SERVICE_TOKEN)
        .json(
            &json!({"name": "platform-console", "channel": "sms", "kind": "system", "config": {}}),
        )
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 201);
    let platform: serde_json::Value = r.json().await.expect("json");
    assert_eq!(platform["scope"], "platform");
    let id = app.send_sms("newcomer", "x").await;
    let body = app.wait_for_status("newcomer", &id, &["sent"]).await;
    assert_eq!(body["provider_id"], platform["id"]);
    // A tenant with its own provider uses only its own.
    let own = app
        .system_provider("veteran", "sms", "own", "deliver", 5)
        .await;
    let id = app.send_sms("veteran", "x").await;
    let body = app.wait_for_status("veteran", &id, &["sent"]).await;
    assert_eq!(body["provider_id"], own.as_str());
    app.cleanup().await;
}

#[tokio::test]
async fn a_send_without_any_provider_fails_with_a_clear_reason() {
    let app = TestApp::spawn().await;
    let id = app.send_sms("lonely", "x").await;
    let body = app.wait_for_status("lonely", &id, &["failed"]).await;
    assert!(
        body["last_error"]
            .as_str()
            .unwrap_or("")
            .contains("no enabled sms provider")
    );
    app.cleanup().await;
}
