//! The writer's batch statements: the one-statement update that returns what each row was
//! before (`messages::write_steps`), the stats rollup kept exact by a batch that mixes every
//! kind of row, and concurrent batches over the same rows without deadlocks.

use std::time::Duration;

use chrono::Utc;
use communication::store::dead_letters::{self, DeadLetter, KIND_FAILED};
use communication::store::messages::{self, ClaimOutcome, NewEvent, NewMessage, StatusUpdate};
use communication::store::stats::{self, RollupDelta};
use communication::worker::writer::{Record, Writer};
use rand::seq::SliceRandom;
use serde_json::json;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use uuid::Uuid;

use crate::common::{create_database, drop_database};

fn message(tenant: &str, key: Option<&str>) -> NewMessage {
    NewMessage {
        id: Uuid::new_v4(),
        tenant_id: tenant.to_owned(),
        channel: "sms".into(),
        recipient: "+14155550100".into(),
        idempotency_key: key.map(str::to_owned),
        metadata: Some(json!({"order": 7})),
        ttl_seconds: None,
        created_at: Utc::now(),
    }
}

fn update(id: Uuid, status: &str, provider: Option<Uuid>) -> StatusUpdate {
    StatusUpdate {
        id,
        status: status.into(),
        provider_id: provider,
        provider_kind: provider.map(|_| "system".into()),
        provider_message_id: (status == "sent").then(|| format!("pm-{id}")),
        attempts_inc: i32::from(status == "sending"),
        last_error: (status == "failed").then(|| "gave up".into()),
    }
}

fn event(m: &NewMessage, kind: &'static str) -> NewEvent {
    NewEvent {
        message_id: m.id,
        tenant_id: m.tenant_id.clone(),
        kind,
        provider_id: None,
        detail: Some(json!({"step": kind})),
        at: Utc::now(),
    }
}

fn step(m: &NewMessage, status: &str, provider: Option<Uuid>, kind: &'static str) -> Record {
    Record {
        update: Some(update(m.id, status, provider)),
        events: vec![event(m, kind)],
        dead_letter: None,
    }
}

async fn status_of(pool: &PgPool, id: Uuid) -> Option<(String, Option<Uuid>, i32)> {
    sqlx::query_as("SELECT status, provider_id, attempts FROM message_logs WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await
        .expect("query message")
}

async fn event_kinds(pool: &PgPool, id: Uuid) -> Vec<String> {
    sqlx::query_scalar("SELECT kind FROM message_events WHERE message_id = $1 ORDER BY id")
        .bind(id)
        .fetch_all(pool)
        .await
        .expect("query events")
}

type CountRow = (String, chrono::DateTime<Utc>, String, Uuid, String, i64);

/// The rollup must always equal a recount of `message_logs` (every change in these tests
/// goes through the writer or the rollup-aware store functions).
async fn assert_rollup_matches_messages(pool: &PgPool) {
    for (grain, table) in [
        ("hour", "message_stats_hourly"),
        ("day", "message_stats_daily"),
    ] {
        let recount: Vec<CountRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT tenant_id, date_trunc('{grain}', created_at, 'UTC'), channel, \
                    COALESCE(provider_id, '00000000-0000-0000-0000-000000000000'::uuid), status, \
                    count(*) \
             FROM message_logs GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5"
        )))
        .fetch_all(pool)
        .await
        .expect("recount messages");
        let rollup: Vec<CountRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT tenant_id, period_start, channel, provider_id, status, sum(count)::bigint \
             FROM {table} GROUP BY 1, 2, 3, 4, 5 HAVING sum(count) <> 0 ORDER BY 1, 2, 3, 4, 5"
        )))
        .fetch_all(pool)
        .await
        .expect("read rollup");
        assert_eq!(
            rollup, recount,
            "{table} must equal a recount of message_logs"
        );
    }
}

/// The accept → sent samples the latency rollup holds (hourly, daily).
async fn latency_samples(pool: &PgPool) -> (i64, i64) {
    let mut totals = [0i64; 2];
    for (i, table) in ["message_latency_hourly", "message_latency_daily"]
        .iter()
        .enumerate()
    {
        totals[i] = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT COALESCE(sum(b), 0)::bigint FROM {table}, unnest(buckets) AS b"
        )))
        .fetch_one(pool)
        .await
        .expect("read latencies");
    }
    (totals[0], totals[1])
}

