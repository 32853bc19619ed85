//! The incident lifecycle as data plus one function.
//!
//! ```text
//! new ──start──▶ in_progress ◀──resume/start── on_hold
//!  │                 │  └──────────hold──────────▶ │
//!  └─────resolve─────┴──────▶ resolved ◀──resolve──┘
//!                      reopen ◀─┘  └─close─▶ closed
//! new / in_progress / on_hold ──cancel──▶ cancelled
//! ```
//!
//! [`TRANSITIONS`] is the contract; [`apply`] checks a request against it and
//! returns the [`Effects`] the caller must carry out. Closed and cancelled
//! are final.

use serde::{Deserialize, Serialize};

use keel_core::text::{TextError, clean};

use crate::error::IncidentError;

/// Longest accepted resolution notes, in characters.
pub const RESOLUTION_NOTES_MAX_CHARS: usize = 4000;

/// Where an incident is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Raised, not yet worked.
    New,
    /// Being worked by an agent.
    InProgress,
    /// Waiting on the requester, a supplier or a change; pauses SLA clocks.
    OnHold,
    /// Service restored; awaiting confirmation or automatic closure.
    Resolved,
    /// Confirmed or aged out after resolution. Final.
    Closed,
    /// Withdrawn: a duplicate or a mistake. Final.
    Cancelled,
}

named_enum!(State {
    New => "new",
    InProgress => "in_progress",
    OnHold => "on_hold",
    Resolved => "resolved",
    Closed => "closed",
    Cancelled => "cancelled",
});

impl State {
    /// Closed and cancelled: no transition leaves them and the record can no
    /// longer be edited.
    pub fn is_final(self) -> bool {
        matches!(self, State::Closed | State::Cancelled)
    }

    /// New, in progress or on hold: someone still has work to do.
    pub fn is_open(self) -> bool {
        matches!(self, State::New | State::InProgress | State::OnHold)
    }

    /// On hold: SLA clocks are paused.
    pub fn pauses_sla(self) -> bool {
        self == State::OnHold
    }
}

/// A verb that moves an incident between states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Begin (or return to) work: to in_progress.
    Start,
    /// Pause while waiting on someone: to on_hold, with a reason.
    Hold,
    /// End a hold: back to in_progress.
    Resume,
    /// Service is restored: to resolved, with a code and notes.
    Resolve,
    /// The fix did not hold: back to in_progress.
    Reopen,
    /// Confirm a resolution: to closed.
    Close,
    /// Withdraw a duplicate or a mistake: to cancelled.
    Cancel,
}

named_enum!(Action {
    Start => "start",
    Hold => "hold",
    Resume => "resume",
    Resolve => "resolve",
    Reopen => "reopen",
    Close => "close",
    Cancel => "cancel",
});

/// Why an incident is on hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HoldReason {
    /// Waiting for the requester to answer or act.
    AwaitingRequester,
    /// Waiting for an outside supplier.
    AwaitingSupplier,
    /// Waiting for a change to be implemented.
    AwaitingChange,
}

named_enum!(HoldReason {
    AwaitingRequester => "awaiting_requester",
    AwaitingSupplier => "awaiting_supplier",
    AwaitingChange => "awaiting_change",
});

/// How an incident was resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ResolutionCode {
    /// The cause was fixed.
    SolvedPermanently,
    /// Service restored by a workaround; the cause remains.
    SolvedWorkaround,
    /// The fault could not be reproduced.
    NotReproducible,
    /// Not fixed: the fix would cost more than it is worth.
    NotSolvedTooCostly,
    /// The requester fixed it themselves.
    ResolvedByCaller,
    /// Already handled under another incident.
    Duplicate,
}

named_enum!(ResolutionCode {
    SolvedPermanently => "solved_permanently",
    SolvedWorkaround => "solved_workaround",
    NotReproducible => "not_reproducible",
    NotSolvedTooCostly => "not_solved_too_costly",
    ResolvedByCaller => "resolved_by_caller",
    Duplicate => "duplicate",
});

/// Who is acting, relative to the incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActorRelation {
    /// Someone who works incidents (an agent or admin).
    Agent,
    /// The incident's own requester, not an agent.
    Requester,
    /// Anyone else; never permitted to transition.
    Other,
}

/// Who a transition row allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Who {
    /// Agents only.
    Agent,
    /// Agents, and the incident's own requester.
    AgentOrRequester,
}

