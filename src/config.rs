//! Typed settings read from the environment once at start-up.
//!
//! A missing or malformed variable is reported as one line naming it. Secrets are held in
//! `SecretString` so they never reach `Debug` output or logs.

use std::net::SocketAddr;
use std::time::Duration;

use secrecy::SecretString;

use crate::crypto::Keyring;

#[derive(Debug, thiserror::Error)]
#[error("configuration: {name}: {reason}")]
pub struct ConfigError {
    pub name: &'static str,
    pub reason: String,
}

fn err(name: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        name,
        reason: reason.into(),
    }
}

/// Operator-set API bases of the HTTP providers (tests point them at mocks).
#[derive(Debug, Clone)]
pub struct ProviderBases {
    pub twilio: String,
    pub resend: String,
    pub sendgrid: String,
    pub postmark: String,
    pub mailgun: String,
    pub mailgun_eu: String,
    pub vonage: String,
}

impl Default for ProviderBases {
    fn default() -> Self {
        ProviderBases {
            twilio: "https://api.twilio.com".into(),
            resend: "https://api.resend.com".into(),
            sendgrid: "https://api.sendgrid.com".into(),
            postmark: "https://api.postmarkapp.com".into(),
            mailgun: "https://api.mailgun.net".into(),
            mailgun_eu: "https://api.eu.mailgun.net".into(),
            vonage: "https://rest.nexmo.com".into(),
        }
    }
}

/// The retry schedule (see docs/delivery.md).
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub base: Duration,
    pub max: Duration,
    /// Attempts per provider before failing over to the next one.
    pub attempts_per_provider: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            base: Duration::from_millis(2000),
            max: Duration::from_millis(300_000),
            attempts_per_provider: 4,
        }
    }
}

/// Circuit breakers and rate limits of the worker (see `worker::guard`).
#[derive(Debug, Clone, Copy)]
pub struct GuardSettings {
    /// Consecutive provider failures that open a breaker; 0 disables breakers.
    pub threshold: u32,
    /// How long an open breaker refuses calls before one probe is let through.
    pub cooldown: Duration,
    /// How long a half-open probe may hold its lock: longer than one provider call.
    pub probe_ttl: Duration,
    /// How long one Redis call may take before the per-process state is used instead.
    pub redis_timeout: Duration,
}

/// Worker tuning.
#[derive(Debug, Clone, Copy)]
pub struct WorkerTuning {
    /// Unacked deliveries the broker may push to one consumer (per queue).
    pub prefetch: u16,
    /// Deliveries processed at once per worker process. Unset, it is what the broker may push
    /// (prefetch × work queues): fewer leaves prefetched deliveries idle in the buffer while
    /// the tasks wait on the writer (see BENCHMARKS.md).
    pub concurrency: usize,
    /// Most rows of one kind in one batched statement.
    pub batch_size: usize,
    /// How long the writer waits to fill a batch.
    pub batch_linger: Duration,
    /// Batches the writer may have in flight (each in its own transaction and connection):
    /// one at a time leaves the writer waiting on every commit (see BENCHMARKS.md).
    pub batch_flushes: usize,
}

impl Default for WorkerTuning {
    fn default() -> Self {
        WorkerTuning {
            prefetch: 200,
            concurrency: 200 * crate::domain::Channel::ALL.len(),
            batch_size: 500,
            batch_linger: Duration::from_millis(3),
            batch_flushes: 4,
        }
    }
}

