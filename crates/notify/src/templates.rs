//! Message templates: a subject, a text body and an HTML body per event,
//! with `{{name}}` placeholders filled from the outbox row's context.
//!
//! Substitution is a single pass over the template: a value is inserted as
//! text and never read again as template syntax, so a comment containing
//! `{{title}}` prints as written. HTML bodies get values HTML-escaped;
//! subjects lose line breaks (no header injection).

use std::collections::HashMap;
use std::path::Path;

use serde_json::Value;

/// One event's templates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// A rendered message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// Every event's templates.
#[derive(Debug, Clone)]
pub struct Templates {
    by_event: HashMap<String, Template>,
}

fn t(subject: &str, text: &str, html: &str) -> Template {
    Template {
        subject: subject.into(),
        text: text.into(),
        html: html.into(),
    }
}

const FOOTER_TEXT: &str =
    "\n\n-- \nKeel service desk. Reply to this message to add a comment to {{number}}.";
const FOOTER_HTML: &str = "<hr><p style=\"color:#666\">Keel service desk. Reply to this message to add a comment to {{number}}.</p>";

impl Templates {
    /// The built-in templates.
    pub fn builtin() -> Templates {
        let mut m = HashMap::new();
        m.insert("incident.created".into(), t(
            "[{{number}}] {{title}}",
            "We have received your incident {{number}}: {{title}}.\nPriority: P{{priority}}.",
            "<p>We have received your incident <b>{{number}}</b>: {{title}}.</p><p>Priority: P{{priority}}.</p>",
        ));
        m.insert("incident.assigned".into(), t(
            "[{{number}}] Assigned: {{title}}",
            "{{actor}} assigned incident {{number}} to you or your group: {{title}}.\nPriority: P{{priority}}. State: {{state}}.",
            "<p>{{actor}} assigned incident <b>{{number}}</b> to you or your group: {{title}}.</p><p>Priority: P{{priority}}. State: {{state}}.</p>",
        ));
        m.insert("incident.commented".into(), t(
            "[{{number}}] {{title}}",
            "{{actor}} wrote on {{number}}:\n\n{{comment}}",
            "<p>{{actor}} wrote on <b>{{number}}</b>:</p><blockquote style=\"white-space:pre-wrap\">{{comment}}</blockquote>",
        ));
        m.insert("incident.transitioned".into(), t(
            "[{{number}}] Now {{state}}: {{title}}",
            "{{actor}} moved {{number}} from {{previous_state}} to {{state}}.\n{{hold_reason}}{{resolution_code}}\n{{resolution_notes}}",
            "<p>{{actor}} moved <b>{{number}}</b> from {{previous_state}} to <b>{{state}}</b>.</p><p>{{hold_reason}}{{resolution_code}}</p><p style=\"white-space:pre-wrap\">{{resolution_notes}}</p>",
        ));
        m.insert("sla.warning".into(), t(
            "[{{number}}] SLA warning ({{percent}}% of {{target}}): {{title}}",
            "The {{target}} target of {{number}} is {{percent}}% used; it is due at {{due_at}}.",
            "<p>The {{target}} target of <b>{{number}}</b> is {{percent}}% used; it is due at {{due_at}}.</p>",
        ));
        m.insert("sla.breached".into(), t(
            "[{{number}}] SLA BREACHED ({{target}}): {{title}}",
            "The {{target}} target of {{number}} was breached (due at {{due_at}}).",
            "<p>The {{target}} target of <b>{{number}}</b> was <b>breached</b> (due at {{due_at}}).</p>",
        ));
        for tpl in m.values_mut() {
            tpl.text.push_str(FOOTER_TEXT);
            tpl.html = format!(
                "<!doctype html><html><body>{}{FOOTER_HTML}</body></html>",
                tpl.html
            );
        }
        Templates { by_event: m }
    }

    /// The built-in templates, with any of `{event}.subject`, `{event}.txt`
    /// and `{event}.html` found in `dir` taking their place.
    pub fn with_overrides(dir: &Path) -> std::io::Result<Templates> {
        let mut out = Templates::builtin();
        for (event, tpl) in out.by_event.iter_mut() {
            for (ext, slot) in [
                ("subject", &mut tpl.subject),
                ("txt", &mut tpl.text),
                ("html", &mut tpl.html),
            ] {
                let path = dir.join(format!("{event}.{ext}"));
                match std::fs::read_to_string(&path) {
                    Ok(s) => {
                        *slot = if ext == "subject" {
                            s.trim().to_owned()
                        } else {
                            s
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(out)
    }

    /// Renders `event` with `context`; `None` for an unknown event.
    pub fn render(&self, event: &str, context: &Value) -> Option<Rendered> {
        let tpl = self.by_event.get(event)?;
        let subject: String = fill(&tpl.subject, context, Escape::None)
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .take(250)
            .collect();
        Some(Rendered {
            subject,
            text: fill(&tpl.text, context, Escape::None),
            html: fill(&tpl.html, context, Escape::Html),
        })
    }
}

#[derive(Clone, Copy)]
enum Escape {
    None,
    Html,
}

fn value_text(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// One pass: text outside `{{ }}` is copied, each placeholder is replaced by
/// its value, and inserted values are never scanned again.
fn fill(template: &str, context: &Value, escape: Escape) -> String {
    let mut out = String::with_capacity(template.len() + 64);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            out.push_str(&rest[start..]);
            return out;
        };
        let key = after[..end].trim();
        let raw = value_text(context.get(key));
        match escape {
            Escape::None => out.push_str(&raw),
            Escape::Html => out.push_str(&escape_html(&raw)),
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_fill_placeholders_once_and_html_is_escaped() {
        let t = Templates::builtin();
        let ctx = json!({"number": "INC0000007", "title": "Mail <down>", "actor": "Alice",
                         "comment": "See {{title}} & <script>alert(1)</script>"});
        let r = t.render("incident.commented", &ctx).unwrap();
        assert_eq!(r.subject, "[INC0000007] Mail <down>");
        assert!(
            r.text.contains("See {{title}} & <script>"),
            "values are not templates: {}",
            r.text
        );
        assert!(r.html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(!r.html.contains("<script>"));
        assert!(r.html.contains("See {{title}} &amp;"));
    }

    #[test]
    fn subjects_cannot_carry_header_breaks() {
        let t = Templates::builtin();
        let r = t
            .render(
                "incident.created",
                &json!({"number": "INC1", "title": "x\r\nBcc: evil@example.com"}),
            )
            .unwrap();
        assert!(
            !r.subject.contains('\n') && !r.subject.contains('\r'),
            "{:?}",
            r.subject
        );
    }

    #[test]
    fn unknown_events_and_missing_values_are_handled() {
        let t = Templates::builtin();
        assert!(t.render("nope", &json!({})).is_none());
        let r = t.render("incident.created", &json!({})).unwrap();
        assert_eq!(r.subject, "[] ");
        assert_eq!(fill("{{unclosed", &json!({}), Escape::None), "{{unclosed");
    }

    #[test]
    fn a_template_directory_overrides_single_parts() {
        let dir = std::env::temp_dir().join(format!("keel-tpl-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("incident.created.subject"),
            "Ticket {{number}} opened\n",
        )
        .unwrap();
        let t = Templates::with_overrides(&dir).unwrap();
        let r = t
            .render("incident.created", &json!({"number": "INC9", "title": "T"}))
            .unwrap();
        assert_eq!(r.subject, "Ticket INC9 opened");
        assert!(
            r.text.contains("We have received"),
            "other parts stay built in"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
