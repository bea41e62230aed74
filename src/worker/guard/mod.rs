//! The provider guard: a circuit breaker per provider and a token bucket per rate-limited
//! provider, shared by every worker replica through Redis, with a per-process fallback.
//!
//! Before each attempt the delivery policy asks [`ProviderGuard::admit`] (one Redis round trip
//! that checks the breaker and takes a token together; none at all for a provider without a
//! rate limit when the breaker is disabled, and none within [`CLOSED_MEMORY`] of a "closed, no
//! failures" answer for a provider without a rate limit: see `closed`). After the call it reports the outcome; a success
//! costs a round trip only when there was something to reset.
//!
//! Redis down or slower than `COMMUNICATION_GUARD_REDIS_TIMEOUT_MS`: the guard switches to
//! in-process breakers and buckets with the same rules (`breaker`, `bucket`), warns once per
//! outage, and tries Redis again at most once a second until it answers. Sends keep flowing;
//! during the outage each replica enforces the limits on its own.

pub mod breaker;
pub mod bucket;
mod closed;
mod scripts;

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redis::aio::MultiplexedConnection;
use uuid::Uuid;

pub use crate::config::GuardSettings;

pub use breaker::AfterFailure;
use breaker::{Breaker, Check};
use bucket::{Bucket, Take};
pub use closed::CLOSED_MEMORY;
use closed::ClosedMemory;

/// How long a reservation may reach into the future before callers are told to ask again.
const RESERVATION_HORIZON: Duration = Duration::from_secs(3600);
/// How long breaker state with nothing but old failures is kept.
const IDLE_TTL: Duration = Duration::from_secs(600);
/// How often Redis is tried again during an outage.
const RECHECK: Duration = Duration::from_secs(1);

/// The answer to "may I call this provider now?".
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Admission {
    /// Call it, then report the outcome with this pass.
    Go(Pass),
    /// The breaker is open until `until_ms` (epoch ms). `probing`: half-open, and another
    /// caller is probing (the lock lapses at `until_ms` at the latest).
    Open { until_ms: i64, probing: bool },
    /// Over the rate limit: wait `wait`. `reserved`: a token is already taken for this caller
    /// at the end of the wait, so it must not take another one then.
    Limited { wait: Duration, reserved: bool },
}

/// Proof of admission, handed back with the outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pass {
    token: u64,
    /// This caller holds the half-open probe.
    pub probe: bool,
    /// Failures counted when admitted: a success needs recording only if there were some.
    failures_seen: u32,
}

#[derive(Default)]
struct Local {
    breaker: Breaker,
    bucket: Option<Bucket>,
    last_used: i64,
}

struct Outage {
    down: bool,
    retry_at: Instant,
}

struct Shared {
    client: redis::Client,
    conn: tokio::sync::Mutex<Option<MultiplexedConnection>>,
}

pub struct ProviderGuard {
    settings: GuardSettings,
    namespace: String,
    shared: Option<Shared>,
    /// Per-process state: the fallback while Redis is unreachable.
    local: Mutex<HashMap<Uuid, Local>>,
    /// Recent "closed, no failures" answers of the shared breaker (`closed`).
    closed: ClosedMemory,
    outage: Mutex<Outage>,
    /// Probe tokens: unique per admission within the process, random across processes.
    token_base: u64,
    tokens: AtomicU64,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The Redis key of a provider's breaker (see `scripts`): one definition, shared with the
/// intake's read-only view of breakers (`guard_state`).
pub use crate::guard_state::breaker_key;

/// The Redis key of a provider's token bucket, in the breaker's cluster slot.
pub fn bucket_key(namespace: &str, provider: Uuid) -> String {
    format!("{namespace}:rl:{{{provider}}}")
}

fn ms(d: Duration) -> i64 {
    d.as_millis().min(i64::MAX as u128) as i64
}

impl ProviderGuard {
    /// A guard sharing state through Redis at `redis_url` (`None`: per-process only).
    pub fn new(settings: GuardSettings, namespace: &str, redis_url: Option<&str>) -> ProviderGuard {
        let shared = redis_url.and_then(|url| match redis::Client::open(url) {
            Ok(client) => Some(Shared {
                client,
                conn: tokio::sync::Mutex::new(None),
            }),
            Err(e) => {
                tracing::error!(error = %e, "REDIS_URL unusable; circuit breakers and rate limits are per process");
                None
            }
        });
        ProviderGuard {
            settings,
            namespace: namespace.to_owned(),
            shared,
            local: Mutex::new(HashMap::new()),
            closed: ClosedMemory::default(),
            outage: Mutex::new(Outage {
                down: false,
                retry_at: Instant::now(),
            }),
            token_base: rand::random::<u64>() & !0xffff_ffff,
            tokens: AtomicU64::new(1),
        }
    }

    pub fn settings(&self) -> &GuardSettings {
        &self.settings
    }

    /// `ns:cb:{provider}`: the provider id is the Redis Cluster hash tag, shared with its
    /// bucket, since one script touches both.
    fn breaker_key(&self, provider: Uuid) -> String {
        breaker_key(&self.namespace, provider)
    }

