//! A group's open queue filtered by priority, from the index alone.
//!
//! `(group, state, created_at, number)` found a group's open rows in order,
//! but a priority filter was tested on each row, so a large group's queue
//! (2 600 open rows of one group at 1 000 000 incidents) read every one of
//! them from the table to keep 50. With `priority` as the index's last
//! column the filter and the sort are answered from the index, and only the
//! page's rows are read (`list_incidents` asks for the page's numbers first
//! on SQLite). The order the index gives for one state is unchanged, and
//! the index replaces the old one instead of joining it, so a write still
//! updates one index for it.

use sea_orm_migration::prelude::*;

use crate::run_script;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0006_queue_priority"
    }
}

const UP: &str = r#"
DROP INDEX incidents_group_state_idx;
CREATE INDEX incidents_group_state_idx ON incidents (assignment_group_id, state, created_at, number, priority)
"#;

const DOWN: &str = r#"
DROP INDEX incidents_group_state_idx;
CREATE INDEX incidents_group_state_idx ON incidents (assignment_group_id, state, created_at, number)
"#;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run_script(manager, UP).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run_script(manager, DOWN).await
    }
}
