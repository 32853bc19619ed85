//! Login sessions with rotating refresh tokens, and integrators' API tokens.
//! Only hashes of secrets are stored.

use chrono::Duration;
use keel_core::time::{Timestamp, now};
use keel_core::{ApiTokenId, Scope, SessionId, UserId};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, TransactionTrait,
};

use crate::entities::{api_token, refresh_token, session};
use crate::{Store, StoreError};

/// What presenting a refresh token led to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refresh {
    /// The token was current: it is now used, and the session continues.
    Rotated { session: SessionId, user: UserId },
    /// Unknown, expired, or its session was revoked.
    Invalid,
    /// The token had already been used: someone replayed it, so the whole
    /// session (every token of the family) has been revoked.
    Reused,
}

/// A stored API token (never its secret).
#[derive(Debug, Clone)]
pub struct ApiTokenView {
    pub id: ApiTokenId,
    pub user_id: UserId,
    pub name: String,
    pub prefix: String,
    pub scopes: Vec<Scope>,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
    pub last_used_at: Option<Timestamp>,
}

fn token_view(m: api_token::Model) -> ApiTokenView {
    ApiTokenView {
        id: ApiTokenId(m.id),
        user_id: UserId(m.user_id),
        scopes: m.scopes.split(',').filter_map(|s| s.parse().ok()).collect(),
        name: m.name,
        prefix: m.prefix,
        created_at: m.created_at,
        expires_at: m.expires_at,
        revoked_at: m.revoked_at,
        last_used_at: m.last_used_at,
    }
}

impl Store {
    /// Starts a session for `user` with its first refresh token.
    pub async fn create_session(
        &self,
        user: UserId,
        refresh_hash: &str,
        ttl: Duration,
    ) -> Result<SessionId, StoreError> {
        let txn = self.writer().begin().await?;
        let id = SessionId::new();
        let t = now();
        session::Entity::insert(session::ActiveModel {
            id: Set(id.0),
            user_id: Set(user.0),
            created_at: Set(t),
            expires_at: Set(t + ttl),
            revoked_at: Set(None),
        })
        .exec_without_returning(&txn)
        .await?;
        insert_refresh(&txn, id, refresh_hash, t + ttl).await?;
        txn.commit().await?;
        Ok(id)
    }

    /// Exchanges a refresh token for its successor (`new_hash`).
    pub async fn rotate_refresh(
        &self,
        old_hash: &str,
        new_hash: &str,
    ) -> Result<Refresh, StoreError> {
        let t = now();
        let txn = self.writer().begin().await?;
        // Write first: marking the token used is what decides a race between
        // two refreshes with one token (the loser is a replay), and on SQLite
        // a transaction that starts with a write never has to upgrade a lock.
        let marked = refresh_token::Entity::update_many()
            .col_expr(refresh_token::Column::UsedAt, Expr::value(t))
            .filter(refresh_token::Column::TokenHash.eq(old_hash))
            .filter(refresh_token::Column::UsedAt.is_null())
            .filter(refresh_token::Column::ExpiresAt.gt(t))
            .exec(&txn)
            .await?;
        let Some(tok) = refresh_token::Entity::find_by_id(old_hash.to_owned())
            .one(&txn)
            .await?
        else {
            return Ok(Refresh::Invalid);
        };
        if marked.rows_affected == 0 {
            drop(txn);
            if tok.used_at.is_some() {
                self.revoke_session(SessionId(tok.session_id)).await?;
                return Ok(Refresh::Reused);
            }
            return Ok(Refresh::Invalid);
        }
        let Some(sess) = session::Entity::find_by_id(tok.session_id)
            .one(&txn)
            .await?
        else {
            return Ok(Refresh::Invalid);
        };
        if sess.revoked_at.is_some() || sess.expires_at <= t {
            return Ok(Refresh::Invalid);
        }
        insert_refresh(&txn, SessionId(sess.id), new_hash, sess.expires_at).await?;
        txn.commit().await?;
        Ok(Refresh::Rotated {
            session: SessionId(sess.id),
            user: UserId(sess.user_id),
        })
    }

    /// The session a refresh token belongs to, if any.
    pub async fn session_of_refresh(&self, hash: &str) -> Result<Option<SessionId>, StoreError> {
        Ok(refresh_token::Entity::find_by_id(hash.to_owned())
            .one(self.conn())
            .await?
            .map(|t| SessionId(t.session_id)))
    }

