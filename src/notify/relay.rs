//! The outbox relay: moves webhook deliveries the database trigger wrote (in the same
//! transaction as the message's status) onto `{ns}.webhooks`. Rows are locked with
//! `FOR UPDATE SKIP LOCKED`, so every worker can run a relay; a row is marked published only
//! after the broker confirmed its message, in the transaction that locked it. A crash before
//! that commit leaves the row in the outbox, to be published again (at least once; the
//! sender skips deliveries that already succeeded).
//!
//! Once a minute it also puts back in the outbox any pending delivery whose queue message
//! must have been lost: published, yet neither attempted nor retried for longer than the
//! longest retry wait plus a margin (`stale_after`).

use std::sync::Arc;
use std::time::Duration;

use lapin::types::FieldTable;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::topology::{KEY_EVENT, WebhookTopology};
use crate::queue::Publisher;
use crate::store::webhook_deliveries;

/// Rows relayed per transaction.
const BATCH: i64 = 200;

/// The body of a webhook queue message.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct DeliveryRef {
    pub delivery_id: Uuid,
}

/// How often the relay looks for deliveries whose queue message was lost.
const STALE_CHECK: Duration = Duration::from_secs(60);

/// How long a published delivery may go without an attempt before it is put back in the
/// outbox: the longest retry wait, two request timeouts, and ten minutes of slack.
pub fn stale_after(retry_tiers: &[Duration], timeout: Duration) -> Duration {
    let longest = retry_tiers.iter().max().copied().unwrap_or_default();
    longest + timeout * 2 + Duration::from_secs(600)
}

/// Relays until `shutdown`, checking the outbox every `poll`.
pub async fn run(
    pool: PgPool,
    publisher: Arc<Publisher>,
    topology: WebhookTopology,
    poll: Duration,
    stale: Duration,
    shutdown: CancellationToken,
) {
    let mut last_stale_check = tokio::time::Instant::now();
    loop {
        if last_stale_check.elapsed() >= STALE_CHECK {
            last_stale_check = tokio::time::Instant::now();
            match webhook_deliveries::requeue_stale(&pool, stale).await {
                Ok(0) => {}
                Ok(n) => tracing::warn!(
                    deliveries = n,
                    "webhook deliveries whose queue message was lost are back in the outbox"
                ),
                Err(e) => tracing::warn!(error = %e, "could not look for lost webhook deliveries"),
            }
        }
        let relayed = match relay_once(&pool, &publisher, &topology).await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "webhook outbox relay failed; will retry");
                0
            }
        };
        if relayed as i64 >= BATCH {
            continue;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(poll) => {}
        }
    }
}

/// Publishes one batch of the outbox; returns how many rows it published.
pub async fn relay_once(
    pool: &PgPool,
    publisher: &Publisher,
    topology: &WebhookTopology,
) -> anyhow::Result<usize> {
    let mut tx = pool.begin().await?;
    let ids = webhook_deliveries::lock_outbox(&mut tx, BATCH).await?;
    if ids.is_empty() {
        return Ok(0);
    }
    let exchange = topology.exchange();
    let publishes = ids.iter().map(|id| {
        let exchange = exchange.clone();
        async move {
            let body = serde_json::to_vec(&DeliveryRef { delivery_id: *id })?;
            publisher
                .publish(
                    &exchange,
                    KEY_EVENT,
                    &body,
                    FieldTable::default(),
                    Some(&id.to_string()),
                )
                .await?;
            anyhow::Ok(*id)
        }
    });
    let results = futures::future::join_all(publishes).await;
    let mut published: Vec<Uuid> = Vec::with_capacity(ids.len());
    let mut failure = None;
    for r in results {
        match r {
            Ok(id) => published.push(id),
            Err(e) => failure = Some(e),
        }
    }
    webhook_deliveries::mark_published(&mut tx, &published).await?;
    tx.commit().await?;
    metrics::counter!("communication_webhook_relayed_total").increment(published.len() as u64);
    if let Some(e) = failure {
        return Err(e.context("publishing webhook deliveries"));
    }
    Ok(published.len())
}
