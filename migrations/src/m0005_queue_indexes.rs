//! Indexes for the queues agents and requesters actually open: the triage
//! queue (one state), one group's open work (group and state), one group's,
//! one assignee's or one requester's incidents, all newest first. The
//! earlier `(column, number)` indexes found the rows but left them to be
//! sorted by `created_at`; these walk them in order and stop after one page.
//! With a state in the group index, a group's open work is found without
//! reading its (much longer) closed history.

use sea_orm_migration::prelude::*;

use crate::run_script;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0005_queue_indexes"
    }
}

const UP: &str = r#"
DROP INDEX incidents_state_idx;
DROP INDEX incidents_group_idx;
DROP INDEX incidents_assignee_idx;
DROP INDEX incidents_requester_idx;
CREATE INDEX incidents_state_created_idx ON incidents (state, created_at, number);
CREATE INDEX incidents_group_created_idx ON incidents (assignment_group_id, created_at, number);
CREATE INDEX incidents_group_state_idx ON incidents (assignment_group_id, state, created_at, number);
CREATE INDEX incidents_assignee_created_idx ON incidents (assignee_id, created_at, number);
CREATE INDEX incidents_requester_created_idx ON incidents (requester_id, created_at, number)
"#;

const DOWN: &str = r#"
DROP INDEX incidents_state_created_idx;
DROP INDEX incidents_group_state_idx;
DROP INDEX incidents_group_created_idx;
DROP INDEX incidents_assignee_created_idx;
DROP INDEX incidents_requester_created_idx;
CREATE INDEX incidents_requester_idx ON incidents (requester_id, number);
CREATE INDEX incidents_assignee_idx ON incidents (assignee_id, number);
CREATE INDEX incidents_group_idx ON incidents (assignment_group_id, number);
CREATE INDEX incidents_state_idx ON incidents (state, number)
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
