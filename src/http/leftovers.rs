//! Leftover doses (API 1.1): operators post a center's leftovers of the day, citizens list
//! them, sign up for up to 5 centers and take or decline the offer they are made. Each
//! handler parses, sends one message to the center's `LeftoverLine` (or reads the database),
//! and maps the answer. Nothing here touches the cohorts' waiting rooms.

use super::admin::Admin;
use super::citizen::{booking_view, read, store_error};
use super::{bearer, resource, Body, State};
use crate::actors::center_inventory::Release;
use crate::actors::leftovers::{Accept, AcceptError, Dispatch, Leave, PostLeftovers, SignUp};
use crate::db::leftovers::{self as q, NewEntry, SignUpOutcome};
use crate::db::models::NewCitizenRow;
use crate::domain::cohort::format_instant;
use crate::domain::leftover::{
    day_of, end_of_day, LeftoverListing, LeftoverRequest, LeftoverView, NewLeftoverDoses,
    OfferView, WaitlistAnswer, WaitlistLeft, WaitlistRequest, WaitlistStatus,
};
use crate::domain::tokens::Entry;
use crate::error::ApiError;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use utoipa::IntoParams;

/// Under `/api/v1/admin`.
pub fn admin_routes(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/centers/{id}/leftovers", "POST").route(web::post().to(post_leftovers)));
}

/// Under `/api/v1`.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/leftovers", "GET").route(web::get().to(list_leftovers)))
        .service(
            resource("/leftovers/waitlist", "GET, POST, DELETE")
                .route(web::post().to(sign_up))
                .route(web::get().to(status))
                .route(web::delete().to(leave)),
        )
        .service(resource("/leftovers/waitlist/accept", "POST").route(web::post().to(accept)))
        .service(resource("/leftovers/waitlist/decline", "POST").route(web::post().to(decline)));
}

fn today(state: &State, now: i64) -> String {
    day_of(now, state.config.zone).to_string()
}

/// Posts doses usable today at a center until `until`; they are offered at once. `until` must
/// be later than now and within today in the server's zone, else 422 `validation` (a rule of
/// the clock that JSON Schema cannot state).
#[utoipa::path(post, path = "/api/v1/admin/centers/{id}/leftovers", operation_id = "admin_post_leftovers",
    tag = "admin", security(("admin" = [])), request_body = LeftoverRequest,
    params(("id" = i32, Path, description = "The center")),
    responses((status = 201, description = "The leftovers, with `id`", body = LeftoverView)))]
async fn post_leftovers(
    _: Admin,
    state: State,
    path: web::Path<i32>,
    body: Body<LeftoverRequest>,
) -> Result<HttpResponse, ApiError> {
    let center = state
        .center(path.into_inner())
        .await
        .ok_or_else(|| ApiError::not_found("center"))?;
    let now = crate::now_s();
    let doses = NewLeftoverDoses::parse(body.into_inner(), now, state.config.zone)?;
    let row = center
        .leftovers
        .send(PostLeftovers {
            vaccine: doses.vaccine,
            doses: doses.doses,
            until: doses.until,
            now,
        })
        .await?
        .map_err(store_error)?;
    log::info!(
        "center {}: {} leftover doses posted",
        center.shared.id,
        row.doses
    );
    Ok(HttpResponse::Created().json(LeftoverView {
        id: row.id,
        center_id: row.center_id,
        vaccine: row.vaccine.clone(),
        doses: i64::from(row.doses),
        until: format_instant(row.until(), state.config.zone),
        remaining: row.remaining(),
    }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LeftoverQuery {
    /// Only the centers of this region.
    region: Option<String>,
}

/// Centers with leftover doses today, and how many are neither booked nor offered.
#[utoipa::path(get, path = "/api/v1/leftovers", operation_id = "list_leftovers", tag = "leftovers",
    params(LeftoverQuery),
    responses((status = 200, description = "Leftovers with doses left today", body = Vec<LeftoverListing>)))]
async fn list_leftovers(state: State, q: web::Query<LeftoverQuery>) -> HttpResponse {
    let region = q.region.as_deref().map(str::trim).filter(|r| !r.is_empty());
    let now = crate::now_s();
    let day = today(&state, now);
    let list: Vec<LeftoverListing> = state
        .registry
        .centers()
        .iter()
        .filter(|c| region.is_none_or(|r| c.shared.region == r))
        .flat_map(|c| {
            c.leftover_shared
                .open(&day, now)
                .into_iter()
                .map(|l| LeftoverListing {
                    center_id: c.shared.id,
                    name: c.shared.name.clone(),
                    region: c.shared.region.clone(),
                    vaccine: l.vaccine.clone(),
                    remaining: l.remaining(),
                    until: format_instant(l.until(), state.config.zone),
                })
                .collect::<Vec<_>>()
        })
        .collect();
    HttpResponse::Ok().json(list)
}

fn entry(state: &State, req: &HttpRequest, now: i64) -> Result<Entry, ApiError> {
    bearer(req)
        .and_then(|t| state.signer.check_entry(t, now).ok())
        .ok_or_else(|| {
            ApiError::unauthorized(
                "invalid_entry",
                "a valid sign-up token of today is required",
            )
        })
}

/// Signs a verified citizen (of any cohort) up for leftovers at 1 to 5 centers. An id no
/// center has is 404 `not_found`, one beyond the range of ids 422 `validation`; an id given
/// twice counts once.
#[utoipa::path(post, path = "/api/v1/leftovers/waitlist", operation_id = "leftovers_sign_up",
    tag = "leftovers", security(("session" = [])), request_body = WaitlistRequest,
    responses((status = 201, description = "Signed up; `entry` is this sign-up's bearer token", body = WaitlistAnswer)))]
