//! Wiring: binds the listener, opens the database, rebuilds every actor from it and builds
//! the HTTP server. `Application::build` binds before it returns, so tests run on port 0.

use crate::actors::booking_store::{
    BookingStore, Persist, StoreError, StoreMetrics, Write, Written,
};
use crate::actors::center_inventory::{AddSlots, CenterInventory, CenterShared};
use crate::actors::cluster_sync::{ClusterSync, ClusterView, NodeLoad, Spawner, SyncNow};
use crate::actors::cohort_queue::{
    CohortHandle, CohortQueue, CohortShared, QueueSettings, QueueState, TICK,
};
use crate::actors::identity_pool::{
    provider_from_settings, IdentityPool, IdentityProvider, PoolLoad,
};
use crate::actors::leftovers::{LeftoverLine, LeftoverShared, LineSettings};
use crate::actors::notifier::{Notifier, NotifierMetrics};
use crate::actors::notify_provider::{provider_from_settings as notify_provider, ProviderFactory};
use crate::actors::shared_limits::SharedLimits;
use crate::actors::{CenterHandle, Registry};
use crate::config::Config;
use crate::db::models::{CohortRow, NewCenterRow, NewCohortRow, SlotRow};
use crate::db::{queries, DbPool};
use crate::domain::challenge::JoinPressure;
use crate::domain::cohort::NewCohort;
use crate::domain::phone::PhoneKey;
use crate::domain::slot::{NewCenter, NewSlot, Slot, SlotView};
use crate::domain::tokens::Signer;
use crate::http::{self, HttpMetrics};
use actix::prelude::*;
use actix_web::dev::{Server, Service};
use actix_web::{web, App, HttpServer};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use rand::Rng;
use std::net::{IpAddr, TcpListener};
use std::num::NonZeroU32;
use std::path::Path;
use std::sync::Arc;

/// Everything a handler may reach, shared through `web::Data`.
pub struct AppState {
    pub config: Config,
    pub signer: Signer,
    pub admin_token: String,
    pub registry: Arc<Registry>,
    pub store: Addr<BookingStore>,
    pub store_metrics: Arc<StoreMetrics>,
    pub identity: Addr<IdentityPool>,
    pub identity_load: Arc<PoolLoad>,
    pub pool: DbPool,
    pub lookups: DefaultKeyedRateLimiter<IpAddr>,
    /// Joins per client (`JOINS_PER_MINUTE`) on SQLite; `None` without a limit.
    pub joins: Option<DefaultKeyedRateLimiter<IpAddr>>,
    /// Each cohort's joins per second at this node, for the difficulty of new challenges.
    pub join_pressure: std::sync::Mutex<std::collections::HashMap<i32, JoinPressure>>,
    pub http_metrics: HttpMetrics,
    /// This application's Prometheus recorder (`/metrics`).
    pub metrics: crate::telemetry::Metrics,
    /// The request lines' budget and counts.
    pub request_log: http::request_log::RequestLog,
    /// The admission clock runs by itself (false only where tests drive it).
    pub auto_tick: bool,
    /// What `/readyz` last found (stats show it).
    pub ready: std::sync::atomic::AtomicBool,
    /// The nodes on this database, as the last sync read them (PostgreSQL).
    pub cluster: Arc<ClusterView>,
    /// What keeps this node in step with the others (PostgreSQL only).
    pub sync: std::sync::OnceLock<Addr<ClusterSync>>,
    /// The shared limits' counts, on a pool of their own (`db::connect_counters`;
    /// PostgreSQL only).
    pub limits: Option<Addr<SharedLimits>>,
    /// Seals phone numbers (`domain::phone`); only the notifier opens them.
    pub phone_key: PhoneKey,
    /// The notifications' sender and its figures.
    pub notifier: Addr<Notifier>,
    pub notifier_metrics: Arc<NotifierMetrics>,
    /// Held while an actor for a cohort or center starts: the admin API (after its commit)
    /// and the sync (reading it from the database) may both start one for the same new id.
    starting: std::sync::Mutex<()>,
    /// Drives the rebooking jobs (`actors::rebooker`), and what it publishes for `/metrics`.
    pub rebooker: std::sync::OnceLock<Addr<crate::actors::rebooker::Rebooker>>,
    pub rebook_metrics: Arc<crate::actors::rebooker::RebookMetrics>,
}

