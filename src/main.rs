//! The `communication` command: `serve` (HTTP intake), `worker`, `all` (both, for local use),
//! `migrate`, `api-key create`, `keys generate|rotate`, `dlq list|replay|purge-queue`,
//! `limits show|set|clear`, `retention set|reset|show|run`, `bench`.

use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use chrono::{DateTime, Utc};
use communication::config::Config;
use communication::domain::TenantId;
use communication::{dlq, intake, limits, store, telemetry, worker};

#[derive(Parser)]
#[command(name = "communication", version, about = "Email and SMS delivery edge")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP intake.
    Serve,
    /// Run a delivery worker (scale by running more of them).
    Worker,
    /// Run intake and a worker in one process (local use).
    All,
    /// Apply database migrations.
    Migrate,
    /// Manage tenant API keys.
    #[command(name = "api-key")]
    ApiKey {
        #[command(subcommand)]
        action: ApiKeyAction,
    },
    /// Manage encryption keys.
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Inspect and replay dead letters.
    Dlq {
        #[command(subcommand)]
        action: DlqAction,
    },
    /// A tenant's limits set by the operator: accept rate and daily quotas per channel.
    Limits {
        #[command(subcommand)]
        action: LimitsAction,
    },
    /// How long messages are kept: per-tenant overrides, and a removal pass now.
    Retention {
        #[command(subcommand)]
        action: RetentionAction,
    },
    /// Measure the pipeline against this machine's raw limits (starts its own stack; see
    /// BENCHMARKS.md).
    Bench(communication::bench::BenchArgs),
}

#[derive(Subcommand)]
enum DlqAction {
    /// List dead letters, newest first (never their content).
    List {
        #[arg(long, value_parser = tenant_arg)]
        tenant: Option<TenantId>,
        /// Only those recorded at or after this RFC 3339 time.
        #[arg(long, value_parser = time_arg)]
        since: Option<DateTime<Utc>>,
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(i64).range(1..=10_000))]
        limit: i64,
        /// Only those not replayed yet.
        #[arg(long)]
        pending: bool,
        /// One JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Re-drive dead letters: their messages are queued again and delivered through the
    /// normal policy. Exits non-zero if any was not replayed.
    Replay {
        /// Dead letter ids (from `dlq list`).
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        ids: Vec<i64>,
        /// Every replayable dead letter not replayed yet.
        #[arg(long)]
        all: bool,
        /// Only this tenant's dead letters.
        #[arg(long, value_parser = tenant_arg)]
        tenant: Option<TenantId>,
    },
    /// Empty the {ns}.dead queue (the broker-side copies; the table is kept).
    #[command(name = "purge-queue")]
    PurgeQueue,
}

#[derive(Subcommand)]
enum LimitsAction {
    /// Print the tenant's limits.
    Show {
        #[arg(long, value_parser = tenant_arg)]
        tenant: TenantId,
    },
    /// Change some of the tenant's limits, keeping the others; `none` makes one unlimited.
    /// Running intakes apply it within COMMUNICATION_LIMITS_CACHE_MS.
    #[command(group(clap::ArgGroup::new("limit").required(true).multiple(true)))]
    Set {
        #[arg(long, value_parser = tenant_arg)]
        tenant: TenantId,
        /// Sends accepted per second at most.
        #[arg(long, group = "limit", value_name = "N|none")]
        accept_rate: Option<limits::LimitArg>,
        /// Emails accepted per UTC day at most.
        #[arg(long, group = "limit", value_name = "N|none")]
        daily_email: Option<limits::LimitArg>,
        /// SMS accepted per UTC day at most.
        #[arg(long, group = "limit", value_name = "N|none")]
        daily_sms: Option<limits::LimitArg>,
    },
    /// Remove every limit of the tenant.
    Clear {
        #[arg(long, value_parser = tenant_arg)]
        tenant: TenantId,
    },
}

