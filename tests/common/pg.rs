//! Throwaway PostgreSQL servers for tests: each [`PgServer`] is one postmaster over its own
//! data folder in a temporary directory, listening on a free port of 127.0.0.1 only (and on a
//! Unix socket inside that directory). No shared or system server is ever used.
//!
//! ```ignore
//! let url = pg::shared().create_database();        // most tests: a fresh database each
//! let pg = pg::PgServer::start();                  // tests that crash or restart the server
//! let url = pg.create_database();
//! pg.psql(&url, "create table t (x int); insert into t values (1)");
//! pg.kill9();                                      // or pg.stop_immediate()
//! pg.start_again();                                // same folder and port: crash recovery
//! assert_eq!(pg.psql(&url, "select count(*) from t"), "1");
//! ```
//!
//! API:
//! - `PgServer::start() -> PgServer`, `PgServer::start_with(&["work_mem=64MB"])` (extra `-c`).
//! - `url(&self, db: &str) -> String`: `postgres://postgres@127.0.0.1:PORT/db`.
//! - `create_database(&self) -> String`: a new database `t_<pid>_<n>`; returns its url.
//! - `psql(&self, db, sql) -> String`: `psql -X -q -At -v ON_ERROR_STOP=1 -c sql`; `db` is a
//!   database name or a url from `url`/`create_database`; returns the rows (`|`-separated
//!   columns, one line per row, no command tags) without the final newline; panics with stderr
//!   on failure.
//! - `stop_immediate(&self)`: immediate shutdown (SIGQUIT to the postmaster, which is what
//!   `pg_ctl stop -m immediate` sends), returns once the postmaster and all its children are gone.
//!   Does nothing if it is not running.
//! - `kill9(&self)`: SIGKILL to the postmaster (pid = first line of `postmaster.pid`), returns
//!   once the port no longer answers. Its children notice the death and exit on their own, a
//!   moment later.
//! - `start_again(&self)`: same folder, same port; first waits until no process of the previous
//!   run is attached to its shared memory (after `kill9`), then waits until it accepts
//!   connections (after crash recovery).
//! - `start_primary(standby_name)`, `primary.start_standby(standby_name) -> PgServer`,
//!   `standby.promote()`: a primary whose commits wait for a synchronous streaming standby
//!   (`pg_basebackup -R` into a folder of its own, on its own port; returned once the primary
//!   reports it `streaming`/`sync`), and its promotion (`pg_promote`, waited for).
//! - `port()`, `data_dir()`, `postmaster_pid()`, `log_tail(lines)`.
//! - `Drop`: immediate stop, then the directory is removed.
//! - `shared() -> &'static PgServer`: one server per test binary, started on first use; tests
//!   must not stop or kill it (others use it at the same time).
//!
//! Every wait is bounded ([`START_TIMEOUT`], [`STOP_TIMEOUT`], [`QUERY_TIMEOUT`]) and polls for
//! its condition; a failed start panics with the tail of the server's log.
//!
//! Binaries: `PG_BIN` if set, else `pg_config --bindir` if it holds `postgres`, else the newest
//! `/usr/lib/postgresql/*/bin`. If none is found the test panics (it is not skipped).
//!
//! As root (CI), `initdb` and `postgres` run as the `postgres` user (set through
//! `Command::uid`/`gid`, so the postmaster is this process's own child and there is no
//! `runuser` in between to relay signals); the data folder is owned by `postgres` and the
//! temporary directory is made traversable (0755).
//!
//! No server outlives the test process, even when it is killed with SIGKILL or the servers are
//! statics (never dropped): one small watchdog shell per test process holds the read end of a
//! pipe whose write end only this process holds (close-on-exec), and is told the directory of
//! every server. When the process ends in any way the pipe reaches end-of-file; the watchdog
//! then sends SIGQUIT (immediate shutdown) to each postmaster still running in those
//! directories (checking that the pid's working directory is that data folder, so a reused pid
//! is never hit), waits for them, and removes the directories.
//!
//! `initdb` runs once per test binary into a template folder; each server starts from a copy
//! (`cp -a`), which is much faster than `initdb` for every server.
#![allow(dead_code)]

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Longest wait for a server to accept connections (crash recovery included; the machines
/// are small and shared).
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest wait for a stopped or killed server to be gone.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest a `psql` call (or `initdb`, `cp`) may take.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(120);
const POLL: Duration = Duration::from_millis(10);
/// Start attempts on fresh ports when the chosen port was taken in between.
const PORT_ATTEMPTS: usize = 8;

const MISSING: &str = "PostgreSQL tests need the PostgreSQL server (Debian: apt-get install \
                       postgresql; or set PG_BIN to its bin folder)";

/// Settings every server starts with (`-c name=value`).
const SETTINGS: &[&str] = &[
    "listen_addresses=127.0.0.1",
    "fsync=on",
    "synchronous_commit=on",
    "max_connections=400",
    "shared_buffers=128MB",
    // No huge-page attempt, no collector process, nothing to look up at start.
    "huge_pages=off",
    "logging_collector=off",
];

/// One postmaster over its own data folder and port. See the module documentation.
pub struct PgServer {
    port: u16,
    data: PathBuf,
    sock: PathBuf,
    log: PathBuf,
    extra: Vec<String>,
    postmaster: Mutex<Option<Child>>,
    // Last, so the folder is removed after the server is stopped.
    dir: Option<tempfile::TempDir>,
}

/// One server per test binary, started on first use. Statics are never dropped: the watchdog
/// stops it and removes its folder when the process ends.
pub fn shared() -> &'static PgServer {
    static SHARED: OnceLock<PgServer> = OnceLock::new();
    SHARED.get_or_init(PgServer::start)
}

