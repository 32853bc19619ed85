//! Outgoing notifications: per-event templates (built in, overridable from
//! a directory), rendering with escaping, and email delivery over SMTP with
//! lettre. The outbox rows themselves live in the store; the server's
//! delivery worker claims them and calls [`Mailer::send`].

pub mod email;
pub mod inbound;
pub mod templates;
pub mod webhook;

pub use email::{Mailer, SendError};
pub use templates::{Rendered, Templates};