#[derive(Subcommand)]
enum RetentionAction {
    /// Set a tenant's retention (overrides COMMUNICATION_RETENTION_DAYS for it).
    Set {
        #[arg(long, value_parser = tenant_arg)]
        tenant: TenantId,
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=3650))]
        days: u32,
    },
    /// Remove a tenant's override: the default applies again.
    Reset {
        #[arg(long, value_parser = tenant_arg)]
        tenant: TenantId,
    },
    /// Show a tenant's retention.
    Show {
        #[arg(long, value_parser = tenant_arg)]
        tenant: TenantId,
    },
    /// Run one removal pass now and print what it removed (skipped if a worker's pass is
    /// running).
    Run,
}

#[derive(Subcommand)]
enum ApiKeyAction {
    /// Create an API key for a tenant; the key is printed once.
    Create {
        #[arg(long, value_parser = tenant_arg)]
        tenant: TenantId,
        #[arg(long)]
        name: Option<String>,
    },
}

#[derive(Subcommand)]
enum KeysAction {
    /// Print a new random key for ENCRYPTION_SECRET.
    Generate,
    /// Re-encrypt every provider secret under ENCRYPTION_SECRET (old keys must still be in
    /// ENCRYPTION_SECRET_PREVIOUS).
    Rotate,
}

fn tenant_arg(s: &str) -> Result<TenantId, String> {
    TenantId::parse(s)
}

fn time_arg(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| "must be an RFC 3339 time".into())
}

fn shutdown_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(_) => {
                        let _ = ctrl_c.await;
                        t.cancel();
                        return;
                    }
                };
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("shutdown requested; draining");
        t.cancel();
    });
    token
}

