//! Circuit breakers and per-provider rate limits, against the real broker, Postgres and Redis:
//! through the whole pipeline (short cool-downs, 100 ms retry base), and at the guard itself
//! (two guards standing for two replicas, a Redis that goes away and comes back).

use crate::common;

use std::time::Duration;

use chrono::{DateTime, Utc};
use common::TestApp;
use communication::worker::guard::{
    Admission, AfterFailure, CLOSED_MEMORY, GuardSettings, ProviderGuard,
};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const REDIS: &str = "redis://127.0.0.1:6379";

fn vars(pairs: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    pairs.iter().map(|(k, v)| (*k, v.to_string())).collect()
}

fn events(body: &Value) -> Vec<Value> {
    body["events"].as_array().cloned().unwrap_or_default()
}

fn types(body: &Value) -> Vec<String> {
    events(body)
        .iter()
        .map(|e| e["type"].as_str().unwrap_or("").to_owned())
        .collect()
}

fn at(e: &Value) -> DateTime<Utc> {
    e["at"]
        .as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|| panic!("event without a time: {e}"))
}

/// The `until` of the last `circuit_open` event of a message.
fn open_until(body: &Value) -> DateTime<Utc> {
    let e = events(body)
        .into_iter()
        .rev()
        .find(|e| e["type"] == "circuit_open")
        .unwrap_or_else(|| panic!("no circuit_open event: {body}"));
    e["detail"]["until"]
        .as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|| panic!("circuit_open without until: {e}"))
}

/// Waits (not an assertion) until a breaker's cool-down is over.
async fn sleep_past(until: DateTime<Utc>) {
    let left = (until - Utc::now()).num_milliseconds() + 50;
    if left > 0 {
        tokio::time::sleep(Duration::from_millis(left as u64)).await;
    }
}

async fn patch_behavior(app: &TestApp, tenant: &str, id: &str, behavior: &str) {
    let r = app
        .as_tenant(
            reqwest::Method::PATCH,
            &format!("/v1/providers/{id}"),
            tenant,
        )
        .json(&json!({"config": {"behavior": behavior}}))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
}

