//! Retention: old messages leave with their events and webhook records in small batches, one
//! pass at a time; the usage counters stay; the operator sets a tenant's days by API and CLI.

use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use communication::retention::{self, PassOptions};
use reqwest::Method;
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::common::{self, Options, SERVICE_TOKEN, TestApp};

/// `n` sent messages of `tenant` accepted `age` ago (a second apart), each with three events.
async fn seed(pool: &PgPool, tenant: &str, n: i32, age: TimeDelta) -> Vec<Uuid> {
    let at = Utc::now() - age;
    let ids: Vec<Uuid> = sqlx::query_scalar(
        "INSERT INTO message_logs (id, tenant_id, channel, recipient, status, attempts, \
                                   created_at, updated_at) \
         SELECT gen_random_uuid(), $1, 'sms', '+14155550100', 'sent', 1, \
                $2 - make_interval(secs => i), $2 \
         FROM generate_series(1, $3) i ORDER BY i RETURNING id",
    )
    .bind(tenant)
    .bind(at)
    .bind(n)
    .fetch_all(pool)
    .await
    .expect("seed messages");
    sqlx::query(
        "INSERT INTO message_events (message_id, tenant_id, kind, created_at) \
         SELECT id, $2, k, $3 FROM unnest($1::uuid[]) id, \
                unnest(ARRAY['accepted', 'attempt', 'sent']) k",
    )
    .bind(&ids)
    .bind(tenant)
    .bind(at)
    .execute(pool)
    .await
    .expect("seed events");
    ids
}

/// A status-webhook event of `message`, delivered to an endpoint in `state`, with one attempt.
async fn webhook_record(pool: &PgPool, tenant: &str, message: Uuid, state: &str) {
    let endpoint = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO webhook_endpoints (id, tenant_id, url, events, secret) \
         VALUES ($1, $2, 'https://hooks.example.com/x', '{message.sent}', '\\x00')",
    )
    .bind(endpoint)
    .bind(tenant)
    .execute(pool)
    .await
    .expect("endpoint");
    let (event, delivery) = (Uuid::new_v4(), Uuid::new_v4());
    sqlx::query(
        "INSERT INTO webhook_events (id, tenant_id, message_id, event_type, sequence, payload, \
                                     created_at) \
         VALUES ($1, $2, $3, 'message.sent', 1, '{}', now())",
    )
    .bind(event)
    .bind(tenant)
    .bind(message)
    .execute(pool)
    .await
    .expect("webhook event");
    sqlx::query(
        "INSERT INTO webhook_deliveries (id, event_id, endpoint_id, tenant_id, state, attempts, \
                                         published_at) VALUES ($1, $2, $3, $4, $5, 1, now())",
    )
    .bind(delivery)
    .bind(event)
    .bind(endpoint)
    .bind(tenant)
    .bind(state)
    .execute(pool)
    .await
    .expect("webhook delivery");
    sqlx::query(
        "INSERT INTO webhook_attempts (id, delivery_id, endpoint_id, tenant_id, event_id, \
                                       event_type, message_id, attempt, status_code, latency_ms, \
                                       succeeded) \
         VALUES (gen_random_uuid(), $1, $2, $3, $4, 'message.sent', $5, 1, 200, 5, true)",
    )
    .bind(delivery)
    .bind(endpoint)
    .bind(tenant)
    .bind(event)
    .bind(message)
    .execute(pool)
    .await
    .expect("webhook attempt");
}

async fn dead_letter(pool: &PgPool, tenant: Option<&str>, age: TimeDelta) -> i64 {
    sqlx::query_scalar(
        "INSERT INTO dead_letters (tenant_id, reason, created_at) VALUES ($1, 'x', $2) \
         RETURNING id",
    )
    .bind(tenant)
    .bind(Utc::now() - age)
    .fetch_one(pool)
    .await
    .expect("dead letter")
}

async fn count(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(pool)
        .await
        .expect("count")
}

async fn messages_of(pool: &PgPool, tenant: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM message_logs WHERE tenant_id = $1")
        .bind(tenant)
        .fetch_one(pool)
        .await
        .expect("count")
}

