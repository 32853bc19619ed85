//! Who is acting and what they may do.
//!
//! A user holds one or more [`Role`]s; each role grants a set of
//! [`Permission`]s. A request made with an API token is further limited to the
//! token's [`Scope`]s: the effective permissions are the intersection. New
//! roles (change_manager, asset_manager, approver, auditor) are new enum
//! variants with their own permission sets; no check elsewhere changes.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

use crate::ids::UserId;

/// A role held by a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Manages users, groups and configuration; can do everything an agent can.
    Admin,
    /// Service desk agent: works every incident.
    Agent,
    /// End user: raises and follows their own incidents.
    Requester,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Admin, Role::Agent, Role::Requester];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Agent => "agent",
            Role::Requester => "requester",
        }
    }

    /// The permissions this role grants.
    pub fn permissions(self) -> &'static [Permission] {
        use Permission::*;
        match self {
            Role::Admin => &[
                IncidentCreate,
                IncidentReadOwn,
                IncidentReadAll,
                IncidentWork,
                DirectoryRead,
                DirectoryAdmin,
                ApiTokensManage,
                SlaRead,
                SlaAdmin,
                InboundEmail,
                WebhooksAdmin,
            ],
            Role::Agent => &[
                IncidentCreate,
                IncidentReadOwn,
                IncidentReadAll,
                IncidentWork,
                DirectoryRead,
                ApiTokensManage,
                SlaRead,
            ],
            Role::Requester => &[IncidentCreate, IncidentReadOwn, ApiTokensManage],
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownName(s.to_owned()))
    }
}

/// A name that is not one of the known roles or scopes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown name `{0}`")]
pub struct UnknownName(pub String);

/// One thing a caller may do. Checks in handlers and rules ask for these,
/// never for roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    /// Raise an incident (for oneself; agents for anyone).
    IncidentCreate,
    /// Read incidents one raised or watches, and their public timeline.
    IncidentReadOwn,
    /// Read every incident, including internal work notes.
    IncidentReadAll,
    /// Update, assign, transition and annotate any incident.
    IncidentWork,
    /// Read users and groups.
    DirectoryRead,
    /// Create and change users and groups.
    DirectoryAdmin,
    /// Create, list and revoke one's own API tokens.
    ApiTokensManage,
    /// Read SLA calendars and policies.
    SlaRead,
    /// Manage SLA calendars and policies.
    SlaAdmin,
    /// Feed inbound email into Keel (an MTA or mail gateway's token).
    InboundEmail,
    /// Manage webhook subscriptions and read their delivery logs.
    WebhooksAdmin,
}

/// What an API token may be used for. Interactive sessions carry every scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub enum Scope {
    /// Read incidents the owner may see.
    #[serde(rename = "incidents:read")]
    IncidentsRead,
    /// Create and change incidents the owner may change.
    #[serde(rename = "incidents:write")]
    IncidentsWrite,
    /// Read users and groups.
    #[serde(rename = "directory:read")]
    DirectoryRead,
    /// Manage users and groups (the owner must be an admin).
    #[serde(rename = "directory:write")]
    DirectoryWrite,
    /// Read SLA calendars and policies.
    #[serde(rename = "sla:read")]
    SlaRead,
    /// Manage SLA calendars and policies (the owner must be an admin).
    #[serde(rename = "sla:write")]
    SlaWrite,
    /// Post raw inbound email to `/api/v1/inbound/email` (the owner must be an admin).
    #[serde(rename = "inbound_email")]
    InboundEmail,
    /// Manage webhooks (the owner must be an admin).
    #[serde(rename = "webhooks:write")]
    WebhooksWrite,
}

