//! `--retention-cycles K` of `communication bench --scenario retention`: does the database stay
//! the same size when retention runs again and again on a rolling window (issue 13)?
//!
//! After the one-shot measurement, time passes without touching the clock: cycle `c` (1..=K)
//! inserts `--retention-slide-days` (D) days of new messages of the history tenant, at the
//! fill's rate per day (N / 60, four events each), accepted in `(now + (c-1)·D, now + c·D]`
//! days, then runs a retention pass for the tenant with an override of `30 - c·D` days, so the
//! cutoff moves D days per cycle and the kept window stays 30 days wide — while sends flow,
//! as in the one-shot pass. Nothing runs `VACUUM` by hand between cycles unless
//! `--retention-cycle-vacuum emulate` asks the bench to stand in for an autovacuum that is
//! off (it vacuums or analyses a table exactly when autovacuum's thresholds say autovacuum
//! would). After each cycle one line of sizes; at the end, cycle 1 against cycle K and the
//! growth per cycle over the last half of the cycles. The refill leaves the window 1.5 times
//! as dense as the fill's rate: at that rate the live count falls each cycle, and
//! `--retention-cycle-messages` (1.5 × N·D/60) keeps it level. Message ids are random (v4)
//! here, time-ordered (v7) in production.

use std::fmt::Write as _;

use anyhow::{Context, bail};
use chrono::{DateTime, TimeDelta, Utc};
use sqlx::PgPool;

use super::BenchArgs;
use super::load::Intake;
use super::retention::{
    self as one_shot, KEEP_DAYS, Placement, SPAN_DAYS, TENANT, fill, pass_with_sends,
};
use super::stack::Stack;
use crate::domain::Channel;
use crate::retention::{PassOptions, store};

/// What vacuums the tables between cycles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CycleVacuum {
    /// The server's autovacuum, as in production (with `autovacuum = off`: nothing at all).
    Autovacuum,
    /// The bench, after each pass: a plain `VACUUM` and/or `ANALYZE` of each table whose dead,
    /// inserted or changed rows crossed autovacuum's thresholds (the server's settings).
    Emulate,
}

/// Checks `--retention-cycles` against `--retention-slide-days`: the last cycle must still
/// keep at least one day (`cycles × slide < keep`).
pub(super) fn validate(cycles: u32, slide_days: u32, keep: u32) -> anyhow::Result<()> {
    if cycles == 0 {
        return Ok(());
    }
    if slide_days == 0 {
        bail!("--retention-slide-days must be at least 1");
    }
    if keep_days(keep, cycles, slide_days).is_none() {
        bail!(
            "--retention-cycles {cycles} × --retention-slide-days {slide_days} must stay under \
             the {keep} days kept (the last pass would keep less than a day)"
        );
    }
    Ok(())
}

/// The override of cycle `cycle`'s pass: `keep - cycle × slide` days, so its cutoff is
/// `cycle × slide` days later than the one-shot pass's; `None` below one day.
fn keep_days(keep: u32, cycle: u32, slide: u32) -> Option<u32> {
    cycle
        .checked_mul(slide)
        .and_then(|moved| keep.checked_sub(moved))
        .filter(|&days| days >= 1)
}

/// Messages per cycle: `slide` days at the fill's rate (`messages` over `SPAN_DAYS` days).
fn per_cycle(messages: i64, slide: u32) -> i64 {
    messages * i64::from(slide) / SPAN_DAYS
}

/// Where cycle `cycle`'s messages go: evenly in `(now + (cycle-1)·slide, now + cycle·slide]`.
fn placement(now: DateTime<Utc>, cycle: u32, slide: u32, count: i64) -> Placement {
    let slide = TimeDelta::days(i64::from(slide));
    let start = now + slide * (cycle as i32 - 1);
    Placement::after_start(start, slide, count)
}

/// `(first cycle, growth per cycle)` of `values` (one per cycle, cycle 1 first) over the
/// last half of the cycles: from cycle `K - K/2` to cycle K. `None` for fewer than 2 cycles.
fn last_half_growth(values: &[i64]) -> Option<(usize, f64)> {
    let k = values.len();
    if k < 2 {
        return None;
    }
    let from = k - k / 2;
    let growth = (values[k - 1] - values[from - 1]) as f64 / (k - from) as f64;
    Some((from, growth))
}

