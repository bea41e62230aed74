//! Provider resolution with an in-memory cache: (tenant, channel) → the ordered list of ready
//! adapters, and pinned provider id → adapter. Entries live a few seconds, so decrypting and
//! querying happen per tenant and period, never per message.

use std::sync::Arc;
use std::time::Duration;

use moka::future::Cache;
use sqlx::PgPool;
use uuid::Uuid;

use crate::crypto::{Keyring, ProviderSecrets};
use crate::domain::Channel;
use crate::providers::{Provider, ProviderContext, ProviderKind, registry};
use crate::store::providers::{self as store, ProviderRow};

/// A provider ready to send, with what the policy needs to know about it.
#[derive(Clone)]
pub struct ResolvedProvider {
    pub id: Uuid,
    pub kind: ProviderKind,
    pub name: String,
    /// The provider config's optional `rate_per_second` (a limit shared by all replicas).
    pub rate_per_second: Option<f64>,
    pub adapter: Arc<dyn Provider>,
}

impl std::fmt::Debug for ResolvedProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResolvedProvider")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("name", &self.name)
            .field("rate_per_second", &self.rate_per_second)
            .finish()
    }
}

#[derive(Debug, thiserror::Error, Clone)]
pub enum ResolveError {
    #[error("database unavailable: {0}")]
    Database(String),
}

pub struct Resolver {
    pool: PgPool,
    keyring: Arc<Keyring>,
    ctx: ProviderContext,
    by_channel: Cache<(String, Channel), Arc<Vec<ResolvedProvider>>>,
    pinned: Cache<(String, Uuid), Option<ResolvedProvider>>,
}

impl Resolver {
    pub fn new(
        pool: PgPool,
        keyring: Arc<Keyring>,
        ctx: ProviderContext,
        ttl: Duration,
    ) -> Resolver {
        Resolver {
            pool,
            keyring,
            ctx,
            by_channel: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(ttl)
                .build(),
            pinned: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(ttl)
                .build(),
        }
    }

    fn ready(&self, row: &ProviderRow) -> Option<ResolvedProvider> {
        let spec = registry::find(&row.kind)?;
        let config = match row.open_config(ProviderSecrets::new(&self.keyring)) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(provider_id = %row.id, error = %e, "provider secrets cannot be opened; skipping it");
                return None;
            }
        };
        match registry::build(spec, &config, &self.ctx) {
            Ok(adapter) => Some(ResolvedProvider {
                id: row.id,
                kind: spec.kind,
                name: row.name.clone(),
                rate_per_second: registry::rate_per_second(&config),
                adapter,
            }),
            Err(e) => {
                tracing::error!(provider_id = %row.id, error = %e, "provider cannot be built; skipping it");
                None
            }
        }
    }

    /// The providers to try for a send, in order.
    pub async fn resolve(
        &self,
        tenant: &str,
        channel: Channel,
        pinned: Option<Uuid>,
    ) -> Result<Arc<Vec<ResolvedProvider>>, ResolveError> {
        if let Some(id) = pinned {
            let found = self
                .pinned
                .try_get_with((tenant.to_owned(), id), async {
                    let row = store::get_pinned(&self.pool, tenant, id)
                        .await
                        .map_err(|e| ResolveError::Database(e.to_string()))?;
                    Ok::<_, ResolveError>(
                        row.filter(|r| r.channel == channel.as_str())
                            .and_then(|r| self.ready(&r)),
                    )
                })
                .await
                .map_err(|e: Arc<ResolveError>| (*e).clone())?;
            return Ok(Arc::new(found.into_iter().collect()));
        }
        self.by_channel
            .try_get_with((tenant.to_owned(), channel), async {
                let rows = store::resolve_candidates(&self.pool, tenant, channel.as_str())
                    .await
                    .map_err(|e| ResolveError::Database(e.to_string()))?;
                Ok::<_, ResolveError>(Arc::new(
                    rows.iter().filter_map(|r| self.ready(r)).collect(),
                ))
            })
            .await
            .map_err(|e: Arc<ResolveError>| (*e).clone())
    }

    /// Forgets cached lists (after a provider changed in this process).
    pub fn invalidate_all(&self) {
        self.by_channel.invalidate_all();
        self.pinned.invalidate_all();
    }
}
