//! Stored responses of creating requests, keyed by the caller and their
//! `Idempotency-Key`, so a retry returns the first answer instead of
//! creating a second record.

use chrono::Duration;
use keel_core::UserId;
use keel_core::time::now;
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};

use crate::entities::idempotency_key;
use crate::{Store, StoreError};

/// How long a key is remembered.
pub const RETENTION_HOURS: i64 = 24;
/// After this long a claim with no stored response is considered abandoned
/// (its request died) and the key may be used again.
pub const CLAIM_LEASE_SECS: i64 = 60;

/// The first response to a key.
#[derive(Debug, Clone)]
pub struct StoredResponse {
    pub status: u16,
    /// `(name, value)` pairs worth replaying (content type, location, etag).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// What claiming a key found.
#[derive(Debug, Clone)]
pub enum Claim {
    /// The key is new: run the request, then [`Store::idempotency_complete`].
    Acquired,
    /// The same request already finished: replay this.
    Replay(StoredResponse),
    /// The same key is in flight in another request.
    InFlight,
    /// The key was used with a different request body.
    Mismatch,
}

impl Store {
    pub async fn idempotency_claim(
        &self,
        user: UserId,
        key: &str,
        request_hash: &str,
    ) -> Result<Claim, StoreError> {
        let t = now();
        let existing = idempotency_key::Entity::find_by_id((user.0, key.to_owned()))
            .one(self.conn())
            .await?;
        if let Some(row) = existing {
            let expired = t - row.created_at > Duration::hours(RETENTION_HOURS);
            let abandoned =
                row.status.is_none() && t - row.created_at > Duration::seconds(CLAIM_LEASE_SECS);
            if !(expired || abandoned) {
                if row.request_hash != request_hash {
                    return Ok(Claim::Mismatch);
                }
                return Ok(match (row.status, row.response_body) {
                    (Some(status), Some(body)) => Claim::Replay(StoredResponse {
                        status: u16::try_from(status).unwrap_or(500),
                        headers: row
                            .response_headers
                            .and_then(|h| serde_json::from_str(&h).ok())
                            .unwrap_or_default(),
                        body,
                    }),
                    _ => Claim::InFlight,
                });
            }
            // Take over an expired or abandoned claim, if nobody else did.
            let res = idempotency_key::Entity::update_many()
                .col_expr(idempotency_key::Column::CreatedAt, Expr::value(t))
                .col_expr(
                    idempotency_key::Column::RequestHash,
                    Expr::value(request_hash),
                )
                .col_expr(
                    idempotency_key::Column::Status,
                    Expr::value(Option::<i32>::None),
                )
                .col_expr(
                    idempotency_key::Column::ResponseBody,
                    Expr::value(Option::<Vec<u8>>::None),
                )
                .filter(idempotency_key::Column::UserId.eq(user.0))
                .filter(idempotency_key::Column::Key.eq(key))
                .filter(idempotency_key::Column::CreatedAt.eq(row.created_at))
                .exec(self.writer())
                .await?;
            return Ok(if res.rows_affected == 1 {
                Claim::Acquired
            } else {
                Claim::InFlight
            });
        }
        let inserted = idempotency_key::Entity::insert(idempotency_key::ActiveModel {
            user_id: Set(user.0),
            key: Set(key.to_owned()),
            request_hash: Set(request_hash.to_owned()),
            status: Set(None),
            response_headers: Set(None),
            response_body: Set(None),
            created_at: Set(t),
        })
        .exec_without_returning(self.writer())
        .await;
        match inserted {
            Ok(_) => Ok(Claim::Acquired),
            Err(e)
                if matches!(
                    e.sql_err(),
                    Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
                ) =>
            {
                Ok(Claim::InFlight)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Stores the response of a claimed key.
    pub async fn idempotency_complete(
        &self,
        user: UserId,
        key: &str,
        response: &StoredResponse,
    ) -> Result<(), StoreError> {
        let headers = serde_json::to_string(&response.headers).unwrap_or_else(|_| "[]".into());
        idempotency_key::Entity::update_many()
            .col_expr(
                idempotency_key::Column::Status,
                Expr::value(i32::from(response.status)),
            )
            .col_expr(
                idempotency_key::Column::ResponseHeaders,
                Expr::value(headers),
            )
            .col_expr(
                idempotency_key::Column::ResponseBody,
                Expr::value(response.body.clone()),
            )
            .filter(idempotency_key::Column::UserId.eq(user.0))
            .filter(idempotency_key::Column::Key.eq(key))
            .exec(self.writer())
            .await?;
        Ok(())
    }

    /// Forgets a claim whose request failed, so the client may retry it.
    pub async fn idempotency_release(&self, user: UserId, key: &str) -> Result<(), StoreError> {
        idempotency_key::Entity::delete_many()
            .filter(idempotency_key::Column::UserId.eq(user.0))
            .filter(idempotency_key::Column::Key.eq(key))
            .filter(idempotency_key::Column::Status.is_null())
            .exec(self.writer())
            .await?;
        Ok(())
    }

    /// Deletes keys older than the retention period; returns how many.
    pub async fn idempotency_purge(&self) -> Result<u64, StoreError> {
        let cutoff = now() - Duration::hours(RETENTION_HOURS);
        let res = idempotency_key::Entity::delete_many()
            .filter(idempotency_key::Column::CreatedAt.lt(cutoff))
            .exec(self.writer())
            .await?;
        Ok(res.rows_affected)
    }
}
