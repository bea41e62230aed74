//! The fair share: per tenant, channel and lane, a fixed one-second window counter in Redis,
//! `{ns}:fair:{<tenant>}:{channel}:{lane}:{epoch_second}` (the tenant is the Redis Cluster
//! hash tag, so the lanes of one decision — and the intake's other keys of the same send —
//! share a slot; each key expires after 2 s).
//!
//! A message asking for lane L takes L while its tenant put fewer than L's share into L this
//! second, else it tries the next lower lane; `bulk` has no share (the floor). So a tenant
//! that marks its whole burst `high` gets `COMMUNICATION_FAIR_SHARE_HIGH` per second into the
//! high lane and the rest queues behind everyone's normal or bulk traffic, and another
//! tenant's `high` messages are not held up behind it.
//!
//! The decision is [`FAIR_LANE_LUA`], run two ways: the router asks Redis itself
//! ([`LaneDecider::decide`], one round trip), and the intake runs it inside its one script per
//! send, with the idempotency claim and the limits (`intake::send_gate`), from
//! [`LaneDecider::ask`].
//!
//! Redis down or slow: the message takes the lane it asked for — the decision never blocks,
//! refuses or loses a message — with a warning (at most one per [`WARN_EVERY`]) and
//! `communication_fair_share_unavailable_total`. The router waits at most
//! `COMMUNICATION_FAIR_SHARE_REDIS_TIMEOUT_MS`, and after a failure does not ask Redis again
//! for [`RECHECK`], so an outage costs one timeout per second, not one per message. The intake
//! waits no longer than its send script's own timeout (see `intake::send_redis`).

use std::sync::LazyLock;
use std::sync::Mutex as StdMutex;
use std::time::{Duration, Instant};

use redis::Script;
use redis::aio::MultiplexedConnection;
use tokio::sync::Mutex;

use crate::config::LaneSettings;
use crate::domain::{Channel, Priority, TenantId};

/// How long Redis is left alone after it failed to answer.
pub const RECHECK: Duration = Duration::from_secs(1);
/// At most one "Redis unavailable" warning per this long.
pub const WARN_EVERY: Duration = Duration::from_secs(10);

/// The Lua function `fair_lane(keys, lane, share_high, share_normal)`: the lane (1 high, 2
/// normal, 3 bulk) a message asking for `lane` takes, counted in its counter. `keys[l]` is the
/// counter of lane `l` this second, for `l` from `lane` to 3 (the lanes it may take). Shared by
/// the router's [`LaneDecider::decide`] and the intake's one script per send
/// (`intake::send_gate`).
pub const FAIR_LANE_LUA: &str = r"
local function fair_lane(keys, lane, share_high, share_normal)
  local shares = {share_high, share_normal}
  while lane < 3 do
    local n = tonumber(redis.call('GET', keys[lane]) or '0')
    if n < shares[lane] then break end
    lane = lane + 1
  end
  if redis.call('INCR', keys[lane]) == 1 then redis.call('EXPIRE', keys[lane], 2) end
  return lane
end
";

/// KEYS: the counters of this second from the requested lane down to bulk. ARGV: requested
/// lane (1 high, 2 normal, 3 bulk), high share, normal share. Returns the lane taken (1–3) and
/// counts it.
static DECIDE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{FAIR_LANE_LUA}
local lane = tonumber(ARGV[1])
local keys = {{}}
for l = lane, 3 do keys[l] = KEYS[l - lane + 1] end
return fair_lane(keys, lane, tonumber(ARGV[2]), tonumber(ARGV[3]))
"
    ))
});

/// The counter of one tenant, channel and lane in one second.
pub fn counter_key(
    namespace: &str,
    tenant: &TenantId,
    channel: Channel,
    lane: Priority,
    epoch_second: i64,
) -> String {
    format!(
        "{namespace}:fair:{{{}}}:{}:{}:{epoch_second}",
        tenant.as_str(),
        channel.as_str(),
        lane.as_str()
    )
}

/// The counters a message asking for `requested` may touch: its lane's and each lower one's.
fn counter_keys(
    namespace: &str,
    tenant: &TenantId,
    channel: Channel,
    requested: Priority,
    epoch_second: i64,
) -> Vec<String> {
    Priority::ALL[requested.index()..]
        .iter()
        .map(|lane| counter_key(namespace, tenant, channel, *lane, epoch_second))
        .collect()
}

