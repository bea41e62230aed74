//! Per-tenant limits set by the operator (issue 11): the accept rate and the daily quotas are
//! enforced at `POST /v1/send` in one atomic Redis script, nothing refused is queued, replays
//! spend nothing, a refused key can be retried, and `/v1/limits`, `/v1/usage` and
//! `communication limits` manage and show them. No worker runs where a test counts what waits
//! in the work queue.

use std::time::Duration;

use chrono::Utc;
use communication::domain::Channel;
use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{Options, SERVICE_TOKEN, TestApp};

fn no_worker() -> Options {
    Options {
        worker: false,
        ..Default::default()
    }
}

fn sms(text: &str) -> Value {
    json!({"channel": "sms", "to": "+14155550100", "content": {"text": text}})
}

fn email(subject: &str) -> Value {
    json!({"channel": "email", "to": "ada@example.com",
           "content": {"subject": subject, "text": "hello"}})
}

async fn put_limits(app: &TestApp, tenant: &str, body: Value) -> (u16, Value) {
    let r = app
        .as_tenant(Method::PUT, "/v1/limits", tenant)
        .json(&body)
        .send()
        .await
        .expect("request");
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn get_json(app: &TestApp, tenant: &str, path: &str) -> (u16, Value) {
    let r = app
        .as_tenant(Method::GET, path, tenant)
        .send()
        .await
        .expect("request");
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// Messages waiting for a worker in the channel's queues: its entry queue and every lane
/// (a passive declare reads each count).
async fn queued(app: &TestApp, channel: Channel) -> u32 {
    let conn = app.amqp().await;
    let ch = conn.create_channel().await.expect("channel");
    let t = app.topology();
    let mut names = vec![t.entry_queue(channel)];
    names.extend(
        communication::domain::Priority::ALL
            .iter()
            .map(|lane| t.lane_queue(channel, *lane)),
    );
    let mut total = 0;
    for name in names {
        let q = ch
            .queue_declare(
                name.as_str().into(),
                lapin::options::QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                Default::default(),
            )
            .await
            .expect("the work queue exists");
        total += q.message_count();
    }
    let _ = conn.close(200, "done".into()).await;
    total
}

/// Status, `code`, `Retry-After` and body of one send.
async fn send_with(
    app: &TestApp,
    tenant: &str,
    body: &Value,
    key: Option<&str>,
) -> (u16, Option<String>, Option<u64>, Value) {
    let mut request = app.as_tenant(Method::POST, "/v1/send", tenant).json(body);
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    let r = request.send().await.expect("request");
    let status = r.status().as_u16();
    let retry_after = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let body: Value = r.json().await.unwrap_or(Value::Null);
    let code = body["code"].as_str().map(str::to_owned);
    (status, code, retry_after, body)
}

#[tokio::test]
async fn over_the_accept_rate_a_send_gets_429_with_retry_after_and_nothing_is_queued() {
    let app = TestApp::spawn_with(no_worker()).await;
    let (status, _) = put_limits(&app, "acme", json!({"accept_rate_per_second": 3})).await;
    assert_eq!(status, 200);
    // Start at the beginning of a wall-clock second, so the burst most likely falls in one
    // window; at most 3 per wall-clock second the burst touched, whatever the timing.
    let ms = Utc::now().timestamp_subsec_millis();
    tokio::time::sleep(Duration::from_millis(u64::from(1000 - ms) + 20)).await;
    let body = sms("rate");
    let started = Utc::now().timestamp();
    let answers =
        futures::future::join_all((0..20).map(|_| send_with(&app, "acme", &body, None))).await;
    let windows = (Utc::now().timestamp() - started + 1) as usize;
    let accepted = answers.iter().filter(|a| a.0 == 202).count();
    assert!(
        (3..=3 * windows).contains(&accepted),
        "accepted {accepted} in {windows} windows: {answers:?}"
    );
    for (status, code, retry_after, problem) in answers.iter().filter(|a| a.0 != 202) {
        assert_eq!(*status, 429, "{problem}");
        assert_eq!(code.as_deref(), Some("rate_limited"), "{problem}");
        assert_eq!(*retry_after, Some(1), "Retry-After: 1");
    }
    assert_eq!(
        queued(&app, Channel::Sms).await as usize,
        accepted,
        "only the accepted sends are in {}.send.sms",
        app.namespace
    );
    // The next second admits again; another tenant was never limited.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(send_with(&app, "acme", &body, None).await.0, 202);
    for _ in 0..10 {
        assert_eq!(send_with(&app, "globex", &body, None).await.0, 202);
    }
    let (_, usage) = get_json(&app, "acme", "/v1/usage").await;
    assert_eq!(usage["channels"]["sms"]["used"], accepted as u64 + 1);
    assert_eq!(usage["channels"]["sms"]["quota"], Value::Null);
    assert_eq!(usage["channels"]["sms"]["remaining"], Value::Null);
    let text = app.metrics_text().await;
    assert!(
        text.lines()
            .any(|l| l.starts_with("communication_intake_refused_total{reason=\"rate_limited\"}")),
        "refusals are counted:\n{text}"
    );
    app.cleanup().await;
}

#[tokio::test]
async fn the_daily_quota_stops_at_exactly_the_quota_under_concurrent_sends_per_channel() {
    let app = TestApp::spawn_with(no_worker()).await;
    let (status, view) = put_limits(&app, "acme", json!({"daily_quota": {"sms": 25}})).await;
    assert_eq!(status, 200, "{view}");
    let body = sms("quota");
    let answers =
        futures::future::join_all((0..60).map(|_| send_with(&app, "acme", &body, None))).await;
    let to_midnight = communication::limits::seconds_to_utc_midnight(Utc::now());
    let accepted = answers.iter().filter(|a| a.0 == 202).count();
    assert_eq!(accepted, 25, "exactly the quota: {answers:?}");
    let refused: Vec<_> = answers.iter().filter(|a| a.0 != 202).collect();
    assert_eq!(refused.len(), 35);
    for (status, code, retry_after, problem) in refused {
        assert_eq!(*status, 429, "{problem}");
        assert_eq!(code.as_deref(), Some("quota_exceeded"), "{problem}");
        let retry_after = retry_after.expect("Retry-After");
        assert!(
            retry_after.abs_diff(to_midnight) <= 10,
            "Retry-After {retry_after} is the time to UTC midnight ({to_midnight})"
        );
    }
    assert_eq!(
        queued(&app, Channel::Sms).await,
        25,
        "nothing refused is queued"
    );
    // The sms quota does not touch email (unlimited).
    for i in 0..3 {
        assert_eq!(
            send_with(&app, "acme", &email(&format!("e{i}")), None)
                .await
                .0,
            202
        );
    }
    assert_eq!(queued(&app, Channel::Email).await, 3);
    let (status, usage) = get_json(&app, "acme", "/v1/usage").await;
    assert_eq!(status, 200, "{usage}");
    assert_eq!(usage["tenant_id"], "acme");
    assert_eq!(usage["date"], Utc::now().date_naive().to_string());
    assert_eq!(
        usage["channels"],
        json!({"email": {"used": 3, "quota": null, "remaining": null},
               "sms": {"used": 25, "quota": 25, "remaining": 0}})
    );
    // Raising the quota lets sends through at once on this replica.
    put_limits(&app, "acme", json!({"daily_quota": {"sms": 26}})).await;
    assert_eq!(send_with(&app, "acme", &body, None).await.0, 202);
    assert_eq!(send_with(&app, "acme", &body, None).await.0, 429);
    app.cleanup().await;
}

#[tokio::test]
async fn a_replayed_key_spends_no_quota_and_a_refused_key_can_be_retried_later() {
    let app = TestApp::spawn_with(no_worker()).await;
    put_limits(&app, "acme", json!({"daily_quota": {"email": 2}})).await;
    let first = send_with(&app, "acme", &email("one"), Some("order-1")).await;
    assert_eq!(first.0, 202);
    for _ in 0..3 {
        let replay = send_with(&app, "acme", &email("one"), Some("order-1")).await;
        assert_eq!(replay.0, 202, "a replay is answered, not refused");
        assert_eq!(replay.3["id"], first.3["id"]);
    }
    assert_eq!(
        send_with(&app, "acme", &email("two"), Some("order-2"))
            .await
            .0,
        202
    );
    let (_, usage) = get_json(&app, "acme", "/v1/usage").await;
    assert_eq!(
        usage["channels"]["email"]["used"], 2,
        "replays spent nothing"
    );
    let refused = send_with(&app, "acme", &email("three"), Some("order-3")).await;
    assert_eq!(
        (refused.0, refused.1.as_deref()),
        (429, Some("quota_exceeded"))
    );
    // The refusal released the key: once the operator allows more, the same key goes through
    // (not 409 in flight, not a replay of nothing).
    put_limits(&app, "acme", json!({"daily_quota": {"email": 3}})).await;
    let retried = send_with(&app, "acme", &email("three"), Some("order-3")).await;
    assert_eq!(retried.0, 202, "{:?}", retried.3);
    let again = send_with(&app, "acme", &email("three"), Some("order-3")).await;
    assert_eq!(again.3["id"], retried.3["id"]);
    assert_eq!(queued(&app, Channel::Email).await, 3);
    let (_, usage) = get_json(&app, "acme", "/v1/usage").await;
    assert_eq!(
        usage["channels"]["email"],
        json!({"used": 3, "quota": 3, "remaining": 0})
    );
    app.cleanup().await;
}

#[tokio::test]
async fn a_send_the_broker_refuses_gives_its_quota_back() {
    // Nothing listens on port 9: every publish fails and the send answers 503.
    let app = TestApp::spawn_with(Options {
        vars: vec![("AMQP_URL", "amqp://guest:guest@127.0.0.1:9/%2f".into())],
        worker: false,
    })
    .await;
    put_limits(&app, "acme", json!({"daily_quota": {"sms": 1}})).await;
    for _ in 0..2 {
        let (status, code, _, _) = send_with(&app, "acme", &sms("x"), None).await;
        assert_eq!(
            (status, code.as_deref()),
            (503, Some("dependency_unavailable"))
        );
    }
    let (_, usage) = get_json(&app, "acme", "/v1/usage").await;
    assert_eq!(
        usage["channels"]["sms"],
        json!({"used": 0, "quota": 1, "remaining": 1}),
        "a broker outage spends no quota"
    );
    app.cleanup().await;
}

#[tokio::test]
async fn with_redis_down_limits_are_not_enforced_and_sends_are_accepted() {
    let app = TestApp::spawn_with(Options {
        vars: vec![("REDIS_URL", "redis://127.0.0.1:9".into())],
        worker: false,
    })
    .await;
    put_limits(
        &app,
        "acme",
        json!({"accept_rate_per_second": 1, "daily_quota": {"sms": 1}}),
    )
    .await;
    for _ in 0..3 {
        assert_eq!(send_with(&app, "acme", &sms("x"), None).await.0, 202);
    }
    let (status, _) = get_json(&app, "acme", "/v1/usage").await;
    assert_eq!(status, 503, "usage needs Redis");
    app.cleanup().await;
}

#[tokio::test]
async fn the_operator_puts_gets_and_deletes_limits_and_a_tenant_key_only_reads_them() {
    let app = TestApp::spawn_with(no_worker()).await;
    let (status, view) = get_json(&app, "acme", "/v1/limits").await;
    assert_eq!(status, 200);
    assert_eq!(
        view,
        json!({"tenant_id": "acme", "accept_rate_per_second": null,
               "daily_quota": {"email": null, "sms": null}, "updated_at": null})
    );
    let (status, view) = put_limits(
        &app,
        "acme",
        json!({"accept_rate_per_second": 50, "daily_quota": {"email": 1000, "sms": 10000000}}),
    )
    .await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["accept_rate_per_second"], 50);
    assert_eq!(view["daily_quota"], json!({"email": 1000, "sms": 10000000}));
    assert!(view["updated_at"].is_string());
    let (_, read) = get_json(&app, "acme", "/v1/limits").await;
    assert_eq!(read, view);
    let (_, other) = get_json(&app, "globex", "/v1/limits").await;
    assert_eq!(other["accept_rate_per_second"], Value::Null, "per tenant");

    // A tenant key reads its own limits and usage, and may not change them.
    let r = app
        .http
        .post(app.url("/v1/api-keys"))
        .bearer_auth(SERVICE_TOKEN)
        .json(&json!({"tenant_id": "acme"}))
        .send()
        .await
        .expect("request");
    let key = r.json::<Value>().await.expect("json")["key"]
        .as_str()
        .expect("key")
        .to_owned();
    let as_key =
        |method: Method, path: &str| app.http.request(method, app.url(path)).bearer_auth(&key);
    let r = as_key(Method::GET, "/v1/limits")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.expect("json"), view);
    let r = as_key(Method::GET, "/v1/usage")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    for method in [Method::PUT, Method::DELETE] {
        let r = as_key(method.clone(), "/v1/limits")
            .json(&json!({"accept_rate_per_second": 1000000}))
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), 403, "{method}");
        let problem: Value = r.json().await.expect("json");
        assert_eq!(problem["code"], "forbidden");
    }
    // The service token must name the tenant.
    let r = app
        .http
        .put(app.url("/v1/limits"))
        .bearer_auth(SERVICE_TOKEN)
        .json(&json!({}))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 400);

    // Bad values: 422 naming the field, and nothing changed.
    for (body, field) in [
        (
            json!({"accept_rate_per_second": 0}),
            "accept_rate_per_second",
        ),
        (
            json!({"accept_rate_per_second": -5}),
            "accept_rate_per_second",
        ),
        (json!({"daily_quota": {"sms": 10000001}}), "daily_quota.sms"),
        (
            json!({"daily_quota": {"email": "lots"}}),
            "daily_quota.email",
        ),
        (json!({"daily_quota": {"email": 1.5}}), "daily_quota.email"),
        (json!({"daily_quota": {"fax": 1}}), "daily_quota.fax"),
        (json!({"burst": 1}), "burst"),
    ] {
        let (status, problem) = put_limits(&app, "acme", body.clone()).await;
        assert_eq!(status, 422, "{body}: {problem}");
        assert_eq!(problem["code"], "validation_failed");
        assert_eq!(problem["errors"][0]["field"], field, "{body}: {problem}");
    }
    let (_, read) = get_json(&app, "acme", "/v1/limits").await;
    assert_eq!(read, view, "a refused PUT changes nothing");

    // PUT replaces the whole set; DELETE clears it.
    let (_, view) = put_limits(&app, "acme", json!({"daily_quota": {"sms": 5}})).await;
    assert_eq!(view["accept_rate_per_second"], Value::Null);
    assert_eq!(view["daily_quota"], json!({"email": null, "sms": 5}));
    let r = app
        .as_tenant(Method::DELETE, "/v1/limits", "acme")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 204);
    let (_, read) = get_json(&app, "acme", "/v1/limits").await;
    assert_eq!(read["daily_quota"], json!({"email": null, "sms": null}));
    assert_eq!(read["updated_at"], Value::Null);

    // Usage: today by default, yesterday on request, nothing older.
    let yesterday = Utc::now().date_naive().pred_opt().expect("yesterday");
    let (status, usage) = get_json(&app, "acme", &format!("/v1/usage?date={yesterday}")).await;
    assert_eq!(status, 200, "{usage}");
    assert_eq!(usage["date"], yesterday.to_string());
    assert_eq!(usage["channels"]["sms"]["used"], 0);
    for bad in ["2020-01-01", "yesterday", "2026-13-01"] {
        let (status, problem) = get_json(&app, "acme", &format!("/v1/usage?date={bad}")).await;
        assert_eq!(status, 400, "{bad}: {problem}");
        assert_eq!(problem["errors"][0]["field"], "date");
    }
    app.cleanup().await;
}

