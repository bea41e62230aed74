//! `communication keys rotate`: re-encrypts every provider secret sealed under an older key,
//! every dead-letter body that is clear or sealed under an older key, and every webhook
//! endpoint's signing secrets.
//! Rows are read in pages and replaced only if unchanged since read (compare-and-swap), so it
//! is safe to run while the service is up, and safe to run again.

use sqlx::PgPool;

use crate::crypto::{Keyring, ProviderSecrets};
use crate::store::dead_letter_bodies::{self, SealedBody};
use crate::store::providers as store;

#[derive(Debug, Default)]
pub struct RotationReport {
    pub rotated: usize,
    /// Dead-letter bodies sealed (clear ones) or re-sealed (under an older key).
    pub dead_letters_sealed: usize,
    /// Webhook endpoints whose signing secrets were re-sealed.
    pub webhook_endpoints: usize,
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
    report.dead_letters_sealed = seal_dead_letter_bodies(pool, keyring).await?;
    report.webhook_endpoints =
        crate::notify::signing::reseal_endpoint_secrets(pool, keyring).await?;
    Ok(report)
}

/// Seals every clear dead-letter body and re-seals those under an older key; returns how
/// many. A body that does not open stops the rotation (its key is missing from
/// `ENCRYPTION_SECRET_PREVIOUS`), as for provider secrets.
pub async fn seal_dead_letter_bodies(pool: &PgPool, keyring: &Keyring) -> anyhow::Result<usize> {
    let active = keyring.active_key_id();
    let mut sealed = 0;
    let mut after = 0;
    loop {
        let rows = dead_letter_bodies::bodies_needing_seal(pool, &active, after, 200).await?;
        let Some(last) = rows.last() else {
            break;
        };
        after = last.id;
        for row in &rows {
            let plain = match (&row.sealed_body, &row.body) {
                (Some(old), _) => SealedBody::open(keyring, row.id, old).map_err(|e| {
                    anyhow::anyhow!(
                        "dead letter {}: {e} (is its key in ENCRYPTION_SECRET_PREVIOUS?)",
                        row.id
                    )
                })?,
                (None, Some(clear)) => clear.clone(),
                (None, None) => continue,
            };
            let new = SealedBody::seal(keyring, row.id, &plain);
            if dead_letter_bodies::replace_body(pool, row, &new).await? {
                sealed += 1;
            }
        }
    }
    Ok(sealed)
}
