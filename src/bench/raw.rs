//! The machine's raw limits, measured in the same run as the pipeline: RabbitMQ confirmed
//! publish + manual-ack consume of envelopes of the pipeline's size, and Postgres writes of
//! the rows the worker's writer commits for each message, batched the same way.

use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use lapin::BasicProperties;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use sqlx::PgPool;
use uuid::Uuid;

use crate::domain::{EventKind, MessageStatus};
use crate::store::messages::{self, NewEvent, NewMessage, StatusUpdate};

/// Confirms a publisher keeps in flight at once (the intake's pool does the same in effect).
pub const CONFIRM_WINDOW: usize = 1000;

pub fn raw_queue(namespace: &str) -> String {
    format!("{namespace}.raw")
}

#[derive(Debug, Clone, Copy)]
pub struct BrokerFigures {
    /// Publish with confirms alone (until the last confirm).
    pub publish_per_sec: f64,
    /// Publish and consume running together, until the last message is consumed and acked.
    pub publish_consume_per_sec: f64,
}

/// Publishes `n` copies of `body` to a fresh quorum queue (the work queues' type) while a
/// consumer with prefetch `prefetch` acks each one.
pub async fn broker(
    amqp_url: &str,
    namespace: &str,
    body: &[u8],
    n: usize,
    prefetch: u16,
) -> anyhow::Result<BrokerFigures> {
    let queue = raw_queue(namespace);
    let producer = crate::queue::connect(amqp_url, "communication-bench-raw-publish")
        .await
        .context("connecting to RabbitMQ")?;
    let consumer_conn = crate::queue::connect(amqp_url, "communication-bench-raw-consume").await?;
    let pch = producer.create_channel().await?;
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString(LongString::from(b"quorum".to_vec())),
    );
    pch.queue_declare(
        queue.as_str().into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        args,
    )
    .await?;
    pch.confirm_select(ConfirmSelectOptions::default()).await?;
    let cch = consumer_conn.create_channel().await?;
    cch.basic_qos(prefetch, BasicQosOptions { global: false })
        .await?;
    let mut consumer = cch
        .basic_consume(
            queue.as_str().into(),
            "communication-bench-raw".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let consuming = tokio::spawn(async move {
        let mut seen = 0usize;
        while seen < n {
            match consumer.next().await {
                Some(Ok(delivery)) => {
                    delivery.ack(BasicAckOptions::default()).await?;
                    seen += 1;
                }
                Some(Err(e)) => return Err(anyhow::Error::from(e)),
                None => anyhow::bail!("the raw consumer stopped after {seen} messages"),
            }
        }
        Ok(Instant::now())
    });

    let started = Instant::now();
    let props = BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/json".into());
    let mut in_flight = FuturesUnordered::new();
    for _ in 0..n {
        if in_flight.len() >= CONFIRM_WINDOW
            && let Some(confirm) = in_flight.next().await
        {
            check_confirm(confirm)?;
        }
        let confirm = pch
            .basic_publish(
                "".into(),
                queue.as_str().into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                body,
                props.clone(),
            )
            .await?;
        in_flight.push(confirm);
    }
    while let Some(confirm) = in_flight.next().await {
        check_confirm(confirm)?;
    }
    let published = started.elapsed();
    let consumed_at = tokio::time::timeout(Duration::from_secs(120), consuming)
        .await
        .context("the raw consumer did not get every message within 120 s")???;
    let both = consumed_at.duration_since(started);
    let _ = cch.close(200, "done".into()).await;
    let _ = pch
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await;
    let _ = producer.close(200, "done".into()).await;
    let _ = consumer_conn.close(200, "done".into()).await;
    Ok(BrokerFigures {
        publish_per_sec: n as f64 / published.as_secs_f64(),
        publish_consume_per_sec: n as f64 / both.as_secs_f64(),
    })
}

fn check_confirm(confirm: Result<lapin::Confirmation, lapin::Error>) -> anyhow::Result<()> {
    let confirm = confirm?;
    if confirm.is_nack() {
        anyhow::bail!("RabbitMQ nacked a raw publish");
    }
    if confirm.take_message().is_some() {
        anyhow::bail!("a raw publish was unroutable");
    }
    Ok(())
}

