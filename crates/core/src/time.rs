//! Time as Keel stores it: UTC, truncated to microseconds so that a value
//! reads back from SQLite and PostgreSQL exactly as it was written.

use chrono::{DateTime, SubsecRound, Utc};

pub type Timestamp = DateTime<Utc>;

/// Now, at the precision the databases keep.
pub fn now() -> Timestamp {
    Utc::now().trunc_subsecs(6)
}

/// Serializes `t` as chrono's serde does (RFC 3339 in UTC with `Z`, and 0,
/// 3, 6 or 9 digits of fraction, the fewest that keep it exact), written
/// digit by digit: chrono's goes through `fmt` and took 2 500 instructions
/// a timestamp, 7 % of a list of 50 incidents (bench/RESULTS.md, ninth
/// session). For `#[serde(serialize_with = "...")]`.
pub fn rfc3339<S: serde::Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
    use serde::Serialize;
    let mut buf = [0u8; 30];
    match write_rfc3339(t, &mut buf).and_then(|n| std::str::from_utf8(&buf[..n]).ok()) {
        Some(text) => s.serialize_str(text),
        // Years beyond four digits and leap seconds: chrono's own.
        None => t.serialize(s),
    }
}

/// [`rfc3339`] for an optional timestamp.
pub fn rfc3339_opt<S: serde::Serializer>(t: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
    struct Rfc3339<'a>(&'a Timestamp);
    impl serde::Serialize for Rfc3339<'_> {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            rfc3339(self.0, s)
        }
    }
    match t {
        Some(t) => s.serialize_some(&Rfc3339(t)),
        None => s.serialize_none(),
    }
}

/// Writes `t` into `buf` as [`rfc3339`] does; the length written, or
/// `None` where chrono's form differs from the common one (a year outside
/// 0-9999, a leap second).
pub fn write_rfc3339(t: &Timestamp, buf: &mut [u8; 30]) -> Option<usize> {
    use chrono::{Datelike, Timelike};
    // The fields of the naive UTC value: `DateTime`'s own accessors add
    // the (zero) offset again on every call.
    let t = t.naive_utc();
    let year = u32::try_from(t.year()).ok().filter(|y| *y <= 9999)?;
    let nano = t.nanosecond();
    if nano >= 1_000_000_000 {
        return None;
    }
    let mut out = Out { buf, n: 0 };
    out.digits(year, 4);
    out.byte(b'-');
    out.digits(t.month(), 2);
    out.byte(b'-');
    out.digits(t.day(), 2);
    out.byte(b'T');
    out.digits(t.hour(), 2);
    out.byte(b':');
    out.digits(t.minute(), 2);
    out.byte(b':');
    out.digits(t.second(), 2);
    if nano != 0 {
        out.byte(b'.');
        if nano.is_multiple_of(1_000_000) {
            out.digits(nano / 1_000_000, 3);
        } else if nano.is_multiple_of(1_000) {
            out.digits(nano / 1_000, 6);
        } else {
            out.digits(nano, 9);
        }
    }
    out.byte(b'Z');
    Some(out.n)
}

/// Reads `text` if it is RFC 3339 in UTC as Keel's databases give it back:
/// `YYYY-MM-DDTHH:MM:SS`, then a fraction of 1 to 9 digits or none, then
/// `Z` or `+00:00` (what sqlx writes for a `DateTime<Utc>` on SQLite, and
/// what [`write_rfc3339`] writes). Anything else, however valid, is `None`:
/// the caller reads it with chrono, as before. Digit by digit: chrono's
/// parser took about 1 000 instructions a timestamp, two or more per
/// incident of every get and list page on SQLite (bench/RESULTS.md,
/// eighteenth session).
pub fn parse_rfc3339_utc(text: &str) -> Option<Timestamp> {
    let b = text.as_bytes();
    let num = |from: usize, len: usize| -> Option<u32> {
        let digits = b.get(from..from + len)?;
        digits.iter().try_fold(0u32, |n, d| {
            d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0'))
        })
    };
    let sep = |at: usize, c: u8| b.get(at) == Some(&c);
    if !(sep(4, b'-') && sep(7, b'-') && sep(10, b'T') && sep(13, b':') && sep(16, b':')) {
        return None;
    }
    let date =
        chrono::NaiveDate::from_ymd_opt(i32::try_from(num(0, 4)?).ok()?, num(5, 2)?, num(8, 2)?)?;
    let (hour, minute, second) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    let mut at = 19;
    let mut nano = 0;
    if sep(at, b'.') {
        let digits = b
            .get(at + 1..)?
            .iter()
            .take_while(|d| d.is_ascii_digit())
            .count();
        if !(1..=9).contains(&digits) {
            return None;
        }
        nano = num(at + 1, digits)? * 10u32.pow(9 - u32::try_from(digits).ok()?);
        at += 1 + digits;
    }
    match b.get(at..)? {
        b"Z" | b"+00:00" => {}
        _ => return None,
    }
    // A leap second (60) is chrono's to read.
    let time = chrono::NaiveTime::from_hms_nano_opt(hour, minute, second.min(59), nano)
        .filter(|_| second < 60)?;
    Some(date.and_time(time).and_utc())
}

/// A cursor over [`write_rfc3339`]'s buffer, which is long enough for the
/// longest form (30 bytes).
struct Out<'a> {
    buf: &'a mut [u8; 30],
    n: usize,
}

