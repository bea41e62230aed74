//! Retention: messages older than their tenant's retention (`COMMUNICATION_RETENTION_DAYS`, or
//! the operator's override in `tenant_retention`) are removed with everything that exists only
//! because of them — their events, their status-webhook events, deliveries and attempts — and
//! dead letters older than the same age. The usage counters (`message_stats_*`,
//! `message_latency_*`, read by `GET /v1/stats`) and the suppression list are never touched.
//!
//! A pass removes in small batches (`COMMUNICATION_RETENTION_BATCH` messages per transaction,
//! chosen through the `message_logs_list` index), with a pause between batches, so no
//! transaction holds locks for long and the delivery path keeps its share of the database.
//!
//! One pass at a time across every worker replica and `communication retention run`: a pass
//! takes a session-level Postgres advisory lock (`pg_try_advisory_lock`) on a connection of
//! its own, opened for the pass and closed after it, and runs its batches on that connection.
//! The lock lives exactly as long as that session: a crashed or killed holder's connection
//! closes and Postgres releases the lock at once, so nothing is left to expire. Whoever does
//! not get the lock skips the pass (the next interval tries again).

pub mod store;

use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use sqlx::{Connection, PgConnection, PgPool};
use tokio_util::sync::CancellationToken;

use crate::config::RetentionSettings;
pub use store::Removed;

/// The advisory lock key of a retention pass (one per database; any fixed 64-bit number
/// unused by other advisory locks of the service).
pub const LOCK_KEY: i64 = 0x7265_7465_6e74_696f; // "retentio"

/// How a pass runs: the settings, or smaller values in tests and the benchmark.
#[derive(Debug, Clone, Copy)]
pub struct PassOptions {
    /// Retention of tenants without an override.
    pub default_days: u32,
    /// Messages per transaction.
    pub batch_size: u32,
    /// Pause between batches.
    pub pause: Duration,
}

impl From<&RetentionSettings> for PassOptions {
    fn from(s: &RetentionSettings) -> Self {
        PassOptions {
            default_days: s.days,
            batch_size: s.batch_size,
            pause: s.pause,
        }
    }
}

/// What one pass did.
#[derive(Debug, Clone, Default)]
pub struct PassReport {
    /// Rows removed per table.
    pub removed: Removed,
    /// Transactions that removed messages (each at most `batch_size` of them).
    pub message_batches: u64,
    /// Tenants that had messages to remove: (tenant, days applied, messages removed).
    pub tenants: Vec<(String, u32, u64)>,
    pub elapsed: Duration,
}

impl PassReport {
    /// One line per table and per tenant, for `communication retention run`.
    pub fn render(&self) -> String {
        let mut out = format!(
            "retention pass: {:.1} s, {} message batches\n",
            self.elapsed.as_secs_f64(),
            self.message_batches
        );
        for (table, rows) in self.removed.by_table() {
            out.push_str(&format!("removed {rows:>10} {table}\n"));
        }
        for (tenant, days, messages) in &self.tenants {
            out.push_str(&format!(
                "tenant {tenant}: {messages} messages older than {days} days\n"
            ));
        }
        out
    }
}

/// Opens the pass's own connection and takes the lock; `None` when another pass holds it.
async fn lock(pool: &PgPool) -> Result<Option<PgConnection>, sqlx::Error> {
    let mut conn = PgConnection::connect_with(&pool.connect_options()).await?;
    let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(LOCK_KEY)
        .fetch_one(&mut conn)
        .await?;
    if got {
        Ok(Some(conn))
    } else {
        let _ = conn.close().await;
        Ok(None)
    }
}

/// Runs one pass now, unless another is running (`Ok(None)`). `stop` ends it between batches.
pub async fn run_pass(
    pool: &PgPool,
    options: &PassOptions,
    stop: &CancellationToken,
) -> anyhow::Result<Option<PassReport>> {
    let Some(mut conn) = lock(pool).await? else {
        return Ok(None);
    };
    let result = remove_old(&mut conn, options, stop).await;
    // Closing the session releases the lock (also when the pass failed half way).
    let _ = conn.close().await;
    let report = result?;
    metrics::gauge!("communication_retention_last_run_timestamp_seconds")
        .set(Utc::now().timestamp() as f64);
    Ok(Some(report))
}

