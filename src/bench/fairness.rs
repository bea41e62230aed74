//! `communication bench --scenario fairness` (issue 11): does one tenant's burst delay another
//! tenant's one-time codes?
//!
//! Tenant A publishes `--messages` envelopes to `{ns}.send` (routing key `sms`, the entry
//! queue) as fast as the broker confirms them, all `normal` in one run and all `high` in
//! another, through a `system` provider answering after 50 ms. Meanwhile tenant B sends 5
//! `high` codes per second over HTTP until A's burst is drained. Printed: B's accept→sent
//! p50/p99 during A's burst, and A's drain rate (first accept to last `sent`) against A alone,
//! once with lanes on and once with `COMMUNICATION_LANES=false` (one lane, as before lanes).

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use lapin::BasicProperties;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::BenchArgs;
use super::load::{self, EndToEnd};
use super::stack::{Endpoints, Stack};
use crate::domain::Priority;

/// The `system` provider's answer time.
const PROVIDER_LATENCY_MS: u64 = 50;
/// B's codes per second.
const B_RATE: u64 = 5;

/// One measured run.
struct Run {
    label: String,
    a: EndToEnd,
    /// B's accept→sent p50 and p99, and how many B sent (None: A alone).
    b: Option<(Duration, Duration, usize)>,
}

/// Runs the scenario and prints its report.
pub async fn run(args: &BenchArgs) -> anyhow::Result<()> {
    if args.messages == 0 {
        bail!("--messages must be at least 1");
    }
    let endpoints = Endpoints::from_env()?;
    let mut runs = Vec::new();
    // Every run on a fresh stack (database, namespace, processes): in one database the drain
    // rate fell run after run as the tables grew, which biased "A vs alone" by run order.
    for lanes in [true, false] {
        for priority in [Priority::Normal, Priority::High] {
            // A alone (lanes on only: the undisturbed drain rate), then A with B.
            for with_b in if lanes { vec![false, true] } else { vec![true] } {
                let namespace =
                    format!("bench-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
                let env = vec![("COMMUNICATION_LANES".to_owned(), lanes.to_string())];
                let mut stack = Stack::start_with_env(
                    endpoints.clone(),
                    &namespace,
                    args.prefetch,
                    &args.log_level,
                    env,
                )
                .await?;
                let label = format!(
                    "lanes {}, A {}{}",
                    on_off(lanes),
                    priority.as_str(),
                    if with_b { " + B" } else { " alone" }
                );
                eprintln!("bench: {label} (namespace {namespace})");
                let result = measure(args, &mut stack, priority, with_b).await;
                stack.teardown(args.keep).await;
                let (a, b) = result?;
                runs.push(Run { label, a, b });
            }
        }
    }
    print!("{}", render(args, &runs));
    Ok(())
}

fn on_off(lanes: bool) -> &'static str {
    if lanes { "on" } else { "off" }
}

/// One run on a fresh stack: A's drain, and B's accept→sent p50/p99 and count when B sends.
async fn measure(
    args: &BenchArgs,
    stack: &mut Stack,
    priority: Priority,
    with_b: bool,
) -> anyhow::Result<(EndToEnd, Option<(Duration, Duration, usize)>)> {
    stack.set_workers(1).await?;
    let (a, b) = ("a", "b");
    provider(stack, a).await?;
    provider(stack, b).await?;
    let stop = CancellationToken::new();
    let b_task = with_b.then(|| {
        let (base, token, stop) = (
            stack.intake_base.clone(),
            stack.service_token.clone(),
            stop.clone(),
        );
        tokio::spawn(async move { send_codes(&base, &token, b, stop).await })
    });
    publish_burst(stack, a, priority, args.messages).await?;
    let drained = load::wait_all_sent(&stack.pool, a, args.messages, Duration::from_secs(60)).await;
    stop.cancel();
    let b_sent = match b_task {
        Some(task) => Some(task.await.context("B's sender")??),
        None => None,
    };
    let a = drained?;
    let b = match b_sent {
        Some(count) => {
            let e = load::wait_all_sent(&stack.pool, b, count, Duration::from_secs(30)).await?;
            Some((e.accept_to_sent_p50, e.accept_to_sent_p99, count))
        }
        None => None,
    };
    Ok((a, b))
}

/// The tenant's `system` SMS provider with [`PROVIDER_LATENCY_MS`].
async fn provider(stack: &Stack, tenant: &str) -> anyhow::Result<()> {
    let r = reqwest::Client::new()
        .post(format!("{}/v1/providers", stack.intake_base))
        .bearer_auth(&stack.service_token)
        .header("X-Tenant-Id", tenant)
        .json(
            &json!({"name": "bench-system", "channel": "sms", "kind": "system",
                      "config": {"behavior": "deliver", "latency_ms": PROVIDER_LATENCY_MS}}),
        )
        .send()
        .await?;
    if r.status().as_u16() != 201 {
        bail!("creating the system provider answered {}", r.status());
    }
    Ok(())
}

