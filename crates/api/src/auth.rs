//! The `Auth` extractor: turns `Authorization: Bearer ...` into an
//! [`Actor`], from either an access JWT (whose session must still be live)
//! or an API token (limited to its scopes).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{FromRequest, HttpMessage, HttpRequest, ResponseError, web};
use keel_auth::AuthError;
use keel_auth::tokens::{is_api_token, sha256_hex};
use keel_core::actor::Credential;
use keel_core::{Actor, Permission, SessionId, UserId};
use keel_store::directory::AuthUser;
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::state::AppState;

/// The authenticated caller (shared with the actor cache: a request does
/// not copy its names and roles).
pub struct Auth(pub Arc<Actor>);

impl Auth {
    /// Refuses with 403 unless the caller may `p`.
    pub fn require(&self, p: Permission) -> Result<&Actor, ApiError> {
        if self.0.can(p) {
            Ok(&self.0)
        } else if matches!(self.0.credential, Credential::ApiToken(_)) {
            Err(ApiError::new(
                actix_web::http::StatusCode::FORBIDDEN,
                "auth.insufficient_scope",
                "this API token's scopes (or its owner's roles) do not allow this",
            ))
        } else {
            Err(ApiError::forbidden("your role does not allow this"))
        }
    }
}

/// The bearer credential of a request, if any: the bytes after `Bearer `
/// (any case), without surrounding white space. Whether they are text is
/// left to [`authenticate`], which needs to know only when the credential
/// is not cached.
pub fn bearer(req: &HttpRequest) -> Option<&[u8]> {
    let v = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)?
        .as_bytes();
    let space = v.iter().position(|&b| b == b' ')?;
    let (scheme, token) = (&v[..space], &v[space + 1..]);
    scheme
        .eq_ignore_ascii_case(b"bearer")
        .then(|| token.trim_ascii())
}

/// Resolves a bearer credential to an actor, from the actor cache when it
/// is fresh there. A JWT's signature and claims are checked when the token
/// is not in the cache: an entry is keyed by the SHA-256 of the exact token
/// that passed those checks, and never outlives the token's expiry, so a hit
/// is a token already verified and not yet expired.
pub async fn authenticate(state: &AppState, bearer: Option<&[u8]>) -> Result<Arc<Actor>, ApiError> {
    let raw = bearer.ok_or(AuthError::Missing)?;
    let key: [u8; 32] = Sha256::digest(raw).into();
    if let Some(actor) = state.actors.get(&key) {
        return Ok(actor);
    }
    // A header value is visible ASCII or obsolete text; only the former
    // can be a token Keel issued.
    let token = std::str::from_utf8(raw)
        .ok()
        .filter(|t| t.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or(AuthError::InvalidToken)?;
    let claims = if is_api_token(token) {
        None
    } else {
        Some(state.jwt.verify(token)?)
    };
    let generation = state.actors.generation();
    let now = chrono::Utc::now();
    let remaining = |until: chrono::DateTime<chrono::Utc>| (until - now).to_std().ok();
    let (actor, valid_for) = match claims {
        None => {
            let t = state
                .store
                .find_api_token(&sha256_hex(raw))
                .await?
                .ok_or(AuthError::InvalidToken)?;
            let u = active_user(state, t.user_id).await?;
            let actor = Actor {
                user_id: t.user_id,
                username: u.username,
                display_name: u.display_name,
                roles: u.roles,
                credential: Credential::ApiToken(t.scopes),
            };
            (
                actor,
                t.expires_at.map(|e| remaining(e).unwrap_or_default()),
            )
        }
        Some(claims) => {
            let user_id = UserId(claims.sub);
            if !state
                .store
                .session_active(SessionId(claims.sid), user_id)
                .await?
            {
                return Err(AuthError::InvalidToken.into());
            }
            let u = active_user(state, user_id).await?;
            let actor = Actor {
                user_id,
                username: u.username,
                display_name: u.display_name,
                roles: u.roles,
                credential: Credential::Session,
            };
            let exp = chrono::DateTime::from_timestamp(claims.exp, 0).unwrap_or(now);
            (actor, Some(remaining(exp).unwrap_or_default()))
        }
    };
    let actor = Arc::new(actor);
    state
        .actors
        .insert(key, Arc::clone(&actor), generation, valid_for);
    Ok(actor)
}

/// Whether a request may change who is authenticated as what: sign-in
/// state, users and their roles, passwords, API tokens. Such requests clear
/// the actor cache when they finish, whatever their outcome.
fn changes_credentials(req: &ServiceRequest) -> bool {
    let m = req.method();
    if m == actix_web::http::Method::GET || m == actix_web::http::Method::HEAD {
        return false;
    }
    let path = req.path();
    [
        "/api/v1/auth/",
        "/api/v1/users",
        "/api/v1/api-tokens",
        "/api/v1/me/password",
    ]
    .iter()
    .any(|p| path.starts_with(p))
}

/// The name and roles of an active user; anyone else's credential is invalid.
async fn active_user(state: &AppState, id: UserId) -> Result<AuthUser, ApiError> {
    match state.store.user_for_auth(id).await? {
        Some(u) if u.active => Ok(u),
        _ => Err(AuthError::InvalidToken.into()),
    }
}

/// Routes under `/api/v1` that anyone may call.
fn is_public(path: &str) -> bool {
    !path.starts_with("/api/v1/")
        || matches!(
            path,
            "/api/v1/auth/login"
                | "/api/v1/auth/refresh"
                | "/api/v1/auth/logout"
                | "/api/v1/openapi.json"
        )
}

/// Authenticates every `/api/v1` request before any handler reads its body,
/// so an anonymous request is refused with 401 whatever else is wrong with
/// it. The actor is left in the request's extensions for [`Auth`].
pub async fn require_auth(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_boxed_body);
    };
    if changes_credentials(&req) {
        let res = authenticated(state.clone(), req, next).await;
        state.actors.clear();
        return res;
    }
    authenticated(state, req, next).await
}

