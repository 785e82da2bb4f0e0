//! The HTTP layer: routes, extractors, and the operational endpoints. Handlers parse input
//! into domain types, send one message to an actor (or read what one publishes), and map the
//! answer to the contract described in `docs/api.md`. Every error is an `ApiError`.

pub mod admin;
pub mod citizen;
pub mod leftovers;
pub mod notifications;
pub mod openapi;
pub mod pages;
pub mod rebooking;
pub mod request_log;
pub mod shed;
pub mod watchdog;

use crate::error::ApiError;
use crate::startup::AppState;
use actix_web::http::StatusCode;
use actix_web::{error, web, HttpRequest, HttpResponse};
use std::sync::atomic::{AtomicU64, Ordering};

pub type State = web::Data<AppState>;

/// Bodies citizens send are tiny; operators may send a few thousand slots at once.
pub const CITIZEN_BODY_LIMIT: usize = 16 * 1024;
pub const ADMIN_BODY_LIMIT: usize = 4 * 1024 * 1024;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.app_data(json_config(CITIZEN_BODY_LIMIT))
        .app_data(
            web::PathConfig::default().error_handler(|_, _| ApiError::not_found("resource").into()),
        )
        // A query string reaches this handler only once actix-http has parsed the request
        // line. One with raw non-ASCII bytes (`?region=서울` not percent-encoded) never does:
        // httparse lets the bytes through, `http::Uri` refuses them, and actix-http's h1
        // dispatcher answers that parse error itself with a bodiless 400 and closes the
        // connection. `HttpServer` and `HttpServiceBuilder` offer no hook on that path (nor on
        // the 431 for an oversized head or the 408 for a slow one), so it cannot carry the
        // JSON `validation` body without forking actix-http or replacing `HttpServer` by a
        // hand-built server over a stream wrapper that rewrites the answer on the wire.
        // docs/api.md says so; tests/docs.rs pins it.
        .app_data(
            web::QueryConfig::default()
                .error_handler(|e, _| ApiError::bad_request(e.to_string()).into()),
        )
        .service(resource("/healthz", "GET").route(web::get().to(healthz)))
        .service(resource("/readyz", "GET").route(web::get().to(readyz)))
        .service(resource("/metrics", "GET").route(web::get().to(metrics)))
        .service(resource("/api-docs/openapi.json", "GET").route(web::get().to(openapi::document)))
        .service(
            web::scope("/api/v1/admin")
                .app_data(json_config(ADMIN_BODY_LIMIT))
                .configure(admin::routes)
                .configure(leftovers::admin_routes)
                .configure(rebooking::admin_routes)
                .configure(notifications::admin_routes),
        )
        .service(
            web::scope("/api/v1")
                .configure(citizen::routes)
                .configure(leftovers::routes),
        )
        .configure(pages::routes)
        .default_service(web::to(|| async {
            Err::<HttpResponse, _>(ApiError::not_found("resource"))
        }));
}

/// A path answering the methods in `allow` (given as its routes); any other method gets 405
/// `method_not_allowed` with the `Allow` header.
pub(crate) fn resource(path: &str, allow: &'static str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(move || async move {
        let e = ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("this path answers {allow} only"),
        );
        let mut res = actix_web::ResponseError::error_response(&e);
        res.headers_mut().insert(
            actix_web::http::header::ALLOW,
            actix_web::http::header::HeaderValue::from_static(allow),
        );
        Ok::<_, actix_web::Error>(res)
    }))
}

fn json_config(limit: usize) -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(limit)
        .content_type_required(false)
        .error_handler(|err, _| {
            let e = match &err {
                error::JsonPayloadError::Overflow { .. }
                | error::JsonPayloadError::OverflowKnownLength { .. } => ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "validation",
                    "the body is too large",
                ),
                error::JsonPayloadError::Deserialize(d) if d.is_data() => {
                    ApiError::validation(d.to_string())
                }
                _ => ApiError::bad_request(format!("the body is not valid JSON: {err}")),
            };
            e.into()
        })
}

