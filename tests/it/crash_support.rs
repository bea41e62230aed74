//! Helpers of the crash and outage tests: the real `communication` binary as child processes
//! (killed in `Drop`), a Resend mock that records what it was asked, the test namespace's own
//! RabbitMQ connections (found by name and closed without touching anyone else's), and a
//! private Postgres cluster that can be crashed and restarted without disturbing the shared one.
#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

pub const SERVICE_TOKEN: &str = "crash-test-service-token-0123456789";
pub const TENANT: &str = "acme";
pub const RESEND_KEY: &str = "re_crash_test_key_0123456789";

/// Polls `check` every 100 ms until it returns `Some`, or panics with `what` after `limit`.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A free TCP port on loopback (bound, then released for the child to take).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr").port()
}

/// One child process of the real binary. Dropping it kills it (SIGKILL) and reaps it.
pub struct Proc {
    pub label: String,
    child: Child,
    pub log: PathBuf,
    /// `http://127.0.0.1:PORT` for a `serve` process.
    pub base: Option<String>,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no shutdown hook runs, in-flight deliveries are abandoned mid-way.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// True while the process runs.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The end of the process's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let from = lines.len().saturating_sub(40);
        format!(
            "--- {} ({}) ---\n{}",
            self.label,
            self.log.display(),
            lines[from..].join("\n")
        )
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// What a test's processes share: database, namespace, key, the Resend mock, a log directory.
pub struct Stack {
    pub namespace: String,
    pub database_url: String,
    pub secret: String,
    pub mock: MockServer,
    pub logs: tempfile::TempDir,
    /// Extra variables for every process (tuning).
    pub vars: Vec<(String, String)>,
}

impl Stack {
    /// A stack whose Resend mock answers every send after `latency`.
    pub async fn new(database_url: String, latency: Duration, vars: &[(&str, &str)]) -> Stack {
        let mock = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/emails"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(json!({"id": "re_mock_accepted"}))
                    .set_delay(latency),
            )
            .mount(&mock)
            .await;
        Stack {
            namespace: format!("test-{}", Uuid::new_v4().simple()),
            database_url,
            secret: communication::crypto::generate_key_base64(),
            mock,
            logs: tempfile::Builder::new()
                .prefix("crash-logs-")
                .tempdir()
                .expect("log dir"),
            vars: vars
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn command(&self, subcommand: &str, label: &str) -> (Command, PathBuf) {
        let log = self.logs.path().join(format!("{label}.log"));
        let file = File::create(&log).expect("log file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_communication"));
        cmd.arg(subcommand)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DATABASE_URL", &self.database_url)
            .env("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f")
            .env("REDIS_URL", "redis://127.0.0.1:6379")
            .env("ENCRYPTION_SECRET", &self.secret)
            .env("COMMUNICATION_NAMESPACE", &self.namespace)
            .env("COMMUNICATION_SERVICE_TOKEN", SERVICE_TOKEN)
            .env("COMMUNICATION_ALLOW_PRIVATE_HOSTS", "true")
            .env("RESEND_BASE_URL", self.mock.uri())
            .env("COMMUNICATION_RETRY_BASE_MS", "100")
            .env("COMMUNICATION_RETRY_MAX_MS", "400")
            .env("COMMUNICATION_RETRY_ATTEMPTS", "3")
            .env("COMMUNICATION_DB_POOL_SIZE", "3")
            .env("COMMUNICATION_PROVIDER_TIMEOUT_MS", "5000")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log file"))
            .stderr(file);
        for (k, v) in &self.vars {
            cmd.env(k, v);
        }
        (cmd, log)
    }

    /// Starts `communication worker`.
    pub fn worker(&self, label: &str) -> Proc {
        let (mut cmd, log) = self.command("worker", label);
        let child = cmd.spawn().expect("start the worker binary");
        Proc {
            label: label.to_owned(),
            child,
            log,
            base: None,
        }
    }

