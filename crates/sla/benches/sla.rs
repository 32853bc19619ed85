//! Micro-benchmarks of business-time arithmetic: due times, elapsed business
//! seconds, timer status with a pause history, and iCalendar holiday import.
//!
//! The calendar is a German office week in Europe/Berlin (08:00-12:00 and
//! 13:00-17:00, Monday to Friday) with the 2026 public holidays and two half
//! days. Run with `cargo bench -p keel-sla`; see bench/RESULTS.md.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use chrono::{DateTime, NaiveDate, Utc};
use criterion::{Criterion, criterion_group, criterion_main};
use keel_sla::{
    Calendar, Clock, Exception, Holiday, Timer, TimerState, WeekHours, holidays_from_ics,
    next_check,
};

const HOUR: u32 = 3_600;
/// One business day of the calendar below: 8 hours.
const DAY_SECS: i64 = 8 * 3_600;

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

fn berlin_office() -> Clock {
    let day = vec![(8 * HOUR, 12 * HOUR), (13 * HOUR, 17 * HOUR)];
    let mut week = WeekHours::none();
    for d in &mut week.days[..5] {
        d.clone_from(&day);
    }
    let holidays = vec![
        Holiday::Yearly { month: 1, day: 1 },
        Holiday::Yearly { month: 5, day: 1 },
        Holiday::Yearly { month: 10, day: 3 },
        Holiday::Yearly { month: 12, day: 25 },
        Holiday::Yearly { month: 12, day: 26 },
        Holiday::Date(date(2026, 4, 3)),  // Good Friday
        Holiday::Date(date(2026, 4, 6)),  // Easter Monday
        Holiday::Date(date(2026, 5, 14)), // Ascension Day
        Holiday::Date(date(2026, 5, 25)), // Whit Monday
    ];
    let half_days = [date(2026, 12, 24), date(2026, 12, 31)]
        .map(|date| Exception {
            date,
            hours: vec![(8 * HOUR, 12 * HOUR)],
        })
        .to_vec();
    Clock::Business(
        Calendar::new("Europe/Berlin", week, holidays)
            .unwrap()
            .with_exceptions(half_days)
            .unwrap(),
    )
}

fn due_time(c: &mut Criterion) {
    let clock = berlin_office();
    // Friday 2026-11-20, 15:00 CET: 2 h today, the weekend, 2 h on Monday.
    let friday = utc("2026-11-20T14:00:00Z");
    let due = clock.add_seconds(friday, 4 * 3_600);
    assert_eq!(due, utc("2026-11-23T09:00:00Z"));
    // Wednesday 2026-12-23, 10:00 CET: five business days across Christmas
    // (a half day, two holidays, a weekend, a half day, New Year).
    let before_xmas = utc("2026-12-23T09:00:00Z");
    let due = clock.add_seconds(before_xmas, 5 * DAY_SECS);
    assert_eq!(clock.seconds_between(before_xmas, due), 5 * DAY_SECS);
    assert_eq!(due, utc("2027-01-04T09:00:00Z"));

    let mut g = c.benchmark_group("due_at");
    g.bench_function("berlin_4h_over_weekend", |b| {
        b.iter(|| black_box(&clock).add_seconds(black_box(friday), black_box(4 * 3_600)))
    });
    g.bench_function("berlin_5_business_days_over_christmas", |b| {
        b.iter(|| black_box(&clock).add_seconds(black_box(before_xmas), black_box(5 * DAY_SECS)))
    });
    g.bench_function("always_24x7_4h", |b| {
        b.iter(|| black_box(&Clock::Always).add_seconds(black_box(friday), black_box(4 * 3_600)))
    });
    g.finish();
}

fn elapsed(c: &mut Criterion) {
    let clock = berlin_office();
    // 2026-03-15 to 2026-04-15 CET/CEST: crosses the 29 March clock change
    // and Easter: 22 weekdays less Good Friday and Easter Monday.
    let from = utc("2026-03-15T00:00:00Z");
    let to = utc("2026-04-15T00:00:00Z");
    assert_eq!(clock.seconds_between(from, to), 20 * DAY_SECS);

    // Two years: an incident still open since 2025 (a queue's oldest).
    let long_from = utc("2025-01-06T08:00:00Z");
    let long_to = utc("2027-01-06T08:00:00Z");
    let week = clock.seconds_between(long_from, utc("2025-01-13T08:00:00Z"));
    assert_eq!(week, 5 * DAY_SECS);

    let mut g = c.benchmark_group("elapsed");
    g.bench_function("berlin_one_month_over_dst_and_easter", |b| {
        b.iter(|| black_box(&clock).seconds_between(black_box(from), black_box(to)))
    });
    g.bench_function("berlin_two_years", |b| {
        b.iter(|| black_box(&clock).seconds_between(black_box(long_from), black_box(long_to)))
    });
    g.finish();
}

