//! Test harness: each test gets its own Postgres database, its own RabbitMQ/Redis namespace,
//! an intake on a free port and an in-process worker, all against the real local services.
//! What a test made is removed when its `TestApp` is cleaned up, or dropped: a failing
//! (panicking) test leaves no database, queue or exchange behind.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use communication::config::Config;
use communication::notify::topology::WebhookTopology;
use communication::queue::Topology;
use lapin::options::{BasicGetOptions, BasicPublishOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub const SERVICE_TOKEN: &str = "test-service-token-0123456789";
pub const PG_ADMIN: &str = "postgres://postgres@127.0.0.1:5432/postgres";
pub const AMQP: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

pub fn test_key() -> String {
    communication::crypto::generate_key_base64()
}

pub struct TestApp {
    pub base: String,
    pub http: reqwest::Client,
    pub pool: PgPool,
    pub namespace: String,
    pub db_name: String,
    pub config: Arc<Config>,
    /// The base64 ENCRYPTION_SECRET the app runs with.
    pub secret: String,
    pub shutdown: CancellationToken,
    pub tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Removes the database, queues and exchanges if the test ends without `cleanup`.
    leftovers: LeftoverGuard,
}

/// What a test made outside the process, removed on drop unless `cleanup` already did. Drop
/// cannot await, so it removes them on a thread of its own with its own runtime (the test's
/// runtime may be unwinding from a panic) and waits for it.
struct LeftoverGuard {
    db_name: String,
    topology: Topology,
    webhooks: WebhookTopology,
    shutdown: CancellationToken,
    removed: bool,
}

impl Drop for LeftoverGuard {
    fn drop(&mut self) {
        if self.removed {
            return;
        }
        // Stop the app first: its tasks must not declare queues again.
        self.shutdown.cancel();
        let db_name = std::mem::take(&mut self.db_name);
        let topology = self.topology.clone();
        let webhooks = self.webhooks.clone();
        let removal = std::thread::spawn(move || {
            if let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                runtime.block_on(remove_leftovers(&db_name, &topology, &webhooks));
            }
        });
        let _ = removal.join();
    }
}

/// Deletes a test's queues and exchanges, then its database (closing any connection to it).
/// Never panics: it also runs while a failed test unwinds.
async fn remove_leftovers(db_name: &str, topology: &Topology, webhooks: &WebhookTopology) {
    if let Ok(Ok(conn)) = tokio::time::timeout(
        Duration::from_secs(10),
        Connection::connect(AMQP, ConnectionProperties::default()),
    )
    .await
        && let Ok(ch) = conn.create_channel().await
    {
        // Every queue of the namespace: entry, lane, delay and dead-letter queues.
        let mut names = topology.queues();
        names.extend(webhooks.queues());
        let _ = ch
            .exchange_delete(webhooks.exchange().into(), Default::default())
            .await;
        for n in names {
            let _ = ch
                .queue_delete(n.into(), QueueDeleteOptions::default())
                .await;
        }
        let _ = ch
            .exchange_delete(topology.send_exchange().into(), Default::default())
            .await;
        let _ = ch
            .exchange_delete(topology.dead_exchange().into(), Default::default())
            .await;
        let _ = conn.close(200, "done".into()).await;
    }
    drop_database(db_name).await;
}

pub struct Options {
    pub vars: Vec<(&'static str, String)>,
    pub worker: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            vars: vec![],
            worker: true,
        }
    }
}

/// Drops a database made by [`create_database`].
pub async fn drop_database(db_name: &str) {
    if let Ok(admin) = PgPool::connect(PG_ADMIN).await {
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {db_name} WITH (FORCE)"
        )))
        .execute(&admin)
        .await;
        admin.close().await;
    }
}