    pub async fn revoke_session(&self, id: SessionId) -> Result<(), StoreError> {
        session::Entity::update_many()
            .col_expr(session::Column::RevokedAt, Expr::value(now()))
            .filter(session::Column::Id.eq(id.0))
            .filter(session::Column::RevokedAt.is_null())
            .exec(self.writer())
            .await?;
        Ok(())
    }

    /// Whether `id` is a live session of `user`.
    pub async fn session_active(&self, id: SessionId, user: UserId) -> Result<bool, StoreError> {
        let s = session::Entity::find_by_id(id.0).one(self.conn()).await?;
        Ok(
            s.is_some_and(|s| {
                s.user_id == user.0 && s.revoked_at.is_none() && s.expires_at > now()
            }),
        )
    }

    pub async fn create_api_token(
        &self,
        user: UserId,
        name: &str,
        prefix: &str,
        hash: &str,
        scopes: &[Scope],
        expires_at: Option<Timestamp>,
    ) -> Result<ApiTokenView, StoreError> {
        let id = ApiTokenId::new();
        let scopes: Vec<&str> = scopes.iter().map(|s| s.as_str()).collect();
        let m = api_token::ActiveModel {
            id: Set(id.0),
            user_id: Set(user.0),
            name: Set(name.to_owned()),
            prefix: Set(prefix.to_owned()),
            token_hash: Set(hash.to_owned()),
            scopes: Set(scopes.join(",")),
            created_at: Set(now()),
            expires_at: Set(expires_at),
            revoked_at: Set(None),
            last_used_at: Set(None),
        };
        api_token::Entity::insert(m)
            .exec_without_returning(self.writer())
            .await?;
        let m = api_token::Entity::find_by_id(id.0)
            .one(self.conn())
            .await?
            .ok_or(StoreError::NotFound("api token"))?;
        Ok(token_view(m))
    }

    pub async fn list_api_tokens(&self, user: UserId) -> Result<Vec<ApiTokenView>, StoreError> {
        Ok(api_token::Entity::find()
            .filter(api_token::Column::UserId.eq(user.0))
            .order_by_desc(api_token::Column::CreatedAt)
            .all(self.conn())
            .await?
            .into_iter()
            .map(token_view)
            .collect())
    }

    /// Revokes one of `user`'s tokens. Unknown or foreign ids are not found.
    pub async fn revoke_api_token(&self, user: UserId, id: ApiTokenId) -> Result<(), StoreError> {
        let res = api_token::Entity::update_many()
            .col_expr(api_token::Column::RevokedAt, Expr::value(now()))
            .filter(api_token::Column::Id.eq(id.0))
            .filter(api_token::Column::UserId.eq(user.0))
            .filter(api_token::Column::RevokedAt.is_null())
            .exec(self.writer())
            .await?;
        if res.rows_affected == 0 {
            return Err(StoreError::NotFound("api token"));
        }
        Ok(())
    }

    /// A live (unrevoked, unexpired) token by the hash of its secret. Records
    /// its use at most once a minute, to keep reads from becoming writes.
    pub async fn find_api_token(&self, hash: &str) -> Result<Option<ApiTokenView>, StoreError> {
        let t = now();
        let Some(m) = api_token::Entity::find()
            .filter(api_token::Column::TokenHash.eq(hash))
            .one(self.conn())
            .await?
        else {
            return Ok(None);
        };
        if m.revoked_at.is_some() || m.expires_at.is_some_and(|e| e <= t) {
            return Ok(None);
        }
        if m.last_used_at.is_none_or(|u| t - u > Duration::minutes(1)) {
            api_token::Entity::update_many()
                .col_expr(api_token::Column::LastUsedAt, Expr::value(t))
                .filter(api_token::Column::Id.eq(m.id))
                .exec(self.writer())
                .await?;
        }
        Ok(Some(token_view(m)))
    }
}

async fn insert_refresh<C: sea_orm::ConnectionTrait>(
    db: &C,
    session: SessionId,
    hash: &str,
    expires_at: Timestamp,
) -> Result<(), StoreError> {
    refresh_token::Entity::insert(refresh_token::ActiveModel {
        token_hash: Set(hash.to_owned()),
        session_id: Set(session.0),
        created_at: Set(now()),
        expires_at: Set(expires_at),
        used_at: Set(None),
    })
    .exec_without_returning(db)
    .await?;
    Ok(())
}
