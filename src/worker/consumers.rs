//! The worker's consumers, one loop each, all on one connection: a router per channel (its
//! entry queue, see `lanes::router`) and a delivery consumer per channel and lane. Each runs on
//! its own AMQP channel with its own prefetch, so a full bulk lane cannot take the prefetch of
//! the high lane; deliveries take their permits from `lanes::Capacity`, which keeps capacity
//! for the higher lanes. Each loop returns `Ok` on shutdown and `Err` when its stream breaks
//! (the connection was lost). Acks go through the channel's [`AckHandle`] (`acks`), which
//! sends them together where the delivery tags allow.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use lapin::Consumer;
use lapin::message::Delivery;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::acks::AckHandle;
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
    acks: AckHandle,
    channel: Channel,
    lane: Priority,
    capacity: Arc<Capacity>,
    deliverer: Arc<Deliverer>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    // Metric handles looked up once, not per delivery.
    let queue_wait = metrics::histogram!("communication_queue_wait_seconds",
        "channel" => channel.as_str(), "lane" => lane.as_str());
    let in_flight = metrics::gauge!("communication_worker_in_flight");
    // The delivery is taken before the permit: an idle lane then holds no permit at all. A
    // delivery dropped while waiting (shutdown) is never finished, so never acked: it returns
    // to the queue when the channel closes.
    while let Some(delivery) = next(&mut consumer, &shutdown).await? {
        acks.track(delivery.delivery_tag);
        let permit = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            p = capacity.acquire(lane) => p?,
        };
        let headers = delivery.properties.headers().as_ref();
        if let Some(at) = header_i64(headers, HEADER_PUBLISHED_AT_MS) {
            let waited = (chrono::Utc::now().timestamp_millis() - at).max(0) as f64 / 1000.0;
            queue_wait.record(waited);
        }
        let deliverer = deliverer.clone();
        let acks = acks.clone();
        let in_flight = in_flight.clone();
        in_flight.increment(1.0);
        tokio::spawn(async move {
            let outcome = deliverer
                .handle(
                    &delivery.data,
                    delivery.properties.headers().as_ref(),
                    delivery.routing_key.as_str(),
                )
                .await;
            match outcome {
                // Marked before the permit goes back: a drained worker has every ack pending.
                Disposition::Ack => acks.ack(delivery.delivery_tag),
                Disposition::Requeue => {
                    // Give the failing dependency a moment before the message comes back.
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    if let Err(e) = acks.requeue(delivery.delivery_tag).await {
                        tracing::warn!(error = %e, "could not requeue a delivery; the broker will redeliver it");
                    }
                }
            }
            in_flight.decrement(1.0);
            drop(permit);
        });
    }
    Ok(())
}

/// Consumes a channel's entry queue: each message is republished to its lane (confirmed), then
/// acked; requeued if the publish failed. `permits` bounds the routes in progress.
pub(super) async fn route_entry(
    mut consumer: Consumer,
    acks: AckHandle,
    channel: Channel,
    router: Arc<Router>,
    permits: Arc<Semaphore>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    while let Some(delivery) = next(&mut consumer, &shutdown).await? {
        acks.track(delivery.delivery_tag);
        let permit = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            p = permits.clone().acquire_owned() => p?,
        };
        let router = router.clone();
        let acks = acks.clone();
        tokio::spawn(async move {
            let message_id = delivery.properties.message_id().as_ref();
            let routed = router
                .route(
                    channel,
                    &delivery.data,
                    delivery.properties.headers().as_ref(),
                    message_id.map(|id| id.as_str()),
                )
                .await;
            match routed {
                Ok(_) => acks.ack(delivery.delivery_tag),
                Err(e) => {
                    tracing::warn!(error = %e, channel = channel.as_str(),
                        "could not move a message to its lane; it goes back to the entry queue");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    if let Err(e) = acks.requeue(delivery.delivery_tag).await {
                        tracing::warn!(error = %e, "could not requeue an entry message; the broker will redeliver it");
                    }
                }
            }
            drop(permit);
        });
    }
    Ok(())
}
