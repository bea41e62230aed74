//! A read-only view of the providers' circuit breakers as the worker's guard keeps them in
//! Redis, for the intake's provider health (the intake must not depend on the worker).
//!
//! This module is the one place outside `worker::guard` that knows the breaker's Redis
//! layout: [`breaker_key`] names the key and [`read_breakers`] reads the hash fields the
//! guard's scripts write (`failures`, `open_until`, `probe_until`, epoch milliseconds of
//! Redis's own clock). It never writes.

use chrono::{DateTime, Utc};
use redis::aio::ConnectionLike;
use uuid::Uuid;

/// The Redis key of a provider's breaker (a hash): `{ns}:cb:{<provider id>}`, the provider id
/// being the Redis Cluster hash tag its keys share. The worker's guard writes the breaker
/// under this same key (`worker::guard` re-exports this function).
pub fn breaker_key(namespace: &str, provider: Uuid) -> String {
    format!("{namespace}:cb:{{{provider}}}")
}

/// Where a breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    /// Calls go through.
    Closed,
    /// Calls are refused until `until`.
    Open,
    /// The cool-down is over: the next call probes the provider (or one is probing until
    /// `until`).
    HalfOpen,
}

/// A breaker as read from Redis.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct BreakerView {
    pub state: BreakerState,
    /// Open: when a probe will be let through. Half-open: when the running probe lapses
    /// (`null` while nobody probes). Closed: `null`.
    pub until: Option<DateTime<Utc>>,
    /// Consecutive failures counted.
    pub failures: u32,
}

/// Interprets a breaker hash at Redis time `now_ms`, the way the guard's admit script does.
pub fn interpret(
    failures: Option<u32>,
    open_until: Option<i64>,
    probe_until: Option<i64>,
    now_ms: i64,
) -> BreakerView {
    let failures = failures.unwrap_or(0);
    let at = |ms: i64| DateTime::<Utc>::from_timestamp_millis(ms);
    match open_until {
        None => BreakerView {
            state: BreakerState::Closed,
            until: None,
            failures,
        },
        Some(open) if now_ms < open => BreakerView {
            state: BreakerState::Open,
            until: at(open),
            failures,
        },
        Some(_) => BreakerView {
            state: BreakerState::HalfOpen,
            until: probe_until.filter(|&p| p > now_ms).and_then(at),
            failures,
        },
    }
}

/// The breakers of `providers`, in order, in one round trip (Redis `TIME` plus one `HMGET`
/// per provider). A provider without a key (never failed, or expired) is closed.
pub async fn read_breakers<C: ConnectionLike>(
    conn: &mut C,
    namespace: &str,
    providers: &[Uuid],
) -> redis::RedisResult<Vec<BreakerView>> {
    let mut pipe = redis::pipe();
    pipe.cmd("TIME");
    for p in providers {
        pipe.cmd("HMGET")
            .arg(breaker_key(namespace, *p))
            .arg("failures")
            .arg("open_until")
            .arg("probe_until");
    }
    type Fields = (Option<u32>, Option<i64>, Option<i64>);
    let (time, fields): ((i64, i64), Vec<Fields>) = {
        let mut replies: Vec<redis::Value> = pipe.query_async(conn).await?;
        if replies.is_empty() {
            return Err(redis::RedisError::from((
                redis::ErrorKind::UnexpectedReturnType,
                "no reply to TIME",
            )));
        }
        let time = redis::from_redis_value(replies.remove(0))?;
        let fields = replies
            .into_iter()
            .map(redis::from_redis_value)
            .collect::<Result<Vec<Fields>, _>>()?;
        (time, fields)
    };
    let now_ms = time.0 * 1000 + time.1 / 1000;
    Ok(fields
        .into_iter()
        .map(|(f, open, probe)| interpret(f, open, probe, now_ms))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_breaker_reads_as_the_guard_would_admit() {
        let closed = interpret(Some(2), None, None, 1_000);
        assert_eq!(
            (closed.state, closed.until, closed.failures),
            (BreakerState::Closed, None, 2)
        );
        let open = interpret(Some(5), Some(2_000), None, 1_000);
        assert_eq!(open.state, BreakerState::Open);
        assert_eq!(open.until.map(|t| t.timestamp_millis()), Some(2_000));
        let waiting = interpret(Some(5), Some(500), None, 1_000);
        assert_eq!(
            (waiting.state, waiting.until),
            (BreakerState::HalfOpen, None)
        );
        let probing = interpret(Some(5), Some(500), Some(1_500), 1_000);
        assert_eq!(probing.state, BreakerState::HalfOpen);
        assert_eq!(probing.until.map(|t| t.timestamp_millis()), Some(1_500));
        let lapsed = interpret(Some(5), Some(500), Some(900), 1_000);
        assert_eq!(lapsed.until, None);
    }
}