async fn drain_dead_letters(app: &TestApp, at_least: usize) -> usize {
    let mut n = 0;
    for _ in 0..100 {
        n += app.drain_dead().await.len();
        if n >= at_least {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    n
}

#[tokio::test]
async fn the_breaker_opens_after_repeated_failures_skips_the_provider_and_closes_after_a_healthy_probe()
 {
    let app = TestApp::spawn_with(common::Options {
        vars: vars(&[
            ("COMMUNICATION_BREAKER_THRESHOLD", "3"),
            // Long enough that the next message surely arrives within it on a busy machine.
            ("COMMUNICATION_BREAKER_COOLDOWN_MS", "2500"),
        ]),
        ..Default::default()
    })
    .await;
    let flaky = app
        .system_provider("acme", "sms", "flaky", "fail_transient", 1)
        .await;
    let healthy = app
        .system_provider("acme", "sms", "healthy", "deliver", 2)
        .await;

    // Three failures (the whole retry budget of the first message) open the breaker.
    let id = app.send_sms("acme", "1").await;
    let first = app.wait_for_status("acme", &id, &["sent"]).await;
    assert_eq!(
        types(&first),
        vec![
            "accepted",
            "attempt",
            "retry_scheduled",
            "attempt",
            "retry_scheduled",
            "attempt",
            "circuit_open",
            "failover",
            "attempt",
            "sent"
        ]
    );
    let opened = &events(&first)[6];
    assert_eq!(opened["provider_id"], flaky.as_str());
    assert_eq!(opened["detail"]["action"], "opened");
    let until = open_until(&first);

    // While it is open the provider is not called at all: straight to the next one.
    let id = app.send_sms("acme", "2").await;
    let second = app.wait_for_status("acme", &id, &["sent"]).await;
    assert_eq!(
        types(&second),
        vec!["accepted", "circuit_open", "failover", "attempt", "sent"]
    );
    let ev = events(&second);
    assert_eq!(ev[1]["provider_id"], flaky.as_str());
    assert_eq!(ev[1]["detail"]["action"], "skipped");
    assert_eq!(ev[2]["detail"]["reason"], "circuit open");
    assert_eq!(ev[3]["provider_id"], healthy.as_str());
    assert_eq!(second["provider_id"], healthy.as_str());
    assert!(at(&ev[1]) < until, "skipped during the cool-down");

    // After the cool-down one probe goes through; it fails, so the breaker re-opens.
    sleep_past(until).await;
    let id = app.send_sms("acme", "3").await;
    let third = app.wait_for_status("acme", &id, &["sent"]).await;
    assert_eq!(
        types(&third),
        vec![
            "accepted",
            "attempt",
            "circuit_open",
            "failover",
            "attempt",
            "sent"
        ]
    );
    let ev = events(&third);
    assert_eq!(ev[1]["provider_id"], flaky.as_str());
    assert_eq!(ev[2]["detail"]["action"], "opened");
    assert_eq!(ev[2]["detail"]["after_probe"], true);
    let until = open_until(&third);

    // The provider recovers; the next probe succeeds and closes the breaker.
    patch_behavior(&app, "acme", &flaky, "deliver").await;
    sleep_past(until).await;
    for text in ["4", "5"] {
        let id = app.send_sms("acme", text).await;
        let body = app.wait_for_status("acme", &id, &["sent"]).await;
        assert_eq!(types(&body), vec!["accepted", "attempt", "sent"]);
        assert_eq!(body["provider_id"], flaky.as_str());
    }
    app.cleanup().await;
}

#[tokio::test]
async fn with_a_single_provider_an_open_breaker_delays_messages_until_the_budget_is_spent() {
    let app = TestApp::spawn_with(common::Options {
        vars: vars(&[
            ("COMMUNICATION_BREAKER_THRESHOLD", "2"),
            ("COMMUNICATION_BREAKER_COOLDOWN_MS", "2000"),
            ("COMMUNICATION_RETRY_ATTEMPTS", "3"),
            ("COMMUNICATION_RETRY_MAX_MS", "2000"),
        ]),
        ..Default::default()
    })
    .await;
    let only = app
        .system_provider("acme", "sms", "only", "fail_transient", 1)
        .await;

    // Two failures open the breaker; the third attempt waits for the cool-down and probes.
    let id = app.send_sms("acme", "1").await;
    let first = app.wait_for_status("acme", &id, &["failed"]).await;
    assert_eq!(
        types(&first),
        vec![
            "accepted",
            "attempt",
            "retry_scheduled",
            "attempt",
            "circuit_open",
            "retry_scheduled",
            "attempt",
            "circuit_open",
            "failed",
            "dead_lettered"
        ]
    );
    let ev = events(&first);
    let until = ev[4]["detail"]["until"]
        .as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .expect("until");
    assert!(at(&ev[6]) >= until, "the probe waited for the cool-down");

    // Sent while the breaker is open: delayed (counted as an attempt), not failed; it probes
    // after each cool-down and fails only when its budget of 3 is spent.
    let id = app.send_sms("acme", "2").await;
    let second = app.wait_for_status("acme", &id, &["failed"]).await;
    assert_eq!(
        types(&second),
        vec![
            "accepted",
            "circuit_open",
            "retry_scheduled",
            "attempt",
            "circuit_open",
            "retry_scheduled",
            "attempt",
            "circuit_open",
            "failed",
            "dead_lettered"
        ]
    );
    let ev = events(&second);
    assert_eq!(ev[1]["detail"]["action"], "skipped");
    assert_eq!(ev[2]["detail"]["reason"], "circuit open");
    assert_eq!(ev[2]["detail"]["attempt"], 1);
    assert_eq!(second["attempts"], 2, "only real calls count as attempts");
    assert_eq!(drain_dead_letters(&app, 2).await, 2);

    // Sent while open, and the provider recovers meanwhile: it waits, probes, and is sent.
    patch_behavior(&app, "acme", &only, "deliver").await;
    let id = app.send_sms("acme", "3").await;
    let third = app.wait_for_status("acme", &id, &["sent"]).await;
    assert_eq!(
        types(&third),
        vec![
            "accepted",
            "circuit_open",
            "retry_scheduled",
            "attempt",
            "sent"
        ]
    );
    let ev = events(&third);
    let until = open_until(&third);
    assert!(at(&ev[3]) >= until, "the attempt came after the cool-down");
    assert_eq!(third["attempts"], 1);
    app.cleanup().await;
}

#[tokio::test]
async fn a_second_worker_sees_the_breaker_the_first_one_opened() {
    let app = TestApp::spawn_with(common::Options {
        vars: vars(&[
            ("COMMUNICATION_BREAKER_THRESHOLD", "2"),
            ("COMMUNICATION_BREAKER_COOLDOWN_MS", "30000"),
            ("COMMUNICATION_RETRY_ATTEMPTS", "1"),
        ]),
        worker: false,
    })
    .await;
    let flaky = app
        .system_provider("acme", "sms", "flaky", "fail_transient", 1)
        .await;
    app.system_provider("acme", "sms", "healthy", "deliver", 2)
        .await;
    let worker = |stop: CancellationToken| {
        let config = app.config.clone();
        tokio::spawn(async move {
            let pool = communication::store::connect(&config.database.url, 2)
                .await
                .expect("pool");
            let _ = communication::worker::run(&config, pool, stop).await;
        })
    };

    // Worker A alone: two failed attempts open the breaker.
    let stop_a = CancellationToken::new();
    let a = worker(stop_a.clone());
    for text in ["1", "2"] {
        let id = app.send_sms("acme", text).await;
        let body = app.wait_for_status("acme", &id, &["sent"]).await;
        assert_eq!(types(&body)[1], "attempt");
        assert_eq!(events(&body)[1]["provider_id"], flaky.as_str());
    }
    stop_a.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), a).await;

    // Worker B, a fresh process-worth of state, skips the provider without calling it.
    let stop_b = CancellationToken::new();
    let b = worker(stop_b.clone());
    let id = app.send_sms("acme", "3").await;
    let body = app.wait_for_status("acme", &id, &["sent"]).await;
    assert_eq!(
        types(&body),
        vec!["accepted", "circuit_open", "failover", "attempt", "sent"]
    );
    stop_b.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), b).await;
    app.cleanup().await;
}

