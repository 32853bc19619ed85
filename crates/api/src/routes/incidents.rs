//! `/incidents`: records, transitions, timeline, links, watchers, history.

use std::io::Write;

use actix_multipart::Multipart;
use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, delete, get, patch, post, web};
use futures_util::StreamExt;
use keel_core::query::{Limit, Sort, SortDir, search_terms};
use keel_core::{AttachmentId, GroupId, LinkId, UserId};
use keel_incident::{CommentBody, Description, Priority, State, Title};
use keel_store::incidents::{
    IncidentFilter, IncidentPatch, IncidentSort, IncidentView, NewAttachment, TransitionRequest,
};
use keel_store::sla::SlaFilter;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use utoipa::IntoParams;
use uuid::Uuid;

use super::people::PageParams;
use super::{etag, if_match, require_if_match};
use crate::auth::Auth;
use crate::body::Json;
use crate::dto::{
    Attachment, AttachmentUpload, Comment, HistoryItem, Incident, IncidentUpdate, Link, NewComment,
    NewIncident, NewLink, NewWatcher, Page, TransitionInput, UserSummary,
};
use crate::error::{ApiError, Problem};
use crate::idempotency::IdempotencyKey;
use crate::reply::{self, Reply};
use crate::state::AppState;

/// An incident as its response: `inc` written as the [`Incident`] it
/// makes (`reply`), with its version as the ETag.
fn with_etag(status: StatusCode, inc: IncidentView) -> HttpResponse {
    let mut res = HttpResponse::build(status);
    res.insert_header((header::ETAG, etag(inc.version)));
    if status == StatusCode::CREATED {
        res.insert_header((header::LOCATION, format!("/api/v1/incidents/{}", inc.id.0)));
    }
    res.content_type(mime::APPLICATION_JSON)
        .body(reply::to_json(&inc, reply::INCIDENT_JSON_BYTES))
}

/// Raise an incident
///
/// Requesters raise incidents for themselves; agents for anyone, and may
/// assign a group and agent, set `major`, and override the priority (which is
/// otherwise computed from impact × urgency and is audited when overridden).
#[utoipa::path(
    tag = "incidents",
    request_body = NewIncident,
    params(IdempotencyKey),
    responses(
        (status = 201, description = "Created", body = Incident,
            headers(("ETag" = String, description = "The version"), ("Location" = String, description = "The new incident's URL"))),
    )
)]
#[post("/incidents")]
pub async fn create(
    state: web::Data<AppState>,
    auth: Auth,
    body: Json<NewIncident>,
) -> Result<HttpResponse, ApiError> {
    let b = body.into_inner();
    let m = &state.settings.priority_matrix;
    let new = keel_store::incidents::NewIncident {
        title: Title::parse(&b.title)?,
        description: Description::parse(&b.description)?,
        impact: m.impact(b.impact)?,
        urgency: m.urgency(b.urgency)?,
        priority: b.priority.map(Priority::new).transpose()?,
        category: category(b.category)?,
        major: b.major,
        requester: b.requester,
        assignment_group: b.assignment_group,
        assignee: b.assignee,
    };
    let view = state.store.create_incident(&auth.0, new, m).await?;
    Ok(with_etag(StatusCode::CREATED, view))
}

fn category(raw: Option<String>) -> Result<Option<String>, ApiError> {
    match raw {
        None => Ok(None),
        Some(c) => {
            let c = keel_core::text::clean("category", &c, 100, false, false)
                .map_err(keel_incident::IncidentError::from)?;
            Ok((!c.is_empty()).then_some(c))
        }
    }
}

