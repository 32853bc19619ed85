//! Request and response bodies: the public JSON contract. Store views are
//! converted here; entities never leave the store.

use chrono::{DateTime, Utc};
use keel_core::{Role, Scope};
use keel_incident::{Action, HoldReason, ResolutionCode, State, Visibility};
use keel_store::directory::{GroupRef, GroupView, UserRef, UserView};
use keel_store::incidents::{
    AttachmentView, CommentView, HistoryEntry, IncidentRef, IncidentView, LinkView,
};
use keel_store::sessions::ApiTokenView;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

pub mod rules;

/// Distinguishes a field that is absent from one that is `null`.
pub fn double_option<'de, T, D>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    T: Deserialize<'de>,
    D: Deserializer<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// A page of results.
#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T: ToSchema> {
    /// The items of this page.
    pub items: Vec<T>,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    pub next: Option<String>,
}

impl<T: ToSchema> Page<T> {
    pub fn all(items: Vec<T>) -> Self {
        Page { items, next: None }
    }
}

// ---------------------------------------------------------------- auth

/// Login with a username (or email address) and password.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"username": "admin", "password": "correct horse battery staple"}))]
pub struct LoginRequest {
    /// Username or email address.
    #[schema(max_length = 254)]
    pub username: String,
    #[schema(max_length = 1024)]
    pub password: String,
}

/// A new access token and refresh token.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenResponse {
    /// Short-lived JWT to send as `Authorization: Bearer ...`.
    pub access_token: String,
    /// Single-use token for `POST /api/v1/auth/refresh`; rotated on each use.
    pub refresh_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: i64,
}

/// A refresh token to exchange or revoke.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    #[schema(max_length = 512)]
    pub refresh_token: String,
}

/// Longest refresh token accepted (the `maxLength` above); Keel issues
/// shorter ones.
pub const REFRESH_TOKEN_MAX_CHARS: usize = 512;

/// Change one's own password.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    #[schema(max_length = 1024)]
    pub current_password: String,
    /// 10-1024 characters.
    #[schema(min_length = 10, max_length = 1024)]
    pub new_password: String,
}

/// A new API token.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "monitoring", "scopes": ["incidents:write"], "expires_at": "2027-01-01T00:00:00Z"}))]
pub struct NewApiToken {
    #[schema(schema_with = rules::api_token_name)]
    pub name: String,
    /// What the token may do, within its owner's roles; at least one.
    #[schema(min_items = 1)]
    pub scopes: Vec<Scope>,
    /// When the token stops working (in the future); never when absent.
    pub expires_at: Option<DateTime<Utc>>,
}

/// An API token (its secret is shown only once, at creation).
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiToken {
    pub id: Uuid,
    pub name: String,
    /// The first characters of the secret, to recognise it.
    pub prefix: String,
    pub scopes: Vec<Scope>,
    #[serde(serialize_with = "keel_core::time::rfc3339")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "keel_core::time::rfc3339_opt")]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "keel_core::time::rfc3339_opt")]
    pub last_used_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "keel_core::time::rfc3339_opt")]
    pub revoked_at: Option<DateTime<Utc>>,
    /// The secret: present only in the response that created the token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

impl From<ApiTokenView> for ApiToken {
    fn from(t: ApiTokenView) -> Self {
        ApiToken {
            id: t.id.0,
            name: t.name,
            prefix: t.prefix,
            scopes: t.scopes,
            created_at: t.created_at,
            expires_at: t.expires_at,
            last_used_at: t.last_used_at,
            revoked_at: t.revoked_at,
            token: None,
        }
    }
}

// ---------------------------------------------------------------- people

/// A short reference to a user.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserSummary {
    pub id: Uuid,
    pub username: String,
    pub display_name: String,
}

impl From<UserRef> for UserSummary {
    fn from(u: UserRef) -> Self {
        UserSummary {
            id: u.id.0,
            username: u.username,
            display_name: u.display_name,
        }
    }
}

/// A short reference to a group.
#[derive(Debug, Serialize, ToSchema)]
pub struct GroupSummary {
    pub id: Uuid,
    pub name: String,
}

impl From<GroupRef> for GroupSummary {
    fn from(g: GroupRef) -> Self {
        GroupSummary {
            id: g.id.0,
            name: g.name,
        }
    }
}

/// A user account.
#[derive(Debug, Serialize, ToSchema)]
pub struct User {
    pub id: Uuid,
    pub username: String,
    pub email: String,
    pub display_name: String,
    pub roles: Vec<Role>,
    /// Assignment groups the user belongs to.
    pub groups: Vec<GroupSummary>,
    /// Inactive users cannot log in and their tokens stop working.
    pub active: bool,
    #[serde(serialize_with = "keel_core::time::rfc3339")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "keel_core::time::rfc3339")]
    pub updated_at: DateTime<Utc>,
}

