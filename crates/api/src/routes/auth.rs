//! Login, token refresh and logout, the caller's own account, and API tokens.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, delete, get, post, put, web};
use keel_auth::tokens::{new_api_token, random_secret, sha256_hex};
use keel_auth::{AuthError, password};
use keel_core::people::check_password;
use keel_core::{ApiTokenId, Permission};
use keel_store::directory::UserPatch;
use keel_store::sessions::Refresh;

use super::client_addr;
use crate::auth::Auth;
use crate::body::Json;
use crate::dto::{
    ApiToken, LoginRequest, NewApiToken, Page, PasswordChange, REFRESH_TOKEN_MAX_CHARS,
    RefreshRequest, TokenResponse, User,
};
use crate::error::{ApiError, Problem};
use crate::idempotency::IdempotencyKey;
use crate::state::AppState;

async fn issue(
    state: &AppState,
    user: keel_core::UserId,
    session: keel_core::SessionId,
    refresh_secret: String,
) -> Result<TokenResponse, ApiError> {
    let access = state
        .jwt
        .issue(user.0, session.0, chrono::Utc::now().timestamp())?;
    Ok(TokenResponse {
        access_token: access,
        refresh_token: refresh_secret,
        token_type: "Bearer".into(),
        expires_in: state.jwt.ttl_secs(),
    })
}

/// Log in
///
/// Exchanges a username (or email address) and password for a short-lived
/// access token and a single-use refresh token. Repeated failures for one
/// account or from one address are throttled with 429 and `Retry-After`.
#[utoipa::path(
    tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Logged in", body = TokenResponse),
        (status = 401, description = "Wrong username or password", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many failed attempts", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ),
    security(())
)]
#[post("/auth/login")]
pub async fn login(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: Json<LoginRequest>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let addr = client_addr(&req);
    let found = state.store.find_login(&body.username).await?;
    // Count failures against the account, however it was named (username
    // or email), so both spellings share one budget.
    let account = found
        .as_ref()
        .map_or(body.username.clone(), |(u, _)| u.username.clone());
    if let Err(retry_after) = state.throttle.check(&account, &addr) {
        return Err(AuthError::Throttled { retry_after }.into_api(retry_after));
    }
    let pw = body.password.clone();
    let ok = match found {
        Some((user, hash)) => {
            let matches = crate::hashing::run(move || password::verify(&pw, &hash)).await?;
            (matches && user.active).then_some(user)
        }
        None => {
            // Same work as a wrong password, so timing tells nothing.
            crate::hashing::run(move || password::verify_dummy(&pw)).await?;
            None
        }
    };
    let Some(user) = ok else {
        state.throttle.record_failure(&account, &addr);
        return Err(AuthError::InvalidCredentials.into());
    };
    state.throttle.record_success(&account);
    let secret = random_secret(32);
    let ttl = chrono::Duration::seconds(state.settings.refresh_token_ttl_secs);
    let session = state
        .store
        .create_session(user.id, &sha256_hex(secret.as_bytes()), ttl)
        .await?;
    Ok(HttpResponse::Ok().json(issue(&state, user.id, session, secret).await?))
}

trait IntoApi {
    fn into_api(self, retry_after: u64) -> ApiError;
}
impl IntoApi for AuthError {
    fn into_api(self, retry_after: u64) -> ApiError {
        let mut e = ApiError::from(self);
        e.retry_after = Some(retry_after);
        e
    }
}

/// Refuses a refresh token longer than the contract allows, like any other
/// over-long field: 422 `validation.invalid_text`.
fn check_refresh_token(token: &str) -> Result<(), ApiError> {
    if token.chars().count() > REFRESH_TOKEN_MAX_CHARS {
        return Err(ApiError::unprocessable(
            "validation.invalid_text",
            "refresh_token",
            format!("refresh_token is longer than {REFRESH_TOKEN_MAX_CHARS} characters"),
        ));
    }
    Ok(())
}