impl PgServer {
    /// A new server on a fresh cluster and a free port; returns once it accepts connections.
    pub fn start() -> PgServer {
        PgServer::start_with(&[])
    }

    /// Like [`PgServer::start`] with extra settings, each `name=value` (passed as `-c`).
    pub fn start_with(extra: &[&str]) -> PgServer {
        let template = template();
        let dir = new_dir("pg");
        let root = dir.path().to_path_buf();
        let data = root.join("data");
        let sock = root.join("s");
        make_owned_dir(&data);
        make_owned_dir(&sock);
        // Copy the template's contents (as the server's user, so ownership is right).
        let mut cp = as_server_user(Command::new("cp"));
        cp.arg("-a")
            .arg(template.join("."))
            .arg(data.join("."))
            .current_dir(&root);
        expect_success(run_bounded(cp, QUERY_TIMEOUT), "copy the template cluster");
        PgServer::boot(dir, extra.iter().map(|s| s.to_string()).collect())
    }

    /// A primary for [`PgServer::start_standby`]: WAL for streaming, and every commit waits
    /// until the standby named `standby` has flushed it (`synchronous_standby_names`), so an
    /// acknowledged commit survives the primary's death. Until that standby streams, commits
    /// on it wait: start the standby before writing anything.
    pub fn start_primary(standby: &str) -> PgServer {
        PgServer::start_with(&[
            "wal_level=replica",
            "max_wal_senders=8",
            &format!("synchronous_standby_names={standby}"),
            "synchronous_commit=on",
        ])
    }

