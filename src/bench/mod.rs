//! `communication bench`: measures the pipeline against this machine's raw limits in one run
//! and checks the performance targets (see BENCHMARKS.md).
//!
//! It starts its own stack — a fresh database and namespace, the intake and 1, 2, 4 … workers
//! as child processes of this binary, tenants whose `system` provider delivers at once — then
//! measures, in order: the raw broker (confirmed publish + consume), raw Postgres (the
//! writer's rows), the intake at a fixed rate, and for each worker count N sends through HTTP
//! and N direct publishes, each timed from first accept to the last `sent` in the database.
//! Figures and PASS/MISS per target go to stdout; the stack is removed afterwards.
//!
//! `--scenario http` measures delivery through an HTTP provider with the CPU per delivered
//! message of each process group (see [`http`]).

mod cpu;
mod fairness;
mod http;
mod http_report;
mod load;
pub mod raw;
mod retention;
mod retention_cycles;
mod stack;
mod stats;
mod stub;

use std::fmt::Write as _;
use std::time::Duration;

use clap::Args;

use crate::domain::Channel;
use load::{EndToEnd, Intake, IntakeFigures};
use stack::{Endpoints, Stack};

/// What `communication bench` measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// The delivery pipeline against the machine's raw limits (issue 5).
    Pipeline,
    /// `GET /v1/stats` for a tenant with millions of messages (issue 9).
    Stats,
    /// Delivery through an HTTP provider (a local Resend-shaped endpoint) beside the `system`
    /// provider, with CPU per delivered message per process group (issue 13).
    Http,
    /// A tenant with millions of messages, and a retention pass while sends flow (issue 13).
    Retention,
    /// One tenant's burst against another tenant's `high` codes, lanes on and off (issue 11;
    /// `--messages` is the burst).
    Fairness,
}

/// Options of `communication bench`.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// What to measure.
    #[arg(long, value_enum, default_value = "pipeline")]
    pub scenario: Scenario,
    /// Stats scenario: messages of the measured tenant.
    #[arg(long, default_value_t = 10_000_000)]
    pub stats_messages: u64,
    /// Stats scenario: days the messages are spread over, ending now.
    #[arg(long, default_value_t = 30)]
    pub stats_days: u32,
    /// Stats scenario: timed calls per query.
    #[arg(long, default_value_t = 100)]
    pub stats_calls: usize,
    /// Stats scenario: also fill message_logs with the tenant's messages (slow: minutes for
    /// ten million rows).
    #[arg(long)]
    pub stats_fill_logs: bool,
    /// Retention scenario: messages of the filled tenant.
    #[arg(long, default_value_t = 10_000_000)]
    pub retention_messages: i64,
    /// Retention scenario: after the one-shot pass, this many cycles on a rolling window, each
    /// inserting `--retention-slide-days` days of new messages (at the fill's rate per day)
    /// and running a pass whose cutoff is as many days later; no manual VACUUM (see
    /// `--retention-cycle-vacuum`). 0: none.
    #[arg(long, default_value_t = 0)]
    pub retention_cycles: u32,
    /// Retention scenario: days the window slides per cycle (cycles × days must stay under the
    /// 30 days kept).
    #[arg(long, default_value_t = 2)]
    pub retention_slide_days: u32,
    /// Retention scenario: messages inserted per cycle (default: the fill's rate, N × days /
    /// 60). The refill leaves the kept window 1.5 times that dense, so at the default the
    /// live count falls each cycle; 1.5 times the default keeps it level.
    #[arg(long)]
    pub retention_cycle_messages: Option<i64>,
    /// Retention scenario: what vacuums between cycles: the server's autovacuum (nothing, if
    /// it is off), or the bench running a plain VACUUM / ANALYZE of a table whenever
    /// autovacuum's own thresholds say autovacuum would.
    #[arg(long, value_enum, default_value = "autovacuum")]
    pub retention_cycle_vacuum: retention_cycles::CycleVacuum,
    /// Messages per phase (raw broker, raw Postgres, and each HTTP and direct run).
    #[arg(long, default_value_t = 20_000)]
    pub messages: usize,
    /// Concurrent HTTP callers in the closed-loop intake phase.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Requests per second of the open-loop (fixed-rate) intake latency phase.
    #[arg(long, default_value_t = 1000)]
    pub rate: u32,
    /// How long the fixed-rate phase lasts, in seconds.
    #[arg(long, default_value_t = 5)]
    pub rate_seconds: u64,
    /// Worker process counts to measure, e.g. 1,2,4.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4")]
    pub workers: Vec<usize>,
    /// COMMUNICATION_PREFETCH of the workers (and of the raw consumer).
    #[arg(long, default_value_t = 500)]
    pub prefetch: u16,
    /// Namespace of the bench's queues and Redis keys (default: bench-<random>).
    #[arg(long)]
    pub namespace: Option<String>,
    /// RUST_LOG of the intake and workers.
    #[arg(long, default_value = "info")]
    pub log_level: String,
    /// Keep the database, queues and child logs afterwards (their names are printed).
    #[arg(long)]
    pub keep: bool,
    /// HTTP scenario: seconds of the steady phase at `--rate`.
    #[arg(long, default_value_t = 20)]
    pub duration: u64,
    /// HTTP scenario: the providers measured, e.g. resend,system.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "resend,system"
    )]
    pub providers: Vec<http::ProviderCase>,
}