async fn authenticated(
    state: web::Data<AppState>,
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    if is_public(req.path()) {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_boxed_body);
    }
    let found = authenticate(&state, bearer(req.request())).await;
    match found {
        Ok(actor) => {
            req.extensions_mut().insert(actor);
            next.call(req)
                .await
                .map(ServiceResponse::map_into_boxed_body)
        }
        Err(e) => {
            let res = e.error_response();
            Ok(req.into_response(res))
        }
    }
}

impl FromRequest for Auth {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        if let Some(actor) = req.extensions().get::<Arc<Actor>>() {
            let actor = Arc::clone(actor);
            return Box::pin(async move { Ok(Auth(actor)) });
        }
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let token = bearer(req).map(<[u8]>::to_vec);
        Box::pin(async move {
            let state = state.ok_or_else(|| ApiError::internal("application state missing"))?;
            authenticate(&state, token.as_deref()).await.map(Auth)
        })
    }
}

#[cfg(test)]
#[allow(clippy::expect_used)]
mod tests {
    use super::bearer;
    use actix_web::http::header::{AUTHORIZATION, HeaderValue};
    use actix_web::test::TestRequest;

    fn with(value: &[u8]) -> actix_web::HttpRequest {
        let v = HeaderValue::from_bytes(value).expect("a header value");
        TestRequest::default()
            .insert_header((AUTHORIZATION, v))
            .to_http_request()
    }

    #[test]
    fn the_bearer_is_what_follows_the_scheme_in_any_case_without_outer_space() {
        assert_eq!(bearer(&with(b"Bearer abc.def")), Some(&b"abc.def"[..]));
        assert_eq!(bearer(&with(b"bEARER   keel_x  ")), Some(&b"keel_x"[..]));
    }

    #[test]
    fn another_scheme_or_no_header_is_no_bearer() {
        assert_eq!(bearer(&with(b"Basic YWxhZGRpbjpvcGVu")), None);
        assert_eq!(bearer(&with(b"Bearer")), None);
        assert_eq!(bearer(&TestRequest::default().to_http_request()), None);
    }

    #[test]
    fn a_bearer_that_is_not_text_is_still_found_and_left_to_authenticate() {
        // Refused as an invalid token by `authenticate`, which checks the
        // bytes only when they are not cached.
        assert_eq!(bearer(&with(b"Bearer \xffx")), Some(&b"\xffx"[..]));
    }
}
