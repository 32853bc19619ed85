//! SLA policies: which records they cover, what they promise, when the clock
//! pauses, when to warn, and what to do about a warning or a breach.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{Clock, SlaError, Timer, TimerState};

/// The promise a target measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    /// Until an agent first reacts visibly to the requester.
    FirstResponse,
    /// Until the record is resolved.
    Resolution,
    /// Between public updates from agents; restarts at each one.
    NextUpdate,
}

impl TargetKind {
    pub const ALL: [TargetKind; 3] = [
        TargetKind::FirstResponse,
        TargetKind::Resolution,
        TargetKind::NextUpdate,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TargetKind::FirstResponse => "first_response",
            TargetKind::Resolution => "resolution",
            TargetKind::NextUpdate => "next_update",
        }
    }

    pub fn parse(s: &str) -> Option<TargetKind> {
        TargetKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// One target of a policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Target {
    pub kind: TargetKind,
    /// Business seconds allowed: 1 second to 10 years.
    #[schema(minimum = 1, maximum = 316_224_000)]
    pub secs: i64,
    /// The business calendar that measures it; 24×7 when absent.
    #[serde(default)]
    pub calendar: Option<Uuid>,
}

/// Which records a policy covers; an empty list matches anything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Conditions {
    #[schema(minimum = 1, maximum = 5)]
    pub priorities: Vec<u8>,
    /// Assignment groups (the group's OLA when only groups are given).
    pub groups: Vec<Uuid>,
    /// At most 100.
    #[schema(max_items = 100)]
    pub categories: Vec<String>,
}

/// When an escalation fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// When elapsed time reaches this percent of the target; one of the
    /// policy's `warn_percents`.
    Warning(u32),
    /// When the target is breached.
    Breach,
}

/// What an escalation does to the record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EscalationAction {
    /// One step more urgent (P3 → P2), never past P1.
    RaisePriority,
    /// Hand the record to another assignment group (the assignee is cleared).
    Reassign { group: Uuid },
    /// Email someone outside the assignment, such as a manager.
    Notify {
        #[schema(
            max_length = 254,
            pattern = r"^[!-?A-~]{1,64}@[!-\-/-?A-~]+(\.[!-\-/-?A-~]+)+$"
        )]
        email: String,
    },
}

/// An escalation: on a trigger of a target kind, do an action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EscalationRule {
    pub target: TargetKind,
    pub on: Trigger,
    pub action: EscalationAction,
}

fn default_pause_states() -> Vec<String> {
    vec!["on_hold".into()]
}

/// The percentages a policy warns at unless it says otherwise; also those
/// of a timer whose policy is gone.
pub const DEFAULT_WARN_PERCENTS: [u32; 2] = [75, 90];

fn default_warn() -> Vec<u32> {
    DEFAULT_WARN_PERCENTS.to_vec()
}

/// A policy's definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicySpec {
    #[serde(default)]
    pub conditions: Conditions,
    /// At least one, at most one of each kind.
    #[schema(min_items = 1)]
    pub targets: Vec<Target>,
    /// Record states in which every timer pauses; at most 16.
    #[serde(default = "default_pause_states")]
    #[schema(max_items = 16)]
    pub pause_states: Vec<String>,
    /// Percentages of a target at which a warning is recorded.
    #[serde(default = "default_warn")]
    #[schema(minimum = 1, maximum = 99)]
    pub warn_percents: Vec<u32>,
    /// At most 20; each on a target kind the policy has and, for a warning,
    /// at one of its `warn_percents`.
    #[serde(default)]
    #[schema(max_items = 20)]
    pub escalations: Vec<EscalationRule>,
}

/// What a policy looks at in a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts<'a> {
    pub priority: u8,
    pub group: Option<Uuid>,
    pub category: Option<&'a str>,
}

/// The longest target accepted: ten years.
const MAX_TARGET_SECS: i64 = 10 * 366 * 86_400;

impl PolicySpec {
    /// Checks the definition: at least one target, at most one per kind,
    /// positive bounded durations, percentages 1-99, escalations on kinds the
    /// policy has and at percentages it warns at.
    pub fn validate(&self) -> Result<(), SlaError> {
        let bad = |m: String| Err(SlaError::InvalidPolicy(m));
        if self.targets.is_empty() {
            return bad("a policy needs at least one target".into());
        }
        for (i, t) in self.targets.iter().enumerate() {
            if !(1..=MAX_TARGET_SECS).contains(&t.secs) {
                return bad(format!(
                    "target {} must last 1 second to 10 years",
                    t.kind.as_str()
                ));
            }
            if self.targets[..i].iter().any(|o| o.kind == t.kind) {
                return bad(format!("two {} targets", t.kind.as_str()));
            }
        }
        if self.warn_percents.iter().any(|p| !(1..=99).contains(p)) {
            return bad("warning percentages are 1 to 99".into());
        }
        if self
            .conditions
            .priorities
            .iter()
            .any(|p| !(1..=5).contains(p))
        {
            return bad("priorities are 1 to 5".into());
        }
        if self.pause_states.len() > 16
            || self.conditions.categories.len() > 100
            || self.escalations.len() > 20
        {
            return bad("too many pause states, categories or escalations".into());
        }
        for e in &self.escalations {
            if let EscalationAction::Notify { email } = &e.action
                && keel_core::people::EmailAddress::parse(email).is_err()
            {
                return bad(format!(
                    "`{}` is not an email address",
                    email.chars().take(80).collect::<String>()
                ));
            }
            if !self.targets.iter().any(|t| t.kind == e.target) {
                return bad(format!(
                    "an escalation names {}, which the policy has no target for",
                    e.target.as_str()
                ));
            }
            if let Trigger::Warning(p) = e.on
                && !self.warn_percents.contains(&p)
            {
                return bad(format!(
                    "an escalation fires at {p} %, which is not a warning percentage"
                ));
            }
        }
        Ok(())
    }