/// A JSON object body parsed into `T`. Unlike `web::Json<T>` it refuses a JSON array, which
/// serde would otherwise read field by field into a struct.
pub struct Body<T>(pub T);

impl<T> Body<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> std::ops::Deref for Body<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: serde::de::DeserializeOwned + 'static> actix_web::FromRequest for Body<T> {
    type Error = actix_web::Error;
    type Future = futures_util::future::LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut actix_web::dev::Payload) -> Self::Future {
        let object =
            web::Json::<serde_json::Map<String, serde_json::Value>>::from_request(req, payload);
        Box::pin(async move {
            let map = object.await?.into_inner();
            serde_json::from_value(serde_json::Value::Object(map))
                .map(Body)
                .map_err(|e| ApiError::validation(e.to_string()).into())
        })
    }
}

/// The token after `Bearer `, if any.
pub fn bearer(req: &HttpRequest) -> Option<&str> {
    let value = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Answers counted by class, for `/metrics`.
#[derive(Debug, Default)]
pub struct HttpMetrics {
    pub ok: AtomicU64,
    pub client_errors: AtomicU64,
    pub rate_limited: AtomicU64,
    pub server_errors: AtomicU64,
    pub unavailable: AtomicU64,
    pub bookings_created: AtomicU64,
    pub joins: AtomicU64,
    pub polls: AtomicU64,
    /// Citizens' requests in flight, and those refused for it (`shed`).
    pub in_flight: std::sync::Arc<AtomicU64>,
    pub shed: AtomicU64,
}

impl HttpMetrics {
    pub fn record(&self, status: StatusCode) {
        let counter = match status.as_u16() {
            429 => &self.rate_limited,
            503 => &self.unavailable,
            400..=499 => &self.client_errors,
            500..=599 => &self.server_errors,
            _ => &self.ok,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub(crate) struct Health {
    #[schema(pattern = "^ok$")]
    status: &'static str,
}

/// Liveness.
#[utoipa::path(get, path = "/healthz", operation_id = "healthz", tag = "operations",
    responses((status = 200, description = "The server is up", body = Health)))]
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Health { status: "ok" })
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub(crate) struct Ready {
    #[schema(pattern = "^ready$")]
    status: &'static str,
}

/// Readiness: the database takes writes (on PostgreSQL, a primary) and every actor is loaded.
/// A balancer sends traffic only to nodes that answer 200 here.
#[utoipa::path(get, path = "/readyz", operation_id = "readyz", tag = "operations",
    responses((status = 200, description = "This node can serve", body = Ready)))]
async fn readyz(state: State) -> Result<HttpResponse, ApiError> {
    let pool = state.pool.clone();
    let checked = web::block(move || crate::db::writable(&pool)).await;
    let ready = matches!(checked, Ok(Ok(())));
    state.ready.store(ready, Ordering::Relaxed);
    match checked {
        Ok(Ok(())) => Ok(HttpResponse::Ok().json(Ready { status: "ready" })),
        Ok(Err(e)) => {
            log::warn!("not ready: {e}");
            Err(ApiError::unavailable(
                "unavailable",
                "the database does not take writes now",
                1,
            ))
        }
        Err(_) => Err(ApiError::busy()),
    }
}

/// Queue, admission, identity pool, booking, HTTP and process figures.
#[utoipa::path(get, path = "/metrics", operation_id = "metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", body = String,
        content_type = "text/plain; version=0.0.4; charset=utf-8")))]
async fn metrics(state: State) -> HttpResponse {
    let text = state.metrics.render(|| publish(&state));
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(text)
}

/// How a figure is exposed.
#[derive(Clone, Copy)]
enum Kind {
    Gauge,
    Counter,
}

