//! Human record numbers: a prefix naming the practice and a zero-padded
//! sequence, `INC0000123`. At least seven digits; more once the sequence
//! outgrows them.

use std::fmt;

/// The practice a record belongs to; decides the number prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordKind {
    Incident,
}

impl RecordKind {
    pub fn prefix(self) -> &'static str {
        match self {
            RecordKind::Incident => "INC",
        }
    }

    /// Name used in audit history and links (`incident`).
    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::Incident => "incident",
        }
    }
}

/// A parsed record number such as `INC0000042`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RecordNumber {
    pub kind: RecordKind,
    pub seq: i64,
}

impl RecordNumber {
    pub fn new(kind: RecordKind, seq: i64) -> Self {
        Self { kind, seq }
    }

    /// Parses `INC0000042` (case-insensitive prefix). Returns `None` for
    /// anything else, including a number of another practice.
    pub fn parse(kind: RecordKind, s: &str) -> Option<Self> {
        let prefix = kind.prefix();
        if s.len() <= prefix.len() || !s.is_char_boundary(prefix.len()) {
            return None;
        }
        let (p, digits) = s.split_at(prefix.len());
        if !p.eq_ignore_ascii_case(prefix)
            || digits.len() > 18
            || !digits.bytes().all(|b| b.is_ascii_digit())
        {
            return None;
        }
        let seq: i64 = digits.parse().ok()?;
        (seq > 0).then_some(Self { kind, seq })
    }
}

/// Digits a number shows at least.
const WIDTH: usize = 7;

impl RecordNumber {
    /// The number as text, as [`Display`](fmt::Display) writes it, built
    /// without the formatting machinery: every incident in a page names
    /// its number, and `format!` cost several hundred instructions each.
    pub fn text(&self) -> String {
        if self.seq < 0 {
            return self.to_string();
        }
        let mut digits = itoa::Buffer::new();
        let digits = digits.format(self.seq);
        let prefix = self.kind.prefix();
        let mut s = String::with_capacity(prefix.len() + digits.len().max(WIDTH));
        s.push_str(prefix);
        for _ in digits.len()..WIDTH {
            s.push('0');
        }
        s.push_str(digits);
        s
    }

    /// Appends [`text`](Self::text) to `out` without building a `String`:
    /// a list page's JSON names 50 numbers, and each was a `String` made
    /// and dropped.
    pub fn write_text(&self, out: &mut Vec<u8>) {
        if self.seq < 0 {
            out.extend_from_slice(self.to_string().as_bytes());
            return;
        }
        let mut digits = itoa::Buffer::new();
        let digits = digits.format(self.seq);
        out.extend_from_slice(self.kind.prefix().as_bytes());
        for _ in digits.len()..WIDTH {
            out.push(b'0');
        }
        out.extend_from_slice(digits.as_bytes());
    }
}

impl fmt::Display for RecordNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{:07}", self.kind.prefix(), self.seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn the_text_of_a_number_is_what_display_writes(seq in any::<i64>()) {
            let n = RecordNumber::new(RecordKind::Incident, seq);
            prop_assert_eq!(n.text(), n.to_string());
            let mut written = b"before ".to_vec();
            n.write_text(&mut written);
            prop_assert_eq!(written, format!("before {n}").into_bytes());
        }
    }

    #[test]
    fn the_text_of_edge_numbers_is_what_display_writes() {
        for seq in [
            0,
            1,
            9,
            999_999,
            1_000_000,
            9_999_999,
            10_000_000,
            i64::MAX,
            -1,
            i64::MIN,
        ] {
            let n = RecordNumber::new(RecordKind::Incident, seq);
            assert_eq!(n.text(), n.to_string(), "{seq}");
            let mut written = Vec::new();
            n.write_text(&mut written);
            assert_eq!(written, n.to_string().into_bytes(), "{seq}");
        }
    }

    #[test]
    fn numbers_are_padded_to_seven_digits() {
        assert_eq!(
            RecordNumber::new(RecordKind::Incident, 42).to_string(),
            "INC0000042"
        );
        assert_eq!(
            RecordNumber::new(RecordKind::Incident, 123_456_789).to_string(),
            "INC123456789"
        );
    }

    #[test]
    fn parsing_accepts_only_the_right_prefix_and_digits() {
        let n = RecordNumber::parse(RecordKind::Incident, "inc0000042");
        assert_eq!(n.map(|n| n.seq), Some(42));
        for bad in [
            "INC",
            "CHG0000001",
            "INC00x1",
            "INC0000000",
            "INC-1",
            "İNC0001",
            "",
        ] {
            assert!(
                RecordNumber::parse(RecordKind::Incident, bad).is_none(),
                "{bad}"
            );
        }
        assert!(RecordNumber::parse(RecordKind::Incident, "INC99999999999999999999").is_none());
    }
}