/// The figures of one worker count.
struct WorkerRun {
    workers: usize,
    intake: IntakeFigures,
    http: EndToEnd,
    direct: EndToEnd,
    direct_publish: Duration,
    worker_peak_rss: u64,
}

struct Report {
    args: BenchArgs,
    namespace: String,
    envelope_bytes: usize,
    load_before: String,
    load_after: String,
    broker: raw::BrokerFigures,
    postgres: raw::PostgresFigures,
    /// The same with as many batches in flight as the writer allows.
    postgres_parallel: raw::PostgresFigures,
    fixed_rate: IntakeFigures,
    runs: Vec<WorkerRun>,
    intake_peak_rss: u64,
    /// `sslmode` of DATABASE_URL: TLS to Postgres costs a lot here (see BENCHMARKS.md).
    sslmode: String,
}

/// Runs the benchmark and prints its report.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    if args.scenario == Scenario::Stats {
        return stats::run(&args).await;
    }
    if args.scenario == Scenario::Fairness {
        return fairness::run(&args).await;
    }
    if args.scenario == Scenario::Retention {
        return retention::run(&args).await;
    }
    let namespace = namespace_of(&args)?;
    if args.scenario == Scenario::Http {
        return http::run(&args, namespace).await;
    }
    if args.messages == 0 || args.workers.is_empty() || args.workers.contains(&0) {
        anyhow::bail!("--messages and each --workers count must be at least 1");
    }
    let endpoints = Endpoints::from_env()?;
    let load_before = load_average();
    eprintln!("bench: starting the stack in namespace {namespace}");
    let mut stack = Stack::start(endpoints, &namespace, args.prefetch, &args.log_level).await?;
    let result = measure(&args, &mut stack, load_before).await;
    let keep = args.keep;
    stack.teardown(keep).await;
    let report = result?;
    print!("{}", render(&report));
    Ok(())
}

