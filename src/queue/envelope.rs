//! The queue envelope: the contract between publishers (intake, the platform's manager) and
//! workers. Documented in docs/queue-contract.md and docs/envelope.schema.json.
//!
//! Version 1 is additive: new fields are optional and unknown fields are ignored, so older
//! workers accept newer publishers. A breaking change is `version: 2`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::domain::{Channel, Content, FieldError, MessageDraft, Priority, TenantId, ValidMessage};

pub const ENVELOPE_VERSION: u32 = 1;
/// Envelopes larger than this are refused before parsing.
pub const MAX_ENVELOPE_BYTES: usize = 1024 * 1024;

/// The wire form of a send.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope {
    pub version: u32,
    pub id: Uuid,
    pub tenant_id: String,
    pub channel: String,
    pub to: String,
    pub content: Content,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<u64>,
    /// The lane asked for (absent: `normal`). The service may move a message to a lower lane
    /// (fair share), never a higher one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<Priority>,
    pub created_at: DateTime<Utc>,
}

/// The little the router reads of an envelope to choose its lane: never the content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaneHint {
    pub tenant_id: TenantId,
    pub channel: Channel,
    pub priority: Priority,
}

/// Reads [`LaneHint`] from an envelope, or `None` when it cannot (not JSON, a bad tenant,
/// channel or priority): such an envelope is sent on to the `normal` lane unchanged, where the
/// worker's full validation refuses and records it.
pub fn lane_hint(body: &[u8]) -> Option<LaneHint> {
    #[derive(Deserialize)]
    struct Hint<'a> {
        #[serde(borrow)]
        tenant_id: std::borrow::Cow<'a, str>,
        #[serde(borrow)]
        channel: std::borrow::Cow<'a, str>,
        #[serde(default)]
        priority: Option<Priority>,
    }
    if body.len() > MAX_ENVELOPE_BYTES {
        return None;
    }
    let hint: Hint = serde_json::from_slice(body).ok()?;
    Some(LaneHint {
        tenant_id: TenantId::parse(&hint.tenant_id).ok()?,
        channel: Channel::parse(&hint.channel)?,
        priority: hint.priority.unwrap_or_default(),
    })
}

/// An envelope that passed validation.
#[derive(Debug, Clone)]
pub struct ValidEnvelope {
    pub id: Uuid,
    pub tenant_id: TenantId,
    pub message: ValidMessage,
    pub created_at: DateTime<Utc>,
}

/// Why an envelope was refused, plus whatever identity could still be read from it (so the
/// refusal can be recorded against the message when possible).
#[derive(Debug, Clone)]
pub struct Rejection {
    pub reason: String,
    pub id: Option<Uuid>,
    pub tenant_id: Option<TenantId>,
    pub channel: Option<String>,
    pub to: Option<String>,
}

