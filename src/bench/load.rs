//! The load: sends through the HTTP intake (closed loop at a concurrency, and open loop at a
//! fixed rate), direct publishing of envelopes to `{ns}.send`, and the end-to-end figures
//! read back from the database once every message is `sent`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::Utc;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use lapin::BasicProperties;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::domain::Content;
use crate::queue::{ENVELOPE_VERSION, Envelope};

pub const RECIPIENT: &str = "+14155550100";
const TEXT: &str = "Your verification code is 482913. It expires in 10 minutes.";

/// The body of every HTTP send.
pub fn send_body() -> Value {
    json!({"channel": "sms", "to": RECIPIENT, "content": {"text": TEXT}})
}

/// The envelope the intake would publish for [`send_body`].
pub fn envelope(tenant: &str) -> Envelope {
    Envelope {
        version: ENVELOPE_VERSION,
        id: Uuid::now_v7(),
        tenant_id: tenant.to_owned(),
        channel: "sms".into(),
        to: RECIPIENT.into(),
        content: Content {
            subject: None,
            text: Some(TEXT.into()),
            html: None,
        },
        idempotency_key: None,
        provider_id: None,
        metadata: None,
        ttl_seconds: None,
        priority: None,
        created_at: Utc::now(),
    }
}

/// Sorted latencies.
#[derive(Debug, Clone, Default)]
pub struct Latencies(Vec<Duration>);

impl Latencies {
    pub fn new(mut samples: Vec<Duration>) -> Latencies {
        samples.sort_unstable();
        Latencies(samples)
    }

    /// The nearest-rank percentile (`q` in 0..=1).
    pub fn percentile(&self, q: f64) -> Duration {
        if self.0.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((q * self.0.len() as f64).ceil() as usize).clamp(1, self.0.len());
        self.0[rank - 1]
    }
}

#[derive(Debug, Clone)]
pub struct IntakeFigures {
    pub accepted: usize,
    pub errors: usize,
    pub first_error: Option<String>,
    pub elapsed: Duration,
    pub latencies: Latencies,
}

