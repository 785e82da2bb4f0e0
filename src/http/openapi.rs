//! The OpenAPI 3.1 document of the contract, served at `GET /api-docs/openapi.json`.
//!
//! Paths, bodies, parameters and successful answers come from the `#[utoipa::path]`
//! attributes on the handlers and the `ToSchema` types they parse and answer with, so the
//! document moves with the code. Three things are added here, in one place each: the error
//! answers of every operation (status, the codes it may carry, `Retry-After`), the bearer
//! schemes (admin token, ticket, pass, session, leftover entry), and the links that chain join -> poll ->
//! verify -> book for tools that follow them (schemathesis' stateful phase in CI).

use super::{admin, citizen, leftovers, notifications, rebooking};
use actix_web::HttpResponse;
use std::sync::OnceLock;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Vaccine pre-reservation",
        description = "Cohort waiting rooms, identity verification and durable two-dose \
            bookings. Every 4xx and 5xx answer is `{\"error\", \"message\"}`; a 503 and a 429 \
            carry `Retry-After` in whole seconds. A method a path does not answer gets 405 \
            `method_not_allowed` with `Allow`; an unknown path, 404 `not_found`.",
        version = "1"
    ),
    paths(
        super::healthz,
        super::readyz,
        super::metrics,
        document,
        citizen::list_cohorts,
        citizen::challenge,
        citizen::join,
        citizen::poll,
        citizen::verify,
        citizen::list_centers,
        citizen::list_slots,
        citizen::book,
        citizen::lookup,
        citizen::cancel,
        admin::create_cohort,
        admin::list_cohorts,
        admin::patch_cohort,
        admin::create_center,
        admin::list_centers,
        admin::add_slots,
        admin::get_booking,
        admin::stats,
        leftovers::post_leftovers,
        leftovers::list_leftovers,
        leftovers::sign_up,
        leftovers::status,
        leftovers::accept,
        leftovers::decline,
        leftovers::leave,
        rebooking::patch_slot,
        rebooking::start_shift,
        rebooking::get_job,
        rebooking::list_jobs,
        notifications::list,
    ),
    components(schemas(crate::error::ErrorBody)),
    modifiers(&Contract)
)]
struct ApiDoc;

/// The document, built once.
pub fn json() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        let mut doc =
            serde_json::to_value(ApiDoc::openapi()).expect("the OpenAPI document serialises");
        add_links(&mut doc);
        doc.to_string()
    })
}

/// Adds `LINKS` to the serialised document. (utoipa 5's `Link` serialises its fields in
/// snake case, `operation_id`, which no OpenAPI tool reads; so the links are written here.)
fn add_links(doc: &mut serde_json::Value) {
    let Some(paths) = doc["paths"].as_object_mut() else {
        return;
    };
    for item in paths.values_mut() {
        let Some(ops) = item.as_object_mut() else {
            continue;
        };
        for op in ops.values_mut() {
            let id = op["operationId"].as_str().unwrap_or_default().to_string();
            for (from, status, name, to, params, body) in LINKS {
                if *from != id {
                    continue;
                }
                let mut link = serde_json::json!({ "operationId": to });
                let parameters: serde_json::Map<_, _> = params
                    .iter()
                    .map(|(k, v)| (k.to_string(), serde_json::Value::from(*v)))
                    .collect();
                if !parameters.is_empty() {
                    link["parameters"] = parameters.into();
                }
                if let Some(body) = body {
                    link["requestBody"] =
                        serde_json::from_str(body).expect("a link's body is JSON");
                }
                if let Some(response) = op["responses"][*status].as_object_mut() {
                    let links = response
                        .entry("links")
                        .or_insert_with(|| serde_json::json!({}));
                    links[*name] = link;
                }
            }
        }
    }
}

/// This document.
#[utoipa::path(get, path = "/api-docs/openapi.json", operation_id = "openapi", tag = "operations",
    responses((status = 200, description = "The OpenAPI document of this contract",
        body = Object)))]
