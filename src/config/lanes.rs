//! Priority lanes and the per-tenant fair share (`COMMUNICATION_LANES`,
//! `COMMUNICATION_FAIR_SHARE_HIGH`, `COMMUNICATION_FAIR_SHARE_NORMAL`,
//! `COMMUNICATION_FAIR_SHARE_REDIS_TIMEOUT_MS`). See docs/delivery.md, "Lanes".

use std::time::Duration;

use super::env::Env;

#[derive(Debug, Clone, Copy)]
pub struct LaneSettings {
    /// `false`: one lane, as before lanes existed — every message goes to the `normal` lane,
    /// no fair share, no capacity reservation (the benchmark's baseline).
    pub enabled: bool,
    /// Messages one tenant may put in the `high` lane per channel per second; the rest of its
    /// second moves down a lane.
    pub share_high: u32,
    /// The same for the `normal` lane; beyond it, `bulk` (which has no share: it is the floor,
    /// FIFO across tenants).
    pub share_normal: u32,
    /// How long a lane decision waits for Redis before it falls back to the requested lane.
    pub redis_timeout: Duration,
}

impl Default for LaneSettings {
    fn default() -> Self {
        LaneSettings {
            enabled: true,
            share_high: 20,
            share_normal: 200,
            redis_timeout: Duration::from_millis(250),
        }
    }
}

impl LaneSettings {
    pub(super) fn read(env: &mut Env) -> Self {
        let d = LaneSettings::default();
        let at_least_1 = "must be at least 1 (messages per tenant, channel and second)";
        LaneSettings {
            enabled: env.flag("COMMUNICATION_LANES", d.enabled),
            share_high: env.number_in(
                "COMMUNICATION_FAIR_SHARE_HIGH",
                d.share_high,
                1..=u32::MAX,
                at_least_1,
            ),
            share_normal: env.number_in(
                "COMMUNICATION_FAIR_SHARE_NORMAL",
                d.share_normal,
                1..=u32::MAX,
                at_least_1,
            ),
            redis_timeout: env
                .millis("COMMUNICATION_FAIR_SHARE_REDIS_TIMEOUT_MS", d.redis_timeout)
                .max(Duration::from_millis(1)),
        }
    }
}
