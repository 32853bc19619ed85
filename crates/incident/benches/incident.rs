//! Micro-benchmarks of the incident rules that run on every write: priority
//! from impact × urgency, the lifecycle's `apply`, and text validation.
//!
//! Run with `cargo bench -p keel-incident`; see bench/RESULTS.md.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use keel_incident::{
    Action, ActorRelation, Description, HoldReason, PriorityMatrix, ResolutionCode, State, Title,
    TransitionInput, apply,
};

/// Raw impact and urgency (as a client sends them) to a priority: the two
/// range checks and the table lookup, as the store does on create and update.
fn priority_from_raw(m: &PriorityMatrix, impact: i64, urgency: i64) -> u8 {
    m.priority(m.impact(impact).unwrap(), m.urgency(urgency).unwrap())
        .get()
}

fn priority(c: &mut Criterion) {
    let three = PriorityMatrix::default();
    let four = PriorityMatrix::four_level();
    assert_eq!(priority_from_raw(&three, 2, 3), 4);
    assert_eq!(priority_from_raw(&four, 3, 2), 4);

    let mut g = c.benchmark_group("priority");
    g.bench_function("default_3x3", |b| {
        b.iter(|| priority_from_raw(black_box(&three), black_box(2), black_box(3)))
    });
    g.bench_function("four_level_4x4", |b| {
        b.iter(|| priority_from_raw(black_box(&four), black_box(3), black_box(2)))
    });
    // Every cell of the 4×4 matrix once: 16 lookups per iteration.
    g.bench_function("four_level_all_16_cells", |b| {
        b.iter(|| {
            let m = black_box(&four);
            let mut sum = 0u32;
            for i in 1..=4 {
                for u in 1..=4 {
                    sum += u32::from(priority_from_raw(m, black_box(i), black_box(u)));
                }
            }
            sum
        })
    });
    g.finish();
}

fn agent(has_assignee: bool) -> TransitionInput {
    TransitionInput {
        has_assignee,
        ..TransitionInput::new(ActorRelation::Agent)
    }
}

fn state_machine(c: &mut Criterion) {
    let hold = TransitionInput {
        hold_reason: Some(HoldReason::AwaitingRequester),
        ..agent(true)
    };
    let resolve = TransitionInput {
        resolution_code: Some(ResolutionCode::SolvedWorkaround),
        resolution_notes: Some(
            "  Restarted the print spooler on PRN-04 and cleared the stuck queue.\n\
             The requester confirmed a test page printed.  "
                .into(),
        ),
        ..agent(true)
    };
    let requester = TransitionInput::new(ActorRelation::Requester);

    // (name, from, action, input, accepted)
    let cases: [(&str, State, Action, &TransitionInput, bool); 9] = [
        (
            "start_new_unassigned",
            State::New,
            Action::Start,
            &agent(false),
            true,
        ),
        (
            "hold_in_progress",
            State::InProgress,
            Action::Hold,
            &hold,
            true,
        ),
        (
            "resume_on_hold",
            State::OnHold,
            Action::Resume,
            &agent(true),
            true,
        ),
        (
            "resolve_with_notes",
            State::InProgress,
            Action::Resolve,
            &resolve,
            true,
        ),
        (
            "reopen_by_requester",
            State::Resolved,
            Action::Reopen,
            &requester,
            true,
        ),
        (
            "close_by_requester",
            State::Resolved,
            Action::Close,
            &requester,
            true,
        ),
        (
            "cancel_new_by_requester",
            State::New,
            Action::Cancel,
            &requester,
            true,
        ),
        (
            "refused_invalid_closed_start",
            State::Closed,
            Action::Start,
            &agent(true),
            false,
        ),
        (
            "refused_not_permitted",
            State::InProgress,
            Action::Resolve,
            &requester,
            false,
        ),
    ];

    let mut g = c.benchmark_group("state_apply");
    for (name, from, action, input, accepted) in cases {
        assert_eq!(apply(from, action, input).is_ok(), accepted, "{name}");
        g.bench_function(name, |b| {
            b.iter(|| apply(black_box(from), black_box(action), black_box(input)))
        });
    }
    g.finish();
}

fn fields(c: &mut Criterion) {
    let title = "  Printer on floor 3 jams on every duplex job since Monday  ";
    let title_max = "é".repeat(Title::MAX_CHARS);
    let paragraph = "Since the driver update on Monday the printer on floor 3 \
        (PRN-04) jams on every duplex job.\n\tSingle-sided jobs print fine. \
        Restarting the spooler did not help.\n";
    let description = paragraph.repeat(6); // about 1 KB, many lines
    let description_max = "x".repeat(Description::MAX_CHARS);
    assert!(Title::parse(title).is_ok());
    assert!(Title::parse(&title_max).is_ok());
    assert!(Description::parse(&description).is_ok());
    assert!(Description::parse(&description_max).is_ok());

    let mut g = c.benchmark_group("validate");
    g.bench_function("title_60_chars", |b| {
        b.iter(|| Title::parse(black_box(title)))
    });
    g.bench_function("title_200_chars_max", |b| {
        b.iter(|| Title::parse(black_box(&title_max)))
    });
    g.bench_function("description_1kb", |b| {
        b.iter(|| Description::parse(black_box(&description)))
    });
    g.bench_function("description_20k_chars_max", |b| {
        b.iter(|| Description::parse(black_box(&description_max)))
    });
    g.finish();
}

criterion_group!(benches, priority, state_machine, fields);
criterion_main!(benches);
