//! kill -9 of a worker while every lane (and the entry queue the router drains) is full: every
//! accepted message still ends `sent`, once. Runs `communication serve` and `communication
//! worker` as child processes, as the crash tests do (see `crash`).

use crate::common;
use crate::crash_support::{self, Client, SERVICE_TOKEN, Stack, TENANT, eventually, rows};

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use lapin::BasicProperties;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

const PRIORITIES: [&str; 3] = ["high", "normal", "bulk"];

/// Sends email `n` over HTTP with a priority by turns: the accepted id.
async fn send(client: &Client, n: usize) -> Option<Uuid> {
    let r = client
        .http
        .post(format!("{}/v1/send", client.base))
        .bearer_auth(SERVICE_TOKEN)
        .header("X-Tenant-Id", TENANT)
        .json(
            &json!({"channel": "email", "to": format!("user{n}@example.com"),
                      "content": {"subject": "Receipt", "text": format!("Thanks, order {n}")},
                      "priority": PRIORITIES[n % 3]}),
        )
        .send()
        .await
        .ok()?;
    if r.status() != 202 {
        return None;
    }
    let body: Value = r.json().await.ok()?;
    body["id"].as_str().and_then(|s| Uuid::parse_str(s).ok())
}

/// Publishes `n` envelopes to the entry queue as a direct publisher would: their ids.
async fn publish_direct(namespace: &str, n: usize) -> HashSet<Uuid> {
    let conn = lapin::Connection::connect(common::AMQP, Default::default())
        .await
        .expect("rabbitmq");
    let ch = conn.create_channel().await.expect("channel");
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm");
    let mut ids = HashSet::new();
    for i in 0..n {
        let id = Uuid::now_v7();
        let mut env = common::envelope(
            TENANT,
            id,
            "email",
            &format!("direct{i}@example.com"),
            json!({"subject": "Hello", "text": "direct"}),
        );
        env["priority"] = json!(PRIORITIES[i % 3]);
        let confirm = ch
            .basic_publish(
                format!("{namespace}.send").into(),
                "email".into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                env.to_string().as_bytes(),
                BasicProperties::default()
                    .with_delivery_mode(2)
                    .with_content_type("application/json".into())
                    .with_message_id(id.to_string().into()),
            )
            .await
            .expect("publish")
            .await
            .expect("confirm");
        assert!(confirm.is_ack() && confirm.take_message().is_none());
        ids.insert(id);
    }
    let _ = conn.close(200, "done".into()).await;
    ids
}

async fn sent_of(pool: &PgPool, ids: &HashSet<Uuid>) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM message_logs WHERE status = 'sent' AND id = ANY($1)")
        .bind(ids.iter().copied().collect::<Vec<_>>())
        .fetch_one(pool)
        .await
        .unwrap_or(-1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_with_every_lane_full_loses_nothing() {
    const HTTP: usize = 240;
    const DIRECT: usize = 90;
    let (db_name, pool) = common::create_database().await;
    let stack = Stack::new(
        format!("postgres://postgres@127.0.0.1:5432/{db_name}"),
        Duration::from_millis(40),
        &[
            ("COMMUNICATION_WORKER_CONCURRENCY", "8"),
            ("COMMUNICATION_PREFETCH", "8"),
        ],
    )
    .await;
    let serve = stack.serve("serve").await;
    let client = Arc::new(Client::new(serve.base.as_deref().expect("serve base")));
    client.create_resend_provider().await;
    // No worker yet: the lanes fill from the intake, the entry queue from direct publishes.
    let sent: Vec<Option<Uuid>> = futures::stream::iter(0..HTTP)
        .map(|n| {
            let c = client.clone();
            async move { send(&c, n).await }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let mut ids: HashSet<Uuid> = sent.iter().flatten().copied().collect();
    assert_eq!(ids.len(), HTTP, "every send accepted");
    ids.extend(publish_direct(&stack.namespace, DIRECT).await);

    let mut first = stack.worker("worker-1");
    let s = &stack;
    eventually(
        Duration::from_secs(40),
        "the first worker to reach the provider 60 times",
        move || async move { (s.provider_calls().await >= 60).then_some(()) },
    )
    .await;
    first.kill9();
    let at_kill = sent_of(&pool, &ids).await;
    assert!(
        (at_kill as usize) < ids.len(),
        "killed mid-backlog ({at_kill} sent)"
    );
    let second = stack.worker("worker-2");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while sent_of(&pool, &ids).await != ids.len() as i64 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {} sent\n{}\n{}",
            sent_of(&pool, &ids).await,
            ids.len(),
            second.log_tail(),
            serve.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let rows = rows(&pool).await;
    assert_eq!(rows.len(), ids.len(), "no message beyond the accepted ones");
    for id in &ids {
        let row = rows.get(id).expect("every accepted id is recorded");
        assert_eq!(row.status, "sent", "{id}");
        assert_eq!(row.sent_events, 1, "{id}: one sent event");
        assert_eq!(row.accepted_events, 1, "{id}: one accepted event");
    }
    let keys = stack.provider_keys().await;
    let (calls, distinct) = crash_support::check_provider_keys(&keys, &ids);
    assert_eq!(distinct, ids, "each accepted message reached the provider");
    eprintln!(
        "killed after {at_kill} sent; {} accepted, all sent; {calls} provider calls",
        ids.len()
    );
    drop(second);
    drop(serve);
    stack.remove_topology().await;
    pool.close().await;
    common::drop_database(&db_name).await;
}
