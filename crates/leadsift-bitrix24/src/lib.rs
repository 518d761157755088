//! Bitrix24 sync: every new lead (after triage) and every later stage change
//! of a synced lead is pushed to Bitrix24 through its incoming-webhook REST
//! API (`crm.duplicate.findbycomm`, `crm.lead.add`, `crm.lead.update`,
//! `crm.lead.list`).
//!
//! Key design decision: delivery goes through an outbox in the store, never
//! through triage. The sync polls `lead_stage_changes` into
//! `bitrix24_outbox` rows, claims rows under a lease (one process per row),
//! and delivers each lead's rows in order. `crm.lead.add` is not
//! idempotent, so every lead we add carries our marker (`ORIGINATOR_ID` =
//! `leadsift`, `ORIGIN_ID` = our lead id), and the outbox records *before*
//! sending that an add is in flight: when its answer is lost (timeout,
//! dropped connection, crash), the next attempt first looks the lead up with
//! `crm.lead.list` on the marker instead of adding a second one. Together
//! that delivers every event exactly once while Bitrix24 is down, slow, or
//! rate limiting (`QUERY_LIMIT_EXCEEDED` is waited out, never counted as a
//! failure).
//!
//! The webhook URL carries the token: it is a [`leadsift_core::Secret`] and
//! appears in no log line, error or metric. This crate reads leads from the
//! store and talks HTTP; it must not classify or change leads.

pub mod client;
pub mod config;
pub mod mapping;

use std::time::Duration;

use chrono::{DateTime, Utc};
use leadsift_core::StoreError;
use leadsift_store::{Bitrix24Event, Bitrix24EventKind, Bitrix24Retry, SqlStore};
use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};
use tokio_util::sync::CancellationToken;

pub use client::{Bitrix24Client, LeakyBucket};
pub use config::{Bitrix24Settings, DuplicateLeadPolicy};

use crate::mapping::{Duplicates, NewLead};

/// The watermark naming where the sync starts: leads created earlier are
/// not pushed (set once, when the sync is first switched on).
const SINCE_WATERMARK: &str = "bitrix24.leads_since";

/// Longest pause after repeated store failures.
const MAX_STORE_BACKOFF: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum Bitrix24Error {
    #[error("invalid [bitrix24] settings: {0}")]
    Config(String),
    /// `QUERY_LIMIT_EXCEEDED` (HTTP 503) or `OPERATION_TIME_LIMIT`: wait, then send the same call.
    #[error("Bitrix24 {method}: request rate limit exceeded")]
    RateLimited { method: &'static str },
    /// Network failure, timeout or a 5xx answer. `sent`: the request may have reached Bitrix24.
    #[error("Bitrix24 {method} unavailable: {detail}")]
    Unavailable { method: &'static str, detail: String, sent: bool },
    /// Bitrix24 refused the call (4xx, or an error in the answer).
    #[error("Bitrix24 {method} refused (HTTP {status} {code}): {description}")]
    Rejected { method: &'static str, status: u16, code: String, description: String },
    #[error("Bitrix24 {method} answered unexpectedly: {detail}")]
    BadResponse { method: &'static str, detail: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Bitrix24Error {
    /// Outages, rate limits and store failures heal; refusals and bad settings do not.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::RateLimited { .. } | Self::Unavailable { .. } => true,
            Self::Store(error) => error.is_retryable(),
            Self::Config(_) | Self::Rejected { .. } | Self::BadResponse { .. } => false,
        }
    }

    /// True when the failed call certainly did not create anything in
    /// Bitrix24 (it was refused, rate limited, or never left this machine).
    pub fn lead_not_created(&self) -> bool {
        match self {
            Self::RateLimited { .. } | Self::Rejected { .. } => true,
            Self::Unavailable { sent, .. } => !sent,
            Self::Config(_) | Self::BadResponse { .. } | Self::Store(_) => false,
        }
    }
}

/// Metrics of the sync (bounded labels: method, outcome, kind, state).
#[derive(Debug, Clone)]
pub struct Bitrix24Metrics {
    /// HTTP calls by REST method and outcome (ok, rate_limited, unavailable, rejected, bad_response).
    pub requests: IntCounterVec,
    /// Outbox rows finished, by kind (add, update) and result (delivered, failed).
    pub events: IntCounterVec,
    /// Outbox rows by state (pending, failed).
    pub outbox: IntGaugeVec,
}

impl Bitrix24Metrics {
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let requests = IntCounterVec::new(
            Opts::new("bitrix24_requests_total", "Bitrix24 REST calls by method and outcome."),
            &["method", "outcome"],
        )?;
        let events = IntCounterVec::new(
            Opts::new("bitrix24_events_total", "Bitrix24 outbox rows finished, by kind and result."),
            &["kind", "result"],
        )?;
        let outbox = IntGaugeVec::new(Opts::new("bitrix24_outbox_rows", "Bitrix24 outbox rows by state."), &["state"])?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(events.clone()))?;
        registry.register(Box::new(outbox.clone()))?;
        Ok(Self { requests, events, outbox })
    }
}

