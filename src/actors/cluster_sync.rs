//! `ClusterSync`: on a database that several nodes share (PostgreSQL), the actor that keeps
//! this node's actors in step with what the other nodes and the operators changed. Every
//! `SYNC_PERIOD` it reads, in one blocking job off the actors' thread:
//! - the cohorts (settings, the counter of ticket numbers, the opening, the ranges that are
//!   nobody) and each one's admission front and the steps past this node's (`Synced`);
//! - the centers and slots (new ones start here; every slot's places, `SyncPlaces`);
//! - the nodes' heartbeats (this node's written first), for the cluster's stats.
//!
//! Nothing decided here: the database decides what must be decided once (capacity, one live
//! booking per citizen, one identity per pass, the order of the line, each admission step) in
//! the writes themselves; this only brings every node's view of it up to date, within
//! `SYNC_PERIOD` plus one read. A plain periodic read rather than LISTEN/NOTIFY: it needs no
//! connection of its own, cannot miss a message across a reconnection, and a quarter of a
//! second is well within the contract's one second; it costs a few small queries a period.

use super::center_inventory::{AddKnownSlots, CenterShared, DropSlots, SyncPlaces};
use super::cohort_queue::{FrontSynced, QueueState, Synced};
use super::Registry;
use crate::db::models::{CenterRow, CohortRow, NodeRow, SlotRow};
use crate::db::queries::{self, AdmissionState};
use crate::db::DbPool;
use actix::prelude::*;
use futures_util::FutureExt;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// How often a node reads what the others changed.
pub const SYNC_PERIOD: Duration = Duration::from_millis(250);
/// How often a node reads the cohorts' admission fronts (two small reads a cohort): a ticket
/// polled at two nodes 200 ms apart must never see its position grow, so no node's front may
/// lag the database by that much.
pub const FRONT_PERIOD: Duration = Duration::from_millis(50);
/// The longest a waiting room's admission clock waits for a sync's counts once its places
/// are on their way to the centers (should the counts never come).
const SYNC_HOLD_MS: i64 = 1_000;
/// Nodes whose heartbeat is older than this are left out of the stats.
const NODE_SEEN_MS: i64 = 60_000;

/// What this node reports of itself with its heartbeat.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct NodeLoad {
    pub ready: bool,
    pub requests_per_s: f64,
    pub in_flight: u64,
    pub identity_in_flight: u64,
    pub identity_capacity: u64,
}

/// What the sync needs from the application: starting the actors of cohorts and centers that
/// another node created, and this node's load (implemented by `startup::AppState`).
pub trait Spawner: Send + Sync + 'static {
    fn start_cohort(&self, row: &CohortRow, state: QueueState);
    fn start_center(&self, center: CenterShared, slots: Vec<SlotRow>);
    fn node_load(&self) -> NodeLoad;
    fn pass_ttl_s(&self) -> i64;
}

/// The nodes seen in the last minute, as the last sync read them.
#[derive(Debug, Default)]
pub struct ClusterView {
    nodes: RwLock<Vec<NodeRow>>,
}

