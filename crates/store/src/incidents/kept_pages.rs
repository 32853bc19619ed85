//! A list page's statement, kept per shape: its text and where each bound
//! value goes are learnt once per thread from sea-query, and later pages of
//! the same shape bind their own values to the kept text. Building the
//! statement with sea-query (its tree of expressions, the text, then the
//! tree's drop) was about 5 % of a PostgreSQL queue page's instructions
//! and 6 % of its CPU time, a hundred allocations a page
//! (bench/RESULTS.md, thirty-first session).
//!
//! How the places are learnt: the page's statement is built once more with
//! every value of the request replaced by a stand-in that names it
//! ([`Bind::Probe`]), so each value sea-query binds is either a stand-in
//! (the request's value goes there) or one the statement itself holds (a
//! state of a queue, the watchers' record type), kept as it is. A shape
//! ([`PageShape`]) is everything the text depends on besides those values.
//! Before a learnt statement is kept, it must give exactly the statement
//! sea-query built for the request at hand, values and all; the unit tests
//! check it against sea-query for every kind of filter, cursor and order,
//! with other values than those it was learnt from.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use keel_core::query::{Sort, SortDir};
use keel_core::time::Timestamp;
use keel_incident::State;
use sea_orm::{DatabaseBackend, Statement, Value};
use uuid::Uuid;

use super::IncidentSort;

/// A value of a list page's request, by what it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Arg {
    /// The requester whose incidents (and watched ones) a requester reads.
    ReachUser,
    /// The `n`th priority asked for.
    Priority(usize),
    Assignee,
    Group,
    Requester,
    Major,
    CreatedAfter,
    CreatedBefore,
    UpdatedAfter,
    UpdatedBefore,
    /// The cursor's value of the sort field.
    CursorValue,
    /// The cursor's number.
    CursorTie,
}

/// At most this many priorities have stand-ins of their own; a request
/// with more (the same ones named again and again) is built every time.
const MAX_PRIORITIES: i64 = 1 << 16;

/// Stand-ins are `BigInt`s from here on: no value a page's statement binds
/// by itself is one (its limits are unsigned, its texts are texts).
const STAND_IN: i64 = i64::MIN + 0x5EA1_0000;

impl Arg {
    fn code(self) -> i64 {
        match self {
            Arg::ReachUser => 0,
            Arg::Assignee => 1,
            Arg::Group => 2,
            Arg::Requester => 3,
            Arg::Major => 4,
            Arg::CreatedAfter => 5,
            Arg::CreatedBefore => 6,
            Arg::UpdatedAfter => 7,
            Arg::UpdatedBefore => 8,
            Arg::CursorValue => 9,
            Arg::CursorTie => 10,
            // `n` is at most a request's length.
            Arg::Priority(n) => 16_i64.saturating_add(i64::try_from(n).unwrap_or(i64::MAX)),
        }
    }

    fn of_code(code: i64) -> Option<Arg> {
        Some(match code {
            0 => Arg::ReachUser,
            1 => Arg::Assignee,
            2 => Arg::Group,
            3 => Arg::Requester,
            4 => Arg::Major,
            5 => Arg::CreatedAfter,
            6 => Arg::CreatedBefore,
            7 => Arg::UpdatedAfter,
            8 => Arg::UpdatedBefore,
            9 => Arg::CursorValue,
            10 => Arg::CursorTie,
            n if (16..16 + MAX_PRIORITIES).contains(&n) => {
                Arg::Priority(usize::try_from(n - 16).ok()?)
            }
            _ => return None,
        })
    }

    fn stand_in(self) -> Value {
        Value::BigInt(Some(STAND_IN.saturating_add(self.code())))
    }

    fn of_stand_in(v: &Value) -> Option<Arg> {
        match v {
            Value::BigInt(Some(x)) => Arg::of_code(x.checked_sub(STAND_IN)?),
            _ => None,
        }
    }
}

/// The values of a list page's request that its statement binds (every
/// filter but the states, which are part of its shape, and but full-text
/// terms and SLA conditions, whose pages are built every time).
#[derive(Clone, Debug, Default)]
pub(super) struct PageArgs {
    pub(super) reach_user: Option<Uuid>,
    pub(super) priorities: Vec<i32>,
    pub(super) assignee: Option<Option<Uuid>>,
    pub(super) group: Option<Option<Uuid>>,
    pub(super) requester: Option<Uuid>,
    pub(super) major: Option<bool>,
    pub(super) created_after: Option<Timestamp>,
    pub(super) created_before: Option<Timestamp>,
    pub(super) updated_after: Option<Timestamp>,
    pub(super) updated_before: Option<Timestamp>,
    /// The cursor's value of the sort field, and its number.
    pub(super) cursor: Option<(Value, i64)>,
}