/// Incident list parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Comma-separated states, e.g. `new,in_progress`.
    #[param(schema_with = crate::dto::rules::state_filter)]
    pub state: Option<String>,
    /// Comma-separated priorities, e.g. `1,2`.
    #[param(schema_with = crate::dto::rules::priority_filter)]
    pub priority: Option<String>,
    /// Assignee user id, or `none` for unassigned.
    #[param(schema_with = crate::dto::rules::assignee_filter)]
    pub assignee: Option<String>,
    /// Assignment group id, or `none`.
    #[param(schema_with = crate::dto::rules::group_filter)]
    pub group: Option<String>,
    /// Requester user id.
    #[param(schema_with = crate::dto::rules::requester_filter)]
    pub requester: Option<String>,
    /// Only major (or only non-major) incidents.
    pub major: Option<bool>,
    /// Created at or after (RFC 3339).
    pub created_after: Option<chrono::DateTime<chrono::Utc>>,
    /// Created before (RFC 3339).
    pub created_before: Option<chrono::DateTime<chrono::Utc>>,
    /// Updated at or after (RFC 3339).
    pub updated_after: Option<chrono::DateTime<chrono::Utc>>,
    /// Updated before (RFC 3339).
    pub updated_before: Option<chrono::DateTime<chrono::Utc>>,
    /// Full-text search over title, description and comments; every word
    /// must match. At most 200 characters and 16 words.
    #[param(max_length = 200)]
    pub q: Option<String>,
    /// Only incidents with an SLA target in this state: `in_progress`, `paused`, `met` or `breached` (breached includes overdue).
    pub sla_state: Option<keel_sla::TimerState>,
    /// Only incidents with a running SLA target due before this instant (RFC 3339).
    pub sla_due_before: Option<chrono::DateTime<chrono::Utc>>,
    /// `created_at`, `updated_at`, `priority` or `number`; prefix `-` for descending. Default `-created_at`, or `-number` with `q` (a search).
    #[param(pattern = "^[-+]?(created_at|updated_at|priority|number)$")]
    pub sort: Option<String>,
    /// Page size, 1-200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    /// The `next` value of the previous page (opaque, base64url).
    #[param(pattern = "^[A-Za-z0-9_-]{1,1024}$")]
    pub cursor: Option<String>,
}

fn bad_filter(field: &'static str, msg: impl Into<String>) -> ApiError {
    ApiError::from(keel_core::query::QueryError::InvalidFilter(
        field,
        msg.into(),
    ))
}

fn id_or_none(field: &'static str, raw: Option<&str>) -> Result<Option<Option<Uuid>>, ApiError> {
    match raw {
        None => Ok(None),
        Some("none") => Ok(Some(None)),
        Some(s) => Uuid::parse_str(s)
            .map(|u| Some(Some(u)))
            .map_err(|_| bad_filter(field, "expected a UUID or `none`")),
    }
}

fn split(raw: Option<&str>) -> impl Iterator<Item = &str> {
    raw.into_iter()
        .flat_map(|s| s.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// List incidents
///
/// Filtered, sorted and paged with an opaque cursor. Requesters see only the
/// incidents they raised or watch; their searches never match internal work
/// notes.
#[utoipa::path(
    tag = "incidents",
    params(ListParams),
    responses((status = 200, description = "A page of incidents", body = Page<Incident>))
)]
#[get("/incidents")]
pub async fn list(
    state: web::Data<AppState>,
    auth: Auth,
    q: web::Query<ListParams>,
) -> Result<Reply<reply::IncidentPage>, ApiError> {
    let q = q.into_inner();
    let mut filter = IncidentFilter::default();
    for s in split(q.state.as_deref()) {
        filter.states.push(s.parse::<State>().map_err(|_| {
            bad_filter(
                "state",
                format!("unknown state `{}`", s.chars().take(40).collect::<String>()),
            )
        })?);
    }
    for p in split(q.priority.as_deref()) {
        let n: u8 = p
            .parse()
            .ok()
            .filter(|n| (1..=5).contains(n))
            .ok_or_else(|| bad_filter("priority", "priorities are 1-5"))?;
        filter.priorities.push(n);
    }
    filter.assignee = id_or_none("assignee", q.assignee.as_deref())?.map(|o| o.map(UserId));
    filter.group = id_or_none("group", q.group.as_deref())?.map(|o| o.map(GroupId));
    filter.requester = match q.requester.as_deref() {
        Some(r) => Some(UserId(
            Uuid::parse_str(r).map_err(|_| bad_filter("requester", "expected a UUID"))?,
        )),
        None => None,
    };
    filter.major = q.major;
    filter.created_after = q.created_after;
    filter.created_before = q.created_before;
    filter.updated_after = q.updated_after;
    filter.updated_before = q.updated_before;
    if let Some(st) = q.sla_state {
        filter.sla.push(SlaFilter::State(st));
    }
    if let Some(before) = q.sla_due_before {
        filter.sla.push(SlaFilter::DueBefore(before));
    }
    if let Some(text) = q.q.as_deref() {
        filter.terms = search_terms(text)?;
    }
    // Newest first: by creation time for lists, by number for searches,
    // which the search index can hand out in order (same order, except for
    // incidents imported with older creation times).
    let default_field = if filter.terms.is_empty() {
        IncidentSort::CreatedAt
    } else {
        IncidentSort::Number
    };
    let sort = Sort::parse(
        q.sort.as_deref(),
        Sort {
            field: default_field,
            dir: SortDir::Desc,
        },
    )?;
    let page = state
        .store
        .list_incidents(
            &auth.0,
            &filter,
            sort,
            Limit::parse(q.limit)?,
            q.cursor.as_deref(),
        )
        .await?;
    let bytes = (page.items.len() + 1) * reply::INCIDENT_JSON_BYTES;
    Ok(Reply(reply::IncidentPage(page), bytes))
}

