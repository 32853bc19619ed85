//! Schemas for request fields whose rules a Rust type alone does not state:
//! text checked by [`keel_core::text::clean`], login names checked by
//! [`keel_core::people::Username`], and the list filters of
//! `GET /api/v1/incidents`. Each is used on a field with
//! `#[schema(schema_with = ...)]` (or `#[param(...)]`) and carries that
//! field's description, so the contract says exactly what the handler
//! accepts. The patterns are built from the same facts the code uses
//! (`char::is_control`, `str::trim`, the state names), and the tests below
//! check them against the code.

use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaType, Type};

/// What `str::trim` removes: the Unicode `White_Space` characters.
const SPACE: &str =
    r"\t\n\u000b\u000c\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";
/// What `char::is_control` finds: the C0 and C1 control characters.
const CONTROL: &str = r"\u0000-\u001f\u007f-\u009f";
/// The control characters except tab, line feed and carriage return.
const CONTROL_BUT_LINES: &str = r"\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f";

/// The pattern of `text::clean(_, _, _, required, multiline)`: after trimming
/// white space, no control characters (tab and line breaks allowed when
/// `multiline`), and at least one character when `required`.
fn text_pattern(required: bool, multiline: bool) -> String {
    let visible = format!("[^{CONTROL}{SPACE}]");
    let inner = if multiline {
        format!("[^{CONTROL_BUT_LINES}]")
    } else {
        format!("[^{CONTROL}]")
    };
    let core = format!("{visible}(?:{inner}*{visible})?");
    let core = if required {
        core
    } else {
        format!("(?:{core})?")
    };
    format!("^[{SPACE}]*{core}[{SPACE}]*$")
}

fn string(nullable: bool) -> ObjectBuilder {
    let ty = if nullable {
        SchemaType::from_iter([Type::String, Type::Null])
    } else {
        SchemaType::Type(Type::String)
    };
    ObjectBuilder::new().schema_type(ty)
}

/// Text of at most `max` characters as sent, see [`text_pattern`].
fn text(
    max: usize,
    required: bool,
    multiline: bool,
    nullable: bool,
    description: &str,
) -> RefOr<Schema> {
    string(nullable)
        .description(Some(description))
        .min_length(required.then_some(1))
        .max_length(Some(max))
        .pattern(Some(text_pattern(required, multiline)))
        .into()
}