fn options(batch_size: u32, pause_ms: u64) -> PassOptions {
    PassOptions {
        default_days: 30,
        batch_size,
        pause: Duration::from_millis(pause_ms),
    }
}

fn no_workers() -> Options {
    Options {
        worker: false,
        ..Options::default()
    }
}

const DAYS_40: TimeDelta = TimeDelta::days(40);

#[tokio::test]
async fn old_messages_leave_with_their_events_in_small_batches_and_newer_or_longer_kept_ones_stay()
{
    let app = TestApp::spawn_with(no_workers()).await;
    let pool = &app.pool;
    let old = seed(pool, "acme", 10, DAYS_40).await;
    let new = seed(pool, "acme", 5, TimeDelta::days(29)).await;
    // globex keeps 90 days: its 40-day-old messages stay.
    seed(pool, "globex", 4, DAYS_40).await;
    retention::store::set_override(pool, "globex", 90)
        .await
        .expect("override");
    // A finished webhook goes with its message; one still pending keeps its message.
    webhook_record(pool, "acme", old[0], "succeeded").await;
    webhook_record(pool, "acme", old[1], "pending").await;
    webhook_record(pool, "acme", new[0], "succeeded").await;
    let suppression_of_old: Uuid = sqlx::query_scalar(
        "INSERT INTO suppressions (id, tenant_id, channel, recipient, reason, message_id) \
         VALUES (gen_random_uuid(), 'acme', 'sms', '+14155550100', 'opted_out', $1) RETURNING id",
    )
    .bind(old[2])
    .fetch_one(pool)
    .await
    .expect("suppression");
    let dl_old = dead_letter(pool, Some("acme"), DAYS_40).await;
    let dl_new = dead_letter(pool, Some("acme"), TimeDelta::days(2)).await;
    let dl_invalid = dead_letter(pool, None, DAYS_40).await;
    let dl_globex = dead_letter(pool, Some("globex"), DAYS_40).await;

    let report = retention::run_pass(pool, &options(3, 0), &CancellationToken::new())
        .await
        .expect("pass")
        .expect("nobody else holds the lock");

    assert_eq!(report.removed.message_logs, 9, "{report:?}");
    // 9 messages, at most 3 per transaction.
    assert_eq!(report.message_batches, 3, "{report:?}");
    assert_eq!(report.removed.message_events, 27);
    assert_eq!(report.removed.webhook_events, 1);
    assert_eq!(report.removed.webhook_deliveries, 1);
    assert_eq!(report.removed.webhook_attempts, 1);
    assert_eq!(report.removed.dead_letters, 2);
    assert_eq!(report.tenants, vec![("acme".to_owned(), 30, 9)]);
    print!("{}", report.render());

    let left: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM message_logs WHERE tenant_id='acme'")
        .fetch_all(pool)
        .await
        .expect("left");
    assert_eq!(left.len(), 6);
    assert!(
        left.contains(&old[1]),
        "the pending webhook kept its message"
    );
    assert!(new.iter().all(|id| left.contains(id)));
    assert_eq!(messages_of(pool, "globex").await, 4);
    // No orphan rows: every event left belongs to a message left.
    assert_eq!(
        count(
            pool,
            "SELECT count(*) FROM message_events e WHERE NOT EXISTS \
             (SELECT 1 FROM message_logs m WHERE m.id = e.message_id)"
        )
        .await,
        0
    );
    assert_eq!(
        count(pool, "SELECT count(*) FROM message_events").await,
        (6 + 4) * 3
    );
    assert_eq!(count(pool, "SELECT count(*) FROM webhook_events").await, 2);
    assert_eq!(
        count(pool, "SELECT count(*) FROM webhook_attempts").await,
        2
    );
    let dead: Vec<i64> = sqlx::query_scalar("SELECT id FROM dead_letters ORDER BY id")
        .fetch_all(pool)
        .await
        .expect("dead letters");
    assert_eq!(dead, vec![dl_new, dl_globex]);
    assert!(!dead.contains(&dl_old) && !dead.contains(&dl_invalid));
    // The suppression list is the tenant's configuration, not history: it stays.
    assert_eq!(
        count(
            pool,
            &format!("SELECT count(*) FROM suppressions WHERE id = '{suppression_of_old}'")
        )
        .await,
        1
    );

    // A second pass finds nothing more.
    let again = retention::run_pass(pool, &options(3, 0), &CancellationToken::new())
        .await
        .expect("pass")
        .expect("lock");
    assert_eq!(again.removed.message_logs, 0);
    assert_eq!(again.message_batches, 0);
    app.cleanup().await;
}

