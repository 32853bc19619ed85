//! The JSON response body of incident lists and single incidents (create,
//! get, update, transition; `routes::incidents::with_etag`), written by
//! hand ([`WriteJson`]) rather than through serde: the same bytes as
//! `web::Json` writes, which a test checks field by field against
//! serde_json's output.
//!
//! A list page of 50 incidents is about 56 KB of JSON, and through serde
//! it was 30 % of a PostgreSQL list page's instructions: every key was
//! escaped as a string at run time (12 %), every value went through
//! serde's state machine. Here each key, with its quotes, colon and comma,
//! is one constant copied into the body; strings are escaped by sonic-rs's
//! SIMD escaping (serde_json's byte-at-a-time loop was 12 % of a page;
//! bench/RESULTS.md, ninth session), integers by `itoa`, timestamps by
//! `keel_core::time`'s digit writer.

use actix_web::body::BoxBody;
use actix_web::{HttpRequest, HttpResponse, Responder};
use chrono::{DateTime, Utc};
use keel_incident::{Action, HoldReason, ResolutionCode, State};
use keel_sla::{TargetKind, TimerState, TimerStatus};
use keel_store::directory::{GroupRef, UserRef};
use keel_store::incidents::IncidentView;
use keel_store::sla::SlaTimerView;
use sonic_rs::format::Formatter as _;
use uuid::Uuid;

use crate::dto::{GroupSummary, Incident, Page, SlaTarget, UserSummary};

/// About how many bytes of JSON one incident takes (a seeded one, with a
/// paragraph of description, takes 1.1 KB; SLA targets add some), so that
/// a body's buffer is allocated once instead of grown, and copied, as it
/// fills: a 56 KB page grown from a small buffer was copied a dozen times
/// on the way (9 % of a PostgreSQL list page's instructions;
/// bench/RESULTS.md, thirteenth session).
pub const INCIDENT_JSON_BYTES: usize = 1536;

/// A value that writes itself as JSON, exactly as its `Serialize` would
/// through serde_json.
pub trait WriteJson {
    fn write_json(&self, out: &mut Vec<u8>);
}

/// `value` as JSON, in a buffer of `capacity` bytes to start with (a
/// hint: a larger body still fits).
pub fn to_json<T: WriteJson + ?Sized>(value: &T, capacity: usize) -> Vec<u8> {
    let mut body = Vec::with_capacity(capacity);
    value.write_json(&mut body);
    body
}

/// A `200 OK` with `T` as its JSON body, which takes about `.1` bytes.
#[derive(Debug)]
pub struct Reply<T>(pub T, pub usize);

impl<T: WriteJson> Responder for Reply<T> {
    type Body = BoxBody;

    fn respond_to(self, _req: &HttpRequest) -> HttpResponse {
        HttpResponse::Ok()
            .content_type(mime::APPLICATION_JSON)
            .body(to_json(&self.0, self.1))
    }
}

/// Writes a struct's fields as a JSON object, in the order given, each
/// named as its field (none of these views renames one). The fields are
/// destructured, so a field added to the struct and not listed here does
/// not compile; the order is serde's, which the tests check.
macro_rules! write_object {
    ($ty:ident { $first:ident $(, $field:ident)* $(,)? }) => {
        impl WriteJson for $ty {
            fn write_json(&self, out: &mut Vec<u8>) {
                let $ty { $first $(, $field)* } = self;
                out.extend_from_slice(concat!("{\"", stringify!($first), "\":").as_bytes());
                $first.write_json(out);
                $(
                    out.extend_from_slice(concat!(",\"", stringify!($field), "\":").as_bytes());
                    $field.write_json(out);
                )*
                out.push(b'}');
            }
        }
    };
}