    /// Whether the policy covers a record with these facts.
    pub fn matches(&self, f: &Facts<'_>) -> bool {
        let c = &self.conditions;
        (c.priorities.is_empty() || c.priorities.contains(&f.priority))
            && (c.groups.is_empty() || f.group.is_some_and(|g| c.groups.contains(&g)))
            && (c.categories.is_empty()
                || f.category
                    .is_some_and(|cat| c.categories.iter().any(|x| x == cat)))
    }

    pub fn target(&self, kind: TargetKind) -> Option<&Target> {
        self.targets.iter().find(|t| t.kind == kind)
    }

    /// Whether timers pause in `state`.
    pub fn pauses_in(&self, state: &str) -> bool {
        self.pause_states.iter().any(|s| s == state)
    }
}

/// When a running timer next needs looking at: the moment it reaches the
/// next warning percentage above `warned`, or its target if not yet
/// `breached`. `None` when paused, stopped, or nothing is left to fire.
pub fn next_check(
    timer: &Timer,
    clock: &Clock,
    warn_percents: &[u32],
    warned: u32,
    breached: bool,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let status = timer.status(clock, now);
    if matches!(status.state, TimerState::Paused | TimerState::Met) || timer.stopped_at.is_some() {
        return None;
    }
    let mut marks: Vec<i64> = warn_percents
        .iter()
        .filter(|p| **p > warned)
        .map(|p| (i128::from(timer.target_secs) * i128::from(*p)).div_euclid(100) as i64)
        .collect();
    if !breached {
        marks.push(timer.target_secs);
    }
    // A threshold already reached but not yet recorded: look now.
    if marks.iter().any(|m| *m <= status.elapsed_secs) {
        return Some(now);
    }
    let next = marks.into_iter().min()?;
    Some(clock.add_seconds(now, next - status.elapsed_secs))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn spec(json: &str) -> PolicySpec {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn a_policy_matches_on_every_condition_it_names() {
        let g = Uuid::new_v4();
        let p = spec(&format!(
            r#"{{"conditions": {{"priorities": [1, 2], "groups": ["{g}"]}}, "targets": [{{"kind": "resolution", "secs": 3600}}]}}"#
        ));
        assert!(p.matches(&Facts {
            priority: 1,
            group: Some(g),
            category: None
        }));
        assert!(!p.matches(&Facts {
            priority: 3,
            group: Some(g),
            category: None
        }));
        assert!(!p.matches(&Facts {
            priority: 1,
            group: None,
            category: None
        }));
        let any = spec(r#"{"targets": [{"kind": "first_response", "secs": 60}]}"#);
        assert!(any.matches(&Facts {
            priority: 5,
            group: None,
            category: Some("x")
        }));
        assert_eq!(any.pause_states, vec!["on_hold".to_owned()]);
        assert_eq!(any.warn_percents, vec![75, 90]);
    }

    #[test]
    fn invalid_policies_are_refused() {
        for bad in [
            r#"{"targets": []}"#,
            r#"{"targets": [{"kind": "resolution", "secs": 0}]}"#,
            r#"{"targets": [{"kind": "resolution", "secs": 60}, {"kind": "resolution", "secs": 90}]}"#,
            r#"{"targets": [{"kind": "resolution", "secs": 60}], "warn_percents": [100]}"#,
            r#"{"targets": [{"kind": "resolution", "secs": 60}], "escalations": [{"target": "first_response", "on": "breach", "action": "raise_priority"}]}"#,
            r#"{"targets": [{"kind": "resolution", "secs": 60}], "escalations": [{"target": "resolution", "on": {"warning": 50}, "action": "raise_priority"}]}"#,
        ] {
            assert!(spec(bad).validate().is_err(), "{bad}");
        }
        assert!(serde_json::from_str::<PolicySpec>(r#"{"targets": [], "bogus": 1}"#).is_err());
    }

    #[test]
    fn the_next_check_is_the_next_warning_then_the_breach() {
        let t0 = Utc.with_ymd_and_hms(2026, 1, 5, 9, 0, 0).unwrap();
        let timer = Timer::start(1000, t0);
        let c = Clock::Always;
        assert_eq!(
            next_check(&timer, &c, &[75, 90], 0, false, t0),
            Some(t0 + chrono::Duration::seconds(750))
        );
        assert_eq!(
            next_check(&timer, &c, &[75, 90], 75, false, t0),
            Some(t0 + chrono::Duration::seconds(900))
        );
        assert_eq!(
            next_check(&timer, &c, &[75, 90], 90, false, t0),
            Some(t0 + chrono::Duration::seconds(1000))
        );
        assert_eq!(next_check(&timer, &c, &[75, 90], 90, true, t0), None);
        // Past a threshold that was not recorded yet: check at once.
        let late = t0 + chrono::Duration::seconds(800);
        assert_eq!(
            next_check(&timer, &c, &[75, 90], 0, false, late),
            Some(late)
        );
        let mut paused = timer.clone();
        paused.pause(t0);
        assert_eq!(next_check(&paused, &c, &[75, 90], 0, false, t0), None);
    }
}