    /// A hot standby of this server (a primary from [`PgServer::start_primary`]), streaming
    /// under `application_name` `name` from a fresh `pg_basebackup`, on its own free port and
    /// folder (known to the watchdog like every server's); returns once the primary reports it
    /// `streaming` and `sync`. initdb's pg_hba.conf already trusts replication from 127.0.0.1.
    pub fn start_standby(&self, name: &str) -> PgServer {
        let dir = new_dir("pg-standby");
        let data = dir.path().join("data");
        make_owned_dir(&data);
        make_owned_dir(&dir.path().join("s"));
        // -R: standby.signal (and a primary_conninfo, overridden below to carry the name the
        // primary's synchronous_standby_names waits for).
        let mut bb = as_server_user(Command::new(&bins().pg_basebackup));
        bb.arg("-D")
            .arg(&data)
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
            ])
            .args(["-X", "stream", "--checkpoint=fast", "--no-sync", "-R"])
            .env("PGCONNECT_TIMEOUT", "10")
            .current_dir(dir.path());
        expect_success(run_bounded(bb, QUERY_TIMEOUT), "pg_basebackup");
        let conninfo = format!(
            "primary_conninfo=host=127.0.0.1 port={} user=postgres application_name={name} \
             connect_timeout=2",
            self.port
        );
        let standby = PgServer::boot(dir, vec![conninfo, "hot_standby=on".into()]);
        let deadline = Instant::now() + START_TIMEOUT;
        let sql = format!(
            "select state || '/' || sync_state from pg_stat_replication \
             where application_name = '{name}'"
        );
        loop {
            let state = self.psql("postgres", &sql);
            if state == "streaming/sync" {
                return standby;
            }
            if Instant::now() > deadline {
                standby.fail(&format!(
                    "the primary (port {}) does not report it a streaming synchronous standby \
                     ({state:?})\n--- primary's log ---\n{}",
                    self.port,
                    self.log_tail(20)
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Promotes this standby to a primary (`pg_promote`, which waits until recovery has
    /// ended, at most 60 s); panics if it did not.
    pub fn promote(&self) {
        let done = self.psql("postgres", "select pg_promote(true, 60)");
        if done != "t" {
            self.fail(&format!("pg_promote answered {done:?}"));
        }
        let recovering = self.psql("postgres", "select pg_is_in_recovery()");
        if recovering != "f" {
            self.fail("still in recovery after pg_promote");
        }
    }

    /// A server over `dir`/data, prepared: picks a free port and starts it.
    fn boot(dir: tempfile::TempDir, extra: Vec<String>) -> PgServer {
        let root = dir.path().to_path_buf();
        let mut server = PgServer {
            port: 0,
            data: root.join("data"),
            sock: root.join("s"),
            log: root.join("postgres.log"),
            extra,
            postmaster: Mutex::new(None),
            dir: Some(dir),
        };
        for attempt in 1..=PORT_ATTEMPTS {
            server.port = free_port();
            match server.launch() {
                Ok(child) => {
                    *server.postmaster.lock().unwrap() = Some(child);
                    return server;
                }
                Err(Failure::PortTaken) if attempt < PORT_ATTEMPTS => continue,
                Err(failure) => server.fail(&format!("start failed: {failure:?}")),
            }
        }
        unreachable!()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// `postgres://postgres@127.0.0.1:PORT/db`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates a fresh, uniquely named database and returns its url.
    pub fn create_database(&self) -> String {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let name = format!(
            "t_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        self.psql("postgres", &format!("create database \"{name}\""));
        self.url(&name)
    }

    /// Runs `sql` with `psql -X -q -At -v ON_ERROR_STOP=1` on database `db` (a name, or a url from
    /// [`PgServer::url`]); returns stdout without its final newline. Panics with stderr if
    /// psql fails, or after [`QUERY_TIMEOUT`].
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let db = match db.strip_prefix("postgres://") {
            Some(rest) => rest.rsplit('/').next().unwrap_or(rest),
            None => db,
        };
        let mut cmd = Command::new(&bins().psql);
        cmd.args([
            "-X",
            "-At",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
            "-U",
        ])
        .arg("postgres")
        .arg("-p")
        .arg(self.port.to_string())
        .arg("-d")
        .arg(db)
        .arg("-c")
        .arg(sql)
        .env("PGCONNECT_TIMEOUT", "10");
        clean_env(&mut cmd);
        let out = run_bounded(cmd, QUERY_TIMEOUT);
        if !out.status.success() {
            panic!(
                "psql on port {} database {db} failed ({}): {}\nquery: {sql}",
                self.port,
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
        if s.ends_with('\n') {
            s.pop();
        }
        s
    }

    /// The running postmaster's pid, if it runs.
    pub fn postmaster_pid(&self) -> Option<u32> {
        let mut guard = self.postmaster.lock().unwrap();
        running(&mut guard).map(|c| c.id())
    }

    /// Immediate shutdown; returns once the postmaster (and so every child) has exited. Does
    /// nothing if it is not running.
    pub fn stop_immediate(&self) {
        let mut guard = self.postmaster.lock().unwrap();
        let Some(mut child) = guard.take() else {
            return;
        };
        if child.try_wait().ok().flatten().is_some() {
            return;
        }
        signal(child.id(), libc::SIGQUIT);
        // The postmaster exits only after all its children have (it kills them with SIGKILL
        // itself after 5 s).
        if wait_child(&mut child, STOP_TIMEOUT).is_none() {
            signal(child.id(), libc::SIGKILL);
            let _ = child.wait();
            drop(guard);
            self.fail("the postmaster did not stop within the time limit (killed)");
        }
    }

    /// SIGKILL to the postmaster itself (a crash); returns once its port no longer answers.
    /// Its children exit by themselves shortly after; [`PgServer::start_again`] waits for them.
    pub fn kill9(&self) {
        let mut guard = self.postmaster.lock().unwrap();
        if running(&mut guard).is_none() {
            drop(guard);
            self.fail("kill9: the server is not running");
        }
        let mut child = guard.take().unwrap();
        let pid = pid_file(&self.data)
            .and_then(|lines| lines.first().and_then(|l| l.trim().parse::<u32>().ok()));
        if pid != Some(child.id()) {
            *guard = Some(child);
            drop(guard);
            self.fail(&format!(
                "kill9: postmaster.pid names {pid:?}, not the postmaster this test started"
            ));
        }
        signal(child.id(), libc::SIGKILL);
        let _ = child.wait(); // reaped, or a zombie would still look alive to the next start
        drop(guard);
        let deadline = Instant::now() + STOP_TIMEOUT;
        while accepts_tcp(self.port) {
            if Instant::now() > deadline {
                self.fail("kill9: the port still answers");
            }
            std::thread::sleep(POLL);
        }
    }

    /// Starts the server again over the same folder and port (after `stop_immediate` or
    /// `kill9`); returns once it accepts connections, i.e. after crash recovery.
    pub fn start_again(&self) {
        let mut guard = self.postmaster.lock().unwrap();
        if running(&mut guard).is_some() {
            drop(guard);
            self.fail("start_again: the server is already running");
        }
        *guard = None;
        self.wait_previous_gone();
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match self.launch() {
                Ok(child) => {
                    *guard = Some(child);
                    return;
                }
                // Someone took the port in between, or a process of the killed server is
                // still attached: both pass; retry within the time limit.
                Err(Failure::PortTaken | Failure::StillAttached) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100))
                }
                Err(failure) => {
                    drop(guard);
                    self.fail(&format!("start_again failed: {failure:?}"))
                }
            }
        }
    }

    /// The last `lines` lines of the server's log (all its runs).
    pub fn log_tail(&self, lines: usize) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    fn fail(&self, what: &str) -> ! {
        panic!(
            "PostgreSQL on port {} ({}): {what}\n--- server log (tail) ---\n{}",
            self.port,
            self.data.display(),
            self.log_tail(40)
        )
    }

    /// Spawns the postmaster and waits until it accepts connections.
    fn launch(&self) -> Result<Child, Failure> {
        let bins = bins();
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open the server log");
        let log_offset = log.metadata().map(|m| m.len()).unwrap_or(0);
        let mut cmd = as_server_user(Command::new(&bins.postgres));
        cmd.arg("-D")
            .arg(&self.data)
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-k")
            .arg(&self.sock);
        for setting in SETTINGS
            .iter()
            .copied()
            .chain(self.extra.iter().map(|s| s.as_str()))
        {
            cmd.arg("-c").arg(setting);
        }
        cmd.current_dir(self.dir.as_ref().unwrap().path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            // Not in the test's process group: a terminal's Ctrl-C goes to the test, and the
            // watchdog then stops the server like any other end of the test process.
            .process_group(0);
        let mut child = cmd.spawn().map_err(|e| Failure::Spawn(e.to_string()))?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().ok().flatten() {
                let text = fs::read(&self.log).unwrap_or_default();
                let new = String::from_utf8_lossy(&text[(log_offset as usize).min(text.len())..])
                    .into_owned();
                return Err(
                    if new.contains("could not bind")
                        || new.contains("could not create any TCP/IP sockets")
                    {
                        Failure::PortTaken
                    } else if new.contains("pre-existing shared memory block") {
                        Failure::StillAttached
                    } else {
                        Failure::Exited(status.to_string())
                    },
                );
            }
            // The postmaster writes "ready" into line 8 of postmaster.pid once it accepts
            // connections (what `pg_ctl -w` waits for); line 1 must be this child, not a
            // stale file from a killed run.
            if let Some(lines) = pid_file(&self.data) {
                let ours = lines.first().map(|l| l.trim()) == Some(&child.id().to_string());
                // A hot standby writes "standby" there once it accepts (read-only)
                // connections; a promoted one then "ready".
                let ready = matches!(lines.get(7).map(|l| l.trim()), Some("ready" | "standby"));
                if ours && ready && accepts_tcp(self.port) {
                    return Ok(child);
                }
            }
            if Instant::now() > deadline {
                signal(child.id(), libc::SIGKILL);
                let _ = child.wait();
                return Err(Failure::Timeout);
            }
            std::thread::sleep(POLL);
        }
    }

    /// After a kill9 the old children may still be exiting: wait (bounded) until none is
    /// attached to the old shared memory segment (key and id are on line 7 of the stale
    /// postmaster.pid), which is the interlock the new postmaster checks.
    fn wait_previous_gone(&self) {
        let Some(lines) = pid_file(&self.data) else {
            return;
        };
        let Some(shmid) = lines
            .get(6)
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|s| s.parse::<libc::c_int>().ok())
        else {
            return;
        };
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            let mut ds: libc::shmid_ds = unsafe { std::mem::zeroed() };
            let rc = unsafe { libc::shmctl(shmid, libc::IPC_STAT, &mut ds) };
            if rc != 0 || ds.shm_nattch == 0 {
                return;
            }
            if Instant::now() > deadline {
                self.fail("processes of the killed server are still attached to its memory");
            }
            std::thread::sleep(POLL);
        }
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let mut guard = match self.postmaster.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(mut child) = guard.take() {
            if child.try_wait().ok().flatten().is_none() {
                signal(child.id(), libc::SIGQUIT);
                if wait_child(&mut child, STOP_TIMEOUT).is_none() {
                    signal(child.id(), libc::SIGKILL);
                    let _ = child.wait();
                }
            }
        }
        drop(guard);
        if let Some(dir) = self.dir.take() {
            let _ = dir.close();
        }
    }
}

