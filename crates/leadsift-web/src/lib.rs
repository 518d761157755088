//! leadsift's web UI, served by `leadsift run`: server-rendered HTML pages
//! behind logins with roles (viewer, manager, admin).
//!
//! Access control is the first layer, not an afterthought: every page sits
//! behind [`require`], which finds the session from its cookie, refuses
//! anonymous requests (a redirect to `/login` for pages, 401 otherwise) and
//! requests of a lower role (403), and checks the CSRF token of every POST
//! before the handler runs. Handlers therefore never see an unauthenticated
//! or forged request. This crate depends on the store's user and session
//! tables; it does no triage.

pub mod auth;
mod html;
mod overview;
mod pages;
pub mod report_render;
pub mod rules;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use chrono::Utc;
use leadsift_core::{Role, Session};
use leadsift_store::SqlStore;
use serde::Deserialize;

/// `[web]` settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebSettings {
    /// Serve the web UI on `http.listen` (log in with a user from `leadsift users add`).
    #[serde(default = "default_enabled")]
    pub enabled: bool,
    /// Mark cookies `Secure` (sent over HTTPS only). Turn off only for plain
    /// HTTP on a trusted network or in development.
    #[serde(default = "default_enabled")]
    pub secure_cookies: bool,
    /// How long a login lasts.
    #[serde(default = "default_session_hours")]
    pub session_hours: u32,
}

fn default_enabled() -> bool {
    true
}
fn default_session_hours() -> u32 {
    12
}

impl Default for WebSettings {
    fn default() -> Self {
        Self { enabled: default_enabled(), secure_cookies: default_enabled(), session_hours: default_session_hours() }
    }
}

/// What every page handler shares.
#[derive(Debug, Clone)]
pub struct WebState {
    pub store: SqlStore,
    pub settings: Arc<WebSettings>,
    /// Display names of the lead stages.
    pub stage_names: Arc<std::collections::BTreeMap<String, String>>,
    /// The reports' currency and the team's UTC offset.
    pub report_currency: leadsift_core::Currency,
    pub utc_offset: chrono::FixedOffset,
    /// This process's counters, for the overview.
    pub metrics: Option<leadsift_pipeline::Metrics>,
    /// The rules in force (for the rules page); `None` where no triage runs.
    pub rules: Option<rules::RulesContext>,
}

/// Forms are small, but the rules page posts a whole rules file and a
/// message to test; anything bigger is not ours.
const MAX_FORM_BYTES: usize = 4 * 1024 * 1024;

/// The UI's routes, each group behind the role it needs.
pub fn router(state: WebState) -> Router {
    if !state.settings.enabled {
        return Router::new();
    }
    let viewer = Router::new()
        .route("/", get(overview::overview))
        .route("/overview/live", get(overview::overview_live))
        .route("/reports", get(pages::reports))
        .route("/reports/export.csv", get(pages::reports_csv))
        .route("/logout", post(pages::logout))
        .route_layer(middleware::from_fn_with_state((state.clone(), Role::Viewer), require));
    let manager = Router::new()
        .route("/leads", get(pages::leads))
        .route("/leads/{id}", get(pages::lead))
        .route("/leads/{id}/move", post(pages::move_lead))
        .route("/leads/{id}/allowlist", post(pages::allowlist_sender))
        .route_layer(middleware::from_fn_with_state((state.clone(), Role::Manager), require));
    let admin = Router::new()
        .route("/users", get(pages::users))
        .route("/rules", get(rules::rules_page))
        .route("/rules/test", post(rules::rules_test))
        .route("/lists", get(pages::lists))
        .route("/lists/{list}/add", post(pages::list_add))
        .route("/lists/{list}/remove", post(pages::list_remove))
        .route_layer(middleware::from_fn_with_state((state.clone(), Role::Admin), require));
    Router::new()
        .route("/login", get(pages::login_form).post(pages::login))
        .merge(viewer)
        .merge(manager)
        .merge(admin)
        .with_state(state)
}

/// The session of a request, if its cookie names a live one.
async fn session_of(state: &WebState, headers: &HeaderMap) -> Option<Session> {
    let cookies = headers.get(header::COOKIE)?.to_str().ok()?;
    let token = auth::cookie_value(cookies, auth::SESSION_COOKIE)?;
    match state.store.session(&auth::token_digest(token), Utc::now()).await {
        Ok(session) => session,
        Err(error) => {
            tracing::warn!(error = %error, "cannot read a session");
            None
        }
    }
}

/// Lets the request through only with a live session of at least `needed`,
/// and, for POST, the session's CSRF token in the form (`csrf`) or the
/// `X-CSRF-Token` header.
async fn require(State((state, needed)): State<(WebState, Role)>, request: Request, next: Next) -> Response {
    let Some(session) = session_of(&state, request.headers()).await else {
        if request.method() == Method::GET {
            let next_path = request.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/");
            let target = format!("/login?next={}", html::url_encode(next_path));
            return Redirect::to(&target).into_response();
        }
        return (StatusCode::UNAUTHORIZED, "log in first").into_response();
    };
    if !session.user.role.allows(needed) {
        let body = html::forbidden(&session, needed, html::Lang::of(request.headers()));
        return (StatusCode::FORBIDDEN, body).into_response();
    }
    let request = if request.method() == Method::POST {
        let (parts, body) = request.into_parts();
        let Ok(bytes) = to_bytes(body, MAX_FORM_BYTES).await else {
            return (StatusCode::PAYLOAD_TOO_LARGE, "form too large").into_response();
        };
        let from_header = parts.headers.get("x-csrf-token").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let from_form = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&bytes)
            .ok()
            .and_then(|fields| fields.into_iter().find(|(k, _)| k == "csrf").map(|(_, v)| v));
        let presented = from_header.or(from_form).unwrap_or_default();
        if !auth::tokens_match(&presented, &session.csrf_token) {
            return (StatusCode::FORBIDDEN, "missing or wrong CSRF token; reload the page").into_response();
        }
        Request::from_parts(parts, Body::from(bytes))
    } else {
        request
    };
    let mut request = request;
    request.extensions_mut().insert(session);
    next.run(request).await
}

/// How long a session lives.
pub(crate) fn session_ttl(settings: &WebSettings) -> Duration {
    Duration::from_secs(u64::from(settings.session_hours.max(1)) * 3600)
}
