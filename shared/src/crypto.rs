//! Provider secrets are sealed with AES-256-GCM under the master key before they are stored or
//! published. The sealed form is `v1:` + base64(nonce ‖ ciphertext ‖ tag), and the owning
//! record's id is bound in as associated data, so a ciphertext copied onto another provider row
//! does not decrypt.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use thiserror::Error;

const VERSION_TAG: &str = "v1:";
const NONCE_LEN: usize = 12;

/// Why a secret could not be sealed or opened. Never carries key material or plaintext.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error("master key must be 32 bytes, given as 64 hex characters or standard base64")]
    BadMasterKey,
    #[error("sealed secret is malformed")]
    Malformed,
    #[error("sealed secret does not decrypt under this master key")]
    Undecryptable,
}

/// The 256-bit master key. Its `Debug` output is redacted so it can sit inside config structs.
#[derive(Clone)]
pub struct MasterKey(Key<Aes256Gcm>);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

impl MasterKey {
    /// Parses 64 hex characters or the standard base64 of 32 bytes.
    pub fn parse(s: &str) -> Result<Self, CryptoError> {
        let s = s.trim();
        let bytes = if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            hex::decode(s).map_err(|_| CryptoError::BadMasterKey)?
        } else {
            STANDARD.decode(s).map_err(|_| CryptoError::BadMasterKey)?
        };
        Self::from_bytes(&bytes)
    }

    /// Builds a key from exactly 32 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        let key = Key::<Aes256Gcm>::try_from(bytes).map_err(|_| CryptoError::BadMasterKey)?;
        Ok(Self(key))
    }

    /// A fresh random key, for first start of the zero-setup default.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::fill(&mut bytes[..]);
        Self(Key::<Aes256Gcm>::from(bytes))
    }

    /// The key as 64 hex characters, for writing the zero-setup secrets file.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0.as_slice())
    }

    /// A 128-bit value derived from the key for `label`: stable for as long as the key is, the
    /// same on every node sharing the key, and unpredictable without it. Used for identifiers
    /// that must not be forgeable, such as the gateway's loop-detection hop tag.
    pub fn derive_tag(&self, label: &str) -> [u8; 16] {
        use sha2::{Digest, Sha256};
        let mut hasher = Sha256::new();
        hasher.update(b"switchyard-derive-v1\0");
        hasher.update(label.as_bytes());
        hasher.update(b"\0");
        hasher.update(self.0.as_slice());
        let digest = hasher.finalize();
        let mut out = [0u8; 16];
        out.copy_from_slice(&digest[..16]);
        out
    }

    /// Seals `plaintext`, binding `context` (the owning record's id) as associated data.
    pub fn seal(&self, plaintext: &str, context: &str) -> String {
        let cipher = Aes256Gcm::new(&self.0);
        let mut nonce = [0u8; NONCE_LEN];
        rand::fill(&mut nonce[..]);
        let nonce_arr = aes_gcm::Nonce::from(nonce);
        // Encryption with a valid key and a message far below GCM's 64 GiB limit cannot fail.
        let ct = cipher
            .encrypt(
                &nonce_arr,
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: context.as_bytes(),
                },
            )
            .unwrap_or_default();
        let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        format!("{VERSION_TAG}{}", STANDARD.encode(out))
    }

    /// Opens a value produced by [`MasterKey::seal`] with the same `context`.
    pub fn open(&self, sealed: &str, context: &str) -> Result<String, CryptoError> {
        let body = sealed
            .strip_prefix(VERSION_TAG)
            .ok_or(CryptoError::Malformed)?;
        let raw = STANDARD.decode(body).map_err(|_| CryptoError::Malformed)?;
        if raw.len() < NONCE_LEN + 16 {
            return Err(CryptoError::Malformed);
        }
        let (nonce, ct) = raw.split_at(NONCE_LEN);
        let nonce = aes_gcm::Nonce::try_from(nonce).map_err(|_| CryptoError::Malformed)?;
        let cipher = Aes256Gcm::new(&self.0);
        let pt = cipher
            .decrypt(
                &nonce,
                Payload {
                    msg: ct,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| CryptoError::Undecryptable)?;
        String::from_utf8(pt).map_err(|_| CryptoError::Undecryptable)
    }
}

/// Equality of two byte strings in time independent of where they differ (for secrets such as
/// CSRF tokens and webhook signatures; the length is not hidden).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
#[allow(clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_compares_bytes_and_lengths() {
        assert!(constant_time_eq(b"", b"") && constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"a", b"ab") && !constant_time_eq(b"abc", b"abd"));
    }

    #[test]
    fn seal_open_round_trip_and_context_binding() {
        let k = MasterKey::generate();
        let sealed = k.seal("sk-upstream-secret", "provider-1");
        assert!(sealed.starts_with("v1:"));
        assert!(!sealed.contains("sk-upstream-secret"));
        assert_eq!(
            k.open(&sealed, "provider-1").as_deref(),
            Ok("sk-upstream-secret")
        );
        assert_eq!(
            k.open(&sealed, "provider-2"),
            Err(CryptoError::Undecryptable)
        );
        let other = MasterKey::generate();
        assert_eq!(
            other.open(&sealed, "provider-1"),
            Err(CryptoError::Undecryptable)
        );
        assert_eq!(k.open("garbage", "provider-1"), Err(CryptoError::Malformed));
    }

    #[test]
    fn master_key_parses_hex_and_base64() {
        let k = MasterKey::generate();
        let again = MasterKey::parse(&k.to_hex()).expect("hex parses");
        assert_eq!(again.to_hex(), k.to_hex());
        assert!(MasterKey::parse("too-short").is_err());
        assert_eq!(format!("{k:?}"), "MasterKey(<redacted>)");
    }
}