impl From<UserView> for User {
    fn from(u: UserView) -> Self {
        User {
            id: u.id.0,
            username: u.username,
            email: u.email,
            display_name: u.display_name,
            roles: u.roles,
            groups: u.groups.into_iter().map(Into::into).collect(),
            active: u.active,
            created_at: u.created_at,
            updated_at: u.updated_at,
        }
    }
}

/// A new user.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"username": "alice", "email": "alice@example.com", "display_name": "Alice Agent", "password": "a long password", "roles": ["agent"], "groups": ["Service Desk"]}))]
pub struct NewUser {
    #[schema(schema_with = rules::username)]
    pub username: String,
    /// An email address with a dotted domain, at most 254 characters
    /// (stored lowercase).
    #[schema(
        max_length = 254,
        pattern = r"^[!-?A-~]{1,64}@[!-\-/-?A-~]+(\.[!-\-/-?A-~]+)+$"
    )]
    pub email: String,
    #[schema(schema_with = rules::display_name)]
    pub display_name: Option<String>,
    /// 10-1024 characters.
    #[schema(min_length = 10, max_length = 1024)]
    pub password: String,
    /// At least one role.
    #[schema(min_items = 1)]
    pub roles: Vec<Role>,
    /// Group ids or names to join.
    #[serde(default)]
    pub groups: Vec<String>,
}

/// Changes to a user (admins only).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserUpdate {
    /// An email address with a dotted domain, at most 254 characters
    /// (stored lowercase).
    #[schema(
        max_length = 254,
        pattern = r"^[!-?A-~]{1,64}@[!-\-/-?A-~]+(\.[!-\-/-?A-~]+)+$"
    )]
    pub email: Option<String>,
    #[schema(schema_with = rules::display_name_update)]
    pub display_name: Option<String>,
    /// At least one role.
    #[schema(min_items = 1)]
    pub roles: Option<Vec<Role>>,
    pub active: Option<bool>,
    /// Sets a new password: 10-1024 characters.
    #[schema(min_length = 10, max_length = 1024)]
    pub password: Option<String>,
}

/// An assignment group.
#[derive(Debug, Serialize, ToSchema)]
pub struct Group {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    pub member_count: u64,
    #[serde(serialize_with = "keel_core::time::rfc3339")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "keel_core::time::rfc3339")]
    pub updated_at: DateTime<Utc>,
}

impl From<GroupView> for Group {
    fn from(g: GroupView) -> Self {
        Group {
            id: g.id.0,
            name: g.name,
            description: g.description,
            member_count: g.member_count,
            created_at: g.created_at,
            updated_at: g.updated_at,
        }
    }
}

/// A new group.
// Required fields of the `New*` bodies stay `Option`s, so that a missing one
// gets the same 422 and code as an invalid one; the schema marks them
// required.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "Service Desk", "description": "First line"}))]
pub struct NewGroup {
    #[schema(schema_with = rules::group_name, required = true)]
    pub name: Option<String>,
    #[schema(schema_with = rules::group_description)]
    pub description: Option<String>,
}

/// Changes to a group; send only what changes.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"description": "First and second line"}))]
pub struct GroupUpdate {
    #[schema(schema_with = rules::group_name_update)]
    pub name: Option<String>,
    #[schema(schema_with = rules::group_description)]
    pub description: Option<String>,
}

// ---------------------------------------------------------------- incidents

