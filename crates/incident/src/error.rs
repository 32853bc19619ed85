//! Why an incident rule refused something, in the service desk's language.

use keel_core::text::TextError;
use keel_core::{DomainError, ErrorClass};

use crate::state::{Action, State};

/// Every way an incident rule can refuse a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IncidentError {
    /// The action does not apply to an incident in this state.
    #[error("cannot `{action}` an incident that is `{from}`")]
    InvalidTransition {
        /// The incident's current state.
        from: State,
        /// The action that was asked for.
        action: Action,
    },
    /// The caller's relation to the incident does not allow this action.
    #[error("you are not permitted to `{action}` this incident")]
    NotPermitted {
        /// The action that was asked for.
        action: Action,
    },
    /// Putting an incident on hold needs a reason.
    #[error("a hold reason is required to put an incident on hold")]
    HoldReasonRequired,
    /// Resolving an incident needs a resolution code and resolution notes.
    #[error("a resolution code and resolution notes are required to resolve an incident")]
    ResolutionRequired,
    /// The operation needs the incident to have an assignee.
    #[error("the incident must have an assignee")]
    AssigneeRequired,
    /// An impact outside the configured levels.
    #[error("impact {0} is not one of the configured impact levels")]
    InvalidImpact(i64),
    /// An urgency outside the configured levels.
    #[error("urgency {0} is not one of the configured urgency levels")]
    InvalidUrgency(i64),
    /// A priority outside 1 (critical) to 5 (planning).
    #[error("priority must be between 1 and 5, not {0}")]
    InvalidPriority(i64),
    /// A configured priority matrix that breaks a rule; the text says which.
    #[error("invalid priority matrix: {0}")]
    InvalidMatrix(String),
    /// A text field is empty, too long or contains control characters.
    #[error("{0}")]
    Text(TextError),
    /// The incident is closed or cancelled and can no longer be changed.
    #[error("the incident is `{state}` and can no longer be changed")]
    Final {
        /// The final state the incident is in.
        state: State,
    },
}

impl From<TextError> for IncidentError {
    fn from(e: TextError) -> Self {
        IncidentError::Text(e)
    }
}

impl DomainError for IncidentError {
    fn code(&self) -> &'static str {
        match self {
            IncidentError::InvalidTransition { .. } => "incident.invalid_transition",
            IncidentError::NotPermitted { .. } => "incident.transition_not_permitted",
            IncidentError::HoldReasonRequired => "incident.hold_reason_required",
            IncidentError::ResolutionRequired => "incident.resolution_required",
            IncidentError::AssigneeRequired => "incident.assignee_required",
            IncidentError::InvalidImpact(_) => "incident.invalid_impact",
            IncidentError::InvalidUrgency(_) => "incident.invalid_urgency",
            IncidentError::InvalidPriority(_) => "incident.invalid_priority",
            IncidentError::InvalidMatrix(_) => "incident.invalid_priority_matrix",
            IncidentError::Text(_) => "validation.invalid_text",
            IncidentError::Final { .. } => "incident.final_state",
        }
    }

    fn class(&self) -> ErrorClass {
        match self {
            IncidentError::InvalidTransition { .. } | IncidentError::Final { .. } => {
                ErrorClass::Conflict
            }
            IncidentError::NotPermitted { .. } => ErrorClass::Forbidden,
            IncidentError::HoldReasonRequired
            | IncidentError::ResolutionRequired
            | IncidentError::AssigneeRequired
            | IncidentError::InvalidImpact(_)
            | IncidentError::InvalidUrgency(_)
            | IncidentError::InvalidPriority(_)
            | IncidentError::InvalidMatrix(_)
            | IncidentError::Text(_) => ErrorClass::Invalid,
        }
    }

    fn field(&self) -> Option<&str> {
        match self {
            IncidentError::HoldReasonRequired => Some("hold_reason"),
            IncidentError::ResolutionRequired => Some("resolution_code"),
            IncidentError::AssigneeRequired => Some("assignee"),
            IncidentError::InvalidImpact(_) => Some("impact"),
            IncidentError::InvalidUrgency(_) => Some("urgency"),
            IncidentError::InvalidPriority(_) => Some("priority"),
            IncidentError::Text(e) => Some(e.field()),
            IncidentError::InvalidTransition { .. }
            | IncidentError::NotPermitted { .. }
            | IncidentError::InvalidMatrix(_)
            | IncidentError::Final { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_read_as_sentences_naming_the_action_and_state() {
        let e = IncidentError::InvalidTransition {
            from: State::Closed,
            action: Action::Resolve,
        };
        assert_eq!(
            e.to_string(),
            "cannot `resolve` an incident that is `closed`"
        );
        let e = IncidentError::NotPermitted {
            action: Action::Cancel,
        };
        assert_eq!(
            e.to_string(),
            "you are not permitted to `cancel` this incident"
        );
        let e = IncidentError::Final {
            state: State::Cancelled,
        };
        assert_eq!(
            e.to_string(),
            "the incident is `cancelled` and can no longer be changed"
        );
        let e = IncidentError::Text(TextError::Empty { field: "title" });
        assert_eq!(e.to_string(), "title must not be empty");
    }

    #[test]
    fn every_error_has_its_code_class_and_field() {
        let cases = [
            (
                IncidentError::InvalidTransition {
                    from: State::New,
                    action: Action::Close,
                },
                "incident.invalid_transition",
                ErrorClass::Conflict,
                None,
            ),
            (
                IncidentError::NotPermitted {
                    action: Action::Start,
                },
                "incident.transition_not_permitted",
                ErrorClass::Forbidden,
                None,
            ),
            (
                IncidentError::HoldReasonRequired,
                "incident.hold_reason_required",
                ErrorClass::Invalid,
                Some("hold_reason"),
            ),
            (
                IncidentError::ResolutionRequired,
                "incident.resolution_required",
                ErrorClass::Invalid,
                Some("resolution_code"),
            ),
            (
                IncidentError::AssigneeRequired,
                "incident.assignee_required",
                ErrorClass::Invalid,
                Some("assignee"),
            ),
            (
                IncidentError::InvalidImpact(9),
                "incident.invalid_impact",
                ErrorClass::Invalid,
                Some("impact"),
            ),
            (
                IncidentError::InvalidUrgency(0),
                "incident.invalid_urgency",
                ErrorClass::Invalid,
                Some("urgency"),
            ),
            (
                IncidentError::InvalidPriority(6),
                "incident.invalid_priority",
                ErrorClass::Invalid,
                Some("priority"),
            ),
            (
                IncidentError::InvalidMatrix("x".into()),
                "incident.invalid_priority_matrix",
                ErrorClass::Invalid,
                None,
            ),
            (
                IncidentError::Text(TextError::TooLong {
                    field: "title",
                    max: 200,
                }),
                "validation.invalid_text",
                ErrorClass::Invalid,
                Some("title"),
            ),
            (
                IncidentError::Final {
                    state: State::Closed,
                },
                "incident.final_state",
                ErrorClass::Conflict,
                None,
            ),
        ];
        for (e, code, class, field) in cases {
            assert_eq!(e.code(), code, "{e:?}");
            assert_eq!(e.class(), class, "{e:?}");
            assert_eq!(e.field(), field, "{e:?}");
        }
    }
}