#[derive(Debug)]
enum Failure {
    PortTaken,
    StillAttached,
    Spawn(String),
    Exited(String),
    Timeout,
}

struct Bins {
    postgres: PathBuf,
    initdb: PathBuf,
    psql: PathBuf,
    pg_basebackup: PathBuf,
}

/// The server binaries, found once: `PG_BIN`, `pg_config --bindir`, newest
/// `/usr/lib/postgresql/*/bin`. Panics with [`MISSING`] when there are none.
fn bins() -> &'static Bins {
    static BINS: OnceLock<Bins> = OnceLock::new();
    BINS.get_or_init(|| {
        let has_server = |d: &Path| d.join("postgres").is_file() && d.join("initdb").is_file();
        let dir = if let Some(dir) = std::env::var_os("PG_BIN") {
            let dir = PathBuf::from(dir);
            if !has_server(&dir) {
                panic!(
                    "PG_BIN={} has no postgres and initdb. {MISSING}",
                    dir.display()
                );
            }
            Some(dir)
        } else {
            let from_pg_config = Command::new("pg_config")
                .arg("--bindir")
                .stderr(Stdio::null())
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
                .filter(|d| has_server(d));
            from_pg_config.or_else(|| {
                let mut found: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
                    .into_iter()
                    .flatten()
                    .flatten()
                    .filter_map(|e| {
                        let version = e.file_name().to_str()?.parse::<u32>().ok()?;
                        let bin = e.path().join("bin");
                        has_server(&bin).then_some((version, bin))
                    })
                    .collect();
                found.sort();
                found.pop().map(|(_, bin)| bin)
            })
        };
        let Some(dir) = dir else { panic!("{MISSING}") };
        let psql = if dir.join("psql").is_file() {
            dir.join("psql")
        } else {
            PathBuf::from("psql")
        };
        Bins {
            postgres: dir.join("postgres"),
            initdb: dir.join("initdb"),
            psql,
            pg_basebackup: dir.join("pg_basebackup"),
        }
    })
}

