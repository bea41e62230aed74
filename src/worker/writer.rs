//! The batching writer: one per worker process. Deliveries hand it their rows and wait for
//! the commit; it gathers whatever arrives within a few milliseconds (up to a batch size)
//! and writes it with one multi-row statement per table in one transaction. Up to `flushes`
//! batches are written at once, each on its own connection, while the next one gathers: a
//! delivery has at most one request waiting, so batches in flight never share a message. If a
//! batch fails, each request is retried alone so one bad row cannot fail its neighbours.

use std::time::Duration;

use chrono::Utc;
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};

use crate::domain::MessageStatus;
use crate::store::messages::{self, ClaimOutcome, DeadLetter, NewEvent, NewMessage, StatusUpdate};
use crate::store::stats;

/// Rows one delivery step wants committed together.
#[derive(Debug, Default, Clone)]
pub struct Record {
    pub update: Option<StatusUpdate>,
    pub events: Vec<NewEvent>,
    pub dead_letter: Option<DeadLetter>,
}

enum Request {
    /// A message's first record, and the rows of its first step to commit with it when the
    /// claim lets the delivery go on (see [`proceeds`]).
    Claim(
        NewMessage,
        Option<Record>,
        oneshot::Sender<Result<ClaimOutcome, String>>,
    ),
    Record(Record, oneshot::Sender<Result<(), String>>),
}

/// A handle to the writer task.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Request>,
}

#[derive(Debug, thiserror::Error)]
#[error("database write failed: {0}")]
pub struct WriteError(pub String);

impl Writer {
    /// Starts the writer; it stops when every handle is dropped, after flushing.
    pub fn spawn(
        pool: PgPool,
        batch_size: usize,
        linger: Duration,
        flushes: usize,
    ) -> (Writer, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(batch_size.max(1) * 4);
        let task = tokio::spawn(run(pool, rx, batch_size.max(1), linger, flushes.max(1)));
        (Writer { tx }, task)
    }

    /// Records a message (first sight) and says whether it is new, known, or a duplicate.
    pub async fn claim(&self, message: NewMessage) -> Result<ClaimOutcome, WriteError> {
        self.claim_then(message, None).await
    }

    /// Records a message and, in the same transaction, the rows of its first step (the
    /// attempt), which are written only when [`proceeds`] says the claim lets the delivery go
    /// on. One commit instead of two per message: a crash leaves either nothing (the message
    /// is claimed again on redelivery) or the message with its attempt recorded, never a
    /// claimed message whose attempt is missing.
    pub async fn claim_then(
        &self,
        message: NewMessage,
        then: Option<Record>,
    ) -> Result<ClaimOutcome, WriteError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Request::Claim(message, then, tx))
            .await
            .map_err(|_| WriteError("writer stopped".into()))?;
        rx.await
            .map_err(|_| WriteError("writer stopped".into()))?
            .map_err(WriteError)
    }

    /// Commits a step's rows; returns once they are durable.
    pub async fn record(&self, record: Record) -> Result<(), WriteError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Request::Record(record, tx))
            .await
            .map_err(|_| WriteError("writer stopped".into()))?;
        rx.await
            .map_err(|_| WriteError("writer stopped".into()))?
            .map_err(WriteError)
    }
}