#[tokio::test]
async fn the_one_statement_update_returns_what_each_changed_row_was_before() {
    let (db, pool) = create_database().await;
    let provider = Uuid::new_v4();
    let other = Uuid::new_v4();
    let (queued, sending, sent, failed) = (
        message("t1", None),
        message("t1", None),
        message("t1", None),
        message("t1", None),
    );
    let mut conn = pool.acquire().await.expect("connection");
    let claimed = messages::claim_messages(
        &mut conn,
        &[
            queued.clone(),
            sending.clone(),
            sent.clone(),
            failed.clone(),
        ],
    )
    .await
    .expect("claim");
    assert!(claimed.iter().all(|o| *o == ClaimOutcome::New));
    let setup = [
        update(sending.id, "sending", Some(provider)),
        update(sent.id, "sent", Some(provider)),
        update(failed.id, "failed", None),
    ];
    let setup: Vec<&StatusUpdate> = setup.iter().collect();
    let changed = messages::write_steps(&mut conn, &setup, &[], &[])
        .await
        .expect("setup");
    assert_eq!(changed.len(), 3, "all three were queued: {changed:?}");
    assert!(changed.iter().all(|c| c.before.status == "queued"));

    // One batch: an update of each, one of a message that does not exist, events, and a
    // dead letter.
    let updates = [
        update(queued.id, "sending", Some(other)),
        update(sending.id, "sent", None),
        update(sent.id, "failed", None),
        update(failed.id, "sending", Some(other)),
        update(Uuid::new_v4(), "sent", None),
    ];
    let updates: Vec<&StatusUpdate> = updates.iter().collect();
    let events = [event(&queued, "attempt"), event(&sending, "sent")];
    let events: Vec<&NewEvent> = events.iter().collect();
    let dead_id = dead_letters::reserve_id(&pool)
        .await
        .expect("dead letter id");
    let dead = DeadLetter {
        id: dead_id,
        message_id: Some(sent.id),
        tenant_id: Some("t1".into()),
        reason: "gave up".into(),
        kind: KIND_FAILED,
        channel: Some("sms".into()),
        routing_key: Some("send.sms".into()),
        body: None,
    };
    let mut changed = messages::write_steps(&mut conn, &updates, &events, &[&dead])
        .await
        .expect("batch");
    changed.sort_by_key(|c| if c.before.id == queued.id { 0 } else { 1 });
    let seen: Vec<_> = changed
        .iter()
        .map(|c| {
            (
                c.before.id,
                c.before.status.as_str(),
                c.before.provider_id,
                c.status.as_str(),
                c.provider_id,
            )
        })
        .collect();
    // Only the rows still queued or sending changed; a final row does not move back.
    assert_eq!(
        seen,
        vec![
            (queued.id, "queued", None, "sending", Some(other)),
            (
                sending.id,
                "sending",
                Some(provider),
                "sent",
                Some(provider)
            ),
        ]
    );
    assert!(
        changed
            .iter()
            .all(|c| c.before.tenant_id == "t1" && c.before.channel == "sms")
    );
    assert_eq!(
        status_of(&pool, queued.id).await,
        Some(("sending".into(), Some(other), 1))
    );
    assert_eq!(
        status_of(&pool, sending.id).await,
        Some(("sent".into(), Some(provider), 1))
    );
    assert_eq!(
        status_of(&pool, sent.id).await,
        Some(("sent".into(), Some(provider), 0))
    );
    assert_eq!(
        status_of(&pool, failed.id).await,
        Some(("failed".into(), None, 0))
    );
    assert_eq!(
        event_kinds(&pool, queued.id).await,
        vec!["accepted", "attempt"]
    );
    assert_eq!(
        event_kinds(&pool, sending.id).await,
        vec!["accepted", "sent"]
    );
    let dead_for: Option<Uuid> =
        sqlx::query_scalar("SELECT message_id FROM dead_letters WHERE id = $1")
            .bind(dead_id)
            .fetch_one(&pool)
            .await
            .expect("dead letter written");
    assert_eq!(dead_for, Some(sent.id));

    // Nothing to write: no statement, nothing returned.
    assert!(
        messages::write_steps(&mut conn, &[], &[], &[])
            .await
            .expect("empty")
            .is_empty()
    );
    drop(conn);
    pool.close().await;
    drop_database(&db).await;
}

