//! Access tokens: HS256 JWTs carrying the user and session ids. The
//! algorithm is pinned, so `alg: none` and RS/HS confusion are refused, and
//! `exp`, `nbf`, `iss`, `aud` and `sub` are required and checked.

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::AuthError;

pub const ISSUER: &str = "keel";
pub const AUDIENCE: &str = "keel-api";

/// The claims Keel puts in an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: Uuid,
    /// The session (refresh-token family) id; revoking it ends the token too.
    pub sid: Uuid,
    pub iss: String,
    pub aud: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    pub jti: Uuid,
}

/// Signing and verification keys with the token lifetime.
#[derive(Clone)]
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl_secs: i64,
}

impl std::fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtKeys")
            .field("ttl_secs", &self.ttl_secs)
            .finish_non_exhaustive()
    }
}

impl JwtKeys {
    pub fn new(secret: &[u8], ttl_secs: i64) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = 5;
        JwtKeys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            ttl_secs,
        }
    }

    pub fn ttl_secs(&self) -> i64 {
        self.ttl_secs
    }

    /// Issues a token for `user` in `session`, valid from `now` (Unix seconds).
    pub fn issue(&self, user: Uuid, session: Uuid, now: i64) -> Result<String, AuthError> {
        let claims = Claims {
            sub: user,
            sid: session,
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            iat: now,
            nbf: now,
            exp: now + self.ttl_secs,
            jti: Uuid::new_v4(),
        };
        encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|_| AuthError::InvalidToken)
    }

    /// Verifies signature, algorithm and claims.
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        if token.len() > 4096 {
            return Err(AuthError::InvalidToken);
        }
        decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|d| d.claims)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                _ => AuthError::InvalidToken,
            })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    fn now() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    }

    #[test]
    fn a_token_verifies_with_its_own_key_only() {
        let keys = JwtKeys::new(b"0123456789abcdef0123456789abcdef", 900);
        let (u, s) = (Uuid::new_v4(), Uuid::new_v4());
        let t = keys.issue(u, s, now()).unwrap();
        let c = keys.verify(&t).unwrap();
        assert_eq!((c.sub, c.sid), (u, s));
        let other = JwtKeys::new(b"another key another key another k", 900);
        assert_eq!(other.verify(&t), Err(AuthError::InvalidToken));
    }

    #[test]
    fn expired_and_not_yet_valid_tokens_are_refused() {
        let keys = JwtKeys::new(b"0123456789abcdef0123456789abcdef", 900);
        let old = keys
            .issue(Uuid::new_v4(), Uuid::new_v4(), now() - 10_000)
            .unwrap();
        assert_eq!(keys.verify(&old), Err(AuthError::Expired));
        let future = keys
            .issue(Uuid::new_v4(), Uuid::new_v4(), now() + 3_600)
            .unwrap();
        assert_eq!(keys.verify(&future), Err(AuthError::InvalidToken));
    }

    #[test]
    fn alg_none_is_refused() {
        let keys = JwtKeys::new(b"0123456789abcdef0123456789abcdef", 900);
        let t = keys.issue(Uuid::new_v4(), Uuid::new_v4(), now()).unwrap();
        let payload = t.split('.').nth(1).unwrap();
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        assert!(keys.verify(&format!("{header}.{payload}.")).is_err());
    }
}
