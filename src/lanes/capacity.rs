//! The worker's delivery permits, with capacity reserved for the higher lanes.
//!
//! Three nested semaphores over the worker's concurrency C (`COMMUNICATION_WORKER_CONCURRENCY`):
//! every delivery holds one of `all` (C permits); `normal` and `bulk` deliveries also hold one
//! of `below_high` (90% of C), and `bulk` ones one of `bulk` (80% of C). So however full the
//! lower lanes are, at least 10% of C is left for `high` and 10% more for `normal`. A delivery
//! takes the most restrictive permit first, so a lane waiting for its own share never sits on
//! a permit of `all` meanwhile. With lanes off there is one lane: `all` only.

use std::sync::Arc;

use tokio::sync::{AcquireError, OwnedSemaphorePermit, Semaphore};

use crate::domain::Priority;

/// Share of C that `normal` and `bulk` together may hold, in percent.
pub const BELOW_HIGH_PERCENT: usize = 90;
/// Share of C that `bulk` may hold, in percent.
pub const BULK_PERCENT: usize = 80;

pub struct Capacity {
    total: usize,
    /// Permits of `below_high` and `bulk` (what `normal` and `bulk` may hold).
    below_high_limit: usize,
    bulk_limit: usize,
    reserve: bool,
    all: Arc<Semaphore>,
    below_high: Arc<Semaphore>,
    bulk: Arc<Semaphore>,
}

/// The permits of one delivery in progress; released on drop.
pub struct LanePermit {
    _permits: Vec<OwnedSemaphorePermit>,
}

/// `percent` of `total`, at least 1 and at most `at_most`.
fn share(total: usize, percent: usize, at_most: usize) -> usize {
    (total * percent / 100).clamp(1, at_most.max(1))
}

impl Capacity {
    /// `reserve`: whether lanes are on (off: one lane, no reservation).
    pub fn new(total: usize, reserve: bool) -> Capacity {
        let total = total.max(1);
        // Leave at least one permit for high, and one more for normal, whenever C allows it.
        let below_high = share(total, BELOW_HIGH_PERCENT, total.saturating_sub(1));
        let bulk = share(total, BULK_PERCENT, below_high.saturating_sub(1));
        Capacity {
            total,
            below_high_limit: below_high,
            bulk_limit: bulk,
            reserve,
            all: Arc::new(Semaphore::new(total)),
            below_high: Arc::new(Semaphore::new(below_high)),
            bulk: Arc::new(Semaphore::new(bulk)),
        }
    }

    /// How many deliveries of `lane` may run at once.
    pub fn limit(&self, lane: Priority) -> usize {
        if !self.reserve {
            return self.total;
        }
        match lane {
            Priority::High => self.total,
            Priority::Normal => self.below_high_limit,
            Priority::Bulk => self.bulk_limit,
        }
    }

    /// Waits for a permit of `lane`, most restrictive semaphore first.
    pub async fn acquire(&self, lane: Priority) -> Result<LanePermit, AcquireError> {
        let mut permits = Vec::with_capacity(3);
        if self.reserve {
            if lane == Priority::Bulk {
                permits.push(self.bulk.clone().acquire_owned().await?);
            }
            if lane != Priority::High {
                permits.push(self.below_high.clone().acquire_owned().await?);
            }
        }
        permits.push(self.all.clone().acquire_owned().await?);
        Ok(LanePermit { _permits: permits })
    }

    /// Waits until no delivery is in progress (every permit of `all` is back), and keeps them.
    pub async fn drain(&self) -> Option<OwnedSemaphorePermit> {
        self.all
            .clone()
            .acquire_many_owned(self.total as u32)
            .await
            .ok()
    }

    /// Deliveries in progress.
    pub fn in_use(&self) -> usize {
        self.total - self.all.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn shares_leave_room_for_the_higher_lanes() {
        let c = Capacity::new(400, true);
        assert_eq!(
            (
                c.limit(Priority::High),
                c.limit(Priority::Normal),
                c.limit(Priority::Bulk)
            ),
            (400, 360, 320)
        );
        let c = Capacity::new(8, true);
        assert_eq!((c.limit(Priority::Normal), c.limit(Priority::Bulk)), (7, 6));
        let c = Capacity::new(2, true);
        assert_eq!((c.limit(Priority::Normal), c.limit(Priority::Bulk)), (1, 1));
        let c = Capacity::new(1, true);
        assert_eq!((c.limit(Priority::Normal), c.limit(Priority::Bulk)), (1, 1));
        let c = Capacity::new(10, false);
        assert_eq!(c.limit(Priority::Bulk), 10);
    }

    #[tokio::test]
    async fn a_bulk_flood_leaves_permits_for_normal_and_high() {
        let c = Arc::new(Capacity::new(10, true));
        let mut held = Vec::new();
        for _ in 0..8 {
            held.push(c.acquire(Priority::Bulk).await.expect("bulk"));
        }
        // A ninth bulk waits, and holds no permit of `all` while it waits.
        let waiting = {
            let c = c.clone();
            tokio::spawn(async move { c.acquire(Priority::Bulk).await.map(|_| ()) })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished());
        assert_eq!(c.in_use(), 8);
        let normal = tokio::time::timeout(Duration::from_millis(100), c.acquire(Priority::Normal))
            .await
            .expect("normal gets the 9th permit")
            .expect("normal");
        // Normal and bulk are now at their 90%: only high gets the last one.
        assert!(
            tokio::time::timeout(Duration::from_millis(50), c.acquire(Priority::Normal))
                .await
                .is_err()
        );
        let high = tokio::time::timeout(Duration::from_millis(100), c.acquire(Priority::High))
            .await
            .expect("high gets the reserved permit")
            .expect("high");
        assert_eq!(c.in_use(), 10);
        drop((high, normal));
        held.clear();
        waiting.await.expect("join").expect("bulk after the flood");
    }
}
