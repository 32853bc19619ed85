//! Typed identifiers. Every resource is addressed by a UUID in the API; records
//! that people talk about (incidents) also carry a human number.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! typed_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A new, time-ordered (UUIDv7) identifier.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }

        impl From<Uuid> for $name {
            fn from(u: Uuid) -> Self {
                Self(u)
            }
        }
    };
}

typed_id!(
    /// A user account (agent, requester, admin, ...).
    UserId
);
typed_id!(
    /// An assignment group.
    GroupId
);
typed_id!(
    /// An incident record.
    IncidentId
);
typed_id!(
    /// A comment or work note on a record's timeline.
    CommentId
);
typed_id!(
    /// A stored attachment.
    AttachmentId
);
typed_id!(
    /// A link between two records.
    LinkId
);
typed_id!(
    /// An integrator's API token.
    ApiTokenId
);
typed_id!(
    /// A login session (a family of rotating refresh tokens).
    SessionId
);
