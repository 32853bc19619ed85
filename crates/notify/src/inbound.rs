//! Inbound email: parses one RFC 5322 message (from an MTA pipe or an HTTP
//! webhook) into what Keel needs, refusing hostile input with a clear error
//! instead of crashing: size, header-line, part and nesting limits apply
//! before anything is interpreted.

use mail_parser::{MessageParser, MimeHeaders};

/// Bounds on what a message may be.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_bytes: usize,
    pub max_parts: usize,
    pub max_nested_messages: usize,
    pub max_header_line: usize,
    pub max_header_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: 25 * 1024 * 1024,
            max_parts: 100,
            max_nested_messages: 3,
            max_header_line: 8 * 1024,
            max_header_bytes: 256 * 1024,
        }
    }
}

/// Why a message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InboundError {
    #[error("the message is larger than {0} bytes")]
    TooLarge(usize),
    #[error("the message is not a readable email: {0}")]
    Malformed(String),
    #[error("the message is too complex: {0}")]
    TooComplex(String),
    #[error("the message has no sender address")]
    NoSender,
}

impl keel_core::DomainError for InboundError {
    fn code(&self) -> &'static str {
        match self {
            InboundError::TooLarge(_) => "inbound.too_large",
            InboundError::Malformed(_) => "inbound.malformed",
            InboundError::TooComplex(_) => "inbound.too_complex",
            InboundError::NoSender => "inbound.no_sender",
        }
    }
    fn class(&self) -> keel_core::ErrorClass {
        keel_core::ErrorClass::Invalid
    }
}

/// A file attached to a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundAttachment {
    pub filename: String,
    pub content_type: String,
    pub bytes: Vec<u8>,
}

/// What Keel takes from a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundMail {
    /// The sender's address, lowercase.
    pub from: String,
    /// The sender's display name, if given.
    pub from_name: Option<String>,
    /// The subject without `Re:`/`Fwd:` prefixes and record tags.
    pub subject: String,
    /// The plain text (HTML converted when there is no text part).
    pub text: String,
    /// The record number this message replies to, e.g. `INC0000042`.
    pub thread: Option<String>,
    /// Why the message is automatic (an auto-reply or bounce), if it is.
    pub automatic: Option<&'static str>,
    pub attachments: Vec<InboundAttachment>,
}

fn check_headers(raw: &[u8], limits: &Limits) -> Result<(), InboundError> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .or_else(|| raw.windows(2).position(|w| w == b"\n\n"))
        .unwrap_or(raw.len());
    if end > limits.max_header_bytes {
        return Err(InboundError::TooComplex(format!(
            "headers over {} bytes",
            limits.max_header_bytes
        )));
    }
    if raw[..end]
        .split(|b| *b == b'\n')
        .any(|l| l.len() > limits.max_header_line)
    {
        return Err(InboundError::TooComplex(format!(
            "a header line over {} bytes",
            limits.max_header_line
        )));
    }
    Ok(())
}

