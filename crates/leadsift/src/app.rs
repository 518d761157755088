//! Building the pipeline's components from settings.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use leadsift_core::{LeadStore, Queue};
use leadsift_pipeline::{Intake, Metrics, RulesHandle, TriageSettings, TriageWorker};
use leadsift_store::{SqlStore, redact_url};
use tokio::sync::Notify;

use crate::config::Settings;

/// The store, queue, rules and workers one process runs.
#[derive(Debug, Clone)]
pub struct App {
    pub store: SqlStore,
    pub metrics: Metrics,
    pub rules: Arc<RulesHandle>,
    pub intake: Intake,
    pub triage: TriageWorker,
}

pub async fn connect_store(settings: &Settings) -> anyhow::Result<SqlStore> {
    SqlStore::connect(&settings.store_settings())
        .await
        .with_context(|| format!("cannot open the store at {}", redact_url(&settings.database.url)))
}

pub fn load_rules(settings: &Settings, metrics: Metrics) -> anyhow::Result<Arc<RulesHandle>> {
    let path = settings.rules_file();
    match &path {
        Some(path) => tracing::info!(path = %path.display(), "loading rules"),
        None => tracing::info!(
            missing = %settings.rules.path.display(),
            "rules file not found; using the built-in default rules"
        ),
    }
    let handle = RulesHandle::load(path, metrics).map_err(|errors| anyhow::anyhow!("invalid rules file:\n{errors}"))?;
    Ok(Arc::new(handle))
}

impl App {
    pub async fn build(settings: &Settings) -> anyhow::Result<Self> {
        let metrics = Metrics::new();
        // Compiling the rules is CPU work; do it while the store connects and migrates.
        let rules_settings = settings.clone();
        let rules_metrics = metrics.clone();
        let rules = tokio::task::spawn_blocking(move || load_rules(&rules_settings, rules_metrics));
        let store = connect_store(settings).await?;
        let rules = rules.await.context("rules loader failed")??;
        let wake = Arc::new(Notify::new());
        let queue: Arc<dyn Queue> = Arc::new(store.clone());
        let lead_store: Arc<dyn LeadStore> = Arc::new(store.clone());
        let intake = Intake::new(
            Arc::clone(&queue),
            Arc::clone(&lead_store),
            metrics.clone(),
            settings.parse_options(),
            Arc::clone(&wake),
        )
        .with_attribution(settings.attribution());
        let triage_settings = TriageSettings {
            batch_size: settings.triage.batch_size,
            idle_poll: Duration::from_millis(settings.triage.idle_poll_ms),
            routing: settings.routing(),
        };
        let triage = TriageWorker::new(queue, lead_store, Arc::clone(&rules), triage_settings, metrics.clone(), wake);
        Ok(Self { store, metrics, rules, intake, triage })
    }
}
