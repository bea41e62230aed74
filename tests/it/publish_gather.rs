//! The publisher's gathering (src/queue/gather.rs) against the real broker: publishes that
//! waited for company are each confirmed, land once, and a bad one among them is still
//! refused on its own.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use communication::domain::{Channel, Priority};
use communication::queue::{PublishError, Publisher, Topology};
use lapin::options::BasicGetOptions;
use lapin::types::FieldTable;
use secrecy::SecretString;
use tokio::time::Instant;

use crate::common::{AMQP, Options, TestApp};

/// An app without a worker (nothing consumes the lanes) and a connected publisher with
/// `linger`.
async fn app_and_publisher(name: &str, linger: Duration) -> (TestApp, Publisher) {
    let app = TestApp::spawn_with(Options {
        worker: false,
        ..Default::default()
    })
    .await;
    let publisher = Publisher::new(SecretString::from(AMQP.to_owned()), name, app.topology(), 2)
        .with_linger(linger);
    publisher.warm_up().await.expect("broker reachable");
    (app, publisher)
}

#[tokio::test]
async fn gathered_publishes_are_each_confirmed_once_and_an_unroutable_one_is_still_refused() {
    let linger = Duration::from_millis(150);
    let (app, publisher) = app_and_publisher("test-gather", linger).await;
    let publisher = Arc::new(publisher);
    let exchange = app.topology().send_exchange();
    let lane = Topology::lane_routing_key(Channel::Sms, Priority::Normal);

    let mut publishes = tokio::task::JoinSet::new();
    for i in 0..41 {
        let (publisher, exchange) = (publisher.clone(), exchange.clone());
        // One of them goes to a routing key no queue is bound to.
        let key = if i == 20 {
            "nowhere.at.all".to_owned()
        } else {
            lane.clone()
        };
        publishes.spawn(async move {
            let started = Instant::now();
            let body = format!("{{\"n\":{i}}}");
            let result = publisher
                .publish(
                    &exchange,
                    &key,
                    body.as_bytes(),
                    FieldTable::default(),
                    Some(&format!("m-{i}")),
                )
                .await;
            (i, result, started.elapsed())
        });
    }
    let mut waited = 0;
    while let Some(done) = publishes.join_next().await {
        let (i, result, took) = done.expect("publish task");
        if i == 20 {
            assert!(
                matches!(result, Err(PublishError::Unroutable(_))),
                "the unroutable publish: {result:?}"
            );
        } else {
            assert!(result.is_ok(), "publish {i}: {result:?}");
        }
        if took >= linger {
            waited += 1;
        }
    }
    // The first publish found nothing in flight and went at once; the ones behind it waited
    // for company.
    assert!(waited >= 30, "only {waited} of 41 publishes were gathered");

    // Each routable message is in the lane queue exactly once.
    let conn = app.amqp().await;
    let ch = conn.create_channel().await.expect("channel");
    let mut seen = HashSet::new();
    let mut total = 0;
    while let Some(msg) = ch
        .basic_get(
            app.topology()
                .lane_queue(Channel::Sms, Priority::Normal)
                .into(),
            BasicGetOptions { no_ack: true },
        )
        .await
        .expect("basic_get")
    {
        total += 1;
        seen.insert(String::from_utf8_lossy(&msg.delivery.data).into_owned());
    }
    assert_eq!(total, 40, "messages in the lane queue");
    assert_eq!(seen.len(), 40, "distinct messages");
    assert!(!seen.contains("{\"n\":20}"));
    let _ = conn.close(200, "done".into()).await;
    publisher.close().await;
    app.cleanup().await;
}

#[tokio::test]
async fn a_quiet_publisher_does_not_wait_for_its_linger() {
    let (app, publisher) = app_and_publisher("test-gather-quiet", Duration::from_secs(5)).await;
    let lane = Topology::lane_routing_key(Channel::Email, Priority::Normal);
    for i in 0..3 {
        // A pause longer than the quiet spell between publishes (one right behind another
        // would be a steady stream, and wait for company).
        tokio::time::sleep(Duration::from_millis(30)).await;
        let started = Instant::now();
        publisher
            .publish(
                &app.topology().send_exchange(),
                &lane,
                b"{}",
                FieldTable::default(),
                Some(&format!("q-{i}")),
            )
            .await
            .expect("confirmed");
        // None in flight and none started recently: it went at once.
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "publish {i} waited {:?}",
            started.elapsed()
        );
    }
    publisher.close().await;
    app.cleanup().await;
}