    fn bucket_key(&self, provider: Uuid) -> String {
        bucket_key(&self.namespace, provider)
    }

    fn next_token(&self) -> u64 {
        self.token_base | (self.tokens.fetch_add(1, Ordering::Relaxed) & 0xffff_ffff)
    }

    /// Checks the breaker of `provider` and, when it lets the call through and the provider
    /// has a rate limit, takes a token (unless `token_reserved`: one was taken earlier).
    pub async fn admit(
        &self,
        provider: Uuid,
        rate_per_second: Option<f64>,
        token_reserved: bool,
    ) -> Admission {
        let breaker_on = self.settings.threshold > 0;
        let rate = if token_reserved {
            None
        } else {
            rate_per_second.filter(|r| *r > 0.0)
        };
        let token = self.next_token();
        if !breaker_on && rate.is_none() {
            return Admission::Go(Pass {
                token,
                probe: false,
                failures_seen: 0,
            });
        }
        // Without a rate limit only the breaker is asked, and a recent "closed, no failures"
        // answer stands in for it (`closed`).
        let memorable = rate.is_none();
        if memorable && self.closed.fresh(provider, now_ms()) {
            return Admission::Go(Pass {
                token,
                probe: false,
                failures_seen: 0,
            });
        }
        let probe_ttl = ms(self.settings.probe_ttl);
        let horizon = ms(RESERVATION_HORIZON);
        let shared = self
            .call(|mut conn| {
                let (cb, rl) = (self.breaker_key(provider), self.bucket_key(provider));
                async move {
                    let reply: (i64, i64, i64) = scripts::ADMIT
                        .key(cb)
                        .key(rl)
                        .arg(token)
                        .arg(probe_ttl)
                        .arg(if breaker_on { 1 } else { 0 })
                        .arg(rate.unwrap_or(0.0))
                        .arg(horizon)
                        .arg(ms(IDLE_TTL))
                        .invoke_async(&mut conn)
                        .await?;
                    Ok(reply)
                }
            })
            .await;
        match shared {
            Some((code, value, failures)) => {
                if memorable && code == 0 && failures == 0 {
                    self.closed.remember(provider, now_ms());
                }
                let pass = |probe| {
                    Admission::Go(Pass {
                        token,
                        probe,
                        failures_seen: failures.max(0) as u32,
                    })
                };
                let wait = Duration::from_millis(value.max(0) as u64);
                match code {
                    0 => pass(false),
                    1 => pass(true),
                    2 => Admission::Open {
                        until_ms: value,
                        probing: false,
                    },
                    3 => Admission::Open {
                        until_ms: value,
                        probing: true,
                    },
                    4 => Admission::Limited {
                        wait,
                        reserved: true,
                    },
                    _ => Admission::Limited {
                        wait,
                        reserved: false,
                    },
                }
            }
            None => self.admit_locally(provider, breaker_on, rate, token, probe_ttl, horizon),
        }
    }

    fn admit_locally(
        &self,
        provider: Uuid,
        breaker_on: bool,
        rate: Option<f64>,
        token: u64,
        probe_ttl: i64,
        horizon: i64,
    ) -> Admission {
        let now = now_ms();
        let mut map = self.local.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > 10_000 {
            map.retain(|_, e| now - e.last_used < ms(IDLE_TTL));
        }
        let entry = map.entry(provider).or_default();
        entry.last_used = now;
        let mut probe = false;
        let mut failures_seen = 0;
        if breaker_on {
            match entry.breaker.check(now, token, probe_ttl) {
                Check::Closed { failures } => failures_seen = failures,
                Check::Probe => probe = true,
                Check::Open { until } => {
                    return Admission::Open {
                        until_ms: until,
                        probing: false,
                    };
                }
                Check::Probing { until } => {
                    return Admission::Open {
                        until_ms: until,
                        probing: true,
                    };
                }
            }
        }
        if let Some(rate) = rate {
            let bucket = entry.bucket.get_or_insert_with(|| Bucket::full(rate, now));
            let limited = match bucket.take(now, rate, horizon) {
                Take::Granted => None,
                Take::Reserved { wait_ms } => Some((wait_ms, true)),
                Take::Refused { wait_ms } => Some((wait_ms, false)),
            };
            if let Some((wait_ms, reserved)) = limited {
                entry.breaker.release_probe(token);
                return Admission::Limited {
                    wait: Duration::from_millis(wait_ms.max(0) as u64),
                    reserved,
                };
            }
        }
        Admission::Go(Pass {
            token,
            probe,
            failures_seen,
        })
    }

    /// The provider answered properly (sent, or refused the recipient): closes the breaker
    /// and resets its count, when there is anything to reset.
    pub async fn record_healthy(&self, provider: Uuid, pass: &Pass) {
        if self.settings.threshold == 0 || (!pass.probe && pass.failures_seen == 0) {
            return;
        }
        let shared = self.outcome(provider, "ok", pass).await;
        if shared.is_none() {
            self.with_local(provider, |b| b.on_success());
        }
    }