/// An incident.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "id": "01936f1e-8c2a-7cc0-9a56-0f5b7e0c1d2e", "number": "INC0000042", "title": "Mail is down",
    "description": "Outlook cannot connect", "impact": 1, "urgency": 2, "priority": 2,
    "priority_overridden": false, "category": "email", "major": false, "state": "in_progress",
    "hold_reason": null, "resolution_code": null, "resolution_notes": null,
    "requester": {"id": "01936f1e-8c2a-7cc0-9a56-0f5b7e0c1d2f", "username": "rita", "display_name": "Rita Requester"},
    "assignment_group": {"id": "01936f1e-8c2a-7cc0-9a56-0f5b7e0c1d30", "name": "Service Desk"},
    "assignee": {"id": "01936f1e-8c2a-7cc0-9a56-0f5b7e0c1d31", "username": "alice", "display_name": "Alice Agent"},
    "reassignment_count": 0, "version": 3,
    "created_at": "2026-11-22T09:00:00Z", "updated_at": "2026-11-22T09:05:00Z",
    "first_response_at": "2026-11-22T09:05:00Z", "resolved_at": null, "closed_at": null, "cancelled_at": null,
    "actions": ["hold", "resolve", "cancel"],
    "sla": [{"kind": "resolution", "due_at": "2026-11-22T13:00:00Z", "elapsed_secs": 300, "remaining_secs": 14100,
             "state": "in_progress", "percent": 2, "target_secs": 14400, "breached_at": null,
             "policy_id": "01936f1e-8c2a-7cc0-9a56-0f5b7e0c1d40"}]
}))]
pub struct Incident {
    pub id: Uuid,
    /// Human number, `INC` and at least seven digits.
    pub number: String,
    pub title: String,
    pub description: String,
    /// 1 = high ... 3 = low (4 with a four-level matrix).
    pub impact: u8,
    /// 1 = high ... 3 = low (4 with a four-level matrix).
    pub urgency: u8,
    /// 1 = critical ... 5 = planning; from the impact × urgency matrix unless overridden.
    pub priority: u8,
    /// Whether an agent set the priority by hand.
    pub priority_overridden: bool,
    pub category: Option<String>,
    /// A major incident (wide impact).
    pub major: bool,
    pub state: State,
    /// Why the incident waits, when `on_hold`.
    pub hold_reason: Option<HoldReason>,
    pub resolution_code: Option<ResolutionCode>,
    pub resolution_notes: Option<String>,
    /// Whom the incident is for.
    pub requester: UserSummary,
    pub assignment_group: Option<GroupSummary>,
    pub assignee: Option<UserSummary>,
    /// How often the group or assignee changed after first being set.
    pub reassignment_count: i32,
    /// Optimistic-concurrency version; the ETag is `"<version>"`.
    pub version: i64,
    #[serde(serialize_with = "keel_core::time::rfc3339")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "keel_core::time::rfc3339")]
    pub updated_at: DateTime<Utc>,
    /// First agent reaction visible to the requester.
    #[serde(serialize_with = "keel_core::time::rfc3339_opt")]
    pub first_response_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "keel_core::time::rfc3339_opt")]
    pub resolved_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "keel_core::time::rfc3339_opt")]
    pub closed_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "keel_core::time::rfc3339_opt")]
    pub cancelled_at: Option<DateTime<Utc>>,
    /// Transitions the caller may apply now.
    pub actions: Vec<Action>,
    /// SLA targets (first response, resolution, next update), as of now.
    pub sla: Vec<SlaTarget>,
}

/// The `Incident` a view stands for. Responses do not make it: `reply.rs`
/// writes the view itself, and its tests hold those bytes equal to this
/// conversion's through serde, so this is the definition they keep to.
impl From<IncidentView> for Incident {
    fn from(v: IncidentView) -> Self {
        Incident {
            id: v.id.0,
            number: v.number.text(),
            title: v.title,
            description: v.description,
            impact: v.impact,
            urgency: v.urgency,
            priority: v.priority,
            priority_overridden: v.priority_overridden,
            category: v.category,
            major: v.major,
            state: v.state,
            hold_reason: v.hold_reason,
            resolution_code: v.resolution_code,
            resolution_notes: v.resolution_notes,
            requester: v.requester.into(),
            assignment_group: v.assignment_group.map(Into::into),
            assignee: v.assignee.map(Into::into),
            reassignment_count: v.reassignment_count,
            version: v.version,
            created_at: v.created_at,
            updated_at: v.updated_at,
            first_response_at: v.first_response_at,
            resolved_at: v.resolved_at,
            closed_at: v.closed_at,
            cancelled_at: v.cancelled_at,
            actions: v.actions,
            sla: v.sla.into_iter().map(Into::into).collect(),
        }
    }
}

/// A new incident.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"title": "Mail is down", "description": "Outlook cannot connect since 9:00", "impact": 1, "urgency": 2}))]
pub struct NewIncident {
    #[schema(schema_with = rules::title)]
    pub title: String,
    #[serde(default)]
    #[schema(schema_with = rules::description)]
    pub description: String,
    /// 1 = high ... 3 = low (4 with a four-level priority matrix; the
    /// configured matrix decides how many levels there are).
    #[schema(minimum = 1, maximum = 4)]
    pub impact: i64,
    /// 1 = high ... 3 = low (4 with a four-level priority matrix).
    #[schema(minimum = 1, maximum = 4)]
    pub urgency: i64,
    /// Agents only: override the computed priority (1-5).
    #[schema(minimum = 1, maximum = 5)]
    pub priority: Option<i64>,
    #[schema(schema_with = rules::category)]
    pub category: Option<String>,
    /// Agents only.
    #[serde(default)]
    pub major: bool,
    /// User id or username (agents only; requesters raise for themselves).
    pub requester: Option<String>,
    /// Group id or name (agents only).
    pub assignment_group: Option<String>,
    /// User id or username; must be an agent in the group (agents only).
    pub assignee: Option<String>,
}

