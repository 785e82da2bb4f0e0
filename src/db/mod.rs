//! Everything SQL, for both backends: the pools, the per-connection settings, the embedded
//! migrations, and plain synchronous query functions (`queries`). The backend is chosen by
//! `DATABASE_URL` (`db::Backend`): SQLite, the embedded default, or PostgreSQL. Every
//! statement that differs between the two lives in this module and nowhere else.
//!
//! Nothing here runs on an async thread: the `BookingStore` actor calls the writes on a
//! blocking thread, handlers call the reads through `web::block`. Errors are `diesel` errors;
//! callers map them.
//!
//! One codebase for two connection types: a query is written once, inside `run!`, which
//! compiles it for `SqliteConnection` and for `PgConnection` and picks the one the pool holds.
//! (Diesel's `MultiConnection` would pick at run time too, but its backend cannot express
//! `RETURNING` or `ON CONFLICT`, both used on the hot path.)

pub mod leftovers;
pub mod models;
pub mod outbox;
pub mod queries;
pub mod rebooking;
pub mod schema;

use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool, PooledConnection};
use diesel::sqlite::SqliteConnection;
use diesel::Connection;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
pub const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// Where the data lives, as `DATABASE_URL` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// A file, created with its folder if missing.
    Sqlite(PathBuf),
    /// A libpq URL (`postgres://` or `postgresql://`, several hosts allowed).
    Postgres(String),
}

impl Backend {
    /// `postgres://…` and `postgresql://…` are PostgreSQL; anything else is a SQLite path,
    /// plain or `sqlite://`-prefixed.
    pub fn from_url(url: &str) -> Self {
        let url = url.trim();
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Self::Postgres(url.to_string());
        }
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .unwrap_or(url);
        Self::Sqlite(PathBuf::from(path))
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, Self::Postgres(_))
    }

    /// The folder beside a SQLite file (where generated secrets are kept); none on PostgreSQL.
    pub fn data_dir(&self) -> Option<PathBuf> {
        match self {
            Self::Sqlite(path) => Some(
                path.parent()
                    .filter(|d| !d.as_os_str().is_empty())
                    .unwrap_or(Path::new("."))
                    .to_path_buf(),
            ),
            Self::Postgres(_) => None,
        }
    }
}

/// How the pool behaves when the database is slow or gone.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    /// Connections at most.
    pub max_size: u32,
    /// How long a caller waits for a connection before giving up (then: 503).
    pub connect_timeout: Duration,
    /// PostgreSQL: a statement running longer is cancelled by the server.
    pub statement_timeout: Duration,
    /// PostgreSQL: refuse to start on a server whose `fsync` is off.
    pub allow_unsafe_durability: bool,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            max_size: 8,
            connect_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(5),
            allow_unsafe_durability: false,
        }
    }
}

type SqlitePool = Pool<ConnectionManager<SqliteConnection>>;
type PgPool = Pool<ConnectionManager<PgConnection>>;

/// The pool of one backend.
#[derive(Clone)]
pub enum DbPool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// A connection taken from the pool.
pub enum DbConn {
    Sqlite(PooledConnection<ConnectionManager<SqliteConnection>>),
    Postgres(PooledConnection<ConnectionManager<PgConnection>>),
}

