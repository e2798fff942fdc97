//! The web console's files at `/`, with the headers that keep the page to itself.
//!
//! The console is a single page with hash routes: its files, and index.html for any other path.
//! Every such response carries a Content-Security-Policy allowing only the console's own files
//! and gRPC-web to its own origin (no inline script or style: index.html loads app.js and app.css;
//! ECharts draws on canvas and sets styles through the DOM, which CSP does not restrict),
//! `frame-ancestors 'none'` with `X-Frame-Options: DENY` for browsers without CSP 2, `nosniff`,
//! `Referrer-Policy: no-referrer`, and, when the listener speaks TLS, `Strict-Transport-Security`
//! (sent over plaintext it would be ignored, and over a TLS proxy the proxy should send it).
//! The gRPC services on the same listener are not wrapped: these are headers for documents.
//!
//! Caching: the build names the script and the stylesheet after their content (`app-3F2A9C1B.js`),
//! so those are cached for a year as immutable; everything else (index.html, which names the
//! current ones, the favicon, a 404) is `no-cache`, revalidated on every load, so a new release
//! reaches a wall screen at its next reload.

use std::path::Path;

use axum::{extract::Request, middleware::Next, response::Response};
use http::{header, HeaderValue};
use tower::ServiceBuilder;
use tower_http::{
    compression::CompressionLayer,
    services::{ServeDir, ServeFile},
    set_header::SetResponseHeaderLayer,
};

/// Scripts, styles, images, fonts and connections from the console's origin only; `data:` and
/// `blob:` images for ECharts' exports; no plugins, no `<base>`, no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
    style-src 'self'; img-src 'self' data: blob:; font-src 'self'; connect-src 'self'; \
    object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// A year, the usual HSTS lifetime.
pub const STRICT_TRANSPORT_SECURITY: &str = "max-age=31536000";

/// For files named after their content: a new build has new names, so they never change.
pub const CACHE_IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// For the page and anything not named by content: ask the server every time.
pub const CACHE_REVALIDATE: &str = "no-cache";

/// `/app-3F2A9C1B.js`: a name ending in a dash, at least eight letters or digits of a content hash
/// (esbuild's `[name]-[hash]`) and an extension.
fn is_content_named(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or_default();
    let Some((stem, _extension)) = name.rsplit_once('.') else {
        return false;
    };
    stem.rsplit_once('-').is_some_and(|(base, hash)| {
        !base.is_empty() && hash.len() >= 8 && hash.bytes().all(|b| b.is_ascii_alphanumeric())
    })
}

async fn cache_control(request: Request, next: Next) -> Response {
    let immutable = is_content_named(request.uri().path());
    let mut response = next.run(request).await;
    let value = if immutable && response.status().is_success() {
        CACHE_IMMUTABLE
    } else {
        CACHE_REVALIDATE
    };
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static(value));
    response
}

/// `router` with the console in `dir` as its fallback (gzipped when the browser asks: the bundle
/// is mostly ECharts and shrinks to a third), with the security headers.
pub(crate) fn serve(router: axum::Router, dir: &Path, tls: bool) -> axum::Router {
    let hsts = tls.then_some(HeaderValue::from_static(STRICT_TRANSPORT_SECURITY));
    let files = ServiceBuilder::new()
        .layer(SetResponseHeaderLayer::overriding(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::STRICT_TRANSPORT_SECURITY,
            move |_: &http::Response<_>| hsts.clone(),
        ))
        .layer(CompressionLayer::new())
        .service(ServeDir::new(dir).not_found_service(ServeFile::new(dir.join("index.html"))));
    let files = axum::Router::new()
        .fallback_service(files)
        .layer(axum::middleware::from_fn(cache_control));
    router.fallback_service(files)
}

#[cfg(test)]
mod tests {
    use super::is_content_named;

    #[test]
    fn only_files_named_after_their_content_are_immutable() {
        for path in [
            "/app-3F2A9C1B.js",
            "/app-NQJ4K2ZP.css",
            "/assets/x-0123456789ab.svg",
        ] {
            assert!(is_content_named(path), "{path}");
        }
        for path in [
            "/",
            "/index.html",
            "/app.js",
            "/favicon.svg",
            "/no-such",
            "/a-b.js",
            "/-3F2A9C1B.js",
            "/app-3F2A9C1B",
        ] {
            assert!(!is_content_named(path), "{path}");
        }
    }
}
