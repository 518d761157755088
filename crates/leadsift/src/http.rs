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
    /// Who may read `/metrics`: a bearer token, or a client in these networks.
    pub metrics_token: leadsift_core::Secret,
    pub metrics_networks: Arc<Vec<Network>>,
}

/// An IP network in CIDR notation (`10.0.0.0/8`, `::1/128`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    address: std::net::IpAddr,
    prefix: u8,
}

impl std::str::FromStr for Network {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, String> {
        let (address, prefix) = raw.split_once('/').unwrap_or((raw, ""));
        let address: std::net::IpAddr = address.trim().parse().map_err(|_| format!("{raw:?} is not an IP network"))?;
        let max = if address.is_ipv4() { 32 } else { 128 };
        let prefix =
            if prefix.is_empty() { max } else { prefix.parse().map_err(|_| format!("{raw:?}: bad prefix"))? };
        if prefix > max {
            return Err(format!("{raw:?}: prefix longer than {max}"));
        }
        Ok(Network { address, prefix })
    }
}

impl Network {
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        use std::net::IpAddr;
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.address, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
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

async fn metrics(
    State(state): State<HttpState>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<std::net::SocketAddr>,
    headers: axum::http::HeaderMap,
) -> Response {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let token_ok = !state.metrics_token.is_empty()
        && bool::from(subtle::ConstantTimeEq::ct_eq(presented.as_bytes(), state.metrics_token.expose().as_bytes()));
    if !token_ok && !state.metrics_networks.iter().any(|n| n.contains(peer.ip())) {
        return (StatusCode::UNAUTHORIZED, "metrics need http.metrics_token or a client in http.metrics_networks\n")
            .into_response();
    }
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

#[cfg(test)]
mod tests {
    use super::Network;

    #[test]
    fn networks_match_their_addresses() {
        let loopback: Network = "127.0.0.0/8".parse().unwrap();
        assert!(loopback.contains("127.0.0.1".parse().unwrap()));
        assert!(loopback.contains("::ffff:127.0.0.1".parse().unwrap()), "IPv4-mapped");
        assert!(!loopback.contains("10.0.0.1".parse().unwrap()));
        let docker: Network = "172.28.0.0/16".parse().unwrap();
        assert!(docker.contains("172.28.3.4".parse().unwrap()) && !docker.contains("172.29.0.1".parse().unwrap()));
        let v6: Network = "::1/128".parse().unwrap();
        assert!(v6.contains("::1".parse().unwrap()) && !v6.contains("::2".parse().unwrap()));
        let any: Network = "0.0.0.0/0".parse().unwrap();
        assert!(any.contains("8.8.8.8".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<Network>().is_err() && "nope".parse::<Network>().is_err());
    }
}
