//! Email over SMTP. One transport from a URL (`smtp://host:port`,
//! `smtp://user:pass@host:587?tls=required`, `smtps://host`), a sender
//! address, and messages threaded per record: the record's first message
//! has the Message-ID `<INC0000123@domain>`, and every later one names it in
//! `In-Reply-To` and `References`, so mail clients show one conversation.

use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::AsyncSmtpTransport;
use lettre::{AsyncTransport, Message, Tokio1Executor};

use crate::templates::Rendered;

/// Why a message was not sent.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct SendError {
    /// The server refused it for good (a bad recipient): do not retry.
    pub permanent: bool,
    pub message: String,
}

/// What to send.
#[derive(Debug, Clone)]
pub struct Outgoing<'a> {
    /// The notice (the outbox row id).
    pub id: uuid::Uuid,
    /// The recipient's place in the notice: with `id`, unique per message,
    /// and the same when a message is sent again after a failure.
    pub index: usize,
    /// The record number that names the thread, e.g. `INC0000123`.
    pub thread: &'a str,
    /// Whether this message starts the thread.
    pub first: bool,
    pub to: &'a str,
    pub rendered: &'a Rendered,
}

/// An SMTP connection pool and sender.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    domain: String,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer")
            .field("from", &self.from.to_string())
            .finish_non_exhaustive()
    }
}

impl Mailer {
    /// A mailer for the SMTP server at `url`, sending as `from`.
    pub fn new(url: &str, from: &str) -> Result<Mailer, String> {
        let from: Mailbox = from
            .parse()
            .map_err(|e| format!("invalid sender address `{from}`: {e}"))?;
        let domain = from.email.domain().to_owned();
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| format!("invalid SMTP URL: {e}"))?
            .timeout(Some(Duration::from_secs(20)))
            .build();
        Ok(Mailer {
            transport,
            from,
            domain,
        })
    }

    /// The thread's Message-ID for a record number.
    pub fn thread_id(&self, thread: &str) -> String {
        format!("<{thread}@{}>", self.domain)
    }

    /// Builds the message (exposed for tests).
    pub fn build(&self, m: &Outgoing<'_>) -> Result<Message, SendError> {
        let permanent = |message: String| SendError {
            permanent: true,
            message,
        };
        let to: Mailbox =
            m.to.parse()
                .map_err(|e| permanent(format!("invalid recipient `{}`: {e}", m.to)))?;
        let root = self.thread_id(m.thread);
        let mut b = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(m.rendered.subject.clone());
        b = if m.first {
            b.message_id(Some(root))
        } else {
            b.message_id(Some(format!(
                "<{}.{}.{}@{}>",
                m.id, m.index, m.thread, self.domain
            )))
            .in_reply_to(root.clone())
            .references(root)
        };
        b.multipart(MultiPart::alternative_plain_html(
            m.rendered.text.clone(),
            m.rendered.html.clone(),
        ))
        .map_err(|e| permanent(format!("cannot build the message: {e}")))
    }

    /// Sends one message; `Ok` only once the server accepted it.
    pub async fn send(&self, m: &Outgoing<'_>) -> Result<(), SendError> {
        let message = self.build(m)?;
        self.transport
            .send(message)
            .await
            .map(|_| ())
            .map_err(|e| SendError {
                permanent: e.is_permanent(),
                message: e.to_string(),
            })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    // The connection pool needs a Tokio runtime, even unused.
    #[tokio::test]
    async fn follow_ups_name_the_thread_and_the_first_message_is_it() {
        let mailer = Mailer::new("smtp://127.0.0.1:2525", "Keel <keel@desk.example>").unwrap();
        let r = Rendered {
            subject: "[INC0000001] Hi".into(),
            text: "t".into(),
            html: "<p>h</p>".into(),
        };
        let first = mailer
            .build(&Outgoing {
                id: uuid::Uuid::new_v4(),
                index: 0,
                thread: "INC0000001",
                first: true,
                to: "a@example.com",
                rendered: &r,
            })
            .unwrap();
        let raw = String::from_utf8(first.formatted()).unwrap();
        assert!(
            raw.contains("Message-ID: <INC0000001@desk.example>"),
            "{raw}"
        );
        assert!(!raw.contains("In-Reply-To"));
        let next = mailer
            .build(&Outgoing {
                id: uuid::Uuid::new_v4(),
                index: 0,
                thread: "INC0000001",
                first: false,
                to: "a@example.com",
                rendered: &r,
            })
            .unwrap();
        let raw = String::from_utf8(next.formatted()).unwrap();
        assert!(
            raw.contains("In-Reply-To: <INC0000001@desk.example>"),
            "{raw}"
        );
        assert!(
            raw.contains("References: <INC0000001@desk.example>"),
            "{raw}"
        );
        assert!(raw.contains("Subject: [INC0000001] Hi"));
        assert!(
            mailer
                .build(&Outgoing {
                    id: uuid::Uuid::new_v4(),
                    index: 0,
                    thread: "INC1",
                    first: false,
                    to: "not an address",
                    rendered: &r
                })
                .is_err_and(|e| e.permanent)
        );
    }
}
