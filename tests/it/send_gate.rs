//! The send's one Redis script (`intake::send_gate`) against the real Redis, outcome by
//! outcome: accepted (claimed, counted, marked, laned), a used key (nothing spent), over the
//! quota or the rate (nothing written), fair-share demotion, no lane to decide, and the undo of
//! a failed publish. Then through HTTP: one Redis command per send (MONITOR), the lane a send
//! asks for when Redis is down, and `COMMUNICATION_LANES=false`.

use std::time::Duration;

use chrono::{TimeZone, Utc};
use communication::config::LaneSettings;
use communication::domain::{Channel, Priority, TenantId};
use communication::intake::idempotency::{self, Claim};
use communication::intake::send_gate::{self, Outcome, SendAsk};
use communication::lanes::LaneDecider;
use communication::limits::{OVER_QUOTA, OVER_RATE, TenantLimits, rate_key, usage_key};
use redis::aio::MultiplexedConnection;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use uuid::Uuid;

use crate::common::{Options, TestApp};

const REDIS: &str = "redis://127.0.0.1:6379";

async fn redis() -> MultiplexedConnection {
    redis::Client::open(REDIS)
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("redis reachable")
}

async fn get(conn: &mut MultiplexedConnection, key: &str) -> Option<String> {
    redis::cmd("GET")
        .arg(key)
        .query_async(conn)
        .await
        .expect("GET")
}

async fn ttl(conn: &mut MultiplexedConnection, key: &str) -> i64 {
    redis::cmd("TTL")
        .arg(key)
        .query_async(conn)
        .await
        .expect("TTL")
}

/// Removes every key of the namespace.
async fn forget(conn: &mut MultiplexedConnection, ns: &str) {
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{ns}:*"))
        .query_async(conn)
        .await
        .expect("KEYS");
    if !keys.is_empty() {
        let _: i64 = redis::cmd("DEL")
            .arg(&keys)
            .query_async(conn)
            .await
            .expect("DEL");
    }
}

/// One send of the test: its keys and what it asks.
struct Send {
    ns: String,
    tenant: TenantId,
    id: Uuid,
    marker: String,
    idem: Option<String>,
    fingerprint: String,
}

impl Send {
    fn new(ns: &str, key: Option<&str>, fingerprint: &str) -> Send {
        let id = Uuid::now_v7();
        Send {
            ns: ns.to_owned(),
            tenant: TenantId::parse("acme").expect("tenant"),
            id,
            marker: idempotency::marker_key(ns, "acme", id),
            idem: key.map(|k| idempotency::idem_key(ns, "acme", k)),
            fingerprint: fingerprint.to_owned(),
        }
    }

    fn ask<'a>(
        &'a self,
        now: chrono::DateTime<Utc>,
        limits: TenantLimits,
        lane: Option<&'a communication::lanes::LaneAsk>,
    ) -> SendAsk<'a> {
        SendAsk {
            namespace: &self.ns,
            tenant: self.tenant.as_str(),
            channel: Channel::Sms,
            id: self.id,
            now,
            idempotency: self.idem.as_deref().map(|k| (k, self.fingerprint.as_str())),
            marker: &self.marker,
            marker_value: "{\"marker\":true}",
            limits,
            lane,
        }
    }
}

fn namespace() -> String {
    format!("test-{}", Uuid::new_v4().simple())
}

/// A fixed instant, so every send of a test falls in the same second.
fn noon() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 1, 12, 0, 0)
        .single()
        .expect("time")
}

fn decider(ns: &str, share_high: u32, share_normal: u32) -> LaneDecider {
    let settings = LaneSettings {
        share_high,
        share_normal,
        ..LaneSettings::default()
    };
    LaneDecider::new(settings, ns, None)
}

