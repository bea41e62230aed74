//! Who is calling. Internal callers present the service token and name the tenant in
//! `X-Tenant-Id` (or name none, on provider routes, to manage the platform's providers).
//! Tenants present an API key, looked up by its SHA-256 hash (cached briefly) and compared in
//! constant time.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use base64::Engine;
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::AppState;
use super::error::ApiError;
use crate::domain::TenantId;

pub const API_KEY_PREFIX: &str = "lsc_";

/// A new API key (shown once) and what is stored of it.
pub struct NewApiKey {
    pub key: String,
    pub prefix: String,
    pub hash: [u8; 32],
}

pub fn generate_api_key() -> NewApiKey {
    let bytes: [u8; 32] = rand::random();
    let key = format!(
        "{API_KEY_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    let prefix = key.chars().take(API_KEY_PREFIX.len() + 6).collect();
    let hash = hash_key(&key);
    NewApiKey { key, prefix, hash }
}

pub fn hash_key(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// The authenticated caller.
#[derive(Debug, Clone)]
pub enum Caller {
    /// The service token; `tenant` from `X-Tenant-Id` when given.
    Service { tenant: Option<TenantId> },
    /// A tenant API key.
    Tenant(TenantId),
}

impl Caller {
    /// The tenant a tenant-scoped route acts for.
    pub fn tenant(&self) -> Result<&TenantId, ApiError> {
        match self {
            Caller::Tenant(t) | Caller::Service { tenant: Some(t) } => Ok(t),
            Caller::Service { tenant: None } => Err(ApiError::bad_request(
                "tenant_required",
                "X-Tenant-Id is required with the service token",
            )),
        }
    }

    /// The provider scope: a tenant, or the platform (service token without a tenant).
    pub fn provider_scope(&self) -> Option<&TenantId> {
        match self {
            Caller::Tenant(t) => Some(t),
            Caller::Service { tenant } => tenant.as_ref(),
        }
    }

    pub fn is_service(&self) -> bool {
        matches!(self, Caller::Service { .. })
    }
}

impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .ok_or_else(|| ApiError::unauthorized("Authorization: Bearer <token> is required"))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ApiError::unauthorized("Authorization must be a Bearer token"))?;
        if let Some(service) = &state.service_token {
            let expected = service.expose_secret().as_bytes();
            if bool::from(expected.ct_eq(token.as_bytes())) {
                let tenant = match parts.headers.get("x-tenant-id") {
                    None => None,
                    Some(v) => {
                        let s = v.to_str().map_err(|_| {
                            ApiError::bad_request("invalid_tenant", "X-Tenant-Id is not valid text")
                        })?;
                        Some(TenantId::parse(s).map_err(|m| {
                            ApiError::bad_request("invalid_tenant", format!("X-Tenant-Id {m}"))
                        })?)
                    }
                };
                return Ok(Caller::Service { tenant });
            }
        }
        if !token.starts_with(API_KEY_PREFIX) {
            return Err(ApiError::unauthorized("the token is not valid"));
        }
        let hash = hash_key(token);
        let pool = state.pool.clone();
        let found = state
            .api_keys
            .try_get_with(hash, super::api_keys::find_for_auth(pool, hash))
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "API key lookup failed");
                ApiError::unavailable("authentication")
            })?;
        match found {
            Some((tenant, stored)) if bool::from(stored.as_slice().ct_eq(&hash)) => {
                let tenant = TenantId::parse(&tenant)
                    .map_err(|m| ApiError::internal("stored tenant id is invalid", m))?;
                if let Some(v) = parts.headers.get("x-tenant-id")
                    && v.to_str().ok() != Some(tenant.as_str())
                {
                    return Err(ApiError::forbidden(
                        "an API key acts only for its own tenant",
                    ));
                }
                Ok(Caller::Tenant(tenant))
            }
            _ => Err(ApiError::unauthorized("the token is not valid")),
        }
    }
}

/// The service token acting for one tenant (`X-Tenant-Id`): the caller of the settings only
/// operators change (limits, retention). A tenant API key is refused with 403 before the body
/// is read; the service token without `X-Tenant-Id` gets the 400 of [`Caller::tenant`].
pub struct OperatorFor(pub TenantId);

impl FromRequestParts<Arc<AppState>> for OperatorFor {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        match Caller::from_request_parts(parts, state).await? {
            Caller::Tenant(_) => Err(ApiError::forbidden(
                "this setting is changed by the operator, with the service token",
            )),
            caller => Ok(OperatorFor(caller.tenant()?.clone())),
        }
    }
}