    /// Starts `communication serve` on a free port and waits until it answers /healthz.
    pub async fn serve(&self, label: &str) -> Proc {
        let port = free_port();
        let (mut cmd, log) = self.command("serve", label);
        cmd.env("COMMUNICATION_LISTEN_ADDR", format!("127.0.0.1:{port}"));
        let child = cmd.spawn().expect("start the serve binary");
        let base = format!("http://127.0.0.1:{port}");
        let mut proc = Proc {
            label: label.to_owned(),
            child,
            log,
            base: Some(base.clone()),
        };
        let http = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = http.get(format!("{base}/healthz")).send().await
                && r.status() == 200
            {
                break;
            }
            assert!(
                proc.alive(),
                "serve exited at start-up\n{}",
                proc.log_tail()
            );
            assert!(
                tokio::time::Instant::now() < deadline,
                "serve never became healthy\n{}",
                proc.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        proc
    }

    /// Every request the Resend mock received: the `Idempotency-Key` of each (None if absent).
    pub async fn provider_keys(&self) -> Vec<Option<String>> {
        self.mock
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .filter(|r: &&Request| r.url.path() == "/emails")
            .map(|r| {
                r.headers
                    .get("idempotency-key")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            })
            .collect()
    }

    pub async fn provider_calls(&self) -> usize {
        self.provider_keys().await.len()
    }

    /// Removes the namespace's queues and exchanges.
    pub async fn remove_topology(&self) {
        let retry = communication::config::RetryPolicy {
            base: Duration::from_millis(100),
            max: Duration::from_millis(400),
            attempts_per_provider: 3,
        };
        let topology = communication::queue::Topology::new(&self.namespace, &retry);
        let Ok(conn) = lapin::Connection::connect(
            "amqp://guest:guest@127.0.0.1:5672/%2f",
            lapin::ConnectionProperties::default(),
        )
        .await
        else {
            return;
        };
        if let Ok(ch) = conn.create_channel().await {
            for n in topology.queues() {
                let _ = ch.queue_delete(n.into(), Default::default()).await;
            }
            let _ = ch
                .exchange_delete(topology.send_exchange().into(), Default::default())
                .await;
            let _ = ch
                .exchange_delete(topology.dead_exchange().into(), Default::default())
                .await;
        }
        let _ = conn.close(200, "done".into()).await;
    }
}

/// The intake's client for one `serve` process.
pub struct Client {
    pub base: String,
    pub http: reqwest::Client,
}

impl Client {
    pub fn new(base: &str) -> Client {
        Client {
            base: base.to_owned(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(40))
                .build()
                .expect("http client"),
        }
    }

    /// Registers the tenant's Resend provider (pointed at the mock by RESEND_BASE_URL).
    pub async fn create_resend_provider(&self) {
        let r = self
            .http
            .post(format!("{}/v1/providers", self.base))
            .bearer_auth(SERVICE_TOKEN)
            .header("X-Tenant-Id", TENANT)
            .json(
                &json!({"name": "resend", "channel": "email", "kind": "resend", "priority": 10,
                          "config": {"api_key": RESEND_KEY, "from": "no-reply@acme.test"}}),
            )
            .send()
            .await
            .expect("create provider request");
        assert_eq!(r.status(), 201, "create provider: {:?}", r.text().await);
    }

