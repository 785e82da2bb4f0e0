//! Load shedding and a deadline on request bodies.
//!
//! **Shedding.** A request is *in flight* from the moment its head is parsed until its answer
//! is ready. Past `MAX_IN_FLIGHT` of them, a new request is answered at once with
//! `503 {"error": "unavailable"}` and a `Retry-After` of 1 to 3 s (spread, so refused clients
//! do not come back in step), before any extractor or actor sees it. Without this bound an
//! overload queues without limit: every request waiting on the booking writer holds a
//! connection, the crowd opens more, latency grows with the queue until clients time out, and
//! the server takes the whole queue's time to recover. With it, the work admitted is what the
//! server can finish in about `MAX_IN_FLIGHT ÷ throughput` (see BENCHMARKS.md, "Overload"),
//! and refusing costs about as much as a poll. `/healthz`, `/readyz` and `/metrics` are never shed; the
//! operators' API (`/api/v1/admin/…`) has a small budget of its own, so an operator can still
//! pause a cohort in the middle of a rush.
//!
//! **Body deadline.** actix's `client_request_timeout` bounds how long the request *head* may
//! take (and only on a connection's first request); a body sent a byte at a time would hold
//! its request — and its place in flight — for as long as the client likes. The body must
//! arrive within `REQUEST_TIMEOUT_MS` of the head; past it the request is answered `408` with
//! `Connection: close`.

use crate::error::ApiError;
use crate::startup::AppState;
use actix_web::body::{BodySize, EitherBody, MessageBody};
use actix_web::dev::{Payload, Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::error::PayloadError;
use actix_web::http::{header, ConnectionType, StatusCode};
use actix_web::{web, Error, HttpMessage, HttpResponse, ResponseError};
use futures_util::future::LocalBoxFuture;
use std::cell::{Cell, RefCell};
use std::future::{ready, Future, Ready};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

/// Requests in flight to the operators' API at most, apart from the citizens' budget.
pub const ADMIN_IN_FLIGHT: u64 = 32;

/// The middleware factory; one per server, shared by its workers.
#[derive(Clone)]
pub struct Shed {
    state: web::Data<AppState>,
    /// The citizens' requests in flight (the gauge `/metrics` shows) and the operators'.
    citizens: Arc<AtomicU64>,
    admin: Arc<AtomicU64>,
}

impl Shed {
    pub fn new(state: web::Data<AppState>) -> Self {
        Self {
            citizens: state.http_metrics.in_flight.clone(),
            admin: Arc::default(),
            state,
        }
    }
}

impl<S, B> Transform<S, ServiceRequest> for Shed
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Transform = ShedService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(ShedService {
            service,
            shed: self.clone(),
        }))
    }
}

pub struct ShedService<S> {
    service: S,
    shed: Shed,
}

/// A place in flight, given back when the answer is ready or the request is dropped (the
/// client went away).
struct Place(Arc<AtomicU64>);

impl Drop for Place {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn exempt(path: &str) -> bool {
    matches!(
        path,
        "/healthz" | "/readyz" | "/metrics" | "/api-docs/openapi.json"
    )
}

impl<S, B> Service<ServiceRequest> for ShedService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    actix_web::dev::forward_ready!(service);

