//! Users and assignment groups. Admins manage them; agents may read them.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, delete, get, patch, post, put, web};
use keel_auth::password;
use keel_core::people::{EmailAddress, Username, check_password, display_name};
use keel_core::query::Limit;
use keel_core::{GroupId, Permission, Role, UserId};
use keel_store::directory::{self, UserPatch};
use serde::Deserialize;
use utoipa::IntoParams;

use super::parse_id;
use crate::auth::Auth;
use crate::body::Json;
use crate::dto::{Group, GroupUpdate, NewGroup, NewUser, Page, User, UserSummary, UserUpdate};
use crate::error::{ApiError, Problem};
use crate::idempotency::IdempotencyKey;
use crate::state::AppState;

/// Paging parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Page size, 1-200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    /// The `next` value of the previous page (opaque, base64url).
    #[param(pattern = "^[A-Za-z0-9_-]{1,1024}$")]
    pub cursor: Option<String>,
}

/// User list parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UserListParams {
    /// Only users holding this role.
    pub role: Option<Role>,
    /// Page size, 1-200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    /// The `next` value of the previous page (opaque, base64url).
    #[param(pattern = "^[A-Za-z0-9_-]{1,1024}$")]
    pub cursor: Option<String>,
}

fn roles_required(roles: &[Role]) -> Result<(), ApiError> {
    if roles.is_empty() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "user.roles_required",
            "give the user at least one role",
        )
        .with_field("roles"));
    }
    Ok(())
}

/// Create a user
///
/// Admins only. The password is hashed with argon2id.
#[utoipa::path(
    tag = "users",
    request_body = NewUser,
    params(IdempotencyKey),
    responses(
        (status = 201, description = "Created", body = User),
        (status = 409, description = "Username or email taken", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/users")]
pub async fn create_user(
    state: web::Data<AppState>,
    auth: Auth,
    body: Json<NewUser>,
) -> Result<HttpResponse, ApiError> {
    auth.require(Permission::DirectoryAdmin)?;
    let body = body.into_inner();
    let username = Username::parse(&body.username)?;
    let email = EmailAddress::parse(&body.email)?;
    let name = display_name(body.display_name.as_deref().unwrap_or(username.as_str()))?;
    check_password(&body.password)?;
    roles_required(&body.roles)?;
    let mut groups = Vec::new();
    for g in &body.groups {
        let found = state.store.resolve_group(g).await?.ok_or_else(|| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "user.unknown_group",
                format!("no group `{g}`"),
            )
            .with_field("groups")
        })?;
        groups.push(found.id);
    }
    let pw = body.password;
    let hash = crate::hashing::run(move || password::hash(&pw)).await??;
    let user = state
        .store
        .create_user(directory::NewUser {
            username,
            email,
            display_name: name,
            password_hash: hash,
            roles: body.roles,
            groups,
        })
        .await?;
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("/api/v1/users/{}", user.id)))
        .json(User::from(user)))
}

/// List users
///
/// Agents and admins. Sorted by username.
#[utoipa::path(tag = "users", params(UserListParams), responses((status = 200, description = "A page of users", body = Page<User>)))]
#[get("/users")]
pub async fn list_users(
    state: web::Data<AppState>,
    auth: Auth,
    q: web::Query<UserListParams>,
) -> Result<web::Json<Page<User>>, ApiError> {
    auth.require(Permission::DirectoryRead)?;
    let page = state
        .store
        .list_users(q.role, Limit::parse(q.limit)?, q.cursor.as_deref())
        .await?;
    Ok(web::Json(Page {
        items: page.items.into_iter().map(Into::into).collect(),
        next: page.next,
    }))
}