/// What the cycles run on.
pub(super) struct Cycles<'a> {
    pub args: &'a BenchArgs,
    pub stack: &'a Stack,
    pub intake: &'a Intake,
    /// `--retention-messages`.
    pub messages: i64,
    /// The clock of the fill: the first cycle's messages come right after it.
    pub now: DateTime<Utc>,
    /// The provider of the first fill's messages: the cycles' messages have it too, as one
    /// provider's ids share one range of `message_logs_provider_message` in production (a new
    /// provider per cycle would start a new range each time).
    pub provider: uuid::Uuid,
    /// The number of the next message `fill` creates (its recipient and metadata).
    pub next_index: i64,
}

/// The two tables after a cycle.
#[derive(Debug, Clone)]
struct Snapshot {
    /// `pg_table_size`: heap, TOAST, free space and visibility maps, no indexes.
    logs_heap: i64,
    events_heap: i64,
    /// Every index of the two tables, by name.
    indexes: Vec<(String, i64)>,
    /// Live messages of the history tenant.
    messages: i64,
    /// `n_dead_tup` of message_logs and message_events.
    dead: (i64, i64),
    /// `autovacuum_count`, `autoanalyze_count` of message_logs and message_events.
    autovacuums: [(i64, i64); 2],
}

impl Snapshot {
    fn index_total(&self) -> i64 {
        self.indexes.iter().map(|(_, b)| b).sum()
    }

    fn total(&self) -> i64 {
        self.logs_heap + self.events_heap + self.index_total()
    }

    fn index(&self, name: &str) -> i64 {
        self.indexes
            .iter()
            .find(|(n, _)| n == name)
            .map_or(0, |(_, b)| *b)
    }
}

fn mb(bytes: i64) -> f64 {
    bytes as f64 / 1_048_576.0
}

async fn snapshot(pool: &PgPool) -> anyhow::Result<Snapshot> {
    let (logs_heap, events_heap, messages): (i64, i64, i64) = sqlx::query_as(
        "SELECT pg_table_size('message_logs'), pg_table_size('message_events'), \
                (SELECT count(*) FROM message_logs WHERE tenant_id = $1)",
    )
    .bind(TENANT)
    .fetch_one(pool)
    .await?;
    let indexes: Vec<(String, i64)> = sqlx::query_as(
        "SELECT c.relname::text, pg_relation_size(c.oid) FROM pg_index i \
         JOIN pg_class c ON c.oid = i.indexrelid \
         WHERE i.indrelid IN ('message_logs'::regclass, 'message_events'::regclass) \
         ORDER BY 2 DESC, 1",
    )
    .fetch_all(pool)
    .await?;
    let stats: Vec<(String, i64, i64, i64)> = sqlx::query_as(
        "SELECT relname::text, n_dead_tup, autovacuum_count, autoanalyze_count \
         FROM pg_stat_user_tables WHERE relname IN ('message_logs', 'message_events')",
    )
    .fetch_all(pool)
    .await?;
    let of = |table: &str| {
        stats
            .iter()
            .find(|s| s.0 == table)
            .map_or((0, 0, 0), |s| (s.1, s.2, s.3))
    };
    let (logs, events) = (of("message_logs"), of("message_events"));
    Ok(Snapshot {
        logs_heap,
        events_heap,
        indexes,
        messages,
        dead: (logs.0, events.0),
        autovacuums: [(logs.1, logs.2), (events.1, events.2)],
    })
}

/// `V` vacuumed, `A` analysed, `VA` both, `-` neither.
fn maintenance_mark(vacuumed: bool, analysed: bool) -> &'static str {
    ["-", "A", "V", "VA"][usize::from(vacuumed) * 2 + usize::from(analysed)]
}

