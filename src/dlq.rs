//! Dead letters for operators: list them, and replay them (re-drive a failed message through
//! the normal delivery policy). Shared by `communication dlq` and `/v1/dead-letters`.
//!
//! A replay is three steps, ordered so that a crash anywhere neither loses the message nor
//! sends it twice:
//! 1. **claim** (one transaction, row locked): the message moves `failed` → `queued` only if it
//!    is still `failed`, event `replayed`, the dead letter is marked as being replayed. A second
//!    replay of the same row waits on the lock, then sees the claim and stops.
//! 2. **publish** the stored envelope to `{ns}.send` with its routing key (confirmed). Publishing
//!    only after the commit matters: the worker reads the status when the envelope arrives, and
//!    would drop a message it still saw as `failed`.
//! 3. **finish**: the dead letter is marked replayed.
//!
//! If the publish fails, the claim is undone (the message is `failed` again) and the row can be
//! replayed later. If the process dies between 1 and 2, the row stays claimed with the message
//! `queued`: after [`REPLAY_CLAIM_STALE`] a new replay resumes it (publishes again). If it dies
//! between 2 and 3, a later replay finds the message moved on and only marks the row.

use std::sync::Arc;

use lapin::types::{AMQPValue, FieldTable};
use sqlx::PgPool;
use uuid::Uuid;

use crate::crypto::Keyring;
use crate::queue::Publisher;
use crate::store::dead_letters::{self, ReplayClaim};

/// A claim not finished within this long is taken for an interrupted replay. Far longer than
/// a publish can take (connect 5 s + confirm 10 s), so a live replay is never resumed twice.
pub const REPLAY_CLAIM_STALE: chrono::Duration = chrono::Duration::seconds(60);

/// Header on a replayed envelope: the dead letter it came from (informational).
pub const HEADER_REPLAYED_FROM: &str = "x-replayed-from";

/// What a replay of one dead letter did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayOutcome {
    /// Published to `{ns}.send`; the message is `queued`. `resumed`: an interrupted earlier
    /// replay was completed.
    Replayed {
        message_id: Uuid,
        resumed: bool,
    },
    NotFound,
    AlreadyReplayed {
        status: Option<String>,
    },
    InProgress,
    NotReplayable {
        reason: String,
    },
    NotFailed {
        status: String,
    },
    /// The broker did not take it; nothing changed (the message is `failed` again).
    PublishFailed {
        reason: String,
    },
}

impl ReplayOutcome {
    pub fn is_replayed(&self) -> bool {
        matches!(self, ReplayOutcome::Replayed { .. })
    }

    /// A stable machine code, as used in API errors and `--json` output.
    pub fn code(&self) -> &'static str {
        match self {
            ReplayOutcome::Replayed { .. } => "replayed",
            ReplayOutcome::NotFound => "not_found",
            ReplayOutcome::AlreadyReplayed { .. } => "already_replayed",
            ReplayOutcome::InProgress => "replay_in_progress",
            ReplayOutcome::NotReplayable { .. } => "not_replayable",
            ReplayOutcome::NotFailed { .. } => "message_not_failed",
            ReplayOutcome::PublishFailed { .. } => "publish_failed",
        }
    }

    /// One line for a human.
    pub fn describe(&self) -> String {
        match self {
            ReplayOutcome::Replayed {
                message_id,
                resumed: false,
            } => format!("replayed: message {message_id} is queued again"),
            ReplayOutcome::Replayed {
                message_id,
                resumed: true,
            } => format!(
                "replayed (an interrupted earlier replay was completed): message {message_id} is queued"
            ),
            ReplayOutcome::NotFound => "no such dead letter".into(),
            ReplayOutcome::AlreadyReplayed { status: Some(s) } => {
                format!("already replayed; the message is now {s}")
            }
            ReplayOutcome::AlreadyReplayed { status: None } => "already replayed".into(),
            ReplayOutcome::InProgress => {
                "another replay of this dead letter is in progress; try again in a minute".into()
            }
            ReplayOutcome::NotReplayable { reason } => format!("cannot be replayed: {reason}"),
            ReplayOutcome::NotFailed { status } => format!(
                "not replayed: the message is {status}, not failed (only a failed message is re-sent)"
            ),
            ReplayOutcome::PublishFailed { reason } => {
                format!("not replayed: {reason}; nothing changed, try again")
            }
        }
    }
}