/// Get a user
///
/// Agents and admins may read any user; everyone may read themselves.
#[utoipa::path(
    tag = "users",
    params(("id" = Uuid, Path, description = "User id")),
    responses(
        (status = 200, description = "The user", body = User),
        (status = 404, description = "No such user", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/users/{id}")]
pub async fn get_user(
    state: web::Data<AppState>,
    auth: Auth,
    id: web::Path<String>,
) -> Result<web::Json<User>, ApiError> {
    let id = parse_id(&id, "user")?;
    if id != auth.0.user_id.0 {
        auth.require(Permission::DirectoryRead)?;
    }
    Ok(web::Json(state.store.get_user(UserId(id)).await?.into()))
}

/// Update a user
///
/// Admins only: email, display name, roles, active flag, password.
#[utoipa::path(
    tag = "users",
    params(("id" = Uuid, Path, description = "User id")),
    request_body = UserUpdate,
    responses(
        (status = 200, description = "Updated", body = User),
        (status = 404, description = "No such user", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Email taken", body = Problem, content_type = "application/problem+json"),
    )
)]
#[patch("/users/{id}")]
pub async fn update_user(
    state: web::Data<AppState>,
    auth: Auth,
    id: web::Path<String>,
    body: Json<UserUpdate>,
) -> Result<web::Json<User>, ApiError> {
    auth.require(Permission::DirectoryAdmin)?;
    let id = UserId(parse_id(&id, "user")?);
    let body = body.into_inner();
    let mut patch = UserPatch {
        email: body.email.as_deref().map(EmailAddress::parse).transpose()?,
        display_name: body.display_name.as_deref().map(display_name).transpose()?,
        roles: body.roles,
        active: body.active,
        password_hash: None,
    };
    if let Some(r) = &patch.roles {
        roles_required(r)?;
    }
    if id == auth.0.user_id
        && (patch.active == Some(false)
            || patch
                .roles
                .as_ref()
                .is_some_and(|r| !r.contains(&Role::Admin)))
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "user.cannot_demote_self",
            "admins cannot deactivate themselves or drop their own admin role",
        ));
    }
    if let Some(pw) = body.password {
        check_password(&pw)?;
        patch.password_hash = Some(crate::hashing::run(move || password::hash(&pw)).await??);
    }
    Ok(web::Json(state.store.update_user(id, patch).await?.into()))
}

fn group_name(raw: &str) -> Result<String, ApiError> {
    keel_core::text::clean("name", raw, 100, true, false).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation.invalid_text",
            e.to_string(),
        )
        .with_field("name")
    })
}

fn group_description(raw: &str) -> Result<String, ApiError> {
    keel_core::text::clean("description", raw, 2000, false, true).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation.invalid_text",
            e.to_string(),
        )
        .with_field("description")
    })
}

/// Create a group
///
/// Admins only. Assignment groups receive incidents.
#[utoipa::path(
    tag = "groups",
    request_body = NewGroup,
    params(IdempotencyKey),
    responses(
        (status = 201, description = "Created", body = Group),
        (status = 409, description = "Name taken", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/groups")]
pub async fn create_group(
    state: web::Data<AppState>,
    auth: Auth,
    body: Json<NewGroup>,
) -> Result<HttpResponse, ApiError> {
    auth.require(Permission::DirectoryAdmin)?;
    let name = group_name(body.name.as_deref().unwrap_or(""))?;
    let description = group_description(body.description.as_deref().unwrap_or(""))?;
    let g = state.store.create_group(&name, &description).await?;
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("/api/v1/groups/{}", g.id)))
        .json(Group::from(g)))
}

/// List groups
///
/// Every assignment group with its member count, sorted by name. Agents and admins.
#[utoipa::path(tag = "groups", params(PageParams), responses((status = 200, description = "A page of groups, by name", body = Page<Group>)))]
#[get("/groups")]
pub async fn list_groups(
    state: web::Data<AppState>,
    auth: Auth,
    q: web::Query<PageParams>,
) -> Result<web::Json<Page<Group>>, ApiError> {
    auth.require(Permission::DirectoryRead)?;
    let page = state
        .store
        .list_groups(Limit::parse(q.limit)?, q.cursor.as_deref())
        .await?;
    Ok(web::Json(Page {
        items: page.items.into_iter().map(Into::into).collect(),
        next: page.next,
    }))
}

