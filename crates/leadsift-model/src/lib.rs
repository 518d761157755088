//! leadsift's ML model: sparse softmax regressions, one per channel group
//! (averaged SGD, a linfa `Fit` estimator over sparse rows), blended with a
//! linfa Multinomial Naive Bayes, over hashed word and character n-grams plus
//! structural and header features, trained on public labelled corpora,
//! calibrated out of fold, combined with the rules in the rules' own score
//! units, and updated from managers' feedback.
//!
//! This is a pure library: no runtime, database or network. Its only I/O is
//! reading corpora and model directories when asked to. The key design
//! decisions:
//! - **Feature hashing** into `2^k` buckets keeps the model a fixed size and
//!   the training set sparse: neither algorithm ever builds a dense matrix
//!   (linfa's `MultinomialNb` gets its sufficient statistics from sparse sums,
//!   or `FitWith` on dense mini-batches as a cross-check).
//! - **A discriminative model scores**: logistic regression over binary
//!   hashed features is what wins spam-filtering comparisons, one per
//!   channel group (e-mail is not scored with weights set by chat); Naive
//!   Bayes adds a small share of its log-odds and keeps the book of feedback
//!   labels.
//! - **Honest calibration**: the blend and the calibration are chosen on
//!   out-of-fold predictions of the training side, within a false-positive
//!   budget per corpus; the validation split is only reported.
//! - **Fast scoring**: one pass over the hashed feature stream, a per-thread
//!   bitset for distinct buckets, one table row per bucket (no allocation,
//!   no sort). A test checks the Naive Bayes table agrees with linfa's `predict`.
//! - **Combination**: the model adds calibrated, capped log-odds to the
//!   rules' [`Evidence`](leadsift_core::Evidence) as `model:<name>` reasons, and the core's
//!   [`ScoringPolicy::decide`](leadsift_core::ScoringPolicy::decide) makes the one decision, so
//!   list standing and the review threshold work unchanged. The model never
//!   takes points from a class a rule strong enough on its own argued for.
//! - **Feedback cannot silently wreck the model**: updates (online hinge
//!   steps for the regression, added counts for Naive Bayes) produce a new
//!   model; [`accept_candidate`] refuses one whose validation ham→spam
//!   false-positive rate got worse.
//!
//! See `README.md` beside this crate for the label mapping, the measured
//! figures and the feedback policy.

pub mod combined;
pub mod corpora;
pub mod eval;
pub mod features;
pub mod linear;
mod logistic;
pub mod model;
pub mod train;

use leadsift_core::{Message, Verdict};

pub use combined::{CombinedClassifier, EvidenceSource, ModelOnlyClassifier};
pub use corpora::{Corpus, CorpusStats, LabelledMessage, Split, split_of};
pub use eval::{
    ClassFigures, CorpusFigures, EvalReport, EvalSummary, Evaluator, RuleFigures, ValidationFigures, evaluate,
};
pub use features::{FeatureSettings, Featurizer, SparseFeatures};
pub use linear::{LinearModel, LinearSettings, Loss, SparseRows};
pub use model::{Calibration, Ceiling, Model, ModelMetadata, ModelScores, RulesView};
pub use train::{
    AlgorithmFigures, DEFAULT_MAX_HAM_SPAM_FP_RATE, FEEDBACK_WEIGHT, FitEngine, TrainOutcome, TrainProgress,
    TrainSettings, TrainStage, train, validate, validate_examples,
};

/// Why a model operation failed. All are permanent except [`ModelError::Io`]
/// on a transient file-system error.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("cannot read or write {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot load corpus {path}: {reason}")]
    Corpus { path: String, reason: String },
    #[error("invalid model: {0}")]
    Invalid(String),
    #[error("model fitting failed: {0}")]
    Fit(String),
    #[error("linfa: {0}")]
    Linfa(#[from] linfa::Error),
}

impl ModelError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, ModelError::Io { source, .. } if source.kind() == std::io::ErrorKind::Interrupted)
    }
}

/// Incremental learning: `model` with `feedback` learned by the regression
/// (hinge steps until each label leads by [`linear::FEEDBACK_MARGIN`], at most
/// [`FEEDBACK_WEIGHT`] rounds) and added to the Naive Bayes counts, each
/// example weighing [`FEEDBACK_WEIGHT`] corpus examples. Cheap (one
/// featurisation per example plus rebuilding the scoring table, ~0.1 s).
/// The caller validates the candidate and keeps `model` if
/// [`accept_candidate`] refuses it.
pub fn learn_from_feedback(model: &Model, feedback: &[(Message, Verdict)]) -> Model {
    model.updated(feedback, FEEDBACK_WEIGHT)
}

/// Scheduled retrain: the corpus's train split plus all feedback, from
/// scratch, recalibrated out of fold on the train split.
pub fn retrain_with_feedback(
    corpus: &Corpus,
    feedback: &[(Message, Verdict)],
    rules: &dyn EvidenceSource,
    settings: &TrainSettings,
    progress: &mut dyn FnMut(TrainProgress),
) -> Result<(Model, ValidationFigures), ModelError> {
    let outcome = train(corpus, feedback, rules, settings, progress)?;
    Ok((outcome.model, outcome.figures))
}

/// Slack allowed on spam F1 when accepting a candidate (feedback may trade a
/// little spam recall for fewer false positives, never the reverse).
pub const MAX_SPAM_F1_DROP: f64 = 0.02;

/// The guard before a retrained or updated model replaces the current one:
/// refuses it when its combined (rules + model) ham→spam false-positive rate
/// on the validation split is higher than the current model's, when it junks
/// a larger share of the validation inquiries (as any junk class), or when its
/// spam F1 dropped by more than [`MAX_SPAM_F1_DROP`]. The error says why,
/// for the log.
pub fn accept_candidate(old: &ValidationFigures, new: &ValidationFigures) -> Result<(), String> {
    let (old, new) = (&old.combined, &new.combined);
    if new.ham_spam_fp_rate > old.ham_spam_fp_rate + 1e-12 {
        return Err(format!(
            "refused: validation ham→spam false-positive rate rose from {:.3}% ({} of {}) to {:.3}% ({} of {})",
            100.0 * old.ham_spam_fp_rate,
            old.ham_as_spam,
            old.ham_total,
            100.0 * new.ham_spam_fp_rate,
            new.ham_as_spam,
            new.ham_total
        ));
    }
    let junked = |s: &EvalSummary| {
        let inquiries = s.class(Verdict::Inquiry).map_or(0, |c| c.support);
        if inquiries == 0 { 0.0 } else { s.inquiry_as_junk as f64 / inquiries as f64 }
    };
    if junked(new) > junked(old) + 1e-12 {
        return Err(format!(
            "refused: validation inquiries junked rose from {:.3}% ({}) to {:.3}% ({})",
            100.0 * junked(old),
            old.inquiry_as_junk,
            100.0 * junked(new),
            new.inquiry_as_junk
        ));
    }
    if new.spam_f1() + MAX_SPAM_F1_DROP < old.spam_f1() {
        return Err(format!("refused: validation spam F1 fell from {:.4} to {:.4}", old.spam_f1(), new.spam_f1()));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
