//! One SLA target's timer and what it says at a given moment.

use std::sync::{Mutex, PoisonError};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::calendar::Clock;

/// A span during which the timer did not run (the record was on hold).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pause {
    pub from: DateTime<Utc>,
    /// `None` while still paused.
    pub until: Option<DateTime<Utc>>,
}

/// One SLA target's timer: started, possibly paused (spans), possibly stopped
/// (the target was met, or missed, at `stopped_at`).
///
/// The pause history is kept in full, so a change of target
/// ([`Timer::retarget`]) never loses time already counted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timer {
    /// The target in business seconds of the timer's clock.
    pub target_secs: i64,
    pub started_at: DateTime<Utc>,
    #[serde(default)]
    pub pauses: Vec<Pause>,
    #[serde(default)]
    pub stopped_at: Option<DateTime<Utc>>,
}

/// Where a timer stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TimerState {
    InProgress,
    Paused,
    Met,
    Breached,
}

impl TimerState {
    /// The snake_case name used in the API (its serde name).
    pub fn as_str(self) -> &'static str {
        match self {
            TimerState::InProgress => "in_progress",
            TimerState::Paused => "paused",
            TimerState::Met => "met",
            TimerState::Breached => "breached",
        }
    }
}

/// What a timer says at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimerStatus {
    /// When the target is (or was) reached if the timer is not paused again;
    /// `None` while paused.
    pub due_at: Option<DateTime<Utc>>,
    /// Business seconds counted so far, pauses excluded.
    pub elapsed_secs: i64,
    /// `target_secs - elapsed_secs`; negative once the target is exceeded.
    pub remaining_secs: i64,
    pub state: TimerState,
    /// `elapsed * 100 / target`, rounded down; may exceed 100. 100 for a
    /// target of zero or less.
    pub percent: u32,
}

/// A timer's due instant under one calendar, kept beside the timer
/// ([`Timer::status_remembering`]). It is not part of the timer: any two
/// memos are equal, and a clone starts empty.
#[derive(Debug, Default)]
pub struct DueMemo(Mutex<Option<(u64, DateTime<Utc>)>>);

impl DueMemo {
    /// The instant kept under `serial`, else `count`'s, then kept.
    fn get_or(&self, serial: u64, count: impl FnOnce() -> DateTime<Utc>) -> DateTime<Utc> {
        // Nothing panics while holding it; a poisoned memo is still whole.
        let mut kept = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match *kept {
            Some((s, at)) if s == serial => at,
            _ => {
                let at = count();
                *kept = Some((serial, at));
                at
            }
        }
    }
}

impl Clone for DueMemo {
    fn clone(&self) -> Self {
        DueMemo::default()
    }
}

impl PartialEq for DueMemo {
    fn eq(&self, _: &DueMemo) -> bool {
        true
    }
}

impl Eq for DueMemo {}

impl Timer {
    /// A running timer started at `at`.
    pub fn start(target_secs: i64, at: DateTime<Utc>) -> Timer {
        Timer {
            target_secs,
            started_at: at,
            pauses: Vec::new(),
            stopped_at: None,
        }
    }

    /// Whether the last pause is still open.
    pub fn is_paused(&self) -> bool {
        self.pauses.last().is_some_and(|p| p.until.is_none())
    }

    /// The timer at `now` under `clock`.
    ///
    /// Elapsed time is the business time from `started_at` to
    /// `min(now, stopped_at)` minus the business time inside the pauses
    /// (clipped to that span; overlapping pauses count once).
    pub fn status(&self, clock: &Clock, now: DateTime<Utc>) -> TimerStatus {
        self.status_with(clock, now, None)
    }

    /// [`Timer::status`], keeping the due instant in `memo` once it can no
    /// longer move, and taking it from there when it was kept under the
    /// same calendar ([`Calendar::serial`](crate::calendar::Calendar::serial)).
    /// It can no longer move once every pause has ended by the moment
    /// counted to (`now`, or the stop): the instant depends only on the
    /// start, the target, those pauses and the calendar. On a page of
    /// incidents, counting it was a third of the timers' cost
    /// (bench/RESULTS.md, twenty-ninth session).
    ///
    /// `memo` must be kept with this timer alone, whose start, target and
    /// pauses do not change while it is kept (a clone of a memo starts
    /// empty).
    pub fn status_remembering(
        &self,
        clock: &Clock,
        now: DateTime<Utc>,
        memo: &DueMemo,
    ) -> TimerStatus {
        self.status_with(clock, now, Some(memo))
    }

