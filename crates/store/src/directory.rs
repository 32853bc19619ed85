//! Users, their roles, and assignment groups with their members.

use std::collections::HashMap;

use keel_core::people::{EmailAddress, Username};
use keel_core::query::{Cursor, Limit, Sort, SortDir, SortField};
use keel_core::time::{Timestamp, now};
use keel_core::{GroupId, Role, UserId};
use sea_orm::sea_query::{Alias, Expr, ExprTrait, OnConflict, Query, UnionType};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect, QueryTrait, TransactionTrait,
};
use uuid::Uuid;

use crate::entities::{group, group_member, user, user_role};
use crate::error::on_unique;
use crate::notify::GroupKey;
use crate::{Store, StoreError};

/// A short reference to a user, embedded in other records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRef {
    pub id: UserId,
    pub username: String,
    pub display_name: String,
}

/// A short reference to a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRef {
    pub id: GroupId,
    pub name: String,
}

/// What authentication needs to know of a user.
#[derive(Debug, Clone)]
pub struct AuthUser {
    pub username: String,
    pub display_name: String,
    pub active: bool,
    pub roles: Vec<Role>,
}

/// A user with roles and group memberships.
#[derive(Debug, Clone)]
pub struct UserView {
    pub id: UserId,
    pub username: String,
    pub email: String,
    pub display_name: String,
    pub roles: Vec<Role>,
    pub groups: Vec<GroupRef>,
    pub active: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl UserView {
    pub fn as_ref(&self) -> UserRef {
        UserRef {
            id: self.id,
            username: self.username.clone(),
            display_name: self.display_name.clone(),
        }
    }
    pub fn is_agent(&self) -> bool {
        self.roles
            .iter()
            .any(|r| matches!(r, Role::Agent | Role::Admin))
    }
}

/// A user to create; every field already validated.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub username: Username,
    pub email: EmailAddress,
    pub display_name: String,
    pub password_hash: String,
    pub roles: Vec<Role>,
    pub groups: Vec<GroupId>,
}

/// Changes to a user; `None` leaves a field alone.
#[derive(Debug, Clone, Default)]
pub struct UserPatch {
    pub email: Option<EmailAddress>,
    pub display_name: Option<String>,
    pub roles: Option<Vec<Role>>,
    pub active: Option<bool>,
    pub password_hash: Option<String>,
}

/// An assignment group.
#[derive(Debug, Clone)]
pub struct GroupView {
    pub id: GroupId,
    pub name: String,
    pub description: String,
    pub member_count: u64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// Users and groups list by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameSort {
    Name,
}
impl SortField for NameSort {
    const ALL: &'static [Self] = &[NameSort::Name];
    fn name(self) -> &'static str {
        "name"
    }
}

/// One page of a list and the cursor of the next.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

const USER_UNIQUE: &[(&str, &str, &str)] = &[
    (
        "users_username_key|users.username",
        "user.username_taken",
        "that username is taken",
    ),
    (
        "users_email_key|users.email",
        "user.email_taken",
        "that email address is already in use",
    ),
];