pub struct Config {
    pub database_url: SecretString,
    pub redis_url: SecretString,
    pub amqp_url: SecretString,
    pub keyring: std::sync::Arc<Keyring>,
    pub service_token: Option<SecretString>,
    pub listen_addr: SocketAddr,
    pub namespace: String,
    pub public_url: Option<String>,
    pub allow_private_hosts: bool,
    pub retry: RetryPolicy,
    pub worker: WorkerTuning,
    pub provider_bases: ProviderBases,
    /// Postgres pool size of this process.
    pub db_pool_size: u32,
    /// Confirm-mode channels shared by all intake requests.
    pub publish_channels: usize,
    /// How long an outbound provider call may take.
    pub provider_timeout: Duration,
    /// How long resolved provider lists stay cached in a worker.
    pub provider_cache_ttl: Duration,
    /// Circuit breakers and rate limits of the worker.
    pub guard: GuardSettings,
    /// Where a worker serves `/healthz` and `/metrics` (`COMMUNICATION_WORKER_METRICS_ADDR`);
    /// unset: the worker opens no port.
    pub worker_metrics_addr: Option<SocketAddr>,
    /// `COMMUNICATION_LOG_FORMAT`: JSON log lines instead of text (read by
    /// `telemetry::init_tracing` before the rest of the configuration; validated here).
    pub json_logs: bool,
    /// Suppression and status webhooks (`COMMUNICATION_SUPPRESSION_…`, `COMMUNICATION_WEBHOOK_…`).
    pub notify: crate::notify::NotifySettings,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("listen_addr", &self.listen_addr)
            .field("namespace", &self.namespace)
            .field("public_url", &self.public_url)
            .field("allow_private_hosts", &self.allow_private_hosts)
            .field("retry", &self.retry)
            .field("worker", &self.worker)
            .field("guard", &self.guard)
            .field("keyring", &self.keyring)
            .field("worker_metrics_addr", &self.worker_metrics_addr)
            .field("json_logs", &self.json_logs)
            .finish_non_exhaustive()
    }
}

/// Reads one variable; `None` when unset or empty.
type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

fn parse_num<T: std::str::FromStr>(
    get: Lookup,
    name: &'static str,
    default: T,
) -> Result<T, ConfigError> {
    match get(name) {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse()
            .map_err(|_| err(name, format!("must be a number, got {v:?}"))),
    }
}

