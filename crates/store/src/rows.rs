//! Entity rows read by position, for the hot reads (list pages and gets).
//!
//! sea-orm's derived decoder looks every column up by name in every row
//! and, for every NULL, formats a message naming the column only to drop
//! it; with a prefix it also formats each column's name. On a list page of
//! 50 incidents and their 100 SLA timers that was 14 % of the page's
//! instructions (bench/RESULTS.md, ninth session). Here the columns are
//! found by name once per result (from its first row) and then read by
//! position straight from sqlx, which decodes a NULL as `None` without a
//! message. A row from any other driver, or a result lacking a column,
//! goes to sea-orm's decoder as before.

use std::borrow::Cow;
use std::sync::Arc;

use sea_orm::sqlx::{self, Column as _, ColumnIndex, Row};
use sea_orm::{IdenStatic, Iterable};

/// Where each column of an entity is in a result's rows, by the column's
/// place in the entity's `Column` enum; found on the result's first row.
///
/// On PostgreSQL it also remembers that the columns' types were checked:
/// every row of a result has the types its `RowDescription` gave, so the
/// first row's decode checks each column's declared type against its
/// field (NULL or not), and the rows after it are decoded without the
/// check. sqlx checks every value of every row, which was 12 % of a
/// 50-incident page's instructions (bench/RESULTS.md, thirteenth
/// session). A caller that keeps positions from one result to the next
/// may keep the checked columns' type OIDs too ([`Positions::types`]):
/// a result with the same OIDs skips the check on its first row as well.
/// SQLite's types belong to values, not columns, so there every value is
/// still checked.
#[derive(Default)]
pub(crate) struct Positions {
    at: Option<Option<Arc<[usize]>>>,
    typed: bool,
    /// PostgreSQL: the type OIDs of every column of a result whose first
    /// row passed the check, in order ([`Positions::types`]).
    types: Option<Arc<[u32]>>,
    /// Made by [`Positions::known`]: the caller keeps what this result
    /// found for the next, so the types are worth taking down.
    kept: bool,
}

impl Positions {
    /// Positions found on an earlier result of the same statement text,
    /// whose columns are the same, in the same order. On PostgreSQL the
    /// column types are still checked on this result's first row, unless
    /// `types` are those of an earlier result whose check passed.
    pub(crate) fn known(at: Arc<[usize]>, types: Option<Arc<[u32]>>) -> Self {
        Positions {
            at: Some(Some(at)),
            typed: false,
            types,
            kept: true,
        }
    }

    /// The positions found so far, if every column was found.
    pub(crate) fn found(&self) -> Option<&Arc<[usize]>> {
        self.at.as_ref()?.as_ref()
    }

    /// PostgreSQL: the type OIDs of the columns of a result whose first
    /// row passed the type check, to hand to [`Positions::known`] for the
    /// next result of the same statement text. A result whose columns have
    /// the same OIDs, in the same order, would pass the same checks (a
    /// built-in type's compatibility depends on its OID alone), so its
    /// rows are decoded without them: on a get, the check of its one row's
    /// 27 columns was 12 % of Keel's instructions (bench/RESULTS.md,
    /// twenty-eighth session). A column without an OID (a type sqlx
    /// names but does not number) keeps every result checked.
    pub(crate) fn types(&self) -> Option<&Arc<[u32]>> {
        self.types.as_ref()
    }

    /// Whether `r`'s columns have the OIDs kept in `types`.
    fn same_types(&self, r: &sqlx::postgres::PgRow) -> bool {
        self.types.as_deref().is_some_and(|kept| {
            let cols = r.columns();
            cols.len() == kept.len()
                && cols
                    .iter()
                    .zip(kept)
                    .all(|(c, o)| c.type_info().oid().is_some_and(|x| x.0 == *o))
        })
    }

    /// Keeps `r`'s column OIDs after its row passed the type check, if
    /// the caller keeps them ([`Positions::known`]; a list page's result
    /// is not kept, and taking them cost it 0.7 % of its instructions).
    fn keep_types(&mut self, r: &sqlx::postgres::PgRow) {
        if self.kept && self.types.is_none() {
            self.types = r
                .columns()
                .iter()
                .map(|c| c.type_info().oid().map(|o| o.0))
                .collect::<Option<Vec<u32>>>()
                .map(Arc::from);
        }
    }

    /// The positions of `C`'s columns, named `{prefix}{column}`, in `row`'s
    /// result; `None` if one is missing.
    pub(crate) fn of<R, C>(&mut self, row: &R, prefix: &str) -> Option<&[usize]>
    where
        R: Row,
        for<'a> &'a str: ColumnIndex<R>,
        C: IdenStatic + Iterable,
    {
        self.at
            .get_or_insert_with(|| {
                C::iter()
                    .map(|c| {
                        let name: Cow<'_, str> = if prefix.is_empty() {
                            Cow::Borrowed(c.as_str())
                        } else {
                            Cow::Owned(format!("{prefix}{}", c.as_str()))
                        };
                        row.try_column(name.as_ref()).ok().map(|col| col.ordinal())
                    })
                    .collect::<Option<Vec<usize>>>()
                    .map(Arc::from)
            })
            .as_deref()
    }
}

