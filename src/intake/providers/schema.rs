//! The bodies of `/v1/providers`: the request structs the handlers read (through
//! `JsonBody`, so a body that does not fit its struct is a 422 naming the field) and the
//! response structs they answer with, which are also what the OpenAPI document describes.
//! `config` stays a JSON object here: the kind's builder reads it and reports every problem
//! of it at once, each as `config.<field>`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::intake::json::RequestFields;

/// Body of `POST /v1/providers`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProviderCreate {
    /// Unique per tenant, 1 to 100 characters.
    #[schema(example = "primary sms")]
    pub name: String,
    /// `email` or `sms`; one of the kind's channels.
    #[schema(example = "sms")]
    pub channel: String,
    /// A kind from `GET /v1/provider-kinds`.
    #[schema(example = "twilio")]
    pub kind: String,
    /// Lower is tried first (0–10000, default 100).
    pub priority: Option<i64>,
    /// Default true.
    pub enabled: Option<bool>,
    /// The kind's fields (see `GET /v1/provider-kinds`); secret fields are encrypted at rest
    /// and masked in responses.
    #[schema(value_type = std::collections::HashMap<String, serde_json::Value>)]
    pub config: Map<String, Value>,
}

/// Body of `PATCH /v1/providers/{id}`: any of these. `config` fields are merged: a field
/// given replaces, `null` removes, a secret left out keeps its value.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProviderPatch {
    pub name: Option<String>,
    pub priority: Option<i64>,
    pub enabled: Option<bool>,
    #[schema(value_type = Option<std::collections::HashMap<String, serde_json::Value>>)]
    pub config: Option<Map<String, Value>>,
}

/// Optional body of `POST /v1/providers/{id}/test`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProviderTestRequest {
    /// An email address (email providers) or an E.164 number (SMS providers) that receives a
    /// short test message through the pipeline, pinned to this provider, if the check passes.
    pub send_to: Option<String>,
}

/// The last "test connection" of a provider.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProviderTestResult {
    pub at: chrono::DateTime<chrono::Utc>,
    pub ok: Option<bool>,
    pub detail: Option<String>,
}

/// A provider; secrets in `config` are masked (at most the last 4 characters shown).
#[derive(Debug, Serialize, ToSchema)]
pub struct ProviderView {
    pub id: Uuid,
    pub name: String,
    /// `email` or `sms`.
    pub channel: String,
    pub kind: String,
    pub priority: i32,
    pub enabled: bool,
    #[schema(value_type = std::collections::HashMap<String, serde_json::Value>)]
    pub config: Map<String, Value>,
    /// `tenant` or `platform`.
    pub scope: String,
    pub last_test: Option<ProviderTestResult>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProviderList {
    pub items: Vec<ProviderView>,
}

/// Result of `POST /v1/providers/{id}/test`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProviderCheck {
    pub id: Uuid,
    pub ok: bool,
    pub detail: String,
    /// transient, provider_permanent or recipient_permanent when `ok` is false.
    pub error_class: Option<String>,
    pub latency_ms: u64,
    pub tested_at: chrono::DateTime<chrono::Utc>,
    /// Present when the request had `send_to`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub test_message: Option<ProviderTestMessage>,
}

/// The test message of `send_to`: queued (follow it with `GET /v1/messages/{id}`), or
/// skipped because the check failed.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProviderTestMessage {
    pub id: Option<Uuid>,
    /// `queued` or `skipped`.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub detail: Option<String>,
}

impl RequestFields for ProviderCreate {}
impl RequestFields for ProviderPatch {}
impl RequestFields for ProviderTestRequest {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::FieldError;
    use crate::intake::json::parse_body;
    use serde_json::json;

    fn error_of<T: RequestFields + std::fmt::Debug>(v: Value) -> Vec<FieldError> {
        let e = parse_body::<T>(v.to_string().as_bytes()).expect_err("refused");
        assert_eq!(e.status, axum::http::StatusCode::UNPROCESSABLE_ENTITY);
        e.errors
    }

    #[test]
    fn a_mismatch_names_its_field() {
        let e = error_of::<ProviderTestRequest>(json!({"sendto": "a@b.c"}));
        assert_eq!(e, vec![FieldError::new("sendto", "is not a known field")]);
        let e = error_of::<ProviderTestRequest>(json!({"send_to": 42}));
        assert_eq!(e, vec![FieldError::new("send_to", "must be a string")]);
        let e =
            error_of::<ProviderCreate>(json!({"channel": "sms", "kind": "system", "config": {}}));
        assert_eq!(e, vec![FieldError::new("name", "is required")]);
        let e = error_of::<ProviderPatch>(json!({"enabled": "yes"}));
        assert_eq!(e, vec![FieldError::new("enabled", "must be true or false")]);
        let e = error_of::<ProviderPatch>(json!({"priority": "high", "config": {}}));
        assert_eq!(e, vec![FieldError::new("priority", "must be an integer")]);
        let e = error_of::<ProviderPatch>(json!({"config": "x"}));
        assert_eq!(e, vec![FieldError::new("config", "must be a JSON object")]);
    }
}
