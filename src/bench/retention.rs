//! `communication bench --scenario retention`: a tenant with millions of messages, and a
//! retention pass removing half of them while sends keep flowing (issue 13).
//!
//! It starts the stack (intake + one worker) on a fresh database, fills one tenant with
//! `--retention-messages` messages (four events each, as a delivered message has) spread over
//! the last 60 days, oldest first as they would have arrived, with multi-row
//! `INSERT … SELECT generate_series`; times `GET /v1/messages` (first page) and
//! `GET /v1/messages/{id}` over HTTP at that size; sends at `--rate` through the pipeline for a
//! baseline; then runs one retention pass (30 days: about half the rows go) with the same send
//! rate running until it ends, and compares. Table sizes are read before, after the pass,
//! after a plain VACUUM, and after refilling as many messages as were removed: Postgres does
//! not give freed pages back to the file system, it reuses them, so "stays the same size" is
//! the size after the refill against the size before the pass.
//!
//! `--retention-cycles K` then runs K passes on a rolling window (see [`super::retention_cycles`]).

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::{DateTime, TimeDelta, Utc};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use super::BenchArgs;
use super::load::{Intake, IntakeFigures, Latencies};
use super::retention_cycles;
use super::stack::{Endpoints, Stack};
use crate::domain::Channel;
use crate::retention::{self, PassOptions, PassReport};

/// The tenant filled with history.
pub(super) const TENANT: &str = "bench-history";
/// Days the history spans, ending now; retention keeps `KEEP_DAYS` of them.
pub(super) const SPAN_DAYS: i64 = 60;
pub(super) const KEEP_DAYS: u32 = 30;
/// Messages per fill statement.
const CHUNK: i64 = 50_000;
/// Timed calls per read.
const CALLS: usize = 200;

/// Runs the scenario and prints its report.
pub async fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let n = args.retention_messages;
    if n < 1000 {
        bail!("--retention-messages must be at least 1000");
    }
    retention_cycles::validate(args.retention_cycles, args.retention_slide_days, KEEP_DAYS)?;
    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| format!("bench-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]));
    let endpoints = Endpoints::from_env()?;
    let mut stack = Stack::start(endpoints, &namespace, args.prefetch, &args.log_level).await?;
    let result = measure(args, &mut stack, n).await;
    stack.teardown(args.keep).await;
    print!("{}", result?);
    Ok(())
}

