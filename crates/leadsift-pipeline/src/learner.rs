//! Learning from managers' feedback.
//!
//! Policy (documented in README "Learning from feedback"): the model in
//! force is always *the shipped model plus every label*, each label counted
//! [`leadsift_model::FEEDBACK_WEIGHT`] times (an incremental update: hinge
//! steps of the regression plus added Naive Bayes counts, ~0.1 s), the latest
//! label of a message winning. Rebuilding from
//! the shipped model instead of stacking updates makes a correction (label
//! the same message again) undo a mistake completely, and the result does
//! not depend on when the learner ran.
//!
//! The guard: the candidate and the model in force are both scored on a
//! validation set — the configured corpora's validation split, the messages
//! of leads managers worked past the first stage (real inquiries), and the
//! labelled messages themselves — and the candidate is refused when its
//! ham→spam false-positive rate or its share of junked inquiries is higher,
//! or its spam F1 fell (see [`leadsift_model::accept_candidate`]). Every
//! attempt is recorded in the store with both sets of figures.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use leadsift_core::{LeadStore, Message, NewModelVersion, Verdict};
use leadsift_model::{EvalSummary, LabelledMessage, accept_candidate, learn_from_feedback, validate_examples};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::PipelineError;
use crate::metrics::Metrics;
use crate::model_handle::ModelHandle;
use crate::rules_handle::RulesHandle;

/// Feedback rows read per query.
const FEEDBACK_PAGE: u32 = 5_000;
/// Worked leads' messages used for validation at most (newest first).
const MAX_WORKED_MESSAGES: u32 = 5_000;

/// What one learning pass did.
#[derive(Debug, Clone, PartialEq)]
pub enum LearnOutcome {
    /// No label newer than the last attempt.
    UpToDate,
    Accepted {
        version: i64,
        labels: usize,
        figures: LearnFigures,
    },
    Refused {
        version: i64,
        labels: usize,
        reason: String,
        figures: LearnFigures,
    },
}

/// Validation figures of the model in force and of the candidate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LearnFigures {
    pub validation_examples: usize,
    pub before: EvalSummary,
    pub after: EvalSummary,
}

impl LearnFigures {
    /// One line for logs and the CLI.
    pub fn summary(&self) -> String {
        let line = |s: &EvalSummary| {
            format!(
                "ham→spam {:.3}% ({}/{}), inquiries junked {}, spam F1 {:.4}, macro F1 {:.4}",
                100.0 * s.ham_spam_fp_rate,
                s.ham_as_spam,
                s.ham_total,
                s.inquiry_as_junk,
                s.spam_f1(),
                s.macro_f1
            )
        };
        format!(
            "{} validation examples; before: {}; after: {}",
            self.validation_examples,
            line(&self.before),
            line(&self.after)
        )
    }
}

#[derive(Clone)]
pub struct Learner {
    store: Arc<dyn LeadStore>,
    model: Arc<ModelHandle>,
    rules: Arc<RulesHandle>,
    /// Labelled corpus examples always part of the validation set.
    validation: Arc<Vec<LabelledMessage>>,
    metrics: Metrics,
}

impl std::fmt::Debug for Learner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Learner").field("validation", &self.validation.len()).finish_non_exhaustive()
    }
}

impl Learner {
    pub fn new(
        store: Arc<dyn LeadStore>,
        model: Arc<ModelHandle>,
        rules: Arc<RulesHandle>,
        validation: Vec<LabelledMessage>,
        metrics: Metrics,
    ) -> Self {
        Self { store, model, rules, validation: Arc::new(validation), metrics }
    }

