//! The worker's consumers, one loop each, all on one connection: a router per channel (its
//! entry queue, see `lanes::router`) and a delivery consumer per channel and lane. Each runs on
//! its own AMQP channel with its own prefetch, so a full bulk lane cannot take the prefetch of
//! the high lane; deliveries take their permits from `lanes::Capacity`, which keeps capacity
//! for the higher lanes. Each loop returns `Ok` on shutdown and `Err` when its stream breaks
//! (the connection was lost).

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use lapin::Consumer;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicNackOptions};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::delivery::Deliverer;
use super::settle::Disposition;
use crate::domain::{Channel, Priority};
use crate::lanes::{Capacity, Router};
use crate::queue::topology::{HEADER_PUBLISHED_AT_MS, header_i64};

/// The next delivery, or `None` on shutdown.
async fn next(
    consumer: &mut Consumer,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<Delivery>> {
    tokio::select! {
        _ = shutdown.cancelled() => Ok(None),
        d = consumer.next() => match d {
            Some(Ok(d)) => Ok(Some(d)),
            Some(Err(e)) => Err(e.into()),
            None => anyhow::bail!("consumer stream ended"),
        },
    }
}

/// Consumes one lane: each delivery waits for a permit of its lane, then runs in its own task
/// and is acked only once its outcome is committed.
pub(super) async fn deliver_lane(
    mut consumer: Consumer,
    channel: Channel,
    lane: Priority,
    capacity: Arc<Capacity>,
    deliverer: Arc<Deliverer>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    // The delivery is taken before the permit: an idle lane then holds no permit at all. A
    // delivery dropped while waiting (shutdown) returns to the queue when the channel closes.
    while let Some(delivery) = next(&mut consumer, &shutdown).await? {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            p = capacity.acquire(lane) => p?,
        };
        let headers = delivery.properties.headers().as_ref();
        if let Some(at) = header_i64(headers, HEADER_PUBLISHED_AT_MS) {
            let waited = (chrono::Utc::now().timestamp_millis() - at).max(0) as f64 / 1000.0;
            metrics::histogram!("communication_queue_wait_seconds",
                "channel" => channel.as_str(), "lane" => lane.as_str())
            .record(waited);
        }
        let deliverer = deliverer.clone();
        metrics::gauge!("communication_worker_in_flight").increment(1.0);
        tokio::spawn(async move {
            let routing_key = delivery.routing_key.as_str().to_owned();
            let outcome = deliverer
                .handle(
                    &delivery.data,
                    delivery.properties.headers().as_ref(),
                    &routing_key,
                )
                .await;
            let acked = match outcome {
                Disposition::Ack => delivery.ack(BasicAckOptions::default()).await,
                Disposition::Requeue => {
                    // Give the failing dependency a moment before the message comes back.
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    requeue(&delivery).await
                }
            };
            if let Err(e) = acked {
                tracing::warn!(error = %e, "could not ack a delivery; the broker will redeliver it");
            }
            metrics::gauge!("communication_worker_in_flight").decrement(1.0);
            drop(permit);
        });
    }
    Ok(())
}

async fn requeue(delivery: &Delivery) -> Result<bool, lapin::Error> {
    delivery
        .nack(BasicNackOptions {
            requeue: true,
            ..Default::default()
        })
        .await
}

/// Consumes a channel's entry queue: each message is republished to its lane (confirmed), then
/// acked; requeued if the publish failed. `permits` bounds the routes in progress.
pub(super) async fn route_entry(
    mut consumer: Consumer,
    channel: Channel,
    router: Arc<Router>,
    permits: Arc<Semaphore>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    while let Some(delivery) = next(&mut consumer, &shutdown).await? {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            p = permits.clone().acquire_owned() => p?,
        };
        let router = router.clone();
        tokio::spawn(async move {
            let message_id = delivery
                .properties
                .message_id()
                .as_ref()
                .map(|id| id.as_str().to_owned());
            let routed = router
                .route(
                    channel,
                    &delivery.data,
                    delivery.properties.headers().as_ref(),
                    message_id.as_deref(),
                )
                .await;
            let settled = match routed {
                Ok(_) => delivery.ack(BasicAckOptions::default()).await,
                Err(e) => {
                    tracing::warn!(error = %e, channel = channel.as_str(),
                        "could not move a message to its lane; it goes back to the entry queue");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    requeue(&delivery).await
                }
            };
            if let Err(e) = settled {
                tracing::warn!(error = %e, "could not ack a routed message; the broker will redeliver it (the worker sends it once)");
            }
            drop(permit);
        });
    }
    Ok(())
}