/// Column `i` of a PostgreSQL row as `T`. Unless `typed` (an earlier row of
/// the same result passed), the column's declared type is checked first,
/// as sqlx's `try_get` checks a value's: a mismatch is an error, never a
/// misread. Decoding itself still checks lengths and UTF-8.
pub(crate) fn pg_get<'r, T>(
    r: &'r sqlx::postgres::PgRow,
    i: usize,
    typed: bool,
) -> Result<T, sqlx::Error>
where
    T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + 'static,
{
    use sqlx::TypeInfo as _;
    if !typed {
        let ty = r.try_column(i)?.type_info();
        if !ty.is_null() && !T::compatible(ty) {
            return Err(sqlx::Error::ColumnDecode {
                index: i.to_string(),
                source: format!(
                    "mismatched types; Rust type `{}` is not compatible with SQL type `{}`",
                    std::any::type_name::<T>(),
                    ty.name()
                )
                .into(),
            });
        }
    }
    // A timestamp is read by `pg_timestamp`. `Any` says whether `T` is one
    // (a comparison of type ids, settled when `T` is compiled), with no copy
    // and no `unsafe`.
    let mut out: Option<T> = None;
    let slot: &mut dyn std::any::Any = &mut out;
    if let Some(at) = slot.downcast_mut::<Option<chrono::DateTime<chrono::Utc>>>() {
        *at = pg_timestamp(r, i)?;
        return out.ok_or_else(|| decode_error(i, sqlx::error::UnexpectedNullError.into()));
    }
    if let Some(at) = slot.downcast_mut::<Option<Option<chrono::DateTime<chrono::Utc>>>>() {
        *at = Some(pg_timestamp(r, i)?);
        return out.ok_or_else(|| decode_error(i, sqlx::error::UnexpectedNullError.into()));
    }
    r.try_get_unchecked(i)
}

