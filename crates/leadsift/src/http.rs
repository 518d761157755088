//! The HTTP server of `leadsift run`: `/healthz`, Prometheus `/metrics`,
//! the `/intake/*` webhooks of leadsift-webhooks, and the `/api/*` JSON API.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use leadsift_core::Queue;
use leadsift_pipeline::{Metrics, RulesHandle};
use serde_json::json;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
pub struct HttpState {
    /// The queue whose depth `/healthz` and `/metrics` report.
    pub queue: Arc<dyn Queue>,
    pub metrics: Metrics,
    pub rules: Arc<RulesHandle>,
    /// The webhook routes, merged in as they are.
    pub webhooks: Router,
    /// The `/api/*` routes (empty when the API is off).
    pub api: Router,
    /// The web UI's pages (empty when it is off).
    pub web: Router,
}

pub fn router(state: HttpState) -> Router {
    let webhooks = state.webhooks.clone();
    let api = state.api.clone();
    let web = state.web.clone();
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(state)
        .merge(webhooks)
        .merge(api)
        .merge(web)
}

async fn healthz(State(state): State<HttpState>) -> Response {
    match state.queue.depth().await {
        Ok(depth) => {
            state.metrics.queue_depth.set(depth as i64);
            let body = json!({
                "status": "ok",
                "queue_depth": depth,
                "rules": state.rules.current().rules().count(),
            });
            (StatusCode::OK, axum::Json(body)).into_response()
        }
        Err(error) => {
            let body = json!({ "status": "unavailable", "error": error.to_string() });
            (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response()
        }
    }
}

async fn metrics(State(state): State<HttpState>) -> Response {
    if let Ok(depth) = state.queue.depth().await {
        state.metrics.queue_depth.set(depth as i64);
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render()).into_response()
}

/// Serves until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: HttpState,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    // Connect info gives the web-form rate limit the client address.
    let service = router(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, service).with_graceful_shutdown(async move { shutdown.cancelled().await }).await?;
    Ok(())
}
