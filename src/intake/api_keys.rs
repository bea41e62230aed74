//! `POST /v1/api-keys` (service token only): creates a tenant API key, shown once. Also
//! [`issue`], the one way a key is made (the `api-key create` command uses it too).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::AppState;
use super::auth::{Caller, generate_api_key};
use super::error::{ApiError, ApiErrors, BodyErrors};
use super::json::{JsonBody, RequestFields};
use crate::domain::{FieldError, TenantId};

/// Body of `POST /v1/api-keys` (service token only).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyCreate {
    /// Defaults to the `X-Tenant-Id` header.
    #[schema(value_type = Option<String>)]
    pub tenant_id: Option<TenantId>,
    pub name: Option<String>,
}

impl RequestFields for ApiKeyCreate {}

/// The new key; `key` is shown only in this response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyCreated {
    pub id: Uuid,
    #[schema(value_type = String)]
    pub tenant_id: TenantId,
    pub name: Option<String>,
    pub key: String,
    pub prefix: String,
}

#[utoipa::path(
    post,
    path = "/v1/api-keys",
    tag = "api-keys",
    summary = "Create a tenant API key (service token only)",
    request_body = ApiKeyCreate,
    responses(
        (status = 201, description = "The key, shown only once", body = ApiKeyCreated),
        ApiErrors,
        BodyErrors,
    )
)]
pub async fn create(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    JsonBody(body): JsonBody<ApiKeyCreate>,
) -> Result<Response, ApiError> {
    let tenant = match (&caller, body.tenant_id) {
        (Caller::Tenant(_), _) => {
            return Err(ApiError::forbidden(
                "API keys are created with the service token",
            ));
        }
        (_, Some(t)) => t,
        (Caller::Service { tenant: Some(t) }, None) => t.clone(),
        (Caller::Service { tenant: None }, None) => {
            return Err(ApiError::validation(vec![FieldError::new(
                "tenant_id",
                "is required (or send X-Tenant-Id)",
            )]));
        }
    };
    let key = issue(&state.pool, &tenant, body.name.as_deref())
        .await
        .map_err(|e| ApiError::database("insert api key", e))?;
    let created = ApiKeyCreated {
        id: key.id,
        tenant_id: tenant,
        name: body.name,
        key: key.key,
        prefix: key.prefix,
    };
    Ok((StatusCode::CREATED, axum::Json(created)).into_response())
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
