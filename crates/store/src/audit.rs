//! The append-only audit history. Entries are written with the change they
//! describe, in the same transaction.

use keel_core::time::Timestamp;
use keel_core::{RecordKind, UserId};
use sea_orm::{
    ActiveValue::NotSet, ActiveValue::Set, ConnectionTrait, DatabaseBackend, EntityTrait,
    QueryTrait, Statement,
};
use uuid::Uuid;

use crate::StoreError;
use crate::entities::audit_event;

/// One history entry to write.
pub(crate) struct Entry<'a> {
    pub kind: RecordKind,
    pub record: Uuid,
    pub actor: Option<UserId>,
    pub action: &'a str,
    pub field: Option<&'a str>,
    pub old: Option<String>,
    pub new: Option<String>,
    /// `internal` entries are hidden from requesters.
    pub internal: bool,
    pub at: Timestamp,
}

impl<'a> Entry<'a> {
    /// A public entry of `action` on a record, with no field or values.
    pub fn new(
        kind: RecordKind,
        record: Uuid,
        actor: Option<UserId>,
        action: &'a str,
        at: Timestamp,
    ) -> Self {
        Entry {
            kind,
            record,
            actor,
            action,
            field: None,
            old: None,
            new: None,
            internal: false,
            at,
        }
    }

    /// The field the entry is about.
    pub fn field(mut self, field: impl Into<Option<&'a str>>) -> Self {
        self.field = field.into();
        self
    }

    /// The values before and after.
    pub fn change(mut self, old: Option<String>, new: Option<String>) -> Self {
        self.old = old;
        self.new = new;
        self
    }

    /// Hides the entry from requesters when `internal`.
    pub fn internal(mut self, internal: bool) -> Self {
        self.internal = internal;
        self
    }
}

pub(crate) async fn write<C: ConnectionTrait>(db: &C, e: Entry<'_>) -> Result<(), StoreError> {
    db.execute_raw(statement(db.get_database_backend(), e))
        .await?;
    Ok(())
}

/// The insert that writes `e`, to send with others ([`crate::multi`]).
pub(crate) fn statement(backend: DatabaseBackend, e: Entry<'_>) -> Statement {
    audit_event::Entity::insert(row(e)).build(backend)
}

/// The row [`statement`] inserts.
pub(crate) fn row(e: Entry<'_>) -> audit_event::ActiveModel {
    audit_event::ActiveModel {
        id: NotSet,
        record_type: Set(e.kind.as_str().to_owned()),
        record_id: Set(e.record),
        actor_id: Set(e.actor.map(|a| a.0)),
        action: Set(e.action.to_owned()),
        field: Set(e.field.map(str::to_owned)),
        old_value: Set(e.old),
        new_value: Set(e.new),
        visibility: Set(if e.internal { "internal" } else { "public" }.to_owned()),
        created_at: Set(e.at),
    }
}