/// Refresh tokens
///
/// Exchanges a refresh token for a new access token and a new refresh token.
/// Each refresh token works once: presenting a used one again revokes the
/// whole session, since it means the token was stolen.
#[utoipa::path(
    tag = "auth",
    request_body = RefreshRequest,
    responses(
        (status = 200, description = "New tokens", body = TokenResponse),
        (status = 401, description = "Invalid, expired, revoked or reused refresh token", body = Problem, content_type = "application/problem+json"),
    ),
    security(())
)]
#[post("/auth/refresh")]
pub async fn refresh(
    state: web::Data<AppState>,
    body: Json<RefreshRequest>,
) -> Result<HttpResponse, ApiError> {
    check_refresh_token(&body.refresh_token)?;
    let next = random_secret(32);
    let outcome = state
        .store
        .rotate_refresh(
            &sha256_hex(body.refresh_token.as_bytes()),
            &sha256_hex(next.as_bytes()),
        )
        .await?;
    match outcome {
        Refresh::Rotated { session, user } => {
            let u = state.store.get_user(user).await?;
            if !u.active {
                state.store.revoke_session(session).await?;
                return Err(AuthError::InvalidRefresh.into());
            }
            Ok(HttpResponse::Ok().json(issue(&state, user, session, next).await?))
        }
        Refresh::Invalid | Refresh::Reused => Err(AuthError::InvalidRefresh.into()),
    }
}

/// Log out
///
/// Revokes the session of a refresh token: the refresh token and every
/// access token of the session stop working at once.
#[utoipa::path(
    tag = "auth",
    request_body = RefreshRequest,
    responses((status = 204, description = "Logged out (also when the token was unknown)")),
    security(())
)]
#[post("/auth/logout")]
pub async fn logout(
    state: web::Data<AppState>,
    body: Json<RefreshRequest>,
) -> Result<HttpResponse, ApiError> {
    check_refresh_token(&body.refresh_token)?;
    if let Some(session) = state
        .store
        .session_of_refresh(&sha256_hex(body.refresh_token.as_bytes()))
        .await?
    {
        state.store.revoke_session(session).await?;
    }
    Ok(HttpResponse::NoContent().finish())
}

/// Who am I
///
/// The caller's own account, roles and groups.
#[utoipa::path(tag = "auth", responses((status = 200, description = "The caller", body = User)))]
#[get("/me")]
pub async fn me(state: web::Data<AppState>, auth: Auth) -> Result<web::Json<User>, ApiError> {
    Ok(web::Json(
        state.store.get_user(auth.0.user_id).await?.into(),
    ))
}

/// Change my password
///
/// Requires the current password. Other sessions stay logged in.
#[utoipa::path(
    tag = "auth",
    request_body = PasswordChange,
    responses(
        (status = 204, description = "Changed"),
        (status = 401, description = "Wrong current password", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/me/password")]
pub async fn change_password(
    state: web::Data<AppState>,
    auth: Auth,
    body: Json<PasswordChange>,
) -> Result<HttpResponse, ApiError> {
    if !matches!(auth.0.credential, keel_core::actor::Credential::Session) {
        return Err(ApiError::forbidden("API tokens cannot change passwords"));
    }
    let body = body.into_inner();
    check_password(&body.new_password)?;
    let (_, hash) = state
        .store
        .find_login(&auth.0.username)
        .await?
        .ok_or(AuthError::InvalidCredentials)?;
    let current = body.current_password;
    if !crate::hashing::run(move || password::verify(&current, &hash)).await? {
        return Err(AuthError::InvalidCredentials.into());
    }
    let new = body.new_password;
    let new_hash = crate::hashing::run(move || password::hash(&new)).await??;
    state
        .store
        .update_user(
            auth.0.user_id,
            UserPatch {
                password_hash: Some(new_hash),
                ..Default::default()
            },
        )
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Create an API token
///
/// A long-lived, scoped, revocable token for scripts and integrations. The
/// secret is in this response only; Keel keeps just its hash.
#[utoipa::path(
    tag = "api-tokens",
    request_body = NewApiToken,
    params(IdempotencyKey),
    responses(
        (status = 201, description = "Created; `token` holds the secret", body = ApiToken),
    )
)]
#[post("/api-tokens")]
pub async fn create_api_token(
    state: web::Data<AppState>,
    auth: Auth,
    body: Json<NewApiToken>,
) -> Result<HttpResponse, ApiError> {
    auth.require(Permission::ApiTokensManage)?;
    let body = body.into_inner();
    let name = keel_core::text::clean("name", &body.name, 100, true, false).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation.invalid_text",
            e.to_string(),
        )
        .with_field("name")
    })?;
    if body.scopes.is_empty() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "api_token.scopes_required",
            "give the token at least one scope",
        )
        .with_field("scopes"));
    }
    if body.expires_at.is_some_and(|e| e <= chrono::Utc::now()) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "api_token.expiry_in_past",
            "expires_at must be in the future",
        )
        .with_field("expires_at"));
    }
    let (secret, prefix, hash) = new_api_token();
    let view = state
        .store
        .create_api_token(
            auth.0.user_id,
            &name,
            &prefix,
            &hash,
            &body.scopes,
            body.expires_at.map(|e| e.trunc_subsecs_micro()),
        )
        .await?;
    let mut out = ApiToken::from(view);
    out.token = Some(secret);
    Ok(HttpResponse::Created().json(out))
}

