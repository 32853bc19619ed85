//! The benchmark's "speed of light": the least an actix-web service on the
//! same database stack as Keel (sea-orm over sqlx, the same pool and SQLite
//! pragmas, and for reads the connections Keel's gets and list pages use,
//! `keel_store::reads::Reads`, on SQLite first on the calling thread as
//! they do, `Reads::inline`) can do per request. `GET /read/{n}` reads one row by primary
//! key; `POST /insert` inserts one row. No authentication, no JSON body.
//! `GET /plain/{n}` reads the same row as the plainest actix-web and sea-orm
//! endpoint would: `query_one_raw` on the read pool (sqlx's pool, which
//! checks a connection out and back in around each statement). It is not
//! the reference: it shows what Keel's own reads (`Reads`) save over it.
//! `bench/run` starts it beside Keel and reports every result as a ratio to
//! it, from the same run.
//!
//! Usage: `lightspeed <listen> <database-url> <workers>`

use std::time::Duration;

use actix_web::{App, HttpResponse, HttpServer, web};
use keel_store::reads::Reads;
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseBackend, DatabaseConnection, QueryResult,
    Statement,
};

const ROWS: i64 = 10_000;

fn sql(backend: DatabaseBackend, text: &str) -> String {
    if backend == DatabaseBackend::Postgres {
        text.replacen('?', "$1", 1).replacen('?', "$2", 1)
    } else {
        text.to_owned()
    }
}

/// Reads: the read pool's backend and the connections beside it.
struct Readers(DatabaseBackend, Reads);

/// Row `n` (modulo the table's size), as `/read/{n}` and `/plain/{n}`
/// read it.
fn row_statement(backend: DatabaseBackend, n: i64) -> Statement {
    Statement::from_sql_and_values(
        backend,
        sql(backend, "SELECT id, body FROM lightspeed WHERE id = ?"),
        [(n % ROWS).into()],
    )
}

/// The answer to a read of one row: its body, 404 or 503.
fn row_response(row: Result<Option<QueryResult>, sea_orm::DbErr>) -> HttpResponse {
    match row {
        Ok(Some(row)) => {
            let body: String = row.try_get("", "body").unwrap_or_default();
            HttpResponse::Ok().content_type("text/plain").body(body)
        }
        Ok(None) => HttpResponse::NotFound().finish(),
        Err(_) => HttpResponse::ServiceUnavailable().finish(),
    }
}

async fn read(readers: web::Data<Readers>, n: web::Path<i64>) -> HttpResponse {
    let Readers(backend, reads) = &**readers;
    // As Keel's get reads its one row: on SQLite on this thread if it can
    // (`Reads::inline`), else on a connection's worker.
    let stmt = row_statement(*backend, n.into_inner());
    if let Some(bodies) = reads.inline(&stmt, |row| {
        row.get_ref(1).ok()?.as_str().ok().map(str::to_owned)
    }) {
        return match bodies.into_iter().next() {
            Some(body) => HttpResponse::Ok().content_type("text/plain").body(body),
            None => HttpResponse::NotFound().finish(),
        };
    }
    row_response(reads.fetch_optional(stmt).await)
}

/// The read pool, for `/plain/{n}`.
struct Plain(DatabaseConnection);

async fn plain(pool: web::Data<Plain>, n: web::Path<i64>) -> HttpResponse {
    let db = &pool.0;
    let stmt = row_statement(db.get_database_backend(), n.into_inner());
    row_response(db.query_one_raw(stmt).await)
}

async fn insert(writer: web::Data<Writer>) -> HttpResponse {
    let db = &writer.0;
    let backend = db.get_database_backend();
    let stmt = Statement::from_sql_and_values(
        backend,
        sql(
            backend,
            "INSERT INTO lightspeed_writes (id, created_at) VALUES (?, ?)",
        ),
        [
            uuid::Uuid::now_v7().to_string().into(),
            chrono::Utc::now().to_rfc3339().into(),
        ],
    );
    match db.execute_raw(stmt).await {
        Ok(_) => HttpResponse::Created().finish(),
        Err(_) => HttpResponse::ServiceUnavailable().finish(),
    }
}

/// The same allocator as `keel`.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Reads use `Data<DatabaseConnection>`; inserts this, which on SQLite is a
/// pool of one connection, as in `keel_store::Store::connect`.
struct Writer(DatabaseConnection);

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(listen), Some(url)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: lightspeed <listen> <database-url> [workers]");
        std::process::exit(2);
    };
    let workers: usize = args.get(3).and_then(|w| w.parse().ok()).unwrap_or(2);
    // As `keel_store::Store::connect`: on SQLite, writes go through a pool
    // of one connection and reads through the others.
    let options = |max: u32| {
        let mut opts = ConnectOptions::new(url.clone());
        opts.max_connections(max)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(5))
            .sqlx_logging(false)
            .map_sqlx_sqlite_opts(|o| {
                o.journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                    .synchronous(sea_orm::sqlx::sqlite::SqliteSynchronous::Full)
                    .busy_timeout(Duration::from_secs(10))
                    .foreign_keys(true)
            });
        // The same checkout policy as Keel's store: no ping on SQLite, a
        // ping on PostgreSQL only after a second idle.
        if url.starts_with("sqlite:") {
            opts.test_before_acquire(false);
        } else {
            opts.test_before_acquire_if_idle_for(Duration::from_secs(1));
        }
        opts
    };
    let sqlite = url.starts_with("sqlite:");
    let db = Database::connect(options(if sqlite { 1 } else { 10 }))
        .await
        .map_err(std::io::Error::other)?;
    let setup = [
        "DROP TABLE IF EXISTS lightspeed",
        "DROP TABLE IF EXISTS lightspeed_writes",
        "CREATE TABLE lightspeed (id BIGINT PRIMARY KEY, body TEXT NOT NULL)",
        "CREATE TABLE lightspeed_writes (id TEXT PRIMARY KEY, created_at TEXT NOT NULL)",
    ];
    for s in setup {
        db.execute_unprepared(s)
            .await
            .map_err(std::io::Error::other)?;
    }
    let mut values = Vec::new();
    for n in 0..ROWS {
        values.push(format!("({n}, 'row {n}')"));
        if values.len() == 1000 {
            db.execute_unprepared(&format!(
                "INSERT INTO lightspeed (id, body) VALUES {}",
                values.join(", ")
            ))
            .await
            .map_err(std::io::Error::other)?;
            values.clear();
        }
    }
    let readers = if sqlite {
        Database::connect(options(10))
            .await
            .map_err(std::io::Error::other)?
    } else {
        db.clone()
    };
    // As Keel's hot reads: connections like the read pool's, kept beside
    // it, a part for each worker.
    let backend = readers.get_database_backend();
    let reads = Reads::split_beside(&readers, workers);
    let next_worker = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let plain_pool = web::Data::new(Plain(readers.clone()));
    let writer = web::Data::new(Writer(db));
    HttpServer::new(move || {
        let worker = next_worker.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        App::new()
            .app_data(web::Data::new(Readers(backend, reads.part(worker))))
            .app_data(writer.clone())
            .app_data(plain_pool.clone())
            .route("/read/{n}", web::get().to(read))
            .route("/plain/{n}", web::get().to(plain))
            .route("/insert", web::post().to(insert))
    })
    .workers(workers)
    .bind(listen.as_str())?
    .run()
    .await
}
