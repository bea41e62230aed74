//! `communication bench --scenario http`: delivery where users are — through an HTTP provider
//! adapter (`resend`) to a local Resend-shaped endpoint ([`super::stub`]), beside the `system`
//! provider — with the CPU time each process group spends per delivered message (issue 13).
//!
//! One intake and one worker. For each provider case, two measured windows, each end to end
//! (first `POST /v1/send` to the last message `sent`): saturation (a closed loop of
//! `--messages` sends at `--concurrency`) and a steady open loop at `--rate` for
//! `--duration` seconds. Each window is bracketed by [`cpu::snapshot`]s. Before measuring,
//! every case sends a few messages so pools, connections and caches are warm, and the idle
//! CPU of every group is sampled for two seconds (other people's load on a shared machine).

use std::time::Duration;

use serde_json::{Value, json};

use super::cpu::{self, Known, Usage};
use super::load::{self, EndToEnd, Intake, IntakeFigures};
use super::stack::{Endpoints, Stack};
use super::stub::Stub;
use super::{BenchArgs, load_average};
use crate::domain::Channel;

/// A provider the HTTP scenario delivers through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProviderCase {
    /// The `resend` adapter, calling the bench's local Resend-shaped endpoint over HTTP.
    Resend,
    /// The `system` provider: delivers at once, no outbound call.
    System,
}

impl ProviderCase {
    pub fn name(self) -> &'static str {
        match self {
            ProviderCase::Resend => "resend",
            ProviderCase::System => "system",
        }
    }

    fn send_body(self) -> Value {
        match self {
            ProviderCase::Resend => json!({
                "channel": "email",
                "to": "bench@example.com",
                "content": {
                    "subject": "Your verification code",
                    "text": "Your verification code is 482913. It expires in 10 minutes.",
                },
            }),
            ProviderCase::System => load::send_body(),
        }
    }

    async fn create_provider(self, stack: &Stack, tenant: &str) -> anyhow::Result<()> {
        match self {
            ProviderCase::Resend => {
                stack
                    .create_provider(
                        tenant,
                        &json!({
                            "name": "bench-resend",
                            "channel": "email",
                            "kind": "resend",
                            "config": {
                                "api_key": "re_bench_0123456789abcdef",
                                "from": "Bench <bench@example.com>",
                            },
                        }),
                    )
                    .await
            }
            ProviderCase::System => stack.create_system_provider(tenant, Channel::Sms).await,
        }
    }
}

/// How a window loads the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setting {
    /// Closed loop: as fast as the pipeline takes it.
    Saturation,
    /// Open loop at the fixed rate.
    Steady,
}

/// One measured window.
pub struct Phase {
    pub case: ProviderCase,
    pub setting: Setting,
    pub intake: IntakeFigures,
    pub e2e: EndToEnd,
    pub cpu: Usage,
}

impl Phase {
    /// CPU milliseconds per delivered message.
    pub fn per_message(&self, ms: f64) -> f64 {
        ms / (self.e2e.messages.max(1) as f64)
    }
}

pub struct Report {
    pub args: BenchArgs,
    pub namespace: String,
    pub stub_url: String,
    pub stub_requests: u64,
    pub load_before: String,
    pub load_after: String,
    pub sslmode: String,
    /// Postgres's `autovacuum` setting (the bench runs `ANALYZE` before each window anyway).
    pub autovacuum: String,
    pub idle: Usage,
    pub phases: Vec<Phase>,
}

