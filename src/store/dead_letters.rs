//! `dead_letters`: what the worker writes when it gives up on an envelope (one row per trip to
//! `{ns}.dead`), the operator's listing, and the two short transactions of a replay (claim,
//! then finish or undo). The body is read only to be re-published, never to be shown.
//!
//! The body can hold a one-time code, so it is stored sealed with the service's keyring
//! (AES-256-GCM, associated data naming the row: a blob copied to another row does not open)
//! in `sealed_body`, with its key id in `body_key_id` for `keys rotate`. Rows written before
//! sealing keep their clear `body` until `keys rotate` seals them; replay reads either.

use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::crypto::Keyring;
use crate::domain::EventKind;

pub use super::dead_letter_bodies::{SealedBody, reserve_id};

/// A valid envelope whose delivery failed for good: replayable.
pub const KIND_FAILED: &str = "failed";
/// An envelope rejected by validation: not replayable as-is.
pub const KIND_INVALID: &str = "invalid";

/// A row the worker writes with a trip to `{ns}.dead`.
#[derive(Clone)]
pub struct DeadLetter {
    /// From [`reserve_id`]: the body is sealed for it.
    pub id: i64,
    pub message_id: Option<Uuid>,
    pub tenant_id: Option<String>,
    pub reason: String,
    /// [`KIND_FAILED`] or [`KIND_INVALID`].
    pub kind: &'static str,
    pub channel: Option<String>,
    pub routing_key: Option<String>,
    /// The envelope as received, sealed for row `id` (kept for replay; may hold a one-time
    /// code).
    pub body: Option<SealedBody>,
}

impl std::fmt::Debug for DeadLetter {
    // The body may hold a one-time code: never print it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetter")
            .field("message_id", &self.message_id)
            .field("tenant_id", &self.tenant_id)
            .field("reason", &self.reason)
            .field("kind", &self.kind)
            .field("channel", &self.channel)
            .field("routing_key", &self.routing_key)
            .field("id", &self.id)
            .field(
                "sealed_body_bytes",
                &self.body.as_ref().map(|b| b.blob.len()),
            )
            .finish()
    }
}

/// The columns of dead-letter rows as arrays, for a multi-row `INSERT … SELECT * FROM UNNEST`
/// (here and in the worker's batch statement, `messages::write_steps`).
pub(crate) struct DeadLetterColumns<'a> {
    pub ids: Vec<i64>,
    pub messages: Vec<Option<Uuid>>,
    pub tenants: Vec<Option<&'a str>>,
    pub reasons: Vec<&'a str>,
    pub kinds: Vec<&'a str>,
    pub channels: Vec<Option<&'a str>>,
    pub routing_keys: Vec<Option<&'a str>>,
    pub bodies: Vec<Option<&'a [u8]>>,
    pub key_ids: Vec<Option<&'a str>>,
}

impl<'a> DeadLetterColumns<'a> {
    pub fn of(rows: &[&'a DeadLetter]) -> Self {
        DeadLetterColumns {
            ids: rows.iter().map(|r| r.id).collect(),
            messages: rows.iter().map(|r| r.message_id).collect(),
            tenants: rows.iter().map(|r| r.tenant_id.as_deref()).collect(),
            reasons: rows.iter().map(|r| r.reason.as_str()).collect(),
            kinds: rows.iter().map(|r| r.kind).collect(),
            channels: rows.iter().map(|r| r.channel.as_deref()).collect(),
            routing_keys: rows.iter().map(|r| r.routing_key.as_deref()).collect(),
            bodies: rows
                .iter()
                .map(|r| r.body.as_ref().map(|b| b.blob.as_slice()))
                .collect(),
            key_ids: rows
                .iter()
                .map(|r| r.body.as_ref().map(|b| b.key_id.as_str()))
                .collect(),
        }
    }
}

pub async fn insert_dead_letters(
    conn: &mut PgConnection,
    rows: &[DeadLetter],
) -> Result<(), sqlx::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let rows: Vec<&DeadLetter> = rows.iter().collect();
    let d = DeadLetterColumns::of(&rows);
    sqlx::query(
        "INSERT INTO dead_letters (id, message_id, tenant_id, reason, kind, channel, routing_key, \
                                   sealed_body, body_key_id) \
         SELECT * FROM UNNEST($1::bigint[], $2::uuid[], $3::text[], $4::text[], $5::text[], \
                              $6::text[], $7::text[], $8::bytea[], $9::text[])",
    )
    .bind(&d.ids)
    .bind(&d.messages)
    .bind(&d.tenants)
    .bind(&d.reasons)
    .bind(&d.kinds)
    .bind(&d.channels)
    .bind(&d.routing_keys)
    .bind(&d.bodies)
    .bind(&d.key_ids)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// A dead letter as listed: everything but the body.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct DeadLetterRow {
    pub id: i64,
    pub created_at: DateTime<Utc>,
    pub tenant_id: Option<String>,
    pub message_id: Option<Uuid>,
    pub kind: String,
    pub channel: Option<String>,
    pub routing_key: Option<String>,
    pub reason: String,
    /// A replay can use it: a `failed` row with a stored body and a message id.
    pub replayable: bool,
    pub replay_started_at: Option<DateTime<Utc>>,
    pub replayed_at: Option<DateTime<Utc>>,
    pub replayed_by: Option<String>,
}

