//! Citizens' endpoints: cohorts, the waiting room, verification, centers and slots,
//! booking, lookup and cancellation.

use super::resource;
use super::{bearer, Body, State};
use crate::actors::booking_store::{Persist, StoreError, Write, Written};
use crate::actors::center_inventory::Release;
use crate::actors::center_inventory::{Book, BookError, BookingRequest, ListSlots};
use crate::actors::cohort_queue::{Claim, ClaimPass, JoinError, TicketBooked};
use crate::actors::identity_pool::{VerifyError, VerifyForPass};
use crate::actors::shared_limits::{Attempt, Refund};
use crate::db::models::{BookingRow, NewCitizenRow};
use crate::db::queries;
use crate::domain::booking::{parse_code, BookingView, Dose, STATE_CANCELLED};
use crate::domain::cohort::{format_instant, CohortView};
use crate::domain::identity::{mask_name, parse_birth_date, IdentityClaim};
use crate::domain::queue::TicketState;
use crate::domain::slot::{CenterView, Refusal, SlotView};
use crate::domain::tokens::{Pass, Session, Ticket};
use crate::error::ApiError;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use std::sync::atomic::Ordering;

/// A booking not confirmed by then is answered 503 (the contract's 10 s for an outage).
const BOOK_DEADLINE: std::time::Duration = std::time::Duration::from_secs(9);
use utoipa::{IntoParams, ToSchema};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/cohorts", "GET").route(web::get().to(list_cohorts)))
        .service(resource("/cohorts/{id}/queue", "POST").route(web::post().to(join)))
        .service(resource("/cohorts/{id}/challenge", "GET").route(web::get().to(challenge)))
        .service(resource("/queue", "GET").route(web::get().to(poll)))
        .service(resource("/verifications", "POST").route(web::post().to(verify)))
        .service(resource("/centers", "GET").route(web::get().to(list_centers)))
        .service(resource("/centers/{id}/slots", "GET").route(web::get().to(list_slots)))
        .service(resource("/bookings", "POST").route(web::post().to(book)))
        .service(resource("/bookings/lookup", "POST").route(web::post().to(lookup)))
        .service(resource("/bookings/{code}/cancel", "POST").route(web::post().to(cancel)));
}

pub(crate) fn store_error(e: StoreError) -> ApiError {
    match e {
        StoreError::Busy => ApiError::busy(),
        StoreError::Commit(_) => ApiError::unavailable(
            "unavailable",
            "the change could not be saved; nothing was changed, try again",
            1,
        ),
    }
}

/// The cohorts and their state.
#[utoipa::path(get, path = "/api/v1/cohorts", operation_id = "list_cohorts", tag = "citizen",
    responses((status = 200, description = "Every cohort", body = Vec<CohortView>)))]
async fn list_cohorts(state: State) -> HttpResponse {
    let now = crate::now_s();
    let zone = state.config.zone;
    let list: Vec<CohortView> = state
        .registry
        .cohorts()
        .iter()
        .map(|c| CohortView::new(&c.shared.cohort(), c.shared.state(now), zone))
        .collect();
    HttpResponse::Ok().json(list)
}

/// What a poll (or a join) answers.
#[derive(Serialize, ToSchema)]
pub(crate) struct QueueAnswer {
    /// The ticket, on joining only: a bearer token for polling.
    #[serde(skip_serializing_if = "Option::is_none")]
    ticket: Option<String>,
    state: TicketState,
    /// From the front of those still waiting (the next to be admitted is 1); null in the
    /// pre-queue; 0 once admitted.
    position: Option<u64>,
    ahead: Option<u64>,
    behind: Option<u64>,
    /// Null while the cohort is paused or its rate not yet measured.
    eta_seconds: Option<u64>,
    /// When to poll again.
    poll_after_seconds: u64,
    cohort_id: i32,
    /// While admitted: the bearer token for verification.
    #[serde(skip_serializing_if = "Option::is_none")]
    pass: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pass_expires_at: Option<String>,
}

