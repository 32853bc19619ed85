//! Incident use cases. Each runs in one transaction: it checks what the
//! caller may see and do, applies the rules of `keel_incident`, writes the
//! record, its audit entries and its search row, and commits them together.

use std::collections::{HashMap, HashSet, VecDeque};

use keel_core::query::{Cursor, Limit, QueryError, Sort, SortDir, SortField};
use keel_core::time::{Timestamp, now};
use keel_core::{
    Actor, AttachmentId, CommentId, ErrorClass, GroupId, IncidentId, LinkId, Permission,
    RecordKind, RecordNumber, UserId,
};
use keel_incident::{
    Action, ActorRelation, CommentBody, Description, HoldReason, Impact, Priority, PriorityMatrix,
    ResolutionCode, State, Title, TransitionInput, Urgency, Visibility,
};
use sea_orm::sea_query::{Alias, Condition, Expr, ExprTrait, JoinType, Query, SimpleExpr};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseBackend,
    DatabaseTransaction, EntityTrait, IdenStatic, IntoSimpleExpr, Iterable, QueryFilter,
    QueryOrder, QueryResult, QuerySelect, QueryTrait, Statement, TransactionTrait, Value,
};
use uuid::Uuid;

use crate::audit::{self, Entry};
use crate::batch;
use crate::cache::{IdMap, WriteConfig};
use crate::directory::{
    GroupRef, Page, UserRef, is_member_in, page_next, refs_of, user_ref, user_refs,
};
use crate::entities::{attachment, audit_event, comment, incident, link, sla_timer, watcher};
use crate::multi::{Insert, Writes};
use crate::notify::{self, Audience, Event, GroupKey};
use crate::rows::{self, Positions};
use crate::search::{self, stmt};
use crate::sla::{self, SlaTimerView, SyncEvent};
use crate::webhooks;
use crate::{Store, StoreError};

mod kept_pages;

use kept_pages::{Arg, Bind, PageArgs, PageShape};

const KIND: RecordKind = RecordKind::Incident;

/// An incident as a caller sees it.
#[derive(Debug, Clone)]
pub struct IncidentView {
    pub id: IncidentId,
    pub number: RecordNumber,
    pub title: String,
    pub description: String,
    pub impact: u8,
    pub urgency: u8,
    pub priority: u8,
    pub priority_overridden: bool,
    pub category: Option<String>,
    pub major: bool,
    pub state: State,
    pub hold_reason: Option<HoldReason>,
    pub resolution_code: Option<ResolutionCode>,
    pub resolution_notes: Option<String>,
    pub requester: UserRef,
    pub assignment_group: Option<GroupRef>,
    pub assignee: Option<UserRef>,
    pub reassignment_count: i32,
    pub version: i64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub first_response_at: Option<Timestamp>,
    pub resolved_at: Option<Timestamp>,
    pub closed_at: Option<Timestamp>,
    pub cancelled_at: Option<Timestamp>,
    /// What the caller may do next.
    pub actions: Vec<Action>,
    /// SLA targets, as of now.
    pub sla: Vec<crate::sla::SlaTimerView>,
}

/// A new incident; text already validated.
#[derive(Debug, Clone)]
pub struct NewIncident {
    pub title: Title,
    pub description: Description,
    pub impact: Impact,
    pub urgency: Urgency,
    /// An agent's override of the computed priority.
    pub priority: Option<Priority>,
    pub category: Option<String>,
    pub major: bool,
    /// User id or username; the caller when absent.
    pub requester: Option<String>,
    /// Group id or name.
    pub assignment_group: Option<String>,
    /// User id or username.
    pub assignee: Option<String>,
}

/// Field changes; `None` leaves a field alone, `Some(None)` clears it.
#[derive(Debug, Clone, Default)]
pub struct IncidentPatch {
    pub title: Option<Title>,
    pub description: Option<Description>,
    pub impact: Option<Impact>,
    pub urgency: Option<Urgency>,
    /// `Some(Some(p))` overrides, `Some(None)` returns to the matrix.
    pub priority: Option<Option<Priority>>,
    pub category: Option<Option<String>>,
    pub major: Option<bool>,
    pub assignment_group: Option<Option<String>>,
    pub assignee: Option<Option<String>>,
}

/// A transition request.
#[derive(Debug, Clone)]
pub struct TransitionRequest {
    pub action: Action,
    pub hold_reason: Option<HoldReason>,
    pub resolution_code: Option<ResolutionCode>,
    pub resolution_notes: Option<String>,
}

/// A comment or work note.
#[derive(Debug, Clone)]
pub struct CommentView {
    pub id: CommentId,
    pub author: UserRef,
    pub body: String,
    pub visibility: Visibility,
    pub created_at: Timestamp,
}

/// Attachment metadata (the bytes live in the data directory).
#[derive(Debug, Clone)]
pub struct AttachmentView {
    pub id: AttachmentId,
    pub filename: String,
    pub content_type: String,
    pub size_bytes: i64,
    pub sha256: String,
    pub uploaded_by: UserRef,
    pub created_at: Timestamp,
}

/// A stored attachment about to be recorded.
#[derive(Debug, Clone)]
pub struct NewAttachment {
    pub id: AttachmentId,
    pub filename: String,
    pub content_type: String,
    pub size_bytes: i64,
    pub sha256: String,
}

/// How two incidents are related, seen from one of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkKind {
    /// The other incident is this one's parent.
    Parent,
    /// The other incident is a child of this one.
    Child,
    /// This incident duplicates the other.
    DuplicateOf,
    /// The other incident duplicates this one.
    DuplicatedBy,
}

impl LinkKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LinkKind::Parent => "parent",
            LinkKind::Child => "child",
            LinkKind::DuplicateOf => "duplicate_of",
            LinkKind::DuplicatedBy => "duplicated_by",
        }
    }
}

/// Another incident, briefly.
#[derive(Debug, Clone)]
pub struct IncidentRef {
    pub id: IncidentId,
    pub number: RecordNumber,
    pub title: String,
    pub state: State,
}

#[derive(Debug, Clone)]
pub struct LinkView {
    pub id: LinkId,
    pub kind: LinkKind,
    pub incident: IncidentRef,
    pub created_at: Timestamp,
}

/// One audit history entry.
#[derive(Debug, Clone)]
pub struct HistoryEntry {
    pub id: i64,
    pub actor: Option<UserRef>,
    pub action: String,
    pub field: Option<String>,
    pub old_value: Option<String>,
    pub new_value: Option<String>,
    pub created_at: Timestamp,
}

/// List filters; every one optional, all combined with AND.
#[derive(Debug, Clone, Default)]
pub struct IncidentFilter {
    pub states: Vec<State>,
    pub priorities: Vec<u8>,
    /// A user id, or `None` inside for "unassigned".
    pub assignee: Option<Option<UserId>>,
    pub group: Option<Option<GroupId>>,
    pub requester: Option<UserId>,
    pub major: Option<bool>,
    pub created_after: Option<Timestamp>,
    pub created_before: Option<Timestamp>,
    pub updated_after: Option<Timestamp>,
    pub updated_before: Option<Timestamp>,
    /// Full-text terms (see `keel_core::query::search_terms`).
    pub terms: Vec<String>,
    /// SLA conditions (`sla_state`, `sla_due_before`).
    pub sla: Vec<crate::sla::SlaFilter>,
}

impl IncidentFilter {
    /// Whether full-text terms are the only condition.
    fn terms_only(&self) -> bool {
        let IncidentFilter {
            states,
            priorities,
            assignee,
            group,
            requester,
            major,
            created_after,
            created_before,
            updated_after,
            updated_before,
            terms: _,
            sla,
        } = self;
        states.is_empty()
            && priorities.is_empty()
            && assignee.is_none()
            && group.is_none()
            && requester.is_none()
            && major.is_none()
            && created_after.is_none()
            && created_before.is_none()
            && updated_after.is_none()
            && updated_before.is_none()
            && sla.is_empty()
    }
}

/// Fields incidents sort by; ties break on the number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IncidentSort {
    CreatedAt,
    UpdatedAt,
    Priority,
    Number,
}

impl SortField for IncidentSort {
    const ALL: &'static [Self] = &[
        IncidentSort::CreatedAt,
        IncidentSort::UpdatedAt,
        IncidentSort::Priority,
        IncidentSort::Number,
    ];
    fn name(self) -> &'static str {
        match self {
            IncidentSort::CreatedAt => "created_at",
            IncidentSort::UpdatedAt => "updated_at",
            IncidentSort::Priority => "priority",
            IncidentSort::Number => "number",
        }
    }
}

/// Which incidents a caller may read.
enum Reach {
    All,
    Own(UserId),
}

fn reach(actor: &Actor) -> Result<Reach, StoreError> {
    if actor.can(Permission::IncidentReadAll) {
        Ok(Reach::All)
    } else if actor.can(Permission::IncidentReadOwn) {
        Ok(Reach::Own(actor.user_id))
    } else {
        Err(StoreError::forbidden(
            "auth.insufficient_scope",
            "this credential may not read incidents",
        ))
    }
}

fn is_agent(actor: &Actor) -> bool {
    actor.can(Permission::IncidentWork)
}

fn require_write(actor: &Actor) -> Result<(), StoreError> {
    if actor.can(Permission::IncidentCreate) || actor.can(Permission::IncidentWork) {
        Ok(())
    } else {
        Err(StoreError::forbidden(
            "auth.insufficient_scope",
            "this credential may not change incidents",
        ))
    }
}

fn relation(actor: &Actor, m: &incident::Model) -> ActorRelation {
    if is_agent(actor) {
        ActorRelation::Agent
    } else if m.requester_id == actor.user_id.0 && actor.can(Permission::IncidentCreate) {
        ActorRelation::Requester
    } else {
        ActorRelation::Other
    }
}

fn field_forbidden(field: &'static str) -> StoreError {
    StoreError::rule(
        "incident.field_forbidden",
        ErrorClass::Forbidden,
        Some(field),
        format!("only agents may set `{field}`"),
    )
}

fn parse_state(s: &str) -> State {
    s.parse().unwrap_or(State::New)
}

/// Condition limiting incidents to those the caller may read.
fn reach_condition(reach: &Reach) -> Condition {
    match reach {
        Reach::All => Condition::all(),
        Reach::Own(user) => own_condition(user.0.into(), user.0.into()),
    }
}

/// A requester's incidents: those they raised (`requester`) and those
/// they watch (`watcher`, the same user, bound apart).
fn own_condition(requester: Value, watcher: Value) -> Condition {
    let watched = Query::select()
        .column(watcher::Column::RecordId)
        .from(watcher::Entity)
        .and_where(watcher::Column::RecordType.eq(KIND.as_str()))
        .and_where(watcher::Column::UserId.eq(watcher))
        .to_owned();
    Condition::any()
        .add(incident::Column::RequesterId.eq(requester))
        .add(incident::Column::Id.in_subquery(watched))
}

/// One incident's unique key: its id or its number.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Key {
    Id(Uuid),
    Number(i64),
}

impl Key {
    /// An id, or a number such as `INC0000042`.
    fn parse(key: &str) -> Option<Key> {
        if let Ok(id) = Uuid::parse_str(key) {
            Some(Key::Id(id))
        } else {
            RecordNumber::parse(KIND, key).map(|n| Key::Number(n.seq))
        }
    }

    fn select(self) -> sea_orm::Select<incident::Entity> {
        let q = incident::Entity::find();
        match self {
            Key::Id(id) => q.filter(incident::Column::Id.eq(id)),
            Key::Number(n) => q.filter(incident::Column::Number.eq(n)),
        }
    }

    /// The value [`Key::select`] binds.
    fn value(self) -> Value {
        match self {
            Key::Id(id) => id.into(),
            Key::Number(n) => n.into(),
        }
    }
}

/// The incident `key` names, read on `db` as a get reads it on its own
/// connections: the statement's text kept ([`load_one_statement`]) and
/// its row decoded by position ([`one_model`]). Every change reads its
/// incident this way first ([`visible`]). Building the statement with
/// sea-query and decoding its row by name made that read 104 k
/// instructions of a comment's 1.48 M; this way a comment takes 58 k
/// fewer (bench/RESULTS.md, twenty-third session).
async fn find_model<C: ConnectionTrait>(
    db: &C,
    key: &str,
) -> Result<Option<incident::Model>, StoreError> {
    match Key::parse(key) {
        Some(key) => find_by(db, key).await,
        None => Ok(None),
    }
}

/// The incident `id` names, read on `db` (a transaction, say) as
/// [`find_model`] reads it.
pub(crate) async fn incident_by_id<C: ConnectionTrait>(
    db: &C,
    id: Uuid,
) -> Result<Option<incident::Model>, StoreError> {
    find_by(db, Key::Id(id)).await
}

async fn find_by<C: ConnectionTrait>(
    db: &C,
    key: Key,
) -> Result<Option<incident::Model>, StoreError> {
    let backend = db.get_database_backend();
    let row = db.query_one_raw(load_one_statement(backend, key)).await?;
    row.map(|row| one_model(backend, key, &row)).transpose()
}

/// A new incident, checked and resolved, waiting for its number.
struct Draft {
    id: Uuid,
    new: NewIncident,
    priority: Priority,
    computed: Priority,
    requester: UserId,
    group: Option<Uuid>,
    assignee: Option<Uuid>,
    actor: UserId,
    actor_name: String,
    cfg: WriteConfig,
    acknowledged: Vec<notify::Recipient>,
    workers: Vec<notify::Recipient>,
    t: Timestamp,
}