#[tokio::test]
async fn an_accepted_send_is_claimed_counted_marked_and_laned_and_its_replay_spends_nothing() {
    let mut conn = redis().await;
    let ns = namespace();
    let now = noon();
    let lanes = decider(&ns, 20, 200);
    let first = Send::new(&ns, Some("order-1"), "fp-1");
    let ask = lanes
        .ask(
            &first.tenant,
            Channel::Sms,
            Priority::Normal,
            now.timestamp(),
        )
        .expect("a lane to decide");
    let outcome = send_gate::admit(
        &mut conn,
        &first.ask(now, TenantLimits::default(), Some(&ask)),
    )
    .await
    .expect("script");
    let Outcome::Accepted { lane, .. } = outcome else {
        panic!("not accepted: {outcome:?}");
    };
    assert_eq!(lane, Some(2), "normal asked, normal taken");
    let idem = first.idem.as_deref().expect("key");
    assert_eq!(
        get(&mut conn, idem).await,
        Some(format!("pending|fp-1|{}", first.id))
    );
    assert!(ttl(&mut conn, idem).await > 23 * 3600, "claimed for 24 h");
    assert_eq!(
        get(&mut conn, &first.marker).await.as_deref(),
        Some("{\"marker\":true}")
    );
    assert!(ttl(&mut conn, &first.marker).await > 23 * 3600);
    let usage = usage_key(&ns, "acme", Channel::Sms, now.date_naive());
    assert_eq!(get(&mut conn, &usage).await.as_deref(), Some("1"));
    assert!(ttl(&mut conn, &usage).await > 47 * 3600, "kept two days");
    assert_eq!(
        get(&mut conn, &ask.keys[0]).await.as_deref(),
        Some("1"),
        "the normal lane counted it"
    );
    assert!(
        get(&mut conn, &rate_key(&ns, "acme", now.timestamp()))
            .await
            .is_none(),
        "no rate window without a rate"
    );

    // The same key again, in flight and then done: the stored claim, and nothing spent.
    for done in [false, true] {
        if done {
            idempotency::complete(&mut conn, idem, "fp-1", first.id)
                .await
                .expect("complete");
        }
        let again = Send::new(&ns, Some("order-1"), "fp-other");
        let outcome = send_gate::admit(
            &mut conn,
            &again.ask(now, TenantLimits::default(), Some(&ask)),
        )
        .await
        .expect("script");
        assert_eq!(
            outcome,
            Outcome::Used(Claim {
                done,
                fingerprint: "fp-1".into(),
                id: first.id
            })
        );
        assert!(get(&mut conn, &again.marker).await.is_none(), "no marker");
    }
    assert!(
        ttl(&mut conn, idem).await > 23 * 3600,
        "completing kept the TTL"
    );
    assert_eq!(get(&mut conn, &usage).await.as_deref(), Some("1"));
    assert_eq!(get(&mut conn, &ask.keys[0]).await.as_deref(), Some("1"));
    forget(&mut conn, &ns).await;
}

#[tokio::test]
async fn over_the_quota_or_the_rate_the_script_writes_nothing() {
    let mut conn = redis().await;
    let ns = namespace();
    let now = noon();
    let quota = TenantLimits {
        daily_quota_sms: Some(1),
        ..TenantLimits::default()
    };
    let first = Send::new(&ns, Some("q-1"), "fp");
    assert!(matches!(
        send_gate::admit(&mut conn, &first.ask(now, quota, None))
            .await
            .expect("script"),
        Outcome::Accepted { lane: None, .. }
    ));
    let second = Send::new(&ns, Some("q-2"), "fp");
    assert_eq!(
        send_gate::admit(&mut conn, &second.ask(now, quota, None))
            .await
            .expect("script"),
        Outcome::Refused(OVER_QUOTA)
    );
    let second_idem = second.idem.as_deref().expect("key");
    assert!(
        get(&mut conn, second_idem).await.is_none(),
        "a refused key is not claimed, so it can be retried"
    );
    assert!(get(&mut conn, &second.marker).await.is_none());
    let usage = usage_key(&ns, "acme", Channel::Sms, now.date_naive());
    assert_eq!(get(&mut conn, &usage).await.as_deref(), Some("1"));
    // Email has no quota.
    let email = Send::new(&ns, None, "fp");
    let mut email_ask = email.ask(now, quota, None);
    email_ask.channel = Channel::Email;
    assert!(matches!(
        send_gate::admit(&mut conn, &email_ask)
            .await
            .expect("script"),
        Outcome::Accepted { .. }
    ));

    // An accept rate of 2: the third send of the second is refused, the next second admits.
    let rate = TenantLimits {
        accept_rate_per_second: Some(2),
        ..TenantLimits::default()
    };
    let mut verdicts = Vec::new();
    for _ in 0..3 {
        let send = Send::new(&ns, None, "fp");
        verdicts.push(
            send_gate::admit(&mut conn, &send.ask(now, rate, None))
                .await
                .expect("script"),
        );
    }
    assert!(matches!(verdicts[0], Outcome::Accepted { .. }));
    assert!(matches!(verdicts[1], Outcome::Accepted { .. }));
    assert_eq!(verdicts[2], Outcome::Refused(OVER_RATE));
    let window = rate_key(&ns, "acme", now.timestamp());
    assert_eq!(get(&mut conn, &window).await.as_deref(), Some("2"));
    assert!(ttl(&mut conn, &window).await <= 2);
    assert_eq!(
        get(&mut conn, &usage).await.as_deref(),
        Some("3"),
        "1 + the 2 admitted; the refused one counted nothing"
    );
    let later = Send::new(&ns, None, "fp");
    let next_second = now + chrono::Duration::seconds(1);
    assert!(matches!(
        send_gate::admit(&mut conn, &later.ask(next_second, rate, None))
            .await
            .expect("script"),
        Outcome::Accepted { .. }
    ));
    // The quota is checked first: over both, the refusal is the quota's.
    let both = TenantLimits {
        accept_rate_per_second: Some(2),
        daily_quota_sms: Some(1),
        ..TenantLimits::default()
    };
    let over = Send::new(&ns, None, "fp");
    assert_eq!(
        send_gate::admit(&mut conn, &over.ask(now, both, None))
            .await
            .expect("script"),
        Outcome::Refused(OVER_QUOTA)
    );
    forget(&mut conn, &ns).await;
}

