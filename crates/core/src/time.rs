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
}