/// uid and gid of the `postgres` user when this process runs as root (the server refuses
/// root); `None` otherwise (the server runs as the current user).
fn server_user() -> Option<(u32, u32)> {
    static USER: OnceLock<Option<(u32, u32)>> = OnceLock::new();
    *USER.get_or_init(|| {
        if unsafe { libc::geteuid() } != 0 {
            return None;
        }
        let name = std::ffi::CString::new("postgres").unwrap();
        let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
        let mut buf = vec![0 as libc::c_char; 16384];
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc = unsafe {
            libc::getpwnam_r(
                name.as_ptr(),
                &mut pw,
                buf.as_mut_ptr(),
                buf.len(),
                &mut result,
            )
        };
        if rc != 0 || result.is_null() {
            panic!(
                "running as root, and the PostgreSQL server refuses root, but there is no \
                 `postgres` user to run it as. {MISSING}"
            );
        }
        Some((pw.pw_uid, pw.pw_gid))
    })
}

/// Runs `cmd` as the server's user (see [`server_user`]).
fn as_server_user(mut cmd: Command) -> Command {
    if let Some((uid, gid)) = server_user() {
        // std drops the supplementary groups (setgroups) when switching from root.
        cmd.uid(uid).gid(gid);
    }
    clean_env(&mut cmd);
    cmd
}