async fn measure(args: &BenchArgs, stack: &mut Stack, n: i64) -> anyhow::Result<String> {
    let pool = stack.pool.clone();
    // The worker's own scheduled pass must not take the history away before the measured
    // pass: the tenant keeps everything until then.
    retention::store::set_override(&pool, TENANT, 3650).await?;
    stack.set_workers(1).await?;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "communication bench --scenario retention ({}): {n} messages of one tenant over \
         {SPAN_DAYS} days, 4 events each; retention {KEEP_DAYS} days; sends at {} req/s",
        Utc::now().to_rfc3339(),
        args.rate
    );
    let _ = writeln!(out, "load average before: {}", load_average());

    let now = Utc::now();
    eprintln!("bench: filling {n} messages");
    let started = Instant::now();
    let span = TimeDelta::days(SPAN_DAYS);
    let provider = uuid::Uuid::new_v4();
    let at = Placement::from_start(now - span, span, n);
    fill(&pool, TENANT, provider, 0, n, at).await?;
    let fill_time = started.elapsed();
    let _ = writeln!(
        out,
        "fill: {n} messages + {} events in {:.1} s = {:.0} messages/s ({:.0} rows/s)",
        4 * n,
        fill_time.as_secs_f64(),
        n as f64 / fill_time.as_secs_f64(),
        5.0 * n as f64 / fill_time.as_secs_f64()
    );
    let started = Instant::now();
    sqlx::query("VACUUM ANALYZE message_logs, message_events")
        .execute(&pool)
        .await?;
    let _ = writeln!(
        out,
        "VACUUM ANALYZE after the fill: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let size_full = sizes(&pool).await?;
    let _ = writeln!(out, "size after fill:        {size_full}");

    let intake = Intake::new(&stack.intake_base, &stack.service_token, 64)?;
    eprintln!("bench: timing reads");
    let reads = time_reads(&intake, &pool).await?;
    let _ = writeln!(out, "{reads}");

    for tenant in ["bench-before", "bench-during"] {
        stack.create_system_provider(tenant, Channel::Sms).await?;
    }
    let window = Duration::from_secs(args.rate_seconds.max(5));
    eprintln!("bench: baseline sends");
    let before = intake.fixed_rate("bench-before", args.rate, window).await?;
    let flow_before = delivered(&pool, "bench-before", before.accepted).await?;

    // Everything older than KEEP_DAYS goes now.
    retention::store::clear_override(&pool, TENANT).await?;
    let options = PassOptions {
        default_days: KEEP_DAYS,
        ..PassOptions::from(&crate::config::RetentionSettings::default())
    };
    eprintln!("bench: retention pass with sends flowing");
    let (report, during) =
        pass_with_sends(&pool, &intake, "bench-during", args.rate, options).await?;
    let accepted_during: usize = during.iter().map(|f| f.accepted).sum();
    let flow_during = delivered(&pool, "bench-during", accepted_during).await?;
    let _ = writeln!(
        out,
        "retention pass: {:.1} s, {} message batches of at most {}, {} messages removed \
         ({:.0}/s)",
        report.elapsed.as_secs_f64(),
        report.message_batches,
        options.batch_size,
        report.removed.message_logs,
        report.removed.message_logs as f64 / report.elapsed.as_secs_f64().max(1e-9)
    );
    for (table, rows) in report.removed.by_table() {
        let _ = writeln!(out, "  removed {rows:>10} {table}");
    }
    let _ = writeln!(
        out,
        "{}",
        flow_line("sends before the pass", &before, &flow_before)
    );
    let merged = merge(&during);
    let _ = writeln!(
        out,
        "{}",
        flow_line("sends during the pass", &merged, &flow_during)
    );
    let size_after = sizes(&pool).await?;
    let _ = writeln!(out, "size after the pass:    {size_after}");
    let started = Instant::now();
    sqlx::query("VACUUM message_logs, message_events")
        .execute(&pool)
        .await?;
    let _ = writeln!(
        out,
        "VACUUM after the pass: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let size_vacuumed = sizes(&pool).await?;
    let _ = writeln!(out, "size after VACUUM:      {size_vacuumed}");
    let refill = report.removed.message_logs as i64;
    eprintln!("bench: refilling {refill} messages");
    let at = Placement::from_start(now - span, span, refill);
    fill(&pool, TENANT, uuid::Uuid::new_v4(), n, refill, at).await?;
    let size_refilled = sizes(&pool).await?;
    let _ = writeln!(
        out,
        "size after refilling {refill} messages: {size_refilled} (vs {} before the pass)",
        size_full.total_mb()
    );
    let reads = time_reads(&intake, &pool).await?;
    let _ = writeln!(out, "after the pass and refill:\n{reads}");
    if args.retention_cycles > 0 {
        let cycles = retention_cycles::Cycles {
            args,
            stack,
            intake: &intake,
            messages: n,
            now,
            provider,
            next_index: n + refill,
        };
        out.push_str(&cycles.run().await?);
    }
    let _ = writeln!(out, "load average after: {}", load_average());
    Ok(out)
}

/// Runs one retention pass with `options` while sending to `sends_tenant` at `rate` in
/// windows of 5 s until it ends (at least one window). The worker's scheduled pass may hold
/// the lock for a moment: the pass is tried again until it gets it.
pub(super) async fn pass_with_sends(
    pool: &PgPool,
    intake: &Intake,
    sends_tenant: &str,
    rate: u32,
    options: PassOptions,
) -> anyhow::Result<(PassReport, Vec<IntakeFigures>)> {
    let pass = {
        let pool = pool.clone();
        tokio::spawn(async move {
            let stop = CancellationToken::new();
            loop {
                match retention::run_pass(&pool, &options, &stop).await {
                    Ok(None) => tokio::time::sleep(Duration::from_millis(200)).await,
                    other => return other.map(|r| r.unwrap_or_default()),
                }
            }
        })
    };
    let mut during: Vec<IntakeFigures> = Vec::new();
    while !pass.is_finished() {
        during.push(
            intake
                .fixed_rate(sends_tenant, rate, Duration::from_secs(5))
                .await?,
        );
    }
    Ok((pass.await??, during))
}

pub(super) fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Where [`fill`] puts its messages: the first accepted at `first_at`, each next one `step_us`
/// microseconds later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Placement {
    pub first_at: DateTime<Utc>,
    pub step_us: i64,
}

