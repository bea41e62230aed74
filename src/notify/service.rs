//! The webhook side of a worker process: the outbox relay and the consumer of
//! `{ns}.webhooks`, on their own database pool, AMQP connection and concurrency limit, so a
//! slow or dead receiver never holds up message delivery. The connection is supervised like
//! the worker's: lost, it is rebuilt with backoff and the topology re-declared. On shutdown
//! it stops taking deliveries and waits (up to one request timeout) for those in progress.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions};
use lapin::types::FieldTable;
use secrecy::ExposeSecret;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::sender::{Handled, WebhookSender, http_client};
use super::topology::WebhookTopology;
use crate::config::Config;
use crate::queue::{Publisher, Topology};

/// Connections of the webhook side's own pool.
const DB_POOL_SIZE: u32 = 3;

/// Starts the relay and the consumer; the handle finishes after `shutdown`.
pub fn spawn(
    config: &Config,
    shutdown: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let settings = config.notify.clone();
    let pool = crate::store::connect_lazy(&config.database.url, DB_POOL_SIZE)?;
    let topology = WebhookTopology::new(&config.namespace, &settings.retry_schedule);
    let publisher = Arc::new(Publisher::new(
        config.amqp.url.clone(),
        &crate::queue::connection_name(&config.namespace, "webhook-publisher"),
        Topology::new(&config.namespace, &config.retry),
        2,
    ));
    let sender = Arc::new(WebhookSender {
        pool: pool.clone(),
        keyring: config.keyring.clone(),
        http: http_client(&settings, config.providers.allow_private_hosts)?,
        settings: settings.clone(),
        allow_private: config.providers.allow_private_hosts,
        publisher: publisher.clone(),
        topology: topology.clone(),
    });
    let amqp_url = config.amqp.url.clone();
    let name = crate::queue::connection_name(&config.namespace, "webhooks");
    Ok(tokio::spawn(async move {
        let relay = tokio::spawn(super::relay::run(
            pool,
            publisher.clone(),
            topology.clone(),
            settings.outbox_poll,
            super::relay::stale_after(&settings.retry_schedule, settings.timeout),
            shutdown.clone(),
        ));
        let permits = Arc::new(Semaphore::new(settings.concurrency as usize));
        let mut backoff = Duration::from_millis(200);
        while !shutdown.is_cancelled() {
            match consume(
                amqp_url.expose_secret(),
                &name,
                &topology,
                &sender,
                &permits,
                settings.concurrency,
                &shutdown,
            )
            .await
            {
                Ok(()) => break,
                Err(e) => {
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "webhook consumer lost RabbitMQ; reconnecting");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
        let _ = relay.await;
        let all = settings.concurrency as u32;
        let drained = tokio::time::timeout(
            settings.timeout + Duration::from_secs(1),
            permits.acquire_many(all),
        )
        .await;
        if drained.is_err() {
            tracing::warn!(
                "webhook requests still in flight at shutdown; the broker redelivers them"
            );
        }
        publisher.close().await;
    }))
}

/// One connection's life: Ok on shutdown, Err when the connection is lost.
async fn consume(
    url: &str,
    name: &str,
    topology: &WebhookTopology,
    sender: &Arc<WebhookSender>,
    permits: &Arc<Semaphore>,
    prefetch: u16,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let connection = crate::queue::connect(url, name).await?;
    let ch = connection.create_channel().await?;
    topology.declare(&ch).await?;
    ch.basic_qos(prefetch, BasicQosOptions { global: false })
        .await?;
    let mut consumer = ch
        .basic_consume(
            topology.queue().into(),
            format!("communication-webhooks-{}", uuid::Uuid::new_v4()).into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            p = permits.clone().acquire_owned() => p?,
        };
        let next = tokio::select! {
            _ = shutdown.cancelled() => break,
            d = consumer.next() => d,
        };
        let delivery = match next {
            Some(Ok(d)) => d,
            Some(Err(e)) => return Err(e.into()),
            None => anyhow::bail!("webhook consumer stream ended"),
        };
        let sender = sender.clone();
        tokio::spawn(async move {
            let acked = match sender.handle(&delivery.data).await {
                Handled::Ack => delivery.ack(BasicAckOptions::default()).await,
                Handled::Requeue => {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    delivery
                        .nack(BasicNackOptions {
                            requeue: true,
                            ..Default::default()
                        })
                        .await
                }
            };
            if let Err(e) = acked {
                tracing::warn!(error = %e, "could not ack a webhook delivery; the broker will redeliver it");
            }
            drop(permit);
        });
    }
    let _ = ch.close(200, "shutdown".into()).await;
    let _ = connection.close(200, "shutdown".into()).await;
    Ok(())
}
