//! Turning an inbound email into a new incident or a comment on one; shared
//! by `POST /api/v1/inbound/email` and `keel mail ingest`.

use std::path::Path;

use actix_web::http::StatusCode;
use keel_core::actor::Credential;
use keel_core::people::{EmailAddress, Username};
use keel_core::{Actor, AttachmentId, Role};
use keel_incident::{CommentBody, Description, Title, Visibility};
use keel_notify::inbound::{InboundAttachment, InboundMail, Limits, parse};
use keel_store::Store;
use keel_store::directory::NewUser;
use keel_store::incidents::{NewAttachment, NewIncident};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::error::ApiError;

/// What to do with mail from an address Keel does not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnknownSenders {
    /// Refuse it (the MTA bounces it).
    Refuse,
    /// Create a requester account for the sender (no password: they reset it to log in).
    Create,
}

/// What ingestion needs besides the store.
#[derive(Debug, Clone)]
pub struct InboundSettings<'a> {
    pub attachments_dir: &'a Path,
    pub attachment_max_bytes: u64,
    pub unknown_senders: UnknownSenders,
    pub limits: Limits,
    pub priority_matrix: &'a keel_incident::PriorityMatrix,
}

/// What became of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A new incident, by number.
    Created(String),
    /// A public comment on this incident.
    Commented(String),
    /// Nothing: an auto-reply or bounce (never answered, so no mail loops).
    Ignored(&'static str),
}

fn refused(code: &str, detail: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, detail)
}