/// Sets what the actors publish into the current recorder (`telemetry::Metrics::render`).
/// The names are those `/metrics` has always had (README, Metrics).
fn publish(state: &AppState) {
    use metrics::{counter, describe_counter, describe_gauge, gauge};
    let now = crate::now_s();
    let set = |name: &'static str,
               help: &'static str,
               kind: Kind,
               labels: &[(&'static str, String)],
               value: f64| {
        let labels: Vec<metrics::Label> = labels
            .iter()
            .map(|(k, v)| metrics::Label::new(*k, v.clone()))
            .collect();
        match kind {
            Kind::Gauge => {
                describe_gauge!(name, help);
                gauge!(name, labels).set(value);
            }
            Kind::Counter => {
                describe_counter!(name, help);
                counter!(name, labels).absolute(value as u64);
            }
        }
    };
    let one = |name, help, kind, value: f64| set(name, help, kind, &[], value);
    for c in state.registry.cohorts() {
        let c = &c.shared;
        let cohort = [("cohort", c.id.to_string())];
        let figures: [(&'static str, &'static str, Kind, f64); 7] = [
            (
                "queue_waiting",
                "Tickets not yet admitted, pre-queue included.",
                Kind::Gauge,
                c.waiting() as f64,
            ),
            (
                "queue_admitted_total",
                "Tickets admitted so far.",
                Kind::Counter,
                c.admitted_people() as f64,
            ),
            (
                "queue_passed_over_total",
                "Tickets passed over as absent when their turn came (ABSENT_AFTER_SECONDS).",
                Kind::Counter,
                c.passed_over() as f64,
            ),
            (
                "queue_returned_total",
                "Passed-over tickets admitted beside the line once back.",
                Kind::Counter,
                c.returned() as f64,
            ),
            (
                "queue_verified_total",
                "Passes that verified a citizen.",
                Kind::Counter,
                c.verified() as f64,
            ),
            (
                "queue_admission_rate",
                "Admissions per second, measured.",
                Kind::Gauge,
                c.measured_rate(),
            ),
            (
                "queue_sold_out",
                "1 while the cohort is sold out.",
                Kind::Gauge,
                f64::from(u8::from(
                    c.state(now) == crate::domain::cohort::CohortState::SoldOut,
                )),
            ),
        ];
        for (name, help, kind, value) in figures {
            set(name, help, kind, &cohort, value);
        }
    }
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64;
    let n = &state.notifier_metrics;
    for (name, help, kind, value) in [
        (
            "notify_queued",
            "Messages pending in the outbox.",
            Kind::Gauge,
            load(&n.queued),
        ),
        (
            "notify_sent_total",
            "Messages delivered by this node.",
            Kind::Counter,
            load(&n.sent),
        ),
        (
            "notify_failed_total",
            "Messages given up as failed by this node.",
            Kind::Counter,
            load(&n.failed),
        ),
        (
            "notify_retries_total",
            "Failed attempts to be tried again, at this node.",
            Kind::Counter,
            load(&n.retries),
        ),
        (
            "notify_oldest_pending_seconds",
            "Age of the oldest pending message.",
            Kind::Gauge,
            load(&n.oldest_pending_s),
        ),
        (
            "notify_in_flight",
            "Deliveries in flight at this node.",
            Kind::Gauge,
            load(&n.in_flight),
        ),
    ] {
        one(name, help, kind, value);
    }
    let id = &state.identity_load;
    one(
        "identity_in_flight",
        "Provider calls in flight.",
        Kind::Gauge,
        load(&id.in_flight),
    );
    one(
        "identity_max_in_flight",
        "Cap on provider calls in flight.",
        Kind::Gauge,
        load(&id.max_in_flight),
    );
    one(
        "identity_waiting",
        "Requests waiting for a place in the pool.",
        Kind::Gauge,
        load(&id.waiting),
    );
    one(
        "identity_max_waiting",
        "Cap on requests waiting for a place.",
        Kind::Gauge,
        load(&id.max_waiting),
    );
    one(
        "identity_breaker_state",
        "Circuit breaker: 0 closed, 1 open, 2 half-open.",
        Kind::Gauge,
        load(&id.breaker_state),
    );
    for (event, value) in [
        ("retry", &id.retries),
        ("timeout", &id.timeouts),
        ("queue_timeout", &id.queue_timeouts),
        ("breaker_opened", &id.breaker_opened),
        ("breaker_rejected", &id.breaker_rejected),
    ] {
        set(
            "identity_events_total",
            "Retries, timeouts and breaker events.",
            Kind::Counter,
            &[("event", event.into())],
            load(value),
        );
    }
    for (outcome, value) in [
        ("vouched", &id.vouched),
        ("rejected", &id.rejected),
        ("failed", &id.failed),
        ("busy", &id.busy),
        ("rate_limited", &id.rate_limited),
    ] {
        set(
            "identity_outcomes_total",
            "Verification outcomes.",
            Kind::Counter,
            &[("outcome", outcome.into())],
            load(value),
        );
    }
    let st = &state.store_metrics;
    one(
        "store_commits_total",
        "Transactions committed.",
        Kind::Counter,
        load(&st.commits),
    );
    one(
        "store_failed_commits_total",
        "Transactions that failed.",
        Kind::Counter,
        load(&st.failed_commits),
    );
    one(
        "store_writes_total",
        "Writes committed.",
        Kind::Counter,
        load(&st.writes),
    );
    one(
        "store_largest_batch",
        "Most writes in one commit.",
        Kind::Gauge,
        load(&st.largest_batch),
    );
    one(
        "store_pending",
        "Writes waiting for the next commit.",
        Kind::Gauge,
        load(&st.pending),
    );
    let rb = &state.rebook_metrics;
    one(
        "rebooking_jobs_running",
        "Rebooking jobs this node is driving.",
        Kind::Gauge,
        rb.running.load(std::sync::atomic::Ordering::Relaxed) as f64,
    );
    one(
        "rebooking_moved_total",
        "Bookings moved by rebooking jobs at this node since it started.",
        Kind::Counter,
        load(&rb.moved),
    );
    one(
        "rebooking_unmovable_total",
        "Bookings rebooking jobs at this node found no place for (now needs_rebooking).",
        Kind::Counter,
        load(&rb.unmovable),
    );
    one(
        "rebooking_steps_total",
        "Steps of rebooking jobs committed.",
        Kind::Counter,
        load(&rb.steps),
    );
    one(
        "rebooking_failed_steps_total",
        "Steps of rebooking jobs that failed (tried again).",
        Kind::Counter,
        load(&rb.failed_steps),
    );
    let h = &state.http_metrics;
    one(
        "queue_joins_total",
        "Tickets handed out over HTTP.",
        Kind::Counter,
        load(&h.joins),
    );
    one(
        "queue_polls_total",
        "Queue polls answered.",
        Kind::Counter,
        load(&h.polls),
    );
    one(
        "bookings_created_total",
        "Bookings answered 201 (repeats excluded).",
        Kind::Counter,
        load(&h.bookings_created),
    );
    for (class, value) in [
        ("ok", &h.ok),
        ("client_error", &h.client_errors),
        ("rate_limited", &h.rate_limited),
        ("unavailable", &h.unavailable),
        ("server_error", &h.server_errors),
    ] {
        set(
            "http_responses_total",
            "HTTP answers by class.",
            Kind::Counter,
            &[("class", class.into())],
            load(value),
        );
    }
    one(
        "http_in_flight",
        "Citizens' requests in flight.",
        Kind::Gauge,
        load(&h.in_flight),
    );
    one(
        "http_shed_total",
        "Requests answered 503 at once because MAX_IN_FLIGHT were in flight.",
        Kind::Counter,
        load(&h.shed),
    );
    let log = &state.request_log;
    one(
        "log_requests_logged_total",
        "Request lines written to the log.",
        Kind::Counter,
        load(&log.logged),
    );
    one(
        "log_requests_dropped_total",
        "Ordinary request lines not written, past LOG_REQUESTS_PER_SECOND.",
        Kind::Counter,
        load(&log.dropped),
    );
}