async fn sign_up(
    state: State,
    req: HttpRequest,
    body: Body<WaitlistRequest>,
) -> Result<HttpResponse, ApiError> {
    let now = crate::now_s();
    let session = bearer(&req)
        .and_then(|t| state.signer.check_session(t, now).ok())
        .ok_or_else(|| {
            ApiError::unauthorized("invalid_session", "a valid, unexpired session is required")
        })?;
    let ids = body.centers()?;
    let mut centers = Vec::with_capacity(ids.len());
    for id in &ids {
        let center = state
            .center(*id)
            .await
            .ok_or_else(|| ApiError::not_found("center"))?;
        centers.push(center);
    }
    let entry = NewEntry {
        citizen_key: session.citizen_key.clone(),
        cohort_id: session.cohort_id,
        ticket_seq: session.seq as i64,
        masked_name: session.masked_name.clone(),
        birth_date: session.birth_date.clone(),
        day: today(&state, now),
        created_at: now,
        phone_sealed: session.phone.clone(),
    };
    let outcome = centers[0]
        .leftovers
        .send(SignUp {
            entry,
            centers: ids,
        })
        .await?
        .map_err(store_error)?;
    let (id, position) = match outcome {
        SignUpOutcome::Entry { id, position } => (id, position),
        SignUpOutcome::AlreadyWaiting => {
            return Err(ApiError::conflict(
                "already_waiting",
                "you are already signed up for leftover doses today",
            ))
        }
    };
    for other in &centers[1..] {
        other.leftovers.do_send(Dispatch);
    }
    let token = state.signer.entry(&Entry {
        id,
        expires_at: end_of_day(now, state.config.zone),
    });
    Ok(HttpResponse::Created().json(WaitlistAnswer {
        entry: token,
        state: "waiting",
        position,
    }))
}

/// Where a sign-up stands: waiting (and where), offered, booked, or ended.
#[utoipa::path(get, path = "/api/v1/leftovers/waitlist", operation_id = "leftovers_status",
    tag = "leftovers", security(("entry" = [])),
    responses((status = 200, description = "The sign-up's state", body = WaitlistStatus)))]
async fn status(state: State, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let now = crate::now_s();
    let e = entry(&state, &req, now)?;
    let found = read(&state, move |c| q::entry_status(c, e.id))
        .await?
        .ok_or_else(|| ApiError::unauthorized("invalid_entry", "no such sign-up"))?;
    let mut view = WaitlistStatus {
        state: found.state.clone(),
        position: found.position,
        offer: None,
        booking: found
            .booking
            .as_ref()
            .map(|b| booking_view(b, found.masked_name.clone())),
    };
    let live = found.state == q::ENTRY_WAITING || found.state == q::ENTRY_OFFERED;
    if live && found.day != today(&state, now) {
        view.state = q::ENTRY_EXPIRED.into();
        view.position = 0;
    } else if let Some((offer, vaccine, _)) = &found.offer {
        if now >= offer.expires_at {
            // The hold is over: lapsed, whether or not the line has run since.
            view.state = q::ENTRY_LAPSED.into();
            if let Some(center) = state.registry.center(offer.center_id) {
                center.leftovers.do_send(Dispatch);
            }
        } else {
            view.offer = Some(OfferView {
                center_id: offer.center_id,
                vaccine: vaccine.clone(),
                expires_at: format_instant(offer.expires_at, state.config.zone),
            });
        }
    }
    Ok(HttpResponse::Ok().json(view))
}

/// Takes the offer: the first dose today at its center, the second by the usual rule there.
#[utoipa::path(post, path = "/api/v1/leftovers/waitlist/accept", operation_id = "leftovers_accept",
    tag = "leftovers", security(("entry" = [])),
    responses((status = 201, description = "Booked: on disk before this answer", body = crate::domain::booking::BookingView)))]
