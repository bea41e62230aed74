//! Acks coalesced per AMQP channel. Every delivery a consumer takes is tracked here by its
//! delivery tag; when its outcome is committed it is marked finished, and a flusher task sends
//! one `basic.ack(tag, multiple)` for the whole run of finished tags at the front, instead of
//! one frame (and, for a quorum queue, one Raft command) per delivery.
//!
//! The rules, which [`Ledger`] keeps and its tests check:
//! - A tag is acked only once its delivery finished. A multiple ack up to `T` covers every
//!   unacked tag `<= T` of the channel, so it is sent only when every tracked tag up to `T` is
//!   finished or already settled, and only while the tags seen are contiguous (a tag that
//!   never reached the consumer would otherwise be acked unseen; after such a gap the channel
//!   falls back to one ack per tag).
//! - The tag of a multiple ack is itself unacked (RabbitMQ closes the channel on an unknown
//!   tag): it is the highest finished tag of the run, never one already acked alone.
//! - A finished delivery waits at most [`Acks`]'s hold (a few milliseconds) for company. One
//!   finished behind a delivery still in flight (a provider call can take 30 s) is acked alone
//!   once its hold is over, and counts as settled for the run that later passes it.
//! - A requeue (nack) is sent at once for its own tag, and only then counts as settled: a
//!   multiple ack sent after it no longer covers it.
//! - All frames of a channel are sent by its one flusher in the order decided, so an ack alone
//!   always reaches the broker before a later multiple ack that passes its tag.
//!
//! Tags are per channel and start again at 1 on a new channel: a coalescer lives exactly as
//! long as its channel. Closing it (shutdown, after the in-flight deliveries finished) sends
//! every pending ack.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use lapin::options::{BasicAckOptions, BasicNackOptions};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// A frame the flusher must send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Frame {
    /// `basic.ack(tag, multiple: true)`: every unacked tag up to this one.
    UpTo(u64),
    /// `basic.ack(tag, multiple: false)`.
    One(u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Taken from the consumer, not finished (or never will be: then the broker requeues it
    /// when the channel closes).
    Running,
    /// Finished at this instant; its ack is not sent yet.
    Finished(Instant),
}

/// The bookkeeping of one channel's tags, without I/O.
#[derive(Debug)]
pub(crate) struct Ledger {
    /// Tracked tags in order, each until it is acked or nacked. A tag missing between two
    /// is settled, so a multiple ack may pass over it; only a running tag stops one. (A
    /// delivery that never finishes keeps only its own entry: what finishes behind it is
    /// acked alone and dropped.)
    entries: VecDeque<(u64, State)>,
    /// The last tag tracked.
    last: u64,
    /// False once a tag arrived out of sequence: from then on, one ack per tag.
    contiguous: bool,
    /// Finished entries whose ack is not sent, and the earliest of their finish instants.
    unsent: usize,
    oldest_unsent: Option<Instant>,
    /// A full batch is waiting: flush without waiting for the hold.
    flush_now: bool,
    hold: Duration,
    batch: usize,
}

impl Ledger {
    /// `hold`: the longest a finished tag waits; `batch`: this many finished tags waiting
    /// are flushed without waiting for the hold.
    pub(crate) fn new(hold: Duration, batch: usize) -> Ledger {
        Ledger {
            entries: VecDeque::new(),
            last: 0,
            contiguous: true,
            unsent: 0,
            oldest_unsent: None,
            flush_now: false,
            hold,
            batch: batch.max(1),
        }
    }

    /// A delivery taken from the consumer, in the order the consumer yields them.
    pub(crate) fn track(&mut self, tag: u64) {
        if tag != self.last + 1 && self.contiguous {
            tracing::warn!(
                tag,
                last = self.last,
                "delivery tags out of sequence; acking one by one on this channel"
            );
            self.contiguous = false;
        }
        self.last = self.last.max(tag);
        self.entries.push_back((tag, State::Running));
    }

    /// Where `tag` is (tags are tracked in increasing order).
    fn position(&self, tag: u64) -> Option<usize> {
        self.entries.binary_search_by_key(&tag, |(t, _)| *t).ok()
    }

    /// The delivery of `tag` finished: its ack is due. True when the flusher should run now
    /// (the first pending ack, which sets the deadline, or a full batch).
    pub(crate) fn finish(&mut self, tag: u64, now: Instant) -> bool {
        let Some((_, state)) = self.position(tag).and_then(|at| self.entries.get_mut(at)) else {
            return false;
        };
        if *state != State::Running {
            return false;
        }
        *state = State::Finished(now);
        self.unsent += 1;
        if self.oldest_unsent.is_none() {
            self.oldest_unsent = Some(now);
            return true;
        }
        if self.unsent >= self.batch && !self.flush_now {
            self.flush_now = true;
            return true;
        }
        false
    }

    /// The delivery of `tag` was nacked (the frame is already sent): it is settled.
    pub(crate) fn settle(&mut self, tag: u64) {
        let removed = self.position(tag).and_then(|at| self.entries.remove(at));
        if let Some((_, State::Finished(_))) = removed {
            // Not expected (a tag is finished or nacked, not both), but keep the count.
            self.unsent -= 1;
        }
    }

    /// When the flusher must run next: `None` while no ack is pending.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        let oldest = self.oldest_unsent?;
        if self.flush_now {
            // Due at once: the oldest pending instant is in the past.
            return Some(oldest);
        }
        Some(oldest + self.hold)
    }

    /// The frames to send now, in order: the run of finished tags at the front (tags settled
    /// between them are no longer tracked) as one multiple ack, then each finished tag behind a running one whose hold is over
    /// (`all`: every finished tag, whatever its age — for closing).
    pub(crate) fn due(&mut self, now: Instant, all: bool) -> Vec<Frame> {
        let mut frames = Vec::new();
        self.flush_now = false;
        // The front run: everything before the first running delivery.
        let mut highest_finished = None;
        let mut run_finished = 0usize;
        while let Some(&(tag, state)) = self.entries.front() {
            match state {
                State::Running => break,
                State::Finished(_) => {
                    self.unsent -= 1;
                    if self.contiguous {
                        highest_finished = Some(tag);
                        run_finished += 1;
                    } else {
                        frames.push(Frame::One(tag));
                    }
                }
            }
            self.entries.pop_front();
        }
        if let Some(tag) = highest_finished {
            frames.push(if run_finished == 1 {
                Frame::One(tag)
            } else {
                Frame::UpTo(tag)
            });
        }
        // Behind a running delivery: alone, once held long enough.
        let mut oldest: Option<Instant> = None;
        let (hold, unsent) = (self.hold, &mut self.unsent);
        self.entries.retain(|&(tag, state)| match state {
            State::Running => true,
            State::Finished(at) if all || now.saturating_duration_since(at) >= hold => {
                frames.push(Frame::One(tag));
                *unsent -= 1;
                false
            }
            State::Finished(at) => {
                oldest = Some(oldest.map_or(at, |o| o.min(at)));
                true
            }
        });
        self.oldest_unsent = oldest;
        frames
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.entries.len()
    }
}

