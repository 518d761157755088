//! IMAP email intake: watches the folders of one or more mail accounts and
//! hands every new mail to the pipeline's durable queue.
//!
//! One task per account and folder logs in (TLS with rustls, or plain for
//! local servers), SELECTs the folder, fetches mail above its checkpoint
//! with `UID FETCH … BODY.PEEK[]` (never marking it read), parses it with
//! [`leadsift_formats::parse_rfc822`] and publishes the batch through
//! [`leadsift_pipeline::Intake`]. Then it waits for more with IMAP IDLE, or
//! polls when the server lacks IDLE; on any failure it reconnects with
//! exponential backoff and jitter.
//!
//! Key design decision: the per-folder checkpoint (UIDVALIDITY + last UID,
//! in the store) advances only after the batch is durably queued. A crash
//! in between re-reads the batch, and the queue's dedup key (Message-ID
//! based) turns the re-read into duplicates that are dropped. The same key
//! makes a UIDVALIDITY change safe: the folder is read again from UID 1
//! and only mail the store has not seen is queued.
//!
//! Optional post-triage actions (move spam to `Junk`, flag inquiries) poll
//! the store for verdicts of mail that came from IMAP. Folders named in
//! `learn` are not triaged: each mail found there becomes one labelled
//! feedback record for the model.
//!
//! This crate must not classify: it only moves mail between the server and
//! the pipeline.

pub mod config;
mod worker;

use std::sync::Arc;

use leadsift_core::StoreError;
use leadsift_pipeline::{Intake, PipelineError};
use leadsift_store::SqlStore;
use prometheus::{IntCounterVec, Opts, Registry};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use config::{ImapAccount, ImapActions, ImapSecurity, ImapSettings, MailAction};
pub use worker::{FolderMode, FolderWorker};

/// Everything that can go wrong talking to an IMAP server.
#[derive(Debug, thiserror::Error)]
pub enum ImapError {
    #[error("invalid [imap] settings for account {account:?}: {reason}")]
    Config { account: String, reason: String },
    #[error("cannot connect to IMAP server {address}: {source}")]
    Connect {
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS handshake with IMAP server {address} failed: {source}")]
    Tls {
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error("IMAP login as {username:?} at {address} failed: {source}")]
    Login {
        address: String,
        username: String,
        #[source]
        source: async_imap::error::Error,
    },
    #[error("IMAP {operation} timed out after {secs} s")]
    Timeout { operation: &'static str, secs: u64 },
    #[error("IMAP {operation} failed: {source}")]
    Protocol {
        operation: &'static str,
        #[source]
        source: async_imap::error::Error,
    },
    #[error("IMAP server misbehaved during {operation}: {detail}")]
    Server { operation: &'static str, detail: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
}

impl ImapError {
    /// Whether reconnecting later may help (everything but bad settings).
    pub fn is_retryable(&self) -> bool {
        !matches!(self, ImapError::Config { .. })
    }

    /// A bounded metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            ImapError::Config { .. } => "config",
            ImapError::Connect { .. } => "connect",
            ImapError::Tls { .. } => "tls",
            ImapError::Login { .. } => "login",
            ImapError::Timeout { .. } => "timeout",
            ImapError::Protocol { .. } | ImapError::Server { .. } => "protocol",
            ImapError::Store(_) | ImapError::Pipeline(_) => "store",
        }
    }
}

/// IMAP metrics, registered in the pipeline's registry. Labels are bounded:
/// account names come from the settings file.
#[derive(Debug, Clone)]
pub struct ImapMetrics {
    /// Mails fetched from the server, by account.
    pub fetched: IntCounterVec,
    /// Failures that made a worker reconnect, by account and kind.
    pub errors: IntCounterVec,
    /// UIDVALIDITY changes seen (the folder is read again), by account.
    pub uidvalidity_changes: IntCounterVec,
    /// Post-triage actions carried out, by action (move, flag) and result (ok, error).
    pub actions: IntCounterVec,
    /// Feedback labels learnt from folders, by label.
    pub feedback: IntCounterVec,
}

impl ImapMetrics {
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let counter = |name: &str, help: &str, labels: &[&str]| -> Result<IntCounterVec, prometheus::Error> {
            let metric = IntCounterVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(metric.clone()))?;
            Ok(metric)
        };
        Ok(Self {
            fetched: counter("imap_fetched_total", "Mails fetched from IMAP servers.", &["account"])?,
            errors: counter("imap_errors_total", "IMAP failures that forced a reconnect.", &["account", "kind"])?,
            uidvalidity_changes: counter(
                "imap_uidvalidity_changes_total",
                "UIDVALIDITY changes seen; the folder is read again from UID 1.",
                &["account"],
            )?,
            actions: counter("imap_actions_total", "Post-triage IMAP actions.", &["action", "result"])?,
            feedback: counter("imap_feedback_total", "Labels learnt from IMAP folders.", &["label"])?,
        })
    }
}

/// All IMAP workers of one process.
#[derive(Debug)]
pub struct ImapIntake {
    settings: ImapSettings,
    intake: Intake,
    store: SqlStore,
    metrics: ImapMetrics,
}

impl ImapIntake {
    pub fn new(
        settings: ImapSettings,
        intake: Intake,
        store: SqlStore,
        registry: &Registry,
    ) -> Result<Self, ImapError> {
        settings.validate()?;
        for account in &settings.accounts {
            account.password()?;
        }
        let metrics = ImapMetrics::register(registry).map_err(|e| ImapError::Config {
            account: String::new(),
            reason: format!("cannot register IMAP metrics: {e}"),
        })?;
        Ok(Self { settings, intake, store, metrics })
    }

    /// Whether any account is configured.
    pub fn is_enabled(&self) -> bool {
        !self.settings.accounts.is_empty()
    }

    /// One task per account and folder until `shutdown`; workers retry on
    /// their own, so this returns only when they all stopped.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), ImapError> {
        let mut tasks = JoinSet::new();
        for account in self.settings.accounts {
            let account = Arc::new(account);
            let folders = account.folders.iter().map(|f| (f.clone(), FolderMode::Triage));
            let learn = account.learn.iter().map(|(f, label)| (f.clone(), FolderMode::Learn(*label)));
            for (folder, mode) in folders.chain(learn).collect::<Vec<_>>() {
                let worker = FolderWorker::new(
                    Arc::clone(&account),
                    folder,
                    mode,
                    self.intake.clone(),
                    self.store.clone(),
                    self.metrics.clone(),
                );
                tasks.spawn(worker.run(shutdown.clone()));
            }
        }
        while let Some(done) = tasks.join_next().await {
            if let Err(join_error) = done {
                tracing::error!(error = %join_error, "IMAP worker panicked");
            }
        }
        Ok(())
    }
}