impl ClusterView {
    pub fn nodes(&self) -> Vec<NodeRow> {
        self.nodes.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

pub struct ClusterSync {
    pool: DbPool,
    registry: Arc<Registry>,
    spawner: Arc<dyn Spawner>,
    view: Arc<ClusterView>,
    node: String,
    busy: bool,
    front_busy: bool,
    syncs: u64,
    /// Requests waiting for the next read to be applied (`SyncNow`).
    asking: Vec<tokio::sync::oneshot::Sender<()>>,
}

/// What one sync read.
struct Read {
    known: Vec<(CohortRow, AdmissionState)>,
    /// Per cohort: the returns admitted while their passes may last, and what the other nodes
    /// heard near the front.
    returns: HashMap<i32, Vec<(u64, i64)>>,
    heard: HashMap<i32, Vec<(u64, String, i64)>>,
    new_cohorts: Vec<(CohortRow, QueueState)>,
    new_centers: Vec<CenterRow>,
    new_slots: Vec<SlotRow>,
    places: Vec<(i32, i32, i32, i32)>,
    /// Slots cancelled (id, center): dropped from the centers that still list them.
    cancelled: Vec<(i32, i32)>,
    nodes: Vec<NodeRow>,
    asked_at: std::time::Instant,
}

/// What one sync asks: this node's heartbeat, and what it already knows.
struct Ask {
    heartbeat: NodeRow,
    /// Known cohorts: id -> this node's admission front.
    cohorts: HashMap<i32, u64>,
    centers: HashSet<i32>,
    slots: HashSet<i32>,
    live_since_ms: i64,
    pass_ttl_s: i64,
    /// Before the read began: what a node changed since then, the read may have missed.
    asked_at: std::time::Instant,
    /// Forget the counts of the shared limits' windows that ended before this (unix s).
    forget_attempts_before: Option<i64>,
    /// Who was heard from here near each cohort's front, to share.
    presence: Vec<queries::PresenceRow>,
}

impl ClusterSync {
    pub fn new(
        pool: DbPool,
        registry: Arc<Registry>,
        spawner: Arc<dyn Spawner>,
        view: Arc<ClusterView>,
        node: String,
    ) -> Self {
        Self {
            pool,
            registry,
            spawner,
            view,
            node,
            busy: false,
            front_busy: false,
            syncs: 0,
            asking: Vec::new(),
        }
    }

    fn ask(&self) -> Ask {
        let now_ms = crate::now_ms();
        let load = self.spawner.node_load();
        let pass_ttl_s = self.spawner.pass_ttl_s();
        Ask {
            heartbeat: NodeRow {
                name: self.node.clone(),
                last_seen_ms: now_ms,
                ready: load.ready,
                stats: serde_json::to_string(&load).unwrap_or_else(|_| "{}".into()),
            },
            cohorts: self
                .registry
                .cohorts()
                .iter()
                .map(|c| (c.shared.id, c.shared.admitted()))
                .collect(),
            centers: self
                .registry
                .centers()
                .iter()
                .map(|c| c.shared.id)
                .collect(),
            slots: self.registry.slot_ids(),
            live_since_ms: now_ms - pass_ttl_s * 1000,
            asked_at: std::time::Instant::now(),
            pass_ttl_s,
            // About once a minute, whichever node: windows are at most the pass lifetime long.
            forget_attempts_before: (self.syncs % 240 == 0)
                .then(|| now_ms / 1000 - 2 * pass_ttl_s.max(600)),
            presence: self
                .registry
                .cohorts()
                .iter()
                .filter_map(|c| {
                    let (from, bits) = c.shared.presence_near_front(now_ms)?;
                    Some((c.shared.id, from as i64, bits, now_ms))
                })
                .collect(),
        }
    }

    /// Applies what was read. The slots' places go to the centers first, and only once every
    /// center has taken them do the cohorts get the counts of bookings per step read in the
    /// same snapshot: a waiting room never counts a place as no longer held before its center
    /// counts it as taken (it would admit a citizen a place ahead). Meanwhile their admission
    /// clocks wait (`hold_for_sync`). Answers once all of it is applied.
    fn apply(&mut self, mut read: Read) -> impl std::future::Future<Output = ()> + 'static {
        let now_ms = crate::now_ms();
        let mut synced = Vec::new();
        for (row, admissions) in read.known {
            if let Some(c) = self.registry.cohort(row.id) {
                c.shared.hold_for_sync(now_ms, SYNC_HOLD_MS);
                let msg = Synced {
                    returns: read.returns.remove(&row.id).unwrap_or_default(),
                    heard_elsewhere: read.heard.remove(&row.id).unwrap_or_default(),
                    row,
                    admissions,
                    asked_at: read.asked_at,
                };
                synced.push((c.addr, msg));
            }
        }
        for (row, state) in read.new_cohorts {
            if self.registry.cohort(row.id).is_none() {
                log::info!("cohort {} was created at another node; serving it", row.id);
                self.spawner.start_cohort(&row, state);
            }
        }
        let mut new_slots: HashMap<i32, Vec<SlotRow>> = HashMap::new();
        for s in read.new_slots {
            new_slots.entry(s.center_id).or_default().push(s);
        }
        for c in read.new_centers {
            if self.registry.center(c.id).is_none() {
                let slots = new_slots.remove(&c.id).unwrap_or_default();
                let shared = CenterShared::new(c.id, c.name, c.region, c.address);
                self.spawner.start_center(shared, slots);
            }
        }
        let mut taken: Vec<futures_util::future::BoxFuture<'static, ()>> = Vec::new();
        for (center_id, slots) in new_slots {
            if let Some(center) = self.registry.center(center_id) {
                self.registry
                    .add_slots(center_id, slots.iter().map(|s| s.id));
                taken.push(center.addr.send(AddKnownSlots(slots)).map(drop).boxed());
            }
        }
        let mut places: HashMap<i32, Vec<(i32, i64, i64)>> = HashMap::new();
        for (id, center, capacity, booked) in read.places {
            places
                .entry(center)
                .or_default()
                .push((id, i64::from(capacity), i64::from(booked)));
        }
        for (center_id, slots) in places {
            if let Some(center) = self.registry.center(center_id) {
                let sync = SyncPlaces(read.asked_at, slots);
                taken.push(center.addr.send(sync).map(drop).boxed());
            }
        }
        let mut cancelled: HashMap<i32, Vec<i32>> = HashMap::new();
        for (id, center) in read.cancelled {
            cancelled.entry(center).or_default().push(id);
        }
        for (center_id, ids) in cancelled {
            if let Some(center) = self.registry.center(center_id) {
                center.addr.do_send(DropSlots(ids));
            }
        }
        *self.view.nodes.write().unwrap_or_else(|e| e.into_inner()) = read.nodes;
        async move {
            futures_util::future::join_all(taken).await;
            for (addr, msg) in synced {
                addr.do_send(msg);
            }
        }
    }
}

/// The cohorts' fronts, the steps past `fronts` (id, this node's front) and the ranges of
/// numbers that are nobody.
fn read_fronts(pool: &DbPool, fronts: &[(i32, u64)]) -> Result<Vec<(i32, AdmissionState)>, String> {
    let mut pooled = pool.get().map_err(|e| e.to_string())?;
    let conn = &mut pooled.conn();
    let mut out = Vec::new();
    for (id, front) in fronts {
        let state = queries::admission_state(conn, *id, *front as i64, i64::MAX)
            .map_err(|e| e.to_string())?;
        out.push((*id, state));
    }
    Ok(out)
}

/// The blocking part of a sync: every read, on one pooled connection.
fn read(pool: &DbPool, ask: Ask) -> Result<Read, String> {
    let err = |e: diesel::result::Error| e.to_string();
    let mut pooled = pool.get().map_err(|e| e.to_string())?;
    let conn = &mut pooled.conn();
    queries::heartbeat(conn, &ask.heartbeat).map_err(err)?;
    if let Some(before) = ask.forget_attempts_before {
        queries::forget_attempts(conn, before).map_err(err)?;
    }
    let nodes =
        queries::nodes_seen(conn, ask.heartbeat.last_seen_ms - NODE_SEEN_MS).map_err(err)?;
    let now_ms = ask.heartbeat.last_seen_ms;
    queries::share_presence(conn, &ask.heartbeat.name, &ask.presence).map_err(err)?;
    let mut heard: HashMap<i32, Vec<(u64, String, i64)>> = HashMap::new();
    for (id, from, bits, at) in
        queries::presence_of_others(conn, &ask.heartbeat.name, now_ms - 2_000).map_err(err)?
    {
        heard.entry(id).or_default().push((from as u64, bits, at));
    }
    let mut returns: HashMap<i32, Vec<(u64, i64)>> = HashMap::new();
    for (id, qidx, at) in queries::returns_since(conn, ask.live_since_ms).map_err(err)? {
        returns.entry(id).or_default().push((qidx, at));
    }
    // The places and the cohorts' counts of bookings per step in one snapshot: a booking
    // counts in both or in neither (a booking committed between two reads would count as no
    // longer held but still bookable, and admission would run a place ahead).
    let (places, cancelled, known, fresh) = pooled
        .snapshot(|conn| {
            let places = queries::slot_places(conn)?;
            let cancelled = crate::db::rebooking::cancelled_slots(conn)?;
            let mut known = Vec::new();
            let mut fresh = Vec::new();
            for row in queries::load_cohorts(conn)? {
                match ask.cohorts.get(&row.id) {
                    Some(front) => {
                        let state = queries::admission_state(
                            conn,
                            row.id,
                            *front as i64,
                            ask.live_since_ms,
                        )?;
                        known.push((row, state));
                    }
                    None => fresh.push(row),
                }
            }
            Ok((places, cancelled, known, fresh))
        })
        .map_err(err)?;
    drop(pooled);
    let mut new_cohorts = Vec::new();
    for row in fresh {
        let state = QueueState::load(pool, &row, ask.pass_ttl_s)?;
        new_cohorts.push((row, state));
    }
    let mut pooled = pool.get().map_err(|e| e.to_string())?;
    let conn = &mut pooled.conn();
    let new_centers: Vec<CenterRow> = queries::load_centers(conn)
        .map_err(err)?
        .into_iter()
        .filter(|c| !ask.centers.contains(&c.id))
        .collect();
    let unknown: Vec<i32> = places
        .iter()
        .map(|p| p.0)
        .filter(|id| !ask.slots.contains(id))
        .collect();
    let new_slots = if unknown.is_empty() {
        Vec::new()
    } else {
        queries::slots_by_ids(conn, &unknown).map_err(err)?
    };
    Ok(Read {
        known,
        returns,
        heard,
        new_cohorts,
        new_centers,
        new_slots,
        places,
        cancelled,
        nodes,
        asked_at: ask.asked_at,
    })
}

impl Actor for ClusterSync {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(FRONT_PERIOD, |act, ctx| {
            if act.front_busy {
                return;
            }
            act.front_busy = true;
            let fronts: Vec<(i32, u64)> = act
                .registry
                .cohorts()
                .iter()
                .map(|c| (c.shared.id, c.shared.admitted()))
                .collect();
            let pool = act.pool.clone();
            let job = tokio::task::spawn_blocking(move || read_fronts(&pool, &fronts));
            ctx.spawn(job.into_actor(act).map(|joined, act, _| {
                act.front_busy = false;
                if let Ok(Ok(fronts)) = joined {
                    for (id, state) in fronts {
                        if let Some(c) = act.registry.cohort(id) {
                            c.addr.do_send(FrontSynced(state));
                        }
                    }
                }
            }));
        });
        ctx.run_interval(SYNC_PERIOD, |act, ctx| act.sync(ctx));
    }
}