/// A lane decision to be made inside another Redis script (the intake's one call per send),
/// with [`FAIR_LANE_LUA`]: from [`LaneDecider::ask`], answered with [`LaneDecider::answered`]
/// or [`LaneDecider::unanswered`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaneAsk {
    pub requested: Priority,
    /// The counters of this second from `requested` down to bulk, in that order.
    pub keys: Vec<String>,
    pub share_high: u32,
    pub share_normal: u32,
}

struct Outage {
    /// Redis is not asked before this.
    retry_at: Option<Instant>,
    last_warning: Option<Instant>,
}

impl Outage {
    /// Warns that fair share is off, at most once per [`WARN_EVERY`].
    fn warn(&mut self, error: &dyn std::fmt::Display) {
        if self.last_warning.is_none_or(|w| w.elapsed() >= WARN_EVERY) {
            self.last_warning = Some(Instant::now());
            tracing::warn!(error = %error,
                "Redis unavailable; messages take the lane they ask for (no fair share) until it answers");
        }
    }
}

/// Decides lanes; one per process, shared by the intake's requests or the worker's router.
pub struct LaneDecider {
    settings: LaneSettings,
    namespace: String,
    /// `None`: no Redis configured (or its URL did not parse): every message takes the lane
    /// it asked for.
    client: Option<redis::Client>,
    /// One multiplexed connection, rebuilt after a failure.
    conn: Mutex<Option<MultiplexedConnection>>,
    outage: StdMutex<Outage>,
}

