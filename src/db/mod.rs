//! Everything SQL: the pool, the pragmas, the embedded migrations, and plain synchronous
//! query functions over `&mut SqliteConnection`. Nothing here runs on an async thread: the
//! `BookingStore` actor calls the writes on a blocking thread, handlers call the reads
//! through `web::block`. Errors are `diesel` errors; callers map them.

pub mod models;
pub mod queries;
pub mod schema;

use diesel::connection::SimpleConnection;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool, PooledConnection};
use diesel::sqlite::SqliteConnection;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use std::path::Path;

pub type DbPool = Pool<ConnectionManager<SqliteConnection>>;
pub type DbConn = PooledConnection<ConnectionManager<SqliteConnection>>;

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// Set on every connection the pool hands out: WAL so readers never wait for the writer,
/// `synchronous=FULL` so a commit is on disk before it returns, a busy timeout so the rare
/// lock conflict waits instead of failing, and foreign keys enforced.
#[derive(Debug, Clone, Copy)]
struct Pragmas;

impl CustomizeConnection<SqliteConnection, diesel::r2d2::Error> for Pragmas {
    fn on_acquire(&self, conn: &mut SqliteConnection) -> Result<(), diesel::r2d2::Error> {
        conn.batch_execute(
            "PRAGMA busy_timeout = 5000; PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
             PRAGMA foreign_keys = ON;",
        )
        .map_err(diesel::r2d2::Error::QueryError)
    }
}

/// Opens (creating the folder and file if needed) and migrates the database.
pub fn connect(path: &Path) -> Result<DbPool, String> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let url = path.to_string_lossy().to_string();
    // WAL is kept in the file: set it once, alone, before the pool opens its connections at
    // the same time (on a new file their concurrent switch to WAL would find it locked).
    {
        use diesel::Connection;
        let mut first = SqliteConnection::establish(&url)
            .map_err(|e| format!("cannot open the database: {e}"))?;
        first
            .batch_execute("PRAGMA busy_timeout = 5000; PRAGMA journal_mode = WAL;")
            .map_err(|e| format!("cannot set the journal mode: {e}"))?;
    }
    let pool = Pool::builder()
        .max_size(8)
        .connection_customizer(Box::new(Pragmas))
        .build(ConnectionManager::<SqliteConnection>::new(url))
        .map_err(|e| format!("cannot open the database: {e}"))?;
    let mut conn = pool
        .get()
        .map_err(|e| format!("no database connection: {e}"))?;
    conn.run_pending_migrations(MIGRATIONS)
        .map_err(|e| format!("migrations failed: {e}"))?;
    Ok(pool)
}
