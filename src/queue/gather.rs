//! Publishes that arrive close together leave together.
//!
//! At a steady rate a confirmed publish that goes out alone costs the broker a whole round of
//! work: the channel process wakes, the quorum queue appends one command to its log and syncs
//! it, and one confirm comes back. The same round carries twenty publishes for little more.
//! So while other publishes are still waiting for their confirms, a new one does not go out at
//! once: the first opens a *gathering*, those that arrive within the linger join it, and when
//! the linger is over they are all handed to lapin together, on one channel, so their frames
//! share a write and the broker handles them as one batch.
//!
//! A publish goes at once when the publisher is quiet: nothing in flight and no other publish
//! started within [`QUIET`] (the first request after a pause, a service below ~100 sends/s).
//! Waiting would add latency there and save next to nothing.
//!
//! The linger adapts to the rate: a publish opens a gathering only when company is expected
//! within the linger, i.e. when the publishes' recent spacing (a moving average of the gaps
//! between their starts) is shorter than the linger. At a rate too low for anyone to join, a
//! publish goes at once even while others await their confirms, instead of waiting out the
//! linger alone; as the rate rises, gatherings start and grow by themselves.
//!
//! A gathering whose opener is dropped while it waits (its request was cancelled) is released
//! at that moment, so nobody waits on it for ever.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::Instant;

/// How long after the last publish started the publisher counts as quiet (if nothing is in
/// flight either).
pub(crate) const QUIET: Duration = Duration::from_millis(10);

/// The spacing before any has been measured: no company expected.
const NO_GAP_YET: u64 = u64::MAX;

/// Gaps longer than this count as this long in the average (a pause of minutes must not keep
/// the average high for long once publishes come close together again).
const LONGEST_GAP_US: u64 = 1_000_000;

/// The next moving average of the gaps: each new gap weighs a quarter, so a change of rate
/// shows after a few publishes.
fn next_gap_average(average: u64, gap: u64) -> u64 {
    let gap = gap.min(LONGEST_GAP_US);
    if average == NO_GAP_YET {
        gap
    } else {
        average - average / 4 + gap / 4
    }
}

/// The shared state of one publisher's gatherings.
pub(crate) struct Gather {
    linger: Duration,
    /// The open gathering, if any: the semaphore its members wait on (closed to release
    /// them) and the channel they all use.
    open: Mutex<Option<(Arc<Semaphore>, usize)>>,
    /// Publishes between their start and their confirm.
    in_flight: AtomicUsize,
    /// When the last publish started, in microseconds since `epoch`.
    last_start: AtomicU64,
    /// The moving average of the gaps between publish starts, in microseconds
    /// ([`NO_GAP_YET`] until two publishes have started).
    gap_us: AtomicU64,
    epoch: Instant,
}

/// How a publish goes out: on which channel (an index for the publisher's round robin), and
/// whether it waited for company.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Leave {
    pub channel: usize,
    pub gathered: bool,
}

/// Counts a publish as in flight until dropped.
pub(crate) struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Releases a gathering when its opener is done waiting, or dropped while waiting.
struct Release<'a> {
    gather: &'a Gather,
    members: Arc<Semaphore>,
}

impl Drop for Release<'_> {
    fn drop(&mut self) {
        if let Ok(mut open) = self.gather.open.lock()
            && open
                .as_ref()
                .is_some_and(|(m, _)| Arc::ptr_eq(m, &self.members))
        {
            *open = None;
        }
        self.members.close();
    }
}

impl Gather {
    pub(crate) fn new(linger: Duration) -> Gather {
        Gather {
            linger,
            open: Mutex::new(None),
            in_flight: AtomicUsize::new(0),
            last_start: AtomicU64::new(0),
            gap_us: AtomicU64::new(NO_GAP_YET),
            epoch: Instant::now(),
        }
    }

