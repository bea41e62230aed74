//! `POST /v1/api-keys` (service token only): creates a tenant API key, shown once.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use uuid::Uuid;

use super::AppState;
use super::auth::{Caller, generate_api_key};
use super::error::ApiError;
use super::json::{Fields, JsonObject};
use crate::domain::{FieldError, TenantId};

#[utoipa::path(
    post,
    path = "/v1/api-keys",
    tag = "api-keys",
    summary = "Create a tenant API key (service token only)",
    request_body = super::openapi::ApiKeyCreate,
    responses(
        (status = 201, description = "The key, shown only once", body = super::openapi::ApiKeyCreated),
        (status = 400, description = "Malformed JSON or header", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not application/json", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields (see `errors`)", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid credentials", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 403, description = "The credentials may not do this", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 500, description = "Unexpected failure (details only in the service's log)", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 503, description = "A dependency is down; retry later (Retry-After)", body = super::openapi::Problem, content_type = "application/problem+json")
    )
)]
pub async fn create(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    if !caller.is_service() {
        return Err(ApiError::forbidden(
            "API keys are created with the service token",
        ));
    }
    let mut fields = Fields::new(body);
    fields.only(&["tenant_id", "name"]);
    let tenant = match fields.string("tenant_id") {
        Some(t) => match TenantId::parse(&t) {
            Ok(t) => Some(t),
            Err(m) => {
                fields.errors.push(FieldError::new("tenant_id", m));
                None
            }
        },
        None => match &caller {
            super::auth::Caller::Service { tenant: Some(t) } => Some(t.clone()),
            _ => {
                fields.errors.push(FieldError::new(
                    "tenant_id",
                    "is required (or send X-Tenant-Id)",
                ));
                None
            }
        },
    };
    let name = fields.string("name");
    if !fields.errors.is_empty() {
        return Err(ApiError::validation(fields.errors));
    }
    let Some(tenant) = tenant else {
        return Err(ApiError::validation(vec![FieldError::new(
            "tenant_id",
            "is required",
        )]));
    };
    let key = issue(&state.pool, &tenant, name.as_deref())
        .await
        .map_err(|e| ApiError::database("insert api key", e))?;
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({
            "id": key.id,
            "tenant_id": tenant,
            "name": name,
            "key": key.key,
            "prefix": key.prefix,
        })),
    )
        .into_response())
}

/// A tenant API key just issued. `key` exists only here: the store keeps its hash.
pub struct IssuedApiKey {
    pub id: Uuid,
    pub key: String,
    pub prefix: String,
}

/// Issues an API key for `tenant` (`POST /v1/api-keys` and `communication api-key create`).
pub async fn issue(
    pool: &sqlx::PgPool,
    tenant: &TenantId,
    name: Option<&str>,
) -> Result<IssuedApiKey, sqlx::Error> {
    let key = generate_api_key();
    let id = Uuid::new_v4();
    crate::store::api_keys::insert_api_key(pool, id, tenant.as_str(), name, &key.prefix, &key.hash)
        .await?;
    Ok(IssuedApiKey {
        id,
        key: key.key,
        prefix: key.prefix,
    })
}
