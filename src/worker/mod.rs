//! The worker: consumes `{ns}.send.email` and `{ns}.send.sms`, runs each envelope through its
//! delivery (`delivery`: the steps; `policy`: what follows each step, a pure function;
//! `settle`: carrying that out; `dead_letter`: giving up), and acks only after the outcome is
//! committed.
//!
//! Concurrency is bounded by a semaphore (one permit per delivery in progress) and the broker
//! prefetch; a slow provider occupies only its own permits. The connection is supervised: when
//! it drops, the loop reconnects with backoff and re-declares the topology. On shutdown the
//! worker stops taking deliveries, finishes and acks the ones in progress, then flushes its
//! writer.

mod dead_letter;
pub mod delivery;
pub mod guard;
pub mod policy;
pub mod resolver;
pub mod settle;
pub mod suppression;
pub mod writer;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions};
use lapin::types::FieldTable;
use secrecy::ExposeSecret;
use sqlx::PgPool;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::domain::Channel;
use crate::providers::ProviderContext;
use crate::queue::{Publisher, Topology};
use delivery::Deliverer;
use guard::ProviderGuard;
use resolver::Resolver;
use settle::{Disposition, Settler};
use writer::Writer;

/// Runs a worker until `shutdown` is cancelled.
pub async fn run(config: &Config, pool: PgPool, shutdown: CancellationToken) -> anyhow::Result<()> {
    let _ = crate::telemetry::metrics_handle();
    metrics::gauge!("communication_worker_in_flight").increment(0.0);
    // Whether this worker is consuming right now (its readiness, with Postgres).
    let consuming = Arc::new(std::sync::atomic::AtomicBool::new(false));
    if let Some(addr) = config.telemetry.worker_metrics_addr {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        tracing::info!(addr = %listener.local_addr()?, "worker health and metrics listening");
        let stop = shutdown.clone();
        let (consuming, pool) = (consuming.clone(), pool.clone());
        tokio::spawn(async move {
            if let Err(e) =
                crate::telemetry::serve_worker_endpoints(listener, stop, consuming, pool).await
            {
                tracing::warn!(error = %e, "worker metrics listener stopped");
            }
        });
    }
    let topology = Topology::new(&config.namespace, &config.retry);
    let (writer, writer_task) = Writer::spawn(
        pool.clone(),
        config.worker.batch_size,
        config.worker.batch_linger,
        // Leave a connection of the pool for the provider resolver.
        config.worker.batch_flushes.min(
            (config.database.pool_size as usize)
                .saturating_sub(1)
                .max(1),
        ),
    );
    let ctx = ProviderContext::new(
        config.providers.bases.clone(),
        config.providers.allow_private_hosts,
        config.providers.timeout,
        config.providers.public_url.clone(),
    )?;
    let resolver = Arc::new(Resolver::new(
        pool.clone(),
        config.keyring.clone(),
        ctx,
        config.providers.cache_ttl,
    ));
    let publisher = Arc::new(Publisher::new(
        config.amqp.url.clone(),
        &crate::queue::connection_name(&config.namespace, "worker-publisher"),
        topology.clone(),
        2,
    ));
    let deliverer = Arc::new(Deliverer {
        settler: Settler {
            writer: writer.clone(),
            publisher: publisher.clone(),
            topology: topology.clone(),
            keyring: config.keyring.clone(),
            pool: pool.clone(),
        },
        resolver,
        retry: config.retry,
        public_url: config.providers.public_url.clone(),
        guard: Arc::new(ProviderGuard::new(
            config.guard,
            &config.namespace,
            Some(config.redis.url.expose_secret()),
        )),
        suppressions: Arc::new(suppression::SuppressionList::new(
            pool.clone(),
            config.notify.suppression_cache_ttl,
        )),
    });
    // Status webhooks: their own pool, connection and concurrency (see `notify::service`).
    let webhooks = crate::notify::service::spawn(config, shutdown.clone())?;
    let retention = crate::retention::spawn(&config.retention, pool.clone(), shutdown.clone());
    let concurrency = config.worker.concurrency;
    let permits = Arc::new(Semaphore::new(concurrency));
    const FIRST_BACKOFF: Duration = Duration::from_millis(200);
    let mut backoff = FIRST_BACKOFF;
    while !shutdown.is_cancelled() {
        let mut subscribed = false;
        match consume(
            config,
            &topology,
            &deliverer,
            &permits,
            &shutdown,
            &mut subscribed,
            &consuming,
        )
        .await
        {
            Ok(()) => break,
            Err(e) => {
                // A connection that got as far as consuming was healthy: start the backoff
                // over, or every later blip would wait the capped 10 s.
                if subscribed {
                    backoff = FIRST_BACKOFF;
                }
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "worker lost RabbitMQ; reconnecting");
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
    // Finish in-flight deliveries: every permit back means every task acked or nacked.
    let _all = permits.acquire_many(concurrency as u32).await;
    tracing::info!("worker drained in-flight deliveries");
    drop(deliverer);
    drop(writer);
    publisher.close().await;
    let _ = writer_task.await;
    let _ = webhooks.await;
    let _ = retention.await;
    Ok(())
}

/// One connection's life: returns Ok on shutdown, Err when the connection is lost.
/// `subscribed` is set once both consumers are registered.
async fn consume(
    config: &Config,
    topology: &Topology,
    deliverer: &Arc<Deliverer>,
    permits: &Arc<Semaphore>,
    shutdown: &CancellationToken,
    subscribed: &mut bool,
    consuming: &std::sync::atomic::AtomicBool,
) -> anyhow::Result<()> {
    // Not ready from here until both consumers are registered, and again once this returns.
    struct NotConsuming<'a>(&'a std::sync::atomic::AtomicBool);
    impl Drop for NotConsuming<'_> {
        fn drop(&mut self) {
            self.0.store(false, std::sync::atomic::Ordering::Relaxed);
        }
    }
    let _not_consuming = NotConsuming(consuming);
    let connection = crate::queue::connect(
        config.amqp.url.expose_secret(),
        &crate::queue::connection_name(&config.namespace, "worker"),
    )
    .await?;
    let setup = connection.create_channel().await?;
    topology.declare(&setup).await?;
    let _ = setup.close(200, "declared".into()).await;
    let mut streams = Vec::new();
    for channel in Channel::ALL {
        let ch = connection.create_channel().await?;
        ch.basic_qos(config.worker.prefetch, BasicQosOptions { global: false })
            .await?;
        let consumer = ch
            .basic_consume(
                topology.work_queue(channel).into(),
                format!(
                    "communication-worker-{}-{}",
                    channel.as_str(),
                    uuid::Uuid::new_v4()
                )
                .into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        streams.push((ch, consumer));
    }
    *subscribed = true;
    consuming.store(true, std::sync::atomic::Ordering::Relaxed);
    tracing::info!(
        prefetch = config.worker.prefetch,
        concurrency = config.worker.concurrency,
        "worker consuming"
    );
    let (channels, consumers): (Vec<_>, Vec<_>) = streams.into_iter().unzip();
    let mut merged = futures::stream::select_all(consumers);
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            p = permits.clone().acquire_owned() => p?,
        };
        let next = tokio::select! {
            _ = shutdown.cancelled() => break,
            d = merged.next() => d,
        };
        let delivery = match next {
            Some(Ok(d)) => d,
            Some(Err(e)) => return Err(e.into()),
            None => anyhow::bail!("consumer stream ended"),
        };
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
                    delivery
                        .nack(BasicNackOptions {
                            requeue: true,
                            ..Default::default()
                        })
                        .await
                }
            };
            if let Err(e) = acked {
                tracing::warn!(error = %e, "could not ack a delivery; the broker will redeliver it");
            }
            metrics::gauge!("communication_worker_in_flight").decrement(1.0);
            drop(permit);
        });
    }
    // Stop the broker from pushing more; prefetched but unstarted deliveries return to the
    // queue when the channels close, after in-flight ones are acked.
    let _all = permits.acquire_many(config.worker.concurrency as u32).await;
    for ch in channels {
        let _ = ch.close(200, "shutdown".into()).await;
    }
    let _ = connection.close(200, "shutdown".into()).await;
    Ok(())
}
