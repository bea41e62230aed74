//! `GET /v1/stats/providers`: each provider's health at a glance for the Providers screen —
//! its circuit breaker (read from Redis through `guard_state`, never the worker), and its
//! delivery rate and latency over the last hour and day (from the stats rollup).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, ApiErrors};
use super::stats::{add, delivery_rate, percentiles, sum_histograms};
use crate::guard_state::{self, BreakerView};
use crate::store::stats::{self as store, Grain, ProviderLabel};

/// A provider's figures over a recent window.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct HealthWindow {
    /// Messages accepted in the window that the provider handled.
    pub total: i64,
    pub delivery_rate: Option<f64>,
    pub p50_ms: Option<i64>,
    pub p95_ms: Option<i64>,
}

/// A provider's health at a glance.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProviderHealth {
    pub provider_id: Uuid,
    pub name: String,
    pub kind: String,
    pub channel: String,
    /// The operator's default provider rather than one of the tenant's.
    pub platform: bool,
    /// `null` when the breaker could not be read (Redis down).
    pub breaker: Option<BreakerView>,
    /// Messages accepted in the current and the previous clock hour.
    pub last_hour: HealthWindow,
    /// Messages accepted in the last 24 clock hours (and the current one).
    pub last_day: HealthWindow,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProviderHealthPage {
    pub items: Vec<ProviderHealth>,
    /// Always `null`: every provider is on the one page.
    pub next_cursor: Option<String>,
}

/// Per provider id: its counts by status and its histogram over `[since, now]`.
async fn window(
    state: &AppState,
    tenant: &str,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<HashMap<Uuid, HealthWindow>, sqlx::Error> {
    let (totals, latencies) = tokio::try_join!(
        store::provider_totals(&state.pool, tenant, since, until),
        store::latencies(&state.pool, tenant, Grain::Hour, since, until),
    )?;
    let mut by_status: HashMap<Uuid, BTreeMap<String, i64>> = HashMap::new();
    for (_, provider, status, n) in totals {
        add(by_status.entry(provider).or_default(), &status, n);
    }
    let mut histograms: HashMap<Uuid, Vec<i64>> = HashMap::new();
    for (_, provider, h) in latencies {
        sum_histograms(histograms.entry(provider).or_default(), &h);
    }
    Ok(by_status
        .into_iter()
        .map(|(id, statuses)| {
            let p = histograms.get(&id).and_then(|h| percentiles(h));
            let w = HealthWindow {
                total: statuses.values().sum(),
                delivery_rate: delivery_rate(&statuses),
                p50_ms: p.as_ref().map(|p| p.p50),
                p95_ms: p.as_ref().map(|p| p.p95),
            };
            (id, w)
        })
        .collect())
}

#[utoipa::path(
    get,
    path = "/v1/stats/providers",
    operation_id = "get_provider_health",
    tag = "stats",
    summary = "Each provider's health: circuit breaker, delivery rate and latency over the last hour and day",
    description = "Every provider of the tenant, and the platform's providers that handled its \
                   messages in the last day. The last test result is in `GET /v1/providers`.",
    responses(
        (status = 200, description = "Provider health", body = ProviderHealthPage),
        ApiErrors,
    )
)]
pub async fn provider_health(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Json<ProviderHealthPage>, ApiError> {
    let tenant = caller.tenant()?;
    let now = Utc::now();
    let current = store::hour_of(now);
    let until = current + TimeDelta::hours(1);
    let (mut hour, mut day) = tokio::try_join!(
        window(
            &state,
            tenant.as_str(),
            current - TimeDelta::hours(1),
            until
        ),
        window(
            &state,
            tenant.as_str(),
            current - TimeDelta::hours(24),
            until
        ),
    )
    .map_err(|e| ApiError::database("read provider health", e))?;
    let seen: Vec<Uuid> = day.keys().copied().collect();
    let labels: Vec<ProviderLabel> = store::provider_labels(&state.pool, tenant.as_str(), &seen)
        .await
        .map_err(|e| ApiError::database("read providers", e))?;
    let ids: Vec<Uuid> = labels.iter().map(|l| l.id).collect();
    let breakers = match state.redis.get().await {
        Ok(mut conn) => guard_state::read_breakers(&mut conn, &state.namespace, &ids)
            .await
            .map_err(|e| tracing::warn!(error = %e, "reading circuit breakers failed"))
            .ok(),
        Err(e) => {
            tracing::warn!(error = %e, "Redis unavailable; circuit breakers unknown");
            None
        }
    };
    let items = labels
        .into_iter()
        .enumerate()
        .map(|(i, l)| ProviderHealth {
            breaker: breakers.as_ref().and_then(|b| b.get(i).cloned()),
            last_hour: hour.remove(&l.id).unwrap_or_default(),
            last_day: day.remove(&l.id).unwrap_or_default(),
            provider_id: l.id,
            name: l.name,
            kind: l.kind,
            channel: l.channel,
            platform: l.platform,
        })
        .collect();
    Ok(Json(ProviderHealthPage {
        items,
        next_cursor: None,
    }))
}
