//! Operators' endpoints, behind `Authorization: Bearer <ADMIN_TOKEN>` (compared in constant
//! time): cohorts, centers, slots, the help desk's booking view, and the figures of the rush.

use super::citizen::{booking_view, read, store_error};
use super::{bearer, resource, Body, State};
use crate::actors::cluster_sync::NodeLoad;
use crate::actors::cohort_queue::PatchCohort;
use crate::db::queries;
use crate::domain::booking::parse_code;
use crate::domain::booking::BookingView;
use crate::domain::cohort::{
    CohortPatch, CohortPatchRequest, CohortRequest, CohortView, NewCohort,
};
use crate::domain::slot::{
    parse_slots, CenterRequest, CenterView, NewCenter, SlotView, SlotsRequest,
};
use crate::error::ApiError;
use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpRequest, HttpResponse};
use serde::Serialize;
use std::future::{ready, Ready};
use subtle::ConstantTimeEq;
use utoipa::ToSchema;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        resource("/cohorts", "GET, POST")
            .route(web::post().to(create_cohort))
            .route(web::get().to(list_cohorts)),
    )
    .service(resource("/cohorts/{id}", "PATCH").route(web::patch().to(patch_cohort)))
    .service(
        resource("/centers", "GET, POST")
            .route(web::post().to(create_center))
            .route(web::get().to(list_centers)),
    )
    .service(resource("/centers/{id}/slots", "POST").route(web::post().to(add_slots)))
    .service(resource("/bookings/{code}", "GET").route(web::get().to(get_booking)))
    .service(resource("/stats", "GET").route(web::get().to(stats)));
}

/// Proof that the request carries the admin token. Listed first in every admin handler, so
/// that nothing of an unauthenticated request is read.
pub struct Admin;

impl FromRequest for Admin {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let expected = req.app_data::<State>().map(|s| s.admin_token.as_bytes());
        let ok = match (bearer(req), expected) {
            (Some(given), Some(expected)) => bool::from(given.as_bytes().ct_eq(expected)),
            _ => false,
        };
        ready(if ok {
            Ok(Admin)
        } else {
            Err(ApiError::unauthorized(
                "unauthorized",
                "the admin token is missing or wrong",
            ))
        })
    }
}

fn cohort_view(state: &State, shared: &crate::actors::cohort_queue::CohortShared) -> CohortView {
    CohortView::new(
        &shared.cohort(),
        shared.state(crate::now_s()),
        state.config.zone,
    )
}

/// Creates a cohort.
#[utoipa::path(post, path = "/api/v1/admin/cohorts", operation_id = "admin_create_cohort",
    tag = "admin", security(("admin" = [])), request_body = CohortRequest,
    responses((status = 201, description = "The cohort, with `id`", body = CohortView)))]
async fn create_cohort(
    _: Admin,
    state: State,
    body: Body<CohortRequest>,
) -> Result<HttpResponse, ApiError> {
    let new = NewCohort::try_from(body.into_inner())?;
    let handle = state.create_cohort(new).await.map_err(store_error)?;
    log::info!("cohort {} created", handle.shared.id);
    Ok(HttpResponse::Created().json(cohort_view(&state, &handle.shared)))
}

/// Every cohort.
#[utoipa::path(get, path = "/api/v1/admin/cohorts", operation_id = "admin_list_cohorts",
    tag = "admin", security(("admin" = [])),
    responses((status = 200, description = "The cohorts", body = Vec<CohortView>)))]
async fn list_cohorts(_: Admin, state: State) -> HttpResponse {
    let list: Vec<CohortView> = state
        .registry
        .cohorts()
        .iter()
        .map(|c| cohort_view(&state, &c.shared))
        .collect();
    HttpResponse::Ok().json(list)
}

