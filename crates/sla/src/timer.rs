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

/// What a timer's status counted under one calendar, kept beside the timer
/// ([`Timer::status_remembering`]): its due instant once that can no longer
/// move, and its business seconds up to the last moment asked about. It is
/// not part of the timer: any two memos are equal, and a clone starts
/// empty.
#[derive(Debug, Default)]
pub struct TimerMemo(Mutex<Option<Kept>>);

/// A [`TimerMemo`]'s content, all of it counted under the calendar
/// construction `serial`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Kept {
    serial: u64,
    /// The due instant, once it could no longer move.
    due: Option<DateTime<Utc>>,
    /// The business seconds the timer ran up to an instant.
    counted: Option<(DateTime<Utc>, i64)>,
}

impl TimerMemo {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Kept>> {
        // Nothing panics while holding it; a poisoned memo is still whole.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// What is kept under `serial`, if anything.
    fn under(&self, serial: u64) -> Option<Kept> {
        (*self.lock()).filter(|k| k.serial == serial)
    }

    /// Keeps `change`'s edit of what is kept under `serial` (of nothing,
    /// if what is kept was counted under another calendar).
    fn keep(&self, serial: u64, change: impl FnOnce(&mut Kept)) {
        let mut kept = self.lock();
        let mut now = (*kept).filter(|k| k.serial == serial).unwrap_or(Kept {
            serial,
            due: None,
            counted: None,
        });
        change(&mut now);
        *kept = Some(now);
    }
}

impl Clone for TimerMemo {
    fn clone(&self) -> Self {
        TimerMemo::default()
    }
}

impl PartialEq for TimerMemo {
    fn eq(&self, _: &TimerMemo) -> bool {
        true
    }
}

impl Eq for TimerMemo {}

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

    /// [`Timer::status`], keeping in `memo` what it counted under a
    /// calendar ([`Calendar::serial`](crate::calendar::Calendar::serial))
    /// and taking it from there when asked again under the same one:
    ///
    /// - The due instant, once it can no longer move: once every pause has
    ///   ended by the moment counted to (`now`, or the stop), it depends
    ///   only on the start, the target, those pauses and the calendar. On a
    ///   page of incidents, counting it was a third of the timers' cost
    ///   (bench/RESULTS.md, twenty-ninth session).
    /// - The business seconds elapsed up to the moment counted to. Asked
    ///   again at a later moment, only the time since is counted: seconds
    ///   add up over any split of a span, so the seconds to the kept moment
    ///   plus those the timer ran after it are the seconds from the start.
    ///   A queue's incidents were often started months before, and
    ///   counting their whole spans again was a tenth of a page's
    ///   instructions (bench/RESULTS.md, thirtieth session).
    ///
    /// `memo` must be kept with this timer alone, whose start, target and
    /// pauses do not change while it is kept (a clone of a memo starts
    /// empty). Around the clock nothing is kept: there counting is a
    /// subtraction.
    pub fn status_remembering(
        &self,
        clock: &Clock,
        now: DateTime<Utc>,
        memo: &TimerMemo,
    ) -> TimerStatus {
        self.status_with(clock, now, Some(memo))
    }

