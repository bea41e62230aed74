//! Crash and outage tests against the real binary: `communication serve` and
//! `communication worker` run as child processes against the real RabbitMQ, Redis and
//! Postgres, with Resend stood in for by a mock that honours our `Idempotency-Key` (the
//! message id). Each test checks that every accepted message ends in exactly one terminal
//! state and that the provider saw each message at most once per idempotency key.
//!
//! The shared services are never disturbed: the broker test closes only its own namespace's
//! connections (the service names them `{namespace}/{role}/{pid}`), and the Postgres test
//! crashes a private cluster of its own.

use crate::common;
use crate::crash_support;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use sqlx::PgPool;
use tokio::sync::Mutex;
use uuid::Uuid;

use crash_support::{
    BrokerProxy, Client, PrivatePostgres, Stack, calls_per_key, check_provider_keys,
    close_namespace_connections, consumers_of, eventually, rows,
};

/// The HTTP status of one send and, on 202, the accepted id.
type SendResult = (u16, Option<Uuid>);

async fn drop_database(db_name: &str) {
    if let Ok(admin) = PgPool::connect(common::PG_ADMIN).await {
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {db_name} WITH (FORCE)"
        )))
        .execute(&admin)
        .await;
    }
}

fn shared_database_url(db_name: &str) -> String {
    format!("postgres://postgres@127.0.0.1:5432/{db_name}")
}

/// Sends `total` emails, `parallel` at a time: (status, accepted id) of each.
async fn send_all(client: Arc<Client>, total: usize, parallel: usize) -> Vec<SendResult> {
    futures::stream::iter(0..total)
        .map(|n| {
            let c = client.clone();
            async move { c.send(n).await }
        })
        .buffer_unordered(parallel)
        .collect()
        .await
}

fn accepted_ids(results: &[SendResult]) -> HashSet<Uuid> {
    results.iter().filter_map(|(_, id)| *id).collect()
}