impl Draft {
    /// Every write that raises the incident as `number`: the record, its
    /// history, its search row, its SLA timers, webhook deliveries and
    /// notifications, as one call to the database. Also answers the
    /// record and its timers as written.
    ///
    /// On SQLite the search row is not among the writes but returned, for
    /// the batch to write after its last savepoint (`batch::Memo::defer_search`).
    fn writes(self, backend: DatabaseBackend, number: i64) -> Result<Drafted, StoreError> {
        let Draft {
            id,
            new,
            priority,
            computed,
            requester,
            group,
            assignee,
            actor,
            actor_name,
            cfg,
            acknowledged,
            workers,
            t,
        } = self;
        let model = incident::Model {
            id,
            number,
            title: new.title.into_string(),
            description: new.description.into_string(),
            impact: i32::from(new.impact.get()),
            urgency: i32::from(new.urgency.get()),
            priority: i32::from(priority.get()),
            priority_overridden: new.priority.is_some(),
            category: new.category,
            major: new.major,
            state: State::New.as_str().to_owned(),
            hold_reason: None,
            resolution_code: None,
            resolution_notes: None,
            requester_id: requester.0,
            assignment_group_id: group,
            assignee_id: assignee,
            reassignment_count: 0,
            created_by: actor.0,
            version: 1,
            created_at: t,
            updated_at: t,
            first_response_at: None,
            resolved_at: None,
            closed_at: None,
            cancelled_at: None,
            timers_json: String::new(),
        };
        // Planned first: the incident keeps a copy of its timers.
        let timers = sla::plan(&cfg.sla, &model, &[], SyncEvent::Created, t)?.inserted;
        let model = incident::Model {
            timers_json: rows::timers_json(&timers),
            ..model
        };
        let mut w = Writes::new(backend);
        w.push_rows(Insert::of([
            incident::ActiveModel::from(model.clone()).reset_all()
        ]));
        let entry = |action, field, old, new| {
            Entry::new(KIND, id, Some(actor), action, t)
                .field(field)
                .change(old, new)
        };
        let mut entries = vec![audit::row(entry(
            "created",
            None,
            None,
            Some(RecordNumber::new(KIND, number).to_string()),
        ))];
        if new.priority.is_some() {
            entries.push(audit::row(entry(
                "priority_overridden",
                Some("priority"),
                Some(computed.get().to_string()),
                Some(priority.get().to_string()),
            )));
        }
        w.push_rows(Insert::of(entries));
        let search_row = search::SearchRow::new(number, &model.title, &model.description, []);
        let search_row = match backend {
            DatabaseBackend::Postgres => {
                w.push_rows(search::pg_rows(vec![search_row]));
                None
            }
            _ => Some(search_row),
        };
        w.push_rows(Insert::of(
            timers
                .iter()
                .map(|r| sla_timer::ActiveModel::from(r.clone()).reset_all()),
        ));
        for s in webhooks::statements(backend, &cfg.hooks, "incident.created", &model, None, t)? {
            w.push(s);
        }
        let ctx = notify::incident_context(&model, Some(&actor_name));
        let acknowledgement = notify::row(
            notify::Notice {
                event: Event::IncidentCreated,
                record_type: KIND.as_str(),
                record_id: id,
                actor: None,
                context: ctx.clone(),
                at: t,
            },
            &acknowledged,
        );
        let assignment = notify::row(
            notify::Notice {
                event: Event::IncidentAssigned,
                record_type: KIND.as_str(),
                record_id: id,
                actor: Some(actor),
                context: ctx,
                at: t,
            },
            &workers,
        );
        w.push_rows(Insert::of(acknowledgement.into_iter().chain(assignment)));
        Ok(Drafted {
            writes: w,
            model,
            timers,
            search_row,
        })
    }
}

/// What [`Draft::writes`] makes of a create.
struct Drafted {
    writes: Writes,
    model: incident::Model,
    timers: Vec<sla_timer::Model>,
    /// The search row, on SQLite, where the batch writes it.
    search_row: Option<search::SearchRow>,
}

/// The view of `m` for `actor`, its references and SLA targets in hand.
fn view_of(
    actor: &Actor,
    m: incident::Model,
    users: &IdMap<UserRef>,
    groups: &IdMap<GroupRef>,
    sla: Vec<SlaTimerView>,
) -> IncidentView {
    let state = parse_state(&m.state);
    let rel = relation(actor, &m);
    IncidentView {
        id: IncidentId(m.id),
        number: RecordNumber::new(KIND, m.number),
        requester: user_ref(users, m.requester_id),
        assignee: m.assignee_id.map(|a| user_ref(users, a)),
        assignment_group: m.assignment_group_id.and_then(|g| groups.get(&g).cloned()),
        impact: u8::try_from(m.impact).unwrap_or(3),
        urgency: u8::try_from(m.urgency).unwrap_or(3),
        priority: u8::try_from(m.priority).unwrap_or(5),
        priority_overridden: m.priority_overridden,
        hold_reason: m.hold_reason.as_deref().and_then(|s| s.parse().ok()),
        resolution_code: m.resolution_code.as_deref().and_then(|s| s.parse().ok()),
        actions: keel_incident::available_actions(state, rel),
        sla,
        state,
        title: m.title,
        description: m.description,
        category: m.category,
        major: m.major,
        resolution_notes: m.resolution_notes,
        reassignment_count: m.reassignment_count,
        version: m.version,
        created_at: m.created_at,
        updated_at: m.updated_at,
        first_response_at: m.first_response_at,
        resolved_at: m.resolved_at,
        closed_at: m.closed_at,
        cancelled_at: m.cancelled_at,
    }
}

/// Incidents with the references their views show.
#[derive(Default)]
struct Loaded {
    models: Vec<incident::Model>,
    users: IdMap<UserRef>,
    groups: IdMap<GroupRef>,
}

/// Runs `stmt` (a page of incidents), then reads the names their views show
/// in a second statement ([`refs_of`]), for the ids whose names this node
/// does not keep ([`crate::cache::Names`]). For a page of 50 at 1 M incidents
/// this is about 10 % faster on SQLite than correlated subqueries in the
/// page's statement, and no slower on PostgreSQL, where the subqueries ran
/// one index scan per name per row and joins took 1.4 ms to plan at every
/// run (bench/RESULTS.md, fifth session).
async fn load(store: &Store, stmt: Statement, here: Here) -> Result<Loaded, StoreError> {
    let loaded = load_statement(store, stmt, here).await?;
    with_names(store, loaded).await
}

/// `loaded` with the names its views show: those this node keeps
/// ([`crate::cache::Names`]), and the rest read in one statement
/// ([`refs_of`]).
async fn with_names(store: &Store, mut loaded: Loaded) -> Result<Loaded, StoreError> {
    let db = store.conn();
    let mut users: Vec<Uuid> = Vec::new();
    let mut groups: Vec<Uuid> = Vec::new();
    // Ids named again are looked up once (`Names::get_or_load`): sorting
    // them to drop repeats cost more (bench/RESULTS.md, thirty-first
    // session).
    for m in &loaded.models {
        users.push(m.requester_id);
        users.extend(m.assignee_id);
        groups.extend(m.assignment_group_id);
    }
    (loaded.users, loaded.groups) = store
        .cache
        .names
        .get_or_load(&users, &groups, |users, groups| async move {
            refs_of(db, &users, &groups).await
        })
        .await?;
    Ok(loaded)
}

/// A page of a queue of several states in creation order: each state's
/// rows in index order (`(state, created_at)` or `(group, state,
/// created_at, number, priority)` gives them so), merged, and the first
/// `page` of those, so that each state reads about a page of index
/// entries. Sorting every open row of the queue instead read 4 492 index
/// entries for the busiest group at 1 M incidents, 2 ms in `sqlite3`
/// against 0.19 ms, and the whole desk's queue (no group) sorted every row
/// of its priorities, 834 ms against 1 ms (bench/RESULTS.md, eighth
/// session).
///
/// The two databases need different shapes for the same lazy merge:
/// - SQLite ([`Newest::Rows`]) flattens a plain union of the states into
///   its `MERGE (UNION ALL)` of their index scans, and reads each row the
///   merge takes from the table by the rowid in the index entry (after
///   testing the filter on the entry, when the index holds it). When each
///   state was a derived table with its own limit (until the ninth
///   session), it sorted each again in a temporary B-tree before merging
///   them. Until the nineteenth session the union gave the page's numbers
///   and the rows were read by a join after it: one more descent of the
///   number index per row (bench/RESULTS.md).
/// - PostgreSQL ([`Newest::Numbers`]) merges limited states (Merge Append
///   of their index scans), but plans a plain union as an Append of every
///   open row and a sort: for the whole desk at 100 k incidents, 2 098 rows
///   and 5.8-8.2 ms in `EXPLAIN ANALYZE`, against 0.29 ms. For a group's
///   queue the numbers come from an index-only scan and the rows by a join
///   after (see [`newest_rows_of_each`] for why, and for the queues that
///   name no group).
enum Newest {
    /// The page's numbers and creation times, sorted and limited.
    Numbers(sea_orm::sea_query::SelectStatement),
    /// The union of the states' whole rows, to be read as the table
    /// `incidents`, sorted and limited.
    Rows(sea_orm::sea_query::SelectStatement),
}

/// The states of a queue, each once: a state named twice is one share,
/// since two would fill the page with duplicates, and a short page ends
/// the listing early.
fn distinct_states(states: &[State]) -> Vec<&State> {
    states
        .iter()
        .enumerate()
        .filter(|&(i, s)| !states[..i].contains(s))
        .map(|(_, s)| s)
        .collect()
}

/// One state's share of a queue: its rows under `unstated`, no columns
/// chosen yet.
fn state_share(unstated: &Condition, state: &State) -> sea_orm::sea_query::SelectStatement {
    Query::select()
        .from(incident::Entity)
        .cond_where(
            unstated
                .clone()
                .add(incident::Column::State.eq(state.as_str())),
        )
        .take()
}

fn newest_of_each(
    states: &[State],
    unstated: &Condition,
    order: sea_orm::Order,
    page: u64,
    limited: bool,
) -> Option<Newest> {
    use sea_orm::sea_query::UnionType;
    let number = incident::Column::Number;
    let created = incident::Column::CreatedAt;
    let share = |i: usize, s: &State| {
        let mut rows = state_share(unstated, s);
        if !limited {
            return rows.expr(Expr::cust(share_columns())).take();
        }
        // A compound's members cannot be sorted or limited themselves, so
        // each limited share is a derived table.
        let mut rows = rows.columns([number, created]).take();
        rows.order_by((incident::Entity, created), order.clone())
            .order_by((incident::Entity, number), order.clone())
            .limit(page);
        Query::select()
            .columns([number, created])
            .from_subquery(rows, Alias::new(format!("share{i}")))
            .take()
    };
    let mut shares = distinct_states(states)
        .into_iter()
        .enumerate()
        .map(|(i, s)| share(i, s));
    let mut merged = shares.next()?;
    for s in shares {
        merged.union(UnionType::All, s);
    }
    if !limited {
        return Some(Newest::Rows(merged));
    }
    // The union is a derived table, sorted and limited outside it.
    Some(Newest::Numbers(
        Query::select()
            .columns([number, created])
            .from_subquery(merged, Alias::new("states"))
            .order_by(created, order.clone())
            .order_by(number, order)
            .limit(page)
            .take(),
    ))
}

/// [`newest_of_each`] on PostgreSQL for a queue that names no group: the
/// page's whole rows, sorted and limited, from a limited share per state
/// (`(SELECT ... ORDER BY ... LIMIT n) UNION ALL (...)`, merged lazily as
/// [`newest_of_each`]'s are).
///
/// - Such a queue is read through the `(state, created_at)` index (or
///   another that holds no state and priority), so each entry's row is
///   read from the table to test the rest of the filter anyway. Reading
///   the page's numbers first and their rows by a join after them (as for a
///   group) looked each row up a second time, by number: the whole desk's
///   queue at 1 M incidents cost PostgreSQL 2.2-2.9 times the CPU it does
///   with the rows read where the index scan finds them (bench/RESULTS.md,
///   nineteenth session).
/// - A group's queue keeps the numbers first: the group index holds
///   state, creation time, number and priority, so they come from an
///   index-only scan, whose plan PostgreSQL keeps. Read as whole rows, a
///   group's page is planned again on every execution whenever the queue
///   holds fewer rows than a page (the plan for the values at hand is
///   costed cheaper than the kept one), 0.35 ms each time.
/// - The limits are written into the text, not bound: with a bound limit
///   PostgreSQL costs the kept (generic) plan for an unknown one, a tenth
///   of the rows, and plans every execution again. The text is one per
///   page size; sqlx keeps each prepared.
fn newest_rows_of_each(
    states: &[State],
    unstated: &Condition,
    dir: SortDir,
    page: u64,
) -> Option<Statement> {
    use sea_orm::sea_query::PostgresQueryBuilder;
    let order = sql_order(dir);
    let number = incident::Column::Number;
    let created = incident::Column::CreatedAt;
    let mut sql = String::from("SELECT * FROM (");
    let mut values: Vec<sea_orm::Value> = Vec::new();
    let states = distinct_states(states);
    if states.is_empty() {
        return None;
    }
    for (n, s) in states.into_iter().enumerate() {
        let (share, vals) = state_share(unstated, s)
            .expr(Expr::cust(share_columns()))
            .order_by((incident::Entity, created), order.clone())
            .order_by((incident::Entity, number), order.clone())
            .build(PostgresQueryBuilder);
        if n > 0 {
            sql.push_str(" UNION ALL ");
        }
        sql.push('(');
        sql.push_str(&crate::multi::shift_placeholders(&share, values.len()));
        sql.push_str(&format!(" LIMIT {page})"));
        values.extend(vals.0);
    }
    let dir = match dir {
        SortDir::Asc => "ASC",
        SortDir::Desc => "DESC",
    };
    sql.push_str(&format!(
        ") AS \"incidents\" ORDER BY \"created_at\" {dir}, \"number\" {dir} LIMIT {page}"
    ));
    Some(Statement::from_sql_and_values(
        DatabaseBackend::Postgres,
        sql,
        values,
    ))
}