    /// The provider failed a call through its own fault (transient or provider-permanent).
    pub async fn record_failure(&self, provider: Uuid, pass: &Pass) -> AfterFailure {
        let s = self.settings;
        if s.threshold == 0 {
            return AfterFailure::Counted { failures: 0 };
        }
        self.closed.forget(provider);
        match self.outcome(provider, "fail", pass).await {
            Some((0, n)) => AfterFailure::Counted {
                failures: n.max(0) as u32,
            },
            Some((1, until)) => AfterFailure::Opened { until },
            Some((_, until)) => AfterFailure::AlreadyOpen { until },
            None => self.with_local(provider, |b| {
                b.on_failure(now_ms(), pass.token, s.threshold, ms(s.cooldown))
            }),
        }
    }

    /// Gives back a probe that was not used (the attempt could not even be recorded).
    pub async fn release(&self, provider: Uuid, pass: &Pass) {
        if !pass.probe {
            return;
        }
        if self.outcome(provider, "release", pass).await.is_none() {
            self.with_local(provider, |b| b.release_probe(pass.token));
        }
    }

    async fn outcome(&self, provider: Uuid, what: &'static str, pass: &Pass) -> Option<(i64, i64)> {
        let s = self.settings;
        let token = pass.token;
        self.call(|mut conn| {
            let cb = self.breaker_key(provider);
            async move {
                let reply: (i64, i64) = scripts::OUTCOME
                    .key(cb)
                    .arg(what)
                    .arg(token)
                    .arg(s.threshold)
                    .arg(ms(s.cooldown))
                    .arg(ms(IDLE_TTL))
                    .invoke_async(&mut conn)
                    .await?;
                Ok(reply)
            }
        })
        .await
    }

    fn with_local<T>(&self, provider: Uuid, f: impl FnOnce(&mut Breaker) -> T) -> T {
        let mut map = self.local.lock().unwrap_or_else(|p| p.into_inner());
        let entry = map.entry(provider).or_default();
        entry.last_used = now_ms();
        f(&mut entry.breaker)
    }

    /// Runs one Redis call within the timeout; `None` means "use the per-process state".
    async fn call<T, F, Fut>(&self, f: F) -> Option<T>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let shared = self.shared.as_ref()?;
        {
            let mut outage = self.outage.lock().unwrap_or_else(|p| p.into_inner());
            if outage.down {
                if Instant::now() < outage.retry_at {
                    return None;
                }
                // This caller tries Redis again; the others stay local meanwhile.
                outage.retry_at = Instant::now() + RECHECK;
            }
        }
        let attempt = tokio::time::timeout(self.settings.redis_timeout, async {
            let conn = self.connection(shared).await?;
            f(conn).await
        })
        .await;
        match attempt {
            Ok(Ok(value)) => {
                self.mark_up();
                Some(value)
            }
            Ok(Err(e)) => {
                self.mark_down(shared, &e.to_string()).await;
                None
            }
            Err(_) => {
                self.mark_down(shared, "timed out").await;
                None
            }
        }
    }

    async fn connection(&self, shared: &Shared) -> redis::RedisResult<MultiplexedConnection> {
        let mut slot = shared.conn.lock().await;
        if let Some(conn) = slot.as_ref() {
            return Ok(conn.clone());
        }
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.settings.redis_timeout))
            .set_response_timeout(Some(self.settings.redis_timeout));
        let conn = shared
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        *slot = Some(conn.clone());
        Ok(conn)
    }

    fn mark_up(&self) {
        let mut outage = self.outage.lock().unwrap_or_else(|p| p.into_inner());
        if outage.down {
            outage.down = false;
            metrics::gauge!("communication_guard_degraded").set(0.0);
            tracing::info!(
                "Redis answers again; circuit breakers and rate limits are shared across replicas again"
            );
        }
    }

    async fn mark_down(&self, shared: &Shared, why: &str) {
        // A broken connection is rebuilt on the next try.
        *shared.conn.lock().await = None;
        let mut outage = self.outage.lock().unwrap_or_else(|p| p.into_inner());
        outage.retry_at = Instant::now() + RECHECK;
        if !outage.down {
            outage.down = true;
            metrics::counter!("communication_guard_redis_outages_total").increment(1);
            metrics::gauge!("communication_guard_degraded").set(1.0);
            tracing::warn!(error = %why,
                "Redis unavailable; circuit breakers and rate limits fall back to per-process state");
        }
    }

    /// True while the per-process state is in use because Redis did not answer.
    pub fn degraded(&self) -> bool {
        self.outage.lock().unwrap_or_else(|p| p.into_inner()).down
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_providers_breaker_and_bucket_share_a_hash_tag_under_the_namespace() {
        let provider = Uuid::new_v4();
        let (cb, rl) = (breaker_key("prod", provider), bucket_key("prod", provider));
        assert_eq!(cb, format!("prod:cb:{{{provider}}}"));
        assert_eq!(rl, format!("prod:rl:{{{provider}}}"));
        let tag = |k: &str| k[k.find('{').unwrap_or(0)..].to_owned();
        assert_eq!(tag(&cb), tag(&rl));
    }
}