impl AppState {
    fn queue_settings(&self) -> QueueSettings {
        QueueSettings {
            pass_ttl_s: self.config.pass_ttl_s,
            over_admission: self.config.over_admission,
            zone: self.config.zone,
            tick: self.auto_tick.then_some(TICK),
            absent_after_s: self.config.absent_after_s,
        }
    }

    fn start_cohort(&self, row: &CohortRow, state: QueueState) -> CohortHandle {
        let _one = self.starting.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(running) = self.registry.cohort(row.id) {
            return running;
        }
        let cohort = row.cohort();
        let seed = row.shuffle_seed as u64;
        let shared = Arc::new(CohortShared::new(
            cohort,
            seed,
            &state,
            (self.config.pass_ttl_s, self.config.absent_after_s),
        ));
        let actor = CohortQueue::new(
            shared.clone(),
            seed,
            state,
            self.store.clone(),
            Arc::downgrade(&self.registry),
            self.identity_load.clone(),
            self.queue_settings(),
        );
        let handle = CohortHandle {
            addr: actor.start(),
            shared,
        };
        self.registry.add_cohort(handle.clone());
        handle
    }

    fn start_center(&self, shared: CenterShared, slots: Vec<Slot>) -> CenterHandle {
        let _one = self.starting.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(running) = self.registry.center(shared.id) {
            return running;
        }
        let shared = Arc::new(shared);
        let ids: Vec<i32> = slots.iter().map(|s| s.id).collect();
        let addr = CenterInventory::new(shared.clone(), slots, self.store.clone()).start();
        let leftover_shared = Arc::new(LeftoverShared::new(shared.id));
        let leftovers = LeftoverLine::new(
            leftover_shared.clone(),
            self.store.clone(),
            addr.clone(),
            LineSettings {
                hold_s: self.config.offer_hold_s,
                zone: self.config.zone,
                tick: self.auto_tick,
                shared_db: self
                    .config
                    .database
                    .is_postgres()
                    .then(|| self.pool.clone()),
            },
        )
        .start();
        self.registry.add_slots(shared.id, ids);
        let handle = CenterHandle {
            addr,
            shared,
            leftovers,
            leftover_shared,
        };
        self.registry.add_center(handle.clone());
        handle
    }

    async fn persist(&self, write: Write) -> Result<Written, StoreError> {
        self.store
            .send(Persist(write))
            .await
            .map_err(|_| StoreError::Busy)?
    }

    /// The cohort with this id; one another node created a moment ago is read first.
    pub async fn cohort(&self, id: i32) -> Option<CohortHandle> {
        self.found(|r| r.cohort(id)).await
    }

    /// The center with this id (see `cohort`).
    pub async fn center(&self, id: i32) -> Option<CenterHandle> {
        self.found(|r| r.center(id)).await
    }

    /// The center of the slot with this id (see `cohort`).
    pub async fn center_of_slot(&self, id: i32) -> Option<CenterHandle> {
        self.found(|r| r.center_of_slot(id)).await
    }

    /// What `look` finds in the registry, looked for again after one read of the database if
    /// it found nothing.
    async fn found<T>(&self, look: impl Fn(&Registry) -> Option<T>) -> Option<T> {
        if let Some(found) = look(&self.registry) {
            return Some(found);
        }
        self.caught_up().await;
        look(&self.registry)
    }

    /// On a shared database, waits (at most 2 s) for a read of what the other nodes made.
    async fn caught_up(&self) {
        if let Some(sync) = self.sync.get() {
            let _ =
                tokio::time::timeout(std::time::Duration::from_secs(2), sync.send(SyncNow)).await;
        }
    }