impl Placement {
    /// `count` messages evenly over `span` from `start`, the first at `start` (the last one
    /// step before `start + span`).
    pub fn from_start(start: DateTime<Utc>, span: TimeDelta, count: i64) -> Placement {
        Placement {
            first_at: start,
            step_us: span.num_microseconds().unwrap_or(1) / count.max(1),
        }
    }

    /// `count` messages evenly in `(start, start + span]`: the first one step after `start`,
    /// the last at the end (to the microsecond the division leaves).
    pub fn after_start(start: DateTime<Utc>, span: TimeDelta, count: i64) -> Placement {
        let p = Placement::from_start(start, span, count);
        Placement {
            first_at: start + TimeDelta::microseconds(p.step_us),
            ..p
        }
    }
}

/// Messages `first..first+count` of `tenant`, placed by `at` (oldest first), each delivered
/// by `provider`: four events, as the worker writes them. Ids are time-ordered UUIDv7 built
/// from `created_at`, as the intake's are (`Uuid::now_v7`), so the indexes on the message id
/// grow at their right end as in production rather than at random places.
pub(super) async fn fill(
    pool: &PgPool,
    tenant: &str,
    provider: uuid::Uuid,
    first: i64,
    count: i64,
    at: Placement,
) -> anyhow::Result<()> {
    let Placement {
        first_at: start,
        step_us,
    } = at;
    let mut done = 0;
    while done < count {
        let k = CHUNK.min(count - done);
        sqlx::query(
            "WITH m AS ( \
                 INSERT INTO message_logs (id, tenant_id, channel, recipient, status, \
                     provider_id, provider_kind, provider_message_id, attempts, metadata, \
                     created_at, updated_at, sent_at, completed_at) \
                 SELECT (lpad(to_hex((extract(epoch FROM x.at) * 1000)::bigint), 12, '0') \
                         || '7' || substr(x.h, 1, 3) || '8' || substr(x.h, 4, 15))::uuid, \
                        $1, 'sms', \
                        '+1415' || lpad(((i * 7919) % 10000000)::text, 7, '0'), 'delivered', \
                        $2, 'twilio', 'SM' || md5(i::text), 1, \
                        jsonb_build_object('order', i), \
                        x.at, x.at + interval '2 s', x.at + interval '300 ms', \
                        x.at + interval '2 s' \
                 FROM generate_series($5::bigint, $5 + $7 - 1) i \
                 CROSS JOIN LATERAL (SELECT $3 + make_interval(secs => (i - $6) * $4 / 1e6) AS at, \
                                            md5(i::text || random()::text) AS h) x \
                 RETURNING id, created_at) \
             INSERT INTO message_events (message_id, tenant_id, kind, provider_id, detail, \
                                         created_at) \
             SELECT m.id, $1, e.kind, CASE WHEN e.kind = 'accepted' THEN NULL ELSE $2 END, \
                    e.detail, m.created_at + e.after \
             FROM m CROSS JOIN (VALUES \
                 ('accepted', NULL::jsonb, interval '0'), \
                 ('attempt', '{\"attempt\": 1, \"provider_kind\": \"twilio\"}'::jsonb, \
                  interval '5 ms'), \
                 ('sent', '{\"provider_message_id\": \"SM0\"}'::jsonb, interval '300 ms'), \
                 ('delivered', '{\"receipt_id\": \"r0\"}'::jsonb, interval '2 s') \
             ) AS e(kind, detail, after)",
        )
        .bind(tenant)
        .bind(provider)
        .bind(start)
        .bind(step_us as f64)
        .bind(first + done)
        .bind(first)
        .bind(k)
        .execute(pool)
        .await
        .context("filling message_logs")?;
        done += k;
        if done % (CHUNK * 20) == 0 {
            eprintln!("bench: {done} of {count}");
        }
    }
    Ok(())
}

/// Bytes of the tables retention removes from (with their indexes and TOAST).
#[derive(Debug, Clone, Copy)]
struct Sizes {
    logs: i64,
    events: i64,
    /// Of `logs + events`: the indexes alone.
    indexes: i64,
    rows: i64,
}

impl Sizes {
    fn total_mb(&self) -> String {
        format!("{:.0} MB", (self.logs + self.events) as f64 / 1048576.0)
    }
}

