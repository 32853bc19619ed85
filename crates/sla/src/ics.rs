//! Holidays from an iCalendar (RFC 5545) text, such as a public-holiday feed.
//!
//! Read: every `VEVENT`'s `DTSTART` (a `DATE`, or a `DATE-TIME` of which the
//! date is taken as written), an optional all-day `DTEND` (`DATE`, exclusive)
//! for holidays of several days, and an optional `RRULE`:
//!
//! * no `RRULE`: one [`Holiday::Date`] per day;
//! * `RRULE:FREQ=YEARLY` (optionally `INTERVAL=1`, `WKST`, or a `BYMONTH` /
//!   `BYMONTHDAY` that repeats the start date): [`Holiday::Yearly`];
//! * the same with `COUNT` or `UNTIL`: the finite list of dates;
//! * any other rule (`FREQ=WEEKLY`, `BYDAY=-1MO`, …) is refused, because
//!   reading it as a fixed date would put the holiday on the wrong day.
//!
//! Tolerated: folded lines, CRLF or LF line ends, properties and components
//! it does not know (alarms inside events are skipped), `STATUS:CANCELLED`
//! events (skipped). `EXDATE` is not applied. Refused, with
//! [`SlaError::InvalidIcs`]: a text over 1 MiB, more than 10 000 events, more
//! than 100 000 holiday days in all, an event without a readable `DTSTART`,
//! unbalanced `BEGIN`/`END`, and a text without a `VCALENDAR`.

use chrono::{Datelike, Days, NaiveDate};

use crate::calendar::Holiday;
use crate::error::SlaError;

/// Largest accepted text: 1 MiB.
pub const MAX_ICS_BYTES: usize = 1024 * 1024;
/// Most events accepted in one text.
pub const MAX_ICS_EVENTS: usize = 10_000;
/// Most holidays (days) one text may produce.
const MAX_HOLIDAYS: usize = 100_000;
/// Longest accepted single event: a year.
const MAX_EVENT_DAYS: u64 = 366;

fn invalid(msg: impl Into<String>) -> SlaError {
    SlaError::InvalidIcs(msg.into())
}

/// Parses holidays from an iCalendar text. The result is sorted and free of
/// duplicates. See the module documentation for what is read.
pub fn holidays_from_ics(text: &str) -> Result<Vec<Holiday>, SlaError> {
    if text.len() > MAX_ICS_BYTES {
        return Err(invalid(format!(
            "the text is {} bytes, more than the {MAX_ICS_BYTES} allowed",
            text.len()
        )));
    }
    let mut holidays = Vec::new();
    let mut events = 0usize;
    let mut saw_calendar = false;
    // Components currently open, outermost first (upper-cased names).
    let mut stack: Vec<String> = Vec::new();
    let mut event = Event::default();

    for (number, line) in unfold(text).into_iter().enumerate() {
        let number = number + 1;
        if line.trim().is_empty() {
            continue;
        }
        let Some(prop) = Property::parse(&line) else {
            return Err(invalid(format!("line {number} is not a property")));
        };
        match prop.name.as_str() {
            "BEGIN" => {
                let name = prop.value.trim().to_ascii_uppercase();
                if name == "VCALENDAR" {
                    saw_calendar = true;
                }
                if name == "VEVENT" {
                    events += 1;
                    if events > MAX_ICS_EVENTS {
                        return Err(invalid(format!("more than {MAX_ICS_EVENTS} events")));
                    }
                    event = Event::default();
                }
                if stack.len() >= 32 {
                    return Err(invalid("components nested too deeply"));
                }
                stack.push(name);
            }
            "END" => {
                let name = prop.value.trim().to_ascii_uppercase();
                if stack.pop().as_deref() != Some(name.as_str()) {
                    return Err(invalid(format!(
                        "line {number}: END:{name} without its BEGIN"
                    )));
                }
                if name == "VEVENT" {
                    event.finish(&mut holidays)?;
                    if holidays.len() > MAX_HOLIDAYS {
                        return Err(invalid(format!("more than {MAX_HOLIDAYS} holiday days")));
                    }
                }
            }
            _ if stack.last().map(String::as_str) == Some("VEVENT") => {
                event.property(&prop, number)?;
            }
            _ => {}
        }
    }
    if let Some(open) = stack.last() {
        return Err(invalid(format!("BEGIN:{open} is never ended")));
    }
    if !saw_calendar {
        return Err(invalid("no BEGIN:VCALENDAR found"));
    }
    holidays.sort();
    holidays.dedup();
    Ok(holidays)
}