/// Field changes; send only what changes. `null` clears a nullable field
/// (`priority: null` returns to the computed priority).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"urgency": 1, "assignee": "alice"}))]
pub struct IncidentUpdate {
    #[schema(schema_with = rules::title_update)]
    pub title: Option<String>,
    #[schema(schema_with = rules::description_update)]
    pub description: Option<String>,
    /// 1 = high ... 3 = low (4 with a four-level priority matrix).
    #[schema(minimum = 1, maximum = 4)]
    pub impact: Option<i64>,
    /// 1 = high ... 3 = low (4 with a four-level priority matrix).
    #[schema(minimum = 1, maximum = 4)]
    pub urgency: Option<i64>,
    /// 1-5; `null` returns to the computed priority.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 5)]
    pub priority: Option<Option<i64>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(schema_with = rules::category)]
    pub category: Option<Option<String>>,
    pub major: Option<bool>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub assignment_group: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub assignee: Option<Option<String>>,
}

/// A transition to apply.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"action": "resolve", "resolution_code": "solved_permanently", "resolution_notes": "Restarted the mail relay"}))]
pub struct TransitionInput {
    pub action: Action,
    /// Required by `hold`.
    pub hold_reason: Option<HoldReason>,
    /// Required by `resolve`.
    pub resolution_code: Option<ResolutionCode>,
    /// Required by `resolve`: 1-4000 characters (other actions ignore it).
    pub resolution_notes: Option<String>,
}

/// A comment or internal work note.
#[derive(Debug, Serialize, ToSchema)]
pub struct Comment {
    pub id: Uuid,
    pub author: UserSummary,
    pub body: String,
    pub visibility: Visibility,
    #[serde(serialize_with = "keel_core::time::rfc3339")]
    pub created_at: DateTime<Utc>,
}

impl From<CommentView> for Comment {
    fn from(c: CommentView) -> Self {
        Comment {
            id: c.id.0,
            author: c.author.into(),
            body: c.body,
            visibility: c.visibility,
            created_at: c.created_at,
        }
    }
}

/// A new comment.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"body": "Could you try again now?", "visibility": "public"}))]
pub struct NewComment {
    #[schema(schema_with = rules::comment_body)]
    pub body: String,
    /// `public` (the requester sees it) or `internal` (agents only). Default `public`.
    #[serde(default = "public")]
    pub visibility: Visibility,
}

fn public() -> Visibility {
    Visibility::Public
}

/// An attachment's metadata.
#[derive(Debug, Serialize, ToSchema)]
pub struct Attachment {
    pub id: Uuid,
    pub filename: String,
    pub content_type: String,
    pub size_bytes: i64,
    /// Hex SHA-256 of the content.
    pub sha256: String,
    pub uploaded_by: UserSummary,
    #[serde(serialize_with = "keel_core::time::rfc3339")]
    pub created_at: DateTime<Utc>,
}

impl From<AttachmentView> for Attachment {
    fn from(a: AttachmentView) -> Self {
        Attachment {
            id: a.id.0,
            filename: a.filename,
            content_type: a.content_type,
            size_bytes: a.size_bytes,
            sha256: a.sha256,
            uploaded_by: a.uploaded_by.into(),
            created_at: a.created_at,
        }
    }
}

/// Multipart upload form: one part named `file` (other parts are skipped).
#[derive(Debug, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AttachmentUpload {
    /// The file (one part named `file`).
    #[schema(value_type = String, format = Binary)]
    pub file: Vec<u8>,
}

/// How a linked incident relates to this one.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
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

impl From<LinkKind> for keel_store::incidents::LinkKind {
    fn from(k: LinkKind) -> Self {
        use keel_store::incidents::LinkKind as S;
        match k {
            LinkKind::Parent => S::Parent,
            LinkKind::Child => S::Child,
            LinkKind::DuplicateOf => S::DuplicateOf,
            LinkKind::DuplicatedBy => S::DuplicatedBy,
        }
    }
}

impl From<keel_store::incidents::LinkKind> for LinkKind {
    fn from(k: keel_store::incidents::LinkKind) -> Self {
        use keel_store::incidents::LinkKind as S;
        match k {
            S::Parent => LinkKind::Parent,
            S::Child => LinkKind::Child,
            S::DuplicateOf => LinkKind::DuplicateOf,
            S::DuplicatedBy => LinkKind::DuplicatedBy,
        }
    }
}

/// A new link.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"kind": "parent", "target": "INC0000001"}))]
pub struct NewLink {
    pub kind: LinkKind,
    /// The other incident's id or number.
    pub target: String,
}

