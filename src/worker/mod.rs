//! The worker: routes each channel's entry queue `{ns}.send.{channel}` to the lanes
//! (`lanes::router`), consumes the lanes `{ns}.send.{channel}.high|normal|bulk`
//! (`consumers`), runs each envelope through its delivery (`delivery`: the steps; `policy`:
//! what follows each step, a pure function; `settle`: carrying that out; `dead_letter`: giving
//! up), and acks only after the outcome is committed.
//!
//! Concurrency is bounded by permits (one per delivery in progress, with capacity reserved for
//! the higher lanes: `lanes::Capacity`) and each consumer's broker prefetch; a slow provider
//! occupies only its own permits. The connection is supervised: when
//! it drops, the loop reconnects with backoff and re-declares the topology. On shutdown the
//! worker stops taking deliveries, finishes and acks the ones in progress, then flushes its
//! writer. Acks of one AMQP channel are coalesced into multiple acks (`acks`), each held at
//! most [`ACK_HOLD`].

mod acks;
mod consumers;
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

use lapin::options::{BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use secrecy::ExposeSecret;
use sqlx::PgPool;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::domain::{Channel, Priority};
use crate::lanes::{Capacity, LaneDecider, Router};
use crate::providers::ProviderContext;
use crate::queue::{Publisher, Topology};
use delivery::Deliverer;
use guard::ProviderGuard;
use resolver::Resolver;
use settle::Settler;
use writer::Writer;

/// The longest a finished delivery's ack waits to go out together with others.
pub const ACK_HOLD: Duration = Duration::from_millis(5);

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
    let publisher = Arc::new(
        Publisher::new(
            config.amqp.url.clone(),
            &crate::queue::connection_name(&config.namespace, "worker-publisher"),
            topology.clone(),
            2,
        )
        .with_linger(config.amqp.publish_linger),
    );
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
        in_flight: Default::default(),
    });
    // Status webhooks: their own pool, connection and concurrency (see `notify::service`).
    let webhooks = crate::notify::service::spawn(config, shutdown.clone())?;
    let retention = crate::retention::spawn(&config.retention, pool.clone(), shutdown.clone());
    let capacity = Arc::new(Capacity::new(
        config.worker.concurrency,
        config.lanes.enabled,
    ));
    let router = Arc::new(Router {
        decider: Arc::new(LaneDecider::new(
            config.lanes,
            &config.namespace,
            Some(config.redis.url.expose_secret()),
        )),
        publisher: publisher.clone(),
        topology: topology.clone(),
    });
    // Routes in progress (each a confirmed publish): as many as one entry consumer may hold.
    let route_permits = Arc::new(Semaphore::new(usize::from(config.worker.prefetch)));
    const FIRST_BACKOFF: Duration = Duration::from_millis(200);
    let mut backoff = FIRST_BACKOFF;
    while !shutdown.is_cancelled() {
        let mut subscribed = false;
        match consume(
            config,
            &topology,
            &deliverer,
            &Lanes {
                capacity: &capacity,
                router: &router,
                route_permits: &route_permits,
            },
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
    // Finish in-flight deliveries and routes: every permit back means every task acked or
    // nacked.
    let _all = capacity.drain().await;
    let _routes = route_permits
        .acquire_many(u32::from(config.worker.prefetch))
        .await;
    tracing::info!("worker drained in-flight deliveries");
    drop(deliverer);
    drop(writer);
    publisher.close().await;
    let _ = writer_task.await;
    let _ = webhooks.await;
    let _ = retention.await;
    Ok(())
}

/// What the consumers of one connection share across reconnects.
struct Lanes<'a> {
    capacity: &'a Arc<Capacity>,
    router: &'a Arc<Router>,
    route_permits: &'a Arc<Semaphore>,
}

/// One connection's life: returns Ok on shutdown, Err when the connection is lost.
/// `subscribed` is set once every consumer is registered.
async fn consume(
    config: &Config,
    topology: &Topology,
    deliverer: &Arc<Deliverer>,
    lanes: &Lanes<'_>,
    shutdown: &CancellationToken,
    subscribed: &mut bool,
    consuming: &std::sync::atomic::AtomicBool,
) -> anyhow::Result<()> {
    // Not ready from here until every consumer is registered, and again once this returns.
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
    // Each consumer on its own AMQP channel with its own prefetch.
    let subscribe = |queue: String, tag: String| {
        let connection = &connection;
        async move {
            let ch = connection.create_channel().await?;
            ch.basic_qos(config.worker.prefetch, BasicQosOptions { global: false })
                .await?;
            let consumer = ch
                .basic_consume(
                    queue.into(),
                    format!("communication-{tag}-{}", uuid::Uuid::new_v4()).into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await?;
            Ok::<_, lapin::Error>((ch, consumer))
        }
    };
    // Held at most ACK_HOLD, and flushed early once a quarter of the prefetch waits.
    let ack_batch = usize::from(config.worker.prefetch / 4).max(1);
    let mut channels = Vec::new();
    let mut coalescers = Vec::new();
    let mut loops: Vec<futures::future::BoxFuture<'static, anyhow::Result<()>>> = Vec::new();
    for channel in Channel::ALL {
        for lane in Priority::ALL {
            let (ch, consumer) = subscribe(
                topology.lane_queue(channel, lane),
                format!("worker-{}-{}", channel.as_str(), lane.as_str()),
            )
            .await?;
            let acks = acks::Acks::new(ch.clone(), ACK_HOLD, ack_batch);
            loops.push(Box::pin(consumers::deliver_lane(
                consumer,
                acks.handle(),
                channel,
                lane,
                lanes.capacity.clone(),
                deliverer.clone(),
                shutdown.clone(),
            )));
            channels.push(ch);
            coalescers.push(acks);
        }
        let (ch, consumer) = subscribe(
            topology.entry_queue(channel),
            format!("router-{}", channel.as_str()),
        )
        .await?;
        let acks = acks::Acks::new(ch.clone(), ACK_HOLD, ack_batch);
        loops.push(Box::pin(consumers::route_entry(
            consumer,
            acks.handle(),
            channel,
            lanes.router.clone(),
            lanes.route_permits.clone(),
            shutdown.clone(),
        )));
        channels.push(ch);
        coalescers.push(acks);
    }
    *subscribed = true;
    consuming.store(true, std::sync::atomic::Ordering::Relaxed);
    tracing::info!(
        prefetch = config.worker.prefetch,
        concurrency = config.worker.concurrency,
        lanes = config.lanes.enabled,
        "worker consuming"
    );
    // All loops end together on shutdown; the first that fails means the connection is lost.
    let mut pending = loops;
    while !pending.is_empty() {
        let (ended, _, rest) = futures::future::select_all(pending).await;
        ended?;
        pending = rest;
    }
    // Stop the broker from pushing more; prefetched but unstarted deliveries return to the
    // queue when the channels close, after in-flight ones are acked: every permit back means
    // every delivery finished, then each channel's pending acks are sent.
    let _all = lanes.capacity.drain().await;
    let _routes = lanes
        .route_permits
        .acquire_many(u32::from(config.worker.prefetch))
        .await;
    for acks in coalescers {
        acks.close().await;
    }
    for ch in channels {
        let _ = ch.close(200, "shutdown".into()).await;
    }
    let _ = connection.close(200, "shutdown".into()).await;
    Ok(())
}