async fn queue_answer(
    state: &State,
    ticket: Ticket,
    token: Option<String>,
) -> Result<QueueAnswer, ApiError> {
    let cohort = state.cohort(ticket.cohort_id).await.ok_or_else(|| {
        ApiError::unauthorized("invalid_ticket", "this ticket belongs to no cohort")
    })?;
    let status = cohort.shared.status(ticket.seq, crate::now_ms());
    let pass = status.pass_expires_at.map(|expires_at| {
        let pass = Pass {
            cohort_id: ticket.cohort_id,
            seq: ticket.seq,
            expires_at,
        };
        (
            state.signer.pass(&pass),
            format_instant(expires_at, state.config.zone),
        )
    });
    let (pass, pass_expires_at) = pass.unzip();
    Ok(QueueAnswer {
        ticket: token,
        state: status.state,
        position: status.position,
        ahead: status.ahead,
        behind: status.behind,
        eta_seconds: status.eta_seconds,
        poll_after_seconds: status.poll_after_seconds,
        cohort_id: ticket.cohort_id,
        pass,
        pass_expires_at,
    })
}

/// A challenge to solve before joining a cohort whose `join_difficulty` is above 0.
#[derive(Serialize, ToSchema)]
pub(crate) struct ChallengeAnswer {
    /// Signed; a solution hashes its exact text.
    challenge: String,
    /// Leading zero bits SHA-256 of `challenge + ":" + nonce` must show (0: none asked).
    difficulty: u32,
    #[schema(format = DateTime)]
    expires_at: String,
}

/// A challenge for joining: what the cohort's `join_difficulty` asks, raised by the server
/// while joins per second at the cohort are far above its recent normal.
#[utoipa::path(get, path = "/api/v1/cohorts/{id}/challenge", operation_id = "challenge", tag = "citizen",
    params(("id" = i32, Path, description = "The cohort")),
    responses((status = 200, description = "A challenge, valid for 120 seconds", body = ChallengeAnswer)))]
async fn challenge(state: State, path: web::Path<i32>) -> Result<HttpResponse, ApiError> {
    use crate::domain::challenge::{Challenge, CHALLENGE_TTL_S};
    use rand::Rng;
    let id = path.into_inner();
    let cohort = state
        .cohort(id)
        .await
        .ok_or_else(|| ApiError::not_found("cohort"))?;
    let base = cohort.shared.join_difficulty();
    let difficulty = if base > 0 {
        let mut pressure = state
            .join_pressure
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let p = pressure.entry(id).or_default();
        p.sample(crate::now_ms(), cohort.shared.joins_arrived());
        p.difficulty(base)
    } else {
        0
    };
    let expires_at = crate::now_s() + CHALLENGE_TTL_S;
    let c = Challenge {
        cohort_id: id,
        id: format!("{:032x}", rand::thread_rng().gen::<u128>()),
        difficulty,
        expires_at,
    };
    Ok(HttpResponse::Ok().json(ChallengeAnswer {
        challenge: state.signer.challenge(&c),
        difficulty,
        expires_at: format_instant(expires_at, state.config.zone),
    }))
}

/// The body of a join: a solved challenge (optional while the cohort asks none).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JoinRequest {
    /// As `GET /api/v1/cohorts/{id}/challenge` answered it.
    #[schema(max_length = 1024)]
    challenge: String,
    /// A decimal string such that SHA-256 of `challenge + ":" + nonce` starts with the
    /// challenge's difficulty in zero bits.
    #[schema(pattern = "^[0-9]{1,20}$")]
    nonce: String,
}