named_enum!(Who {
    Agent => "agent",
    AgentOrRequester => "agent_or_requester",
});

impl Who {
    /// Whether an actor with this relation to the incident is allowed.
    pub fn permits(self, relation: ActorRelation) -> bool {
        match (self, relation) {
            (_, ActorRelation::Other) => false,
            (_, ActorRelation::Agent) => true,
            (Who::AgentOrRequester, ActorRelation::Requester) => true,
            (Who::Agent, ActorRelation::Requester) => false,
        }
    }
}

/// Everything a transition guard looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransitionInput {
    /// Who is acting, relative to the incident.
    pub relation: ActorRelation,
    /// Whether the incident currently has an assignee.
    pub has_assignee: bool,
    /// The hold reason given with the request (needed by `hold`).
    pub hold_reason: Option<HoldReason>,
    /// The resolution code given with the request (needed by `resolve`).
    pub resolution_code: Option<ResolutionCode>,
    /// The raw resolution notes given with the request (needed by `resolve`).
    pub resolution_notes: Option<String>,
}

impl TransitionInput {
    /// An input with only the actor's relation: no assignee, no fields.
    pub fn new(relation: ActorRelation) -> Self {
        Self {
            relation,
            has_assignee: false,
            hold_reason: None,
            resolution_code: None,
            resolution_notes: None,
        }
    }
}

/// What applying a transition does. The caller (the store) carries these out
/// in the same transaction as the state change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Effects {
    /// The new state.
    pub to: State,
    /// The hold reason after the transition: `Some` only when `to` is on_hold.
    pub hold_reason: Option<HoldReason>,
    /// The validated resolution code and notes to record: `Some` only on
    /// resolve. `None` leaves the stored resolution alone unless
    /// `clear_resolution` is set.
    pub resolution: Option<(ResolutionCode, String)>,
    /// Reopen: clear the resolution code, notes and resolved time.
    pub clear_resolution: bool,
    /// Record now as the resolved time.
    pub stamp_resolved: bool,
    /// Record now as the closed time.
    pub stamp_closed: bool,
    /// Record now as the cancelled time.
    pub stamp_cancelled: bool,
    /// Start with no assignee: the acting agent becomes the assignee.
    pub assign_actor: bool,
    /// Resolve: open child incidents are resolved too, with the same resolution.
    pub resolve_children: bool,
    /// An agent's transition counts as the first response.
    pub counts_as_response: bool,
}

/// One row of the transition table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Transition {
    /// The states the action applies from.
    pub from: &'static [State],
    /// The action.
    pub action: Action,
    /// The state it leads to.
    pub to: State,
    /// Who may take it.
    pub by: Who,
}

/// The transition table: the contract for the incident lifecycle. At most
/// one row matches any (state, action) pair. Cancel has two rows because the
/// requester may withdraw their own mistake only while it is still new.
pub const TRANSITIONS: &[Transition] = &[
    Transition {
        from: &[State::New, State::OnHold],
        action: Action::Start,
        to: State::InProgress,
        by: Who::Agent,
    },
    Transition {
        from: &[State::InProgress],
        action: Action::Hold,
        to: State::OnHold,
        by: Who::Agent,
    },
    Transition {
        from: &[State::OnHold],
        action: Action::Resume,
        to: State::InProgress,
        by: Who::Agent,
    },
    Transition {
        from: &[State::New, State::InProgress, State::OnHold],
        action: Action::Resolve,
        to: State::Resolved,
        by: Who::Agent,
    },
    Transition {
        from: &[State::Resolved],
        action: Action::Reopen,
        to: State::InProgress,
        by: Who::AgentOrRequester,
    },
    Transition {
        from: &[State::Resolved],
        action: Action::Close,
        to: State::Closed,
        by: Who::AgentOrRequester,
    },
    Transition {
        from: &[State::New],
        action: Action::Cancel,
        to: State::Cancelled,
        by: Who::AgentOrRequester,
    },
    Transition {
        from: &[State::InProgress, State::OnHold],
        action: Action::Cancel,
        to: State::Cancelled,
        by: Who::Agent,
    },
];

/// The table row for `action` from `from`, if the action applies there at all.
pub fn transition(from: State, action: Action) -> Option<&'static Transition> {
    TRANSITIONS
        .iter()
        .find(|t| t.action == action && t.from.contains(&from))
}