/// Vacuums and/or analyses each table whose statistics crossed autovacuum's thresholds (dead
/// rows, rows inserted since the last vacuum, rows changed since the last analyse, against the
/// server's `autovacuum_*` settings and `reltuples`), as autovacuum would on its next round.
/// Returns the marks of message_logs and message_events.
async fn emulate_autovacuum(pool: &PgPool) -> anyhow::Result<[&'static str; 2]> {
    let due: Vec<(String, bool, bool)> = sqlx::query_as(
        "SELECT s.relname::text, \
                s.n_dead_tup > current_setting('autovacuum_vacuum_threshold')::float8 \
                    + current_setting('autovacuum_vacuum_scale_factor')::float8 \
                      * greatest(c.reltuples, 0) \
                OR s.n_ins_since_vacuum \
                    > current_setting('autovacuum_vacuum_insert_threshold')::float8 \
                    + current_setting('autovacuum_vacuum_insert_scale_factor')::float8 \
                      * greatest(c.reltuples, 0), \
                s.n_mod_since_analyze > current_setting('autovacuum_analyze_threshold')::float8 \
                    + current_setting('autovacuum_analyze_scale_factor')::float8 \
                      * greatest(c.reltuples, 0) \
         FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid \
         WHERE s.relname IN ('message_logs', 'message_events')",
    )
    .fetch_all(pool)
    .await?;
    let mut marks = ["-"; 2];
    for (i, table) in ["message_logs", "message_events"].into_iter().enumerate() {
        let (vacuum, analyze) = due
            .iter()
            .find(|d| d.0 == table)
            .map_or((false, false), |d| (d.1, d.2));
        let verb = match (vacuum, analyze) {
            (true, true) => "VACUUM ANALYZE",
            (true, false) => "VACUUM",
            (false, true) => "ANALYZE",
            (false, false) => continue,
        };
        // Both words come from the constants above.
        sqlx::query(sqlx::AssertSqlSafe(format!("{verb} {table}")))
            .execute(pool)
            .await
            .with_context(|| format!("{verb} {table}"))?;
        marks[i] = maintenance_mark(vacuum, analyze);
    }
    Ok(marks)
}

/// The marks of what autovacuum did between two snapshots.
fn autovacuum_marks(before: &Snapshot, after: &Snapshot) -> [&'static str; 2] {
    let mark = |i: usize| {
        let (v0, a0) = before.autovacuums[i];
        let (v1, a1) = after.autovacuums[i];
        maintenance_mark(v1 > v0, a1 > a0)
    };
    [mark(0), mark(1)]
}

