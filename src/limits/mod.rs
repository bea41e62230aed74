//! Per-tenant limits set by the operator (issue 11): a maximum accept rate of `POST /v1/send`
//! and a daily quota per channel, and the tenant's usage.
//!
//! - The limits are a row of `tenant_limits` (NULL = unlimited; no row = no limits), managed
//!   with the service token (`PUT|DELETE /v1/limits`) or `communication limits set|clear`.
//!   [`show`], [`replace`], [`update`] and [`clear`] are the one way both do it.
//! - Intake reads them through [`LimitsCache`] (in memory, `COMMUNICATION_LIMITS_CACHE_MS`,
//!   5 s by default): a change takes effect on every intake replica within that time (at once
//!   on the replica that served the `PUT`/`DELETE`). Never a Postgres query per send.
//! - A send is checked and counted atomically in Redis by [`ADMIT_LUA`] (`admission.rs`),
//!   run inside the intake's one script per send (`intake::send_gate`); [`usage`] reads the
//!   counters back.

mod admission;
mod cache;
pub mod usage;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use utoipa::ToSchema;

use crate::domain::{Channel, FieldError, TenantId};
use crate::store::tenant_limits::{self as store, TenantLimitsRow};

pub use admission::{
    ADMIT_LUA, ADMITTED, GIVE_BACK_LUA, LimitsGate, OVER_QUOTA, OVER_RATE, RATE_WINDOW_TTL_SECS,
    Refusal, USAGE_TTL_SECS, rate_key, seconds_to_utc_midnight, usage_key,
};
pub use cache::LimitsCache;

/// The largest value of any limit.
pub const MAX_LIMIT: u32 = 10_000_000;

/// The message a bad limit gets.
pub const LIMIT_RANGE: &str = "must be an integer from 1 to 10000000, or null (unlimited)";

/// A tenant's limits; `None` is unlimited. The default is no limits at all.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TenantLimits {
    pub accept_rate_per_second: Option<u32>,
    pub daily_quota_email: Option<u32>,
    pub daily_quota_sms: Option<u32>,
}

impl TenantLimits {
    pub fn daily_quota(&self, channel: Channel) -> Option<u32> {
        match channel {
            Channel::Email => self.daily_quota_email,
            Channel::Sms => self.daily_quota_sms,
        }
    }

    fn from_row(row: &TenantLimitsRow) -> TenantLimits {
        // The table's CHECKs keep every value in 1..=MAX_LIMIT.
        let value = |v: Option<i32>| v.and_then(|v| u32::try_from(v).ok());
        TenantLimits {
            accept_rate_per_second: value(row.accept_rate_per_second),
            daily_quota_email: value(row.daily_quota_email),
            daily_quota_sms: value(row.daily_quota_sms),
        }
    }
}

/// Daily quotas per channel (messages per UTC day); `null` is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct DailyQuota {
    #[schema(example = 50000)]
    pub email: Option<u32>,
    #[schema(example = 10000)]
    pub sms: Option<u32>,
}

/// A tenant's limits as the API and the CLI show them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct LimitsView {
    #[schema(example = "acme")]
    pub tenant_id: String,
    /// Sends accepted per second at most (`POST /v1/send`); `null` is unlimited.
    #[schema(example = 100)]
    pub accept_rate_per_second: Option<u32>,
    pub daily_quota: DailyQuota,
    /// When an operator last set them; `null` when the tenant has no limits set.
    pub updated_at: Option<DateTime<Utc>>,
}

impl LimitsView {
    fn new(tenant: &TenantId, row: Option<&TenantLimitsRow>) -> LimitsView {
        let limits = row.map(TenantLimits::from_row).unwrap_or_default();
        LimitsView {
            tenant_id: tenant.as_str().to_owned(),
            accept_rate_per_second: limits.accept_rate_per_second,
            daily_quota: DailyQuota {
                email: limits.daily_quota_email,
                sms: limits.daily_quota_sms,
            },
            updated_at: row.map(|r| r.updated_at),
        }
    }