#[tokio::test]
async fn beyond_its_share_a_send_is_demoted_a_lane_at_a_time_down_to_bulk() {
    let mut conn = redis().await;
    let ns = namespace();
    let now = noon();
    let lanes = decider(&ns, 2, 1);
    let tenant = TenantId::parse("acme").expect("tenant");
    let mut taken = Vec::new();
    for _ in 0..5 {
        let send = Send::new(&ns, None, "fp");
        let ask = lanes
            .ask(&tenant, Channel::Sms, Priority::High, now.timestamp())
            .expect("a lane to decide");
        let Outcome::Accepted { lane, .. } = send_gate::admit(
            &mut conn,
            &send.ask(now, TenantLimits::default(), Some(&ask)),
        )
        .await
        .expect("script") else {
            panic!("not accepted");
        };
        taken.push(lanes.answered(Channel::Sms, &ask, lane.expect("decided")));
    }
    use Priority::{Bulk, High, Normal};
    assert_eq!(taken, [High, High, Normal, Bulk, Bulk]);
    // The router's own round trip decides with the same counters.
    let second = chrono::Utc::now().timestamp();
    let fresh = decider(&ns, 1, 1);
    let ask = fresh
        .ask(&tenant, Channel::Email, Priority::High, second)
        .expect("ask");
    let send = Send::new(&ns, None, "fp");
    let mut email = send.ask(now, TenantLimits::default(), Some(&ask));
    email.channel = Channel::Email;
    let Outcome::Accepted { lane, .. } = send_gate::admit(&mut conn, &email).await.expect("script")
    else {
        panic!("not accepted");
    };
    assert_eq!(lane, Some(1));
    // Bulk asked or lanes off: nothing to ask Redis.
    assert_eq!(
        lanes.ask(&tenant, Channel::Sms, Bulk, second),
        Err(Bulk),
        "bulk is the floor"
    );
    let off = LaneDecider::new(
        LaneSettings {
            enabled: false,
            ..LaneSettings::default()
        },
        &ns,
        None,
    );
    assert_eq!(off.ask(&tenant, Channel::Sms, High, second), Err(Normal));
    forget(&mut conn, &ns).await;
}