impl PageArgs {
    /// `arg`'s value, as the statement binds it; `None` if the request has
    /// none.
    pub(super) fn value(&self, arg: Arg) -> Option<Value> {
        Some(match arg {
            Arg::ReachUser => self.reach_user?.into(),
            Arg::Priority(n) => (*self.priorities.get(n)?).into(),
            Arg::Assignee => self.assignee.flatten()?.into(),
            Arg::Group => self.group.flatten()?.into(),
            Arg::Requester => self.requester?.into(),
            Arg::Major => self.major?.into(),
            Arg::CreatedAfter => self.created_after?.into(),
            Arg::CreatedBefore => self.created_before?.into(),
            Arg::UpdatedAfter => self.updated_after?.into(),
            Arg::UpdatedBefore => self.updated_before?.into(),
            Arg::CursorValue => self.cursor.as_ref()?.0.clone(),
            Arg::CursorTie => self.cursor.as_ref()?.1.into(),
        })
    }
}

/// How a page's statement takes the request's values: as they are, or as
/// stand-ins naming them, to learn where each goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Bind {
    Values,
    Probe,
}

impl Bind {
    /// What the statement binds for `arg`. Only asked for values the
    /// request has; were one missing, SQL's `NULL` (which no row matches)
    /// stands for it, and the kept statement would not match the built one.
    pub(super) fn val(self, args: &PageArgs, arg: Arg) -> Value {
        match self {
            Bind::Values => args.value(arg).unwrap_or(Value::BigInt(None)),
            Bind::Probe => arg.stand_in(),
        }
    }
}

/// Everything a page's statement text depends on besides its values.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct PageShape {
    postgres: bool,
    own: bool,
    priorities: usize,
    /// `None`: not filtered; `Some(false)`: unassigned; `Some(true)`: one.
    assignee: Option<bool>,
    group: Option<bool>,
    requester: bool,
    major: bool,
    bounds: [bool; 4],
    cursor: bool,
    states: Vec<State>,
    sort: (IncidentSort, SortDir),
    page: u64,
}

impl PageShape {
    pub(super) fn of(
        backend: DatabaseBackend,
        args: &PageArgs,
        states: &[State],
        sort: Sort<IncidentSort>,
        page: u64,
    ) -> PageShape {
        PageShape {
            postgres: backend == DatabaseBackend::Postgres,
            own: args.reach_user.is_some(),
            priorities: args.priorities.len(),
            assignee: args.assignee.map(|a| a.is_some()),
            group: args.group.map(|g| g.is_some()),
            requester: args.requester.is_some(),
            major: args.major.is_some(),
            bounds: [
                args.created_after.is_some(),
                args.created_before.is_some(),
                args.updated_after.is_some(),
                args.updated_before.is_some(),
            ],
            cursor: args.cursor.is_some(),
            states: states.to_vec(),
            sort: (sort.field, sort.dir),
            page,
        }
    }
}

/// Where a value goes: the request's, or one of the statement's own.
#[derive(Debug)]
enum Slot {
    Arg(Arg),
    Own(Value),
}

/// A page statement's text and its values' places.
#[derive(Debug)]
struct Template {
    backend: DatabaseBackend,
    sql: String,
    slots: Vec<Slot>,
}

impl Template {
    /// What `probe` (built with [`Bind::Probe`]) says of the statement.
    fn learn(probe: &Statement) -> Template {
        let values = probe.values.as_ref().map(|v| v.0.as_slice()).unwrap_or(&[]);
        Template {
            backend: probe.db_backend,
            sql: probe.sql.clone(),
            slots: values
                .iter()
                .map(|v| match Arg::of_stand_in(v) {
                    Some(arg) => Slot::Arg(arg),
                    None => Slot::Own(v.clone()),
                })
                .collect(),
        }
    }

    /// The statement with `args`' values; `None` if one it needs is
    /// missing.
    fn statement(&self, args: &PageArgs) -> Option<Statement> {
        let values = self
            .slots
            .iter()
            .map(|s| match s {
                Slot::Arg(arg) => args.value(*arg),
                Slot::Own(v) => Some(v.clone()),
            })
            .collect::<Option<Vec<Value>>>()?;
        Some(Statement::from_sql_and_values(
            self.backend,
            self.sql.as_str(),
            values,
        ))
    }
}