/// Read now, and answer once what was read is applied: a request naming a cohort, center or
/// slot this node does not know yet (created at another node a moment ago) waits for it
/// rather than answering 404, so an operator's next call through the balancer finds what the
/// last one made.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SyncNow;

impl Handler<SyncNow> for ClusterSync {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: SyncNow, ctx: &mut Context<Self>) -> Self::Result {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.asking.push(tx);
        self.sync(ctx);
        Box::pin(async move {
            let _ = rx.await;
        })
    }
}

impl ClusterSync {
    /// Starts a read unless one is on its way; those who asked before it began are answered
    /// when it is applied, the others by the next one, started at once.
    fn sync(&mut self, ctx: &mut Context<Self>) {
        if self.busy {
            return;
        }
        self.busy = true;
        let riders = std::mem::take(&mut self.asking);
        let ask = self.ask();
        self.syncs += 1;
        let pool = self.pool.clone();
        let job = tokio::task::spawn_blocking(move || read(&pool, ask));
        let applied = job.into_actor(self).then(|joined, act, _| {
            let done: futures_util::future::LocalBoxFuture<'static, ()> = match joined {
                Ok(Ok(read)) => act.apply(read).boxed_local(),
                Ok(Err(e)) => {
                    log::warn!("cluster sync: {e}");
                    async {}.boxed_local()
                }
                Err(e) => {
                    log::error!("cluster sync thread: {e}");
                    async {}.boxed_local()
                }
            };
            done.into_actor(act)
        });
        ctx.spawn(applied.map(move |(), act, ctx| {
            act.busy = false;
            for r in riders {
                let _ = r.send(());
            }
            if !act.asking.is_empty() {
                act.sync(ctx);
            }
        }));
    }
}
