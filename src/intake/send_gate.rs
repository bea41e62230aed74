//! One Redis call per send: a single Lua script claims the `Idempotency-Key`, admits the send
//! under the operator's limits and decides its lane, atomically, and leaves the "queued"
//! marker. It is the three steps that were three round trips (the claim, `limits::admission`,
//! `lanes::fair_share`) with the same Lua and the same keys, in this order:
//!
//! 1. the key already used → its stored value (`pending|…` or `done|…`), nothing else done:
//!    a replay spends no limit units and takes no lane;
//! 2. over the daily quota or the accept rate → the verdict, nothing written: no claim to
//!    release, nothing counted, no marker;
//! 3. otherwise the claim (`pending|<fingerprint>|<id>`) and the marker are written, the send
//!    is counted, and the lane is decided (when there is one to decide).
//!
//! Every key carries the tenant as its Redis Cluster hash tag (`{tenant}`), so the script's
//! keys land in one slot. After a failed publish, [`undo`] gives the units back and releases
//! the claim and the marker in one more call; after the broker's confirm, `idempotency::complete`
//! marks the claim done.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use redis::aio::MultiplexedConnection;
use redis::{Script, Value};
use uuid::Uuid;

use super::idempotency::{self, Claim, IDEMPOTENCY_TTL_SECS, MARKER_TTL_SECS};
use crate::domain::Channel;
use crate::lanes::LaneAsk;
use crate::lanes::fair_share::FAIR_LANE_LUA;
use crate::limits::{
    ADMIT_LUA, ADMITTED, GIVE_BACK_LUA, RATE_WINDOW_TTL_SECS, TenantLimits, USAGE_TTL_SECS,
    rate_key, usage_key,
};

// KEYS[1] the queued marker, KEYS[2] the day's usage counter, then (their positions in ARGV)
// the idempotency key, the rate window and the fair-share counters from the requested lane
// down. ARGV: 1 marker value, 2 marker TTL, 3 quota (-1 none), 4 rate (-1 none), 5 usage TTL,
// 6 rate window TTL, 7 position of the idempotency key (0 none), 8 its pending value, 9 its
// TTL, 10 position of the rate window (0 none), 11 position of the first fair-share counter
// (0: no lane to decide), 12 the requested lane (1 high, 2 normal, 3 bulk), 13 high share,
// 14 normal share.
// Returns {3, stored value} for a used key, {1} over the rate, {2} over the quota, or
// {0, lane} (lane 0 when none was decided).
const SEND_BODY: &str = r"
local idem = tonumber(ARGV[7])
if idem > 0 then
  local cur = redis.call('GET', KEYS[idem])
  if cur then return {3, cur} end
end
local rate_at = tonumber(ARGV[10])
local rate_key = nil
if rate_at > 0 then rate_key = KEYS[rate_at] end
local verdict = admit(KEYS[2], rate_key, tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5], ARGV[6])
if verdict ~= 0 then return {verdict} end
if idem > 0 then redis.call('SET', KEYS[idem], ARGV[8], 'EX', ARGV[9]) end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
local lane = 0
local fair_at = tonumber(ARGV[11])
if fair_at > 0 then
  local asked = tonumber(ARGV[12])
  local keys = {}
  for l = asked, 3 do keys[l] = KEYS[fair_at + l - asked] end
  lane = fair_lane(keys, asked, tonumber(ARGV[13]), tonumber(ARGV[14]))
end
return {0, lane}
";

static SEND: LazyLock<Script> =
    LazyLock::new(|| Script::new(&format!("{ADMIT_LUA}{FAIR_LANE_LUA}{SEND_BODY}")));

// KEYS[1] the marker, then the counters to give a unit back to, then (ARGV[1], its position;
// 0 none) the idempotency key, released only while it still holds ARGV[2] (this send's
// pending value).
const UNDO_BODY: &str = r"
local idem = tonumber(ARGV[1])
local last = #KEYS
if idem > 0 then last = idem - 1 end
for i = 2, last do give_back(KEYS[i]) end
if idem > 0 and redis.call('GET', KEYS[idem]) == ARGV[2] then redis.call('DEL', KEYS[idem]) end
redis.call('DEL', KEYS[1])
return 1
";

static UNDO: LazyLock<Script> =
    LazyLock::new(|| Script::new(&format!("{GIVE_BACK_LUA}{UNDO_BODY}")));

/// What a send asks of Redis.
pub struct SendAsk<'a> {
    pub namespace: &'a str,
    pub tenant: &'a str,
    pub channel: Channel,
    pub id: Uuid,
    pub now: DateTime<Utc>,
    /// The Redis key of the `Idempotency-Key` (`idempotency::idem_key`) and the body's
    /// fingerprint.
    pub idempotency: Option<(&'a str, &'a str)>,
    /// The queued marker's key (`idempotency::marker_key`) and value.
    pub marker: &'a str,
    pub marker_value: &'a str,
    pub limits: TenantLimits,
    /// The lane to decide; `None` when there is nothing to ask Redis.
    pub lane: Option<&'a LaneAsk>,
}