/// Microseconds from 1970-01-01 to 2000-01-01, PostgreSQL's epoch.
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// Column `i` of a PostgreSQL row, a `timestamptz` (or `timestamp`), as
/// sqlx decodes it into a `DateTime<Utc>`, but in one step: its binary
/// value is microseconds since 2000-01-01, and sqlx went through
/// `DateTime<FixedOffset>` and `NaiveDateTime` with a `Duration` added to
/// the epoch: about 200 instructions a timestamp, six timestamps an
/// incident, 4 % of a queue page's instructions, of which this saves 2.4 %
/// (bench/RESULTS.md, thirtieth session). A value sent as text (sqlx asks
/// for binary) goes to sqlx.
fn pg_timestamp(
    r: &sqlx::postgres::PgRow,
    i: usize,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, sqlx::Error> {
    use sqlx::ValueRef as _;
    let value = r.try_get_raw(i)?;
    if value.is_null() {
        return Ok(None);
    }
    if value.format() != sqlx::postgres::PgValueFormat::Binary {
        return <chrono::DateTime<chrono::Utc> as sqlx::Decode<'_, sqlx::Postgres>>::decode(value)
            .map(Some)
            .map_err(|e| decode_error(i, e));
    }
    let bytes = value.as_bytes().map_err(|e| decode_error(i, e))?;
    let micros = <[u8; 8]>::try_from(bytes)
        .map(i64::from_be_bytes)
        .map_err(|_| decode_error(i, "a timestamp is 8 bytes".into()))?;
    micros
        .checked_add(PG_EPOCH_MICROS)
        .and_then(chrono::DateTime::from_timestamp_micros)
        .map(Some)
        .ok_or_else(|| decode_error(i, "timestamp out of range".into()))
}

/// sqlx's error for a column whose value did not decode.
fn decode_error(i: usize, source: sqlx::error::BoxDynError) -> sqlx::Error {
    sqlx::Error::ColumnDecode {
        index: i.to_string(),
        source,
    }
}

/// Runs a read statement on `db`'s pool with sqlx itself, as sea-orm's
/// `query_all_raw` does but without its layers: that call's futures are
/// kilobytes large and were copied three times per statement, 28 000
/// instructions, an eighth of a get (bench/RESULTS.md, eleventh session).
/// Errors are what sea-orm would report, so a pool timeout or a lost
/// server is still `Unavailable`.
pub(crate) async fn fetch_all(
    db: &sea_orm::DatabaseConnection,
    stmt: sea_orm::Statement,
) -> Result<Vec<sea_orm::QueryResult>, sea_orm::DbErr> {
    use sea_orm::{ConnectionTrait, DatabaseBackend, QueryResult, Values};
    use sea_query_sqlx::SqlxValues;
    let backend = db.get_database_backend();
    if stmt.db_backend != backend
        || !matches!(backend, DatabaseBackend::Sqlite | DatabaseBackend::Postgres)
    {
        return db.query_all_raw(stmt).await;
    }
    let sql = sqlx::AssertSqlSafe(stmt.sql);
    let values = SqlxValues(stmt.values.unwrap_or(Values(Vec::new())));
    Ok(if backend == DatabaseBackend::Sqlite {
        let pool = db.get_sqlite_connection_pool();
        let rows = sqlx::query_with(sql, values).fetch_all(pool).await;
        rows.map_err(db_err)?
            .into_iter()
            .map(QueryResult::from)
            .collect()
    } else {
        let pool = db.get_postgres_connection_pool();
        let rows = sqlx::query_with(sql, values).fetch_all(pool).await;
        rows.map_err(db_err)?
            .into_iter()
            .map(QueryResult::from)
            .collect()
    })
}

/// A connection a hot read can run on: [`fetch_all`] on the pool, sea-orm
/// on a transaction (whose statements must go through its connection).
pub(crate) trait Read: sea_orm::ConnectionTrait + Sync {
    fn read(
        &self,
        stmt: sea_orm::Statement,
    ) -> impl std::future::Future<Output = Result<Vec<sea_orm::QueryResult>, sea_orm::DbErr>> + Send;
}

impl Read for sea_orm::DatabaseConnection {
    fn read(
        &self,
        stmt: sea_orm::Statement,
    ) -> impl std::future::Future<Output = Result<Vec<sea_orm::QueryResult>, sea_orm::DbErr>> + Send
    {
        fetch_all(self, stmt)
    }
}

impl Read for sea_orm::DatabaseTransaction {
    fn read(
        &self,
        stmt: sea_orm::Statement,
    ) -> impl std::future::Future<Output = Result<Vec<sea_orm::QueryResult>, sea_orm::DbErr>> + Send
    {
        sea_orm::ConnectionTrait::query_all_raw(self, stmt)
    }
}

/// Statement texts kept by the shape of their statement (`K`) and the
/// database, for statements whose text depends on nothing else: a hot
/// read builds its text with sea-query once and then only binds values
/// (sea-query took a fifth of a get's instructions; bench/RESULTS.md,
/// eleventh session).
pub(crate) struct Kept<K>(std::sync::OnceLock<std::sync::Mutex<Texts<K>>>);

type Texts<K> = std::collections::HashMap<(bool, K), std::sync::Arc<str>>;

impl<K: Eq + std::hash::Hash> Kept<K> {
    pub(crate) const fn new() -> Self {
        Kept(std::sync::OnceLock::new())
    }

    /// The statement of shape `key` on `backend` with `values` bound: the
    /// kept text, or the first time what `build` makes (which must bind
    /// the same values), kept for next time.
    pub(crate) fn statement(
        &self,
        backend: sea_orm::DatabaseBackend,
        key: K,
        values: impl IntoIterator<Item = sea_orm::Value>,
        build: impl FnOnce() -> sea_orm::Statement,
    ) -> sea_orm::Statement {
        let texts = self.0.get_or_init(Default::default);
        let key = (backend == sea_orm::DatabaseBackend::Postgres, key);
        // Nothing panics while holding it; a poisoned map is still whole.
        let lock = || texts.lock().unwrap_or_else(|p| p.into_inner());
        let kept = lock().get(&key).cloned();
        match kept {
            Some(sql) => sea_orm::Statement::from_sql_and_values(backend, &*sql, values),
            None => {
                let built = build();
                lock().insert(key, built.sql.as_str().into());
                built
            }
        }
    }
}

/// A sqlx error as sea-orm reports one.
pub(crate) fn db_err(e: sqlx::Error) -> sea_orm::DbErr {
    sea_orm::DbErr::Query(sea_orm::RuntimeErr::SqlxError(std::sync::Arc::new(e)))
}

/// A field of an entity, read by position from a SQLite row: as sqlx reads
/// it (the same checks and errors), except that a timestamp's text is
/// first read by [`keel_core::time::parse_rfc3339_utc`], and by sqlx only
/// if that declines. sqlx's chrono parser took about 1 000 instructions a
/// timestamp, and an incident has two to six (bench/RESULTS.md, eighteenth
/// session).
pub(crate) trait FromSqlite: Sized {
    fn get(r: &sqlx::sqlite::SqliteRow, i: usize) -> Result<Self, sqlx::Error>;
}

macro_rules! from_sqlite_as_sqlx {
    ($($t:ty),*) => {$(
        impl FromSqlite for $t {
            fn get(r: &sqlx::sqlite::SqliteRow, i: usize) -> Result<Self, sqlx::Error> {
                r.try_get(i)
            }
        }
        impl FromSqlite for Option<$t> {
            fn get(r: &sqlx::sqlite::SqliteRow, i: usize) -> Result<Self, sqlx::Error> {
                r.try_get(i)
            }
        }
    )*};
}

from_sqlite_as_sqlx!(uuid::Uuid, String, i64, i32, bool);

/// What [`timestamp_text`] found at a column.
enum TimestampAt {
    Null,
    /// Text [`keel_core::time::parse_rfc3339_utc`] read.
    Read(keel_core::time::Timestamp),
    /// Anything else: sqlx's to read, or to refuse.
    Other,
}

/// The timestamp at `i`, if it is NULL or text
/// [`keel_core::time::parse_rfc3339_utc`] reads.
fn timestamp_text(r: &sqlx::sqlite::SqliteRow, i: usize) -> Result<TimestampAt, sqlx::Error> {
    use sqlx::{Decode, Sqlite, Type, ValueRef};
    let v = r.try_get_raw(i)?;
    if v.is_null() {
        return Ok(TimestampAt::Null);
    }
    if !<&str as Type<Sqlite>>::compatible(&v.type_info()) {
        return Ok(TimestampAt::Other);
    }
    Ok(<&str as Decode<Sqlite>>::decode(v)
        .ok()
        .and_then(keel_core::time::parse_rfc3339_utc)
        .map_or(TimestampAt::Other, TimestampAt::Read))
}

impl FromSqlite for keel_core::time::Timestamp {
    fn get(r: &sqlx::sqlite::SqliteRow, i: usize) -> Result<Self, sqlx::Error> {
        match timestamp_text(r, i)? {
            TimestampAt::Read(t) => Ok(t),
            // sqlx's error for a NULL, or its own reading.
            TimestampAt::Null | TimestampAt::Other => r.try_get(i),
        }
    }
}

impl FromSqlite for Option<keel_core::time::Timestamp> {
    fn get(r: &sqlx::sqlite::SqliteRow, i: usize) -> Result<Self, sqlx::Error> {
        match timestamp_text(r, i)? {
            TimestampAt::Read(t) => Ok(Some(t)),
            // As sqlx reads a NULL into an `Option`, without looking the
            // column up again.
            TimestampAt::Null => Ok(None),
            TimestampAt::Other => r.try_get(i),
        }
    }
}

/// `decoder!(name, entity_module { field: Column, ... })` defines
/// `name(row, prefix, positions)`, which decodes `entity_module::Model`
/// from a sea-orm `QueryResult` by position. Every field of the model must
/// be listed (the struct literal will not compile otherwise).
macro_rules! decoder {
    ($name:ident, $entity:ident { $($field:ident: $col:ident),* $(,)? }) => {
        pub(crate) fn $name(
            row: &sea_orm::QueryResult,
            prefix: &str,
            positions: &mut $crate::rows::Positions,
        ) -> Result<$entity::Model, sea_orm::DbErr> {
            use sea_orm::FromQueryResult as _;
            use sea_orm::sqlx;
            fn sqlite(
                r: &sqlx::sqlite::SqliteRow,
                positions: &[usize],
            ) -> Result<$entity::Model, sqlx::Error> {
                use $entity::Column as C;
                use $crate::rows::FromSqlite;
                // A column missing from `positions` is out of bounds: an error.
                let at = |c: C| positions.get(c as usize).copied().unwrap_or(usize::MAX);
                Ok($entity::Model {
                    $($field: FromSqlite::get(r, at(C::$col))?,)*
                })
            }
            fn pg(
                r: &sqlx::postgres::PgRow,
                positions: &[usize],
                typed: bool,
            ) -> Result<$entity::Model, sqlx::Error> {
                use $entity::Column as C;
                use $crate::rows::pg_get;
                let at = |c: C| positions.get(c as usize).copied().unwrap_or(usize::MAX);
                Ok($entity::Model {
                    $($field: pg_get(r, at(C::$col), typed)?,)*
                })
            }
            if let Some(r) = row.try_as_sqlite_row() {
                if let Some(p) = positions.of::<_, $entity::Column>(r, prefix) {
                    return sqlite(r, p).map_err($crate::rows::db_err);
                }
            } else if let Some(r) = row.try_as_pg_row() {
                let typed = positions.typed || positions.same_types(r);
                if let Some(p) = positions.of::<_, $entity::Column>(r, prefix) {
                    let m = pg(r, p, typed).map_err($crate::rows::db_err)?;
                    if !typed {
                        positions.keep_types(r);
                    }
                    positions.typed = true;
                    return Ok(m);
                }
            }
            $entity::Model::from_query_result(row, prefix)
        }
    };
    ($name:ident, inline $inline:ident, $entity:ident { $($field:ident: $col:ident),* $(,)? }) => {
        decoder!($name, $entity { $($field: $col),* });

        /// Decodes the model from a row of [`crate::inline`], its columns
        /// found by name on the first row (`positions`), unless `positions`
        /// holds them already (kept from an earlier run of the same
        /// statement text, [`crate::rows::KeptAt`]); `None` where sqlx
        /// would read a value otherwise, or a column is missing.
        pub(crate) fn $inline(
            row: &rusqlite::Row<'_>,
            positions: &mut Option<std::borrow::Cow<'static, [usize]>>,
        ) -> Option<$entity::Model> {
            use sea_orm::{IdenStatic as _, Iterable as _};
            use $entity::Column as C;
            use $crate::inline::get;
            if positions.is_none() {
                let stmt: &rusqlite::Statement<'_> = row.as_ref();
                // Keel's statements select the columns in the entity's
                // order: checked in one pass, where a search by name for
                // each was a quarter of a get's instructions.
                let in_order = stmt.column_count() >= C::iter().len()
                    && C::iter()
                        .enumerate()
                        .all(|(i, c)| stmt.column_name(i).is_ok_and(|n| n == c.as_str()));
                *positions = Some(std::borrow::Cow::Owned(if in_order {
                    (0..C::iter().len()).collect()
                } else {
                    C::iter()
                        .map(|c| stmt.column_index(c.as_str()).ok())
                        .collect::<Option<Vec<usize>>>()?
                }));
            }
            let p = positions.as_deref()?;
            let at = |c: C| p.get(c as usize).copied().unwrap_or(usize::MAX);
            Some($entity::Model {
                $($field: get(row, at(C::$col))?,)*
            })
        }
    };
}

/// The column positions an inline decoder (`decoder!(.., inline ..)`)
/// found for one statement text, kept for the rest of the process: a
/// statement's columns are those its text names, in its order, so they are
/// the same on every connection and every run. Finding them took a third
/// of a get's decode, 7 % of its instructions (27 column names read and
/// compared), each get.
pub(crate) struct KeptAt(std::sync::OnceLock<Vec<usize>>);

impl KeptAt {
    pub(crate) const fn new() -> Self {
        Self(std::sync::OnceLock::new())
    }

    /// The positions kept, to hand to the decoder; `None` until found.
    pub(crate) fn get(&'static self) -> Option<std::borrow::Cow<'static, [usize]>> {
        self.0
            .get()
            .map(|p| std::borrow::Cow::Borrowed(p.as_slice()))
    }

    /// Keeps the positions the decoder found, if none are kept yet.
    pub(crate) fn keep(&self, found: Option<std::borrow::Cow<'static, [usize]>>) {
        if let Some(std::borrow::Cow::Owned(p)) = found {
            let _ = self.0.set(p);
        }
    }
}

use crate::entities::{incident, sla_timer};
use crate::sla::TimerSight;

decoder!(
    incident_of,
    inline incident_inline,
    incident {
        id: Id,
        number: Number,
        title: Title,
        description: Description,
        impact: Impact,
        urgency: Urgency,
        priority: Priority,
        priority_overridden: PriorityOverridden,
        category: Category,
        major: Major,
        state: State,
        hold_reason: HoldReason,
        resolution_code: ResolutionCode,
        resolution_notes: ResolutionNotes,
        requester_id: RequesterId,
        assignment_group_id: AssignmentGroupId,
        assignee_id: AssigneeId,
        reassignment_count: ReassignmentCount,
        created_by: CreatedBy,
        version: Version,
        created_at: CreatedAt,
        updated_at: UpdatedAt,
        first_response_at: FirstResponseAt,
        resolved_at: ResolvedAt,
        closed_at: ClosedAt,
        cancelled_at: CancelledAt,
        timers_json: TimersJson,
    }
);

decoder!(
    timer_of,
    sla_timer {
        id: Id,
        record_type: RecordType,
        record_id: RecordId,
        kind: Kind,
        policy_id: PolicyId,
        calendar_id: CalendarId,
        target_secs: TargetSecs,
        started_at: StartedAt,
        pauses: Pauses,
        stopped_at: StoppedAt,
        state: State,
        due_at: DueAt,
        warned_percent: WarnedPercent,
        breached_at: BreachedAt,
        next_check_at: NextCheckAt,
        updated_at: UpdatedAt,
    }
);

/// An incident's SLA timers as its row keeps them (`incidents.timers_json`,
/// migration `m0009_incident_timers`): a JSON array of arrays, each the
/// fields of a [`TimerSight`] in its order, the timers in
/// [`keel_sla::TargetKind::ALL`]'s order; ids as lower-case hex, `""` for
/// none; timestamps RFC 3339 in UTC, `null` for none; the pauses as their
/// JSON text. An incident without timers has `[]`. Written in the transaction that writes the
/// timers, so a page or a get reads them with the incident: until the
/// twenty-second session a page read them in a second statement (on
/// PostgreSQL about 220 µs of server time, 50 index descents), and a get
/// in a subquery (SQLite) or a join (PostgreSQL).
pub(crate) fn timers_json<'m>(rows: impl IntoIterator<Item = &'m sla_timer::Model>) -> String {
    #[derive(serde::Serialize)]
    struct Out<'a>(
        &'a str,
        String,
        String,
        i64,
        #[serde(serialize_with = "keel_core::time::rfc3339")] &'a chrono::DateTime<chrono::Utc>,
        &'a str,
        #[serde(serialize_with = "keel_core::time::rfc3339_opt")]
        &'a Option<chrono::DateTime<chrono::Utc>>,
        #[serde(serialize_with = "keel_core::time::rfc3339_opt")]
        &'a Option<chrono::DateTime<chrono::Utc>>,
    );
    let hex = |id: Option<uuid::Uuid>| id.map(timers_json_id).unwrap_or_default();
    let rank = |kind: &str| {
        keel_sla::TargetKind::ALL
            .iter()
            .position(|k| k.as_str() == kind)
    };
    let mut rows: Vec<&sla_timer::Model> = rows.into_iter().collect();
    rows.sort_by_key(|r| rank(&r.kind));
    let out: Vec<Out<'_>> = rows
        .into_iter()
        .map(|r| {
            Out(
                &r.kind,
                hex(r.policy_id),
                hex(r.calendar_id),
                r.target_secs,
                &r.started_at,
                &r.pauses,
                &r.stopped_at,
                &r.breached_at,
            )
        })
        .collect();
    // Strings, numbers and nulls only: serialising cannot fail.
    serde_json::to_string(&out).unwrap_or_else(|_| "[]".to_owned())
}