struct Shared {
    ledger: Mutex<Ledger>,
    wake: Notify,
    channel: lapin::Channel,
    /// Set on close: the flusher sends everything pending and ends; later finishes are not
    /// acked (the channel is closing; the broker requeues what is unacked).
    closing: std::sync::atomic::AtomicBool,
}

impl Shared {
    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn closing(&self) -> bool {
        self.closing.load(std::sync::atomic::Ordering::Acquire)
    }
}

/// The coalescer of one AMQP channel: owns its flusher task. Consumers and delivery tasks use
/// [`AckHandle`]s.
pub(super) struct Acks {
    shared: Arc<Shared>,
    flusher: Option<JoinHandle<()>>,
}

/// Tracks, finishes and requeues deliveries of one channel.
#[derive(Clone)]
pub(super) struct AckHandle(Arc<Shared>);

impl Acks {
    pub(super) fn new(channel: lapin::Channel, hold: Duration, batch: usize) -> Acks {
        let shared = Arc::new(Shared {
            ledger: Mutex::new(Ledger::new(hold, batch)),
            wake: Notify::new(),
            channel,
            closing: Default::default(),
        });
        let flusher = tokio::spawn(flush_loop(shared.clone()));
        Acks {
            shared,
            flusher: Some(flusher),
        }
    }

