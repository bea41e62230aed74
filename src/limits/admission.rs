//! Admission of a send under the tenant's limits: one atomic Redis script checks and counts
//! the daily quota and the accept rate, so concurrent sends on any number of intake replicas
//! stop at exactly the quota.
//!
//! Keys (`ns` is `COMMUNICATION_NAMESPACE`; `{tenant}` is the Redis Cluster hash tag, so both
//! keys of one script land in one slot):
//! - `ns:usage:{tenant}:<channel>:<YYYY-MM-DD>`: sends accepted over HTTP that UTC day,
//!   counted for every tenant (limited or not) and kept two days;
//! - `ns:rate:{tenant}:<unix second>`: sends accepted in that second (only for a tenant with
//!   an accept rate), kept two seconds.
//!
//! The accept rate is a fixed one-second window on the intake's clock: at most N sends are
//! accepted in each wall-clock second (so at most 2N can land in any 1 s span straddling a
//! boundary); a refusal says `Retry-After: 1`. A refusal counts nothing; the daily quota is
//! checked first, since waiting a second does not help a tenant past its quota.

use chrono::{DateTime, Days, NaiveDate, Utc};
use deadpool_redis::redis::{self, Script};

use super::{LimitsCache, TenantLimits};
use crate::domain::Channel;

/// How long a day's usage counter is kept: the day and the next.
pub const USAGE_TTL_SECS: u64 = 2 * 24 * 3600;
/// How long a one-second rate window is kept.
const RATE_WINDOW_TTL_SECS: u64 = 2;

pub fn usage_key(ns: &str, tenant: &str, channel: Channel, day: NaiveDate) -> String {
    format!(
        "{ns}:usage:{{{tenant}}}:{}:{}",
        channel.as_str(),
        day.format("%Y-%m-%d")
    )
}

fn rate_key(ns: &str, tenant: &str, second: i64) -> String {
    format!("{ns}:rate:{{{tenant}}}:{second}")
}

// KEYS[1] usage counter, KEYS[2] rate window. ARGV[1] quota (-1: none), ARGV[2] rate (-1:
// none), ARGV[3] usage TTL, ARGV[4] window TTL. Returns 0 admitted (counted), 1 over the
// rate, 2 over the quota.
const ADMIT: &str = r"
local quota = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
if quota >= 0 and tonumber(redis.call('GET', KEYS[1]) or '0') >= quota then return 2 end
if rate >= 0 then
  if tonumber(redis.call('GET', KEYS[2]) or '0') >= rate then return 1 end
  if redis.call('INCR', KEYS[2]) == 1 then redis.call('EXPIRE', KEYS[2], ARGV[4]) end
end
if redis.call('INCR', KEYS[1]) == 1 then redis.call('EXPIRE', KEYS[1], ARGV[3]) end
return 0
";

// Takes one unit back from each key that still counts one.
const GIVE_BACK: &str = r"
for _, k in ipairs(KEYS) do
  if tonumber(redis.call('GET', k) or '0') > 0 then redis.call('DECR', k) end
end
return 1
";

/// Why a send was refused, and when to try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Over the accept rate: `Retry-After` in seconds (1).
    RateLimited { retry_after_secs: u64 },
    /// The channel's daily quota is spent: `Retry-After` is the time to UTC midnight.
    QuotaExceeded {
        channel: Channel,
        quota: u32,
        retry_after_secs: u64,
    },
}

impl Refusal {
    /// The `reason` label of `communication_intake_refused_total` and the problem's `code`.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::RateLimited { .. } => "rate_limited",
            Refusal::QuotaExceeded { .. } => "quota_exceeded",
        }
    }

    pub fn retry_after_secs(&self) -> u64 {
        match self {
            Refusal::RateLimited { retry_after_secs }
            | Refusal::QuotaExceeded {
                retry_after_secs, ..
            } => *retry_after_secs,
        }
    }
}

/// What an admitted send counted, to give back if it is not accepted after all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counted {
    keys: Vec<String>,
}

/// Whole seconds (at least 1) from `now` to the next UTC midnight.
pub fn seconds_to_utc_midnight(now: DateTime<Utc>) -> u64 {
    let next = now
        .date_naive()
        .checked_add_days(Days::new(1))
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc());
    let millis = next.map_or(1000, |n| (n - now).num_milliseconds());
    u64::try_from(millis).unwrap_or(0).div_ceil(1000).max(1)
}

