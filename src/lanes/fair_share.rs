//! The fair share: per tenant, channel and lane, a fixed one-second window counter in Redis,
//! `{ns}:fair:{<tenant>}:{channel}:{lane}:{epoch_second}` (the tenant is the Redis Cluster
//! hash tag, so the three lanes of one decision share a slot; each key expires after 2 s).
//!
//! A message asking for lane L takes L while its tenant put fewer than L's share into L this
//! second, else it tries the next lower lane; `bulk` has no share (the floor). So a tenant
//! that marks its whole burst `high` gets `COMMUNICATION_FAIR_SHARE_HIGH` per second into the
//! high lane and the rest queues behind everyone's normal or bulk traffic, and another
//! tenant's `high` messages are not held up behind it.
//!
//! Redis down or slow (past `COMMUNICATION_FAIR_SHARE_REDIS_TIMEOUT_MS`): the message takes
//! the lane it asked for — the decision never blocks, refuses or loses a message — with a
//! warning (at most one per [`WARN_EVERY`]) and `communication_fair_share_unavailable_total`.
//! After a failure, Redis is not asked again for [`RECHECK`], so an outage costs one timeout
//! per second, not one per message.

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

/// KEYS: the high, normal and bulk counters of this second. ARGV: requested lane (1 high, 2
/// normal, 3 bulk), high share, normal share. Returns the lane taken (1–3) and counts it.
static DECIDE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local shares = {tonumber(ARGV[2]), tonumber(ARGV[3])}
local lane = tonumber(ARGV[1])
while lane < 3 do
  local n = tonumber(redis.call('GET', KEYS[lane]) or '0')
  if n < shares[lane] then break end
  lane = lane + 1
end
if redis.call('INCR', KEYS[lane]) == 1 then redis.call('EXPIRE', KEYS[lane], 2) end
return lane
",
    )
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

struct Outage {
    /// Redis is not asked before this.
    retry_at: Option<Instant>,
    last_warning: Option<Instant>,
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
        if !self.settings.enabled {
            return Priority::Normal;
        }
        if requested == Priority::Bulk {
            // The floor: nothing to decide, no round trip.
            return Priority::Bulk;
        }
        let Some(lane) = self.ask_redis(tenant, channel, requested).await else {
            return requested;
        };
        if lane != requested {
            metrics::counter!("communication_lane_demotions_total",
                "channel" => channel.as_str(), "from" => requested.as_str(), "to" => lane.as_str())
            .increment(1);
        }
        lane
    }

    async fn ask_redis(
        &self,
        tenant: &TenantId,
        channel: Channel,
        requested: Priority,
    ) -> Option<Priority> {
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
        let second = chrono::Utc::now().timestamp();
        let keys: Vec<String> = Priority::ALL
            .iter()
            .map(|lane| counter_key(&self.namespace, tenant, channel, *lane, second))
            .collect();
        let timeout = self.settings.redis_timeout;
        let attempt = tokio::time::timeout(timeout, async {
            let mut conn = self.connection(client).await?;
            DECIDE
                .key(&keys[0])
                .key(&keys[1])
                .key(&keys[2])
                .arg(requested.index() + 1)
                .arg(self.settings.share_high)
                .arg(self.settings.share_normal)
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
                let lane = usize::try_from(n - 1)
                    .ok()
                    .and_then(|i| Priority::ALL.get(i));
                return Some(lane.copied().unwrap_or(requested));
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => "timed out".to_owned(),
        };
        *self.conn.lock().await = None;
        metrics::counter!("communication_fair_share_unavailable_total").increment(1);
        let mut outage = self.outage.lock().unwrap_or_else(|p| p.into_inner());
        outage.retry_at = Some(Instant::now() + RECHECK);
        if outage
            .last_warning
            .is_none_or(|w| w.elapsed() >= WARN_EVERY)
        {
            outage.last_warning = Some(Instant::now());
            tracing::warn!(error = %failure,
                "Redis unavailable; messages take the lane they ask for (no fair share) until it answers");
        }
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