/// `--namespace`, or a fresh `bench-<random>`.
fn namespace_of(args: &BenchArgs) -> anyhow::Result<String> {
    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| format!("bench-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]));
    if !crate::config::valid_namespace(&namespace) {
        anyhow::bail!("--namespace must be 1-100 characters of letters, digits, '_', '-', '.'");
    }
    Ok(namespace)
}

async fn measure(
    args: &BenchArgs,
    stack: &mut Stack,
    load_before: String,
) -> anyhow::Result<Report> {
    let n = args.messages;
    let envelope_bytes = load::envelope("bench-raw").to_bytes();
    eprintln!("bench: raw broker, {n} messages");
    let broker = raw::broker(
        &stack.endpoints.amqp_url,
        &stack.namespace,
        &envelope_bytes,
        n,
        args.prefetch,
    )
    .await?;
    eprintln!("bench: raw Postgres, {n} messages");
    let tuning = crate::config::WorkerTuning::default();
    let postgres = raw::postgres(
        &stack.pool,
        "bench-raw",
        load::RECIPIENT,
        n,
        tuning.batch_size,
        1,
    )
    .await?;
    let postgres_parallel = raw::postgres(
        &stack.pool,
        "bench-raw",
        load::RECIPIENT,
        n,
        tuning.batch_size,
        tuning.batch_flushes,
    )
    .await?;

    let intake = Intake::new(&stack.intake_base, &stack.service_token, args.concurrency)?;
    let stall = Duration::from_secs(30);
    let mut fixed_rate = None;
    let mut runs = Vec::new();
    for &workers in &args.workers {
        eprintln!("bench: {workers} worker(s)");
        stack.set_workers(workers).await?;
        if fixed_rate.is_none() {
            let tenant = "bench-rate";
            stack.create_system_provider(tenant, Channel::Sms).await?;
            eprintln!(
                "bench: intake at {} req/s for {} s",
                args.rate, args.rate_seconds
            );
            let figures = intake
                .fixed_rate(tenant, args.rate, Duration::from_secs(args.rate_seconds))
                .await?;
            load::wait_all_sent(&stack.pool, tenant, figures.accepted, stall).await?;
            fixed_rate = Some(figures);
        }
        let tenant = format!("bench-http-w{workers}");
        stack.create_system_provider(&tenant, Channel::Sms).await?;
        eprintln!(
            "bench: {n} sends over HTTP at concurrency {}",
            args.concurrency
        );
        let intake_figures = intake.closed_loop(&tenant, n, args.concurrency).await?;
        if intake_figures.errors > 0 {
            anyhow::bail!(
                "{} HTTP sends were refused; first: {}",
                intake_figures.errors,
                intake_figures.first_error.as_deref().unwrap_or("")
            );
        }
        let http = load::wait_all_sent(&stack.pool, &tenant, n, stall).await?;

        let tenant = format!("bench-direct-w{workers}");
        stack.create_system_provider(&tenant, Channel::Sms).await?;
        eprintln!("bench: {n} direct publishes");
        let direct_publish = load::direct_publish(
            &stack.endpoints.amqp_url,
            &stack.topology.send_exchange(),
            &tenant,
            n,
        )
        .await?;
        let direct = load::wait_all_sent(&stack.pool, &tenant, n, stall).await?;
        let worker_peak_rss = stack
            .worker_memory()
            .iter()
            .map(|m| m.peak_rss)
            .max()
            .unwrap_or(0);
        runs.push(WorkerRun {
            workers,
            intake: intake_figures,
            http,
            direct,
            direct_publish,
            worker_peak_rss,
        });
    }
    let intake_peak_rss = stack.intake_memory().map(|m| m.peak_rss).unwrap_or(0);
    stack.stop_workers().await;
    Ok(Report {
        args: args.clone(),
        namespace: stack.namespace.clone(),
        envelope_bytes: envelope_bytes.len(),
        load_before,
        load_after: load_average(),
        broker,
        postgres,
        postgres_parallel,
        fixed_rate: fixed_rate.unwrap_or_else(|| IntakeFigures {
            accepted: 0,
            errors: 0,
            first_error: None,
            elapsed: Duration::ZERO,
            latencies: Default::default(),
        }),
        runs,
        intake_peak_rss,
        sslmode: stack.sslmode(),
    })
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".into())
}

fn memory_total() -> String {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("MemTotal:"))?.to_owned();
            let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(format!("{:.1} GiB", kb / 1024.0 / 1024.0))
        })
        .unwrap_or_else(|| "unknown".into())
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1_000_000.0)
}

/// Targets of issue 5.
const TARGET_RATIO: f64 = 0.5;
const TARGET_INTAKE_P99: Duration = Duration::from_millis(10);
const TARGET_WORKER_RSS: u64 = 100_000_000;

fn verdict(pass: bool) -> &'static str {
    if pass { "PASS" } else { "MISS" }
}