/// One cycle's figures.
struct CycleRow {
    cycle: u32,
    removed: u64,
    pass_secs: f64,
    snapshot: Snapshot,
    /// Dead tuples right after the pass (before any emulated vacuum).
    dead_after_pass: (i64, i64),
    maintenance: [&'static str; 2],
    /// Sends during the pass: accepted, refused, intake p99, accept->sent p99 (ms).
    sends: (usize, usize, f64, f64),
}

const HEADER: &str = "cycle  removed  pass s  logs heap MB  events heap MB  indexes MB  \
                      total MB  messages  dead logs  dead events  maint logs/events  sends (refused; p99 intake, accept->sent)";

fn row_line(r: &CycleRow) -> String {
    let s = &r.snapshot;
    let maint = format!("{}/{}", r.maintenance[0], r.maintenance[1]);
    format!(
        "{:>5}  {:>7}  {:>6.1}  {:>12.1}  {:>14.1}  {:>10.1}  {:>8.1}  {:>8}  {:>9}  {:>11}  \
         {:>17}  {} ({}; {:.1} ms, {:.1} ms)",
        r.cycle,
        r.removed,
        r.pass_secs,
        mb(s.logs_heap),
        mb(s.events_heap),
        mb(s.index_total()),
        mb(s.total()),
        s.messages,
        r.dead_after_pass.0,
        r.dead_after_pass.1,
        maint,
        r.sends.0,
        r.sends.1,
        r.sends.2,
        r.sends.3
    )
}

impl Cycles<'_> {
    /// Runs the cycles; their report.
    pub async fn run(self) -> anyhow::Result<String> {
        let args = self.args;
        let (k, slide) = (args.retention_cycles, args.retention_slide_days);
        validate(k, slide, KEEP_DAYS)?;
        let pool = self.stack.pool.clone();
        let count = args
            .retention_cycle_messages
            .unwrap_or_else(|| per_cycle(self.messages, slide));
        if count < 1 {
            bail!("a cycle would insert no message (--retention-cycle-messages)");
        }
        let autovacuum: String = sqlx::query_scalar("SELECT current_setting('autovacuum')")
            .fetch_one(&pool)
            .await?;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "\nrolling window: {k} cycles of {slide} days; each inserts {count} messages of \
             {TENANT} (4 events each; the fill's rate is {} per {slide} days) dated after the \
             previous ones, then a pass keeping \
             {KEEP_DAYS} - cycle × {slide} days, sends at {} req/s during it; the one-shot \
             measurement's VACUUM (before its refill) is the last manual one; vacuum between cycles: {:?} (server \
             autovacuum = {autovacuum}); load average {}",
            per_cycle(self.messages, slide),
            args.rate,
            args.retention_cycle_vacuum,
            one_shot::load_average()
        );
        if args.retention_cycle_vacuum == CycleVacuum::Autovacuum && autovacuum != "on" {
            let _ = writeln!(
                out,
                "WARNING: autovacuum is {autovacuum} on this server: nothing vacuums between \
                 the cycles below (--retention-cycle-vacuum emulate stands in for it)"
            );
        }
        let _ = writeln!(
            out,
            "maint: V vacuum, A analyse of the table after that cycle's pass ({}); dead = \
             n_dead_tup right after the pass",
            match args.retention_cycle_vacuum {
                CycleVacuum::Autovacuum => "by autovacuum, from pg_stat_user_tables",
                CycleVacuum::Emulate => "by the bench, when autovacuum's thresholds were crossed",
            }
        );
        let mut previous = snapshot(&pool).await?;
        let zero = CycleRow {
            cycle: 0,
            removed: 0,
            pass_secs: 0.0,
            dead_after_pass: previous.dead,
            snapshot: previous.clone(),
            maintenance: ["-", "-"],
            sends: (0, 0, 0.0, 0.0),
        };
        let _ = writeln!(out, "{HEADER}");
        let _ = writeln!(
            out,
            "{}   (after the one-shot measurement)",
            row_line(&zero)
        );
        eprintln!("bench: {HEADER}\nbench: {}", row_line(&zero));
        let mut rows = vec![zero];
        let mut next_index = self.next_index;
        for cycle in 1..=k {
            let days = keep_days(KEEP_DAYS, cycle, slide)
                .with_context(|| format!("cycle {cycle} would keep less than a day"))?;
            let at = placement(self.now, cycle, slide, count);
            eprintln!("bench: cycle {cycle}: inserting {count} messages");
            fill(&pool, TENANT, self.provider, next_index, count, at).await?;
            next_index += count;
            store::set_override(&pool, TENANT, days as i32).await?;
            let sends_tenant = format!("bench-cycle-{cycle}");
            self.stack
                .create_system_provider(&sends_tenant, Channel::Sms)
                .await?;
            let options = PassOptions {
                default_days: KEEP_DAYS,
                ..PassOptions::from(&crate::config::RetentionSettings::default())
            };
            eprintln!("bench: cycle {cycle}: pass keeping {days} days");
            let (report, during) =
                pass_with_sends(&pool, self.intake, &sends_tenant, args.rate, options).await?;
            let sends = one_shot::merge(&during);
            let flow = one_shot::delivered(&pool, &sends_tenant, sends.accepted).await?;
            let after_pass = snapshot(&pool).await?;
            let (snapshot, maintenance) = match args.retention_cycle_vacuum {
                CycleVacuum::Emulate => {
                    let marks = emulate_autovacuum(&pool).await?;
                    (snapshot(&pool).await?, marks)
                }
                CycleVacuum::Autovacuum => {
                    let marks = autovacuum_marks(&previous, &after_pass);
                    (after_pass.clone(), marks)
                }
            };
            let row = CycleRow {
                cycle,
                removed: report.removed.message_logs,
                pass_secs: report.elapsed.as_secs_f64(),
                dead_after_pass: after_pass.dead,
                snapshot,
                maintenance,
                sends: (
                    sends.accepted,
                    sends.errors,
                    sends.latencies.percentile(0.99).as_secs_f64() * 1000.0,
                    flow.p99.as_secs_f64() * 1000.0,
                ),
            };
            let line = row_line(&row);
            eprintln!("bench: {line}");
            let _ = writeln!(out, "{line}");
            previous = after_pass;
            rows.push(row);
        }
        out.push_str(&indexes_table(&rows));
        out.push_str(&summary(&rows[1..]));
        Ok(out)
    }
}

