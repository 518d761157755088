//! Building the pipeline's components from settings.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use leadsift_core::{LeadStore, Queue};
use leadsift_kafka::{KafkaQueue, QueueRole};
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
    /// The queue intake publishes to and triage consumes from.
    pub queue: Arc<dyn Queue>,
    /// Set when the queue is Kafka (it must be closed to commit and leave the group).
    pub kafka: Option<Arc<KafkaQueue>>,
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
    /// Components for a one-shot command: with Kafka it only publishes (never
    /// joins the triage group), with the built-in queue it also triages.
    pub async fn build(settings: &Settings) -> anyhow::Result<Self> {
        let role = if settings.kafka_settings()?.is_some() { QueueRole::Publish } else { QueueRole::PublishAndConsume };
        Self::build_for(settings, role).await
    }

    /// Builds the components; with Kafka, `role` says whether this process
    /// joins the triage consumer group.
    pub async fn build_for(settings: &Settings, role: QueueRole) -> anyhow::Result<Self> {
        let metrics = Metrics::new();
        // Compiling the rules is CPU work; do it while the store connects and migrates.
        let rules_settings = settings.clone();
        let rules_metrics = metrics.clone();
        let rules = tokio::task::spawn_blocking(move || load_rules(&rules_settings, rules_metrics));
        let store = connect_store(settings).await?;
        let rules = rules.await.context("rules loader failed")??;
        let wake = Arc::new(Notify::new());
        let kafka = match settings.kafka_settings()? {
            Some(kafka) => Some(Arc::new(KafkaQueue::connect(kafka, role).context("cannot connect to Kafka")?)),
            None => None,
        };
        let queue: Arc<dyn Queue> = match &kafka {
            Some(kafka) => Arc::clone(kafka) as Arc<dyn Queue>,
            None => Arc::new(store.clone()),
        };
        let lead_store: Arc<dyn LeadStore> = Arc::new(store.clone());
        let intake = Intake::new(
            Arc::clone(&queue),
            Arc::clone(&lead_store),
            metrics.clone(),
            settings.parse_options(),
            Arc::clone(&wake),
        );
        let triage_settings = TriageSettings {
            batch_size: settings.triage.batch_size,
            idle_poll: Duration::from_millis(settings.triage.idle_poll_ms),
            routing: settings.routing(),
        };
        let triage = TriageWorker::new(
            Arc::clone(&queue),
            lead_store,
            Arc::clone(&rules),
            triage_settings,
            metrics.clone(),
            wake,
        );
        Ok(Self { store, metrics, rules, intake, triage, queue, kafka })
    }

    /// Commits and leaves the Kafka group (if any), then closes the store.
    pub async fn close(&self) {
        if let Some(kafka) = &self.kafka {
            kafka.close().await;
        }
        self.store.close().await;
    }
}
