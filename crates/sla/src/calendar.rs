//! Business-hours calendars and the clock that counts time in them.
//!
//! # How business time is counted
//!
//! * Working hours are **local wall-clock** times in the calendar's IANA zone.
//!   An instant is *working* when its local date is not a holiday and its local
//!   time of day falls inside one of that weekday's intervals
//!   ([`Calendar::is_working`]). Business time between two instants is the
//!   measure of the working instants between them, so every count agrees with
//!   `is_working`:
//!   * on a spring-forward day the skipped local hour does not exist and is not
//!     counted: `01:00-05:00` in Europe/Berlin on the last Sunday of March is
//!     3 real hours. An interval that starts inside the gap starts, in effect,
//!     at the first instant after it;
//!   * on a fall-back day the repeated local hour happens twice and is counted
//!     twice: `01:00-05:00` in Europe/Berlin on the last Sunday of October is 5
//!     real hours. An interval that starts or ends inside the repeated hour
//!     covers exactly the instants whose local time is inside it, on both
//!     passes (so `02:30-05:00` that day covers 02:30-03:00 summer time and
//!     02:30-05:00 winter time: 3 hours).
//! * Business time is counted in **whole seconds**: instants are truncated to
//!   the second before counting. This keeps the arithmetic exact
//!   (`seconds_between(a, c) == seconds_between(a, b) + seconds_between(b, c)`).
//! * The zone's UTC offset is assumed to change at most once in any six hours,
//!   which holds for every zone in the IANA database.
//!
//! Counting walks the span in stretches of constant UTC offset. Between
//! 2000 and 2060 the stretches run from one change of offset to the next
//! (the zone's changes and offsets are found once per process,
//! [`offset_changes`], and kept by each calendar of the zone);
//! outside, in stretches of at most six hours. Inside a stretch, a count
//! ([`Clock::seconds_between`]) takes whole weeks at once and then corrects
//! for the holidays and exceptions in them, so a two-year span costs about
//! what a week does; finding a due time ([`Clock::add_seconds`]) goes local
//! day by local day until the target is reached. Work is never proportional
//! to the number of seconds.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Datelike, NaiveDate, Offset, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::error::SlaError;

const DAY: i64 = 86_400;
/// Longest stretch inspected for a change of UTC offset at once.
const STRETCH: i64 = 6 * 3_600;
/// The span whose changes of UTC offset are looked up once per zone
/// ([`offset_changes`]): 2000-01-01 to 2060-01-01, UTC.
const CHANGES_FROM: i64 = 946_684_800;
const CHANGES_TO: i64 = 2_840_140_800;
/// The same span in days since 1970-01-01, `[FIRST_DAY, END_DAY)`.
const FIRST_DAY: i64 = CHANGES_FROM / DAY;
const END_DAY: i64 = CHANGES_TO / DAY;
/// Below this many whole local days a count goes day by day.
const WHOLE_DAYS_MIN: i64 = 3;
/// How far [`Clock::add_seconds`] looks ahead before giving up: 20 years.
pub const HORIZON_SECS: i64 = 20 * 366 * DAY;
/// 9999-12-31T23:59:59Z as a Unix timestamp.
const FAR_FUTURE_TS: i64 = 253_402_300_799;

/// The "never" instant, 9999-12-31T23:59:59Z, that [`Clock::add_seconds`]
/// returns when a target cannot be reached within [`HORIZON_SECS`] (a
/// calendar with no working hours, or only holidays).
pub fn far_future() -> DateTime<Utc> {
    DateTime::from_timestamp(FAR_FUTURE_TS, 0).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// Working intervals per weekday, Monday first (`days[0]` is Monday,
/// `days[6]` Sunday).
///
/// Each interval is `(start, end)` in **seconds of the local day**, half-open
/// `[start, end)`, with `0 <= start < end <= 86400`; `end == 86400` means
/// "until midnight" (24:00). A day's intervals must be sorted and must not
/// overlap (touching, such as `[0, 3600)` and `[3600, 7200)`, is fine).
/// [`Calendar::new`] checks this.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeekHours {
    pub days: [Vec<(u32, u32)>; 7],
}

impl WeekHours {
    /// `start_h:00` to `end_h:00` Monday to Friday, nothing at the weekend.
    /// `weekdays(9, 17)` is the usual office week.
    pub fn weekdays(start_h: u32, end_h: u32) -> WeekHours {
        let day = vec![(start_h.saturating_mul(3600), end_h.saturating_mul(3600))];
        WeekHours {
            days: [
                day.clone(),
                day.clone(),
                day.clone(),
                day.clone(),
                day,
                Vec::new(),
                Vec::new(),
            ],
        }
    }

    /// Every hour of every day (24×7 in local time).
    pub fn always() -> WeekHours {
        WeekHours {
            days: std::array::from_fn(|_| vec![(0, DAY as u32)]),
        }
    }

    /// No working hours at all.
    pub fn none() -> WeekHours {
        WeekHours {
            days: std::array::from_fn(|_| Vec::new()),
        }
    }

    fn validate(&self) -> Result<(), SlaError> {
        const NAMES: [&str; 7] = [
            "monday",
            "tuesday",
            "wednesday",
            "thursday",
            "friday",
            "saturday",
            "sunday",
        ];
        for (name, day) in NAMES.iter().zip(&self.days) {
            validate_day(name, day)?;
        }
        Ok(())
    }

    fn is_empty(&self) -> bool {
        self.days.iter().all(Vec::is_empty)
    }
}

/// A whole local day off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Holiday {
    /// One date: `{"date": "2025-12-25"}`.
    Date(NaiveDate),
    /// The same month and day every year: `{"yearly": {"month": 12, "day": 25}}`.
    /// 29 February is allowed and is a holiday in leap years only.
    Yearly { month: u32, day: u32 },
}

impl Holiday {
    fn validate(&self) -> Result<(), SlaError> {
        if let Holiday::Yearly { month, day } = *self {
            // 2000 is a leap year, so 29 February is accepted.
            if NaiveDate::from_ymd_opt(2000, month, day).is_none() {
                return Err(SlaError::InvalidHoliday(format!(
                    "month {month}, day {day} is not a day of the year"
                )));
            }
        }
        Ok(())
    }
}

/// Checks one day's intervals: each inside the day, not inverted, sorted,
/// not overlapping. `name` says which day, for the error.
fn validate_day(name: &str, day: &[(u32, u32)]) -> Result<(), SlaError> {
    let mut previous_end = 0;
    for &(start, end) in day {
        if end > DAY as u32 {
            return Err(SlaError::InvalidHours(format!(
                "{name}: an interval ends after 24:00 ({end} s)"
            )));
        }
        if start >= end {
            return Err(SlaError::InvalidHours(format!(
                "{name}: an interval must start before it ends ({start} s to {end} s)"
            )));
        }
        if start < previous_end {
            return Err(SlaError::InvalidHours(format!(
                "{name}: intervals must be sorted and must not overlap ({start} s starts before {previous_end} s)"
            )));
        }
        previous_end = end;
    }
    Ok(())
}