fn load_config(needs_token: bool) -> Result<Config, ExitCode> {
    Config::from_env(needs_token).map_err(|e| {
        eprintln!("{e}");
        ExitCode::from(2)
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init_tracing();
    telemetry::init_crypto_provider();
    if let Command::Keys {
        action: KeysAction::Generate,
    } = cli.command
    {
        println!("{}", communication::crypto::generate_key_base64());
        return ExitCode::SUCCESS;
    }
    if let Command::Bench(args) = cli.command {
        return match communication::bench::run(args).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let needs_token = matches!(cli.command, Command::Serve | Command::All);
    let config = match load_config(needs_token) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match run(cli.command, config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, config: Config) -> anyhow::Result<()> {
    let _ = telemetry::metrics_handle();
    match command {
        Command::Migrate => {
            let pool = store::connect(&config.database.url, 2).await?;
            store::migrate(&pool).await?;
            println!("migrations applied");
        }
        Command::Serve => {
            let pool = store::connect_lazy(&config.database.url, config.database.pool_size)?;
            let state = Arc::new(intake::AppState::new(&config, pool)?);
            let listener = tokio::net::TcpListener::bind(config.intake.listen_addr).await?;
            intake::serve(listener, state, shutdown_signal()).await?;
        }
        Command::Worker => {
            let pool = store::connect_lazy(&config.database.url, config.database.pool_size)?;
            worker::run(&config, pool, shutdown_signal()).await?;
        }
        Command::All => {
            let pool = store::connect(&config.database.url, config.database.pool_size).await?;
            store::migrate(&pool).await?;
            let shutdown = shutdown_signal();
            let state = Arc::new(intake::AppState::new(&config, pool.clone())?);
            let listener = tokio::net::TcpListener::bind(config.intake.listen_addr).await?;
            let intake_task = tokio::spawn(intake::serve(listener, state, shutdown.clone()));
            let worker_result = worker::run(&config, pool, shutdown.clone()).await;
            shutdown.cancel();
            intake_task.await??;
            worker_result?;
        }
        Command::ApiKey {
            action: ApiKeyAction::Create { tenant, name },
        } => {
            let pool = store::connect(&config.database.url, 2).await?;
            let issued = intake::api_keys::issue(&pool, &tenant, name.as_deref()).await?;
            println!("{}", issued.key);
            eprintln!("API key for tenant {tenant} created; it is shown only once.");
        }
        Command::Keys {
            action: KeysAction::Rotate,
        } => {
            let pool = store::connect(&config.database.url, 2).await?;
            let report = communication::rotation::rotate(&pool, &config.keyring).await?;
            println!(
                "re-encrypted {} provider rows and {} webhook endpoints under key {}",
                report.rotated,
                report.webhook_endpoints,
                config.keyring.active_key_id()
            );
        }
        Command::Keys {
            action: KeysAction::Generate,
        }
        | Command::Bench(_) => {}
        Command::Dlq { action } => dlq_command(action, &config).await?,
        Command::Retention { action } => retention_command(action, &config).await?,
        Command::Limits { action } => {
            let pool = store::connect(&config.database.url, 2).await?;
            let view = match action {
                LimitsAction::Show { tenant } => limits::show(&pool, &tenant).await?,
                LimitsAction::Set {
                    tenant,
                    accept_rate,
                    daily_email,
                    daily_sms,
                } => {
                    let change = limits::LimitsChange {
                        accept_rate_per_second: accept_rate.map(|a| a.0),
                        daily_quota_email: daily_email.map(|a| a.0),
                        daily_quota_sms: daily_sms.map(|a| a.0),
                    };
                    limits::update(&pool, &tenant, change).await?
                }
                LimitsAction::Clear { tenant } => limits::clear(&pool, &tenant).await?,
            };
            print!("{}", limits::render(&view));
        }
    }
    Ok(())
}

/// `communication dlq …`: thin wrappers over `communication::dlq` and the store.
async fn dlq_command(action: DlqAction, config: &Config) -> anyhow::Result<()> {
    use communication::store::dead_letters::{self, DeadLetterFilter};
    let topology = communication::queue::Topology::new(&config.namespace, &config.retry);
    match action {
        DlqAction::List {
            tenant,
            since,
            limit,
            pending,
            json,
        } => {
            let filter = DeadLetterFilter {
                tenant: tenant.map(|t| t.as_str().to_owned()),
                since,
                replayed: pending.then_some(false),
                ..Default::default()
            };
            let pool = store::connect(&config.database.url, 2).await?;
            let rows = dead_letters::list_dead_letters(&pool, &filter, limit).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                print!("{}", dlq::render_table(&rows));
            }
        }
        DlqAction::Replay { ids, all, tenant } => {
            let tenant = tenant.as_ref().map(TenantId::as_str);
            let pool = store::connect(&config.database.url, 2).await?;
            let ids = if all {
                dead_letters::pending_replay_ids(&pool, tenant, i64::MAX).await?
            } else {
                ids
            };
            let publisher = Arc::new(communication::queue::Publisher::new(
                config.amqp.url.clone(),
                "communication-dlq",
                topology,
                1,
            ));
            let replayed =
                dlq::replay_and_report(&pool, &config.keyring, &publisher, &ids, tenant, all).await;
            publisher.close().await;
            replayed?;
        }
        DlqAction::PurgeQueue => {
            let purged = dlq::purge_dead_queue(
                secrecy::ExposeSecret::expose_secret(&config.amqp.url),
                &topology.dead_queue(),
            )
            .await?;
            println!("removed {purged} messages from {}", topology.dead_queue());
        }
    }
    Ok(())
}

/// `communication retention …`.
async fn retention_command(action: RetentionAction, config: &Config) -> anyhow::Result<()> {
    use communication::retention::{self, store as retention_store};
    let pool = store::connect(&config.database.url, 2).await?;
    let show = |tenant: &TenantId, row: Option<retention_store::TenantRetention>| match row {
        Some(r) => println!("tenant {tenant}: {} days (override)", r.days),
        None => println!(
            "tenant {tenant}: {} days (default, COMMUNICATION_RETENTION_DAYS)",
            config.retention.days
        ),
    };
    match action {
        RetentionAction::Set { tenant, days } => {
            retention_store::set_override(&pool, tenant.as_str(), days as i32).await?;
            show(
                &tenant,
                retention_store::get_override(&pool, tenant.as_str()).await?,
            );
        }
        RetentionAction::Reset { tenant } => {
            retention_store::clear_override(&pool, tenant.as_str()).await?;
            show(&tenant, None);
        }
        RetentionAction::Show { tenant } => show(
            &tenant,
            retention_store::get_override(&pool, tenant.as_str()).await?,
        ),
        RetentionAction::Run => {
            let options = retention::PassOptions::from(&config.retention);
            match retention::run_pass(&pool, &options, &shutdown_signal()).await? {
                Some(report) => print!("{}", report.render()),
                None => anyhow::bail!("another retention pass is running; nothing removed"),
            }
        }
    }
    Ok(())
}
