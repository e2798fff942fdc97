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

use std::path::Path;

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
    router.fallback_service(files)
}