/// A date whose working hours differ from its weekday's: a half day before
/// a holiday, a working Saturday. An empty `hours` closes the day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exception {
    pub date: NaiveDate,
    /// Local `[start, end)` seconds of the day, like [`WeekHours`].
    pub hours: Vec<(u32, u32)>,
}

/// The serialised form of a [`Calendar`]: `{"tz", "week", "holidays"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalendarSpec {
    pub tz: String,
    pub week: WeekHours,
    #[serde(default)]
    pub holidays: Vec<Holiday>,
    /// Dates with their own hours; they win over the week and holidays.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exceptions: Vec<Exception>,
}

/// Weekly working hours in an IANA zone, plus holidays. Validated on
/// construction and on deserialisation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "CalendarSpec", into = "CalendarSpec")]
pub struct Calendar {
    // Boxed so that a `Clock` stays pointer-sized.
    inner: Box<Inner>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Inner {
    /// Which construction this is ([`Calendar::serial`]).
    serial: Serial,
    tz: Tz,
    week: WeekHours,
    holidays: Vec<Holiday>,
    dates: BTreeSet<NaiveDate>,
    yearly: BTreeSet<(u32, u32)>,
    /// Every holiday from [`CHANGES_FROM`] to [`CHANGES_TO`], as days since
    /// 1970-01-01, sorted: there a holiday is looked up without turning the
    /// day into a date (see [`Calendar::is_holiday`]).
    days_off: Vec<i64>,
    /// The same days as one bit each (bit `day - FIRST_DAY`), empty when
    /// there are none, for [`Calendar::is_holiday`]: a day's look-up is a
    /// bit test where a binary search of `days_off` took a dozen steps
    /// (bench/RESULTS.md, twenty-ninth session). 343 words for the span.
    off_bits: Vec<u64>,
    exceptions: std::collections::BTreeMap<NaiveDate, Vec<(u32, u32)>>,
    /// The zone's offsets in that span, shared by every calendar of the zone.
    changes: Arc<ZoneChanges>,
}

impl TryFrom<CalendarSpec> for Calendar {
    type Error = SlaError;

    fn try_from(spec: CalendarSpec) -> Result<Self, Self::Error> {
        Calendar::new(&spec.tz, spec.week, spec.holidays)?.with_exceptions(spec.exceptions)
    }
}

impl From<Calendar> for CalendarSpec {
    fn from(c: Calendar) -> Self {
        let c = *c.inner;
        CalendarSpec {
            tz: c.tz.name().to_owned(),
            week: c.week,
            holidays: c.holidays,
            exceptions: c
                .exceptions
                .into_iter()
                .map(|(date, hours)| Exception { date, hours })
                .collect(),
        }
    }
}

impl Calendar {
    /// A calendar in the IANA zone `tz` (such as `Europe/Berlin`). Refuses an
    /// unknown zone, intervals that are inverted, unsorted, overlapping or past
    /// 24:00, and yearly holidays that are not a day of the year.
    pub fn new(tz: &str, week: WeekHours, holidays: Vec<Holiday>) -> Result<Calendar, SlaError> {
        let zone: Tz = tz
            .parse()
            .map_err(|_| SlaError::UnknownTimeZone(tz.to_owned()))?;
        week.validate()?;
        let mut dates = BTreeSet::new();
        let mut yearly = BTreeSet::new();
        for h in &holidays {
            h.validate()?;
            match *h {
                Holiday::Date(d) => {
                    dates.insert(d);
                }
                Holiday::Yearly { month, day } => {
                    yearly.insert((month, day));
                }
            }
        }
        let days_off = days_off(&dates, &yearly);
        let off_bits = day_bits(&days_off);
        Ok(Calendar {
            inner: Box::new(Inner {
                serial: Serial::next(),
                tz: zone,
                week,
                holidays,
                dates,
                yearly,
                days_off,
                off_bits,
                exceptions: Default::default(),
                changes: offset_changes(zone),
            }),
        })
    }

    /// The same calendar with date-specific hours (validated like a weekday's;
    /// at most one exception per date).
    pub fn with_exceptions(mut self, exceptions: Vec<Exception>) -> Result<Calendar, SlaError> {
        for e in exceptions {
            validate_day(&e.date.to_string(), &e.hours)?;
            if self.inner.exceptions.insert(e.date, e.hours).is_some() {
                return Err(SlaError::InvalidHours(format!(
                    "{}: two exceptions for one date",
                    e.date
                )));
            }
        }
        self.inner.serial = Serial::next();
        Ok(self)
    }

    /// The local working intervals of a day (days since 1970-01-01): its
    /// exception if it has one, nothing on a holiday, else its weekday's.
    fn day_hours(&self, day: i64) -> &[(u32, u32)] {
        if !self.inner.exceptions.is_empty()
            && let Some(d) = DateTime::from_timestamp(day.saturating_mul(DAY), 0)
            && let Some(h) = self.inner.exceptions.get(&d.date_naive())
        {
            return h;
        }
        let usual = &self.inner.week.days[weekday(day)];
        // A holiday only takes hours away: a day without any needs no look.
        if usual.is_empty() || self.is_holiday(day) {
            &[]
        } else {
            usual
        }
    }

    /// Tells this calendar's constructions apart: two calendars with the
    /// same serial are one construction and its clones, so they count
    /// alike; a calendar built again, even from the same definition, has
    /// another. Something worked out with one calendar can be kept under
    /// its serial ([`crate::timer::TimerMemo`]).
    pub fn serial(&self) -> u64 {
        self.inner.serial.0
    }

    pub fn tz(&self) -> Tz {
        self.inner.tz
    }

    pub fn week(&self) -> &WeekHours {
        &self.inner.week
    }

    pub fn holidays(&self) -> &[Holiday] {
        &self.inner.holidays
    }

    /// Whether `at` is inside working hours: inside one of its local date's
    /// intervals (the date's exception, else none on a holiday, else its
    /// weekday's).
    pub fn is_working(&self, at: DateTime<Utc>) -> bool {
        let u = at.timestamp();
        let local = u + self.offset_at(u);
        let day = local.div_euclid(DAY);
        let second = (local - day * DAY) as u32;
        self.day_hours(day)
            .iter()
            .any(|&(s, e)| s <= second && second < e)
    }

    /// Whether the local date is a holiday.
    pub fn is_holiday_date(&self, date: NaiveDate) -> bool {
        self.inner.dates.contains(&date) || self.inner.yearly.contains(&(date.month(), date.day()))
    }

    fn is_holiday(&self, day: i64) -> bool {
        if let Some(i) = day_in_span(day) {
            return self
                .inner
                .off_bits
                .get(i / 64)
                .is_some_and(|w| w >> (i % 64) & 1 == 1);
        }
        match DateTime::from_timestamp(day.saturating_mul(DAY), 0) {
            Some(d) => self.is_holiday_date(d.date_naive()),
            None => false,
        }
    }

