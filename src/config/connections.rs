//! The three services the process connects to: Postgres, Redis and RabbitMQ.

use secrecy::SecretString;

use super::env::Env;

/// Postgres (`DATABASE_URL`, required; `COMMUNICATION_DB_POOL_SIZE`).
pub struct DatabaseSettings {
    /// Holds the password: never logged.
    pub url: SecretString,
    /// Connections of this process's pool: small, since the server allows 100 in all.
    pub pool_size: u32,
}

impl Default for DatabaseSettings {
    /// No URL: `DATABASE_URL` has no default; the pool size does.
    fn default() -> Self {
        DatabaseSettings {
            url: SecretString::from(String::new()),
            pool_size: 10,
        }
    }
}

impl DatabaseSettings {
    pub(super) fn read(env: &mut Env) -> Self {
        let d = DatabaseSettings::default();
        let url = env
            .required("DATABASE_URL", "is required")
            .unwrap_or_default();
        let postgres = url.starts_with("postgres://") || url.starts_with("postgresql://");
        if !url.is_empty() && !postgres {
            env.problem("DATABASE_URL", "must be a postgres:// URL");
        }
        let pool_size = env.number_in(
            "COMMUNICATION_DB_POOL_SIZE",
            d.pool_size,
            1..=u32::MAX,
            "must be at least 1",
        );
        DatabaseSettings {
            url: url.into(),
            pool_size,
        }
    }
}

/// Redis (`REDIS_URL`): idempotency claims, queued markers, breakers and rate limits.
pub struct RedisSettings {
    pub url: SecretString,
}

impl Default for RedisSettings {
    fn default() -> Self {
        RedisSettings {
            url: SecretString::from("redis://127.0.0.1:6379"),
        }
    }
}

impl RedisSettings {
    pub(super) fn read(env: &mut Env) -> Self {
        use secrecy::ExposeSecret;
        let d = RedisSettings::default();
        let url = env.url("REDIS_URL", d.url.expose_secret(), &["redis", "rediss"]);
        RedisSettings { url: url.into() }
    }
}

/// RabbitMQ (`AMQP_URL`; `COMMUNICATION_PUBLISH_CHANNELS`, `COMMUNICATION_PUBLISH_LINGER_MS`).
pub struct AmqpSettings {
    pub url: SecretString,
    /// Confirm-mode channels shared by all intake requests.
    pub publish_channels: usize,
    /// How long a publish made while others await their confirms waits for company, so
    /// they reach the broker together (`queue::gather`), when the recent rate says company
    /// will come within it; zero sends each at once.
    pub publish_linger: std::time::Duration,
}

impl Default for AmqpSettings {
    fn default() -> Self {
        AmqpSettings {
            url: SecretString::from("amqp://guest:guest@127.0.0.1:5672/%2f"),
            publish_channels: 4,
            publish_linger: std::time::Duration::from_millis(2),
        }
    }
}

impl AmqpSettings {
    pub(super) fn read(env: &mut Env) -> Self {
        use secrecy::ExposeSecret;
        let d = AmqpSettings::default();
        let url = env.url("AMQP_URL", d.url.expose_secret(), &["amqp", "amqps"]);
        let publish_channels = env.number_in(
            "COMMUNICATION_PUBLISH_CHANNELS",
            d.publish_channels,
            1..=usize::MAX,
            "must be at least 1",
        );
        let linger_ms = env.number_in(
            "COMMUNICATION_PUBLISH_LINGER_MS",
            d.publish_linger.as_millis() as u64,
            0..=1000,
            "must be 0 to 1000 (milliseconds)",
        );
        AmqpSettings {
            url: url.into(),
            publish_channels,
            publish_linger: std::time::Duration::from_millis(linger_ms),
        }
    }
}
