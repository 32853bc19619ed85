//! Incident management as pure rules: how impact and urgency make a priority,
//! which transitions move an incident between states and what each one
//! requires and causes, and what counts as valid text on an incident.
//!
//! No I/O, no HTTP, no SQL: `store` persists what these rules decide and
//! `api` translates their errors. The transition table ([`TRANSITIONS`]) is
//! data, checked by one function ([`apply`]), so it can be tested exhaustively
//! and exposed read-only through the API.

/// Gives a fieldless enum its list of values (`ALL`), its snake_case name
/// (`as_str`, matching its serde name), `Display` and `FromStr`.
macro_rules! named_enum {
    ($ty:ident { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $ty {
            /// Every value, in declaration order.
            pub const ALL: [$ty; [$($name),+].len()] = [$($ty::$variant),+];

            /// The snake_case name used in the API, the database and audit history.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $name),+
                }
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $ty {
            type Err = keel_core::actor::UnknownName;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::ALL
                    .into_iter()
                    .find(|v| v.as_str() == s)
                    .ok_or_else(|| keel_core::actor::UnknownName(s.to_owned()))
            }
        }
    };
}

pub mod error;
pub mod fields;
pub mod priority;
pub mod state;

pub use error::*;
pub use fields::*;
pub use priority::*;
pub use state::*;