    fn status_with(
        &self,
        clock: &Clock,
        now: DateTime<Utc>,
        memo: Option<&DueMemo>,
    ) -> TimerStatus {
        let end = match self.stopped_at {
            Some(stop) => stop.min(now),
            None => now,
        };
        let paused = self.paused_spans(end);
        let elapsed = if end > self.started_at {
            clock.seconds_between(self.started_at, end)
                - paused
                    .iter()
                    .map(|&(a, b)| clock.seconds_between(a, b))
                    .sum::<i64>()
        } else {
            0
        };
        let paused_now = self.stopped_at.is_none()
            && self
                .pauses
                .iter()
                .any(|p| p.until.is_none() && p.from <= now);
        let state = match self.stopped_at {
            Some(_) if elapsed <= self.target_secs => TimerState::Met,
            Some(_) => TimerState::Breached,
            None if elapsed >= self.target_secs => TimerState::Breached,
            None if paused_now => TimerState::Paused,
            None => TimerState::InProgress,
        };
        let due_at = if paused_now {
            None
        } else {
            let settled = || {
                self.pauses
                    .iter()
                    .all(|p| p.until.is_some_and(|until| until <= end))
            };
            Some(match (memo, clock) {
                (Some(memo), Clock::Business(cal)) if settled() => {
                    memo.get_or(cal.serial(), || self.due(clock, &paused))
                }
                _ => self.due(clock, &paused),
            })
        };
        let percent = if self.target_secs <= 0 {
            100
        } else {
            u32::try_from(i128::from(elapsed) * 100 / i128::from(self.target_secs))
                .unwrap_or(u32::MAX)
        };
        TimerStatus {
            due_at,
            elapsed_secs: elapsed,
            remaining_secs: self.target_secs.saturating_sub(elapsed),
            state,
            percent,
        }
    }

    /// Pauses at `at` (not before the timer started or the last pause ended).
    /// No-op if already paused or stopped.
    pub fn pause(&mut self, at: DateTime<Utc>) {
        if self.stopped_at.is_some() || self.is_paused() {
            return;
        }
        let mut from = at.max(self.started_at);
        if let Some(until) = self.pauses.last().and_then(|p| p.until) {
            from = from.max(until);
        }
        self.pauses.push(Pause { from, until: None });
    }

    /// Resumes at `at` (not before the pause began). No-op if not paused.
    pub fn resume(&mut self, at: DateTime<Utc>) {
        if let Some(last) = self.pauses.last_mut()
            && last.until.is_none()
        {
            last.until = Some(at.max(last.from));
        }
    }

    /// Stops the timer at `at`: met or breached is fixed from here. An open
    /// pause ends at `at`. No-op if already stopped.
    pub fn stop(&mut self, at: DateTime<Utc>) {
        if self.stopped_at.is_some() {
            return;
        }
        self.resume(at);
        self.stopped_at = Some(at.max(self.started_at));
    }

    /// A new target (the policy or priority changed). Keeps `started_at` and
    /// the pause history, so the elapsed time is preserved.
    pub fn retarget(&mut self, target_secs: i64) {
        self.target_secs = target_secs;
    }