/// MB of each index (largest first, as after the last cycle) per cycle.
fn indexes_table(rows: &[CycleRow]) -> String {
    let mut out = String::from("index MB per cycle:\n");
    let Some(last) = rows.last() else {
        return out;
    };
    let _ = write!(out, "{:<32}", "index");
    for r in rows {
        let _ = write!(out, " {:>7}", r.cycle);
    }
    out.push('\n');
    for (name, _) in &last.snapshot.indexes {
        let _ = write!(out, "{name:<32}");
        for r in rows {
            let _ = write!(out, " {:>7.1}", mb(r.snapshot.index(name)));
        }
        out.push('\n');
    }
    out
}

/// Cycle 1 against cycle K, and the growth per cycle over the last half.
fn summary(rows: &[CycleRow]) -> String {
    let mut out = String::new();
    let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
        return out;
    };
    let describe = |r: &CycleRow| {
        let s = &r.snapshot;
        format!(
            "heap {:.1} MB (logs {:.1} + events {:.1}), indexes {:.1} MB, total {:.1} MB, \
             {} messages",
            mb(s.logs_heap + s.events_heap),
            mb(s.logs_heap),
            mb(s.events_heap),
            mb(s.index_total()),
            mb(s.total()),
            s.messages
        )
    };
    let _ = writeln!(out, "after cycle {:>2}: {}", first.cycle, describe(first));
    let _ = writeln!(out, "after cycle {:>2}: {}", last.cycle, describe(last));
    let (a, b) = (&first.snapshot, &last.snapshot);
    let pct = |x: i64, y: i64| 100.0 * (y - x) as f64 / (x as f64).max(1.0);
    let _ = writeln!(
        out,
        "cycle {} -> {}: heap {:+.1} MB ({:+.2}%), indexes {:+.1} MB ({:+.2}%), total {:+.1} MB \
         ({:+.2}%), messages {:+} ({:+.2}%)",
        first.cycle,
        last.cycle,
        mb(b.logs_heap + b.events_heap - a.logs_heap - a.events_heap),
        pct(a.logs_heap + a.events_heap, b.logs_heap + b.events_heap),
        mb(b.index_total() - a.index_total()),
        pct(a.index_total(), b.index_total()),
        mb(b.total() - a.total()),
        pct(a.total(), b.total()),
        b.messages - a.messages,
        pct(a.messages, b.messages)
    );
    let series = |f: &dyn Fn(&Snapshot) -> i64| -> Vec<i64> {
        rows.iter().map(|r| f(&r.snapshot)).collect()
    };
    let Some((from, index_growth)) = last_half_growth(&series(&|s| s.index_total())) else {
        return out;
    };
    let heap_growth =
        last_half_growth(&series(&|s| s.logs_heap + s.events_heap)).map_or(0.0, |(_, g)| g);
    let message_growth = last_half_growth(&series(&|s| s.messages)).map_or(0.0, |(_, g)| g);
    let from_cycle = rows[from - 1].cycle;
    let index_at = rows[from - 1].snapshot.index_total();
    let _ = writeln!(
        out,
        "last half (cycle {from_cycle} -> {}), per cycle: indexes {:+.2} MB ({:+.3}% of cycle \
         {from_cycle}'s), heap {:+.2} MB, messages {:+.0}",
        last.cycle,
        mb(index_growth as i64),
        100.0 * index_growth / (index_at as f64).max(1.0),
        mb(heap_growth as i64),
        message_growth
    );
    for (name, _) in last.snapshot.indexes.iter().take(6) {
        if let Some((_, g)) = last_half_growth(&series(&|s| s.index(name))) {
            let _ = writeln!(out, "  {name:<32} {:+.2} MB per cycle", mb(g as i64));
        }
    }
    out
}

#[cfg(test)]
mod tests;