async fn accept(state: State, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let now = crate::now_s();
    let e = entry(&state, &req, now)?;
    let no_offer = || ApiError::conflict("no_offer", "no dose is offered to you now");
    let (offer, who) = read(&state, move |c| {
        Ok((q::held_offer(c, e.id)?, q::entry_who(c, e.id)?))
    })
    .await?;
    let (Some((offer, vaccine, start_time)), Some(who)) = (offer, who) else {
        return Err(no_offer());
    };
    if now >= offer.expires_at {
        return Err(no_offer());
    }
    let center = state.center(offer.center_id).await.ok_or_else(no_offer)?;
    let (citizen_key, cohort_id, ticket_seq, masked_name, birth_date, _) = who;
    // The usual interval of the offered vaccine: the citizen's cohort's if it is that vaccine,
    // else that of a cohort vaccinating with it.
    let cohorts = state.registry.cohorts();
    let own = cohorts.iter().find(|c| c.shared.id == cohort_id);
    let interval = own
        .filter(|c| c.shared.cohort().vaccine == vaccine)
        .or_else(|| {
            cohorts
                .iter()
                .find(|c| c.shared.cohort().vaccine == vaccine)
        })
        .or(own)
        .map(|c| c.shared.cohort().dose_interval_days)
        .unwrap_or(28);
    let accepted = center
        .leftovers
        .send(Accept {
            entry_id: e.id,
            offer_slot_id: offer.slot_id,
            vaccine,
            start_time,
            interval_days: interval.max(0) as u32,
            citizen: NewCitizenRow {
                key: citizen_key,
                masked_name: masked_name.clone(),
                birth_date,
                created_at: now,
                // The sign-up's, filled in by the store (`db::leftovers::accept`).
                phone_sealed: None,
            },
            cohort_id,
            ticket_seq: ticket_seq.max(0) as u64,
            now,
        })
        .await?
        .map_err(|e| match e {
            AcceptError::NoOffer => no_offer(),
            AcceptError::NoSecondDoseSlot => ApiError::conflict(
                "no_second_dose_slot",
                "no place for the second dose at this center",
            ),
            AcceptError::Store(e) => store_error(e),
        })?;
    if let Some(old) = &accepted.cancelled {
        if let Some(c) = state.center(old.center_id).await {
            c.addr.do_send(Release {
                first_slot_id: old.first_slot_id,
                second_slot_id: old.second_slot_id,
            });
        }
        // A rebooking may have moved its second dose to another center: that center gives
        // its place back too (as a citizen's cancellation does).
        if let Some(other) = state.registry.center_of_slot(old.second_slot_id) {
            if other.shared.id != old.center_id {
                other
                    .addr
                    .do_send(crate::actors::center_inventory::ReleaseSecondDose(
                        old.second_slot_id,
                    ));
            }
        }
    }
    Ok(HttpResponse::Created().json(booking_view(&accepted.booking, masked_name)))
}

/// Ends the sign-up; an offer it held passes to the next citizen at once.
#[utoipa::path(post, path = "/api/v1/leftovers/waitlist/decline", operation_id = "leftovers_decline",
    tag = "leftovers", security(("entry" = [])),
    responses((status = 200, description = "The sign-up is cancelled", body = WaitlistLeft)))]
async fn decline(state: State, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let now = crate::now_s();
    let e = entry(&state, &req, now)?;
    let (offer, centers) = read(&state, move |c| {
        Ok((q::held_offer(c, e.id)?, q::entry_centers(c, e.id)?))
    })
    .await?;
    let center_id = offer
        .map(|(o, ..)| o.center_id)
        .or_else(|| centers.first().copied())
        .ok_or_else(|| ApiError::unauthorized("invalid_entry", "no such sign-up"))?;
    let center = state
        .center(center_id)
        .await
        .ok_or_else(|| ApiError::unauthorized("invalid_entry", "no such sign-up"))?;
    let left = center
        .leftovers
        .send(Leave { entry_id: e.id })
        .await?
        .map_err(store_error)?;
    if !left {
        return Err(ApiError::conflict(
            "no_offer",
            "this sign-up has ended already (booked, lapsed or expired)",
        ));
    }
    Ok(HttpResponse::Ok().json(WaitlistLeft { state: "cancelled" }))
}

/// `DELETE /api/v1/leftovers/waitlist`: the same as a decline.
#[utoipa::path(delete, path = "/api/v1/leftovers/waitlist", operation_id = "leftovers_leave",
    tag = "leftovers", security(("entry" = [])),
    responses((status = 200, description = "The sign-up is cancelled", body = WaitlistLeft)))]
async fn leave(state: State, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    decline(state, req).await
}