fn render(r: &Report) -> String {
    let mut out = String::new();
    let raw = r.broker.publish_consume_per_sec;
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let _ = writeln!(
        out,
        "communication bench ({})",
        chrono::Utc::now().to_rfc3339()
    );
    let _ = writeln!(
        out,
        "machine: {cpus} CPUs, {} RAM, load average {} before, {} after",
        memory_total(),
        r.load_before,
        r.load_after
    );
    let _ = writeln!(
        out,
        "settings: messages={} concurrency={} rate={}/s for {} s workers={:?} prefetch={} \
         log={} envelope={} bytes namespace={} postgres sslmode={}",
        r.args.messages,
        r.args.concurrency,
        r.args.rate,
        r.args.rate_seconds,
        r.args.workers,
        r.args.prefetch,
        r.args.log_level,
        r.envelope_bytes,
        r.namespace,
        r.sslmode
    );
    let _ = writeln!(out);
    let row = |out: &mut String, label: &str, value: String| {
        let _ = writeln!(out, "{label:<44} {value}");
    };
    row(
        &mut out,
        "raw broker publish+consume",
        format!(
            "{:.0} msg/s (confirmed publish alone {:.0} msg/s)",
            raw, r.broker.publish_per_sec
        ),
    );
    row(
        &mut out,
        "raw postgres writer rows",
        format!(
            "{:.0} msg/s one batch at a time, {:.0} msg/s {} at a time ({:.0} rows/s: \
             1 insert + 3 events + 2 updates per message)",
            r.postgres.messages_per_sec,
            r.postgres_parallel.messages_per_sec,
            crate::config::WorkerTuning::default().batch_flushes,
            r.postgres_parallel.rows_per_sec
        ),
    );
    let f = &r.fixed_rate;
    row(
        &mut out,
        &format!("intake fixed-rate {} req/s p50 / p99", r.args.rate),
        format!(
            "{} / {} ({} accepted, {} refused, achieved {:.0} req/s)",
            ms(f.latencies.percentile(0.5)),
            ms(f.latencies.percentile(0.99)),
            f.accepted,
            f.errors,
            f.per_sec()
        ),
    );
    for run in &r.runs {
        let w = run.workers;
        row(
            &mut out,
            &format!("intake closed-loop workers={w} req/s"),
            format!(
                "{:.0} req/s, p50 {} / p99 {}",
                run.intake.per_sec(),
                ms(run.intake.latencies.percentile(0.5)),
                ms(run.intake.latencies.percentile(0.99))
            ),
        );
        for (source, e2e) in [("http", &run.http), ("direct", &run.direct)] {
            row(
                &mut out,
                &format!("end-to-end {source} workers={w}"),
                format!(
                    "{:.0} msg/s ({:.0}% of raw broker), accept->sent p50 {} / p99 {}",
                    e2e.per_sec(),
                    100.0 * e2e.per_sec() / raw,
                    ms(e2e.accept_to_sent_p50),
                    ms(e2e.accept_to_sent_p99)
                ),
            );
        }
        row(
            &mut out,
            &format!("direct publish workers={w}"),
            format!(
                "{:.0} msg/s confirmed",
                r.args.messages as f64 / run.direct_publish.as_secs_f64().max(1e-9)
            ),
        );
        row(
            &mut out,
            &format!("worker peak RSS workers={w}"),
            format!("{} (largest of {w})", mb(run.worker_peak_rss)),
        );
    }
    row(&mut out, "intake peak RSS", mb(r.intake_peak_rss));
    let _ = writeln!(out);

    let best = r
        .runs
        .iter()
        .flat_map(|run| {
            [
                (run.http.per_sec(), "http", run.workers),
                (run.direct.per_sec(), "direct", run.workers),
            ]
        })
        .fold((0.0, "none", 0), |a, b| if b.0 > a.0 { b } else { a });
    let ratio = best.0 / raw;
    row(
        &mut out,
        "target end-to-end >= 50% of raw broker",
        format!(
            "{} best {:.0} msg/s ({} workers={}) = {:.0}% of {:.0} msg/s",
            verdict(ratio >= TARGET_RATIO),
            best.0,
            best.1,
            best.2,
            100.0 * ratio,
            raw
        ),
    );
    let p99 = f.latencies.percentile(0.99);
    let achieved = f.per_sec() >= 0.95 * f64::from(r.args.rate) && f.errors == 0;
    row(
        &mut out,
        &format!("target intake p99 < 10 ms at {} req/s", r.args.rate),
        format!(
            "{} p99 {}{}",
            verdict(p99 < TARGET_INTAKE_P99 && achieved),
            ms(p99),
            if achieved {
                ""
            } else {
                " (rate not achieved or sends refused)"
            }
        ),
    );
    let worst = r
        .runs
        .iter()
        .map(|run| run.worker_peak_rss)
        .max()
        .unwrap_or(0);
    row(
        &mut out,
        &format!("target worker RSS < 100 MB at prefetch {}", r.args.prefetch),
        format!("{} peak {}", verdict(worst < TARGET_WORKER_RSS), mb(worst)),
    );
    out
}