    /// Learns from all feedback if there is a label newer than the last attempt.
    pub async fn learn_once(&self) -> Result<LearnOutcome, PipelineError> {
        // Cheap check first: this runs every `learn_interval_secs` in every
        // triage process, and reading every label with its message is not.
        let last_attempt = self.store.model_versions(1).await?.first().map_or(0, |v| v.feedback_upto);
        if self.store.feedback(last_attempt, 1).await?.is_empty() {
            return Ok(LearnOutcome::UpToDate);
        }
        let mut feedback = Vec::new();
        let mut after = 0;
        loop {
            let page = self.store.feedback(after, FEEDBACK_PAGE).await?;
            let full = page.len() == FEEDBACK_PAGE as usize;
            if let Some(last) = page.last() {
                after = last.id;
            }
            feedback.extend(page);
            if !full {
                break;
            }
        }
        let Some(upto) = feedback.last().map(|f| f.id) else { return Ok(LearnOutcome::UpToDate) };
        // The latest label of each message wins (feedback is in id order).
        let mut latest: BTreeMap<i64, (Message, Verdict)> = BTreeMap::new();
        for item in feedback {
            latest.insert(item.message_id, (item.message, item.label));
        }
        let labelled: Vec<(Message, Verdict)> = latest.into_values().collect();
        let worked = self.store.worked_lead_messages(MAX_WORKED_MESSAGES).await?;

        let base = Arc::clone(self.model.base());
        let current = self.model.current();
        let rules = self.rules.current();
        let validation = Arc::clone(&self.validation);
        let labels = labelled.len();
        let (candidate, figures, verdict) = tokio::task::spawn_blocking(move || {
            let candidate = learn_from_feedback(&base, &labelled);
            let mut examples: Vec<LabelledMessage> = Vec::with_capacity(worked.len() + labelled.len());
            examples.extend(
                worked.into_iter().map(|m| LabelledMessage::new("worked_leads", "worked", Verdict::Inquiry, m)),
            );
            examples.extend(
                labelled.into_iter().map(|(m, label)| LabelledMessage::new("feedback", label.as_str(), label, m)),
            );
            let all = validation.iter().chain(examples.iter());
            let before = validate_examples(&current, &rules, all.clone());
            let after = validate_examples(&candidate, &rules, all);
            let verdict = accept_candidate(&before, &after);
            let figures = LearnFigures {
                validation_examples: validation.len() + examples.len(),
                before: before.combined,
                after: after.combined,
            };
            (candidate, figures, verdict)
        })
        .await
        .map_err(|e| PipelineError::Internal(format!("learning task failed: {e}")))?;

        let figures_json = serde_json::to_string(&figures)
            .map_err(|e| PipelineError::Internal(format!("cannot encode learning figures: {e}")))?;
        let name = format!("{}+feedback", self.model.base().name());
        match verdict {
            Ok(()) => {
                let bytes = candidate.to_bytes().map_err(|e| PipelineError::Internal(e.to_string()))?;
                let note = format!("accepted: {}", figures.summary());
                let version = self
                    .store
                    .record_model_version(
                        &NewModelVersion {
                            name,
                            feedback_upto: upto,
                            feedback_used: labels as i64,
                            accepted: true,
                            note,
                            figures: figures_json,
                            model: Some(bytes),
                        },
                        Utc::now(),
                    )
                    .await?;
                self.model.install(version, Arc::new(candidate));
                self.metrics.model_updates.with_label_values(&["accepted"]).inc();
                tracing::info!(version, labels, figures = %figures.summary(), "model updated from feedback");
                Ok(LearnOutcome::Accepted { version, labels, figures })
            }
            Err(reason) => {
                let version = self
                    .store
                    .record_model_version(
                        &NewModelVersion {
                            name,
                            feedback_upto: upto,
                            feedback_used: labels as i64,
                            accepted: false,
                            note: format!("{reason}; {}", figures.summary()),
                            figures: figures_json,
                            model: None,
                        },
                        Utc::now(),
                    )
                    .await?;
                self.metrics.model_updates.with_label_values(&["refused"]).inc();
                tracing::warn!(version, labels, %reason, figures = %figures.summary(), "model update refused; the model in force stays");
                Ok(LearnOutcome::Refused { version, labels, reason, figures })
            }
        }
    }

    /// Learns whenever new feedback arrived, checking every `interval`, until `shutdown`.
    pub async fn run(self, interval: Duration, shutdown: CancellationToken) {
        loop {
            if let Err(error) = self.learn_once().await {
                tracing::warn!(%error, "learning from feedback failed; will retry");
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(interval) => {}
            }
        }
    }
}