/// Runs the scenario and prints its report.
pub async fn run(args: &BenchArgs, namespace: String) -> anyhow::Result<()> {
    if args.messages == 0 || args.rate == 0 || args.duration == 0 || args.providers.is_empty() {
        anyhow::bail!("--messages, --rate, --duration and --providers must not be zero or empty");
    }
    let endpoints = Endpoints::from_env()?;
    let stub = Stub::start()?;
    let load_before = load_average();
    eprintln!(
        "bench: provider stub at {}; starting the stack in namespace {namespace}",
        stub.base_url
    );
    let mut stack = Stack::start_with_env(
        endpoints,
        &namespace,
        args.prefetch,
        &args.log_level,
        vec![("RESEND_BASE_URL".into(), stub.base_url.clone())],
    )
    .await?;
    let result = measure(args, &mut stack).await;
    let sslmode = stack.sslmode();
    let autovacuum: String = sqlx::query_scalar("SELECT current_setting('autovacuum')")
        .fetch_one(&stack.pool)
        .await
        .unwrap_or_else(|_| "unknown".into());
    stack.teardown(args.keep).await;
    let (idle, phases) = result?;
    let report = Report {
        args: args.clone(),
        namespace,
        stub_url: stub.base_url.clone(),
        stub_requests: stub.requests(),
        load_before,
        load_after: load_average(),
        sslmode,
        autovacuum,
        idle,
        phases,
    };
    drop(stub);
    print!("{}", super::http_report::render(&report));
    Ok(())
}

async fn measure(args: &BenchArgs, stack: &mut Stack) -> anyhow::Result<(Usage, Vec<Phase>)> {
    stack.set_workers(1).await?;
    let known = Known {
        intake: stack.intake_pid().into_iter().collect(),
        workers: stack.worker_pids(),
        database: stack.db_name.clone(),
    };
    let callers = Intake::new(&stack.intake_base, &stack.service_token, args.concurrency)?;
    let stall = Duration::from_secs(30);

    // Warm up: every case's provider built and cached, connections open.
    for &case in &args.providers {
        let tenant = format!("bench-{}-warm", case.name());
        case.create_provider(stack, &tenant).await?;
        let intake = callers.with_body(case.send_body());
        let warm = args.messages.min(200);
        let figures = intake.closed_loop(&tenant, warm, args.concurrency).await?;
        refused(&figures)?;
        load::wait_all_sent(&stack.pool, &tenant, warm, stall).await?;
    }

    eprintln!("bench: idle CPU for 2 s");
    let start = cpu::snapshot(&stack.pool, &known).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = Usage::between(&start, &cpu::snapshot(&stack.pool, &known).await?);

    let mut phases = Vec::new();
    for &case in &args.providers {
        let intake = callers.with_body(case.send_body());
        for setting in [Setting::Saturation, Setting::Steady] {
            let tenant = match setting {
                Setting::Saturation => format!("bench-{}-sat", case.name()),
                Setting::Steady => format!("bench-{}-rate", case.name()),
            };
            case.create_provider(stack, &tenant).await?;
            // Fresh statistics, as autovacuum keeps them in production: on a server with
            // autovacuum off the planner would scan the growing tables as if empty.
            sqlx::query("ANALYZE").execute(&stack.pool).await?;
            let start = cpu::snapshot(&stack.pool, &known).await?;
            let figures = match setting {
                Setting::Saturation => {
                    eprintln!(
                        "bench: {}: {} sends at concurrency {}",
                        case.name(),
                        args.messages,
                        args.concurrency
                    );
                    intake
                        .closed_loop(&tenant, args.messages, args.concurrency)
                        .await?
                }
                Setting::Steady => {
                    eprintln!(
                        "bench: {}: {} sends/s for {} s",
                        case.name(),
                        args.rate,
                        args.duration
                    );
                    intake
                        .fixed_rate(&tenant, args.rate, Duration::from_secs(args.duration))
                        .await?
                }
            };
            refused(&figures)?;
            let e2e = load::wait_all_sent(&stack.pool, &tenant, figures.accepted, stall).await?;
            let end = cpu::snapshot(&stack.pool, &known).await?;
            phases.push(Phase {
                case,
                setting,
                intake: figures,
                e2e,
                cpu: Usage::between(&start, &end),
            });
        }
    }
    stack.stop_workers().await;
    Ok((idle, phases))
}

fn refused(figures: &IntakeFigures) -> anyhow::Result<()> {
    if figures.errors > 0 {
        anyhow::bail!(
            "{} HTTP sends were refused; first: {}",
            figures.errors,
            figures.first_error.as_deref().unwrap_or("")
        );
    }
    Ok(())
}