/// Waits until every id in `ids` is `sent` (or panics with the processes' logs).
async fn wait_all_sent(pool: &PgPool, ids: &HashSet<Uuid>, logs: &[&crash_support::Proc]) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(45);
    loop {
        let done = sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM message_logs WHERE status = 'sent' AND id = ANY($1)",
        )
        .bind(ids.iter().copied().collect::<Vec<_>>())
        .fetch_one(pool)
        .await
        .unwrap_or(-1);
        if done == ids.len() as i64 {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            let tails: Vec<String> = logs.iter().map(|p| p.log_tail()).collect();
            panic!(
                "only {done} of {} accepted messages reached sent\n{}",
                ids.len(),
                tails.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_batch_loses_nothing_and_its_successor_sends_nothing_twice() {
    const TOTAL: usize = 400;
    const CONCURRENCY: usize = 8;
    let (db_name, pool) = common::create_database().await;
    let stack = Stack::new(
        shared_database_url(&db_name),
        Duration::from_millis(30),
        &[
            ("COMMUNICATION_WORKER_CONCURRENCY", "8"),
            ("COMMUNICATION_PREFETCH", "16"),
        ],
    )
    .await;
    let serve = stack.serve("serve").await;
    let client = Arc::new(Client::new(serve.base.as_deref().expect("serve base")));
    client.create_resend_provider().await;
    // The whole batch waits in the queue first, so the worker is busy when it dies.
    let results = send_all(client.clone(), TOTAL, 16).await;
    let mut first = stack.worker("worker-1");
    // SIGKILL the worker once the provider has seen a quarter of the batch: deliveries are in
    // flight, others prefetched, most still queued.
    let s = &stack;
    eventually(
        Duration::from_secs(40),
        "the first worker to reach the provider 100 times",
        move || async move { (s.provider_calls().await >= 100).then_some(()) },
    )
    .await;
    first.kill9();
    let calls_at_kill = stack.provider_calls().await;
    let accepted = accepted_ids(&results);
    assert!(
        results
            .iter()
            .all(|(status, id)| *status == 202 && id.is_some()),
        "with the broker up every send is accepted: {:?}",
        results
            .iter()
            .filter(|r| r.0 != 202)
            .take(5)
            .collect::<Vec<_>>()
    );
    assert_eq!(accepted.len(), TOTAL);
    assert!(
        calls_at_kill < TOTAL,
        "the worker was killed mid-batch ({calls_at_kill} of {TOTAL} already sent)"
    );

    let second = stack.worker("worker-2");
    wait_all_sent(&pool, &accepted, &[&second, &serve]).await;

    // Exactly one row per accepted id, all sent, each accepted and sent exactly once.
    let rows = rows(&pool).await;
    assert_eq!(rows.len(), TOTAL, "no message row beyond the accepted ones");
    for id in &accepted {
        let row = rows.get(id).expect("every accepted id is recorded");
        assert_eq!(row.status, "sent", "{id}");
        assert_eq!(row.accepted_events, 1, "{id}: one accepted event");
        assert_eq!(row.sent_events, 1, "{id}: one sent event");
        assert!(
            (1..=2).contains(&row.attempts),
            "{id}: {} attempts",
            row.attempts
        );
    }
    let retried = rows.values().filter(|r| r.attempts == 2).count();
    assert!(
        retried <= CONCURRENCY,
        "only deliveries in flight at the kill are attempted again ({retried})"
    );

    // The provider: every call carried a known id as Idempotency-Key, every accepted id was
    // sent, and the only repeats are deliveries the killed worker had in flight (Resend
    // answers a repeated key with the first result: no second email).
    let keys = stack.provider_keys().await;
    let (calls, distinct) = check_provider_keys(&keys, &accepted);
    assert_eq!(
        distinct, accepted,
        "each accepted message reached the provider"
    );
    let repeats = calls - distinct.len();
    assert!(
        repeats <= CONCURRENCY,
        "{repeats} repeated calls; at most the {CONCURRENCY} in flight at the kill may repeat"
    );
    // The attempt is recorded before the provider is called, so no message was called more
    // often than it has recorded attempts.
    for (id, n) in calls_per_key(&keys) {
        let attempts = rows.get(&id).map(|r| r.attempts).unwrap_or(0);
        assert!(
            n as i32 <= attempts,
            "{id}: {n} calls but {attempts} attempts recorded"
        );
    }
    eprintln!(
        "worker killed after {calls_at_kill} provider calls; {TOTAL} accepted, all sent; \
         {calls} provider calls for {} ids ({repeats} repeats, {retried} re-attempted)",
        distinct.len()
    );

    drop(second);
    drop(serve);
    stack.remove_topology().await;
    pool.close().await;
    drop_database(&db_name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intake_and_workers_recover_when_the_broker_closes_their_connections_under_load() {
    const CONCURRENCY: usize = 16;
    const ROUNDS: usize = 2;
    let (db_name, pool) = common::create_database().await;
    let stack = Stack::new(
        shared_database_url(&db_name),
        Duration::from_millis(20),
        &[
            ("COMMUNICATION_WORKER_CONCURRENCY", "16"),
            ("COMMUNICATION_PREFETCH", "32"),
        ],
    )
    .await;
    let serve = stack.serve("serve").await;
    let client = Arc::new(Client::new(serve.base.as_deref().expect("serve base")));
    client.create_resend_provider().await;
    let workers = [stack.worker("worker-1"), stack.worker("worker-2")];
    let email_queue = format!("{}.send.email", stack.namespace);
    let consumers = |queue: String| async move {
        tokio::task::spawn_blocking(move || consumers_of(&queue))
            .await
            .unwrap_or(0)
    };
    {
        let q = email_queue.clone();
        eventually(
            Duration::from_secs(30),
            "both workers consuming",
            move || {
                let q = q.clone();
                async move { (consumers(q).await == 2).then_some(()) }
            },
        )
        .await;
    }

    // Load: four senders until the closing rounds are done.
    let stop = Arc::new(AtomicBool::new(false));
    let next = Arc::new(AtomicUsize::new(0));
    let results: Arc<Mutex<Vec<SendResult>>> = Arc::default();
    let accepted_so_far = Arc::new(AtomicUsize::new(0));
    let mut senders = Vec::new();
    for _ in 0..4 {
        let (client, stop, next, results, accepted_so_far) = (
            client.clone(),
            stop.clone(),
            next.clone(),
            results.clone(),
            accepted_so_far.clone(),
        );
        senders.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let n = next.fetch_add(1, Ordering::Relaxed);
                // A safety stop only: the loop ends when the closing rounds are done.
                if n >= 20_000 {
                    break;
                }
                let r = client.send(n).await;
                if r.0 == 202 {
                    accepted_so_far.fetch_add(1, Ordering::Relaxed);
                }
                results.lock().await.push(r);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }

    let expected: Vec<String> =
        std::iter::once(format!("{}/intake/{}", stack.namespace, serve.pid()))
            .chain(
                workers
                    .iter()
                    .map(|w| format!("{}/worker/{}", stack.namespace, w.pid())),
            )
            .collect();
    for round in 0..=ROUNDS {
        // Some traffic accepted since the last close: intake is (back) up.
        let floor = accepted_so_far.load(Ordering::Relaxed) + 50;
        let a = accepted_so_far.clone();
        eventually(
            Duration::from_secs(30),
            &format!("50 more sends accepted (round {round})"),
            move || {
                let a = a.clone();
                async move { (a.load(Ordering::Relaxed) >= floor).then_some(()) }
            },
        )
        .await;
        if round == ROUNDS {
            break;
        }
        let ns = stack.namespace.clone();
        let closed = tokio::task::spawn_blocking(move || close_namespace_connections(&ns))
            .await
            .expect("close connections");
        for name in &expected {
            assert!(
                closed.contains(name),
                "round {round}: {name} was connected and got closed; closed {closed:?}"
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    for s in senders {
        s.await.expect("sender task");
    }
    let results = results.lock().await.clone();
    let mut by_status: HashMap<u16, usize> = HashMap::new();
    for (status, _) in &results {
        *by_status.entry(*status).or_insert(0) += 1;
    }
    assert!(
        by_status.keys().all(|s| *s == 202 || *s == 503),
        "intake answers only 202 or 503 while its connection is cut: {by_status:?}"
    );
    let refused = by_status.get(&503).copied().unwrap_or(0);
    let accepted = accepted_ids(&results);

    // Both workers re-subscribed and every accepted message was delivered.
    let q = email_queue.clone();
    eventually(
        Duration::from_secs(30),
        "both workers consuming again",
        move || {
            let q = q.clone();
            async move { (consumers(q).await == 2).then_some(()) }
        },
    )
    .await;
    wait_all_sent(&pool, &accepted, &[&serve, &workers[0], &workers[1]]).await;

    // A 503 means "not accepted"; the publish may still have reached the queue before the
    // confirm was lost, so a refused send can be delivered too, but never more of them than
    // were refused, and none of them is left unfinished.
    let extra: HashSet<Uuid> = rows(&pool)
        .await
        .into_keys()
        .filter(|id| !accepted.contains(id))
        .collect();
    assert!(
        extra.len() <= refused,
        "{} unaccepted messages recorded, {refused} refused",
        extra.len()
    );
    wait_all_sent(&pool, &extra, &[&serve]).await;
    let rows = rows(&pool).await;
    for id in &accepted {
        let row = rows.get(id).expect("every accepted id is recorded");
        assert_eq!(row.status, "sent", "{id}");
        assert!(row.sent_events >= 1, "{id}: a sent event");
    }

    let known: HashSet<Uuid> = rows.keys().copied().collect();
    let keys = stack.provider_keys().await;
    let (calls, distinct) = check_provider_keys(&keys, &known);
    assert!(
        accepted.is_subset(&distinct),
        "each accepted message reached the provider"
    );
    // A delivery in flight when its channel is closed returns to the queue while its first
    // attempt is still running, so another consumer can attempt it at the same time: those
    // repeats carry the same Idempotency-Key. Bounded by what can be in flight per close.
    let repeats = calls - distinct.len();
    let bound = ROUNDS * workers.len() * CONCURRENCY;
    assert!(
        repeats <= bound,
        "{repeats} repeated provider calls (bound {bound})"
    );
    // Such a concurrent repeat is also the only way to a second `sent` event (the status
    // itself never changes once final).
    let doubled = rows.values().filter(|r| r.sent_events > 1).count();
    assert!(
        doubled <= repeats,
        "{doubled} messages with two sent events"
    );
    eprintln!(
        "{} sends: {by_status:?}; {} accepted, all sent; {} refused sends delivered anyway; \
         {calls} provider calls, {repeats} repeats",
        results.len(),
        accepted.len(),
        extra.len()
    );

    drop(workers);
    drop(serve);
    stack.remove_topology().await;
    pool.close().await;
    drop_database(&db_name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_crash_mid_batch_loses_nothing_and_sends_nothing_twice() {
    const TOTAL: usize = 200;
    let pg = tokio::task::spawn_blocking(PrivatePostgres::start)
        .await
        .expect("private postgres");
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(2))
        .connect(&pg.url())
        .await
        .expect("connect the private cluster");
    communication::store::migrate(&pool).await.expect("migrate");
    let stack = Stack::new(
        pg.url(),
        Duration::from_millis(200),
        &[
            ("COMMUNICATION_WORKER_CONCURRENCY", "8"),
            ("COMMUNICATION_PREFETCH", "16"),
        ],
    )
    .await;
    let serve = stack.serve("serve").await;
    let client = Arc::new(Client::new(serve.base.as_deref().expect("serve base")));
    client.create_resend_provider().await;
    // Most of the batch waits in the queue first, so the worker is busy when Postgres dies.
    let mut results = send_all(client.clone(), 150, 16).await;
    let worker = stack.worker("worker");
    let s = &stack;
    eventually(
        Duration::from_secs(40),
        "the worker to reach the provider 40 times",
        move || async move { (s.provider_calls().await >= 40).then_some(()) },
    )
    .await;
    let pg = Arc::new(pg);
    let p = pg.clone();
    tokio::task::spawn_blocking(move || p.crash())
        .await
        .expect("crash postgres");
    let calls_at_crash = stack.provider_calls().await;
    // The outage: long enough for the worker's writer to give up on a connection (5 s per
    // try) twice, so the provider calls in flight at the crash (the mock answers after 200 ms,
    // so nearly all of the worker's time is spent there) come back to a write that fails.
    // Intake keeps accepting meanwhile: the send path never touches Postgres.
    let outage = tokio::time::Instant::now();
    results.extend(send_all(client.clone(), TOTAL - 150, 16).await);
    tokio::time::sleep_until(outage + Duration::from_secs(12)).await;
    let p = pg.clone();
    tokio::task::spawn_blocking(move || p.pg_start())
        .await
        .expect("restart postgres");

    assert!(
        results
            .iter()
            .all(|(status, id)| *status == 202 && id.is_some()),
        "intake accepts while Postgres is down: {:?}",
        results
            .iter()
            .filter(|r| r.0 != 202)
            .take(5)
            .collect::<Vec<_>>()
    );
    let accepted = accepted_ids(&results);
    assert_eq!(accepted.len(), TOTAL);
    assert!(
        calls_at_crash < TOTAL,
        "Postgres crashed mid-batch ({calls_at_crash} of {TOTAL} already sent)"
    );
    wait_all_sent(&pool, &accepted, &[&worker, &serve]).await;

    let rows = rows(&pool).await;
    assert_eq!(rows.len(), TOTAL, "no message row beyond the accepted ones");
    let mut doubled_events = 0;
    for id in &accepted {
        let row = rows.get(id).expect("every accepted id is recorded");
        assert_eq!(row.status, "sent", "{id}");
        // A commit cut off by the crash may have landed although the worker saw an error;
        // its retry then records the event a second time. The status never changes back.
        assert!(row.sent_events >= 1, "{id}: a sent event");
        if row.sent_events > 1 {
            doubled_events += 1;
        }
    }
    // No duplicate at all: a send the provider accepted is held until `sent` is recorded
    // (the write is retried, not the send), and everything else is retried before the call.
    let keys = stack.provider_keys().await;
    let (calls, distinct) = check_provider_keys(&keys, &accepted);
    assert_eq!(
        distinct, accepted,
        "each accepted message reached the provider"
    );
    assert_eq!(
        calls,
        TOTAL,
        "each message was sent exactly once; repeated: {:?}",
        calls_per_key(&keys)
            .into_iter()
            .filter(|(_, n)| *n > 1)
            .collect::<Vec<_>>()
    );
    let log = worker.log_text();
    assert!(
        ["write failed", "could not record", "could not resolve"]
            .iter()
            .any(|m| log.contains(m)),
        "the worker felt the outage\n{}",
        worker.log_tail()
    );
    let held = log.matches("retrying the write, not the send").count();
    let requeued = log.matches("will retry").count();
    assert!(
        held > 0,
        "a send the provider accepted met the outage when recording it\n{}",
        worker.log_tail()
    );
    eprintln!(
        "Postgres crashed after {calls_at_crash} provider calls; {TOTAL} accepted, all sent \
         exactly once; {doubled_events} messages with a doubled sent event; {held} sent \
         outcomes held, {requeued} deliveries requeued during the outage"
    );

    drop(worker);
    drop(serve);
    stack.remove_topology().await;
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_broker_is_away_intake_answers_503_and_every_202_is_sent_after_it_returns() {
    // Serve and worker reach RabbitMQ through a proxy this test can cut: the broker goes away
    // for them only.
    let proxy = BrokerProxy::start().await;
    let (db_name, pool) = common::create_database().await;
    let amqp = proxy.amqp_url();
    let stack = Stack::new(
        shared_database_url(&db_name),
        Duration::from_millis(20),
        &[
            ("AMQP_URL", amqp.as_str()),
            ("COMMUNICATION_WORKER_CONCURRENCY", "8"),
            ("COMMUNICATION_PREFETCH", "16"),
        ],
    )
    .await;
    let serve = stack.serve("serve").await;
    let client = Arc::new(Client::new(serve.base.as_deref().expect("serve base")));
    client.create_resend_provider().await;
    let worker = stack.worker("worker");

    // Load: four senders; each result is stamped with when its request started and ended.
    let started = tokio::time::Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let next = Arc::new(AtomicUsize::new(0));
    type Stamped = (Duration, Duration, SendResult);
    let results: Arc<Mutex<Vec<Stamped>>> = Arc::default();
    let accepted_so_far = Arc::new(AtomicUsize::new(0));
    let refused_so_far = Arc::new(AtomicUsize::new(0));
    let mut senders = Vec::new();
    for _ in 0..4 {
        let (client, stop, next, results, accepted_so_far, refused_so_far) = (
            client.clone(),
            stop.clone(),
            next.clone(),
            results.clone(),
            accepted_so_far.clone(),
            refused_so_far.clone(),
        );
        senders.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= 20_000 {
                    break;
                }
                let from = started.elapsed();
                let r = client.send(n).await;
                match r.0 {
                    202 => accepted_so_far.fetch_add(1, Ordering::Relaxed),
                    503 => refused_so_far.fetch_add(1, Ordering::Relaxed),
                    _ => 0,
                };
                results.lock().await.push((from, started.elapsed(), r));
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }
    let more_accepted = |what: &str, n: usize| {
        let floor = accepted_so_far.load(Ordering::Relaxed) + n;
        let a = accepted_so_far.clone();
        let what = what.to_owned();
        async move {
            eventually(Duration::from_secs(30), &what, move || {
                let a = a.clone();
                async move { (a.load(Ordering::Relaxed) >= floor).then_some(()) }
            })
            .await
        }
    };
    more_accepted("50 sends accepted before the outage", 50).await;

    proxy.cut();
    let cut_at = started.elapsed();
    let refused_before = refused_so_far.load(Ordering::Relaxed);
    let r = refused_so_far.clone();
    eventually(
        Duration::from_secs(30),
        "intake to refuse 20 sends while the broker is away",
        move || {
            let r = r.clone();
            async move { (r.load(Ordering::Relaxed) >= refused_before + 20).then_some(()) }
        },
    )
    .await;
    // Keep the broker away a little longer than the worker's first reconnect attempts.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let restored_at = started.elapsed();
    proxy.restore();
    more_accepted("50 sends accepted after the broker returned", 50).await;
    stop.store(true, Ordering::Relaxed);
    for s in senders {
        s.await.expect("sender task");
    }
    let results = results.lock().await.clone();

    let mut by_status: HashMap<u16, usize> = HashMap::new();
    for (_, _, (status, _)) in &results {
        *by_status.entry(*status).or_insert(0) += 1;
    }
    assert!(
        by_status.keys().all(|s| *s == 202 || *s == 503),
        "intake answers only 202 or 503: {by_status:?}"
    );
    // A request that started after the cut (allowing the proxy a moment to drop its
    // connections) and ended before the broker came back cannot have been confirmed.
    let grace = Duration::from_millis(200);
    let during: Vec<&Stamped> = results
        .iter()
        .filter(|(from, to, _)| *from >= cut_at + grace && *to <= restored_at)
        .collect();
    assert!(
        !during.is_empty(),
        "requests were made while the broker was away"
    );
    assert!(
        during.iter().all(|(_, _, (status, _))| *status == 503),
        "only 503 while the broker is away: {:?}",
        during
            .iter()
            .filter(|r| r.2.0 != 503)
            .take(5)
            .collect::<Vec<_>>()
    );
    let refused = by_status.get(&503).copied().unwrap_or(0);
    let plain: Vec<SendResult> = results.iter().map(|r| r.2).collect();
    let accepted = accepted_ids(&plain);

    // The worker reconnected and re-subscribed; everything accepted was delivered once.
    let q = format!("{}.send.email", stack.namespace);
    eventually(
        Duration::from_secs(30),
        "the worker consuming again",
        move || {
            let q = q.clone();
            async move {
                let q2 = q.clone();
                let n = tokio::task::spawn_blocking(move || consumers_of(&q2))
                    .await
                    .unwrap_or(0);
                (n == 1).then_some(())
            }
        },
    )
    .await;
    wait_all_sent(&pool, &accepted, &[&serve, &worker]).await;
    // Refused sends whose publish reached the queue anyway are delivered too (see the broker
    // test above): never more than were refused, none left unfinished.
    let extra_ids: HashSet<Uuid> = rows(&pool)
        .await
        .into_keys()
        .filter(|id| !accepted.contains(id))
        .collect();
    let extra = extra_ids.len();
    assert!(
        extra <= refused,
        "{extra} unaccepted messages recorded, {refused} refused"
    );
    wait_all_sent(&pool, &extra_ids, &[&serve, &worker]).await;
    let rows = rows(&pool).await;
    for (id, row) in &rows {
        assert_eq!(row.status, "sent", "{id}");
        assert!(row.sent_events >= 1, "{id}: a sent event");
    }
    let known: HashSet<Uuid> = rows.keys().copied().collect();
    let keys = stack.provider_keys().await;
    let (calls, distinct) = check_provider_keys(&keys, &known);
    assert!(
        accepted.is_subset(&distinct),
        "each accepted message was sent"
    );
    let repeats = calls - distinct.len();
    assert!(
        repeats <= 8,
        "{repeats} repeated provider calls (bound: the worker's 8 in flight)"
    );
    let doubled = rows.values().filter(|r| r.sent_events > 1).count();
    assert!(
        doubled <= repeats,
        "{doubled} messages with two sent events"
    );
    eprintln!(
        "{} sends: {by_status:?}; {} during the outage (all 503); {} accepted, all sent; \
         {extra} refused sends delivered anyway; {calls} provider calls, {repeats} repeats",
        results.len(),
        during.len(),
        accepted.len()
    );

    drop(worker);
    drop(serve);
    stack.remove_topology().await;
    pool.close().await;
    drop_database(&db_name).await;
}