macro_rules! text_fields {
    ($($(#[$doc:meta])* $name:ident: $max:expr, $required:expr, $multiline:expr, $nullable:expr, $description:expr;)*) => {$(
        $(#[$doc])*
        pub fn $name() -> RefOr<Schema> {
            text($max, $required, $multiline, $nullable, $description)
        }
    )*};
}

const REQUIRED: bool = true;
const OPTIONAL: bool = false;
const MULTILINE: bool = true;
const ONE_LINE: bool = false;
const NULLABLE: bool = true;
const NOT_NULL: bool = false;

text_fields! {
    api_token_name: 100, REQUIRED, ONE_LINE, NOT_NULL,
        "What the token is for: 1-100 characters, one line.";
    display_name: 200, REQUIRED, ONE_LINE, NULLABLE,
        "1-200 characters, one line. Defaults to the username.";
    display_name_update: 200, REQUIRED, ONE_LINE, NULLABLE,
        "1-200 characters, one line.";
    group_name: 100, REQUIRED, ONE_LINE, NOT_NULL,
        "Unique; 1-100 characters, one line.";
    group_name_update: 100, REQUIRED, ONE_LINE, NULLABLE,
        "Unique; 1-100 characters, one line.";
    group_description: 2000, OPTIONAL, MULTILINE, NULLABLE,
        "Up to 2000 characters.";
    title: 200, REQUIRED, ONE_LINE, NOT_NULL,
        "1-200 characters, one line.";
    title_update: 200, REQUIRED, ONE_LINE, NULLABLE,
        "1-200 characters, one line.";
    description: 20_000, OPTIONAL, MULTILINE, NOT_NULL,
        "Up to 20 000 characters.";
    description_update: 20_000, OPTIONAL, MULTILINE, NULLABLE,
        "Up to 20 000 characters.";
    category: 100, OPTIONAL, ONE_LINE, NULLABLE,
        "Up to 100 characters, one line; blank or `null` means none.";
    comment_body: 20_000, REQUIRED, MULTILINE, NOT_NULL,
        "1-20 000 characters.";
    sla_name: 100, REQUIRED, ONE_LINE, NOT_NULL,
        "Unique; 1-100 characters, one line.";
    sla_name_update: 100, REQUIRED, ONE_LINE, NULLABLE,
        "Unique; 1-100 characters, one line.";
}

/// A login name as [`keel_core::people::Username`] takes it: 2-64
/// characters, letters (stored lowercase), digits, `.`, `_`, `-`, starting
/// with a letter or digit; surrounding white space is trimmed.
pub fn username() -> RefOr<Schema> {
    string(false)
        .description(Some(
            "2-64 characters: letters (stored lowercase), digits, `.`, `_`, `-`, \
             starting with a letter or digit.",
        ))
        .pattern(Some(username_pattern()))
        .into()
}

fn username_pattern() -> String {
    format!("^[{SPACE}]*[A-Za-z0-9][A-Za-z0-9._-]{{1,63}}[{SPACE}]*$")
}

/// A comma-separated list as the list filters read it: items are trimmed,
/// empty ones skipped, each non-empty one must match `item`.
fn comma_list(item: &str) -> String {
    let one = format!("[{SPACE}]*(?:{item})?[{SPACE}]*");
    format!("^{one}(?:,{one})*$")
}

/// `?state=`: comma-separated incident states.
pub fn state_filter() -> RefOr<Schema> {
    let names: Vec<&str> = keel_incident::State::ALL
        .iter()
        .map(|s| s.as_str())
        .collect();
    string(false)
        .description(Some("Comma-separated states, e.g. `new,in_progress`."))
        .pattern(Some(comma_list(&names.join("|"))))
        .into()
}

/// `?priority=`: comma-separated priorities 1-5 (read as integers, so `+1`
/// and `01` count too).
pub fn priority_filter() -> RefOr<Schema> {
    string(false)
        .description(Some("Comma-separated priorities, e.g. `1,2`."))
        .pattern(Some(comma_list(r"\+?0*[1-5]")))
        .into()
}

/// Every spelling `uuid::Uuid::parse_str` reads: hyphenated, simple (32 hex
/// digits), braced and URN.
const UUID: &str = concat!(
    "[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}",
    "|[0-9A-Fa-f]{32}",
    "|\\{[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}\\}",
    "|urn:uuid:[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}",
);

fn id_or_none(description: &str) -> RefOr<Schema> {
    string(false)
        .description(Some(description))
        .pattern(Some(format!("^(?:none|{UUID})$")))
        .into()
}

/// `?assignee=`: a user id or `none`.
pub fn assignee_filter() -> RefOr<Schema> {
    id_or_none("Assignee user id, or `none` for unassigned.")
}

/// `?group=`: a group id or `none`.
pub fn group_filter() -> RefOr<Schema> {
    id_or_none("Assignment group id, or `none`.")
}

/// `?requester=`: a user id.
pub fn requester_filter() -> RefOr<Schema> {
    string(false)
        .description(Some("Requester user id."))
        .pattern(Some(format!("^(?:{UUID})$")))
        .into()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use proptest::prelude::*;

    use super::{text_pattern, username_pattern};

    /// Characters that exercise every branch: trimmed white space (some of
    /// it control characters), line breaks, other control characters,
    /// letters and marks beyond ASCII.
    fn tricky() -> impl Strategy<Value = String> {
        let chars = prop::sample::select(vec![
            ' ', '\t', '\n', '\r', '\u{b}', '\u{c}', '\u{85}', '\u{a0}', '\u{2003}', '\u{3000}',
            '\u{0}', '\u{1b}', '\u{7f}', '\u{9f}', '\u{feff}', 'a', 'Z', '0', '.', '-', '_', 'é',
            '\u{212a}', '漢',
        ]);
        prop::collection::vec(chars, 0..8).prop_map(|v| v.into_iter().collect())
    }

    #[test]
    fn the_uuid_pattern_reads_what_the_uuid_crate_reads() {
        let re = regex::Regex::new(&format!("^(?:{})$", super::UUID)).unwrap();
        let id = uuid::Uuid::now_v7();
        for s in [
            id.hyphenated().to_string(),
            id.simple().to_string(),
            id.braced().to_string(),
            id.urn().to_string(),
            id.hyphenated().to_string().to_uppercase(),
        ] {
            assert!(re.is_match(&s), "{s}");
            assert!(uuid::Uuid::parse_str(&s).is_ok(), "{s}");
        }
        for s in ["", "none", "1234", "{1234}", &format!("{}x", id.simple())] {
            assert!(!re.is_match(s), "{s}");
            assert!(uuid::Uuid::parse_str(s).is_err(), "{s}");
        }
    }

    proptest! {
        #[test]
        fn a_text_pattern_accepts_exactly_what_clean_accepts(s in tricky()) {
            for required in [true, false] {
                for multiline in [true, false] {
                    let re = regex::Regex::new(&text_pattern(required, multiline)).unwrap();
                    let clean = keel_core::text::clean("f", &s, usize::MAX, required, multiline);
                    prop_assert_eq!(re.is_match(&s), clean.is_ok(), "{:?} required={} multiline={}", s, required, multiline);
                }
            }
        }

        #[test]
        fn the_username_pattern_accepts_exactly_what_username_accepts(s in tricky()) {
            let re = regex::Regex::new(&username_pattern()).unwrap();
            // The Kelvin sign lowercases to an ASCII `k`; the pattern
            // leaves that oddity out.
            prop_assume!(!s.contains('\u{212a}'));
            prop_assert_eq!(re.is_match(&s), keel_core::people::Username::parse(&s).is_ok(), "{:?}", s);
        }
    }
}