fn cutoff(now: DateTime<Utc>, days: u32) -> DateTime<Utc> {
    now - TimeDelta::days(i64::from(days))
}

async fn remove_old(
    conn: &mut PgConnection,
    options: &PassOptions,
    stop: &CancellationToken,
) -> anyhow::Result<PassReport> {
    let started = Instant::now();
    let now = Utc::now();
    let batch = i64::from(options.batch_size.max(1));
    let overrides: std::collections::HashMap<String, u32> = store::all_overrides(conn)
        .await?
        .into_iter()
        .map(|(t, d)| (t, d.max(1) as u32))
        .collect();
    let mut report = PassReport::default();
    for tenant in store::tenants_with_messages(conn).await? {
        let days = overrides
            .get(&tenant)
            .copied()
            .unwrap_or(options.default_days);
        let before = cutoff(now, days);
        let mut tenant_messages = 0;
        loop {
            if stop.is_cancelled() {
                report.elapsed = started.elapsed();
                return Ok(report);
            }
            let removed = store::remove_message_batch(conn, &tenant, before, batch).await?;
            record(&removed);
            report.removed.add(&removed);
            tenant_messages += removed.message_logs;
            if removed.message_logs > 0 {
                report.message_batches += 1;
            }
            if (removed.message_logs as i64) < batch {
                break;
            }
            pause(options.pause, stop).await;
        }
        if tenant_messages > 0 {
            report.tenants.push((tenant, days, tenant_messages));
        }
    }
    let min_days = overrides
        .values()
        .copied()
        .chain([options.default_days])
        .min()
        .unwrap_or(options.default_days);
    loop {
        if stop.is_cancelled() {
            break;
        }
        let n = store::remove_dead_letter_batch(
            conn,
            now,
            options.default_days as i32,
            min_days as i32,
            batch,
        )
        .await?;
        let removed = Removed {
            dead_letters: n,
            ..Removed::default()
        };
        record(&removed);
        report.removed.add(&removed);
        if (n as i64) < batch {
            break;
        }
        pause(options.pause, stop).await;
    }
    report.elapsed = started.elapsed();
    Ok(report)
}

fn record(removed: &Removed) {
    for (table, rows) in removed.by_table() {
        if rows > 0 {
            metrics::counter!("communication_retention_deleted_total", "table" => table)
                .increment(rows);
        }
    }
}

async fn pause(d: Duration, stop: &CancellationToken) {
    if !d.is_zero() {
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = tokio::time::sleep(d) => {}
        }
    }
}

/// How long after start a worker runs its first pass: soon, but not in the rush of start-up.
const FIRST_PASS_AFTER: Duration = Duration::from_secs(60);

/// The worker's schedule: a pass every `settings.interval` (the first a minute after start,
/// or after the interval if that is shorter), until `shutdown`. Another replica's running pass
/// makes this one skip its turn.
pub fn spawn(
    settings: &RetentionSettings,
    pool: PgPool,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let options = PassOptions::from(settings);
    let interval = settings.interval;
    tokio::spawn(async move {
        let mut wait = FIRST_PASS_AFTER.min(interval);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            wait = interval;
            match run_pass(&pool, &options, &shutdown).await {
                Ok(Some(report)) => tracing::info!(
                    messages = report.removed.message_logs,
                    events = report.removed.message_events,
                    dead_letters = report.removed.dead_letters,
                    batches = report.message_batches,
                    elapsed_ms = report.elapsed.as_millis() as u64,
                    "retention pass finished"
                ),
                Ok(None) => tracing::debug!("retention pass skipped: another one is running"),
                Err(e) => {
                    tracing::warn!(error = %e, "retention pass failed; next interval retries")
                }
            }
        }
    })
}