    /// UTC offset in seconds (local minus UTC) at the Unix second `u`.
    fn offset_at(&self, u: i64) -> i64 {
        match DateTime::from_timestamp(u, 0) {
            Some(d) => i64::from(
                self.inner
                    .tz
                    .offset_from_utc_datetime(&d.naive_utc())
                    .fix()
                    .local_minus_utc(),
            ),
            None => 0,
        }
    }

    /// Visits `[from, to)` (Unix seconds) in stretches of constant UTC offset,
    /// calling `visit(start, end, offset)` until it returns `Some`. Between
    /// [`CHANGES_FROM`] and [`CHANGES_TO`] each stretch runs to the zone's
    /// next change of offset; before and after, see
    /// [`Calendar::walk_sampled`].
    fn walk<T>(
        &self,
        from: i64,
        to: i64,
        mut visit: impl FnMut(i64, i64, i64) -> Option<T>,
    ) -> Option<T> {
        let mut x = from;
        if x < CHANGES_FROM {
            let end = to.min(CHANGES_FROM);
            if let Some(found) = self.walk_sampled(x, end, &mut visit) {
                return Some(found);
            }
            x = end;
        }
        if x < to && x < CHANGES_TO {
            let end = to.min(CHANGES_TO);
            let changes = &self.inner.changes.at;
            let mut next = changes.partition_point(|&(c, _)| c <= x);
            let mut offset = match next.checked_sub(1) {
                Some(i) => changes[i].1,
                None => self.inner.changes.first,
            };
            while x < end {
                let (y, after) = changes
                    .get(next)
                    .map_or((end, offset), |&(c, o)| (c.min(end), o));
                if let Some(found) = visit(x, y, offset) {
                    return Some(found);
                }
                (x, offset) = (y, after);
                next += 1;
            }
        }
        if x < to {
            return self.walk_sampled(x, to, visit);
        }
        None
    }

    /// [`Calendar::walk`] in stretches of at most six hours, each checked
    /// for a change of offset at its end.
    fn walk_sampled<T>(
        &self,
        from: i64,
        to: i64,
        mut visit: impl FnMut(i64, i64, i64) -> Option<T>,
    ) -> Option<T> {
        let mut x = from;
        while x < to {
            let off = self.offset_at(x);
            let mut y = to.min(x.saturating_add(STRETCH));
            if self.offset_at(y - 1) != off {
                // One change of offset in (x, y - 1]: find its first second.
                let (mut lo, mut hi) = (x, y - 1);
                while hi - lo > 1 {
                    let mid = lo + (hi - lo) / 2;
                    if self.offset_at(mid) == off {
                        lo = mid;
                    } else {
                        hi = mid;
                    }
                }
                y = hi;
            }
            if let Some(found) = visit(x, y, off) {
                return Some(found);
            }
            x = y;
        }
        None
    }

    /// The working pieces of the local (naive, offset-free) range `[a, b)`,
    /// in order, as local seconds since 1970-01-01T00:00.
    fn local_pieces(&self, a: i64, b: i64, mut visit: impl FnMut(i64, i64) -> bool) {
        let mut day = a.div_euclid(DAY);
        while day.saturating_mul(DAY) < b {
            let start = day * DAY;
            for &(s, e) in self.day_hours(day) {
                let lo = a.max(start + i64::from(s));
                let hi = b.min(start + i64::from(e));
                if hi > lo && !visit(lo, hi) {
                    return;
                }
            }
            day += 1;
        }
    }

    fn seconds_between(&self, from: i64, to: i64) -> i64 {
        let mut total = 0;
        self.walk(from, to, |x, y, off| {
            total += self.local_seconds(x + off, y + off);
            None::<()>
        });
        total
    }

    /// Working seconds in the local range `[a, b)`: the partial days at
    /// either end piece by piece, the whole days between by
    /// [`Calendar::whole_days_seconds`].
    fn local_seconds(&self, a: i64, b: i64) -> i64 {
        let first = a.div_euclid(DAY) + i64::from(a.rem_euclid(DAY) != 0);
        let last = b.div_euclid(DAY);
        let mut total = 0;
        let mut count = |lo: i64, hi: i64| {
            total += hi - lo;
            true
        };
        if last - first < WHOLE_DAYS_MIN {
            self.local_pieces(a, b, count);
            return total;
        }
        self.local_pieces(a, first * DAY, &mut count);
        self.local_pieces(last * DAY, b, &mut count);
        total + self.whole_days_seconds(first, last)
    }

    /// Working seconds of the local days `[first, last)` (days since
    /// 1970-01-01): whole weeks at once, then each holiday and exception in
    /// the span puts its own hours in place of its weekday's.
    fn whole_days_seconds(&self, first: i64, last: i64) -> i64 {
        let week = &self.inner.week.days;
        let weekday_len: [i64; 7] = std::array::from_fn(|d| hours_len(&week[d]));
        let days = last - first;
        let mut total = days / 7 * weekday_len.iter().sum::<i64>();
        for day in first + days / 7 * 7..last {
            total += weekday_len[weekday(day)];
        }
        let excepted = |d: &NaiveDate| self.inner.exceptions.contains_key(d);
        let dates = || Some((date_of_day(first)?, date_of_day(last)?));
        let window = FIRST_DAY..=END_DAY;
        if window.contains(&first) && window.contains(&last) {
            let off = &self.inner.days_off;
            let (a, b) = (
                off.partition_point(|&d| d < first),
                off.partition_point(|&d| d < last),
            );
            for &day in &off[a..b] {
                if self.inner.exceptions.is_empty()
                    || !date_of_day(day).is_some_and(|d| excepted(&d))
                {
                    total -= weekday_len[weekday(day)];
                }
            }
            return match dates() {
                Some((from, to)) if !self.inner.exceptions.is_empty() => {
                    total + self.exceptions_seconds(from, to, &weekday_len)
                }
                _ => total,
            };
        }
        let Some((from, to)) = dates() else {
            return total;
        };
        // What a date's weekday gave it, and what it really has.
        let usual = |d: NaiveDate| weekday_len[weekday(day_of_date(d))];
        for d in self.inner.dates.range(from..to) {
            if !excepted(d) {
                total -= usual(*d);
            }
        }
        if !self.inner.yearly.is_empty() {
            for year in from.year()..=to.year() {
                for &(month, day) in &self.inner.yearly {
                    if let Some(d) = NaiveDate::from_ymd_opt(year, month, day)
                        && (from..to).contains(&d)
                        && !self.inner.dates.contains(&d)
                        && !excepted(&d)
                    {
                        total -= usual(d);
                    }
                }
            }
        }
        total + self.exceptions_seconds(from, to, &weekday_len)
    }

