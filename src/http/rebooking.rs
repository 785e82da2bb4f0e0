//! Supply changes and rebooking (API 1.1): an operator changes or cancels a slot, or shifts
//! every second dose of a vaccine, and follows the job that moves the bookings. Each handler
//! parses, sends one write to the `BookingStore` (the job itself is driven by the `Rebooker`),
//! and maps the answer.

use super::admin::Admin;
use super::citizen::{read, store_error};
use super::{resource, Body, State};
use crate::actors::booking_store::{Persist, Write, Written};
use crate::actors::center_inventory::{DropSlots, SyncPlaces};
use crate::actors::rebooker::Drive;
use crate::db::models::BookingRow;
use crate::db::rebooking::{self as q, JobRow, PatchRefusal, RebookWrite, RebookWritten};
use crate::domain::booking::BookingView;
use crate::domain::rebooking::{Shift, ShiftRequest, SlotPatch, SlotPatchRequest};
use crate::error::ApiError;
use actix_web::{web, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

/// Under `/api/v1/admin`.
pub fn admin_routes(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/slots/{id}", "PATCH").route(web::patch().to(patch_slot)))
        .service(
            resource("/rebookings", "GET, POST")
                .route(web::get().to(list_jobs))
                .route(web::post().to(start_shift)),
        )
        .service(resource("/rebookings/{id}", "GET").route(web::get().to(get_job)));
}

/// A job, as `POST admin/rebookings` and a slot's change name it.
#[derive(Serialize, ToSchema)]
pub struct JobRef {
    id: i32,
}

/// A rebooking job's progress.
#[derive(Serialize, ToSchema)]
pub struct JobView {
    id: i32,
    #[schema(pattern = "^(running|done)$")]
    state: String,
    /// Bookings the job has to move. While it runs, those found at its start (a booking
    /// cancelled meanwhile drops out); once done, exactly `moved + unmovable`.
    total: i64,
    /// Bookings moved (one dose or both).
    moved: i64,
    /// Bookings for which no place was found: now `needs_rebooking`.
    unmovable: i64,
    /// `shift` (second-dose shift) or `slot` (a slot cancelled or shrunk).
    kind: String,
    vaccine: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    slot_id: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    second_dose_shift_days: Option<i32>,
}

impl From<JobRow> for JobView {
    fn from(j: JobRow) -> Self {
        let shift = j.kind == "shift";
        Self {
            id: j.id,
            state: j.state,
            total: j.total,
            moved: j.moved,
            unmovable: j.unmovable,
            kind: j.kind,
            vaccine: j.vaccine,
            slot_id: j.slot_id,
            second_dose_shift_days: shift.then_some(j.shift_days),
        }
    }
}

/// A slot as changed.
#[derive(Serialize, ToSchema)]
pub struct PatchedSlotView {
    id: i32,
    center_id: i32,
    #[schema(format = Date)]
    date: String,
    start_time: String,
    end_time: String,
    vaccine: String,
    /// The capacity now in force (0 once cancelled).
    capacity: i64,
    /// Places left to book (0 while bookings are being moved out, and once cancelled).
    remaining: i64,
    cancelled: bool,
    /// The job moving the bookings that no longer fit, if any had to move.
    #[serde(skip_serializing_if = "Option::is_none")]
    rebooking: Option<JobRef>,
}

fn today(state: &State) -> String {
    chrono::Utc::now()
        .with_timezone(&state.config.zone)
        .date_naive()
        .to_string()
}

async fn rebook(state: &State, write: RebookWrite) -> Result<RebookWritten, ApiError> {
    match state
        .store
        .send(Persist(Write::Rebook(write)))
        .await?
        .map_err(store_error)?
    {
        Written::Rebook(w) => Ok(w),
        other => {
            log::error!("the store answered a rebooking write with {other:?}");
            Err(ApiError::busy())
        }
    }
}

fn drive(state: &State, job: JobRow) {
    if let Some(r) = state.rebooker.get() {
        r.do_send(Drive(job));
    }
}

/// Changes a slot's capacity or cancels it. Bookings that no longer fit (the latest booked
/// first) are moved by a job, named in `rebooking`.
#[utoipa::path(patch, path = "/api/v1/admin/slots/{id}", operation_id = "admin_patch_slot",
    tag = "admin", security(("admin" = [])), request_body = SlotPatchRequest,
    params(("id" = i32, Path, description = "The slot")),
    responses((status = 200, description = "The slot as changed", body = PatchedSlotView)))]
