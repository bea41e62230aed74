//! The batching writer: one per worker process. Deliveries hand it their rows and wait for
//! the commit; it gathers whatever arrives within a few milliseconds (up to a batch size; see
//! [`run`] for when a batch is cut) and writes it in one transaction of three statements: the
//! claims, every step's rows (updates, events, dead letters), and the stats rollup. Up to
//! `flushes` batches are written at once, each on its own connection, while the next one
//! gathers: a delivery has at most one request waiting, so batches in flight never share a
//! message. If a batch fails, each request is retried alone so one bad row cannot fail its
//! neighbours.

use std::time::Duration;

use chrono::Utc;
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

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

/// Gathers batches and starts their flushes. A batch is written when it is full, or `linger`
/// after its first request arrived, or at once when that request ends a quiet spell (nothing
/// being written and nothing received for `linger`: waiting would only add latency). While
/// all `flushes` are busy it keeps gathering (up to `batch_size`) instead of waiting with a
/// cut batch, so under load batches grow and fewer commits carry the same rows.
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
    let mut last_arrival: Option<Instant> = None;
    let mut open = true;
    while open {
        let Some(first) = rx.recv().await else {
            break;
        };
        // Reap finished flushes so the set does not grow (and counts only busy ones).
        while in_flight.try_join_next().is_some() {}
        batch.push(first);
        let arrived = Instant::now();
        let quiet = in_flight.is_empty() && last_arrival.is_none_or(|at| arrived - at >= linger);
        last_arrival = Some(arrived);
        let deadline = if quiet { arrived } else { arrived + linger };
        loop {
            // Take whatever is already queued without waiting.
            let before = batch.len();
            while batch.len() < batch_size {
                match rx.try_recv() {
                    Ok(r) => batch.push(r),
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => {
                        open = false;
                        break;
                    }
                }
            }
            if batch.len() > before {
                last_arrival = Some(Instant::now());
            }
            if batch.len() >= batch_size || !open {
                break;
            }
            let slot_free = in_flight.len() < flushes;
            if slot_free && Instant::now() >= deadline {
                break;
            }
            tokio::select! {
                r = rx.recv() => match r {
                    Some(r) => {
                        batch.push(r);
                        last_arrival = Some(Instant::now());
                    }
                    None => open = false,
                },
                () = tokio::time::sleep_until(deadline), if slot_free => {}
                // All slots busy: keep gathering until one frees.
                Some(_) = in_flight.join_next(), if !slot_free => {}
            }
        }
        // A full batch waits for a free slot.
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

/// What a request asks to write (its reply channel apart, so a failed batch can be retried
/// one request at a time without copying the rows).
enum Step {
    Claim(NewMessage, Option<Record>),
    Record(Record),
}

enum Reply {
    Claim(oneshot::Sender<Result<ClaimOutcome, String>>),
    Record(oneshot::Sender<Result<(), String>>),
}

impl Reply {
    fn fail(self, msg: String) {
        match self {
            Reply::Claim(tx) => {
                let _ = tx.send(Err(msg));
            }
            Reply::Record(tx) => {
                let _ = tx.send(Err(msg));
            }
        }
    }
}

async fn flush(pool: &PgPool, batch: Vec<Request>, slot: i16) {
    let mut steps = Vec::with_capacity(batch.len());
    let mut replies = Vec::with_capacity(batch.len());
    for req in batch {
        match req {
            Request::Claim(m, then, tx) => {
                steps.push(Step::Claim(m, then));
                replies.push(Reply::Claim(tx));
            }
            Request::Record(r, tx) => {
                steps.push(Step::Record(r));
                replies.push(Reply::Record(tx));
            }
        }
    }
    match write_all(pool, &steps, slot).await {
        Ok(outcomes) => {
            let mut outcomes = outcomes.into_iter();
            for reply in replies {
                match reply {
                    Reply::Claim(tx) => {
                        let _ = tx.send(outcomes.next().ok_or_else(|| "no outcome".to_string()));
                    }
                    Reply::Record(tx) => {
                        let _ = tx.send(Ok(()));
                    }
                }
            }
        }
        Err(e) if steps.len() == 1 => {
            let msg = e.to_string();
            tracing::warn!(error = %msg, "database write failed");
            for reply in replies {
                reply.fail(msg.clone());
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, rows = steps.len(), "batched write failed; writing one by one");
            for (step, reply) in steps.iter().zip(replies) {
                let result = write_all(pool, std::slice::from_ref(step), slot).await;
                match (reply, result) {
                    (Reply::Claim(tx), Ok(mut o)) => {
                        let _ = tx.send(o.pop().ok_or_else(|| "no outcome".to_string()));
                    }
                    (Reply::Record(tx), Ok(_)) => {
                        let _ = tx.send(Ok(()));
                    }
                    (reply, Err(e)) => reply.fail(e.to_string()),
                }
            }
        }
    }
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

/// Writes a batch in one transaction: the claims (one statement, whose outcomes decide which
/// first steps go on), then every step's rows (one statement that also returns what the
/// updates changed), then the stats rollup (one statement). Returns the claims' outcomes, in
/// order.
async fn write_all(
    pool: &PgPool,
    steps: &[Step],
    rollup_slot: i16,
) -> Result<Vec<ClaimOutcome>, sqlx::Error> {
    let mut claimed: Vec<&NewMessage> = Vec::new();
    let mut thens: Vec<Option<&Record>> = Vec::new();
    let mut updates: Vec<&StatusUpdate> = Vec::with_capacity(steps.len());
    let mut events: Vec<&NewEvent> = Vec::with_capacity(steps.len());
    let mut dead: Vec<&DeadLetter> = Vec::new();
    for step in steps {
        match step {
            Step::Claim(m, then) => {
                claimed.push(m);
                thens.push(then.as_ref());
            }
            Step::Record(r) => {
                updates.extend(&r.update);
                events.extend(&r.events);
                dead.extend(&r.dead_letter);
            }
        }
    }
    let mut tx = pool.begin().await?;
    let outcomes = if claimed.is_empty() {
        Vec::new()
    } else {
        // A new message is inserted already in its first step's state.
        let initial: Vec<Option<&StatusUpdate>> = thens
            .iter()
            .map(|t| t.and_then(|t| t.update.as_ref()))
            .collect();
        messages::claim_messages_as(&mut tx, &claimed, &initial).await?
    };
    let mut delta = stats::RollupDelta::default();
    for ((m, then), outcome) in claimed.iter().zip(&thens).zip(&outcomes) {
        if *outcome == ClaimOutcome::New {
            // Counted in the state it was inserted in.
            let (status, provider) = match then.and_then(|t| t.update.as_ref()) {
                Some(u) => (u.status.as_str(), u.provider_id),
                None => (MessageStatus::Queued.as_str(), None),
            };
            delta.count(&m.tenant_id, m.created_at, &m.channel, provider, status, 1);
        }
        // The first steps of the claims that proceed join the batch's own rows; a new
        // message's change is already in its inserted row.
        if let Some(then) = then
            && proceeds(&m.tenant_id, outcome)
        {
            if *outcome != ClaimOutcome::New {
                updates.extend(&then.update);
            }
            events.extend(&then.events);
            dead.extend(&then.dead_letter);
        }
    }
    let changed = messages::write_steps(&mut tx, &updates, &events, &dead).await?;
    // Each row the updates changed moves from where it was counted to where it is now.
    let now = Utc::now();
    for c in &changed {
        delta.moved(&c.before, &c.status, c.provider_id, now);
    }
    // Last, so the rollup's shared rows stay locked only until the commit.
    stats::apply_delta(&mut tx, &delta, rollup_slot).await?;
    tx.commit().await?;
    Ok(outcomes)
}
