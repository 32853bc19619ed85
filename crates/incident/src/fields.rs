//! Validated text on an incident. Client strings become these through one
//! checking constructor each, built on [`keel_core::text::clean`]: trimmed,
//! bounded, free of control characters.

use std::fmt;

use keel_core::text::clean;
use serde::{Deserialize, Serialize};

use crate::error::IncidentError;

/// An incident's title: required, one line, at most [`Title::MAX_CHARS`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Title(String);

impl Title {
    /// Longest accepted title, in characters.
    pub const MAX_CHARS: usize = 200;

    /// Trims and checks a title.
    pub fn parse(s: &str) -> Result<Title, IncidentError> {
        Ok(Title(clean("title", s, Self::MAX_CHARS, true, false)?))
    }

    /// The validated text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The validated text, owned.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for Title {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An incident's description: optional (may be empty), multi-line, at most
/// [`Description::MAX_CHARS`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Description(String);

impl Description {
    /// Longest accepted description, in characters.
    pub const MAX_CHARS: usize = 20_000;

    /// Trims and checks a description; blank becomes empty.
    pub fn parse(s: &str) -> Result<Description, IncidentError> {
        Ok(Description(clean(
            "description",
            s,
            Self::MAX_CHARS,
            false,
            true,
        )?))
    }

    /// The validated text (possibly empty).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The validated text, owned.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for Description {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The body of a comment or work note: required, multi-line, at most
/// [`CommentBody::MAX_CHARS`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CommentBody(String);

impl CommentBody {
    /// Longest accepted comment, in characters.
    pub const MAX_CHARS: usize = 20_000;

    /// Trims and checks a comment body.
    pub fn parse(s: &str) -> Result<CommentBody, IncidentError> {
        Ok(CommentBody(clean("body", s, Self::MAX_CHARS, true, true)?))
    }

    /// The validated text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The validated text, owned.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for CommentBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Who may read a timeline entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Visibility {
    /// A public comment: the requester and watchers see it.
    Public,
    /// An internal work note: agents only.
    Internal,
}

named_enum!(Visibility {
    Public => "public",
    Internal => "internal",
});

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use keel_core::text::TextError;

    #[test]
    fn a_title_is_trimmed_required_single_line_and_bounded() {
        assert_eq!(
            Title::parse("  Printer on fire \t").unwrap().as_str(),
            "Printer on fire"
        );
        assert_eq!(
            Title::parse("   "),
            Err(IncidentError::Text(TextError::Empty { field: "title" }))
        );
        assert_eq!(
            Title::parse("two\nlines"),
            Err(IncidentError::Text(TextError::ControlChars {
                field: "title"
            }))
        );
        assert!(
            Title::parse(&"é".repeat(200)).is_ok(),
            "the limit counts characters"
        );
        assert_eq!(
            Title::parse(&"x".repeat(201)),
            Err(IncidentError::Text(TextError::TooLong {
                field: "title",
                max: 200
            }))
        );
        assert_eq!(Title::parse("ok").unwrap().into_string(), "ok");
    }

    #[test]
    fn a_description_may_be_empty_or_many_lines_but_is_bounded() {
        assert_eq!(Description::parse("  ").unwrap().as_str(), "");
        assert_eq!(
            Description::parse(" a\n\tb \n").unwrap().into_string(),
            "a\n\tb"
        );
        assert!(Description::parse(&"x".repeat(20_000)).is_ok());
        assert_eq!(
            Description::parse(&"x".repeat(20_001)),
            Err(IncidentError::Text(TextError::TooLong {
                field: "description",
                max: 20_000
            }))
        );
        assert_eq!(
            Description::parse("bell\u{7}"),
            Err(IncidentError::Text(TextError::ControlChars {
                field: "description"
            }))
        );
    }

    #[test]
    fn a_comment_body_is_required_may_span_lines_and_is_bounded() {
        assert_eq!(
            CommentBody::parse(" line 1\nline 2 ").unwrap().as_str(),
            "line 1\nline 2"
        );
        assert_eq!(
            CommentBody::parse("\n\n"),
            Err(IncidentError::Text(TextError::Empty { field: "body" }))
        );
        assert_eq!(
            CommentBody::parse(&"x".repeat(20_001)),
            Err(IncidentError::Text(TextError::TooLong {
                field: "body",
                max: 20_000
            }))
        );
        assert_eq!(
            CommentBody::parse("nul\u{0}"),
            Err(IncidentError::Text(TextError::ControlChars {
                field: "body"
            }))
        );
    }

    #[test]
    fn visibility_round_trips_through_its_name() {
        for v in Visibility::ALL {
            assert_eq!(v.as_str().parse::<Visibility>(), Ok(v));
            let de: Result<Visibility, serde::de::value::Error> =
                Visibility::deserialize(serde::de::value::StrDeserializer::new(v.as_str()));
            assert_eq!(de, Ok(v));
        }
        assert!("private".parse::<Visibility>().is_err());
    }
}
