//! Admission of a send under the tenant's limits: the Lua that checks and counts the daily
//! quota and the accept rate, run inside the intake's one Redis call per send
//! (`intake::send_gate`, with the idempotency claim and the lane decision), so concurrent sends
//! on any number of intake replicas stop at exactly the quota.
//!
//! Keys (`ns` is `COMMUNICATION_NAMESPACE`; `{tenant}` is the Redis Cluster hash tag, so every
//! key of the send's script lands in one slot):
//! - `ns:usage:{tenant}:<channel>:<YYYY-MM-DD>`: sends accepted over HTTP that UTC day,
//!   counted for every tenant (limited or not) and kept two days;
//! - `ns:rate:{tenant}:<unix second>`: sends accepted in that second (only for a tenant with
//!   an accept rate), kept two seconds.
//!
//! The accept rate is a fixed one-second window on the intake's clock: at most N sends are
//! accepted in each wall-clock second (so at most 2N can land in any 1 s span straddling a
//! boundary); a refusal says `Retry-After: 1`. A refusal counts nothing; the daily quota is
//! checked first, since waiting a second does not help a tenant past its quota.

use std::fmt::Write as _;

use chrono::{DateTime, Datelike, Days, NaiveDate, Utc};

use super::{LimitsCache, TenantLimits};
use crate::domain::Channel;

/// How long a day's usage counter is kept: the day and the next.
pub const USAGE_TTL_SECS: u64 = 2 * 24 * 3600;
/// How long a one-second rate window is kept.
pub const RATE_WINDOW_TTL_SECS: u64 = 2;

pub fn usage_key(ns: &str, tenant: &str, channel: Channel, day: NaiveDate) -> String {
    // Written by hand: `day.format(..)` parses its format string on every call.
    let mut key = String::with_capacity(ns.len() + tenant.len() + 32);
    let _ = write!(
        key,
        "{ns}:usage:{{{tenant}}}:{}:{:04}-{:02}-{:02}",
        channel.as_str(),
        day.year(),
        day.month(),
        day.day()
    );
    key
}

pub fn rate_key(ns: &str, tenant: &str, second: i64) -> String {
    format!("{ns}:rate:{{{tenant}}}:{second}")
}

/// The Lua function `admit(usage, rate_key, quota, rate, usage_ttl, rate_ttl)`: checks and
/// counts one send. `quota` and `rate` are numbers, -1 for none (then `rate_key` may be nil).
/// Returns 0 when admitted (counted in `usage`, and in `rate_key` with a rate), 1 over the
/// rate, 2 over the quota (nothing counted).
pub const ADMIT_LUA: &str = r"
local function admit(usage, rate_key, quota, rate, usage_ttl, rate_ttl)
  if quota >= 0 and tonumber(redis.call('GET', usage) or '0') >= quota then return 2 end
  if rate >= 0 then
    if tonumber(redis.call('GET', rate_key) or '0') >= rate then return 1 end
    if redis.call('INCR', rate_key) == 1 then redis.call('EXPIRE', rate_key, rate_ttl) end
  end
  if redis.call('INCR', usage) == 1 then redis.call('EXPIRE', usage, usage_ttl) end
  return 0
end
";

/// The Lua function `give_back(key)`: takes back one unit [`ADMIT_LUA`] counted in `key`, for a
/// send that was not accepted after all (never below zero).
pub const GIVE_BACK_LUA: &str = r"
local function give_back(key)
  if tonumber(redis.call('GET', key) or '0') > 0 then redis.call('DECR', key) end
end
";

/// The verdict codes of [`ADMIT_LUA`].
pub const ADMITTED: i64 = 0;
pub const OVER_RATE: i64 = 1;
pub const OVER_QUOTA: i64 = 2;

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

    /// The tenant's limits, from the cache (never a Postgres query per send).
    pub async fn limits(&self, tenant: &str) -> TenantLimits {
        self.cache.get(tenant).await
    }

    /// The refusal an [`ADMIT_LUA`] verdict stands for (`None`: admitted).
    pub fn refusal(
        verdict: i64,
        channel: Channel,
        limits: TenantLimits,
        now: DateTime<Utc>,
    ) -> Option<Refusal> {
        match verdict {
            OVER_RATE => Some(Refusal::RateLimited {
                retry_after_secs: 1,
            }),
            OVER_QUOTA => Some(Refusal::QuotaExceeded {
                channel,
                quota: limits.daily_quota(channel).unwrap_or(0),
                retry_after_secs: seconds_to_utc_midnight(now),
            }),
            _ => None,
        }
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
        let january = NaiveDate::from_ymd_opt(2027, 1, 5).expect("date");
        assert_eq!(
            usage_key("ns", "t", Channel::Email, january),
            "ns:usage:{t}:email:2027-01-05",
            "the date is zero-padded as YYYY-MM-DD"
        );
    }
}
