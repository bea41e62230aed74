//! [`LimitsCache`]: intake's in-memory copy of the tenants' limits, so a send never waits for
//! Postgres. An entry lives `COMMUNICATION_LIMITS_CACHE_MS` (5 s by default; `0` reads
//! Postgres on every send, for tests); concurrent misses of one tenant share one query.
//!
//! Postgres down: intake keeps accepting sends (it never needed Postgres for them). A lookup
//! that fails or takes longer than [`LOOKUP_TIMEOUT`] uses the tenant's last known limits (no
//! limits if it was never read), cached like a fresh answer, so an outage costs each tenant at
//! most one slow lookup per cache lifetime.

use std::time::Duration;

use moka::future::Cache;
use sqlx::PgPool;

use super::TenantLimits;
use crate::store::tenant_limits as store;

/// How long a send may wait for the limits' lookup.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(1);

pub struct LimitsCache {
    pool: PgPool,
    ttl: Duration,
    /// tenant → limits, for `ttl`.
    fresh: Cache<String, TenantLimits>,
    /// tenant → the limits last read from Postgres, for when it cannot answer; kept an hour
    /// (a tenant not seen for an hour falls back to no limits during an outage).
    last_known: Cache<String, TenantLimits>,
}

impl LimitsCache {
    pub fn new(pool: PgPool, ttl: Duration) -> LimitsCache {
        LimitsCache {
            pool,
            ttl,
            fresh: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(ttl.max(Duration::from_millis(1)))
                .build(),
            last_known: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(3600))
                .build(),
        }
    }

    /// The tenant's limits; never fails (see the module docs).
    pub async fn get(&self, tenant: &str) -> TenantLimits {
        if self.ttl.is_zero() {
            return self.lookup(tenant).await;
        }
        self.fresh
            .get_with_by_ref(tenant, self.lookup(tenant))
            .await
    }

    /// Forgets the cached copy, so this replica applies a change at once.
    pub async fn invalidate(&self, tenant: &str) {
        self.fresh.invalidate(tenant).await;
    }

    async fn lookup(&self, tenant: &str) -> TenantLimits {
        match tokio::time::timeout(LOOKUP_TIMEOUT, store::get(&self.pool, tenant)).await {
            Ok(Ok(row)) => {
                let limits = row.as_ref().map(TenantLimits::from_row).unwrap_or_default();
                self.last_known.insert(tenant.to_owned(), limits).await;
                limits
            }
            failed => {
                match failed {
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "tenant limits unreadable; using the last known")
                    }
                    _ => tracing::warn!("tenant limits lookup timed out; using the last known"),
                }
                self.last_known.get(tenant).await.unwrap_or_default()
            }
        }
    }
}
