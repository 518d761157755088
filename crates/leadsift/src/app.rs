//! Building the pipeline's components from settings.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use leadsift_core::{LeadStore, Queue};
use leadsift_kafka::{KafkaQueue, QueueRole};
use leadsift_model::{Corpus, Model};
use leadsift_pipeline::{Intake, Learner, Metrics, ModelHandle, RulesHandle, TriageSettings, TriageWorker};
use leadsift_store::{SqlStore, redact_url};
use tokio::sync::Notify;

use crate::config::Settings;

/// The store, queue, rules and workers one process runs.
#[derive(Debug, Clone)]
pub struct App {
    pub store: SqlStore,
    pub metrics: Metrics,
    pub rules: Arc<RulesHandle>,
    /// `None` when `[model] enabled = false`.
    pub model: Option<Arc<ModelHandle>>,
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

/// The configured model directory, or the model built into the binary.
pub fn load_model(settings: &Settings) -> anyhow::Result<Model> {
    match settings.model_dir() {
        Some(dir) => {
            tracing::info!(path = %dir.display(), "loading model");
            Model::load(&dir).with_context(|| format!("cannot load the model in {}", dir.display()))
        }
        None => {
            tracing::info!(missing = %settings.model.path.display(), "model directory not found; using the built-in model");
            Ok(Model::builtin().clone())
        }
    }
}

/// The model handle (with the newest accepted version from the store in force).
pub async fn model_handle(
    settings: &Settings,
    store: &SqlStore,
    metrics: &Metrics,
) -> anyhow::Result<Arc<ModelHandle>> {
    let model_settings = settings.clone();
    let base =
        tokio::task::spawn_blocking(move || load_model(&model_settings)).await.context("model loader failed")??;
    let handle = Arc::new(ModelHandle::new(Arc::new(base), metrics.clone()));
    handle.refresh(store).await.context("cannot read the current model version")?;
    Ok(handle)
}

/// The learner, with the configured validation corpora loaded.
pub async fn learner(
    settings: &Settings,
    store: &SqlStore,
    model: Arc<ModelHandle>,
    rules: Arc<RulesHandle>,
    metrics: &Metrics,
) -> anyhow::Result<Learner> {
    let paths = settings.model.validation_corpora.clone();
    let validation = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        if paths.is_empty() {
            return Ok(Vec::new());
        }
        let corpus = Corpus::load(&paths).context("cannot load model.validation_corpora")?;
        Ok(corpus.validation().cloned().collect())
    })
    .await
    .context("corpus loader failed")??;
    let lead_store: Arc<dyn LeadStore> = Arc::new(store.clone());
    Ok(Learner::new(lead_store, model, rules, validation, metrics.clone()))
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
        )
        .with_attribution(settings.attribution());
        let triage_settings = TriageSettings {
            batch_size: settings.triage.batch_size,
            idle_poll: Duration::from_millis(settings.triage.idle_poll_ms),
            routing: settings.routing(),
        };
        let mut triage = TriageWorker::new(
            Arc::clone(&queue),
            lead_store,
            Arc::clone(&rules),
            triage_settings,
            metrics.clone(),
            wake,
        );
        let model = if settings.model.enabled { Some(model_handle(settings, &store, &metrics).await?) } else { None };
        if let Some(model) = &model {
            triage = triage.with_model(Arc::clone(model));
        }
        Ok(Self { store, metrics, rules, model, intake, triage, queue, kafka })
    }

    /// Commits and leaves the Kafka group (if any), then closes the store.
    pub async fn close(&self) {
        if let Some(kafka) = &self.kafka {
            kafka.close().await;
        }
        self.store.close().await;
    }
}
