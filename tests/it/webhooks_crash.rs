//! kill -9 of a worker loses no webhook event: the real binary runs as child processes
//! (see `crash_support`); one worker is killed while it sends messages and their webhooks,
//! and a successor delivers the `message.sent` event of every accepted message.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};
use uuid::Uuid;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::common;
use crate::crash_support::{self, Client, SERVICE_TOKEN, Stack, TENANT, eventually};
use crate::webhook_support::webhook_requests;

/// message id → how many `message.sent` webhooks arrived for it.
async fn sent_events(receiver: &MockServer) -> HashMap<Uuid, usize> {
    let mut seen = HashMap::new();
    for r in webhook_requests(receiver).await {
        let Ok(body) = serde_json::from_slice::<Value>(&r.body) else {
            continue;
        };
        if body["type"] == "message.sent"
            && let Some(id) = body["data"]["message_id"]
                .as_str()
                .and_then(|s| Uuid::parse_str(s).ok())
        {
            *seen.entry(id).or_default() += 1;
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_while_sending_webhooks_loses_no_event() {
    const TOTAL: usize = 200;
    let (db_name, pool) = common::create_database().await;
    let stack = Stack::new(
        format!("postgres://postgres@127.0.0.1:5432/{db_name}"),
        Duration::from_millis(10),
        &[
            ("COMMUNICATION_WORKER_CONCURRENCY", "8"),
            ("COMMUNICATION_PREFETCH", "16"),
            ("COMMUNICATION_WEBHOOK_OUTBOX_POLL_MS", "50"),
            ("COMMUNICATION_WEBHOOK_CONCURRENCY", "8"),
        ],
    )
    .await;
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/hook"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_millis(20)))
        .mount(&receiver)
        .await;
    let serve = stack.serve("serve").await;
    let base = serve.base.clone().expect("serve base");
    let client = Arc::new(Client::new(&base));
    client.create_resend_provider().await;
    let r = reqwest::Client::new()
        .post(format!("{base}/v1/webhook-endpoints"))
        .bearer_auth(SERVICE_TOKEN)
        .header("X-Tenant-Id", TENANT)
        .json(&json!({"url": format!("{}/hook", receiver.uri()), "events": ["message.sent"]}))
        .send()
        .await
        .expect("create endpoint");
    assert_eq!(r.status(), 201);

    let results: Vec<(u16, Option<Uuid>)> = futures::stream::iter(0..TOTAL)
        .map(|n| {
            let c = client.clone();
            async move { c.send(n).await }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let accepted: HashSet<Uuid> = results.iter().filter_map(|(_, id)| *id).collect();
    assert_eq!(accepted.len(), TOTAL);

    let mut first = stack.worker("worker-1");
    let r = &receiver;
    eventually(
        Duration::from_secs(40),
        "the first worker to deliver 40 webhooks",
        move || async move { (webhook_requests(r).await.len() >= 40).then_some(()) },
    )
    .await;
    first.kill9();
    let at_kill = webhook_requests(&receiver).await.len();
    assert!(
        at_kill < TOTAL,
        "killed mid-way ({at_kill} webhooks delivered)"
    );

    let second = stack.worker("worker-2");
    let r = &receiver;
    let wanted = &accepted;
    let seen = eventually(
        Duration::from_secs(60),
        "a message.sent webhook for every accepted message",
        move || async move {
            let seen = sent_events(r).await;
            wanted
                .iter()
                .all(|id| seen.contains_key(id))
                .then_some(seen)
        },
    )
    .await;
    // At least once; repeats only for what the killed worker had in flight or unconfirmed.
    let repeats: usize = seen.values().map(|n| n - 1).sum();
    assert!(repeats <= 64, "{repeats} repeated webhooks");
    let unfinished: i64 =
        sqlx::query_scalar("SELECT count(*) FROM webhook_deliveries WHERE state <> 'succeeded'")
            .fetch_one(&pool)
            .await
            .expect("count");
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM webhook_deliveries")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(total, TOTAL as i64, "one delivery per sent message");
    eventually(
        Duration::from_secs(10),
        "every delivery recorded as succeeded",
        || {
            let pool = pool.clone();
            async move {
                let left: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM webhook_deliveries WHERE state <> 'succeeded'",
                )
                .fetch_one(&pool)
                .await
                .ok()?;
                (left == 0).then_some(())
            }
        },
    )
    .await;
    eprintln!(
        "worker killed after {at_kill} webhooks; {TOTAL} events delivered, {repeats} repeats \
         ({unfinished} unfinished right after the last arrived)"
    );

    drop(second);
    drop(serve);
    stack.remove_topology().await;
    crash_support::remove_webhook_topology(&stack.namespace).await;
    pool.close().await;
    common::drop_database(&db_name).await;
}
