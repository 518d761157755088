//! leadsift's HTTP intake: webhooks that turn telephony (Zadarma-style PBX
//! notifications), Telegram, WhatsApp Cloud API, web-form and generic
//! event requests into normalised [`leadsift_core::Message`]s, plus the
//! Telegram `getUpdates` poller.
//!
//! Every request is authenticated before its body is looked at (secret
//! token, HMAC signature or shared secret; a forged or unsigned request
//! gets 401 and nothing is stored), and is answered 2xx only after its
//! messages are durably in the inbox. The key design decision is group
//! commit ([`publisher`]): concurrent requests are published in one queue
//! transaction by a single task and each is answered after its batch
//! committed, which is what lets SQLite take thousands of webhooks a second.
//!
//! This crate knows the core types, the input formats and the pipeline's
//! `Intake`; it does not know which store or queue is behind `Intake`.

pub mod config;
mod event;
mod form;
pub mod publisher;
pub mod signature;
pub mod telegram;
mod whatsapp;
pub mod zadarma;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::Duration as ChronoDuration;
use leadsift_core::{Channel, Header, LeadStore, Message, Published};
use leadsift_pipeline::{Intake, Metrics};
use prometheus::IntCounterVec;
use serde_json::json;
use tokio_util::sync::CancellationToken;

pub use config::{Secret, WebhookSettings};
pub use publisher::{Publisher, PublisherTask};

/// Header telephony intake sets on a call: how many short calls the same
/// number made in the configured window before this one. The rule
/// `CALL_REPEATED_SHORT` in rules/default.toml turns a high count into spam.
pub const RECENT_SHORT_CALLS_HEADER: &str = "X-Leadsift-Recent-Short-Calls";

/// Why a webhook request was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("missing or wrong credentials: {0}")]
    Unauthorized(&'static str),
    #[error("malformed request: {0}")]
    Malformed(String),
    #[error("this channel is not configured")]
    NotConfigured,
    #[error("too many requests from this client")]
    RateLimited,
    #[error("intake is overloaded; retry later")]
    Overloaded,
    #[error("the inbox is unavailable: {0}")]
    Unavailable(String),
    #[error("Telegram Bot API call failed: {0}")]
    TelegramApi(String),
}

impl WebhookError {
    /// Whether the sender should retry (the webhook answers 5xx/429 then).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Overloaded | Self::Unavailable(_) | Self::RateLimited | Self::TelegramApi(_))
    }

    fn status(&self) -> StatusCode {
        match self {
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Malformed(_) => StatusCode::BAD_REQUEST,
            Self::NotConfigured => StatusCode::NOT_FOUND,
            Self::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Self::Overloaded | Self::Unavailable(_) | Self::TelegramApi(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// Bounded metric label.
    fn outcome(&self) -> &'static str {
        match self {
            Self::Unauthorized(_) => "unauthorized",
            Self::Malformed(_) => "malformed",
            Self::NotConfigured => "not_configured",
            Self::RateLimited => "rate_limited",
            Self::Overloaded => "overloaded",
            Self::Unavailable(_) | Self::TelegramApi(_) => "unavailable",
        }
    }
}

/// Webhook request counters, registered in the pipeline's registry.
#[derive(Debug, Clone)]
pub struct WebhookMetrics {
    /// Requests by endpoint and outcome (accepted, ignored, honeypot, unauthorized, malformed, …).
    pub requests: IntCounterVec,
}

impl WebhookMetrics {
    pub fn register(metrics: &Metrics) -> Self {
        let requests = IntCounterVec::new(
            prometheus::Opts::new("webhook_requests_total", "Webhook requests by endpoint and outcome."),
            &["endpoint", "outcome"],
        )
        .expect("static metric definition");
        // A second registration (tests building two routers on one registry) keeps the first.
        let _ = metrics.registry.register(Box::new(requests.clone()));
        Self { requests }
    }
}

/// What every handler shares.
#[derive(Clone)]
pub(crate) struct HookState {
    pub settings: Arc<WebhookSettings>,
    pub intake: Intake,
    pub store: Arc<dyn LeadStore>,
    pub publisher: Publisher,
    pub metrics: WebhookMetrics,
    pub rate_limiter: Arc<form::RateLimiter>,
}

impl std::fmt::Debug for HookState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HookState").field("settings", &self.settings).finish_non_exhaustive()
    }
}

impl HookState {
    /// Publishes and answers 200 with the outcomes, or the error.
    async fn accept(&self, endpoint: &'static str, messages: Vec<Message>) -> Response {
        let count = messages.len();
        if count == 0 {
            return self.ignored(endpoint, "nothing to store");
        }
        match self.publisher.publish(messages).await {
            Ok(outcomes) => {
                self.count(endpoint, "accepted");
                let new = outcomes.iter().filter(|o| matches!(o, Published::New | Published::Accepted)).count();
                let body = json!({"status": "accepted", "messages": count, "new": new, "duplicate": count - new});
                (StatusCode::OK, axum::Json(body)).into_response()
            }
            Err(error) => self.reject(endpoint, &error),
        }
    }

    /// The request body, or the response to a body that could not be read
    /// (413 over `max_body_bytes`), counted like every other outcome.
    fn body(
        &self,
        endpoint: &'static str,
        body: Result<axum::body::Bytes, BytesRejection>,
    ) -> Result<axum::body::Bytes, Box<Response>> {
        body.map_err(|rejection| {
            let status = rejection.status();
            let outcome = if status == StatusCode::PAYLOAD_TOO_LARGE { "too_large" } else { "unreadable_body" };
            self.count(endpoint, outcome);
            tracing::warn!(endpoint, %status, error = %rejection.body_text(), "webhook body rejected");
            Box::new(rejection.into_response())
        })
    }

