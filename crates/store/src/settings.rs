//! Instance-wide settings generated once and shared by every node (the JWT
//! signing key when none is configured).

use keel_core::time::now;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, EntityTrait};

use crate::entities::setting;
use crate::{Store, StoreError};

impl Store {
    /// Returns the stored value of `key`, storing `make()` first if there is
    /// none. Safe when several nodes start at once: the first write wins and
    /// everyone reads it back.
    pub async fn setting_or_insert(
        &self,
        key: &str,
        make: impl FnOnce() -> String,
    ) -> Result<String, StoreError> {
        if let Some(s) = setting::Entity::find_by_id(key.to_owned())
            .one(self.conn())
            .await?
        {
            return Ok(s.value);
        }
        setting::Entity::insert(setting::ActiveModel {
            key: Set(key.to_owned()),
            value: Set(make()),
            created_at: Set(now()),
        })
        .on_conflict(
            OnConflict::column(setting::Column::Key)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(self.writer())
        .await?;
        setting::Entity::find_by_id(key.to_owned())
            .one(self.conn())
            .await?
            .map(|s| s.value)
            .ok_or(StoreError::NotFound("setting"))
    }
}