pub async fn document() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(json())
}

/// Which error answers each operation may give: status and the codes it may carry. A 503
/// (`unavailable`: the server shed the request, or a commit failed) is possible on every API
/// call and is added to all of them.
/// A status and the error codes it may carry.
type Answer = (u16, &'static [&'static str]);

const ERRORS: &[(&str, Body, &[Answer])] = &[
    ("challenge", NONE, &[NOT_FOUND]),
    (
        "join",
        JSON,
        &[
            NOT_FOUND,
            (409, &["cohort_closed", "challenge_used"]),
            RATE_LIMITED,
        ],
    ),
    ("poll", NONE, &[(401, &["invalid_ticket"])]),
    (
        "verify",
        JSON,
        &[
            (401, &["invalid_pass", "identity_rejected"]),
            (403, &["not_eligible"]),
            RATE_LIMITED,
        ],
    ),
    ("list_centers", NONE, &[(400, &["validation"])]),
    ("list_slots", NONE, &[NOT_FOUND]),
    (
        "book",
        JSON,
        &[
            (401, &["invalid_session"]),
            NOT_FOUND,
            (
                409,
                &[
                    "slot_full",
                    "already_booked",
                    "no_second_dose_slot",
                    "wrong_vaccine",
                ],
            ),
        ],
    ),
    ("lookup", JSON, &[NOT_FOUND, RATE_LIMITED]),
    ("cancel", JSON, &[NOT_FOUND, RATE_LIMITED]),
    ("admin_create_cohort", JSON, &[UNAUTHORIZED]),
    ("admin_list_cohorts", NONE, &[UNAUTHORIZED]),
    ("admin_patch_cohort", JSON, &[UNAUTHORIZED, NOT_FOUND]),
    ("admin_create_center", JSON, &[UNAUTHORIZED]),
    ("admin_list_centers", NONE, &[UNAUTHORIZED]),
    ("admin_add_slots", JSON, &[UNAUTHORIZED, NOT_FOUND]),
    ("admin_get_booking", NONE, &[UNAUTHORIZED, NOT_FOUND]),
    ("admin_stats", NONE, &[UNAUTHORIZED]),
    ("admin_post_leftovers", JSON, &[UNAUTHORIZED, NOT_FOUND]),
    (
        "admin_patch_slot",
        JSON,
        &[UNAUTHORIZED, NOT_FOUND, (409, &["slot_cancelled"])],
    ),
    ("admin_start_rebooking", JSON, &[UNAUTHORIZED]),
    ("admin_get_rebooking", NONE, &[UNAUTHORIZED, NOT_FOUND]),
    ("admin_list_rebookings", NONE, &[UNAUTHORIZED]),
    (
        "admin_notifications",
        NONE,
        &[UNAUTHORIZED, (400, &["validation"]), NOT_FOUND],
    ),
    ("list_leftovers", NONE, &[(400, &["validation"])]),
    (
        "leftovers_sign_up",
        JSON,
        &[
            (401, &["invalid_session"]),
            NOT_FOUND,
            (409, &["already_waiting"]),
        ],
    ),
    ("leftovers_status", NONE, &[INVALID_ENTRY]),
    (
        "leftovers_accept",
        NONE,
        &[INVALID_ENTRY, (409, &["no_offer", "no_second_dose_slot"])],
    ),
    (
        "leftovers_decline",
        NONE,
        &[INVALID_ENTRY, (409, &["no_offer"])],
    ),
    (
        "leftovers_leave",
        NONE,
        &[INVALID_ENTRY, (409, &["no_offer"])],
    ),
];
const INVALID_ENTRY: Answer = (401, &["invalid_entry"]);