fn timer(c: &mut Criterion) {
    let clock = berlin_office();
    // A 5-business-day resolution target opened Monday 2026-11-16 09:00 CET
    // and on hold three times (2.5 h, 3 h and 2 h of business time); at
    // Friday 15:00 CET it has run 29.5 h, just short of the 75 % warning.
    // The paused copy went on hold a fourth time on Friday at 11:00 CET.
    let mut paused = Timer::start(5 * DAY_SECS, utc("2026-11-16T08:00:00Z"));
    for (from, until) in [
        ("2026-11-16T10:00:00Z", "2026-11-16T13:30:00Z"),
        ("2026-11-17T15:00:00Z", "2026-11-18T09:00:00Z"),
        ("2026-11-19T12:00:00Z", "2026-11-19T14:00:00Z"),
    ] {
        paused.pause(utc(from));
        paused.resume(utc(until));
    }
    let running = paused.clone();
    paused.pause(utc("2026-11-20T10:00:00Z"));
    let now = utc("2026-11-20T14:00:00Z");
    let status = running.status(&clock, now);
    assert_eq!(status.state, TimerState::InProgress);
    assert_eq!(status.elapsed_secs, 29 * 3_600 + 1_800);
    assert_eq!(status.due_at, Some(utc("2026-11-24T07:30:00Z")));
    assert_eq!(paused.status(&clock, now).state, TimerState::Paused);
    assert_eq!(
        next_check(&running, &clock, &[75, 90], 0, false, now),
        Some(utc("2026-11-20T14:30:00Z"))
    );

    let mut g = c.benchmark_group("timer");
    g.bench_function("status_running_3_pauses", |b| {
        b.iter(|| black_box(&running).status(black_box(&clock), black_box(now)))
    });
    g.bench_function("status_paused_4_pauses", |b| {
        b.iter(|| black_box(&paused).status(black_box(&clock), black_box(now)))
    });
    g.bench_function("next_check_running_3_pauses", |b| {
        b.iter(|| {
            next_check(
                black_box(&running),
                black_box(&clock),
                black_box(&[75, 90]),
                black_box(0),
                black_box(false),
                black_box(now),
            )
        })
    });
    g.finish();
}

/// German national holidays as a public feed would publish them.
const GERMAN_HOLIDAYS_ICS: &str = "BEGIN:VCALENDAR\r\n\
VERSION:2.0\r\n\
PRODID:-//Keel//bench//EN\r\n\
BEGIN:VEVENT\r\nUID:neujahr\r\nSUMMARY:Neujahr\r\nDTSTART;VALUE=DATE:20250101\r\nRRULE:FREQ=YEARLY\r\nEND:VEVENT\r\n\
BEGIN:VEVENT\r\nUID:karfreitag-2026\r\nSUMMARY:Karfreitag\r\nDTSTART;VALUE=DATE:20260403\r\nEND:VEVENT\r\n\
BEGIN:VEVENT\r\nUID:ostermontag-2026\r\nSUMMARY:Ostermontag\r\nDTSTART;VALUE=DATE:20260406\r\nEND:VEVENT\r\n\
BEGIN:VEVENT\r\nUID:tag-der-arbeit\r\nSUMMARY:Tag der Arbeit\r\nDTSTART;VALUE=DATE:20250501\r\nRRULE:FREQ=YEARLY\r\nEND:VEVENT\r\n\
BEGIN:VEVENT\r\nUID:himmelfahrt-2026\r\nSUMMARY:Christi Himmelfahrt\r\nDTSTART;VALUE=DATE:20260514\r\nEND:VEVENT\r\n\
BEGIN:VEVENT\r\nUID:pfingstmontag-2026\r\nSUMMARY:Pfingstmontag\r\nDTSTART;VALUE=DATE:20260525\r\nEND:VEVENT\r\n\
BEGIN:VEVENT\r\nUID:einheit\r\nSUMMARY:Tag der Deutschen Einheit\r\nDTSTART;VALUE=DATE:20251003\r\nRRULE:FREQ=YEARLY\r\nEND:VEVENT\r\n\
BEGIN:VEVENT\r\nUID:weihnachten\r\nSUMMARY:Weihnachten\r\nDTSTART;VALUE=DATE:20251225\r\nDTEND;VALUE=DATE:20251227\r\nEND:VEVENT\r\n\
BEGIN:VEVENT\r\nUID:silvester-2026\r\nSUMMARY:Silvester (Betriebsruhe, ein langer\r\n  gefalteter Titel)\r\nDTSTART;VALUE=DATE:20261231\r\nEND:VEVENT\r\n\
END:VCALENDAR\r\n";

fn ics(c: &mut Criterion) {
    let holidays = holidays_from_ics(GERMAN_HOLIDAYS_ICS).unwrap();
    assert_eq!(holidays.len(), 10);

    let mut g = c.benchmark_group("ics");
    g.bench_function("import_9_events", |b| {
        b.iter(|| holidays_from_ics(black_box(GERMAN_HOLIDAYS_ICS)))
    });
    g.finish();
}

criterion_group!(benches, due_time, elapsed, timer, ics);
criterion_main!(benches);
