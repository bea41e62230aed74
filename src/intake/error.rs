//! The one place errors become HTTP responses: RFC 9457 problem details with a stable
//! machine `code`, a human `detail`, and for validation the `errors` list of
//! `{field, message}`. A 5xx says nothing internal; its cause goes to the log.
//!
//! The body is [`Problem`], the very type the OpenAPI document describes, and the error
//! responses every route documents are the few shared sets at the end of this file
//! ([`ApiErrors`], [`BodyErrors`], [`NotFoundError`], [`ServerErrors`]), named in each
//! `#[utoipa::path(responses(…))]`.

use std::borrow::Cow;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::openapi::{ObjectBuilder, RefOr, Schema, Type};
use utoipa::{PartialSchema, ToSchema};

use crate::domain::FieldError;

/// An error: RFC 9457 problem details (`application/problem+json`).
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// Always `about:blank`.
    #[schema(example = "about:blank")]
    pub r#type: &'static str,
    /// The HTTP reason phrase.
    #[schema(example = "Unprocessable Entity")]
    pub title: &'static str,
    pub status: u16,
    /// Stable machine code, e.g. `validation_failed`, `unauthorized`, `forbidden`, `not_found`,
    /// `name_taken`, `idempotency_key_reused`, `idempotency_key_in_flight`, `rate_limited`,
    /// `quota_exceeded`,
    /// `payload_too_large`, `dependency_unavailable`, `internal_error`.
    #[schema(example = "validation_failed")]
    pub code: &'static str,
    /// Human-readable explanation (never internal details).
    pub detail: String,
    /// For validation errors: every invalid field.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(required = false)]
    pub errors: Vec<FieldError>,
}

/// `FieldError` is a domain type (no OpenAPI there); its schema is described here, beside the
/// one place that serializes it.
impl PartialSchema for FieldError {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .description(Some(
                "One invalid field (a JSON path, a query parameter or a header)",
            ))
            .property(
                "field",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .examples([serde_json::json!("to")]),
            )
            .required("field")
            .property(
                "message",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .examples([serde_json::json!("must be an E.164 number")]),
            )
            .required("message")
            .into()
    }
}

impl ToSchema for FieldError {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("ProblemField")
    }
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub detail: String,
    pub errors: Vec<FieldError>,
    /// Seconds for a `Retry-After` header (a 503 says 1 without it).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            detail: detail.into(),
            errors: Vec::new(),
            retry_after: None,
        }
    }

    pub fn validation(errors: Vec<FieldError>) -> ApiError {
        let detail = match errors.as_slice() {
            [one] if one.field.is_empty() => one.message.clone(),
            [one] => format!("{} {}", one.field, one.message),
            _ => format!("{} fields are invalid", errors.len()),
        };
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "validation_failed",
            detail,
            errors,
            retry_after: None,
        }
    }

    /// A 429 telling the caller when to try again (`Retry-After`, whole seconds).
    pub fn too_many(code: &'static str, detail: impl Into<String>, retry_after: u64) -> ApiError {
        let mut e = ApiError::new(StatusCode::TOO_MANY_REQUESTS, code, detail);
        e.retry_after = Some(retry_after.max(1));
        e
    }

    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, detail)
    }

    pub fn unauthorized(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
    }

    pub fn forbidden(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", detail)
    }

    pub fn not_found(what: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }

    pub fn unavailable(what: &str) -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "dependency_unavailable",
            format!("{what} is unavailable; try again shortly"),
        )
    }

    /// An unexpected failure: logged with its cause, answered without it.
    pub fn internal(context: &str, cause: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %cause, "{context}");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "the request could not be completed",
        )
    }

    /// A database error on a path that needs the database: 503 if it is unreachable.
    pub fn database(context: &str, e: sqlx::Error) -> ApiError {
        match e {
            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => {
                tracing::warn!(error = %e, "{context}");
                ApiError::unavailable("the database")
            }
            other => ApiError::internal(context, other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Problem {
            r#type: "about:blank",
            title: self.status.canonical_reason().unwrap_or("Error"),
            status: self.status.as_u16(),
            code: self.code,
            detail: self.detail,
            errors: self.errors,
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        } else if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

// The error responses routes document, shared: each `#[utoipa::path]` names the sets that
// apply (`responses((status = 200, …), ApiErrors, BodyErrors)`), and adds a tuple only for a
// status peculiar to it (a later entry replaces an earlier one with the same status).

/// What the caller's credentials and headers can cause on any authenticated route.
#[derive(utoipa::IntoResponses)]
pub enum CallerErrors {
    #[response(
        status = 400,
        description = "Malformed request: its JSON, a query parameter, or a header such as X-Tenant-Id (see `detail`, and `errors` per field)",
        content_type = "application/problem+json"
    )]
    BadRequest(Problem),
    #[response(
        status = 401,
        description = "Missing or invalid credentials",
        content_type = "application/problem+json"
    )]
    Unauthorized(Problem),
    #[response(
        status = 403,
        description = "The credentials may not do this",
        content_type = "application/problem+json"
    )]
    Forbidden(Problem),
}

/// What any route can answer when the service cannot: unauthenticated routes (webhooks) use
/// these alone.
#[derive(utoipa::IntoResponses)]
pub enum ServerErrors {
    #[response(
        status = 500,
        description = "Unexpected failure (details only in the service's log)",
        content_type = "application/problem+json"
    )]
    Internal(Problem),
    #[response(
        status = 503,
        description = "A dependency is down; retry later (Retry-After)",
        content_type = "application/problem+json"
    )]
    Unavailable(Problem),
}

/// Every authenticated `/v1` route: [`CallerErrors`] and [`ServerErrors`].
pub struct ApiErrors;

impl utoipa::IntoResponses for ApiErrors {
    fn responses() -> std::collections::BTreeMap<String, RefOr<utoipa::openapi::response::Response>>
    {
        let mut responses = <CallerErrors as utoipa::IntoResponses>::responses();
        responses.extend(<ServerErrors as utoipa::IntoResponses>::responses());
        responses
    }
}

/// A route that reads a JSON body (see `json::JsonBody`).
#[derive(utoipa::IntoResponses)]
pub enum BodyErrors {
    #[response(
        status = 400,
        description = "Malformed request: its JSON, a query parameter, or a header such as X-Tenant-Id (see `detail`, and `errors` per field)",
        content_type = "application/problem+json"
    )]
    BadRequest(Problem),
    #[response(
        status = 413,
        description = "Body too large",
        content_type = "application/problem+json"
    )]
    TooLarge(Problem),
    #[response(
        status = 415,
        description = "Not application/json",
        content_type = "application/problem+json"
    )]
    NotJson(Problem),
    #[response(
        status = 422,
        description = "Invalid fields (see `errors`)",
        content_type = "application/problem+json"
    )]
    Invalid(Problem),
}

/// A route addressing one resource by id.
#[derive(utoipa::IntoResponses)]
pub enum NotFoundError {
    #[response(
        status = 404,
        description = "No such resource for this tenant",
        content_type = "application/problem+json"
    )]
    NotFound(Problem),
}
