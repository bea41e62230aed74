//! `communication bench --scenario stats`: how fast `GET /v1/stats` answers for a tenant with
//! millions of messages (issue 9's target: under 50 ms for 10 million).
//!
//! It starts the intake on a fresh database, fills the stats rollup the way the worker's
//! writer does (the same `RollupDelta` and upsert, one batch per simulated day) for the
//! measured tenant's messages spread over the last days plus other tenants' rows around it,
//! optionally fills `message_logs` with as many rows (`generate_series`; the stats never read
//! it, but a full table competes for the same memory), then times sequential calls of the
//! Overview's and the Providers screen's queries over HTTP and prints p50 / p99 / max.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Value, json};
use uuid::Uuid;

use super::BenchArgs;
use super::stack::{Endpoints, Stack};
use crate::store::stats::{self as rollup, LATENCY_BUCKETS, RollupDelta};

/// The tenant whose stats are timed.
const TENANT: &str = "bench-stats";
/// Other tenants sharing the tables, each with a tenth of the measured tenant's volume.
const NEIGHBOURS: usize = 9;
/// Target of issue 9.
const TARGET: Duration = Duration::from_millis(50);

/// Share of each final status among a provider's messages (per mille).
const OUTCOMES: &[(&str, i64)] = &[
    ("delivered", 800),
    ("sent", 120),
    ("failed", 40),
    ("undelivered", 20),
    ("bounced", 10),
    ("expired", 10),
];

/// Shape of the accept → sent histogram (per mille per bucket): most around 200–500 ms.
fn latency_shape() -> [i64; LATENCY_BUCKETS] {
    let mut h = [0; LATENCY_BUCKETS];
    for (ms, share) in [
        (40, 20),
        (90, 60),
        (180, 170),
        (280, 300),
        (450, 250),
        (700, 100),
        (1_200, 50),
        (2_500, 30),
        (6_000, 15),
        (40_000, 5),
    ] {
        h[rollup::latency_bucket(ms)] += share;
    }
    h
}

struct Provider {
    id: Uuid,
    channel: &'static str,
    /// Per mille of the channel's messages.
    share: i64,
}

/// Creates the tenant's providers through the API (so `/v1/stats` can name them).
async fn create_providers(stack: &Stack, tenant: &str) -> anyhow::Result<Vec<Provider>> {
    let http = reqwest::Client::new();
    let mut out = Vec::new();
    for (name, channel, share) in [
        ("sms-main", "sms", 900),
        ("sms-backup", "sms", 100),
        ("email-main", "email", 950),
        ("email-backup", "email", 50),
    ] {
        let r = http
            .post(format!("{}/v1/providers", stack.intake_base))
            .bearer_auth(&stack.service_token)
            .header("X-Tenant-Id", tenant)
            .json(&json!({"name": name, "channel": channel, "kind": "system",
                          "config": {"behavior": "deliver"}}))
            .send()
            .await?;
        if r.status().as_u16() != 201 {
            bail!("creating provider {name} answered {}", r.status());
        }
        let body: Value = r.json().await?;
        let id = body["id"]
            .as_str()
            .and_then(|s| Uuid::parse_str(s).ok())
            .context("provider id")?;
        out.push(Provider { id, channel, share });
    }
    Ok(out)
}