#[derive(Debug, Clone, Copy)]
pub struct PostgresFigures {
    /// Messages whose full row set (the writer's three commits) was written per second.
    pub messages_per_sec: f64,
    /// Rows inserted or updated per second (1 insert + 3 events + 2 updates per message).
    pub rows_per_sec: f64,
}

/// Writes, for `n` messages, what the worker's writer commits for a delivered message, in
/// batches of `batch` and the same statements: claim (message_logs row + `accepted` event),
/// then `sending` + `attempt` event, then `sent` + `sent` event; one transaction each, one
/// after the other as a delivery's steps are, in `streams` concurrent streams (the writer's
/// batches in flight). The rows are deleted afterwards.
pub async fn postgres(
    pool: &PgPool,
    tenant: &str,
    recipient: &str,
    n: usize,
    batch: usize,
    streams: usize,
) -> anyhow::Result<PostgresFigures> {
    let started = Instant::now();
    let streams = streams.max(1);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..streams {
        let share = n / streams + usize::from(i < n % streams);
        let (pool, tenant, recipient) = (pool.clone(), tenant.to_owned(), recipient.to_owned());
        tasks.spawn(async move { write_stream(&pool, &tenant, &recipient, share, batch).await });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    let elapsed = started.elapsed().as_secs_f64();
    sqlx::query("DELETE FROM message_logs WHERE tenant_id = $1")
        .bind(tenant)
        .execute(pool)
        .await?;
    Ok(PostgresFigures {
        messages_per_sec: n as f64 / elapsed,
        rows_per_sec: (n * 6) as f64 / elapsed,
    })
}

async fn write_stream(
    pool: &PgPool,
    tenant: &str,
    recipient: &str,
    n: usize,
    batch: usize,
) -> anyhow::Result<()> {
    let provider = Uuid::new_v4();
    let mut done = 0;
    while done < n {
        let size = batch.min(n - done);
        let claims: Vec<NewMessage> = (0..size)
            .map(|_| NewMessage {
                id: Uuid::now_v7(),
                tenant_id: tenant.to_owned(),
                channel: "sms".into(),
                recipient: recipient.to_owned(),
                idempotency_key: None,
                metadata: None,
                ttl_seconds: None,
                created_at: Utc::now(),
            })
            .collect();
        let mut tx = pool.begin().await?;
        messages::claim_messages(&mut tx, &claims).await?;
        tx.commit().await?;
        for (status, kind) in [
            (MessageStatus::Sending, EventKind::Attempt),
            (MessageStatus::Sent, EventKind::Sent),
        ] {
            let updates: Vec<StatusUpdate> = claims
                .iter()
                .map(|c| StatusUpdate {
                    id: c.id,
                    status: status.as_str().to_owned(),
                    provider_id: Some(provider),
                    provider_kind: Some("system".into()),
                    provider_message_id: (status == MessageStatus::Sent)
                        .then(|| format!("system-{}", c.id)),
                    attempts_inc: i32::from(status == MessageStatus::Sending),
                    last_error: None,
                })
                .collect();
            let events: Vec<NewEvent> = claims
                .iter()
                .map(|c| NewEvent {
                    message_id: c.id,
                    tenant_id: tenant.to_owned(),
                    kind: kind.as_str(),
                    provider_id: Some(provider),
                    detail: Some(serde_json::json!({"provider": "bench-system", "kind": "system", "attempt": 1})),
                    at: Utc::now(),
                })
                .collect();
            // The writer's own statement for a batch of steps (updates and events together).
            let updates: Vec<&StatusUpdate> = updates.iter().collect();
            let events: Vec<&NewEvent> = events.iter().collect();
            let mut tx = pool.begin().await?;
            messages::write_steps(&mut tx, &updates, &events, &[]).await?;
            tx.commit().await?;
        }
        done += size;
    }
    Ok(())
}