/// A list page's cursor as the bound its statement compares with: the
/// value of the sort field, as bound, and the number.
fn cursor_bound(raw: &str, sort: Sort<IncidentSort>) -> Result<(Value, i64), StoreError> {
    let c = Cursor::decode(raw, sort)?;
    let tie = c.tiebreak.as_i64().ok_or(QueryError::InvalidCursor)?;
    let value: Value = match sort.field {
        IncidentSort::CreatedAt | IncidentSort::UpdatedAt => {
            let s = c.value.as_str().ok_or(QueryError::InvalidCursor)?;
            let ts: Timestamp = s.parse().map_err(|_| QueryError::InvalidCursor)?;
            ts.into()
        }
        IncidentSort::Priority => {
            let p = c
                .value
                .as_i64()
                .and_then(|p| i32::try_from(p).ok())
                .ok_or(QueryError::InvalidCursor)?;
            p.into()
        }
        IncidentSort::Number => tie.into(),
    };
    Ok((value, tie))
}

/// The conditions of a list page that [`PageArgs`] holds: what the caller
/// may read, then the filters but the states, each value as `bind` takes
/// it. Visibility is one AND-ed clause: filters narrow within it, never
/// widen it.
fn page_condition(args: &PageArgs, bind: Bind) -> Condition {
    let v = |arg| bind.val(args, arg);
    let mut cond = Condition::all().add(match args.reach_user {
        None => Condition::all(),
        Some(_) => own_condition(v(Arg::ReachUser), v(Arg::ReachUser)),
    });
    if !args.priorities.is_empty() {
        cond = cond.add(
            incident::Column::Priority
                .is_in((0..args.priorities.len()).map(|n| v(Arg::Priority(n)))),
        );
    }
    match args.assignee {
        Some(Some(_)) => cond = cond.add(incident::Column::AssigneeId.eq(v(Arg::Assignee))),
        Some(None) => cond = cond.add(incident::Column::AssigneeId.is_null()),
        None => {}
    }
    match args.group {
        Some(Some(_)) => cond = cond.add(incident::Column::AssignmentGroupId.eq(v(Arg::Group))),
        Some(None) => cond = cond.add(incident::Column::AssignmentGroupId.is_null()),
        None => {}
    }
    if args.requester.is_some() {
        cond = cond.add(incident::Column::RequesterId.eq(v(Arg::Requester)));
    }
    if args.major.is_some() {
        cond = cond.add(incident::Column::Major.eq(v(Arg::Major)));
    }
    for (col, after, before) in [
        (
            incident::Column::CreatedAt,
            args.created_after.map(|_| Arg::CreatedAfter),
            args.created_before.map(|_| Arg::CreatedBefore),
        ),
        (
            incident::Column::UpdatedAt,
            args.updated_after.map(|_| Arg::UpdatedAfter),
            args.updated_before.map(|_| Arg::UpdatedBefore),
        ),
    ] {
        if let Some(a) = after {
            cond = cond.add(col.gte(v(a)));
        }
        if let Some(b) = before {
            cond = cond.add(col.lt(v(b)));
        }
    }
    cond
}

/// A list page's statement: `cond` (from [`page_condition`], and a search's
/// or SLA conditions after it), then the cursor's bound, the states, the
/// order and the limit (`page` rows). The state filter is added last: a
/// queue of several open states may be read one state at a time.
#[allow(clippy::too_many_arguments)]
fn page_statement(
    backend: DatabaseBackend,
    mut cond: Condition,
    args: &PageArgs,
    bind: Bind,
    states: &[State],
    sort: Sort<IncidentSort>,
    page: u64,
    fts_driven: bool,
) -> Statement {
    let col = match sort.field {
        IncidentSort::CreatedAt => incident::Column::CreatedAt,
        IncidentSort::UpdatedAt => incident::Column::UpdatedAt,
        IncidentSort::Priority => incident::Column::Priority,
        IncidentSort::Number => incident::Column::Number,
    };
    if args.cursor.is_some() {
        // A row-value comparison, `(col, number) < (value, tie)`: both
        // databases walk the `(col, number)` index straight to the
        // cursor, where the equivalent OR of two conditions made SQLite
        // scan every row before it.
        let key = Expr::tuple([
            Expr::col((incident::Entity, col)),
            Expr::col((incident::Entity, incident::Column::Number)),
        ]);
        let bound = Expr::tuple([
            Expr::val(bind.val(args, Arg::CursorValue)),
            Expr::val(bind.val(args, Arg::CursorTie)),
        ]);
        cond = cond.add(match sort.dir {
            SortDir::Asc => key.gt(bound),
            SortDir::Desc => key.lt(bound),
        });
        if fts_driven {
            // The same bound on the FTS5 key, so that it seeks there.
            let fts_key = Expr::cust(search::FTS_KEY);
            let tie = bind.val(args, Arg::CursorTie);
            cond = cond.add(match sort.dir {
                SortDir::Asc => fts_key.gt(tie),
                SortDir::Desc => fts_key.lt(tie),
            });
        }
    }
    let order = sql_order(sort.dir);
    // Open work is short and history is long. When the filter asks for
    // several states, all open, SQLite should find those rows through a
    // state index and sort them, but left to itself it walks the whole
    // queue in sort order (closed history included) to skip the sort.
    // Sorting by `+column` (an expression no index provides) tells it
    // so. One state needs no hint: `(state, created_at)` and `(group,
    // state, created_at)` give its rows in order. PostgreSQL plans from
    // value statistics and needs no hint either.
    let open_work = states.len() > 1 && states.iter().all(|s| s.is_open());
    // In creation order, such a queue is read one state at a time, from
    // the conditions so far (every one but the state).
    let postgres = backend == DatabaseBackend::Postgres;
    let by_state = open_work && !fts_driven && sort.field == IncidentSort::CreatedAt;
    // A queue of no group on PostgreSQL: its rows as the scans find them.
    let pg_rows = (by_state && postgres && args.group.is_none())
        .then(|| newest_rows_of_each(states, &cond, sort.dir, page))
        .flatten();
    if let Some(stmt) = pg_rows {
        return stmt;
    }
    let newest = by_state
        .then(|| newest_of_each(states, &cond, order.clone(), page, postgres))
        .flatten();
    if !states.is_empty() {
        cond = cond.add(incident::Column::State.is_in(states.iter().map(|s| s.as_str())));
    }
    let sort_key: SimpleExpr = if open_work && backend == DatabaseBackend::Sqlite {
        Expr::cust(format!("+\"incidents\".\"{}\"", col.as_str()))
    } else {
        Expr::col((incident::Entity, col))
    };
    let (newest_numbers, newest_rows) = match newest {
        Some(Newest::Numbers(n)) => (Some(n), None),
        Some(Newest::Rows(r)) => (None, Some(r)),
        None => (None, None),
    };
    let mut q = if let Some(rows) = newest_rows {
        // The queue's rows (SQLite), as the table they come from; its
        // sort key is selected, so SQLite flattens the union.
        let mut q = select_incidents(backend);
        q.from_clear()
            .from_subquery(rows, Alias::new("incidents"))
            .order_by_expr(
                incident::Column::CreatedAt.into_simple_expr(),
                order.clone(),
            )
            .order_by_expr(incident::Column::Number.into_simple_expr(), order);
        q
    } else if open_work && !fts_driven {
        // The page's numbers first, then their rows: the numbers alone
        // come from the group index (which holds the sort key and the
        // priority, m0006) without reading a row (an index-only scan on
        // PostgreSQL), so a large group's queue reads 50 rows instead
        // of thousands. In other orders than creation, both databases
        // sort the open rows they found. The rows are then read by a
        // join from those numbers, in no particular order (they are
        // sorted below): `number IN (...)` made SQLite build a
        // temporary B-tree of the numbers and another to sort the
        // rows, whole descriptions and all. `CROSS JOIN` keeps SQLite
        // from reordering the join (and the numbers a co-routine).
        let numbers = newest_numbers.unwrap_or_else(|| {
            Query::select()
                .column((incident::Entity, incident::Column::Number))
                .from(incident::Entity)
                .cond_where(cond)
                .order_by_expr(sort_key, order.clone())
                .order_by((incident::Entity, incident::Column::Number), order.clone())
                .limit(page)
                .take()
        });
        let mut q = select_incidents(backend);
        q.from_clear()
            .from_subquery(numbers, Alias::new("page"))
            .cross_join(incident::Entity)
            .and_where(
                Expr::col((incident::Entity, incident::Column::Number))
                    .equals((Alias::new("page"), incident::Column::Number)),
            );
        q
    } else if fts_driven {
        let mut q = select_incidents(backend);
        q.join(
            JoinType::InnerJoin,
            Alias::new("incident_search"),
            Expr::cust(search::FTS_JOIN),
        )
        .cond_where(cond)
        .order_by_expr(Expr::cust(search::FTS_KEY), order);
        q
    } else {
        let mut q = select_incidents(backend);
        q.cond_where(cond)
            .order_by_expr(sort_key, order.clone())
            .order_by_expr(incident::Column::Number.into_simple_expr(), order);
        q
    };
    q.limit(page);
    backend.build(&q)
}

/// `dir` as sea-query orders.
fn sql_order(dir: SortDir) -> sea_orm::Order {
    match dir {
        SortDir::Asc => sea_orm::Order::Asc,
        SortDir::Desc => sea_orm::Order::Desc,
    }
}

/// [`load`] for one incident: the record (its SLA timers in its row) in
/// one statement, and the names from the node's names ([`with_names`]), as
/// a list page takes them. Until the fifteenth session the names were five
/// subqueries of the statement, five more index scans per get on
/// PostgreSQL. The statement's text depends only on the database and the
/// kind of key, so it is built once per pair and only the key is bound per
/// call: building it with sea-query took a fifth of a get's instructions
/// (bench/RESULTS.md, eleventh session).
///
/// On SQLite the statement runs on this thread if it can
/// ([`crate::reads::Reads::inline`]).
async fn load_one(store: &Store, key: Key) -> Result<Loaded, StoreError> {
    let backend = store.backend();
    let stmt = load_one_statement(backend, key);
    let mut loaded = Loaded::default();
    // One text per kind of key on SQLite ([`load_one_statement`]).
    static AT: [rows::KeptAt; 2] = [const { rows::KeptAt::new() }; 2];
    let at = &AT[usize::from(matches!(key, Key::Number(_)))];
    let mut positions = at.get();
    let models = store
        .reads()
        .inline(&stmt, |row| rows::incident_inline(row, &mut positions));
    at.keep(positions);
    if let Some(models) = models {
        loaded.models = models;
        loaded.models.truncate(1);
        return with_names(store, loaded).await;
    }
    let row = store.reads().fetch_optional(stmt).await?;
    if let Some(row) = row {
        loaded.models.push(one_model(backend, key, &row)?);
    }
    with_names(store, loaded).await
}

/// Decodes a row of [`load_one_statement`]`(backend, key)`. Its column
/// positions are kept from the statement's first result ([`one_positions`]):
/// finding them by name was 3.5 % of a get (bench/RESULTS.md, sixteenth
/// session).
fn one_model(
    backend: DatabaseBackend,
    key: Key,
    row: &QueryResult,
) -> Result<incident::Model, StoreError> {
    let kept = 2 * usize::from(backend == DatabaseBackend::Postgres)
        + usize::from(matches!(key, Key::Number(_)));
    let (at, types) = one_positions()[kept].clone();
    let finding = at.is_none() || (backend == DatabaseBackend::Postgres && types.is_none());
    let mut positions = match at {
        Some(at) => Positions::known(at, types),
        None => Positions::default(),
    };
    let m = rows::incident_of(row, "", &mut positions)?;
    if finding && let Some(found) = positions.found() {
        let kept = &mut one_positions()[kept];
        kept.0.get_or_insert_with(|| found.clone());
        if let Some(types) = positions.types() {
            kept.1.get_or_insert_with(|| types.clone());
        }
    }
    Ok(m)
}

/// [`Key::select`] built for `backend`: its text kept per database and
/// kind of key ([`rows::Kept`]), `key`'s value bound.
fn load_one_statement(backend: DatabaseBackend, key: Key) -> Statement {
    static TEXTS: rows::Kept<bool> = rows::Kept::new();
    let by_number = matches!(key, Key::Number(_));
    TEXTS.statement(backend, by_number, [key.value()], || {
        key.select().build(backend)
    })
}

/// `incident::Entity::find()`'s statement, `SELECT` every column `FROM
/// "incidents"`, with its column list as one kept text
/// ([`incident_columns`]): sea-orm builds that list of 43 columns anew
/// for each `find()` and sea-query writes it out column by column. The
/// text written is the same; with [`share_columns`], a filtered page took
/// 11 % fewer instructions on SQLite and 28 % fewer on PostgreSQL
/// (bench/RESULTS.md, twenty-fourth session).
fn select_incidents(backend: DatabaseBackend) -> sea_orm::sea_query::SelectStatement {
    Query::select()
        .expr(Expr::cust(incident_columns(backend)))
        .from(incident::Entity)
        .take()
}

/// The column list `incident::Entity::find()` writes on `backend`, taken
/// once from that statement's text ([`column_list`]); the unit tests hold
/// the two equal.
fn incident_columns(backend: DatabaseBackend) -> &'static str {
    static SQLITE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    static POSTGRES: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let kept = if backend == DatabaseBackend::Postgres {
        &POSTGRES
    } else {
        &SQLITE
    };
    kept.get_or_init(|| column_list(&incident::Entity::find().build(backend).sql))
}

