//! Service-level agreements as pure rules: business-hours calendars in an IANA
//! time zone with holidays (DST-correct), the clock that counts business
//! seconds in them, per-target timers with pauses, warning thresholds, and
//! holidays read from iCalendar feeds. No I/O, no HTTP, no SQL.
//!
//! Business time is counted in whole seconds; see [`calendar`] for exactly
//! how local working hours map to instants on days when clocks change.

pub mod calendar;
pub mod error;
pub mod ics;
pub mod policy;
pub mod timer;

pub use calendar::{
    Calendar, CalendarSpec, Clock, Exception, HORIZON_SECS, Holiday, WeekHours, far_future,
};
pub use error::SlaError;
pub use ics::holidays_from_ics;
pub use policy::{
    DEFAULT_WARN_PERCENTS, EscalationAction, EscalationRule, Facts, PolicySpec, Target, TargetKind,
    Trigger, next_check,
};
pub use timer::{Pause, Timer, TimerMemo, TimerState, TimerStatus};

/// Warning thresholds newly crossed when a timer's percent moved from `before`
/// to `now`: every threshold `t` with `before < t <= now`, in ascending order
/// and without repeats. Nothing when the percent did not rise.
///
/// `crossed(&[75, 90], 70, 95) == [75, 90]`; `crossed(&[75, 90], 75, 80) == []`.
pub fn crossed(thresholds: &[u32], before: u32, now: u32) -> Vec<u32> {
    let mut out: Vec<u32> = thresholds
        .iter()
        .copied()
        .filter(|&t| before < t && t <= now)
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crossing_one_threshold_reports_it() {
        assert_eq!(crossed(&[75, 90], 70, 80), vec![75]);
    }

    #[test]
    fn landing_exactly_on_a_threshold_crosses_it_once() {
        assert_eq!(crossed(&[75, 90], 74, 75), vec![75]);
        assert_eq!(crossed(&[75, 90], 75, 89), Vec::<u32>::new());
    }

    #[test]
    fn jumping_past_several_thresholds_reports_all_in_order() {
        assert_eq!(crossed(&[100, 75, 90, 75], 10, 130), vec![75, 90, 100]);
    }

    #[test]
    fn no_rise_crosses_nothing() {
        assert_eq!(crossed(&[75, 90], 80, 80), Vec::<u32>::new());
        assert_eq!(crossed(&[75, 90], 95, 50), Vec::<u32>::new());
        assert_eq!(crossed(&[], 0, 200), Vec::<u32>::new());
    }
}