/// The challenge a join solved, checked (one HMAC, one hash): its id and expiry, or `None`
/// for a join without one where the cohort asks none.
fn checked_solution(
    state: &State,
    cohort_id: i32,
    asked: i32,
    body: &[u8],
) -> Result<Option<(String, i64)>, ApiError> {
    let blank = body.iter().all(u8::is_ascii_whitespace);
    if blank {
        if asked > 0 {
            return Err(ApiError::bad_request(
                "this cohort asks a solved challenge: GET /api/v1/cohorts/{id}/challenge",
            ));
        }
        return Ok(None);
    }
    let r: JoinRequest = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the body is not a join: {e}")))?;
    let c = state
        .signer
        .check_challenge(&r.challenge, crate::now_s())
        .map_err(|e| match e {
            crate::domain::tokens::TokenError::Expired => {
                ApiError::bad_request("the challenge has expired: ask for a new one")
            }
            _ => ApiError::bad_request("the challenge is not one this server gave"),
        })?;
    if c.cohort_id != cohort_id {
        return Err(ApiError::bad_request("the challenge is for another cohort"));
    }
    if !crate::domain::challenge::valid_nonce(&r.nonce)
        || !crate::domain::challenge::solves(&r.challenge, &r.nonce, c.difficulty)
    {
        return Err(ApiError::bad_request(
            "the nonce does not solve the challenge",
        ));
    }
    Ok(Some((c.id, c.expires_at)))
}

/// Takes a place in the cohort's waiting room.
#[utoipa::path(post, path = "/api/v1/cohorts/{id}/queue", operation_id = "join", tag = "citizen",
    params(("id" = i32, Path, description = "The cohort")),
    request_body(content = Option<JoinRequest>, description = "A solved challenge; required while the cohort's `join_difficulty` is above 0, else optional"),
    responses((status = 201, description = "A ticket and its place (state `sold_out` if no place is left, kept in case places come back)", body = QueueAnswer)))]
async fn join(
    state: State,
    req: HttpRequest,
    path: web::Path<i32>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let cohort = state
        .cohort(id)
        .await
        .ok_or_else(|| ApiError::not_found("cohort"))?;
    check_join_limit(&state, &req).await?;
    if crate::now_s() >= cohort.shared.closes_at() {
        return Err(ApiError::conflict(
            "cohort_closed",
            "this cohort has closed",
        ));
    }
    let asked = cohort.shared.join_difficulty();
    let solution = checked_solution(&state, id, asked, &body)?;
    let seq = cohort
        .take_ticket_with(solution)
        .await
        .map_err(|e| match e {
            JoinError::Store(e) => store_error(e),
            JoinError::ChallengeUsed => ApiError::conflict(
                "challenge_used",
                "this solution was used before: ask for a new challenge",
            ),
        })?;
    state.http_metrics.joins.fetch_add(1, Ordering::Relaxed);
    let ticket = Ticket { cohort_id: id, seq };
    let token = state.signer.ticket(&ticket);
    let answer = queue_answer(&state, ticket, Some(token)).await?;
    Ok(HttpResponse::Created().json(answer))
}

/// Where the ticket stands; the pass once admitted.
#[utoipa::path(get, path = "/api/v1/queue", operation_id = "poll", tag = "citizen",
    security(("ticket" = [])),
    responses((status = 200, description = "The ticket's state and place", body = QueueAnswer)))]