#[tokio::test]
async fn a_rate_limited_provider_sends_a_burst_at_its_rate_without_failing_any() {
    let app = TestApp::spawn_with(common::Options {
        vars: vars(&[("COMMUNICATION_RETRY_MAX_MS", "3200")]),
        ..Default::default()
    })
    .await;
    let limited = app
        .create_provider(
            "acme",
            json!({"name": "limited", "channel": "sms", "kind": "system", "priority": 1,
                   "config": {"behavior": "deliver", "rate_per_second": 5}}),
        )
        .await;
    assert_eq!(limited["config"]["rate_per_second"], 5);
    let sends = (0..20).map(|i| {
        let app = &app;
        async move { app.send_sms("acme", &format!("burst {i}")).await }
    });
    let ids = futures::future::join_all(sends).await;
    let mut attempts = Vec::new();
    let mut delayed = 0;
    for id in &ids {
        let body = app.wait_for_status("acme", id, &["sent", "failed"]).await;
        assert_eq!(body["status"], "sent", "{body}");
        assert_eq!(body["attempts"], 1, "waiting for a token is not an attempt");
        for e in events(&body) {
            if e["type"] == "attempt" {
                attempts.push(at(&e));
            }
            if e["type"] == "retry_scheduled" {
                assert_eq!(e["detail"]["reason"], "rate limited", "{e}");
                delayed += 1;
            }
        }
    }
    assert_eq!(attempts.len(), 20);
    assert!(delayed >= 15, "at most 5 go at once; {delayed} waited");
    // By any time t, at most capacity + rate × (t − first) attempts (one of slack for the
    // clock reading between taking the token and recording the attempt).
    attempts.sort();
    let first = attempts[0];
    for (i, t) in attempts.iter().enumerate() {
        let elapsed = (*t - first).num_milliseconds() as f64 / 1000.0;
        let allowed = 5.0 + 5.0 * elapsed + 1.0;
        assert!(
            (i + 1) as f64 <= allowed,
            "attempt {} came {elapsed:.3}s after the first; at most {allowed:.1} allowed",
            i + 1
        );
    }
    app.cleanup().await;
}