/// What Redis answered.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Claimed, counted and marked; `lane` is [`FAIR_LANE_LUA`]'s answer (1–3) when a lane was
    /// asked.
    Accepted { counted: Counted, lane: Option<i64> },
    /// The key was used before (its stored claim); nothing was done.
    Used(Claim),
    /// Over a limit (`limits::OVER_RATE` or `limits::OVER_QUOTA`); nothing was written.
    Refused(i64),
}

/// The counters an accepted send counted in, to give back if it is not accepted after all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counted {
    usage: String,
    rate: Option<String>,
}

/// Runs the send's script.
pub async fn admit(
    conn: &mut MultiplexedConnection,
    ask: &SendAsk<'_>,
) -> Result<Outcome, redis::RedisError> {
    let usage = usage_key(ask.namespace, ask.tenant, ask.channel, ask.now.date_naive());
    let rate = ask
        .limits
        .accept_rate_per_second
        .map(|_| rate_key(ask.namespace, ask.tenant, ask.now.timestamp()));
    let limit = |v: Option<u32>| v.map_or(-1, i64::from);

    let mut invocation = SEND.prepare_invoke();
    invocation.key(ask.marker).key(&usage);
    let mut next = 3;
    let mut position = |present: bool| {
        if present {
            next += 1;
            next - 1
        } else {
            0
        }
    };
    let idem_at = position(ask.idempotency.is_some());
    let rate_at = position(rate.is_some());
    let fair_at = position(ask.lane.is_some());
    if let Some((idem, _)) = ask.idempotency {
        invocation.key(idem);
    }
    if let Some(rate) = &rate {
        invocation.key(rate);
    }
    if let Some(lane) = ask.lane {
        for key in &lane.keys {
            invocation.key(key);
        }
    }
    let pending = ask
        .idempotency
        .map(|(_, fingerprint)| idempotency::pending_value(fingerprint, ask.id))
        .unwrap_or_default();
    invocation
        .arg(ask.marker_value)
        .arg(MARKER_TTL_SECS)
        .arg(limit(ask.limits.daily_quota(ask.channel)))
        .arg(limit(ask.limits.accept_rate_per_second))
        .arg(USAGE_TTL_SECS)
        .arg(RATE_WINDOW_TTL_SECS)
        .arg(idem_at)
        .arg(pending)
        .arg(IDEMPOTENCY_TTL_SECS)
        .arg(rate_at)
        .arg(fair_at)
        .arg(ask.lane.map_or(0, |l| l.requested.index() + 1))
        .arg(ask.lane.map_or(0, |l| l.share_high))
        .arg(ask.lane.map_or(0, |l| l.share_normal));
    let reply: Vec<Value> = invocation.invoke_async(conn).await?;
    let int = |i: usize| match reply.get(i) {
        Some(Value::Int(n)) => Some(*n),
        _ => None,
    };
    match int(0) {
        Some(3) => {
            let stored = match reply.get(1) {
                Some(Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
                Some(Value::SimpleString(s)) => s.clone(),
                _ => String::new(),
            };
            Ok(Outcome::Used(idempotency::parse_claim(&stored)))
        }
        Some(ADMITTED) => Ok(Outcome::Accepted {
            counted: Counted { usage, rate },
            lane: int(1).filter(|n| *n > 0),
        }),
        Some(verdict) => Ok(Outcome::Refused(verdict)),
        None => Err(redis::RedisError::from((
            redis::ErrorKind::UnexpectedReturnType,
            "the send script answered something unexpected",
        ))),
    }
}

/// After a failed publish: gives back what [`admit`] counted and releases the claim (if it is
/// still this send's) and the marker, in one call, so the caller can retry and a broker outage
/// spends no quota.
pub async fn undo(
    conn: &mut MultiplexedConnection,
    counted: &Counted,
    marker: &str,
    idempotency: Option<(&str, &str)>,
    id: Uuid,
) -> Result<(), redis::RedisError> {
    let mut invocation = UNDO.prepare_invoke();
    invocation.key(marker).key(&counted.usage);
    let mut last = 2;
    if let Some(rate) = &counted.rate {
        invocation.key(rate);
        last += 1;
    }
    match idempotency {
        Some((idem, fingerprint)) => invocation
            .key(idem)
            .arg(last + 1)
            .arg(idempotency::pending_value(fingerprint, id)),
        None => invocation.arg(0).arg(""),
    };
    invocation.invoke_async::<i64>(conn).await.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Priority, TenantId};
    use crate::intake::idempotency::hash_tag;
    use crate::lanes::fair_share::counter_key;

    #[test]
    fn every_key_of_a_send_shares_the_tenant_hash_tag() {
        let tenant = TenantId::parse("acme").expect("tenant");
        let now = Utc::now();
        let id = Uuid::now_v7();
        let mut keys = vec![
            idempotency::marker_key("prod", "acme", id),
            idempotency::idem_key("prod", "acme", "order-1"),
            usage_key("prod", "acme", Channel::Sms, now.date_naive()),
            rate_key("prod", "acme", now.timestamp()),
        ];
        keys.extend(
            Priority::ALL
                .iter()
                .map(|lane| counter_key("prod", &tenant, Channel::Sms, *lane, now.timestamp())),
        );
        for key in &keys {
            assert_eq!(hash_tag(key), "acme", "{key}");
            assert!(key.starts_with("prod:"), "{key}");
        }
    }
}