    fn status_with(
        &self,
        clock: &Clock,
        now: DateTime<Utc>,
        memo: Option<&TimerMemo>,
    ) -> TimerStatus {
        let end = match self.stopped_at {
            Some(stop) => stop.min(now),
            None => now,
        };
        let paused = self.paused_spans(end);
        let memo = match (memo, clock) {
            (Some(memo), Clock::Business(cal)) => Some((memo, cal.serial())),
            _ => None,
        };
        let kept = memo.and_then(|(memo, serial)| memo.under(serial));
        let elapsed = match kept.and_then(|k| k.counted) {
            // Counted to a moment at or before this one (a page asked
            // earlier): the seconds since then are added.
            Some((at, secs)) if at <= end && at >= self.started_at => {
                secs + self.running_secs(clock, &paused, at, end)
            }
            _ => self.running_secs(clock, &paused, self.started_at, end),
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
        let settled = self
            .pauses
            .iter()
            .all(|p| p.until.is_some_and(|until| until <= end));
        let due_at = if paused_now {
            None
        } else {
            Some(match kept.and_then(|k| k.due) {
                Some(due) if settled => due,
                _ => self.due(clock, &paused),
            })
        };
        if let Some((memo, serial)) = memo {
            memo.keep(serial, |k| {
                k.counted = Some((end, elapsed));
                if settled && k.due.is_none() {
                    k.due = due_at;
                }
            });
        }
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

    /// Business seconds the timer ran in `[from, to)`: the clock's seconds
    /// less those of the (merged) pauses `paused` within it. Seconds are
    /// counted whole ([`Clock::seconds_between`]), so the counts of the
    /// parts of a split span add up to the count of the span.
    fn running_secs(
        &self,
        clock: &Clock,
        paused: &[(DateTime<Utc>, DateTime<Utc>)],
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> i64 {
        if to <= from {
            return 0;
        }
        clock.seconds_between(from, to)
            - paused
                .iter()
                .map(|&(a, b)| clock.seconds_between(a.max(from), b.min(to)))
                .sum::<i64>()
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
        let (t, clock, memo) = (held_twice(), office(), TimerMemo::default());
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
        let kept = memo.under(cal.serial()).and_then(|k| k.due);
        assert_eq!(kept, Some(utc("2025-01-07T10:00:00Z")));
        let fresh = TimerMemo::default();
        t.status_remembering(&clock, utc("2025-01-06T11:00:00Z"), &fresh);
        assert_eq!(fresh.under(cal.serial()).and_then(|k| k.due), None);
    }

    /// Berlin office hours with its public holidays of 2025: months of
    /// spans cross weekends, holidays and both changes of offset.
    fn berlin() -> Clock {
        let days = [
            "2025-01-01",
            "2025-04-18",
            "2025-04-21",
            "2025-05-01",
            "2025-12-25",
        ];
        let holidays = days
            .iter()
            .map(|d| crate::calendar::Holiday::Date(d.parse().unwrap()))
            .collect();
        Clock::Business(
            Calendar::new("Europe/Berlin", WeekHours::weekdays(9, 17), holidays).unwrap(),
        )
    }

    #[test]
    fn elapsed_seconds_counted_on_from_a_kept_moment_are_those_counted_from_the_start() {
        let clock = berlin();
        let at = |s: &str| utc(s);
        let pause = |from: &str, until: Option<&str>| Pause {
            from: at(from),
            until: until.map(at),
        };
        let start = at("2025-01-02T08:30:00.250Z");
        let pauses = vec![
            pause("2025-02-10T10:15:00.5Z", Some("2025-03-04T11:00:00Z")),
            pause("2025-03-30T00:30:00Z", Some("2025-04-22T09:45:30.75Z")),
            pause("2025-06-02T13:00:00Z", None),
        ];
        let timers = [
            // Running with settled pauses, held again from June, stopped in
            // the middle of a pause, and stopped after them all.
            Timer {
                target_secs: 300 * H,
                started_at: start,
                pauses: pauses[..2].to_vec(),
                stopped_at: None,
            },
            Timer {
                target_secs: 300 * H,
                started_at: start,
                pauses: pauses.clone(),
                stopped_at: None,
            },
            Timer {
                target_secs: 100 * H,
                started_at: start,
                pauses: pauses[..2].to_vec(),
                stopped_at: Some(at("2025-04-01T12:00:00Z")),
            },
            Timer {
                target_secs: 100 * H,
                started_at: start,
                pauses: pauses[..2].to_vec(),
                stopped_at: Some(at("2025-10-27T16:59:59.9Z")),
            },
        ];
        for t in &timers {
            let memo = TimerMemo::default();
            // From before the start to past the last change of offset in
            // uneven steps, each moment asked once or twice, and now and
            // then a moment earlier than the one kept.
            let mut now = at("2025-01-01T00:00:00Z");
            let mut step = 0;
            while now < at("2025-11-15T00:00:00Z") {
                step += 1;
                let asked = if step % 7 == 0 {
                    now - chrono::Duration::hours(30)
                } else {
                    now
                };
                for _ in 0..1 + step % 2 {
                    assert_eq!(
                        t.status_remembering(&clock, asked, &memo),
                        t.status(&clock, asked),
                        "{asked} for {t:?}"
                    );
                }
                now += chrono::Duration::seconds(61_237 + step * 997);
            }
        }
    }

    #[test]
    fn a_due_time_kept_under_one_calendar_is_not_taken_under_another() {
        let (t, memo) = (held_twice(), TimerMemo::default());
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
        let (t, clock, memo) = (held_twice(), office(), TimerMemo::default());
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