#[tokio::test]
async fn a_batch_mixing_every_kind_of_row_moves_the_rollup_exactly() {
    let (db, pool) = create_database().await;
    let provider = Uuid::new_v4();
    // One batch at a time, so the batch after a blocked one gathers everything sent meanwhile.
    let (writer, task) = Writer::spawn(pool.clone(), 500, Duration::from_millis(2), 1);

    // Earlier batches: messages in each state, through the writer.
    let to_send = message("t1", None);
    let to_fail = message("t1", None);
    let done = message("t1", None);
    let queued = message("t2", None);
    let redelivered = message("t1", Some("k-redelivered"));
    let blocker = message("t1", None);
    for m in [&to_send, &to_fail, &done, &redelivered, &blocker] {
        let o = writer
            .claim_then(
                m.clone(),
                Some(step(m, "sending", Some(provider), "attempt")),
            )
            .await
            .expect("claim");
        assert_eq!(o, ClaimOutcome::New);
    }
    assert_eq!(
        writer.claim(queued.clone()).await.expect("claim"),
        ClaimOutcome::New
    );
    writer
        .record(step(&done, "sent", None, "sent"))
        .await
        .expect("sent");
    assert_rollup_matches_messages(&pool).await;

    // Hold the blocker's row: the next batch (its update) waits, and everything sent while it
    // waits gathers into the batch after it.
    let mut lock = pool.begin().await.expect("begin");
    sqlx::query("SELECT 1 FROM message_logs WHERE id = $1 FOR UPDATE")
        .bind(blocker.id)
        .execute(&mut *lock)
        .await
        .expect("lock blocker");
    let blocked = {
        let writer = writer.clone();
        let record = step(&blocker, "sent", None, "sent");
        tokio::spawn(async move { writer.record(record).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;

    let fresh = message("t1", None);
    let fresh_bare = message("t2", None);
    let duplicate = message("t1", Some("k-redelivered"));
    let dead_id = dead_letters::reserve_id(&pool)
        .await
        .expect("dead letter id");
    let mut failing = step(&to_fail, "failed", None, "failed");
    failing.dead_letter = Some(DeadLetter {
        id: dead_id,
        message_id: Some(to_fail.id),
        tenant_id: Some("t1".into()),
        reason: "gave up".into(),
        kind: KIND_FAILED,
        channel: Some("sms".into()),
        routing_key: Some("send.sms".into()),
        body: None,
    });
    let mut calls = tokio::task::JoinSet::new();
    let claims = [
        // New, inserted already sending.
        (
            fresh.clone(),
            Some(step(&fresh, "sending", Some(provider), "attempt")),
        ),
        // New, no first step: counted queued.
        (fresh_bare.clone(), None),
        // Known and not final: its attempt is an update in the batch.
        (
            redelivered.clone(),
            Some(step(&redelivered, "sending", Some(provider), "attempt")),
        ),
        // Known and final: nothing of its step is written.
        (
            done.clone(),
            Some(step(&done, "sending", Some(provider), "attempt")),
        ),
        // Another message holding a key: a duplicate.
        (
            duplicate.clone(),
            Some(step(&duplicate, "sending", Some(provider), "attempt")),
        ),
    ];
    for (m, then) in claims {
        let writer = writer.clone();
        calls.spawn(async move {
            let id = m.id;
            (id, writer.claim_then(m, then).await.map(Some))
        });
    }
    let records = [
        step(&to_send, "sent", None, "sent"),
        failing,
        step(&queued, "sending", Some(provider), "attempt"),
        // A final message: does not move back.
        step(&done, "failed", None, "failed"),
    ];
    for record in records {
        let writer = writer.clone();
        calls.spawn(async move {
            let id = record.update.as_ref().map_or(Uuid::nil(), |u| u.id);
            (id, writer.record(record).await.map(|()| None))
        });
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    lock.rollback().await.expect("release blocker");
    blocked
        .await
        .expect("blocked task")
        .expect("blocked record");
    let mut outcomes = std::collections::HashMap::new();
    while let Some(joined) = calls.join_next().await {
        let (id, result) = joined.expect("call task");
        if let Some(outcome) = result.expect("every write succeeds") {
            outcomes.insert(id, outcome);
        }
    }
    assert_eq!(outcomes[&fresh.id], ClaimOutcome::New);
    assert_eq!(outcomes[&fresh_bare.id], ClaimOutcome::New);
    assert!(matches!(
        &outcomes[&redelivered.id],
        ClaimOutcome::Existing { status, .. } if status == "sending"
    ));
    assert!(matches!(
        &outcomes[&done.id],
        ClaimOutcome::Existing { status, .. } if status == "sent"
    ));
    assert_eq!(
        outcomes[&duplicate.id],
        ClaimOutcome::Duplicate {
            of: Some(redelivered.id)
        }
    );

    assert_eq!(
        status_of(&pool, fresh.id).await,
        Some(("sending".into(), Some(provider), 1))
    );
    assert_eq!(
        status_of(&pool, fresh_bare.id).await,
        Some(("queued".into(), None, 0))
    );
    assert_eq!(
        status_of(&pool, redelivered.id).await,
        Some(("sending".into(), Some(provider), 2))
    );
    assert_eq!(
        status_of(&pool, done.id).await,
        Some(("sent".into(), Some(provider), 1))
    );
    assert_eq!(status_of(&pool, duplicate.id).await, None);
    assert_eq!(
        status_of(&pool, to_send.id).await,
        Some(("sent".into(), Some(provider), 1))
    );
    assert_eq!(
        status_of(&pool, to_fail.id).await,
        Some(("failed".into(), Some(provider), 1))
    );
    assert_eq!(
        status_of(&pool, queued.id).await,
        Some(("sending".into(), Some(provider), 1))
    );
    // A record's events are written whatever its update does; the final message's claim
    // adds none.
    assert_eq!(
        event_kinds(&pool, done.id).await,
        vec!["accepted", "attempt", "sent", "failed"]
    );
    assert_eq!(
        event_kinds(&pool, redelivered.id).await,
        vec!["accepted", "attempt", "attempt"]
    );
    let dead: i64 = sqlx::query_scalar("SELECT count(*) FROM dead_letters WHERE message_id = $1")
        .bind(to_fail.id)
        .fetch_one(&pool)
        .await
        .expect("dead letters");
    assert_eq!(dead, 1);

    assert_rollup_matches_messages(&pool).await;
    // One sample per message the writer moved to `sent`: done, blocker, to_send.
    assert_eq!(latency_samples(&pool).await, (3, 3));

    drop(writer);
    task.await.expect("writer stops");
    pool.close().await;
    drop_database(&db).await;
}

#[tokio::test]
async fn concurrent_batches_over_the_same_rows_do_not_deadlock() {
    let (db, pool) = create_database().await;
    pool.close().await;
    let pool = PgPoolOptions::new()
        .max_connections(8)
        .connect(&format!("postgres://postgres@127.0.0.1:5432/{db}"))
        .await
        .expect("connect");
    let provider = Uuid::new_v4();
    let shared: Vec<NewMessage> = (0..60)
        .map(|i| message(if i % 2 == 0 { "t1" } else { "t2" }, None))
        .collect();
    {
        let mut tx = pool.begin().await.expect("begin");
        let outcomes = messages::claim_messages(&mut tx, &shared)
            .await
            .expect("claim");
        let mut delta = RollupDelta::default();
        for (m, o) in shared.iter().zip(outcomes) {
            assert_eq!(o, ClaimOutcome::New);
            delta.count(&m.tenant_id, m.created_at, &m.channel, None, "queued", 1);
        }
        stats::apply_delta(&mut tx, &delta, 0).await.expect("count");
        tx.commit().await.expect("commit");
    }

    // Several "workers" each write batches moving overlapping, shuffled sets of the same
    // messages between queued and sending, all into the same rollup slot and rows.
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..6u64 {
        let pool = pool.clone();
        let shared = shared.clone();
        workers.spawn(async move {
            for round in 0..25u64 {
                let mut picked: Vec<&NewMessage> = shared.iter().collect();
                picked.shuffle(&mut rand::rng());
                picked.truncate(40);
                let status = if (w + round) % 2 == 0 {
                    "sending"
                } else {
                    "queued"
                };
                let updates: Vec<StatusUpdate> = picked
                    .iter()
                    .map(|m| update(m.id, status, Some(provider)))
                    .collect();
                let updates: Vec<&StatusUpdate> = updates.iter().collect();
                let events: Vec<NewEvent> = picked.iter().map(|m| event(m, "attempt")).collect();
                let events: Vec<&NewEvent> = events.iter().collect();
                let mut tx = pool.begin().await?;
                let changed = messages::write_steps(&mut tx, &updates, &events, &[]).await?;
                let mut delta = RollupDelta::default();
                for c in &changed {
                    delta.moved(&c.before, &c.status, c.provider_id, Utc::now());
                }
                stats::apply_delta(&mut tx, &delta, 0).await?;
                tx.commit().await?;
            }
            Ok::<_, sqlx::Error>(())
        });
    }
    while let Some(done) = workers.join_next().await {
        done.expect("worker task")
            .expect("no batch fails (a deadlock would)");
    }
    assert_rollup_matches_messages(&pool).await;
    pool.close().await;
    drop_database(&db).await;
}

#[tokio::test]
async fn a_request_after_a_quiet_spell_does_not_wait_for_the_linger() {
    let (db, pool) = create_database().await;
    // A linger far longer than any write: a request that waited for it would be obvious.
    let (writer, task) = Writer::spawn(pool.clone(), 500, Duration::from_secs(3), 2);
    for _ in 0..2 {
        let m = message("t1", None);
        let started = std::time::Instant::now();
        let outcome = writer.claim(m).await.expect("claim");
        assert_eq!(outcome, ClaimOutcome::New);
        assert!(
            started.elapsed() < Duration::from_millis(1500),
            "a lone request waited {:?}",
            started.elapsed()
        );
        // Quiet again (nothing written, nothing received for the linger).
        tokio::time::sleep(Duration::from_millis(3100)).await;
    }
    drop(writer);
    task.await.expect("writer stops");
    pool.close().await;
    drop_database(&db).await;
}