/// Checks a transition and says what it does. Checks, in order: the action
/// applies from this state ([`IncidentError::InvalidTransition`]); the actor
/// may take it ([`IncidentError::NotPermitted`]); the fields it needs are
/// present and valid.
pub fn apply(
    from: State,
    action: Action,
    input: &TransitionInput,
) -> Result<Effects, IncidentError> {
    let row = transition(from, action).ok_or(IncidentError::InvalidTransition { from, action })?;
    if !row.by.permits(input.relation) {
        return Err(IncidentError::NotPermitted { action });
    }

    let mut effects = Effects {
        to: row.to,
        hold_reason: None,
        resolution: None,
        clear_resolution: false,
        stamp_resolved: false,
        stamp_closed: false,
        stamp_cancelled: false,
        assign_actor: false,
        resolve_children: false,
        counts_as_response: input.relation == ActorRelation::Agent,
    };
    match action {
        Action::Start => effects.assign_actor = !input.has_assignee,
        Action::Hold => {
            effects.hold_reason = Some(input.hold_reason.ok_or(IncidentError::HoldReasonRequired)?);
        }
        Action::Resume => {}
        Action::Resolve => {
            let code = input
                .resolution_code
                .ok_or(IncidentError::ResolutionRequired)?;
            let raw = input
                .resolution_notes
                .as_deref()
                .ok_or(IncidentError::ResolutionRequired)?;
            let notes = clean(
                "resolution_notes",
                raw,
                RESOLUTION_NOTES_MAX_CHARS,
                true,
                true,
            )
            .map_err(|e| match e {
                // Blank notes are missing notes, the same as none at all.
                TextError::Empty { .. } => IncidentError::ResolutionRequired,
                other => IncidentError::Text(other),
            })?;
            effects.resolution = Some((code, notes));
            effects.stamp_resolved = true;
            effects.resolve_children = true;
        }
        Action::Reopen => effects.clear_resolution = true,
        Action::Close => effects.stamp_closed = true,
        Action::Cancel => effects.stamp_cancelled = true,
    }
    Ok(effects)
}

/// The automatic `resume` when the requester publicly replies to an incident
/// that is on hold awaiting them: the answer has arrived, so work goes on.
/// `None` in every other case. The reply is not a first response.
pub fn requester_reply(from: State, hold_reason: Option<HoldReason>) -> Option<Effects> {
    if from != State::OnHold || hold_reason != Some(HoldReason::AwaitingRequester) {
        return None;
    }
    let mut effects = apply(
        from,
        Action::Resume,
        &TransitionInput::new(ActorRelation::Agent),
    )
    .ok()?;
    effects.counts_as_response = false;
    Some(effects)
}

/// The actions this actor may take from this state, in [`Action::ALL`] order,
/// regardless of the fields each one needs.
pub fn available_actions(from: State, relation: ActorRelation) -> Vec<Action> {
    Action::ALL
        .into_iter()
        .filter(|&a| transition(from, a).is_some_and(|t| t.by.permits(relation)))
        .collect()
}

