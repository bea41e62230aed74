//! Idempotency keys in Redis, claimed in the same round trip that leaves the "queued" marker
//! for the message (so a backlog still reads as `queued`).
//!
//! Keys (`ns` is `COMMUNICATION_NAMESPACE`):
//! - `ns:idem:{tenant}:<sha256(key)>` holds `pending|<fingerprint>|<id>` while the publish is
//!   in flight and `done|<fingerprint>|<id>` after the broker confirmed it (24 h);
//! - `ns:msg:{tenant}:<id>` is the queued marker (24 h).
//!
//! The claim script writes both, so both carry the tenant as their Redis Cluster hash tag
//! (`{tenant}`: the only part both are built from) and land in one slot.

use deadpool_redis::redis::{self, Script};
use sha2::{Digest, Sha256};
use uuid::Uuid;

pub const IDEMPOTENCY_TTL_SECS: u64 = 24 * 3600;
pub const MARKER_TTL_SECS: u64 = 24 * 3600;

/// What the claim found.
#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// The key is ours now.
    Claimed,
    /// The key was already used.
    Existing {
        done: bool,
        fingerprint: String,
        id: Uuid,
    },
}

pub fn idem_key(ns: &str, tenant: &str, key: &str) -> String {
    format!(
        "{ns}:idem:{{{tenant}}}:{}",
        hex::encode(Sha256::digest(key.as_bytes()))
    )
}

pub fn marker_key(ns: &str, tenant: &str, id: Uuid) -> String {
    format!("{ns}:msg:{{{tenant}}}:{id}")
}

const CLAIM: &str = r"
local cur = redis.call('GET', KEYS[1])
if cur then return cur end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
redis.call('SET', KEYS[2], ARGV[3], 'EX', ARGV[4])
return false
";

const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
redis.call('DEL', KEYS[2])
return 1
";

pub async fn claim(
    conn: &mut deadpool_redis::Connection,
    idem: &str,
    marker: &str,
    fingerprint: &str,
    id: Uuid,
    marker_value: &str,
) -> Result<Claim, redis::RedisError> {
    let pending = format!("pending|{fingerprint}|{id}");
    let found: Option<String> = Script::new(CLAIM)
        .key(idem)
        .key(marker)
        .arg(&pending)
        .arg(IDEMPOTENCY_TTL_SECS)
        .arg(marker_value)
        .arg(MARKER_TTL_SECS)
        .invoke_async(conn)
        .await?;
    let Some(found) = found else {
        return Ok(Claim::Claimed);
    };
    let mut parts = found.splitn(3, '|');
    let state = parts.next().unwrap_or_default();
    let fp = parts.next().unwrap_or_default().to_owned();
    let existing = parts.next().and_then(|s| Uuid::parse_str(s).ok());
    match existing {
        Some(existing) => Ok(Claim::Existing {
            done: state == "done",
            fingerprint: fp,
            id: existing,
        }),
        // Unreadable value: treat as in flight rather than risk a duplicate.
        None => Ok(Claim::Existing {
            done: false,
            fingerprint: fp,
            id: Uuid::nil(),
        }),
    }
}

pub async fn complete(
    conn: &mut deadpool_redis::Connection,
    idem: &str,
    fingerprint: &str,
    id: Uuid,
) -> Result<(), redis::RedisError> {
    redis::cmd("SET")
        .arg(idem)
        .arg(format!("done|{fingerprint}|{id}"))
        .arg("KEEPTTL")
        .query_async::<()>(conn)
        .await
}

/// Releases a claim (and the marker) after a failed publish, so the caller can retry.
pub async fn release(
    conn: &mut deadpool_redis::Connection,
    idem: Option<&str>,
    marker: &str,
    fingerprint: &str,
    id: Uuid,
) -> Result<(), redis::RedisError> {
    let Some(idem) = idem else {
        return redis::cmd("DEL").arg(marker).query_async::<()>(conn).await;
    };
    let pending = format!("pending|{fingerprint}|{id}");
    Script::new(RELEASE)
        .key(idem)
        .key(marker)
        .arg(pending)
        .invoke_async::<i64>(conn)
        .await
        .map(|_| ())
}

pub async fn set_marker(
    conn: &mut deadpool_redis::Connection,
    marker: &str,
    value: &str,
) -> Result<(), redis::RedisError> {
    redis::cmd("SET")
        .arg(marker)
        .arg(value)
        .arg("EX")
        .arg(MARKER_TTL_SECS)
        .query_async::<()>(conn)
        .await
}

pub async fn get_marker(
    conn: &mut deadpool_redis::Connection,
    marker: &str,
) -> Result<Option<String>, redis::RedisError> {
    redis::cmd("GET").arg(marker).query_async(conn).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Redis Cluster hash tag of a key: the first `{…}` with something inside.
    fn hash_tag(key: &str) -> &str {
        key.find('{')
            .and_then(|open| {
                let close = key[open + 1..].find('}')? + open + 1;
                (close > open + 1).then(|| &key[open + 1..close])
            })
            .unwrap_or(key)
    }

    #[test]
    fn a_claim_and_its_marker_share_a_hash_tag_under_the_namespace() {
        let id = Uuid::new_v4();
        let idem = idem_key("prod", "acme", "order-42");
        let marker = marker_key("prod", "acme", id);
        assert!(idem.starts_with("prod:idem:{acme}:"), "{idem}");
        assert_eq!(marker, format!("prod:msg:{{acme}}:{id}"));
        assert_eq!(hash_tag(&idem), hash_tag(&marker));
        assert_eq!(hash_tag(&idem), "acme");
        assert_ne!(idem_key("prod", "acme", "k"), idem_key("test", "acme", "k"));
    }
}