/// Get an incident
///
/// By id or by number (`INC0000042`). Incidents the caller may not see are
/// reported as not found.
#[utoipa::path(
    tag = "incidents",
    params(("id" = String, Path, description = "Incident id or number")),
    responses(
        (status = 200, description = "The incident", body = Incident, headers(("ETag" = String, description = "The version"))),
        (status = 404, description = "No such incident (or not visible to the caller)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/incidents/{id}")]
pub async fn get(
    state: web::Data<AppState>,
    auth: Auth,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let view = state.store.get_incident(&auth.0, &id).await?;
    Ok(with_etag(StatusCode::OK, view))
}

/// Update an incident
///
/// Changes fields; requires `If-Match` with the ETag last read. Requesters
/// may change the title and description of their own incidents. A stale
/// ETag gets 412 and nothing changes.
#[utoipa::path(
    tag = "incidents",
    params(
        ("id" = String, Path, description = "Incident id or number"),
        ("If-Match" = String, Header, description = "The ETag last read, e.g. `\"3\"`", pattern = r#"^(W/)?"*[+-]?[0-9]{1,18}"*$"#),
    ),
    request_body = IncidentUpdate,
    responses(
        (status = 200, description = "Updated", body = Incident, headers(("ETag" = String, description = "The new version"))),
        (status = 404, description = "No such incident", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The incident is closed or cancelled", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "The incident changed since it was read", body = Problem, content_type = "application/problem+json"),
        (status = 428, description = "If-Match missing", body = Problem, content_type = "application/problem+json"),
    )
)]
#[patch("/incidents/{id}")]
pub async fn update(
    state: web::Data<AppState>,
    auth: Auth,
    req: HttpRequest,
    id: web::Path<String>,
    body: Json<IncidentUpdate>,
) -> Result<HttpResponse, ApiError> {
    let version = require_if_match(&req)?;
    let b = body.into_inner();
    let m = &state.settings.priority_matrix;
    let patch = IncidentPatch {
        title: b.title.as_deref().map(Title::parse).transpose()?,
        description: b
            .description
            .as_deref()
            .map(Description::parse)
            .transpose()?,
        impact: b.impact.map(|i| m.impact(i)).transpose()?,
        urgency: b.urgency.map(|u| m.urgency(u)).transpose()?,
        priority: b
            .priority
            .map(|p| p.map(Priority::new).transpose())
            .transpose()?,
        category: b.category.map(category).transpose()?,
        major: b.major,
        assignment_group: b.assignment_group,
        assignee: b.assignee,
    };
    let view = state
        .store
        .update_incident(&auth.0, &id, version, patch, m)
        .await?;
    Ok(with_etag(StatusCode::OK, view))
}