#[tokio::test]
async fn without_redis_the_breaker_still_opens_in_process() {
    // Nothing listens on port 1: intake accepts without idempotency claims, and the worker's
    // breakers fall back to per-process state.
    let app = TestApp::spawn_with(common::Options {
        vars: vars(&[
            ("REDIS_URL", "redis://127.0.0.1:1"),
            ("COMMUNICATION_BREAKER_THRESHOLD", "2"),
            ("COMMUNICATION_BREAKER_COOLDOWN_MS", "30000"),
            ("COMMUNICATION_RETRY_ATTEMPTS", "1"),
        ]),
        ..Default::default()
    })
    .await;
    let flaky = app
        .system_provider("acme", "sms", "flaky", "fail_transient", 1)
        .await;
    app.system_provider("acme", "sms", "healthy", "deliver", 2)
        .await;
    let id = app.send_sms("acme", "1").await;
    let body = app.wait_for_status("acme", &id, &["sent"]).await;
    assert_eq!(
        types(&body),
        vec!["accepted", "attempt", "failover", "attempt", "sent"]
    );
    let id = app.send_sms("acme", "2").await;
    let body = app.wait_for_status("acme", &id, &["sent"]).await;
    assert_eq!(
        types(&body),
        vec![
            "accepted",
            "attempt",
            "circuit_open",
            "failover",
            "attempt",
            "sent"
        ]
    );
    assert_eq!(events(&body)[2]["provider_id"], flaky.as_str());
    let id = app.send_sms("acme", "3").await;
    let body = app.wait_for_status("acme", &id, &["sent"]).await;
    assert_eq!(
        types(&body),
        vec!["accepted", "circuit_open", "failover", "attempt", "sent"]
    );
    app.cleanup().await;
}

// ---- The guard itself: two guards stand for two replicas. ----

fn settings(threshold: u32, cooldown_ms: u64) -> GuardSettings {
    GuardSettings {
        threshold,
        cooldown: Duration::from_millis(cooldown_ms),
        probe_ttl: Duration::from_secs(5),
        redis_timeout: Duration::from_millis(300),
    }
}

fn namespace() -> String {
    format!("test-{}", Uuid::new_v4().simple())
}

async fn go(guard: &ProviderGuard, provider: Uuid) -> communication::worker::guard::Pass {
    match guard.admit(provider, None, false).await {
        Admission::Go(pass) => pass,
        other => panic!("expected to be let through, got {other:?}"),
    }
}

#[tokio::test]
async fn replicas_share_one_breaker_and_exactly_one_of_them_probes() {
    let ns = namespace();
    let a = ProviderGuard::new(settings(3, 400), &ns, Some(REDIS));
    let b = ProviderGuard::new(settings(3, 400), &ns, Some(REDIS));
    let provider = Uuid::new_v4();
    let pass = go(&a, provider).await;
    assert_eq!(
        a.record_failure(provider, &pass).await,
        AfterFailure::Counted { failures: 1 }
    );
    let pass = go(&b, provider).await;
    assert_eq!(
        b.record_failure(provider, &pass).await,
        AfterFailure::Counted { failures: 2 }
    );
    let pass = go(&a, provider).await;
    let AfterFailure::Opened { until } = a.record_failure(provider, &pass).await else {
        panic!("the third failure, across replicas, opens the breaker");
    };
    assert_eq!(
        b.admit(provider, None, false).await,
        Admission::Open {
            until_ms: until,
            probing: false
        }
    );
    assert!(!a.degraded() && !b.degraded());

    sleep_past(DateTime::from_timestamp_millis(until).expect("time")).await;
    let (x, y) = tokio::join!(
        a.admit(provider, None, false),
        b.admit(provider, None, false)
    );
    let (prober, pass) = match (x, y) {
        (Admission::Go(p), Admission::Open { probing: true, .. }) if p.probe => (&a, p),
        (Admission::Open { probing: true, .. }, Admission::Go(p)) if p.probe => (&b, p),
        other => panic!("exactly one replica must win the probe: {other:?}"),
    };
    prober.record_healthy(provider, &pass).await;
    for guard in [&a, &b] {
        let pass = go(guard, provider).await;
        assert!(!pass.probe, "closed again");
    }
}