impl Scope {
    pub const ALL: [Scope; 8] = [
        Scope::IncidentsRead,
        Scope::IncidentsWrite,
        Scope::DirectoryRead,
        Scope::DirectoryWrite,
        Scope::SlaRead,
        Scope::SlaWrite,
        Scope::InboundEmail,
        Scope::WebhooksWrite,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::IncidentsRead => "incidents:read",
            Scope::IncidentsWrite => "incidents:write",
            Scope::DirectoryRead => "directory:read",
            Scope::DirectoryWrite => "directory:write",
            Scope::SlaRead => "sla:read",
            Scope::SlaWrite => "sla:write",
            Scope::InboundEmail => "inbound_email",
            Scope::WebhooksWrite => "webhooks:write",
        }
    }

    /// Whether a token with this scope may exercise `p`.
    fn allows(self, p: Permission) -> bool {
        use Permission::*;
        match self {
            Scope::IncidentsRead => matches!(p, IncidentReadOwn | IncidentReadAll),
            Scope::IncidentsWrite => {
                matches!(
                    p,
                    IncidentReadOwn | IncidentReadAll | IncidentCreate | IncidentWork
                )
            }
            Scope::DirectoryRead => matches!(p, DirectoryRead),
            Scope::DirectoryWrite => matches!(p, DirectoryRead | DirectoryAdmin),
            Scope::SlaRead => matches!(p, SlaRead),
            Scope::SlaWrite => matches!(p, SlaRead | SlaAdmin),
            Scope::InboundEmail => matches!(p, InboundEmail),
            Scope::WebhooksWrite => matches!(p, WebhooksAdmin),
        }
    }
}

impl FromStr for Scope {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scope::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownName(s.to_owned()))
    }
}

/// How the caller proved who they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// An interactive session (JWT access token).
    Session,
    /// An API token limited to these scopes.
    ApiToken(Vec<Scope>),
}

/// The authenticated caller of one request.
#[derive(Debug, Clone)]
pub struct Actor {
    pub user_id: UserId,
    pub username: String,
    /// The name people see in messages ("who did it").
    pub display_name: String,
    pub roles: Vec<Role>,
    pub credential: Credential,
}

impl Actor {
    /// Whether the caller's roles grant `p` and, for API tokens, a scope allows it.
    pub fn can(&self, p: Permission) -> bool {
        let granted = self.roles.iter().any(|r| r.permissions().contains(&p));
        let scoped = match &self.credential {
            Credential::Session => true,
            Credential::ApiToken(scopes) => {
                // Managing tokens is never delegated to a token.
                p != Permission::ApiTokensManage && scopes.iter().any(|s| s.allows(p))
            }
        };
        granted && scoped
    }

    pub fn has_role(&self, r: Role) -> bool {
        self.roles.contains(&r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn actor(roles: &[Role], credential: Credential) -> Actor {
        Actor {
            user_id: UserId::new(),
            username: "u".into(),
            display_name: "U".into(),
            roles: roles.to_vec(),
            credential,
        }
    }

    #[test]
    fn requesters_cannot_read_all_incidents() {
        let a = actor(&[Role::Requester], Credential::Session);
        assert!(a.can(Permission::IncidentReadOwn));
        assert!(!a.can(Permission::IncidentReadAll));
        assert!(!a.can(Permission::IncidentWork));
        assert!(!a.can(Permission::DirectoryRead));
    }

    #[test]
    fn a_token_is_limited_to_its_scopes_and_its_owners_roles() {
        let read_only = actor(
            &[Role::Agent],
            Credential::ApiToken(vec![Scope::IncidentsRead]),
        );
        assert!(read_only.can(Permission::IncidentReadAll));
        assert!(!read_only.can(Permission::IncidentWork));
        assert!(!read_only.can(Permission::ApiTokensManage));
        let agent_dir = actor(
            &[Role::Agent],
            Credential::ApiToken(vec![Scope::DirectoryWrite]),
        );
        assert!(
            !agent_dir.can(Permission::DirectoryAdmin),
            "scope cannot exceed role"
        );
    }

    #[test]
    fn roles_and_scopes_round_trip_through_their_names() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>(), Ok(r));
        }
        for s in Scope::ALL {
            assert_eq!(s.as_str().parse::<Scope>(), Ok(s));
        }
        assert!("root".parse::<Role>().is_err());
    }
}
