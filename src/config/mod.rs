//! Typed settings read from the environment once at start-up, one struct per area, each with
//! its one `Default` (the value of an unset variable).
//!
//! Every missing or malformed variable is reported, one line each naming it, not just the
//! first. Secrets are held in `SecretString` so they never reach `Debug` output or logs.

mod connections;
mod delivery;
mod env;
mod lanes;
mod notify;
mod retention;
mod service;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use crate::crypto::Keyring;

pub use connections::{AmqpSettings, DatabaseSettings, RedisSettings};
pub use delivery::{GuardSettings, RetryPolicy, WorkerTuning};
pub use env::Lookup;
pub use lanes::LaneSettings;
pub use notify::{NotifySettings, parse_duration};
pub use retention::{RETENTION_DAYS, RetentionSettings};
pub use service::{IntakeSettings, ProviderBases, ProviderSettings, TelemetrySettings};

/// One problem with one variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration: {name}: {reason}")]
pub struct ConfigError {
    pub name: &'static str,
    pub reason: String,
}

/// Every problem found, in the order the variables are read; displayed one per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// The variables named, in order.
    pub fn names(&self) -> Vec<&'static str> {
        self.0.iter().map(|e| e.name).collect()
    }
}

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

pub struct Config {
    pub database: DatabaseSettings,
    pub redis: RedisSettings,
    pub amqp: AmqpSettings,
    /// `ENCRYPTION_SECRET` (required) and `ENCRYPTION_SECRET_PREVIOUS`.
    pub keyring: Arc<Keyring>,
    /// `COMMUNICATION_NAMESPACE`: prefix of every exchange, queue and Redis key.
    pub namespace: String,
    pub intake: IntakeSettings,
    pub worker: WorkerTuning,
    pub retry: RetryPolicy,
    /// Circuit breakers and rate limits of the worker.
    pub guard: GuardSettings,
    pub providers: ProviderSettings,
    pub telemetry: TelemetrySettings,
    /// Suppression and status webhooks (`COMMUNICATION_SUPPRESSION_…`, `COMMUNICATION_WEBHOOK_…`).
    pub notify: NotifySettings,
    /// Removal of old messages (`COMMUNICATION_RETENTION_…`).
    pub retention: RetentionSettings,
    /// Priority lanes and fair share (`COMMUNICATION_LANES`, `COMMUNICATION_FAIR_SHARE_…`).
    pub lanes: LaneSettings,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("db_pool_size", &self.database.pool_size)
            .field("publish_channels", &self.amqp.publish_channels)
            .field("publish_linger", &self.amqp.publish_linger)
            .field("keyring", &self.keyring)
            .field("namespace", &self.namespace)
            .field("listen_addr", &self.intake.listen_addr)
            .field("worker", &self.worker)
            .field("retry", &self.retry)
            .field("guard", &self.guard)
            .field("providers", &self.providers)
            .field("telemetry", &self.telemetry)
            .field("retention", &self.retention)
            .field("lanes", &self.lanes)
            .finish_non_exhaustive()
    }
}

/// The default `COMMUNICATION_NAMESPACE`.
const DEFAULT_NAMESPACE: &str = "communication";

pub fn valid_namespace(ns: &str) -> bool {
    !ns.is_empty()
        && ns.len() <= 100
        && ns
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

impl Config {
    /// Reads the process environment.
    pub fn from_env(needs_service_token: bool) -> Result<Config, ConfigErrors> {
        Config::from_lookup(
            &|name| std::env::var(name).ok().filter(|v| !v.trim().is_empty()),
            needs_service_token,
        )
    }

    /// Reads settings through `get`, so tests can configure without touching the environment.
    /// Reads every area before answering, so the error lists every problem.
    pub fn from_lookup(get: Lookup, needs_service_token: bool) -> Result<Config, ConfigErrors> {
        let mut env = env::Env::new(get);
        let database = DatabaseSettings::read(&mut env);
        let redis = RedisSettings::read(&mut env);
        let amqp = AmqpSettings::read(&mut env);
        let keyring = read_keyring(&mut env);
        let intake = IntakeSettings::read(&mut env, needs_service_token);
        let namespace = env
            .get("COMMUNICATION_NAMESPACE")
            .unwrap_or_else(|| DEFAULT_NAMESPACE.into());
        if !valid_namespace(&namespace) {
            env.problem(
                "COMMUNICATION_NAMESPACE",
                "must be 1-100 characters of letters, digits, '_', '-', '.'",
            );
        }
        let providers = ProviderSettings::read(&mut env);
        let retry = RetryPolicy::read(&mut env);
        let worker = WorkerTuning::read(&mut env);
        let guard = GuardSettings::read(&mut env, providers.timeout);
        let telemetry = TelemetrySettings::read(&mut env);
        let retention = RetentionSettings::read(&mut env);
        let lanes = LaneSettings::read(&mut env);
        let (notify, problems) = NotifySettings::read(get);
        env.problems.extend(problems);
        match keyring {
            Some(keyring) if env.problems.is_empty() => Ok(Config {
                database,
                redis,
                amqp,
                keyring: Arc::new(keyring),
                namespace,
                intake,
                worker,
                retry,
                guard,
                providers,
                telemetry,
                notify,
                retention,
                lanes,
            }),
            _ => Err(ConfigErrors(env.problems)),
        }
    }
}

/// `ENCRYPTION_SECRET` and the comma-separated `ENCRYPTION_SECRET_PREVIOUS`, each checked on
/// its own so both are reported when both are wrong.
fn read_keyring(env: &mut env::Env) -> Option<Keyring> {
    const BAD_KEY: &str = "must be base64 of exactly 32 bytes";
    let secret = env.required("ENCRYPTION_SECRET", "is required");
    let previous: Vec<String> = env
        .get("ENCRYPTION_SECRET_PREVIOUS")
        .map(|v| v.split(',').map(|s| s.trim().to_owned()).collect())
        .unwrap_or_default();
    let valid = |key: &str| Keyring::from_base64(key, &[]).is_ok();
    if secret.as_deref().is_some_and(|s| !valid(s)) {
        env.problem("ENCRYPTION_SECRET", BAD_KEY);
    }
    if previous.iter().any(|p| !p.is_empty() && !valid(p)) {
        env.problem("ENCRYPTION_SECRET_PREVIOUS", BAD_KEY);
    }
    match Keyring::from_base64(&secret?, &previous) {
        Ok(keyring) => Some(keyring),
        Err(e) => {
            if !env.has_problem("ENCRYPTION_SECRET")
                && !env.has_problem("ENCRYPTION_SECRET_PREVIOUS")
            {
                env.problem("ENCRYPTION_SECRET", e.to_string());
            }
            None
        }
    }
}
