//! Intake: raw input → validated messages → the durable queue.
//!
//! Nothing is acknowledged upstream (a file moved out of the drop folder,
//! an import counted as done) before `Queue::publish` returned, and input
//! that cannot become a message is kept in quarantine with its error.

use std::path::PathBuf;
use std::sync::Arc;

use chrono::Utc;
use leadsift_core::{Channel, LeadStore, Message, Published, Quarantined, Queue};
use leadsift_formats::{InputKind, ParseOptions, parse_item, read_inputs};
use tokio::sync::{Notify, mpsc};

use crate::PipelineError;
use crate::attribution::Attribution;
use crate::metrics::Metrics;

/// Raw bytes kept with a quarantine record at most.
pub const QUARANTINE_RAW_CAP: usize = 1024 * 1024;

/// Failures listed by origin in a report (all are counted and quarantined).
pub const MAX_LISTED_FAILURES: usize = 1000;

/// Messages per queue transaction.
const PUBLISH_BATCH: usize = 256;

/// Counts of one intake run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IntakeReport {
    /// Items read (messages plus failures).
    pub read: u64,
    pub new: u64,
    pub duplicate: u64,
    /// Items quarantined because they could not be read or parsed.
    pub failed: u64,
    /// Documents skipped while walking folders (README, images, …).
    pub skipped: u64,
    /// Origin and error of the first failures (for the CLI to print).
    pub failures: Vec<(String, String)>,
}

#[derive(Clone)]
pub struct Intake {
    queue: Arc<dyn Queue>,
    store: Arc<dyn LeadStore>,
    metrics: Metrics,
    options: ParseOptions,
    wake: Arc<Notify>,
    attribution: Arc<Attribution>,
}

impl std::fmt::Debug for Intake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Intake").field("options", &self.options).finish_non_exhaustive()
    }
}

enum Parsed {
    Message(Box<Message>),
    Failed { origin: String, channel: Option<Channel>, error: String, raw: Vec<u8> },
}

impl Intake {
    pub fn new(
        queue: Arc<dyn Queue>,
        store: Arc<dyn LeadStore>,
        metrics: Metrics,
        options: ParseOptions,
        wake: Arc<Notify>,
    ) -> Self {
        Self { queue, store, metrics, options, wake, attribution: Arc::default() }
    }

    /// Source attribution applied to every message before it is queued.
    pub fn with_attribution(mut self, attribution: Attribution) -> Self {
        self.attribution = Arc::new(attribution);
        self
    }

    pub fn options(&self) -> &ParseOptions {
        &self.options
    }

    /// Durably queues messages and wakes triage.
    pub async fn publish(&self, messages: &[Message]) -> Result<Vec<Published>, PipelineError> {
        let attributed: Vec<Message>;
        let messages = if self.attribution.is_empty() {
            messages
        } else {
            attributed = messages
                .iter()
                .map(|message| {
                    let mut message = message.clone();
                    self.attribution.apply(&mut message);
                    message
                })
                .collect();
            &attributed
        };
        let outcomes = self.queue.publish(messages).await?;
        for (message, outcome) in messages.iter().zip(&outcomes) {
            let label = match outcome {
                Published::New | Published::Accepted => "new",
                Published::Duplicate => "duplicate",
            };
            self.metrics.intake_messages.with_label_values(&[message.channel.as_str(), label]).inc();
        }
        self.wake.notify_waiters();
        Ok(outcomes)
    }

    /// Keeps input that could not become a message.
    pub async fn quarantine(
        &self,
        origin: &str,
        channel: Option<Channel>,
        error: &str,
        raw: &[u8],
    ) -> Result<i64, PipelineError> {
        self.metrics.quarantined.with_label_values(&["intake"]).inc();
        tracing::warn!(origin, error, "input quarantined");
        let raw = raw[..raw.len().min(QUARANTINE_RAW_CAP)].to_vec();
        let record = Quarantined { origin: origin.to_owned(), channel, error: error.to_owned(), raw, at: Utc::now() };
        Ok(self.store.quarantine(&record).await?)
    }

    /// Reads files, folders, mailboxes and archives, parses them on a
    /// blocking thread, and queues the messages in batches. Calls
    /// `progress` after every batch.
    pub async fn ingest_paths(
        &self,
        paths: Vec<PathBuf>,
        mut progress: impl FnMut(&IntakeReport),
    ) -> Result<IntakeReport, PipelineError> {
        let (sender, mut receiver) = mpsc::channel::<Parsed>(1024);
        let options = self.options.clone();
        let reader = tokio::task::spawn_blocking(move || {
            let mut inputs = read_inputs(&paths, &options);
            for input in inputs.by_ref() {
                let parsed = match input {
                    Ok(item) => match parse_item(&item, &options) {
                        Ok(message) => Parsed::Message(Box::new(message)),
                        Err(error) => Parsed::Failed {
                            channel: (item.kind == InputKind::Rfc822).then_some(Channel::Email),
                            origin: item.origin,
                            error: error.to_string(),
                            raw: item.bytes,
                        },
                    },
                    Err(failure) => Parsed::Failed {
                        origin: failure.origin,
                        channel: None,
                        error: failure.error.to_string(),
                        raw: Vec::new(),
                    },
                };
                if sender.blocking_send(parsed).is_err() {
                    break;
                }
            }
            inputs.skipped() as u64
        });

        let mut report = IntakeReport::default();
        let mut batch = Vec::with_capacity(PUBLISH_BATCH);
        while let Some(parsed) = receiver.recv().await {
            report.read += 1;
            match parsed {
                Parsed::Message(message) => {
                    batch.push(*message);
                    if batch.len() >= PUBLISH_BATCH {
                        self.flush(&mut batch, &mut report).await?;
                        progress(&report);
                    }
                }
                Parsed::Failed { origin, channel, error, raw } => {
                    self.quarantine(&origin, channel, &error, &raw).await?;
                    report.failed += 1;
                    if report.failures.len() < MAX_LISTED_FAILURES {
                        report.failures.push((origin, error));
                    }
                }
            }
        }
        self.flush(&mut batch, &mut report).await?;
        report.skipped = reader.await.map_err(|e| PipelineError::Internal(format!("input reader failed: {e}")))?;
        progress(&report);
        Ok(report)
    }

    async fn flush(&self, batch: &mut Vec<Message>, report: &mut IntakeReport) -> Result<(), PipelineError> {
        if batch.is_empty() {
            return Ok(());
        }
        let outcomes = self.publish(batch).await?;
        for outcome in outcomes {
            match outcome {
                Published::New | Published::Accepted => report.new += 1,
                Published::Duplicate => report.duplicate += 1,
            }
        }
        batch.clear();
        Ok(())
    }
}