/// Every column of `incidents` by its bare name, as
/// `.columns(incident::Column::iter())` writes them (the same on both
/// databases), kept as one text for the shares of [`newest_of_each`]
/// (SQLite) and [`newest_rows_of_each`] (PostgreSQL): two or three lists
/// of 43 columns a page, written out one by one, otherwise.
fn share_columns() -> &'static str {
    static KEPT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    KEPT.get_or_init(|| {
        let all = Query::select()
            .columns(incident::Column::iter())
            .from(incident::Entity)
            .take();
        column_list(&DatabaseBackend::Sqlite.build(&all).sql)
    })
}

/// The column list of `SELECT <list> FROM "incidents"`; `*` (every column,
/// decoded by name as ever) if `sql` is not of that shape, which the unit
/// tests would catch first.
fn column_list(sql: &str) -> String {
    sql.strip_prefix("SELECT ")
        .and_then(|rest| rest.strip_suffix(" FROM \"incidents\""))
        .unwrap_or("*")
        .to_owned()
}

/// Runs a statement of incidents and decodes its rows.
/// On SQLite it runs on this thread if `here` says to try and it can
/// ([`crate::reads::Reads::inline`]).
async fn load_statement(store: &Store, stmt: Statement, here: Here) -> Result<Loaded, StoreError> {
    let mut found = None;
    if here == Here::Try
        && let Some(models) = store
            .reads()
            .inline(&stmt, |row| rows::incident_inline(row, &mut found))
    {
        return Ok(Loaded {
            models,
            ..Loaded::default()
        });
    }
    let mut positions = Positions::default();
    let rows = store.reads().fetch_all(stmt).await?;
    let mut out = Loaded::default();
    for row in rows {
        out.models
            .push(rows::incident_of(&row, "", &mut positions)?);
    }
    Ok(out)
}

/// Whether a statement of incidents may run on the calling thread
/// ([`crate::inline`]): not one whose length is not bounded by its page.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Here {
    Try,
    No,
}

/// The column positions of [`load_one`]'s statements, by database and kind
/// of key: `2 * postgres + by_number`, and on PostgreSQL the column types
/// that passed the check ([`Positions::types`]). Shared (`Arc`): every get
/// takes them, and copying them cost two allocations a get.
type OnePositions = [(
    Option<std::sync::Arc<[usize]>>,
    Option<std::sync::Arc<[u32]>>,
); 4];

fn one_positions() -> std::sync::MutexGuard<'static, OnePositions> {
    static KEPT: std::sync::Mutex<OnePositions> =
        std::sync::Mutex::new([const { (None, None) }; 4]);
    // Nothing panics while holding it; a poisoned table is still whole.
    KEPT.lock().unwrap_or_else(|p| p.into_inner())
}

/// Loads an incident the caller may read; anything else is "not found", so
/// that ids of other people's incidents reveal nothing.
async fn visible<C: ConnectionTrait>(
    db: &C,
    actor: &Actor,
    key: &str,
) -> Result<incident::Model, StoreError> {
    let reach = reach(actor)?;
    let m = find_model(db, key)
        .await?
        .ok_or(StoreError::NotFound("incident"))?;
    check_reach(db, &reach, &m).await?;
    Ok(m)
}

/// "Not found" unless `reach` covers `m`: requesters see what they raised
/// and what they watch.
async fn check_reach<C: ConnectionTrait>(
    db: &C,
    reach: &Reach,
    m: &incident::Model,
) -> Result<(), StoreError> {
    if let Reach::Own(user) = *reach
        && m.requester_id != user.0
        && !is_watcher(db, m.id, user).await?
    {
        return Err(StoreError::NotFound("incident"));
    }
    Ok(())
}

async fn is_watcher<C: ConnectionTrait>(
    db: &C,
    id: Uuid,
    user: UserId,
) -> Result<bool, StoreError> {
    Ok(
        watcher::Entity::find_by_id((KIND.as_str().to_owned(), id, user.0))
            .one(db)
            .await?
            .is_some(),
    )
}

fn check_version(m: &incident::Model, if_match: Option<i64>) -> Result<(), StoreError> {
    match if_match {
        Some(v) if v != m.version => Err(StoreError::VersionMismatch { current: m.version }),
        _ => Ok(()),
    }
}

/// Moves the incident sequence on by `k` and answers the first number taken.
const RESERVE: &str =
    "UPDATE sequences SET next_value = next_value + ? WHERE name = ? RETURNING next_value - ? AS n";

/// Moves the incident sequence on by one, for a number already known
/// ([`batch::Memo`]).
const NEXT: &str = "UPDATE sequences SET next_value = next_value + 1 WHERE name = ?";

/// Opens the savepoint of an atomic job ([`batch::JOB_SAVEPOINT`]) and takes
/// the next incident number, in one call (SQLite).
async fn first_number_in_savepoint(txn: &DatabaseTransaction) -> Result<i64, StoreError> {
    let sql = format!("SAVEPOINT {}; {RESERVE}", batch::JOB_SAVEPOINT);
    take_numbers(txn, &sql, 1).await
}

/// What a PostgreSQL create answers with: the record and its SLA timers.
pub(crate) type Created = (incident::Model, Vec<sla_timer::Model>);

/// [`RESERVE`] on PostgreSQL for [`crate::combine`], committed without
/// waiting for its WAL to reach the disk. That is safe: WAL is flushed in
/// order, so the commit of any incident that uses one of these numbers
/// (which does wait) makes the reservation durable first; a crash before
/// any such commit loses only numbers nobody holds.
const RESERVE_WITHOUT_FLUSH: &str = "UPDATE sequences SET next_value = next_value + ? \
     FROM (SELECT set_config('synchronous_commit', 'off', true)) AS no_flush \
     WHERE name = ? RETURNING next_value - ? AS n";

/// Reserves `k` incident numbers on PostgreSQL for [`crate::combine`];
/// answers the first. `kept`: some of them are kept for later batches
/// ([`crate::combine`]'s block). Such a reservation waits for its flush
/// ([`RESERVE`]): were it lost in a crash before any incident using one of
/// its numbers committed, the node would still hand those numbers out and
/// the sequence would hand them out again after the restart. Numbers all
/// used by the batch at once need no flush ([`RESERVE_WITHOUT_FLUSH`]).
pub(crate) fn reserve(
    db: &sea_orm::DatabaseConnection,
    k: i64,
    kept: bool,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<i64, StoreError>> + Send + '_>> {
    Box::pin(take_numbers(
        db,
        if kept { RESERVE } else { RESERVE_WITHOUT_FLUSH },
        k,
    ))
}

/// Runs `sql`, which ends with [`RESERVE`], for `k` numbers.
async fn take_numbers<C: rows::Read>(db: &C, sql: &str, k: i64) -> Result<i64, StoreError> {
    let rows = db
        .read(stmt(
            db.get_database_backend(),
            sql,
            vec![k.into(), KIND.as_str().into(), k.into()],
        ))
        .await?;
    let row = rows.first().ok_or(StoreError::NotFound("sequence"))?;
    Ok(row.try_get::<i64>("", "n")?)
}

/// Records that the timeline changed: bumps the version whatever it is
/// (comments never conflict with field edits) and, for an agent's public
/// reply, stamps the first response if there was none.
async fn touch(
    txn: &DatabaseTransaction,
    id: Uuid,
    t: Timestamp,
    responds: bool,
) -> Result<(), StoreError> {
    let mut update = incident::Entity::update_many()
        .col_expr(
            incident::Column::Version,
            Expr::col(incident::Column::Version).add(1),
        )
        .col_expr(incident::Column::UpdatedAt, Expr::value(t));
    if responds {
        // In the same statement: a second UPDATE wrote a second version of
        // the row (and, on PostgreSQL, new entries in all its indexes).
        update = update.col_expr(
            incident::Column::FirstResponseAt,
            sea_orm::sea_query::Func::coalesce([
                Expr::col(incident::Column::FirstResponseAt),
                Expr::value(Some(t)),
            ])
            .into(),
        );
    }
    update.filter(incident::Column::Id.eq(id)).exec(txn).await?;
    Ok(())
}

/// Writes `am` only if the row still has `expected` version.
async fn save(
    txn: &DatabaseTransaction,
    am: incident::ActiveModel,
    id: Uuid,
    expected: i64,
) -> Result<(), StoreError> {
    let res = incident::Entity::update_many()
        .set(am)
        .filter(incident::Column::Id.eq(id))
        .filter(incident::Column::Version.eq(expected))
        .exec(txn)
        .await?;
    if res.rows_affected == 0 {
        let current = incident::Entity::find_by_id(id)
            .one(txn)
            .await?
            .map_or(expected, |m| m.version);
        return Err(StoreError::VersionMismatch { current });
    }
    Ok(())
}

/// A checked group and assignee, as views show them.
struct Assignment {
    group: Option<GroupRef>,
    assignee: Option<UserRef>,
}

impl Assignment {
    fn group_id(&self) -> Option<Uuid> {
        self.group.as_ref().map(|g| g.id.0)
    }

    fn assignee_id(&self) -> Option<Uuid> {
        self.assignee.as_ref().map(|u| u.id.0)
    }
}

impl Store {
    /// A create's write refused by a foreign key: what it named (its group,
    /// its SLA policy or calendar) was removed after it was found, by
    /// another node while this one still kept it (`audiences`, the SLA
    /// configuration), or by a write that raced it. The kept copies are
    /// dropped, so that a retry finds what is there now, and the caller is
    /// told which reference went, never a server error.
    fn reference_gone(&self, e: StoreError) -> StoreError {
        let StoreError::Db(db) = &e else {
            return e;
        };
        let Some(sea_orm::SqlErr::ForeignKeyConstraintViolation(what)) = db.sql_err() else {
            return e;
        };
        self.cache.audiences.clear();
        self.cache.sla.clear();
        if what.contains("assignment_group") {
            unknown_group()
        } else {
            StoreError::conflict(
                "incident.reference_gone",
                "something this incident refers to was removed meanwhile; try again",
            )
        }
    }
}

/// A requested assignment group that does not exist.
fn unknown_group() -> StoreError {
    StoreError::invalid(
        "incident.unknown_group",
        "assignment_group",
        "no such group",
    )
}

impl Store {
    /// Checks a requested group and assignee: both exist, the assignee is an
    /// agent and a member of the group.
    async fn resolve_assignment(
        &self,
        group_key: Option<&str>,
        assignee_key: Option<&str>,
    ) -> Result<Assignment, StoreError> {
        let group_ref = match group_key {
            Some(k) => Some(self.resolve_group_ref(k).await?.ok_or_else(unknown_group)?),
            None => None,
        };
        let group = group_ref.as_ref().map(|g| g.id);
        let assignee = match assignee_key {
            Some(k) => {
                let u = self
                    .resolve_user(k)
                    .await?
                    .filter(|u| u.active)
                    .ok_or_else(|| {
                        StoreError::invalid(
                            "incident.unknown_assignee",
                            "assignee",
                            "no such active user",
                        )
                    })?;
                if !u.is_agent() {
                    return Err(StoreError::invalid(
                        "incident.assignee_not_agent",
                        "assignee",
                        "the assignee must be an agent",
                    ));
                }
                let g = group.ok_or_else(|| {
                    StoreError::invalid(
                        "incident.assignee_requires_group",
                        "assignee",
                        "assign a group before an agent",
                    )
                })?;
                if !is_member_in(self.conn(), g, u.id).await? {
                    return Err(StoreError::invalid(
                        "incident.assignee_not_in_group",
                        "assignee",
                        "the assignee is not a member of the assignment group",
                    ));
                }
                Some(u.as_ref())
            }
            None => None,
        };
        Ok(Assignment {
            group: group_ref,
            assignee,
        })
    }

    /// Views of incidents whose references are already loaded.
    async fn views_of(
        &self,
        actor: &Actor,
        loaded: Loaded,
    ) -> Result<Vec<IncidentView>, StoreError> {
        let Loaded {
            models,
            users,
            groups,
        } = loaded;
        // Each incident's timers are in its row ([`rows::timers_json`]),
        // read once per text on this thread ([`rows::kept_timers`]).
        let timers = models
            .iter()
            .map(|m| rows::kept_timers(&m.timers_json))
            .collect::<Result<Vec<_>, _>>()?;
        let sla = self.timer_views_of(&timers).await?;
        Ok(models
            .into_iter()
            .zip(sla)
            .map(|(m, timers)| view_of(actor, m, &users, &groups, timers))
            .collect())
    }

    async fn view(&self, actor: &Actor, id: Uuid) -> Result<IncidentView, StoreError> {
        let loaded = load_one(self, Key::Id(id)).await?;
        self.views_of(actor, loaded)
            .await?
            .pop()
            .ok_or(StoreError::NotFound("incident"))
    }

