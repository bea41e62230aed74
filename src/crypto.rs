//! AES-256-GCM keyring for provider secrets (sealed and opened by [`ProviderSecrets`]).
//!
//! Blob layout (stored in `provider_configs.secrets`):
//! `0x01 | key id (8 bytes) | nonce (12 bytes) | ciphertext‖tag`.
//! The key id is the first 8 bytes of SHA-256 of the key, so it names a key without revealing
//! it and lets `keys rotate` find rows still sealed under an older key. The associated data
//! binds a blob to its tenant and provider row: a blob copied elsewhere does not open.

pub mod provider_secrets;

pub use provider_secrets::{ProviderSecrets, SealedSecrets, SecretsError, SecretsOwner};

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{Aead, Generate, KeyInit, Nonce, Payload};
use base64::Engine;
use sha2::{Digest, Sha256};
use uuid::Uuid;

const FORMAT_V1: u8 = 1;
const KEY_ID_LEN: usize = 8;
const NONCE_LEN: usize = 12;
const HEADER_LEN: usize = 1 + KEY_ID_LEN + NONCE_LEN;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error("{0}: must be base64 of exactly 32 bytes")]
    BadKey(&'static str),
    #[error("ciphertext is malformed")]
    Malformed,
    #[error("ciphertext was sealed under key {0}, which is not configured")]
    UnknownKey(String),
    #[error("ciphertext does not authenticate (tampered, or bound to another row)")]
    Tampered,
}

/// A key and its id.
struct Key {
    id: [u8; KEY_ID_LEN],
    cipher: Aes256Gcm,
}

impl Key {
    fn from_bytes(bytes: &[u8]) -> Option<Key> {
        let cipher = Aes256Gcm::new_from_slice(bytes).ok()?;
        let digest = Sha256::digest(bytes);
        let mut id = [0u8; KEY_ID_LEN];
        id.copy_from_slice(&digest[..KEY_ID_LEN]);
        Some(Key { id, cipher })
    }
}

/// The active key, used to seal, and earlier keys, still accepted to open.
pub struct Keyring {
    active: Key,
    previous: Vec<Key>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("active_key_id", &self.active_key_id())
            .field("previous", &self.previous.len())
            .finish()
    }
}

/// Associated data of a provider row's secrets.
pub fn provider_aad(tenant: Option<&str>, provider_id: Uuid) -> Vec<u8> {
    format!(
        "logicspike-communication/provider_configs/v1/{}/{}",
        tenant.unwrap_or("~platform"),
        provider_id
    )
    .into_bytes()
}

fn decode_key(b64: &str, name: &'static str) -> Result<Key, CryptoError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|_| CryptoError::BadKey(name))?;
    if bytes.len() != 32 {
        return Err(CryptoError::BadKey(name));
    }
    Key::from_bytes(&bytes).ok_or(CryptoError::BadKey(name))
}

impl Keyring {
    /// Builds the keyring from `ENCRYPTION_SECRET` and the comma-separated
    /// `ENCRYPTION_SECRET_PREVIOUS` values.
    pub fn from_base64(active: &str, previous: &[String]) -> Result<Keyring, CryptoError> {
        let active = decode_key(active, "ENCRYPTION_SECRET")?;
        let previous = previous
            .iter()
            .filter(|p| !p.trim().is_empty())
            .map(|p| decode_key(p, "ENCRYPTION_SECRET_PREVIOUS"))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Keyring { active, previous })
    }

    pub fn active_key_id(&self) -> String {
        hex::encode(self.active.id)
    }

    /// Seals `plaintext` under the active key with a fresh random nonce.
    pub fn encrypt(&self, plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
        let nonce = Nonce::<Aes256Gcm>::generate();
        // AES-GCM encryption only fails on inputs beyond 64 GiB; ours are a few hundred bytes.
        let sealed = self
            .active
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .unwrap_or_default();
        let mut out = Vec::with_capacity(HEADER_LEN + sealed.len());
        out.push(FORMAT_V1);
        out.extend_from_slice(&self.active.id);
        out.extend_from_slice(nonce.as_slice());
        out.extend_from_slice(&sealed);
        out
    }

    /// The key id a blob was sealed under, as hex.
    pub fn key_id_of(blob: &[u8]) -> Result<String, CryptoError> {
        if blob.len() < HEADER_LEN + 16 || blob[0] != FORMAT_V1 {
            return Err(CryptoError::Malformed);
        }
        Ok(hex::encode(&blob[1..1 + KEY_ID_LEN]))
    }

    /// Opens a blob sealed by [`Keyring::encrypt`] under any configured key.
    pub fn decrypt(&self, blob: &[u8], aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if blob.len() < HEADER_LEN + 16 || blob[0] != FORMAT_V1 {
            return Err(CryptoError::Malformed);
        }
        let id = &blob[1..1 + KEY_ID_LEN];
        let key = std::iter::once(&self.active)
            .chain(self.previous.iter())
            .find(|k| k.id == id)
            .ok_or_else(|| CryptoError::UnknownKey(hex::encode(id)))?;
        let nonce = Nonce::<Aes256Gcm>::try_from(&blob[1 + KEY_ID_LEN..HEADER_LEN])
            .map_err(|_| CryptoError::Malformed)?;
        key.cipher
            .decrypt(
                &nonce,
                Payload {
                    msg: &blob[HEADER_LEN..],
                    aad,
                },
            )
            .map_err(|_| CryptoError::Tampered)
    }

    /// True when the blob is sealed under the active key (nothing for `keys rotate` to do).
    pub fn is_current(&self, blob: &[u8]) -> bool {
        blob.len() > HEADER_LEN && blob[1..1 + KEY_ID_LEN] == self.active.id
    }
}

