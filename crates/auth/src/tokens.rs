//! Opaque secrets: refresh tokens and API tokens. Only their SHA-256 is
//! stored; a 256-bit random secret needs no slow hash.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// A random URL-safe secret of `bytes` random bytes.
pub fn random_secret(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

/// Lowercase hex SHA-256. (Every authenticated request hashes its bearer
/// credential; `hex` writes the digest in one pass, where a `format!` per
/// byte cost 32 allocations.)
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Marks Keel API tokens, so that secret scanners can recognise them.
pub const API_TOKEN_PREFIX: &str = "keel_";

/// A new API token: `(full secret shown once, display prefix, hash to store)`.
pub fn new_api_token() -> (String, String, String) {
    let secret = format!("{API_TOKEN_PREFIX}{}", random_secret(32));
    let prefix: String = secret.chars().take(API_TOKEN_PREFIX.len() + 6).collect();
    let hash = sha256_hex(secret.as_bytes());
    (secret, prefix, hash)
}

/// Whether a bearer credential looks like an API token rather than a JWT.
pub fn is_api_token(bearer: &str) -> bool {
    bearer.starts_with(API_TOKEN_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_tokens_are_random_prefixed_and_hashed() {
        let (a, prefix, hash) = new_api_token();
        let (b, _, _) = new_api_token();
        assert_ne!(a, b);
        assert!(is_api_token(&a));
        assert!(a.starts_with(&prefix));
        assert_eq!(hash, sha256_hex(a.as_bytes()));
        assert_eq!(hash.len(), 64);
    }

    #[test]
    fn the_hex_digest_is_lowercase_and_matches_the_known_value() {
        // FIPS 180-2, appendix B.1.
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
