//! Provider resolution with an in-memory cache: (tenant, channel) → the ordered list of ready
//! adapters, and pinned provider id → adapter. Entries live a few seconds, so decrypting and
//! querying happen per tenant and period, never per message.

use std::sync::Arc;
use std::time::Duration;

use moka::future::Cache;
use serde_json::{Map, Value};
use sqlx::PgPool;
use uuid::Uuid;

use crate::crypto::{Keyring, provider_aad};
use crate::domain::Channel;
use crate::providers::{Provider, ProviderContext, ProviderKind, build_provider};
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

/// Decrypts a row's secrets and merges them with its settings: the adapter's whole config.
pub fn decrypt_config(keyring: &Keyring, row: &ProviderRow) -> Result<Map<String, Value>, String> {
    let mut config = row.settings.as_object().cloned().unwrap_or_default();
    if let Some(blob) = &row.secrets {
        let plain = keyring
            .decrypt(blob, &provider_aad(row.tenant_id.as_deref(), row.id))
            .map_err(|e| e.to_string())?;
        let secrets: Map<String, Value> = serde_json::from_slice(&plain)
            .map_err(|_| "sealed secrets are not a JSON object".to_string())?;
        config.extend(secrets);
    }
    Ok(config)
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
        let kind = ProviderKind::parse(&row.kind)?;
        let config = match decrypt_config(&self.keyring, row) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(provider_id = %row.id, error = %e, "provider secrets cannot be opened; skipping it");
                return None;
            }
        };
        match build_provider(kind, &config, &self.ctx) {
            Ok(adapter) => Some(ResolvedProvider {
                id: row.id,
                kind,
                name: row.name.clone(),
                rate_per_second: config
                    .get("rate_per_second")
                    .and_then(Value::as_f64)
                    .filter(|r| *r > 0.0),
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