/// Calls `$then!` with an incident's fields after `id` and `number`, in
/// the order they are written: [`Incident`] and [`IncidentView`] are
/// written from this one list.
macro_rules! incident_fields {
    ($then:ident) => {
        $then!(
            title,
            description,
            impact,
            urgency,
            priority,
            priority_overridden,
            category,
            major,
            state,
            hold_reason,
            resolution_code,
            resolution_notes,
            requester,
            assignment_group,
            assignee,
            reassignment_count,
            version,
            created_at,
            updated_at,
            first_response_at,
            resolved_at,
            closed_at,
            cancelled_at,
            actions,
            sla,
        );
    };
}

macro_rules! write_incident {
    ($($field:ident),* $(,)?) => {
        write_object!(Incident { id, number, $($field),* });
    };
}

incident_fields!(write_incident);

write_object!(UserSummary {
    id,
    username,
    display_name
});

write_object!(GroupSummary { id, name });

write_object!(SlaTarget {
    kind,
    due_at,
    elapsed_secs,
    remaining_secs,
    state,
    percent,
    target_secs,
    breached_at,
    policy_id,
});

/// Writes `,"field":value` for each field named, in the order given.
macro_rules! write_fields {
    ($out:ident; $($field:ident),* $(,)?) => {
        $(
            $out.extend_from_slice(concat!(",\"", stringify!($field), "\":").as_bytes());
            $field.write_json($out);
        )*
    };
}

/// An incident's view, written as the [`Incident`] made from it is (the
/// same fields in the same order, the same bytes; a test holds them
/// equal), without making that `Incident` first: for a page of 50 that
/// moved every field of every incident once more and built each number's
/// text, 3 % of a PostgreSQL queue page's instructions (bench/RESULTS.md,
/// thirty-first session).
macro_rules! write_view {
    ($($field:ident),* $(,)?) => {
        impl WriteJson for IncidentView {
            fn write_json(&self, out: &mut Vec<u8>) {
                let IncidentView { id, number, $($field),* } = self;
                out.extend_from_slice(b"{\"id\":");
                id.0.write_json(out);
                // A prefix and digits: nothing to escape.
                out.extend_from_slice(b",\"number\":\"");
                number.write_text(out);
                out.push(b'"');
                write_fields!(out; $($field),*);
                out.push(b'}');
            }
        }
    };
}

incident_fields!(write_view);

/// As [`UserSummary`].
impl WriteJson for UserRef {
    fn write_json(&self, out: &mut Vec<u8>) {
        let UserRef {
            id,
            username,
            display_name,
        } = self;
        out.extend_from_slice(b"{\"id\":");
        id.0.write_json(out);
        write_fields!(out; username, display_name);
        out.push(b'}');
    }
}

/// As [`GroupSummary`].
impl WriteJson for GroupRef {
    fn write_json(&self, out: &mut Vec<u8>) {
        let GroupRef { id, name } = self;
        out.extend_from_slice(b"{\"id\":");
        id.0.write_json(out);
        write_fields!(out; name);
        out.push(b'}');
    }
}

/// As [`SlaTarget`].
impl WriteJson for SlaTimerView {
    fn write_json(&self, out: &mut Vec<u8>) {
        let SlaTimerView {
            kind,
            policy_id,
            target_secs,
            status,
            breached_at,
        } = self;
        let TimerStatus {
            due_at,
            elapsed_secs,
            remaining_secs,
            state,
            percent,
        } = status;
        out.extend_from_slice(b"{\"kind\":");
        kind.write_json(out);
        write_fields!(
            out;
            due_at,
            elapsed_secs,
            remaining_secs,
            state,
            percent,
            target_secs,
            breached_at,
            policy_id,
        );
        out.push(b'}');
    }
}

/// A page of incidents' views, written as the `Page<Incident>` made from
/// it is.
#[derive(Debug)]
pub struct IncidentPage(pub keel_store::directory::Page<IncidentView>);

impl WriteJson for IncidentPage {
    fn write_json(&self, out: &mut Vec<u8>) {
        let keel_store::directory::Page { items, next } = &self.0;
        out.extend_from_slice(b"{\"items\":");
        items.write_json(out);
        out.extend_from_slice(b",\"next\":");
        next.write_json(out);
        out.push(b'}');
    }
}

