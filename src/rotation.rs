//! `communication keys rotate`: re-encrypts every provider secret sealed under an older key.
//! Rows are read in pages and replaced only if unchanged since read (compare-and-swap), so it
//! is safe to run while the service is up, and safe to run again.

use sqlx::PgPool;

use crate::crypto::{Keyring, ProviderSecrets};
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
            let new = ProviderSecrets::new(keyring)
                .reseal(row.secrets_owner(), old)
                .map_err(|e| {
                    anyhow::anyhow!(
                        "provider {}: {e} (is its key in ENCRYPTION_SECRET_PREVIOUS?)",
                        row.id
                    )
                })?;
            if store::replace_secrets(pool, row.id, old, &new.blob, &new.key_id).await? {
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
