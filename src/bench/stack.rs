//! The stack under measurement: a fresh database and namespace, and the intake and workers as
//! child processes of this same binary (`serve`, `worker`), so their memory can be read from
//! `/proc` and workers can be added and removed between phases.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use lapin::options::{QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use serde_json::json;
use sqlx::PgPool;
use tokio::process::{Child, Command};

use crate::config::RetryPolicy;
use crate::domain::Channel;
use crate::queue::Topology;

/// Where the bench's own connections go, read from the usual environment.
#[derive(Debug, Clone)]
pub struct Endpoints {
    /// A database the bench may connect to in order to create its own (`DATABASE_URL`).
    pub admin_database_url: String,
    pub amqp_url: String,
    pub redis_url: String,
}

impl Endpoints {
    pub fn from_env() -> anyhow::Result<Endpoints> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let admin_database_url = var("DATABASE_URL")
            .context("DATABASE_URL is required (the bench creates its own database beside it)")?;
        Ok(Endpoints {
            admin_database_url,
            amqp_url: var("AMQP_URL")
                .unwrap_or_else(|| "amqp://guest:guest@127.0.0.1:5672/%2f".into()),
            redis_url: var("REDIS_URL").unwrap_or_else(|| "redis://127.0.0.1:6379".into()),
        })
    }
}

/// Memory of a process from `/proc/<pid>/status`, in bytes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Memory {
    /// Peak resident set size (`VmHWM`).
    pub peak_rss: u64,
}

pub fn memory_of(pid: u32) -> Option<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb = |field: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(field))?;
        line[field.len()..]
            .split_whitespace()
            .next()?
            .parse::<u64>()
            .ok()
    };
    Some(Memory {
        peak_rss: kb("VmHWM:")? * 1024,
    })
}

pub struct Stack {
    pub endpoints: Endpoints,
    pub namespace: String,
    pub db_name: String,
    pub database_url: String,
    pub pool: PgPool,
    pub topology: Topology,
    pub intake_base: String,
    pub service_token: String,
    encryption_secret: String,
    log_level: String,
    prefetch: u16,
    log_dir: PathBuf,
    intake: Option<Child>,
    workers: Vec<Child>,
    spawned_workers: usize,
    /// More environment for every child (e.g. `RESEND_BASE_URL` of the HTTP case,
    /// `COMMUNICATION_LANES=false` of the fairness case).
    extra_env: Vec<(String, String)>,
}

/// `application_name` of the bench's own database connections, and of the intake's and the
/// workers': CPU accounting tells their Postgres backends apart by it.
pub const BENCH_APP: &str = "communication-bench";
pub const INTAKE_APP: &str = "bench-intake";
pub const WORKER_APP: &str = "bench-worker";

fn database_url_named(admin: &str, name: &str) -> anyhow::Result<String> {
    let mut url = url::Url::parse(admin).context("DATABASE_URL is not a URL")?;
    url.set_path(&format!("/{name}"));
    Ok(url.to_string())
}

/// `url` with its `application_name` set to `app`.
fn with_application_name(url: &str, app: &str) -> anyhow::Result<String> {
    let mut url = url::Url::parse(url).context("DATABASE_URL is not a URL")?;
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| k != "application_name")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    url.query_pairs_mut()
        .clear()
        .extend_pairs(pairs)
        .append_pair("application_name", app);
    Ok(url.to_string())
}

fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

impl Stack {
    /// Creates the database (migrated) and starts the intake; no workers yet. On failure,
    /// whatever was created is removed.
    pub async fn start(
        endpoints: Endpoints,
        namespace: &str,
        prefetch: u16,
        log_level: &str,
    ) -> anyhow::Result<Stack> {
        Stack::start_with_env(endpoints, namespace, prefetch, log_level, Vec::new()).await
    }

