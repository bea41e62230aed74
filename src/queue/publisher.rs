//! The confirmed publisher: a small pool of confirm-mode channels on one connection, shared by
//! every request. Each publish awaits only its own confirm, so many confirms are in flight at
//! once. A lost connection is rebuilt on the next publish (one task rebuilds, the others wait
//! for it), and the topology is re-declared.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel as AmqpChannel, Connection};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::{Mutex, RwLock};

use super::Topology;
use super::gather::Gather;

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("RabbitMQ is unreachable: {0}")]
    Unavailable(String),
    #[error("RabbitMQ refused the message (nack)")]
    Nacked,
    #[error("RabbitMQ could not route the message to a queue ({0})")]
    Unroutable(String),
    #[error("RabbitMQ did not confirm the message in time")]
    ConfirmTimeout,
}

struct Pool {
    connection: Connection,
    channels: Vec<AmqpChannel>,
}

impl Pool {
    fn healthy(&self) -> bool {
        self.connection.status().connected() && self.channels.iter().all(|c| c.status().connected())
    }
}

pub struct Publisher {
    url: SecretString,
    name: String,
    topology: Topology,
    size: usize,
    /// The live pool, if any. Readers clone the Arc and publish without holding the lock.
    pool: RwLock<Option<Arc<Pool>>>,
    /// Serialises reconnects so a broker outage costs one connection attempt, not one per
    /// request.
    reconnect: Mutex<()>,
    next: AtomicUsize,
    confirm_timeout: Duration,
    /// Publishes made while others await their confirms wait here for company (see
    /// [`super::gather`]).
    gather: Gather,
}

impl Publisher {
    pub fn new(url: SecretString, name: &str, topology: Topology, size: usize) -> Publisher {
        Publisher {
            url,
            name: name.to_owned(),
            topology,
            size: size.max(1),
            pool: RwLock::new(None),
            reconnect: Mutex::new(()),
            next: AtomicUsize::new(0),
            confirm_timeout: Duration::from_secs(10),
            gather: Gather::new(Duration::ZERO),
        }
    }

    /// Lets a publish made while others await their confirms wait up to `linger` for
    /// company, so they reach the broker together ([`super::gather`]). Zero (the default of
    /// [`Publisher::new`]) sends each at once.
    pub fn with_linger(mut self, linger: Duration) -> Publisher {
        self.gather = Gather::new(linger);
        self
    }

    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// Connects now (and declares the topology), so start-up fails fast on a bad URL.
    pub async fn warm_up(&self) -> Result<(), PublishError> {
        self.pool().await.map(|_| ())
    }

    async fn pool(&self) -> Result<Arc<Pool>, PublishError> {
        if let Some(p) = self.pool.read().await.as_ref()
            && p.healthy()
        {
            return Ok(p.clone());
        }
        let _guard = self.reconnect.lock().await;
        // Someone else may have reconnected while we waited.
        if let Some(p) = self.pool.read().await.as_ref()
            && p.healthy()
        {
            return Ok(p.clone());
        }
        let pool = Arc::new(self.connect().await?);
        *self.pool.write().await = Some(pool.clone());
        Ok(pool)
    }

    async fn connect(&self) -> Result<Pool, PublishError> {
        let unavailable = |e: lapin::Error| PublishError::Unavailable(e.to_string());
        let connection = super::connect(self.url.expose_secret(), &self.name)
            .await
            .map_err(unavailable)?;
        let mut channels = Vec::with_capacity(self.size);
        for i in 0..self.size {
            let ch = connection.create_channel().await.map_err(unavailable)?;
            if i == 0 {
                self.topology.declare(&ch).await.map_err(unavailable)?;
            }
            ch.confirm_select(ConfirmSelectOptions::default())
                .await
                .map_err(unavailable)?;
            channels.push(ch);
        }
        tracing::info!(channels = self.size, "publisher connected to RabbitMQ");
        Ok(Pool {
            connection,
            channels,
        })
    }

    async fn invalidate(&self, broken: &Arc<Pool>) {
        let mut slot = self.pool.write().await;
        if let Some(current) = slot.as_ref()
            && Arc::ptr_eq(current, broken)
        {
            *slot = None;
        }
    }

    /// Publishes a persistent JSON message and waits for the broker's confirm. Unroutable
    /// messages (returned with NO_ROUTE) are errors, never silent successes.
    pub async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        headers: FieldTable,
        message_id: Option<&str>,
    ) -> Result<(), PublishError> {
        let mut headers = headers;
        // Work published while handling a traced send (the intake's publish, retries, dead
        // letters) stays in that trace.
        if let Some(ctx) = crate::trace_context::TraceContext::current() {
            let name = lapin::types::ShortString::from(crate::trace_context::HEADER);
            if !headers.inner().contains_key(&name) {
                headers.insert(
                    name,
                    lapin::types::AMQPValue::LongString(ctx.traceparent().into_bytes().into()),
                );
            }
        }
        let mut props = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/json".into())
            .with_headers(headers);
        if let Some(id) = message_id {
            props = props.with_message_id(id.into());
        }
        // Counted in flight until this returns, confirmed or not.
        let (leave, _in_flight) = self.gather.join(&self.next).await;
        if leave.gathered {
            metrics::counter!("communication_publishes_gathered_total").increment(1);
        }
        // One retry on a fresh connection if the pool turned out to be dead.
        for attempt in 0..2 {
            let pool = self.pool().await?;
            let i = if attempt == 0 {
                leave.channel
            } else {
                self.next.fetch_add(1, Ordering::Relaxed)
            } % pool.channels.len();
            let ch = &pool.channels[i];
            let sent = ch
                .basic_publish(
                    exchange.into(),
                    routing_key.into(),
                    BasicPublishOptions {
                        mandatory: true,
                        ..Default::default()
                    },
                    body,
                    props.clone(),
                )
                .await;
            let confirm = match sent {
                Ok(c) => c,
                Err(e) => {
                    self.invalidate(&pool).await;
                    if attempt == 0 {
                        continue;
                    }
                    return Err(PublishError::Unavailable(e.to_string()));
                }
            };
            let confirmation = match tokio::time::timeout(self.confirm_timeout, confirm).await {
                Err(_) => {
                    self.invalidate(&pool).await;
                    return Err(PublishError::ConfirmTimeout);
                }
                Ok(Err(e)) => {
                    // The publish may or may not have reached the broker; the caller treats
                    // this as not accepted (the worker's dedup makes a re-send harmless).
                    self.invalidate(&pool).await;
                    return Err(PublishError::Unavailable(e.to_string()));
                }
                Ok(Ok(c)) => c,
            };
            if confirmation.is_nack() {
                return Err(PublishError::Nacked);
            }
            if let Some(returned) = confirmation.take_message() {
                return Err(PublishError::Unroutable(returned.reply_text.to_string()));
            }
            return Ok(());
        }
        Err(PublishError::Unavailable("no usable channel".into()))
    }

    /// Closes the connection (graceful shutdown).
    pub async fn close(&self) {
        if let Some(p) = self.pool.write().await.take() {
            let _ = p.connection.close(200, "shutdown".into()).await;
        }
    }
}