    /// Raises an incident. Requesters raise them for themselves; agents for
    /// anyone, and may assign and override priority at once.
    pub async fn create_incident(
        &self,
        actor: &Actor,
        new: NewIncident,
        matrix: &PriorityMatrix,
    ) -> Result<IncidentView, StoreError> {
        require_write(actor)?;
        if !actor.can(Permission::IncidentCreate) {
            return Err(StoreError::forbidden(
                "auth.insufficient_scope",
                "this credential may not raise incidents",
            ));
        }
        let agent = is_agent(actor);
        if !agent {
            let checks = [
                ("assignment_group", new.assignment_group.is_some()),
                ("assignee", new.assignee.is_some()),
                ("priority", new.priority.is_some()),
                ("major", new.major),
            ];
            if let Some((f, _)) = checks.iter().find(|(_, set)| *set) {
                return Err(field_forbidden(f));
            }
        }
        let own = || UserRef {
            id: actor.user_id,
            username: actor.username.clone(),
            display_name: actor.display_name.clone(),
        };
        let requester = match new.requester.as_deref() {
            None => own(),
            Some(k) if !agent => {
                let is_own =
                    k.eq_ignore_ascii_case(&actor.username) || k == actor.user_id.0.to_string();
                if !is_own {
                    return Err(StoreError::forbidden(
                        "incident.requester_forbidden",
                        "requesters may only raise incidents for themselves",
                    ));
                }
                own()
            }
            Some(k) => self
                .resolve_user(k)
                .await?
                .filter(|u| u.active)
                .ok_or_else(|| {
                    StoreError::invalid(
                        "incident.unknown_requester",
                        "requester",
                        "no such active user",
                    )
                })?
                .as_ref(),
        };
        // Who hears of it is found before the transaction (kept from
        // earlier creates, or read on a read connection: `audiences`), so
        // the writer is held for the writes only. The requester hears of
        // their own incident too: it is the acknowledgement.
        let acknowledgement = notify::Ask {
            event: Event::IncidentCreated,
            actor: None,
            people: vec![requester.id.0],
            group: None,
        };
        let (assignment, mut heard) =
            match (new.assignment_group.as_deref(), new.assignee.as_deref()) {
                // A group and nobody in it yet, the common case: the group
                // is found in the same statement as who hears of the
                // incident (its members, by the same key).
                (Some(key), None) => {
                    let key = GroupKey::parse(key);
                    let asks = [
                        acknowledgement,
                        notify::Ask {
                            event: Event::IncidentAssigned,
                            actor: Some(actor.user_id),
                            people: vec![],
                            group: Some(key.clone()),
                        },
                    ];
                    let (group, heard) = self.audiences(Some(&key), &asks).await?;
                    let group = group.ok_or_else(unknown_group)?;
                    let assignment = Assignment {
                        group: Some(group),
                        assignee: None,
                    };
                    (assignment, heard)
                }
                (group, assignee) => {
                    let assignment = self.resolve_assignment(group, assignee).await?;
                    let audience = Audience {
                        assignee: assignment.assignee_id(),
                        group: assignment.group_id(),
                    };
                    let asks = [
                        acknowledgement,
                        audience.ask(Event::IncidentAssigned, Some(actor.user_id)),
                    ];
                    (assignment, self.audiences(None, &asks).await?.1)
                }
            };
        let computed = matrix.priority(new.impact, new.urgency);
        let t = now();
        let cfg = self.write_config().await?;
        let workers = heard.pop().unwrap_or_default();
        let acknowledged = heard.pop().unwrap_or_default();
        let draft = Draft {
            id: Uuid::now_v7(),
            priority: new.priority.unwrap_or(computed),
            computed,
            new,
            requester: requester.id,
            group: assignment.group_id(),
            assignee: assignment.assignee_id(),
            actor: actor.user_id,
            actor_name: actor.display_name.clone(),
            cfg: cfg.clone(),
            acknowledged,
            workers,
            t,
        };
        let written = match self.backend() {
            // On PostgreSQL the creates arriving together take their numbers
            // in one statement and write their rows in another, each atomic
            // without a transaction around it ([`crate::combine`]).
            DatabaseBackend::Postgres => {
                self.creates
                    .create(
                        self.writer(),
                        Box::new(move |number| {
                            let d = draft.writes(DatabaseBackend::Postgres, number)?;
                            Ok((d.writes, (d.model, d.timers)))
                        }),
                    )
                    .await
            }
            // SQLite has one writer at a time anyway; there the number is
            // taken in the (group-committed) transaction, as an extra
            // commit would cost an extra fsync. The first create of a batch
            // makes two calls to SQLite's thread: the savepoint opens with
            // the number, and closes after the writes, in the same call
            // (`batch::write_atomic`). The creates after it in the same
            // batch know their number from it (`batch::Memo`) and make one:
            // savepoint, sequence, writes, release.
            backend => {
                self.write_atomic(move |txn, memo| {
                    Box::pin(async move {
                        let known = memo.next_number();
                        let number = match known {
                            Some(n) => n,
                            None => match first_number_in_savepoint(txn).await {
                                Ok(n) => n,
                                Err(e) => return Err(batch::undo(txn, e).await),
                            },
                        };
                        let Drafted {
                            mut writes,
                            model,
                            timers,
                            search_row,
                        } = match draft.writes(backend, number) {
                            Ok(w) => w,
                            // Nothing was sent yet when the number was known.
                            Err(e) if known.is_some() => return Err(batch::JobError::untouched(e)),
                            Err(e) => return Err(batch::undo(txn, e).await),
                        };
                        if known.is_some() {
                            writes.prepend(stmt(
                                backend,
                                &format!("SAVEPOINT {}; {NEXT}", batch::JOB_SAVEPOINT),
                                vec![KIND.as_str().into()],
                            ));
                        }
                        writes.push(Statement::from_string(
                            backend,
                            format!("RELEASE {}", batch::JOB_SAVEPOINT),
                        ));
                        match writes.run(txn).await {
                            Ok(()) => {
                                memo.took_number(number);
                                memo.defer_search(search_row);
                                Ok((model, timers))
                            }
                            Err(e) => Err(batch::undo(txn, e).await),
                        }
                    })
                })
                .await
            }
        };
        let (model, timers) = written.map_err(|e| self.reference_gone(e))?;
        // The answer is built from what was written, not read back: the
        // names are the ones just resolved (the caller's from the
        // authenticated actor), the SLA targets the timers just started.
        let sla = sla::timer_views(&cfg.sla.clocks, &timers, t)?;
        let mut users: IdMap<UserRef> = [(requester.id.0, requester)].into_iter().collect();
        if let Some(u) = assignment.assignee {
            users.insert(u.id.0, u);
        }
        let groups: IdMap<GroupRef> = assignment.group.into_iter().map(|g| (g.id.0, g)).collect();
        Ok(view_of(actor, model, &users, &groups, sla))
    }

    /// An incident by id or number, if the caller may read it.
    pub async fn get_incident(&self, actor: &Actor, key: &str) -> Result<IncidentView, StoreError> {
        let reach = reach(actor)?;
        let key = Key::parse(key).ok_or(StoreError::NotFound("incident"))?;
        let loaded = load_one(self, key).await?;
        let m = loaded
            .models
            .first()
            .ok_or(StoreError::NotFound("incident"))?;
        check_reach(self.conn(), &reach, m).await?;
        self.views_of(actor, loaded)
            .await?
            .pop()
            .ok_or(StoreError::NotFound("incident"))
    }

    /// Changes fields. `if_match` must name the current version.
    pub async fn update_incident(
        &self,
        actor: &Actor,
        key: &str,
        if_match: i64,
        patch: IncidentPatch,
        matrix: &PriorityMatrix,
    ) -> Result<IncidentView, StoreError> {
        require_write(actor)?;
        let m = visible(self.conn(), actor, key).await?;
        check_version(&m, Some(if_match))?;
        keel_incident::ensure_editable(parse_state(&m.state))?;
        let agent = is_agent(actor);
        if !agent {
            if relation(actor, &m) != ActorRelation::Requester {
                return Err(StoreError::forbidden(
                    "incident.update_forbidden",
                    "only the requester or an agent may edit this incident",
                ));
            }
            let agent_only = [
                ("impact", patch.impact.is_some()),
                ("urgency", patch.urgency.is_some()),
                ("priority", patch.priority.is_some()),
                ("category", patch.category.is_some()),
                ("major", patch.major.is_some()),
                ("assignment_group", patch.assignment_group.is_some()),
                ("assignee", patch.assignee.is_some()),
            ];
            if let Some((f, _)) = agent_only.iter().find(|(_, set)| *set) {
                return Err(field_forbidden(f));
            }
        }
        let t = now();
        let mut changes: Vec<(&'static str, &'static str, Option<String>, Option<String>)> =
            Vec::new();
        let mut am = incident::ActiveModel {
            ..Default::default()
        };
        let mut reindex = false;
        if let Some(title) = patch
            .title
            .map(Title::into_string)
            .filter(|v| *v != m.title)
        {
            changes.push((
                "updated",
                "title",
                Some(m.title.clone()),
                Some(title.clone()),
            ));
            am.title = Set(title);
            reindex = true;
        }
        if let Some(d) = patch
            .description
            .map(Description::into_string)
            .filter(|v| *v != m.description)
        {
            changes.push((
                "updated",
                "description",
                Some(m.description.clone()),
                Some(d.clone()),
            ));
            am.description = Set(d);
            reindex = true;
        }
        if let Some(c) = patch.category.filter(|v| *v != m.category) {
            changes.push(("updated", "category", m.category.clone(), c.clone()));
            am.category = Set(c);
        }
        if let Some(major) = patch.major.filter(|v| *v != m.major) {
            changes.push((
                "updated",
                "major",
                Some(m.major.to_string()),
                Some(major.to_string()),
            ));
            am.major = Set(major);
        }
        // Impact, urgency and priority.
        let impact = patch.impact.map_or(m.impact, |i| i32::from(i.get()));
        let urgency = patch.urgency.map_or(m.urgency, |u| i32::from(u.get()));
        if impact != m.impact {
            changes.push((
                "updated",
                "impact",
                Some(m.impact.to_string()),
                Some(impact.to_string()),
            ));
            am.impact = Set(impact);
        }
        if urgency != m.urgency {
            changes.push((
                "updated",
                "urgency",
                Some(m.urgency.to_string()),
                Some(urgency.to_string()),
            ));
            am.urgency = Set(urgency);
        }
        let computed = || -> Result<i32, StoreError> {
            let i = matrix.impact(i64::from(impact))?;
            let u = matrix.urgency(i64::from(urgency))?;
            Ok(i32::from(matrix.priority(i, u).get()))
        };
        let (priority, overridden, override_action) = match patch.priority {
            Some(Some(p)) => (i32::from(p.get()), true, true),
            Some(None) => (computed()?, false, false),
            None if m.priority_overridden => (m.priority, true, false),
            None => (computed()?, false, false),
        };
        if priority != m.priority || (override_action && !m.priority_overridden) {
            let action = if override_action {
                "priority_overridden"
            } else {
                "updated"
            };
            changes.push((
                action,
                "priority",
                Some(m.priority.to_string()),
                Some(priority.to_string()),
            ));
            am.priority = Set(priority);
        }
        if overridden != m.priority_overridden {
            am.priority_overridden = Set(overridden);
        }
        // Assignment.
        let mut assignment_changed = false;
        if patch.assignment_group.is_some() || patch.assignee.is_some() {
            let group_key = match &patch.assignment_group {
                Some(g) => g.clone(),
                None => m.assignment_group_id.map(|g| g.to_string()),
            };
            let group_changed_only = patch.assignment_group.is_some() && patch.assignee.is_none();
            let resolved = self.resolve_assignment(group_key.as_deref(), None).await?;
            let assignee = match &patch.assignee {
                Some(a) => self
                    .resolve_assignment(group_key.as_deref(), a.as_deref())
                    .await?
                    .assignee_id(),
                // A new group keeps the assignee only if they belong to it.
                None => match (m.assignee_id, resolved.group_id()) {
                    (Some(a), Some(g)) if group_changed_only => {
                        is_member_in(self.conn(), GroupId(g), UserId(a))
                            .await?
                            .then_some(a)
                    }
                    (Some(_), None) => None,
                    (a, _) => a,
                },
            };
            let group_changed = resolved.group_id() != m.assignment_group_id;
            let assignee_changed = assignee != m.assignee_id;
            if group_changed {
                changes.push((
                    "updated",
                    "assignment_group",
                    m.assignment_group_id.map(|g| g.to_string()),
                    resolved.group_id().map(|g| g.to_string()),
                ));
                am.assignment_group_id = Set(resolved.group_id());
            }
            if assignee_changed {
                changes.push((
                    "updated",
                    "assignee",
                    m.assignee_id.map(|a| a.to_string()),
                    assignee.map(|a| a.to_string()),
                ));
                am.assignee_id = Set(assignee);
            }
            assignment_changed = group_changed || assignee_changed;
            let reassigned = (group_changed && m.assignment_group_id.is_some())
                || (assignee_changed && m.assignee_id.is_some());
            if reassigned {
                am.reassignment_count = Set(m.reassignment_count + 1);
            }
        }
        if changes.is_empty() {
            return self.view(actor, m.id).await;
        }
        am.version = Set(m.version + 1);
        am.updated_at = Set(t);
        let cfg = self.write_config().await?;
        let actor_id = actor.user_id;
        let actor_name = actor.display_name.clone();
        self.write(move |txn| {
            Box::pin(async move {
                save(txn, am, m.id, m.version).await?;
                for (action, field, old, new) in changes {
                    audit::write(
                        txn,
                        Entry::new(KIND, m.id, Some(actor_id), action, t)
                            .field(field)
                            .change(old, new),
                    )
                    .await?;
                }
                // The incident as saved, read once for the SLA, the notices and the
                // search row.
                let fresh = incident_by_id(txn, m.id)
                    .await?
                    .ok_or(StoreError::NotFound("incident"))?;
                sla::sync_loaded(txn, &cfg.sla, &fresh, SyncEvent::Changed, t).await?;
                webhooks::emit_loaded(txn, &cfg.hooks, "incident.updated", &fresh, None, t).await?;
                if assignment_changed {
                    let ctx = notify::incident_context(&fresh, Some(&actor_name));
                    let ask = Audience::of(&fresh).ask(Event::IncidentAssigned, Some(actor_id));
                    let to = cfg.audiences.resolve(txn, ask).await?;
                    let notice = notify::Notice {
                        event: Event::IncidentAssigned,
                        record_type: KIND.as_str(),
                        record_id: m.id,
                        actor: Some(actor_id),
                        context: ctx,
                        at: t,
                    };
                    notify::insert(txn, notify::row(notice, &to)).await?;
                }
                if reindex {
                    search::reindex(txn, &fresh).await?;
                }
                Ok(())
            })
        })
        .await?;
        self.view(actor, m.id).await
    }