impl<T: WriteJson + utoipa::ToSchema> WriteJson for Page<T> {
    fn write_json(&self, out: &mut Vec<u8>) {
        let Page { items, next } = self;
        out.extend_from_slice(b"{\"items\":");
        items.write_json(out);
        out.extend_from_slice(b",\"next\":");
        next.write_json(out);
        out.push(b'}');
    }
}

impl<T: WriteJson + ?Sized> WriteJson for &T {
    fn write_json(&self, out: &mut Vec<u8>) {
        (**self).write_json(out);
    }
}

impl WriteJson for str {
    fn write_json(&self, out: &mut Vec<u8>) {
        let start = out.len();
        if sonic_rs::format::CompactFormatter
            .write_string_fast(out, self, true)
            .is_err()
        {
            // Writing to a `Vec` does not fail; were it to, serde_json's
            // escaping writes the same string.
            out.truncate(start);
            if serde_json::to_writer(&mut *out, self).is_err() {
                out.truncate(start);
                out.extend_from_slice(b"null");
            }
        }
    }
}

impl WriteJson for String {
    fn write_json(&self, out: &mut Vec<u8>) {
        self.as_str().write_json(out);
    }
}

impl WriteJson for Uuid {
    fn write_json(&self, out: &mut Vec<u8>) {
        let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
        out.push(b'"');
        out.extend_from_slice(self.hyphenated().encode_lower(&mut buf).as_bytes());
        out.push(b'"');
    }
}

impl WriteJson for DateTime<Utc> {
    fn write_json(&self, out: &mut Vec<u8>) {
        let mut buf = [0u8; 30];
        match keel_core::time::write_rfc3339(self, &mut buf).and_then(|n| buf.get(..n)) {
            Some(text) => {
                out.push(b'"');
                out.extend_from_slice(text);
                out.push(b'"');
            }
            // Years beyond four digits and leap seconds: chrono's own.
            None => {
                let start = out.len();
                if serde_json::to_writer(&mut *out, self).is_err() {
                    out.truncate(start);
                    out.extend_from_slice(b"null");
                }
            }
        }
    }
}

impl WriteJson for bool {
    fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(if *self { b"true" } else { b"false" });
    }
}

macro_rules! write_integer {
    ($($ty:ty),+) => {$(
        impl WriteJson for $ty {
            fn write_json(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(itoa::Buffer::new().format(*self).as_bytes());
            }
        }
    )+};
}

write_integer!(u8, u32, i32, i64);

/// Fieldless enums, written as their snake_case names (plain ASCII
/// letters and underscores: nothing to escape).
macro_rules! write_name {
    ($($ty:ty),+) => {$(
        impl WriteJson for $ty {
            fn write_json(&self, out: &mut Vec<u8>) {
                out.push(b'"');
                out.extend_from_slice(self.as_str().as_bytes());
                out.push(b'"');
            }
        }
    )+};
}

write_name!(
    State,
    HoldReason,
    ResolutionCode,
    Action,
    TargetKind,
    TimerState
);

impl<T: WriteJson> WriteJson for Option<T> {
    fn write_json(&self, out: &mut Vec<u8>) {
        match self {
            Some(v) => v.write_json(out),
            None => out.extend_from_slice(b"null"),
        }
    }
}

impl<T: WriteJson> WriteJson for Vec<T> {
    fn write_json(&self, out: &mut Vec<u8>) {
        out.push(b'[');
        for (i, v) in self.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            v.write_json(out);
        }
        out.push(b']');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::MessageBody;
    use actix_web::test::TestRequest;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn ts(secs: i64, nanos: u32) -> DateTime<Utc> {
        Utc.timestamp_opt(secs, nanos)
            .single()
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    }

    fn user(name: &str) -> UserSummary {
        UserSummary {
            id: Uuid::from_u128(0x0193_6f1e_8c2a_7cc0_9a56_0f5b_7e0c_1d40),
            username: name.to_owned(),
            display_name: format!("{name} \"the\" \\ admin\u{1}"),
        }
    }