async fn poll(state: State, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let ticket = bearer(&req)
        .and_then(|t| state.signer.check_ticket(t).ok())
        .ok_or_else(|| ApiError::unauthorized("invalid_ticket", "a valid ticket is required"))?;
    state.http_metrics.polls.fetch_add(1, Ordering::Relaxed);
    Ok(HttpResponse::Ok().json(queue_answer(&state, ticket, None).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    #[schema(schema_with = crate::domain::schemas::name)]
    name: String,
    #[schema(schema_with = crate::domain::schemas::date)]
    birth_date: String,
    #[schema(schema_with = crate::domain::schemas::phone)]
    phone: String,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct SessionAnswer {
    /// The bearer token for booking.
    session: String,
    #[schema(format = DateTime)]
    expires_at: String,
    cohort_id: i32,
}

/// Verifies the citizen with the identity provider, using up the pass.
#[utoipa::path(post, path = "/api/v1/verifications", operation_id = "verify", tag = "citizen",
    security(("pass" = [])), request_body = VerifyRequest,
    responses((status = 201, description = "A session for booking", body = SessionAnswer)))]
async fn verify(
    state: State,
    req: HttpRequest,
    body: Body<VerifyRequest>,
) -> Result<HttpResponse, ApiError> {
    let now = crate::now_s();
    let pass = bearer(&req)
        .and_then(|t| state.signer.check_pass(t, now).ok())
        .ok_or_else(|| {
            ApiError::unauthorized("invalid_pass", "a valid, unexpired pass is required")
        })?;
    let today = chrono::Utc::now()
        .with_timezone(&state.config.zone)
        .date_naive();
    let claim = IdentityClaim::parse(&body.name, &body.birth_date, &body.phone)?;
    let cohort = state
        .cohort(pass.cohort_id)
        .await
        .ok_or_else(|| ApiError::unauthorized("invalid_pass", "this pass belongs to no cohort"))?;
    let info = cohort.shared.cohort();
    if claim.birth_date > today {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "not_eligible",
            "a birth date in the future",
        ));
    }
    if !info.admits_birth_year(claim.birth_year()) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "not_eligible",
            format!(
                "this cohort is for people born {} to {}",
                info.birth_year_from, info.birth_year_to
            ),
        ));
    }
    if let Err(next) = info.birth_day_turn(claim.birth_date, today) {
        let when = match next {
            Some(day) => format!("your turn is on {day}"),
            None => "no day in the schedule is yours; ask the help desk".to_string(),
        };
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "not_eligible",
            format!("today is for other birth days; {when}"),
        ));
    }
    let limit_key = state.signer.keyed_hash("limit", &claim.canonical(), 16);
    let pass_key = format!("{}:{}", pass.cohort_id, pass.seq);
    let birth_date = claim.birth_date.to_string();
    let masked_name = mask_name(&claim.name);
    // Sealed now, while the number is at hand; from here on only the sender opens it.
    let phone = state.phone_key.seal(&claim.phone);
    // With nodes on one database, the limits per identity and per pass are counted there (each
    // node's pool still keeps its own, which can only be stricter).
    let shared = state.config.database.is_postgres().then(|| {
        let id = &state.config.identity;
        vec![
            (
                format!("identity:{limit_key}"),
                id.attempt_window_s as i64,
                id.attempts_per_window as i64,
            ),
            (
                format!("pass:{pass_key}"),
                id.pass_attempt_window_s as i64,
                id.pass_attempts_per_window as i64,
            ),
        ]
    });
    let now = crate::now_s();
    if let Some(limits) = shared.clone() {
        if let Some(wait) = count_shared(&state, limits, now).await? {
            return Err(ApiError::rate_limited(wait));
        }
    }
    let answer = state
        .identity
        .send(VerifyForPass {
            claim,
            limit_key,
            pass_key,
        })
        .await?;
    if let (Err(VerifyError::Busy { .. }), Some(limits)) = (&answer, shared) {
        // Never reached the provider: a citizen told "busy" has not used a check.
        if let Some(shared) = &state.limits {
            shared.do_send(Refund { limits, now_s: now });
        }
    }
    let vouched = answer.map_err(|e| match e {
        VerifyError::Busy { retry_after } => ApiError::unavailable(
            "identity_busy",
            "identity checks are busy; your place is kept, try again shortly",
            retry_after,
        ),
        VerifyError::RateLimited { retry_after } => ApiError::rate_limited(retry_after),
        VerifyError::Rejected => ApiError::unauthorized(
            "identity_rejected",
            "the identity provider could not confirm these details",
        ),
    })?;
    let citizen_key = state.signer.keyed_hash("citizen", &vouched.person_id, 32);
    let claimed = cohort
        .addr
        .send(ClaimPass {
            seq: pass.seq,
            citizen_key: citizen_key.clone(),
            now,
        })
        .await?
        .map_err(store_error)?;
    if claimed == Claim::Other {
        return Err(ApiError::unauthorized(
            "invalid_pass",
            "this pass has already verified another person",
        ));
    }
    let expires_at = now + state.config.session_ttl_s;
    let session = Session {
        cohort_id: pass.cohort_id,
        seq: pass.seq,
        citizen_key,
        birth_date,
        expires_at,
        masked_name,
        phone: Some(phone),
    };
    Ok(HttpResponse::Created().json(SessionAnswer {
        session: state.signer.session(&session),
        expires_at: format_instant(expires_at, state.config.zone),
        cohort_id: pass.cohort_id,
    }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RegionQuery {
    /// Only the centers of this region.
    region: Option<String>,
}

/// The centers and how many places each has left.
#[utoipa::path(get, path = "/api/v1/centers", operation_id = "list_centers", tag = "citizen",
    params(RegionQuery),
    responses((status = 200, description = "The centers", body = Vec<CenterView>)))]