    /// The pauses clipped to `[started_at, end]`, sorted and merged; an open
    /// pause runs to `end`.
    fn paused_spans(&self, end: DateTime<Utc>) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
        let mut spans: Vec<_> = self
            .pauses
            .iter()
            .filter_map(|p| {
                let a = p.from.max(self.started_at);
                let b = p.until.unwrap_or(end).min(end);
                (b > a).then_some((a, b))
            })
            .collect();
        spans.sort();
        let mut merged: Vec<(DateTime<Utc>, DateTime<Utc>)> = Vec::with_capacity(spans.len());
        for (a, b) in spans {
            match merged.last_mut() {
                Some(last) if a <= last.1 => last.1 = last.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        merged
    }

    /// When the target is reached running between the given (merged) pauses
    /// and without pause after them.
    fn due(&self, clock: &Clock, paused: &[(DateTime<Utc>, DateTime<Utc>)]) -> DateTime<Utc> {
        let mut need = self.target_secs;
        let mut run_from = self.started_at;
        for &(a, b) in paused {
            if need <= 0 {
                break;
            }
            let run = clock.seconds_between(run_from, a);
            if run >= need {
                return clock.add_seconds(run_from, need);
            }
            need -= run;
            run_from = b;
        }
        clock.add_seconds(run_from, need)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::calendar::{Calendar, WeekHours};

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn office() -> Clock {
        Clock::Business(Calendar::new("UTC", WeekHours::weekdays(9, 17), vec![]).unwrap())
    }

    const H: i64 = 3600;

    /// Monday 2025-01-06 9:00 UTC, a 6 h target, on hold from 10:00 to
    /// 12:00 and again from 14:00 to 15:00.
    fn held_twice() -> Timer {
        Timer {
            target_secs: 6 * H,
            started_at: utc("2025-01-06T09:00:00Z"),
            pauses: vec![
                Pause {
                    from: utc("2025-01-06T10:00:00Z"),
                    until: Some(utc("2025-01-06T12:00:00Z")),
                },
                Pause {
                    from: utc("2025-01-06T14:00:00Z"),
                    until: Some(utc("2025-01-06T15:00:00Z")),
                },
            ],
            stopped_at: None,
        }
    }

    #[test]
    fn a_remembered_due_time_is_the_one_counted_afresh_at_every_moment() {
        let (t, clock, memo) = (held_twice(), office(), DueMemo::default());
        // Asked first inside a pause, while it can still move, then after.
        for now in [
            "2025-01-06T09:30:00Z",
            "2025-01-06T11:00:00Z",
            "2025-01-06T14:30:00Z",
            "2025-01-06T16:00:00Z",
            "2025-01-06T11:00:00Z",
            "2025-01-07T10:00:00Z",
            "2025-01-20T10:00:00Z",
        ] {
            let now = utc(now);
            assert_eq!(
                t.status_remembering(&clock, now, &memo),
                t.status(&clock, now),
                "{now}"
            );
        }
        // 1 h before the first pause, 2 h between them, 2 h after the second
        // until 17:00, and the last hour on Tuesday.
        let later = t.status_remembering(&clock, utc("2025-01-06T16:00:00Z"), &memo);
        assert_eq!(later.due_at, Some(utc("2025-01-07T10:00:00Z")));
        // Inside the first pause only an hour of it is counted, and none of
        // the second: then the instant is earlier, and it is not kept.
        let inside = t.status_remembering(&clock, utc("2025-01-06T11:00:00Z"), &memo);
        assert_eq!(inside.due_at, Some(utc("2025-01-06T16:00:00Z")));
        let Clock::Business(cal) = &clock else {
            unreachable!()
        };
        let kept = *memo.0.lock().unwrap();
        assert_eq!(kept, Some((cal.serial(), utc("2025-01-07T10:00:00Z"))));
        let fresh = DueMemo::default();
        t.status_remembering(&clock, utc("2025-01-06T11:00:00Z"), &fresh);
        assert_eq!(*fresh.0.lock().unwrap(), None);
    }

    #[test]
    fn a_due_time_kept_under_one_calendar_is_not_taken_under_another() {
        let (t, memo) = (held_twice(), DueMemo::default());
        let now = utc("2025-01-06T16:00:00Z");
        let office = office();
        let early =
            Clock::Business(Calendar::new("UTC", WeekHours::weekdays(7, 17), vec![]).unwrap());
        assert_eq!(
            t.status_remembering(&office, now, &memo).due_at,
            Some(utc("2025-01-07T10:00:00Z"))
        );
        // Open from 7:00: Tuesday's last hour starts two hours earlier.
        let under_early = t.status_remembering(&early, now, &memo);
        assert_eq!(under_early, t.status(&early, now));
        assert_eq!(under_early.due_at, Some(utc("2025-01-07T08:00:00Z")));
        // A calendar built again is another construction, and counts alike.
        let again = self::office();
        assert_eq!(
            t.status_remembering(&again, now, &memo),
            t.status(&office, now)
        );
        // Around the clock nothing is kept: nothing there is worth keeping.
        let always = t.status_remembering(&Clock::Always, now, &memo);
        assert_eq!(always, t.status(&Clock::Always, now));
    }

    #[test]
    fn a_cloned_memo_starts_empty_and_all_memos_are_equal() {
        let (t, clock, memo) = (held_twice(), office(), DueMemo::default());
        let now = utc("2025-01-06T16:00:00Z");
        t.status_remembering(&clock, now, &memo);
        let other = Timer::start(H, utc("2025-01-06T09:00:00Z"));
        let copy = memo.clone();
        let s = other.status_remembering(&clock, now, &copy);
        assert_eq!(s.due_at, Some(utc("2025-01-06T10:00:00Z")));
        assert_eq!(memo, copy);
    }

    #[test]
    fn a_timer_state_is_named_as_its_json_names_it() {
        for st in [
            TimerState::InProgress,
            TimerState::Paused,
            TimerState::Met,
            TimerState::Breached,
        ] {
            let json = serde_json::to_string(&st).unwrap();
            assert_eq!(json, format!("\"{}\"", st.as_str()));
        }
    }

    #[test]
    fn a_running_timer_counts_business_time_and_knows_its_due_time() {
        // Friday 16:00, 4 h target: due Monday 12:00.
        let t = Timer::start(4 * H, utc("2025-01-03T16:00:00Z"));
        let s = t.status(&office(), utc("2025-01-06T10:00:00Z"));
        assert_eq!(s.elapsed_secs, 2 * H);
        assert_eq!(s.remaining_secs, 2 * H);
        assert_eq!(s.percent, 50);
        assert_eq!(s.state, TimerState::InProgress);
        assert_eq!(s.due_at, Some(utc("2025-01-06T12:00:00Z")));
    }

    #[test]
    fn a_timer_reaching_its_target_while_running_is_breached() {
        let t = Timer::start(4 * H, utc("2025-01-03T16:00:00Z"));
        let s = t.status(&office(), utc("2025-01-06T12:00:00Z"));
        assert_eq!(s.state, TimerState::Breached);
        assert_eq!(s.remaining_secs, 0);
        let s = t.status(&office(), utc("2025-01-06T13:00:00Z"));
        assert_eq!(s.state, TimerState::Breached);
        assert_eq!(s.remaining_secs, -H);
        assert_eq!(s.percent, 125);
        assert_eq!(s.due_at, Some(utc("2025-01-06T12:00:00Z")));
    }

    #[test]
    fn pausing_stops_the_count_and_hides_the_due_time() {
        let mut t = Timer::start(4 * H, utc("2025-01-06T09:00:00Z"));
        t.pause(utc("2025-01-06T10:00:00Z"));
        assert!(t.is_paused());
        let s = t.status(&office(), utc("2025-01-06T15:00:00Z"));
        assert_eq!(s.state, TimerState::Paused);
        assert_eq!(s.elapsed_secs, H);
        assert_eq!(s.due_at, None);

        t.resume(utc("2025-01-06T15:00:00Z"));
        assert!(!t.is_paused());
        let s = t.status(&office(), utc("2025-01-06T16:00:00Z"));
        assert_eq!(s.state, TimerState::InProgress);
        assert_eq!(s.elapsed_secs, 2 * H);
        // 1 h Monday before the pause, 2 h Monday after, 1 h Tuesday.
        assert_eq!(s.due_at, Some(utc("2025-01-07T10:00:00Z")));
    }

    #[test]
    fn pause_and_resume_ignore_calls_that_do_not_apply() {
        let mut t = Timer::start(H, utc("2025-01-06T09:00:00Z"));
        t.resume(utc("2025-01-06T09:30:00Z"));
        assert!(t.pauses.is_empty());
        t.pause(utc("2025-01-06T10:00:00Z"));
        t.pause(utc("2025-01-06T11:00:00Z"));
        assert_eq!(t.pauses.len(), 1);
        assert_eq!(t.pauses[0].from, utc("2025-01-06T10:00:00Z"));
        t.resume(utc("2025-01-06T12:00:00Z"));
        t.resume(utc("2025-01-06T13:00:00Z"));
        assert_eq!(t.pauses[0].until, Some(utc("2025-01-06T12:00:00Z")));
        t.stop(utc("2025-01-06T14:00:00Z"));
        t.pause(utc("2025-01-06T15:00:00Z"));
        assert_eq!(t.pauses.len(), 1);
        t.stop(utc("2025-01-06T16:00:00Z"));
        assert_eq!(t.stopped_at, Some(utc("2025-01-06T14:00:00Z")));
    }

    #[test]
    fn a_pause_never_starts_before_the_previous_one_ended() {
        let mut t = Timer::start(H, utc("2025-01-06T09:00:00Z"));
        t.pause(utc("2025-01-06T08:00:00Z"));
        assert_eq!(t.pauses[0].from, utc("2025-01-06T09:00:00Z"));
        t.resume(utc("2025-01-06T10:00:00Z"));
        t.pause(utc("2025-01-06T09:30:00Z"));
        assert_eq!(t.pauses[1].from, utc("2025-01-06T10:00:00Z"));
    }

    #[test]
    fn a_stopped_timer_is_met_or_breached_for_good() {
        let mut t = Timer::start(4 * H, utc("2025-01-06T09:00:00Z"));
        t.stop(utc("2025-01-06T13:00:00Z"));
        let s = t.status(&office(), utc("2025-01-10T13:00:00Z"));
        assert_eq!(s.state, TimerState::Met);
        assert_eq!(s.elapsed_secs, 4 * H);
        assert_eq!(s.due_at, Some(utc("2025-01-06T13:00:00Z")));

        let mut t = Timer::start(4 * H, utc("2025-01-06T09:00:00Z"));
        t.stop(utc("2025-01-06T13:00:01Z"));
        let s = t.status(&office(), utc("2025-01-10T13:00:00Z"));
        assert_eq!(s.state, TimerState::Breached);
        assert_eq!(s.remaining_secs, -1);
    }

    #[test]
    fn stopping_a_paused_timer_closes_the_pause() {
        let mut t = Timer::start(4 * H, utc("2025-01-06T09:00:00Z"));
        t.pause(utc("2025-01-06T10:00:00Z"));
        t.stop(utc("2025-01-06T12:00:00Z"));
        assert_eq!(t.pauses[0].until, Some(utc("2025-01-06T12:00:00Z")));
        let s = t.status(&office(), utc("2025-01-07T12:00:00Z"));
        assert_eq!(s.state, TimerState::Met);
        assert_eq!(s.elapsed_secs, H);
    }

    #[test]
    fn retargeting_keeps_the_pauses_and_the_elapsed_time() {
        let mut t = Timer::start(8 * H, utc("2025-01-06T09:00:00Z"));
        t.pause(utc("2025-01-06T11:00:00Z"));
        t.resume(utc("2025-01-06T14:00:00Z"));
        let now = utc("2025-01-06T15:00:00Z");
        let before = t.status(&office(), now);
        assert_eq!(before.elapsed_secs, 3 * H);
        let pauses = t.pauses.clone();

        t.retarget(4 * H);
        let after = t.status(&office(), now);
        assert_eq!(t.pauses, pauses);
        assert_eq!(t.started_at, utc("2025-01-06T09:00:00Z"));
        assert_eq!(after.elapsed_secs, before.elapsed_secs);
        assert_eq!(after.remaining_secs, H);
        assert_eq!(after.percent, 75);
        assert_eq!(after.due_at, Some(utc("2025-01-06T16:00:00Z")));

        t.retarget(2 * H);
        let s = t.status(&office(), now);
        assert_eq!(s.state, TimerState::Breached);
        // 2 h were reached at 11:00, just as the pause began.
        assert_eq!(s.due_at, Some(utc("2025-01-06T11:00:00Z")));
    }

    #[test]
    fn a_status_before_the_start_counts_nothing() {
        let t = Timer::start(H, utc("2025-01-06T10:00:00Z"));
        let s = t.status(&office(), utc("2025-01-06T09:00:00Z"));
        assert_eq!(s.elapsed_secs, 0);
        assert_eq!(s.state, TimerState::InProgress);
        assert_eq!(s.due_at, Some(utc("2025-01-06T11:00:00Z")));
    }

    #[test]
    fn overlapping_pauses_from_stored_data_count_once() {
        let t = Timer {
            target_secs: 8 * H,
            started_at: utc("2025-01-06T09:00:00Z"),
            pauses: vec![
                Pause {
                    from: utc("2025-01-06T11:00:00Z"),
                    until: Some(utc("2025-01-06T13:00:00Z")),
                },
                Pause {
                    from: utc("2025-01-06T10:00:00Z"),
                    until: Some(utc("2025-01-06T12:00:00Z")),
                },
            ],
            stopped_at: None,
        };
        let s = t.status(&Clock::Always, utc("2025-01-06T14:00:00Z"));
        assert_eq!(s.elapsed_secs, 2 * H);
    }

    #[test]
    fn a_zero_target_is_breached_at_once_and_a_hundred_percent() {
        let t = Timer::start(0, utc("2025-01-06T10:00:00Z"));
        let s = t.status(&Clock::Always, utc("2025-01-06T10:00:00Z"));
        assert_eq!(s.state, TimerState::Breached);
        assert_eq!(s.percent, 100);
        assert_eq!(s.due_at, Some(utc("2025-01-06T10:00:00Z")));
    }

    #[test]
    fn states_serialise_in_snake_case_and_timers_round_trip() {
        assert_eq!(
            serde_json::to_value(TimerState::InProgress).unwrap(),
            "in_progress"
        );
        let mut t = Timer::start(H, utc("2025-01-06T10:00:00Z"));
        t.pause(utc("2025-01-06T10:30:00Z"));
        let back: Timer = serde_json::from_value(serde_json::to_value(&t).unwrap()).unwrap();
        assert_eq!(back, t);
        let s = t.status(&Clock::Always, utc("2025-01-06T11:00:00Z"));
        let json = serde_json::to_value(s).unwrap();
        assert_eq!(json["state"], "paused");
        assert_eq!(json["due_at"], serde_json::Value::Null);
    }
}