/// The sync: one task filling the outbox and delivering it.
#[derive(Debug)]
pub struct Bitrix24Sync {
    settings: Bitrix24Settings,
    store: SqlStore,
    client: Bitrix24Client,
    metrics: Bitrix24Metrics,
    /// This process's lease owner name.
    owner: String,
}

/// How one delivery attempt ended.
enum Attempt {
    Delivered {
        bitrix_id: Option<i64>,
    },
    Failed {
        error: Bitrix24Error,
        add_sent: bool,
    },
    /// Nothing more to record: the row was settled here, or is no longer ours.
    Settled,
}

impl Bitrix24Sync {
    pub fn new(settings: Bitrix24Settings, store: SqlStore, registry: &Registry) -> Result<Self, Bitrix24Error> {
        settings.validate()?;
        let webhook = settings.webhook()?;
        let metrics = Bitrix24Metrics::register(registry)
            .map_err(|e| Bitrix24Error::Config(format!("cannot register Bitrix24 metrics: {e}")))?;
        let client = Bitrix24Client::new(
            webhook,
            settings.request_timeout(),
            LeakyBucket::new(settings.rate_per_sec, settings.burst),
            settings.limit_wait(),
            // The add's retries and answer must fit the lease it renews.
            settings.lease() / 2,
            metrics.requests.clone(),
        )?;
        let owner = format!("{}-{:016x}", std::process::id(), fastrand::u64(..));
        Ok(Self { settings, store, client, metrics, owner })
    }