    /// Creates a cohort (durably) and starts its queue.
    pub async fn create_cohort(&self, c: NewCohort) -> Result<CohortHandle, StoreError> {
        let row = NewCohortRow {
            name: c.name,
            birth_year_from: c.birth_year_from,
            birth_year_to: c.birth_year_to,
            opens_at: c.opens_at,
            closes_at: c.closes_at,
            vaccine: c.vaccine,
            dose_interval_days: c.dose_interval_days,
            admission_rate_per_s: c.admission_rate_per_s,
            paused: false,
            shuffle_seed: rand::thread_rng().gen::<i64>(),
            // Created already open: nobody can have joined before, so the pre-queue is empty
            // and the first joiner gets a place at once instead of waiting for the next tick.
            pre_queue_count: (c.opens_at <= crate::now_s()).then_some(0),
            created_at: crate::now_s(),
            birth_day_schedule: (!c.birth_day_schedule.is_empty())
                .then(|| serde_json::to_string(&c.birth_day_schedule).unwrap_or_default()),
            join_difficulty: c.join_difficulty,
        };
        let Written::Id(id) = self.persist(Write::CreateCohort(row.clone())).await? else {
            return Err(StoreError::Commit("no id for the new cohort".into()));
        };
        let stored = CohortRow {
            id,
            name: row.name,
            birth_year_from: row.birth_year_from,
            birth_year_to: row.birth_year_to,
            opens_at: row.opens_at,
            closes_at: row.closes_at,
            vaccine: row.vaccine,
            dose_interval_days: row.dose_interval_days,
            admission_rate_per_s: row.admission_rate_per_s,
            paused: false,
            shuffle_seed: row.shuffle_seed,
            tickets_reserved: 0,
            pre_queue_count: row.pre_queue_count,
            admitted_upto: 0,
            created_at: row.created_at,
            birth_day_schedule: row.birth_day_schedule,
            tickets_issued: 0,
            ticket_gaps: "[]".into(),
            pre_queue_gaps: "[]".into(),
            admitted_count: 0,
            admission_clock_ms: 0,
            join_difficulty: row.join_difficulty,
            return_clock_ms: 0,
        };
        let state = QueueState {
            pre_queue_count: row.pre_queue_count.map(|c| c as u64),
            ..QueueState::default()
        };
        Ok(self.start_cohort(&stored, state))
    }

    /// Creates a center (durably) and starts its inventory.
    pub async fn create_center(&self, c: NewCenter) -> Result<CenterHandle, StoreError> {
        let row = NewCenterRow {
            name: c.name.clone(),
            region: c.region.clone(),
            address: c.address.clone(),
            created_at: crate::now_s(),
        };
        let Written::Id(id) = self.persist(Write::CreateCenter(row)).await? else {
            return Err(StoreError::Commit("no id for the new center".into()));
        };
        Ok(self.start_center(
            CenterShared::new(id, c.name, c.region, c.address),
            Vec::new(),
        ))
    }

    /// Adds slots to a center (durably) and makes them bookable.
    pub async fn add_slots(
        &self,
        center: &CenterHandle,
        slots: Vec<NewSlot>,
    ) -> Result<Vec<SlotView>, StoreError> {
        let added = center
            .addr
            .send(AddSlots(slots))
            .await
            .map_err(|_| StoreError::Busy)??;
        self.registry
            .add_slots(center.shared.id, added.iter().map(|s| s.id));
        Ok(added)
    }
}

/// Reads a secret from `dir/name`, or makes one, keeps it there, and says it was new.
fn secret_beside_data(dir: &Path, name: &str) -> Result<(String, bool), String> {
    let path = dir.join(name);
    if let Ok(existing) = std::fs::read_to_string(&path) {
        let existing = existing.trim().to_string();
        if !existing.is_empty() {
            return Ok((existing, false));
        }
    }
    let bytes: [u8; 32] = rand::thread_rng().gen();
    let value: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    std::fs::write(&path, &value).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
    }
    Ok((value, true))
}

pub struct Application {
    port: u16,
    server: Server,
    state: web::Data<AppState>,
    /// The background senders stop once this is dropped (`Notifier::orphaned`).
    _alive: Arc<()>,
}

impl Application {
    /// Builds the server with the identity provider the configuration describes: the external
    /// HTTP service when `IDENTITY_PROVIDER_URL` is set, else the simulated one.
    pub async fn build(config: Config) -> Result<Self, String> {
        let provider = provider_from_settings(&config.identity)?;
        Self::build_with(config, provider, true).await
    }

    /// Builds the server around any identity provider; `auto_tick: false` leaves the
    /// admission clock to `Tick` messages.
    pub async fn build_with(
        config: Config,
        provider: Arc<dyn IdentityProvider>,
        auto_tick: bool,
    ) -> Result<Self, String> {
        let notify = notify_provider(&config.notify);
        Self::build_full(config, provider, auto_tick, notify).await
    }