    /// What the exceptions dated in `[from, to)` change in a count that gave
    /// every one of their days its weekday's hours: a holiday with an
    /// exception was not taken off (the exception wins over it).
    fn exceptions_seconds(&self, from: NaiveDate, to: NaiveDate, weekday_len: &[i64; 7]) -> i64 {
        self.inner
            .exceptions
            .range(from..to)
            .map(|(d, hours)| hours_len(hours) - weekday_len[weekday(day_of_date(*d))])
            .sum()
    }

    /// The Unix second at which `need` (> 0) working seconds after `from` have
    /// passed, looking at most [`HORIZON_SECS`] ahead.
    fn add_seconds(&self, from: i64, need: i64) -> Option<i64> {
        if self.inner.week.is_empty() && self.inner.exceptions.values().all(Vec::is_empty) {
            return None;
        }
        let mut left = need;
        self.walk(from, from.saturating_add(HORIZON_SECS), |x, y, off| {
            let mut found = None;
            self.local_pieces(x + off, y + off, |lo, hi| {
                if hi - lo >= left {
                    found = Some(lo + left - off);
                    false
                } else {
                    left -= hi - lo;
                    true
                }
            });
            found
        })
    }
}

/// Monday = 0 for a day counted from 1970-01-01 (a Thursday).
fn weekday(day: i64) -> usize {
    (day + 3).rem_euclid(7) as usize
}

/// Seconds in a day's working intervals.
fn hours_len(hours: &[(u32, u32)]) -> i64 {
    hours.iter().map(|&(s, e)| i64::from(e - s)).sum()
}

/// The holidays from [`CHANGES_FROM`] to [`CHANGES_TO`] as days since
/// 1970-01-01, sorted, each once: 60 a year for 5 yearly holidays.
fn days_off(dates: &BTreeSet<NaiveDate>, yearly: &BTreeSet<(u32, u32)>) -> Vec<i64> {
    let window = FIRST_DAY..END_DAY;
    let (Some(first), Some(last)) = (date_of_day(window.start), date_of_day(window.end)) else {
        return Vec::new();
    };
    let mut days: Vec<i64> = dates.iter().map(|d| day_of_date(*d)).collect();
    for year in first.year()..=last.year() {
        for &(month, day) in yearly {
            if let Some(d) = NaiveDate::from_ymd_opt(year, month, day) {
                days.push(day_of_date(d));
            }
        }
    }
    days.retain(|d| window.contains(d));
    days.sort_unstable();
    days.dedup();
    days
}

/// A calendar's construction number ([`Calendar::serial`]). It is not part
/// of what a calendar is: any two are equal.
#[derive(Debug, Clone, Copy)]
struct Serial(u64);

impl Serial {
    /// A number no calendar had before (from 1).
    fn next() -> Serial {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Serial(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

impl PartialEq for Serial {
    fn eq(&self, _: &Serial) -> bool {
        true
    }
}

impl Eq for Serial {}

/// Where `day` (counted from 1970-01-01) is in `[FIRST_DAY, END_DAY)`, if
/// it is.
fn day_in_span(day: i64) -> Option<usize> {
    if (FIRST_DAY..END_DAY).contains(&day) {
        usize::try_from(day - FIRST_DAY).ok()
    } else {
        None
    }
}

/// `days` (in the span, as [`days_off`] gives them) as one bit per day of
/// the span; no words at all without days.
fn day_bits(days: &[i64]) -> Vec<u64> {
    if days.is_empty() {
        return Vec::new();
    }
    let span = usize::try_from(END_DAY - FIRST_DAY).unwrap_or(0);
    let mut bits = vec![0u64; span.div_ceil(64)];
    for i in days.iter().filter_map(|&d| day_in_span(d)) {
        if let Some(w) = bits.get_mut(i / 64) {
            *w |= 1 << (i % 64);
        }
    }
    bits
}

/// The date of a day counted from 1970-01-01.
fn date_of_day(day: i64) -> Option<NaiveDate> {
    DateTime::from_timestamp(day.checked_mul(DAY)?, 0).map(|d| d.date_naive())
}

/// The day, counted from 1970-01-01, of a date.
fn day_of_date(date: NaiveDate) -> i64 {
    (date - NaiveDate::default()).num_days()
}

/// The instants (Unix seconds) in `[CHANGES_FROM, CHANGES_TO)` at which
/// `tz`'s UTC offset changes, each the first second of the new offset, in
/// order. Found once per zone and process by the six-hour walk (about
/// 90 000 lookups of the offset, a few milliseconds) and kept, since
/// chrono-tz does not expose its table of transitions.
fn offset_changes(tz: Tz) -> Arc<ZoneChanges> {
    static KNOWN: Mutex<Vec<(Tz, Arc<ZoneChanges>)>> = Mutex::new(Vec::new());
    let known = |tz: Tz| {
        KNOWN
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|(z, _)| *z == tz)
            .map(|(_, c)| Arc::clone(c))
    };
    if let Some(changes) = known(tz) {
        return changes;
    }
    let probe = Calendar {
        inner: Box::new(Inner {
            serial: Serial::next(),
            tz,
            week: WeekHours::none(),
            holidays: Vec::new(),
            dates: BTreeSet::new(),
            yearly: BTreeSet::new(),
            days_off: Vec::new(),
            off_bits: Vec::new(),
            exceptions: Default::default(),
            changes: Arc::default(),
        }),
    };
    let mut found = ZoneChanges {
        first: probe.offset_at(CHANGES_FROM),
        at: Vec::new(),
    };
    let mut before = None;
    probe.walk_sampled(CHANGES_FROM, CHANGES_TO, |start, _, offset| {
        if before.is_some_and(|b| b != offset) {
            found.at.push((start, offset));
        }
        before = Some(offset);
        None::<()>
    });
    let mut known_now = KNOWN.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((_, c)) = known_now.iter().find(|(z, _)| *z == tz) {
        return Arc::clone(c);
    }
    let found = Arc::new(found);
    known_now.push((tz, Arc::clone(&found)));
    found
}

/// A zone's UTC offsets from [`CHANGES_FROM`] to [`CHANGES_TO`]
/// ([`offset_changes`]).
#[derive(Default, PartialEq, Eq)]
struct ZoneChanges {
    /// The offset (seconds, local minus UTC) at [`CHANGES_FROM`].
    first: i64,
    /// Each change: its first second and the offset from then on, in order.
    at: Vec<(i64, i64)>,
}

/// A calendar's `Debug` shows how many changes its zone has, not all 120.
impl std::fmt::Debug for ZoneChanges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZoneChanges")
            .field("first", &self.first)
            .field("changes", &self.at.len())
            .finish()
    }
}

/// How a target's clock runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Clock {
    /// Around the clock, 24×7, in real (UTC) time.
    Always,
    /// Only during a calendar's working hours.
    Business(Calendar),
}

impl Clock {
    /// Business seconds in `[from, to)`, both truncated to the second; 0 if
    /// `to <= from`.
    pub fn seconds_between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> i64 {
        let (f, t) = (from.timestamp(), to.timestamp());
        if t <= f {
            return 0;
        }
        match self {
            Clock::Always => t - f,
            Clock::Business(cal) => cal.seconds_between(f, t),
        }
    }