/// Filters of `dlq list` and `GET /v1/dead-letters`.
#[derive(Debug, Default, Clone)]
pub struct DeadLetterFilter {
    pub tenant: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// `Some(false)`: only those not replayed yet; `Some(true)`: only replayed ones.
    pub replayed: Option<bool>,
    /// Keyset cursor: rows with a smaller id.
    pub before: Option<i64>,
}

const COLUMNS: &str = "id, created_at, tenant_id, message_id, kind, channel, routing_key, reason, \
    (kind = 'failed' AND (body IS NOT NULL OR sealed_body IS NOT NULL) \
        AND message_id IS NOT NULL AND tenant_id IS NOT NULL) \
        AS replayable, \
    replay_started_at, replayed_at, replayed_by";

/// Newest first, keyset-paginated by id.
#[tracing::instrument(skip_all)]
pub async fn list_dead_letters(
    pool: &PgPool,
    filter: &DeadLetterFilter,
    limit: i64,
) -> Result<Vec<DeadLetterRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM dead_letters WHERE \
         ($1::text IS NULL OR tenant_id = $1) \
         AND ($2::timestamptz IS NULL OR created_at >= $2) \
         AND ($3::timestamptz IS NULL OR created_at < $3) \
         AND ($4::bool IS NULL OR (replayed_at IS NOT NULL) = $4) \
         AND ($5::bigint IS NULL OR id < $5) \
         ORDER BY id DESC LIMIT $6"
    )))
    .bind(&filter.tenant)
    .bind(filter.since)
    .bind(filter.until)
    .bind(filter.replayed)
    .bind(filter.before)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Ids of the rows a `replay --all` would try, oldest first.
#[tracing::instrument(skip_all)]
pub async fn pending_replay_ids(
    pool: &PgPool,
    tenant: Option<&str>,
    limit: i64,
) -> Result<Vec<i64>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT id FROM dead_letters WHERE replayed_at IS NULL AND kind = 'failed' \
         AND (body IS NOT NULL OR sealed_body IS NOT NULL) AND message_id IS NOT NULL \
         AND ($1::text IS NULL OR tenant_id = $1) ORDER BY id LIMIT $2",
    )
    .bind(tenant)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// What claiming a dead letter for replay found.
#[derive(Debug)]
pub enum ReplayClaim {
    /// Claimed: the message is `queued` again (event `replayed` written) and the row is
    /// marked as being replayed. Publish `body` (opened) to `{ns}.send` with `routing_key`, then
    /// [`finish_replay`] (or [`undo_replay`] if the publish failed).
    Ready {
        message_id: Uuid,
        tenant_id: String,
        routing_key: String,
        body: Vec<u8>,
        /// True when this resumes a replay that was interrupted after its commit.
        resumed: bool,
    },
    NotFound,
    /// Already replayed; the message's current status.
    AlreadyReplayed {
        status: Option<String>,
    },
    /// Another replay claimed it moments ago and has not finished.
    InProgress,
    /// Cannot be replayed as stored: why.
    NotReplayable {
        reason: String,
    },
    /// The message is not `failed` (sent, delivered, expired, queued again…).
    NotFailed {
        status: String,
    },
}

type ClaimRow = (
    Option<Uuid>,
    Option<String>,
    String,
    Option<String>,
    Option<String>,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
    String,
);

