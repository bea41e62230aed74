//! `GET /v1/stats`: a tenant's messages per hour or day by channel, status and provider, with
//! delivery rates and accept → sent percentiles per provider. (`provider_health` serves each
//! provider's health from the same rollup.)
//!
//! It reads only the rollup the worker's writer keeps (`store::stats`), never
//! `message_logs`, so it stays fast however long the log grows.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, ApiErrors};
use crate::domain::FieldError;
use crate::store::stats::{self as store, Grain, NO_PROVIDER};

/// Most buckets one request may ask for.
pub const MAX_BUCKETS: i64 = 400;

/// Statuses of messages whose delivery is over, and of those among them that reached a
/// provider: the delivery rate is the second over the first.
const FINISHED: &[&str] = &[
    "sent",
    "delivered",
    "undelivered",
    "bounced",
    "failed",
    "expired",
];
const SUCCEEDED: &[&str] = &["sent", "delivered"];

/// Width of a stats bucket (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum BucketWidth {
    Hour,
    Day,
}

impl BucketWidth {
    fn step(self) -> TimeDelta {
        match self {
            BucketWidth::Hour => TimeDelta::hours(1),
            BucketWidth::Day => TimeDelta::days(1),
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            BucketWidth::Hour => "hour",
            BucketWidth::Day => "day",
        }
    }

    fn grain(self) -> Grain {
        match self {
            BucketWidth::Hour => Grain::Hour,
            BucketWidth::Day => Grain::Day,
        }
    }
}

/// Messages accepted in one bucket, under their current status.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatsBucket {
    pub start: DateTime<Utc>,
    pub total: i64,
    /// Status → messages (statuses with none are absent).
    pub by_status: BTreeMap<String, i64>,
    /// Channel → messages.
    pub by_channel: BTreeMap<String, i64>,
}

/// One cell of the full breakdown.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatsCount {
    pub start: DateTime<Utc>,
    pub channel: String,
    pub status: String,
    /// `null`: no provider has handled these messages (queued, suppressed, expired early).
    pub provider_id: Option<Uuid>,
    pub count: i64,
}

#[derive(Debug, Default, Serialize, ToSchema)]
pub struct StatsTotals {
    pub total: i64,
    pub by_status: BTreeMap<String, i64>,
    pub by_channel: BTreeMap<String, i64>,
}

/// Accept → sent latency percentiles, in milliseconds, from a fixed histogram.
#[derive(Debug, Serialize, ToSchema)]
pub struct LatencyPercentiles {
    pub p50: i64,
    pub p95: i64,
    /// Messages sent that the figures are drawn from.
    pub samples: i64,
}

/// What one provider did with the tenant's messages in the range.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProviderStats {
    pub provider_id: Uuid,
    /// `null` when the provider was deleted.
    pub name: Option<String>,
    pub kind: Option<String>,
    pub channel: String,
    /// The operator's default provider rather than one of the tenant's.
    pub platform: bool,
    pub total: i64,
    pub by_status: BTreeMap<String, i64>,
    /// (sent + delivered) / finished messages, 0–1; `null` while none is finished.
    pub delivery_rate: Option<f64>,
    /// `null` when none of its messages was sent in the range.
    pub latency_ms: Option<LatencyPercentiles>,
}

/// `GET /v1/stats`.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatsReport {
    /// Start of the first bucket (the requested `since`, rounded down).
    pub since: DateTime<Utc>,
    /// End of the last bucket, exclusive (the requested `until`, rounded up).
    pub until: DateTime<Utc>,
    pub bucket: BucketWidth,
    /// Every bucket of the range, in order, zero-filled.
    pub buckets: Vec<StatsBucket>,
    /// Non-zero counts by bucket, channel, status and provider.
    pub counts: Vec<StatsCount>,
    pub totals: StatsTotals,
    pub providers: Vec<ProviderStats>,
}

/// The validated query of `GET /v1/stats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatsRange {
    pub width: BucketWidth,
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
}