async fn run(
    pool: PgPool,
    mut rx: mpsc::Receiver<Request>,
    batch_size: usize,
    linger: Duration,
    flushes: usize,
) {
    let mut batch: Vec<Request> = Vec::with_capacity(batch_size);
    let mut in_flight = tokio::task::JoinSet::new();
    // Consecutive batches write the stats rollup in different slots, so batches in flight
    // together do not wait on each other's hot rows; the start differs per process.
    let mut rollup_slot: i16 = rand::random_range(0..stats::SLOTS);
    loop {
        // Reap finished flushes so the set does not grow.
        while in_flight.try_join_next().is_some() {}
        let Some(first) = rx.recv().await else {
            break;
        };
        batch.push(first);
        let deadline = tokio::time::Instant::now() + linger;
        while batch.len() < batch_size {
            // Take whatever is already queued without waiting, then linger for more.
            match rx.try_recv() {
                Ok(r) => {
                    batch.push(r);
                    continue;
                }
                Err(mpsc::error::TryRecvError::Disconnected) => break,
                Err(mpsc::error::TryRecvError::Empty) => {}
            }
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(r)) => batch.push(r),
                Ok(None) | Err(_) => break,
            }
        }
        // At most `flushes` batches in flight: wait for one to finish before starting another.
        while in_flight.len() >= flushes {
            in_flight.join_next().await;
        }
        let pool = pool.clone();
        let batch = std::mem::replace(&mut batch, Vec::with_capacity(batch_size));
        let slot = rollup_slot;
        rollup_slot = (rollup_slot + 1) % stats::SLOTS;
        in_flight.spawn(async move {
            let started = std::time::Instant::now();
            let size = batch.len();
            flush(&pool, batch, slot).await;
            metrics::histogram!("communication_db_batch_seconds")
                .record(started.elapsed().as_secs_f64());
            metrics::histogram!("communication_db_batch_size").record(size as f64);
        });
    }
    // Every handle is gone: finish the batches still being written.
    while in_flight.join_next().await.is_some() {}
}

async fn flush(pool: &PgPool, batch: Vec<Request>, slot: i16) {
    let mut claims = Vec::new();
    let mut claim_tx = Vec::new();
    let mut updates = Vec::new();
    let mut events = Vec::new();
    let mut dead = Vec::new();
    let mut record_tx = Vec::new();
    // Keep the requests so a failed batch can be retried one by one.
    let mut originals = Vec::with_capacity(batch.len());
    for req in batch {
        match req {
            Request::Claim(m, then, tx) => {
                claims.push((m.clone(), then.clone()));
                claim_tx.push(tx);
                originals.push(Single::Claim(m, then));
            }
            Request::Record(r, tx) => {
                updates.extend(r.update.clone());
                events.extend(r.events.iter().cloned());
                dead.extend(r.dead_letter.clone());
                record_tx.push(tx);
                originals.push(Single::Record(r));
            }
        }
    }
    match write_all(pool, claims, updates, events, dead, slot).await {
        Ok(outcomes) => {
            for (tx, outcome) in claim_tx.into_iter().zip(outcomes) {
                let _ = tx.send(Ok(outcome));
            }
            for tx in record_tx {
                let _ = tx.send(Ok(()));
            }
        }
        Err(e) if originals.len() == 1 => {
            let msg = e.to_string();
            tracing::warn!(error = %msg, "database write failed");
            for tx in claim_tx {
                let _ = tx.send(Err(msg.clone()));
            }
            for tx in record_tx {
                let _ = tx.send(Err(msg.clone()));
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, rows = originals.len(), "batched write failed; writing one by one");
            let mut claim_tx = claim_tx.into_iter();
            let mut record_tx = record_tx.into_iter();
            for single in originals {
                match single {
                    Single::Claim(m, then) => {
                        let r = write_all(
                            pool,
                            vec![(m, then)],
                            Vec::new(),
                            Vec::new(),
                            Vec::new(),
                            slot,
                        )
                        .await
                        .map_err(|e| e.to_string())
                        .and_then(|mut o| o.pop().ok_or_else(|| "no outcome".to_string()));
                        if let Some(tx) = claim_tx.next() {
                            let _ = tx.send(r);
                        }
                    }
                    Single::Record(rec) => {
                        let r = write_all(
                            pool,
                            Vec::new(),
                            rec.update.into_iter().collect(),
                            rec.events,
                            rec.dead_letter.into_iter().collect(),
                            slot,
                        )
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string());
                        if let Some(tx) = record_tx.next() {
                            let _ = tx.send(r);
                        }
                    }
                }
            }
        }
    }
}

enum Single {
    Claim(NewMessage, Option<Record>),
    Record(Record),
}

