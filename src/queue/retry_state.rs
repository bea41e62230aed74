//! Where a delayed envelope stands in its delivery, carried in its AMQP headers across the
//! trip through a delay queue: the one typed form of those headers, read and written only
//! here.
//!
//! | header | meaning |
//! |---|---|
//! | `x-provider-index` | position of the current provider in the resolved list |
//! | `x-attempt` | attempts already counted on that provider |
//! | `x-not-before` | do not call before this instant (epoch ms): a wait the coarse delay tiers must not cut short |
//! | `x-rate-slot` | the provider whose rate-limit token this message already holds |
//!
//! An envelope without them (a first delivery, a replay) starts at the first provider with
//! a fresh budget. RabbitMQ's own `x-death` bookkeeping is never read or copied.

use lapin::types::{AMQPValue, FieldTable, LongString};
use uuid::Uuid;

/// Header: attempts already made on the current provider.
pub const HEADER_ATTEMPT: &str = "x-attempt";
/// Header: position of the current provider in the resolved list.
pub const HEADER_PROVIDER_INDEX: &str = "x-provider-index";
/// Header: do not attempt before this instant (epoch ms).
pub const HEADER_NOT_BEFORE: &str = "x-not-before";
/// Header: the provider whose rate-limit token this message already holds.
pub const HEADER_RATE_SLOT: &str = "x-rate-slot";

/// The delivery state a delayed envelope carries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetryState {
    /// Position of the provider to try in the resolved list.
    pub provider_index: usize,
    /// Attempts already counted on that provider.
    pub attempts: u32,
    /// Not to be attempted before this instant (epoch ms).
    pub not_before: Option<i64>,
    /// The provider whose rate-limit token is already taken for this message.
    pub rate_slot: Option<Uuid>,
}

impl RetryState {
    /// Reads the state from a delivery's headers; missing or unreadable values are the
    /// defaults (first provider, no attempts, no wait). One pass over the table, whatever it
    /// holds, and no allocation.
    pub fn from_headers(headers: Option<&FieldTable>) -> RetryState {
        let mut state = RetryState::default();
        let Some(headers) = headers else {
            return state;
        };
        for (name, value) in headers.inner() {
            match name.as_str() {
                HEADER_PROVIDER_INDEX => {
                    state.provider_index = integer(value).unwrap_or(0).max(0) as usize;
                }
                HEADER_ATTEMPT => {
                    state.attempts =
                        integer(value).unwrap_or(0).clamp(0, i64::from(u32::MAX)) as u32;
                }
                HEADER_NOT_BEFORE => state.not_before = integer(value),
                HEADER_RATE_SLOT => state.rate_slot = uuid(value),
                _ => {}
            }
        }
        state
    }

    /// The headers that carry this state (only the ones with something to say).
    pub fn to_headers(&self) -> FieldTable {
        let mut headers = FieldTable::default();
        headers.insert(
            HEADER_ATTEMPT.into(),
            AMQPValue::LongLongInt(i64::from(self.attempts)),
        );
        headers.insert(
            HEADER_PROVIDER_INDEX.into(),
            AMQPValue::LongLongInt(self.provider_index as i64),
        );
        if let Some(at) = self.not_before {
            headers.insert(HEADER_NOT_BEFORE.into(), AMQPValue::LongLongInt(at));
        }
        if let Some(slot) = self.rate_slot {
            let text = slot.hyphenated().to_string().into_bytes();
            headers.insert(
                HEADER_RATE_SLOT.into(),
                AMQPValue::LongString(LongString::from(text)),
            );
        }
        headers
    }
}

/// An integer header however the publisher typed it (other clients pick other widths, or
/// send digits as text).
fn integer(value: &AMQPValue) -> Option<i64> {
    match value {
        AMQPValue::LongLongInt(v) => Some(*v),
        AMQPValue::LongInt(v) => Some(i64::from(*v)),
        AMQPValue::LongUInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortUInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortShortInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortShortUInt(v) => Some(i64::from(*v)),
        AMQPValue::LongString(s) => std::str::from_utf8(s.as_bytes()).ok()?.parse().ok(),
        _ => None,
    }
}

fn uuid(value: &AMQPValue) -> Option<Uuid> {
    match value {
        AMQPValue::LongString(s) => Uuid::try_parse_ascii(s.as_bytes()).ok(),
        AMQPValue::ShortString(s) => Uuid::try_parse(s.as_str()).ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_survives_a_trip_through_headers() {
        let state = RetryState {
            provider_index: 2,
            attempts: 3,
            not_before: Some(1_790_000_000_123),
            rate_slot: Some(Uuid::new_v4()),
        };
        let headers = state.to_headers();
        assert_eq!(RetryState::from_headers(Some(&headers)), state);
        let bare = RetryState {
            provider_index: 1,
            ..Default::default()
        };
        let headers = bare.to_headers();
        assert!(!headers.inner().contains_key(HEADER_NOT_BEFORE));
        assert!(!headers.inner().contains_key(HEADER_RATE_SLOT));
        assert_eq!(RetryState::from_headers(Some(&headers)), bare);
    }

    #[test]
    fn missing_foreign_or_odd_headers_read_as_a_fresh_start() {
        assert_eq!(RetryState::from_headers(None), RetryState::default());
        let mut headers = FieldTable::default();
        headers.insert(
            "traceparent".into(),
            AMQPValue::LongString(b"x".to_vec().into()),
        );
        headers.insert(HEADER_ATTEMPT.into(), AMQPValue::LongLongInt(-4));
        headers.insert(HEADER_PROVIDER_INDEX.into(), AMQPValue::Boolean(true));
        headers.insert(
            HEADER_RATE_SLOT.into(),
            AMQPValue::LongString(b"nope".to_vec().into()),
        );
        assert_eq!(
            RetryState::from_headers(Some(&headers)),
            RetryState::default()
        );
    }

    #[test]
    fn integers_of_any_width_and_digits_as_text_are_read() {
        let mut headers = FieldTable::default();
        headers.insert(HEADER_ATTEMPT.into(), AMQPValue::ShortInt(2));
        headers.insert(
            HEADER_PROVIDER_INDEX.into(),
            AMQPValue::LongString(b"1".to_vec().into()),
        );
        headers.insert(HEADER_NOT_BEFORE.into(), AMQPValue::LongUInt(77));
        let state = RetryState::from_headers(Some(&headers));
        assert_eq!((state.attempts, state.provider_index), (2, 1));
        assert_eq!(state.not_before, Some(77));
    }
}