    /// [`Stack::start`] with more environment for every child process.
    pub async fn start_with_env(
        endpoints: Endpoints,
        namespace: &str,
        prefetch: u16,
        log_level: &str,
        extra_env: Vec<(String, String)>,
    ) -> anyhow::Result<Stack> {
        let db_name = format!("bench_{}", uuid::Uuid::new_v4().simple());
        let admin = PgPool::connect(&endpoints.admin_database_url)
            .await
            .context("connecting to DATABASE_URL")?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db_name}")))
            .execute(&admin)
            .await
            .context("creating the bench database")?;
        admin.close().await;
        eprintln!("bench: created database {db_name}");
        let database_url = database_url_named(&endpoints.admin_database_url, &db_name)?;
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(6)
            .connect(&with_application_name(&database_url, BENCH_APP)?)
            .await
            .context("connecting to the bench database")?;
        let log_dir = std::env::temp_dir().join(format!("communication-{namespace}"));
        std::fs::create_dir_all(&log_dir)?;
        let port = free_port()?;
        let mut stack = Stack {
            topology: Topology::new(namespace, &RetryPolicy::default()),
            namespace: namespace.to_owned(),
            db_name,
            database_url,
            pool,
            intake_base: format!("http://127.0.0.1:{port}"),
            service_token: format!("bench-{}", uuid::Uuid::new_v4().simple()),
            encryption_secret: crate::crypto::generate_key_base64(),
            log_level: log_level.to_owned(),
            prefetch,
            log_dir,
            intake: None,
            workers: Vec::new(),
            spawned_workers: 0,
            extra_env,
            endpoints,
        };
        match stack.start_intake(port).await {
            Ok(()) => Ok(stack),
            Err(e) => {
                // Leave nothing behind: the database and namespace exist already.
                stack.teardown(false).await;
                Err(e)
            }
        }
    }

    async fn start_intake(&mut self, port: u16) -> anyhow::Result<()> {
        crate::store::migrate(&self.pool).await?;
        let child = self.spawn(
            "serve",
            "intake",
            &[("COMMUNICATION_LISTEN_ADDR", format!("127.0.0.1:{port}"))],
        )?;
        self.intake = Some(child);
        self.wait_ready().await
    }

    fn spawn(
        &self,
        subcommand: &str,
        log_name: &str,
        extra: &[(&str, String)],
    ) -> anyhow::Result<Child> {
        let exe = std::env::current_exe().context("locating this binary")?;
        let log_path = self.log_dir.join(format!("{log_name}.log"));
        let log = std::fs::File::create(&log_path)?;
        let app = if subcommand == "worker" {
            WORKER_APP
        } else {
            INTAKE_APP
        };
        let mut cmd = Command::new(exe);
        cmd.arg(subcommand)
            .env(
                "DATABASE_URL",
                with_application_name(&self.database_url, app)?,
            )
            .env("AMQP_URL", &self.endpoints.amqp_url)
            .env("REDIS_URL", &self.endpoints.redis_url)
            .env("ENCRYPTION_SECRET", &self.encryption_secret)
            .env_remove("ENCRYPTION_SECRET_PREVIOUS")
            .env("COMMUNICATION_SERVICE_TOKEN", &self.service_token)
            .env("COMMUNICATION_NAMESPACE", &self.namespace)
            .env("COMMUNICATION_PREFETCH", self.prefetch.to_string())
            // Four workers and the intake share a server others use too: small pools.
            .env("COMMUNICATION_DB_POOL_SIZE", "4")
            .env("RUST_LOG", &self.log_level)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true);
        for (k, v) in &self.extra_env {
            cmd.env(k, v);
        }
        for (k, v) in extra {
            cmd.env(k, v);
        }
        cmd.spawn()
            .with_context(|| format!("starting `{subcommand}` (log: {})", log_path.display()))
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let http = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = http
                .get(format!("{}/readyz", self.intake_base))
                .send()
                .await
                && r.status().is_success()
            {
                return Ok(());
            }
            if let Some(child) = self.intake.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                bail!(
                    "the intake exited ({status}); see {}",
                    self.log_dir.join("intake.log").display()
                );
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "the intake was not ready within 30 s; see {}",
                    self.log_dir.join("intake.log").display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Creates the tenant's `system` provider (delivers at once) through the API.
    pub async fn create_system_provider(
        &self,
        tenant: &str,
        channel: Channel,
    ) -> anyhow::Result<()> {
        self.create_provider(
            tenant,
            &json!({
                "name": "bench-system",
                "channel": channel.as_str(),
                "kind": "system",
                "config": {"behavior": "deliver", "latency_ms": 0},
            }),
        )
        .await
    }

    /// Creates a provider of the tenant through the API (`body` as `POST /v1/providers`).
    pub async fn create_provider(
        &self,
        tenant: &str,
        body: &serde_json::Value,
    ) -> anyhow::Result<()> {
        let r = reqwest::Client::new()
            .post(format!("{}/v1/providers", self.intake_base))
            .bearer_auth(&self.service_token)
            .header("X-Tenant-Id", tenant)
            .json(body)
            .send()
            .await?;
        if r.status().as_u16() != 201 {
            let status = r.status();
            bail!(
                "creating the {} provider answered {status}: {}",
                body["kind"],
                r.text().await.unwrap_or_default()
            );
        }
        Ok(())
    }

    /// The `sslmode` the database connections use (sqlx's default is `prefer`).
    pub fn sslmode(&self) -> String {
        url::Url::parse(&self.database_url)
            .ok()
            .and_then(|u| {
                u.query_pairs()
                    .find(|(k, _)| k == "sslmode")
                    .map(|(_, v)| v.into_owned())
            })
            .unwrap_or_else(|| "prefer (default)".into())
    }

    /// Process id of the intake, while it runs.
    pub fn intake_pid(&self) -> Option<u32> {
        self.intake.as_ref()?.id()
    }

    /// Process ids of the running workers.
    pub fn worker_pids(&self) -> Vec<u32> {
        self.workers.iter().filter_map(|w| w.id()).collect()
    }

    pub fn intake_memory(&self) -> Option<Memory> {
        memory_of(self.intake.as_ref()?.id()?)
    }

    /// Peak RSS of each running worker.
    pub fn worker_memory(&self) -> Vec<Memory> {
        self.workers
            .iter()
            .filter_map(|w| memory_of(w.id()?))
            .collect()
    }

    /// Stops the running workers, then starts `count` and waits until each consumes.
    pub async fn set_workers(&mut self, count: usize) -> anyhow::Result<()> {
        self.stop_workers().await;
        for _ in 0..count {
            self.spawned_workers += 1;
            let name = format!("worker-{}", self.spawned_workers);
            let child = self.spawn("worker", &name, &[])?;
            self.workers.push(child);
        }
        let connection = crate::queue::connect(&self.endpoints.amqp_url, "communication-bench")
            .await
            .context("connecting to RabbitMQ")?;
        let result = self.wait_consumers(&connection, count).await;
        let _ = connection.close(200, "done".into()).await;
        result
    }

    async fn wait_consumers(
        &mut self,
        connection: &lapin::Connection,
        count: usize,
    ) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let mut ready = true;
            for channel in Channel::ALL {
                // A passive declare fails (and closes the channel) until a worker declared it.
                let ch = connection.create_channel().await?;
                let consumers = ch
                    .queue_declare(
                        self.topology.entry_queue(channel).into(),
                        QueueDeclareOptions {
                            passive: true,
                            ..Default::default()
                        },
                        FieldTable::default(),
                    )
                    .await
                    .map(|q| q.consumer_count() as usize)
                    .unwrap_or(0);
                let _ = ch.close(200, "done".into()).await;
                ready &= consumers >= count;
            }
            if ready {
                return Ok(());
            }
            for w in &mut self.workers {
                if let Ok(Some(status)) = w.try_wait() {
                    bail!(
                        "a worker exited ({status}); see the logs in {}",
                        self.log_dir.display()
                    );
                }
            }
            if tokio::time::Instant::now() > deadline {
                bail!("{count} workers were not consuming within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Asks each worker to drain and stop (SIGTERM), killing it after 20 s.
    pub async fn stop_workers(&mut self) {
        let workers = std::mem::take(&mut self.workers);
        for mut w in workers {
            terminate(&mut w).await;
        }
    }

    /// Stops everything; unless `keep`, drops the database and the namespace's queues and
    /// Redis keys.
    pub async fn teardown(mut self, keep: bool) {
        self.stop_workers().await;
        if let Some(mut intake) = self.intake.take() {
            terminate(&mut intake).await;
        }
        self.pool.close().await;
        if keep {
            eprintln!(
                "kept database {} and namespace {}; logs in {}",
                self.db_name,
                self.namespace,
                self.log_dir.display()
            );
            return;
        }
        if let Err(e) = self.delete_queues().await {
            eprintln!("could not delete the bench queues: {e:#}");
        }
        if let Err(e) = self.delete_redis_keys().await {
            eprintln!("could not delete the bench Redis keys: {e:#}");
        }
        match PgPool::connect(&self.endpoints.admin_database_url).await {
            Ok(admin) => {
                if let Err(e) = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    self.db_name
                )))
                .execute(&admin)
                .await
                {
                    eprintln!("could not drop database {}: {e}", self.db_name);
                }
                admin.close().await;
            }
            Err(e) => eprintln!("could not drop database {}: {e}", self.db_name),
        }
        let _ = std::fs::remove_dir_all(&self.log_dir);
    }

    async fn delete_queues(&self) -> anyhow::Result<()> {
        let connection =
            crate::queue::connect(&self.endpoints.amqp_url, "communication-bench").await?;
        let ch = connection.create_channel().await?;
        let t = &self.topology;
        let mut names = t.queues();
        names.push(super::raw::raw_queue(&self.namespace));
        // The children declare the webhook queues too (default retry schedule).
        let webhooks = crate::notify::topology::WebhookTopology::new(
            &self.namespace,
            &crate::notify::NotifySettings::default().retry_schedule,
        );
        names.extend(webhooks.queues());
        for n in names {
            let _ = ch
                .queue_delete(n.into(), QueueDeleteOptions::default())
                .await;
        }
        let _ = ch
            .exchange_delete(t.send_exchange().into(), Default::default())
            .await;
        let _ = ch
            .exchange_delete(t.dead_exchange().into(), Default::default())
            .await;
        let _ = ch
            .exchange_delete(webhooks.exchange().into(), Default::default())
            .await;
        let _ = connection.close(200, "done".into()).await;
        Ok(())
    }

    async fn delete_redis_keys(&self) -> anyhow::Result<()> {
        use deadpool_redis::redis::{self, AsyncCommands};
        let client = redis::Client::open(self.endpoints.redis_url.as_str())?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        let pattern = format!("{}:*", self.namespace);
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await?;
            if !keys.is_empty() {
                let _: () = conn.del(keys).await?;
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }
}

async fn terminate(child: &mut Child) {
    if let Some(pid) = child.id() {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status()
            .await;
        if tokio::time::timeout(Duration::from_secs(20), child.wait())
            .await
            .is_ok()
        {
            return;
        }
    }
    let _ = child.kill().await;
}