/// Writes `messages` messages of `tenant` accepted over `days` days before `now` into the
/// rollup, as the writer leaves it: each message moved queued → sending → its outcome (so the
/// zero rows of the passing statuses exist too), one transaction and upsert per day.
async fn fill_rollup(
    pool: &sqlx::PgPool,
    tenant: &str,
    providers: &[Provider],
    messages: u64,
    days: u32,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    let hours = i64::from(days) * 24;
    let start = rollup::hour_of(now) - TimeDelta::hours(hours - 1);
    // A day/night rhythm: weights 1..=3 over the day.
    let weight = |h: i64| 1 + (h % 24 - 12).abs() / 6;
    let total_weight: i64 = (0..hours).map(weight).sum();
    let shape = latency_shape();
    let mut left = messages as i64;
    let slots = rollup::SLOTS as usize;
    // Like the writer: each hour's messages spread over every slot, and the statuses a
    // message passes through (queued, sending) left as zero rows, written by one batch and
    // moved away by a later one.
    let fresh = || -> Vec<RollupDelta> { (0..slots).map(|_| RollupDelta::default()).collect() };
    let (mut passing, mut outcome) = (fresh(), fresh());
    let share =
        |k: i64, slot: usize| k / slots as i64 + i64::from((slot as i64) < k % slots as i64);
    for h in 0..hours {
        let at = start + TimeDelta::hours(h);
        let in_hour = if h == hours - 1 {
            left
        } else {
            messages as i64 * weight(h) / total_weight
        };
        left -= in_hour;
        let sms = in_hour * 600 / 1000;
        for (channel, in_channel) in [("sms", sms), ("email", in_hour - sms)] {
            for slot in 0..slots {
                passing[slot].count(tenant, at, channel, None, "queued", 1);
                outcome[slot].count(tenant, at, channel, None, "queued", -1);
            }
            let mut channel_left = in_channel;
            let mine: Vec<&Provider> = providers.iter().filter(|p| p.channel == channel).collect();
            for (i, p) in mine.iter().enumerate() {
                // The last provider takes the rounding remainder, so every message counts.
                let n = if i + 1 == mine.len() {
                    channel_left
                } else {
                    in_channel * p.share / 1000
                };
                channel_left -= n;
                let mut sent = vec![0i64; slots];
                let mut provider_left = n;
                for (j, (status, per_mille)) in OUTCOMES.iter().enumerate() {
                    let k = if j + 1 == OUTCOMES.len() {
                        provider_left
                    } else {
                        n * per_mille / 1000
                    };
                    provider_left -= k;
                    for slot in 0..slots {
                        let part = share(k, slot);
                        outcome[slot].count(tenant, at, channel, Some(p.id), status, part);
                        if !matches!(*status, "failed" | "expired") {
                            sent[slot] += part;
                        }
                    }
                }
                for slot in 0..slots {
                    passing[slot].count(tenant, at, channel, Some(p.id), "sending", 1);
                    outcome[slot].count(tenant, at, channel, Some(p.id), "sending", -1);
                    let histogram = shape.map(|x| sent[slot] * x / 1000);
                    outcome[slot].add_latencies(tenant, at, channel, p.id, &histogram);
                }
            }
        }
        if h % 24 == 23 || h == hours - 1 {
            let mut tx = pool.begin().await?;
            for (slot, delta) in passing.iter().chain(outcome.iter()).enumerate() {
                rollup::apply_delta(&mut tx, delta, (slot % slots) as i16).await?;
            }
            tx.commit().await?;
            (passing, outcome) = (fresh(), fresh());
        }
    }
    Ok(())
}

/// `messages` rows of `message_logs` for the tenant over `days` days, in daily statements.
async fn fill_logs(
    pool: &sqlx::PgPool,
    tenant: &str,
    messages: u64,
    days: u32,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    let per_day = messages / u64::from(days.max(1));
    for d in 0..days {
        let day_start = now - TimeDelta::days(i64::from(d) + 1);
        sqlx::query(
            "INSERT INTO message_logs (id, tenant_id, channel, recipient, status, attempts, \
                                       created_at, updated_at, sent_at, completed_at) \
             SELECT gen_random_uuid(), $1, CASE WHEN i % 5 < 3 THEN 'sms' ELSE 'email' END, \
                    '+1415555' || lpad((i % 10000)::text, 4, '0'), \
                    CASE WHEN i % 25 = 0 THEN 'failed' ELSE 'delivered' END, 1, \
                    $2 + (i * interval '86400 seconds' / $3), \
                    $2 + (i * interval '86400 seconds' / $3), \
                    $2 + (i * interval '86400 seconds' / $3) + interval '300 ms', \
                    $2 + (i * interval '86400 seconds' / $3) + interval '300 ms' \
             FROM generate_series(1, $3::bigint) AS i",
        )
        .bind(tenant)
        .bind(day_start)
        .bind(per_day as i64)
        .execute(pool)
        .await?;
        eprintln!("bench: message_logs day {}/{days} filled", d + 1);
    }
    Ok(())
}