    /// 200 for a request that carried nothing to store (status callbacks, NOTIFY_START).
    fn ignored(&self, endpoint: &'static str, why: &str) -> Response {
        self.count(endpoint, "ignored");
        (StatusCode::OK, axum::Json(json!({"status": "ignored", "reason": why}))).into_response()
    }

    fn reject(&self, endpoint: &'static str, error: &WebhookError) -> Response {
        self.count(endpoint, error.outcome());
        if !matches!(error, WebhookError::RateLimited | WebhookError::NotConfigured) {
            tracing::warn!(endpoint, %error, "webhook request rejected");
        }
        (error.status(), axum::Json(json!({"status": "error", "error": error.to_string()}))).into_response()
    }

    /// 400 plus a quarantine record with the reason; 503 if even that cannot be stored.
    async fn malformed(&self, endpoint: &'static str, channel: Option<Channel>, error: String, raw: &[u8]) -> Response {
        let error = WebhookError::Malformed(error);
        match self.intake.quarantine(&format!("webhook:{endpoint}"), channel, &error.to_string(), raw).await {
            Ok(_) => self.reject(endpoint, &error),
            Err(store_error) => self.reject(endpoint, &WebhookError::Unavailable(store_error.to_string())),
        }
    }

    fn count(&self, endpoint: &'static str, outcome: &'static str) {
        self.metrics.requests.with_label_values(&[endpoint, outcome]).inc();
    }

    /// Records on a call how many short calls its number made recently
    /// (any such header the caller sent is replaced).
    async fn mark_call_history(&self, message: &mut Message) -> Result<(), WebhookError> {
        if message.channel != Channel::Call {
            return Ok(());
        }
        message.headers.retain(|h| !h.name.eq_ignore_ascii_case(RECENT_SHORT_CALLS_HEADER));
        let Some(phone) = &message.sender.phone else { return Ok(()) };
        let window = ChronoDuration::seconds(i64::try_from(self.settings.short_call_window_secs).unwrap_or(i64::MAX));
        let since = message.received_at - window;
        let count = self
            .store
            .recent_short_calls(phone, since, self.settings.short_call_max_secs, &message.dedup_key)
            .await
            .map_err(|e| WebhookError::Unavailable(e.to_string()))?;
        message.headers.push(Header { name: RECENT_SHORT_CALLS_HEADER.into(), value: count.to_string() });
        Ok(())
    }

    /// [`Self::mark_call_history`], then [`Self::accept`].
    async fn accept_call(&self, endpoint: &'static str, mut message: Message) -> Response {
        if let Err(error) = self.mark_call_history(&mut message).await {
            return self.reject(endpoint, &error);
        }
        self.accept(endpoint, vec![message]).await
    }

    fn cap(&self, mut message: Message) -> Message {
        message.cap_text(self.intake.options().max_text_bytes);
        message
    }
}

/// A long-running task of the webhooks, ready to be spawned.
pub type WebhookTask = std::pin::Pin<Box<dyn Future<Output = Result<(), WebhookError>> + Send>>;

/// The webhook routes and the tasks behind them.
#[derive(Debug)]
pub struct Webhooks {
    router: Router,
    publisher: PublisherTask,
    poller: Option<telegram::Poller>,
}

impl Webhooks {
    pub fn new(settings: WebhookSettings, intake: Intake, store: Arc<dyn LeadStore>, metrics: &Metrics) -> Self {
        let metrics = WebhookMetrics::register(metrics);
        let (publisher, task) = Publisher::new(intake.clone(), settings.publish_backlog, settings.publish_batch);
        let poller = settings.telegram.polling.then(|| {
            telegram::Poller::new(settings.telegram.clone(), publisher.clone(), intake.clone(), metrics.clone())
        });
        let max_body = settings.max_body_bytes;
        let state = HookState {
            rate_limiter: Arc::new(form::RateLimiter::new(settings.form.rate_limit_per_minute)),
            settings: Arc::new(settings),
            intake,
            store,
            publisher,
            metrics,
        };
        let router = Router::new()
            .route("/intake/event", post(event::handle))
            .route("/intake/form", post(form::handle).options(form::preflight))
            .route("/intake/telegram", post(telegram::handle))
            .route("/intake/whatsapp", get(whatsapp::verify).post(whatsapp::handle))
            .route("/intake/zadarma", get(zadarma::echo).post(zadarma::handle))
            .layer(DefaultBodyLimit::max(max_body))
            .with_state(state);
        Self { router, publisher: task, poller }
    }

    /// The routes, to merge into the daemon's HTTP server (serve it with
    /// `into_make_service_with_connect_info::<SocketAddr>()` for per-IP limits).
    pub fn router(&self) -> Router {
        self.router.clone()
    }

    /// The long-running tasks (the group-commit publisher, the Telegram
    /// poller if enabled), each with its name; all stop on `shutdown`.
    pub fn tasks(self, shutdown: CancellationToken) -> Vec<(&'static str, WebhookTask)> {
        let mut tasks: Vec<(&'static str, WebhookTask)> = Vec::new();
        let token = shutdown.clone();
        let publisher = self.publisher;
        tasks.push((
            "webhook publisher",
            Box::pin(async move {
                publisher.run(token).await;
                Ok(())
            }),
        ));
        if let Some(poller) = self.poller {
            tasks.push(("telegram poller", Box::pin(poller.run(shutdown))));
        }
        tasks
    }
}

/// The client address axum saw (absent when served without connect info).
pub(crate) fn peer_ip(connect: Option<&axum::extract::ConnectInfo<SocketAddr>>) -> Option<std::net::IpAddr> {
    connect.map(|c| c.0.ip())
}