    pub fn limits(&self) -> TenantLimits {
        TenantLimits {
            accept_rate_per_second: self.accept_rate_per_second,
            daily_quota_email: self.daily_quota.email,
            daily_quota_sms: self.daily_quota.sms,
        }
    }
}

/// Daily quotas in a `PUT /v1/limits` body.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DailyQuotaUpdate {
    #[schema(minimum = 1, maximum = 10000000)]
    pub email: Option<i64>,
    #[schema(minimum = 1, maximum = 10000000)]
    pub sms: Option<i64>,
}

/// Body of `PUT /v1/limits`: the tenant's whole set of limits (a field left out or `null` is
/// unlimited).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitsUpdate {
    #[schema(minimum = 1, maximum = 10000000, example = 100)]
    pub accept_rate_per_second: Option<i64>,
    pub daily_quota: Option<DailyQuotaUpdate>,
}

impl LimitsUpdate {
    /// The limits, or every out-of-range field named (`daily_quota.sms`).
    pub fn validate(&self) -> Result<TenantLimits, Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut check = |field: &str, v: Option<i64>| match v {
            None => None,
            Some(n) => match limit_value(n) {
                Some(n) => Some(n),
                None => {
                    errors.push(FieldError::new(field, LIMIT_RANGE));
                    None
                }
            },
        };
        let quota = self.daily_quota.as_ref();
        let limits = TenantLimits {
            accept_rate_per_second: check("accept_rate_per_second", self.accept_rate_per_second),
            daily_quota_email: check("daily_quota.email", quota.and_then(|q| q.email)),
            daily_quota_sms: check("daily_quota.sms", quota.and_then(|q| q.sms)),
        };
        if errors.is_empty() {
            Ok(limits)
        } else {
            Err(errors)
        }
    }
}

/// `n` as a limit, if it is in 1..=[`MAX_LIMIT`].
pub fn limit_value(n: i64) -> Option<u32> {
    u32::try_from(n)
        .ok()
        .filter(|n| (1..=MAX_LIMIT).contains(n))
}

/// A limit as the CLI takes it: an integer from 1 to 10000000, or `none` (unlimited).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitArg(pub Option<u32>);

impl std::str::FromStr for LimitArg {
    type Err = String;

    fn from_str(s: &str) -> Result<LimitArg, String> {
        if matches!(s, "none" | "unlimited") {
            return Ok(LimitArg(None));
        }
        s.parse::<i64>()
            .ok()
            .and_then(limit_value)
            .map(|n| LimitArg(Some(n)))
            .ok_or_else(|| "must be an integer from 1 to 10000000, or none".to_owned())
    }
}

/// A change of some limits (the CLI's `limits set`): `None` keeps the current value,
/// `Some(None)` makes it unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimitsChange {
    pub accept_rate_per_second: Option<Option<u32>>,
    pub daily_quota_email: Option<Option<u32>>,
    pub daily_quota_sms: Option<Option<u32>>,
}

impl LimitsChange {
    pub fn apply(&self, current: TenantLimits) -> TenantLimits {
        TenantLimits {
            accept_rate_per_second: self
                .accept_rate_per_second
                .unwrap_or(current.accept_rate_per_second),
            daily_quota_email: self.daily_quota_email.unwrap_or(current.daily_quota_email),
            daily_quota_sms: self.daily_quota_sms.unwrap_or(current.daily_quota_sms),
        }
    }
}

fn column(v: Option<u32>) -> Option<i32> {
    // MAX_LIMIT fits an INTEGER; validation happened before.
    v.and_then(|v| i32::try_from(v).ok())
}