/// Another incident, briefly.
#[derive(Debug, Serialize, ToSchema)]
pub struct IncidentSummary {
    pub id: Uuid,
    pub number: String,
    pub title: String,
    pub state: State,
}

impl From<IncidentRef> for IncidentSummary {
    fn from(r: IncidentRef) -> Self {
        IncidentSummary {
            id: r.id.0,
            number: r.number.text(),
            title: r.title,
            state: r.state,
        }
    }
}

/// A link to another incident.
#[derive(Debug, Serialize, ToSchema)]
pub struct Link {
    pub id: Uuid,
    pub kind: LinkKind,
    pub incident: IncidentSummary,
    #[serde(serialize_with = "keel_core::time::rfc3339")]
    pub created_at: DateTime<Utc>,
}

impl From<LinkView> for Link {
    fn from(l: LinkView) -> Self {
        Link {
            id: l.id.0,
            kind: l.kind.into(),
            incident: l.incident.into(),
            created_at: l.created_at,
        }
    }
}

/// A watcher to add.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewWatcher {
    /// User id or username (requesters may add only themselves).
    pub user: String,
}

/// An audit history entry.
#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryItem {
    pub id: i64,
    /// Who did it; `null` for the system.
    pub actor: Option<UserSummary>,
    /// `created`, `updated`, `priority_overridden`, `transition`, `comment_added`,
    /// `work_note_added`, `attachment_added`, `link_added`, `link_removed`,
    /// `watcher_added`, `watcher_removed`.
    pub action: String,
    pub field: Option<String>,
    pub old_value: Option<String>,
    pub new_value: Option<String>,
    #[serde(serialize_with = "keel_core::time::rfc3339")]
    pub created_at: DateTime<Utc>,
}

impl From<HistoryEntry> for HistoryItem {
    fn from(h: HistoryEntry) -> Self {
        HistoryItem {
            id: h.id,
            actor: h.actor.map(Into::into),
            action: h.action,
            field: h.field,
            old_value: h.old_value,
            new_value: h.new_value,
            created_at: h.created_at,
        }
    }
}

/// Readiness.
#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// `ready` or `unavailable`.
    pub status: String,
}

// ---------------------------------------------------------------- SLA

/// One SLA target of a record, as of the response.
#[derive(Debug, Serialize, ToSchema)]
pub struct SlaTarget {
    pub kind: keel_sla::TargetKind,
    /// When the target is reached if the clock keeps running; `null` while paused.
    #[serde(serialize_with = "keel_core::time::rfc3339_opt")]
    pub due_at: Option<DateTime<Utc>>,
    /// Business seconds used so far.
    pub elapsed_secs: i64,
    /// Business seconds left; negative once breached.
    pub remaining_secs: i64,
    pub state: keel_sla::TimerState,
    /// Elapsed as a percentage of the target (may exceed 100).
    pub percent: u32,
    /// The target's length in business seconds.
    pub target_secs: i64,
    /// When the breach was recorded.
    #[serde(serialize_with = "keel_core::time::rfc3339_opt")]
    pub breached_at: Option<DateTime<Utc>>,
    /// The policy that set the target.
    pub policy_id: Option<Uuid>,
}

impl From<keel_store::sla::SlaTimerView> for SlaTarget {
    fn from(v: keel_store::sla::SlaTimerView) -> Self {
        SlaTarget {
            kind: v.kind,
            due_at: v.status.due_at,
            elapsed_secs: v.status.elapsed_secs,
            remaining_secs: v.status.remaining_secs,
            state: v.status.state,
            percent: v.status.percent,
            target_secs: v.target_secs,
            breached_at: v.breached_at,
            policy_id: v.policy_id,
        }
    }
}

/// A holiday: one date, or the same day every year.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HolidayDto {
    /// `{"date": "2026-12-25"}`
    Date(chrono::NaiveDate),
    /// `{"yearly": {"month": 12, "day": 25}}`; the day must exist in that
    /// month (29 February counts in leap years only).
    Yearly {
        #[schema(minimum = 1, maximum = 12)]
        month: u32,
        #[schema(minimum = 1, maximum = 31)]
        day: u32,
    },
}

/// Local working time from one time of day to a later one, `"HH:MM-HH:MM"`
/// (`24:00` ends a day).
// Schema only: the ranges in `WeekDto` and `ExceptionDto` are strings.
#[derive(Debug, ToSchema)]
#[schema(
    value_type = String,
    pattern = r"^([01][0-9]|2[0-3]):[0-5][0-9]-(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$",
    example = "09:00-17:30"
)]
pub struct HoursRange(pub String);

