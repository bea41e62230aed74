//! The HTTP intake: authentication, validation, idempotency, confirmed publish. Also the
//! providers API, message reads, API keys, health, readiness and metrics.

pub mod api_keys;
pub mod auth;
pub mod dashboard;
pub mod dead_letters;
pub mod error;
pub mod health;
pub mod http_metrics;
pub mod idempotency;
pub mod json;
pub mod limits;
pub mod messages;
pub mod openapi;
pub mod provider_health;
pub mod provider_kinds;
pub mod providers;
pub mod query;
pub mod retention;
pub mod send;
pub mod send_gate;
pub mod send_redis;
pub mod stats;
pub mod suppressions;
pub mod webhook_attempts;
pub mod webhook_endpoints;
pub mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use moka::future::Cache;
use secrecy::SecretString;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::config::Config;
use crate::crypto::Keyring;
use crate::providers::ProviderContext;
use crate::queue::{Publisher, Topology};

/// Largest request body accepted (email parts are limited to 256 KiB each).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Everything a request may need, built once at start-up.
pub struct AppState {
    pub pool: PgPool,
    pub redis: deadpool_redis::Pool,
    /// `POST /v1/send`'s own Redis connection (one multiplexed connection, no pool checkout).
    pub send_redis: send_redis::SendRedis,
    pub publisher: Arc<Publisher>,
    pub keyring: Arc<Keyring>,
    pub service_token: Option<SecretString>,
    pub namespace: String,
    /// API key hash → (tenant, stored hash); short-lived so revocations take effect soon.
    pub api_keys: Cache<[u8; 32], Option<(String, Vec<u8>)>>,
    /// For "test connection".
    pub provider_ctx: ProviderContext,
    pub public_url: Option<String>,
    /// The operator's per-tenant limits (cached) and their Redis counters.
    pub limits: crate::limits::LimitsGate,
    /// `COMMUNICATION_RETENTION_DAYS`: a tenant's retention without an override.
    pub retention_days: u32,
    /// Which lane a send takes (fair share, `lanes::fair_share`).
    pub lanes: Arc<crate::lanes::LaneDecider>,
}

impl AppState {
    pub fn new(config: &Config, pool: PgPool) -> anyhow::Result<AppState> {
        // Install the metrics recorder before anything records (a no-op once installed).
        let _ = crate::telemetry::metrics_handle();
        let mut redis_cfg = deadpool_redis::Config::from_url(
            secrecy::ExposeSecret::expose_secret(&config.redis.url).to_owned(),
        );
        let mut pool_cfg = deadpool_redis::PoolConfig::new(32);
        pool_cfg.timeouts.wait = Some(Duration::from_secs(2));
        pool_cfg.timeouts.create = Some(Duration::from_secs(2));
        pool_cfg.timeouts.recycle = Some(Duration::from_secs(2));
        redis_cfg.pool = Some(pool_cfg);
        let redis = redis_cfg.create_pool(Some(deadpool_redis::Runtime::Tokio1))?;
        let topology = Topology::new(&config.namespace, &config.retry);
        let publisher = Arc::new(
            Publisher::new(
                config.amqp.url.clone(),
                &crate::queue::connection_name(&config.namespace, "intake"),
                topology,
                config.amqp.publish_channels,
            )
            .with_linger(config.amqp.publish_linger),
        );
        let limits = crate::limits::LimitsGate::new(
            &config.namespace,
            crate::limits::LimitsCache::new(pool.clone(), config.intake.limits_cache_ttl),
        );
        let send_redis =
            send_redis::SendRedis::new(secrecy::ExposeSecret::expose_secret(&config.redis.url));
        Ok(AppState {
            pool,
            redis,
            send_redis,
            publisher,
            keyring: config.keyring.clone(),
            service_token: config.intake.service_token.clone(),
            namespace: config.namespace.clone(),
            api_keys: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(30))
                .build(),
            provider_ctx: ProviderContext::new(
                config.providers.bases.clone(),
                config.providers.allow_private_hosts,
                config.providers.timeout,
                config.providers.public_url.clone(),
            )?,
            public_url: config.providers.public_url.clone(),
            limits,
            retention_days: config.retention.days,
            lanes: Arc::new(crate::lanes::LaneDecider::new(
                config.lanes,
                &config.namespace,
                Some(secrecy::ExposeSecret::expose_secret(&config.redis.url)),
            )),
        })
    }
}

/// Every route, each registered from its `#[utoipa::path]` annotation: the router and the
/// OpenAPI document come from this one list, so an undocumented route cannot be added here.
pub fn documented_routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(send::send))
        .routes(routes!(messages::list))
        .routes(routes!(messages::get))
        .routes(routes!(providers::create, providers::list))
        .routes(routes!(providers::get, providers::patch, providers::delete))
        .routes(routes!(providers::check::test))
        .routes(routes!(provider_kinds::list))
        .routes(routes!(api_keys::create, api_keys::list))
        .routes(routes!(api_keys::revoke))
        .routes(routes!(stats::stats))
        .routes(routes!(provider_health::provider_health))
        .routes(routes!(dead_letters::list))
        .routes(routes!(dead_letters::replay_many))
        .routes(routes!(dead_letters::replay))
        .routes(routes!(webhooks::receive))
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(health::metrics))
        .routes(routes!(openapi::openapi_json))
        .merge(suppressions::routes())
        .merge(webhook_endpoints::routes())
        .merge(webhook_attempts::routes())
        .merge(limits::routes())
        .merge(retention::routes())
}

pub fn router(state: Arc<AppState>) -> Router {
    let (routes, _document) = documented_routes().split_for_parts();
    routes
        .merge(dashboard::routes(Arc::new(dashboard::EmbeddedAssets)))
        .fallback(|| async { error::ApiError::not_found("route") })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            Duration::from_secs(30),
        ))
        .layer(TraceLayer::new_for_http())
        .layer(axum::middleware::from_fn(http_metrics::record))
        .with_state(state)
}

/// Serves until `shutdown` is cancelled, then drains in-flight requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    // Connect early so the first requests do not pay for it; a down broker is not fatal.
    if let Err(e) = state.publisher.warm_up().await {
        tracing::warn!(error = %e, "RabbitMQ not reachable at start-up; sends answer 503 until it is");
    }
    state.send_redis.warm_up().await;
    let publisher = state.publisher.clone();
    tracing::info!(addr = %listener.local_addr()?, "intake listening");
    // `router` already bound the state, so every route is ready: a connection gets a clone of
    // it (an `Arc`), not the rebuilt route table axum makes per connection otherwise (which
    // it also drops when the connection ends).
    axum::serve(listener, router(state).into_make_service())
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await?;
    publisher.close().await;
    Ok(())
}