/// PG* variables of the test's environment (PGOPTIONS, PGHOST, PGDATA, ...) must not steer
/// the tools; everything they need is on their command line.
fn clean_env(cmd: &mut Command) {
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("PG") {
            cmd.env_remove(key);
        }
    }
}

/// Creates a directory with mode 0700, owned by the server's user.
fn make_owned_dir(path: &Path) {
    fs::create_dir(path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    fs::set_permissions(path, fs::Permissions::from_mode(0o700)).expect("chmod");
    if let Some((uid, gid)) = server_user() {
        std::os::unix::fs::chown(path, Some(uid), Some(gid))
            .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
    }
}

/// A new temporary directory (0755, so the `postgres` user can traverse it when we are
/// root), known to the watchdog before anything is started in it. Its path is canonical (the
/// base is), as the watchdog compares it with /proc/PID/cwd.
fn new_dir(prefix: &str) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix(&format!("{prefix}-"))
        .tempdir_in(temp_base())
        .expect("create a temporary directory");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod 755");
    watchdog_register(dir.path());
    dir
}

/// The temporary base: `TMPDIR` (or /tmp), unless we are root and some parent of it is not
/// traversable by others (e.g. under /root), then /tmp.
fn temp_base() -> PathBuf {
    let base = fs::canonicalize(std::env::temp_dir()).unwrap_or_else(|_| "/tmp".into());
    if server_user().is_some() {
        let traversable = base.ancestors().all(|p| {
            fs::metadata(p)
                .map(|m| m.permissions().mode() & 0o001 != 0)
                .unwrap_or(false)
        });
        if !traversable {
            return PathBuf::from("/tmp");
        }
    }
    base
}

/// The template cluster (`initdb` once per test process).
fn template() -> &'static Path {
    static TEMPLATE: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &TEMPLATE
        .get_or_init(|| {
            let bins = bins();
            let dir = new_dir("pg-template");
            let data = dir.path().join("data");
            make_owned_dir(&data);
            let mut cmd = as_server_user(Command::new(&bins.initdb));
            cmd.arg("-D")
                .arg(&data)
                .args([
                    "--auth=trust",
                    "-U",
                    "postgres",
                    "--encoding=UTF8",
                    "--locale=C",
                ])
                // Files reach the disk's cache either way; fsync of every file makes initdb
                // several times slower and only matters for an operating-system crash.
                .arg("--no-sync")
                .current_dir(dir.path());
            let out = run_bounded(cmd, QUERY_TIMEOUT);
            expect_success(out, "initdb");
            (dir, data)
        })
        .1
}

