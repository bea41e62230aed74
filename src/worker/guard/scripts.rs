//! The Lua forms of `breaker` and `bucket`, run atomically in Redis so every worker replica
//! shares one breaker and one bucket per provider. Time is Redis's own clock (`TIME`), so
//! replicas with skewed clocks still agree. Keys (`ns` is `COMMUNICATION_NAMESPACE`):
//!
//! - `ns:cb:{<provider_id>}`: hash `failures`, `open_until`, `probe`, `probe_until`;
//! - `ns:rl:{<provider_id>}`: hash `tokens`, `at`.
//!
//! `ADMIT` touches both, so they share the provider id as their Redis Cluster hash tag.
//!
//! Both expire once they carry nothing a fresh key would not, so deleted providers leave
//! nothing behind.

use std::sync::LazyLock;

use redis::Script;

/// One round trip before an attempt: the breaker check, then (if the breaker lets the call
/// through) the token take.
///
/// KEYS: breaker, bucket. ARGV: token, probe ttl ms, breaker on (1/0), rate per second (0: no
/// limit), reservation horizon ms, idle ttl ms.
///
/// Returns `{code, value, failures}`: 0 go (closed), 1 go (this caller probes), 2 open until
/// value, 3 another caller probes until value, 4 token reserved value ms ahead, 5 no token
/// within the horizon (next one value ms ahead).
pub static ADMIT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local idle = tonumber(ARGV[6])
local probing = false
local failures = 0
if ARGV[3] == '1' then
  local b = redis.call('HMGET', KEYS[1], 'failures', 'open_until', 'probe_until')
  failures = tonumber(b[1]) or 0
  local open_until = tonumber(b[2])
  if open_until then
    if now < open_until then return {2, open_until, failures} end
    local probe_until = tonumber(b[3]) or 0
    if probe_until > now then return {3, probe_until, failures} end
    local lapses = now + tonumber(ARGV[2])
    redis.call('HSET', KEYS[1], 'probe', ARGV[1], 'probe_until', lapses)
    redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) + idle)
    probing = true
  end
end
local rate = tonumber(ARGV[4])
if rate > 0 then
  local cap = math.max(1, rate)
  local s = redis.call('HMGET', KEYS[2], 'tokens', 'at')
  local tokens = tonumber(s[1]) or cap
  local at = tonumber(s[2]) or now
  if now > at then
    tokens = math.min(cap, tokens + (now - at) * rate / 1000)
    at = now
  end
  local code = 0
  local wait = 0
  if tokens >= 1 then
    tokens = tokens - 1
  else
    wait = math.ceil((1 - tokens) * 1000 / rate)
    if wait > tonumber(ARGV[5]) then
      code = 5
    else
      tokens = tokens - 1
      code = 4
    end
  end
  if code ~= 5 then
    redis.call('HSET', KEYS[2], 'tokens', string.format('%.6f', tokens), 'at', at)
    redis.call('PEXPIRE', KEYS[2], math.ceil((cap - tokens) * 1000 / rate) + 1000)
  end
  if code ~= 0 then
    if probing then redis.call('HDEL', KEYS[1], 'probe', 'probe_until') end
    return {code, wait, failures}
  end
end
if probing then return {1, now, failures} end
return {0, now, failures}
",
    )
});

/// The outcome of a call. KEYS: breaker. ARGV: `ok` | `fail` | `release`, token, threshold,
/// cool-down ms, idle ttl ms.
///
/// Returns `{code, value}`: 0 counted (value = failures), 1 opened until value, 2 already open
/// (or someone else probing) until value, 3 closed or released.
pub static OUTCOME: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.replicate_commands then redis.replicate_commands() end
if ARGV[1] == 'ok' then
  redis.call('DEL', KEYS[1])
  return {3, 0}
end
local b = redis.call('HMGET', KEYS[1], 'failures', 'open_until', 'probe', 'probe_until')
local mine = b[3] == ARGV[2]
if ARGV[1] == 'release' then
  if mine then redis.call('HDEL', KEYS[1], 'probe', 'probe_until') end
  return {3, 0}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local idle = tonumber(ARGV[5])
local open_until = tonumber(b[2])
if open_until and not mine then
  return {2, math.max(open_until, tonumber(b[4]) or 0)}
end
local failures = (tonumber(b[1]) or 0) + 1
if mine or failures >= tonumber(ARGV[3]) then
  local cooldown = tonumber(ARGV[4])
  local until_ms = now + cooldown
  redis.call('HSET', KEYS[1], 'failures', failures, 'open_until', until_ms)
  redis.call('HDEL', KEYS[1], 'probe', 'probe_until')
  redis.call('PEXPIRE', KEYS[1], cooldown + idle)
  return {1, until_ms}
end
redis.call('HSET', KEYS[1], 'failures', failures)
redis.call('PEXPIRE', KEYS[1], idle)
return {0, failures}
",
    )
});