    /// Moves an incident through its life cycle. Resolving a parent resolves
    /// its open children (and theirs) in the same transaction. Without
    /// `if_match`, a transition that lost a race with another change is
    /// re-evaluated against the new state instead of failing.
    pub async fn transition_incident(
        &self,
        actor: &Actor,
        key: &str,
        if_match: Option<i64>,
        req: TransitionRequest,
    ) -> Result<IncidentView, StoreError> {
        let mut attempts = 0;
        loop {
            match self
                .transition_once(actor, key, if_match, req.clone())
                .await
            {
                Err(StoreError::VersionMismatch { .. }) if if_match.is_none() && attempts < 5 => {
                    attempts += 1
                }
                other => return other,
            }
        }
    }

    async fn transition_once(
        &self,
        actor: &Actor,
        key: &str,
        if_match: Option<i64>,
        req: TransitionRequest,
    ) -> Result<IncidentView, StoreError> {
        require_write(actor)?;
        let m = visible(self.conn(), actor, key).await?;
        check_version(&m, if_match)?;
        let rel = relation(actor, &m);
        let input = TransitionInput {
            relation: rel,
            has_assignee: m.assignee_id.is_some(),
            hold_reason: req.hold_reason,
            resolution_code: req.resolution_code,
            resolution_notes: req.resolution_notes.clone(),
        };
        let effects = keel_incident::apply(parse_state(&m.state), req.action, &input)?;
        let mut assign_to = None;
        if effects.assign_actor {
            let group = m.assignment_group_id.ok_or_else(|| {
                StoreError::invalid(
                    "incident.assignment_group_required",
                    "assignment_group",
                    "assign the incident to a group before starting work on it",
                )
            })?;
            if !is_member_in(self.conn(), GroupId(group), actor.user_id).await? {
                return Err(StoreError::invalid(
                    "incident.assignee_not_in_group",
                    "assignee",
                    "you are not a member of the incident's assignment group",
                ));
            }
            assign_to = Some(actor.user_id.0);
        }
        let t = now();
        let cfg = self.write_config().await?;
        let actor_id = actor.user_id;
        let id = m.id;
        self.write(move |txn| {
            Box::pin(async move {
                apply_effects(txn, &cfg, Some(actor_id), &m, &effects, assign_to, t).await?;
                if effects.resolve_children {
                    resolve_descendants(txn, &cfg, actor_id, &m, &effects, t).await?;
                }
                Ok(())
            })
        })
        .await?;
        self.view(actor, id).await
    }

    /// Incidents the caller may read, filtered, sorted and paged.
    pub async fn list_incidents(
        &self,
        actor: &Actor,
        filter: &IncidentFilter,
        sort: Sort<IncidentSort>,
        limit: Limit,
        cursor: Option<&str>,
    ) -> Result<Page<IncidentView>, StoreError> {
        let reach = reach(actor)?;
        let cursor = cursor.map(|raw| cursor_bound(raw, sort)).transpose()?;
        let args = PageArgs {
            reach_user: match reach {
                Reach::All => None,
                Reach::Own(user) => Some(user.0),
            },
            priorities: filter.priorities.iter().map(|p| i32::from(*p)).collect(),
            assignee: filter.assignee.map(|a| a.map(|u| u.0)),
            group: filter.group.map(|g| g.map(|g| g.0)),
            requester: filter.requester.map(|r| r.0),
            major: filter.major,
            created_after: filter.created_after,
            created_before: filter.created_before,
            updated_after: filter.updated_after,
            updated_before: filter.updated_before,
            cursor,
        };
        // A page and the one row after it, which says there is a next page.
        let page = u64::from(limit.get()) + 1;
        let backend = self.backend();
        // Pages with neither full-text terms nor SLA conditions (a queue,
        // a requester's own list) take their statement's text as kept for
        // their shape, with their own values bound (`kept_pages`).
        if filter.terms.is_empty() && filter.sla.is_empty() {
            let shape = PageShape::of(backend, &args, &filter.states, sort, page);
            let stmt = kept_pages::statement(shape, &args, |bind| {
                let cond = page_condition(&args, bind);
                page_statement(
                    backend,
                    cond,
                    &args,
                    bind,
                    &filter.states,
                    sort,
                    page,
                    false,
                )
            });
            let loaded = load(self, stmt, Here::Try).await?;
            return self.page_of(actor, loaded, sort, limit).await;
        }
        let mut cond = page_condition(&args, Bind::Values);
        for f in &filter.sla {
            cond = cond.add(sla::sla_condition(*f, now()));
        }
        // A search in number order on SQLite is driven by the FTS5 table
        // (see `search::FTS_JOIN`); other searches test membership.
        let fts_driven = !filter.terms.is_empty()
            && sort.field == IncidentSort::Number
            && backend == DatabaseBackend::Sqlite;
        // A dense search of the whole desk, newest number first, on
        // PostgreSQL walks the number index with a plan kept per
        // connection (`search::matches`), its limit written into the text:
        // with a bound limit PostgreSQL would plan every search again.
        // Only with no other condition than the terms, whose rows the walk
        // finds as densely as the terms' own, and only newest first, where
        // density is measured (`search::Density::is_dense`).
        let mut kept_walk = false;
        if !filter.terms.is_empty() {
            let internal = matches!(reach, Reach::All);
            if fts_driven {
                cond = cond.add(search::fts_match(&filter.terms, internal));
            } else {
                let walkable = backend == DatabaseBackend::Sqlite
                    || (internal
                        && sort.field == IncidentSort::Number
                        && sort.dir == SortDir::Desc
                        && filter.terms_only());
                let dense = walkable
                    && self
                        .density
                        .is_dense(self.conn(), &filter.terms, internal, page)
                        .await?;
                kept_walk = dense && backend == DatabaseBackend::Postgres;
                cond = cond.add(search::matches(backend, &filter.terms, internal, dense));
            }
        }
        let mut stmt = page_statement(
            backend,
            cond,
            &args,
            Bind::Values,
            &filter.states,
            sort,
            page,
            fts_driven,
        );
        if kept_walk {
            stmt = search::limit_in_text(stmt, page);
        }
        // A search's walk is as long as its terms are rare, milliseconds at
        // 1 M incidents: never on this thread.
        let here = if fts_driven { Here::No } else { Here::Try };
        let loaded = load(self, stmt, here).await?;
        self.page_of(actor, loaded, sort, limit).await
    }

    /// A page of `loaded` (up to one row more than `limit`, which says
    /// that there is a next page) in `sort`'s order, whichever order the
    /// statement gave the rows in.
    async fn page_of(
        &self,
        actor: &Actor,
        mut loaded: Loaded,
        sort: Sort<IncidentSort>,
        limit: Limit,
    ) -> Result<Page<IncidentView>, StoreError> {
        loaded.models.sort_by(|a, b| {
            let by_field = match sort.field {
                IncidentSort::CreatedAt => a.created_at.cmp(&b.created_at),
                IncidentSort::UpdatedAt => a.updated_at.cmp(&b.updated_at),
                IncidentSort::Priority => a.priority.cmp(&b.priority),
                IncidentSort::Number => std::cmp::Ordering::Equal,
            };
            let ascending = by_field.then(a.number.cmp(&b.number));
            match sort.dir {
                SortDir::Asc => ascending,
                SortDir::Desc => ascending.reverse(),
            }
        });
        let field = sort.field;
        let next = page_next(&mut loaded.models, limit, |m| Cursor {
            sort: field.name().into(),
            dir: sort.dir,
            value: match field {
                IncidentSort::CreatedAt => m.created_at.to_rfc3339().into(),
                IncidentSort::UpdatedAt => m.updated_at.to_rfc3339().into(),
                IncidentSort::Priority => m.priority.into(),
                IncidentSort::Number => m.number.into(),
            },
            tiebreak: m.number.into(),
        });
        Ok(Page {
            items: self.views_of(actor, loaded).await?,
            next,
        })
    }

    /// Adds a public comment or an internal work note.
    pub async fn add_comment(
        &self,
        actor: &Actor,
        key: &str,
        body: CommentBody,
        visibility: Visibility,
    ) -> Result<CommentView, StoreError> {
        require_write(actor)?;
        let m = visible(self.conn(), actor, key).await?;
        let agent = is_agent(actor);
        if visibility == Visibility::Internal && !agent {
            return Err(StoreError::rule(
                "incident.internal_note_forbidden",
                ErrorClass::Forbidden,
                Some("visibility"),
                "only agents may write internal work notes",
            ));
        }
        keel_incident::ensure_editable(parse_state(&m.state))?;
        let t = now();
        let id = CommentId::new();
        let internal = visibility == Visibility::Internal;
        let resume = (!agent && !internal && relation(actor, &m) == ActorRelation::Requester)
            .then(|| {
                let hold = m.hold_reason.as_deref().and_then(|h| h.parse().ok());
                keel_incident::requester_reply(parse_state(&m.state), hold)
            })
            .flatten();
        let cfg = self.write_config().await?;
        let actor_id = actor.user_id;
        let actor_name = actor.display_name.clone();
        let text = body.into_string();
        let saved = text.clone();
        // Who hears of a public comment is found before the transaction, on
        // a read connection or kept (`audiences`), as for a create: the
        // writer is held for the writes only. The other side of the
        // conversation hears of it, and so do watchers.
        let heard = if internal {
            Vec::new()
        } else {
            let mut people = if agent {
                vec![m.requester_id]
            } else {
                Audience::of(&m).workers(self.conn()).await?
            };
            people.extend(notify::watchers_of(self.conn(), KIND.as_str(), m.id).await?);
            let ask = notify::Ask {
                event: Event::IncidentCommented,
                actor: Some(actor_id),
                people,
                group: None,
            };
            self.cache.audiences.resolve(self.conn(), ask).await?
        };
        self.write(move |txn| {
            Box::pin(async move {
                comment::Entity::insert(comment::ActiveModel {
                    id: Set(id.0),
                    record_type: Set(KIND.as_str().to_owned()),
                    record_id: Set(m.id),
                    author_id: Set(actor_id.0),
                    body: Set(text.as_str().to_owned()),
                    visibility: Set(visibility.as_str().to_owned()),
                    created_at: Set(t),
                })
                .exec_without_returning(txn)
                .await?;
                audit::write(
                    txn,
                    Entry::new(
                        KIND,
                        m.id,
                        Some(actor_id),
                        if internal {
                            "work_note_added"
                        } else {
                            "comment_added"
                        },
                        t,
                    )
                    .change(None, Some(id.to_string()))
                    .internal(internal),
                )
                .await?;
                match resume {
                    Some(effects) => {
                        match apply_effects(txn, &cfg, Some(actor_id), &m, &effects, None, t).await
                        {
                            // Someone changed the incident meanwhile: keep the comment, skip the resume.
                            Err(StoreError::VersionMismatch { .. }) => {
                                touch(txn, m.id, t, false).await?
                            }
                            other => other?,
                        }
                    }
                    None => {
                        touch(txn, m.id, t, agent && !internal).await?;
                        if agent && !internal {
                            sla::sync_incident(txn, &cfg.sla, m.id, SyncEvent::AgentUpdate, t)
                                .await?;
                        }
                    }
                }
                search::append_comment(txn, m.number, text.as_str(), internal).await?;
                if !internal {
                    let comment =
                        serde_json::json!({"id": id, "author_id": actor_id, "body": text.as_str()});
                    webhooks::emit_incident(
                        txn,
                        &cfg.hooks,
                        "incident.commented",
                        m.id,
                        Some(("comment", comment)),
                        t,
                    )
                    .await?;
                    let mut ctx = notify::incident_context(&m, Some(&actor_name));
                    ctx.insert("comment".into(), text.as_str().into());
                    let notice = notify::Notice {
                        event: Event::IncidentCommented,
                        record_type: KIND.as_str(),
                        record_id: m.id,
                        actor: Some(actor_id),
                        context: ctx,
                        at: t,
                    };
                    notify::insert(txn, notify::row(notice, &heard)).await?;
                }
                Ok(())
            })
        })
        .await?;
        // The author is the caller, named as authenticated (the actor
        // cache is cleared when a user changes on this node), not read back.
        Ok(CommentView {
            id,
            author: UserRef {
                id: actor.user_id,
                username: actor.username.clone(),
                display_name: actor.display_name.clone(),
            },
            body: saved,
            visibility,
            created_at: t,
        })
    }

    /// The timeline's comments, oldest first; requesters see public ones only.
    pub async fn list_comments(
        &self,
        actor: &Actor,
        key: &str,
        limit: Limit,
        cursor: Option<&str>,
    ) -> Result<Page<CommentView>, StoreError> {
        let m = visible(self.conn(), actor, key).await?;
        let mut q = comment::Entity::find()
            .filter(comment::Column::RecordType.eq(KIND.as_str()))
            .filter(comment::Column::RecordId.eq(m.id))
            .order_by_asc(comment::Column::Id);
        if !actor.can(Permission::IncidentReadAll) {
            q = q.filter(comment::Column::Visibility.eq(Visibility::Public.as_str()));
        }
        if let Some(c) = cursor {
            q = q.filter(comment::Column::Id.gt(uuid_cursor(c)?));
        }
        let mut rows = q.limit(u64::from(limit.get()) + 1).all(self.conn()).await?;
        let next = page_next(&mut rows, limit, |c| id_cursor(c.id));
        let authors: Vec<Uuid> = rows.iter().map(|c| c.author_id).collect();
        let users = user_refs(self.conn(), &authors).await?;
        let items = rows
            .into_iter()
            .map(|c| CommentView {
                id: CommentId(c.id),
                author: user_ref(&users, c.author_id),
                visibility: c.visibility.parse().unwrap_or(Visibility::Internal),
                body: c.body,
                created_at: c.created_at,
            })
            .collect();
        Ok(Page { items, next })
    }

