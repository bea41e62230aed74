//! `GET /openapi.json`: the OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]`
//! annotations and the schemas below. The router is built from the same annotated handlers
//! (see [`super::documented_routes`]), so a route cannot be served without being described.
//!
//! The handlers read their bodies as JSON objects and validate them field by field (to report
//! every bad field at once); the types here describe those bodies for the document only.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};
use uuid::Uuid;

/// An error: RFC 9457 problem details (`application/problem+json`).
#[derive(Serialize, ToSchema)]
pub struct Problem {
    /// Always `about:blank`.
    #[schema(example = "about:blank")]
    pub r#type: String,
    /// The HTTP reason phrase.
    #[schema(example = "Unprocessable Entity")]
    pub title: String,
    pub status: u16,
    /// Stable machine code, e.g. `validation_failed`, `unauthorized`, `forbidden`, `not_found`,
    /// `name_taken`, `idempotency_key_reused`, `idempotency_key_in_flight`,
    /// `payload_too_large`, `dependency_unavailable`, `internal_error`.
    #[schema(example = "validation_failed")]
    pub code: String,
    /// Human-readable explanation (never internal details).
    pub detail: String,
    /// For validation errors: every invalid field.
    pub errors: Option<Vec<ProblemField>>,
}

#[derive(Serialize, ToSchema)]
pub struct ProblemField {
    #[schema(example = "to")]
    pub field: String,
    #[schema(example = "must be an E.164 number")]
    pub message: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ChannelName {
    Email,
    Sms,
}

#[derive(Serialize, ToSchema)]
pub struct Content {
    /// Email only; required for email.
    pub subject: Option<String>,
    /// Required for SMS; for email, `text` and/or `html`.
    pub text: Option<String>,
    /// Email only.
    pub html: Option<String>,
}

/// Body of `POST /v1/send`.
#[derive(Serialize, ToSchema)]
pub struct SendRequest {
    pub channel: ChannelName,
    /// An email address or an E.164 phone number, matching `channel`.
    #[schema(example = "+14155550100")]
    pub to: String,
    pub content: Content,
    /// Pin one of the tenant's providers.
    pub provider_id: Option<Uuid>,
    /// Any JSON, stored with the message and passed to providers that accept tags.
    pub metadata: Option<Value>,
    /// After this many seconds the message is `expired` instead of sent.
    #[schema(minimum = 1)]
    pub ttl_seconds: Option<u64>,
}

/// `202`: accepted; delivery happens asynchronously.
#[derive(Serialize, ToSchema)]
pub struct SendAccepted {
    pub id: Uuid,
    #[schema(example = "queued")]
    pub status: String,
}

#[derive(Serialize, ToSchema)]
pub struct MessageEvent {
    /// accepted, attempt, retry_scheduled, failover, sent, delivered, undelivered, bounced,
    /// failed, expired, dead_lettered.
    pub r#type: String,
    pub provider_id: Option<Uuid>,
    pub detail: Option<Value>,
    pub at: chrono::DateTime<chrono::Utc>,
}

/// A message and (on `GET /v1/messages/{id}`) its ordered events.
#[derive(Serialize, ToSchema)]
pub struct MessageView {
    pub id: Uuid,
    /// queued, sending, sent, delivered, undelivered, bounced, failed, expired.
    pub status: String,
    pub channel: ChannelName,
    pub to: String,
    pub provider_id: Option<Uuid>,
    pub provider_kind: Option<String>,
    pub provider_message_id: Option<String>,
    pub attempts: Option<i32>,
    pub last_error: Option<String>,
    pub idempotency_key: Option<String>,
    pub metadata: Option<Value>,
    pub ttl_seconds: Option<i64>,
    pub created_at: Option<chrono::DateTime<chrono::Utc>>,
    pub updated_at: Option<chrono::DateTime<chrono::Utc>>,
    pub sent_at: Option<chrono::DateTime<chrono::Utc>>,
    pub completed_at: Option<chrono::DateTime<chrono::Utc>>,
    pub events: Option<Vec<MessageEvent>>,
}

#[derive(Serialize, ToSchema)]
pub struct MessagePage {
    pub items: Vec<MessageView>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// A dead letter as operators see it: never the message content.
#[derive(Serialize, ToSchema)]
pub struct DeadLetterView {
    pub id: i64,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub tenant_id: Option<String>,
    pub message_id: Option<Uuid>,
    /// `failed` (every provider spent) or `invalid` (the envelope failed validation).
    pub kind: String,
    pub channel: Option<String>,
    pub routing_key: Option<String>,
    pub reason: String,
    pub replayable: bool,
    pub replayed: bool,
    pub replayed_at: Option<chrono::DateTime<chrono::Utc>>,
    pub replayed_by: Option<String>,
}

/// A page of `GET /v1/dead-letters`.
#[derive(Serialize, ToSchema)]
pub struct DeadLetterPage {
    pub items: Vec<DeadLetterView>,
    pub next_cursor: Option<String>,
}

/// The outcome of re-driving one dead letter.
#[derive(Serialize, ToSchema)]
pub struct ReplayResult {
    pub dead_letter_id: i64,
    /// `replayed`, `already_replayed`, `message_not_failed`, `replay_in_progress`,
    /// `not_replayable`, `not_found` or `publish_failed`.
    pub outcome: String,
    pub detail: String,
    pub message_id: Option<Uuid>,
    pub status: Option<String>,
}

/// Body of `POST /v1/dead-letters/replay`: `ids`, or `all: true`.
#[derive(Serialize, ToSchema)]
pub struct ReplayManyRequest {
    pub ids: Option<Vec<i64>>,
    pub all: Option<bool>,
}

/// Answer of `POST /v1/dead-letters/replay`.
#[derive(Serialize, ToSchema)]
pub struct ReplayManyResult {
    pub replayed: usize,
    pub not_replayed: usize,
    pub results: Vec<ReplayResult>,
}

/// Body of `POST /v1/api-keys` (service token only).
#[derive(Serialize, ToSchema)]
pub struct ApiKeyCreate {
    /// Defaults to the `X-Tenant-Id` header.
    pub tenant_id: Option<String>,
    pub name: Option<String>,
}

/// The new key; `key` is shown only in this response.
#[derive(Serialize, ToSchema)]
pub struct ApiKeyCreated {
    pub id: Uuid,
    pub tenant_id: String,
    pub name: Option<String>,
    pub key: String,
    pub prefix: String,
}

/// Answer to a delivery receipt.
#[derive(Serialize, ToSchema)]
pub struct WebhookAck {
    /// The message the receipt applied to (absent when ignored).
    pub message_id: Option<Uuid>,
    /// The message's status after the receipt, or `ignored` (an event not tracked).
    pub status: String,
}

#[derive(Serialize, ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    pub status: String,
}

#[derive(Serialize, ToSchema)]
pub struct Readiness {
    /// `ready` or `not_ready`.
    pub status: String,
    /// `postgres`, `redis`, `rabbitmq`: `ok` or `unavailable`.
    pub checks: Value,
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
    components(schemas(Problem, ProblemField)),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags(
        (name = "send", description = "Accept messages for delivery"),
        (name = "messages", description = "Message status and events"),
        (name = "providers", description = "A tenant's delivery providers"),
        (name = "api-keys", description = "Tenant API keys"),
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