/// Latencies of `calls` sequential GETs of `path` (after a short warm-up).
async fn time_calls(stack: &Stack, path: &str, calls: usize) -> anyhow::Result<Vec<Duration>> {
    let http = reqwest::Client::new();
    let url = format!("{}{path}", stack.intake_base);
    let mut out = Vec::with_capacity(calls);
    for i in 0..calls + 5 {
        let started = Instant::now();
        let r = http
            .get(&url)
            .bearer_auth(&stack.service_token)
            .header("X-Tenant-Id", TENANT)
            .send()
            .await?;
        let status = r.status();
        let body = r.bytes().await?;
        let took = started.elapsed();
        if !status.is_success() {
            bail!(
                "{path} answered {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        if i >= 5 {
            out.push(took);
        }
    }
    out.sort();
    Ok(out)
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// Runs the scenario and prints its report.
pub async fn run(args: &BenchArgs) -> anyhow::Result<()> {
    if args.stats_days == 0 || args.stats_calls == 0 {
        bail!("--stats-days and --stats-calls must be at least 1");
    }
    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| format!("bench-{}", &Uuid::new_v4().simple().to_string()[..8]));
    let endpoints = Endpoints::from_env()?;
    eprintln!("bench: starting the intake in namespace {namespace}");
    let stack = Stack::start(endpoints, &namespace, args.prefetch, &args.log_level).await?;
    let result = measure(args, &stack).await;
    stack.teardown(args.keep).await;
    print!("{}", result?);
    Ok(())
}

async fn measure(args: &BenchArgs, stack: &Stack) -> anyhow::Result<String> {
    let now = Utc::now();
    let (messages, days) = (args.stats_messages, args.stats_days);
    let started = Instant::now();
    let providers = create_providers(stack, TENANT).await?;
    fill_rollup(&stack.pool, TENANT, &providers, messages, days, now).await?;
    for n in 0..NEIGHBOURS {
        let tenant = format!("bench-neighbour-{n}");
        let theirs = create_providers(stack, &tenant).await?;
        fill_rollup(&stack.pool, &tenant, &theirs, messages / 10, days, now).await?;
    }
    let rollup_fill = started.elapsed();
    eprintln!("bench: rollup filled in {rollup_fill:.1?}");
    let logs_fill = if args.stats_fill_logs {
        let started = Instant::now();
        fill_logs(&stack.pool, TENANT, messages, days, now).await?;
        Some(started.elapsed())
    } else {
        None
    };
    sqlx::query("ANALYZE").execute(&stack.pool).await?;
    let counted: i64 = sqlx::query_scalar(
        "SELECT COALESCE(SUM(count), 0)::bigint FROM message_stats_hourly WHERE tenant_id = $1",
    )
    .bind(TENANT)
    .fetch_one(&stack.pool)
    .await?;
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM message_stats_hourly")
        .fetch_one(&stack.pool)
        .await?;
    let log_rows: i64 = sqlx::query_scalar("SELECT count(*) FROM message_logs")
        .fetch_one(&stack.pool)
        .await?;

    let since =
        |d: i64| (now - TimeDelta::days(d)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let overview = format!("/v1/stats?bucket=day&since={}", since(i64::from(days)));
    let queries = [
        (format!("/v1/stats {days} days by day"), overview.clone()),
        (
            "/v1/stats 7 days by day".to_owned(),
            "/v1/stats?bucket=day".to_owned(),
        ),
        (
            "/v1/stats 7 days by hour".to_owned(),
            format!("/v1/stats?bucket=hour&since={}", since(7)),
        ),
        (
            "/v1/stats/providers".to_owned(),
            "/v1/stats/providers".to_owned(),
        ),
    ];
    let mut out = String::new();
    let _ = writeln!(
        out,
        "communication bench --scenario stats ({})",
        now.to_rfc3339()
    );
    let _ = writeln!(
        out,
        "load average {}; tenant {TENANT}: {counted} messages over {days} days in the rollup, \
         {NEIGHBOURS} other tenants with {} each; {rows} rollup rows in all; \
         {log_rows} message_logs rows",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
        messages / 10,
    );
    let _ = writeln!(
        out,
        "fill: rollup {rollup_fill:.1?}{}",
        logs_fill
            .map(|d| format!(", message_logs {d:.1?}"))
            .unwrap_or_default()
    );
    let _ = writeln!(out);
    let mut overview_p99 = Duration::MAX;
    for (label, path) in &queries {
        let took = time_calls(stack, path, args.stats_calls).await?;
        let (p50, p99) = (quantile(&took, 0.5), quantile(&took, 0.99));
        if path == &overview {
            overview_p99 = p99;
        }
        let _ = writeln!(
            out,
            "{:<44} p50 {} / p99 {} / max {} ({} calls)",
            format!("GET {label}"),
            ms(p50),
            ms(p99),
            ms(took.last().copied().unwrap_or_default()),
            took.len()
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<44} {} p99 {}",
        format!("target /v1/stats {days} days < {} ms", TARGET.as_millis()),
        if overview_p99 < TARGET {
            "PASS"
        } else {
            "MISS"
        },
        ms(overview_p99)
    );
    Ok(out)
}