/// The watchdog: reads directory names until end-of-file (the test process is gone), then
/// stops the postmasters still running in them and removes them.
const WATCHDOG: &str = r#"
trap '' INT HUP
set -f
dirs=''
while IFS= read -r d; do dirs="$dirs$d
"; done
IFS='
'
pids=''
for d in $dirs; do
  f="$d/data/postmaster.pid"
  [ -f "$f" ] || continue
  pid=$(head -n 1 "$f")
  if [ "$(readlink "/proc/$pid/cwd" 2>/dev/null)" = "$d/data" ]; then
    kill -QUIT "$pid" 2>/dev/null && pids="$pids$pid $d/data
"
  fi
done
for p in $pids; do
  pid=${p%% *}; data=${p#* }; i=0
  while [ "$(readlink "/proc/$pid/cwd" 2>/dev/null)" = "$data" ] && [ $i -lt 300 ]; do
    sleep 0.1; i=$((i+1))
  done
  kill -KILL "$pid" 2>/dev/null
done
for d in $dirs; do rm -rf "$d"; done
"#;

/// Tells this process's watchdog (started on first use) about a new directory.
// The watchdog outlives this process by design; it is never waited for.
#[allow(clippy::zombie_processes)]
fn watchdog_register(dir: &Path) {
    static PIPE: OnceLock<Mutex<File>> = OnceLock::new();
    let pipe = PIPE.get_or_init(|| {
        let mut fds = [0 as libc::c_int; 2];
        // Close-on-exec: no other child (a postmaster, psql, another test's server) may hold
        // the write end, or end-of-file would wait for it too.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            panic!("pipe2: {}", std::io::Error::last_os_error());
        }
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) };
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(WATCHDOG)
            .stdin(Stdio::from(read))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .current_dir("/")
            // Out of the test's process group, so a signal to the group does not stop it
            // before it has cleaned up.
            .process_group(0);
        cmd.spawn().expect("start the PostgreSQL watchdog (sh)");
        Mutex::new(write)
    });
    let line = format!("{}\n", dir.display());
    assert!(!dir.display().to_string().contains('\n'));
    pipe.lock()
        .unwrap()
        .write_all(line.as_bytes())
        .expect("tell the watchdog");
}

fn free_port() -> u16 {
    TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("bind a free loopback port")
        .port()
}

fn accepts_tcp(port: u16) -> bool {
    let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port).into();
    TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
}

/// The lines of DATA/postmaster.pid, if it exists.
fn pid_file(data: &Path) -> Option<Vec<String>> {
    let mut text = String::new();
    File::open(data.join("postmaster.pid"))
        .ok()?
        .read_to_string(&mut text)
        .ok()?;
    Some(text.lines().map(str::to_string).collect())
}

fn signal(pid: u32, sig: libc::c_int) {
    unsafe { libc::kill(pid as libc::pid_t, sig) };
}

/// The child if it still runs; a child that has exited is reaped and forgotten.
fn running(slot: &mut Option<Child>) -> Option<&mut Child> {
    if let Some(child) = slot {
        if child.try_wait().ok().flatten().is_some() {
            *slot = None;
        }
    }
    slot.as_mut()
}

/// Waits (polling) until the child exits, at most `limit`.
fn wait_child(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().ok().flatten() {
            return Some(status);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(POLL);
    }
}

/// Runs a command to completion with its output captured; kills it and panics after `limit`.
fn run_bounded(mut cmd: Command, limit: Duration) -> Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.unwrap_or_else(|e| panic!("run {cmd:?}: {e}")),
        Err(_) => {
            // Not reaped yet (the thread still waits), so the pid is still this child's.
            signal(pid, libc::SIGKILL);
            let _ = rx.recv();
            panic!("{cmd:?} did not finish within {limit:?} (killed)")
        }
    }
}

fn expect_success(out: Output, what: &str) {
    if !out.status.success() {
        panic!(
            "{what} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