    pub(super) fn handle(&self) -> AckHandle {
        AckHandle(self.shared.clone())
    }

    /// Sends every pending ack and stops the flusher. Call once the deliveries finished.
    pub(super) async fn close(mut self) {
        self.shared
            .closing
            .store(true, std::sync::atomic::Ordering::Release);
        self.shared.wake.notify_one();
        if let Some(flusher) = self.flusher.take() {
            let _ = flusher.await;
        }
    }
}

impl Drop for Acks {
    /// Not closed (the connection was lost, or setting up failed): the flusher still sends
    /// what it can and ends.
    fn drop(&mut self) {
        if self.flusher.is_some() {
            self.shared
                .closing
                .store(true, std::sync::atomic::Ordering::Release);
            self.shared.wake.notify_one();
        }
    }
}

impl AckHandle {
    /// A delivery taken from the consumer. Call in the order the consumer yields them, before
    /// anything can finish it.
    pub(super) fn track(&self, tag: u64) {
        self.0.ledger().track(tag);
    }

    /// The delivery's outcome is committed: ack it (soon, possibly with others).
    pub(super) fn ack(&self, tag: u64) {
        if self.0.closing() {
            return;
        }
        let wake = self.0.ledger().finish(tag, Instant::now());
        if wake {
            self.0.wake.notify_one();
        }
    }

    /// Nacks the delivery with requeue, now and alone.
    pub(super) async fn requeue(&self, tag: u64) -> Result<(), lapin::Error> {
        let options = BasicNackOptions {
            requeue: true,
            multiple: false,
        };
        let nacked = self.0.channel.basic_nack(tag, options).await;
        // Settled only once the frame is out: a multiple ack decided after this cannot reach
        // the broker before it. A nack that failed leaves the tag running: nothing passes it.
        if nacked.is_ok() {
            self.0.ledger().settle(tag);
        }
        nacked
    }
}