#[tokio::test]
async fn the_batch_is_chosen_through_an_index_not_a_scan_of_message_logs() {
    let app = TestApp::spawn_with(no_workers()).await;
    seed(&app.pool, "acme", 2000, DAYS_40).await;
    sqlx::query("ANALYZE message_logs")
        .execute(&app.pool)
        .await
        .expect("analyze");
    let mut tx = app.pool.begin().await.expect("tx");
    let plan: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "EXPLAIN {}",
        retention::store::SELECT_BATCH
            .replace("$1", "'acme'")
            .replace("$2", "now() - interval '30 days'")
            .replace("$3", "1000")
    )))
    .fetch_all(&mut *tx)
    .await
    .expect("explain");
    let plan = plan.join("\n");
    assert!(plan.contains("message_logs_list"), "{plan}");
    assert!(!plan.contains("Seq Scan on message_logs"), "{plan}");
    tx.rollback().await.expect("rollback");
    app.cleanup().await;
}

#[tokio::test]
async fn writes_to_message_logs_are_not_blocked_while_a_pass_runs() {
    let app = TestApp::spawn_with(no_workers()).await;
    let pool = app.pool.clone();
    seed(&pool, "acme", 12, DAYS_40).await;
    let fresh = seed(&pool, "acme", 1, TimeDelta::zero()).await;
    // 12 messages two at a time with 100 ms between batches: about 0.6 s.
    let pass = {
        let pool = pool.clone();
        tokio::spawn(async move {
            retention::run_pass(&pool, &options(2, 100), &CancellationToken::new()).await
        })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    let started = Instant::now();
    seed(&pool, "acme", 1, TimeDelta::zero()).await;
    sqlx::query("UPDATE message_logs SET status = 'delivered' WHERE id = $1")
        .bind(fresh[0])
        .execute(&pool)
        .await
        .expect("update");
    let took = started.elapsed();
    assert!(
        !pass.is_finished(),
        "the pass should still be running, between its batches"
    );
    assert!(took < Duration::from_millis(300), "writes waited {took:?}");
    let report = pass.await.expect("join").expect("pass").expect("lock");
    assert_eq!(report.removed.message_logs, 12);
    assert_eq!(report.message_batches, 6);
    assert_eq!(messages_of(&pool, "acme").await, 2);
    app.cleanup().await;
}

#[tokio::test]
async fn only_one_pass_runs_at_a_time_and_a_dead_holder_does_not_block_the_next() {
    let app = TestApp::spawn_with(no_workers()).await;
    let pool = app.pool.clone();
    seed(&pool, "acme", 6, DAYS_40).await;
    let slow = options(1, 50);
    let stop = CancellationToken::new();
    let (a, b) = tokio::join!(
        retention::run_pass(&pool, &slow, &stop),
        retention::run_pass(&pool, &slow, &stop)
    );
    let (a, b) = (a.expect("pass a"), b.expect("pass b"));
    assert!(
        a.is_some() != b.is_some(),
        "exactly one pass runs: {a:?} / {b:?}"
    );
    let ran = a.or(b).expect("one ran");
    assert_eq!(ran.removed.message_logs, 6);
    assert_eq!(ran.message_batches, 6);

    // Another session holding the lock (a pass in another process) makes this one skip…
    seed(&pool, "acme", 2, DAYS_40).await;
    let url = format!("postgres://postgres@127.0.0.1:5432/{}", app.db_name);
    let mut holder = <sqlx::PgConnection as sqlx::Connection>::connect(&url)
        .await
        .expect("connect");
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(retention::LOCK_KEY)
        .execute(&mut holder)
        .await
        .expect("lock");
    let skipped = retention::run_pass(&pool, &slow, &stop)
        .await
        .expect("pass");
    assert!(skipped.is_none());
    assert_eq!(messages_of(&pool, "acme").await, 2);
    // …and its session ending without unlocking (a crash) frees the lock at once.
    drop(holder);
    let deadline = Instant::now() + Duration::from_secs(5);
    let report = loop {
        if let Some(r) = retention::run_pass(&pool, &slow, &stop)
            .await
            .expect("pass")
        {
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "the dead session's lock was never released"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(report.removed.message_logs, 2);
    app.cleanup().await;
}

async fn stats(app: &TestApp, tenant: &str, query: &str) -> Value {
    let r = app
        .as_tenant(Method::GET, &format!("/v1/stats{query}"), tenant)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    r.json().await.expect("json")
}

#[tokio::test]
async fn the_usage_counters_of_get_stats_outlive_the_removed_messages() {
    let app = TestApp::spawn().await;
    app.system_provider("acme", "sms", "main", "deliver", 1)
        .await;
    // Accepted 40 days ago (a direct publisher's created_at), delivered now.
    let accepted = Utc::now() - DAYS_40;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let id = Uuid::new_v4();
        let mut env = common::envelope("acme", id, "sms", "+14155550100", json!({"text": "hello"}));
        env["created_at"] = json!(accepted);
        app.publish_raw("sms", env.to_string().as_bytes()).await;
        ids.push(id.to_string());
    }
    for id in &ids {
        app.wait_for_status("acme", id, &["sent"]).await;
    }
    let query = format!(
        "?bucket=day&since={}",
        (accepted - TimeDelta::days(2)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    let query = query.replace('+', "%2B");
    let before = stats(&app, "acme", &query).await;
    assert_eq!(before["totals"]["total"], 3, "{before}");

    let deadline = Instant::now() + Duration::from_secs(10);
    // (The app's worker may be running its own pass: then this one waits for the next turn.)
    loop {
        let ran = retention::run_pass(&app.pool, &options(2, 0), &CancellationToken::new())
            .await
            .expect("pass");
        if ran.is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "never got the lock");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(messages_of(&app.pool, "acme").await, 0);
    let (code, _) = app.message("acme", &ids[0]).await;
    assert_eq!(code, 404, "the message itself is gone");
    let after = stats(&app, "acme", &query).await;
    assert_eq!(after, before);
    assert!(
        count(&app.pool, "SELECT count(*) FROM message_stats_daily").await > 0,
        "the rollup rows stay"
    );
    app.cleanup().await;
}

async fn tenant_key(app: &TestApp, tenant: &str) -> String {
    let r = app
        .http
        .post(app.url("/v1/api-keys"))
        .bearer_auth(SERVICE_TOKEN)
        .json(&json!({"tenant_id": tenant, "name": "retention"}))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 201);
    let body: Value = r.json().await.expect("json");
    body["key"].as_str().expect("key").to_owned()
}

async fn answer(r: reqwest::RequestBuilder) -> (u16, Value) {
    let r = r.send().await.expect("request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_operator_sets_a_tenants_retention_and_the_tenant_can_only_read_it() {
    let app = TestApp::spawn_with(no_workers()).await;
    let key = tenant_key(&app, "acme").await;
    let (code, body) = answer(app.as_tenant(Method::GET, "/v1/retention", "acme")).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        body,
        json!({"tenant_id": "acme", "days": 30, "default": true, "updated_at": null})
    );

    let put = |body: Value| {
        app.as_tenant(Method::PUT, "/v1/retention", "acme")
            .json(&body)
    };
    let (code, body) = answer(put(json!({"days": 90}))).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["days"], 90);
    assert_eq!(body["default"], false);
    assert!(body["updated_at"].is_string());

    let (code, body) = answer(app.http.get(app.url("/v1/retention")).bearer_auth(&key)).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        (body["tenant_id"].clone(), body["days"].clone()),
        (json!("acme"), json!(90))
    );
    // Another tenant is untouched.
    let (_, other) = answer(app.as_tenant(Method::GET, "/v1/retention", "globex")).await;
    assert_eq!(other["default"], true);

    for r in [
        app.http
            .put(app.url("/v1/retention"))
            .bearer_auth(&key)
            .json(&json!({"days": 3650})),
        app.http.delete(app.url("/v1/retention")).bearer_auth(&key),
    ] {
        let (code, body) = answer(r).await;
        assert_eq!(code, 403, "{body}");
    }
    for bad in [
        json!({"days": 0}),
        json!({"days": 3651}),
        json!({"days": "90"}),
        json!({"days": 1.5}),
        json!({}),
    ] {
        let (code, body) = answer(put(bad.clone())).await;
        assert_eq!(code, 422, "{bad}: {body}");
        assert_eq!(body["errors"][0]["field"], "days", "{bad}: {body}");
    }
    let (code, body) = answer(put(json!({"days": 90, "months": 1}))).await;
    assert_eq!(code, 422);
    assert_eq!(body["errors"][0]["field"], "months");
    let (code, _) = answer(
        app.http
            .put(app.url("/v1/retention"))
            .bearer_auth(SERVICE_TOKEN)
            .json(&json!({"days": 5})),
    )
    .await;
    assert_eq!(code, 400, "the service token must name the tenant");
    let stored: i32 =
        sqlx::query_scalar("SELECT days FROM tenant_retention WHERE tenant_id='acme'")
            .fetch_one(&app.pool)
            .await
            .expect("row");
    assert_eq!(stored, 90, "refused changes changed nothing");

    let (code, body) = answer(app.as_tenant(Method::DELETE, "/v1/retention", "acme")).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["days"], 30);
    assert_eq!(body["default"], true);
    app.cleanup().await;
}