/// Changes a cohort's rate, closing time or pause.
#[utoipa::path(patch, path = "/api/v1/admin/cohorts/{id}", operation_id = "admin_patch_cohort",
    tag = "admin", security(("admin" = [])), request_body = CohortPatchRequest,
    params(("id" = i32, Path, description = "The cohort")),
    responses((status = 200, description = "The cohort as changed", body = CohortView)))]
async fn patch_cohort(
    _: Admin,
    state: State,
    path: web::Path<i32>,
    body: Body<CohortPatchRequest>,
) -> Result<HttpResponse, ApiError> {
    let cohort = state
        .cohort(path.into_inner())
        .await
        .ok_or_else(|| ApiError::not_found("cohort"))?;
    let patch = CohortPatch::try_from(body.into_inner())?;
    let current = cohort.shared.cohort();
    if patch.closes_at.is_some_and(|c| c <= current.opens_at) {
        return Err(ApiError::validation("closes_at must be after opens_at"));
    }
    cohort
        .addr
        .send(PatchCohort(patch))
        .await?
        .map_err(store_error)?;
    log::info!("cohort {} changed", cohort.shared.id);
    Ok(HttpResponse::Ok().json(cohort_view(&state, &cohort.shared)))
}

/// Creates a vaccination center.
#[utoipa::path(post, path = "/api/v1/admin/centers", operation_id = "admin_create_center",
    tag = "admin", security(("admin" = [])), request_body = CenterRequest,
    responses((status = 201, description = "The center, with `id`", body = CenterView)))]
async fn create_center(
    _: Admin,
    state: State,
    body: Body<CenterRequest>,
) -> Result<HttpResponse, ApiError> {
    let new = NewCenter::try_from(body.into_inner())?;
    let handle = state.create_center(new).await.map_err(store_error)?;
    log::info!("center {} created", handle.shared.id);
    Ok(HttpResponse::Created().json(handle.shared.view()))
}

/// Every center.
#[utoipa::path(get, path = "/api/v1/admin/centers", operation_id = "admin_list_centers",
    tag = "admin", security(("admin" = [])),
    responses((status = 200, description = "The centers", body = Vec<CenterView>)))]
async fn list_centers(_: Admin, state: State) -> HttpResponse {
    let list: Vec<_> = state
        .registry
        .centers()
        .iter()
        .map(|c| c.shared.view())
        .collect();
    HttpResponse::Ok().json(list)
}

#[derive(Serialize, ToSchema)]
pub(crate) struct SlotsAnswer {
    slots: Vec<SlotView>,
}

/// Adds slots to a center.
#[utoipa::path(post, path = "/api/v1/admin/centers/{id}/slots", operation_id = "admin_add_slots",
    tag = "admin", security(("admin" = [])), request_body = SlotsRequest,
    params(("id" = i32, Path, description = "The center")),
    responses((status = 201, description = "The slots added, with their `id`", body = SlotsAnswer)))]
async fn add_slots(
    _: Admin,
    state: State,
    path: web::Path<i32>,
    body: Body<SlotsRequest>,
) -> Result<HttpResponse, ApiError> {
    let center = state
        .center(path.into_inner())
        .await
        .ok_or_else(|| ApiError::not_found("center"))?;
    let slots = parse_slots(body.into_inner())?;
    let added = state.add_slots(&center, slots).await.map_err(store_error)?;
    log::info!("center {}: {} slots added", center.shared.id, added.len());
    Ok(HttpResponse::Created().json(SlotsAnswer { slots: added }))
}

/// A booking by code, for the help desk (not rate-limited).
#[utoipa::path(get, path = "/api/v1/admin/bookings/{code}", operation_id = "admin_get_booking",
    tag = "admin", security(("admin" = [])),
    params(("code" = String, Path, description = "The booking code")),
    responses((status = 200, description = "The booking, with its state", body = BookingView)))]