/// An id (a policy's, a calendar's) as [`timers_json`] writes it, quotes
/// aside.
pub(crate) fn timers_json_id(id: uuid::Uuid) -> String {
    id.simple().to_string()
}

/// One element of [`timers_json`], field by field.
#[derive(serde::Deserialize)]
struct TimerJson<'a>(
    #[serde(borrow)] Cow<'a, str>,
    #[serde(borrow)] Cow<'a, str>,
    #[serde(borrow)] Cow<'a, str>,
    i64,
    #[serde(borrow)] Cow<'a, str>,
    #[serde(borrow)] Cow<'a, str>,
    #[serde(borrow)] Option<Cow<'a, str>>,
    #[serde(borrow)] Option<Cow<'a, str>>,
);

/// Decodes [`timers_json`]'s text, or the migration's (which writes
/// SQLite's timestamps as sqlx does, and PostgreSQL's with six digits of
/// fraction); anything else is an error, never a misread.
pub(crate) fn timers_of_json(text: &str) -> Result<Vec<TimerSight>, sea_orm::DbErr> {
    if text == "[]" {
        return Ok(Vec::new());
    }
    let bad = |what: &str| sea_orm::DbErr::Type(format!("incidents.timers_json: {what}"));
    let id = |hex: &str| uuid::Uuid::try_parse(hex).map_err(|e| bad(&e.to_string()));
    let some_id = |hex: &str| (!hex.is_empty()).then(|| id(hex)).transpose();
    let at = |t: &str| {
        keel_core::time::parse_rfc3339_utc(t).map_or_else(
            || {
                chrono::DateTime::parse_from_rfc3339(t)
                    .map(|t| t.with_timezone(&chrono::Utc))
                    .map_err(|e| bad(&format!("{t}: {e}")))
            },
            Ok,
        )
    };
    let some_at = |t: Option<Cow<'_, str>>| t.as_deref().map(at).transpose();
    let rows: Vec<TimerJson<'_>> = serde_json::from_str(text).map_err(|e| bad(&e.to_string()))?;
    rows.into_iter()
        .map(|r| {
            Ok(TimerSight {
                kind: r.0.into_owned(),
                policy_id: some_id(&r.1)?,
                calendar_id: some_id(&r.2)?,
                timer: keel_sla::Timer {
                    target_secs: r.3,
                    started_at: at(&r.4)?,
                    pauses: crate::sla::pauses_of(&r.5).map_err(|e| bad(&e.to_string()))?,
                    stopped_at: some_at(r.6)?,
                },
                breached_at: some_at(r.7)?,
                memo: Default::default(),
            })
        })
        .collect()
}