#[tokio::test]
async fn replicas_share_one_token_bucket_and_reserve_the_next_tokens_in_turn() {
    let ns = namespace();
    let a = ProviderGuard::new(settings(0, 1000), &ns, Some(REDIS));
    let b = ProviderGuard::new(settings(0, 1000), &ns, Some(REDIS));
    let provider = Uuid::new_v4();
    assert!(matches!(
        a.admit(provider, Some(2.0), false).await,
        Admission::Go(_)
    ));
    assert!(matches!(
        b.admit(provider, Some(2.0), false).await,
        Admission::Go(_)
    ));
    let mut waits = Vec::new();
    for guard in [&a, &b, &a] {
        match guard.admit(provider, Some(2.0), false).await {
            Admission::Limited {
                wait,
                reserved: true,
            } => waits.push(wait),
            other => panic!("expected a reservation, got {other:?}"),
        }
    }
    // Each reservation is half a second after the previous one (minus time passed).
    assert!(waits[0] > Duration::from_millis(300) && waits[0] <= Duration::from_millis(500));
    assert!(waits[1] > waits[0] + Duration::from_millis(400));
    assert!(waits[2] > waits[1] + Duration::from_millis(400));
    // A token already reserved is not taken again.
    assert!(matches!(
        b.admit(provider, Some(2.0), true).await,
        Admission::Go(_)
    ));
}

/// A TCP relay to the real Redis that can be switched off and on, and a mute listener that
/// accepts but never answers.
async fn relay(listener: tokio::net::TcpListener, stop: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            a = listener.accept() => a,
        };
        let Ok((mut inbound, _)) = accepted else {
            return;
        };
        let stop = stop.clone();
        tokio::spawn(async move {
            if let Ok(mut outbound) = tokio::net::TcpStream::connect("127.0.0.1:6379").await {
                tokio::select! {
                    _ = stop.cancelled() => {}
                    _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                }
            }
        });
    }
}

#[tokio::test]
async fn without_redis_the_guard_keeps_its_own_state_and_shares_again_when_redis_returns() {
    let ns = namespace();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let cut = ProviderGuard::new(
        settings(2, 60_000),
        &ns,
        Some(&format!("redis://127.0.0.1:{port}")),
    );
    let direct = ProviderGuard::new(settings(2, 60_000), &ns, Some(REDIS));

    // Redis unreachable: the breaker opens in process, and nothing of it reaches Redis.
    let provider = Uuid::new_v4();
    let pass = go(&cut, provider).await;
    assert!(cut.degraded());
    assert_eq!(
        cut.record_failure(provider, &pass).await,
        AfterFailure::Counted { failures: 1 }
    );
    let pass = go(&cut, provider).await;
    assert!(matches!(
        cut.record_failure(provider, &pass).await,
        AfterFailure::Opened { .. }
    ));
    assert!(matches!(
        cut.admit(provider, None, false).await,
        Admission::Open { .. }
    ));
    let pass = go(&direct, provider).await;
    assert!(!pass.probe);

    // Redis comes back (through the relay): the guard returns to the shared state.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("rebind the relay port");
    let stop = CancellationToken::new();
    tokio::spawn(relay(listener, stop.clone()));
    let other = Uuid::new_v4();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while cut.degraded() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the guard never went back to Redis"
        );
        cut.admit(other, None, false).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for _ in 0..2 {
        let pass = go(&direct, other).await;
        direct.record_failure(other, &pass).await;
    }
    // The last "closed" answer `cut` heard is trusted for CLOSED_MEMORY at most.
    tokio::time::sleep(CLOSED_MEMORY + Duration::from_millis(50)).await;
    assert!(matches!(
        cut.admit(other, None, false).await,
        Admission::Open { .. }
    ));
    stop.cancel();
}