    /// Fills and delivers the outbox until `shutdown`; store failures back off and retry.
    #[tracing::instrument(name = "bitrix24", skip_all, fields(portal = %self.client.host()))]
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), Bitrix24Error> {
        let since_millis = self.store.init_watermark(SINCE_WATERMARK, Utc::now().timestamp_millis()).await?;
        let since = DateTime::from_timestamp_millis(since_millis).unwrap_or_default();
        tracing::info!(%since, "syncing leads to Bitrix24");
        let poll = Duration::from_millis(self.settings.poll_ms.max(10));
        let mut delay = Duration::ZERO;
        loop {
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = shutdown.cancelled() => return Ok(()),
            }
            // Stopping mid-delivery is safe: an add in flight is already marked
            // as such, and an unfinished store transaction rolls back.
            let step = tokio::select! {
                step = self.step(since, &shutdown) => step,
                () = shutdown.cancelled() => return Ok(()),
            };
            match step {
                // A full batch: more is due, go on at once.
                Ok(handled) if handled >= self.settings.batch as usize => delay = Duration::ZERO,
                Ok(_) => delay = poll,
                Err(error) if error.is_retryable() => {
                    delay = (delay * 2).clamp(poll, MAX_STORE_BACKOFF);
                    tracing::warn!(error = %error, retry_in_ms = delay.as_millis() as u64, "Bitrix24 sync step failed; retrying");
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// One look: copy new stage changes into the outbox, deliver what is due.
    /// Returns how many rows were claimed.
    pub async fn step(
        &self,
        since: chrono::DateTime<Utc>,
        shutdown: &CancellationToken,
    ) -> Result<usize, Bitrix24Error> {
        let now = Utc::now();
        let filled = self.store.bitrix24_fill_outbox(since, self.settings.batch.max(1) * 5, now).await?;
        if filled > 0 {
            tracing::debug!(rows = filled, "Bitrix24 outbox filled");
        }
        let lease_until = now + chrono::Duration::from_std(self.settings.lease()).unwrap_or_default();
        let events = self.store.bitrix24_claim(&self.owner, now, lease_until, self.settings.batch).await?;
        for event in &events {
            if shutdown.is_cancelled() {
                // The lease expires and another attempt takes the rest.
                break;
            }
            // A fresh lease for this row: the rows after it in the batch
            // waited while earlier ones were delivered.
            let now = Utc::now();
            let lease_until = now + chrono::Duration::from_std(self.settings.lease()).unwrap_or_default();
            if !self.store.bitrix24_renew_lease(event.outbox_id, &self.owner, now, lease_until).await? {
                tracing::debug!(outbox_id = event.outbox_id, "lease expired before delivery; left to the next claim");
                continue;
            }
            self.deliver(event).await?;
        }
        let counts = self.store.bitrix24_outbox_counts().await?;
        self.metrics.outbox.with_label_values(&["pending"]).set(counts.pending);
        self.metrics.outbox.with_label_values(&["failed"]).set(counts.failed);
        Ok(events.len())
    }

    /// Delivers one claimed row and records the outcome.
    #[tracing::instrument(skip_all, fields(lead_id = event.lead.id, outbox_id = event.outbox_id, kind = event.kind.as_str()))]
    async fn deliver(&self, event: &Bitrix24Event) -> Result<(), Bitrix24Error> {
        let kind = event.kind.as_str();
        let attempt = match event.kind {
            Bitrix24EventKind::Add => self.add(event).await,
            Bitrix24EventKind::Update => self.update(event).await,
        };
        match attempt {
            Ok(Attempt::Delivered { bitrix_id }) => {
                let held = self
                    .store
                    .bitrix24_delivered(event.outbox_id, &self.owner, event.lead.id, bitrix_id, Utc::now())
                    .await?;
                if held {
                    self.metrics.events.with_label_values(&[kind, "delivered"]).inc();
                    tracing::info!(bitrix_id, "lead synced to Bitrix24");
                } else {
                    tracing::warn!("outbox row changed hands while it was delivered (lease expired)");
                }
            }
            Ok(Attempt::Failed { error, add_sent }) => self.failed(event, error, add_sent).await?,
            Ok(Attempt::Settled) => {}
            Err(error @ Bitrix24Error::Store(_)) => return Err(error),
            Err(error) => self.failed(event, error, false).await?,
        }
        Ok(())
    }

    async fn failed(&self, event: &Bitrix24Event, error: Bitrix24Error, add_sent: bool) -> Result<(), Bitrix24Error> {
        let kind = event.kind.as_str();
        let add_outcome_unknown = add_sent.then(|| !error.lead_not_created());
        let message = error.to_string();
        if let Bitrix24Error::RateLimited { .. } = error {
            // Not a failure: Bitrix24 asked us to slow down.
            let retry = Bitrix24Retry {
                next_attempt_at: Utc::now()
                    + chrono::Duration::from_std(self.settings.limit_wait()).unwrap_or_default(),
                error: message,
                count_attempt: false,
                add_outcome_unknown,
            };
            self.store.bitrix24_retry_later(event.outbox_id, &self.owner, &retry).await?;
            tracing::info!("Bitrix24 rate limit; the row waits");
            return Ok(());
        }
        let attempts = event.attempts + 1;
        if !error.is_retryable() && attempts >= self.settings.max_attempts {
            self.store.bitrix24_failed(event.outbox_id, &self.owner, &message).await?;
            self.metrics.events.with_label_values(&[kind, "failed"]).inc();
            tracing::error!(attempts, error = %message, "Bitrix24 keeps refusing this row; marked failed");
            return Ok(());
        }
        let pause = self.settings.backoff(attempts, fastrand::f64());
        let retry = Bitrix24Retry {
            next_attempt_at: Utc::now() + chrono::Duration::from_std(pause).unwrap_or_default(),
            error: message.clone(),
            count_attempt: true,
            add_outcome_unknown,
        };
        self.store.bitrix24_retry_later(event.outbox_id, &self.owner, &retry).await?;
        tracing::warn!(attempts, retry_in_ms = pause.as_millis() as u64, error = %message, "Bitrix24 delivery failed; retrying");
        Ok(())
    }

    async fn add(&self, event: &Bitrix24Event) -> Result<Attempt, Bitrix24Error> {
        let lead = &event.lead;
        if event.add_outcome_unknown {
            match self.client.call("crm.lead.list", &mapping::lookup_params(lead.id)).await {
                Ok(result) => {
                    if let Some(bitrix_id) = mapping::first_listed_id(&result)? {
                        tracing::info!(bitrix_id, "an earlier attempt had added the lead; not adding it again");
                        return Ok(Attempt::Delivered { bitrix_id: Some(bitrix_id) });
                    }
                }
                Err(error) => return Ok(Attempt::Failed { error, add_sent: false }),
            }
        }
        let (phones, emails) = mapping::communications(lead);
        let mut duplicates = Duplicates::default();
        for (kind, values) in [("PHONE", &phones), ("EMAIL", &emails)] {
            if values.is_empty() {
                continue;
            }
            match self.client.call("crm.duplicate.findbycomm", &mapping::findbycomm_params(kind, values)).await {
                Ok(result) => duplicates.merge(&result)?,
                Err(error) => return Ok(Attempt::Failed { error, add_sent: false }),
            }
        }
        let params = mapping::add_params(
            &self.settings,
            &NewLead {
                lead,
                stage: event.stage,
                junk_reason: event.junk_reason,
                utm: &event.utm,
                contact_name: event.contact_name.as_deref(),
                duplicates: &duplicates,
            },
        );
        // A fresh lease covers the add, its rate-limit retries and its answer
        // (patience + timeout < lease): no other process can look the lead
        // up while this add may still land.
        let lease = Utc::now() + chrono::Duration::from_std(self.settings.lease()).unwrap_or_default();
        if !self.store.bitrix24_mark_add_sent(event.outbox_id, &self.owner, lease).await? {
            tracing::warn!("outbox row changed hands before the add was sent (lease expired); leaving it");
            return Ok(Attempt::Settled);
        }
        match self.client.call("crm.lead.add", &params).await {
            Ok(result) => match mapping::parse_id(&result) {
                Some(bitrix_id) => Ok(Attempt::Delivered { bitrix_id: Some(bitrix_id) }),
                None => Ok(Attempt::Failed {
                    error: Bitrix24Error::BadResponse {
                        method: "crm.lead.add",
                        detail: "result is not a lead id".into(),
                    },
                    add_sent: true,
                }),
            },
            Err(error) => Ok(Attempt::Failed { error, add_sent: true }),
        }
    }

    async fn update(&self, event: &Bitrix24Event) -> Result<Attempt, Bitrix24Error> {
        let Some(bitrix_id) = event.bitrix_id else {
            // The add before this row failed for good (or the lead predates the sync).
            let error = Bitrix24Error::Rejected {
                method: "crm.lead.update",
                status: 0,
                code: "NOT_SYNCED".into(),
                description: "the lead was never added to Bitrix24".into(),
            };
            self.store.bitrix24_failed(event.outbox_id, &self.owner, &error.to_string()).await?;
            self.metrics.events.with_label_values(&["update", "failed"]).inc();
            tracing::error!("stage change of a lead that is not in Bitrix24; marked failed");
            return Ok(Attempt::Settled);
        };
        let params = mapping::update_params(&self.settings, bitrix_id, event.stage, event.junk_reason);
        match self.client.call("crm.lead.update", &params).await {
            Ok(_) => Ok(Attempt::Delivered { bitrix_id: None }),
            Err(error) => Ok(Attempt::Failed { error, add_sent: false }),
        }
    }
}