trait TruncMicro {
    fn trunc_subsecs_micro(self) -> Self;
}
impl TruncMicro for chrono::DateTime<chrono::Utc> {
    fn trunc_subsecs_micro(self) -> Self {
        chrono::SubsecRound::trunc_subsecs(self, 6)
    }
}

/// List my API tokens
///
/// The caller's tokens, newest first, with prefix, scopes, expiry and last use; never the secrets.
#[utoipa::path(tag = "api-tokens", responses((status = 200, description = "The caller's tokens, newest first", body = Page<ApiToken>)))]
#[get("/api-tokens")]
pub async fn list_api_tokens(
    state: web::Data<AppState>,
    auth: Auth,
) -> Result<web::Json<Page<ApiToken>>, ApiError> {
    auth.require(Permission::ApiTokensManage)?;
    let items = state.store.list_api_tokens(auth.0.user_id).await?;
    Ok(web::Json(Page::all(
        items.into_iter().map(Into::into).collect(),
    )))
}

/// Revoke an API token
///
/// The token stops working at once. Only the caller's own tokens can be revoked.
#[utoipa::path(
    tag = "api-tokens",
    params(("id" = uuid::Uuid, Path, description = "Token id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 404, description = "No such token of the caller's", body = Problem, content_type = "application/problem+json"),
    )
)]
#[delete("/api-tokens/{id}")]
pub async fn revoke_api_token(
    state: web::Data<AppState>,
    auth: Auth,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    auth.require(Permission::ApiTokensManage)?;
    let id = uuid::Uuid::parse_str(&id).map_err(|_| ApiError::not_found("api token"))?;
    state
        .store
        .revoke_api_token(auth.0.user_id, ApiTokenId(id))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

async fn prefs(
    state: &AppState,
    user: keel_core::UserId,
) -> Result<Page<crate::dto::NotificationPref>, ApiError> {
    let items = state.store.notification_prefs(user).await?;
    Ok(Page::all(
        items
            .into_iter()
            .map(|(e, enabled)| crate::dto::NotificationPref {
                event: e.as_str().to_owned(),
                enabled,
            })
            .collect(),
    ))
}

/// My notification settings
///
/// Every kind of event Keel emails about, and whether the caller receives
/// it. Everything is on until turned off.
#[utoipa::path(tag = "auth", responses((status = 200, description = "Settings", body = Page<crate::dto::NotificationPref>)))]
#[get("/me/notifications")]
pub async fn list_notification_prefs(
    state: web::Data<AppState>,
    auth: Auth,
) -> Result<web::Json<Page<crate::dto::NotificationPref>>, ApiError> {
    Ok(web::Json(prefs(&state, auth.0.user_id).await?))
}

/// Change a notification setting
///
/// Turns emails about one kind of event on or off for the caller.
#[utoipa::path(
    tag = "auth",
    params(("event" = String, Path, description = "The event, e.g. `incident.commented`")),
    request_body = crate::dto::NotificationPrefInput,
    responses(
        (status = 200, description = "All settings now", body = Page<crate::dto::NotificationPref>),
        (status = 404, description = "No such event", body = Problem, content_type = "application/problem+json"),
    )
)]
#[put("/me/notifications/{event}")]
pub async fn set_notification_pref(
    state: web::Data<AppState>,
    auth: Auth,
    event: web::Path<String>,
    body: Json<crate::dto::NotificationPrefInput>,
) -> Result<web::Json<Page<crate::dto::NotificationPref>>, ApiError> {
    let e = keel_store::notify::Event::parse(&event)
        .ok_or_else(|| ApiError::not_found("notification event"))?;
    state
        .store
        .set_notification_pref(auth.0.user_id, e, body.enabled)
        .await?;
    Ok(web::Json(prefs(&state, auth.0.user_id).await?))
}