    /// Sends email number `n`: the HTTP status and, on 202, the accepted id.
    pub async fn send(&self, n: usize) -> (u16, Option<Uuid>) {
        let r = self
            .http
            .post(format!("{}/v1/send", self.base))
            .bearer_auth(SERVICE_TOKEN)
            .header("X-Tenant-Id", TENANT)
            .json(
                &json!({"channel": "email", "to": format!("user{n}@example.com"),
                          "content": {"subject": "Receipt", "text": format!("Thanks, order {n}")}}),
            )
            .send()
            .await;
        let r = match r {
            Ok(r) => r,
            // The request itself failed (no answer): neither accepted nor refused.
            Err(_) => return (0, None),
        };
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        let id = if status == 202 {
            body["id"].as_str().and_then(|s| Uuid::parse_str(s).ok())
        } else {
            None
        };
        (status, id)
    }
}

/// One message_logs row, as the assertions need it.
#[derive(Debug, Clone)]
pub struct Row {
    pub status: String,
    pub attempts: i32,
    pub sent_events: i64,
    pub accepted_events: i64,
}

pub async fn rows(pool: &PgPool) -> HashMap<Uuid, Row> {
    let found: Vec<(Uuid, String, i32, i64, i64)> = sqlx::query_as(
        "SELECT m.id, m.status, m.attempts, \
                (SELECT count(*) FROM message_events e WHERE e.message_id = m.id AND e.kind = 'sent'), \
                (SELECT count(*) FROM message_events e WHERE e.message_id = m.id AND e.kind = 'accepted') \
         FROM message_logs m",
    )
    .fetch_all(pool)
    .await
    .expect("read message_logs");
    found
        .into_iter()
        .map(|(id, status, attempts, sent_events, accepted_events)| {
            (
                id,
                Row {
                    status,
                    attempts,
                    sent_events,
                    accepted_events,
                },
            )
        })
        .collect()
}

/// Number of rows with status `sent`, or None while the database does not answer.
pub async fn sent_count(pool: &PgPool) -> Option<i64> {
    sqlx::query_scalar("SELECT count(*) FROM message_logs WHERE status = 'sent'")
        .fetch_one(pool)
        .await
        .ok()
}

/// Idempotency keys the provider saw: (raw calls, distinct keys). Panics on a call without
/// a key or with a key that is not a message id we know of.
pub fn check_provider_keys(
    keys: &[Option<String>],
    known: &HashSet<Uuid>,
) -> (usize, HashSet<Uuid>) {
    let mut distinct = HashSet::new();
    for k in keys {
        let k = k
            .as_deref()
            .expect("every provider call carries an Idempotency-Key");
        let id = Uuid::parse_str(k).expect("the Idempotency-Key is a message id");
        assert!(
            known.contains(&id),
            "the provider saw message {id}, which is not a recorded message"
        );
        distinct.insert(id);
    }
    (keys.len(), distinct)
}

/// Calls per idempotency key.
pub fn calls_per_key(keys: &[Option<String>]) -> HashMap<Uuid, usize> {
    let mut counts = HashMap::new();
    for id in keys
        .iter()
        .flatten()
        .filter_map(|k| Uuid::parse_str(k).ok())
    {
        *counts.entry(id).or_insert(0) += 1;
    }
    counts
}

/// `rabbitmqctl` with its output as text (panics if it cannot run).
pub fn rabbitmqctl(args: &[&str]) -> String {
    let out = Command::new("rabbitmqctl")
        .args(args)
        .output()
        .expect("rabbitmqctl runs");
    assert!(
        out.status.success(),
        "rabbitmqctl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// This namespace's AMQP connections: (connection pid, connection name). Connections are
/// named `{namespace}/{role}/{os pid}` by the service.
pub fn namespace_connections(namespace: &str) -> Vec<(String, String)> {
    let out = rabbitmqctl(&[
        "list_connections",
        "pid",
        "client_properties",
        "--formatter",
        "json",
        "-q",
    ]);
    let list: Value = serde_json::from_str(out.trim()).unwrap_or(Value::Array(vec![]));
    let prefix = format!("{namespace}/");
    let mut found = Vec::new();
    for conn in list.as_array().cloned().unwrap_or_default() {
        let pid = conn["pid"].as_str().unwrap_or("").to_owned();
        let name = conn["client_properties"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p[0] == "connection_name")
            .and_then(|p| p[2].as_str())
            .unwrap_or("")
            .to_owned();
        if name.starts_with(&prefix) && !pid.is_empty() {
            found.push((pid, name));
        }
    }
    found
}

/// `close_all_connections`, scoped to one namespace: closes each of its connections and
/// returns their names.
pub fn close_namespace_connections(namespace: &str) -> Vec<String> {
    let conns = namespace_connections(namespace);
    let handles: Vec<_> = conns
        .iter()
        .map(|(pid, _)| {
            Command::new("rabbitmqctl")
                .args([
                    "close_connection",
                    pid,
                    "crash test: broker closed the connection",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("rabbitmqctl runs")
        })
        .collect();
    for mut h in handles {
        let _ = h.wait();
    }
    conns.into_iter().map(|(_, name)| name).collect()
}

/// Consumers on a queue (0 if it does not exist).
pub fn consumers_of(queue: &str) -> u64 {
    let out = rabbitmqctl(&[
        "list_queues",
        "name",
        "consumers",
        "--formatter",
        "json",
        "-q",
    ]);
    let list: Value = serde_json::from_str(out.trim()).unwrap_or(Value::Array(vec![]));
    list.as_array()
        .into_iter()
        .flatten()
        .find(|q| q["name"] == queue)
        .and_then(|q| q["consumers"].as_u64())
        .unwrap_or(0)
}

/// A private Postgres cluster (initdb into a temp dir, run as the `postgres` user on a free
/// port), so a test can crash and restart it without touching the shared server. Dropping
/// it stops the server and removes the directory.
pub struct PrivatePostgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
}

fn postgres_bin() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed under /usr/lib/postgresql")
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("initdb").exists())
        .collect();
    found.sort();
    found
        .pop()
        .expect("an initdb under /usr/lib/postgresql/*/bin")
}

fn as_postgres(program: &Path, args: &[&str]) -> std::process::Output {
    Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(program)
        .args(args)
        .output()
        .expect("runuser runs")
}

impl PrivatePostgres {
    pub fn start() -> PrivatePostgres {
        let bin = postgres_bin();
        let dir = tempfile::Builder::new()
            .prefix("crash-pg-")
            .tempdir()
            .expect("temp dir");
        let chown = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(dir.path())
            .status()
            .expect("chown runs");
        assert!(chown.success(), "chown the cluster dir to postgres");
        let data = dir.path().join("data");
        let data_s = data.to_string_lossy().into_owned();
        let out = as_postgres(
            &bin.join("initdb"),
            &["-D", &data_s, "-A", "trust", "-U", "postgres", "--no-sync"],
        );
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pg = PrivatePostgres {
            dir,
            bin,
            port: free_port(),
        };
        pg.pg_start();
        pg
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the server and waits until it accepts connections.
    pub fn pg_start(&self) {
        let data = self.dir.path().join("data");
        let log = self.dir.path().join("postgres.log");
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=40",
            self.port,
            self.dir.path().display()
        );
        let out = as_postgres(
            &self.bin.join("pg_ctl"),
            &[
                "-D",
                &data.to_string_lossy(),
                "-l",
                &log.to_string_lossy(),
                "-o",
                &opts,
                "-w",
                "-t",
                "60",
                "start",
            ],
        );
        assert!(
            out.status.success(),
            "pg_ctl start failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// Stops the server the hard way (`-m immediate`: no checkpoint, clients cut off), as a
    /// crash would.
    pub fn crash(&self) {
        let data = self.dir.path().join("data");
        let out = as_postgres(
            &self.bin.join("pg_ctl"),
            &[
                "-D",
                &data.to_string_lossy(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
        assert!(
            out.status.success(),
            "pg_ctl stop failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let _ = as_postgres(
            &self.bin.join("pg_ctl"),
            &[
                "-D",
                &data.to_string_lossy(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
        // The TempDir removes the directory after this.
    }
}

/// A TCP proxy in front of the shared RabbitMQ, so one test can make "the broker" go away for
/// its own processes only: `cut()` drops every proxied connection and refuses new ones (they
/// are accepted and closed at once), `restore()` lets them through again.
pub struct BrokerProxy {
    pub port: u16,
    down: std::sync::Arc<AtomicBool>,
    /// Bumped by `cut()`; each proxied connection ends when it changes.
    generation: tokio::sync::watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl BrokerProxy {
    pub async fn start() -> BrokerProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let port = listener.local_addr().expect("proxy addr").port();
        let down = std::sync::Arc::new(AtomicBool::new(false));
        let (generation, _) = tokio::sync::watch::channel(0u64);
        let (d, g) = (down.clone(), generation.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    continue;
                };
                if d.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let mut cut = g.subscribe();
                tokio::spawn(async move {
                    let Ok(mut broker) = tokio::net::TcpStream::connect("127.0.0.1:5672").await
                    else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut broker) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        BrokerProxy {
            port,
            down,
            generation,
            task,
        }
    }

    pub fn amqp_url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// The broker "goes away": live connections drop, new ones fail.
    pub fn cut(&self) {
        self.down.store(true, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    pub fn restore(&self) {
        self.down.store(false, Ordering::SeqCst);
    }
}

impl Drop for BrokerProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Removes the namespace's webhook queues and exchange (default retry schedule).
pub async fn remove_webhook_topology(namespace: &str) {
    let settings = communication::notify::NotifySettings::default();
    let topology =
        communication::notify::topology::WebhookTopology::new(namespace, &settings.retry_schedule);
    let Ok(conn) = lapin::Connection::connect(
        "amqp://guest:guest@127.0.0.1:5672/%2f",
        lapin::ConnectionProperties::default(),
    )
    .await
    else {
        return;
    };
    if let Ok(ch) = conn.create_channel().await {
        for n in topology.queues() {
            let _ = ch.queue_delete(n.into(), Default::default()).await;
        }
        let _ = ch
            .exchange_delete(topology.exchange().into(), Default::default())
            .await;
    }
    let _ = conn.close(200, "done".into()).await;
}