impl LaneDecider {
    pub fn new(settings: LaneSettings, namespace: &str, redis_url: Option<&str>) -> LaneDecider {
        let client = redis_url.and_then(|url| match redis::Client::open(url) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(error = %e, "REDIS_URL unusable; lanes work without fair share");
                None
            }
        });
        LaneDecider {
            settings,
            namespace: namespace.to_owned(),
            client,
            conn: Mutex::new(None),
            outage: StdMutex::new(Outage {
                retry_at: None,
                last_warning: None,
            }),
        }
    }

    /// Whether lanes are on (`COMMUNICATION_LANES`).
    pub fn enabled(&self) -> bool {
        self.settings.enabled
    }

    /// The lane a message of `tenant` asking for `requested` takes. With lanes off, always
    /// `normal` (one lane, as before lanes existed).
    pub async fn decide(
        &self,
        tenant: &TenantId,
        channel: Channel,
        requested: Priority,
    ) -> Priority {
        let second = chrono::Utc::now().timestamp();
        let ask = match self.ask(tenant, channel, requested, second) {
            Ok(ask) => ask,
            Err(lane) => return lane,
        };
        match self.ask_redis(&ask).await {
            Some(n) => self.answered(channel, &ask, n),
            None => requested,
        }
    }

    /// What deciding the lane of a message of `tenant` asking for `requested` needs from
    /// Redis in second `epoch_second`; `Err(lane)` when Redis has nothing to decide: lanes off
    /// (`normal`), or `bulk` asked (the floor).
    pub fn ask(
        &self,
        tenant: &TenantId,
        channel: Channel,
        requested: Priority,
        epoch_second: i64,
    ) -> Result<LaneAsk, Priority> {
        if !self.settings.enabled {
            return Err(Priority::Normal);
        }
        if requested == Priority::Bulk {
            // The floor: nothing to decide, no round trip.
            return Err(Priority::Bulk);
        }
        Ok(LaneAsk {
            requested,
            keys: counter_keys(&self.namespace, tenant, channel, requested, epoch_second),
            share_high: self.settings.share_high,
            share_normal: self.settings.share_normal,
        })
    }

    /// The lane [`FAIR_LANE_LUA`] answered (`n`, 1–3) for `ask`; a demotion is counted in
    /// `communication_lane_demotions_total`.
    pub fn answered(&self, channel: Channel, ask: &LaneAsk, n: i64) -> Priority {
        let lane = usize::try_from(n - 1)
            .ok()
            .and_then(|i| Priority::ALL.get(i))
            .copied()
            .unwrap_or(ask.requested);
        if lane != ask.requested {
            metrics::counter!("communication_lane_demotions_total",
                "channel" => channel.as_str(), "from" => ask.requested.as_str(), "to" => lane.as_str())
            .increment(1);
        }
        lane
    }

    /// Redis did not answer the call that carried `ask`: the lane asked for, counted in
    /// `communication_fair_share_unavailable_total`, with a warning at most every
    /// [`WARN_EVERY`].
    pub fn unanswered(&self, ask: &LaneAsk, error: &dyn std::fmt::Display) -> Priority {
        metrics::counter!("communication_fair_share_unavailable_total").increment(1);
        let mut outage = self.outage.lock().unwrap_or_else(|p| p.into_inner());
        outage.warn(error);
        ask.requested
    }

    /// The router's own round trip for `ask`: the lane number, or `None` when Redis did not
    /// answer in time (then it is left alone for [`RECHECK`]).
    async fn ask_redis(&self, ask: &LaneAsk) -> Option<i64> {
        let client = self.client.as_ref()?;
        {
            let mut outage = self.outage.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(at) = outage.retry_at {
                if Instant::now() < at {
                    return None;
                }
                // This caller tries again; the others keep their lane meanwhile.
                outage.retry_at = Some(Instant::now() + RECHECK);
            }
        }
        let timeout = self.settings.redis_timeout;
        let attempt = tokio::time::timeout(timeout, async {
            let mut conn = self.connection(client).await?;
            let mut invocation = DECIDE.prepare_invoke();
            for key in &ask.keys {
                invocation.key(key);
            }
            invocation
                .arg(ask.requested.index() + 1)
                .arg(ask.share_high)
                .arg(ask.share_normal)
                .invoke_async::<i64>(&mut conn)
                .await
        })
        .await;
        let failure = match attempt {
            Ok(Ok(n)) => {
                self.outage
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .retry_at = None;
                return Some(n);
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => "timed out".to_owned(),
        };
        *self.conn.lock().await = None;
        metrics::counter!("communication_fair_share_unavailable_total").increment(1);
        let mut outage = self.outage.lock().unwrap_or_else(|p| p.into_inner());
        outage.retry_at = Some(Instant::now() + RECHECK);
        outage.warn(&failure);
        None
    }

    async fn connection(
        &self,
        client: &redis::Client,
    ) -> redis::RedisResult<MultiplexedConnection> {
        let mut slot = self.conn.lock().await;
        if let Some(conn) = slot.as_ref() {
            return Ok(conn.clone());
        }
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.settings.redis_timeout))
            .set_response_timeout(Some(self.settings.redis_timeout));
        let conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        *slot = Some(conn.clone());
        Ok(conn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_keys_carry_the_tenant_as_hash_tag() {
        let tenant = TenantId::parse("acme").expect("tenant");
        assert_eq!(
            counter_key("ns", &tenant, Channel::Sms, Priority::High, 1_700_000_000),
            "ns:fair:{acme}:sms:high:1700000000"
        );
    }

    #[tokio::test]
    async fn with_lanes_off_everything_is_normal_and_redis_is_not_asked() {
        let settings = LaneSettings {
            enabled: false,
            ..LaneSettings::default()
        };
        // An unreachable Redis: asking it would take the timeout.
        let d = LaneDecider::new(settings, "ns", Some("redis://127.0.0.1:1"));
        let tenant = TenantId::parse("acme").expect("tenant");
        for p in Priority::ALL {
            assert_eq!(d.decide(&tenant, Channel::Email, p).await, Priority::Normal);
        }
    }

    #[tokio::test]
    async fn an_unreachable_redis_gives_the_requested_lane_quickly() {
        let settings = LaneSettings {
            redis_timeout: Duration::from_millis(200),
            ..LaneSettings::default()
        };
        let d = LaneDecider::new(settings, "ns", Some("redis://127.0.0.1:1"));
        let tenant = TenantId::parse("acme").expect("tenant");
        let started = Instant::now();
        for _ in 0..50 {
            assert_eq!(
                d.decide(&tenant, Channel::Sms, Priority::High).await,
                Priority::High
            );
        }
        // One failed try, then Redis is left alone for a second.
        assert!(
            started.elapsed() < Duration::from_millis(800),
            "{:?}",
            started.elapsed()
        );
    }
}
