//! Fuzzing the list-query grammar with property tests (stable CI): sort,
//! limit, cursors and full-text terms take outside input and must never
//! panic, and what they accept must be well-formed.

use keel_core::query::{Cursor, Limit, Sort, SortDir, SortField, search_terms};
use proptest::prelude::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum F {
    Created,
    Priority,
}

impl SortField for F {
    const ALL: &'static [Self] = &[F::Created, F::Priority];
    fn name(self) -> &'static str {
        match self {
            F::Created => "created_at",
            F::Priority => "priority",
        }
    }
}

const DEFAULT: Sort<F> = Sort {
    field: F::Created,
    dir: SortDir::Desc,
};

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn sort_parsing_never_panics_and_accepts_only_known_fields(raw in ".{0,64}") {
        if let Ok(s) = Sort::parse(Some(&raw), DEFAULT) {
            let name = raw.trim_start_matches(['-', '+']);
            prop_assert_eq!(s.field.name(), name);
        }
    }

    #[test]
    fn cursor_decoding_never_panics(raw in ".{0,300}") {
        let _ = Cursor::decode(&raw, DEFAULT);
    }

    #[test]
    fn cursor_decoding_of_base64_noise_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        use base64::Engine;
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let _ = Cursor::decode(&raw, DEFAULT);
    }

    #[test]
    fn a_cursor_round_trips(value in any::<i64>(), tie in any::<i64>(), desc in any::<bool>()) {
        let dir = if desc { SortDir::Desc } else { SortDir::Asc };
        let c = Cursor { sort: "priority".into(), dir, value: value.into(), tiebreak: tie.into() };
        prop_assert_eq!(Cursor::decode(&c.encode(), Sort { field: F::Priority, dir }), Ok(c));
    }

    #[test]
    fn search_terms_are_plain_words_only(raw in ".{0,256}") {
        if let Ok(terms) = search_terms(&raw) {
            prop_assert!(terms.len() <= 16);
            for t in terms {
                prop_assert!(!t.is_empty());
                prop_assert!(t.chars().all(|c| c.is_alphanumeric() || c == '_'), "{t:?}");
            }
        }
    }

    #[test]
    fn limits_are_between_one_and_two_hundred(n in any::<u32>()) {
        match Limit::parse(Some(n)) {
            Ok(l) => prop_assert!((1..=200).contains(&l.get())),
            Err(_) => prop_assert!(n == 0 || n > 200),
        }
    }
}