/// Whether an operation reads a JSON body, and so may answer what any body may get.
type Body = bool;
const JSON: Body = true;
const NONE: Body = false;
/// What any JSON body may get: not JSON (400), too large (413), too slow (408), or a value
/// breaking a rule (422); all `validation`.
const BODY_ERRORS: &[Answer] = &[BAD_BODY, TOO_LARGE, SLOW_BODY, INVALID_BODY];
const NOT_FOUND: Answer = (404, &["not_found"]);

const BAD_BODY: Answer = (400, &["validation"]);
const TOO_LARGE: Answer = (413, &["validation"]);
/// The body did not arrive within `REQUEST_TIMEOUT_MS` (`http::shed`).
const SLOW_BODY: Answer = (408, &["validation"]);
const INVALID_BODY: Answer = (422, &["validation"]);
const UNAUTHORIZED: Answer = (401, &["unauthorized"]);
const RATE_LIMITED: Answer = (429, &["rate_limited"]);
/// Only the verification has a code of its own for 503.
const UNAVAILABLE: &[&str] = &["unavailable"];
const IDENTITY_UNAVAILABLE: &[&str] = &["identity_busy", "unavailable"];

/// Links: (from operation, status, name, to operation, parameters, request body as JSON).
/// The verification's body is an example identity (any name, a birth date in the example
/// cohorts' years, a phone the simulated provider vouches for), so that a tool following the
/// links gets through to booking.
type LinkSpec = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
    Option<&'static str>,
);
const LINKS: &[LinkSpec] = &[
    (
        "join",
        "201",
        "poll",
        "poll",
        &[("header.Authorization", "Bearer {$response.body#/ticket}")],
        None,
    ),
    (
        "poll",
        "200",
        "verify",
        "verify",
        &[("header.Authorization", "Bearer {$response.body#/pass}")],
        Some(r#"{"name": "김민영", "birth_date": "1968-03-01", "phone": "010-1234-5678"}"#),
    ),
    (
        "verify",
        "201",
        "book",
        "book",
        &[("header.Authorization", "Bearer {$response.body#/session}")],
        None,
    ),
    (
        "list_cohorts",
        "200",
        "join",
        "join",
        &[("path.id", "$response.body#/0/id")],
        None,
    ),
    (
        "list_centers",
        "200",
        "slots",
        "list_slots",
        &[("path.id", "$response.body#/0/id")],
        None,
    ),
    (
        "admin_create_cohort",
        "201",
        "join",
        "join",
        &[("path.id", "$response.body#/id")],
        None,
    ),
    (
        "admin_create_cohort",
        "201",
        "patch",
        "admin_patch_cohort",
        &[("path.id", "$response.body#/id")],
        None,
    ),
    (
        "admin_create_center",
        "201",
        "add_slots",
        "admin_add_slots",
        &[("path.id", "$response.body#/id")],
        None,
    ),
    (
        "admin_create_center",
        "201",
        "slots",
        "list_slots",
        &[("path.id", "$response.body#/id")],
        None,
    ),
    (
        "verify",
        "201",
        "leftovers",
        "leftovers_sign_up",
        &[("header.Authorization", "Bearer {$response.body#/session}")],
        None,
    ),
    (
        "leftovers_sign_up",
        "201",
        "status",
        "leftovers_status",
        &[("header.Authorization", "Bearer {$response.body#/entry}")],
        None,
    ),
    (
        "leftovers_sign_up",
        "201",
        "accept",
        "leftovers_accept",
        &[("header.Authorization", "Bearer {$response.body#/entry}")],
        None,
    ),
    (
        "leftovers_sign_up",
        "201",
        "decline",
        "leftovers_decline",
        &[("header.Authorization", "Bearer {$response.body#/entry}")],
        None,
    ),
    (
        "admin_create_center",
        "201",
        "leftovers",
        "admin_post_leftovers",
        &[("path.id", "$response.body#/id")],
        None,
    ),
    (
        "book",
        "201",
        "help_desk",
        "admin_get_booking",
        &[("path.code", "$response.body#/code")],
        None,
    ),
];

struct Contract;

impl Modify for Contract {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        for (name, what) in [
            ("admin", "The operators' ADMIN_TOKEN."),
            (
                "ticket",
                "A ticket: a place in a cohort's queue (from joining).",
            ),
            (
                "pass",
                "A pass: admission out of the queue (from polling once admitted).",
            ),
            ("session", "A session: a verified citizen (from verifying)."),
            (
                "entry",
                "A sign-up for leftover doses (from signing up), valid until the end of the day.",
            ),
        ] {
            let scheme = HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(what))
                .build();
            components.add_security_scheme(name, SecurityScheme::Http(scheme));
        }

        for item in doc.paths.paths.values_mut() {
            for op in [
                item.get.as_mut(),
                item.post.as_mut(),
                item.patch.as_mut(),
                item.delete.as_mut(),
            ]
            .into_iter()
            .flatten()
            {
                let id = op.operation_id.clone().unwrap_or_default();
                let (body, errors) = ERRORS
                    .iter()
                    .find(|(op_id, _, _)| *op_id == id)
                    .map_or((NONE, &[][..]), |(_, body, e)| (*body, *e));
                let body_errors = if body { BODY_ERRORS } else { &[] };
                for (status, codes) in body_errors.iter().chain(errors) {
                    op.responses
                        .responses
                        .insert(status.to_string(), error_response(*status, codes));
                }
                if !["healthz", "metrics", "openapi"].contains(&id.as_str()) {
                    let codes = if id == "verify" {
                        IDENTITY_UNAVAILABLE
                    } else {
                        UNAVAILABLE
                    };
                    op.responses
                        .responses
                        .insert("503".into(), error_response(503, codes));
                }
            }
        }
    }
}

