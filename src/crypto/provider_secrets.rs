//! The one home of provider secrets: the secret fields of a provider row's configuration are
//! sealed here (as one JSON object, under the keyring's active key, bound to the row by
//! [`provider_aad`]) and opened here, by the intake, the worker's resolver, receipt checks and
//! `keys rotate` alike.

use serde_json::{Map, Value};
use uuid::Uuid;

use super::{CryptoError, Keyring, provider_aad};

/// Why a row's secrets could not be sealed or opened.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("provider secrets cannot be opened: {0}")]
    Crypto(#[from] CryptoError),
    #[error("provider secrets opened but are not a JSON object")]
    NotAnObject,
    #[error("provider secrets cannot be encoded: {0}")]
    Encode(#[source] serde_json::Error),
}

/// The sealed half of a row, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedSecrets {
    /// `provider_configs.secrets`.
    pub blob: Vec<u8>,
    /// `provider_configs.key_id`: the key it is sealed under (what `keys rotate` looks for).
    pub key_id: String,
}

/// Which provider row secrets belong to: the associated data of their seal.
#[derive(Debug, Clone, Copy)]
pub struct SecretsOwner<'a> {
    /// `None` for the platform's own providers.
    pub tenant: Option<&'a str>,
    pub provider_id: Uuid,
}

impl SecretsOwner<'_> {
    fn aad(&self) -> Vec<u8> {
        provider_aad(self.tenant, self.provider_id)
    }
}

/// Seals and opens provider secrets with a keyring.
#[derive(Debug, Clone, Copy)]
pub struct ProviderSecrets<'k> {
    keyring: &'k Keyring,
}

impl<'k> ProviderSecrets<'k> {
    pub fn new(keyring: &'k Keyring) -> ProviderSecrets<'k> {
        ProviderSecrets { keyring }
    }

    /// Seals the secret fields of `owner`'s configuration; `None` when there are none.
    pub fn seal(
        &self,
        owner: SecretsOwner<'_>,
        secrets: &Map<String, Value>,
    ) -> Result<Option<SealedSecrets>, SecretsError> {
        if secrets.is_empty() {
            return Ok(None);
        }
        let plain = serde_json::to_vec(secrets).map_err(SecretsError::Encode)?;
        Ok(Some(SealedSecrets {
            blob: self.keyring.encrypt(&plain, &owner.aad()),
            key_id: self.keyring.active_key_id(),
        }))
    }

    /// Opens `owner`'s sealed secrets (none sealed: an empty object).
    pub fn open(
        &self,
        owner: SecretsOwner<'_>,
        blob: Option<&[u8]>,
    ) -> Result<Map<String, Value>, SecretsError> {
        let Some(blob) = blob else {
            return Ok(Map::new());
        };
        let plain = self.keyring.decrypt(blob, &owner.aad())?;
        match serde_json::from_slice::<Value>(&plain) {
            Ok(Value::Object(map)) => Ok(map),
            _ => Err(SecretsError::NotAnObject),
        }
    }

    /// Re-seals `blob` under the active key (for `keys rotate`), unchanged inside.
    pub fn reseal(
        &self,
        owner: SecretsOwner<'_>,
        blob: &[u8],
    ) -> Result<SealedSecrets, SecretsError> {
        let aad = owner.aad();
        let plain = self.keyring.decrypt(blob, &aad)?;
        Ok(SealedSecrets {
            blob: self.keyring.encrypt(&plain, &aad),
            key_id: self.keyring.active_key_id(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::generate_key_base64;
    use serde_json::json;

    fn ring() -> Keyring {
        Keyring::from_base64(&generate_key_base64(), &[]).expect("key")
    }

    fn owner(tenant: Option<&str>, id: Uuid) -> SecretsOwner<'_> {
        SecretsOwner {
            tenant,
            provider_id: id,
        }
    }

    #[test]
    fn secrets_open_only_for_the_row_they_were_sealed_for() {
        let ring = ring();
        let secrets = ProviderSecrets::new(&ring);
        let id = Uuid::new_v4();
        let map = json!({"auth_token": "tok-123456"})
            .as_object()
            .cloned()
            .expect("object");
        let sealed = secrets
            .seal(owner(Some("acme"), id), &map)
            .expect("sealed")
            .expect("something to seal");
        assert_eq!(sealed.key_id, ring.active_key_id());
        let opened = secrets
            .open(owner(Some("acme"), id), Some(&sealed.blob))
            .expect("opens");
        assert_eq!(opened, map);
        assert!(matches!(
            secrets.open(owner(Some("globex"), id), Some(&sealed.blob)),
            Err(SecretsError::Crypto(CryptoError::Tampered))
        ));
        assert!(
            secrets
                .open(owner(None, id), None)
                .expect("none")
                .is_empty()
        );
        assert_eq!(
            secrets.seal(owner(None, id), &Map::new()).expect("ok"),
            None
        );
    }

    #[test]
    fn resealing_moves_secrets_to_the_active_key() {
        let old = generate_key_base64();
        let before = Keyring::from_base64(&old, &[]).expect("key");
        let id = Uuid::new_v4();
        let map = json!({"api_key": "re_abcdef123456"})
            .as_object()
            .cloned()
            .expect("object");
        let sealed = ProviderSecrets::new(&before)
            .seal(owner(None, id), &map)
            .expect("sealed")
            .expect("sealed");
        let after = Keyring::from_base64(&generate_key_base64(), &[old]).expect("key");
        let resealed = ProviderSecrets::new(&after)
            .reseal(owner(None, id), &sealed.blob)
            .expect("resealed");
        assert!(after.is_current(&resealed.blob));
        let only_new = ProviderSecrets::new(&after)
            .open(owner(None, id), Some(&resealed.blob))
            .expect("opens");
        assert_eq!(only_new, map);
    }
}