/// A new random key as base64, for `communication keys generate`.
pub fn generate_key_base64() -> String {
    let key = aes_gcm::Key::<Aes256Gcm>::generate();
    base64::engine::general_purpose::STANDARD.encode(key.as_slice())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring() -> Keyring {
        Keyring::from_base64(&generate_key_base64(), &[]).expect("fresh key is valid")
    }

    #[test]
    fn round_trip_and_fresh_nonce_each_time() {
        let k = ring();
        let aad = provider_aad(Some("t1"), Uuid::nil());
        let a = k.encrypt(b"secret", &aad);
        let b = k.encrypt(b"secret", &aad);
        assert_ne!(a, b, "two encryptions of one plaintext must differ");
        assert_eq!(k.decrypt(&a, &aad).as_deref(), Ok(&b"secret"[..]));
        assert_eq!(Keyring::key_id_of(&a), Ok(k.active_key_id()));
    }

    #[test]
    fn tampered_ciphertext_is_rejected() {
        let k = ring();
        let aad = provider_aad(Some("t1"), Uuid::nil());
        let mut blob = k.encrypt(b"secret", &aad);
        let last = blob.len() - 1;
        blob[last] ^= 1;
        assert_eq!(k.decrypt(&blob, &aad), Err(CryptoError::Tampered));
        let mut nonce_flip = k.encrypt(b"secret", &aad);
        nonce_flip[HEADER_LEN - 1] ^= 0x80;
        assert_eq!(k.decrypt(&nonce_flip, &aad), Err(CryptoError::Tampered));
        assert_eq!(k.decrypt(&blob[..10], &aad), Err(CryptoError::Malformed));
    }

    #[test]
    fn ciphertext_moved_to_another_tenant_or_row_is_rejected() {
        let k = ring();
        let row = Uuid::new_v4();
        let blob = k.encrypt(b"secret", &provider_aad(Some("t1"), row));
        assert_eq!(
            k.decrypt(&blob, &provider_aad(Some("t2"), row)),
            Err(CryptoError::Tampered)
        );
        assert_eq!(
            k.decrypt(&blob, &provider_aad(Some("t1"), Uuid::new_v4())),
            Err(CryptoError::Tampered)
        );
        assert_eq!(
            k.decrypt(&blob, &provider_aad(None, row)),
            Err(CryptoError::Tampered)
        );
    }

    #[test]
    fn previous_keys_open_old_blobs_and_unknown_keys_are_named() {
        let old = generate_key_base64();
        let new = generate_key_base64();
        let aad = provider_aad(None, Uuid::nil());
        let before = Keyring::from_base64(&old, &[]).expect("valid");
        let blob = before.encrypt(b"x", &aad);
        let after = Keyring::from_base64(&new, std::slice::from_ref(&old)).expect("valid");
        assert_eq!(after.decrypt(&blob, &aad).as_deref(), Ok(&b"x"[..]));
        assert!(!after.is_current(&blob));
        let forgotten = Keyring::from_base64(&new, &[]).expect("valid");
        assert!(matches!(
            forgotten.decrypt(&blob, &aad),
            Err(CryptoError::UnknownKey(_))
        ));
    }

    #[test]
    fn malformed_keys_are_refused() {
        assert!(Keyring::from_base64("not base64!", &[]).is_err());
        assert!(Keyring::from_base64("c2hvcnQ=", &[]).is_err());
    }
}