/// Parses `since`, `until` and `bucket`, naming each bad parameter; rounds the range out to
/// whole buckets.
pub fn parse_range(
    query: &HashMap<String, String>,
    now: DateTime<Utc>,
) -> Result<StatsRange, Vec<FieldError>> {
    let mut errors = Vec::new();
    let width = match query.get("bucket").map(String::as_str) {
        None | Some("day") => BucketWidth::Day,
        Some("hour") => BucketWidth::Hour,
        Some(_) => {
            errors.push(FieldError::new("bucket", "must be hour or day"));
            BucketWidth::Day
        }
    };
    let mut time = |name: &str| match query.get(name) {
        None => None,
        Some(v) => match DateTime::parse_from_rfc3339(v) {
            Ok(t) => Some(t.with_timezone(&Utc)),
            Err(_) => {
                errors.push(FieldError::new(name, "must be an RFC 3339 time"));
                None
            }
        },
    };
    let until = time("until");
    let since = time("since");
    for name in query.keys() {
        if !matches!(name.as_str(), "since" | "until" | "bucket") {
            errors.push(FieldError::new(name.clone(), "is not a known parameter"));
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let until = until.unwrap_or(now);
    let default_span = match width {
        BucketWidth::Hour => TimeDelta::hours(24),
        BucketWidth::Day => TimeDelta::days(7),
    };
    let since = since.unwrap_or(until - default_span);
    if since >= until {
        return Err(vec![FieldError::new("since", "must be before until")]);
    }
    let step = width.step();
    let floor = |t: DateTime<Utc>| t.duration_trunc(step).unwrap_or(t);
    let since = floor(since);
    let until = if floor(until) == until {
        until
    } else {
        floor(until) + step
    };
    if (until - since).num_seconds() > step.num_seconds() * MAX_BUCKETS {
        return Err(vec![FieldError::new(
            "since",
            format!(
                "the range may hold at most {MAX_BUCKETS} buckets of one {}",
                width.as_str()
            ),
        )]);
    }
    Ok(StatsRange {
        width,
        since,
        until,
    })
}

pub(super) fn delivery_rate(by_status: &BTreeMap<String, i64>) -> Option<f64> {
    let sum = |set: &[&str]| -> i64 {
        set.iter()
            .filter_map(|s| by_status.get(*s))
            .copied()
            .sum::<i64>()
    };
    let finished = sum(FINISHED);
    (finished > 0).then(|| (sum(SUCCEEDED) as f64 / finished as f64 * 10_000.0).round() / 10_000.0)
}

pub(super) fn percentiles(histogram: &[i64]) -> Option<LatencyPercentiles> {
    Some(LatencyPercentiles {
        p50: store::percentile(histogram, 0.50)?,
        p95: store::percentile(histogram, 0.95)?,
        samples: histogram.iter().sum(),
    })
}

pub(super) fn add(map: &mut BTreeMap<String, i64>, key: &str, n: i64) {
    *map.entry(key.to_owned()).or_default() += n;
}

pub(super) fn sum_histograms(into: &mut Vec<i64>, from: &[i64]) {
    if into.len() < from.len() {
        into.resize(from.len(), 0);
    }
    for (a, b) in into.iter_mut().zip(from) {
        *a += b;
    }
}

fn problem(errors: Vec<FieldError>) -> ApiError {
    let mut e = ApiError::validation(errors);
    e.status = StatusCode::BAD_REQUEST;
    e
}

#[utoipa::path(
    get,
    path = "/v1/stats",
    operation_id = "get_stats",
    tag = "stats",
    summary = "Messages per hour or day by channel, status and provider; delivery rate and accept→sent percentiles per provider",
    description = "Counts messages in the bucket they were accepted in, under their current \
                   status and provider. Served from a rollup the worker keeps current, never \
                   a scan of the message log.",
    params(
        ("since" = Option<String>, Query, description = "RFC 3339; rounded down to its bucket. Default: `until` minus 7 days (day) or 24 hours (hour)"),
        ("until" = Option<String>, Query, description = "RFC 3339, exclusive; rounded up to a bucket boundary. Default: now"),
        ("bucket" = Option<String>, Query, description = "`hour` or `day` (default); UTC. At most 400 buckets"),
    ),
    responses(
        (status = 200, description = "The tenant's stats", body = StatsReport),
        ApiErrors,
    )
)]
pub async fn stats(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<StatsReport>, ApiError> {
    let tenant = caller.tenant()?;
    let range = parse_range(&query, Utc::now()).map_err(problem)?;
    let (rows, latencies) = tokio::try_join!(
        store::counts(
            &state.pool,
            tenant.as_str(),
            range.width.grain(),
            range.since,
            range.until
        ),
        store::latencies(
            &state.pool,
            tenant.as_str(),
            range.width.grain(),
            range.since,
            range.until
        ),
    )
    .map_err(|e| ApiError::database("read stats", e))?;
    let mut report = StatsReport {
        since: range.since,
        until: range.until,
        bucket: range.width,
        buckets: Vec::new(),
        counts: Vec::with_capacity(rows.len()),
        totals: StatsTotals::default(),
        providers: Vec::new(),
    };
    let mut start = range.since;
    while start < range.until {
        report.buckets.push(StatsBucket {
            start,
            total: 0,
            by_status: BTreeMap::new(),
            by_channel: BTreeMap::new(),
        });
        start += range.width.step();
    }
    let step_secs = range.width.step().num_seconds();
    let mut per_provider: BTreeMap<(Uuid, String), BTreeMap<String, i64>> = BTreeMap::new();
    for row in rows {
        let index = (row.start - range.since).num_seconds() / step_secs;
        if let Some(bucket) = usize::try_from(index)
            .ok()
            .and_then(|i| report.buckets.get_mut(i))
        {
            bucket.total += row.count;
            add(&mut bucket.by_status, &row.status, row.count);
            add(&mut bucket.by_channel, &row.channel, row.count);
        }
        report.totals.total += row.count;
        add(&mut report.totals.by_status, &row.status, row.count);
        add(&mut report.totals.by_channel, &row.channel, row.count);
        if row.provider_id != NO_PROVIDER {
            let by_status = per_provider
                .entry((row.provider_id, row.channel.clone()))
                .or_default();
            add(by_status, &row.status, row.count);
        }
        report.counts.push(StatsCount {
            start: row.start,
            provider_id: (row.provider_id != NO_PROVIDER).then_some(row.provider_id),
            channel: row.channel,
            status: row.status,
            count: row.count,
        });
    }
    let histograms: HashMap<(Uuid, String), Vec<i64>> = latencies
        .into_iter()
        .map(|(channel, provider, h)| ((provider, channel), h))
        .collect();
    let ids: Vec<Uuid> = per_provider.keys().map(|(id, _)| *id).collect();
    let labels = store::provider_labels(&state.pool, tenant.as_str(), &ids)
        .await
        .map_err(|e| ApiError::database("read provider labels", e))?;
    for ((id, channel), by_status) in per_provider {
        let label = labels.iter().find(|l| l.id == id);
        report.providers.push(ProviderStats {
            provider_id: id,
            name: label.map(|l| l.name.clone()),
            kind: label.map(|l| l.kind.clone()),
            platform: label.is_some_and(|l| l.platform),
            total: by_status.values().sum(),
            delivery_rate: delivery_rate(&by_status),
            latency_ms: histograms
                .get(&(id, channel.clone()))
                .and_then(|h| percentiles(h)),
            channel,
            by_status,
        });
    }
    Ok(Json(report))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("a valid time")
            .with_timezone(&Utc)
    }

    fn query(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_range_defaults_to_seven_days_and_rounds_out_to_whole_buckets() {
        let now = at("2026-12-01T10:30:00Z");
        let r = parse_range(&query(&[]), now).expect("valid");
        assert_eq!(r.width, BucketWidth::Day);
        assert_eq!(r.since, at("2026-11-24T00:00:00Z"));
        assert_eq!(r.until, at("2026-12-02T00:00:00Z"));
        let r = parse_range(&query(&[("bucket", "hour")]), now).expect("valid");
        assert_eq!(r.since, at("2026-11-30T10:00:00Z"));
        assert_eq!(r.until, at("2026-12-01T11:00:00Z"));
        let r = parse_range(
            &query(&[
                ("since", "2026-11-30T00:00:00Z"),
                ("until", "2026-12-01T00:00:00Z"),
            ]),
            now,
        )
        .expect("valid");
        assert_eq!(
            (r.since, r.until),
            (at("2026-11-30T00:00:00Z"), at("2026-12-01T00:00:00Z"))
        );
    }

    #[test]
    fn bad_parameters_are_named() {
        let now = at("2026-12-01T10:30:00Z");
        let fields = |q: &[(&str, &str)]| -> Vec<String> {
            parse_range(&query(q), now)
                .err()
                .unwrap_or_default()
                .into_iter()
                .map(|e| e.field)
                .collect()
        };
        assert_eq!(fields(&[("bucket", "week")]), ["bucket"]);
        assert_eq!(fields(&[("since", "yesterday")]), ["since"]);
        assert_eq!(fields(&[("until", "2026-13-01")]), ["until"]);
        assert_eq!(fields(&[("limit", "3")]), ["limit"]);
        assert_eq!(
            fields(&[
                ("since", "2026-12-01T00:00:00Z"),
                ("until", "2026-11-01T00:00:00Z")
            ]),
            ["since"]
        );
        assert_eq!(
            fields(&[("bucket", "hour"), ("since", "2026-10-01T00:00:00Z")]),
            ["since"]
        );
    }

    #[test]
    fn the_delivery_rate_counts_only_finished_messages() {
        let mut s = BTreeMap::new();
        s.insert("queued".to_string(), 10);
        assert_eq!(delivery_rate(&s), None);
        s.insert("delivered".to_string(), 6);
        s.insert("sent".to_string(), 2);
        s.insert("failed".to_string(), 2);
        assert_eq!(delivery_rate(&s), Some(0.8));
    }
}
