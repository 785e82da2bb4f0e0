//! A cluster of real processes for tests: one PostgreSQL (the test binary's shared throwaway
//! server, or one of its own for tests that kill the database), `n` nodes of the real binary
//! on one database, and HAProxy in front with `deploy/haproxy.cfg`, all on loopback.
//!
//! ```ignore
//! let cluster = Cluster::start(3).await;          // shared PostgreSQL, a fresh database
//! let cluster = Cluster::start_own_pg(3).await;   // a PostgreSQL of its own (kill it at will)
//! let rec = cluster.recorder();                   // HTTP client that records every answer
//! let a = rec.call(At::Lb, Method::GET, "/readyz").send().await;
//! cluster.kill9(1);                               // SIGKILL node 1 (nodes are 0-based)
//! cluster.restart(1).await;                       // same port, same NODE_NAME; waits ready
//! cluster.pg().kill9(); cluster.pg().start_again();
//! cluster.psql("select count(*) from bookings");
//! let cluster = Cluster::start_with_standby(3).await; // + a synchronous standby, nodes on both
//! cluster.pg().kill9(); cluster.promote_standby();    // failover; psql now goes to the standby
//! ```
//!
//! - Nodes are `node1..noden` (index 0 is `node1`), each with `TRUSTED_PROXIES=127.0.0.1`,
//!   `IDENTITY_LATENCY_MS=2`, the same `SECRET_KEY`/`ADMIN_TOKEN`, stderr (RUST_LOG=warn) in a
//!   file of the cluster's temporary folder (appended across restarts); [`Cluster::start`]
//!   and [`Cluster::restart`] wait (at most [`READY_TIMEOUT`]) for `/readyz` 200 and panic with
//!   the tail of that file otherwise.
//! - HAProxy is this process's child (`haproxy -db`), its stderr (health-check state changes)
//!   in `haproxy.log`; the config is `deploy/haproxy.cfg` with one `server nodeI` line per node
//!   appended. A missing `haproxy` binary fails the test with the advice to install it.
//! - One cluster at a time per test binary (a process-wide lock held by the [`Cluster`]):
//!   several clusters on two cores would make the timing checks meaningless.
//! - Nothing outlives the test: `Drop` kills the nodes and HAProxy; a watchdog shell (the
//!   same idea as `pg.rs`) SIGKILLs every process the harness started once this process ends in
//!   any way (even SIGKILL); and a timer ends the whole test process, with the node logs, if a
//!   cluster lives longer than [`TEST_TIMEOUT`] (a hung test).
#![allow(dead_code)]

use crate::common::pg::{self, PgServer};
use reqwest::{Client, Method};
use serde_json::Value;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

pub const ADMIN: &str = "cluster-test-admin-token";
pub const SECRET: &str = "cluster-test-secret-key";
/// Longest wait for a node's `/readyz` 200 (or HAProxy's first answer).
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// A cluster living longer than this ends the test process (a hung test).
pub const TEST_TIMEOUT: Duration = Duration::from_secs(150);
/// Every request's own limit.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

const NO_HAPROXY: &str = "the cluster tests need HAProxy: apt-get install haproxy";

/// Where a request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum At {
    Lb,
    /// 0-based node index.
    Node(usize),
}

enum PgRef {
    Shared(&'static PgServer),
    Own(Box<PgServer>),
    /// A primary and its synchronous standby ([`Cluster::start_with_standby`]).
    WithStandby(Box<PgServer>, Box<PgServer>),
}

/// The name the primary's `synchronous_standby_names` waits for.
pub const STANDBY_NAME: &str = "standby1";

struct Node {
    name: String,
    port: u16,
    log: PathBuf,
    child: Option<Child>,
}

pub struct Cluster {
    nodes: Mutex<Vec<Node>>,
    haproxy: Mutex<Option<Child>>,
    lb_port: u16,
    /// What the nodes get as `DATABASE_URL` (both hosts when there is a standby).
    db_url: String,
    /// The database's name, for `psql`.
    db_name: String,
    /// Set by [`Cluster::promote_standby`]: `psql` then goes to the standby.
    promoted: std::sync::atomic::AtomicBool,
    pub t0: Instant,
    pub history: History,
    dir: tempfile::TempDir,
    done: Option<std::sync::mpsc::Sender<()>>,
    extra_env: Vec<(String, String)>,
    pg: PgRef,
    _one_at_a_time: MutexGuard<'static, ()>,
}

impl Cluster {
    /// `n` nodes on a fresh database of the shared PostgreSQL, HAProxy in front.
    pub async fn start(n: usize) -> Cluster {
        Cluster::launch(n, PgRef::Shared(pg::shared()), &[]).await
    }

