//! leadsift's durable triage pipeline.
//!
//! Intake turns raw input into messages and publishes them to a
//! [`leadsift_core::Queue`] before anything is acknowledged upstream;
//! triage workers receive, classify off the async threads, write verdict +
//! lead + blacklist changes in one store transaction, then ack. With the
//! built-in queue (the store's inbox table) and with Kafka alike, a crash
//! at any point loses nothing, and idempotent writes on the dedup key mean
//! redelivery duplicates nothing.
//!
//! This crate knows the core traits, the rules engine, the model and the
//! input formats; it does not know which database or broker is behind the traits.

pub mod attribution;
pub mod dropfolder;
pub mod intake;
pub mod learner;
pub mod metrics;
pub mod model_handle;
pub mod rules_handle;
pub mod triage;

pub use attribution::{Attribution, AttributionTarget};
pub use intake::{Intake, IntakeReport};
pub use learner::{LearnFigures, LearnOutcome, Learner};
pub use metrics::Metrics;
pub use model_handle::ModelHandle;
pub use rules_handle::RulesHandle;
pub use triage::{TriageReport, TriageSettings, TriageWorker, classify_batch};

use leadsift_core::{QueueError, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("drop folder {path}: {source}")]
    DropFolder {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("internal error: {0}")]
    Internal(String),
}

impl PipelineError {
    /// Whether a worker should back off and try again.
    pub fn is_retryable(&self) -> bool {
        match self {
            PipelineError::Queue(e) => e.is_retryable(),
            PipelineError::Store(e) => e.is_retryable(),
            PipelineError::DropFolder { .. } => true,
            PipelineError::Internal(_) => false,
        }
    }
}