/// Refuses edits to a closed or cancelled incident with [`IncidentError::Final`].
pub fn ensure_editable(state: State) -> Result<(), IncidentError> {
    if state.is_final() {
        Err(IncidentError::Final { state })
    } else {
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {

    #[test]
    fn a_requester_reply_resumes_only_an_incident_awaiting_them() {
        let resumed = super::requester_reply(State::OnHold, Some(HoldReason::AwaitingRequester));
        assert_eq!(resumed.as_ref().map(|e| e.to), Some(State::InProgress));
        assert_eq!(resumed.map(|e| e.counts_as_response), Some(false));
        for hold in [
            Some(HoldReason::AwaitingSupplier),
            Some(HoldReason::AwaitingChange),
            None,
        ] {
            assert!(super::requester_reply(State::OnHold, hold).is_none());
        }
        for state in [
            State::New,
            State::InProgress,
            State::Resolved,
            State::Closed,
            State::Cancelled,
        ] {
            assert!(super::requester_reply(state, Some(HoldReason::AwaitingRequester)).is_none());
        }
    }

    use super::*;
    use serde::de::value::{Error as DeError, StrDeserializer};

    const RELATIONS: [ActorRelation; 3] = [
        ActorRelation::Agent,
        ActorRelation::Requester,
        ActorRelation::Other,
    ];

    #[derive(Debug, PartialEq)]
    enum Refusal {
        Invalid,
        NotPermitted,
    }

    /// The lifecycle written out independently of `TRANSITIONS`.
    fn expected(from: State, action: Action, rel: ActorRelation) -> Result<State, Refusal> {
        use Action::*;
        use State::*;
        let to = match (action, from) {
            (Start, New | OnHold) => InProgress,
            (Hold, InProgress) => OnHold,
            (Resume, OnHold) => InProgress,
            (Resolve, New | InProgress | OnHold) => Resolved,
            (Reopen, Resolved) => InProgress,
            (Close, Resolved) => Closed,
            (Cancel, New | InProgress | OnHold) => Cancelled,
            _ => return Err(Refusal::Invalid),
        };
        let allowed = match rel {
            ActorRelation::Agent => true,
            ActorRelation::Other => false,
            ActorRelation::Requester => {
                matches!((action, from), (Reopen, _) | (Close, _) | (Cancel, New))
            }
        };
        if allowed {
            Ok(to)
        } else {
            Err(Refusal::NotPermitted)
        }
    }

    fn complete(relation: ActorRelation) -> TransitionInput {
        TransitionInput {
            relation,
            has_assignee: true,
            hold_reason: Some(HoldReason::AwaitingSupplier),
            resolution_code: Some(ResolutionCode::SolvedWorkaround),
            resolution_notes: Some("  Restarted the spooler.  ".into()),
        }
    }

    fn check_refusal(
        got: &Result<Effects, IncidentError>,
        want: &Refusal,
        from: State,
        action: Action,
    ) {
        let want = match want {
            Refusal::Invalid => IncidentError::InvalidTransition { from, action },
            Refusal::NotPermitted => IncidentError::NotPermitted { action },
        };
        assert_eq!(got, &Err(want), "{from} {action}");
    }

    #[test]
    fn every_state_action_and_relation_matches_the_written_lifecycle() {
        let mut checked = 0;
        for from in State::ALL {
            for action in Action::ALL {
                for rel in RELATIONS {
                    let ctx = format!("{from} --{action}--> as {rel:?}");
                    let want = expected(from, action, rel);

                    // With every field supplied.
                    let got = apply(from, action, &complete(rel));
                    match &want {
                        Err(refusal) => check_refusal(&got, refusal, from, action),
                        Ok(to) => {
                            let e = got.unwrap();
                            let resolve = action == Action::Resolve;
                            let want_effects = Effects {
                                to: *to,
                                hold_reason: (*to == State::OnHold)
                                    .then_some(HoldReason::AwaitingSupplier),
                                resolution: resolve.then(|| {
                                    (
                                        ResolutionCode::SolvedWorkaround,
                                        "Restarted the spooler.".to_owned(),
                                    )
                                }),
                                clear_resolution: action == Action::Reopen,
                                stamp_resolved: resolve,
                                stamp_closed: *to == State::Closed,
                                stamp_cancelled: *to == State::Cancelled,
                                assign_actor: false,
                                resolve_children: resolve,
                                counts_as_response: rel == ActorRelation::Agent,
                            };
                            assert_eq!(e, want_effects, "{ctx}");
                        }
                    }

                    // With nothing supplied and no assignee: role and state
                    // checks come first; then the field guards.
                    let got = apply(from, action, &TransitionInput::new(rel));
                    match &want {
                        Err(refusal) => check_refusal(&got, refusal, from, action),
                        Ok(to) => match action {
                            Action::Hold => {
                                assert_eq!(got, Err(IncidentError::HoldReasonRequired), "{ctx}")
                            }
                            Action::Resolve => {
                                assert_eq!(got, Err(IncidentError::ResolutionRequired), "{ctx}")
                            }
                            _ => {
                                let e = got.unwrap();
                                assert_eq!(e.to, *to, "{ctx}");
                                assert_eq!(e.assign_actor, action == Action::Start, "{ctx}");
                            }
                        },
                    }
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, 6 * 7 * 3);
    }

    #[test]
    fn the_table_has_at_most_one_row_per_state_and_action() {
        for from in State::ALL {
            for action in Action::ALL {
                let rows = TRANSITIONS
                    .iter()
                    .filter(|t| t.action == action && t.from.contains(&from));
                assert!(rows.count() <= 1, "{from} {action}");
            }
        }
    }

    #[test]
    fn nothing_leaves_a_final_state() {
        for from in [State::Closed, State::Cancelled] {
            assert!(from.is_final() && !from.is_open());
            for action in Action::ALL {
                for rel in RELATIONS {
                    assert_eq!(
                        apply(from, action, &complete(rel)),
                        Err(IncidentError::InvalidTransition { from, action })
                    );
                }
                assert!(available_actions(from, ActorRelation::Agent).is_empty());
            }
            assert_eq!(
                ensure_editable(from),
                Err(IncidentError::Final { state: from })
            );
        }
        for open in [
            State::New,
            State::InProgress,
            State::OnHold,
            State::Resolved,
        ] {
            assert_eq!(ensure_editable(open), Ok(()));
        }
    }

    #[test]
    fn holding_without_a_reason_is_refused() {
        let input = TransitionInput {
            hold_reason: None,
            ..complete(ActorRelation::Agent)
        };
        assert_eq!(
            apply(State::InProgress, Action::Hold, &input),
            Err(IncidentError::HoldReasonRequired)
        );
    }

    #[test]
    fn leaving_hold_clears_the_hold_reason() {
        for action in [
            Action::Resume,
            Action::Start,
            Action::Resolve,
            Action::Cancel,
        ] {
            let e = apply(State::OnHold, action, &complete(ActorRelation::Agent)).unwrap();
            assert_eq!(e.hold_reason, None, "{action}");
        }
    }

    #[test]
    fn resolving_without_a_code_is_refused() {
        let input = TransitionInput {
            resolution_code: None,
            ..complete(ActorRelation::Agent)
        };
        assert_eq!(
            apply(State::InProgress, Action::Resolve, &input),
            Err(IncidentError::ResolutionRequired)
        );
    }

    #[test]
    fn resolving_without_notes_or_with_blank_notes_is_refused() {
        for notes in [None, Some(String::new()), Some(" \n\t ".to_owned())] {
            let input = TransitionInput {
                resolution_notes: notes,
                ..complete(ActorRelation::Agent)
            };
            assert_eq!(
                apply(State::New, Action::Resolve, &input),
                Err(IncidentError::ResolutionRequired)
            );
        }
    }

    #[test]
    fn resolution_notes_that_are_too_long_or_contain_control_characters_are_refused() {
        let long = TransitionInput {
            resolution_notes: Some("x".repeat(4001)),
            ..complete(ActorRelation::Agent)
        };
        assert_eq!(
            apply(State::OnHold, Action::Resolve, &long),
            Err(IncidentError::Text(TextError::TooLong {
                field: "resolution_notes",
                max: 4000
            }))
        );
        let ctrl = TransitionInput {
            resolution_notes: Some("fixed\u{1b}[31m".into()),
            ..complete(ActorRelation::Agent)
        };
        assert_eq!(
            apply(State::OnHold, Action::Resolve, &ctrl),
            Err(IncidentError::Text(TextError::ControlChars {
                field: "resolution_notes"
            }))
        );
        let multiline = TransitionInput {
            resolution_notes: Some("step 1\nstep 2".into()),
            ..complete(ActorRelation::Agent)
        };
        assert!(apply(State::OnHold, Action::Resolve, &multiline).is_ok());
    }

    #[test]
    fn a_requester_may_cancel_from_new_but_not_from_in_progress() {
        let requester = TransitionInput::new(ActorRelation::Requester);
        let e = apply(State::New, Action::Cancel, &requester).unwrap();
        assert_eq!(e.to, State::Cancelled);
        assert!(e.stamp_cancelled);
        assert!(!e.counts_as_response);
        for from in [State::InProgress, State::OnHold] {
            assert_eq!(
                apply(from, Action::Cancel, &requester),
                Err(IncidentError::NotPermitted {
                    action: Action::Cancel
                })
            );
        }
    }

    #[test]
    fn a_requester_may_reopen_or_confirm_their_resolved_incident() {
        let requester = TransitionInput::new(ActorRelation::Requester);
        let reopened = apply(State::Resolved, Action::Reopen, &requester).unwrap();
        assert_eq!(reopened.to, State::InProgress);
        assert!(reopened.clear_resolution);
        let closed = apply(State::Resolved, Action::Close, &requester).unwrap();
        assert_eq!(closed.to, State::Closed);
        assert!(closed.stamp_closed);
    }

    #[test]
    fn an_unrelated_actor_is_never_permitted() {
        for from in State::ALL {
            for action in Action::ALL {
                let got = apply(from, action, &complete(ActorRelation::Other));
                assert!(got.is_err(), "{from} {action}");
                if transition(from, action).is_some() {
                    assert_eq!(got, Err(IncidentError::NotPermitted { action }));
                }
            }
            assert!(available_actions(from, ActorRelation::Other).is_empty());
        }
    }

    #[test]
    fn starting_without_an_assignee_assigns_the_acting_agent() {
        for from in [State::New, State::OnHold] {
            let e = apply(
                from,
                Action::Start,
                &TransitionInput::new(ActorRelation::Agent),
            )
            .unwrap();
            assert!(e.assign_actor);
            assert!(e.counts_as_response);
            let assigned = TransitionInput {
                has_assignee: true,
                ..complete(ActorRelation::Agent)
            };
            assert!(!apply(from, Action::Start, &assigned).unwrap().assign_actor);
        }
    }

    #[test]
    fn resolving_resolves_children_and_stamps_the_time() {
        let e = apply(
            State::InProgress,
            Action::Resolve,
            &complete(ActorRelation::Agent),
        )
        .unwrap();
        assert!(e.resolve_children && e.stamp_resolved);
        assert_eq!(
            e.resolution,
            Some((
                ResolutionCode::SolvedWorkaround,
                "Restarted the spooler.".into()
            ))
        );
    }

    #[test]
    fn available_actions_agree_with_apply() {
        for from in State::ALL {
            for rel in RELATIONS {
                let available = available_actions(from, rel);
                for action in Action::ALL {
                    let allowed = apply(from, action, &complete(rel)).is_ok();
                    assert_eq!(
                        available.contains(&action),
                        allowed,
                        "{from} {action} {rel:?}"
                    );
                }
                let mut sorted = available.clone();
                sorted.dedup();
                assert_eq!(sorted, available);
            }
        }
        assert_eq!(
            available_actions(State::New, ActorRelation::Agent),
            vec![Action::Start, Action::Resolve, Action::Cancel]
        );
        assert_eq!(
            available_actions(State::New, ActorRelation::Requester),
            vec![Action::Cancel]
        );
        assert_eq!(
            available_actions(State::Resolved, ActorRelation::Requester),
            vec![Action::Reopen, Action::Close]
        );
    }

    #[test]
    fn open_and_final_states_are_classified() {
        let open: Vec<State> = State::ALL.into_iter().filter(|s| s.is_open()).collect();
        assert_eq!(open, vec![State::New, State::InProgress, State::OnHold]);
        let fin: Vec<State> = State::ALL.into_iter().filter(|s| s.is_final()).collect();
        assert_eq!(fin, vec![State::Closed, State::Cancelled]);
        assert!(State::OnHold.pauses_sla() && !State::InProgress.pauses_sla());
    }

    fn round_trips<T>(all: &[T])
    where
        T: Copy + PartialEq + std::fmt::Debug + std::fmt::Display + std::str::FromStr,
        T: for<'de> Deserialize<'de>,
    {
        for &v in all {
            let name = v.to_string();
            assert!(v.to_string().parse::<T>().ok() == Some(v), "{name}");
            let de: Result<T, DeError> = T::deserialize(StrDeserializer::new(&name));
            assert_eq!(de.ok(), Some(v), "serde name of {name}");
        }
        assert!("Unknown".parse::<T>().is_err());
    }

    #[test]
    fn every_name_round_trips_and_matches_its_serde_name() {
        round_trips(&State::ALL);
        round_trips(&Action::ALL);
        round_trips(&HoldReason::ALL);
        round_trips(&ResolutionCode::ALL);
        round_trips(&Who::ALL);
        assert_eq!(State::InProgress.as_str(), "in_progress");
        assert_eq!(
            ResolutionCode::NotSolvedTooCostly.as_str(),
            "not_solved_too_costly"
        );
        assert_eq!("on_hold".parse::<State>(), Ok(State::OnHold));
        assert_eq!(
            "nope".parse::<Action>(),
            Err(keel_core::actor::UnknownName("nope".into()))
        );
    }
}