    /// Checks the caller may attach to this incident; returns its id.
    pub async fn attachable_incident(
        &self,
        actor: &Actor,
        key: &str,
    ) -> Result<IncidentId, StoreError> {
        require_write(actor)?;
        let m = visible(self.conn(), actor, key).await?;
        keel_incident::ensure_editable(parse_state(&m.state))?;
        Ok(IncidentId(m.id))
    }

    /// Records an attachment whose bytes are already stored.
    pub async fn add_attachment(
        &self,
        actor: &Actor,
        key: &str,
        a: NewAttachment,
    ) -> Result<AttachmentView, StoreError> {
        require_write(actor)?;
        let m = visible(self.conn(), actor, key).await?;
        keel_incident::ensure_editable(parse_state(&m.state))?;
        let t = now();
        let txn = self.writer().begin().await?;
        attachment::Entity::insert(attachment::ActiveModel {
            id: Set(a.id.0),
            record_type: Set(KIND.as_str().to_owned()),
            record_id: Set(m.id),
            uploader_id: Set(actor.user_id.0),
            filename: Set(a.filename.clone()),
            content_type: Set(a.content_type.clone()),
            size_bytes: Set(a.size_bytes),
            sha256: Set(a.sha256.clone()),
            created_at: Set(t),
        })
        .exec_without_returning(&txn)
        .await?;
        audit::write(
            &txn,
            Entry::new(KIND, m.id, Some(actor.user_id), "attachment_added", t)
                .change(None, Some(a.filename.clone())),
        )
        .await?;
        touch(&txn, m.id, t, false).await?;
        txn.commit().await?;
        self.get_attachment(actor, key, a.id).await
    }

    pub async fn list_attachments(
        &self,
        actor: &Actor,
        key: &str,
    ) -> Result<Vec<AttachmentView>, StoreError> {
        let m = visible(self.conn(), actor, key).await?;
        let rows = attachment::Entity::find()
            .filter(attachment::Column::RecordType.eq(KIND.as_str()))
            .filter(attachment::Column::RecordId.eq(m.id))
            .order_by_asc(attachment::Column::Id)
            .all(self.conn())
            .await?;
        self.attachment_views(rows).await
    }

    pub async fn get_attachment(
        &self,
        actor: &Actor,
        key: &str,
        id: AttachmentId,
    ) -> Result<AttachmentView, StoreError> {
        let m = visible(self.conn(), actor, key).await?;
        let row = attachment::Entity::find_by_id(id.0)
            .filter(attachment::Column::RecordType.eq(KIND.as_str()))
            .filter(attachment::Column::RecordId.eq(m.id))
            .one(self.conn())
            .await?
            .ok_or(StoreError::NotFound("attachment"))?;
        self.attachment_views(vec![row])
            .await?
            .pop()
            .ok_or(StoreError::NotFound("attachment"))
    }

    async fn attachment_views(
        &self,
        rows: Vec<attachment::Model>,
    ) -> Result<Vec<AttachmentView>, StoreError> {
        let ids: Vec<Uuid> = rows.iter().map(|r| r.uploader_id).collect();
        let users = user_refs(self.conn(), &ids).await?;
        Ok(rows
            .into_iter()
            .map(|r| AttachmentView {
                id: AttachmentId(r.id),
                uploaded_by: user_ref(&users, r.uploader_id),
                filename: r.filename,
                content_type: r.content_type,
                size_bytes: r.size_bytes,
                sha256: r.sha256,
                created_at: r.created_at,
            })
            .collect())
    }

    /// Links this incident to another (agents only). `kind` is seen from this
    /// incident: `Parent` makes `target` its parent.
    pub async fn add_link(
        &self,
        actor: &Actor,
        key: &str,
        kind: LinkKind,
        target_key: &str,
    ) -> Result<LinkView, StoreError> {
        if !is_agent(actor) {
            return Err(StoreError::forbidden(
                "incident.link_forbidden",
                "only agents may link incidents",
            ));
        }
        let this = visible(self.conn(), actor, key).await?;
        let other = find_model(self.conn(), target_key).await?.ok_or_else(|| {
            StoreError::invalid("incident.unknown_link_target", "target", "no such incident")
        })?;
        if other.id == this.id {
            return Err(StoreError::invalid(
                "incident.self_link",
                "target",
                "an incident cannot be linked to itself",
            ));
        }
        let (source, stored_kind, target) = match kind {
            LinkKind::Parent => (&this, "child_of", &other),
            LinkKind::Child => (&other, "child_of", &this),
            LinkKind::DuplicateOf => (&this, "duplicate_of", &other),
            LinkKind::DuplicatedBy => (&other, "duplicate_of", &this),
        };
        if stored_kind == "child_of" {
            if self.parent_of(source.id).await?.is_some() {
                return Err(StoreError::conflict(
                    "incident.already_has_parent",
                    "the child incident already has a parent",
                ));
            }
            // The new parent must not descend from the child.
            let mut cur = Some(target.id);
            let mut hops = 0;
            while let Some(id) = cur {
                if id == source.id || hops > 1000 {
                    return Err(StoreError::invalid(
                        "incident.link_cycle",
                        "target",
                        "that link would make a cycle",
                    ));
                }
                cur = self.parent_of(id).await?;
                hops += 1;
            }
        }
        let t = now();
        let id = LinkId::new();
        let txn = self.writer().begin().await?;
        link::Entity::insert(link::ActiveModel {
            id: Set(id.0),
            source_type: Set(KIND.as_str().to_owned()),
            source_id: Set(source.id),
            kind: Set(stored_kind.to_owned()),
            target_type: Set(KIND.as_str().to_owned()),
            target_id: Set(target.id),
            created_by: Set(actor.user_id.0),
            created_at: Set(t),
        })
        .exec_without_returning(&txn)
        .await
        .map_err(|e| {
            crate::error::on_unique(
                e,
                &[(
                    "links_unique_key|links.source_type",
                    "incident.link_exists",
                    "the link exists",
                )],
            )
        })?;
        let number = |m: &incident::Model| RecordNumber::new(KIND, m.number).to_string();
        for (rec, other_number) in [(this.id, number(&other)), (other.id, number(&this))] {
            audit::write(
                &txn,
                Entry::new(KIND, rec, Some(actor.user_id), "link_added", t)
                    .field(if rec == this.id {
                        kind.as_str()
                    } else {
                        inverse(kind).as_str()
                    })
                    .change(None, Some(other_number)),
            )
            .await?;
        }
        txn.commit().await?;
        Ok(LinkView {
            id,
            kind,
            incident: incident_ref(&other),
            created_at: t,
        })
    }

    async fn parent_of(&self, child: Uuid) -> Result<Option<Uuid>, StoreError> {
        Ok(link::Entity::find()
            .filter(link::Column::SourceType.eq(KIND.as_str()))
            .filter(link::Column::SourceId.eq(child))
            .filter(link::Column::Kind.eq("child_of"))
            .one(self.conn())
            .await?
            .map(|l| l.target_id))
    }

    /// Links of this incident to incidents the caller may read.
    pub async fn list_links(&self, actor: &Actor, key: &str) -> Result<Vec<LinkView>, StoreError> {
        let this = visible(self.conn(), actor, key).await?;
        let rows = link::Entity::find()
            .filter(
                Condition::any()
                    .add(
                        Condition::all()
                            .add(link::Column::SourceType.eq(KIND.as_str()))
                            .add(link::Column::SourceId.eq(this.id)),
                    )
                    .add(
                        Condition::all()
                            .add(link::Column::TargetType.eq(KIND.as_str()))
                            .add(link::Column::TargetId.eq(this.id)),
                    ),
            )
            .order_by_asc(link::Column::CreatedAt)
            .all(self.conn())
            .await?;
        let other_ids: Vec<Uuid> = rows
            .iter()
            .map(|l| {
                if l.source_id == this.id {
                    l.target_id
                } else {
                    l.source_id
                }
            })
            .collect();
        let reach = reach(actor)?;
        let others: HashMap<Uuid, incident::Model> = incident::Entity::find()
            .filter(incident::Column::Id.is_in(other_ids))
            .filter(reach_condition(&reach))
            .all(self.conn())
            .await?
            .into_iter()
            .map(|m| (m.id, m))
            .collect();
        Ok(rows
            .into_iter()
            .filter_map(|l| {
                let outgoing = l.source_id == this.id;
                let other = others.get(if outgoing { &l.target_id } else { &l.source_id })?;
                let kind = match (l.kind.as_str(), outgoing) {
                    ("child_of", true) => LinkKind::Parent,
                    ("child_of", false) => LinkKind::Child,
                    ("duplicate_of", true) => LinkKind::DuplicateOf,
                    _ => LinkKind::DuplicatedBy,
                };
                Some(LinkView {
                    id: LinkId(l.id),
                    kind,
                    incident: incident_ref(other),
                    created_at: l.created_at,
                })
            })
            .collect())
    }

    pub async fn remove_link(
        &self,
        actor: &Actor,
        key: &str,
        link_id: LinkId,
    ) -> Result<(), StoreError> {
        if !is_agent(actor) {
            return Err(StoreError::forbidden(
                "incident.link_forbidden",
                "only agents may unlink incidents",
            ));
        }
        let this = visible(self.conn(), actor, key).await?;
        let l = link::Entity::find_by_id(link_id.0)
            .one(self.conn())
            .await?
            .filter(|l| l.source_id == this.id || l.target_id == this.id)
            .ok_or(StoreError::NotFound("link"))?;
        let t = now();
        let txn = self.writer().begin().await?;
        link::Entity::delete_by_id(l.id).exec(&txn).await?;
        for rec in [l.source_id, l.target_id] {
            audit::write(
                &txn,
                Entry::new(KIND, rec, Some(actor.user_id), "link_removed", t)
                    .field(if l.kind == "child_of" {
                        "parent"
                    } else {
                        "duplicate_of"
                    })
                    .change(Some(l.id.to_string()), None),
            )
            .await?;
        }
        txn.commit().await?;
        Ok(())
    }

    /// Adds a watcher. Agents may add anyone; others only themselves.
    pub async fn add_watcher(
        &self,
        actor: &Actor,
        key: &str,
        user_key: &str,
    ) -> Result<Vec<UserRef>, StoreError> {
        require_write(actor)?;
        let m = visible(self.conn(), actor, key).await?;
        let user = if is_agent(actor) {
            self.resolve_user(user_key)
                .await?
                .filter(|u| u.active)
                .ok_or_else(|| {
                    StoreError::invalid("incident.unknown_user", "user", "no such active user")
                })?
                .id
        } else if user_key.eq_ignore_ascii_case(&actor.username)
            || user_key == actor.user_id.0.to_string()
        {
            actor.user_id
        } else {
            return Err(StoreError::forbidden(
                "incident.watcher_forbidden",
                "requesters may only add themselves as watchers",
            ));
        };
        if !is_watcher(self.conn(), m.id, user).await? {
            let t = now();
            let txn = self.writer().begin().await?;
            watcher::Entity::insert(watcher::ActiveModel {
                record_type: Set(KIND.as_str().to_owned()),
                record_id: Set(m.id),
                user_id: Set(user.0),
                created_at: Set(t),
            })
            .on_conflict(
                sea_orm::sea_query::OnConflict::columns([
                    watcher::Column::RecordType,
                    watcher::Column::RecordId,
                    watcher::Column::UserId,
                ])
                .do_nothing()
                .to_owned(),
            )
            .exec_without_returning(&txn)
            .await?;
            audit::write(
                &txn,
                Entry::new(KIND, m.id, Some(actor.user_id), "watcher_added", t)
                    .change(None, Some(user.to_string())),
            )
            .await?;
            txn.commit().await?;
        }
        self.list_watchers(actor, key).await
    }

    pub async fn remove_watcher(
        &self,
        actor: &Actor,
        key: &str,
        user: UserId,
    ) -> Result<(), StoreError> {
        require_write(actor)?;
        let m = visible(self.conn(), actor, key).await?;
        if !is_agent(actor) && user != actor.user_id {
            return Err(StoreError::forbidden(
                "incident.watcher_forbidden",
                "requesters may only remove themselves",
            ));
        }
        let t = now();
        let txn = self.writer().begin().await?;
        let res = watcher::Entity::delete_by_id((KIND.as_str().to_owned(), m.id, user.0))
            .exec(&txn)
            .await?;
        if res.rows_affected == 0 {
            return Err(StoreError::NotFound("watcher"));
        }
        audit::write(
            &txn,
            Entry::new(KIND, m.id, Some(actor.user_id), "watcher_removed", t)
                .change(Some(user.to_string()), None),
        )
        .await?;
        txn.commit().await?;
        Ok(())
    }

    pub async fn list_watchers(
        &self,
        actor: &Actor,
        key: &str,
    ) -> Result<Vec<UserRef>, StoreError> {
        let m = visible(self.conn(), actor, key).await?;
        let ids: Vec<Uuid> = watcher::Entity::find()
            .filter(watcher::Column::RecordType.eq(KIND.as_str()))
            .filter(watcher::Column::RecordId.eq(m.id))
            .all(self.conn())
            .await?
            .into_iter()
            .map(|w| w.user_id)
            .collect();
        let mut refs: Vec<UserRef> = user_refs(self.conn(), &ids).await?.into_values().collect();
        refs.sort_by(|a, b| a.username.cmp(&b.username));
        Ok(refs)
    }