    /// Waits until this publish may go out; `next_channel` hands out channel indexes. Returns
    /// the channel to use and a guard that keeps the publish counted as in flight: hold it
    /// until the confirm arrives.
    pub(crate) async fn join(&self, next_channel: &AtomicUsize) -> (Leave, InFlight<'_>) {
        let others = self.in_flight.fetch_add(1, Ordering::AcqRel);
        let guard = InFlight(&self.in_flight);
        let alone = || Leave {
            channel: next_channel.fetch_add(1, Ordering::Relaxed),
            gathered: false,
        };
        if self.linger.is_zero() {
            return (alone(), guard);
        }
        // Microseconds since `epoch`, plus one so that "never" (0) is older than any start.
        let now = self.epoch.elapsed().as_micros() as u64 + 1;
        let previous = self.last_start.swap(now, Ordering::AcqRel);
        // Since the previous publish started; `None` for the very first one.
        let gap = (previous != 0).then(|| now.saturating_sub(previous));
        let recent = gap.is_some_and(|gap| gap < QUIET.as_micros() as u64);
        let busy = (others > 0 || recent) && self.company_expected(gap);
        let (members, channel, opener) = {
            // A poisoned lock only means a panic elsewhere: publish alone.
            let Ok(mut open) = self.open.lock() else {
                return (alone(), guard);
            };
            match open.as_ref() {
                Some((members, channel)) => (members.clone(), *channel, false),
                None if !busy => return (alone(), guard),
                None => {
                    let members = Arc::new(Semaphore::new(0));
                    let channel = next_channel.fetch_add(1, Ordering::Relaxed);
                    *open = Some((members.clone(), channel));
                    (members, channel, true)
                }
            }
        };
        if opener {
            let _release = Release {
                gather: self,
                members,
            };
            tokio::time::sleep(self.linger).await;
        } else {
            // No permit is ever added: this returns when the opener closes the semaphore.
            let _ = members.acquire().await;
        }
        let leave = Leave {
            channel,
            gathered: true,
        };
        (leave, guard)
    }

