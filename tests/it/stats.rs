//! `GET /v1/stats` and `GET /v1/stats/providers`: counts kept by the worker's writer in the
//! rollup, per tenant; rates and percentiles; breakers read from Redis.

use chrono::{DateTime, Utc};
use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{self, TestApp};

async fn stats(app: &TestApp, tenant: &str, query: &str) -> (u16, Value) {
    let r = app
        .as_tenant(Method::GET, &format!("/v1/stats{query}"), tenant)
        .send()
        .await
        .expect("request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn provider<'a>(body: &'a Value, id: &str) -> &'a Value {
    body["providers"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["provider_id"] == id))
        .unwrap_or_else(|| panic!("provider {id} in {body}"))
}

#[tokio::test]
async fn stats_count_each_message_once_under_its_final_status_with_rates_and_latency() {
    let app = TestApp::spawn().await;
    let quick = app
        .create_provider(
            "acme",
            json!({"name": "quick", "channel": "sms", "kind": "system",
                   "config": {"behavior": "deliver", "latency_ms": 300}}),
        )
        .await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let broken = app
        .system_provider("acme", "email", "broken", "fail_permanent", 1)
        .await;
    app.system_provider("globex", "sms", "theirs", "deliver", 1)
        .await;
    let mut ids = Vec::new();
    for text in ["a", "b", "c"] {
        ids.push((app.send_sms("acme", text).await, "sent"));
    }
    for subject in ["x", "y"] {
        let id = app
            .send_ok(
                "acme",
                json!({"channel": "email", "to": "a@example.com",
                       "content": {"subject": subject, "text": "hi"}}),
            )
            .await;
        ids.push((id, "failed"));
    }
    let theirs = app.send_sms("globex", "z").await;
    for (id, status) in &ids {
        app.wait_for_status("acme", id, &[status]).await;
    }
    app.wait_for_status("globex", &theirs, &["sent"]).await;

    let (code, hourly) = stats(&app, "acme", "?bucket=hour").await;
    assert_eq!(code, 200, "{hourly}");
    assert_eq!(hourly["bucket"], "hour");
    assert_eq!(hourly["totals"]["total"], 5);
    // Moved, not added: nothing is left counted as queued or sending.
    assert_eq!(
        hourly["totals"]["by_status"],
        json!({"sent": 3, "failed": 2}),
        "{hourly}"
    );
    assert_eq!(
        hourly["totals"]["by_channel"],
        json!({"sms": 3, "email": 2})
    );
    let buckets = hourly["buckets"].as_array().expect("buckets");
    assert!((24..=25).contains(&buckets.len()), "{}", buckets.len());
    let filled: Vec<&Value> = buckets.iter().filter(|b| b["total"] != 0).collect();
    assert_eq!(filled.len(), 1, "all sent this hour: {buckets:?}");
    assert_eq!(filled[0]["by_status"], json!({"sent": 3, "failed": 2}));
    let starts: Vec<DateTime<Utc>> = buckets
        .iter()
        .map(|b| b["start"].as_str().expect("start").parse().expect("time"))
        .collect();
    assert!(
        starts
            .windows(2)
            .all(|w| (w[1] - w[0]).num_seconds() == 3600)
    );
    let counts = hourly["counts"].as_array().expect("counts");
    assert!(counts.contains(&json!({
        "start": filled[0]["start"], "channel": "sms", "status": "sent",
        "provider_id": quick, "count": 3
    })));

    let q = provider(&hourly, &quick);
    assert_eq!(q["name"], "quick");
    assert_eq!(q["kind"], "system");
    assert_eq!(q["platform"], false);
    assert_eq!(q["total"], 3);
    assert_eq!(q["delivery_rate"], 1.0);
    assert_eq!(q["latency_ms"]["samples"], 3);
    let p50 = q["latency_ms"]["p50"].as_i64().expect("p50");
    let p95 = q["latency_ms"]["p95"].as_i64().expect("p95");
    // The provider takes 300 ms, so accept → sent is longer than that.
    assert!((300..10_000).contains(&p50), "p50 {p50}");
    assert!(p95 >= p50 && p95 < 10_000, "p95 {p95}");
    let b = provider(&hourly, &broken);
    assert_eq!(b["total"], 2);
    assert_eq!(b["delivery_rate"], 0.0);
    assert_eq!(b["latency_ms"], Value::Null, "nothing was sent through it");

    let (code, daily) = stats(&app, "acme", "?bucket=day").await;
    assert_eq!(code, 200, "{daily}");
    let days = daily["buckets"].as_array().expect("buckets");
    assert_eq!(days.len(), 8, "7 days back, rounded out to whole days");
    assert_eq!(days[7]["total"], 5);
    assert_eq!(daily["totals"], hourly["totals"]);

    // Another tenant sees only its own message.
    let (_, theirs) = stats(&app, "globex", "").await;
    assert_eq!(theirs["totals"]["total"], 1);
    assert_eq!(theirs["providers"].as_array().map(Vec::len), Some(1));
    assert!(!theirs.to_string().contains(&quick));

    // A range before any message: zero-filled, no providers.
    let (code, empty) = stats(
        &app,
        "acme",
        "?since=2026-01-01T00:00:00Z&until=2026-01-03T00:00:00Z",
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(empty["totals"]["total"], 0);
    assert_eq!(empty["buckets"].as_array().map(Vec::len), Some(2));
    assert_eq!(empty["providers"], json!([]));
    app.cleanup().await;
}

#[tokio::test]
async fn stats_answer_400_naming_the_bad_parameter() {
    let app = TestApp::spawn_with(common::Options {
        worker: false,
        ..Default::default()
    })
    .await;
    for (query, field) in [
        ("?bucket=week", "bucket"),
        ("?since=yesterday", "since"),
        ("?until=2026-13-40T00:00:00Z", "until"),
        (
            "?since=2026-12-01T00:00:00Z&until=2026-11-01T00:00:00Z",
            "since",
        ),
        ("?bucket=hour&since=2020-01-01T00:00:00Z", "since"),
        ("?tenant=globex", "tenant"),
    ] {
        let (code, body) = stats(&app, "acme", query).await;
        assert_eq!(code, 400, "{query}: {body}");
        assert_eq!(body["errors"][0]["field"], field, "{query}: {body}");
    }
    let r = app
        .http
        .get(app.url("/v1/stats"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 401);
    app.cleanup().await;
}

#[tokio::test]
async fn provider_health_shows_the_breaker_the_worker_opened_and_recent_deliveries() {
    let app = TestApp::spawn_with(common::Options {
        vars: vec![
            ("COMMUNICATION_BREAKER_THRESHOLD", "2".into()),
            ("COMMUNICATION_BREAKER_COOLDOWN_MS", "30000".into()),
            ("COMMUNICATION_RETRY_ATTEMPTS", "1".into()),
        ],
        worker: true,
    })
    .await;
    let flaky = app
        .system_provider("acme", "sms", "flaky", "fail_transient", 1)
        .await;
    let healthy = app
        .system_provider("acme", "sms", "healthy", "deliver", 2)
        .await;
    let idle = app
        .system_provider("acme", "email", "idle", "deliver", 1)
        .await;
    app.system_provider("globex", "sms", "theirs", "deliver", 1)
        .await;
    let before = Utc::now();
    for text in ["1", "2"] {
        let id = app.send_sms("acme", text).await;
        app.wait_for_status("acme", &id, &["sent"]).await;
    }
    let r = app
        .as_tenant(Method::GET, "/v1/stats/providers", "acme")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.expect("json");
    let items = body["items"].as_array().expect("items");
    assert_eq!(body["next_cursor"], Value::Null);
    let ids: Vec<&str> = items
        .iter()
        .filter_map(|i| i["provider_id"].as_str())
        .collect();
    assert_eq!(ids.len(), 3, "the tenant's providers only: {body}");
    for id in [&flaky, &healthy, &idle] {
        assert!(ids.contains(&id.as_str()));
    }
    let item = |id: &str| {
        items
            .iter()
            .find(|i| i["provider_id"] == id)
            .cloned()
            .unwrap_or_default()
    };

    let f = item(&flaky);
    assert_eq!(f["breaker"]["state"], "open", "{f}");
    assert_eq!(f["breaker"]["failures"], 2);
    let until: DateTime<Utc> = f["breaker"]["until"]
        .as_str()
        .expect("until")
        .parse()
        .expect("time");
    assert!(until > before + chrono::TimeDelta::seconds(25), "{until}");
    assert!(
        until < Utc::now() + chrono::TimeDelta::seconds(31),
        "{until}"
    );

    let h = item(&healthy);
    assert_eq!(
        h["breaker"],
        json!({"state": "closed", "until": null, "failures": 0})
    );
    assert_eq!(h["name"], "healthy");
    assert_eq!(h["channel"], "sms");
    for window in ["last_hour", "last_day"] {
        assert_eq!(h[window]["total"], 2, "{h}");
        assert_eq!(h[window]["delivery_rate"], 1.0);
        assert!(h[window]["p50_ms"].as_i64().is_some(), "{h}");
    }
    let i = item(&idle);
    assert_eq!(
        i["last_day"],
        json!({"total": 0, "delivery_rate": null, "p50_ms": null, "p95_ms": null})
    );
    app.cleanup().await;
}

async fn by_status(app: &TestApp, tenant: &str) -> Value {
    let (code, body) = stats(app, tenant, "?bucket=hour").await;
    assert_eq!(code, 200, "{body}");
    body["totals"]["by_status"].clone()
}

#[tokio::test]
async fn receipts_and_replays_move_the_counts_too() {
    let app = TestApp::spawn().await;
    let sms = app
        .system_provider("acme", "sms", "quick", "deliver", 1)
        .await;
    let email = app
        .system_provider("acme", "email", "broken", "fail_permanent", 1)
        .await;
    let id = app.send_sms("acme", "hello").await;
    app.wait_for_status("acme", &id, &["sent"]).await;
    assert_eq!(by_status(&app, "acme").await, json!({"sent": 1}));

    // Receipts arrive at the intake, outside the worker's writer.
    let message = uuid::Uuid::parse_str(&id).expect("uuid");
    let provider = uuid::Uuid::parse_str(&sms).expect("uuid");
    for (kind, receipt) in [("delivered", "r1"), ("bounced", "r2")] {
        communication::store::messages::apply_receipt(
            &app.pool,
            message,
            "acme",
            provider,
            kind,
            Some(kind),
            receipt,
            json!({"receipt_id": receipt}),
        )
        .await
        .expect("receipt");
        assert_eq!(by_status(&app, "acme").await, json!({ kind: 1 }));
    }

    // A failed message replayed by an operator, then sent.
    let failed = app
        .send_ok(
            "acme",
            json!({"channel": "email", "to": "a@example.com",
                   "content": {"subject": "s", "text": "t"}}),
        )
        .await;
    app.wait_for_status("acme", &failed, &["failed"]).await;
    assert_eq!(
        by_status(&app, "acme").await,
        json!({"bounced": 1, "failed": 1})
    );
    let r = app
        .as_tenant(Method::PATCH, &format!("/v1/providers/{email}"), "acme")
        .json(&json!({"config": {"behavior": "deliver"}}))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    let mut dead_letter = None;
    for _ in 0..100 {
        let page: Value = app
            .as_tenant(Method::GET, "/v1/dead-letters", "acme")
            .send()
            .await
            .expect("request")
            .json()
            .await
            .expect("json");
        dead_letter = page["items"][0]["id"].as_i64();
        if dead_letter.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let dead_letter = dead_letter.expect("a dead letter");
    let r = app
        .as_tenant(
            Method::POST,
            &format!("/v1/dead-letters/{dead_letter}/replay"),
            "acme",
        )
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 202);
    app.wait_for_status("acme", &failed, &["sent"]).await;
    assert_eq!(
        by_status(&app, "acme").await,
        json!({"bounced": 1, "sent": 1})
    );
    app.cleanup().await;
}

/// `communication bench --scenario stats` runs end to end on a tiny fill and prints every
/// figure (a check of the command, not a measurement).
#[test]
fn the_stats_bench_fills_the_rollup_exactly_and_times_every_query() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_communication"))
        .args([
            "bench",
            "--scenario",
            "stats",
            "--stats-messages",
            "12345",
            "--stats-days",
            "2",
            "--stats-calls",
            "3",
        ])
        .env("DATABASE_URL", common::PG_ADMIN)
        .env("REDIS_URL", "redis://127.0.0.1:6379")
        .env("AMQP_URL", common::AMQP)
        .output()
        .expect("the binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "bench failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    for label in [
        "tenant bench-stats: 12345 messages over 2 days in the rollup",
        "GET /v1/stats 2 days by day",
        "GET /v1/stats 7 days by hour",
        "GET /v1/stats/providers",
        "(3 calls)",
        "target /v1/stats 2 days < 50 ms",
    ] {
        assert!(stdout.contains(label), "missing {label:?} in:\n{stdout}");
    }
}