/// Runs `communication retention …` against the test's database.
async fn cli(app: &TestApp, args: &[&str]) -> (bool, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_communication"))
        .arg("retention")
        .args(args)
        .env(
            "DATABASE_URL",
            format!("postgres://postgres@127.0.0.1:5432/{}", app.db_name),
        )
        .env("ENCRYPTION_SECRET", app.config_secret())
        .env("COMMUNICATION_RETENTION_PAUSE_MS", "0")
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
async fn the_retention_command_sets_shows_and_runs_a_pass() {
    let app = TestApp::spawn_with(no_workers()).await;
    seed(&app.pool, "acme", 5, DAYS_40).await;
    seed(&app.pool, "globex", 3, DAYS_40).await;
    let (ok, out, err) = cli(&app, &["set", "--tenant", "globex", "--days", "60"]).await;
    assert!(ok, "{out}{err}");
    assert!(out.contains("tenant globex: 60 days (override)"), "{out}");
    let (ok, out, _) = cli(&app, &["show", "--tenant", "acme"]).await;
    assert!(ok);
    assert!(out.contains("tenant acme: 30 days (default"), "{out}");
    let (ok, _, err) = cli(&app, &["set", "--tenant", "acme", "--days", "0"]).await;
    assert!(!ok);
    assert!(err.contains("--days"), "{err}");

    let (ok, out, err) = cli(&app, &["run"]).await;
    assert!(ok, "{out}{err}");
    assert!(out.contains("removed          5 message_logs"), "{out}");
    assert!(out.contains("removed         15 message_events"), "{out}");
    assert!(
        out.contains("tenant acme: 5 messages older than 30 days"),
        "{out}"
    );
    assert_eq!(messages_of(&app.pool, "acme").await, 0);
    assert_eq!(messages_of(&app.pool, "globex").await, 3);
    app.cleanup().await;
}

#[tokio::test]
async fn the_worker_runs_passes_on_its_schedule_and_counts_what_it_removed() {
    let app = TestApp::spawn_with(Options {
        vars: vec![("COMMUNICATION_RETENTION_INTERVAL", "1s".into())],
        worker: true,
    })
    .await;
    seed(&app.pool, "acme", 4, DAYS_40).await;
    seed(&app.pool, "acme", 1, TimeDelta::days(1)).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    while messages_of(&app.pool, "acme").await != 1 {
        assert!(
            Instant::now() < deadline,
            "the worker never removed the old messages"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let metrics = app.metrics_text().await;
    assert!(
        metrics.contains("communication_retention_deleted_total{table=\"message_logs\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("communication_retention_last_run_timestamp_seconds"));
    app.cleanup().await;
}
