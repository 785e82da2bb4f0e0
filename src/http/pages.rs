//! The citizen's page (`/`) and the operators' dashboard (`/admin`): hand-written HTML, CSS
//! and JavaScript from `assets/`, compiled into the binary so that the server is the only
//! thing to deploy and a page can never be out of step with the API it calls.
//!
//! Caching: the pages themselves are revalidated on every load (`no-cache` plus an `ETag`, so
//! a repeat visit costs a `304`), while their assets live under `/assets/<version>/`, where
//! `<version>` is a hash of every asset; those are cached for a year. A new build changes the
//! hash, so a browser never mixes the HTML of one build with the script of another. Relative
//! imports between the scripts resolve under the same versioned folder.

use crate::error::ApiError;
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::Compress;
use actix_web::{guard, web, HttpRequest, HttpResponse};
use sha2::{Digest, Sha256};
use std::sync::OnceLock;

/// One file under `/assets/<version>/`.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const JS: &str = "text/javascript; charset=utf-8";

/// An asset of `assets/`, by file name, compiled in.
macro_rules! asset {
    ($name:literal, $content_type:expr) => {
        Asset {
            name: $name,
            content_type: $content_type,
            body: include_bytes!(concat!("../../assets/", $name)),
        }
    };
}

const ASSETS: &[Asset] = &[
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("i18n.js", JS),
    asset!("common.js", JS),
    asset!("charts.js", JS),
    asset!("citizen.js", JS),
    // The citizen page solves join challenges in this worker (same origin, `worker-src`).
    asset!("pow-worker.js", JS),
    asset!("admin.js", JS),
    asset!("favicon.svg", "image/svg+xml"),
];

const CITIZEN_HTML: &str = include_str!("../../assets/index.html");
const ADMIN_HTML: &str = include_str!("../../assets/admin.html");

/// Only this server's own origin: nothing is loaded from the internet, and no inline script
/// can run even if a cohort or center name ever slipped through unescaped.
const CSP: &str = "default-src 'none'; script-src 'self'; worker-src 'self'; style-src 'self'; \
                   img-src 'self' data:; \
                   connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

struct Rendered {
    version: String,
    citizen: Page,
    admin: Page,
}

struct Page {
    html: String,
    etag: String,
}

/// Rendered once, at the first request: the hash of the assets and both pages pointing at it.
fn rendered() -> &'static Rendered {
    static RENDERED: OnceLock<Rendered> = OnceLock::new();
    RENDERED.get_or_init(|| {
        let mut hash = Sha256::new();
        for a in ASSETS {
            hash.update(a.name.as_bytes());
            hash.update([0]);
            hash.update(a.body);
        }
        let version = short_hex(&hash.finalize());
        let page = |template: &str| {
            let html = template.replace("{{v}}", &version);
            let etag = format!("W/\"{}\"", short_hex(&Sha256::digest(html.as_bytes())));
            Page { html, etag }
        };
        Rendered {
            citizen: page(CITIZEN_HTML),
            admin: page(ADMIN_HTML),
            version,
        }
    })
}

/// The first 8 bytes of a digest as hex: plenty to tell builds apart.
fn short_hex(digest: &[u8]) -> String {
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    let read = || guard::Any(guard::Get()).or(guard::Head());
    cfg.service(
        web::resource("/")
            .wrap(Compress::default())
            .route(web::route().guard(read()).to(citizen_page)),
    )
    .service(
        web::resource(["/admin", "/admin/"])
            .wrap(Compress::default())
            .route(web::route().guard(read()).to(admin_page)),
    )
    .service(
        web::resource("/assets/{version}/{name}")
            .wrap(Compress::default())
            .route(web::route().guard(read()).to(asset)),
    );
}

async fn citizen_page(req: HttpRequest) -> HttpResponse {
    page(&req, &rendered().citizen)
}

async fn admin_page(req: HttpRequest) -> HttpResponse {
    page(&req, &rendered().admin)
}

fn page(req: &HttpRequest, page: &'static Page) -> HttpResponse {
    let mut res = answer(req, &page.etag, page.html.as_bytes());
    let headers = res.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    res
}

async fn asset(
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (version, name) = path.into_inner();
    let asset = ASSETS
        .iter()
        .find(|a| a.name == name)
        .ok_or_else(|| ApiError::not_found("asset"))?;
    let current = &rendered().version;
    // A page from an older build asks for its own version: it gets today's file, but not for
    // keeps, so that it picks up the right one once the page itself is reloaded.
    let cache = if version == *current {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let mut res = answer(&req, &format!("W/\"{current}\""), asset.body);
    let headers = res.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    Ok(res)
}

/// `304 Not Modified` if the browser holds this version already, else the body; with the
/// `ETag` either way. The tags are weak (`W/`) because the gzipped and the plain body share one.
fn answer(req: &HttpRequest, etag: &str, body: &'static [u8]) -> HttpResponse {
    let mut res = if matches_etag(req, etag) {
        HttpResponse::NotModified().finish()
    } else {
        HttpResponse::Ok().body(body)
    };
    let headers = res.headers_mut();
    if let Ok(value) = HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, value);
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    res
}

fn matches_etag(req: &HttpRequest, etag: &str) -> bool {
    req.headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v: &HeaderValue| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_a_page_names_is_served() {
        let r = rendered();
        for html in [&r.citizen.html, &r.admin.html] {
            for part in html.split(&format!("/assets/{}/", r.version)).skip(1) {
                let name = part.split('"').next().unwrap_or_default();
                assert!(
                    ASSETS.iter().any(|a| a.name == name),
                    "a page names /assets/{name}, which is not embedded"
                );
            }
            assert!(!html.contains("{{v}}"), "a placeholder was left in a page");
        }
    }

    #[test]
    fn every_module_import_is_served() {
        for a in ASSETS.iter().filter(|a| a.name.ends_with(".js")) {
            let text = std::str::from_utf8(a.body).expect("assets are UTF-8");
            for part in text.split("from './").skip(1) {
                let name = part.split('\'').next().unwrap_or_default();
                assert!(
                    ASSETS.iter().any(|b| b.name == name),
                    "{} imports ./{name}, which is not embedded",
                    a.name
                );
            }
        }
    }
}
