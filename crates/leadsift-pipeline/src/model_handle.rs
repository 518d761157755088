//! The model in force: the shipped one until feedback produced an accepted
//! version in the store, then the newest accepted version.
//!
//! Accepted versions live in the store (not on a local disk) so every
//! worker process of a scaled-out deployment classifies with the same
//! model; each polls the newest accepted id (one indexed query) and swaps
//! the new model in atomically.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use leadsift_core::LeadStore;
use leadsift_model::Model;
use tokio_util::sync::CancellationToken;

use crate::PipelineError;
use crate::metrics::Metrics;

#[derive(Debug)]
pub struct ModelHandle {
    base: Arc<Model>,
    current: ArcSwap<Model>,
    /// Store id of the version in `current`; 0 for `base`.
    version: AtomicI64,
    metrics: Metrics,
}

impl ModelHandle {
    /// `base` is the shipped (or configured) model feedback is learned on top of.
    pub fn new(base: Arc<Model>, metrics: Metrics) -> Self {
        metrics.model_version.set(0);
        Self { current: ArcSwap::new(Arc::clone(&base)), base, version: AtomicI64::new(0), metrics }
    }

    pub fn base(&self) -> &Arc<Model> {
        &self.base
    }

    /// The model in force now; cheap, lock-free.
    pub fn current(&self) -> Arc<Model> {
        self.current.load_full()
    }

    /// Store id of the model in force (0: the base model).
    pub fn version(&self) -> i64 {
        self.version.load(Ordering::Acquire)
    }

    /// Puts a model the learner just accepted in force.
    pub fn install(&self, version: i64, model: Arc<Model>) {
        self.current.store(model);
        self.version.store(version, Ordering::Release);
        self.metrics.model_version.set(version);
    }

    /// Loads the store's newest accepted version if it is not the one in
    /// force. Returns whether the model changed. A version that cannot be
    /// decoded is logged and skipped: the model in force stays.
    pub async fn refresh(&self, store: &dyn LeadStore) -> Result<bool, PipelineError> {
        let Some(newest) = store.current_model_id().await? else { return Ok(false) };
        if newest == self.version() {
            return Ok(false);
        }
        let Some((version, bytes)) = store.current_model().await? else { return Ok(false) };
        let decoded = tokio::task::spawn_blocking(move || Model::from_bytes(&bytes, None))
            .await
            .map_err(|e| PipelineError::Internal(format!("model decoding task failed: {e}")))?;
        match decoded {
            Ok(model) => {
                tracing::info!(version = version.id, feedback = version.feedback_used, "model version loaded");
                self.install(version.id, Arc::new(model));
                Ok(true)
            }
            Err(error) => {
                tracing::error!(version = version.id, %error, "stored model version is unreadable; keeping the model in force");
                Ok(false)
            }
        }
    }

    /// Polls the store for newer accepted versions until `shutdown`.
    pub async fn watch(self: Arc<Self>, store: Arc<dyn LeadStore>, interval: Duration, shutdown: CancellationToken) {
        loop {
            if let Err(error) = self.refresh(store.as_ref()).await {
                tracing::warn!(%error, "cannot check for a newer model version");
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(interval) => {}
            }
        }
    }
}
