//! `GET /openapi.json`: the OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]`
//! annotations. The router is built from the same annotated handlers (see
//! [`super::documented_routes`]), so a route cannot be served without being described, and the
//! request and response types documented are the ones the handlers read and answer (they live
//! beside their handlers; error bodies and the shared error responses in `error.rs`).
//!
//! Here: the document's info, tags and security, the schema of the domain's `Channel`, and
//! (until the providers API reads typed bodies) the types that describe its bodies.

use std::borrow::Cow;
use std::sync::OnceLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ObjectBuilder, RefOr, Schema, Type};
use utoipa::{Modify, OpenApi, PartialSchema, ToSchema};
use uuid::Uuid;

use crate::domain::{Channel, FieldError};

pub use super::error::Problem;

/// `email` or `sms`, from the domain's own list.
impl PartialSchema for Channel {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(Channel::ALL.map(Channel::as_str)))
            .into()
    }
}

impl ToSchema for Channel {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("ChannelName")
    }
}

// The providers API (`providers.rs`) and the receipts (`webhooks.rs`) still read bodies field
// by field; these types describe them for the document until those routes read typed bodies.

/// Body of `POST /v1/providers`.
#[derive(Serialize, ToSchema)]
pub struct ProviderCreate {
    /// Unique per tenant.
    pub name: String,
    pub channel: Channel,
    /// system, twilio, vonage, resend, sendgrid, postmark, mailgun, smtp.
    pub kind: String,
    /// Lower is tried first.
    pub priority: Option<i32>,
    pub enabled: Option<bool>,
    /// Kind-specific settings; secret fields are encrypted at rest and masked in responses.
    pub config: Value,
}

/// Body of `PATCH /v1/providers/{id}`: any of these; `config` fields are merged.
#[derive(Serialize, ToSchema)]
pub struct ProviderPatch {
    pub name: Option<String>,
    pub priority: Option<i32>,
    pub enabled: Option<bool>,
    pub config: Option<Value>,
}

#[derive(Serialize, ToSchema)]
pub struct ProviderTestResult {
    pub at: chrono::DateTime<chrono::Utc>,
    pub ok: Option<bool>,
    pub detail: Option<String>,
}

/// A provider; secrets in `config` are masked (at most the last 4 characters shown).
#[derive(Serialize, ToSchema)]
pub struct ProviderView {
    pub id: Uuid,
    pub name: String,
    pub channel: Channel,
    pub kind: String,
    pub priority: i32,
    pub enabled: bool,
    pub config: Value,
    /// `tenant` or `platform`.
    pub scope: String,
    pub last_test: Option<ProviderTestResult>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

#[derive(Serialize, ToSchema)]
pub struct ProviderList {
    pub items: Vec<ProviderView>,
}

/// Result of `POST /v1/providers/{id}/test`.
#[derive(Serialize, ToSchema)]
pub struct ProviderCheck {
    pub id: Uuid,
    pub ok: bool,
    pub detail: String,
    /// transient, provider_permanent or recipient_permanent when `ok` is false.
    pub error_class: Option<String>,
    pub latency_ms: u64,
    pub tested_at: chrono::DateTime<chrono::Utc>,
    /// Present when the request had `send_to`.
    pub test_message: Option<ProviderTestMessage>,
}

/// Optional body of `POST /v1/providers/{id}/test`.
#[derive(Serialize, ToSchema)]
pub struct ProviderTestRequest {
    /// An email address (email providers) or an E.164 number (SMS providers) that receives a
    /// short test message through the pipeline, pinned to this provider, if the check passes.
    pub send_to: Option<String>,
}

/// The test message of `send_to`: queued (follow it with `GET /v1/messages/{id}`), or
/// skipped because the check failed.
#[derive(Serialize, ToSchema)]
pub struct ProviderTestMessage {
    pub id: Option<Uuid>,
    /// `queued` or `skipped`.
    pub status: String,
    pub detail: Option<String>,
}

/// Answer to a delivery receipt.
#[derive(Serialize, ToSchema)]
pub struct WebhookAck {
    /// The message the receipt applied to (absent when ignored).
    pub message_id: Option<Uuid>,
    /// The message's status after the receipt, or `ignored` (an event not tracked).
    pub status: String,
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The service token with an `X-Tenant-Id` header, or a tenant API key.",
                    ))
                    .build(),
            ),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "logicspike-communication",
        description = "Queue-driven Email and SMS delivery: accept fast (202), deliver \
                       asynchronously through the tenant's providers with retries and failover."
    ),
    components(schemas(Problem, FieldError, Channel)),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags(
        (name = "send", description = "Accept messages for delivery"),
        (name = "messages", description = "Message status and events"),
        (name = "providers", description = "A tenant's delivery providers"),
        (name = "api-keys", description = "Tenant API keys"),
        (name = "dead-letters", description = "Dead letters and their replay (operators)"),
        (name = "webhooks", description = "Provider delivery receipts"),
        (name = "operations", description = "Health, readiness, metrics, this document"),
    )
)]
pub struct ApiDoc;

static DOCUMENT: OnceLock<String> = OnceLock::new();

/// The whole document as JSON (built once).
pub fn document_json() -> &'static str {
    DOCUMENT.get_or_init(|| {
        super::documented_routes()
            .split_for_parts()
            .1
            .to_json()
            .unwrap_or_else(|_| "{}".into())
    })
}

/// This document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    security(()),
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json"))
)]
pub async fn openapi_json() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        document_json(),
    )
        .into_response()
}
