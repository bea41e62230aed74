//! Idempotency keys in Redis, claimed in the same round trip that leaves the "queued" marker
//! for the message (so a backlog still reads as `queued`): the send's one script
//! (`send_gate`), which also admits the send under its limits and decides its lane.
//!
//! Keys (`ns` is `COMMUNICATION_NAMESPACE`):
//! - `ns:idem:{tenant}:<sha256(key)>` holds `pending|<fingerprint>|<id>` while the publish is
//!   in flight and `done|<fingerprint>|<id>` after the broker confirmed it (24 h);
//! - `ns:msg:{tenant}:<id>` is the queued marker (24 h).
//!
//! The send's script writes both, so both carry the tenant as their Redis Cluster hash tag
//! (`{tenant}`: the only part every key of that script is built from) and land in one slot.

use deadpool_redis::redis;
use sha2::{Digest, Sha256};
use uuid::Uuid;

pub const IDEMPOTENCY_TTL_SECS: u64 = 24 * 3600;
pub const MARKER_TTL_SECS: u64 = 24 * 3600;

/// A claim found already stored for the key: whose publish was confirmed (`done`) or is in
/// flight, for which body, and its message id.
#[derive(Debug, PartialEq, Eq)]
pub struct Claim {
    pub done: bool,
    pub fingerprint: String,
    pub id: Uuid,
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

/// The claim's value while the publish is in flight.
pub fn pending_value(fingerprint: &str, id: Uuid) -> String {
    format!("pending|{fingerprint}|{id}")
}

/// What a stored claim value says.
pub fn parse_claim(found: &str) -> Claim {
    let mut parts = found.splitn(3, '|');
    let state = parts.next().unwrap_or_default();
    let fp = parts.next().unwrap_or_default().to_owned();
    match parts.next().and_then(|s| Uuid::parse_str(s).ok()) {
        Some(id) => Claim {
            done: state == "done",
            fingerprint: fp,
            id,
        },
        // Unreadable value: treat as in flight rather than risk a duplicate.
        None => Claim {
            done: false,
            fingerprint: fp,
            id: Uuid::nil(),
        },
    }
}

/// Marks the claim done after the broker confirmed the publish (its TTL kept).
pub async fn complete<C: redis::aio::ConnectionLike>(
    conn: &mut C,
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

/// The Redis Cluster hash tag of a key: the first `{…}` with something inside (for the tests
/// that check which keys share a slot).
#[cfg(test)]
pub(crate) fn hash_tag(key: &str) -> &str {
    key.find('{')
        .and_then(|open| {
            let close = key[open + 1..].find('}')? + open + 1;
            (close > open + 1).then(|| &key[open + 1..close])
        })
        .unwrap_or(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_claim_reads_back_and_an_unreadable_one_is_in_flight() {
        let id = Uuid::new_v4();
        assert_eq!(
            parse_claim(&pending_value("abc", id)),
            Claim {
                done: false,
                fingerprint: "abc".into(),
                id
            }
        );
        assert_eq!(
            parse_claim(&format!("done|abc|{id}")),
            Claim {
                done: true,
                fingerprint: "abc".into(),
                id
            }
        );
        assert_eq!(
            parse_claim("garbage"),
            Claim {
                done: false,
                fingerprint: String::new(),
                id: Uuid::nil()
            }
        );
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