/// The tenant's limits as stored now (not the cached copy).
pub async fn show(pool: &PgPool, tenant: &TenantId) -> Result<LimitsView, sqlx::Error> {
    let row = store::get(pool, tenant.as_str()).await?;
    Ok(LimitsView::new(tenant, row.as_ref()))
}

/// Replaces the tenant's limits with `limits` (`PUT /v1/limits`).
pub async fn replace(
    pool: &PgPool,
    tenant: &TenantId,
    limits: TenantLimits,
) -> Result<LimitsView, sqlx::Error> {
    let row = store::upsert(
        pool,
        tenant.as_str(),
        column(limits.accept_rate_per_second),
        column(limits.daily_quota_email),
        column(limits.daily_quota_sms),
    )
    .await?;
    Ok(LimitsView::new(tenant, Some(&row)))
}

/// Changes some of the tenant's limits, keeping the others (`communication limits set`).
pub async fn update(
    pool: &PgPool,
    tenant: &TenantId,
    change: LimitsChange,
) -> Result<LimitsView, sqlx::Error> {
    let current = show(pool, tenant).await?.limits();
    replace(pool, tenant, change.apply(current)).await
}

/// Removes every limit of the tenant (`DELETE /v1/limits`, `communication limits clear`);
/// the view shows it unlimited.
pub async fn clear(pool: &PgPool, tenant: &TenantId) -> Result<LimitsView, sqlx::Error> {
    store::delete(pool, tenant.as_str()).await?;
    Ok(LimitsView::new(tenant, None))
}

/// The CLI's text for a tenant's limits.
pub fn render(view: &LimitsView) -> String {
    let show = |v: Option<u32>| v.map_or_else(|| "unlimited".to_owned(), |n| n.to_string());
    let updated = view
        .updated_at
        .map_or_else(|| "never set".to_owned(), |t| t.to_rfc3339());
    format!(
        "tenant:                 {}\naccept rate per second: {}\ndaily quota email:      {}\ndaily quota sms:        {}\nupdated:                {}\n",
        view.tenant_id,
        show(view.accept_rate_per_second),
        show(view.daily_quota.email),
        show(view.daily_quota.sms),
        updated
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_update_names_every_out_of_range_field_and_accepts_null_as_unlimited() {
        let update = LimitsUpdate {
            accept_rate_per_second: Some(0),
            daily_quota: Some(DailyQuotaUpdate {
                email: Some(10_000_001),
                sms: None,
            }),
        };
        let errors = update.validate().expect_err("out of range");
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["accept_rate_per_second", "daily_quota.email"]);
        let ok = LimitsUpdate {
            accept_rate_per_second: Some(10_000_000),
            daily_quota: Some(DailyQuotaUpdate {
                email: None,
                sms: Some(1),
            }),
        };
        assert_eq!(
            ok.validate(),
            Ok(TenantLimits {
                accept_rate_per_second: Some(10_000_000),
                daily_quota_email: None,
                daily_quota_sms: Some(1),
            })
        );
        assert_eq!(
            LimitsUpdate::default().validate(),
            Ok(TenantLimits::default())
        );
    }

    #[test]
    fn the_cli_takes_a_number_in_range_or_none() {
        assert_eq!("25".parse(), Ok(LimitArg(Some(25))));
        assert_eq!("none".parse(), Ok(LimitArg(None)));
        for bad in ["0", "-1", "10000001", "2.5", "lots"] {
            assert!(bad.parse::<LimitArg>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_change_keeps_what_it_does_not_name() {
        let current = TenantLimits {
            accept_rate_per_second: Some(5),
            daily_quota_email: Some(100),
            daily_quota_sms: None,
        };
        let change = LimitsChange {
            accept_rate_per_second: Some(None),
            daily_quota_sms: Some(Some(7)),
            ..Default::default()
        };
        assert_eq!(
            change.apply(current),
            TenantLimits {
                accept_rate_per_second: None,
                daily_quota_email: Some(100),
                daily_quota_sms: Some(7),
            }
        );
    }
}