#[tokio::test]
async fn undoing_a_failed_publish_gives_the_units_back_and_releases_only_its_own_claim() {
    let mut conn = redis().await;
    let ns = namespace();
    let now = noon();
    let limits = TenantLimits {
        accept_rate_per_second: Some(5),
        daily_quota_sms: Some(5),
        ..TenantLimits::default()
    };
    let usage = usage_key(&ns, "acme", Channel::Sms, now.date_naive());
    let window = rate_key(&ns, "acme", now.timestamp());
    let kept = Send::new(&ns, None, "fp");
    assert!(matches!(
        send_gate::admit(&mut conn, &kept.ask(now, limits, None))
            .await
            .expect("script"),
        Outcome::Accepted { .. }
    ));
    let send = Send::new(&ns, Some("undo-1"), "fp");
    let Outcome::Accepted { counted, .. } =
        send_gate::admit(&mut conn, &send.ask(now, limits, None))
            .await
            .expect("script")
    else {
        panic!("not accepted");
    };
    assert_eq!(get(&mut conn, &usage).await.as_deref(), Some("2"));
    assert_eq!(get(&mut conn, &window).await.as_deref(), Some("2"));
    let idem = send.idem.as_deref().expect("key");
    send_gate::undo(
        &mut conn,
        &counted,
        &send.marker,
        Some((idem, "fp")),
        send.id,
    )
    .await
    .expect("undo");
    assert_eq!(get(&mut conn, &usage).await.as_deref(), Some("1"));
    assert_eq!(get(&mut conn, &window).await.as_deref(), Some("1"));
    assert!(get(&mut conn, idem).await.is_none(), "released");
    assert!(get(&mut conn, &send.marker).await.is_none());
    assert!(get(&mut conn, &kept.marker).await.is_some());

    // A claim that is no longer this send's (another request claimed the key since) stays,
    // and a counter is never taken below zero.
    let again = Send::new(&ns, Some("undo-2"), "fp");
    let Outcome::Accepted { counted, .. } =
        send_gate::admit(&mut conn, &again.ask(now, limits, None))
            .await
            .expect("script")
    else {
        panic!("not accepted");
    };
    let idem = again.idem.as_deref().expect("key");
    let _: () = redis::cmd("SET")
        .arg(idem)
        .arg("pending|other|0190a1b2-0000-7000-8000-000000000000")
        .query_async(&mut conn)
        .await
        .expect("SET");
    let _: () = redis::cmd("DEL")
        .arg(&usage)
        .query_async(&mut conn)
        .await
        .expect("DEL");
    send_gate::undo(
        &mut conn,
        &counted,
        &again.marker,
        Some((idem, "fp")),
        again.id,
    )
    .await
    .expect("undo");
    assert!(get(&mut conn, idem).await.is_some(), "not ours to release");
    assert!(get(&mut conn, &usage).await.is_none(), "never below zero");
    assert!(get(&mut conn, &again.marker).await.is_none());
    // Without a key or a rate.
    let plain = Send::new(&ns, None, "fp");
    let Outcome::Accepted { counted, .. } =
        send_gate::admit(&mut conn, &plain.ask(now, TenantLimits::default(), None))
            .await
            .expect("script")
    else {
        panic!("not accepted");
    };
    send_gate::undo(&mut conn, &counted, &plain.marker, None, plain.id)
        .await
        .expect("undo");
    assert!(get(&mut conn, &plain.marker).await.is_none());
    assert_eq!(get(&mut conn, &usage).await.as_deref(), Some("0"));
    forget(&mut conn, &ns).await;
}

/// Commands other clients send to Redis that mention `needle` while `during` runs (Redis's
/// MONITOR; what scripts run inside Redis is left out).
pub(crate) async fn commands_during<F: std::future::Future<Output = ()>>(
    needle: &str,
    during: F,
) -> Vec<String> {
    let stream = tokio::net::TcpStream::connect("127.0.0.1:6379")
        .await
        .expect("redis reachable");
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    write.write_all(b"MONITOR\r\n").await.expect("monitor");
    let ok = lines.next_line().await.expect("read").expect("line");
    assert_eq!(ok, "+OK");
    during.await;
    // A marker command after the sends: everything before it has been seen once it is.
    let end = format!("{needle}-end");
    let mut conn = redis().await;
    let _: String = redis::cmd("ECHO")
        .arg(&end)
        .query_async(&mut conn)
        .await
        .expect("ECHO");
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let line = tokio::time::timeout_at(deadline, lines.next_line())
            .await
            .expect("the marker arrives")
            .expect("read")
            .expect("line");
        if line.contains(&end) {
            break;
        }
        if line.contains(needle) && !line.contains(" lua]") {
            seen.push(line);
        }
    }
    seen
}

