//! Operators' endpoints, behind `Authorization: Bearer <ADMIN_TOKEN>` (compared in constant
//! time): cohorts, centers, slots, the help desk's booking view, and the figures of the rush.

use super::citizen::{booking_view, read, store_error};
use super::{bearer, Body, State};
use crate::actors::cohort_queue::PatchCohort;
use crate::db::queries;
use crate::domain::booking::parse_code;
use crate::domain::cohort::{
    CohortPatch, CohortPatchRequest, CohortRequest, CohortView, NewCohort,
};
use crate::domain::slot::{parse_slots, CenterRequest, NewCenter, SlotsRequest};
use crate::error::ApiError;
use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpRequest, HttpResponse};
use serde::Serialize;
use std::future::{ready, Ready};
use subtle::ConstantTimeEq;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/cohorts", web::post().to(create_cohort))
        .route("/cohorts", web::get().to(list_cohorts))
        .route("/cohorts/{id}", web::patch().to(patch_cohort))
        .route("/centers", web::post().to(create_center))
        .route("/centers", web::get().to(list_centers))
        .route("/centers/{id}/slots", web::post().to(add_slots))
        .route("/bookings/{code}", web::get().to(get_booking))
        .route("/stats", web::get().to(stats));
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

async fn list_cohorts(_: Admin, state: State) -> HttpResponse {
    let list: Vec<CohortView> = state
        .registry
        .cohorts()
        .iter()
        .map(|c| cohort_view(&state, &c.shared))
        .collect();
    HttpResponse::Ok().json(list)
}

async fn patch_cohort(
    _: Admin,
    state: State,
    path: web::Path<i32>,
    body: Body<CohortPatchRequest>,
) -> Result<HttpResponse, ApiError> {
    let cohort = state
        .registry
        .cohort(path.into_inner())
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

async fn list_centers(_: Admin, state: State) -> HttpResponse {
    let list: Vec<_> = state
        .registry
        .centers()
        .iter()
        .map(|c| c.shared.view())
        .collect();
    HttpResponse::Ok().json(list)
}

#[derive(Serialize)]
struct SlotsAnswer {
    slots: Vec<crate::domain::slot::SlotView>,
}

async fn add_slots(
    _: Admin,
    state: State,
    path: web::Path<i32>,
    body: Body<SlotsRequest>,
) -> Result<HttpResponse, ApiError> {
    let center = state
        .registry
        .center(path.into_inner())
        .ok_or_else(|| ApiError::not_found("center"))?;
    let slots = parse_slots(body.into_inner())?;
    let added = state.add_slots(&center, slots).await.map_err(store_error)?;
    log::info!("center {}: {} slots added", center.shared.id, added.len());
    Ok(HttpResponse::Created().json(SlotsAnswer { slots: added }))
}

async fn get_booking(
    _: Admin,
    state: State,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let code = parse_code(&path).ok_or_else(|| ApiError::not_found("booking"))?;
    let (row, masked, _) = read(&state, move |c| queries::find_booking(c, &code))
        .await?
        .ok_or_else(|| ApiError::not_found("booking"))?;
    Ok(HttpResponse::Ok().json(booking_view(&row, masked)))
}

#[derive(Serialize)]
struct CohortStats {
    id: i32,
    waiting: u64,
    admitted: u64,
    verified: u64,
    booked: i64,
    admission_rate_per_s: f64,
    sold_out: bool,
}

#[derive(Serialize)]
struct Stats {
    cohorts: Vec<CohortStats>,
    bookings_confirmed: i64,
    bookings_cancelled: i64,
}

async fn stats(_: Admin, state: State) -> Result<HttpResponse, ApiError> {
    let (per_cohort, confirmed, cancelled) = read(&state, queries::booking_counts).await?;
    let cohorts = state
        .registry
        .cohorts()
        .iter()
        .map(|c| {
            let s = &c.shared;
            CohortStats {
                id: s.id,
                waiting: s.issued().saturating_sub(s.admitted()),
                admitted: s.admitted(),
                verified: s.verified(),
                booked: per_cohort.get(&s.id).copied().unwrap_or(0),
                admission_rate_per_s: s.measured_rate(),
                sold_out: s.is_sold_out(),
            }
        })
        .collect();
    Ok(HttpResponse::Ok().json(Stats {
        cohorts,
        bookings_confirmed: confirmed,
        bookings_cancelled: cancelled,
    }))
}
