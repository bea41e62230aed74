//! `/healthz` (the process answers), `/readyz` (Postgres, Redis and RabbitMQ reachable) and
//! `/metrics` (Prometheus text).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use deadpool_redis::redis;
use serde_json::json;

use super::AppState;

#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    summary = "Liveness",
    security(()),
    responses(
        (status = 200, description = "The process answers", body = super::openapi::Health)
    )
)]
pub async fn healthz() -> Response {
    axum::Json(json!({"status": "ok"})).into_response()
}

#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    summary = "Readiness: Postgres, Redis and RabbitMQ reachable",
    security(()),
    responses(
        (status = 200, description = "Ready", body = super::openapi::Readiness),
        (status = 503, description = "A dependency is unreachable", body = super::openapi::Readiness)
    )
)]
pub async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let limit = Duration::from_secs(2);
    let pg = async {
        sqlx::query_scalar::<_, i32>("SELECT 1")
            .fetch_one(&state.pool)
            .await
            .is_ok()
    };
    let redis_ok = async {
        match state.redis.get().await {
            Ok(mut c) => redis::cmd("PING")
                .query_async::<String>(&mut c)
                .await
                .is_ok(),
            Err(_) => false,
        }
    };
    let amqp = async { state.publisher.warm_up().await.is_ok() };
    let (pg, redis_ok, amqp) = tokio::join!(
        async { tokio::time::timeout(limit, pg).await.unwrap_or(false) },
        async { tokio::time::timeout(limit, redis_ok).await.unwrap_or(false) },
        async { tokio::time::timeout(limit, amqp).await.unwrap_or(false) },
    );
    let ready = pg && redis_ok && amqp;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let word = |ok: bool| if ok { "ok" } else { "unavailable" };
    (
        status,
        axum::Json(json!({
            "status": if ready { "ready" } else { "not_ready" },
            "checks": {"postgres": word(pg), "redis": word(redis_ok), "rabbitmq": word(amqp)},
        })),
    )
        .into_response()
}

#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    summary = "Prometheus metrics",
    security(()),
    responses(
        (status = 200, description = "Prometheus text exposition", body = String, content_type = "text/plain")
    )
)]
pub async fn metrics() -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        crate::telemetry::metrics_handle().render(),
    )
        .into_response()
}