    /// Records the gap since the previous publish started (`None` for the first publish,
    /// which has no company to expect) and says whether, at the recent spacing, another
    /// publish is expected within the linger.
    fn company_expected(&self, gap: Option<u64>) -> bool {
        let Some(gap) = gap else {
            return false;
        };
        // Concurrent updates may each miss the other's gap: an average, not a ledger.
        let average = next_gap_average(self.gap_us.load(Ordering::Acquire), gap);
        self.gap_us.store(average, Ordering::Release);
        average < self.linger.as_micros() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    const LINGER: Duration = Duration::from_millis(40);

    #[tokio::test]
    async fn a_publish_on_a_quiet_publisher_goes_at_once() {
        let gather = Gather::new(LINGER);
        let next = AtomicUsize::new(0);
        let started = Instant::now();
        let (leave, _guard) = gather.join(&next).await;
        assert!(!leave.gathered);
        assert!(started.elapsed() < LINGER);
    }

    #[tokio::test]
    async fn publishes_behind_one_in_flight_leave_together_on_one_channel() {
        let gather = Arc::new(Gather::new(LINGER));
        let next = Arc::new(AtomicUsize::new(0));
        let (first, _in_flight) = gather.join(&next).await;
        assert!(!first.gathered);
        let started = Instant::now();
        let mut members = tokio::task::JoinSet::new();
        for _ in 0..10 {
            let (gather, next) = (gather.clone(), next.clone());
            members.spawn(async move {
                let (leave, _guard) = gather.join(&next).await;
                (leave, started.elapsed())
            });
        }
        let mut channels = std::collections::HashSet::new();
        while let Some(joined) = members.join_next().await {
            let (leave, waited) = joined.expect("member task");
            assert!(leave.gathered);
            assert!(waited >= LINGER, "left after {waited:?}, before the linger");
            channels.insert(leave.channel);
        }
        assert_eq!(
            channels.len(),
            1,
            "one gathering, one channel: {channels:?}"
        );
        assert_ne!(channels.into_iter().next(), Some(first.channel));
    }

    #[tokio::test]
    async fn a_cancelled_opener_releases_the_others_at_once() {
        let gather = Arc::new(Gather::new(Duration::from_secs(3600)));
        let next = Arc::new(AtomicUsize::new(0));
        let (_, _in_flight) = gather.join(&next).await;
        let opener = {
            let (gather, next) = (gather.clone(), next.clone());
            tokio::spawn(async move { gather.join(&next).await.0 })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        let member = {
            let (gather, next) = (gather.clone(), next.clone());
            tokio::spawn(async move { gather.join(&next).await.0 })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        opener.abort();
        let leave = tokio::time::timeout(Duration::from_secs(5), member)
            .await
            .expect("the member is released when its opener is cancelled")
            .expect("member task");
        assert!(leave.gathered);
        // The gathering is closed: the next publish opens a new one.
        assert!(gather.open.lock().expect("lock").is_none());
    }

    #[tokio::test]
    async fn quiet_means_nothing_in_flight_and_no_recent_start() {
        let gather = Gather::new(LINGER);
        let next = AtomicUsize::new(0);
        let (first, a) = gather.join(&next).await;
        assert!(!first.gathered);
        assert_eq!(gather.in_flight.load(Ordering::Acquire), 1);
        drop(a);
        assert_eq!(gather.in_flight.load(Ordering::Acquire), 0);
        // Nothing in flight, but one started just now: a steady stream, so it gathers.
        let (second, b) = gather.join(&next).await;
        assert!(second.gathered);
        drop(b);
        // A pause longer than QUIET: the next goes at once again.
        tokio::time::sleep(QUIET + Duration::from_millis(2)).await;
        let (third, _c) = gather.join(&next).await;
        assert!(!third.gathered);
    }

    #[tokio::test]
    async fn publishes_spaced_wider_than_the_linger_go_alone_even_behind_one_in_flight() {
        let linger = Duration::from_millis(15);
        let gather = Gather::new(linger);
        let next = AtomicUsize::new(0);
        // Held until the end: the publisher is never quiet.
        let (first, _in_flight) = gather.join(&next).await;
        assert!(!first.gathered);
        for i in 0..3 {
            // 25 ms apart: nobody would join a 15 ms gathering.
            tokio::time::sleep(Duration::from_millis(25)).await;
            let started = Instant::now();
            let (leave, _guard) = gather.join(&next).await;
            assert!(!leave.gathered, "publish {i} waited for company");
            assert!(started.elapsed() < linger, "publish {i} waited");
        }
        // Publishes close together again: after a few the average says company is expected.
        let mut gathered = false;
        for _ in 0..10 {
            let (leave, _guard) = gather.join(&next).await;
            if leave.gathered {
                gathered = true;
                break;
            }
        }
        assert!(gathered, "back-to-back publishes never gathered");
    }

    #[test]
    fn the_gap_average_follows_the_rate_and_caps_long_pauses() {
        assert_eq!(next_gap_average(NO_GAP_YET, 800), 800);
        assert_eq!(next_gap_average(800, 800), 800);
        // A quarter of the way to each new gap.
        assert_eq!(next_gap_average(800, 400), 700);
        assert_eq!(next_gap_average(800, 4_000), 1_600);
        // A pause of an hour counts as one second.
        assert_eq!(
            next_gap_average(1_000, 3_600_000_000),
            1_000 - 250 + LONGEST_GAP_US / 4
        );
        // After that pause, close publishes bring it back under a 1 ms linger within a
        // handful: one long gap does not switch gathering off for long.
        let mut average = next_gap_average(1_000, 3_600_000_000);
        let mut publishes = 0;
        while average >= 1_000 {
            average = next_gap_average(average, 100);
            publishes += 1;
        }
        assert!((5..=20).contains(&publishes), "{publishes} publishes");
    }

    #[tokio::test]
    async fn no_linger_never_waits() {
        let gather = Gather::new(Duration::ZERO);
        let next = AtomicUsize::new(0);
        let (_, _a) = gather.join(&next).await;
        let (leave, _b) = gather.join(&next).await;
        assert!(!leave.gathered);
        assert_eq!(next.load(Ordering::Relaxed), 2);
    }
}
