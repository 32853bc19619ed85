//! Properties of business-time arithmetic, over random calendars in zones with
//! and without daylight saving time, around clock changes and elsewhere.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use keel_sla::{Calendar, Clock, Holiday, Timer, WeekHours};
use proptest::prelude::*;

/// Zones with and without daylight saving time, each with an instant near
/// one of its 2025 clock changes (any instant for zones without one), so that
/// random spans often cross a change in the calendar's own zone.
const ZONES: [(&str, i64); 8] = [
    ("UTC", 1_750_000_000),
    ("Europe/Berlin", 1_743_296_400), // 2025-03-30T01:00Z spring forward
    ("Europe/Paris", 1_761_440_400),  // 2025-10-26T01:00Z fall back
    ("America/New_York", 1_762_063_200), // 2025-11-02T06:00Z fall back
    ("America/Chicago", 1_741_507_200), // 2025-03-09T08:00Z spring forward
    ("Australia/Lord_Howe", 1_743_865_200), // 2025-04-05T15:00Z half-hour fall back
    ("Pacific/Chatham", 1_743_861_600), // 2025-04-05T14:00Z, +13:45 to +12:45
    ("America/Santiago", 1_743_908_400), // 2025-04-06T03:00Z, change at midnight
];

fn zone_names() -> Vec<&'static str> {
    ZONES.iter().map(|z| z.0).collect()
}

fn at(ts: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(ts, 0).unwrap()
}

/// A day's intervals: up to three, sorted, not overlapping, on any second.
fn day_hours() -> impl Strategy<Value = Vec<(u32, u32)>> {
    prop::collection::vec(0u32..=86_400, 0..=6).prop_map(|mut cuts| {
        cuts.sort_unstable();
        cuts.dedup();
        cuts.chunks_exact(2).map(|c| (c[0], c[1])).collect()
    })
}

fn week() -> impl Strategy<Value = WeekHours> {
    prop::array::uniform7(day_hours()).prop_map(|days| {
        let mut week = WeekHours { days };
        if week.days.iter().all(Vec::is_empty) {
            week.days[2] = vec![(32_400, 61_200)];
        }
        week
    })
}

fn holidays() -> impl Strategy<Value = Vec<Holiday>> {
    prop::collection::vec(
        prop_oneof![
            (0u64..800).prop_map(|d| Holiday::Date(
                NaiveDate::from_ymd_opt(2024, 9, 1).unwrap() + chrono::Days::new(d)
            )),
            (1u32..=12, 1u32..=28).prop_map(|(month, day)| Holiday::Yearly { month, day }),
        ],
        0..6,
    )
}

/// A zone index and an instant within a few days of that zone's clock
/// change, or anywhere in 2024-2026.
fn zone_and_instant() -> impl Strategy<Value = (usize, i64)> {
    (0..ZONES.len()).prop_flat_map(|i| {
        let near = ZONES[i].1;
        (
            Just(i),
            prop_oneof![
                (-3 * 86_400i64..3 * 86_400).prop_map(move |d| near + d),
                1_704_067_200i64..1_798_761_600,
            ],
        )
    })
}

/// A clock (mostly a random business calendar) and an instant that is often
/// near a clock change in the calendar's zone.
fn clock_and_instant() -> impl Strategy<Value = (Clock, i64)> {
    (zone_and_instant(), week(), holidays(), 0..7).prop_map(|((i, t), week, holidays, kind)| {
        let clock = if kind == 0 {
            Clock::Always
        } else {
            Clock::Business(Calendar::new(ZONES[i].0, week, holidays).unwrap())
        };
        (clock, t)
    })
}

