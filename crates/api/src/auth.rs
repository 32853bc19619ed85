//! The `Auth` extractor: turns `Authorization: Bearer ...` into an
//! [`Actor`], from either an access JWT (whose session must still be live)
//! or an API token (limited to its scopes).

use std::future::Future;
use std::pin::Pin;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{FromRequest, HttpMessage, HttpRequest, ResponseError, web};
use keel_auth::AuthError;
use keel_auth::tokens::{is_api_token, sha256_hex};
use keel_core::actor::Credential;
use keel_core::{Actor, Permission, SessionId, UserId};
use keel_store::directory::AuthUser;

use crate::error::ApiError;
use crate::state::AppState;

/// The authenticated caller.
pub struct Auth(pub Actor);

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

/// The bearer credential of a request, if any.
pub fn bearer(req: &HttpRequest) -> Option<String> {
    let v = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}

/// Resolves a bearer credential to an actor, from the actor cache when it
/// is fresh there. A JWT's signature and claims are checked when the token
/// is not in the cache: an entry is keyed by the SHA-256 of the exact token
/// that passed those checks, and never outlives the token's expiry, so a hit
/// is a token already verified and not yet expired.
pub async fn authenticate(state: &AppState, bearer: Option<String>) -> Result<Actor, ApiError> {
    let token = bearer.ok_or(AuthError::Missing)?;
    let key = sha256_hex(token.as_bytes());
    if let Some(actor) = state.actors.get(&key) {
        return Ok(actor);
    }
    let claims = if is_api_token(&token) {
        None
    } else {
        Some(state.jwt.verify(&token)?)
    };
    let generation = state.actors.generation();
    let now = chrono::Utc::now();
    let remaining = |until: chrono::DateTime<chrono::Utc>| (until - now).to_std().ok();
    let (actor, valid_for) = match claims {
        None => {
            let t = state
                .store
                .find_api_token(&key)
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
    state
        .actors
        .insert(key, actor.clone(), generation, valid_for);
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
    match authenticate(&state, bearer(req.request())).await {
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
        if let Some(actor) = req.extensions().get::<Actor>().cloned() {
            return Box::pin(async move { Ok(Auth(actor)) });
        }
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let token = bearer(req);
        Box::pin(async move {
            let state = state.ok_or_else(|| ApiError::internal("application state missing"))?;
            authenticate(&state, token).await.map(Auth)
        })
    }
}