    /// The instant when `secs` business seconds after `from` have passed: the
    /// smallest `t` with `seconds_between(from, t) == secs`. `from` itself
    /// when `secs <= 0`. When the target cannot be reached within
    /// [`HORIZON_SECS`] (20 years) of `from`, such as in a calendar without
    /// working hours, returns [`far_future`] instead.
    pub fn add_seconds(&self, from: DateTime<Utc>, secs: i64) -> DateTime<Utc> {
        if secs <= 0 {
            return from;
        }
        let f = from.timestamp();
        let t = match self {
            Clock::Always => f.checked_add(secs),
            Clock::Business(cal) => cal.add_seconds(f, secs),
        };
        t.and_then(|t| DateTime::from_timestamp(t, 0))
            .unwrap_or_else(far_future)
    }

    /// Whether the clock runs at `at`.
    pub fn is_working(&self, at: DateTime<Utc>) -> bool {
        match self {
            Clock::Always => true,
            Clock::Business(cal) => cal.is_working(at),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn office(tz: &str, holidays: Vec<Holiday>) -> Clock {
        Clock::Business(Calendar::new(tz, WeekHours::weekdays(9, 17), holidays).unwrap())
    }

    fn every_day(tz: &str, start: u32, end: u32) -> Clock {
        Clock::Business(
            Calendar::new(
                tz,
                WeekHours {
                    days: std::array::from_fn(|_| vec![(start, end)]),
                },
                vec![],
            )
            .unwrap(),
        )
    }

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn every_day_of_the_span_and_around_it_is_a_holiday_exactly_when_its_date_is() {
        let cal = Calendar::new(
            "Europe/Berlin",
            WeekHours::weekdays(9, 17),
            vec![
                Holiday::Yearly { month: 12, day: 25 },
                Holiday::Yearly { month: 2, day: 29 },
                Holiday::Yearly { month: 1, day: 1 },
                // The first and last days of the span, and days outside it.
                Holiday::Date(date(2000, 1, 1)),
                Holiday::Date(date(2059, 12, 31)),
                Holiday::Date(date(1999, 12, 31)),
                Holiday::Date(date(2060, 1, 2)),
                Holiday::Date(date(2026, 5, 14)),
            ],
        )
        .unwrap();
        let mut holidays = 0;
        for day in FIRST_DAY - 400..END_DAY + 400 {
            let d = date_of_day(day).unwrap();
            assert_eq!(cal.is_holiday(day), cal.is_holiday_date(d), "{d}");
            holidays += usize::from(cal.is_holiday(day));
        }
        // From 1998-11-27 to 2061-02-03: 63 Christmases, 63 New Years, 16
        // leap days, and the four dates that are not already New Year.
        assert_eq!(holidays, 63 + 63 + 16 + 4);
        let none = Calendar::new("UTC", WeekHours::weekdays(9, 17), vec![]).unwrap();
        assert!(none.inner.off_bits.is_empty());
        assert!((FIRST_DAY..END_DAY).all(|d| !none.is_holiday(d)));
    }

    #[test]
    fn a_four_hour_target_opened_friday_at_four_is_due_monday_at_noon() {
        let clock = office("UTC", vec![]);
        // 2025-01-03 is a Friday.
        let due = clock.add_seconds(utc("2025-01-03T16:00:00Z"), 4 * 3600);
        assert_eq!(due, utc("2025-01-06T12:00:00Z"));
        assert_eq!(
            clock.seconds_between(utc("2025-01-03T16:00:00Z"), due),
            4 * 3600
        );
    }

    #[test]
    fn local_office_hours_follow_the_zone() {
        let clock = office("Europe/Berlin", vec![]);
        // 09:00 in Berlin in winter is 08:00 UTC.
        let due = clock.add_seconds(utc("2025-01-06T07:00:00Z"), 3600);
        assert_eq!(due, utc("2025-01-06T09:00:00Z"));
        // In summer it is 07:00 UTC.
        let due = clock.add_seconds(utc("2025-07-07T06:00:00Z"), 3600);
        assert_eq!(due, utc("2025-07-07T08:00:00Z"));
    }

    #[test]
    fn a_full_office_week_is_forty_hours() {
        let clock = office("America/New_York", vec![]);
        assert_eq!(
            clock.seconds_between(utc("2025-01-06T00:00:00Z"), utc("2025-01-13T00:00:00Z")),
            40 * 3600
        );
    }

    #[test]
    fn a_year_of_office_hours_counts_every_working_day() {
        let clock = office(
            "Europe/Berlin",
            vec![Holiday::Yearly { month: 12, day: 25 }],
        );
        // 2025 has 261 weekdays; 25 December 2025 is a Thursday.
        let secs = clock.seconds_between(utc("2024-12-31T23:00:00Z"), utc("2025-12-31T23:00:00Z"));
        assert_eq!(secs, 260 * 8 * 3600);
    }

    #[test]
    fn a_holiday_at_the_start_of_a_span_is_skipped() {
        // Monday 2025-01-06 is a holiday.
        let clock = office("UTC", vec![Holiday::Date(date(2025, 1, 6))]);
        let due = clock.add_seconds(utc("2025-01-06T10:00:00Z"), 3600);
        assert_eq!(due, utc("2025-01-07T10:00:00Z"));
    }

    #[test]
    fn a_holiday_in_the_middle_of_a_span_is_skipped() {
        let clock = office("UTC", vec![Holiday::Date(date(2025, 1, 7))]);
        // Monday 16:00 + 2 h: one hour Monday, Tuesday off, one hour Wednesday.
        let due = clock.add_seconds(utc("2025-01-06T16:00:00Z"), 2 * 3600);
        assert_eq!(due, utc("2025-01-08T10:00:00Z"));
        assert_eq!(
            clock.seconds_between(utc("2025-01-06T00:00:00Z"), utc("2025-01-09T00:00:00Z")),
            16 * 3600
        );
    }

    #[test]
    fn a_holiday_at_the_end_of_a_span_counts_nothing() {
        let clock = office("UTC", vec![Holiday::Date(date(2025, 1, 8))]);
        assert_eq!(
            clock.seconds_between(utc("2025-01-07T16:00:00Z"), utc("2025-01-08T16:00:00Z")),
            3600
        );
    }

    #[test]
    fn a_yearly_holiday_matches_every_year() {
        let clock = office("UTC", vec![Holiday::Yearly { month: 1, day: 1 }]);
        // 1 January 2025 is a Wednesday, 1 January 2026 a Thursday.
        for day in ["2025-01-01T12:00:00Z", "2026-01-01T12:00:00Z"] {
            assert!(!clock.is_working(utc(day)), "{day}");
        }
        assert!(clock.is_working(utc("2025-01-02T12:00:00Z")));
    }

    #[test]
    fn a_leap_day_holiday_only_applies_in_leap_years() {
        let cal = Calendar::new(
            "UTC",
            WeekHours::always(),
            vec![Holiday::Yearly { month: 2, day: 29 }],
        )
        .unwrap();
        assert!(!cal.is_working(utc("2028-02-29T12:00:00Z")));
        assert!(cal.is_working(utc("2027-02-28T12:00:00Z")));
        assert!(cal.is_working(utc("2027-03-01T12:00:00Z")));
    }

    #[test]
    fn holidays_are_whole_local_days() {
        // 2025-01-07 in Tokyo runs from 2025-01-06T15:00Z to 2025-01-07T15:00Z.
        let cal = Calendar::new(
            "Asia/Tokyo",
            WeekHours::always(),
            vec![Holiday::Date(date(2025, 1, 7))],
        )
        .unwrap();
        assert!(cal.is_working(utc("2025-01-06T14:59:59Z")));
        assert!(!cal.is_working(utc("2025-01-06T15:00:00Z")));
        assert!(!cal.is_working(utc("2025-01-07T14:59:59Z")));
        assert!(cal.is_working(utc("2025-01-07T15:00:00Z")));
    }

    #[test]
    fn a_spring_forward_night_window_in_berlin_is_three_hours() {
        // 2025-03-30: 02:00 CET jumps to 03:00 CEST (01:00Z).
        let clock = every_day("Europe/Berlin", 3600, 5 * 3600);
        let secs = clock.seconds_between(utc("2025-03-29T12:00:00Z"), utc("2025-03-30T12:00:00Z"));
        assert_eq!(secs, 3 * 3600);
        // 01:00 CET = 00:00Z; one hour until the jump, then 03:00-05:00 CEST.
        assert_eq!(
            clock.add_seconds(utc("2025-03-30T00:00:00Z"), 3600),
            utc("2025-03-30T01:00:00Z")
        );
        assert_eq!(
            clock.add_seconds(utc("2025-03-30T00:00:00Z"), 3601),
            utc("2025-03-30T01:00:01Z")
        );
        assert_eq!(
            clock.add_seconds(utc("2025-03-30T00:00:00Z"), 3 * 3600),
            utc("2025-03-30T03:00:00Z")
        );
    }

    #[test]
    fn a_window_starting_in_the_spring_gap_starts_when_the_gap_ends() {
        // 02:30-04:00 local does not begin at 02:30, which does not exist.
        let clock = every_day("Europe/Berlin", 9000, 4 * 3600);
        assert_eq!(
            clock.add_seconds(utc("2025-03-29T23:00:00Z"), 1),
            utc("2025-03-30T01:00:01Z")
        );
        assert_eq!(
            clock.seconds_between(utc("2025-03-29T12:00:00Z"), utc("2025-03-30T12:00:00Z")),
            3600
        );
    }

    #[test]
    fn a_fall_back_night_window_in_berlin_counts_the_repeated_hour_twice() {
        // 2025-10-26: 03:00 CEST falls back to 02:00 CET (01:00Z).
        let clock = every_day("Europe/Berlin", 3600, 5 * 3600);
        let secs = clock.seconds_between(utc("2025-10-25T12:00:00Z"), utc("2025-10-26T12:00:00Z"));
        assert_eq!(secs, 5 * 3600);
        // 01:00 CEST = 23:00Z the day before; five hours later is 05:00 CET = 04:00Z.
        assert_eq!(
            clock.add_seconds(utc("2025-10-25T23:00:00Z"), 5 * 3600),
            utc("2025-10-26T04:00:00Z")
        );
    }

    #[test]
    fn a_window_starting_in_the_repeated_hour_covers_both_passes_of_it() {
        // 02:30-05:00 local: 02:30-03:00 CEST, then 02:30-05:00 CET.
        let clock = every_day("Europe/Berlin", 9000, 5 * 3600);
        let secs = clock.seconds_between(utc("2025-10-25T12:00:00Z"), utc("2025-10-26T12:00:00Z"));
        assert_eq!(secs, 3 * 3600);
        assert!(clock.is_working(utc("2025-10-26T00:45:00Z"))); // 02:45 CEST
        assert!(!clock.is_working(utc("2025-10-26T01:15:00Z"))); // 02:15 CET
        assert!(clock.is_working(utc("2025-10-26T01:45:00Z"))); // 02:45 CET
    }

    #[test]
    fn office_days_across_new_york_dst_changes_stay_eight_hours() {
        let clock = office("America/New_York", vec![]);
        // 2025-03-07 (Fri) to 2025-03-11 (Tue) covers the 9 March switch.
        assert_eq!(
            clock.seconds_between(utc("2025-03-07T00:00:00Z"), utc("2025-03-12T00:00:00Z")),
            3 * 8 * 3600
        );
        // Friday 16:00 EST (21:00Z) + 2 h is Monday 10:00 EDT (14:00Z).
        assert_eq!(
            clock.add_seconds(utc("2025-03-07T21:00:00Z"), 2 * 3600),
            utc("2025-03-10T14:00:00Z")
        );
        // Fall back on Sunday 2 November: Friday 16:00 EDT (20:00Z) + 2 h is
        // Monday 10:00 EST (15:00Z).
        assert_eq!(
            clock.add_seconds(utc("2025-10-31T20:00:00Z"), 2 * 3600),
            utc("2025-11-03T15:00:00Z")
        );
    }

    #[test]
    fn new_york_night_windows_on_switch_days_count_real_time() {
        let clock = every_day("America/New_York", 0, 4 * 3600);
        // 2025-03-09: 02:00 EST -> 03:00 EDT; 00:00-04:00 local is 3 h.
        assert_eq!(
            clock.seconds_between(utc("2025-03-09T00:00:00Z"), utc("2025-03-09T12:00:00Z")),
            3 * 3600
        );
        // 2025-11-02: 02:00 EDT -> 01:00 EST; 00:00-04:00 local is 5 h.
        assert_eq!(
            clock.seconds_between(utc("2025-11-02T00:00:00Z"), utc("2025-11-02T12:00:00Z")),
            5 * 3600
        );
    }

    #[test]
    fn exceptions_replace_a_days_hours_and_win_over_holidays() {
        let xmas_eve = date(2026, 12, 24); // a Thursday
        let saturday = date(2026, 12, 19);
        let cal = Calendar::new(
            "UTC",
            WeekHours::weekdays(9, 17),
            vec![Holiday::Date(xmas_eve)],
        )
        .unwrap()
        .with_exceptions(vec![
            Exception {
                date: xmas_eve,
                hours: vec![(9 * 3600, 12 * 3600)],
            },
            Exception {
                date: saturday,
                hours: vec![(10 * 3600, 14 * 3600)],
            },
        ])
        .unwrap();
        let c = Clock::Business(cal.clone());
        assert_eq!(
            c.seconds_between(utc("2026-12-24T00:00:00Z"), utc("2026-12-25T00:00:00Z")),
            3 * 3600
        );
        assert_eq!(
            c.seconds_between(utc("2026-12-19T00:00:00Z"), utc("2026-12-20T00:00:00Z")),
            4 * 3600
        );
        assert!(cal.is_working(utc("2026-12-19T11:00:00Z")));
        assert!(!cal.is_working(utc("2026-12-24T13:00:00Z")));
        // A closed exception on an ordinary Monday.
        let closed = Calendar::new("UTC", WeekHours::weekdays(9, 17), vec![])
            .unwrap()
            .with_exceptions(vec![Exception {
                date: date(2026, 12, 21),
                hours: vec![],
            }])
            .unwrap();
        assert_eq!(
            Clock::Business(closed)
                .seconds_between(utc("2026-12-21T00:00:00Z"), utc("2026-12-22T00:00:00Z")),
            0
        );
        assert!(
            Calendar::new("UTC", WeekHours::none(), vec![])
                .unwrap()
                .with_exceptions(vec![Exception {
                    date: saturday,
                    hours: vec![(5, 3)]
                }])
                .is_err()
        );
        // Only exceptions: a target still falls due on them.
        let only = Calendar::new("UTC", WeekHours::none(), vec![])
            .unwrap()
            .with_exceptions(vec![Exception {
                date: saturday,
                hours: vec![(10 * 3600, 14 * 3600)],
            }])
            .unwrap();
        assert_eq!(
            Clock::Business(only).add_seconds(utc("2026-12-01T00:00:00Z"), 3600),
            utc("2026-12-19T11:00:00Z")
        );
    }

    #[test]
    fn an_interval_may_run_until_midnight() {
        let clock = every_day("UTC", 22 * 3600, 86_400);
        assert_eq!(
            clock.seconds_between(utc("2025-01-01T00:00:00Z"), utc("2025-01-03T00:00:00Z")),
            4 * 3600
        );
        assert!(clock.is_working(utc("2025-01-01T23:59:59Z")));
        assert!(!clock.is_working(utc("2025-01-02T00:00:00Z")));
    }

    #[test]
    fn always_counts_real_seconds_and_truncates_to_the_second() {
        let clock = Clock::Always;
        let from = utc("2025-01-01T00:00:00.700Z");
        assert_eq!(
            clock.seconds_between(from, utc("2025-01-01T01:00:00.100Z")),
            3600
        );
        assert_eq!(clock.add_seconds(from, 10), utc("2025-01-01T00:00:10Z"));
        assert_eq!(clock.add_seconds(from, 0), from);
        assert_eq!(clock.seconds_between(utc("2025-01-02T00:00:00Z"), from), 0);
    }

    #[test]
    fn a_calendar_without_working_hours_never_reaches_a_target() {
        let clock = Clock::Business(Calendar::new("UTC", WeekHours::none(), vec![]).unwrap());
        assert_eq!(
            clock.add_seconds(utc("2025-01-01T00:00:00Z"), 1),
            far_future()
        );
        assert_eq!(
            clock.seconds_between(utc("2025-01-01T00:00:00Z"), utc("2026-01-01T00:00:00Z")),
            0
        );
    }

    #[test]
    fn a_calendar_whose_every_day_is_a_holiday_gives_up_after_the_horizon() {
        let holidays = (1..=12)
            .flat_map(|m| (1..=31).map(move |d| Holiday::Yearly { month: m, day: d }))
            .filter(|h| h.validate().is_ok())
            .collect();
        let clock = Clock::Business(Calendar::new("UTC", WeekHours::always(), holidays).unwrap());
        assert_eq!(
            clock.add_seconds(utc("2025-01-01T00:00:00Z"), 1),
            far_future()
        );
    }

    #[test]
    fn calendars_refuse_unknown_zones_and_bad_intervals() {
        assert_eq!(
            Calendar::new("Mars/Olympus", WeekHours::weekdays(9, 17), vec![]),
            Err(SlaError::UnknownTimeZone("Mars/Olympus".into()))
        );
        let bad = [
            vec![(3600, 3600)],
            vec![(7200, 3600)],
            vec![(0, 86_401)],
            vec![(7200, 10_800), (0, 3600)],
            vec![(0, 7200), (3600, 10_800)],
        ];
        for day in bad {
            let mut week = WeekHours::none();
            week.days[2] = day.clone();
            assert!(
                matches!(
                    Calendar::new("UTC", week, vec![]),
                    Err(SlaError::InvalidHours(_))
                ),
                "{day:?}"
            );
        }
        let mut week = WeekHours::none();
        week.days[0] = vec![(0, 3600), (3600, 7200)];
        assert!(Calendar::new("UTC", week, vec![]).is_ok());
        assert!(matches!(
            Calendar::new(
                "UTC",
                WeekHours::always(),
                vec![Holiday::Yearly { month: 4, day: 31 }]
            ),
            Err(SlaError::InvalidHoliday(_))
        ));
    }

    #[test]
    fn a_calendar_round_trips_through_json_and_is_validated_when_read() {
        let cal = Calendar::new(
            "Europe/Berlin",
            WeekHours::weekdays(9, 17),
            vec![
                Holiday::Date(date(2025, 12, 24)),
                Holiday::Yearly { month: 12, day: 25 },
            ],
        )
        .unwrap();
        let json = serde_json::to_value(&cal).unwrap();
        assert_eq!(json["tz"], "Europe/Berlin");
        assert_eq!(json["week"]["days"][0], serde_json::json!([[32400, 61200]]));
        assert_eq!(
            json["holidays"][0],
            serde_json::json!({"date": "2025-12-24"})
        );
        assert_eq!(
            json["holidays"][1],
            serde_json::json!({"yearly": {"month": 12, "day": 25}})
        );
        let back: Calendar = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(back, cal);

        let clock = Clock::Business(cal);
        let back: Clock = serde_json::from_value(serde_json::to_value(&clock).unwrap()).unwrap();
        assert_eq!(back, clock);
        assert_eq!(serde_json::to_value(Clock::Always).unwrap(), "always");

        let mut bad = json;
        bad["tz"] = "Nowhere/Else".into();
        let err = serde_json::from_value::<Calendar>(bad).unwrap_err();
        assert!(err.to_string().contains("unknown time zone"), "{err}");
    }

    /// The count as it was done before the fast path: six-hour stretches,
    /// local day by local day.
    fn day_by_day_seconds(cal: &Calendar, from: i64, to: i64) -> i64 {
        let mut total = 0;
        cal.walk_sampled(from, to, |x, y, off| {
            cal.local_pieces(x + off, y + off, |lo, hi| {
                total += hi - lo;
                true
            });
            None::<()>
        });
        total
    }

    const ZONES: [&str; 9] = [
        "UTC",
        "Europe/Berlin",
        "America/New_York",
        "Australia/Lord_Howe", // half-hour DST
        "Asia/Kathmandu",      // +05:45
        "America/Santiago",
        "Africa/Casablanca", // DST suspended for Ramadan
        "Pacific/Chatham",   // +12:45/+13:45
        "America/St_Johns",
    ];

    /// Days' hours to pick from: closed, whole, split, inside the
    /// spring-forward gap, inside the repeated hour, until midnight.
    fn hours_of(pick: u8) -> Vec<(u32, u32)> {
        match pick % 7 {
            0 => vec![],
            1 => vec![(0, 86_400)],
            2 => vec![(8 * 3_600, 12 * 3_600), (13 * 3_600, 17 * 3_600)],
            3 => vec![(9 * 3_600, 17 * 3_600)],
            4 => vec![(5_400, 3 * 3_600)],
            5 => vec![(2 * 3_600, 2 * 3_600 + 1_800)],
            _ => vec![(22 * 3_600, 86_400)],
        }
    }

    fn some_date(days: i64) -> NaiveDate {
        date_of_day(day_of_date(date(2000, 1, 1)) + days).unwrap()
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(300))]
        /// Whole weeks at once, holidays and exceptions put in place of
        /// their weekday's hours, stretches from one change of offset to
        /// the next: the same count as going six hours and one day at a
        /// time, in any zone, over any span up to three years (some of
        /// them outside 2000-2060, where the fast path is not taken).
        #[test]
        fn counting_by_weeks_agrees_with_counting_day_by_day(
            zone in 0usize..ZONES.len(),
            week in proptest::collection::vec(0u8..7, 7),
            dated in proptest::collection::vec(0i64..22_000, 0..8),
            yearly in proptest::collection::vec((1u32..=12, 1u32..=31), 0..4),
            exceptions in proptest::collection::vec((0i64..22_000, 0u8..7, 0u8..3), 0..6),
            start in 940_000_000i64..2_830_000_000,
            length in 0i64..(3 * 366 * 86_400),
        ) {
            let mut hours = WeekHours::none();
            for (day, pick) in hours.days.iter_mut().zip(&week) {
                *day = hours_of(*pick);
            }
            let mut holidays: Vec<Holiday> = dated.iter().map(|d| Holiday::Date(some_date(*d))).collect();
            holidays.extend(
                yearly
                    .iter()
                    .map(|&(month, day)| Holiday::Yearly { month, day })
                    .filter(|h| h.validate().is_ok()),
            );
            // An exception's date: any, or (where there are some) one of
            // the dated holidays, or a yearly holiday in some year.
            let exception_date = |d: i64, on: u8| {
                let n = usize::try_from(d).unwrap();
                match on {
                    1 if !dated.is_empty() => some_date(dated[n % dated.len()]),
                    2 => yearly
                        .iter()
                        .filter_map(|&(m, day)| {
                            NaiveDate::from_ymd_opt(2000 + i32::try_from(d % 60).unwrap(), m, day)
                        })
                        .next()
                        .unwrap_or_else(|| some_date(d)),
                    _ => some_date(d),
                }
            };
            let mut exception_dates = BTreeSet::new();
            let exceptions: Vec<Exception> = exceptions
                .iter()
                .map(|&(d, pick, on)| Exception { date: exception_date(d, on), hours: hours_of(pick) })
                .filter(|e| exception_dates.insert(e.date))
                .collect();
            let cal = Calendar::new(ZONES[zone], hours, holidays)
                .unwrap()
                .with_exceptions(exceptions)
                .unwrap();
            let end = start + length;
            // Holidays looked up by day number are the holidays by date.
            for day in (start / DAY..end / DAY + 1).step_by(7).take(200) {
                let d = date_of_day(day).unwrap();
                proptest::prop_assert_eq!(cal.is_holiday(day), cal.is_holiday_date(d), "{}", d);
            }
            proptest::prop_assert_eq!(
                cal.seconds_between(start, end),
                day_by_day_seconds(&cal, start, end)
            );
            // And a due time is still the first instant with that much
            // business time behind it.
            let clock = Clock::Business(cal);
            let from = DateTime::from_timestamp(start, 0).unwrap();
            let need = length % (40 * 3_600) + 1;
            let due = clock.add_seconds(from, need);
            if due != far_future() {
                proptest::prop_assert_eq!(clock.seconds_between(from, due), need);
                proptest::prop_assert!(
                    clock.seconds_between(from, due - chrono::Duration::seconds(1)) < need
                );
            }
        }
    }