/// Get a group
///
/// One assignment group with its member count. Agents and admins.
#[utoipa::path(
    tag = "groups",
    params(("id" = Uuid, Path, description = "Group id")),
    responses(
        (status = 200, description = "The group", body = Group),
        (status = 404, description = "No such group", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/groups/{id}")]
pub async fn get_group(
    state: web::Data<AppState>,
    auth: Auth,
    id: web::Path<String>,
) -> Result<web::Json<Group>, ApiError> {
    auth.require(Permission::DirectoryRead)?;
    Ok(web::Json(
        state
            .store
            .get_group(GroupId(parse_id(&id, "group")?))
            .await?
            .into(),
    ))
}

/// Update a group
///
/// Admins only: rename a group or change its description. Names are unique.
#[utoipa::path(
    tag = "groups",
    params(("id" = Uuid, Path, description = "Group id")),
    request_body = GroupUpdate,
    responses(
        (status = 200, description = "Updated", body = Group),
        (status = 404, description = "No such group", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Name taken", body = Problem, content_type = "application/problem+json"),
    )
)]
#[patch("/groups/{id}")]
pub async fn update_group(
    state: web::Data<AppState>,
    auth: Auth,
    id: web::Path<String>,
    body: Json<GroupUpdate>,
) -> Result<web::Json<Group>, ApiError> {
    auth.require(Permission::DirectoryAdmin)?;
    let name = body.name.as_deref().map(group_name).transpose()?;
    let description = body
        .description
        .as_deref()
        .map(group_description)
        .transpose()?;
    let id = GroupId(parse_id(&id, "group")?);
    Ok(web::Json(
        state
            .store
            .update_group(id, name.as_deref(), description.as_deref())
            .await?
            .into(),
    ))
}

/// Delete a group
///
/// Refused with 409 while records are assigned to it.
#[utoipa::path(
    tag = "groups",
    params(("id" = Uuid, Path, description = "Group id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such group", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Still in use", body = Problem, content_type = "application/problem+json"),
    )
)]
#[delete("/groups/{id}")]
pub async fn delete_group(
    state: web::Data<AppState>,
    auth: Auth,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    auth.require(Permission::DirectoryAdmin)?;
    state
        .store
        .delete_group(GroupId(parse_id(&id, "group")?))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// List a group's members
///
/// The users in the group, sorted by username. Agents and admins.
#[utoipa::path(
    tag = "groups",
    params(("id" = Uuid, Path, description = "Group id")),
    responses(
        (status = 200, description = "Members, by username", body = Page<UserSummary>),
        (status = 404, description = "No such group", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/groups/{id}/members")]
pub async fn list_members(
    state: web::Data<AppState>,
    auth: Auth,
    id: web::Path<String>,
) -> Result<web::Json<Page<UserSummary>>, ApiError> {
    auth.require(Permission::DirectoryRead)?;
    let members = state
        .store
        .group_members(GroupId(parse_id(&id, "group")?))
        .await?;
    Ok(web::Json(Page::all(
        members.into_iter().map(Into::into).collect(),
    )))
}

/// Add a member to a group
///
/// Admins only. Adding an existing member changes nothing.
#[utoipa::path(
    tag = "groups",
    params(("id" = Uuid, Path, description = "Group id"), ("user_id" = Uuid, Path, description = "User id")),
    responses(
        (status = 204, description = "The user is a member"),
        (status = 404, description = "No such group or user", body = Problem, content_type = "application/problem+json"),
    )
)]
#[put("/groups/{id}/members/{user_id}")]
pub async fn add_member(
    state: web::Data<AppState>,
    auth: Auth,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    auth.require(Permission::DirectoryAdmin)?;
    let (g, u) = path.into_inner();
    state
        .store
        .add_member(
            GroupId(parse_id(&g, "group")?),
            UserId(parse_id(&u, "user")?),
        )
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Remove a member from a group
///
/// Admins only. Incidents already assigned to the user stay assigned.
#[utoipa::path(
    tag = "groups",
    params(("id" = Uuid, Path, description = "Group id"), ("user_id" = Uuid, Path, description = "User id")),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "Not a member", body = Problem, content_type = "application/problem+json"),
    )
)]
#[delete("/groups/{id}/members/{user_id}")]
pub async fn remove_member(
    state: web::Data<AppState>,
    auth: Auth,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    auth.require(Permission::DirectoryAdmin)?;
    let (g, u) = path.into_inner();
    state
        .store
        .remove_member(
            GroupId(parse_id(&g, "group")?),
            UserId(parse_id(&u, "user")?),
        )
        .await?;
    Ok(HttpResponse::NoContent().finish())
}