/// Apply a transition
///
/// Moves the incident through its life cycle: `start`, `hold` (with
/// `hold_reason`), `resume`, `resolve` (with `resolution_code` and
/// `resolution_notes`; also resolves open child incidents), `reopen`,
/// `close`, `cancel`. `If-Match` is honoured when sent.
#[utoipa::path(
    tag = "incidents",
    params(
        ("id" = String, Path, description = "Incident id or number"),
        ("If-Match" = Option<String>, Header, nullable = false, description = "The ETag last read, e.g. `\"3\"`", pattern = r#"^(W/)?"*[+-]?[0-9]{1,18}"*$"#),
    ),
    request_body = TransitionInput,
    responses(
        (status = 200, description = "Applied", body = Incident, headers(("ETag" = String, description = "The new version"))),
        (status = 404, description = "No such incident", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not allowed from the current state", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "The incident changed since it was read", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/incidents/{id}/transitions")]
pub async fn transition(
    state: web::Data<AppState>,
    auth: Auth,
    req: HttpRequest,
    id: web::Path<String>,
    body: Json<TransitionInput>,
) -> Result<HttpResponse, ApiError> {
    let version = if_match(&req)?;
    let b = body.into_inner();
    let r = TransitionRequest {
        action: b.action,
        hold_reason: b.hold_reason,
        resolution_code: b.resolution_code,
        resolution_notes: b.resolution_notes,
    };
    let view = state
        .store
        .transition_incident(&auth.0, &id, version, r)
        .await?;
    Ok(with_etag(StatusCode::OK, view))
}

/// Add a comment or work note
///
/// `public` comments are seen by the requester; `internal` work notes only by
/// agents. An agent's first public comment is the first response.
#[utoipa::path(
    tag = "incidents",
    params(
        ("id" = String, Path, description = "Incident id or number"),
        IdempotencyKey,
    ),
    request_body = NewComment,
    responses(
        (status = 201, description = "Added", body = Comment),
        (status = 404, description = "No such incident", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The incident is closed or cancelled", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/incidents/{id}/comments")]
pub async fn add_comment(
    state: web::Data<AppState>,
    auth: Auth,
    id: web::Path<String>,
    body: Json<NewComment>,
) -> Result<HttpResponse, ApiError> {
    let b = body.into_inner();
    let c = state
        .store
        .add_comment(&auth.0, &id, CommentBody::parse(&b.body)?, b.visibility)
        .await?;
    Ok(HttpResponse::Created().json(Comment::from(c)))
}

/// List comments
///
/// Oldest first. Requesters see public comments only.
#[utoipa::path(
    tag = "incidents",
    params(("id" = String, Path, description = "Incident id or number"), PageParams),
    responses(
        (status = 200, description = "A page of comments", body = Page<Comment>),
        (status = 404, description = "No such incident", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/incidents/{id}/comments")]
pub async fn list_comments(
    state: web::Data<AppState>,
    auth: Auth,
    id: web::Path<String>,
    q: web::Query<PageParams>,
) -> Result<web::Json<Page<Comment>>, ApiError> {
    let page = state
        .store
        .list_comments(&auth.0, &id, Limit::parse(q.limit)?, q.cursor.as_deref())
        .await?;
    Ok(web::Json(Page {
        items: page.items.into_iter().map(Into::into).collect(),
        next: page.next,
    }))
}

/// Keeps the last path component, drops control and quoting characters.
fn safe_filename(raw: &str) -> String {
    let base = raw.rsplit(['/', '\\']).next().unwrap_or("");
    let cleaned: String = base
        .chars()
        .filter(|c| !c.is_control() && !matches!(c, '"' | ';' | '\\' | '/'))
        .take(200)
        .collect();
    let cleaned = cleaned.trim().trim_start_matches('.').to_owned();
    if cleaned.is_empty() {
        "attachment".into()
    } else {
        cleaned
    }
}

/// Upload an attachment
///
/// `multipart/form-data` with one part named `file`. Larger than the
/// configured limit gets 413. Stored under the data directory; served only
/// as a download.
#[utoipa::path(
    tag = "incidents",
    params(
        ("id" = String, Path, description = "Incident id or number"),
        IdempotencyKey,
    ),
    request_body(content = AttachmentUpload, content_type = "multipart/form-data"),
    responses(
        (status = 201, description = "Stored", body = Attachment),
        (status = 404, description = "No such incident", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The incident is closed or cancelled", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Too large", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/incidents/{id}/attachments")]
pub async fn upload(
    state: web::Data<AppState>,
    auth: Auth,
    id: web::Path<String>,
    mut form: Multipart,
) -> Result<HttpResponse, ApiError> {
    // Check access before reading the body.
    state.store.attachable_incident(&auth.0, &id).await?;
    let max = state.settings.attachment_max_bytes;
    let dir = state.settings.attachments_dir.clone();
    let att_id = AttachmentId::new();
    let mut stored: Option<(String, String, u64, String)> = None;
    while let Some(field) = form.next().await {
        let mut field = field
            .map_err(|e| ApiError::bad_request("attachment.invalid_multipart", e.to_string()))?;
        if field.name() != Some("file") || stored.is_some() {
            // Drain parts we do not use.
            while let Some(chunk) = field.next().await {
                chunk.map_err(|e| {
                    ApiError::bad_request("attachment.invalid_multipart", e.to_string())
                })?;
            }
            continue;
        }
        let filename = safe_filename(
            field
                .content_disposition()
                .and_then(|cd| cd.get_filename())
                .unwrap_or("attachment"),
        );
        let content_type = field
            .content_type()
            .map(|m| m.essence_str().to_owned())
            .unwrap_or_else(|| "application/octet-stream".to_owned());
        let tmp = dir.join(format!("{att_id}.part"));
        let mut file = std::fs::File::create(&tmp).map_err(ApiError::internal)?;
        let mut hasher = Sha256::new();
        let mut size: u64 = 0;
        while let Some(chunk) = field.next().await {
            let chunk = chunk.map_err(|e| {
                ApiError::bad_request("attachment.invalid_multipart", e.to_string())
            })?;
            size += chunk.len() as u64;
            if size > max {
                drop(file);
                let _ = std::fs::remove_file(&tmp);
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "attachment.too_large",
                    format!("attachments are limited to {max} bytes"),
                ));
            }
            hasher.update(&chunk);
            file.write_all(&chunk).map_err(ApiError::internal)?;
        }
        file.sync_all().map_err(ApiError::internal)?;
        let digest: String = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        std::fs::rename(&tmp, dir.join(att_id.to_string())).map_err(ApiError::internal)?;
        stored = Some((filename, content_type, size, digest));
    }
    let Some((filename, content_type, size, sha256)) = stored else {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "attachment.file_missing",
            "send the file in a part named `file`",
        )
        .with_field("file"));
    };
    let new = NewAttachment {
        id: att_id,
        filename,
        content_type,
        size_bytes: i64::try_from(size).unwrap_or(i64::MAX),
        sha256,
    };
    match state.store.add_attachment(&auth.0, &id, new).await {
        Ok(a) => Ok(HttpResponse::Created().json(Attachment::from(a))),
        Err(e) => {
            let _ = std::fs::remove_file(dir.join(att_id.to_string()));
            Err(e.into())
        }
    }
}

/// List attachments
///
/// Metadata of every attachment of the incident, oldest first.
#[utoipa::path(
    tag = "incidents",
    params(("id" = String, Path, description = "Incident id or number")),
    responses(
        (status = 200, description = "Attachments, oldest first", body = Page<Attachment>),
        (status = 404, description = "No such incident", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/incidents/{id}/attachments")]
pub async fn list_attachments(
    state: web::Data<AppState>,
    auth: Auth,
    id: web::Path<String>,
) -> Result<web::Json<Page<Attachment>>, ApiError> {
    let items = state.store.list_attachments(&auth.0, &id).await?;
    Ok(web::Json(Page::all(
        items.into_iter().map(Into::into).collect(),
    )))
}

/// Download an attachment
///
/// Always served as a download (`Content-Disposition: attachment`) with
/// `X-Content-Type-Options: nosniff`, so a stored file is never rendered.
#[utoipa::path(
    tag = "incidents",
    params(("id" = String, Path, description = "Incident id or number"), ("attachment_id" = Uuid, Path, description = "Attachment id")),
    responses(
        (status = 200, description = "The file", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 404, description = "No such attachment", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/incidents/{id}/attachments/{attachment_id}")]
pub async fn download(
    state: web::Data<AppState>,
    auth: Auth,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (id, att) = path.into_inner();
    let att = Uuid::parse_str(&att).map_err(|_| ApiError::not_found("attachment"))?;
    let a = state
        .store
        .get_attachment(&auth.0, &id, AttachmentId(att))
        .await?;
    let bytes = tokio::fs::read(state.settings.attachments_dir.join(a.id.to_string()))
        .await
        .map_err(|_| ApiError::not_found("attachment content"))?;
    let ascii: String = a
        .filename
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded: String = a
        .filename
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let content_type = a
        .content_type
        .parse::<mime::Mime>()
        .map(|m| m.essence_str().to_owned())
        .unwrap_or_else(|_| "application/octet-stream".into());
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, content_type))
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}"),
        ))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .insert_header((header::CACHE_CONTROL, "private, no-store"))
        .insert_header(("Content-Security-Policy", "default-src 'none'; sandbox"))
        .body(bytes))
}