impl Envelope {
    pub fn new(
        id: Uuid,
        tenant_id: &TenantId,
        message: &ValidMessage,
        created_at: DateTime<Utc>,
    ) -> Envelope {
        Envelope {
            version: ENVELOPE_VERSION,
            id,
            tenant_id: tenant_id.as_str().to_owned(),
            channel: message.channel.as_str().to_owned(),
            to: message.to.as_str().to_owned(),
            content: message.content.clone(),
            idempotency_key: message.idempotency_key.clone(),
            provider_id: message.provider_id,
            metadata: message.metadata.clone(),
            ttl_seconds: message.ttl_seconds,
            priority: None,
            created_at,
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        // Serialising plain data with string keys cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

fn describe(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(|e| format!("{}: {}", e.field, e.message))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Decodes and validates an envelope exactly as strictly as the HTTP intake validates a send.
/// serde's messages quote the offending value (`invalid type: string "Your code is 482913"`),
/// and a value here can be a one-time code. The reason is logged, stored and listed, so
/// values are hidden; field names (unknown/missing/duplicate field) are kept.
fn scrub_serde_error(e: &serde_json::Error) -> String {
    let text = e.to_string();
    if ["unknown field", "missing field", "duplicate field"]
        .iter()
        .any(|p| text.starts_with(p))
    {
        return text;
    }
    let mut out = String::with_capacity(text.len());
    let mut hidden: Option<char> = None;
    for c in text.chars() {
        match hidden {
            Some(close) if c == close => {
                out.push_str("(value hidden)");
                hidden = None;
            }
            Some(_) => {}
            None if c == '"' || c == '`' => hidden = Some(c),
            None => out.push(c),
        }
    }
    if hidden.is_some() {
        out.push_str("(value hidden)");
    }
    out
}

pub fn decode(body: &[u8]) -> Result<ValidEnvelope, Rejection> {
    let reject = |reason: String, v: Option<&Value>| Rejection {
        reason,
        id: v
            .and_then(|v| v.get("id"))
            .and_then(Value::as_str)
            .and_then(|s| Uuid::parse_str(s).ok()),
        tenant_id: v
            .and_then(|v| v.get("tenant_id"))
            .and_then(Value::as_str)
            .and_then(|s| TenantId::parse(s).ok()),
        channel: v
            .and_then(|v| v.get("channel"))
            .and_then(Value::as_str)
            .map(str::to_owned),
        to: v
            .and_then(|v| v.get("to"))
            .and_then(Value::as_str)
            .map(|s| s.chars().take(320).collect()),
    };
    if body.len() > MAX_ENVELOPE_BYTES {
        return Err(reject(
            format!("envelope is larger than {MAX_ENVELOPE_BYTES} bytes"),
            None,
        ));
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| reject(format!("envelope is not valid JSON: {e}"), None))?;
    if !value.is_object() {
        return Err(reject("envelope must be a JSON object".into(), None));
    }
    match value.get("version") {
        Some(Value::Number(n)) if n.as_u64() == Some(u64::from(ENVELOPE_VERSION)) => {}
        Some(Value::Number(n)) => {
            return Err(reject(
                format!("envelope version {n} is not supported (this worker reads version 1)"),
                Some(&value),
            ));
        }
        _ => {
            return Err(reject(
                "version: is required and must be 1".into(),
                Some(&value),
            ));
        }
    }
    let envelope: Envelope = serde_json::from_value(value.clone()).map_err(|e| {
        reject(
            format!(
                "envelope does not match version 1: {}",
                scrub_serde_error(&e)
            ),
            Some(&value),
        )
    })?;
    let tenant_id = TenantId::parse(&envelope.tenant_id)
        .map_err(|m| reject(format!("tenant_id: {m}"), Some(&value)))?;
    let draft = MessageDraft {
        channel: Some(envelope.channel),
        to: Some(envelope.to),
        content: Some(envelope.content),
        provider_id: envelope.provider_id,
        metadata: envelope.metadata,
        ttl_seconds: envelope.ttl_seconds,
        idempotency_key: envelope.idempotency_key,
    };
    let message = draft
        .validate()
        .map_err(|errors| reject(describe(&errors), Some(&value)))?;
    Ok(ValidEnvelope {
        id: envelope.id,
        tenant_id,
        message,
        created_at: envelope.created_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mistyped_value_is_not_quoted_in_the_rejection_reason() {
        let id = Uuid::now_v7();
        for content in [
            serde_json::json!("Your code is 482913"),
            serde_json::json!({"text": 482913}),
        ] {
            let body = serde_json::json!({"version": 1, "id": id, "tenant_id": "acme",
                "channel": "sms", "to": "+14155550100", "content": content,
                "created_at": "2026-11-25T10:00:00Z"});
            let Err(rejection) = decode(body.to_string().as_bytes()) else {
                panic!("accepted a mistyped envelope")
            };
            assert!(!rejection.reason.contains("482913"), "{}", rejection.reason);
            assert!(
                rejection.reason.contains("(value hidden)"),
                "{}",
                rejection.reason
            );
        }
        let body = serde_json::json!({"version": 1, "id": id, "tenant_id": "acme",
            "channel": "sms", "to": "+14155550100", "content": {"text": "x", "bogus": 1},
            "created_at": "2026-11-25T10:00:00Z"});
        let Err(rejection) = decode(body.to_string().as_bytes()) else {
            panic!("accepted a mistyped envelope")
        };
        assert!(rejection.reason.contains("bogus"), "{}", rejection.reason);
    }
    use serde_json::json;

    fn good() -> Value {
        json!({
            "version": 1,
            "id": "0192f6c2-3a5e-7c3e-9b1a-1a2b3c4d5e6f",
            "tenant_id": "acme",
            "channel": "sms",
            "to": "+14155550100",
            "content": {"text": "Your code is 123456"},
            "created_at": "2026-11-25T10:00:00Z"
        })
    }

    #[test]
    fn the_lane_hint_reads_tenant_channel_and_priority_and_gives_up_on_anything_odd() {
        let hint = lane_hint(&serde_json::to_vec(&good()).expect("json")).expect("hint");
        assert_eq!(hint.tenant_id.as_str(), "acme");
        assert_eq!(hint.channel, Channel::Sms);
        assert_eq!(hint.priority, Priority::Normal);
        let mut v = good();
        v["priority"] = json!("high");
        let hint = lane_hint(&serde_json::to_vec(&v).expect("json")).expect("hint");
        assert_eq!(hint.priority, Priority::High);
        assert!(decode(&serde_json::to_vec(&v).expect("json")).is_ok());
        v["priority"] = json!("urgent");
        assert_eq!(lane_hint(&serde_json::to_vec(&v).expect("json")), None);
        let r = decode(&serde_json::to_vec(&v).expect("json")).expect_err("bad priority");
        assert!(
            r.reason.contains("(value hidden)") || r.reason.contains("variant"),
            "{}",
            r.reason
        );
        let mut v = good();
        v["channel"] = json!("fax");
        assert_eq!(lane_hint(&serde_json::to_vec(&v).expect("json")), None);
        assert_eq!(lane_hint(b"{not json"), None);
        // Escaped strings still parse (they cannot be borrowed from the body).
        let body = br#"{"tenant_id": "ac\u006de", "channel": "email", "priority": "bulk"}"#;
        let hint = lane_hint(body).expect("hint");
        assert_eq!(hint.tenant_id.as_str(), "acme");
        assert_eq!(hint.priority, Priority::Bulk);
    }

    #[test]
    fn a_valid_envelope_decodes() {
        let body = serde_json::to_vec(&good()).expect("json");
        let env = decode(&body).expect("valid");
        assert_eq!(env.tenant_id.as_str(), "acme");
        assert_eq!(env.message.to.as_str(), "+14155550100");
    }

    #[test]
    fn unknown_fields_are_ignored_for_forward_compatibility() {
        let mut v = good();
        v["priority_hint"] = json!("high");
        assert!(decode(&serde_json::to_vec(&v).expect("json")).is_ok());
    }

    #[test]
    fn rejections_say_why_and_keep_the_identity() {
        let mut v = good();
        v["to"] = json!("4155550100");
        let r = decode(&serde_json::to_vec(&v).expect("json")).expect_err("invalid");
        assert!(r.reason.starts_with("to: "), "{}", r.reason);
        assert!(r.id.is_some());
        assert_eq!(r.tenant_id.map(|t| t.to_string()).as_deref(), Some("acme"));

        let mut v = good();
        v["version"] = json!(2);
        let r = decode(&serde_json::to_vec(&v).expect("json")).expect_err("invalid");
        assert!(r.reason.contains("version 2"));

        let r = decode(b"{not json").expect_err("invalid");
        assert!(r.reason.contains("not valid JSON"));
        assert!(r.id.is_none());
    }
}