    /// `build_with`, and any notification provider (made on the notifier's thread).
    pub async fn build_full(
        config: Config,
        provider: Arc<dyn IdentityProvider>,
        auto_tick: bool,
        notify: ProviderFactory,
    ) -> Result<Self, String> {
        // Bind first: a mistaken second start on a busy port touches no database.
        let listener = TcpListener::bind(&config.bind_addr)
            .map_err(|e| format!("cannot listen on {}: {e}", config.bind_addr))?;
        let pool = crate::db::connect(&config.database, &config.pool)?;
        let data_dir = config.database.data_dir();
        let secret = match (&config.secret_key, &data_dir) {
            (Some(s), _) => s.clone(),
            (None, Some(dir)) => secret_beside_data(dir, "secret.key")?.0,
            (None, None) => return Err("SECRET_KEY is required on PostgreSQL".into()),
        };
        let admin_token = match (&config.admin_token, &data_dir) {
            (Some(t), _) => t.clone(),
            (None, Some(dir)) => {
                let (token, new) = secret_beside_data(dir, "admin.token")?;
                if new {
                    // Printed this once, as the contract says; kept in the file beside the data.
                    log::info!(
                        "generated ADMIN_TOKEN (shown once, kept in {}): {token}",
                        dir.join("admin.token").display()
                    );
                } else {
                    log::info!(
                        "admin token read from {}",
                        dir.join("admin.token").display()
                    );
                }
                token
            }
            (None, None) => return Err("ADMIN_TOKEN is required on PostgreSQL".into()),
        };

        let store_actor = BookingStore::new(pool.clone());
        let store_metrics = store_actor.metrics();
        let store = store_actor.start();
        let identity_actor = IdentityPool::new(provider, config.identity.clone());
        let identity_load = identity_actor.load();
        let identity = identity_actor.start();
        let phone_key = match &config.phone_key {
            Some(hex) => PhoneKey::from_hex(hex)?,
            None => PhoneKey::derive(secret.as_bytes()),
        };
        let alive = Arc::new(());
        let notifier_actor = Notifier::new(
            pool.clone(),
            config.node(),
            phone_key.clone(),
            config.notify.clone(),
            config.zone,
            notify,
            Arc::downgrade(&alive),
        );
        let notifier_metrics = notifier_actor.metrics();
        let notifier = notifier_actor.start();
        let per_minute = NonZeroU32::new(config.lookups_per_minute).unwrap_or(NonZeroU32::MIN);
        let metrics = crate::telemetry::Metrics::new(&config.node());
        store_metrics.commit_latency.attach(metrics.histogram(
            "store_commit_seconds",
            "How long a group commit took, to disk.",
        ));
        identity_load.call_latency.attach(metrics.histogram(
            "identity_call_seconds",
            "How long identity provider calls took.",
        ));

        let state = web::Data::new(AppState {
            signer: Signer::new(secret.as_bytes()),
            admin_token,
            registry: Arc::new(Registry::default()),
            store,
            store_metrics,
            identity,
            identity_load,
            pool: pool.clone(),
            lookups: RateLimiter::keyed(Quota::per_minute(per_minute)),
            joins: NonZeroU32::new(config.joins_per_minute)
                .map(|n| RateLimiter::keyed(Quota::per_minute(n))),
            join_pressure: Default::default(),
            http_metrics: HttpMetrics::default(),
            metrics,
            request_log: http::request_log::RequestLog::new(&config.log),
            auto_tick,
            ready: std::sync::atomic::AtomicBool::new(true),
            cluster: Arc::default(),
            sync: std::sync::OnceLock::new(),
            limits: crate::db::connect_counters(&config.database, &config.pool)
                .map(|pool| SharedLimits::new(pool).start()),
            starting: std::sync::Mutex::new(()),
            rebooker: std::sync::OnceLock::new(),
            rebook_metrics: Arc::default(),
            phone_key,
            notifier,
            notifier_metrics,
            config,
        });
        restore(&state, &pool)?;
        // After the centers: a job resumed at once tells them its moves.
        let rebooker = crate::actors::rebooker::Rebooker::new(
            pool.clone(),
            state.store.clone(),
            state.registry.clone(),
            state.rebook_metrics.clone(),
        )
        .start();
        let _ = state.rebooker.set(rebooker);
        // Histogram samples wait in a list until folded into buckets; fold them even when
        // nobody scrapes. A weak reference, so that a stopped application is not kept alive.
        let weak = Arc::downgrade(&state.clone().into_inner());
        actix_web::rt::spawn(async move {
            let mut every = tokio::time::interval(crate::telemetry::UPKEEP_EVERY);
            loop {
                every.tick().await;
                match weak.upgrade() {
                    Some(state) => state.metrics.upkeep(),
                    None => break,
                }
            }
        });
        if state.config.database.is_postgres() {
            // Other nodes may share this database: follow what they and the operators change.
            let sync = ClusterSync::new(
                pool.clone(),
                state.registry.clone(),
                Arc::new(Spawn::new(state.clone())),
                state.cluster.clone(),
                state.config.node(),
            )
            .start();
            let _ = state.sync.set(sync);
        }
        if state.config.demo {
            crate::demo::seed(&state).await?;
        }

        let port = listener.local_addr().map_err(|e| e.to_string())?.port();
        let workers = crate::cores::http_workers(state.config.workers);
        // Off the writer's core when it has one (`crate::cores`); the factory runs on each
        // worker's thread as it starts.
        let http_cores = crate::cores::http_cores();
        let data = state.clone();
        let shed = http::shed::Shed::new(state.clone());
        let timeout = std::time::Duration::from_millis(state.config.request_timeout_ms);
        let server = HttpServer::new(move || {
            if let Some(cores) = http_cores.clone() {
                crate::cores::pin_current_thread(cores);
            }
            App::new()
                .app_data(data.clone())
                // Inside the counting below, so that shed answers are counted as 503s.
                .wrap(shed.clone())
                .wrap_fn(|req, srv| {
                    let data = req.app_data::<web::Data<AppState>>().cloned();
                    let answer = srv.call(req);
                    async move {
                        let res = answer.await?;
                        if let Some(d) = data {
                            d.http_metrics.record(res.status());
                        }
                        Ok(res)
                    }
                })
                // Outermost: every answer, shed ones included, gets its id and its line.
                .wrap_fn(|req, srv| {
                    let started = std::time::Instant::now();
                    let id = http::request_log::request_id(req.headers());
                    let method = req.method().clone();
                    let data = req.app_data::<web::Data<AppState>>().cloned();
                    let answer = srv.call(req);
                    async move {
                        let mut res = answer.await?;
                        res.headers_mut().insert(
                            http::request_log::REQUEST_ID,
                            http::request_log::header_value(&id),
                        );
                        if let Some(d) = data {
                            let req = res.request();
                            d.request_log.finish(
                                &id,
                                &method,
                                || req.match_pattern(),
                                res.status(),
                                started.elapsed(),
                            );
                        }
                        Ok(res)
                    }
                })
                .configure(http::routes)
        })
        // Before `listen`: the hook is taken when a listener is added.
        .on_connect(http::watchdog::on_connect(timeout))
        .listen(listener)
        .map_err(|e| e.to_string())?
        .workers(workers)
        .max_connections(
            connections_allowed(state.config.max_connections)
                .div_ceil(workers)
                .max(1),
        )
        .backlog(4096)
        .client_request_timeout(timeout)
        .client_disconnect_timeout(std::time::Duration::from_secs(2))
        .shutdown_timeout(10)
        .run();
        log::info!(
            "listening on {}:{port}",
            state
                .config
                .bind_addr
                .rsplit_once(':')
                .map_or("", |(h, _)| h)
        );
        Ok(Self {
            port,
            server,
            state,
            _alive: alive,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn state(&self) -> web::Data<AppState> {
        self.state.clone()
    }

    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        // The senders run for as long as the server does.
        let Self { server, _alive, .. } = self;
        server.await
    }

    /// The running server's handle, to stop it.
    pub fn handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }
}

/// `wanted` connections if the process may open enough files for them (two descriptors each:
/// the socket and its watchdog's), raising the soft limit up to the hard one if needed;
/// otherwise as many as fit, with a warning.
fn connections_allowed(wanted: usize) -> usize {
    // Descriptors kept for the database, the log, the listener and the runtime.
    const RESERVED: u64 = 256;
    let need = 2 * wanted as u64 + RESERVED;
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return wanted;
        }
        if limit.rlim_cur < need && limit.rlim_max > limit.rlim_cur {
            let raised = libc::rlimit {
                rlim_cur: need.min(limit.rlim_max),
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    if limit.rlim_cur >= need {
        return wanted;
    }
    let fit = (limit.rlim_cur.saturating_sub(RESERVED) / 2).max(16) as usize;
    log::warn!(
        "MAX_CONNECTIONS {wanted} needs {need} open files, the limit is {}: serving {fit} \
         connections at most (raise `ulimit -n`)",
        limit.rlim_cur
    );
    fit
}

/// What `ClusterSync` asks of the application.
struct Spawn {
    state: web::Data<AppState>,
    /// (when, requests answered) at the last heartbeat, for the rate.
    last: std::sync::Mutex<(std::time::Instant, u64)>,
}

impl Spawn {
    fn new(state: web::Data<AppState>) -> Self {
        let answered = Self::answered(&state);
        Self {
            state,
            last: std::sync::Mutex::new((std::time::Instant::now(), answered)),
        }
    }

    fn answered(state: &AppState) -> u64 {
        let m = &state.http_metrics;
        [
            &m.ok,
            &m.client_errors,
            &m.rate_limited,
            &m.server_errors,
            &m.unavailable,
        ]
        .iter()
        .map(|c| c.load(std::sync::atomic::Ordering::Relaxed))
        .sum()
    }
}

impl Spawner for Spawn {
    fn start_cohort(&self, row: &CohortRow, state: QueueState) {
        self.state.start_cohort(row, state);
    }

    fn start_center(&self, center: CenterShared, slots: Vec<SlotRow>) {
        let slots = slots
            .iter()
            .filter_map(|r| r.slot().map_err(|e| log::error!("{e}")).ok())
            .collect();
        self.state.start_center(center, slots);
    }

    fn node_load(&self) -> NodeLoad {
        use std::sync::atomic::Ordering::Relaxed;
        let s = &self.state;
        let answered = Self::answered(s);
        let now = std::time::Instant::now();
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let secs = now.duration_since(last.0).as_secs_f64();
        let requests_per_s = if secs > 0.0 {
            answered.saturating_sub(last.1) as f64 / secs
        } else {
            0.0
        };
        *last = (now, answered);
        NodeLoad {
            ready: s.ready.load(Relaxed),
            requests_per_s: (requests_per_s * 10.0).round() / 10.0,
            in_flight: s.http_metrics.in_flight.load(Relaxed),
            identity_in_flight: s.identity_load.in_flight.load(Relaxed),
            identity_capacity: s.identity_load.max_in_flight.load(Relaxed),
        }
    }

    fn pass_ttl_s(&self) -> i64 {
        self.state.config.pass_ttl_s
    }
}

/// Starts one actor per cohort and per center as the database left them.
fn restore(state: &AppState, pool: &DbPool) -> Result<(), String> {
    let mut pooled = pool.get().map_err(|e| e.to_string())?;
    let conn = &mut pooled.conn();
    let cohorts = queries::load_cohorts(conn).map_err(|e| e.to_string())?;
    let centers = queries::load_centers(conn).map_err(|e| e.to_string())?;
    let slots = queries::load_slots(conn).map_err(|e| e.to_string())?;
    drop(pooled);
    for row in &cohorts {
        let qs = QueueState::load(pool, row, state.config.pass_ttl_s)?;
        state.start_cohort(row, qs);
    }
    let mut by_center: std::collections::HashMap<i32, Vec<Slot>> = Default::default();
    for row in slots {
        by_center
            .entry(row.center_id)
            .or_default()
            .push(row.slot()?);
    }
    for c in centers {
        let slots = by_center.remove(&c.id).unwrap_or_default();
        state.start_center(CenterShared::new(c.id, c.name, c.region, c.address), slots);
    }
    log::info!(
        "restored {} cohorts and {} centers",
        cohorts.len(),
        state.registry.centers().len()
    );
    Ok(())
}