/// A connection of either backend, borrowed: what every query function takes, so that the
/// same functions run on a pooled connection and inside a transaction.
pub enum Conn<'a> {
    Sqlite(&'a mut SqliteConnection),
    Postgres(&'a mut PgConnection),
}

/// Runs `$body` with `$c` bound to the concrete connection behind a `&mut Conn`: the body is
/// compiled once per backend.
#[macro_export]
macro_rules! run {
    ($conn:expr, $c:ident => $body:expr) => {
        match $conn {
            $crate::db::Conn::Sqlite(inner) => {
                let $c: &mut ::diesel::sqlite::SqliteConnection = &mut **inner;
                $body
            }
            $crate::db::Conn::Postgres(inner) => {
                let $c: &mut ::diesel::pg::PgConnection = &mut **inner;
                $body
            }
        }
    };
}

impl DbPool {
    pub fn get(&self) -> Result<DbConn, r2d2::Error> {
        Ok(match self {
            Self::Sqlite(p) => DbConn::Sqlite(p.get()?),
            Self::Postgres(p) => DbConn::Postgres(p.get()?),
        })
    }
}

impl DbConn {
    /// The connection as the query functions take it.
    pub fn conn(&mut self) -> Conn<'_> {
        match self {
            Self::Sqlite(c) => Conn::Sqlite(c),
            Self::Postgres(c) => Conn::Postgres(c),
        }
    }

    /// One transaction that writes: on SQLite `BEGIN IMMEDIATE` (the write lock taken at the
    /// start, so it never fails half-way for want of it), on PostgreSQL a read-committed
    /// transaction whose rows are locked as they are touched.
    pub fn write_transaction<T, E>(
        &mut self,
        f: impl FnOnce(&mut Conn<'_>) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<diesel::result::Error>,
    {
        match self {
            Self::Sqlite(c) => c.immediate_transaction(|c| f(&mut Conn::Sqlite(c))),
            Self::Postgres(c) => c.transaction(|c| f(&mut Conn::Postgres(c))),
        }
    }
}

impl DbConn {
    /// Reads that all see one state of the database: on PostgreSQL a read-only
    /// repeatable-read transaction (every statement sees what was committed before its first),
    /// on SQLite a read transaction (in WAL mode one snapshot from its first read on).
    pub fn snapshot<T>(
        &mut self,
        f: impl FnOnce(&mut Conn<'_>) -> Result<T, diesel::result::Error>,
    ) -> Result<T, diesel::result::Error> {
        match self {
            Self::Sqlite(c) => c.transaction(|c| f(&mut Conn::Sqlite(c))),
            Self::Postgres(c) => c
                .build_transaction()
                .read_only()
                .repeatable_read()
                .run(|c| f(&mut Conn::Postgres(c))),
        }
    }
}

impl Conn<'_> {
    /// A savepoint inside the current transaction: `f`'s writes are undone alone if it fails.
    pub fn savepoint<T>(
        &mut self,
        f: impl FnOnce(&mut Conn<'_>) -> Result<T, diesel::result::Error>,
    ) -> Result<T, diesel::result::Error> {
        match self {
            Self::Sqlite(c) => c.transaction(|c| f(&mut Conn::Sqlite(c))),
            Self::Postgres(c) => c.transaction(|c| f(&mut Conn::Postgres(c))),
        }
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, Self::Postgres(_))
    }
}

/// Set on every SQLite connection the pool hands out: WAL so readers never wait for the
/// writer, `synchronous=FULL` so a commit is on disk before it returns, a busy timeout so the
/// rare lock conflict waits instead of failing, and foreign keys enforced. Pages are read
/// through a memory map and kept in a 32 MiB cache (SQLite's default is 2 MiB): with the
/// defaults the writer spent a sixth of its time in `pread` for pages the kernel had cached,
/// once the bookings outgrew 2 MiB. Both only bound what may be held, nothing is taken ahead.
#[derive(Debug, Clone, Copy)]
struct SqlitePragmas;

impl CustomizeConnection<SqliteConnection, diesel::r2d2::Error> for SqlitePragmas {
    fn on_acquire(&self, conn: &mut SqliteConnection) -> Result<(), diesel::r2d2::Error> {
        conn.batch_execute(
            "PRAGMA busy_timeout = 5000; PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
             PRAGMA foreign_keys = ON; PRAGMA cache_size = -32768; \
             PRAGMA mmap_size = 268435456;",
        )
        .map_err(diesel::r2d2::Error::QueryError)
    }
}

/// Set on every PostgreSQL session: a commit returns only once it is flushed to disk (and to
/// a synchronous standby, where the server names one), whatever the server's default; no
/// statement runs longer than the statement timeout; times are UTC.
#[derive(Debug, Clone)]
struct PgSession {
    statement_timeout_ms: u128,
    /// `false` only for the counters' pool (`connect_counters`).
    durable: bool,
}

impl CustomizeConnection<PgConnection, diesel::r2d2::Error> for PgSession {
    fn on_acquire(&self, conn: &mut PgConnection) -> Result<(), diesel::r2d2::Error> {
        conn.batch_execute(&format!(
            "SET synchronous_commit = {}; SET statement_timeout = {}; SET TIME ZONE 'UTC'; \
             SET plan_cache_mode = force_custom_plan;",
            if self.durable { "on" } else { "off" },
            self.statement_timeout_ms
        ))
        .map_err(diesel::r2d2::Error::QueryError)
    }
}

/// On PostgreSQL, a small pool of its own for what needs no durability and must stay cheap
/// on the hot path: the counts of the limits shared across nodes (a crash forgets a few
/// attempts). Its sessions commit without waiting for the disk, so a count is one round
/// trip; nothing else ever uses them. `None` on SQLite.
pub fn connect_counters(backend: &Backend, settings: &PoolSettings) -> Option<DbPool> {
    let Backend::Postgres(url) = backend else {
        return None;
    };
    let pool = Pool::builder()
        .max_size(4)
        .min_idle(Some(1))
        .connection_timeout(settings.connect_timeout)
        .connection_customizer(Box::new(PgSession {
            statement_timeout_ms: settings.statement_timeout.as_millis(),
            durable: false,
        }))
        .build_unchecked(ConnectionManager::<PgConnection>::new(with_timeouts(
            url, settings,
        )));
    Some(DbPool::Postgres(pool))
}

/// Opens and migrates the database `backend` names.
pub fn connect(backend: &Backend, settings: &PoolSettings) -> Result<DbPool, String> {
    match backend {
        Backend::Sqlite(path) => connect_sqlite(path, settings),
        Backend::Postgres(url) => connect_postgres(url, settings),
    }
}

/// Opens (creating the folder and file if needed) and migrates a SQLite file.
pub fn connect_sqlite(path: &Path, settings: &PoolSettings) -> Result<DbPool, String> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let url = path.to_string_lossy().to_string();
    // WAL is kept in the file: set it once, alone, before the pool opens its connections at
    // the same time (on a new file their concurrent switch to WAL would find it locked).
    {
        let mut first = SqliteConnection::establish(&url)
            .map_err(|e| format!("cannot open the database: {e}"))?;
        first
            .batch_execute("PRAGMA busy_timeout = 5000; PRAGMA journal_mode = WAL;")
            .map_err(|e| format!("cannot set the journal mode: {e}"))?;
    }
    let pool = Pool::builder()
        .max_size(settings.max_size)
        .connection_timeout(settings.connect_timeout)
        .connection_customizer(Box::new(SqlitePragmas))
        .build(ConnectionManager::<SqliteConnection>::new(url))
        .map_err(|e| format!("cannot open the database: {e}"))?;
    let mut conn = pool
        .get()
        .map_err(|e| format!("no database connection: {e}"))?;
    conn.run_pending_migrations(SQLITE_MIGRATIONS)
        .map_err(|e| format!("migrations failed: {e}"))?;
    Ok(DbPool::Sqlite(pool))
}

/// Any fixed number: the advisory lock that serialises migrations between nodes starting
/// together.
const MIGRATION_LOCK: i64 = 0x0076_6163_6369_6e65; // "vaccine"

/// Opens a pool on PostgreSQL, checks that commits are durable there, and migrates it under
/// an advisory lock so that several nodes starting at once run each migration once.
pub fn connect_postgres(url: &str, settings: &PoolSettings) -> Result<DbPool, String> {
    // `build_unchecked`: a node may start while the database is still coming up; the first
    // use below says whether it is there.
    let url = &with_timeouts(url, settings);
    let pool = Pool::builder()
        .max_size(settings.max_size)
        .min_idle(Some(1))
        .connection_timeout(settings.connect_timeout)
        .connection_customizer(Box::new(PgSession {
            statement_timeout_ms: settings.statement_timeout.as_millis(),
            durable: true,
        }))
        .build_unchecked(ConnectionManager::<PgConnection>::new(url));
    let mut pooled = pool
        .get()
        .map_err(|e| format!("cannot reach PostgreSQL at {}: {e}", redact_url(url)))?;
    let conn: &mut PgConnection = &mut pooled;
    let fsync = queries::pg_setting(conn, "fsync").map_err(|e| format!("SHOW fsync: {e}"))?;
    if fsync != "on" {
        if settings.allow_unsafe_durability {
            log::warn!(
                "PostgreSQL runs with fsync={fsync}: a crash of its machine can lose \
                 acknowledged bookings (allowed by ALLOW_UNSAFE_DURABILITY)"
            );
        } else {
            return Err(format!(
                "PostgreSQL runs with fsync={fsync}: a 201 would not mean durable. Turn fsync \
                 on, or set ALLOW_UNSAFE_DURABILITY=1 for a throwaway test database"
            ));
        }
    }
    // The wait for another node's migrations, and a migration itself, may take longer than a
    // statement may on the hot path.
    conn.batch_execute(&format!(
        "SET statement_timeout = 0; SELECT pg_advisory_lock({MIGRATION_LOCK})"
    ))
    .map_err(|e| format!("cannot take the migration lock: {e}"))?;
    let migrated = conn
        .run_pending_migrations(POSTGRES_MIGRATIONS)
        .map(drop)
        .map_err(|e| format!("migrations failed: {e}"));
    let unlocked = conn
        .batch_execute(&format!(
            "SELECT pg_advisory_unlock({MIGRATION_LOCK}); SET statement_timeout = {}",
            settings.statement_timeout.as_millis()
        ))
        .map_err(|e| format!("cannot release the migration lock: {e}"));
    migrated.and(unlocked)?;
    drop(pooled);
    Ok(DbPool::Postgres(pool))
}

/// The URL with libpq's own timeouts added where it names none: establishing a connection
/// (`connect_timeout`, whole seconds) and data left unacknowledged on a connection whose peer
/// vanished (`tcp_user_timeout`, ms), so that a database host that disappears fails a
/// statement within seconds instead of blocking the writer for the kernel's minutes.
fn with_timeouts(url: &str, settings: &PoolSettings) -> String {
    let mut url = url.to_string();
    let connect = settings.connect_timeout.as_secs().max(1);
    let user = settings.statement_timeout.as_millis().max(1000);
    for (name, value) in [
        ("connect_timeout", connect.to_string()),
        ("tcp_user_timeout", user.to_string()),
    ] {
        if !url.contains(&format!("{name}=")) {
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str(&format!("{name}={value}"));
        }
    }
    url
}

/// A URL fit for a log line: the password, if any, replaced.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    match rest.split_once('@') {
        Some((user, hosts)) if user.contains(':') => {
            let name = user.split(':').next().unwrap_or("");
            format!("{scheme}://{name}:***@{hosts}")
        }
        _ => url.to_string(),
    }
}

