//! Postgres: one function per query, every read and write scoped by tenant.
//!
//! `messages` also holds the batched statements the worker's writer uses (multi-row
//! `UNNEST` inserts and updates).

pub mod api_keys;
pub mod dead_letter_bodies;
pub mod dead_letters;
pub mod messages;
pub mod providers;
pub mod stats;
pub mod suppressions;
pub mod tenant_limits;
pub mod webhook_deliveries;
pub mod webhook_endpoints;

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Opens a pool of at most `size` connections; waits at most 5 s for one.
pub async fn connect(url: &SecretString, size: u32) -> Result<PgPool, sqlx::Error> {
    PgPoolOptions::new()
        .max_connections(size)
        .min_connections(0)
        .acquire_timeout(Duration::from_secs(5))
        .idle_timeout(Duration::from_secs(300))
        .connect(url.expose_secret())
        .await
}

/// A pool that connects on first use: a process can start while Postgres is down.
pub fn connect_lazy(url: &SecretString, size: u32) -> Result<PgPool, sqlx::Error> {
    PgPoolOptions::new()
        .max_connections(size)
        .min_connections(0)
        .acquire_timeout(Duration::from_secs(5))
        .idle_timeout(Duration::from_secs(300))
        .connect_lazy(url.expose_secret())
}

pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(pool).await
}

/// True when the error is a unique-constraint violation.
pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.code().as_deref() == Some("23505"))
}
