//! The sealed bodies of `dead_letters`: sealing one for its row, and the two statements
//! `keys rotate` uses to (re-)seal bodies page by page.
//!
//! A dead letter's body is the envelope as received and can hold a one-time code. It is
//! stored in `sealed_body` under the keyring's active key, with associated data naming the
//! row (a blob copied to another row does not open), and the key's id in `body_key_id`.
//! Rows from before sealing hold a clear `body` instead, until `keys rotate` seals them.

use sqlx::PgPool;

use crate::crypto::{CryptoError, Keyring};

/// Associated data of a dead letter's sealed body: binds it to its row.
pub fn dead_letter_aad(id: i64) -> Vec<u8> {
    format!("logicspike-communication/dead_letters/v1/{id}").into_bytes()
}

/// A dead letter's body sealed for its row.
#[derive(Clone)]
pub struct SealedBody {
    pub(crate) blob: Vec<u8>,
    pub(crate) key_id: String,
}

impl SealedBody {
    /// Seals `body` for row `id` under the active key.
    pub fn seal(keyring: &Keyring, id: i64, body: &[u8]) -> SealedBody {
        SealedBody {
            blob: keyring.encrypt(body, &dead_letter_aad(id)),
            key_id: keyring.active_key_id(),
        }
    }

    /// Opens the sealed body of row `id`.
    pub fn open(keyring: &Keyring, id: i64, blob: &[u8]) -> Result<Vec<u8>, CryptoError> {
        keyring.decrypt(blob, &dead_letter_aad(id))
    }
}

/// Takes the id of a dead letter about to be written, so its body can be sealed for it
/// (one statement, only when a message is dead-lettered).
pub async fn reserve_id<'e>(executor: impl sqlx::PgExecutor<'e>) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT nextval(pg_get_serial_sequence('dead_letters', 'id'))")
        .fetch_one(executor)
        .await
}

/// A row whose body `keys rotate` (re-)seals: a clear body, or one sealed under another key.
#[derive(Debug, sqlx::FromRow)]
pub struct BodyToSeal {
    pub id: i64,
    pub body: Option<Vec<u8>>,
    pub sealed_body: Option<Vec<u8>>,
}

/// Rows with a body that is clear or not sealed under `active_key_id`, after `after` by id.
#[tracing::instrument(skip_all)]
pub async fn bodies_needing_seal(
    pool: &PgPool,
    active_key_id: &str,
    after: i64,
    limit: i64,
) -> Result<Vec<BodyToSeal>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, body, sealed_body FROM dead_letters \
         WHERE id > $2 AND (body IS NOT NULL \
               OR (sealed_body IS NOT NULL AND body_key_id IS DISTINCT FROM $1)) \
         ORDER BY id LIMIT $3",
    )
    .bind(active_key_id)
    .bind(after)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Stores `sealed` as the row's body (dropping a clear one) if the row still holds what was
/// read (compare-and-swap). False: it changed meanwhile.
#[tracing::instrument(skip_all)]
pub async fn replace_body(
    pool: &PgPool,
    row: &BodyToSeal,
    sealed: &SealedBody,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE dead_letters SET sealed_body = $4, body_key_id = $5, body = NULL \
         WHERE id = $1 AND body IS NOT DISTINCT FROM $2 AND sealed_body IS NOT DISTINCT FROM $3",
    )
    .bind(row.id)
    .bind(&row.body)
    .bind(&row.sealed_body)
    .bind(&sealed.blob)
    .bind(&sealed.key_id)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}
