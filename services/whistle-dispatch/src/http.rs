//! The operators' HTTP endpoint, on `--http-listen` only (several replicas share a host in tests
//! and the chaos runner, so none opens by default): `GET /metrics` (Prometheus text of
//! [`Metrics`]), `GET /livez` (200 while the process serves) and `GET /readyz` (200 only while
//! every NATS connection is up and the PostgreSQL pool answers, else 503 with the reason).
//!
//! The three paths are a contract with the deployment's probes and scrape configuration.

use std::{sync::Arc, time::Duration};

use axum::{extract::State, http::StatusCode, routing::get, Router};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::Metrics;

/// How long `/readyz` waits for PostgreSQL before answering 503: long enough for a busy pool to
/// hand out a connection (a probe's timeout must be longer).
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// What the endpoints read.
pub(crate) struct Probes {
    /// Every connection dispatch keeps to NATS (intake and commands, the relay).
    pub nats: Vec<async_nats::Client>,
    pub pool: PgPool,
    pub metrics: Arc<Metrics>,
}

/// Serves until `shutdown`; an accept error is logged and the listener goes on.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    probes: Probes,
    shutdown: CancellationToken,
) {
    let addr = listener.local_addr().ok();
    let router = Router::new()
        .route("/metrics", get(metrics))
        .route("/livez", get(|| async { "live\n" }))
        .route("/readyz", get(readyz))
        .with_state(Arc::new(probes));
    info!(?addr, "serving /metrics, /livez and /readyz");
    if let Err(e) = axum::serve(listener, router)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
    {
        warn!(error = %e, "the HTTP endpoint stopped");
    }
}

async fn metrics(State(probes): State<Arc<Probes>>) -> impl axum::response::IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        probes.metrics.render(),
    )
}

async fn readyz(State(probes): State<Arc<Probes>>) -> (StatusCode, String) {
    match not_ready(&probes).await {
        None => (StatusCode::OK, "ready\n".into()),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {reason}\n"),
        ),
    }
}

/// Why this replica should get no work now, if it should not.
async fn not_ready(probes: &Probes) -> Option<String> {
    for client in &probes.nats {
        let state = client.connection_state();
        if state != async_nats::connection::State::Connected {
            return Some(format!("NATS connection {state}"));
        }
    }
    match tokio::time::timeout(READY_TIMEOUT, sqlx::query("SELECT 1").execute(&probes.pool)).await {
        Ok(Ok(_)) => None,
        Ok(Err(e)) => Some(format!("PostgreSQL: {e}")),
        Err(_) => Some(format!(
            "PostgreSQL did not answer within {} s",
            READY_TIMEOUT.as_secs()
        )),
    }
}