/// Intake's admission of sends: the limits cache and the namespace of the counters.
pub struct LimitsGate {
    namespace: String,
    cache: LimitsCache,
}

impl LimitsGate {
    pub fn new(namespace: &str, cache: LimitsCache) -> LimitsGate {
        LimitsGate {
            namespace: namespace.to_owned(),
            cache,
        }
    }

    pub fn cache(&self) -> &LimitsCache {
        &self.cache
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Checks and counts one send of `tenant` on `channel`. `Ok(Some(counted))` when admitted
    /// and counted; `Ok(None)` when admitted uncounted because Redis is unavailable (`conn` is
    /// `None`, or the script failed): limits are not enforced while Redis is down, as the
    /// idempotency claim is not (see docs/operations.md).
    pub async fn admit(
        &self,
        conn: Option<&mut deadpool_redis::Connection>,
        tenant: &str,
        channel: Channel,
        now: DateTime<Utc>,
    ) -> Result<Option<Counted>, Refusal> {
        let Some(conn) = conn else {
            return Ok(None);
        };
        let limits = self.cache.get(tenant).await;
        match self.run(conn, tenant, channel, limits, now).await {
            Ok(outcome) => outcome,
            Err(e) => {
                tracing::warn!(error = %e, "Redis admission failed; accepting without limits");
                Ok(None)
            }
        }
    }

    async fn run(
        &self,
        conn: &mut deadpool_redis::Connection,
        tenant: &str,
        channel: Channel,
        limits: TenantLimits,
        now: DateTime<Utc>,
    ) -> Result<Result<Option<Counted>, Refusal>, redis::RedisError> {
        let usage = usage_key(&self.namespace, tenant, channel, now.date_naive());
        let rate = rate_key(&self.namespace, tenant, now.timestamp());
        let quota = limits.daily_quota(channel);
        let limit = |v: Option<u32>| v.map_or(-1, i64::from);
        let verdict: i64 = Script::new(ADMIT)
            .key(&usage)
            .key(&rate)
            .arg(limit(quota))
            .arg(limit(limits.accept_rate_per_second))
            .arg(USAGE_TTL_SECS)
            .arg(RATE_WINDOW_TTL_SECS)
            .invoke_async(conn)
            .await?;
        Ok(match verdict {
            1 => Err(Refusal::RateLimited {
                retry_after_secs: 1,
            }),
            2 => Err(Refusal::QuotaExceeded {
                channel,
                quota: quota.unwrap_or(0),
                retry_after_secs: seconds_to_utc_midnight(now),
            }),
            _ => {
                let mut keys = vec![usage];
                if limits.accept_rate_per_second.is_some() {
                    keys.push(rate);
                }
                Ok(Some(Counted { keys }))
            }
        })
    }

    /// Takes back what [`admit`](Self::admit) counted for a send that was not accepted after
    /// all (the publish failed), so a broker outage does not spend the quota.
    pub async fn give_back(
        &self,
        conn: &mut deadpool_redis::Connection,
        counted: &Counted,
    ) -> Result<(), redis::RedisError> {
        let script = Script::new(GIVE_BACK);
        let mut invocation = script.prepare_invoke();
        for k in &counted.keys {
            invocation.key(k);
        }
        invocation.invoke_async::<i64>(conn).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn the_quota_resets_at_utc_midnight() {
        let at = |h, m, s| {
            Utc.with_ymd_and_hms(2026, 12, 1, h, m, s)
                .single()
                .expect("time")
        };
        assert_eq!(seconds_to_utc_midnight(at(0, 0, 0)), 86_400);
        assert_eq!(seconds_to_utc_midnight(at(23, 0, 0)), 3_600);
        assert_eq!(seconds_to_utc_midnight(at(23, 59, 59)), 1);
        let just_before = at(23, 59, 59) + chrono::Duration::milliseconds(999);
        assert_eq!(seconds_to_utc_midnight(just_before), 1, "never 0");
    }

    #[test]
    fn both_keys_of_the_script_share_the_tenant_hash_tag() {
        let day = NaiveDate::from_ymd_opt(2026, 12, 1).expect("date");
        assert_eq!(
            usage_key("prod", "acme", Channel::Sms, day),
            "prod:usage:{acme}:sms:2026-12-01"
        );
        assert_eq!(
            rate_key("prod", "acme", 1_700_000_000),
            "prod:rate:{acme}:1700000000"
        );
    }
}