async fn list_centers(state: State, q: web::Query<RegionQuery>) -> HttpResponse {
    let region = q.region.as_deref().map(str::trim).filter(|r| !r.is_empty());
    let list: Vec<_> = state
        .registry
        .centers()
        .iter()
        .filter(|c| region.is_none_or(|r| c.shared.region == r))
        .map(|c| c.shared.view())
        .collect();
    HttpResponse::Ok().json(list)
}

/// A center's slots from today on, with places left.
#[utoipa::path(get, path = "/api/v1/centers/{id}/slots", operation_id = "list_slots", tag = "citizen",
    params(("id" = i32, Path, description = "The center")),
    responses((status = 200, description = "The slots", body = Vec<SlotView>)))]
async fn list_slots(state: State, path: web::Path<i32>) -> Result<HttpResponse, ApiError> {
    let center = state
        .center(path.into_inner())
        .await
        .ok_or_else(|| ApiError::not_found("center"))?;
    let today = chrono::Utc::now()
        .with_timezone(&state.config.zone)
        .date_naive();
    let slots = center.addr.send(ListSlots { today }).await?;
    Ok(HttpResponse::Ok().json(slots))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BookRequest {
    /// The first dose's slot; the second is chosen by the rule of the contract.
    #[serde(with = "crate::domain::whole")]
    slot_id: i64,
}

pub(crate) fn booking_view(row: &BookingRow, masked_name: String) -> BookingView {
    BookingView {
        code: row.code.clone(),
        state: row.state.clone(),
        cohort_id: row.cohort_id,
        vaccine: row.vaccine.clone(),
        name: masked_name,
        first_dose: Dose {
            center_id: row.center_id,
            slot_id: row.first_slot_id,
            date: row.first_date.clone(),
            start_time: row.first_start.clone(),
        },
        second_dose: Dose {
            center_id: row.center_id,
            slot_id: row.second_slot_id,
            date: row.second_date.clone(),
            start_time: row.second_start.clone(),
        },
        moved: None,
    }
}

fn idempotency_key(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    let Some(value) = req.headers().get("idempotency-key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.len() <= 128)
        .ok_or_else(|| {
            ApiError::bad_request("Idempotency-Key must be 1 to 128 visible ASCII characters")
        })?;
    Ok(Some(key.to_string()))
}

/// Runs a read on the blocking pool.
pub(crate) async fn read<T: Send + 'static>(
    state: &State,
    f: impl FnOnce(&mut crate::db::Conn<'_>) -> Result<T, diesel::result::Error> + Send + 'static,
) -> Result<T, ApiError> {
    let pool = state.pool.clone();
    web::block(move || {
        let mut conn = pool.get().map_err(|e| e.to_string())?;
        f(&mut conn.conn()).map_err(|e| e.to_string())
    })
    .await
    .map_err(|_| ApiError::busy())?
    .map_err(|e| {
        log::error!("read failed: {e}");
        ApiError::busy()
    })
}

/// Counts an attempt against the limits shared across nodes (a no-op without a shared
/// database): the seconds to wait if past one.
async fn count_shared(
    state: &State,
    limits: Vec<(String, i64, i64)>,
    now_s: i64,
) -> Result<Option<u64>, ApiError> {
    let Some(shared) = &state.limits else {
        return Ok(None);
    };
    shared
        .send(Attempt { limits, now_s })
        .await
        .map_err(|_| ApiError::busy())?
        .map_err(|e| {
            log::error!("shared limits: {e}");
            ApiError::busy()
        })
}

/// Books both doses, durably.
#[utoipa::path(post, path = "/api/v1/bookings", operation_id = "book", tag = "citizen",
    security(("session" = [])), request_body = BookRequest,
    params(("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 128,
        pattern = "^[!-~]([ -~]*[!-~])?$",
        description = "A repeat with the same key returns the first 201 again and books nothing")),
    responses((status = 201, description = "Booked: on disk before this answer", body = BookingView)))]
