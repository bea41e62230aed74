//! `GET /openapi.json`: the OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]`
//! annotations. The router is built from the same annotated handlers (see
//! [`super::documented_routes`]), so a route cannot be served without being described, and the
//! request and response types documented are the ones the handlers read and answer (they live
//! beside their handlers; error bodies and the shared error responses in `error.rs`).
//!
//! Here: the document's info, tags and security, and the schema of the domain's `Channel`.

use std::borrow::Cow;
use std::sync::OnceLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ObjectBuilder, RefOr, Schema, Type};
use utoipa::{Modify, OpenApi, PartialSchema, ToSchema};

use crate::domain::{Channel, FieldError, Priority};

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

/// `high`, `normal` or `bulk`, from the domain's own list.
impl PartialSchema for Priority {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(Priority::ALL.map(Priority::as_str)))
            .description(Some(
                "Delivery lane: `high` (one-time codes, security mail), `normal` (default), \
                 `bulk`. The service may move a tenant's messages beyond its fair share to a \
                 lower lane, never to a higher one.",
            ))
            .into()
    }
}

impl ToSchema for Priority {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Priority")
    }
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
    components(schemas(Problem, FieldError, Channel, Priority)),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags(
        (name = "send", description = "Accept messages for delivery"),
        (name = "messages", description = "Message status and events"),
        (name = "providers", description = "A tenant's delivery providers"),
        (name = "api-keys", description = "Tenant API keys"),
        (name = "dead-letters", description = "Dead letters and their replay (operators)"),
        (name = "webhooks", description = "Provider delivery receipts"),
        (name = "webhook-endpoints", description = "Signed status webhooks to the tenant"),
        (name = "suppressions", description = "Recipients no message is sent to"),
        (name = "limits", description = "Per-tenant limits set by the operator, and usage"),
        (name = "retention", description = "How long messages are kept (set by operators)"),
        (name = "stats", description = "Usage counts, delivery rates and provider health"),
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
    operation_id = "get_openapi_document",
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