fn sms(text: &str, priority: Option<&str>) -> Value {
    let mut body = json!({"channel": "sms", "to": "+14155550100", "content": {"text": text}});
    if let Some(p) = priority {
        body["priority"] = json!(p);
    }
    body
}

#[tokio::test]
async fn a_send_is_one_redis_command_and_a_send_with_a_key_one_more_after_the_confirm() {
    let app = TestApp::spawn_with(Options {
        worker: false,
        ..Default::default()
    })
    .await;
    // Loads the script into Redis (a first EVALSHA may need a SCRIPT LOAD).
    app.send_ok("acme", sms("warm", None)).await;
    let ns = app.namespace.clone();
    let seen = commands_during(&ns, async {
        app.send_ok("acme", sms("one", Some("high"))).await;
    })
    .await;
    assert_eq!(seen.len(), 1, "{seen:#?}");
    assert!(seen[0].contains("\"EVALSHA\""), "{seen:#?}");
    let seen = commands_during(&ns, async {
        let r = app
            .as_tenant(reqwest::Method::POST, "/v1/send", "acme")
            .header("Idempotency-Key", "monitor-1")
            .json(&sms("two", None))
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), 202);
    })
    .await;
    assert_eq!(seen.len(), 2, "the script, then SET done: {seen:#?}");
    assert!(seen[0].contains("\"EVALSHA\""), "{seen:#?}");
    assert!(
        seen[1].contains("\"SET\"") && seen[1].contains("done|"),
        "{seen:#?}"
    );
    app.cleanup().await;
}

/// Messages waiting in one lane of `channel`.
async fn in_lane(app: &TestApp, channel: Channel, lane: Priority) -> u32 {
    let conn = app.amqp().await;
    let ch = conn.create_channel().await.expect("channel");
    let q = ch
        .queue_declare(
            app.topology().lane_queue(channel, lane).as_str().into(),
            lapin::options::QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            Default::default(),
        )
        .await
        .expect("the lane exists");
    let _ = conn.close(200, "done".into()).await;
    q.message_count()
}

async fn metric(app: &TestApp, name: &str) -> f64 {
    let text = app.metrics_text().await;
    text.lines()
        .filter_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn with_redis_down_a_send_takes_the_lane_it_asked_for() {
    let app = TestApp::spawn_with(Options {
        vars: vec![
            ("REDIS_URL", "redis://127.0.0.1:9".into()),
            ("COMMUNICATION_FAIR_SHARE_HIGH", "1".into()),
        ],
        worker: false,
    })
    .await;
    let before = metric(&app, "communication_fair_share_unavailable_total").await;
    for n in 0..3 {
        app.send_ok("acme", sms(&format!("code {n}"), Some("high")))
            .await;
    }
    app.send_ok("acme", sms("receipt", Some("bulk"))).await;
    assert_eq!(in_lane(&app, Channel::Sms, Priority::High).await, 3);
    assert_eq!(in_lane(&app, Channel::Sms, Priority::Normal).await, 0);
    assert_eq!(in_lane(&app, Channel::Sms, Priority::Bulk).await, 1);
    // Each time the intake tries Redis again (a second after its last failed connect), the
    // lane decision it could not make is counted.
    let mut highs = 3;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let after = metric(&app, "communication_fair_share_unavailable_total").await;
        if after > before {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "an unanswered lane decision is counted ({before} → {after})"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        app.send_ok("acme", sms("again", Some("high"))).await;
        highs += 1;
    }
    assert_eq!(in_lane(&app, Channel::Sms, Priority::High).await, highs);
    app.cleanup().await;
}

#[tokio::test]
async fn with_lanes_off_every_send_goes_to_the_normal_lane() {
    let app = TestApp::spawn_with(Options {
        vars: vec![
            ("COMMUNICATION_LANES", "false".into()),
            ("COMMUNICATION_FAIR_SHARE_HIGH", "1".into()),
        ],
        worker: false,
    })
    .await;
    for priority in [Some("high"), Some("high"), None, Some("bulk")] {
        app.send_ok("acme", sms("x", priority)).await;
    }
    assert_eq!(in_lane(&app, Channel::Sms, Priority::Normal).await, 4);
    assert_eq!(in_lane(&app, Channel::Sms, Priority::High).await, 0);
    assert_eq!(in_lane(&app, Channel::Sms, Priority::Bulk).await, 0);
    app.cleanup().await;
}