async fn book(
    state: State,
    req: HttpRequest,
    body: Body<BookRequest>,
) -> Result<HttpResponse, ApiError> {
    let now = crate::now_s();
    let session = bearer(&req)
        .and_then(|t| state.signer.check_session(t, now).ok())
        .ok_or_else(|| {
            ApiError::unauthorized("invalid_session", "a valid, unexpired session is required")
        })?;
    let idem = idempotency_key(&req)?;
    let slot_id = i32::try_from(body.slot_id).map_err(|_| ApiError::not_found("slot"))?;
    let center = state
        .center_of_slot(slot_id)
        .await
        .ok_or_else(|| ApiError::not_found("slot"))?;
    let cohort = state.cohort(session.cohort_id).await.ok_or_else(|| {
        ApiError::unauthorized("invalid_session", "this session belongs to no cohort")
    })?;
    let info = cohort.shared.cohort();

    let today = chrono::Utc::now()
        .with_timezone(&state.config.zone)
        .date_naive();
    let request = BookingRequest {
        slot_id,
        vaccine: info.vaccine.clone(),
        dose_interval_days: info.dose_interval_days as u32,
        today,
        citizen: NewCitizenRow {
            key: session.citizen_key.clone(),
            masked_name: session.masked_name.clone(),
            birth_date: session.birth_date.clone(),
            created_at: now,
            phone_sealed: session.phone.clone(),
        },
        code: crate::domain::booking::new_code(),
        cohort_id: session.cohort_id,
        ticket_seq: session.seq,
        queue_index: cohort.shared.booking_place(session.seq),
        idempotency_key: idem.clone(),
        now,
    };
    // The admission's place stops being held as the booking takes its place, not after: in
    // between, a place counted both as held and as booked would read `sold_out` to the line.
    // Taken back below if the booking is refused (a booking still on its way when the deadline
    // passes may yet commit, so that one keeps it).
    cohort.addr.do_send(TicketBooked {
        seq: session.seq,
        booking: true,
    });
    let unbooked = || {
        cohort.addr.do_send(TicketBooked {
            seq: session.seq,
            booking: false,
        })
    };
    // Bounded: a booking is answered within 10 s, whatever the database does. A booking still
    // on its way may yet commit; a retry with the same Idempotency-Key then returns it.
    let sent = tokio::time::timeout(BOOK_DEADLINE, center.addr.send(Book(request)))
        .await
        .map_err(|_| {
            ApiError::unavailable(
                "unavailable",
                "the booking could not be confirmed in time; it may have been kept: retry \
                 with the same Idempotency-Key to learn which",
                2,
            )
        })?;
    let refused = match sent {
        Ok(Ok(booked)) => {
            if booked.repeat {
                unbooked();
            } else {
                state
                    .http_metrics
                    .bookings_created
                    .fetch_add(1, Ordering::Relaxed);
            }
            return Ok(HttpResponse::Created().json(booking_view(&booked.row, session.masked_name)));
        }
        Ok(Err(BookError::Store(e))) => {
            unbooked();
            return Err(store_error(e));
        }
        Ok(Err(refusal)) => {
            unbooked();
            refusal
        }
        Err(mailbox) => {
            unbooked();
            return Err(mailbox.into());
        }
    };
    // Refused: a repeat of a booking that succeeded, or a citizen who already holds one, is
    // told that rather than why this slot would not do. (On success the writer made the same
    // check inside the booking's transaction, so the hot path reads nothing here.)
    let (key, idem_key) = (session.citizen_key.clone(), idem.clone());
    let existing = read(&state, move |c| {
        queries::find_for_citizen(c, &key, idem_key.as_deref())
    })
    .await?;
    if let Some(row) = existing {
        if row.idempotency_key.is_some() && row.idempotency_key == idem {
            return Ok(HttpResponse::Created().json(booking_view(&row, session.masked_name)));
        }
        return Err(ApiError::conflict(
            "already_booked",
            format!("you already hold booking {}", row.code),
        ));
    }
    Err(match refused {
        BookError::Refused(Refusal::NotFound) => ApiError::not_found("slot"),
        BookError::Refused(Refusal::SlotFull) => {
            ApiError::conflict("slot_full", "this slot is full; pick another")
        }
        BookError::Refused(Refusal::SlotPassed) => {
            ApiError::conflict("slot_full", "this slot has passed; pick another")
        }
        BookError::Refused(Refusal::WrongVaccine) => ApiError::conflict(
            "wrong_vaccine",
            format!("this cohort is vaccinated with {}", info.vaccine),
        ),
        BookError::Refused(Refusal::NoSecondDoseSlot) => ApiError::conflict(
            "no_second_dose_slot",
            "no place for the second dose at this center; pick another day or center",
        ),
        BookError::AlreadyBooked => {
            ApiError::conflict("already_booked", "you already hold a booking")
        }
        BookError::Store(e) => store_error(e),
    })
}