    fn target(kind: TargetKind, state: TimerState, t: Option<DateTime<Utc>>) -> SlaTarget {
        SlaTarget {
            kind,
            due_at: t,
            elapsed_secs: 300,
            remaining_secs: -14_100,
            state,
            percent: 102,
            target_secs: i64::MAX,
            breached_at: t,
            policy_id: t.map(|_| Uuid::nil()),
        }
    }

    /// An incident with every optional field empty.
    fn bare() -> Incident {
        Incident {
            id: Uuid::max(),
            number: "INC0000001".into(),
            title: String::new(),
            description: String::new(),
            impact: 0,
            urgency: u8::MAX,
            priority: 5,
            priority_overridden: false,
            category: None,
            major: false,
            state: State::New,
            hold_reason: None,
            resolution_code: None,
            resolution_notes: None,
            requester: user("r"),
            assignment_group: None,
            assignee: None,
            reassignment_count: i32::MIN,
            version: i64::MIN,
            created_at: ts(0, 0),
            updated_at: ts(1, 1),
            first_response_at: None,
            resolved_at: None,
            closed_at: None,
            cancelled_at: None,
            actions: Vec::new(),
            sla: Vec::new(),
        }
    }

    /// An incident with every optional field set, strings needing every
    /// kind of escape, and timestamps of each precision (and one chrono
    /// writes itself, beyond year 9999).
    fn full() -> Incident {
        Incident {
            title: "Quotes \" and \\ backslashes,\n a tab\t, a bell \u{7}, \u{2028} and ünïcödé"
                .into(),
            description: "</script> \u{1f} \u{7f} 🎉 ".repeat(40),
            category: Some("network/vpn".into()),
            major: true,
            priority_overridden: true,
            state: State::Resolved,
            hold_reason: Some(HoldReason::AwaitingChange),
            resolution_code: Some(ResolutionCode::SolvedWorkaround),
            resolution_notes: Some(String::new()),
            assignment_group: Some(GroupSummary {
                id: Uuid::nil(),
                name: "Service desk — L2".into(),
            }),
            assignee: Some(user("ünï")),
            reassignment_count: 3,
            version: i64::MAX,
            created_at: ts(1_764_000_000, 123_000_000),
            updated_at: ts(1_764_000_000, 123_456_000),
            first_response_at: Some(ts(1_764_000_000, 123_456_789)),
            resolved_at: Some(ts(253_402_300_800, 0)),
            closed_at: Some(ts(-62_135_596_800, 0)),
            cancelled_at: Some(ts(1_764_000_059, 999_999_999)),
            actions: Action::ALL.to_vec(),
            sla: TargetKind::ALL
                .into_iter()
                .zip([TimerState::InProgress, TimerState::Paused, TimerState::Met])
                .map(|(k, s)| target(k, s, Some(ts(1_764_000_000, 0))))
                .chain([target(TargetKind::Resolution, TimerState::Breached, None)])
                .collect(),
            ..bare()
        }
    }

    fn serde(v: &impl serde::Serialize) -> String {
        serde_json::to_string(v).unwrap_or_default()
    }

    fn ours(v: &impl WriteJson) -> String {
        String::from_utf8(to_json(v, 0)).unwrap_or_default()
    }

    #[test]
    fn an_incident_is_written_as_serde_json_writes_it() {
        for inc in [bare(), full()] {
            assert_eq!(ours(&inc), serde(&inc));
        }
        for state in State::ALL {
            let inc = Incident { state, ..bare() };
            assert_eq!(ours(&inc), serde(&inc));
        }
        for hold in HoldReason::ALL {
            let inc = Incident {
                hold_reason: Some(hold),
                ..bare()
            };
            assert_eq!(ours(&inc), serde(&inc));
        }
        for code in ResolutionCode::ALL {
            let inc = Incident {
                resolution_code: Some(code),
                ..bare()
            };
            assert_eq!(ours(&inc), serde(&inc));
        }
    }