/// Finds a record number such as `INC0000042` at the start of `s`.
fn number_at(s: &str) -> Option<String> {
    let rest = s.get(..3).filter(|p| p.eq_ignore_ascii_case("INC"))?;
    let digits: String = s[rest.len()..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    (digits.len() >= 7 && digits.len() <= 18).then(|| format!("INC{digits}"))
}

/// The record number in a subject tag `[INC0000042]`.
fn thread_in_subject(subject: &str) -> Option<String> {
    subject.match_indices('[').find_map(|(i, _)| {
        let n = number_at(&subject[i + 1..])?;
        subject[i + 1 + n.len()..].starts_with(']').then_some(n)
    })
}

/// The record number in a Message-ID Keel made: `<INC0000042@…>`, or
/// `<uuid.n.INC0000042@…>` for a follow-up (`<uuid.INC0000042@…>` before notices).
fn thread_in_ids(ids: &[String]) -> Option<String> {
    ids.iter().find_map(|id| {
        let local = id
            .trim_matches(|c| c == '<' || c == '>')
            .split('@')
            .next()?;
        let tail = local.rsplit('.').next()?;
        number_at(tail).filter(|n| n.len() == tail.len())
    })
}

fn strip_subject(s: &str) -> String {
    let mut s = s.trim().to_owned();
    loop {
        let lower = s.to_ascii_lowercase();
        let cut = ["re:", "fwd:", "fw:", "aw:", "wg:"]
            .iter()
            .find(|p| lower.starts_with(*p))
            .map(|p| p.len());
        match cut {
            Some(n) => s = s[n..].trim_start().to_owned(),
            None => break,
        }
    }
    if let Some(n) = thread_in_subject(&s) {
        s = s.replace(&format!("[{n}]"), "").trim().to_owned();
    }
    s
}

fn header_text(msg: &mail_parser::Message<'_>, name: &str) -> Option<String> {
    msg.header_raw(name).map(|v| v.trim().to_owned())
}

fn ids(v: &mail_parser::HeaderValue<'_>) -> Vec<String> {
    match v {
        mail_parser::HeaderValue::Text(t) => vec![t.to_string()],
        mail_parser::HeaderValue::TextList(l) => l.iter().map(|t| t.to_string()).collect(),
        _ => vec![],
    }
}

/// Parses a raw message within `limits`.
pub fn parse(raw: &[u8], limits: &Limits) -> Result<InboundMail, InboundError> {
    if raw.len() > limits.max_bytes {
        return Err(InboundError::TooLarge(limits.max_bytes));
    }
    check_headers(raw, limits)?;
    let msg = MessageParser::default()
        .parse(raw)
        .ok_or_else(|| InboundError::Malformed("no headers found".into()))?;
    if msg.parts.len() > limits.max_parts {
        return Err(InboundError::TooComplex(format!(
            "more than {} parts",
            limits.max_parts
        )));
    }
    let nested = msg.parts.iter().filter(|p| p.message().is_some()).count();
    if nested > limits.max_nested_messages {
        return Err(InboundError::TooComplex(format!(
            "more than {} attached messages",
            limits.max_nested_messages
        )));
    }
    let addr = msg
        .from()
        .and_then(|a| a.first())
        .ok_or(InboundError::NoSender)?;
    let from = addr
        .address()
        .map(|a| a.trim().to_lowercase())
        .filter(|a| a.contains('@'))
        .ok_or(InboundError::NoSender)?;
    let from_name = addr
        .name()
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty());

    let auto_submitted =
        header_text(&msg, "Auto-Submitted").filter(|v| !v.eq_ignore_ascii_case("no"));
    let precedence = header_text(&msg, "Precedence").map(|v| v.to_ascii_lowercase());
    let return_path = header_text(&msg, "Return-Path");
    let local = from.split('@').next().unwrap_or("");
    let automatic = if auto_submitted.is_some() {
        Some("Auto-Submitted")
    } else if precedence
        .as_deref()
        .is_some_and(|p| ["bulk", "junk", "list", "auto_reply"].contains(&p))
    {
        Some("Precedence")
    } else if return_path.as_deref().is_some_and(|r| r.trim() == "<>") {
        Some("null return path (a bounce)")
    } else if header_text(&msg, "X-Autoreply").is_some()
        || header_text(&msg, "X-Autorespond").is_some()
    {
        Some("auto-reply header")
    } else if ["mailer-daemon", "postmaster"].contains(&local) {
        Some("mailer daemon")
    } else {
        None
    };

    let raw_subject = msg.subject().unwrap_or("").to_owned();
    let mut reply_ids = ids(msg.in_reply_to());
    reply_ids.extend(ids(msg.references()));
    let thread = thread_in_subject(&raw_subject).or_else(|| thread_in_ids(&reply_ids));
    let text = msg
        .body_text(0)
        .map(|t| t.trim().to_owned())
        .unwrap_or_default();
    let attachments = msg
        .attachments()
        .map(|p| InboundAttachment {
            filename: p.attachment_name().unwrap_or("attachment").to_owned(),
            content_type: p
                .content_type()
                .map(|c| match c.subtype() {
                    Some(s) => format!("{}/{}", c.ctype(), s),
                    None => c.ctype().to_owned(),
                })
                .unwrap_or_else(|| "application/octet-stream".into()),
            bytes: p.contents().to_vec(),
        })
        .collect();
    Ok(InboundMail {
        from,
        from_name,
        subject: strip_subject(&raw_subject),
        text,
        thread,
        automatic,
        attachments,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const PLAIN: &str = "From: Rita Requester <Rita@Example.com>\r\nTo: desk@keel.test\r\nSubject: Re: [INC0000042] Printer jam\r\nMessage-ID: <abc@example.com>\r\n\r\nStill jammed.\r\n";

    #[test]
    fn a_reply_names_its_record_and_sender() {
        let m = parse(PLAIN.as_bytes(), &Limits::default()).unwrap();
        assert_eq!(m.from, "rita@example.com");
        assert_eq!(m.from_name.as_deref(), Some("Rita Requester"));
        assert_eq!(m.thread.as_deref(), Some("INC0000042"));
        assert_eq!(m.subject, "Printer jam");
        assert_eq!(m.text, "Still jammed.");
        assert!(m.automatic.is_none());
    }

    #[test]
    fn threads_are_found_in_reply_headers_too() {
        let raw = "From: a@example.com\r\nSubject: hello\r\nIn-Reply-To: <0193.INC0000007@keel.test>\r\n\r\nx";
        assert_eq!(
            parse(raw.as_bytes(), &Limits::default())
                .unwrap()
                .thread
                .as_deref(),
            Some("INC0000007")
        );
        let raw = "From: a@example.com\r\nSubject: hello\r\nReferences: <x@y> <INC0000008@keel.test>\r\n\r\nx";
        assert_eq!(
            parse(raw.as_bytes(), &Limits::default())
                .unwrap()
                .thread
                .as_deref(),
            Some("INC0000008")
        );
        let raw = "From: a@example.com\r\nSubject: [INC12] not a number\r\n\r\nx";
        assert!(
            parse(raw.as_bytes(), &Limits::default())
                .unwrap()
                .thread
                .is_none()
        );
    }

    #[test]
    fn auto_replies_and_bounces_are_recognised() {
        for extra in [
            "Auto-Submitted: auto-replied\r\n",
            "Precedence: bulk\r\n",
            "Return-Path: <>\r\n",
            "X-Autoreply: yes\r\n",
        ] {
            let raw =
                format!("From: a@example.com\r\n{extra}Subject: Out of office\r\n\r\nI am away.");
            assert!(
                parse(raw.as_bytes(), &Limits::default())
                    .unwrap()
                    .automatic
                    .is_some(),
                "{extra}"
            );
        }
        let daemon = "From: MAILER-DAEMON@example.com\r\nSubject: Undeliverable\r\n\r\nx";
        assert!(
            parse(daemon.as_bytes(), &Limits::default())
                .unwrap()
                .automatic
                .is_some()
        );
        let human = "From: a@example.com\r\nAuto-Submitted: no\r\nSubject: hi\r\n\r\nx";
        assert!(
            parse(human.as_bytes(), &Limits::default())
                .unwrap()
                .automatic
                .is_none()
        );
    }

    #[test]
    fn attachments_come_out_with_name_type_and_bytes() {
        let raw = "From: a@example.com\r\nSubject: logs\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=XX\r\n\r\n--XX\r\nContent-Type: text/plain\r\n\r\nSee attached.\r\n--XX\r\nContent-Type: text/csv\r\nContent-Disposition: attachment; filename=\"errors.csv\"\r\nContent-Transfer-Encoding: base64\r\n\r\nYSxiCjEsMgo=\r\n--XX--\r\n";
        let m = parse(raw.as_bytes(), &Limits::default()).unwrap();
        assert_eq!(m.text, "See attached.");
        assert_eq!(m.attachments.len(), 1);
        assert_eq!(m.attachments[0].filename, "errors.csv");
        assert_eq!(m.attachments[0].content_type, "text/csv");
        assert_eq!(m.attachments[0].bytes, b"a,b\n1,2\n");
    }

    #[test]
    fn hostile_messages_are_refused_with_a_reason() {
        let l = Limits {
            max_bytes: 1000,
            ..Limits::default()
        };
        assert_eq!(
            parse(&vec![b'a'; 1001], &l),
            Err(InboundError::TooLarge(1000))
        );
        let long = format!(
            "From: a@example.com\r\nSubject: {}\r\n\r\nx",
            "x".repeat(9000)
        );
        assert!(matches!(
            parse(long.as_bytes(), &Limits::default()),
            Err(InboundError::TooComplex(_))
        ));
        let mut many = String::from(
            "From: a@example.com\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n",
        );
        for _ in 0..150 {
            many.push_str("--B\r\nContent-Type: text/plain\r\n\r\nx\r\n");
        }
        many.push_str("--B--\r\n");
        assert!(matches!(
            parse(many.as_bytes(), &Limits::default()),
            Err(InboundError::TooComplex(_))
        ));
        assert_eq!(
            parse(b"Subject: no sender\r\n\r\nx", &Limits::default()),
            Err(InboundError::NoSender)
        );
        assert!(parse(b"", &Limits::default()).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// The parser entry point never panics, whatever the bytes.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
            let _ = parse(&bytes, &Limits::default());
        }

        /// Nor do mutations of a real message.
        #[test]
        fn mutated_messages_never_panic(pos in 0usize..200, byte in any::<u8>(), cut in 0usize..200) {
            let mut raw = PLAIN.as_bytes().to_vec();
            let p = pos % raw.len();
            raw[p] = byte;
            raw.truncate(raw.len() - (cut % raw.len()));
            let _ = parse(&raw, &Limits::default());
        }
    }
}