/// An error answer: `{"error", "message"}` with `error` one of `codes`; `Retry-After` on 429
/// and 503.
fn error_response(status: u16, codes: &[&str]) -> RefOr<utoipa::openapi::Response> {
    let body = ObjectBuilder::new()
        .schema_type(Type::Object)
        .property(
            "error",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(codes.iter().copied())),
        )
        .property("message", ObjectBuilder::new().schema_type(Type::String))
        .required("error")
        .required("message");
    let mut response = ResponseBuilder::new()
        .description(format!("`{}`", codes.join("`, `")))
        .content(
            "application/json",
            ContentBuilder::new().schema(Some(body)).build(),
        );
    if matches!(status, 429 | 503) {
        let seconds = ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(1));
        response = response.header(
            "Retry-After",
            HeaderBuilder::new()
                .schema(seconds)
                .description(Some("Whole seconds to wait before trying again"))
                .build(),
        );
    }
    RefOr::T(response.build())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_document_names_every_operation_of_the_contract_once() {
        let doc: serde_json::Value = serde_json::from_str(super::json()).unwrap();
        let mut ids = vec![];
        for (_, item) in doc["paths"].as_object().unwrap() {
            for (_, op) in item.as_object().unwrap() {
                ids.push(op["operationId"].as_str().unwrap().to_string());
            }
        }
        ids.sort();
        let n = ids.len();
        ids.dedup();
        assert_eq!(ids.len(), n, "duplicate operation ids");
        assert_eq!(n, 34, "{ids:?}");
        for (id, _, _) in super::ERRORS {
            assert!(ids.iter().any(|i| i == id), "{id} has errors but no path");
        }
        for link in super::LINKS {
            assert!(ids.iter().any(|i| i == link.0) && ids.iter().any(|i| i == link.3));
        }
        let verify = &doc["paths"]["/api/v1/verifications"]["post"];
        assert_eq!(verify["security"][0]["pass"], serde_json::json!([]));
        assert!(verify["responses"]["503"]["headers"]["Retry-After"].is_object());
        let join = &doc["paths"]["/api/v1/cohorts/{id}/queue"]["post"];
        assert_eq!(
            join["responses"]["201"]["links"]["poll"]["operationId"],
            "poll"
        );
    }
}