    #[test]
    fn a_page_is_written_as_serde_json_writes_it_and_served_as_json() {
        let req = TestRequest::default().to_http_request();
        for page in [
            Page::all(Vec::new()),
            Page {
                items: vec![bare(), full(), bare()],
                next: Some("eyJ2IjoiMjAyNiJ9".into()),
            },
        ] {
            let expected = serde(&page);
            assert_eq!(ours(&page), expected);
            // The size hint is only where the buffer starts: too small,
            // nothing, or roomy, the body is the same.
            for hint in [0, 8, 1 << 16] {
                let resp = Reply(&page, hint).respond_to(&req);
                assert_eq!(resp.status(), actix_web::http::StatusCode::OK);
                assert_eq!(
                    resp.headers().get("content-type").map(|v| v.as_bytes()),
                    Some(&b"application/json"[..])
                );
                let body = resp.into_body().try_into_bytes().unwrap_or_default();
                assert_eq!(body.as_ref(), expected.as_bytes(), "hint {hint}");
            }
        }
    }

    proptest! {
        #[test]
        fn any_text_numbers_and_times_are_written_as_serde_json_writes_them(
            title in any::<String>(),
            name in any::<String>(),
            notes in proptest::option::of(any::<String>()),
            version in any::<i64>(),
            count in any::<i32>(),
            secs in -62_135_596_800i64..400_000_000_000,
            nanos in prop_oneof![Just(0u32), 0u32..1_000_000_000],
        ) {
            let inc = Incident {
                title,
                resolution_notes: notes,
                assignee: Some(user(&name)),
                version,
                reassignment_count: count,
                created_at: ts(secs, nanos),
                sla: vec![target(TargetKind::NextUpdate, TimerState::Met, Some(ts(secs, nanos)))],
                ..full()
            };
            prop_assert_eq!(ours(&inc), serde(&inc));
        }
    }

    fn user_ref(name: &str) -> UserRef {
        let u = user(name);
        UserRef {
            id: keel_core::UserId(u.id),
            username: u.username,
            display_name: u.display_name,
        }
    }

    fn timer_view(kind: TargetKind, state: TimerState, t: Option<DateTime<Utc>>) -> SlaTimerView {
        let s = target(kind, state, t);
        SlaTimerView {
            kind: s.kind,
            policy_id: s.policy_id,
            target_secs: s.target_secs,
            status: TimerStatus {
                due_at: s.due_at,
                elapsed_secs: s.elapsed_secs,
                remaining_secs: s.remaining_secs,
                state: s.state,
                percent: s.percent,
            },
            breached_at: s.breached_at,
        }
    }

    /// The view of [`bare`].
    fn bare_view() -> IncidentView {
        IncidentView {
            id: keel_core::IncidentId(Uuid::max()),
            number: keel_core::RecordNumber::new(keel_core::RecordKind::Incident, 1),
            title: String::new(),
            description: String::new(),
            impact: 0,
            urgency: u8::MAX,
            priority: 5,
            priority_overridden: false,
            category: None,
            major: false,
            state: State::New,
            hold_reason: None,
            resolution_code: None,
            resolution_notes: None,
            requester: user_ref("r"),
            assignment_group: None,
            assignee: None,
            reassignment_count: i32::MIN,
            version: i64::MIN,
            created_at: ts(0, 0),
            updated_at: ts(1, 1),
            first_response_at: None,
            resolved_at: None,
            closed_at: None,
            cancelled_at: None,
            actions: Vec::new(),
            sla: Vec::new(),
        }
    }