#[tokio::test]
async fn a_closed_breaker_costs_one_redis_call_per_memory_and_a_replica_sees_it_open_soon_after() {
    let ns = namespace();
    let a = ProviderGuard::new(settings(2, 60_000), &ns, Some(REDIS));
    let b = ProviderGuard::new(settings(2, 60_000), &ns, Some(REDIS));
    let provider = Uuid::new_v4();
    let needle = provider.to_string();

    // A healthy provider without a rate limit: twenty admissions in a row ask Redis once.
    let calls = crate::send_gate::commands_during(&needle, async {
        for _ in 0..20 {
            let pass = go(&a, provider).await;
            assert!(!pass.probe);
            a.record_healthy(provider, &pass).await;
        }
    })
    .await;
    assert_eq!(
        calls.len(),
        1,
        "one breaker check for twenty attempts: {calls:?}"
    );

    // A rate-limited provider is asked every time (each attempt takes a token).
    let limited = Uuid::new_v4();
    let calls = crate::send_gate::commands_during(&limited.to_string(), async {
        for _ in 0..3 {
            assert!(matches!(
                a.admit(limited, Some(1000.0), false).await,
                Admission::Go(_)
            ));
        }
    })
    .await;
    assert_eq!(calls.len(), 3, "{calls:?}");

    // Another replica opens the breaker: `a` sees it once its memory has lapsed.
    for _ in 0..2 {
        let pass = go(&b, provider).await;
        b.record_failure(provider, &pass).await;
    }
    assert!(matches!(
        b.admit(provider, None, false).await,
        Admission::Open { .. }
    ));
    tokio::time::sleep(CLOSED_MEMORY + Duration::from_millis(50)).await;
    assert!(matches!(
        a.admit(provider, None, false).await,
        Admission::Open { .. }
    ));

    // A failure this replica records itself forgets the memory at once.
    let other = Uuid::new_v4();
    go(&a, other).await;
    let pass = go(&b, other).await;
    assert_eq!(
        b.record_failure(other, &pass).await,
        AfterFailure::Counted { failures: 1 }
    );
    let pass = go(&a, other).await;
    assert!(matches!(
        a.record_failure(other, &pass).await,
        AfterFailure::Opened { .. }
    ));
    assert!(matches!(
        a.admit(other, None, false).await,
        Admission::Open { .. }
    ));
}

#[tokio::test]
async fn a_redis_that_does_not_answer_in_time_is_treated_as_down() {
    let mute = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = mute.local_addr().expect("addr").port();
    // Accept connections and hold them open without ever answering.
    let held = tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok((c, _)) = mute.accept().await {
            conns.push(c);
        }
    });
    let guard = ProviderGuard::new(
        settings(1, 60_000),
        &namespace(),
        Some(&format!("redis://127.0.0.1:{port}")),
    );
    let provider = Uuid::new_v4();
    let admitted = tokio::time::timeout(Duration::from_secs(5), guard.admit(provider, None, false))
        .await
        .expect("the guard does not wait on a mute Redis beyond its timeout");
    let Admission::Go(pass) = admitted else {
        panic!("closed breaker lets the call through, got {admitted:?}");
    };
    assert!(guard.degraded());
    assert!(matches!(
        guard.record_failure(provider, &pass).await,
        AfterFailure::Opened { .. }
    ));
    held.abort();
}