/// Replays one dead letter (optionally only if it belongs to `tenant`); `by` is recorded.
/// `keyring` opens its sealed body.
pub async fn replay(
    pool: &PgPool,
    keyring: &Keyring,
    publisher: &Arc<Publisher>,
    id: i64,
    tenant: Option<&str>,
    by: &str,
) -> Result<ReplayOutcome, sqlx::Error> {
    let claim =
        dead_letters::claim_replay(pool, keyring, id, tenant, by, REPLAY_CLAIM_STALE).await?;
    let (message_id, tenant_id, routing_key, body, resumed) = match claim {
        ReplayClaim::Ready {
            message_id,
            tenant_id,
            routing_key,
            body,
            resumed,
        } => (message_id, tenant_id, routing_key, body, resumed),
        ReplayClaim::NotFound => return Ok(ReplayOutcome::NotFound),
        ReplayClaim::AlreadyReplayed { status } => {
            return Ok(ReplayOutcome::AlreadyReplayed { status });
        }
        ReplayClaim::InProgress => return Ok(ReplayOutcome::InProgress),
        ReplayClaim::NotReplayable { reason } => {
            return Ok(ReplayOutcome::NotReplayable { reason });
        }
        ReplayClaim::NotFailed { status } => return Ok(ReplayOutcome::NotFailed { status }),
    };
    // No retry headers: the worker starts again from the first provider with a fresh budget.
    let mut headers = FieldTable::default();
    headers.insert(HEADER_REPLAYED_FROM.into(), AMQPValue::LongLongInt(id));
    // A dead letter from a lane (`email.high`) is replayed to its channel's entry queue, where
    // the router lanes it again from the envelope's own priority.
    let published = match crate::queue::topology::channel_of_routing_key(&routing_key) {
        None => Err(format!(
            "stored routing key {routing_key:?} is not a channel"
        )),
        Some(channel) => publisher
            .publish(
                &publisher.topology().send_exchange(),
                channel.as_str(),
                &body,
                headers,
                Some(&message_id.to_string()),
            )
            .await
            .map_err(|e| e.to_string()),
    };
    if let Err(reason) = published {
        tracing::warn!(dead_letter_id = id, %message_id, error = %reason, "replay not published; undoing its claim");
        dead_letters::undo_replay(pool, id, message_id, &tenant_id, &reason).await?;
        return Ok(ReplayOutcome::PublishFailed { reason });
    }
    if let Err(e) = dead_letters::finish_replay(pool, id).await {
        // The envelope is on its way; a later replay of this row sees the message moved on
        // and only marks it.
        tracing::warn!(dead_letter_id = id, %message_id, error = %e, "replay published but not marked");
    }
    tracing::info!(dead_letter_id = id, %message_id, by, resumed, "dead letter replayed");
    metrics::counter!("communication_replays_total").increment(1);
    Ok(ReplayOutcome::Replayed {
        message_id,
        resumed,
    })
}

/// Empties the `{ns}.dead` queue (the broker-side copies; the `dead_letters` table, which
/// replay uses, is untouched). Returns how many messages were removed.
pub async fn purge_dead_queue(amqp_url: &str, queue: &str) -> Result<u32, lapin::Error> {
    let conn = crate::queue::connect(amqp_url, "communication-dlq").await?;
    let ch = conn.create_channel().await?;
    let purged = ch
        .queue_purge(queue.into(), lapin::options::QueuePurgeOptions::default())
        .await;
    let _ = conn.close(200, "done".into()).await;
    purged
}

// ---------------------------------------------------------------------------------------------
// `communication dlq list|replay`: what an operator at a terminal reads. Never the content.

/// `dlq list`: a table, newest first.
pub fn render_table(rows: &[dead_letters::DeadLetterRow]) -> String {
    let mut out = format!(
        "{:<8} {:<20} {:<16} {:<36} {:<7} {:<20} REASON\n",
        "ID", "CREATED", "TENANT", "MESSAGE", "CHANNEL", "REPLAYED"
    );
    for r in rows {
        let replayed = match (r.replayed_at, r.replayable) {
            (Some(at), _) => at.format("%Y-%m-%d %H:%M:%S").to_string(),
            (None, true) => "no".into(),
            (None, false) => "not replayable".into(),
        };
        out.push_str(&format!(
            "{:<8} {:<20} {:<16} {:<36} {:<7} {:<20} {}\n",
            r.id,
            r.created_at.format("%Y-%m-%d %H:%M:%S"),
            r.tenant_id.as_deref().unwrap_or("-"),
            r.message_id.map(|m| m.to_string()).unwrap_or("-".into()),
            r.channel.as_deref().unwrap_or("-"),
            replayed,
            r.reason
        ));
    }
    out
}

/// `dlq replay`: replays each of `ids` in turn, printing one line per dead letter (and a
/// summary line when `summary`). Fails, after trying them all, if any was not replayed.
pub async fn replay_and_report(
    pool: &PgPool,
    keyring: &Keyring,
    publisher: &Arc<Publisher>,
    ids: &[i64],
    tenant: Option<&str>,
    summary: bool,
) -> anyhow::Result<()> {
    let mut refused = 0;
    for id in ids {
        let outcome = replay(pool, keyring, publisher, *id, tenant, "cli").await?;
        if !outcome.is_replayed() {
            refused += 1;
        }
        println!("dead letter {id}: {}", outcome.describe());
    }
    if summary {
        println!("{} replayed, {refused} not", ids.len() - refused);
    }
    if refused > 0 {
        anyhow::bail!("{refused} of {} dead letters were not replayed", ids.len());
    }
    Ok(())
}