/// Working hours per weekday as `"HH:MM-HH:MM"` ranges in local time
/// (`24:00` ends a day), at most 24 a day, each starting before it ends,
/// sorted and not overlapping; a missing day is not worked.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct WeekDto {
    #[schema(value_type = Vec<HoursRange>, max_items = 24)]
    pub monday: Vec<String>,
    #[schema(value_type = Vec<HoursRange>, max_items = 24)]
    pub tuesday: Vec<String>,
    #[schema(value_type = Vec<HoursRange>, max_items = 24)]
    pub wednesday: Vec<String>,
    #[schema(value_type = Vec<HoursRange>, max_items = 24)]
    pub thursday: Vec<String>,
    #[schema(value_type = Vec<HoursRange>, max_items = 24)]
    pub friday: Vec<String>,
    #[schema(value_type = Vec<HoursRange>, max_items = 24)]
    pub saturday: Vec<String>,
    #[schema(value_type = Vec<HoursRange>, max_items = 24)]
    pub sunday: Vec<String>,
}

/// A date with its own working hours (`[]` closes it); wins over the week and holidays.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExceptionDto {
    pub date: chrono::NaiveDate,
    /// `"HH:MM-HH:MM"` ranges in local time, sorted and not overlapping.
    #[schema(value_type = Vec<HoursRange>)]
    pub hours: Vec<String>,
}

/// A business calendar.
#[derive(Debug, Serialize, ToSchema)]
pub struct SlaCalendar {
    pub id: Uuid,
    pub name: String,
    /// IANA time zone, e.g. `Europe/Berlin`.
    pub tz: String,
    pub week: WeekDto,
    pub holidays: Vec<HolidayDto>,
    pub exceptions: Vec<ExceptionDto>,
    #[serde(serialize_with = "keel_core::time::rfc3339")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "keel_core::time::rfc3339")]
    pub updated_at: DateTime<Utc>,
}

/// A new business calendar.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "Berlin office", "tz": "Europe/Berlin",
    "week": {"monday": ["09:00-17:00"], "tuesday": ["09:00-17:00"], "wednesday": ["09:00-17:00"],
             "thursday": ["09:00-17:00"], "friday": ["09:00-13:00"]},
    "holidays": [{"yearly": {"month": 12, "day": 25}}, {"date": "2026-04-03"}],
    "exceptions": [{"date": "2026-12-24", "hours": ["09:00-12:00"]}]}))]
pub struct NewSlaCalendar {
    #[schema(schema_with = rules::sla_name, required = true)]
    pub name: Option<String>,
    /// An IANA time zone, e.g. `Europe/Berlin`.
    #[schema(value_type = String, required = true)]
    pub tz: Option<String>,
    /// No working hours when absent.
    pub week: Option<WeekDto>,
    pub holidays: Option<Vec<HolidayDto>>,
    /// At most one per date.
    pub exceptions: Option<Vec<ExceptionDto>>,
}

/// Changes to a business calendar; send only what changes.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"holidays": [{"yearly": {"month": 12, "day": 25}}, {"yearly": {"month": 12, "day": 26}}]}))]
pub struct SlaCalendarUpdate {
    #[schema(schema_with = rules::sla_name_update)]
    pub name: Option<String>,
    /// An IANA time zone, e.g. `Europe/Berlin`.
    pub tz: Option<String>,
    pub week: Option<WeekDto>,
    pub holidays: Option<Vec<HolidayDto>>,
    /// At most one per date.
    pub exceptions: Option<Vec<ExceptionDto>>,
}

/// An SLA policy.
#[derive(Debug, Serialize, ToSchema)]
pub struct SlaPolicy {
    pub id: Uuid,
    pub name: String,
    /// Policies are tried in ascending position; the first match applies.
    pub position: i32,
    pub active: bool,
    pub definition: keel_sla::PolicySpec,
    #[serde(serialize_with = "keel_core::time::rfc3339")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "keel_core::time::rfc3339")]
    pub updated_at: DateTime<Utc>,
}

impl From<keel_store::sla::PolicyView> for SlaPolicy {
    fn from(p: keel_store::sla::PolicyView) -> Self {
        SlaPolicy {
            id: p.id,
            name: p.name,
            position: p.position,
            active: p.active,
            definition: p.spec,
            created_at: p.created_at,
            updated_at: p.updated_at,
        }
    }
}

/// A new policy.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "P1 incidents", "position": 10,
    "definition": {"conditions": {"priorities": [1]},
        "targets": [{"kind": "first_response", "secs": 900}, {"kind": "resolution", "secs": 14400}],
        "pause_states": ["on_hold"], "warn_percents": [75, 90],
        "escalations": [{"target": "resolution", "on": "breach", "action": "raise_priority"}]}}))]