/// The client a request comes from: the peer, or behind a trusted balancer (whose one
/// address would be every citizen's) the client it names in `X-Forwarded-For`.
fn client_ip(state: &State, req: &HttpRequest) -> std::net::IpAddr {
    let peer = req
        .peer_addr()
        .map(|a| a.ip())
        .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED.into());
    let forwarded = req
        .headers()
        .get_all("x-forwarded-for")
        .filter_map(|v| v.to_str().ok());
    state.config.trusted_proxies.client(peer, forwarded)
}

/// Counts one attempt of the client against a per-minute limit: on the shared database when
/// nodes share one (every node counts alike, under `{kind}:{ip}`), else in this process.
async fn check_client_limit(
    state: &State,
    req: &HttpRequest,
    kind: &str,
    per_minute: u32,
    local: &governor::DefaultKeyedRateLimiter<std::net::IpAddr>,
) -> Result<(), ApiError> {
    let ip = client_ip(state, req);
    if state.config.database.is_postgres() {
        let limit = [(format!("{kind}:{ip}"), 60, i64::from(per_minute))];
        return match count_shared(state, limit.to_vec(), crate::now_s()).await? {
            Some(wait) => Err(ApiError::rate_limited(wait)),
            None => Ok(()),
        };
    }
    local.check_key(&ip).map_err(|not_until| {
        use governor::clock::{Clock, DefaultClock};
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        ApiError::rate_limited(wait.as_secs() + 1)
    })
}

/// The lookup limit per client (guessing booking codes).
async fn check_lookup_limit(state: &State, req: &HttpRequest) -> Result<(), ApiError> {
    let per_minute = state.config.lookups_per_minute;
    check_client_limit(state, req, "lookup", per_minute, &state.lookups).await
}