/// Whether a claim lets its delivery go on to the step written with it: a new message, or
/// one already recorded for the same tenant and not final yet (a redelivery, a retry).
pub fn proceeds(tenant: &str, outcome: &ClaimOutcome) -> bool {
    match outcome {
        ClaimOutcome::New => true,
        ClaimOutcome::Existing { status, tenant_id } => {
            tenant_id == tenant && MessageStatus::parse(status).is_some_and(|s| !s.is_final())
        }
        ClaimOutcome::Duplicate { .. } => false,
    }
}

async fn write_all(
    pool: &PgPool,
    claims: Vec<(NewMessage, Option<Record>)>,
    mut updates: Vec<StatusUpdate>,
    mut events: Vec<NewEvent>,
    mut dead: Vec<DeadLetter>,
    rollup_slot: i16,
) -> Result<Vec<ClaimOutcome>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let (claimed, thens): (Vec<NewMessage>, Vec<Option<Record>>) = claims.into_iter().unzip();
    let outcomes = if claimed.is_empty() {
        Vec::new()
    } else {
        // A new message is inserted already in its first step's state.
        let initial: Vec<Option<&StatusUpdate>> = thens
            .iter()
            .map(|t| t.as_ref().and_then(|t| t.update.as_ref()))
            .collect();
        messages::claim_messages_as(&mut tx, &claimed, &initial).await?
    };
    // The first steps of the claims that proceed join the batch's own rows; a new message's
    // change is already in its inserted row.
    let mut started = Vec::new();
    for ((m, then), outcome) in claimed.iter().zip(thens).zip(&outcomes) {
        if let Some(then) = then
            && proceeds(&m.tenant_id, outcome)
        {
            match (outcome, then.update) {
                (ClaimOutcome::New, Some(u)) => started.push(u),
                (_, u) => updates.extend(u),
            }
            events.extend(then.events);
            dead.extend(then.dead_letter);
        }
    }
    let ids: Vec<_> = updates.iter().map(|u| u.id).collect();
    let before = stats::lock_counted(&mut tx, &ids, WORKER_OWNED).await?;
    messages::apply_updates(&mut tx, &updates).await?;
    messages::insert_events(&mut tx, &events).await?;
    messages::insert_dead_letters(&mut tx, &dead).await?;
    // Last, so the rollup's shared rows stay locked only until the commit.
    let delta = rollup_delta(&claimed, &outcomes, &started, &updates, &before);
    stats::apply_delta(&mut tx, &delta, rollup_slot).await?;
    tx.commit().await?;
    Ok(outcomes)
}

/// The statuses `messages::apply_updates` may change (its `WHERE`): the rollup must move
/// exactly the rows it changes.
const WORKER_OWNED: &[&str] = &["queued", "sending"];

/// The batch's change to the stats rollup: new messages counted as `queued`, and each
/// update moving its message's count from the status it had (`before`, read under lock) to
/// the new one.
fn rollup_delta(
    claims: &[NewMessage],
    outcomes: &[ClaimOutcome],
    started: &[StatusUpdate],
    updates: &[StatusUpdate],
    before: &[stats::CountedMessage],
) -> stats::RollupDelta {
    let mut delta = stats::RollupDelta::default();
    let started: std::collections::HashMap<_, _> = started.iter().map(|u| (u.id, u)).collect();
    for (m, outcome) in claims.iter().zip(outcomes) {
        if *outcome == ClaimOutcome::New {
            // Counted in the state it was inserted in.
            let (status, provider) = match started.get(&m.id) {
                Some(u) => (u.status.as_str(), u.provider_id),
                None => (MessageStatus::Queued.as_str(), None),
            };
            delta.count(&m.tenant_id, m.created_at, &m.channel, provider, status, 1);
        }
    }
    let now = Utc::now();
    let before: std::collections::HashMap<_, _> = before.iter().map(|b| (b.id, b)).collect();
    for u in updates {
        if let Some(b) = before.get(&u.id) {
            delta.moved(b, &u.status, u.provider_id, now);
        }
    }
    delta
}