impl Out<'_> {
    fn byte(&mut self, c: u8) {
        if let Some(slot) = self.buf.get_mut(self.n) {
            *slot = c;
            self.n += 1;
        }
    }

    /// `value`'s last `count` decimal digits, zero-padded.
    fn digits(&mut self, value: u32, count: u32) {
        for i in (0..count).rev() {
            let d = (value / 10u32.pow(i)) % 10;
            self.byte(b"0123456789"[d as usize]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{NaiveDate, TimeZone};

    /// What chrono's own serde writes.
    fn chrono_json(t: &Timestamp) -> String {
        serde_json::to_string(t).unwrap_or_default()
    }

    fn ours(t: &Timestamp) -> String {
        let mut out = Vec::new();
        let mut ser = serde_json::Serializer::new(&mut out);
        let _ = rfc3339(t, &mut ser);
        String::from_utf8(out).unwrap_or_default()
    }

    #[test]
    fn timestamps_are_written_exactly_as_chrono_writes_them() {
        let mut samples = vec![
            Utc.timestamp_opt(0, 0).single(),
            Utc.with_ymd_and_hms(2026, 12, 4, 20, 35, 4).single(),
            Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).single(),
            Utc.with_ymd_and_hms(0, 1, 1, 0, 0, 0).single(),
            Utc.with_ymd_and_hms(10_000, 1, 1, 0, 0, 0).single(),
            Utc.with_ymd_and_hms(-1, 6, 1, 0, 0, 0).single(),
            // A leap second.
            NaiveDate::from_ymd_opt(2016, 12, 31)
                .and_then(|d| d.and_hms_nano_opt(23, 59, 59, 1_500_000_000))
                .map(|n| Utc.from_utc_datetime(&n)),
        ];
        let mut x: i64 = 88_172_645_463_325_252;
        for _ in 0..2_000 {
            // xorshift: varied seconds and fractions of every length.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let secs = x.rem_euclid(4_000_000_000);
            let nanos = match x.rem_euclid(4) {
                0 => 0,
                1 => x.rem_euclid(1000) * 1_000_000,
                2 => x.rem_euclid(1_000_000) * 1_000,
                _ => x.rem_euclid(1_000_000_000),
            };
            samples.push(
                Utc.timestamp_opt(secs, u32::try_from(nanos).unwrap_or(0))
                    .single(),
            );
        }
        assert!(samples.iter().all(Option::is_some));
        for t in samples.into_iter().flatten() {
            assert_eq!(ours(&t), chrono_json(&t), "{t:?}");
        }
        let none: Option<Timestamp> = None;
        let mut out = Vec::new();
        let _ = rfc3339_opt(&none, &mut serde_json::Serializer::new(&mut out));
        assert_eq!(out, b"null");
        let some = Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).single();
        let mut out = Vec::new();
        let _ = rfc3339_opt(&some, &mut serde_json::Serializer::new(&mut out));
        assert_eq!(out, b"\"2026-01-02T03:04:05Z\"");
    }
    proptest::proptest! {
        /// Every instant of years 0-9999 in the forms sqlx (`+00:00`, the
        /// fewest fraction digits of 0, 3, 6, 9) and Keel (`Z`) write, and
        /// with any number of fraction digits, reads back as chrono reads it.
        #[test]
        fn a_timestamp_as_the_databases_give_it_back_reads_as_chrono_reads_it(
            secs in -62_167_219_200i64..253_402_300_800,
            nanos in 0u32..1_000_000_000,
            digits in 1usize..=9,
        ) {
            use chrono::SecondsFormat;
            let t = DateTime::from_timestamp(secs, nanos).unwrap_or_default();
            let fraction = format!("{:09}", t.timestamp_subsec_nanos());
            let forms = [
                t.to_rfc3339_opts(SecondsFormat::AutoSi, false),
                t.to_rfc3339_opts(SecondsFormat::AutoSi, true),
                format!("{}.{}+00:00", t.format("%Y-%m-%dT%H:%M:%S"), &fraction[..digits]),
            ];
            for text in forms {
                let chrono = DateTime::parse_from_rfc3339(&text).map(|t| t.to_utc()).ok();
                proptest::prop_assert!(chrono.is_some(), "{}", text);
                proptest::prop_assert_eq!(parse_rfc3339_utc(&text), chrono, "{}", text);
            }
        }

        /// Whatever the text, a timestamp read is the one chrono reads: the
        /// fast path may decline, never misread.
        #[test]
        fn any_text_read_as_a_timestamp_is_read_as_chrono_reads_it(
            text in "[0-9]{4}-(0[1-9]|1[0-2]|[0-9]{2})-(0[1-9]|[12][0-9]|3[01])[T t]([01][0-9]|2[0-4]):[0-5][0-9]:([0-5][0-9]|60)(\\.[0-9]{0,10})?(Z|\\+00:00|[+-][0-9]{2}:[0-9]{2}|z)?",
        ) {
            if let Some(t) = parse_rfc3339_utc(&text) {
                let chrono = DateTime::parse_from_rfc3339(&text).map(|t| t.to_utc()).ok();
                proptest::prop_assert_eq!(Some(t), chrono, "{}", text);
            }
        }
    }

    #[test]
    fn timestamps_in_other_forms_are_left_to_chrono() {
        for text in [
            "2026-12-06 10:00:00+00:00",
            "2026-12-06T10:00:00",
            "2026-12-06T10:00:00+01:00",
            "2026-12-06T10:00:00.+00:00",
            "2026-12-06T10:00:00.1234567890Z",
            "2026-12-06T10:00:60Z",
            "2026-02-30T10:00:00Z",
            "2026-12-06T24:00:00Z",
            "+2026-12-06T10:00:00Z",
            "2026-12-06T10:00:00Zjunk",
            "",
        ] {
            assert_eq!(parse_rfc3339_utc(text), None, "{text}");
        }
        assert_eq!(
            parse_rfc3339_utc("2026-12-06T10:00:00.5+00:00").map(|t| t.timestamp_subsec_micros()),
            Some(500_000)
        );
    }
}
