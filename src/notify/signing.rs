//! Signing secrets of webhook endpoints and the Standard Webhooks signature.
//!
//! A secret is `whsec_` + base64 of 32 random bytes; the HMAC key is the decoded bytes. The
//! signature of a request is `v1,` + base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}")), sent
//! in `webhook-signature`; during a rotation one signature per active secret, space-separated
//! (the specification's receivers accept a request when any one matches). Secrets are stored
//! sealed with the keyring, bound to the tenant and the endpoint row.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use uuid::Uuid;

use crate::crypto::{CryptoError, Keyring};

/// The prefix of every signing secret.
pub const SECRET_PREFIX: &str = "whsec_";

/// A new signing secret.
pub fn generate_secret() -> SecretString {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    SecretString::from(format!("{SECRET_PREFIX}{}", B64.encode(bytes)))
}

/// Associated data of an endpoint's sealed secrets.
pub fn endpoint_aad(tenant: &str, endpoint_id: Uuid) -> Vec<u8> {
    format!("logicspike-communication/webhook_endpoints/v1/{tenant}/{endpoint_id}").into_bytes()
}

pub fn seal(keyring: &Keyring, tenant: &str, endpoint_id: Uuid, secret: &SecretString) -> Vec<u8> {
    keyring.encrypt(
        secret.expose_secret().as_bytes(),
        &endpoint_aad(tenant, endpoint_id),
    )
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("the sealed secret does not open: {0}")]
    Sealed(#[from] CryptoError),
    #[error("the stored secret is not a whsec_ secret")]
    Malformed,
}

/// Opens a sealed secret into its HMAC key.
pub fn open_key(
    keyring: &Keyring,
    tenant: &str,
    endpoint_id: Uuid,
    sealed: &[u8],
) -> Result<SigningKey, SecretError> {
    let plain = keyring.decrypt(sealed, &endpoint_aad(tenant, endpoint_id))?;
    let text = std::str::from_utf8(&plain).map_err(|_| SecretError::Malformed)?;
    let encoded = text
        .strip_prefix(SECRET_PREFIX)
        .ok_or(SecretError::Malformed)?;
    let key = B64.decode(encoded).map_err(|_| SecretError::Malformed)?;
    Ok(SigningKey(key))
}

/// The HMAC key of a secret; never printed.
pub struct SigningKey(Vec<u8>);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(..)")
    }
}

impl SigningKey {
    /// `v1,<base64 signature>` of one request.
    pub fn sign(&self, webhook_id: &str, timestamp: i64, body: &[u8]) -> String {
        // HMAC takes a key of any length; this cannot fail.
        let mut mac = match Hmac::<Sha256>::new_from_slice(&self.0) {
            Ok(mac) => mac,
            Err(_) => return String::new(),
        };
        mac.update(webhook_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", B64.encode(mac.finalize().into_bytes()))
    }
}

/// The `webhook-signature` header value: one signature per key, space-separated.
pub fn signature_header(
    keys: &[SigningKey],
    webhook_id: &str,
    timestamp: i64,
    body: &[u8],
) -> String {
    keys.iter()
        .map(|k| k.sign(webhook_id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Re-seals every endpoint secret not sealed under the active key (`keys rotate`); returns
/// how many endpoints changed. A secret that does not open stops it (its key is missing from
/// `ENCRYPTION_SECRET_PREVIOUS`).
pub async fn reseal_endpoint_secrets(
    pool: &sqlx::PgPool,
    keyring: &Keyring,
) -> anyhow::Result<usize> {
    use crate::store::webhook_endpoints as store;
    let mut resealed = 0;
    for (id, tenant, secret, previous) in store::all_secrets(pool).await? {
        let stale = |blob: &[u8]| !keyring.is_current(blob);
        if !stale(&secret) && !previous.as_deref().is_some_and(stale) {
            continue;
        }
        let aad = endpoint_aad(&tenant, id);
        let reseal = |blob: &[u8]| -> anyhow::Result<Vec<u8>> {
            let plain = keyring.decrypt(blob, &aad).map_err(|e| {
                anyhow::anyhow!(
                    "webhook endpoint {id}: {e} (is its key in ENCRYPTION_SECRET_PREVIOUS?)"
                )
            })?;
            Ok(keyring.encrypt(&plain, &aad))
        };
        let new_secret = reseal(&secret)?;
        let new_previous = previous.as_deref().map(reseal).transpose()?;
        if store::replace_secrets(
            pool,
            id,
            (&secret, previous.as_deref()),
            (&new_secret, new_previous.as_deref()),
        )
        .await?
        {
            resealed += 1;
        }
    }
    Ok(resealed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_matches_the_specifications_example() {
        // The example of the Standard Webhooks specification (and its reference libraries).
        let key = SigningKey(
            B64.decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
                .expect("base64"),
        );
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            key.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn a_sealed_secret_opens_only_for_its_own_row() {
        let keyring =
            Keyring::from_base64(&crate::crypto::generate_key_base64(), &[]).expect("keyring");
        let id = Uuid::new_v4();
        let secret = generate_secret();
        assert!(secret.expose_secret().starts_with(SECRET_PREFIX));
        let sealed = seal(&keyring, "acme", id, &secret);
        assert!(open_key(&keyring, "acme", id, &sealed).is_ok());
        assert!(open_key(&keyring, "globex", id, &sealed).is_err());
        assert!(open_key(&keyring, "acme", Uuid::new_v4(), &sealed).is_err());
    }
}
