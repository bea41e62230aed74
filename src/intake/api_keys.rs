//! A tenant's API keys: `POST /v1/api-keys` creates one (shown once), `GET /v1/api-keys`
//! lists them (prefix, name, created, last used; never the key), `DELETE /v1/api-keys/{id}`
//! revokes one. A tenant key manages its own tenant's keys; the service token any tenant's.
//! Also [`issue`], the one way a key is made (the `api-key create` command uses it too).
//!
//! Revocation takes effect at once on the replica that revoked (its cache entry is dropped);
//! other replicas keep a cached key for at most the cache's 30 s time to live.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use utoipa::ToSchema;
use uuid::Uuid;

use super::AppState;
use super::auth::{Caller, generate_api_key};
use super::error::{ApiError, ApiErrors, BodyErrors, Problem};
use super::json::{JsonBody, RequestFields};
use crate::domain::{FieldError, TenantId};

/// Longest key name accepted.
pub const MAX_NAME_CHARS: usize = 100;

/// Body of `POST /v1/api-keys`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyCreate {
    /// Defaults to the `X-Tenant-Id` header (service token) or the key's own tenant.
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
    operation_id = "create_api_key",
    tag = "api-keys",
    summary = "Create a tenant API key",
    description = "A tenant key creates keys for its own tenant (a `tenant_id` of another \
                   tenant is refused); the service token names the tenant in `tenant_id` or \
                   `X-Tenant-Id`.",
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
        (Caller::Tenant(own), Some(asked)) if *own != asked => {
            return Err(ApiError::forbidden(
                "an API key manages only its own tenant's keys",
            ));
        }
        (Caller::Tenant(own), _) => own.clone(),
        (_, Some(t)) => t,
        (Caller::Service { tenant: Some(t) }, None) => t.clone(),
        (Caller::Service { tenant: None }, None) => {
            return Err(ApiError::validation(vec![FieldError::new(
                "tenant_id",
                "is required (or send X-Tenant-Id)",
            )]));
        }
    };
    if let Some(n) = &body.name
        && (n.trim().is_empty() || n.chars().count() > MAX_NAME_CHARS)
    {
        return Err(ApiError::validation(vec![FieldError::new(
            "name",
            format!("must be 1 to {MAX_NAME_CHARS} characters"),
        )]));
    }
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

/// One of a tenant's keys as listed: never the key or its hash.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyView {
    pub id: Uuid,
    pub name: Option<String>,
    /// The key's first characters (`lsc_` and six more), to recognise it by.
    #[schema(example = "lsc_ab12cd")]
    pub prefix: String,
    pub created_at: DateTime<Utc>,
    /// When the key last authenticated a request, to about a minute; `null` if never.
    pub last_used_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyPage {
    pub items: Vec<ApiKeyView>,
    /// Pass as `cursor` for the next page; `null` on the last.
    pub next_cursor: Option<String>,
}

fn encode_cursor(row: &ApiKeyView) -> String {
    super::query::encode_time_cursor(row.created_at, row.id)
}

#[utoipa::path(
    get,
    path = "/v1/api-keys",
    operation_id = "list_api_keys",
    tag = "api-keys",
    summary = "List the tenant's active API keys, newest first",
    params(
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
        ("limit" = Option<i64>, Query, description = "1 to 200, default 100"),
    ),
    responses(
        (status = 200, description = "A page of keys (never the keys themselves)", body = ApiKeyPage),
        ApiErrors,
    )
)]
pub async fn list(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(query): Query<std::collections::HashMap<String, String>>,
) -> Result<Json<ApiKeyPage>, ApiError> {
    let tenant = caller.tenant()?;
    let mut errors = Vec::new();
    let mut before = None;
    let mut limit = 100;
    for (k, v) in &query {
        match k.as_str() {
            "cursor" => match super::query::decode_time_cursor(v) {
                Some(c) => before = Some(c),
                None => errors.push(FieldError::new("cursor", "is not a cursor from this API")),
            },
            "limit" => match v.parse::<i64>() {
                Ok(n) if (1..=200).contains(&n) => limit = n,
                _ => errors.push(FieldError::new("limit", "must be 1 to 200")),
            },
            other => errors.push(FieldError::new(other, "is not a known parameter")),
        }
    }
    if !errors.is_empty() {
        let mut e = ApiError::validation(errors);
        e.status = StatusCode::BAD_REQUEST;
        return Err(e);
    }
    let rows =
        crate::store::api_keys::list_api_keys(&state.pool, tenant.as_str(), before, limit + 1)
            .await
            .map_err(|e| ApiError::database("list api keys", e))?;
    let has_more = rows.len() as i64 > limit;
    let items: Vec<ApiKeyView> = rows
        .into_iter()
        .take(limit as usize)
        .map(|r| ApiKeyView {
            id: r.id,
            name: r.name,
            prefix: r.key_prefix,
            created_at: r.created_at,
            last_used_at: r.last_used_at,
        })
        .collect();
    let next_cursor = if has_more {
        items.last().map(encode_cursor)
    } else {
        None
    };
    Ok(Json(ApiKeyPage { items, next_cursor }))
}

#[utoipa::path(
    delete,
    path = "/v1/api-keys/{id}",
    operation_id = "revoke_api_key",
    tag = "api-keys",
    summary = "Revoke one of the tenant's API keys",
    description = "The key is refused (401) from then on: at once on the replica that \
                   answered, within 30 s on the others (their lookup cache's lifetime).",
    params(("id" = Uuid, Path, description = "The key's id")),
    responses(
        (status = 204, description = "Revoked"),
        ApiErrors,
        (status = 404, description = "No such active key for this tenant", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn revoke(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let tenant = caller.tenant()?;
    let id = Uuid::parse_str(&id).map_err(|_| ApiError::not_found("API key"))?;
    let hash = crate::store::api_keys::revoke_api_key(&state.pool, tenant.as_str(), id)
        .await
        .map_err(|e| ApiError::database("revoke api key", e))?
        .ok_or_else(|| ApiError::not_found("API key"))?;
    if let Ok(hash) = <[u8; 32]>::try_from(hash.as_slice()) {
        state.api_keys.invalidate(&hash).await;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// The authentication lookup of an API key (run on a cache miss): the tenant and stored
/// hash of an active key, and, for a key found, a note of its use written in the background
/// so the request does not wait for it. Cache misses happen at most every 30 s per key and
/// replica, and the store writes at most once a minute per key.
pub async fn find_for_auth(
    pool: PgPool,
    hash: [u8; 32],
) -> Result<Option<(String, Vec<u8>)>, sqlx::Error> {
    let found = crate::store::api_keys::find_by_hash(&pool, &hash).await?;
    if found.is_some() {
        tokio::spawn(async move {
            if let Err(e) = crate::store::api_keys::note_use(&pool, &hash).await {
                tracing::warn!(error = %e, "recording an API key's last use failed");
            }
        });
    }
    Ok(found)
}