/// Link to another incident
///
/// Agents only. `parent` makes the target this incident's parent (resolving
/// the parent resolves its children); `child` the reverse; `duplicate_of`
/// marks this incident a duplicate of the target.
#[utoipa::path(
    tag = "incidents",
    params(
        ("id" = String, Path, description = "Incident id or number"),
        IdempotencyKey,
    ),
    request_body = NewLink,
    responses(
        (status = 201, description = "Linked", body = Link),
        (status = 404, description = "No such incident", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The link exists, or the child already has a parent", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/incidents/{id}/links")]
pub async fn add_link(
    state: web::Data<AppState>,
    auth: Auth,
    id: web::Path<String>,
    body: Json<NewLink>,
) -> Result<HttpResponse, ApiError> {
    let b = body.into_inner();
    let l = state
        .store
        .add_link(&auth.0, &id, b.kind.into(), &b.target)
        .await?;
    Ok(HttpResponse::Created().json(Link::from(l)))
}

/// List links
///
/// Parent, child and duplicate links of the incident, seen from it. Links to incidents the caller may not see are left out.
#[utoipa::path(
    tag = "incidents",
    params(("id" = String, Path, description = "Incident id or number")),
    responses(
        (status = 200, description = "Links to incidents the caller may see", body = Page<Link>),
        (status = 404, description = "No such incident", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/incidents/{id}/links")]
pub async fn list_links(
    state: web::Data<AppState>,
    auth: Auth,
    id: web::Path<String>,
) -> Result<web::Json<Page<Link>>, ApiError> {
    let items = state.store.list_links(&auth.0, &id).await?;
    Ok(web::Json(Page::all(
        items.into_iter().map(Into::into).collect(),
    )))
}

/// Remove a link
///
/// Agents only. Both incidents' histories record the removal.
#[utoipa::path(
    tag = "incidents",
    params(("id" = String, Path, description = "Incident id or number"), ("link_id" = Uuid, Path, description = "Link id")),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "No such link", body = Problem, content_type = "application/problem+json"),
    )
)]
#[delete("/incidents/{id}/links/{link_id}")]
pub async fn remove_link(
    state: web::Data<AppState>,
    auth: Auth,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (id, link) = path.into_inner();
    let link = Uuid::parse_str(&link).map_err(|_| ApiError::not_found("link"))?;
    state.store.remove_link(&auth.0, &id, LinkId(link)).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Add a watcher
///
/// Watchers can read the incident and its public timeline. Agents may add
/// anyone; requesters only themselves.
#[utoipa::path(
    tag = "incidents",
    params(("id" = String, Path, description = "Incident id or number")),
    request_body = NewWatcher,
    responses(
        (status = 200, description = "The watchers now", body = Page<UserSummary>),
        (status = 404, description = "No such incident", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/incidents/{id}/watchers")]
pub async fn add_watcher(
    state: web::Data<AppState>,
    auth: Auth,
    id: web::Path<String>,
    body: Json<NewWatcher>,
) -> Result<web::Json<Page<UserSummary>>, ApiError> {
    let items = state.store.add_watcher(&auth.0, &id, &body.user).await?;
    Ok(web::Json(Page::all(
        items.into_iter().map(Into::into).collect(),
    )))
}

/// List watchers
///
/// Users who follow the incident and may read it and its public timeline.
#[utoipa::path(
    tag = "incidents",
    params(("id" = String, Path, description = "Incident id or number")),
    responses(
        (status = 200, description = "Watchers", body = Page<UserSummary>),
        (status = 404, description = "No such incident", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/incidents/{id}/watchers")]
pub async fn list_watchers(
    state: web::Data<AppState>,
    auth: Auth,
    id: web::Path<String>,
) -> Result<web::Json<Page<UserSummary>>, ApiError> {
    let items = state.store.list_watchers(&auth.0, &id).await?;
    Ok(web::Json(Page::all(
        items.into_iter().map(Into::into).collect(),
    )))
}

/// Remove a watcher
///
/// Agents may remove anyone; requesters only themselves.
#[utoipa::path(
    tag = "incidents",
    params(("id" = String, Path, description = "Incident id or number"), ("user_id" = Uuid, Path, description = "User id")),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "Not watching", body = Problem, content_type = "application/problem+json"),
    )
)]
#[delete("/incidents/{id}/watchers/{user_id}")]
pub async fn remove_watcher(
    state: web::Data<AppState>,
    auth: Auth,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (id, user) = path.into_inner();
    let user = Uuid::parse_str(&user).map_err(|_| ApiError::not_found("watcher"))?;
    state
        .store
        .remove_watcher(&auth.0, &id, UserId(user))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Audit history
///
/// Every field change, transition, comment, attachment, link and watcher
/// change, with actor and time, oldest first. Requesters do not see entries
/// about internal work notes.
#[utoipa::path(
    tag = "incidents",
    params(("id" = String, Path, description = "Incident id or number"), PageParams),
    responses(
        (status = 200, description = "A page of history", body = Page<HistoryItem>),
        (status = 404, description = "No such incident", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/incidents/{id}/history")]
pub async fn history(
    state: web::Data<AppState>,
    auth: Auth,
    id: web::Path<String>,
    q: web::Query<PageParams>,
) -> Result<web::Json<Page<HistoryItem>>, ApiError> {
    let page = state
        .store
        .incident_history(&auth.0, &id, Limit::parse(q.limit)?, q.cursor.as_deref())
        .await?;
    Ok(web::Json(Page {
        items: page.items.into_iter().map(Into::into).collect(),
        next: page.next,
    }))
}

/// Receive an email
///
/// For a mail gateway, with an API token holding the `inbound_email` scope
/// (its owner must be an admin). The body is one raw RFC 5322 message. A
/// new message from a known user becomes an incident (subject → title, text
/// → description, attachments → attachments); a reply to an open incident
/// the sender may see (its number in the subject, or Keel's Message-ID in
/// `In-Reply-To`/`References`) becomes a public comment; auto-replies and
/// bounces are ignored. Unknown senders are refused or become requesters,
/// by configuration.
#[utoipa::path(
    tag = "inbound",
    request_body(content = String, content_type = "message/rfc822", description = "The raw message"),
    responses(
        (status = 200, description = "What became of the message", body = crate::dto::InboundResult),
        (status = 413, description = "Larger than inbound.max_bytes", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Unreadable, too complex, or from an unknown or disabled sender", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/inbound/email")]
pub async fn receive_email(
    state: web::Data<AppState>,
    auth: Auth,
    body: web::Bytes,
) -> Result<web::Json<crate::dto::InboundResult>, ApiError> {
    auth.require(keel_core::Permission::InboundEmail)?;
    let settings = crate::inbound::InboundSettings {
        attachments_dir: &state.settings.attachments_dir,
        attachment_max_bytes: state.settings.attachment_max_bytes,
        unknown_senders: state.settings.inbound_unknown_senders,
        limits: keel_notify::inbound::Limits {
            max_bytes: state.settings.inbound_max_bytes,
            ..Default::default()
        },
        priority_matrix: &state.settings.priority_matrix,
    };
    let outcome = crate::inbound::ingest(&state.store, &body, &settings).await?;
    Ok(web::Json(outcome.into()))
}