/// The join limit per client (`JOINS_PER_MINUTE`; none when 0).
async fn check_join_limit(state: &State, req: &HttpRequest) -> Result<(), ApiError> {
    let Some(local) = &state.joins else {
        return Ok(());
    };
    let per_minute = state.config.joins_per_minute;
    check_client_limit(state, req, "join", per_minute, local).await
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LookupRequest {
    /// The booking code (case, dashes and spaces do not matter).
    code: String,
    #[schema(schema_with = crate::domain::schemas::date)]
    birth_date: String,
}

/// The booking with this code if the birth date matches; `None` otherwise.
async fn find_matching(
    state: &State,
    code: &str,
    birth_date: &str,
) -> Result<Option<(BookingRow, String)>, ApiError> {
    let birth = parse_birth_date(birth_date)?.to_string();
    let Some(code) = parse_code(code) else {
        return Ok(None);
    };
    let found = read(state, move |c| queries::find_booking(c, &code)).await?;
    Ok(found.and_then(|(row, masked, born)| (born == birth).then_some((row, masked))))
}

/// A booking by its code and the citizen's birth date.
#[utoipa::path(post, path = "/api/v1/bookings/lookup", operation_id = "lookup", tag = "citizen",
    request_body = LookupRequest,
    responses((status = 200, description = "The booking", body = BookingView)))]
async fn lookup(
    state: State,
    req: HttpRequest,
    body: Body<LookupRequest>,
) -> Result<HttpResponse, ApiError> {
    check_lookup_limit(&state, &req).await?;
    let (row, masked) = find_matching(&state, &body.code, &body.birth_date)
        .await?
        .ok_or_else(|| ApiError::not_found("booking with this code and birth date"))?;
    let view = booking_view(&row, masked);
    let view = super::rebooking::full_view(&state, &row, view).await?;
    Ok(HttpResponse::Ok().json(view))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelRequest {
    #[schema(schema_with = crate::domain::schemas::date)]
    birth_date: String,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct CancelAnswer {
    code: String,
    #[schema(pattern = "^cancelled$")]
    state: &'static str,
}

/// Cancels a booking; both doses' places return to their slots.
#[utoipa::path(post, path = "/api/v1/bookings/{code}/cancel", operation_id = "cancel", tag = "citizen",
    params(("code" = String, Path, description = "The booking code")),
    request_body = CancelRequest,
    responses((status = 200, description = "Cancelled (also if it already was)", body = CancelAnswer)))]
async fn cancel(
    state: State,
    req: HttpRequest,
    path: web::Path<String>,
    body: Body<CancelRequest>,
) -> Result<HttpResponse, ApiError> {
    check_lookup_limit(&state, &req).await?;
    let (row, _) = find_matching(&state, &path, &body.birth_date)
        .await?
        .ok_or_else(|| ApiError::not_found("booking with this code and birth date"))?;
    let answer = CancelAnswer {
        code: row.code.clone(),
        state: STATE_CANCELLED,
    };
    if row.state == STATE_CANCELLED {
        return Ok(HttpResponse::Ok().json(answer));
    }
    let write = Write::Cancel {
        code: row.code.clone(),
        now: crate::now_s(),
    };
    let written = state
        .store
        .send(Persist(write))
        .await?
        .map_err(store_error)?;
    // Only the request that flipped the state gives the places back.
    if let Written::Cancelled(Some(cancelled)) = written {
        if let Some(center) = state.center(cancelled.center_id).await {
            center
                .addr
                .send(Release {
                    first_slot_id: cancelled.first_slot_id,
                    second_slot_id: cancelled.second_slot_id,
                })
                .await?;
        }
        // A rebooking may have moved one dose to another center: that center gives its
        // place back too.
        if let Some(other) = state.registry.center_of_slot(cancelled.second_slot_id) {
            if other.shared.id != cancelled.center_id {
                other
                    .addr
                    .send(crate::actors::center_inventory::ReleaseSecondDose(
                        cancelled.second_slot_id,
                    ))
                    .await?;
            }
        }
    }
    Ok(HttpResponse::Ok().json(answer))
}
