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
    let key = generate_api_key();
    let id = Uuid::new_v4();
    crate::store::api_keys::insert_api_key(
        &state.pool,
        id,
        tenant.as_str(),
        name.as_deref(),
        &key.prefix,
        &key.hash,
    )
    .await
    .map_err(|e| ApiError::database("insert api key", e))?;
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({
            "id": id,
            "tenant_id": tenant,
            "name": name,
            "key": key.key,
            "prefix": key.prefix,
        })),
    )
        .into_response())
}