pub(crate) async fn patch_slot(
    _: Admin,
    state: State,
    path: web::Path<i32>,
    body: Body<SlotPatchRequest>,
) -> Result<HttpResponse, ApiError> {
    let slot_id = path.into_inner();
    let patch = SlotPatch::try_from(body.into_inner())?;
    let asked_at = std::time::Instant::now();
    let written = rebook(
        &state,
        RebookWrite::PatchSlot {
            slot_id,
            capacity: patch.capacity,
            cancel: patch.cancel,
            today: today(&state),
            now: crate::now_s(),
        },
    )
    .await?;
    let RebookWritten::Patched(patched) = written else {
        return Err(ApiError::busy());
    };
    let p = match patched {
        Ok(p) => p,
        Err(PatchRefusal::NotFound) => return Err(ApiError::not_found("slot")),
        Err(PatchRefusal::Cancelled) => {
            return Err(ApiError::conflict(
                "slot_cancelled",
                "this slot is cancelled for good; add a new slot instead",
            ))
        }
    };
    let s = &p.slot;
    if let Some(center) = state.registry.center(s.center_id) {
        if p.cancelled {
            center.addr.do_send(DropSlots(vec![s.id]));
        } else {
            center.addr.do_send(SyncPlaces(
                asked_at,
                vec![(s.id, i64::from(s.capacity), i64::from(s.booked))],
            ));
        }
    }
    if let Some(id) = p.job {
        let job = read(&state, move |c| q::load_job(c, id)).await?;
        if let Some(job) = job {
            drive(&state, job);
        }
    }
    log::info!(
        "slot {} changed: capacity {}, cancelled {}, rebooking job {:?}",
        s.id,
        p.capacity,
        p.cancelled,
        p.job
    );
    let remaining = if p.cancelled || p.job.is_some() {
        0
    } else {
        i64::from(p.capacity - s.booked).max(0)
    };
    Ok(HttpResponse::Ok().json(PatchedSlotView {
        id: s.id,
        center_id: s.center_id,
        date: s.date.clone(),
        start_time: s.start_time.clone(),
        end_time: s.end_time.clone(),
        vaccine: s.vaccine.clone(),
        capacity: i64::from(p.capacity),
        remaining,
        cancelled: p.cancelled,
        rebooking: p.job.map(|id| JobRef { id }),
    }))
}

/// Moves every second dose still ahead of a vaccine's live bookings by some days.
#[utoipa::path(post, path = "/api/v1/admin/rebookings", operation_id = "admin_start_rebooking",
    tag = "admin", security(("admin" = [])), request_body = ShiftRequest,
    responses((status = 202, description = "The job, started", body = JobRef)))]
pub(crate) async fn start_shift(
    _: Admin,
    state: State,
    body: Body<ShiftRequest>,
) -> Result<HttpResponse, ApiError> {
    let shift = Shift::try_from(body.into_inner())?;
    let written = rebook(
        &state,
        RebookWrite::CreateShift {
            vaccine: shift.vaccine,
            days: shift.days,
            today: today(&state),
            now: crate::now_s(),
        },
    )
    .await?;
    let RebookWritten::Created(job) = written else {
        return Err(ApiError::busy());
    };
    let id = job.id;
    log::info!(
        "rebooking job {id}: second doses moved {} days, {} bookings",
        job.shift_days,
        job.total
    );
    drive(&state, job);
    Ok(HttpResponse::Accepted().json(JobRef { id }))
}

/// A rebooking job's progress.
#[utoipa::path(get, path = "/api/v1/admin/rebookings/{id}", operation_id = "admin_get_rebooking",
    tag = "admin", security(("admin" = [])),
    params(("id" = i32, Path, description = "The job")),
    responses((status = 200, description = "The job", body = JobView)))]
pub(crate) async fn get_job(
    _: Admin,
    state: State,
    path: web::Path<i32>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let job = read(&state, move |c| q::load_job(c, id))
        .await?
        .ok_or_else(|| ApiError::not_found("rebooking job"))?;
    Ok(HttpResponse::Ok().json(JobView::from(job)))
}

/// Jobs listed at most (the newest): more than an operator follows in one day.
const LISTED_JOBS: i64 = 100;

/// The latest rebooking jobs, newest first (at most 100), running or done: what an operator
/// follows from any browser or node.
#[utoipa::path(get, path = "/api/v1/admin/rebookings", operation_id = "admin_list_rebookings",
    tag = "admin", security(("admin" = [])),
    responses((status = 200, description = "The latest jobs, newest first", body = Vec<JobView>)))]
pub(crate) async fn list_jobs(_: Admin, state: State) -> Result<HttpResponse, ApiError> {
    let jobs = read(&state, |c| q::latest_jobs(c, LISTED_JOBS)).await?;
    let views: Vec<JobView> = jobs.into_iter().map(JobView::from).collect();
    Ok(HttpResponse::Ok().json(views))
}

/// A booking as lookups show it: with its second dose's own center and its moves.
pub(crate) async fn full_view(
    state: &State,
    row: &BookingRow,
    view: BookingView,
) -> Result<BookingView, ApiError> {
    let id = row.id;
    let (second_center, moves) = read(state, move |c| q::booking_extra(c, id)).await?;
    let mut view = view;
    if let Some(c) = second_center {
        view.second_dose.center_id = c;
    }
    if !moves.is_empty() {
        view.moved = Some(moves);
    }
    Ok(view)
}