pub async fn create_database() -> (String, PgPool) {
    let db_name = format!("test_{}", Uuid::new_v4().simple());
    let admin = PgPool::connect(PG_ADMIN).await.expect("postgres reachable");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db_name}")))
        .execute(&admin)
        .await
        .expect("create test database");
    admin.close().await;
    let url = format!("postgres://postgres@127.0.0.1:5432/{db_name}");
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(3)
        .connect(&url)
        .await
        .expect("connect test database");
    communication::store::migrate(&pool).await.expect("migrate");
    (db_name, pool)
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        TestApp::spawn_with(Options::default()).await
    }

    pub async fn spawn_with(options: Options) -> TestApp {
        communication::telemetry::init_crypto_provider();
        let (db_name, pool) = create_database().await;
        let namespace = format!("test-{}", Uuid::new_v4().simple());
        let secret = test_key();
        let mut vars: HashMap<String, String> = HashMap::from([
            (
                "DATABASE_URL".into(),
                format!("postgres://postgres@127.0.0.1:5432/{db_name}"),
            ),
            ("ENCRYPTION_SECRET".into(), secret.clone()),
            ("COMMUNICATION_SERVICE_TOKEN".into(), SERVICE_TOKEN.into()),
            ("COMMUNICATION_NAMESPACE".into(), namespace.clone()),
            ("COMMUNICATION_RETRY_BASE_MS".into(), "100".into()),
            ("COMMUNICATION_RETRY_MAX_MS".into(), "400".into()),
            ("COMMUNICATION_RETRY_ATTEMPTS".into(), "3".into()),
            ("COMMUNICATION_DB_POOL_SIZE".into(), "4".into()),
            ("COMMUNICATION_PROVIDER_CACHE_MS".into(), "0".into()),
            ("COMMUNICATION_ALLOW_PRIVATE_HOSTS".into(), "true".into()),
        ]);
        for (k, v) in options.vars {
            vars.insert(k.to_string(), v);
        }
        let config = Arc::new(
            Config::from_lookup(&|k| vars.get(k).cloned(), true).expect("test config is valid"),
        );
        let shutdown = CancellationToken::new();
        // From here on, a panic (here or in the test) still removes the database and queues.
        let leftovers = LeftoverGuard {
            db_name: db_name.clone(),
            topology: Topology::new(&namespace, &config.retry),
            webhooks: WebhookTopology::new(&namespace, &config.notify.retry_schedule),
            shutdown: shutdown.clone(),
            removed: false,
        };
        let app_pool = communication::store::connect(&config.database.url, 4)
            .await
            .expect("app pool");
        let state = Arc::new(
            communication::intake::AppState::new(&config, app_pool.clone()).expect("state"),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let mut tasks = Vec::new();
        let s = shutdown.clone();
        tasks.push(tokio::spawn(async move {
            let _ = communication::intake::serve(listener, state, s).await;
        }));
        if options.worker {
            let s = shutdown.clone();
            let c = config.clone();
            let p = app_pool.clone();
            tasks.push(tokio::spawn(async move {
                let _ = communication::worker::run(&c, p, s).await;
            }));
        }
        TestApp {
            base,
            http: reqwest::Client::new(),
            pool,
            namespace,
            db_name,
            config,
            secret,
            shutdown,
            tasks,
            leftovers,
        }
    }

    pub fn config_secret(&self) -> String {
        self.secret.clone()
    }

    pub fn topology(&self) -> Topology {
        Topology::new(&self.namespace, &self.config.retry)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// The intake's `/metrics` page (Prometheus text).
    pub async fn metrics_text(&self) -> String {
        self.http
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text")
    }

    /// A request as the service acting for `tenant`.
    pub fn as_tenant(
        &self,
        method: reqwest::Method,
        path: &str,
        tenant: &str,
    ) -> reqwest::RequestBuilder {
        self.http
            .request(method, self.url(path))
            .bearer_auth(SERVICE_TOKEN)
            .header("X-Tenant-Id", tenant)
    }

    pub async fn create_provider(&self, tenant: &str, body: Value) -> Value {
        let r = self
            .as_tenant(reqwest::Method::POST, "/v1/providers", tenant)
            .json(&body)
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), 201, "create provider: {:?}", r.text().await);
        r.json().await.expect("json")
    }

    pub async fn system_provider(
        &self,
        tenant: &str,
        channel: &str,
        name: &str,
        behavior: &str,
        priority: i64,
    ) -> String {
        let p = self
            .create_provider(
                tenant,
                json!({"name": name, "channel": channel, "kind": "system", "priority": priority,
                       "config": {"behavior": behavior}}),
            )
            .await;
        p["id"].as_str().expect("id").to_owned()
    }

    pub async fn send(&self, tenant: &str, body: Value) -> reqwest::Response {
        self.as_tenant(reqwest::Method::POST, "/v1/send", tenant)
            .json(&body)
            .send()
            .await
            .expect("request")
    }

    /// Sends and expects 202; returns the message id.
    pub async fn send_ok(&self, tenant: &str, body: Value) -> String {
        let r = self.send(tenant, body).await;
        let status = r.status();
        let answer: Value = r.json().await.unwrap_or(Value::Null);
        assert_eq!(status, 202, "{answer}");
        answer["id"].as_str().expect("id").to_owned()
    }

    pub async fn send_sms(&self, tenant: &str, text: &str) -> String {
        let r = self
            .send(
                tenant,
                json!({"channel": "sms", "to": "+14155550100", "content": {"text": text}}),
            )
            .await;
        assert_eq!(r.status(), 202);
        let body: Value = r.json().await.expect("json");
        body["id"].as_str().expect("id").to_owned()
    }

    pub async fn message(&self, tenant: &str, id: &str) -> (u16, Value) {
        let r = self
            .as_tenant(reqwest::Method::GET, &format!("/v1/messages/{id}"), tenant)
            .send()
            .await
            .expect("request");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Polls until the message's status is one of `wanted` (fails after 20 s).
    pub async fn wait_for_status(&self, tenant: &str, id: &str, wanted: &[&str]) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let (code, body) = self.message(tenant, id).await;
            if code == 200 && wanted.contains(&body["status"].as_str().unwrap_or("")) {
                return body;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("message {id} never reached {wanted:?}; last: {code} {body}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn amqp(&self) -> Connection {
        Connection::connect(AMQP, ConnectionProperties::default())
            .await
            .expect("rabbitmq reachable")
    }

    /// Publishes raw bytes to `{ns}.send` as a direct publisher would.
    pub async fn publish_raw(&self, routing_key: &str, body: &[u8]) {
        let conn = self.amqp().await;
        let ch = conn.create_channel().await.expect("channel");
        ch.confirm_select(Default::default())
            .await
            .expect("confirm");
        // Make sure the topology exists even if the worker has not declared it yet.
        self.topology().declare(&ch).await.expect("declare");
        let confirm = ch
            .basic_publish(
                format!("{}.send", self.namespace).into(),
                routing_key.into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                body,
                BasicProperties::default()
                    .with_delivery_mode(2)
                    .with_content_type("application/json".into()),
            )
            .await
            .expect("publish")
            .await
            .expect("confirm");
        assert!(confirm.is_ack());
        assert!(confirm.take_message().is_none(), "message was unroutable");
        let _ = conn.close(200, "done".into()).await;
    }

    /// Takes everything waiting in `{ns}.dead`: (body, death reason).
    pub async fn drain_dead(&self) -> Vec<(Vec<u8>, Option<String>)> {
        let conn = self.amqp().await;
        let ch = conn.create_channel().await.expect("channel");
        let mut out = Vec::new();
        while let Some(msg) = ch
            .basic_get(
                format!("{}.dead", self.namespace).into(),
                BasicGetOptions { no_ack: true },
            )
            .await
            .expect("basic_get")
        {
            let reason = communication::queue::topology::header_str(
                msg.delivery.properties.headers().as_ref(),
                "x-death-reason",
            );
            out.push((msg.delivery.data.clone(), reason));
        }
        let _ = conn.close(200, "done".into()).await;
        out
    }

    pub async fn event_types(&self, body: &Value) -> Vec<String> {
        body["events"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|e| e["type"].as_str().unwrap_or("").to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Stops the app and removes its queues and database.
    pub async fn cleanup(mut self) {
        self.shutdown.cancel();
        for t in std::mem::take(&mut self.tasks) {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
        self.pool.close().await;
        remove_leftovers(&self.db_name, &self.topology(), &self.leftovers.webhooks).await;
        self.leftovers.removed = true;
    }
}

pub fn envelope(tenant: &str, id: Uuid, channel: &str, to: &str, content: Value) -> Value {
    json!({
        "version": 1,
        "id": id,
        "tenant_id": tenant,
        "channel": channel,
        "to": to,
        "content": content,
        "created_at": chrono::Utc::now(),
    })
}

pub fn no_headers() -> FieldTable {
    FieldTable::default()
}
