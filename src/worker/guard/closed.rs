//! A short memory of the shared breaker's "closed, no failures" answer, per provider.
//!
//! A healthy provider without a rate limit would otherwise cost one Redis round trip per
//! attempt only to hear "closed" again. Within [`CLOSED_MEMORY`] of such an answer the guard
//! lets the attempt through without asking. The price is bounded staleness: a breaker that
//! another replica opens is seen here up to that long later (its few extra calls fail over like
//! any failure). A failure recorded by this process forgets the provider at once, and nothing
//! is remembered from a "failures counted", half-open, open or rate-limited answer, nor while
//! Redis is down.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use uuid::Uuid;

/// How long a "closed, no failures" answer from Redis is trusted without asking again.
pub const CLOSED_MEMORY: Duration = Duration::from_millis(250);

/// Providers remembered before expired entries are swept.
const SWEEP_ABOVE: usize = 10_000;

#[derive(Default)]
pub(super) struct ClosedMemory {
    /// Provider → epoch ms until which "closed" is trusted.
    until: Mutex<HashMap<Uuid, i64>>,
}

impl ClosedMemory {
    /// `provider` was answered "closed, no failures" within the last [`CLOSED_MEMORY`].
    pub(super) fn fresh(&self, provider: Uuid, now_ms: i64) -> bool {
        let map = self.until.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&provider).is_some_and(|until| now_ms < *until)
    }

    pub(super) fn remember(&self, provider: Uuid, now_ms: i64) {
        let mut map = self.until.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= SWEEP_ABOVE {
            map.retain(|_, until| now_ms < *until);
        }
        map.insert(provider, now_ms + CLOSED_MEMORY.as_millis() as i64);
    }

    pub(super) fn forget(&self, provider: Uuid) {
        let mut map = self.until.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(&provider);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_is_trusted_for_the_memory_and_not_a_millisecond_longer() {
        let m = ClosedMemory::default();
        let p = Uuid::new_v4();
        assert!(!m.fresh(p, 1_000), "nothing remembered yet");
        m.remember(p, 1_000);
        assert!(m.fresh(p, 1_000));
        let end = 1_000 + CLOSED_MEMORY.as_millis() as i64;
        assert!(m.fresh(p, end - 1));
        assert!(!m.fresh(p, end));
        assert!(!m.fresh(Uuid::new_v4(), 1_000), "per provider");
    }

    #[test]
    fn forgetting_takes_effect_at_once() {
        let m = ClosedMemory::default();
        let p = Uuid::new_v4();
        m.remember(p, 1_000);
        m.forget(p);
        assert!(!m.fresh(p, 1_001));
    }

    #[test]
    fn expired_entries_are_swept_once_many_providers_were_seen() {
        let m = ClosedMemory::default();
        for _ in 0..SWEEP_ABOVE {
            m.remember(Uuid::new_v4(), 0);
        }
        let later = 10 * CLOSED_MEMORY.as_millis() as i64;
        let p = Uuid::new_v4();
        m.remember(p, later);
        let map = m.until.lock().unwrap_or_else(|e| e.into_inner());
        assert_eq!(map.len(), 1, "only the live entry is left");
        assert!(map.contains_key(&p));
    }
}