    /// Like [`Cluster::start`], with extra environment for every node.
    pub async fn start_with(n: usize, env: &[(&str, &str)]) -> Cluster {
        Cluster::launch(n, PgRef::Shared(pg::shared()), env).await
    }

    /// `n` nodes on a PostgreSQL server of their own (for tests that kill or stop it).
    pub async fn start_own_pg(n: usize) -> Cluster {
        let server = tokio::task::spawn_blocking(PgServer::start)
            .await
            .expect("start PostgreSQL");
        Cluster::launch(n, PgRef::Own(Box::new(server)), &[]).await
    }

    /// `n` nodes on a primary of their own with a synchronous streaming standby
    /// (`PgServer::start_primary`/`start_standby`), their `DATABASE_URL` naming both hosts
    /// with `target_session_attrs=read-write`, so that libpq connects to whichever of the two
    /// takes writes (the standby once promoted).
    pub async fn start_with_standby(n: usize) -> Cluster {
        let (primary, standby) = tokio::task::spawn_blocking(|| {
            let primary = PgServer::start_primary(STANDBY_NAME);
            let standby = primary.start_standby(STANDBY_NAME);
            (primary, standby)
        })
        .await
        .expect("start PostgreSQL and its standby");
        Cluster::launch(
            n,
            PgRef::WithStandby(Box::new(primary), Box::new(standby)),
            &[],
        )
        .await
    }

    async fn launch(n: usize, pg: PgRef, env: &[(&str, &str)]) -> Cluster {
        assert!(n >= 1);
        haproxy_bin();
        let guard = one_at_a_time();
        let server: &PgServer = match &pg {
            PgRef::Shared(s) => s,
            PgRef::Own(s) | PgRef::WithStandby(s, _) => s,
        };
        let mut db_url = server.create_database();
        let db_name = db_url.rsplit('/').next().unwrap().to_string();
        if let PgRef::WithStandby(primary, standby) = &pg {
            // Created on the primary, replicated like everything else.
            db_url = format!(
                "postgres://postgres@127.0.0.1:{},127.0.0.1:{}/{db_name}?target_session_attrs=read-write",
                primary.port(),
                standby.port()
            );
        }
        let dir = tempfile::Builder::new()
            .prefix("cluster-")
            .tempdir()
            .expect("temporary folder");
        let t0 = Instant::now();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let log_dir = dir.path().to_path_buf();
        std::thread::spawn(move || {
            if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(TEST_TIMEOUT) {
                eprintln!(
                    "cluster test still running after {TEST_TIMEOUT:?}: ending the test process.\n{}",
                    logs_of(&log_dir)
                );
                std::process::exit(101);
            }
        });
        let mut nodes = Vec::new();
        for i in 0..n {
            nodes.push(Node {
                name: format!("node{}", i + 1),
                port: free_port(),
                log: dir.path().join(format!("node{}.log", i + 1)),
                child: None,
            });
        }
        let cluster = Cluster {
            nodes: Mutex::new(nodes),
            haproxy: Mutex::new(None),
            lb_port: free_port(),
            db_url,
            db_name,
            promoted: std::sync::atomic::AtomicBool::new(false),
            t0,
            history: History::default(),
            dir,
            done: Some(tx),
            extra_env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            pg,
            _one_at_a_time: guard,
        };
        for i in 0..n {
            cluster.spawn_node(i);
        }
        for i in 0..n {
            cluster.wait_ready(i, READY_TIMEOUT).await;
        }
        cluster.start_haproxy().await;
        cluster
    }