/// A's burst: `n` envelopes to the entry queue, many confirms in flight.
async fn publish_burst(
    stack: &Stack,
    tenant: &str,
    priority: Priority,
    n: usize,
) -> anyhow::Result<()> {
    let connection = crate::queue::connect(&stack.endpoints.amqp_url, "communication-bench-burst")
        .await
        .context("connecting to RabbitMQ")?;
    let ch = connection.create_channel().await?;
    ch.confirm_select(ConfirmSelectOptions::default()).await?;
    let exchange = stack.topology.send_exchange();
    let mut in_flight = FuturesUnordered::new();
    for _ in 0..n {
        if in_flight.len() >= super::raw::CONFIRM_WINDOW
            && let Some(confirm) = in_flight.next().await
        {
            check(confirm)?;
        }
        let mut env = load::envelope(tenant);
        env.priority = Some(priority);
        let props = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/json".into())
            .with_message_id(env.id.to_string().into());
        let confirm = ch
            .basic_publish(
                exchange.as_str().into(),
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
    let _ = connection.close(200, "done".into()).await;
    Ok(())
}

fn check(confirm: Result<lapin::Confirmation, lapin::Error>) -> anyhow::Result<()> {
    let confirm = confirm?;
    if confirm.is_nack() || confirm.take_message().is_some() {
        bail!("RabbitMQ refused a publish of the burst");
    }
    Ok(())
}

/// B: one `high` code every 200 ms over HTTP until `stop`; how many were accepted.
async fn send_codes(
    base: &str,
    token: &str,
    tenant: &str,
    stop: CancellationToken,
) -> anyhow::Result<usize> {
    let http = reqwest::Client::new();
    let mut tick = tokio::time::interval(Duration::from_millis(1000 / B_RATE));
    let mut accepted = 0;
    let started = Instant::now();
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        let r = http
            .post(format!("{base}/v1/send"))
            .bearer_auth(token)
            .header("X-Tenant-Id", tenant)
            .json(
                &json!({"channel": "sms", "to": load::RECIPIENT, "priority": "high",
                          "content": {"text": "Your sign-in code is 246810"}}),
            )
            .send()
            .await;
        match r {
            Ok(r) if r.status().as_u16() == 202 => accepted += 1,
            Ok(r) => bail!("B's send answered {}", r.status()),
            Err(e) => bail!("B's send failed: {e}"),
        }
    }
    if accepted == 0 {
        bail!(
            "B sent nothing in {:?} (the burst drained too fast: raise --messages)",
            started.elapsed()
        );
    }
    Ok(accepted)
}

fn render(args: &BenchArgs, runs: &[Run]) -> String {
    use std::fmt::Write as _;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mut out = format!(
        "fairness: A bursts {} sms through `system` ({} ms), B sends {} high/s over HTTP\n\
         {:<28} {:>10} {:>10} {:>12} {:>12} {:>6}\n",
        args.messages,
        PROVIDER_LATENCY_MS,
        B_RATE,
        "run",
        "A msg/s",
        "A vs alone",
        "B p50 ms",
        "B p99 ms",
        "B n"
    );
    for run in runs {
        let alone = runs
            .iter()
            .find(|r| {
                r.b.is_none()
                    && r.label
                        .ends_with(&format!("A {} alone", priority_of(&run.label)))
            })
            .map(|r| r.a.per_sec());
        let ratio = alone
            .map(|x| format!("{:.0}%", 100.0 * run.a.per_sec() / x.max(1e-9)))
            .unwrap_or_else(|| "-".into());
        let (p50, p99, n) = match run.b {
            Some((p50, p99, n)) => (
                format!("{:.0}", ms(p50)),
                format!("{:.0}", ms(p99)),
                n.to_string(),
            ),
            None => ("-".into(), "-".into(), "-".into()),
        };
        let _ = writeln!(
            out,
            "{:<28} {:>10.0} {:>10} {:>12} {:>12} {:>6}",
            run.label,
            run.a.per_sec(),
            ratio,
            p50,
            p99,
            n
        );
    }
    let _ = writeln!(
        out,
        "targets: B p99 < 1000 ms with lanes on (A normal and A high); A with B >= 90% of A alone"
    );
    out
}

fn priority_of(label: &str) -> &str {
    if label.contains("A high") {
        "high"
    } else {
        "normal"
    }
}