/// Most texts [`kept_timers`] keeps per thread; one more starts afresh.
/// An entry is about 0.7 kB (the text and its two or three timers), so a
/// thread keeps at most about 3 MB.
const KEPT_TIMERS: usize = 4_096;

thread_local! {
    /// [`timers_of_json`]'s answers on this thread, by text.
    static TIMERS_READ: std::cell::RefCell<
        std::collections::HashMap<Box<str>, Arc<[TimerSight]>, foldhash::fast::RandomState>,
    > = std::cell::RefCell::default();
    /// The answer for `[]`, shared.
    static NO_TIMERS: Arc<[TimerSight]> = Arc::from(Vec::new());
}

/// [`timers_of_json`], kept by text: the same text always reads as the same
/// timers, so a thread that read one before hands the same timers out
/// again (an `Arc`, no copy). A list page or a get reads its incidents'
/// timers this way: the reading (ids and timestamps parsed, strings
/// copied) was 15 % of a first page's instructions and 5 % of a get's,
/// and the incidents a desk reads are read again and again. Nothing is
/// ever stale: a timer that changes changes the text, which is then a new
/// key (bench/RESULTS.md, twenty-fifth session). A text that does not read
/// is an error each time and is not kept.
pub(crate) fn kept_timers(text: &str) -> Result<Arc<[TimerSight]>, sea_orm::DbErr> {
    if text == "[]" {
        return Ok(NO_TIMERS.with(Arc::clone));
    }
    if let Some(kept) = TIMERS_READ.with_borrow(|m| m.get(text).cloned()) {
        return Ok(kept);
    }
    let read: Arc<[TimerSight]> = timers_of_json(text)?.into();
    TIMERS_READ.with_borrow_mut(|m| {
        if m.len() >= KEPT_TIMERS {
            m.clear();
        }
        m.insert(text.into(), Arc::clone(&read));
    });
    Ok(read)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entities::sla_timer;

    #[tokio::test]
    async fn a_postgres_column_of_the_wrong_type_is_refused_on_the_first_row_even_when_null() {
        let Some(mut conn) = crate::testdb::postgres_connection().await else {
            return;
        };
        let rows =
            sqlx::query("SELECT * FROM (VALUES (NULL::int4, 'a'::text), (7, 'b')) AS v (n, s)")
                .fetch_all(&mut conn)
                .await;
        let Ok(rows) = rows else {
            panic!("{rows:?}");
        };
        let (first, second) = (&rows[0], &rows[1]);
        // i64 is int8: refused by the column's type though the value is NULL,
        // where sqlx's own `try_get` only checks values that are not.
        assert!(pg_get::<Option<i64>>(first, 0, false).is_err());
        assert!(matches!(first.try_get::<Option<i64>, _>(0), Ok(None)));
        assert!(pg_get::<Option<String>>(first, 0, false).is_err());
        assert!(matches!(pg_get::<Option<i32>>(first, 0, false), Ok(None)));
        assert!(matches!(
            pg_get::<String>(first, 1, false).as_deref(),
            Ok("a")
        ));
        // Once typed, later rows are read as the first was.
        assert!(matches!(
            pg_get::<Option<i32>>(second, 0, true),
            Ok(Some(7))
        ));
        assert!(matches!(
            pg_get::<String>(second, 1, true).as_deref(),
            Ok("b")
        ));
        // A column past the end is an error, not a panic.
        assert!(pg_get::<String>(second, 9, true).is_err());
    }

    #[tokio::test]
    async fn a_postgres_timestamp_reads_as_sqlx_reads_it() {
        let Some(mut conn) = crate::testdb::postgres_connection().await else {
            return;
        };
        let values = [
            "NULL",
            "'2000-01-01T00:00:00Z'",
            "'1999-12-31T23:59:59.999999Z'",
            "'1970-01-01T00:00:00Z'",
            "'1969-07-20T20:17:40.5Z'",
            "'2026-12-08T01:02:03.456789+05:30'",
            "'0001-01-01T00:00:00Z'",
            "'9999-12-31T23:59:59.999999Z'",
            "'4713-01-01 BC'",
            "'infinity'",
            "'-infinity'",
        ];
        for v in values {
            for ty in ["timestamptz", "timestamp"] {
                let sql = format!("SELECT {v}::{ty} AS t");
                let row = match sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
                    .fetch_one(&mut conn)
                    .await
                {
                    Ok(row) => row,
                    Err(e) => panic!("{sql}: {e}"),
                };
                type At = chrono::DateTime<chrono::Utc>;
                // Typed (the column's type checked on an earlier row): as
                // sqlx decodes a value unchecked, `timestamp` too.
                let ours = pg_get::<Option<At>>(&row, 0, true);
                let theirs = row.try_get_unchecked::<Option<At>, _>(0);
                assert_eq!(ours.as_ref().ok(), theirs.as_ref().ok(), "{sql}");
                assert_eq!(ours.is_err(), theirs.is_err(), "{sql}");
                let ours = pg_get::<At>(&row, 0, true);
                let theirs = row.try_get_unchecked::<At, _>(0);
                assert_eq!(ours.as_ref().ok(), theirs.as_ref().ok(), "{sql}");
                assert_eq!(ours.is_err(), theirs.is_err(), "{sql}");
                // Checked: a `timestamptz` as sqlx's `try_get` reads it, and
                // a `timestamp` refused (even NULL, as every checked column).
                let ours = pg_get::<Option<At>>(&row, 0, false);
                if ty == "timestamptz" {
                    let theirs = row.try_get::<Option<At>, _>(0);
                    assert_eq!(ours.as_ref().ok(), theirs.as_ref().ok(), "{sql}");
                    assert_eq!(ours.is_err(), theirs.is_err(), "{sql}");
                } else {
                    assert!(ours.is_err(), "{sql}");
                }
                // Another type than a timestamp is still refused.
                assert!(pg_get::<Option<i64>>(&row, 0, false).is_err());
                if v.contains("1969") {
                    let landing = "1969-07-20T20:17:40.5Z".parse().ok();
                    assert_eq!(pg_get::<At>(&row, 0, true).ok(), landing);
                }
            }
        }
    }

    #[tokio::test]
    async fn a_postgres_result_is_read_unchecked_only_when_its_column_types_are_those_kept() {
        let Some(mut conn) = crate::testdb::postgres_connection().await else {
            return;
        };
        let mut one = async |sql: &'static str| match sqlx::query(sql).fetch_one(&mut conn).await {
            Ok(row) => row,
            Err(e) => panic!("{sql}: {e}"),
        };
        let checked = one("SELECT 7::int4 AS n, 'a'::text AS s").await;
        let same = one("SELECT 8::int4 AS n, 'b'::text AS s").await;
        let wider = one("SELECT 9::int8 AS n, 'c'::text AS s").await;
        let fewer = one("SELECT 7::int4 AS n").await;
        // Nothing is kept until a first row has passed the check, and
        // only for a caller that keeps its positions.
        let mut page = Positions::default();
        page.keep_types(&checked);
        assert!(page.types().is_none() && !page.same_types(&checked));
        let mut p = Positions::known(Arc::from([0, 1]), None);
        assert!(p.types().is_none() && !p.same_types(&checked));
        p.keep_types(&checked);
        assert_eq!(p.types().map(|t| &t[..]), Some(&[23, 25][..]));
        // The next result of the same text: the same OIDs, no check needed.
        let next = Positions::known(Arc::from([0, 1]), p.types().cloned());
        assert!(next.same_types(&same));
        // Another type, or another number of columns: checked again, and
        // the check refuses what the first row's field cannot read.
        assert!(!next.same_types(&wider) && !next.same_types(&fewer));
        assert!(pg_get::<i32>(&wider, 0, false).is_err());
        // A kept set is not replaced by a later one.
        let mut kept = Positions::known(Arc::from([0, 1]), p.types().cloned());
        kept.keep_types(&wider);
        assert_eq!(kept.types().map(|t| &t[..]), Some(&[23, 25][..]));
    }

    #[test]
    fn inline_positions_kept_are_the_first_found_and_lent_thereafter() {
        static AT: KeptAt = KeptAt::new();
        assert!(AT.get().is_none());
        // A decode that found nothing, or was lent the kept ones, keeps nothing.
        AT.keep(None);
        assert!(AT.get().is_none());
        AT.keep(Some(Cow::Owned(vec![2, 0, 1])));
        assert_eq!(AT.get().as_deref(), Some(&[2, 0, 1][..]));
        assert!(matches!(AT.get(), Some(Cow::Borrowed(_))));
        AT.keep(Some(Cow::Owned(vec![0, 1, 2])));
        assert_eq!(AT.get().as_deref(), Some(&[2, 0, 1][..]));
    }

    /// Two timers of `record`: one with every optional field empty, one
    /// with all of them set (a policy and a calendar that need not exist).
    fn two_timers(record_id: uuid::Uuid) -> [sla_timer::Model; 2] {
        let t = keel_core::time::now();
        let later = t + chrono::Duration::microseconds(3_600_000_123);
        let bare = sla_timer::Model {
            id: uuid::Uuid::now_v7(),
            record_type: "incident".into(),
            record_id,
            kind: "first_response".into(),
            policy_id: None,
            calendar_id: None,
            target_secs: 14_400,
            started_at: t,
            pauses: r#"[{"from":"2026-01-01T00:00:00Z","to":null}]"#.into(),
            stopped_at: None,
            state: "running".into(),
            due_at: None,
            warned_percent: 0,
            breached_at: None,
            next_check_at: None,
            updated_at: t,
        };
        let full = sla_timer::Model {
            id: uuid::Uuid::now_v7(),
            kind: "resolution".into(),
            policy_id: Some(uuid::Uuid::now_v7()),
            calendar_id: Some(uuid::Uuid::now_v7()),
            stopped_at: Some(later),
            state: "breached \"late\" é".into(),
            due_at: Some(later),
            warned_percent: 80,
            breached_at: Some(later),
            next_check_at: Some(later),
            ..bare.clone()
        };
        [bare, full]
    }

    fn sight(m: &sla_timer::Model) -> TimerSight {
        TimerSight {
            kind: m.kind.clone(),
            policy_id: m.policy_id,
            calendar_id: m.calendar_id,
            timer: keel_sla::Timer {
                target_secs: m.target_secs,
                started_at: m.started_at,
                pauses: crate::sla::pauses_of(&m.pauses).unwrap_or_else(|e| panic!("{e}")),
                stopped_at: m.stopped_at,
            },
            breached_at: m.breached_at,
            memo: Default::default(),
        }
    }

    #[test]
    fn an_incidents_timers_json_reads_back_as_the_timers_it_was_written_from() {
        let record = uuid::Uuid::now_v7();
        assert_eq!(timers_json(&[]), "[]");
        assert_eq!(timers_of_json("[]").ok(), Some(Vec::new()));
        let [bare, full] = two_timers(record);
        // In the kinds' order, whatever order they come in.
        let json = timers_json(&[full.clone(), bare.clone()]);
        assert_eq!(json, timers_json(&[bare.clone(), full.clone()]));
        let read = timers_of_json(&json).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(read, vec![sight(&bare), sight(&full)]);
    }

    #[test]
    fn timers_kept_by_text_are_the_timers_the_text_reads_as_and_a_changed_text_is_read_anew() {
        let record = uuid::Uuid::now_v7();
        let [bare, full] = two_timers(record);
        let json = timers_json(&[bare.clone(), full.clone()]);
        let first = kept_timers(&json).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            &first[..],
            &timers_of_json(&json).unwrap_or_else(|e| panic!("{e}"))[..]
        );
        // Read again: the same timers, handed out without reading.
        let again = kept_timers(&json).unwrap_or_else(|e| panic!("{e}"));
        assert!(Arc::ptr_eq(&first, &again));
        // A timer's stop moves: a new text, read as it now is.
        let stopped = sla_timer::Model {
            stopped_at: Some(full.started_at + chrono::Duration::minutes(5)),
            ..full.clone()
        };
        let changed = timers_json(&[bare.clone(), stopped.clone()]);
        let read = kept_timers(&changed).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(&read[..], &[sight(&bare), sight(&stopped)][..]);
        assert!(kept_timers("[]").is_ok_and(|t| t.is_empty()));
        // A text that does not read is refused every time, never kept.
        let bad = json.replacen("\"resolution\"", "\"resolution\",", 1);
        assert!(kept_timers(&bad).is_err());
        assert!(kept_timers(&bad).is_err());
        // The thread keeps at most KEPT_TIMERS texts.
        for n in 0..KEPT_TIMERS + 10 {
            let t = sla_timer::Model {
                target_secs: i64::try_from(n).unwrap_or(i64::MAX),
                ..bare.clone()
            };
            assert!(kept_timers(&timers_json(&[t])).is_ok_and(|t| t.len() == 1));
        }
        assert!(TIMERS_READ.with_borrow(|m| m.len()) <= KEPT_TIMERS);
    }

    #[tokio::test]
    async fn the_migration_copies_each_incidents_timers_into_its_row_as_keel_writes_them() {
        use keel_migrations::{Migrator, MigratorTrait};
        use sea_orm::{ActiveModelTrait, ActiveValue::NotSet, EntityTrait, IntoActiveModel};
        for (db, pg_name) in crate::testdb::fresh_databases().await {
            let backend = db.get_database_backend();
            Migrator::up(&db, Some(8))
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            // The timers name a policy and a calendar that need not exist.
            crate::testdb::without_foreign_keys(&db, &["incidents", "sla_timers"]).await;
            // Two incidents with timers and one without.
            let incident = crate::testdb::incident;
            let (a, b, none) = (incident(1), incident(2), incident(3));
            let of_a = two_timers(a.id);
            let [_, of_b] = two_timers(b.id);
            for m in [&a, &b, &none] {
                let mut am = m.clone().into_active_model().reset_all();
                // Not there before the migration.
                am.timers_json = NotSet;
                incident::Entity::insert(am)
                    .exec_without_returning(&db)
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
            }
            for m in of_a.iter().chain([&of_b]) {
                sla_timer::Entity::insert(m.clone().into_active_model().reset_all())
                    .exec_without_returning(&db)
                    .await
                    .unwrap_or_else(|e| panic!("{backend:?}: {e}"));
            }
            Migrator::up(&db, None)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let read = |m: &incident::Model| {
                let db = &db;
                let id = m.id;
                async move {
                    let m = incident::Entity::find_by_id(id)
                        .one(db)
                        .await
                        .unwrap_or_else(|e| panic!("{e}"))
                        .unwrap_or_else(|| panic!("gone"));
                    let mut timers = timers_of_json(&m.timers_json)
                        .unwrap_or_else(|e| panic!("{backend:?} {}: {e}", m.timers_json));
                    timers.sort_by(|x, y| x.kind.cmp(&y.kind));
                    timers
                }
            };
            assert_eq!(
                read(&a).await,
                of_a.iter().map(sight).collect::<Vec<_>>(),
                "{backend:?}"
            );
            assert_eq!(read(&b).await, vec![sight(&of_b)], "{backend:?}");
            assert_eq!(read(&none).await, Vec::new(), "{backend:?}");
            // What Keel writes reads the same.
            let keel = timers_of_json(&timers_json(&of_a)).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(read(&a).await, keel, "{backend:?}");
            crate::testdb::drop_database(db, pg_name).await;
        }
    }

    #[tokio::test]
    async fn a_sqlite_timestamp_in_any_form_reads_as_sqlx_reads_it() {
        use keel_core::time::Timestamp;
        use sqlx::Connection as _;
        let mut conn = sqlx::SqliteConnection::connect("sqlite::memory:")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let rows = sqlx::query(
            "SELECT '2026-12-06T10:00:00.123456+00:00' UNION ALL SELECT '2026-12-06T10:00:00Z' \
             UNION ALL SELECT '2026-12-06 10:00:00' UNION ALL SELECT '2026-12-06T11:00:00+01:00' \
             UNION ALL SELECT 1700000000 UNION ALL SELECT NULL UNION ALL SELECT 'yesterday' \
             UNION ALL SELECT x'00'",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        for r in &rows {
            let ours = <Timestamp as FromSqlite>::get(r, 0).map_err(|e| e.to_string());
            let sqlx = r.try_get::<Timestamp, _>(0).map_err(|e| e.to_string());
            assert_eq!(ours, sqlx);
            let ours = <Option<Timestamp> as FromSqlite>::get(r, 0).map_err(|e| e.to_string());
            let sqlx = r
                .try_get::<Option<Timestamp>, _>(0)
                .map_err(|e| e.to_string());
            assert_eq!(ours, sqlx);
        }
        // Those sqlx reads are read, and the others are errors, as in sqlx.
        let read = rows
            .iter()
            .filter(|r| <Option<Timestamp> as FromSqlite>::get(r, 0).is_ok_and(|t| t.is_some()))
            .count();
        assert_eq!(read, 5);
        assert!(<Timestamp as FromSqlite>::get(&rows[5], 0).is_err(), "NULL");
    }

    #[test]
    fn timers_json_that_is_not_what_keel_wrote_is_an_error_not_a_misread() {
        let row = |started: &str| {
            format!(
                r#"[["response","{id}","",60,"{started}","[]",null,null]]"#,
                id = "0193a1b2c3d4e5f60718293a4b5c6d7e"
            )
        };
        assert!(timers_of_json(&row("2026-12-06T10:00:00.5+00:00")).is_ok());
        for bad in [
            row("2026-12-06 10:00:00"),
            row("yesterday"),
            row("2026-12-06T10:00:00+00:00").replace("\"response\",", "\"response\",1,"),
            row("2026-12-06T10:00:00+00:00").replace("0193a1b2", "not hex!"),
            "[[1]]".into(),
            "{}".into(),
        ] {
            assert!(timers_of_json(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn entity_columns_are_numbered_in_the_order_they_are_listed() {
        // `Positions::of` lists them in `iter()` order and the decoders
        // find each by its discriminant.
        for (i, c) in incident::Column::iter().enumerate() {
            assert_eq!(c as usize, i, "{}", c.as_str());
        }
    }
}