    /// Closes incidents resolved longer ago than `after` (the requester did
    /// not confirm or reopen them), at most `batch` at a time; the history
    /// records the system as the actor. Safe on several nodes at once: each
    /// close is version-checked, so a row closed elsewhere is skipped.
    pub async fn auto_close_resolved(
        &self,
        after: chrono::Duration,
        batch: u64,
    ) -> Result<u64, StoreError> {
        let cutoff = now() - after;
        let due = incident::Entity::find()
            .filter(incident::Column::State.eq(State::Resolved.as_str()))
            .filter(incident::Column::ResolvedAt.lt(cutoff))
            .order_by_asc(incident::Column::ResolvedAt)
            .limit(batch)
            .all(self.conn())
            .await?;
        let mut closed = 0;
        if due.is_empty() {
            return Ok(0);
        }
        let cfg = self.write_config().await?;
        for m in due {
            let input = TransitionInput::new(ActorRelation::Agent);
            let Ok(effects) = keel_incident::apply(State::Resolved, Action::Close, &input) else {
                continue;
            };
            let txn = self.writer().begin().await?;
            match apply_effects(&txn, &cfg, None, &m, &effects, None, now()).await {
                Ok(()) => {
                    txn.commit().await?;
                    closed += 1;
                }
                Err(StoreError::VersionMismatch { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(closed)
    }

    /// The audit history, oldest first; requesters never see internal entries.
    pub async fn incident_history(
        &self,
        actor: &Actor,
        key: &str,
        limit: Limit,
        cursor: Option<&str>,
    ) -> Result<Page<HistoryEntry>, StoreError> {
        let m = visible(self.conn(), actor, key).await?;
        let mut q = audit_event::Entity::find()
            .filter(audit_event::Column::RecordType.eq(KIND.as_str()))
            .filter(audit_event::Column::RecordId.eq(m.id))
            .order_by_asc(audit_event::Column::Id);
        if !actor.can(Permission::IncidentReadAll) {
            q = q.filter(audit_event::Column::Visibility.eq("public"));
        }
        if let Some(c) = cursor {
            let c = Cursor::decode(
                c,
                Sort {
                    field: IdSort,
                    dir: SortDir::Asc,
                },
            )?;
            q = q.filter(
                audit_event::Column::Id.gt(c.value.as_i64().ok_or(QueryError::InvalidCursor)?),
            );
        }
        let mut rows = q.limit(u64::from(limit.get()) + 1).all(self.conn()).await?;
        let next = page_next(&mut rows, limit, |e| Cursor {
            sort: "id".into(),
            dir: SortDir::Asc,
            value: e.id.into(),
            tiebreak: serde_json::Value::Null,
        });
        let ids: Vec<Uuid> = rows.iter().filter_map(|e| e.actor_id).collect();
        let users = user_refs(self.conn(), &ids).await?;
        Ok(Page {
            items: rows
                .into_iter()
                .map(|e| HistoryEntry {
                    id: e.id,
                    actor: e.actor_id.and_then(|a| users.get(&a).cloned()),
                    action: e.action,
                    field: e.field,
                    old_value: e.old_value,
                    new_value: e.new_value,
                    created_at: e.created_at,
                })
                .collect(),
            next,
        })
    }
}

/// Timeline entries page by their (time-ordered) id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct IdSort;
impl SortField for IdSort {
    const ALL: &'static [Self] = &[IdSort];
    fn name(self) -> &'static str {
        "id"
    }
}

fn id_cursor(id: Uuid) -> Cursor {
    Cursor {
        sort: "id".into(),
        dir: SortDir::Asc,
        value: id.to_string().into(),
        tiebreak: serde_json::Value::Null,
    }
}

fn uuid_cursor(raw: &str) -> Result<Uuid, StoreError> {
    let c = Cursor::decode(
        raw,
        Sort {
            field: IdSort,
            dir: SortDir::Asc,
        },
    )?;
    let s = c.value.as_str().ok_or(QueryError::InvalidCursor)?;
    Ok(Uuid::parse_str(s).map_err(|_| QueryError::InvalidCursor)?)
}

fn inverse(k: LinkKind) -> LinkKind {
    match k {
        LinkKind::Parent => LinkKind::Child,
        LinkKind::Child => LinkKind::Parent,
        LinkKind::DuplicateOf => LinkKind::DuplicatedBy,
        LinkKind::DuplicatedBy => LinkKind::DuplicateOf,
    }
}

fn incident_ref(m: &incident::Model) -> IncidentRef {
    IncidentRef {
        id: IncidentId(m.id),
        number: RecordNumber::new(KIND, m.number),
        title: m.title.clone(),
        state: parse_state(&m.state),
    }
}

/// Resolves the open descendants of `parent` (children, theirs, and so on)
/// in the parent's transaction.
async fn resolve_descendants(
    txn: &DatabaseTransaction,
    cfg: &WriteConfig,
    actor: UserId,
    parent: &incident::Model,
    effects: &keel_incident::Effects,
    t: Timestamp,
) -> Result<(), StoreError> {
    let Some((code, notes)) = effects.resolution.clone() else {
        return Ok(());
    };
    let mut seen: HashSet<Uuid> = HashSet::from([parent.id]);
    let mut queue: VecDeque<incident::Model> = VecDeque::from([parent.clone()]);
    while let Some(p) = queue.pop_front() {
        let child_ids: Vec<Uuid> = link::Entity::find()
            .filter(link::Column::Kind.eq("child_of"))
            .filter(link::Column::TargetType.eq(KIND.as_str()))
            .filter(link::Column::TargetId.eq(p.id))
            .all(txn)
            .await?
            .into_iter()
            .map(|l| l.source_id)
            .filter(|id| seen.insert(*id))
            .collect();
        let children = incident::Entity::find()
            .filter(incident::Column::Id.is_in(child_ids))
            .all(txn)
            .await?;
        for child in children {
            let input = TransitionInput {
                relation: ActorRelation::Agent,
                has_assignee: child.assignee_id.is_some(),
                hold_reason: None,
                resolution_code: Some(code),
                resolution_notes: Some(format!(
                    "Resolved with parent {}: {notes}",
                    RecordNumber::new(KIND, p.number)
                )),
            };
            if let Ok(e) = keel_incident::apply(parse_state(&child.state), Action::Resolve, &input)
            {
                apply_effects(txn, cfg, Some(actor), &child, &e, None, t).await?;
            }
            queue.push_back(child);
        }
    }
    Ok(())
}

/// Persists one transition's effects and its history entries.
async fn apply_effects(
    txn: &DatabaseTransaction,
    cfg: &WriteConfig,
    actor: Option<UserId>,
    m: &incident::Model,
    e: &keel_incident::Effects,
    assign_to: Option<Uuid>,
    t: Timestamp,
) -> Result<(), StoreError> {
    let mut am = incident::ActiveModel {
        state: Set(e.to.as_str().to_owned()),
        hold_reason: Set(e.hold_reason.map(|h| h.as_str().to_owned())),
        version: Set(m.version + 1),
        updated_at: Set(t),
        ..Default::default()
    };
    if let Some((code, notes)) = &e.resolution {
        am.resolution_code = Set(Some(code.as_str().to_owned()));
        am.resolution_notes = Set(Some(notes.clone()));
    }
    if e.clear_resolution {
        am.resolution_code = Set(None);
        am.resolution_notes = Set(None);
        am.resolved_at = Set(None);
    }
    if e.stamp_resolved {
        am.resolved_at = Set(Some(t));
    }
    if e.stamp_closed {
        am.closed_at = Set(Some(t));
    }
    if e.stamp_cancelled {
        am.cancelled_at = Set(Some(t));
    }
    if e.counts_as_response && m.first_response_at.is_none() {
        am.first_response_at = Set(Some(t));
    }
    if let Some(a) = assign_to {
        am.assignee_id = Set(Some(a));
    }
    save(txn, am, m.id, m.version).await?;
    sla::sync_incident(txn, &cfg.sla, m.id, SyncEvent::Changed, t).await?;
    webhooks::emit_incident(
        txn,
        &cfg.hooks,
        "incident.transitioned",
        m.id,
        Some(("previous_state", m.state.clone().into())),
        t,
    )
    .await?;
    let actor_name = notify::display_name(txn, actor).await?;
    let mut ctx = notify::incident_context(m, actor_name.as_deref());
    ctx.insert("state".into(), e.to.as_str().into());
    ctx.insert("previous_state".into(), m.state.clone().into());
    if let Some(h) = e.hold_reason {
        ctx.insert("hold_reason".into(), h.as_str().into());
    }
    if let Some((code, notes)) = &e.resolution {
        ctx.insert("resolution_code".into(), code.as_str().into());
        ctx.insert("resolution_notes".into(), notes.clone().into());
    }
    let mut people = vec![m.requester_id];
    people.extend(notify::watchers_of(txn, KIND.as_str(), m.id).await?);
    // The requester and the watchers, each once, without the actor, the
    // inactive and the opted out: kept, or read in this transaction.
    let ask = notify::Ask {
        event: Event::IncidentTransitioned,
        actor,
        people,
        group: None,
    };
    let to = cfg.audiences.resolve(txn, ask).await?;
    let notice = notify::Notice {
        event: Event::IncidentTransitioned,
        record_type: KIND.as_str(),
        record_id: m.id,
        actor,
        context: ctx,
        at: t,
    };
    notify::insert(txn, notify::row(notice, &to)).await?;
    let mut new_state = e.to.as_str().to_owned();
    if let Some(h) = e.hold_reason {
        new_state = format!("{new_state} ({})", h.as_str());
    }
    if let Some((code, _)) = &e.resolution {
        new_state = format!("{new_state} ({})", code.as_str());
    }
    let state_change = Entry::new(KIND, m.id, actor, "transition", t)
        .field("state")
        .change(Some(m.state.clone()), Some(new_state));
    audit::write(txn, state_change).await?;
    if let Some(a) = assign_to {
        let assigned = Entry::new(KIND, m.id, actor, "updated", t)
            .field("assignee")
            .change(m.assignee_id.map(|x| x.to_string()), Some(a.to_string()));
        audit::write(txn, assigned).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_page_writes_the_same_statement_as_sea_orms_find_on_either_database() {
        for backend in [DatabaseBackend::Sqlite, DatabaseBackend::Postgres] {
            assert_eq!(
                backend.build(&select_incidents(backend)),
                incident::Entity::find().build(backend)
            );
            // With a filter, an order and a limit, as a page has them.
            let cond = || {
                Condition::all()
                    .add(incident::Column::Priority.is_in([4, 5]))
                    .add(incident::Column::State.eq("new"))
            };
            let mut ours = select_incidents(backend);
            ours.cond_where(cond())
                .order_by_expr(
                    incident::Column::CreatedAt.into_simple_expr(),
                    sea_orm::Order::Desc,
                )
                .order_by_expr(
                    incident::Column::Number.into_simple_expr(),
                    sea_orm::Order::Desc,
                )
                .limit(51);
            let theirs = incident::Entity::find()
                .filter(cond())
                .order_by(incident::Column::CreatedAt, sea_orm::Order::Desc)
                .order_by(incident::Column::Number, sea_orm::Order::Desc)
                .limit(51)
                .build(backend);
            assert_eq!(backend.build(&ours), theirs);
        }
    }

    #[test]
    fn a_queues_shares_write_the_same_columns_as_sea_query_does() {
        let cond = Condition::all().add(incident::Column::Priority.is_in([4, 5]));
        let ours = newest_of_each(
            &[State::New, State::InProgress],
            &cond,
            sea_orm::Order::Desc,
            51,
            false,
        );
        let Some(Newest::Rows(ours)) = ours else {
            panic!("SQLite's shares are rows");
        };
        let share = |s: State| {
            state_share(&cond, &s)
                .columns(incident::Column::iter())
                .take()
        };
        let mut theirs = share(State::New);
        theirs.union(sea_orm::sea_query::UnionType::All, share(State::InProgress));
        assert_eq!(
            DatabaseBackend::Sqlite.build(&ours),
            DatabaseBackend::Sqlite.build(&theirs)
        );
        // PostgreSQL's whole-row shares write the same list.
        let theirs = share(State::New).build(sea_orm::sea_query::PostgresQueryBuilder);
        let ours = state_share(&cond, &State::New)
            .expr(Expr::cust(share_columns()))
            .build(sea_orm::sea_query::PostgresQueryBuilder);
        assert_eq!(ours, theirs);
    }

    #[test]
    fn a_get_binds_its_key_into_the_same_statement_sea_query_builds() {
        let id = Uuid::now_v7();
        for backend in [DatabaseBackend::Sqlite, DatabaseBackend::Postgres] {
            for key in [
                Key::Id(Uuid::nil()),
                Key::Id(id),
                Key::Number(42),
                Key::Number(7),
            ] {
                let cached = load_one_statement(backend, key);
                let built = key.select().build(backend);
                assert_eq!(cached.sql, built.sql, "{backend:?} {key:?}");
                assert_eq!(cached.values, built.values, "{backend:?} {key:?}");
            }
        }
    }

    #[test]
    fn a_key_is_an_id_or_an_incident_number() {
        let id = Uuid::now_v7();
        assert_eq!(Key::parse(&id.to_string()), Some(Key::Id(id)));
        assert_eq!(Key::parse("INC0000042"), Some(Key::Number(42)));
        assert_eq!(Key::parse("CHG0000042"), None);
        assert_eq!(Key::parse("nonsense"), None);
    }
}