pub struct NewSlaPolicy {
    #[schema(schema_with = rules::sla_name, required = true)]
    pub name: Option<String>,
    /// Policies are tried in ascending position; default 100.
    #[schema(minimum = -2147483648, maximum = 2147483647)]
    pub position: Option<i32>,
    /// Default `true`.
    pub active: Option<bool>,
    #[schema(value_type = keel_sla::PolicySpec, required = true)]
    pub definition: Option<keel_sla::PolicySpec>,
}

/// Changes to a policy; send only what changes.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"position": 20, "active": false}))]
pub struct SlaPolicyUpdate {
    #[schema(schema_with = rules::sla_name_update)]
    pub name: Option<String>,
    #[schema(minimum = -2147483648, maximum = 2147483647)]
    pub position: Option<i32>,
    pub active: Option<bool>,
    pub definition: Option<keel_sla::PolicySpec>,
}

/// Outcome counts of SLA targets.
#[derive(Debug, Serialize, ToSchema)]
pub struct Compliance {
    pub total: u64,
    pub met: u64,
    /// Breached, including running targets already past due.
    pub breached: u64,
    /// Running and not yet due.
    pub in_progress: u64,
    /// Met as a percentage of met + breached; `null` when none is decided.
    pub compliance_percent: Option<f64>,
}

impl From<keel_store::sla::Compliance> for Compliance {
    fn from(c: keel_store::sla::Compliance) -> Self {
        Compliance {
            total: c.total,
            met: c.met,
            breached: c.breached,
            in_progress: c.in_progress,
            compliance_percent: c.percent().map(|p| (p * 10.0).round() / 10.0),
        }
    }
}

/// A policy, briefly.
#[derive(Debug, Serialize, ToSchema)]
pub struct PolicySummary {
    pub id: Uuid,
    pub name: String,
}

/// Compliance of one policy (`policy` is `null` for deleted policies).
#[derive(Debug, Serialize, ToSchema)]
pub struct PolicyCompliance {
    pub policy: Option<PolicySummary>,
    pub compliance: Compliance,
}

/// Compliance of one assignment group (`group` is `null` for unassigned).
#[derive(Debug, Serialize, ToSchema)]
pub struct GroupCompliance {
    pub group: Option<GroupSummary>,
    pub compliance: Compliance,
}

/// Compliance of one priority.
#[derive(Debug, Serialize, ToSchema)]
pub struct PriorityCompliance {
    pub priority: u8,
    pub compliance: Compliance,
}

/// SLA compliance of the incidents created in a period.
#[derive(Debug, Serialize, ToSchema)]
pub struct SlaReport {
    #[serde(serialize_with = "keel_core::time::rfc3339")]
    pub from: DateTime<Utc>,
    #[serde(serialize_with = "keel_core::time::rfc3339")]
    pub to: DateTime<Utc>,
    /// The kind of target counted; all kinds when `null`.
    pub kind: Option<keel_sla::TargetKind>,
    pub overall: Compliance,
    pub by_policy: Vec<PolicyCompliance>,
    pub by_group: Vec<GroupCompliance>,
    pub by_priority: Vec<PriorityCompliance>,
}

/// Whether the caller is emailed about one kind of event.
#[derive(Debug, Serialize, ToSchema)]
pub struct NotificationPref {
    /// `incident.created`, `incident.assigned`, `incident.commented`,
    /// `incident.transitioned`, `sla.warning` or `sla.breached`.
    pub event: String,
    pub enabled: bool,
}

/// Turn one kind of notification on or off.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NotificationPrefInput {
    pub enabled: bool,
}

/// What Keel made of an inbound email.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"outcome": "commented", "number": "INC0000042", "reason": null}))]
pub struct InboundResult {
    /// `created` (a new incident), `commented` (a reply to an open incident) or `ignored` (an auto-reply or bounce).
    pub outcome: String,
    /// The incident concerned.
    pub number: Option<String>,
    /// Why it was ignored.
    pub reason: Option<String>,
}

impl From<crate::inbound::Outcome> for InboundResult {
    fn from(o: crate::inbound::Outcome) -> Self {
        use crate::inbound::Outcome;
        match o {
            Outcome::Created(n) => InboundResult {
                outcome: "created".into(),
                number: Some(n),
                reason: None,
            },
            Outcome::Commented(n) => InboundResult {
                outcome: "commented".into(),
                number: Some(n),
                reason: None,
            },
            Outcome::Ignored(r) => InboundResult {
                outcome: "ignored".into(),
                number: None,
                reason: Some(r.into()),
            },
        }
    }
}

