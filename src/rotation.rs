//! `communication keys rotate`: re-encrypts every provider secret sealed under an older key.
//! Rows are read in pages and replaced only if unchanged since read (compare-and-swap), so it
//! is safe to run while the service is up, and safe to run again.

use sqlx::PgPool;

use crate::crypto::{Keyring, provider_aad};
use crate::store::providers as store;

#[derive(Debug, Default)]
pub struct RotationReport {
    pub rotated: usize,
}

pub async fn rotate(pool: &PgPool, keyring: &Keyring) -> anyhow::Result<RotationReport> {
    let active = keyring.active_key_id();
    let mut report = RotationReport::default();
    loop {
        let rows = store::rows_needing_rotation(pool, &active, 200).await?;
        if rows.is_empty() {
            break;
        }
        let mut progressed = false;
        for row in rows {
            let Some(old) = row.secrets.as_deref() else {
                continue;
            };
            let aad = provider_aad(row.tenant_id.as_deref(), row.id);
            let plain = keyring.decrypt(old, &aad).map_err(|e| {
                anyhow::anyhow!(
                    "provider {}: {e} (is its key in ENCRYPTION_SECRET_PREVIOUS?)",
                    row.id
                )
            })?;
            let new = keyring.encrypt(&plain, &aad);
            if store::replace_secrets(pool, row.id, old, &new, &active).await? {
                report.rotated += 1;
                progressed = true;
            }
        }
        if !progressed {
            break;
        }
    }
    Ok(report)
}