async fn flush_loop(shared: Arc<Shared>) {
    let mut failed = false;
    loop {
        let closing = shared.closing();
        let deadline = shared.ledger().deadline();
        if !closing {
            match deadline {
                None => {
                    shared.wake.notified().await;
                    continue;
                }
                Some(at) if at > Instant::now() => {
                    tokio::select! {
                        _ = shared.wake.notified() => continue,
                        _ = tokio::time::sleep_until(at) => {}
                    }
                }
                Some(_) => {}
            }
        }
        let frames = shared.ledger().due(Instant::now(), closing);
        for frame in frames {
            let (tag, multiple) = match frame {
                Frame::UpTo(tag) => (tag, true),
                Frame::One(tag) => (tag, false),
            };
            let sent = shared
                .channel
                .basic_ack(tag, BasicAckOptions { multiple })
                .await;
            if let Err(e) = sent
                && !failed
            {
                failed = true;
                tracing::warn!(error = %e, "could not ack deliveries; the broker will redeliver them (each is sent once)");
            }
        }
        if closing {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOLD: Duration = Duration::from_millis(5);

    fn ledger(tags: std::ops::RangeInclusive<u64>) -> Ledger {
        let mut l = Ledger::new(HOLD, 100);
        for tag in tags {
            l.track(tag);
        }
        l
    }

    #[test]
    fn a_finished_run_goes_out_as_one_multiple_ack() {
        let t0 = Instant::now();
        let mut l = ledger(1..=4);
        assert!(l.finish(2, t0), "the first pending ack wakes the flusher");
        assert!(!l.finish(1, t0));
        assert!(!l.finish(3, t0));
        assert_eq!(l.deadline(), Some(t0 + HOLD));
        assert_eq!(l.due(t0 + HOLD, false), vec![Frame::UpTo(3)]);
        assert_eq!(l.deadline(), None);
        assert_eq!(l.tracked(), 1, "4 is still running");
        l.finish(4, t0 + HOLD);
        assert_eq!(l.due(t0 + HOLD * 2, false), vec![Frame::One(4)]);
        assert_eq!(l.tracked(), 0);
    }

    #[test]
    fn a_running_delivery_is_never_covered() {
        let t0 = Instant::now();
        let mut l = ledger(1..=5);
        for tag in [1, 2, 4, 5] {
            l.finish(tag, t0);
        }
        // Before the hold is over only the run in front of 3 goes.
        assert_eq!(l.due(t0 + HOLD / 2, false), vec![Frame::UpTo(2)]);
        assert_eq!(l.deadline(), Some(t0 + HOLD));
        // Then the ones behind 3, each alone: 3 is not acked by anything.
        assert_eq!(l.due(t0 + HOLD, false), vec![Frame::One(4), Frame::One(5)]);
        assert_eq!(l.deadline(), None);
        // 3 finishes: only its own tag remains to ack (4 and 5 were acked already, so the
        // multiple ack names 3, never an acked tag).
        l.finish(3, t0 + HOLD * 10);
        assert_eq!(l.due(t0 + HOLD * 11, false), vec![Frame::One(3)]);
        assert_eq!(l.tracked(), 0);
    }

    #[test]
    fn a_slow_delivery_does_not_hold_the_others_past_the_hold() {
        let t0 = Instant::now();
        let mut l = ledger(1..=3);
        l.finish(2, t0);
        l.finish(3, t0 + HOLD / 2);
        assert_eq!(l.deadline(), Some(t0 + HOLD));
        assert_eq!(l.due(t0 + HOLD, false), vec![Frame::One(2)]);
        // 3's own hold sets the next deadline.
        assert_eq!(l.deadline(), Some(t0 + HOLD / 2 + HOLD));
        assert_eq!(l.due(t0 + HOLD / 2 + HOLD, false), vec![Frame::One(3)]);
        // 1, 30 s later: acked alone; nothing else is left.
        l.finish(1, t0 + Duration::from_secs(30));
        assert_eq!(
            l.due(t0 + Duration::from_secs(30) + HOLD, false),
            vec![Frame::One(1)]
        );
        assert_eq!(l.tracked(), 0);
    }

    #[test]
    fn a_delivery_that_never_finishes_keeps_only_its_own_entry() {
        let t0 = Instant::now();
        let mut l = ledger(1..=1000);
        for tag in 2..=1000 {
            l.finish(tag, t0);
        }
        let frames = l.due(t0 + HOLD, false);
        assert_eq!(frames.len(), 999);
        assert!(frames.iter().all(|f| matches!(f, Frame::One(_))));
        assert!(!frames.contains(&Frame::One(1)));
        assert_eq!(l.tracked(), 1, "only the running delivery stays");
        // Later deliveries still go out, alone while 1 runs.
        l.track(1001);
        l.finish(1001, t0 + HOLD);
        assert_eq!(l.due(t0 + HOLD * 2, false), vec![Frame::One(1001)]);
        assert_eq!(l.tracked(), 1);
    }

    #[test]
    fn the_multiple_ack_names_the_highest_finished_not_a_settled_tag() {
        let t0 = Instant::now();
        let mut l = ledger(1..=5);
        l.finish(1, t0);
        l.finish(2, t0);
        // 3 and 5 were nacked: the broker no longer knows them, so 5 cannot be named.
        l.settle(3);
        l.finish(4, t0);
        l.settle(5);
        assert_eq!(l.due(t0 + HOLD, false), vec![Frame::UpTo(4)]);
        assert_eq!(l.tracked(), 0);
    }

    #[test]
    fn a_nacked_tag_counts_as_settled_for_the_run() {
        let t0 = Instant::now();
        let mut l = ledger(1..=3);
        l.finish(1, t0);
        l.settle(2);
        l.finish(3, t0);
        assert_eq!(l.due(t0 + HOLD, false), vec![Frame::UpTo(3)]);
        // A run of nacks alone sends nothing.
        let mut l = ledger(1..=2);
        l.settle(1);
        l.settle(2);
        assert_eq!(l.deadline(), None);
        assert_eq!(l.due(t0 + HOLD, false), vec![]);
        assert_eq!(l.tracked(), 0);
    }

    #[test]
    fn a_full_batch_is_due_at_once() {
        let t0 = Instant::now();
        let mut l = Ledger::new(HOLD, 3);
        for tag in 1..=4 {
            l.track(tag);
        }
        assert!(l.finish(1, t0));
        assert!(!l.finish(2, t0));
        assert!(l.finish(3, t0), "a full batch wakes the flusher");
        assert!(l.deadline().is_some_and(|d| d <= t0));
        assert_eq!(l.due(t0, false), vec![Frame::UpTo(3)]);
        // A batch held behind a running delivery waits for its hold (no busy flushing).
        let mut l = Ledger::new(HOLD, 2);
        for tag in 1..=3 {
            l.track(tag);
        }
        l.finish(2, t0);
        assert!(l.finish(3, t0));
        assert_eq!(l.due(t0, false), vec![]);
        assert_eq!(l.deadline(), Some(t0 + HOLD));
    }

    #[test]
    fn closing_sends_every_finished_tag_whatever_its_age() {
        let t0 = Instant::now();
        let mut l = ledger(1..=6);
        for tag in [2, 3, 5] {
            l.finish(tag, t0);
        }
        assert_eq!(
            l.due(t0, true),
            vec![Frame::One(2), Frame::One(3), Frame::One(5)]
        );
        assert_eq!(l.deadline(), None);
        // 1, 4 and 6 never finished: never acked, still tracked.
        assert_eq!(l.tracked(), 3);
    }

    #[test]
    fn tags_out_of_sequence_are_acked_one_by_one() {
        let t0 = Instant::now();
        let mut l = Ledger::new(HOLD, 100);
        l.track(1);
        l.track(2);
        // 3 never reached us: a multiple ack up to 4 would ack it unseen.
        l.track(4);
        l.track(5);
        for tag in [1, 2, 4, 5] {
            l.finish(tag, t0);
        }
        assert_eq!(
            l.due(t0 + HOLD, false),
            vec![Frame::One(1), Frame::One(2), Frame::One(4), Frame::One(5)]
        );
    }

    #[test]
    fn finishing_twice_or_an_unknown_tag_changes_nothing() {
        let t0 = Instant::now();
        let mut l = ledger(1..=2);
        l.finish(1, t0);
        assert!(!l.finish(1, t0));
        assert!(!l.finish(9, t0));
        assert_eq!(l.due(t0 + HOLD, false), vec![Frame::One(1)]);
        assert!(!l.finish(1, t0), "already acked");
        assert_eq!(l.due(t0 + HOLD * 2, false), vec![]);
    }

    /// Against the real broker: a channel whose acks went through the coalescer stays open
    /// (RabbitMQ closes it on an unknown or twice-acked tag), and exactly the deliveries never
    /// finished come back when it closes.
    mod broker {
        use std::collections::HashMap;

        use futures::StreamExt;
        use lapin::options::{
            BasicConsumeOptions, BasicGetOptions, BasicPublishOptions, BasicQosOptions,
            QueueDeclareOptions,
        };
        use lapin::types::FieldTable;
        use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, Consumer};

        use super::super::Acks;
        use super::*;

        fn amqp_url() -> String {
            std::env::var("AMQP_URL")
                .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
        }

        /// A connection, and a server-named exclusive queue holding `n` messages `m1..mn`.
        async fn queue_with(n: usize) -> (Connection, String) {
            let conn = Connection::connect(&amqp_url(), ConnectionProperties::default())
                .await
                .expect("RabbitMQ on AMQP_URL");
            let ch = conn.create_channel().await.expect("channel");
            let q = ch
                .queue_declare(
                    "".into(),
                    QueueDeclareOptions {
                        exclusive: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await
                .expect("queue");
            let name = q.name().as_str().to_owned();
            ch.confirm_select(Default::default())
                .await
                .expect("confirms");
            for i in 1..=n {
                ch.basic_publish(
                    "".into(),
                    name.as_str().into(),
                    BasicPublishOptions::default(),
                    format!("m{i}").as_bytes(),
                    BasicProperties::default(),
                )
                .await
                .expect("publish")
                .await
                .expect("confirm");
            }
            (conn, name)
        }

        /// The bodies left in the queue.
        /// A channel with `prefetch` consuming `queue` with manual acks.
        async fn consume(conn: &Connection, queue: &str, prefetch: u16) -> (Channel, Consumer) {
            let ch = conn.create_channel().await.expect("channel");
            ch.basic_qos(prefetch, BasicQosOptions { global: false })
                .await
                .expect("qos");
            let consumer = ch
                .basic_consume(
                    queue.into(),
                    "acks-test".into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await
                .expect("consume");
            (ch, consumer)
        }

        async fn left(conn: &Connection, queue: &str) -> Vec<String> {
            let ch = conn.create_channel().await.expect("channel");
            let mut out = Vec::new();
            while let Some(m) = ch
                .basic_get(queue.into(), BasicGetOptions { no_ack: true })
                .await
                .expect("get")
            {
                out.push(String::from_utf8_lossy(&m.delivery.data).into_owned());
            }
            out.sort();
            out
        }

        #[tokio::test]
        async fn holes_nacks_and_runs_against_rabbitmq() {
            let (conn, queue) = queue_with(6).await;
            let (ch, mut consumer) = consume(&conn, &queue, 20).await;
            let acks = Acks::new(ch.clone(), Duration::from_millis(20), 100);
            let handle = acks.handle();
            let mut body_of = HashMap::new();
            for _ in 0..6 {
                let d = consumer.next().await.expect("delivery").expect("ok");
                handle.track(d.delivery_tag);
                body_of.insert(
                    String::from_utf8_lossy(&d.data).into_owned(),
                    d.delivery_tag,
                );
            }
            let tag = |b: &str| body_of[b];
            // m1 stays in flight; m4 is requeued and comes back under a new tag.
            for b in ["m2", "m3", "m5", "m6"] {
                handle.ack(tag(b));
            }
            handle.requeue(tag("m4")).await.expect("nack");
            let again = consumer.next().await.expect("redelivery").expect("ok");
            assert_eq!(&again.data[..], b"m4");
            handle.track(again.delivery_tag);
            handle.ack(again.delivery_tag);
            // Past the hold: everything finished is acked although m1 is still running.
            tokio::time::sleep(Duration::from_millis(100)).await;
            // A synchronous call on the channel: it fails if the broker closed the channel
            // over a bad ack.
            ch.basic_qos(20, BasicQosOptions { global: false })
                .await
                .expect("the channel is still open after the acks");
            acks.close().await;
            ch.close(200, "done".into()).await.expect("clean close");
            assert_eq!(left(&conn, &queue).await, vec!["m1".to_owned()]);
        }

        #[tokio::test]
        async fn a_run_in_order_is_acked_and_close_flushes_it() {
            let (conn, queue) = queue_with(50).await;
            let (ch, mut consumer) = consume(&conn, &queue, 100).await;
            // A long hold: only closing sends these acks.
            let acks = Acks::new(ch.clone(), Duration::from_secs(60), 1000);
            let handle = acks.handle();
            let mut tags = Vec::new();
            for _ in 0..50 {
                let d = consumer.next().await.expect("delivery").expect("ok");
                handle.track(d.delivery_tag);
                tags.push(d.delivery_tag);
            }
            // Out of order, all but the last.
            tags.reverse();
            for tag in &tags[1..] {
                handle.ack(*tag);
            }
            handle.ack(tags[0]);
            acks.close().await;
            ch.basic_qos(100, BasicQosOptions { global: false })
                .await
                .expect("the channel is still open after the acks");
            ch.close(200, "done".into()).await.expect("clean close");
            assert_eq!(left(&conn, &queue).await, Vec::<String>::new());
        }
    }
}