/// Up to `max_days` days, in seconds.
fn span(max_days: i64) -> impl Strategy<Value = i64> {
    0..max_days * 86_400
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn adding_seconds_is_the_inverse_of_counting_them(
        (clock, from) in clock_and_instant(), secs in 0i64..40 * 3600,
    ) {
        // A target reachable well within the 20-year horizon.
        if let Clock::Business(cal) = &clock {
            let weekly: i64 = cal.week().days.iter().flatten().map(|&(s, e)| i64::from(e - s)).sum();
            prop_assume!(secs <= weekly * 300);
        }
        let from = at(from);
        let due = clock.add_seconds(from, secs);
        prop_assert_eq!(clock.seconds_between(from, due), secs);
        if secs > 0 {
            // The smallest such instant: one second earlier is not enough.
            prop_assert_eq!(clock.seconds_between(from, due - Duration::seconds(1)), secs - 1);
        }
    }

    #[test]
    fn counting_is_additive_over_adjacent_spans(
        (clock, a) in clock_and_instant(), ab in span(20), bc in span(20),
    ) {
        let (a, b, c) = (at(a), at(a + ab), at(a + ab + bc));
        prop_assert_eq!(
            clock.seconds_between(a, c),
            clock.seconds_between(a, b) + clock.seconds_between(b, c)
        );
    }

    #[test]
    fn a_pause_removes_exactly_the_business_time_inside_it(
        (clock, start) in clock_and_instant(), d1 in span(10), d2 in span(10), d3 in span(10),
        target in 1i64..200 * 3600,
    ) {
        let (start_at, p, q, now) = (at(start), at(start + d1), at(start + d1 + d2), at(start + d1 + d2 + d3));
        let plain = Timer::start(target, start_at);
        let mut paused = plain.clone();
        paused.pause(p);
        paused.resume(q);
        let without = plain.status(&clock, now).elapsed_secs;
        let with = paused.status(&clock, now).elapsed_secs;
        prop_assert_eq!(with, without - clock.seconds_between(p, q));
    }

    #[test]
    fn results_depend_only_on_the_instants_not_the_zone_they_were_written_in(
        (clock, from) in clock_and_instant(), len in span(20), secs in 0i64..40 * 3600,
        zone in prop::sample::select(zone_names()),
    ) {
        let tz: Tz = zone.parse().unwrap();
        let from_utc = at(from);
        let to_utc = at(from + len);
        // The same instants, written as local times in another zone.
        let from_local = tz.from_utc_datetime(&from_utc.naive_utc());
        let to_local = tz.from_utc_datetime(&to_utc.naive_utc());
        let from_back = tz.from_local_datetime(&from_local.naive_local());
        // A repeated local time names two instants; take the one meant.
        let from_back = from_back
            .earliest()
            .filter(|d| d.with_timezone(&Utc) == from_utc)
            .or(from_back.latest())
            .unwrap()
            .with_timezone(&Utc);
        prop_assert_eq!(from_back, from_utc);
        prop_assert_eq!(
            clock.seconds_between(from_local.with_timezone(&Utc), to_local.with_timezone(&Utc)),
            clock.seconds_between(from_utc, to_utc)
        );
        prop_assert_eq!(
            clock.add_seconds(from_local.with_timezone(&Utc), secs),
            clock.add_seconds(from_utc, secs)
        );
    }

    #[test]
    fn a_round_the_clock_calendar_in_any_zone_is_real_time(
        (zone, from) in zone_and_instant(), len in span(20), secs in 0i64..40 * 3600,
    ) {
        let cal = Clock::Business(Calendar::new(ZONES[zone].0, WeekHours::always(), vec![]).unwrap());
        let (from, to) = (at(from), at(from + len));
        prop_assert_eq!(cal.seconds_between(from, to), Clock::Always.seconds_between(from, to));
        prop_assert_eq!(cal.add_seconds(from, secs), Clock::Always.add_seconds(from, secs));
    }

    #[test]
    fn counting_never_decreases_as_the_end_moves_later(
        (clock, from) in clock_and_instant(), d1 in span(20), d2 in span(5),
    ) {
        let from_at = at(from);
        let (near, far) = (at(from + d1), at(from + d1 + d2));
        prop_assert!(clock.seconds_between(from_at, near) <= clock.seconds_between(from_at, far));
    }

    #[test]
    fn due_times_never_move_earlier_for_a_bigger_target(
        (clock, from) in clock_and_instant(), s1 in 0i64..40 * 3600, s2 in 0i64..10 * 3600,
    ) {
        let from = at(from);
        prop_assert!(clock.add_seconds(from, s1) <= clock.add_seconds(from, s1 + s2));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// An independent oracle: with minute-aligned hours and instants, whether
    /// the clock runs is constant within each minute, so counting minutes with
    /// `is_working` must give the same total.
    #[test]
    fn counting_agrees_with_is_working_minute_by_minute(
        (zone, from) in zone_and_instant(),
        days in prop::array::uniform7(prop::collection::vec(0u32..=1440, 0..=4)),
        holidays in holidays(),
        len in 0i64..2 * 1440,
    ) {
        let days = days.map(|mut cuts| {
            cuts.sort_unstable();
            cuts.dedup();
            cuts.chunks_exact(2).map(|c| (c[0] * 60, c[1] * 60)).collect::<Vec<_>>()
        });
        let cal = Calendar::new(ZONES[zone].0, WeekHours { days }, holidays).unwrap();
        let from = from - from.rem_euclid(60);
        let minutes = (0..len)
            .filter(|m| cal.is_working(at(from + m * 60)))
            .count() as i64;
        let clock = Clock::Business(cal);
        prop_assert_eq!(clock.seconds_between(at(from), at(from + len * 60)), minutes * 60);
    }

    #[test]
    fn one_second_counts_exactly_when_the_clock_is_working(
        (clock, t) in clock_and_instant(),
    ) {
        let t = at(t);
        let one = clock.seconds_between(t, t + Duration::seconds(1));
        prop_assert_eq!(one == 1, clock.is_working(t));
    }

    #[test]
    fn ics_parsing_never_panics_on_arbitrary_text(text in "(BEGIN:VCALENDAR\n|BEGIN:VEVENT\n|END:VEVENT\n|DTSTART[;:A-Z=]{0,12}[0-9TZ]{0,16}\n|RRULE:[A-Z=;0-9]{0,20}\n| |\r\n|[ -~]{0,10}|\u{e9})*") {
        let _ = keel_sla::holidays_from_ics(&text);
    }
}