/// A requester account for an unknown sender, with a login name from the
/// address's local part.
async fn create_sender(
    store: &Store,
    mail: &InboundMail,
) -> Result<keel_store::directory::UserView, ApiError> {
    let email = EmailAddress::parse(&mail.from)?;
    let local: String = mail
        .from
        .split('@')
        .next()
        .unwrap_or("")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "._-".contains(*c))
        .take(40)
        .collect::<String>()
        .to_lowercase();
    let base = if local
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric())
    {
        local
    } else {
        format!("user{local}")
    };
    for attempt in 0..5 {
        let candidate = if attempt == 0 {
            base.clone()
        } else {
            format!(
                "{base}-{}",
                &keel_auth::tokens::random_secret(3).to_lowercase()
            )
        };
        let Ok(username) = Username::parse(&candidate) else {
            continue;
        };
        let new = NewUser {
            username,
            email: email.clone(),
            display_name: mail
                .from_name
                .clone()
                .unwrap_or_else(|| mail.from.clone())
                .chars()
                .take(200)
                .collect(),
            // Not a PHC string: no password verifies until one is set.
            password_hash: "!".into(),
            roles: vec![Role::Requester],
            groups: vec![],
        };
        match store.create_user(new).await {
            Ok(u) => return Ok(u),
            Err(keel_store::StoreError::Rule {
                code: "user.username_taken",
                ..
            }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::internal(
        "could not find a free username for a new sender",
    ))
}

async fn store_attachment(
    store: &Store,
    actor: &Actor,
    key: &str,
    a: InboundAttachment,
    settings: &InboundSettings<'_>,
) -> Result<Option<String>, ApiError> {
    if a.bytes.len() as u64 > settings.attachment_max_bytes {
        return Ok(Some(format!(
            "(The attachment {} was larger than the limit and was dropped.)",
            a.filename
        )));
    }
    let id = AttachmentId::new();
    let tmp = settings.attachments_dir.join(format!("{id}.part"));
    let mut f = tokio::fs::File::create(&tmp)
        .await
        .map_err(ApiError::internal)?;
    f.write_all(&a.bytes).await.map_err(ApiError::internal)?;
    f.sync_all().await.map_err(ApiError::internal)?;
    tokio::fs::rename(&tmp, settings.attachments_dir.join(id.to_string()))
        .await
        .map_err(ApiError::internal)?;
    let sha256: String = Sha256::digest(&a.bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let filename: String = a
        .filename
        .chars()
        .filter(|c| !c.is_control() && !"/\\\"".contains(*c))
        .take(200)
        .collect();
    let new = NewAttachment {
        id,
        filename: if filename.is_empty() {
            "attachment".into()
        } else {
            filename
        },
        content_type: a.content_type.chars().take(100).collect(),
        size_bytes: i64::try_from(a.bytes.len()).unwrap_or(i64::MAX),
        sha256,
    };
    if let Err(e) = store.add_attachment(actor, key, new).await {
        let _ = tokio::fs::remove_file(settings.attachments_dir.join(id.to_string())).await;
        return Err(e.into());
    }
    Ok(None)
}

/// Ingests one raw message.
pub async fn ingest(
    store: &Store,
    raw: &[u8],
    settings: &InboundSettings<'_>,
) -> Result<Outcome, ApiError> {
    let mail = parse(raw, &settings.limits).map_err(|e| {
        let mut err = ApiError::from_domain(&e);
        if e == keel_notify::inbound::InboundError::TooLarge(settings.limits.max_bytes) {
            err.status = StatusCode::PAYLOAD_TOO_LARGE;
        }
        err
    })?;
    if let Some(why) = mail.automatic {
        tracing::info!(from = %mail.from, reason = why, "ignored an automatic message");
        return Ok(Outcome::Ignored(why));
    }
    let user = match store.find_login(&mail.from).await? {
        Some((u, _)) if u.active => u,
        Some(_) => {
            return Err(refused(
                "inbound.sender_inactive",
                "the sender's account is disabled",
            ));
        }
        None if settings.unknown_senders == UnknownSenders::Create => {
            create_sender(store, &mail).await?
        }
        None => {
            return Err(refused(
                "inbound.unknown_sender",
                format!("no Keel user has the address {}", mail.from),
            ));
        }
    };
    let actor = Actor {
        user_id: user.id,
        username: user.username,
        display_name: user.display_name,
        roles: user.roles,
        credential: Credential::Session,
    };
    let text: String = mail.text.chars().take(CommentBody::MAX_CHARS).collect();

    // A reply to a record the sender can see, and that is still open, becomes a comment.
    if let Some(number) = &mail.thread
        && let Ok(incident) = store.get_incident(&actor, number).await
        && !incident.state.is_final()
    {
        let mut notes = Vec::new();
        for a in mail.attachments {
            notes.extend(store_attachment(store, &actor, number, a, settings).await?);
        }
        let body = if text.is_empty() {
            "(empty reply)".to_owned()
        } else {
            text
        };
        let body = [vec![body], notes].concat().join("\n\n");
        let body = CommentBody::parse(
            &body
                .chars()
                .take(CommentBody::MAX_CHARS)
                .collect::<String>(),
        )?;
        store
            .add_comment(&actor, number, body, Visibility::Public)
            .await?;
        return Ok(Outcome::Commented(number.clone()));
    }

    let title = if mail.subject.trim().is_empty() {
        "(no subject)".to_owned()
    } else {
        mail.subject.clone()
    };
    let title: String = title
        .chars()
        .filter(|c| !c.is_control())
        .take(Title::MAX_CHARS)
        .collect();
    let m = settings.priority_matrix;
    let lowest = i64::from(m.levels());
    let new = NewIncident {
        title: Title::parse(&title)?,
        description: Description::parse(&text)?,
        impact: m.impact(lowest)?,
        urgency: m.urgency(lowest)?,
        priority: None,
        category: Some("email".into()),
        major: false,
        requester: None,
        assignment_group: None,
        assignee: None,
    };
    let created = store.create_incident(&actor, new, m).await?;
    let number = created.number.to_string();
    for a in mail.attachments {
        store_attachment(store, &actor, &number, a, settings).await?;
    }
    Ok(Outcome::Created(number))
}
