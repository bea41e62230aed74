//! A tenant's usage of one UTC day: the counters admission keeps (`admission.rs`) beside the
//! quotas. Counters are kept two days, so today and yesterday are readable.

use chrono::NaiveDate;
use deadpool_redis::redis;
use serde::Serialize;
use utoipa::ToSchema;

use super::{TenantLimits, usage_key};
use crate::domain::Channel;

/// One channel's usage of the day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct ChannelUsage {
    /// Sends accepted over HTTP that UTC day.
    pub used: u64,
    /// The daily quota; `null` is unlimited.
    pub quota: Option<u32>,
    /// `quota - used` (never below 0); `null` is unlimited.
    pub remaining: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct ChannelsUsage {
    pub email: ChannelUsage,
    pub sms: ChannelUsage,
}

/// `GET /v1/usage`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct UsageView {
    #[schema(example = "acme")]
    pub tenant_id: String,
    /// The UTC day, `YYYY-MM-DD`.
    #[schema(value_type = String, example = "2026-12-01")]
    pub date: NaiveDate,
    pub channels: ChannelsUsage,
}

fn channel_usage(used: u64, quota: Option<u32>) -> ChannelUsage {
    ChannelUsage {
        used,
        quota,
        remaining: quota.map(|q| u64::from(q).saturating_sub(used)),
    }
}

/// Reads the day's counters of both channels (one round trip).
pub async fn read(
    conn: &mut deadpool_redis::Connection,
    ns: &str,
    tenant: &str,
    day: NaiveDate,
    limits: TenantLimits,
) -> Result<UsageView, redis::RedisError> {
    let keys: Vec<String> = Channel::ALL
        .iter()
        .map(|c| usage_key(ns, tenant, *c, day))
        .collect();
    let counts: Vec<Option<i64>> = redis::cmd("MGET").arg(&keys).query_async(conn).await?;
    let used = |i: usize| {
        counts
            .get(i)
            .copied()
            .flatten()
            .and_then(|n| u64::try_from(n).ok())
            .unwrap_or(0)
    };
    Ok(UsageView {
        tenant_id: tenant.to_owned(),
        date: day,
        channels: ChannelsUsage {
            email: channel_usage(used(0), limits.daily_quota_email),
            sms: channel_usage(used(1), limits.daily_quota_sms),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remaining_never_goes_below_zero_and_is_null_without_a_quota() {
        assert_eq!(channel_usage(3, Some(5)).remaining, Some(2));
        assert_eq!(channel_usage(7, Some(5)).remaining, Some(0));
        assert_eq!(channel_usage(7, None).remaining, None);
    }
}