/// Whether the database takes writes now: a connection, and on PostgreSQL a primary (a
/// standby in recovery answers reads only).
pub fn writable(pool: &DbPool) -> Result<(), String> {
    let mut conn = pool.get().map_err(|e| e.to_string())?;
    queries::check_writable(&mut conn.conn()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_picks_the_backend() {
        assert_eq!(
            Backend::from_url("postgres://app@db1:5432,db2:5432/r?target_session_attrs=read-write"),
            Backend::Postgres(
                "postgres://app@db1:5432,db2:5432/r?target_session_attrs=read-write".into()
            )
        );
        assert!(Backend::from_url("postgresql://localhost/r").is_postgres());
        assert_eq!(
            Backend::from_url("sqlite://data/r.db"),
            Backend::Sqlite("data/r.db".into())
        );
        assert_eq!(
            Backend::from_url("./data/r.db"),
            Backend::Sqlite("./data/r.db".into())
        );
        assert_eq!(
            Backend::from_url("r.db").data_dir(),
            Some(PathBuf::from("."))
        );
    }

    #[test]
    fn libpq_timeouts_are_added_unless_the_url_names_them() {
        let s = PoolSettings::default();
        assert_eq!(
            with_timeouts("postgres://a@h/db", &s),
            "postgres://a@h/db?connect_timeout=5&tcp_user_timeout=5000"
        );
        assert_eq!(
            with_timeouts("postgres://a@h/db?connect_timeout=2", &s),
            "postgres://a@h/db?connect_timeout=2&tcp_user_timeout=5000"
        );
    }

    #[test]
    fn a_password_never_reaches_the_log() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/r"),
            "postgres://app:***@db:5432/r"
        );
        assert_eq!(redact_url("postgres://app@db/r"), "postgres://app@db/r");
    }
}