impl std::fmt::Display for Sizes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "message_logs {:.0} MB + message_events {:.0} MB = {}, of which indexes {:.0} MB \
             ({} messages)",
            self.logs as f64 / 1048576.0,
            self.events as f64 / 1048576.0,
            self.total_mb(),
            self.indexes as f64 / 1048576.0,
            self.rows
        )
    }
}

async fn sizes(pool: &PgPool) -> anyhow::Result<Sizes> {
    let (logs, events, indexes, rows): (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT pg_total_relation_size('message_logs'), pg_total_relation_size('message_events'), \
                pg_indexes_size('message_logs') + pg_indexes_size('message_events'), \
                (SELECT count(*) FROM message_logs)",
    )
    .fetch_one(pool)
    .await?;
    Ok(Sizes {
        logs,
        events,
        indexes,
        rows,
    })
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// p50 / p99 of `GET /v1/messages` (first page of 50) and of `GET /v1/messages/{id}` for
/// random messages of the tenant.
async fn time_reads(intake: &Intake, pool: &PgPool) -> anyhow::Result<String> {
    let ids: Vec<uuid::Uuid> = sqlx::query_scalar(
        "SELECT id FROM message_logs TABLESAMPLE SYSTEM (1) WHERE tenant_id = $1 \
         ORDER BY random() LIMIT $2",
    )
    .bind(TENANT)
    .bind(CALLS as i64)
    .fetch_all(pool)
    .await?;
    let mut out = String::new();
    let page = format!("{}/v1/messages?limit=50", intake.base);
    let one = |id: &uuid::Uuid| format!("{}/v1/messages/{id}", intake.base);
    let urls: [(&str, Vec<String>); 2] = [
        ("GET /v1/messages first page (50)", vec![page; CALLS]),
        ("GET /v1/messages/{id}", ids.iter().map(one).collect()),
    ];
    for (label, urls) in urls {
        let mut took = Vec::with_capacity(urls.len());
        for url in &urls {
            let started = Instant::now();
            let r = intake
                .http
                .get(url)
                .bearer_auth(&intake.token)
                .header("X-Tenant-Id", TENANT)
                .send()
                .await?;
            let status = r.status();
            let _ = r.bytes().await?;
            if !status.is_success() {
                bail!("{label} answered {status}");
            }
            took.push(started.elapsed());
        }
        let took = Latencies::new(took);
        let _ = writeln!(
            out,
            "{label:<36} p50 {} / p99 {} ({} calls)",
            ms(took.percentile(0.5)),
            ms(took.percentile(0.99)),
            urls.len()
        );
    }
    Ok(out.trim_end().to_owned())
}

/// Accept → sent of a tenant's messages, once all are sent.
pub(super) struct Flow {
    pub per_sec: f64,
    pub p50: Duration,
    pub p99: Duration,
}

pub(super) async fn delivered(pool: &PgPool, tenant: &str, n: usize) -> anyhow::Result<Flow> {
    let e2e = super::load::wait_all_sent(pool, tenant, n, Duration::from_secs(60)).await?;
    Ok(Flow {
        per_sec: e2e.per_sec(),
        p50: e2e.accept_to_sent_p50,
        p99: e2e.accept_to_sent_p99,
    })
}

pub(super) fn merge(parts: &[IntakeFigures]) -> IntakeFigures {
    let mut samples = Vec::new();
    for p in parts {
        for q in 1..=1000 {
            // Latencies keeps its samples private: each window (same rate and length, so
            // about the same count) contributes its per-mille percentiles.
            samples.push(p.latencies.percentile(q as f64 / 1000.0));
        }
    }
    IntakeFigures {
        accepted: parts.iter().map(|p| p.accepted).sum(),
        errors: parts.iter().map(|p| p.errors).sum(),
        first_error: parts.iter().find_map(|p| p.first_error.clone()),
        elapsed: parts.iter().map(|p| p.elapsed).sum(),
        latencies: Latencies::new(samples),
    }
}

fn flow_line(label: &str, intake: &IntakeFigures, flow: &Flow) -> String {
    format!(
        "{label:<24} {} accepted ({} refused) at {:.0}/s, intake p50 {} / p99 {}; \
         delivered {:.0}/s, accept->sent p50 {} / p99 {}",
        intake.accepted,
        intake.errors,
        intake.per_sec(),
        ms(intake.latencies.percentile(0.5)),
        ms(intake.latencies.percentile(0.99)),
        flow.per_sec,
        ms(flow.p50),
        ms(flow.p99)
    )
}