    fn call(&self, mut req: ServiceRequest) -> Self::Future {
        // The connection's watchdog leaves it alone while this request is in progress.
        let progress = super::watchdog::in_progress(req.request());
        if exempt(req.path()) {
            let fut = self.service.call(req);
            return Box::pin(async move {
                let res = fut.await;
                drop(progress);
                Ok(res?.map_into_left_body())
            });
        }
        let config = &self.shed.state.config;
        let (counter, limit) = if req.path().starts_with("/api/v1/admin/") {
            (&self.shed.admin, ADMIN_IN_FLIGHT)
        } else {
            (&self.shed.citizens, config.max_in_flight as u64)
        };
        let budget = Budget {
            counter: counter.clone(),
            limit,
        };
        // A request takes its place in flight when it can start work: at once without a body,
        // once its whole body has arrived with one (a body still arriving costs the server
        // nothing but a connection, so slow senders cannot fill the budget and lock everyone
        // else out; the body deadline bounds them).
        let place: Rc<RefCell<Option<Place>>> = Rc::default();
        let refused = Rc::new(Cell::new(false));
        let expired: Rc<RefCell<Option<Payload>>> = Rc::default();
        let timed_out = Rc::new(Cell::new(false));
        if has_body(&req) {
            let timeout = Duration::from_millis(config.request_timeout_ms.max(1));
            let inner = req.take_payload();
            let stream = BodyDeadline {
                inner: Some(inner),
                timer: Box::pin(tokio::time::sleep(timeout)),
                held: expired.clone(),
                timed_out: timed_out.clone(),
                budget,
                place: place.clone(),
                refused: refused.clone(),
            };
            let boxed: Pin<Box<dyn futures_util::Stream<Item = _>>> = Box::pin(stream);
            req.set_payload(Payload::from(boxed));
        } else {
            match budget.take() {
                Some(p) => *place.borrow_mut() = Some(p),
                None => {
                    let answer = self.shed.refusal();
                    return Box::pin(ready(Ok(req.into_response(answer).map_into_right_body())));
                }
            }
        }
        let fut = self.service.call(req);
        let shed = self.shed.clone();
        Box::pin(async move {
            let res = fut.await;
            drop((place.take(), progress));
            let res = res?;
            if refused.get() {
                // Its body read in full, the request found the budget spent: the handler saw
                // the body cut off and did nothing; answer what a request without a body gets.
                let (req, _) = res.into_parts();
                return Ok(ServiceResponse::new(req, shed.refusal()).map_into_right_body());
            }
            if !timed_out.get() {
                return Ok(res.map_into_left_body());
            }
            // The unread body goes out with the answer, held by it until its last byte is
            // written: while it is alive actix counts the request as one with a body left
            // unread and closes the connection after the answer (a dropped chunked body it
            // would go on draining, as slowly as the client sends it).
            let text = serde_json::json!({
                "error": "validation",
                "message": "the request body did not arrive in time",
            })
            .to_string();
            let mut answer = HttpResponse::build(StatusCode::REQUEST_TIMEOUT)
                .content_type("application/json")
                .body(HoldingBody {
                    bytes: Some(web::Bytes::from(text)),
                    _unread: expired.take(),
                });
            answer.head_mut().set_connection_type(ConnectionType::Close);
            let (req, _) = res.into_parts();
            Ok(ServiceResponse::new(req, answer).map_into_right_body())
        })
    }
}

/// Places in flight for one kind of request.
struct Budget {
    counter: Arc<AtomicU64>,
    limit: u64,
}

impl Budget {
    /// A place, if one is free (0: no limit).
    fn take(&self) -> Option<Place> {
        let before = self.counter.fetch_add(1, Ordering::AcqRel);
        let place = Place(self.counter.clone());
        (self.limit == 0 || before < self.limit).then_some(place)
    }
}

impl Shed {
    /// The answer to a request past the budget, counted on `/metrics`.
    fn refusal(&self) -> HttpResponse {
        let n = self.state.http_metrics.shed.fetch_add(1, Ordering::Relaxed);
        ApiError::unavailable(
            "unavailable",
            "the server is at capacity; nothing was done, try again shortly",
            1 + n % 3,
        )
        .error_response()
    }
}

fn has_body(req: &ServiceRequest) -> bool {
    let h = req.headers();
    h.contains_key(header::TRANSFER_ENCODING)
        || h.get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() != "0")
}

/// The request body, cut off with an error once the deadline passes (the rest of it is then
/// handed to `held`, not dropped); at its end, the request takes its place in flight, or is
/// cut off with an error and marked `refused` if none is free.
struct BodyDeadline {
    inner: Option<Payload>,
    timer: Pin<Box<tokio::time::Sleep>>,
    held: Rc<RefCell<Option<Payload>>>,
    timed_out: Rc<Cell<bool>>,
    budget: Budget,
    place: Rc<RefCell<Option<Place>>>,
    refused: Rc<Cell<bool>>,
}

/// An answer's bytes, and the request body left unread until they are sent.
struct HoldingBody {
    bytes: Option<web::Bytes>,
    _unread: Option<Payload>,
}

impl MessageBody for HoldingBody {
    type Error = std::convert::Infallible;

    fn size(&self) -> BodySize {
        BodySize::Sized(self.bytes.as_ref().map_or(0, |b| b.len() as u64))
    }

    fn poll_next(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<web::Bytes, Self::Error>>> {
        Poll::Ready(self.get_mut().bytes.take().map(Ok))
    }
}

impl futures_util::Stream for BodyDeadline {
    type Item = Result<web::Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(inner).poll_next(cx) {
            Poll::Ready(None) => {
                self.inner = None;
                return match self.budget.take() {
                    Some(place) => {
                        *self.place.borrow_mut() = Some(place);
                        Poll::Ready(None)
                    }
                    None => {
                        self.refused.set(true);
                        Poll::Ready(Some(Err(PayloadError::Io(std::io::Error::other(
                            "the server is at capacity",
                        )))))
                    }
                };
            }
            Poll::Ready(item) => return Poll::Ready(item),
            Poll::Pending => {}
        }
        if self.timer.as_mut().poll(cx).is_ready() {
            self.timed_out.set(true);
            let rest = self.inner.take();
            *self.held.borrow_mut() = rest;
            return Poll::Ready(Some(Err(PayloadError::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the request body did not arrive in time",
            )))));
        }
        Poll::Pending
    }
}