async fn roles_of<C: ConnectionTrait>(
    db: &C,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, Vec<Role>>, StoreError> {
    let rows = user_role::Entity::find()
        .filter(user_role::Column::UserId.is_in(ids.iter().copied()))
        .all(db)
        .await?;
    let mut map: HashMap<Uuid, Vec<Role>> = HashMap::new();
    for r in rows {
        if let Ok(role) = r.role.parse::<Role>() {
            map.entry(r.user_id).or_default().push(role);
        }
    }
    for roles in map.values_mut() {
        roles.sort_by_key(|r| Role::ALL.iter().position(|x| x == r));
    }
    Ok(map)
}

async fn groups_of<C: ConnectionTrait>(
    db: &C,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, Vec<GroupRef>>, StoreError> {
    let members = group_member::Entity::find()
        .filter(group_member::Column::UserId.is_in(ids.iter().copied()))
        .all(db)
        .await?;
    let gids: Vec<Uuid> = members.iter().map(|m| m.group_id).collect();
    let groups: HashMap<Uuid, group::Model> = group::Entity::find()
        .filter(group::Column::Id.is_in(gids))
        .all(db)
        .await?
        .into_iter()
        .map(|g| (g.id, g))
        .collect();
    let mut map: HashMap<Uuid, Vec<GroupRef>> = HashMap::new();
    for m in members {
        if let Some(g) = groups.get(&m.group_id) {
            map.entry(m.user_id).or_default().push(GroupRef {
                id: GroupId(g.id),
                name: g.name.clone(),
            });
        }
    }
    for v in map.values_mut() {
        v.sort_by(|a, b| a.name.cmp(&b.name));
    }
    Ok(map)
}

async fn views<C: ConnectionTrait>(
    db: &C,
    models: Vec<user::Model>,
) -> Result<Vec<UserView>, StoreError> {
    let ids: Vec<Uuid> = models.iter().map(|m| m.id).collect();
    let mut roles = roles_of(db, &ids).await?;
    let mut groups = groups_of(db, &ids).await?;
    Ok(models
        .into_iter()
        .map(|m| UserView {
            id: UserId(m.id),
            roles: roles.remove(&m.id).unwrap_or_default(),
            groups: groups.remove(&m.id).unwrap_or_default(),
            username: m.username,
            email: m.email,
            display_name: m.display_name,
            active: m.active,
            created_at: m.created_at,
            updated_at: m.updated_at,
        })
        .collect())
}

/// `id`'s reference from a batch lookup. Users are never deleted (records
/// refer to them), so a miss only shows an id without a name.
pub(crate) fn user_ref(users: &crate::cache::IdMap<UserRef>, id: Uuid) -> UserRef {
    users.get(&id).cloned().unwrap_or(UserRef {
        id: UserId(id),
        username: String::new(),
        display_name: String::new(),
    })
}

pub(crate) async fn user_refs<C: ConnectionTrait>(
    db: &C,
    ids: &[Uuid],
) -> Result<crate::cache::IdMap<UserRef>, StoreError> {
    if ids.is_empty() {
        return Ok(Default::default());
    }
    Ok(user::Entity::find()
        .filter(user::Column::Id.is_in(ids.iter().copied()))
        .all(db)
        .await?
        .into_iter()
        .map(|m| {
            (
                m.id,
                UserRef {
                    id: UserId(m.id),
                    username: m.username,
                    display_name: m.display_name,
                },
            )
        })
        .collect())
}

/// The names of `users` and `groups`, in one statement (a `UNION ALL` of
/// the two lookups): what a page of records shows beside its ids.
pub(crate) async fn refs_of(
    db: &sea_orm::DatabaseConnection,
    users: &[Uuid],
    groups: &[Uuid],
) -> Result<crate::cache::Refs, StoreError> {
    // Literal tags, not parameters: PostgreSQL cannot type an untyped
    // parameter in a union's column.
    let part = |table: Alias, name: &str, second: &str, tag: &'static str, ids: &[Uuid]| {
        Query::select()
            .column((table.clone(), Alias::new("id")))
            .expr_as(
                Expr::col((table.clone(), Alias::new(name))),
                Alias::new("a"),
            )
            .expr_as(
                Expr::col((table.clone(), Alias::new(second))),
                Alias::new("b"),
            )
            .expr_as(Expr::cust(tag), Alias::new("tag"))
            .from(table.clone())
            .and_where(Expr::col((table, Alias::new("id"))).is_in(ids.iter().copied()))
            .to_owned()
    };
    let mut parts = Vec::new();
    if !users.is_empty() {
        parts.push(part(
            Alias::new("users"),
            "username",
            "display_name",
            "0",
            users,
        ));
    }
    if !groups.is_empty() {
        parts.push(part(
            Alias::new("assignment_groups"),
            "name",
            "name",
            "1",
            groups,
        ));
    }
    let mut out: crate::cache::Refs = Default::default();
    let Some(mut q) = parts.pop() else {
        return Ok(out);
    };
    for p in parts {
        q.union(UnionType::All, p);
    }
    for row in crate::rows::fetch_all(db, db.get_database_backend().build(&q)).await? {
        let id: Uuid = row.try_get("", "id")?;
        let a: String = row.try_get("", "a")?;
        let tag: i32 = row.try_get("", "tag")?;
        if tag == 0 {
            let display_name: String = row.try_get("", "b")?;
            out.0.insert(
                id,
                UserRef {
                    id: UserId(id),
                    username: a,
                    display_name,
                },
            );
        } else {
            out.1.insert(
                id,
                GroupRef {
                    id: GroupId(id),
                    name: a,
                },
            );
        }
    }
    Ok(out)
}

pub(crate) async fn group_refs<C: ConnectionTrait>(
    db: &C,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, GroupRef>, StoreError> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    Ok(group::Entity::find()
        .filter(group::Column::Id.is_in(ids.iter().copied()))
        .all(db)
        .await?
        .into_iter()
        .map(|g| {
            (
                g.id,
                GroupRef {
                    id: GroupId(g.id),
                    name: g.name,
                },
            )
        })
        .collect())
}

impl Store {
    /// Creates a user with roles and group memberships in one transaction.
    pub async fn create_user(&self, new: NewUser) -> Result<UserView, StoreError> {
        let txn = self.writer().begin().await?;
        let id = UserId::new();
        let t = now();
        let model = user::ActiveModel {
            id: Set(id.0),
            username: Set(new.username.as_str().to_owned()),
            email: Set(new.email.as_str().to_owned()),
            display_name: Set(new.display_name),
            password_hash: Set(new.password_hash),
            active: Set(true),
            created_at: Set(t),
            updated_at: Set(t),
        };
        user::Entity::insert(model)
            .exec_without_returning(&txn)
            .await
            .map_err(|e| on_unique(e, USER_UNIQUE))?;
        set_roles(&txn, id, &new.roles).await?;
        for g in new.groups {
            add_member_in(&txn, g, id).await?;
        }
        txn.commit().await?;
        self.cache.audiences.clear();
        self.get_user(id).await
    }

    pub async fn get_user(&self, id: UserId) -> Result<UserView, StoreError> {
        let m = user::Entity::find_by_id(id.0)
            .one(self.conn())
            .await?
            .ok_or(StoreError::NotFound("user"))?;
        views(self.conn(), vec![m])
            .await?
            .pop()
            .ok_or(StoreError::NotFound("user"))
    }

    /// What authentication needs of a user: names, active flag and roles
    /// (two small queries, not the full view).
    pub async fn user_for_auth(&self, id: UserId) -> Result<Option<AuthUser>, StoreError> {
        let Some(m) = user::Entity::find_by_id(id.0).one(self.conn()).await? else {
            return Ok(None);
        };
        let roles = roles_of(self.conn(), &[m.id])
            .await?
            .remove(&m.id)
            .unwrap_or_default();
        Ok(Some(AuthUser {
            username: m.username,
            display_name: m.display_name,
            active: m.active,
            roles,
        }))
    }

    /// Finds a user by id (a UUID) or username.
    pub async fn resolve_user(&self, key: &str) -> Result<Option<UserView>, StoreError> {
        let q = user::Entity::find();
        let q = match Uuid::parse_str(key) {
            Ok(id) => q.filter(user::Column::Id.eq(id)),
            Err(_) => q.filter(user::Column::Username.eq(key.trim().to_lowercase())),
        };
        match q.one(self.conn()).await? {
            Some(m) => Ok(views(self.conn(), vec![m]).await?.pop()),
            None => Ok(None),
        }
    }

    /// The user and password hash for a login name (username or email).
    pub async fn find_login(&self, login: &str) -> Result<Option<(UserView, String)>, StoreError> {
        let login = login.trim().to_lowercase();
        let col = if login.contains('@') {
            user::Column::Email
        } else {
            user::Column::Username
        };
        let Some(m) = user::Entity::find()
            .filter(col.eq(login))
            .one(self.conn())
            .await?
        else {
            return Ok(None);
        };
        let hash = m.password_hash.clone();
        Ok(views(self.conn(), vec![m]).await?.pop().map(|v| (v, hash)))
    }

    pub async fn list_users(
        &self,
        role: Option<Role>,
        limit: Limit,
        cursor: Option<&str>,
    ) -> Result<Page<UserView>, StoreError> {
        let sort = Sort {
            field: NameSort::Name,
            dir: SortDir::Asc,
        };
        let mut q = user::Entity::find().order_by_asc(user::Column::Username);
        if let Some(c) = cursor {
            let c = Cursor::decode(c, sort)?;
            let last = c
                .value
                .as_str()
                .ok_or(keel_core::query::QueryError::InvalidCursor)?;
            q = q.filter(user::Column::Username.gt(last.to_owned()));
        }
        if let Some(r) = role {
            let sub = user_role::Entity::find()
                .select_only()
                .column(user_role::Column::UserId)
                .filter(user_role::Column::Role.eq(r.as_str()))
                .into_query();
            q = q.filter(user::Column::Id.in_subquery(sub));
        }
        let mut rows = q.limit(u64::from(limit.get()) + 1).all(self.conn()).await?;
        let next = page_next(&mut rows, limit, |m| Cursor {
            sort: "name".into(),
            dir: SortDir::Asc,
            value: m.username.clone().into(),
            tiebreak: serde_json::Value::Null,
        });
        Ok(Page {
            items: views(self.conn(), rows).await?,
            next,
        })
    }

    pub async fn update_user(&self, id: UserId, patch: UserPatch) -> Result<UserView, StoreError> {
        // Read before the transaction: on SQLite a transaction that reads
        // and then writes may be refused its write lock under load.
        let current = user::Entity::find_by_id(id.0)
            .one(self.conn())
            .await?
            .ok_or(StoreError::NotFound("user"))?;
        let txn = self.writer().begin().await?;
        let mut am: user::ActiveModel = current.into();
        if let Some(e) = patch.email {
            am.email = Set(e.as_str().to_owned());
        }
        if let Some(d) = patch.display_name {
            am.display_name = Set(d);
        }
        if let Some(a) = patch.active {
            am.active = Set(a);
        }
        if let Some(h) = patch.password_hash {
            am.password_hash = Set(h);
        }
        am.updated_at = Set(now());
        user::Entity::update(am)
            .exec(&txn)
            .await
            .map_err(|e| on_unique(e, USER_UNIQUE))?;
        if let Some(roles) = patch.roles {
            user_role::Entity::delete_many()
                .filter(user_role::Column::UserId.eq(id.0))
                .exec(&txn)
                .await?;
            set_roles(&txn, id, &roles).await?;
        }
        txn.commit().await?;
        self.cache.names.clear();
        self.cache.audiences.clear();
        self.get_user(id).await
    }

    /// Whether any active user holds the admin role.
    pub async fn any_admin(&self) -> Result<bool, StoreError> {
        let n = user_role::Entity::find()
            .filter(user_role::Column::Role.eq(Role::Admin.as_str()))
            .count(self.conn())
            .await?;
        Ok(n > 0)
    }

    pub async fn create_group(
        &self,
        name: &str,
        description: &str,
    ) -> Result<GroupView, StoreError> {
        let t = now();
        let id = GroupId::new();
        group::Entity::insert(group::ActiveModel {
            id: Set(id.0),
            name: Set(name.to_owned()),
            description: Set(description.to_owned()),
            created_at: Set(t),
            updated_at: Set(t),
        })
        .exec_without_returning(self.writer())
        .await
        .map_err(|e| on_unique(e, GROUP_UNIQUE))?;
        self.cache.audiences.clear();
        self.get_group(id).await
    }

    pub async fn get_group(&self, id: GroupId) -> Result<GroupView, StoreError> {
        let g = group::Entity::find_by_id(id.0)
            .one(self.conn())
            .await?
            .ok_or(StoreError::NotFound("group"))?;
        let member_count = group_member::Entity::find()
            .filter(group_member::Column::GroupId.eq(id.0))
            .count(self.conn())
            .await?;
        Ok(group_view(g, member_count))
    }

    /// Finds a group by id (a UUID) or exact name: its id and name only.
    pub(crate) async fn resolve_group_ref(
        &self,
        key: &str,
    ) -> Result<Option<GroupRef>, StoreError> {
        let q = group::Entity::find()
            .select_only()
            .column(group::Column::Id)
            .column(group::Column::Name)
            .filter(GroupKey::parse(key).condition());
        Ok(q.into_tuple::<(Uuid, String)>()
            .one(self.conn())
            .await?
            .map(|(id, name)| GroupRef {
                id: GroupId(id),
                name,
            }))
    }

    /// Finds a group by id (a UUID) or exact name.
    pub async fn resolve_group(&self, key: &str) -> Result<Option<GroupView>, StoreError> {
        let q = group::Entity::find();
        let q = match Uuid::parse_str(key) {
            Ok(id) => q.filter(group::Column::Id.eq(id)),
            Err(_) => q.filter(group::Column::Name.eq(key.trim())),
        };
        match q.one(self.conn()).await? {
            Some(g) => self.get_group(GroupId(g.id)).await.map(Some),
            None => Ok(None),
        }
    }

    pub async fn list_groups(
        &self,
        limit: Limit,
        cursor: Option<&str>,
    ) -> Result<Page<GroupView>, StoreError> {
        let sort = Sort {
            field: NameSort::Name,
            dir: SortDir::Asc,
        };
        let mut q = group::Entity::find().order_by_asc(group::Column::Name);
        if let Some(c) = cursor {
            let c = Cursor::decode(c, sort)?;
            let last = c
                .value
                .as_str()
                .ok_or(keel_core::query::QueryError::InvalidCursor)?;
            q = q.filter(group::Column::Name.gt(last.to_owned()));
        }
        let mut rows = q.limit(u64::from(limit.get()) + 1).all(self.conn()).await?;
        let next = page_next(&mut rows, limit, |g| Cursor {
            sort: "name".into(),
            dir: SortDir::Asc,
            value: g.name.clone().into(),
            tiebreak: serde_json::Value::Null,
        });
        let ids: Vec<Uuid> = rows.iter().map(|g| g.id).collect();
        let members = group_member::Entity::find()
            .filter(group_member::Column::GroupId.is_in(ids))
            .all(self.conn())
            .await?;
        let mut counts: HashMap<Uuid, u64> = HashMap::new();
        for m in members {
            *counts.entry(m.group_id).or_default() += 1;
        }
        let items = rows
            .into_iter()
            .map(|g| {
                let n = counts.get(&g.id).copied().unwrap_or(0);
                group_view(g, n)
            })
            .collect();
        Ok(Page { items, next })
    }

    pub async fn update_group(
        &self,
        id: GroupId,
        name: Option<&str>,
        description: Option<&str>,
    ) -> Result<GroupView, StoreError> {
        let g = group::Entity::find_by_id(id.0)
            .one(self.conn())
            .await?
            .ok_or(StoreError::NotFound("group"))?;
        let mut am: group::ActiveModel = g.into();
        if let Some(n) = name {
            am.name = Set(n.to_owned());
        }
        if let Some(d) = description {
            am.description = Set(d.to_owned());
        }
        am.updated_at = Set(now());
        group::Entity::update(am)
            .exec(self.writer())
            .await
            .map_err(|e| on_unique(e, GROUP_UNIQUE))?;
        self.cache.names.clear();
        self.cache.audiences.clear();
        self.get_group(id).await
    }

    /// Deletes a group that no incident refers to.
    pub async fn delete_group(&self, id: GroupId) -> Result<(), StoreError> {
        let res = group::Entity::delete_by_id(id.0)
            .exec(self.writer())
            .await
            .map_err(|e| {
                if matches!(
                    e.sql_err(),
                    Some(sea_orm::SqlErr::ForeignKeyConstraintViolation(_))
                ) {
                    StoreError::conflict("group.in_use", "records are still assigned to this group")
                } else {
                    StoreError::from(e)
                }
            })?;
        self.cache.audiences.clear();
        if res.rows_affected == 0 {
            return Err(StoreError::NotFound("group"));
        }
        Ok(())
    }

    pub async fn add_member(&self, group: GroupId, user: UserId) -> Result<(), StoreError> {
        self.get_group(group).await?;
        self.get_user(user).await?;
        add_member_in(self.writer(), group, user).await?;
        self.cache.audiences.clear();
        Ok(())
    }

    pub async fn remove_member(&self, group: GroupId, user: UserId) -> Result<(), StoreError> {
        let res = group_member::Entity::delete_many()
            .filter(group_member::Column::GroupId.eq(group.0))
            .filter(group_member::Column::UserId.eq(user.0))
            .exec(self.writer())
            .await?;
        self.cache.audiences.clear();
        if res.rows_affected == 0 {
            return Err(StoreError::NotFound("group member"));
        }
        Ok(())
    }

    pub async fn group_members(&self, group: GroupId) -> Result<Vec<UserRef>, StoreError> {
        self.get_group(group).await?;
        let ids: Vec<Uuid> = group_member::Entity::find()
            .filter(group_member::Column::GroupId.eq(group.0))
            .all(self.conn())
            .await?
            .into_iter()
            .map(|m| m.user_id)
            .collect();
        let mut refs: Vec<UserRef> = user_refs(self.conn(), &ids).await?.into_values().collect();
        refs.sort_by(|a, b| a.username.cmp(&b.username));
        Ok(refs)
    }

    pub async fn is_member(&self, group: GroupId, user: UserId) -> Result<bool, StoreError> {
        is_member_in(self.conn(), group, user).await
    }
}

pub(crate) async fn is_member_in<C: ConnectionTrait>(
    db: &C,
    group: GroupId,
    user: UserId,
) -> Result<bool, StoreError> {
    let n = group_member::Entity::find()
        .filter(group_member::Column::GroupId.eq(group.0))
        .filter(group_member::Column::UserId.eq(user.0))
        .count(db)
        .await?;
    Ok(n > 0)
}

const GROUP_UNIQUE: &[(&str, &str, &str)] = &[(
    "assignment_groups_name_key|assignment_groups.name",
    "group.name_taken",
    "a group with that name exists",
)];

fn group_view(g: group::Model, member_count: u64) -> GroupView {
    GroupView {
        id: GroupId(g.id),
        name: g.name,
        description: g.description,
        member_count,
        created_at: g.created_at,
        updated_at: g.updated_at,
    }
}

async fn set_roles<C: ConnectionTrait>(
    db: &C,
    id: UserId,
    roles: &[Role],
) -> Result<(), StoreError> {
    let mut roles = roles.to_vec();
    roles.dedup();
    for r in roles {
        user_role::Entity::insert(user_role::ActiveModel {
            user_id: Set(id.0),
            role: Set(r.as_str().to_owned()),
        })
        .on_conflict(
            OnConflict::columns([user_role::Column::UserId, user_role::Column::Role])
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    }
    Ok(())
}

async fn add_member_in<C: ConnectionTrait>(
    db: &C,
    group: GroupId,
    user: UserId,
) -> Result<(), StoreError> {
    group_member::Entity::insert(group_member::ActiveModel {
        group_id: Set(group.0),
        user_id: Set(user.0),
    })
    .on_conflict(
        OnConflict::columns([group_member::Column::GroupId, group_member::Column::UserId])
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(db)
    .await
    .map_err(|e| {
        if matches!(
            e.sql_err(),
            Some(sea_orm::SqlErr::ForeignKeyConstraintViolation(_))
        ) {
            StoreError::NotFound("group")
        } else {
            StoreError::from(e)
        }
    })?;
    Ok(())
}

/// Trims the extra row fetched to detect a next page and makes its cursor.
pub(crate) fn page_next<T>(
    rows: &mut Vec<T>,
    limit: Limit,
    cursor: impl Fn(&T) -> Cursor,
) -> Option<String> {
    let n = limit.get() as usize;
    if rows.len() > n {
        rows.truncate(n);
        rows.last().map(|r| cursor(r).encode())
    } else {
        None
    }
}