pub fn valid_namespace(ns: &str) -> bool {
    !ns.is_empty()
        && ns.len() <= 100
        && ns
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

impl Config {
    /// Reads the process environment.
    pub fn from_env(needs_service_token: bool) -> Result<Config, ConfigError> {
        Config::from_lookup(
            &|name| std::env::var(name).ok().filter(|v| !v.trim().is_empty()),
            needs_service_token,
        )
    }

    /// Reads settings through `get`, so tests can configure without touching the environment.
    pub fn from_lookup(get: Lookup, needs_service_token: bool) -> Result<Config, ConfigError> {
        let database_url = get("DATABASE_URL").ok_or_else(|| err("DATABASE_URL", "is required"))?;
        if !(database_url.starts_with("postgres://") || database_url.starts_with("postgresql://")) {
            return Err(err("DATABASE_URL", "must be a postgres:// URL"));
        }
        let redis_url = get("REDIS_URL").unwrap_or_else(|| "redis://127.0.0.1:6379".into());
        if !(redis_url.starts_with("redis://") || redis_url.starts_with("rediss://")) {
            return Err(err("REDIS_URL", "must be a redis:// URL"));
        }
        let amqp_url =
            get("AMQP_URL").unwrap_or_else(|| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
        if !(amqp_url.starts_with("amqp://") || amqp_url.starts_with("amqps://")) {
            return Err(err("AMQP_URL", "must be an amqp:// URL"));
        }
        let secret =
            get("ENCRYPTION_SECRET").ok_or_else(|| err("ENCRYPTION_SECRET", "is required"))?;
        let previous: Vec<String> = get("ENCRYPTION_SECRET_PREVIOUS")
            .map(|v| v.split(',').map(|s| s.trim().to_owned()).collect())
            .unwrap_or_default();
        let keyring = Keyring::from_base64(&secret, &previous).map_err(|e| match e {
            crate::crypto::CryptoError::BadKey(name) => {
                err(name, "must be base64 of exactly 32 bytes")
            }
            other => err("ENCRYPTION_SECRET", other.to_string()),
        })?;
        let service_token = get("COMMUNICATION_SERVICE_TOKEN");
        if needs_service_token && service_token.is_none() {
            return Err(err(
                "COMMUNICATION_SERVICE_TOKEN",
                "is required to serve the HTTP API",
            ));
        }
        if let Some(t) = &service_token
            && t.len() < 16
        {
            return Err(err(
                "COMMUNICATION_SERVICE_TOKEN",
                "must be at least 16 characters",
            ));
        }
        let listen_addr = match get("COMMUNICATION_LISTEN_ADDR") {
            None => SocketAddr::from(([127, 0, 0, 1], 8080)),
            Some(v) => v.trim().parse().map_err(|_| {
                err(
                    "COMMUNICATION_LISTEN_ADDR",
                    format!("must be host:port, got {v:?}"),
                )
            })?,
        };
        let namespace = get("COMMUNICATION_NAMESPACE").unwrap_or_else(|| "communication".into());
        if !valid_namespace(&namespace) {
            return Err(err(
                "COMMUNICATION_NAMESPACE",
                "must be 1-100 characters of letters, digits, '_', '-', '.'",
            ));
        }
        let public_url = match get("COMMUNICATION_PUBLIC_URL") {
            None => None,
            Some(v) => {
                let u = url::Url::parse(v.trim()).map_err(|_| {
                    err(
                        "COMMUNICATION_PUBLIC_URL",
                        "must be an absolute http(s) URL",
                    )
                })?;
                if !matches!(u.scheme(), "http" | "https") {
                    return Err(err("COMMUNICATION_PUBLIC_URL", "must be http or https"));
                }
                Some(v.trim().trim_end_matches('/').to_owned())
            }
        };
        let allow_private_hosts = match get("COMMUNICATION_ALLOW_PRIVATE_HOSTS").as_deref() {
            None | Some("false") | Some("0") => false,
            Some("true") | Some("1") => true,
            Some(_) => {
                return Err(err(
                    "COMMUNICATION_ALLOW_PRIVATE_HOSTS",
                    "must be true or false",
                ));
            }
        };
        let base_ms: u64 = parse_num(get, "COMMUNICATION_RETRY_BASE_MS", 2000)?;
        let max_ms: u64 = parse_num(get, "COMMUNICATION_RETRY_MAX_MS", 300_000)?;
        let attempts: u32 = parse_num(get, "COMMUNICATION_RETRY_ATTEMPTS", 4)?;
        if base_ms == 0 {
            return Err(err("COMMUNICATION_RETRY_BASE_MS", "must be at least 1"));
        }
        if max_ms < base_ms {
            return Err(err(
                "COMMUNICATION_RETRY_MAX_MS",
                "must be at least COMMUNICATION_RETRY_BASE_MS",
            ));
        }
        if attempts == 0 || attempts > 50 {
            return Err(err("COMMUNICATION_RETRY_ATTEMPTS", "must be 1 to 50"));
        }
        let defaults = WorkerTuning::default();
        let prefetch: u16 = parse_num(get, "COMMUNICATION_PREFETCH", defaults.prefetch)?;
        let worker = WorkerTuning {
            prefetch,
            concurrency: parse_num(
                get,
                "COMMUNICATION_WORKER_CONCURRENCY",
                usize::from(prefetch) * crate::domain::Channel::ALL.len(),
            )?,
            batch_size: parse_num(get, "COMMUNICATION_BATCH_SIZE", defaults.batch_size)?,
            batch_linger: Duration::from_millis(parse_num(
                get,
                "COMMUNICATION_BATCH_LINGER_MS",
                defaults.batch_linger.as_millis() as u64,
            )?),
            batch_flushes: parse_num(get, "COMMUNICATION_WRITER_FLUSHES", defaults.batch_flushes)?,
        };
        if worker.prefetch == 0 {
            return Err(err("COMMUNICATION_PREFETCH", "must be at least 1"));
        }
        if worker.concurrency == 0 {
            return Err(err(
                "COMMUNICATION_WORKER_CONCURRENCY",
                "must be at least 1",
            ));
        }
        if worker.batch_size == 0 {
            return Err(err("COMMUNICATION_BATCH_SIZE", "must be at least 1"));
        }
        if worker.batch_flushes == 0 {
            return Err(err("COMMUNICATION_WRITER_FLUSHES", "must be at least 1"));
        }
        let mut bases = ProviderBases::default();
        for (name, slot) in [
            ("TWILIO_BASE_URL", &mut bases.twilio),
            ("RESEND_BASE_URL", &mut bases.resend),
            ("SENDGRID_BASE_URL", &mut bases.sendgrid),
            ("POSTMARK_BASE_URL", &mut bases.postmark),
            ("VONAGE_BASE_URL", &mut bases.vonage),
        ] {
            if let Some(v) = get(name) {
                *slot = check_base(name, &v)?;
            }
        }
        if let Some(v) = get("MAILGUN_BASE_URL") {
            // One override serves both regions: it is a test or proxy endpoint.
            bases.mailgun = check_base("MAILGUN_BASE_URL", &v)?;
            bases.mailgun_eu = bases.mailgun.clone();
        }
        let db_pool_size: u32 = parse_num(get, "COMMUNICATION_DB_POOL_SIZE", 10)?;
        if db_pool_size == 0 {
            return Err(err("COMMUNICATION_DB_POOL_SIZE", "must be at least 1"));
        }
        let publish_channels: usize = parse_num(get, "COMMUNICATION_PUBLISH_CHANNELS", 4)?;
        if publish_channels == 0 {
            return Err(err("COMMUNICATION_PUBLISH_CHANNELS", "must be at least 1"));
        }
        let provider_timeout_ms: u64 = parse_num(get, "COMMUNICATION_PROVIDER_TIMEOUT_MS", 15_000)?;
        let provider_cache_ms: u64 = parse_num(get, "COMMUNICATION_PROVIDER_CACHE_MS", 5_000)?;
        let provider_timeout = Duration::from_millis(provider_timeout_ms.max(1));
        let guard = guard_settings(get, provider_timeout)?;
        let worker_metrics_addr = match get("COMMUNICATION_WORKER_METRICS_ADDR") {
            None => None,
            Some(v) => Some(v.trim().parse().map_err(|_| {
                err(
                    "COMMUNICATION_WORKER_METRICS_ADDR",
                    format!("must be host:port, got {v:?}"),
                )
            })?),
        };
        let json_logs = match get("COMMUNICATION_LOG_FORMAT").as_deref().map(str::trim) {
            None | Some("text") => false,
            Some("json") => true,
            Some(_) => return Err(err("COMMUNICATION_LOG_FORMAT", "must be text or json")),
        };
        Ok(Config {
            database_url: database_url.into(),
            redis_url: redis_url.into(),
            amqp_url: amqp_url.into(),
            keyring: std::sync::Arc::new(keyring),
            service_token: service_token.map(Into::into),
            listen_addr,
            namespace,
            public_url,
            allow_private_hosts,
            retry: RetryPolicy {
                base: Duration::from_millis(base_ms),
                max: Duration::from_millis(max_ms),
                attempts_per_provider: attempts,
            },
            worker,
            provider_bases: bases,
            db_pool_size,
            publish_channels,
            provider_timeout,
            provider_cache_ttl: Duration::from_millis(provider_cache_ms),
            guard,
            worker_metrics_addr,
            json_logs,
            notify: crate::notify::NotifySettings::from_lookup(get)?,
        })
    }
}

/// Circuit breaker and rate-limit settings. The half-open probe may hold its lock for one
/// provider call (the provider timeout) plus a margin.
fn guard_settings(get: Lookup, provider_timeout: Duration) -> Result<GuardSettings, ConfigError> {
    let threshold: u32 = parse_num(get, "COMMUNICATION_BREAKER_THRESHOLD", 5)?;
    let cooldown_ms: u64 = parse_num(get, "COMMUNICATION_BREAKER_COOLDOWN_MS", 30_000)?;
    if cooldown_ms == 0 || cooldown_ms > 86_400_000 {
        return Err(err(
            "COMMUNICATION_BREAKER_COOLDOWN_MS",
            "must be 1 to 86400000 (one day)",
        ));
    }
    let redis_timeout_ms: u64 = parse_num(get, "COMMUNICATION_GUARD_REDIS_TIMEOUT_MS", 250)?;
    if redis_timeout_ms == 0 || redis_timeout_ms > 60_000 {
        return Err(err(
            "COMMUNICATION_GUARD_REDIS_TIMEOUT_MS",
            "must be 1 to 60000",
        ));
    }
    Ok(GuardSettings {
        threshold,
        cooldown: Duration::from_millis(cooldown_ms),
        probe_ttl: provider_timeout + Duration::from_secs(5),
        redis_timeout: Duration::from_millis(redis_timeout_ms),
    })
}

fn check_base(name: &'static str, v: &str) -> Result<String, ConfigError> {
    let u = url::Url::parse(v.trim()).map_err(|_| err(name, "must be an absolute URL"))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(err(name, "must be http or https"));
    }
    Ok(v.trim().trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    const KEY: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

    #[test]
    fn defaults_apply_when_only_required_variables_are_set() {
        let get = lookup(&[
            ("DATABASE_URL", "postgres://x/y"),
            ("ENCRYPTION_SECRET", KEY),
        ]);
        let c = Config::from_lookup(&get, false).expect("valid");
        assert_eq!(c.namespace, "communication");
        assert_eq!(c.listen_addr.to_string(), "127.0.0.1:8080");
        assert_eq!(c.retry.attempts_per_provider, 4);
        assert!(!c.allow_private_hosts);
        assert_eq!(c.worker_metrics_addr, None);
        assert!(!c.json_logs);
        assert_eq!(c.worker.batch_flushes, 4);
        assert_eq!(c.worker.concurrency, 400);
    }

    #[test]
    fn the_worker_metrics_address_and_json_logs_are_read() {
        let get = lookup(&[
            ("DATABASE_URL", "postgres://x/y"),
            ("ENCRYPTION_SECRET", KEY),
            ("COMMUNICATION_WORKER_METRICS_ADDR", "0.0.0.0:9090"),
            ("COMMUNICATION_LOG_FORMAT", "json"),
        ]);
        let c = Config::from_lookup(&get, false).expect("valid");
        assert_eq!(
            c.worker_metrics_addr.map(|a| a.to_string()).as_deref(),
            Some("0.0.0.0:9090")
        );
        assert!(c.json_logs);
    }

    #[test]
    fn worker_concurrency_follows_prefetch_unless_set() {
        let base = [
            ("DATABASE_URL", "postgres://x/y"),
            ("ENCRYPTION_SECRET", KEY),
            ("COMMUNICATION_PREFETCH", "500"),
        ];
        let c = Config::from_lookup(&lookup(&base), false).expect("valid");
        assert_eq!(c.worker.concurrency, 1000);
        let mut vars = base.to_vec();
        vars.push(("COMMUNICATION_WORKER_CONCURRENCY", "64"));
        let c = Config::from_lookup(&lookup(&vars), false).expect("valid");
        assert_eq!(c.worker.concurrency, 64);
    }

    #[test]
    fn writer_flushes_is_read_and_checked() {
        let base = [
            ("DATABASE_URL", "postgres://x/y"),
            ("ENCRYPTION_SECRET", KEY),
        ];
        let mut vars = base.to_vec();
        vars.push(("COMMUNICATION_WRITER_FLUSHES", "2"));
        let c = Config::from_lookup(&lookup(&vars), false).expect("valid");
        assert_eq!(c.worker.batch_flushes, 2);
        for bad in ["0", "many"] {
            let mut vars = base.to_vec();
            vars.push(("COMMUNICATION_WRITER_FLUSHES", bad));
            let e = Config::from_lookup(&lookup(&vars), false).expect_err("must fail");
            assert_eq!(e.name, "COMMUNICATION_WRITER_FLUSHES");
        }
    }

    #[test]
    fn each_problem_names_its_variable() {
        type Case<'a> = (Vec<(&'a str, &'a str)>, bool, &'a str);
        let cases: Vec<Case> = vec![
            (vec![("ENCRYPTION_SECRET", KEY)], false, "DATABASE_URL"),
            (
                vec![("DATABASE_URL", "postgres://x/y")],
                false,
                "ENCRYPTION_SECRET",
            ),
            (
                vec![
                    ("DATABASE_URL", "postgres://x/y"),
                    ("ENCRYPTION_SECRET", "short"),
                ],
                false,
                "ENCRYPTION_SECRET",
            ),
            (
                vec![
                    ("DATABASE_URL", "postgres://x/y"),
                    ("ENCRYPTION_SECRET", KEY),
                ],
                true,
                "COMMUNICATION_SERVICE_TOKEN",
            ),
            (
                vec![
                    ("DATABASE_URL", "postgres://x/y"),
                    ("ENCRYPTION_SECRET", KEY),
                    ("COMMUNICATION_RETRY_BASE_MS", "soon"),
                ],
                false,
                "COMMUNICATION_RETRY_BASE_MS",
            ),
            (
                vec![
                    ("DATABASE_URL", "postgres://x/y"),
                    ("ENCRYPTION_SECRET", KEY),
                    ("COMMUNICATION_LISTEN_ADDR", "everywhere"),
                ],
                false,
                "COMMUNICATION_LISTEN_ADDR",
            ),
            (
                vec![
                    ("DATABASE_URL", "postgres://x/y"),
                    ("ENCRYPTION_SECRET", KEY),
                    ("ENCRYPTION_SECRET_PREVIOUS", "nope"),
                ],
                false,
                "ENCRYPTION_SECRET_PREVIOUS",
            ),
            (
                vec![
                    ("DATABASE_URL", "postgres://x/y"),
                    ("ENCRYPTION_SECRET", KEY),
                    ("COMMUNICATION_WORKER_METRICS_ADDR", "port 9090"),
                ],
                false,
                "COMMUNICATION_WORKER_METRICS_ADDR",
            ),
            (
                vec![
                    ("DATABASE_URL", "postgres://x/y"),
                    ("ENCRYPTION_SECRET", KEY),
                    ("COMMUNICATION_LOG_FORMAT", "yaml"),
                ],
                false,
                "COMMUNICATION_LOG_FORMAT",
            ),
        ];
        for (vars, needs_token, name) in cases {
            let get = lookup(&vars);
            let e = Config::from_lookup(&get, needs_token).expect_err("must fail");
            assert_eq!(e.name, name);
            assert!(!e.to_string().contains('\n'));
        }
    }

    #[test]
    fn breaker_and_rate_limit_settings_have_defaults_and_named_errors() {
        let base = [
            ("DATABASE_URL", "postgres://x/y"),
            ("ENCRYPTION_SECRET", KEY),
        ];
        let c = Config::from_lookup(&lookup(&base), false).expect("valid");
        assert_eq!(c.guard.threshold, 5);
        assert_eq!(c.guard.cooldown, Duration::from_secs(30));
        assert_eq!(c.guard.redis_timeout, Duration::from_millis(250));
        assert_eq!(c.guard.probe_ttl, Duration::from_secs(20));
        let mut vars = base.to_vec();
        vars.extend([
            ("COMMUNICATION_BREAKER_THRESHOLD", "0"),
            ("COMMUNICATION_BREAKER_COOLDOWN_MS", "1500"),
            ("COMMUNICATION_GUARD_REDIS_TIMEOUT_MS", "50"),
            ("COMMUNICATION_PROVIDER_TIMEOUT_MS", "1000"),
        ]);
        let c = Config::from_lookup(&lookup(&vars), false).expect("valid");
        assert_eq!(c.guard.threshold, 0, "0 disables breakers");
        assert_eq!(c.guard.cooldown, Duration::from_millis(1500));
        assert_eq!(c.guard.redis_timeout, Duration::from_millis(50));
        assert_eq!(c.guard.probe_ttl, Duration::from_secs(6));
        for (name, value) in [
            ("COMMUNICATION_BREAKER_THRESHOLD", "many"),
            ("COMMUNICATION_BREAKER_THRESHOLD", "-1"),
            ("COMMUNICATION_BREAKER_COOLDOWN_MS", "0"),
            ("COMMUNICATION_BREAKER_COOLDOWN_MS", "soon"),
            ("COMMUNICATION_GUARD_REDIS_TIMEOUT_MS", "0"),
            ("COMMUNICATION_GUARD_REDIS_TIMEOUT_MS", "999999"),
        ] {
            let mut vars = base.to_vec();
            vars.push((name, value));
            let e = Config::from_lookup(&lookup(&vars), false).expect_err("must fail");
            assert_eq!(e.name, name, "{value}");
            assert!(!e.to_string().contains('\n'));
        }
    }

    #[test]
    fn debug_output_hides_secrets() {
        let get = lookup(&[
            ("DATABASE_URL", "postgres://user:hunter2@x/y"),
            ("ENCRYPTION_SECRET", KEY),
            ("COMMUNICATION_SERVICE_TOKEN", "super-secret-token-123"),
        ]);
        let c = Config::from_lookup(&get, true).expect("valid");
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("hunter2"));
        assert!(!dbg.contains("super-secret-token-123"));
        assert!(!dbg.contains(KEY));
    }
}
