//! `/healthz` (the process answers), `/readyz` (Postgres, Redis and RabbitMQ reachable) and
//! `/metrics` (Prometheus text).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use deadpool_redis::redis;
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;

/// `/healthz`: the process answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    #[schema(value_type = String, example = "ok")]
    pub status: &'static str,
}

/// `/readyz`: each dependency, and whether all answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// `ready` or `not_ready`.
    #[schema(value_type = String, example = "ready")]
    pub status: &'static str,
    pub checks: ReadinessChecks,
}

/// `ok` or `unavailable` for each dependency.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReadinessChecks {
    #[schema(value_type = String, example = "ok")]
    pub postgres: &'static str,
    #[schema(value_type = String, example = "ok")]
    pub redis: &'static str,
    #[schema(value_type = String, example = "ok")]
    pub rabbitmq: &'static str,
}

#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "healthz",
    tag = "operations",
    summary = "Liveness",
    security(()),
    responses(
        (status = 200, description = "The process answers", body = Health)
    )
)]
pub async fn healthz() -> Response {
    axum::Json(Health { status: "ok" }).into_response()
}

#[utoipa::path(
    get,
    path = "/readyz",
    operation_id = "readyz",
    tag = "operations",
    summary = "Readiness: Postgres, Redis and RabbitMQ reachable",
    security(()),
    responses(
        (status = 200, description = "Ready", body = Readiness),
        (status = 503, description = "A dependency is unreachable", body = Readiness)
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
        axum::Json(Readiness {
            status: if ready { "ready" } else { "not_ready" },
            checks: ReadinessChecks {
                postgres: word(pg),
                redis: word(redis_ok),
                rabbitmq: word(amqp),
            },
        }),
    )
        .into_response()
}

#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
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