    #[test]
    fn an_exception_on_a_holiday_counts_its_own_hours_in_a_long_span() {
        // Found by `counting_by_weeks_agrees_with_counting_day_by_day`: a
        // closed exception on a yearly holiday, a Monday, on the last whole
        // day of a span of years. The holiday is not taken off, the
        // exception is, once.
        let mut week = WeekHours::none();
        week.days[0] = vec![(0, 86_400)];
        let cal = Calendar::new("UTC", week, vec![Holiday::Yearly { month: 2, day: 7 }])
            .unwrap()
            .with_exceptions(vec![Exception {
                date: date(2056, 2, 7),
                hours: vec![],
            }])
            .unwrap();
        let (from, to) = (2_633_841_279, 2_633_841_279 + 83_352_321);
        assert_eq!(
            cal.seconds_between(from, to),
            day_by_day_seconds(&cal, from, to)
        );
        // And open hours on a holiday count, in place of the weekday's.
        let open = cal
            .clone()
            .with_exceptions(vec![Exception {
                date: date(2055, 2, 7), // a Sunday, closed every week
                hours: vec![(0, 3_600)],
            }])
            .unwrap();
        let (from, to) = (
            utc("2055-01-01T00:00:00Z").timestamp(),
            utc("2055-03-01T00:00:00Z").timestamp(),
        );
        assert_eq!(
            open.seconds_between(from, to),
            day_by_day_seconds(&open, from, to)
        );
        assert_eq!(
            open.seconds_between(from, to),
            cal.seconds_between(from, to) + 3_600
        );
    }

    #[test]
    fn a_zones_changes_of_offset_are_those_the_six_hour_walk_finds() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        let changes = offset_changes(berlin);
        // CET on 1 January 2000, then two changes a year, at 01:00 UTC, to
        // CEST and back, from 2000 to 2059.
        assert_eq!(changes.first, 3_600);
        assert_eq!(changes.at.len(), 120);
        let at = |i: usize| DateTime::from_timestamp(changes.at[i].0, 0).unwrap();
        assert_eq!(at(0), utc("2000-03-26T01:00:00Z"));
        assert_eq!(changes.at[0].1, 7_200);
        assert_eq!(at(119), utc("2059-10-26T01:00:00Z"));
        assert_eq!(changes.at[119].1, 3_600);
        let utc_zone = offset_changes("UTC".parse().unwrap());
        assert_eq!((utc_zone.first, utc_zone.at.len()), (0, 0));
        // Asked again, the same list, not found again.
        assert!(Arc::ptr_eq(&changes, &offset_changes(berlin)));
    }
}
