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

/// Resolves a bearer credential to an actor.
pub async fn authenticate(state: &AppState, bearer: Option<String>) -> Result<Actor, ApiError> {
    let token = bearer.ok_or(AuthError::Missing)?;
    if is_api_token(&token) {
        let t = state
            .store
            .find_api_token(&sha256_hex(token.as_bytes()))
            .await?
            .ok_or(AuthError::InvalidToken)?;
        let (username, roles) = active_user(state, t.user_id).await?;
        return Ok(Actor {
            user_id: t.user_id,
            username,
            roles,
            credential: Credential::ApiToken(t.scopes),
        });
    }
    let claims = state.jwt.verify(&token)?;
    let user_id = UserId(claims.sub);
    if !state
        .store
        .session_active(SessionId(claims.sid), user_id)
        .await?
    {
        return Err(AuthError::InvalidToken.into());
    }
    let (username, roles) = active_user(state, user_id).await?;
    Ok(Actor {
        user_id,
        username,
        roles,
        credential: Credential::Session,
    })
}

/// The name and roles of an active user; anyone else's credential is invalid.
async fn active_user(
    state: &AppState,
    id: UserId,
) -> Result<(String, Vec<keel_core::Role>), ApiError> {
    match state.store.user_for_auth(id).await? {
        Some((username, true, roles)) => Ok((username, roles)),
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
    if is_public(req.path()) {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_boxed_body);
    }
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_boxed_body);
    };
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