/// Joins folded lines (a line starting with a space or tab continues the
/// previous one) and drops line ends.
fn unfold(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for raw in text.split('\n') {
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        match (raw.strip_prefix([' ', '\t']), lines.last_mut()) {
            (Some(rest), Some(last)) => last.push_str(rest),
            _ => lines.push(raw.to_owned()),
        }
    }
    lines
}

/// `NAME;PARAM=VALUE;…:value`, with the name and parameter names upper-cased.
struct Property {
    name: String,
    params: Vec<(String, String)>,
    value: String,
}

impl Property {
    fn parse(line: &str) -> Option<Property> {
        // The value starts at the first colon outside a quoted parameter value.
        let mut quoted = false;
        let mut colon = None;
        for (i, c) in line.char_indices() {
            match c {
                '"' => quoted = !quoted,
                ':' if !quoted => {
                    colon = Some(i);
                    break;
                }
                _ => {}
            }
        }
        let colon = colon?;
        let (head, value) = (&line[..colon], &line[colon + 1..]);
        let mut parts = head.split(';');
        let name = parts.next()?.trim().to_ascii_uppercase();
        if name.is_empty() {
            return None;
        }
        let params = parts
            .map(|p| match p.split_once('=') {
                Some((k, v)) => (k.trim().to_ascii_uppercase(), v.trim().to_owned()),
                None => (p.trim().to_ascii_uppercase(), String::new()),
            })
            .collect();
        Some(Property {
            name,
            params,
            value: value.to_owned(),
        })
    }

    fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct Event {
    start: Option<NaiveDate>,
    /// Exclusive all-day end.
    end: Option<NaiveDate>,
    rule: Option<String>,
    cancelled: bool,
}

/// `YYYYMMDD` or `YYYYMMDDTHHMMSS[Z]`: the date, and whether it was a bare date.
fn parse_date(value: &str) -> Option<(NaiveDate, bool)> {
    let value = value.trim();
    let digits = value.get(..8)?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let rest = &value[8..];
    let is_date = rest.is_empty();
    if !is_date {
        let time = rest.strip_prefix(['T', 't'])?;
        let time = time.strip_suffix(['Z', 'z']).unwrap_or(time);
        if time.len() != 6 || !time.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
    }
    let year: i32 = digits[..4].parse().ok()?;
    let month: u32 = digits[4..6].parse().ok()?;
    let day: u32 = digits[6..8].parse().ok()?;
    Some((NaiveDate::from_ymd_opt(year, month, day)?, is_date))
}

impl Event {
    fn property(&mut self, prop: &Property, line: usize) -> Result<(), SlaError> {
        match prop.name.as_str() {
            "DTSTART" => {
                let (date, _) = parse_date(&prop.value).ok_or_else(|| {
                    invalid(format!(
                        "line {line}: DTSTART `{}` is not a date",
                        prop.value
                    ))
                })?;
                self.start = Some(date);
            }
            "DTEND" => {
                // Only an all-day end says which days are off.
                let is_date_param = prop
                    .param("VALUE")
                    .is_some_and(|v| v.eq_ignore_ascii_case("DATE"));
                if let Some((date, is_date)) = parse_date(&prop.value)
                    && (is_date || is_date_param)
                {
                    self.end = Some(date);
                }
            }
            "RRULE" => self.rule = Some(prop.value.trim().to_ascii_uppercase()),
            "STATUS" => self.cancelled = prop.value.trim().eq_ignore_ascii_case("CANCELLED"),
            _ => {}
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut Vec<Holiday>) -> Result<(), SlaError> {
        let event = std::mem::take(self);
        if event.cancelled {
            return Ok(());
        }
        let start = event
            .start
            .ok_or_else(|| invalid("an event has no DTSTART"))?;
        let days = match event.end {
            Some(end) if end > start => {
                let n = u64::try_from((end - start).num_days()).unwrap_or(u64::MAX);
                if n > MAX_EVENT_DAYS {
                    return Err(invalid(format!(
                        "an event starting {start} lasts {n} days, more than {MAX_EVENT_DAYS}"
                    )));
                }
                n
            }
            _ => 1,
        };
        let firsts: Vec<NaiveDate> = (0..days)
            .filter_map(|i| start.checked_add_days(Days::new(i)))
            .collect();
        match event.rule {
            None => out.extend(firsts.into_iter().map(Holiday::Date)),
            Some(rule) => match Yearly::parse(&rule, start)? {
                Yearly::Forever => out.extend(firsts.into_iter().map(|d| Holiday::Yearly {
                    month: d.month(),
                    day: d.day(),
                })),
                Yearly::Until(last) => {
                    for first in firsts {
                        let budget = (MAX_HOLIDAYS + 1).saturating_sub(out.len());
                        out.extend(yearly_dates(first, |_, d| d <= last, budget));
                    }
                }
                Yearly::Count(count) => {
                    for first in firsts {
                        let budget = (MAX_HOLIDAYS + 1).saturating_sub(out.len());
                        out.extend(yearly_dates(first, |n, _| n < count, budget));
                    }
                }
            },
        }
        Ok(())
    }
}

/// The same month and day every year from `first` on, while `keep(index,
/// date)`, at most `max` of them (dates that do not exist in a year, such as
/// 29 February, are skipped).
fn yearly_dates(
    first: NaiveDate,
    mut keep: impl FnMut(usize, NaiveDate) -> bool,
    max: usize,
) -> Vec<Holiday> {
    let mut out = Vec::new();
    let mut index = 0usize;
    for year in first.year()..=9999 {
        if out.len() >= max {
            break;
        }
        if let Some(d) = NaiveDate::from_ymd_opt(year, first.month(), first.day()) {
            if !keep(index, d) {
                break;
            }
            out.push(Holiday::Date(d));
            index += 1;
        }
    }
    out
}

enum Yearly {
    Forever,
    Until(NaiveDate),
    Count(usize),
}

impl Yearly {
    fn parse(rule: &str, start: NaiveDate) -> Result<Yearly, SlaError> {
        let unsupported = || invalid(format!("unsupported recurrence `{rule}`"));
        let mut yearly = false;
        let mut limit = Yearly::Forever;
        for part in rule.split(';').filter(|p| !p.is_empty()) {
            let (key, value) = part.split_once('=').ok_or_else(unsupported)?;
            match key.trim() {
                "FREQ" => yearly = value.trim() == "YEARLY",
                "INTERVAL" if value.trim() == "1" => {}
                "WKST" => {}
                "BYMONTH" if value.trim().parse::<u32>().ok() == Some(start.month()) => {}
                "BYMONTHDAY" if value.trim().parse::<u32>().ok() == Some(start.day()) => {}
                "COUNT" => {
                    let n: usize = value.trim().parse().map_err(|_| unsupported())?;
                    limit = Yearly::Count(n.min(MAX_HOLIDAYS + 1));
                }
                "UNTIL" => {
                    let (date, _) = parse_date(value).ok_or_else(unsupported)?;
                    limit = Yearly::Until(date);
                }
                _ => return Err(unsupported()),
            }
        }
        if yearly {
            Ok(limit)
        } else {
            Err(unsupported())
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn date(y: i32, m: u32, d: u32) -> Holiday {
        Holiday::Date(NaiveDate::from_ymd_opt(y, m, d).unwrap())
    }

    #[test]
    fn all_day_dated_and_yearly_events_become_holidays() {
        let text = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Keel//test//EN\r\n\
            BEGIN:VEVENT\r\nUID:1\r\nSUMMARY:Christmas\r\nDTSTART;VALUE=DATE:20241225\r\nRRULE:FREQ=YEARLY\r\nEND:VEVENT\r\n\
            BEGIN:VEVENT\r\nUID:2\r\nSUMMARY:Easter Monday\r\nDTSTART;VALUE=DATE:20250421\r\nEND:VEVENT\r\n\
            BEGIN:VEVENT\r\nUID:3\r\nDTSTART;TZID=Europe/Berlin:20250501T000000\r\nEND:VEVENT\r\n\
            BEGIN:VEVENT\r\nUID:4\r\nDTSTART:20251003T120000Z\r\nEND:VEVENT\r\n\
            END:VCALENDAR\r\n";
        assert_eq!(
            holidays_from_ics(text).unwrap(),
            vec![
                date(2025, 4, 21),
                date(2025, 5, 1),
                date(2025, 10, 3),
                Holiday::Yearly { month: 12, day: 25 },
            ]
        );
    }

    #[test]
    fn folded_lines_and_bare_line_feeds_are_read() {
        let text = "BEGIN:VCALENDAR\nBEGIN:VEVENT\nSUMMARY:A very long\n  summary that was folded\nDTSTART;VALUE=DA\n TE:2025\n\t0101\nRRULE:FREQ=YE\n ARLY\nEND:VEVENT\nEND:VCALENDAR";
        assert_eq!(
            holidays_from_ics(text).unwrap(),
            vec![Holiday::Yearly { month: 1, day: 1 }]
        );
    }

    #[test]
    fn multi_day_events_cover_every_day_until_their_end() {
        let text = "BEGIN:VCALENDAR\nBEGIN:VEVENT\nDTSTART;VALUE=DATE:20251224\nDTEND;VALUE=DATE:20251227\nEND:VEVENT\nEND:VCALENDAR\n";
        assert_eq!(
            holidays_from_ics(text).unwrap(),
            vec![date(2025, 12, 24), date(2025, 12, 25), date(2025, 12, 26)]
        );
    }

    #[test]
    fn yearly_rules_with_a_count_or_an_end_become_dates() {
        let text = "BEGIN:VCALENDAR\n\
            BEGIN:VEVENT\nDTSTART;VALUE=DATE:20250101\nRRULE:FREQ=YEARLY;COUNT=2\nEND:VEVENT\n\
            BEGIN:VEVENT\nDTSTART;VALUE=DATE:20250704\nRRULE:FREQ=YEARLY;UNTIL=20270704\nEND:VEVENT\n\
            END:VCALENDAR\n";
        assert_eq!(
            holidays_from_ics(text).unwrap(),
            vec![
                date(2025, 1, 1),
                date(2025, 7, 4),
                date(2026, 1, 1),
                date(2026, 7, 4),
                date(2027, 7, 4),
            ]
        );
    }

    #[test]
    fn unknown_components_alarms_and_cancelled_events_are_skipped() {
        let text = "BEGIN:VCALENDAR\nX-WR-CALNAME:Holidays\nBEGIN:VTIMEZONE\nTZID:Europe/Berlin\nBEGIN:STANDARD\nDTSTART:19701025T030000\nEND:STANDARD\nEND:VTIMEZONE\n\
            BEGIN:VEVENT\nDTSTART;VALUE=DATE:20250101\nBEGIN:VALARM\nTRIGGER:-PT15M\nDTSTART:20990101\nEND:VALARM\nX-UNKNOWN;FOO=\"a:b\":c\nEND:VEVENT\n\
            BEGIN:VEVENT\nDTSTART;VALUE=DATE:20250102\nSTATUS:CANCELLED\nEND:VEVENT\n\
            BEGIN:VTODO\nDTSTART;VALUE=DATE:20250103\nEND:VTODO\nEND:VCALENDAR\n";
        assert_eq!(holidays_from_ics(text).unwrap(), vec![date(2025, 1, 1)]);
    }

    #[test]
    fn rules_that_are_not_a_fixed_yearly_date_are_refused() {
        for rule in [
            "FREQ=WEEKLY",
            "FREQ=YEARLY;BYMONTH=5;BYDAY=-1MO",
            "FREQ=YEARLY;INTERVAL=2",
            "FREQ=YEARLY;BYMONTH=2",
            "NONSENSE",
        ] {
            let text = format!(
                "BEGIN:VCALENDAR\nBEGIN:VEVENT\nDTSTART;VALUE=DATE:20250101\nRRULE:{rule}\nEND:VEVENT\nEND:VCALENDAR\n"
            );
            assert!(
                matches!(holidays_from_ics(&text), Err(SlaError::InvalidIcs(_))),
                "{rule}"
            );
        }
    }

    #[test]
    fn malformed_texts_are_refused() {
        for text in [
            "",
            "hello",
            "BEGIN:VEVENT\nDTSTART;VALUE=DATE:20250101\nEND:VEVENT\n",
            "BEGIN:VCALENDAR\nBEGIN:VEVENT\nDTSTART;VALUE=DATE:20250101\n",
            "BEGIN:VCALENDAR\nEND:VEVENT\nEND:VCALENDAR\n",
            "BEGIN:VCALENDAR\nBEGIN:VEVENT\nSUMMARY:no start\nEND:VEVENT\nEND:VCALENDAR\n",
            "BEGIN:VCALENDAR\nBEGIN:VEVENT\nDTSTART:20251301\nEND:VEVENT\nEND:VCALENDAR\n",
            "BEGIN:VCALENDAR\nBEGIN:VEVENT\nDTSTART:2025\nEND:VEVENT\nEND:VCALENDAR\n",
            "BEGIN:VCALENDAR\nBEGIN:VEVENT\nDTSTART:20250101T1\nEND:VEVENT\nEND:VCALENDAR\n",
            "BEGIN:VCALENDAR\nBEGIN:VEVENT\nDTSTART;VALUE=DATE:20250101\nDTEND;VALUE=DATE:20270101\nEND:VEVENT\nEND:VCALENDAR\n",
        ] {
            assert!(
                matches!(holidays_from_ics(text), Err(SlaError::InvalidIcs(_))),
                "{text:?}"
            );
        }
    }

    #[test]
    fn texts_over_a_mebibyte_are_refused() {
        let text = format!(
            "BEGIN:VCALENDAR\nX-PAD:{}\nEND:VCALENDAR\n",
            "x".repeat(MAX_ICS_BYTES)
        );
        let err = holidays_from_ics(&text).unwrap_err();
        assert!(err.to_string().contains("bytes"), "{err}");
    }

    #[test]
    fn more_than_ten_thousand_events_are_refused() {
        let event = "BEGIN:VEVENT\nDTSTART;VALUE=DATE:20250101\nEND:VEVENT\n";
        let ok = format!(
            "BEGIN:VCALENDAR\n{}END:VCALENDAR\n",
            event.repeat(MAX_ICS_EVENTS)
        );
        assert!(ok.len() < MAX_ICS_BYTES);
        assert_eq!(holidays_from_ics(&ok).unwrap(), vec![date(2025, 1, 1)]);
        let over = format!(
            "BEGIN:VCALENDAR\n{}END:VCALENDAR\n",
            event.repeat(MAX_ICS_EVENTS + 1)
        );
        let err = holidays_from_ics(&over).unwrap_err();
        assert!(err.to_string().contains("events"), "{err}");
    }

    #[test]
    fn a_huge_yearly_count_is_bounded() {
        let text = "BEGIN:VCALENDAR\nBEGIN:VEVENT\nDTSTART;VALUE=DATE:20250101\nRRULE:FREQ=YEARLY;COUNT=99999999999\nEND:VEVENT\nEND:VCALENDAR\n";
        let holidays = holidays_from_ics(text).unwrap();
        assert_eq!(holidays.len(), 9999 - 2025 + 1);
    }

    #[test]
    fn non_ascii_and_odd_bytes_never_panic() {
        for text in [
            "BEGIN:VCALENDAR\nBEGIN:VEVENT\nDTSTART:2025é101\nEND:VEVENT\nEND:VCALENDAR\n",
            "BEGIN:VCALENDAR\nBEGIN:VEVENT\nDTSTART:éééééééééé\nEND:VEVENT\nEND:VCALENDAR\n",
            " \n\t\n:\n;:\n\"\n",
            "BEGIN:VCALENDAR\nBEGIN:VEVENT\nDTSTART;VALUE=DATE:20250101\nRRULE:FREQ=YEARLY;UNTIL=é\nEND:VEVENT\nEND:VCALENDAR\n",
        ] {
            let _ = holidays_from_ics(text);
        }
    }
}
