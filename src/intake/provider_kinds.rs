//! `GET /v1/provider-kinds`: every provider kind's description, from the registry, so a form
//! for any kind can be drawn with no per-kind code (the dashboard and clients do).

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, ApiErrors};
use crate::providers::description::{FieldSpec, FieldType, KindSpec};
use crate::providers::registry;

/// One field of a kind's `config`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProviderKindField {
    /// The key in `config`.
    #[schema(example = "account_sid")]
    pub name: String,
    #[schema(example = "Account SID")]
    pub label: String,
    /// `secret` fields are encrypted at rest and masked in responses.
    #[serde(rename = "type")]
    pub field_type: FieldType,
    pub required: bool,
    /// The choices of a `select` field (absent on the others).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub options: Option<Vec<String>>,
    pub help: String,
    /// A value that passes validation, in the field's type (string, number or boolean).
    pub example: Value,
}

/// What a provider kind is and what its `config` takes.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProviderKindView {
    /// The `kind` of `POST /v1/providers`.
    #[schema(example = "twilio")]
    pub kind: String,
    #[schema(example = "Twilio")]
    pub label: String,
    pub description: String,
    /// `email` and/or `sms`.
    pub channels: Vec<String>,
    /// Whether the kind posts delivery receipts to `/v1/webhooks/{kind}/{provider_id}`.
    pub receipts: bool,
    pub fields: Vec<ProviderKindField>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProviderKindList {
    pub items: Vec<ProviderKindView>,
}

fn field_view(field: &FieldSpec) -> ProviderKindField {
    ProviderKindField {
        name: field.name.to_owned(),
        label: field.label.to_owned(),
        field_type: field.field_type,
        required: field.required,
        options: (field.field_type == FieldType::Select)
            .then(|| field.options.iter().map(|o| (*o).to_owned()).collect()),
        help: field.help.to_owned(),
        example: field.example.to_json(),
    }
}

fn kind_view(spec: &KindSpec) -> ProviderKindView {
    ProviderKindView {
        kind: spec.kind.as_str().to_owned(),
        label: spec.label.to_owned(),
        description: spec.description.to_owned(),
        channels: spec
            .channels
            .iter()
            .map(|c| c.as_str().to_owned())
            .collect(),
        receipts: spec.receipts.is_some(),
        fields: spec.all_fields().map(field_view).collect(),
    }
}

/// Every kind's description.
pub fn kinds() -> ProviderKindList {
    ProviderKindList {
        items: registry::KINDS.iter().map(|k| kind_view(k)).collect(),
    }
}

#[utoipa::path(
    get,
    path = "/v1/provider-kinds",
    operation_id = "list_provider_kinds",
    tag = "providers",
    summary = "The provider kinds and their configuration fields",
    responses(
        (status = 200, description = "Every kind: its channels and the fields of its `config`", body = ProviderKindList),
        ApiErrors,
    )
)]
pub async fn list(
    State(_state): State<Arc<AppState>>,
    _caller: Caller,
) -> Result<Response, ApiError> {
    Ok(axum::Json(kinds()).into_response())
}
