//! Priority lanes and fair share (issue 11) against the real broker, Redis and Postgres: high
//! overtakes a full bulk lane, a bursting tenant's `high` is demoted beyond its share and does
//! not hold up another tenant's, direct publishes with and without `priority`, the router's
//! duplicates are sent once, and the `priority` field at the HTTP edge.

use std::time::Duration;

use serde_json::{Value, json};
use uuid::Uuid;

use crate::common::{Options, TestApp, envelope};

/// An app with a small worker (so its lanes fill) and the given extra settings.
async fn small_app(extra: &[(&'static str, &str)]) -> TestApp {
    let mut vars = vec![
        ("COMMUNICATION_WORKER_CONCURRENCY", "4".to_owned()),
        ("COMMUNICATION_PREFETCH", "4".to_owned()),
    ];
    vars.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    TestApp::spawn_with(Options { vars, worker: true }).await
}

/// The tenant's `system` SMS provider, answering after `latency_ms`.
async fn slow_provider(app: &TestApp, tenant: &str, latency_ms: u64) {
    app.create_provider(
        tenant,
        json!({"name": "slow", "channel": "sms", "kind": "system",
               "config": {"behavior": "deliver", "latency_ms": latency_ms}}),
    )
    .await;
}

fn sms(text: &str, priority: Option<&str>) -> Value {
    let mut body = json!({"channel": "sms", "to": "+14155550100", "content": {"text": text}});
    if let Some(p) = priority {
        body["priority"] = json!(p);
    }
    body
}

async fn sent_count(app: &TestApp, tenant: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM message_logs WHERE tenant_id = $1 AND status = 'sent'")
        .bind(tenant)
        .fetch_one(&app.pool)
        .await
        .expect("count")
}

/// Waits until `id` is sent; returns how many of `other`'s messages were sent by then.
async fn others_sent_when(app: &TestApp, tenant: &str, id: &str, other: &str) -> i64 {
    let body = app.wait_for_status(tenant, id, &["sent"]).await;
    assert_eq!(body["status"], "sent");
    sent_count(app, other).await
}

/// A counter's value on `/metrics` (0 when absent); label order as the exporter writes it.
async fn metric(app: &TestApp, name: &str, labels: &[(&str, &str)]) -> f64 {
    let text = app.metrics_text().await;
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?.strip_prefix('{')?;
            let (l, v) = rest.split_once("} ")?;
            labels
                .iter()
                .all(|(k, val)| l.split(',').any(|p| p == format!("{k}=\"{val}\"")))
                .then(|| v.trim().parse::<f64>().ok())
                .flatten()
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn high_overtakes_a_full_bulk_lane_from_http_and_from_a_direct_publish() {
    const BULK: i64 = 60;
    let app = small_app(&[]).await;
    slow_provider(&app, "acme", 250).await;
    // Bulk may hold 2 of the worker's 4 permits: 60 × 250 ms / 2 ≈ 7 s of backlog.
    for n in 0..BULK {
        app.send_ok("acme", sms(&format!("receipt {n}"), Some("bulk")))
            .await;
    }
    let high = app
        .send_ok("acme", sms("Your code is 112233", Some("high")))
        .await;
    let bulk_done = others_sent_when(&app, "acme", &high, "acme").await;
    assert!(
        bulk_done < BULK / 2,
        "the high message waited for the bulk backlog ({bulk_done} of {BULK} bulk sent first)"
    );
    // The same through a direct publish asking for `high` (the router lanes it).
    let id = Uuid::now_v7();
    let mut env = envelope(
        "acme",
        id,
        "sms",
        "+14155550100",
        json!({"text": "Your code is 445566"}),
    );
    env["priority"] = json!("high");
    app.publish_raw("sms", env.to_string().as_bytes()).await;
    let done = others_sent_when(&app, "acme", &id.to_string(), "acme").await;
    assert!(
        done < BULK,
        "the direct high message waited for the whole bulk backlog ({done} sent first)"
    );
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_bursting_high_is_demoted_beyond_its_share_and_does_not_delay_another_tenants_high()
 {
    const BURST: usize = 80;
    let app = small_app(&[
        ("COMMUNICATION_FAIR_SHARE_HIGH", "4"),
        ("COMMUNICATION_FAIR_SHARE_NORMAL", "4"),
    ])
    .await;
    slow_provider(&app, "loud", 300).await;
    slow_provider(&app, "quiet", 0).await;
    let demoted_before = metric(
        &app,
        "communication_lane_demotions_total",
        &[("channel", "sms"), ("from", "high")],
    )
    .await;
    // The burst, all marked high, as fast as the intake takes it.
    let sends = (0..BURST).map(|n| {
        let app = &app;
        async move {
            app.send_ok("loud", sms(&format!("Your code is {n:06}"), Some("high")))
                .await
        }
    });
    futures::future::join_all(sends).await;
    let demoted = metric(
        &app,
        "communication_lane_demotions_total",
        &[("channel", "sms"), ("from", "high")],
    )
    .await
        - demoted_before;
    // Each second the tenant gets 4 into high and 4 into normal; the rest went to bulk.
    assert!(
        demoted >= (BURST as f64) / 2.0,
        "only {demoted} of {BURST} high sends were demoted"
    );
    // Another tenant's codes go out while most of the burst still waits (≈ 80 × 300 ms / 3).
    for n in 0..3 {
        let id = app
            .send_ok("quiet", sms(&format!("Your code is 90{n}"), Some("high")))
            .await;
        let loud_sent = others_sent_when(&app, "quiet", &id, "loud").await;
        assert!(
            loud_sent < (BURST as i64) / 2,
            "quiet's high message {n} waited for the burst ({loud_sent} of {BURST} sent first)"
        );
    }
    app.cleanup().await;
}

#[tokio::test]
async fn envelopes_without_priority_published_directly_are_delivered_as_before() {
    let app = TestApp::spawn().await;
    app.system_provider("acme", "sms", "sys", "deliver", 1)
        .await;
    let id = Uuid::now_v7();
    let env = envelope("acme", id, "sms", "+14155550100", json!({"text": "hello"}));
    assert!(env.get("priority").is_none());
    app.publish_raw("sms", env.to_string().as_bytes()).await;
    let body = app
        .wait_for_status("acme", &id.to_string(), &["sent"])
        .await;
    assert_eq!(
        app.event_types(&body).await,
        ["accepted", "attempt", "sent"]
    );
    // An envelope the router cannot read goes on unchanged and is refused by the worker.
    app.publish_raw("sms", br#"{"version": 1, "priority": "urgent"}"#)
        .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let reason = loop {
        if let Some((_, reason)) = app.drain_dead().await.into_iter().next() {
            break reason.unwrap_or_default();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never dead-lettered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(reason.contains("envelope"), "{reason}");
    app.cleanup().await;
}

#[tokio::test]
async fn the_same_envelope_routed_twice_is_sent_once() {
    let app = TestApp::spawn().await;
    app.system_provider("acme", "sms", "sys", "deliver", 1)
        .await;
    let id = Uuid::now_v7();
    let mut env = envelope("acme", id, "sms", "+14155550100", json!({"text": "once"}));
    env["priority"] = json!("high");
    let body = env.to_string();
    // What a router crash between its confirmed publish and its ack leaves: the same envelope
    // in the entry queue again (and again in the lane).
    app.publish_raw("sms", body.as_bytes()).await;
    app.publish_raw("sms", body.as_bytes()).await;
    app.publish_raw("sms.high", body.as_bytes()).await;
    app.wait_for_status("acme", &id.to_string(), &["sent"])
        .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (attempts, sent): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE kind = 'attempt'), count(*) FILTER (WHERE kind = 'sent') \
         FROM message_events WHERE message_id = $1",
    )
    .bind(id)
    .fetch_one(&app.pool)
    .await
    .expect("events");
    assert_eq!((attempts, sent), (1, 1), "sent once, one provider call");
    app.cleanup().await;
}

#[tokio::test]
async fn an_unknown_priority_is_422_naming_it_and_a_replay_with_priority_answers_the_same_id() {
    let app = TestApp::spawn().await;
    app.system_provider("acme", "sms", "sys", "deliver", 1)
        .await;
    for bad in [json!("urgent"), json!(1), json!("HIGH")] {
        let mut body = sms("x", None);
        body["priority"] = bad.clone();
        let r = app.send("acme", body).await;
        assert_eq!(r.status(), 422, "{bad}");
        let problem: Value = r.json().await.expect("json");
        assert_eq!(problem["errors"][0]["field"], "priority", "{problem}");
    }
    let send = |priority: &'static str| {
        app.as_tenant(reqwest::Method::POST, "/v1/send", "acme")
            .header("Idempotency-Key", "code-1")
            .json(&sms("Your code is 123456", Some(priority)))
            .send()
    };
    let first = send("high").await.expect("send");
    assert_eq!(first.status(), 202);
    let first: Value = first.json().await.expect("json");
    let again = send("high").await.expect("send");
    assert_eq!(again.status(), 202);
    assert_eq!(
        again
            .headers()
            .get("idempotent-replayed")
            .and_then(|v| v.to_str().ok()),
        Some("true")
    );
    let again: Value = again.json().await.expect("json");
    assert_eq!(again["id"], first["id"]);
    // Another priority is another request.
    let other = send("bulk").await.expect("send");
    assert_eq!(other.status(), 422);
    let id = first["id"].as_str().expect("id");
    app.wait_for_status("acme", id, &["sent"]).await;
    app.cleanup().await;
}