    /// The view of [`full`].
    fn full_view() -> IncidentView {
        let f = full();
        IncidentView {
            number: keel_core::RecordNumber::new(keel_core::RecordKind::Incident, 12_345_678),
            title: f.title,
            description: f.description,
            category: f.category,
            major: true,
            priority_overridden: true,
            state: f.state,
            hold_reason: f.hold_reason,
            resolution_code: f.resolution_code,
            resolution_notes: f.resolution_notes,
            assignment_group: Some(GroupRef {
                id: keel_core::GroupId(Uuid::nil()),
                name: "Service desk — L2".into(),
            }),
            assignee: Some(user_ref("ünï")),
            reassignment_count: f.reassignment_count,
            version: f.version,
            created_at: f.created_at,
            updated_at: f.updated_at,
            first_response_at: f.first_response_at,
            resolved_at: f.resolved_at,
            closed_at: f.closed_at,
            cancelled_at: f.cancelled_at,
            actions: f.actions,
            sla: TargetKind::ALL
                .into_iter()
                .zip([TimerState::InProgress, TimerState::Paused, TimerState::Met])
                .map(|(k, s)| timer_view(k, s, Some(ts(1_764_000_000, 0))))
                .chain([timer_view(
                    TargetKind::Resolution,
                    TimerState::Breached,
                    None,
                )])
                .collect(),
            ..bare_view()
        }
    }

    /// What the API answered before views were written directly: the
    /// `Incident` made from the view, through serde.
    fn as_dto(view: &IncidentView) -> String {
        serde(&Incident::from(view.clone()))
    }

    #[test]
    fn an_incidents_view_is_written_as_the_incident_made_from_it_is() {
        assert_eq!(
            as_dto(&full_view()),
            serde(&full()).replace("INC0000001", "INC12345678")
        );
        for view in [bare_view(), full_view()] {
            assert_eq!(ours(&view), as_dto(&view));
        }
        for state in State::ALL {
            for hold in HoldReason::ALL.into_iter().map(Some).chain([None]) {
                let view = IncidentView {
                    state,
                    hold_reason: hold,
                    ..full_view()
                };
                assert_eq!(ours(&view), as_dto(&view));
            }
        }
        for code in ResolutionCode::ALL {
            let view = IncidentView {
                resolution_code: Some(code),
                ..bare_view()
            };
            assert_eq!(ours(&view), as_dto(&view));
        }
        for seq in [0, 42, 9_999_999, 10_000_000, i64::MAX, -7] {
            let view = IncidentView {
                number: keel_core::RecordNumber::new(keel_core::RecordKind::Incident, seq),
                ..bare_view()
            };
            assert_eq!(ours(&view), as_dto(&view), "{seq}");
        }
    }

    #[test]
    fn a_page_of_views_is_written_as_the_page_of_incidents_made_from_it_is() {
        for (items, next) in [
            (Vec::new(), None),
            (
                vec![bare_view(), full_view(), bare_view()],
                Some("eyJ2IjoiMjAyNiJ9".to_owned()),
            ),
        ] {
            let dto = Page {
                items: items.iter().cloned().map(Incident::from).collect(),
                next: next.clone(),
            };
            let page = IncidentPage(keel_store::directory::Page { items, next });
            assert_eq!(ours(&page), serde(&dto));
        }
    }

    proptest! {
        #[test]
        fn any_text_numbers_and_times_of_a_view_are_written_as_its_incident_is(
            title in any::<String>(),
            name in any::<String>(),
            notes in proptest::option::of(any::<String>()),
            seq in any::<i64>(),
            version in any::<i64>(),
            secs in -62_135_596_800i64..400_000_000_000,
            nanos in prop_oneof![Just(0u32), 0u32..1_000_000_000],
        ) {
            let view = IncidentView {
                title,
                number: keel_core::RecordNumber::new(keel_core::RecordKind::Incident, seq),
                resolution_notes: notes,
                assignee: Some(user_ref(&name)),
                version,
                created_at: ts(secs, nanos),
                sla: vec![timer_view(TargetKind::NextUpdate, TimerState::Met, Some(ts(secs, nanos)))],
                ..full_view()
            };
            prop_assert_eq!(ours(&view), as_dto(&view));
        }
    }
}