/// Shapes kept per thread, at most this many; then the thread starts
/// afresh. A desk asks for a few shapes (each queue view is one, whatever
/// its group or priorities).
const KEPT_SHAPES: usize = 256;

thread_local! {
    /// Per shape, its template, or `None` if what was learnt did not give
    /// the statement sea-query built (never seen; the shape is then built
    /// every time).
    static KEPT: RefCell<HashMap<PageShape, Option<Rc<Template>>>> = RefCell::new(HashMap::new());
}

/// The statement of `shape` for `args`: the kept one, or what `build`
/// makes (given [`Bind::Values`]), then learnt (from `build` given
/// [`Bind::Probe`]) and kept if the learnt statement gives the same.
pub(super) fn statement(
    shape: PageShape,
    args: &PageArgs,
    build: impl Fn(Bind) -> Statement,
) -> Statement {
    let kept = KEPT.with_borrow(|k| k.get(&shape).cloned());
    match kept {
        Some(Some(template)) => {
            if let Some(stmt) = template.statement(args) {
                return stmt;
            }
            build(Bind::Values)
        }
        Some(None) => build(Bind::Values),
        None => {
            let built = build(Bind::Values);
            let learnt = Template::learn(&build(Bind::Probe));
            let same = learnt.statement(args).as_ref() == Some(&built);
            if !same {
                tracing::warn!(sql = %built.sql, "a list page's statement could not be kept; it is built every time");
            }
            KEPT.with_borrow_mut(|k| {
                if k.len() >= KEPT_SHAPES {
                    k.clear();
                }
                k.insert(shape, same.then(|| Rc::new(learnt)));
            });
            built
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{page_condition, page_statement};
    use super::*;
    use chrono::TimeZone as _;

    /// A small deterministic generator (xorshift), so that a failure
    /// repeats.
    struct Dice(u64);

    impl Dice {
        fn roll(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }
    }

    fn build(
        backend: DatabaseBackend,
        args: &PageArgs,
        states: &[State],
        sort: Sort<IncidentSort>,
        bind: Bind,
    ) -> Statement {
        let cond = page_condition(args, bind);
        page_statement(backend, cond, args, bind, states, sort, 51, false)
    }

    const SORTS: [IncidentSort; 4] = [
        IncidentSort::CreatedAt,
        IncidentSort::UpdatedAt,
        IncidentSort::Priority,
        IncidentSort::Number,
    ];

    const STATES: [&[State]; 8] = [
        &[],
        &[State::New],
        &[State::InProgress, State::OnHold],
        &[State::New, State::InProgress, State::OnHold],
        &[State::OnHold, State::New],
        &[State::InProgress, State::InProgress],
        &[State::Closed],
        &[State::Resolved, State::Closed, State::New],
    ];

    /// Arguments of a request of one shape (what `shape` draws), with
    /// values that differ from one `seed` to the next.
    fn args_of(shape: &mut Dice, seed: u64, sort: IncidentSort) -> PageArgs {
        let uuid = |n: u64| Uuid::from_u128(u128::from(seed) << 64 | u128::from(n));
        let at = |n: u64| {
            chrono::Utc
                .timestamp_opt(
                    1_700_000_000 + i64::try_from(seed * 1000 + n).unwrap_or(0),
                    0,
                )
                .single()
        };
        let p = |n: u64| i32::try_from((seed + n) % 5 + 1).unwrap_or(1);
        let some = |d: &mut Dice| d.roll(2) == 1;
        let mut a = PageArgs::default();
        if some(shape) {
            a.reach_user = Some(uuid(1));
        }
        a.priorities = (0..shape.roll(4)).map(p).collect();
        a.assignee = match shape.roll(3) {
            0 => None,
            1 => Some(None),
            _ => Some(Some(uuid(2))),
        };
        a.group = match shape.roll(3) {
            0 => None,
            1 => Some(None),
            _ => Some(Some(uuid(3))),
        };
        a.requester = some(shape).then(|| uuid(4));
        a.major = some(shape).then_some(seed.is_multiple_of(2));
        a.created_after = some(shape).then(|| at(1)).flatten();
        a.created_before = some(shape).then(|| at(2)).flatten();
        a.updated_after = some(shape).then(|| at(3)).flatten();
        a.updated_before = some(shape).then(|| at(4)).flatten();
        if some(shape) {
            let tie = i64::try_from(seed * 7 + 3).unwrap_or(0);
            let value: Value = match sort {
                IncidentSort::CreatedAt | IncidentSort::UpdatedAt => at(5).into(),
                IncidentSort::Priority => p(9).into(),
                IncidentSort::Number => tie.into(),
            };
            a.cursor = Some((value, tie));
        }
        a
    }

    #[test]
    fn a_page_statement_learnt_from_stand_ins_binds_any_request_of_its_shape_as_sea_query_does() {
        let mut dice = Dice(0x9E37_79B9_7F4A_7C15);
        let mut checked = 0;
        for backend in [DatabaseBackend::Sqlite, DatabaseBackend::Postgres] {
            for states in STATES {
                for field in SORTS {
                    for dir in [SortDir::Asc, SortDir::Desc] {
                        let sort = Sort { field, dir };
                        for _ in 0..12 {
                            let draw = dice.roll(u64::MAX);
                            let learnt = Template::learn(&build(
                                backend,
                                &args_of(&mut Dice(draw | 1), 1, field),
                                states,
                                sort,
                                Bind::Probe,
                            ));
                            for seed in [2, 3] {
                                let args = args_of(&mut Dice(draw | 1), seed, field);
                                let built = build(backend, &args, states, sort, Bind::Values);
                                assert_eq!(
                                    learnt.statement(&args).as_ref(),
                                    Some(&built),
                                    "{backend:?} {states:?} {sort:?} {args:?}"
                                );
                                checked += 1;
                            }
                        }
                    }
                }
            }
        }
        assert_eq!(checked, 2 * 8 * 4 * 2 * 12 * 2);
    }

    #[test]
    fn a_page_of_a_kept_shape_takes_the_kept_text_with_its_own_values() {
        let backend = DatabaseBackend::Postgres;
        let states = [State::InProgress, State::OnHold];
        let sort = Sort {
            field: IncidentSort::CreatedAt,
            dir: SortDir::Desc,
        };
        let group = |n: u128| PageArgs {
            priorities: vec![4, 5],
            group: Some(Some(Uuid::from_u128(n))),
            ..PageArgs::default()
        };
        let builds = std::cell::Cell::new(0);
        let counted = |args: &PageArgs| {
            let shape = PageShape::of(backend, args, &states, sort, 51);
            statement(shape, args, |bind| {
                builds.set(builds.get() + 1);
                build(backend, args, &states, sort, bind)
            })
        };
        let first = counted(&group(1));
        assert_eq!(builds.get(), 2, "a new shape is built, then learnt");
        assert_eq!(
            first,
            build(backend, &group(1), &states, sort, Bind::Values)
        );
        let second = counted(&group(2));
        assert_eq!(builds.get(), 2, "a kept shape is not built");
        assert_eq!(
            second,
            build(backend, &group(2), &states, sort, Bind::Values)
        );
        assert_ne!(first.values, second.values);
        // Another shape (one priority) is built and learnt in turn.
        let mut one = group(3);
        one.priorities = vec![5];
        let third = counted(&one);
        assert_eq!(builds.get(), 4);
        assert_eq!(third, build(backend, &one, &states, sort, Bind::Values));
    }

    #[test]
    fn stand_ins_name_their_arguments_and_nothing_else() {
        let args = [
            Arg::ReachUser,
            Arg::Assignee,
            Arg::Group,
            Arg::Requester,
            Arg::Major,
            Arg::CreatedAfter,
            Arg::CreatedBefore,
            Arg::UpdatedAfter,
            Arg::UpdatedBefore,
            Arg::CursorValue,
            Arg::CursorTie,
            Arg::Priority(0),
            Arg::Priority(7),
        ];
        for a in args {
            assert_eq!(Arg::of_stand_in(&a.stand_in()), Some(a));
        }
        for v in [
            Value::BigInt(Some(0)),
            Value::BigInt(Some(i64::MIN)),
            Value::BigInt(Some(STAND_IN + 11)),
            Value::BigInt(Some(STAND_IN + 16 + MAX_PRIORITIES)),
            Value::BigInt(Some(i64::MAX)),
            Value::BigInt(None),
            Value::BigUnsigned(Some(51)),
            Value::Int(Some(16)),
        ] {
            assert_eq!(Arg::of_stand_in(&v), None, "{v:?}");
        }
    }
}
