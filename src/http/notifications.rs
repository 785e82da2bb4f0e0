//! Notifications (API 1.1): what the outbox holds for one booking, for operators. The handler
//! parses, reads the database, and maps the answer.

use super::admin::Admin;
use super::citizen::read;
use super::{resource, State};
use crate::domain::cohort::format_instant;
use crate::error::ApiError;
use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// Under `/api/v1/admin`.
pub fn admin_routes(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/notifications", "GET").route(web::get().to(list)));
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NotificationQuery {
    /// The booking's code. Left out or empty: 400 `validation`.
    #[param(required = true, min_length = 1)]
    booking: Option<String>,
}

/// One message of the outbox.
#[derive(Serialize, ToSchema)]
pub struct NotificationView {
    /// Stable for the message's life: every delivery of it carries this id.
    id: String,
    /// `booked`, `cancelled`, `moved`, `needs_rebooking`, `leftover_offer` or `reminder`.
    kind: String,
    /// `pending`, `sent` or `failed`.
    state: String,
    /// Delivery attempts made so far.
    attempts: i32,
    #[schema(format = DateTime)]
    created_at: String,
}

/// The messages of one booking, oldest first.
#[utoipa::path(get, path = "/api/v1/admin/notifications", operation_id = "admin_notifications",
    tag = "admin", security(("admin" = [])), params(NotificationQuery),
    responses((status = 200, description = "The booking's messages", body = [NotificationView])))]
async fn list(
    _: Admin,
    state: State,
    q: web::Query<NotificationQuery>,
) -> Result<HttpResponse, ApiError> {
    let code = q
        .booking
        .as_deref()
        .filter(|c| !c.is_empty())
        .ok_or_else(|| ApiError::bad_request("booking (a booking code) is required"))?;
    if code.len() > 64 {
        return Err(ApiError::not_found("booking"));
    }
    let code = code.to_string();
    let rows = read(&state, move |c| crate::db::outbox::for_booking(c, &code))
        .await?
        .ok_or_else(|| ApiError::not_found("booking"))?;
    let zone = state.config.zone;
    let views: Vec<NotificationView> = rows
        .into_iter()
        .map(|r| NotificationView {
            id: r.id,
            kind: r.kind,
            state: r.state,
            attempts: r.attempts,
            created_at: format_instant(r.created_at, zone),
        })
        .collect();
    Ok(HttpResponse::Ok().json(views))
}
