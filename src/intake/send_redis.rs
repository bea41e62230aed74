//! The send path's Redis connection: one multiplexed connection shared by every
//! `POST /v1/send` of this replica (Redis answers its pipelined requests in order), rather than a
//! pooled connection per request — the pool checks each connection out with a round trip of
//! its own (`UNWATCH` + `PING`), which cost as much Redis work as the send's own script.
//!
//! It connects on first use (or at start-up, [`SendRedis::warm_up`]) and again after a
//! failure broke it. A failed connect is not tried again for [`RECONNECT_AFTER`]: meanwhile
//! sends are answered at once as with Redis down (accepted without the claim, see
//! docs/operations.md) instead of each waiting for a connect timeout in turn.

use std::sync::Mutex as StdMutex;
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use tokio::sync::Mutex;

/// How long a send waits for Redis's answer (the redis crate's default for a connection,
/// which the pooled connections used before).
pub const RESPONSE_TIMEOUT: Duration = Duration::from_millis(500);
/// How long connecting may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long after a failed connect Redis is left alone.
pub const RECONNECT_AFTER: Duration = Duration::from_secs(1);

/// Why there is no connection to use.
#[derive(Debug)]
pub enum Unavailable {
    /// `REDIS_URL` did not parse.
    NotConfigured,
    /// Connecting failed less than [`RECONNECT_AFTER`] ago.
    Resting,
    Connect(redis::RedisError),
}

impl Unavailable {
    /// Whether Redis was tried (a connect failed) rather than left alone.
    pub fn tried(&self) -> bool {
        matches!(self, Unavailable::Connect(_))
    }
}

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unavailable::NotConfigured => f.write_str("REDIS_URL is not usable"),
            Unavailable::Resting => f.write_str("the last connect failed; not retried yet"),
            Unavailable::Connect(e) => write!(f, "connect: {e}"),
        }
    }
}

/// A connection to use for one send; hand it back to [`SendRedis::broken`] if a call on it
/// failed.
#[derive(Clone)]
pub struct Link {
    pub conn: MultiplexedConnection,
    generation: u64,
}

struct Attempts {
    /// Bumped on every new connection, so a failure forgets only the connection it happened on.
    generation: u64,
    failed_at: Option<Instant>,
}

pub struct SendRedis {
    client: Option<redis::Client>,
    current: StdMutex<Option<Link>>,
    /// Held while connecting, so concurrent sends wait for one attempt instead of each making
    /// their own.
    attempts: Mutex<Attempts>,
}

impl SendRedis {
    pub fn new(url: &str) -> SendRedis {
        let client = match redis::Client::open(url) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(error = %e, "REDIS_URL unusable; sends are accepted without Redis");
                None
            }
        };
        SendRedis {
            client,
            current: StdMutex::new(None),
            attempts: Mutex::new(Attempts {
                generation: 0,
                failed_at: None,
            }),
        }
    }

    fn cached(&self) -> Option<Link> {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The shared connection, connecting if there is none.
    pub async fn link(&self) -> Result<Link, Unavailable> {
        if let Some(link) = self.cached() {
            return Ok(link);
        }
        let client = self.client.as_ref().ok_or(Unavailable::NotConfigured)?;
        let mut attempts = self.attempts.lock().await;
        // Another send may have connected while this one waited.
        if let Some(link) = self.cached() {
            return Ok(link);
        }
        if attempts
            .failed_at
            .is_some_and(|at| at.elapsed() < RECONNECT_AFTER)
        {
            return Err(Unavailable::Resting);
        }
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT));
        match client
            .get_multiplexed_async_connection_with_config(&config)
            .await
        {
            Ok(conn) => {
                attempts.generation += 1;
                attempts.failed_at = None;
                let link = Link {
                    conn,
                    generation: attempts.generation,
                };
                *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Some(link.clone());
                Ok(link)
            }
            Err(e) => {
                attempts.failed_at = Some(Instant::now());
                Err(Unavailable::Connect(e))
            }
        }
    }

    /// After `error` on `link`: forgets the connection when the error says it is broken or
    /// Redis did not answer in time (the next send connects again); an error of Redis itself
    /// (a script error) leaves it in use.
    pub fn broken(&self, link: &Link, error: &redis::RedisError) {
        let gone = error.is_io_error()
            || error.is_timeout()
            || error.is_connection_dropped()
            || error.is_unrecoverable_error();
        if !gone {
            return;
        }
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if current
            .as_ref()
            .is_some_and(|c| c.generation == link.generation)
        {
            *current = None;
        }
    }

    /// Connects ahead of the first send; a failure is only logged (sends connect again).
    pub async fn warm_up(&self) {
        if let Err(e) = self.link().await {
            tracing::warn!(error = %e, "Redis not reachable at start-up; sends are accepted without the idempotency claim until it is");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_failed_connect_is_not_retried_at_once_and_a_bad_url_is_unavailable() {
        // Nothing listens on port 9.
        let redis = SendRedis::new("redis://127.0.0.1:9");
        let failed = redis.link().await.err().expect("no connection");
        assert!(matches!(failed, Unavailable::Connect(_)) && failed.tried());
        let started = Instant::now();
        for _ in 0..100 {
            let resting = redis.link().await.err().expect("no connection");
            assert!(matches!(resting, Unavailable::Resting) && !resting.tried());
        }
        assert!(started.elapsed() < Duration::from_millis(100));
        let bad = SendRedis::new("not a url");
        let bad = bad.link().await.err().expect("no connection");
        assert!(matches!(bad, Unavailable::NotConfigured) && !bad.tried());
    }
}
