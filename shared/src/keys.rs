//! Virtual API keys: `sk-sy-` followed by 43 base62 characters (256 random bits).
//!
//! Only the SHA-256 of a key is ever stored or published. A slow hash (argon2) buys nothing for
//! 256-bit random secrets and would cost milliseconds on every request.

use sha2::{Digest, Sha256};

/// Every Switchyard key starts with this.
pub const KEY_PREFIX: &str = "sk-sy-";
/// Random characters after the prefix: 43 base62 digits hold 256 bits.
const KEY_BODY_LEN: usize = 43;
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Generates a fresh key from the operating system's CSPRNG (through rand's thread RNG, which
/// is ChaCha seeded from the OS).
pub fn generate_api_key() -> String {
    let mut out = String::with_capacity(KEY_PREFIX.len() + KEY_BODY_LEN);
    out.push_str(KEY_PREFIX);
    let mut buf = [0u8; 64];
    while out.len() < KEY_PREFIX.len() + KEY_BODY_LEN {
        rand::fill(&mut buf[..]);
        for b in buf {
            // Rejection sampling keeps every character uniformly likely: 248 = 4 * 62.
            if b < 248 && out.len() < KEY_PREFIX.len() + KEY_BODY_LEN {
                out.push(BASE62[(b % 62) as usize] as char);
            }
        }
    }
    out
}

/// The lowercase hex SHA-256 of a presented key: the only form stored in the database and Redis.
pub fn hash_api_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// A short, non-secret form for recognising a key in lists: `sk-sy-AbCd…wxyz`.
pub fn display_prefix(key: &str) -> String {
    let head: String = key.chars().take(KEY_PREFIX.len() + 4).collect();
    let tail: String = {
        let chars: Vec<char> = key.chars().collect();
        chars[chars.len().saturating_sub(4)..].iter().collect()
    };
    format!("{head}…{tail}")
}

/// Whether a presented string has the shape of a Switchyard key. Used only to give a clearer
/// error message; lookup by hash is what decides.
pub fn looks_like_key(key: &str) -> bool {
    key.len() == KEY_PREFIX.len() + KEY_BODY_LEN
        && key.starts_with(KEY_PREFIX)
        && key[KEY_PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_have_the_documented_shape_and_differ() {
        let a = generate_api_key();
        let b = generate_api_key();
        assert!(looks_like_key(&a), "{a}");
        assert_ne!(a, b);
        assert_eq!(hash_api_key(&a).len(), 64);
        assert_ne!(hash_api_key(&a), hash_api_key(&b));
    }

    #[test]
    fn display_prefix_hides_the_secret() {
        let k = "sk-sy-ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopq";
        assert_eq!(display_prefix(k), "sk-sy-ABCD…nopq");
    }
}