/// Claims a dead letter for replay in one transaction: the row is locked (a concurrent
/// replay waits, then sees the claim), the message moves `failed` → `queued` only if it is
/// still `failed`, and a `replayed` event is written. A claim older than `stale_after`
/// without a finish is an interrupted replay: it is resumed while the message is still
/// `queued`, and finished without a publish once the message moved on. A sealed body is
/// opened before anything changes: one that does not open is not replayable.
#[tracing::instrument(skip_all)]
pub async fn claim_replay(
    pool: &PgPool,
    keyring: &Keyring,
    id: i64,
    tenant: Option<&str>,
    by: &str,
    stale_after: chrono::Duration,
) -> Result<ReplayClaim, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let row: Option<ClaimRow> = sqlx::query_as(
        "SELECT message_id, tenant_id, kind, channel, routing_key, body, sealed_body, \
                replay_started_at, replayed_at, reason \
         FROM dead_letters WHERE id = $1 AND ($2::text IS NULL OR tenant_id = $2) FOR UPDATE",
    )
    .bind(id)
    .bind(tenant)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((
        message_id,
        tenant_id,
        kind,
        channel,
        routing_key,
        clear_body,
        sealed_body,
        started,
        replayed,
        reason,
    )) = row
    else {
        return Ok(ReplayClaim::NotFound);
    };
    let status_of = |mid: Option<Uuid>| async move {
        match mid {
            None => Ok(None),
            Some(mid) => {
                sqlx::query_scalar::<_, String>("SELECT status FROM message_logs WHERE id = $1")
                    .bind(mid)
                    .fetch_optional(pool)
                    .await
            }
        }
    };
    if replayed.is_some() {
        drop(tx);
        return Ok(ReplayClaim::AlreadyReplayed {
            status: status_of(message_id).await?,
        });
    }
    if kind == KIND_INVALID {
        return Ok(ReplayClaim::NotReplayable {
            reason: format!(
                "the envelope was rejected as invalid ({reason}); it cannot be replayed as-is: \
                 publish a corrected envelope instead"
            ),
        });
    }
    let body = match (sealed_body, clear_body) {
        (Some(sealed), _) => match SealedBody::open(keyring, id, &sealed) {
            Ok(body) => Some(body),
            Err(e) => {
                return Ok(ReplayClaim::NotReplayable {
                    reason: format!(
                        "its stored envelope cannot be opened: {e} (is its key in \
                         ENCRYPTION_SECRET_PREVIOUS?)"
                    ),
                });
            }
        },
        // Stored before bodies were sealed (and not yet sealed by `keys rotate`).
        (None, clear) => clear,
    };
    let (Some(message_id), Some(tenant_id), Some(body)) = (message_id, tenant_id, body) else {
        return Ok(ReplayClaim::NotReplayable {
            reason: "the envelope body was not stored (dead-lettered before replay support); \
                     its copy is in the dead-letter queue"
                .into(),
        });
    };
    let routing_key = routing_key.or(channel).unwrap_or_default();
    let status: Option<String> =
        sqlx::query_scalar("SELECT status FROM message_logs WHERE id = $1 FOR UPDATE")
            .bind(message_id)
            .fetch_optional(&mut *tx)
            .await?;
    let Some(status) = status else {
        return Ok(ReplayClaim::NotReplayable {
            reason: "its message is not recorded".into(),
        });
    };
    if let Some(started) = started {
        if Utc::now() - started < stale_after {
            return Ok(ReplayClaim::InProgress);
        }
        // An earlier replay committed its claim but never recorded its publish.
        if status == "queued" {
            tx.commit().await?;
            return Ok(ReplayClaim::Ready {
                message_id,
                tenant_id,
                routing_key,
                body,
                resumed: true,
            });
        }
        // Its publish went through and the worker took it from there.
        sqlx::query("UPDATE dead_letters SET replayed_at = now() WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        return Ok(ReplayClaim::AlreadyReplayed {
            status: Some(status),
        });
    }
    if status != "failed" {
        return Ok(ReplayClaim::NotFailed { status });
    }
    super::stats::move_one(&mut tx, message_id, &["failed"], "queued").await?;
    sqlx::query(
        "UPDATE message_logs SET status = 'queued', completed_at = NULL, updated_at = now() \
         WHERE id = $1",
    )
    .bind(message_id)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO message_events (message_id, tenant_id, kind, detail, created_at) \
         VALUES ($1, $2, $3, $4, clock_timestamp())",
    )
    .bind(message_id)
    .bind(&tenant_id)
    .bind(EventKind::Replayed.as_str())
    .bind(json!({"dead_letter_id": id, "by": by}))
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE dead_letters SET replay_started_at = now(), replayed_by = $2 WHERE id = $1",
    )
    .bind(id)
    .bind(by)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(ReplayClaim::Ready {
        message_id,
        tenant_id,
        routing_key,
        body,
        resumed: false,
    })
}

/// Records that the replay's publish was confirmed.
#[tracing::instrument(skip_all)]
pub async fn finish_replay(pool: &PgPool, id: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE dead_letters SET replayed_at = now() WHERE id = $1")
        .bind(id)
        .execute(pool)
        .await?;
    Ok(())
}

/// Reverts a claim whose publish failed: the message is `failed` again (only if no worker
/// took it meanwhile) with the reason as an event, and the row can be replayed again.
#[tracing::instrument(skip_all)]
pub async fn undo_replay(
    pool: &PgPool,
    id: i64,
    message_id: Uuid,
    tenant_id: &str,
    reason: &str,
) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    super::stats::move_one(&mut tx, message_id, &["queued"], "failed").await?;
    let reverted = sqlx::query(
        "UPDATE message_logs SET status = 'failed', completed_at = now(), updated_at = now() \
         WHERE id = $1 AND status = 'queued'",
    )
    .bind(message_id)
    .execute(&mut *tx)
    .await?;
    if reverted.rows_affected() == 1 {
        sqlx::query(
            "INSERT INTO message_events (message_id, tenant_id, kind, detail, created_at) \
             VALUES ($1, $2, $3, $4, clock_timestamp())",
        )
        .bind(message_id)
        .bind(tenant_id)
        .bind(EventKind::Failed.as_str())
        .bind(json!({"reason": reason, "dead_letter_id": id}))
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE dead_letters SET replay_started_at = NULL, replayed_by = NULL WHERE id = $1",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}