async fn get_booking(
    _: Admin,
    state: State,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let code = parse_code(&path).ok_or_else(|| ApiError::not_found("booking"))?;
    let (row, masked, _) = read(&state, move |c| queries::find_booking(c, &code))
        .await?
        .ok_or_else(|| ApiError::not_found("booking"))?;
    let view = booking_view(&row, masked);
    let view = super::rebooking::full_view(&state, &row, view).await?;
    Ok(HttpResponse::Ok().json(view))
}

#[derive(Serialize, ToSchema)]
pub(crate) struct CohortStats {
    id: i32,
    waiting: u64,
    admitted: u64,
    verified: u64,
    booked: i64,
    admission_rate_per_s: f64,
    sold_out: bool,
}

/// A node seen in the last minute.
#[derive(Serialize, ToSchema)]
pub(crate) struct NodeStats {
    name: String,
    ready: bool,
    /// When the node last answered for itself (RFC 3339).
    last_seen: String,
    /// Requests answered per second, over the node's last heartbeat period.
    requests_per_s: f64,
    /// Citizens' requests in flight at the node.
    in_flight: u64,
    /// Identity checks in flight at the node, and the most it lets run at once.
    identity_in_flight: u64,
    identity_capacity: u64,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct Stats {
    cohorts: Vec<CohortStats>,
    bookings_confirmed: i64,
    bookings_cancelled: i64,
    nodes: Vec<NodeStats>,
}

/// The figures of the rush.
#[utoipa::path(get, path = "/api/v1/admin/stats", operation_id = "admin_stats",
    tag = "admin", security(("admin" = [])),
    responses((status = 200, description = "Per cohort and overall", body = Stats)))]
async fn stats(_: Admin, state: State) -> Result<HttpResponse, ApiError> {
    let (per_cohort, confirmed, cancelled) = read(&state, queries::booking_counts).await?;
    let shared_database = state.config.database.is_postgres();
    // Passes claimed at every node, on a shared database (each node counts only its own).
    let verified = if shared_database {
        Some(read(&state, queries::pass_claims_per_cohort).await?)
    } else {
        None
    };
    let cohorts = state
        .registry
        .cohorts()
        .iter()
        .map(|c| {
            let s = &c.shared;
            CohortStats {
                id: s.id,
                waiting: s.waiting(),
                admitted: s.admitted_people(),
                verified: match &verified {
                    Some(v) => v.get(&s.id).copied().unwrap_or(0) as u64,
                    None => s.verified(),
                },
                booked: per_cohort.get(&s.id).copied().unwrap_or(0),
                admission_rate_per_s: s.measured_rate(),
                sold_out: s.is_sold_out(),
            }
        })
        .collect();
    let time = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .unwrap_or_default()
            .with_timezone(&state.config.zone)
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, false)
    };
    let nodes = if shared_database {
        // The heartbeats of the nodes on this database (`ClusterSync`).
        state
            .cluster
            .nodes()
            .into_iter()
            .map(|n| {
                let load: NodeLoad = serde_json::from_str(&n.stats).unwrap_or_default();
                NodeStats {
                    name: n.name,
                    ready: n.ready,
                    last_seen: time(n.last_seen_ms),
                    requests_per_s: load.requests_per_s,
                    in_flight: load.in_flight,
                    identity_in_flight: load.identity_in_flight,
                    identity_capacity: load.identity_capacity,
                }
            })
            .collect()
    } else {
        use std::sync::atomic::Ordering::Relaxed;
        vec![NodeStats {
            name: state.config.node(),
            ready: state.ready.load(Relaxed),
            last_seen: time(crate::now_ms()),
            requests_per_s: 0.0,
            in_flight: state.http_metrics.in_flight.load(Relaxed),
            identity_in_flight: state.identity_load.in_flight.load(Relaxed),
            identity_capacity: state.identity_load.max_in_flight.load(Relaxed),
        }]
    };
    Ok(HttpResponse::Ok().json(Stats {
        cohorts,
        bookings_confirmed: confirmed,
        bookings_cancelled: cancelled,
        nodes,
    }))
}