/// Runs `communication limits …` against the test's database.
async fn limits_cli(app: &TestApp, args: &[&str]) -> (bool, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_communication"))
        .arg("limits")
        .args(args)
        .env(
            "DATABASE_URL",
            format!("postgres://postgres@127.0.0.1:5432/{}", app.db_name),
        )
        .env("ENCRYPTION_SECRET", app.config_secret())
        .env("COMMUNICATION_NAMESPACE", &app.namespace)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("run the communication binary");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_cli_sets_shows_and_clears_limits_and_intake_applies_them_within_the_cache_ttl() {
    let app = TestApp::spawn_with(Options {
        vars: vec![("COMMUNICATION_LIMITS_CACHE_MS", "300".into())],
        worker: false,
    })
    .await;
    // The intake caches "no limits" for acme with this send.
    assert_eq!(send_with(&app, "acme", &sms("one"), None).await.0, 202);

    let (ok, out, err) = limits_cli(
        &app,
        &[
            "set",
            "--tenant",
            "acme",
            "--daily-sms",
            "1",
            "--accept-rate",
            "40",
        ],
    )
    .await;
    assert!(ok, "{out}{err}");
    assert!(out.contains("accept rate per second: 40"), "{out}");
    assert!(out.contains("daily quota sms:        1"), "{out}");
    assert!(out.contains("daily quota email:      unlimited"), "{out}");
    let (_, view) = get_json(&app, "acme", "/v1/limits").await;
    assert_eq!(view["accept_rate_per_second"], 40);
    assert_eq!(view["daily_quota"], json!({"email": null, "sms": 1}));

    // Within the cache's lifetime the intake applies it: the one sms of today spent the quota.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (status, code, _, _) = send_with(&app, "acme", &sms("two"), None).await;
    assert_eq!((status, code.as_deref()), (429, Some("quota_exceeded")));

    // `set` keeps what it does not name; `none` lifts one limit.
    let (ok, out, err) =
        limits_cli(&app, &["set", "--tenant", "acme", "--accept-rate", "none"]).await;
    assert!(ok, "{out}{err}");
    let (ok, out, _) = limits_cli(&app, &["show", "--tenant", "acme"]).await;
    assert!(ok);
    assert!(out.contains("accept rate per second: unlimited"), "{out}");
    assert!(out.contains("daily quota sms:        1"), "{out}");

    let (ok, _, err) = limits_cli(&app, &["set", "--tenant", "acme", "--daily-sms", "0"]).await;
    assert!(!ok, "0 is refused");
    assert!(err.contains("from 1 to 10000000"), "{err}");

    let (ok, out, err) = limits_cli(&app, &["clear", "--tenant", "acme"]).await;
    assert!(ok, "{out}{err}");
    assert!(out.contains("daily quota sms:        unlimited"), "{out}");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(send_with(&app, "acme", &sms("three"), None).await.0, 202);
    app.cleanup().await;
}