impl IntakeFigures {
    pub fn per_sec(&self) -> f64 {
        self.accepted as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

#[derive(Clone)]
pub struct Intake {
    pub http: reqwest::Client,
    pub base: String,
    pub token: String,
    /// The body of every send ([`send_body`] unless [`Intake::with_body`]).
    body: Arc<Value>,
}

impl Intake {
    pub fn new(base: &str, token: &str, concurrency: usize) -> anyhow::Result<Intake> {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(concurrency.max(1))
            .timeout(Duration::from_secs(30))
            .build()?;
        Ok(Intake {
            http,
            base: base.to_owned(),
            token: token.to_owned(),
            body: Arc::new(send_body()),
        })
    }

    /// The same callers sending `body` instead.
    pub fn with_body(&self, body: Value) -> Intake {
        Intake {
            body: Arc::new(body),
            ..self.clone()
        }
    }

    /// One send; `Err` carries the status and body of a refusal.
    async fn send(&self, tenant: &str, body: &Value) -> Result<(), String> {
        let r = self
            .http
            .post(format!("{}/v1/send", self.base))
            .bearer_auth(&self.token)
            .header("X-Tenant-Id", tenant)
            .json(body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if r.status().as_u16() == 202 {
            // Read the body so the connection goes back to the pool.
            let _ = r.bytes().await;
            Ok(())
        } else {
            let status = r.status();
            Err(format!("{status}: {}", r.text().await.unwrap_or_default()))
        }
    }

    /// `n` sends by `concurrency` callers, each sending again as soon as it has its answer.
    pub async fn closed_loop(
        &self,
        tenant: &str,
        n: usize,
        concurrency: usize,
    ) -> anyhow::Result<IntakeFigures> {
        let next = Arc::new(AtomicUsize::new(0));
        let body = self.body.clone();
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..concurrency.max(1) {
            let (intake, next, body, tenant) =
                (self.clone(), next.clone(), body.clone(), tenant.to_owned());
            tasks.push(tokio::spawn(async move {
                let mut samples = Vec::new();
                let mut errors = Vec::new();
                while next.fetch_add(1, Ordering::Relaxed) < n {
                    let t = Instant::now();
                    match intake.send(&tenant, &body).await {
                        Ok(()) => samples.push(t.elapsed()),
                        Err(e) => errors.push(e),
                    }
                }
                (samples, errors)
            }));
        }
        let mut samples = Vec::with_capacity(n);
        let mut errors = Vec::new();
        for t in tasks {
            let (s, e) = t.await?;
            samples.extend(s);
            errors.extend(e);
        }
        Ok(IntakeFigures {
            accepted: samples.len(),
            errors: errors.len(),
            first_error: errors.into_iter().next(),
            elapsed: started.elapsed(),
            latencies: Latencies::new(samples),
        })
    }

    /// Open loop: send `i` is due at `i / rate` seconds whatever happened before, and its
    /// latency runs from when it was due, so a stall counts against every send it delays
    /// (no coordinated omission).
    pub async fn fixed_rate(
        &self,
        tenant: &str,
        rate: u32,
        duration: Duration,
    ) -> anyhow::Result<IntakeFigures> {
        let total = (f64::from(rate) * duration.as_secs_f64()).round() as usize;
        let body = self.body.clone();
        let started = tokio::time::Instant::now();
        let mut tasks = FuturesUnordered::new();
        for i in 0..total {
            let due = started + Duration::from_secs_f64(i as f64 / f64::from(rate.max(1)));
            tokio::time::sleep_until(due).await;
            let (intake, body, tenant) = (self.clone(), body.clone(), tenant.to_owned());
            tasks.push(tokio::spawn(async move {
                let result = intake.send(&tenant, &body).await;
                (result, due.elapsed())
            }));
        }
        let mut samples = Vec::with_capacity(total);
        let mut errors = Vec::new();
        while let Some(joined) = tasks.next().await {
            match joined? {
                (Ok(()), latency) => samples.push(latency),
                (Err(e), _) => errors.push(e),
            }
        }
        Ok(IntakeFigures {
            accepted: samples.len(),
            errors: errors.len(),
            first_error: errors.into_iter().next(),
            elapsed: started.elapsed(),
            latencies: Latencies::new(samples),
        })
    }
}

/// Publishes `n` envelopes of `tenant` to `{ns}.send` as a direct publisher would
/// (persistent, JSON, confirmed, many confirms in flight). Returns the time it took.
pub async fn direct_publish(
    amqp_url: &str,
    exchange: &str,
    tenant: &str,
    n: usize,
) -> anyhow::Result<Duration> {
    let connection = crate::queue::connect(amqp_url, "communication-bench-direct")
        .await
        .context("connecting to RabbitMQ")?;
    let ch = connection.create_channel().await?;
    ch.confirm_select(ConfirmSelectOptions::default()).await?;
    let started = Instant::now();
    let mut in_flight = FuturesUnordered::new();
    for _ in 0..n {
        if in_flight.len() >= super::raw::CONFIRM_WINDOW
            && let Some(confirm) = in_flight.next().await
        {
            check(confirm)?;
        }
        let env = envelope(tenant);
        let props = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/json".into())
            .with_message_id(env.id.to_string().into());
        let confirm = ch
            .basic_publish(
                exchange.into(),
                "sms".into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                &env.to_bytes(),
                props,
            )
            .await?;
        in_flight.push(confirm);
    }
    while let Some(confirm) = in_flight.next().await {
        check(confirm)?;
    }
    let elapsed = started.elapsed();
    let _ = connection.close(200, "done".into()).await;
    Ok(elapsed)
}

fn check(confirm: Result<lapin::Confirmation, lapin::Error>) -> anyhow::Result<()> {
    let confirm = confirm?;
    if confirm.is_nack() || confirm.take_message().is_some() {
        bail!("RabbitMQ refused a direct publish");
    }
    Ok(())
}

/// End-to-end figures of one tenant's messages, from the database.
#[derive(Debug, Clone, Copy)]
pub struct EndToEnd {
    pub messages: i64,
    /// From the first accept (`created_at`) to the last `sent_at`.
    pub span: Duration,
    pub accept_to_sent_p50: Duration,
    pub accept_to_sent_p99: Duration,
}

impl EndToEnd {
    pub fn per_sec(&self) -> f64 {
        self.messages as f64 / self.span.as_secs_f64().max(1e-9)
    }
}

/// Waits until `n` messages of `tenant` are `sent`; fails if one ends otherwise or if nothing
/// moves for `stall` (the worker logs say why).
pub async fn wait_all_sent(
    pool: &PgPool,
    tenant: &str,
    n: usize,
    stall: Duration,
) -> anyhow::Result<EndToEnd> {
    let mut last = -1i64;
    let mut last_progress = Instant::now();
    loop {
        let (sent, other_final): (i64, i64) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE status = 'sent'), \
                    count(*) FILTER (WHERE status IN ('failed', 'expired')) \
             FROM message_logs WHERE tenant_id = $1",
        )
        .bind(tenant)
        .fetch_one(pool)
        .await?;
        if other_final > 0 {
            bail!("{other_final} messages of {tenant} ended failed or expired, not sent");
        }
        if sent as usize >= n {
            break;
        }
        if sent != last {
            last = sent;
            last_progress = Instant::now();
        } else if last_progress.elapsed() > stall {
            bail!(
                "only {sent} of {n} messages of {tenant} were sent; no progress for {} s",
                stall.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (messages, span, p50, p99): (i64, f64, f64, f64) = sqlx::query_as(
        "SELECT count(*), \
                EXTRACT(EPOCH FROM max(sent_at) - min(created_at))::float8, \
                (percentile_cont(0.5) WITHIN GROUP \
                    (ORDER BY EXTRACT(EPOCH FROM sent_at - created_at)))::float8, \
                (percentile_cont(0.99) WITHIN GROUP \
                    (ORDER BY EXTRACT(EPOCH FROM sent_at - created_at)))::float8 \
         FROM message_logs WHERE tenant_id = $1 AND status = 'sent'",
    )
    .bind(tenant)
    .fetch_one(pool)
    .await?;
    let secs = |s: f64| Duration::from_secs_f64(s.max(0.0));
    Ok(EndToEnd {
        messages,
        span: secs(span),
        accept_to_sent_p50: secs(p50),
        accept_to_sent_p99: secs(p99),
    })
}
