//! The daemon's HTTP endpoints (axum): `/` (the status page, HTML), `/healthz`, `/readyz`, `/metrics`,
//! `/status` (JSON).

use std::net::SocketAddr;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::health::Health;

/// Default bind address: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9465";

/// `[http]` section of the configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Serve the endpoints at all.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Bind address (default `127.0.0.1:9465`).
    #[serde(default = "default_listen")]
    pub listen: String,
}

fn yes() -> bool {
    true
}
fn default_listen() -> String {
    DEFAULT_LISTEN.into()
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: default_listen(),
        }
    }
}

#[derive(Clone)]
struct AppState {
    health: Health,
    metrics: Option<PrometheusHandle>,
    fallback_after: chrono::Duration,
    clock: clock::SharedClock,
}

/// The router, separate from binding so tests can call it directly.
pub fn router(
    health: Health,
    metrics: Option<PrometheusHandle>,
    fallback_after: chrono::Duration,
    clock: clock::SharedClock,
) -> Router {
    Router::new()
        .route("/", get(status_page))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route("/status", get(status))
        .with_state(AppState {
            health,
            metrics,
            fallback_after,
            clock,
        })
}

async fn readyz(State(app): State<AppState>) -> impl IntoResponse {
    if app.health.is_ready(app.clock.now(), app.fallback_after) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

async fn metrics_text(State(app): State<AppState>) -> impl IntoResponse {
    match &app.metrics {
        Some(h) => (StatusCode::OK, h.render()),
        None => (
            StatusCode::NOT_FOUND,
            "metrics recorder not installed\n".to_string(),
        ),
    }
}

async fn status(State(app): State<AppState>) -> impl IntoResponse {
    Json(app.health.snapshot())
}

async fn status_page(State(app): State<AppState>) -> impl IntoResponse {
    let page =
        crate::status_page::render(&app.health.snapshot(), app.clock.now(), app.fallback_after);
    (
        [
            (axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (axum::http::header::CACHE_CONTROL, "no-store"),
        ],
        page,
    )
}

/// Binds `listen` and serves until `cancel` fires. Returns the bound address once listening.
pub async fn serve(
    listen: &str,
    router: Router,
    cancel: CancellationToken,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot bind the HTTP endpoint on {listen}: {e}"))?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let shutdown = async move { cancel.cancelled().await };
        if let Err(err) = axum::serve(listener, router)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %err, "HTTP endpoint failed");
        }
    });
    Ok((addr, task))
}