    pub fn len(&self) -> usize {
        self.nodes.lock().unwrap().len()
    }

    /// The balancer's base URL.
    pub fn lb(&self) -> String {
        format!("http://127.0.0.1:{}", self.lb_port)
    }

    /// Node `i`'s base URL (0-based).
    pub fn node(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.nodes.lock().unwrap()[i].port)
    }

    pub fn node_name(&self, i: usize) -> String {
        self.nodes.lock().unwrap()[i].name.clone()
    }

    pub fn url(&self, at: At) -> String {
        match at {
            At::Lb => self.lb(),
            At::Node(i) => self.node(i),
        }
    }

    /// The PostgreSQL server (kill it, start it again: only on [`Cluster::start_own_pg`]).
    pub fn pg(&self) -> &PgServer {
        match &self.pg {
            PgRef::Shared(s) => s,
            PgRef::Own(s) | PgRef::WithStandby(s, _) => s,
        }
    }

    /// The standby (only on [`Cluster::start_with_standby`]).
    pub fn standby(&self) -> &PgServer {
        match &self.pg {
            PgRef::WithStandby(_, s) => s,
            _ => panic!("this cluster has no standby"),
        }
    }

    /// Promotes the standby (returns once it takes writes); `psql` goes to it from then on.
    pub fn promote_standby(&self) {
        self.standby().promote();
        self.promoted
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn db_url(&self) -> &str {
        &self.db_url
    }

    /// `psql` on this cluster's database (see `PgServer::psql`), at the primary (the
    /// standby once promoted).
    pub fn psql(&self, sql: &str) -> String {
        let server = if self.promoted.load(std::sync::atomic::Ordering::SeqCst) {
            self.standby()
        } else {
            self.pg()
        };
        server.psql(&self.db_name, sql)
    }

    /// A recording HTTP client (every answer goes into [`Cluster::history`]).
    pub fn recorder(&self) -> Recorder {
        let nodes = self.nodes.lock().unwrap();
        Recorder {
            client: Client::builder()
                .timeout(REQUEST_TIMEOUT)
                .pool_max_idle_per_host(64)
                .build()
                .unwrap(),
            history: self.history.clone(),
            t0: self.t0,
            lb: self.lb(),
            nodes: nodes
                .iter()
                .map(|n| (n.name.clone(), format!("http://127.0.0.1:{}", n.port)))
                .collect(),
        }
    }

    /// Seconds since the cluster started, the time base of the history.
    pub fn now(&self) -> f64 {
        self.t0.elapsed().as_secs_f64()
    }

    /// SIGKILL to node `i`; returns once it is reaped.
    pub fn kill9(&self, i: usize) {
        let mut nodes = self.nodes.lock().unwrap();
        let node = &mut nodes[i];
        let mut child = node
            .child
            .take()
            .unwrap_or_else(|| panic!("kill9: {} is not running", node.name));
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Whether node `i`'s process runs.
    pub fn is_running(&self, i: usize) -> bool {
        let mut nodes = self.nodes.lock().unwrap();
        match nodes[i].child.as_mut() {
            Some(c) => c.try_wait().ok().flatten().is_none(),
            None => false,
        }
    }

    /// Starts node `i` again (same port, same name, same settings; killing it first if it
    /// runs) and waits for its `/readyz` 200.
    pub async fn restart(&self, i: usize) {
        if self.is_running(i) {
            self.kill9(i);
        }
        self.spawn_node(i);
        self.wait_ready(i, READY_TIMEOUT).await;
    }

    /// The last `lines` lines of node `i`'s stderr (all its runs).
    pub fn node_log_tail(&self, i: usize, lines: usize) -> String {
        let path = self.nodes.lock().unwrap()[i].log.clone();
        tail(&path, lines)
    }

    /// HAProxy's stderr so far (health-check state changes, alerts).
    pub fn haproxy_log(&self) -> String {
        fs::read_to_string(self.dir.path().join("haproxy.log")).unwrap_or_default()
    }

    /// Every log's tail, for a failure message.
    pub fn logs(&self) -> String {
        logs_of(self.dir.path())
    }

    fn spawn_node(&self, i: usize) {
        let mut nodes = self.nodes.lock().unwrap();
        let node = &mut nodes[i];
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .expect("node log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_reservation"));
        cmd.env("DATABASE_URL", &self.db_url)
            .env("SECRET_KEY", SECRET)
            .env("ADMIN_TOKEN", ADMIN)
            .env("BIND_ADDR", format!("127.0.0.1:{}", node.port))
            .env("NODE_NAME", &node.name)
            .env("TRUSTED_PROXIES", "127.0.0.1")
            .env("IDENTITY_LATENCY_MS", "2")
            .env("WORKERS", "2")
            .env("DB_POOL_SIZE", "8")
            .env("RUST_LOG", "warn");
        for (k, v) in &self.extra_env {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .process_group(0);
        let child = cmd.spawn().expect("start the server binary");
        watchdog_register(child.id());
        node.child = Some(child);
    }

    async fn wait_ready(&self, i: usize, limit: Duration) {
        let url = format!("{}/readyz", self.node(i));
        let client = Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        let started = Instant::now();
        loop {
            if let Ok(res) = client.get(&url).send().await {
                if res.status() == 200 {
                    return;
                }
            }
            if !self.is_running(i) {
                panic!(
                    "{} exited before it was ready\n--- its stderr (tail) ---\n{}",
                    self.node_name(i),
                    self.node_log_tail(i, 40)
                );
            }
            if started.elapsed() > limit {
                panic!(
                    "{} did not answer /readyz 200 within {limit:?}\n--- its stderr (tail) ---\n{}",
                    self.node_name(i),
                    self.node_log_tail(i, 40)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn start_haproxy(&self) {
        let cfg_path = self.dir.path().join("haproxy.cfg");
        let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
        let mut cfg = fs::read_to_string(deploy.join("haproxy.cfg")).expect("deploy/haproxy.cfg");
        for n in self.nodes.lock().unwrap().iter() {
            cfg.push_str(&format!("    server {} 127.0.0.1:{}\n", n.name, n.port));
        }
        fs::write(&cfg_path, cfg).unwrap();
        let log = File::create(self.dir.path().join("haproxy.log")).unwrap();
        let mut cmd = Command::new(haproxy_bin());
        cmd.arg("-db")
            .arg("-f")
            .arg(&cfg_path)
            .env("LB_BIND", format!("127.0.0.1:{}", self.lb_port))
            .env("DEPLOY_DIR", &deploy)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0);
        let child = cmd.spawn().expect("start haproxy");
        watchdog_register(child.id());
        *self.haproxy.lock().unwrap() = Some(child);
        let client = Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        let started = Instant::now();
        let url = format!("{}/readyz", self.lb());
        loop {
            if let Ok(res) = client.get(&url).send().await {
                if res.status() == 200 {
                    return;
                }
            }
            let exited = self
                .haproxy
                .lock()
                .unwrap()
                .as_mut()
                .is_some_and(|c| c.try_wait().ok().flatten().is_some());
            if exited || started.elapsed() > READY_TIMEOUT {
                panic!(
                    "HAProxy did not answer /readyz 200 on {} ({})\n--- haproxy.log ---\n{}",
                    self.lb(),
                    if exited { "it exited" } else { "timeout" },
                    self.haproxy_log()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(mut c) = self
            .haproxy
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            let _ = c.kill();
            let _ = c.wait();
        }
        for n in self
            .nodes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter_mut()
        {
            if let Some(mut c) = n.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        if std::thread::panicking() {
            eprintln!("{}", logs_of(self.dir.path()));
        }
        self.done.take();
    }
}

fn one_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn haproxy_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let found = std::env::var_os("PATH")
            .into_iter()
            .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/sbin")])
            .map(|d| d.join("haproxy"))
            .find(|p| p.is_file());
        found.unwrap_or_else(|| panic!("{NO_HAPROXY}"))
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn logs_of(dir: &Path) -> String {
    let mut names: Vec<PathBuf> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    names.sort();
    names
        .iter()
        .map(|p| {
            format!(
                "--- {} (tail) ---\n{}",
                p.file_name().unwrap().to_string_lossy(),
                tail(p, 25)
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// SIGKILLs every registered process when this test process ends in any way: a shell holds the
/// read end of a pipe whose write end only this process holds (close-on-exec); at end-of-file
/// it kills each pid that still runs this harness's programs (the node binary or haproxy, so
/// a reused pid is never hit).
const WATCHDOG: &str = r#"
trap '' INT HUP
pids=''
while read -r p; do pids="$pids $p"; done
for p in $pids; do
  exe=$(readlink "/proc/$p/exe" 2>/dev/null) || continue
  case "$exe" in "$1"|*/haproxy) kill -KILL "$p" 2>/dev/null ;; esac
done
"#;

#[allow(clippy::zombie_processes)]
fn watchdog_register(pid: u32) {
    static PIPE: OnceLock<Mutex<File>> = OnceLock::new();
    let pipe = PIPE.get_or_init(|| {
        let mut fds = [0 as libc::c_int; 2];
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            panic!("pipe2: {}", std::io::Error::last_os_error());
        }
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) };
        let exe = fs::canonicalize(env!("CARGO_BIN_EXE_reservation"))
            .unwrap_or_else(|_| PathBuf::from(env!("CARGO_BIN_EXE_reservation")));
        Command::new("sh")
            .arg("-c")
            .arg(WATCHDOG)
            .arg("cluster-watchdog")
            .arg(exe)
            .stdin(Stdio::from(read))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .current_dir("/")
            .process_group(0)
            .spawn()
            .expect("start the cluster watchdog (sh)");
        Mutex::new(write)
    });
    let _ = pipe
        .lock()
        .unwrap()
        .write_all(format!("{pid}\n").as_bytes());
}

// ---------------------------------------------------------------------------------------------
// The recorded history (Jepsen's way): every answer, checked after the run.

/// One request and its answer.
#[derive(Debug, Clone)]
pub struct Event {
    /// `lb` or the node name the request was sent to.
    pub to: String,
    /// The node that answered through the balancer (`X-Served-By`), if any.
    pub served_by: Option<String>,
    pub method: String,
    /// The path, tokens and ids left as they were (for the endpoint, see [`Event::endpoint`]).
    pub path: String,
    /// 0: no answer (connection refused, reset, timeout); then `body` is the error text.
    pub status: u16,
    pub code: Option<String>,
    pub retry_after: Option<String>,
    pub body: Value,
    /// Seconds since the cluster started: sent, answered.
    pub start: f64,
    pub end: f64,
    /// The test's label for what this is about (a ticket, a citizen), or empty.
    pub key: String,
}

impl Event {
    /// The path with numbers replaced by `{id}` (for summaries).
    pub fn endpoint(&self) -> String {
        let path = self.path.split('?').next().unwrap_or("");
        let parts: Vec<String> = path
            .split('/')
            .map(|p| {
                if !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()) {
                    "{id}".to_string()
                } else {
                    p.to_string()
                }
            })
            .collect();
        format!("{} {}", self.method, parts.join("/"))
    }
}

#[derive(Clone, Default)]
pub struct History(Arc<Mutex<Vec<Event>>>);

impl History {
    pub fn push(&self, e: Event) {
        self.0.lock().unwrap().push(e);
    }

    /// A copy of every event so far, in the order the answers came.
    pub fn events(&self) -> Vec<Event> {
        self.0.lock().unwrap().clone()
    }

    /// Counts by (to, endpoint, status, code), for a failure message or a report.
    pub fn summary(&self) -> String {
        let mut counts = std::collections::BTreeMap::<String, usize>::new();
        for e in self.events() {
            let k = format!(
                "{:<6} {:<40} {} {}",
                e.to,
                e.endpoint(),
                e.status,
                e.code.as_deref().unwrap_or("")
            );
            *counts.entry(k).or_default() += 1;
        }
        counts
            .iter()
            .map(|(k, n)| format!("{n:>6}  {k}"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// What a test sees of an answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub retry_after: Option<u64>,
    pub served_by: Option<String>,
    pub end: f64,
}

impl Answer {
    pub fn code(&self) -> Option<&str> {
        self.body["error"].as_str()
    }

    pub fn str(&self, field: &str) -> Option<String> {
        self.body[field].as_str().map(str::to_string)
    }
}

/// A recording HTTP client for one cluster.
#[derive(Clone)]
pub struct Recorder {
    pub client: Client,
    history: History,
    t0: Instant,
    lb: String,
    nodes: Vec<(String, String)>,
}

pub struct Call<'a> {
    rec: &'a Recorder,
    at: At,
    method: Method,
    path: String,
    bearer: Option<String>,
    body: Option<Value>,
    headers: Vec<(String, String)>,
    key: String,
}

impl Recorder {
    pub fn call(&self, at: At, method: Method, path: &str) -> Call<'_> {
        Call {
            rec: self,
            at,
            method,
            path: path.to_string(),
            bearer: None,
            body: None,
            headers: Vec::new(),
            key: String::new(),
        }
    }

    pub fn get(&self, at: At, path: &str) -> Call<'_> {
        self.call(at, Method::GET, path)
    }

    pub fn post(&self, at: At, path: &str) -> Call<'_> {
        self.call(at, Method::POST, path)
    }

    /// An operator's request (`Authorization: Bearer ADMIN`).
    pub fn admin(&self, at: At, method: Method, path: &str) -> Call<'_> {
        self.call(at, method, path).bearer(ADMIN)
    }

    pub fn nodes(&self) -> usize {
        self.nodes.len()
    }

    pub fn now(&self) -> f64 {
        self.t0.elapsed().as_secs_f64()
    }
}

impl Call<'_> {
    pub fn bearer(mut self, token: &str) -> Self {
        self.bearer = Some(token.to_string());
        self
    }

    pub fn json(mut self, body: Value) -> Self {
        self.body = Some(body);
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.key = key.into();
        self
    }

    pub async fn send(self) -> Answer {
        let rec = self.rec;
        let (to, base) = match self.at {
            At::Lb => ("lb".to_string(), rec.lb.clone()),
            At::Node(i) => rec.nodes[i].clone(),
        };
        let mut req = rec
            .client
            .request(self.method.clone(), format!("{base}{}", self.path));
        if let Some(t) = &self.bearer {
            req = req.bearer_auth(t);
        }
        if let Some(b) = &self.body {
            req = req.json(b);
        }
        for (k, v) in &self.headers {
            req = req.header(k, v);
        }
        let start = rec.t0.elapsed().as_secs_f64();
        let (status, body, retry_after, served_by) = match req.send().await {
            Ok(res) => {
                let status = res.status().as_u16();
                let header = |name: &str| {
                    res.headers()
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string)
                };
                let retry_after = header("retry-after");
                let served_by = header("x-served-by");
                let body = match res.bytes().await {
                    Ok(b) => serde_json::from_slice(&b).unwrap_or_else(|_| {
                        Value::String(String::from_utf8_lossy(&b).into_owned())
                    }),
                    Err(e) => Value::String(format!("body: {e}")),
                };
                (status, body, retry_after, served_by)
            }
            Err(e) => (0, Value::String(format!("{e:?}")), None, None),
        };
        let end = rec.t0.elapsed().as_secs_f64();
        rec.history.push(Event {
            to,
            served_by: served_by.clone(),
            method: self.method.to_string(),
            path: self.path.clone(),
            status,
            code: body["error"].as_str().map(str::to_string),
            retry_after: retry_after.clone(),
            body: body.clone(),
            start,
            end,
            key: self.key.clone(),
        });
        Answer {
            status,
            body,
            retry_after: retry_after.and_then(|v| v.trim().parse().ok()),
            served_by,
            end,
        }
    }
}