/// A webhook subscription.
#[derive(Debug, Serialize, ToSchema)]
pub struct Webhook {
    pub id: Uuid,
    /// Where events are POSTed.
    pub url: String,
    /// Event types, or `*` for all.
    pub events: Vec<String>,
    pub active: bool,
    #[serde(serialize_with = "keel_core::time::rfc3339")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "keel_core::time::rfc3339")]
    pub updated_at: DateTime<Utc>,
    /// The signing secret: only in the response that created or changed it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

impl From<keel_store::webhooks::WebhookView> for Webhook {
    fn from(w: keel_store::webhooks::WebhookView) -> Self {
        Webhook {
            id: w.id,
            url: w.url,
            events: w.events,
            active: w.active,
            created_at: w.created_at,
            updated_at: w.updated_at,
            secret: None,
        }
    }
}

/// An event a webhook can subscribe to, or `*` for all.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
pub enum WebhookEvent {
    #[serde(rename = "incident.created")]
    IncidentCreated,
    #[serde(rename = "incident.updated")]
    IncidentUpdated,
    #[serde(rename = "incident.transitioned")]
    IncidentTransitioned,
    #[serde(rename = "incident.commented")]
    IncidentCommented,
    #[serde(rename = "sla.warning")]
    SlaWarning,
    #[serde(rename = "sla.breached")]
    SlaBreached,
    /// Every event.
    #[serde(rename = "*")]
    All,
}

/// A new subscription.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"url": "https://hooks.example.com/keel", "events": ["incident.created", "sla.breached"]}))]
pub struct NewWebhook {
    /// An `http` or `https` URL without credentials, at most 2000
    /// characters; internal addresses are refused unless configuration
    /// allows them.
    #[schema(value_type = String, required = true, format = "uri", max_length = 2000, pattern = "^[Hh][Tt][Tt][Pp][Ss]?://")]
    pub url: Option<String>,
    /// At least one.
    #[schema(value_type = Vec<WebhookEvent>, required = true, min_items = 1)]
    pub events: Option<Vec<String>>,
    /// Default `true`.
    pub active: Option<bool>,
    /// 16-200 characters; generated when absent.
    #[schema(min_length = 16, max_length = 200)]
    pub secret: Option<String>,
}

/// Changes to a subscription; send only what changes.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"events": ["*"]}))]
pub struct WebhookUpdate {
    /// An `http` or `https` URL without credentials, at most 2000
    /// characters; internal addresses are refused unless configuration
    /// allows them.
    #[schema(
        format = "uri",
        max_length = 2000,
        pattern = "^[Hh][Tt][Tt][Pp][Ss]?://"
    )]
    pub url: Option<String>,
    /// At least one.
    #[schema(value_type = Option<Vec<WebhookEvent>>, min_items = 1)]
    pub events: Option<Vec<String>>,
    pub active: Option<bool>,
    /// 16-200 characters.
    #[schema(min_length = 16, max_length = 200)]
    pub secret: Option<String>,
}

/// One delivery of an event to a subscription.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookDelivery {
    pub id: Uuid,
    pub event: String,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    pub attempts: i32,
    /// The receiver's HTTP status on the last attempt.
    pub response_status: Option<i32>,
    pub latency_ms: Option<i64>,
    pub last_error: Option<String>,
    #[serde(serialize_with = "keel_core::time::rfc3339")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "keel_core::time::rfc3339_opt")]
    pub delivered_at: Option<DateTime<Utc>>,
    /// When a pending delivery is tried next.
    #[serde(serialize_with = "keel_core::time::rfc3339_opt")]
    pub next_attempt_at: Option<DateTime<Utc>>,
}

impl From<keel_store::webhooks::DeliveryView> for WebhookDelivery {
    fn from(d: keel_store::webhooks::DeliveryView) -> Self {
        WebhookDelivery {
            id: d.id,
            event: d.event,
            status: d.status,
            attempts: d.attempts,
            response_status: d.response_status,
            latency_ms: d.latency_ms,
            last_error: d.last_error,
            created_at: d.created_at,
            delivered_at: d.delivered_at,
            next_attempt_at: d.next_attempt_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::WebhookEvent;

    #[test]
    fn the_documented_webhook_events_are_the_ones_the_store_knows() {
        use WebhookEvent as E;
        let documented: Vec<String> = [
            E::IncidentCreated,
            E::IncidentUpdated,
            E::IncidentTransitioned,
            E::IncidentCommented,
            E::SlaWarning,
            E::SlaBreached,
        ]
        .iter()
        .map(|e| serde_json::to_value(e).map(|v| v.as_str().unwrap_or_default().to_owned()))
        .collect::<Result<_, _>>()
        .unwrap_or_default();
        assert_eq!(documented, keel_store::webhooks::EVENTS);
        assert_eq!(serde_json::to_value(E::All).ok(), Some("*".into()));
    }
}
