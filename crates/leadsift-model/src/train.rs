//! Training: linfa `MultinomialNb` statistics from sparse sums (or `FitWith`
//! on dense mini-batches as a cross-check), then one sparse softmax
//! regression per channel group ([`crate::linear`], a linfa `Fit` over the
//! sparse rows), then the Naive Bayes blend and the calibration against the
//! rules, both chosen on out-of-fold predictions of the training side: the
//! validation split is only scored and reported, never used to choose.
//! Optionally a linfa multinomial logistic regression on dense columns is
//! fitted for comparison.
//!
//! Memory: every training message's distinct buckets (8 bytes each) are kept
//! for the folds and the regressions, plus two f64 tables of
//! `2^dimension_bits × 4` per fit; the whole run peaks at 393 MB on the shared corpora;
//! the `FitWith` engine is bounded by its batch, `batch_size ×
//! 2^dimension_bits` f64, plus linfa's per-class copy of it.
//!
//! linfa-bayes 0.8.1 leaves a `dbg!` in `MultinomialNb::fit_with` that
//! prints every class histogram to stderr on each call. Every `fit_with`
//! call therefore runs with stderr redirected to /dev/null (the `gag` crate;
//! one fit at a time, under a lock), and progress is reported through the
//! callback between calls, never from inside one.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Instant;

use leadsift_core::{Message, ScoringPolicy, Verdict};
use linfa::DatasetBase;
use linfa::ParamGuard;
use linfa::traits::{Fit, FitWith, Predict};
use linfa_bayes::{MultinomialNb, MultinomialNbParams};
use ndarray::{Array1, Array2, Axis, Slice};
use serde::{Deserialize, Serialize};

use crate::ModelError;
use crate::combined::EvidenceSource;
use crate::combined::has_words;
use crate::corpora::{Corpus, LabelledMessage};
use crate::eval::{EvalSummary, Evaluator, ValidationFigures};
use crate::features::{FeatureSettings, Featurizer, SparseFeatures};
use crate::linear::{LinearSettings, SparseRows};
use crate::model::{
    Calibration, ChannelGroup, GroupCalibration, Model, ModelMetadata, ModelScores, NB_ALGORITHM, NbCounts, RulesView,
    SCORED_CLASSES, blend, component_name, model_points, points_of_scaled,
};

/// The false-positive budget of the calibration per corpus: the bar (0.15 %).
pub const DEFAULT_MAX_HAM_SPAM_FP_RATE: f64 = 0.0015;

/// A feedback example counts as this many corpus examples: a manager's
/// correction is worth more than an anonymous corpus row, and must be able
/// to move the verdict of the next near-identical message.
pub const FEEDBACK_WEIGHT: u64 = 20;

/// How to train.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainSettings {
    /// Saved as the model's name; reasons say `model:<name>`.
    pub name: String,
    pub features: FeatureSettings,
    /// Naive Bayes additive smoothing.
    pub alpha: f64,
    /// Rows per linfa `fit_with` call.
    pub batch_size: usize,
    /// Seeds the logistic-regression subsample (Naive Bayes does not depend on order).
    pub seed: u64,
    /// Also fit linfa's multinomial logistic regression for comparison (slow).
    pub compare_logistic: bool,
    /// How the Naive Bayes statistics are accumulated.
    pub engine: FitEngine,
    /// The calibration may let the combined classifier reach this ham→spam
    /// false-positive rate in each corpus (out of fold), or the rules' own
    /// there if that is higher. `0.0` means "never more false positives than
    /// the rules alone".
    pub max_ham_spam_fp_rate: f64,
    /// The logistic regression that scores (see [`crate::linear`]); `None`
    /// leaves Naive Bayes scoring, as models before it did.
    pub linear: Option<LinearSettings>,
    /// The calibration and the Naive Bayes blend are chosen on out-of-fold
    /// predictions of the training side, in this many hash folds (each scored
    /// by a model fitted on the others); the validation split is only reported.
    #[serde(default = "default_calibration_folds")]
    pub calibration_folds: u32,
}

fn default_calibration_folds() -> u32 {
    5
}

/// Two ways to the same `MultinomialNb`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FitEngine {
    /// Sum the sparse rows per class (what `MultinomialNb::fit_with` sums),
    /// then build linfa's model from those statistics. Seconds, ~100 MB.
    SparseCounts,
    /// linfa's own `FitWith` on dense mini-batches, cross-checked against the
    /// sparse sums. Exact but slow at 2^17+ buckets: linfa copies every dense
    /// row per class and its `dbg!` formats every histogram on each call
    /// (measured 6 min and 300 MB for the shared corpora at 2^17).
    LinfaFitWith,
}

impl Default for TrainSettings {
    fn default() -> Self {
        Self {
            name: "default".into(),
            features: FeatureSettings::default(),
            alpha: 0.5,
            batch_size: 64,
            seed: 20_021_010,
            compare_logistic: false,
            engine: FitEngine::SparseCounts,
            max_ham_spam_fp_rate: DEFAULT_MAX_HAM_SPAM_FP_RATE,
            linear: Some(LinearSettings::default()),
            calibration_folds: default_calibration_folds(),
        }
    }
}

/// Where training is, for a progress bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrainStage {
    /// `done` of `total` training examples fitted.
    Fitting,
    /// `done` of `total` validation examples scored.
    Validating,
    /// `done` of `total` calibrations tried.
    Calibrating,
    /// The comparison algorithm (`done`/`total` are coarse steps).
    Comparing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrainProgress {
    pub stage: TrainStage,
    pub done: u64,
    pub total: u64,
}

/// Figures of one algorithm, model alone, argmax of its probabilities.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlgorithmFigures {
    pub algorithm: String,
    pub settings: String,
    pub train_examples: u64,
    /// Wall-clock fit time; not saved, so `metadata.json` is byte-identical
    /// run to run (with `SOURCE_DATE_EPOCH` fixing `trained_at`).
    #[serde(skip)]
    pub fit_seconds: f64,
    pub model_only: EvalSummary,
}

/// A trained model and how it did.
#[derive(Debug, Clone)]
pub struct TrainOutcome {
    pub model: Model,
    /// On the validation split.
    pub figures: ValidationFigures,
    /// Out-of-fold on the training side: what the calibration was chosen on.
    pub out_of_fold: ValidationFigures,
    /// Naive Bayes and any compared algorithm, uncalibrated argmax.
    pub algorithms: Vec<AlgorithmFigures>,
}

/// Trains on the corpus's train split plus `feedback` (all of it, each
/// example [`FEEDBACK_WEIGHT`] times), calibrates against `rules` on
/// out-of-fold predictions of the train split ([`TrainSettings::calibration_folds`])
/// and reports validation figures. Deterministic: the same corpus, feedback
/// and settings give a byte-identical `model.json.gz`.
pub fn train(
    corpus: &Corpus,
    feedback: &[(Message, Verdict)],
    rules: &dyn EvidenceSource,
    settings: &TrainSettings,
    progress: &mut dyn FnMut(TrainProgress),
) -> Result<TrainOutcome, ModelError> {
    let featurizer = Featurizer::new(settings.features);
    let train_set: Vec<&LabelledMessage> = corpus.train().collect();
    let validation: Vec<&LabelledMessage> = corpus.validation().collect();
    if train_set.is_empty() {
        return Err(ModelError::Invalid("nothing to train on: the corpus has no training examples".into()));
    }
    let folds = settings.calibration_folds;
    if folds < 2 {
        return Err(ModelError::Invalid(format!("calibration needs at least 2 folds, got {folds}")));
    }

    // Featurise the training side once: the final fit and every fold reuse it.
    let total = train_set.len() as u64;
    let mut features = Vec::with_capacity(train_set.len());
    for (done, example) in train_set.iter().enumerate() {
        let mut row = featurizer.features(&example.message);
        row.counts.iter_mut().for_each(|c| *c = 1);
        features.push(row);
        if done.is_multiple_of(4096) {
            progress(TrainProgress { stage: TrainStage::Fitting, done: done as u64, total });
        }
    }
    let all: Vec<usize> = (0..train_set.len()).collect();

    // The model itself: the whole training side.
    let started = Instant::now();
    let counts = if settings.engine == FitEngine::LinfaFitWith {
        let rows: Vec<TrainRow<'_>> = train_set
            .iter()
            .map(|e| TrainRow {
                message: &e.message,
                component: component_name(e.class, &e.corpus),
                class: e.class,
                times: 1,
            })
            .collect();
        fit_naive_bayes(&featurizer, settings, &rows, progress)?
    } else {
        // Hand the statistics to linfa and read them back: the model we score
        // with is, field for field, a linfa `MultinomialNb`.
        let own = naive_bayes_counts(settings, &train_set, &features, &all)?;
        counts_from_linfa(&linfa_from_counts(&own)?, &own)?
    };
    let fit_seconds = started.elapsed().as_secs_f64();
    let mut model = Model::from_counts(&settings.name, settings.features, counts, Calibration::default())?;
    let mut linear_seconds = 0.0;
    if let Some(linear_settings) = &settings.linear {
        let started = Instant::now();
        fit_regressions(&mut model, linear_settings, settings, &train_set, &features, &all)?;
        linear_seconds = started.elapsed().as_secs_f64();
    }
    progress(TrainProgress { stage: TrainStage::Fitting, done: total, total });
    // Feedback joins the corpus model exactly as an incremental update would.
    if !feedback.is_empty() {
        model = model.updated(feedback, FEEDBACK_WEIGHT);
    }

    // Out-of-fold predictions on the training side: each fold is scored by a
    // model fitted on the other folds (with the same feedback). The
    // calibration and the Naive Bayes blend are chosen on these alone, so the
    // validation split stays untouched until it is reported.
    let policy = rules.scoring();
    let fold_of: Vec<u32> = train_set.iter().map(|e| e.fold(folds)).collect();
    let mut out_of_fold: Vec<Scored<'_>> = Vec::with_capacity(train_set.len());
    for fold in 0..folds {
        let (held, inside): (Vec<usize>, Vec<usize>) = all.iter().partition(|&&i| fold_of[i] == fold);
        if held.is_empty() || inside.is_empty() {
            continue;
        }
        let counts = naive_bayes_counts(settings, &train_set, &features, &inside)?;
        let mut fold_model = Model::from_counts(&settings.name, settings.features, counts, Calibration::default())?;
        if let Some(linear_settings) = &settings.linear {
            fit_regressions(&mut fold_model, linear_settings, settings, &train_set, &features, &inside)?;
        }
        if !feedback.is_empty() {
            fold_model = fold_model.updated(feedback, FEEDBACK_WEIGHT);
        }
        for &i in &held {
            let group = ChannelGroup::of(&train_set[i].message);
            let (regression, nb) = fold_model.regression_and_nb_sparse(&features[i], group);
            out_of_fold.push(Scored::new(train_set[i], rules, &policy, regression, nb));
        }
        progress(TrainProgress { stage: TrainStage::Validating, done: u64::from(fold + 1), total: u64::from(folds) });
    }
    if out_of_fold.is_empty() {
        return Err(ModelError::Invalid("no fold could be scored: too few training examples".into()));
    }

    // The validation split, scored once by the model exactly as it will score in production.
    let total = validation.len() as u64;
    let mut scored = Vec::with_capacity(validation.len());
    for (done, example) in validation.iter().enumerate() {
        let regression = model.linear().map(|_| model.regression_scores(&example.message));
        scored.push(Scored::new(example, rules, &policy, regression, model.nb_scores(&example.message)));
        if done.is_multiple_of(1024) {
            progress(TrainProgress { stage: TrainStage::Validating, done: done as u64, total });
        }
    }
    let lr_argmax = model.linear().map(|_| {
        let mut argmax = Evaluator::new();
        for s in &scored {
            argmax.add_verdict(s.corpus, s.label, s.model.predicted());
        }
        argmax.summary()
    });

    let blends: &[f64] = if model.linear().is_some() { &NB_BLENDS } else { &[0.0] };
    let per_group = model.has_group_linear();
    let (calibration, nb_blends) =
        calibrate(&mut out_of_fold, &policy, settings.max_ham_spam_fp_rate, blends, per_group, progress);
    let blend_of = |group: ChannelGroup| nb_blends[group as usize];
    if let Some(mut linear) = model.linear().cloned() {
        linear.nb_blend = blend_of(ChannelGroup::Email);
        let others: Vec<_> = ChannelGroup::ALL[1..].iter().map(|g| (*g, model.linear_for(*g).cloned())).collect();
        model.set_linear(linear)?;
        for (group, other) in others.into_iter().filter(|_| per_group) {
            if let Some(mut other) = other {
                other.nb_blend = blend_of(group);
                model.set_linear_for(group, other)?;
            }
        }
    }
    for s in &mut scored {
        s.set_blend(blend_of(s.group));
    }
    let nb_blend = format!(
        "{} (e-mail), {} (short messages)",
        blend_of(ChannelGroup::Email),
        blend_of(ChannelGroup::ShortMessages)
    );
    model.set_calibration(calibration);
    let figures = validation_figures(&scored, &policy, &calibration);
    let out_of_fold_figures = validation_figures(&out_of_fold, &policy, &calibration);

    let mut nb_argmax = Evaluator::new();
    for s in &scored {
        nb_argmax.add_verdict(s.corpus, s.label, s.nb.predicted());
    }
    let mut algorithms = vec![AlgorithmFigures {
        algorithm: NB_ALGORITHM.into(),
        settings: format!("alpha {}, 2^{} buckets", settings.alpha, settings.features.dimension_bits),
        train_examples: (train_set.len() + feedback.len()) as u64,
        fit_seconds,
        model_only: nb_argmax.summary(),
    }];
    if let (Some(linear), Some(lr_argmax)) = (&settings.linear, lr_argmax) {
        let regression = format!(
            "{} epochs, learning rate {}, inquiry weight {}, source balance {}, 2^{} buckets",
            linear.epochs,
            linear.learning_rate,
            linear.inquiry_weight,
            linear.source_balance,
            settings.features.dimension_bits
        );
        algorithms.push(AlgorithmFigures {
            algorithm: "sparse softmax regression alone (averaged SGD, linfa Fit)".into(),
            settings: regression.clone(),
            train_examples: (train_set.len() + feedback.len()) as u64,
            fit_seconds: linear_seconds,
            model_only: lr_argmax,
        });
        let mut argmax = Evaluator::new();
        for s in &scored {
            argmax.add_verdict(s.corpus, s.label, s.model.predicted());
        }
        algorithms.push(AlgorithmFigures {
            algorithm: crate::model::ALGORITHM.into(),
            settings: format!("{regression}; Naive Bayes blend {nb_blend}"),
            train_examples: (train_set.len() + feedback.len()) as u64,
            fit_seconds: linear_seconds + fit_seconds,
            model_only: argmax.summary(),
        });
    }
    if settings.compare_logistic {
        algorithms.push(crate::logistic::compare(&featurizer, &train_set, &validation, settings.seed, progress)?);
    }

    let mut train_examples = BTreeMap::new();
    for class in Verdict::ALL {
        let n = model.counts().class_count(class);
        if n > 0 {
            train_examples.insert(class.to_string(), n);
        }
    }
    model.set_metadata(ModelMetadata {
        name: settings.name.clone(),
        algorithm: model.algorithm().into(),
        features: settings.features,
        dimension: settings.features.dimension(),
        alpha: settings.alpha,
        seed: settings.seed,
        trained_at: trained_at(),
        corpora: corpus.stats.clone(),
        train_examples,
        feedback_examples: feedback.len() as u64,
        calibration,
        validation: Some(figures.clone()),
        out_of_fold: Some(out_of_fold_figures.clone()),
        // Fit times are not saved (see `AlgorithmFigures::fit_seconds`): zero here too, so a loaded model's
        // metadata equals the trained one's.
        alternatives: algorithms
            .iter()
            .filter(|a| a.algorithm != model.algorithm())
            .map(|a| AlgorithmFigures { fit_seconds: 0.0, ..a.clone() })
            .collect(),
        notes: format!(
            "train_examples counts feedback examples FEEDBACK_WEIGHT times; the calibration and the Naive Bayes \
             blend were chosen on out-of-fold predictions of the training side ({folds} hash folds, figures under \
             out_of_fold); validation is the fixed 20% hash split of the corpora, reported only (see \
             crates/leadsift-model/README.md)"
        ),
    });
    Ok(TrainOutcome { model, figures, out_of_fold: out_of_fold_figures, algorithms })
}

/// Naive Bayes statistics of the examples at `indices`, from their features
/// (binary, so a component's bucket count is the number of its messages with it).
fn naive_bayes_counts(
    settings: &TrainSettings,
    examples: &[&LabelledMessage],
    features: &[SparseFeatures],
    indices: &[usize],
) -> Result<NbCounts, ModelError> {
    let mut counts = NbCounts::new(settings.alpha, settings.features.dimension());
    // Components first, so their indices (name order) are fixed up front.
    for &i in indices {
        counts.component(&component_name(examples[i].class, &examples[i].corpus), examples[i].class);
    }
    if counts.components.len() > crate::model::MAX_COMPONENTS {
        return Err(ModelError::Invalid(format!("more than {} mixture components", crate::model::MAX_COMPONENTS)));
    }
    for &i in indices {
        let component = counts.component(&component_name(examples[i].class, &examples[i].corpus), examples[i].class);
        counts.add(component, &features[i], 1);
    }
    if counts.components.iter().all(|c| c.count == 0) {
        return Err(ModelError::Invalid("nothing to train on".into()));
    }
    Ok(counts)
}

/// The regression(s) of `model` on the examples at `indices`: one per
/// channel group when [`LinearSettings::other_channel_weight`] says so.
fn fit_regressions(
    model: &mut Model,
    linear: &LinearSettings,
    settings: &TrainSettings,
    examples: &[&LabelledMessage],
    features: &[SparseFeatures],
    indices: &[usize],
) -> Result<(), ModelError> {
    match linear.other_channel_weight {
        None => model.set_linear(fit_linear(linear, settings, examples, features, indices, None)?),
        Some(weight) => {
            for group in ChannelGroup::ALL {
                let fitted = fit_linear(linear, settings, examples, features, indices, Some((group, weight)))?;
                model.set_linear_for(group, fitted)?;
            }
            Ok(())
        }
    }
}

/// The softmax regression on the examples at `indices`; with `focus`, the
/// examples outside its channel group count at its weight.
fn fit_linear(
    linear: &LinearSettings,
    settings: &TrainSettings,
    examples: &[&LabelledMessage],
    features: &[SparseFeatures],
    indices: &[usize],
    focus: Option<(ChannelGroup, f64)>,
) -> Result<crate::linear::LinearModel, ModelError> {
    let records = SparseRows {
        rows: indices.iter().map(|&i| features[i].clone()).collect(),
        dimension: settings.features.dimension(),
    };
    let targets: Vec<Verdict> = indices.iter().map(|&i| examples[i].class).collect();
    let mut sizes: BTreeMap<(Verdict, &str), usize> = BTreeMap::new();
    for &i in indices {
        *sizes.entry((examples[i].class, examples[i].corpus.as_str())).or_default() += 1;
    }
    let mean = indices.len() as f64 / sizes.len().max(1) as f64;
    let weights: Array1<f32> = indices
        .iter()
        .map(|&i| {
            let size = sizes[&(examples[i].class, examples[i].corpus.as_str())] as f64;
            let factor = match focus {
                Some((group, weight)) if ChannelGroup::of(&examples[i].message) != group => weight,
                _ => 1.0,
            };
            ((mean / size).powf(linear.source_balance) * factor) as f32
        })
        .collect();
    linear.fit(&DatasetBase::new(records, targets).with_weights(weights))
}

/// `SOURCE_DATE_EPOCH` (reproducible builds) or now, RFC 3339.
fn trained_at() -> String {
    let now = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .and_then(|secs| chrono::DateTime::from_timestamp(secs, 0))
        .unwrap_or_else(chrono::Utc::now);
    now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Runs linfa's `fit_with` with stderr gagged (see the module docs).
fn fit_batch_quietly(
    params: &linfa_bayes::MultinomialNbValidParams<f64, usize>,
    model: Option<MultinomialNb<f64, usize>>,
    dataset: &DatasetBase<ndarray::ArrayView2<'_, f64>, ndarray::ArrayView1<'_, usize>>,
) -> Result<MultinomialNb<f64, usize>, ModelError> {
    static STDERR_GAG: Mutex<()> = Mutex::new(());
    let _serialised = STDERR_GAG.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    // If stderr cannot be redirected (already gagged elsewhere), fit anyway: noise beats failure.
    let _gag = gag::Gag::stderr().ok();
    params.fit_with(model, dataset).map_err(|e| ModelError::Fit(e.to_string()))
}

/// One training example: which mixture component it belongs to, and how many times it counts.
#[derive(Debug, Clone)]
pub struct TrainRow<'m> {
    pub message: &'m Message,
    pub component: String,
    pub class: Verdict,
    pub times: u64,
}

/// Fits linfa's `MultinomialNb` (one linfa label per mixture component) and
/// returns its learned statistics. With [`FitEngine::LinfaFitWith`] the
/// rows go through `fit_with` batch by batch and the result is checked
/// against the sparse sums; with [`FitEngine::SparseCounts`] the sums are
/// handed to linfa's model through its serde form.
pub fn fit_naive_bayes(
    featurizer: &Featurizer,
    settings: &TrainSettings,
    rows: &[TrainRow<'_>],
    progress: &mut dyn FnMut(TrainProgress),
) -> Result<NbCounts, ModelError> {
    let dimension = featurizer.settings().dimension();
    let batch_size = settings.batch_size.max(1);
    let params =
        MultinomialNbParams::new().alpha(settings.alpha).check().map_err(|e| ModelError::Fit(e.to_string()))?;
    let mut own = NbCounts::new(settings.alpha, dimension);
    // Components first, so linfa labels (component indices, in name order) are fixed up front.
    for row in rows {
        own.component(&row.component, row.class);
    }
    if own.components.len() > crate::model::MAX_COMPONENTS {
        return Err(ModelError::Invalid(format!("more than {} mixture components", crate::model::MAX_COMPONENTS)));
    }
    let linfa_fit = settings.engine == FitEngine::LinfaFitWith;
    let mut fitted: Option<MultinomialNb<f64, usize>> = None;
    let mut batch = if linfa_fit { Array2::<f64>::zeros((batch_size, dimension)) } else { Array2::zeros((0, 0)) };
    let mut targets = Array1::<usize>::zeros(batch_size);
    let mut pending: Vec<SparseFeatures> = Vec::with_capacity(batch_size);

    let flush = |pending: &mut Vec<SparseFeatures>,
                 targets: &mut Array1<usize>,
                 batch: &mut Array2<f64>,
                 fitted: &mut Option<MultinomialNb<f64, usize>>|
     -> Result<(), ModelError> {
        let n = pending.len();
        if n == 0 {
            return Ok(());
        }
        for (row, features) in pending.iter().enumerate() {
            for (bucket, count) in features.iter() {
                batch[[row, bucket as usize]] = f64::from(count);
            }
        }
        let dataset = DatasetBase::new(
            batch.slice_axis(Axis(0), Slice::from(0..n)),
            targets.slice_axis(Axis(0), Slice::from(0..n)),
        );
        *fitted = Some(fit_batch_quietly(&params, fitted.take(), &dataset)?);
        // Reset only what was set: zeroing the whole batch would cost as much as the fit.
        for (row, features) in pending.iter().enumerate() {
            for &bucket in &features.indices {
                batch[[row, bucket as usize]] = 0.0;
            }
        }
        pending.clear();
        Ok(())
    };

    let total = rows.len() as u64;
    for (done, row) in rows.iter().enumerate() {
        let features = featurizer.features(row.message);
        let component = own.component(&row.component, row.class);
        own.add(component, &features, row.times);
        if linfa_fit {
            for _ in 0..row.times {
                targets[pending.len()] = component;
                pending.push(features.clone());
                if pending.len() == batch_size {
                    flush(&mut pending, &mut targets, &mut batch, &mut fitted)?;
                }
            }
        }
        let done = done as u64 + 1;
        if done.is_multiple_of(256) || done == total {
            progress(TrainProgress { stage: TrainStage::Fitting, done, total });
        }
    }
    if own.components.iter().all(|c| c.count == 0) {
        return Err(ModelError::Invalid("nothing to train on".into()));
    }
    if !linfa_fit {
        // Hand the statistics to linfa and read them back: the model we score
        // with is, field for field, a linfa `MultinomialNb`.
        let linfa = linfa_from_counts(&own)?;
        return counts_from_linfa(&linfa, &own);
    }
    flush(&mut pending, &mut targets, &mut batch, &mut fitted)?;
    let fitted = fitted.ok_or_else(|| ModelError::Invalid("nothing to train on".into()))?;
    let linfa_counts = counts_from_linfa(&fitted, &own)?;
    if linfa_counts != own {
        return Err(ModelError::Fit("linfa's class histograms differ from the sparse counts".into()));
    }
    Ok(linfa_counts)
}

/// linfa's serde form of a fitted `MultinomialNb` (the fields are private otherwise).
#[derive(Debug, Serialize, Deserialize)]
struct LinfaNb {
    class_info: HashMap<usize, LinfaHistogram>,
}

#[derive(Debug, Serialize, Deserialize)]
struct LinfaHistogram {
    class_count: usize,
    prior: f64,
    feature_count: LinfaArray,
    feature_log_prob: LinfaArray,
}

#[derive(Debug, Serialize, Deserialize)]
struct LinfaArray {
    v: u8,
    dim: [usize; 1],
    data: Vec<f64>,
}

/// Reads the learned statistics out of a fitted linfa model whose labels are
/// the component indices of `layout` (names, classes and alpha come from it).
pub fn counts_from_linfa(model: &MultinomialNb<f64, usize>, layout: &NbCounts) -> Result<NbCounts, ModelError> {
    let json = serde_json::to_vec(model).map_err(|e| ModelError::Fit(e.to_string()))?;
    let parsed: LinfaNb =
        serde_json::from_slice(&json).map_err(|e| ModelError::Fit(format!("linfa model layout: {e}")))?;
    let mut counts = layout.clone();
    for component in &mut counts.components {
        component.count = 0;
        component.features.iter_mut().for_each(|c| *c = 0);
    }
    for (label, info) in parsed.class_info {
        let component = counts
            .components
            .get_mut(label)
            .filter(|_| info.feature_count.data.len() == layout.dimension)
            .ok_or_else(|| ModelError::Fit("unexpected linfa label or dimension".into()))?;
        component.count = info.class_count as u64;
        for (slot, &value) in component.features.iter_mut().zip(&info.feature_count.data) {
            *slot = value.round() as u32;
        }
    }
    Ok(counts)
}

/// Builds the linfa model these statistics describe (labels = component indices).
pub fn linfa_from_counts(counts: &NbCounts) -> Result<MultinomialNb<f64, usize>, ModelError> {
    let total: u64 = counts.components.iter().map(|c| c.count).sum();
    let mut class_info = HashMap::new();
    for (label, component) in counts.components.iter().enumerate() {
        if component.count == 0 {
            continue;
        }
        let data: Vec<f64> = component.features.iter().map(|&c| f64::from(c)).collect();
        let dim = [data.len()];
        class_info.insert(
            label,
            LinfaHistogram {
                class_count: component.count as usize,
                prior: component.count as f64 / total as f64,
                feature_count: LinfaArray { v: 1, dim, data },
                feature_log_prob: LinfaArray { v: 1, dim, data: counts.feature_log_prob(label) },
            },
        );
    }
    let json = serde_json::to_vec(&LinfaNb { class_info }).map_err(|e| ModelError::Fit(e.to_string()))?;
    serde_json::from_slice(&json).map_err(|e| ModelError::Fit(format!("linfa model layout: {e}")))
}

/// linfa's own prediction (component labels) for sparse rows (dense, slow; for tests and checks).
pub fn linfa_predict(model: &MultinomialNb<f64, usize>, rows: &[SparseFeatures], dimension: usize) -> Vec<usize> {
    let mut x = Array2::<f64>::zeros((rows.len(), dimension));
    for (r, features) in rows.iter().enumerate() {
        for (bucket, count) in features.iter() {
            x[[r, bucket as usize]] = f64::from(count);
        }
    }
    let predicted: Array1<usize> = model.predict(&x);
    predicted.to_vec()
}

/// One labelled example, scored once: the rules' scores and the model's
/// log-odds, which is all a verdict under any calibration needs.
#[derive(Debug, Clone)]
pub(crate) struct Scored<'a> {
    pub corpus: &'a str,
    pub label: Verdict,
    pub group: ChannelGroup,
    /// Whether the model gets a say at all (see [`crate::combined::has_words`]).
    pub has_words: bool,
    /// The rules' decisive reason, if any.
    pub decided: Option<(Verdict, f64)>,
    /// The rules' scores per class and what the model's points depend on in them.
    pub view: RulesView,
    /// What the model scores with under the current blend.
    pub model: ModelScores,
    /// The regression's log-odds alone (when the model has one) and Naive Bayes'.
    pub regression: Option<ModelScores>,
    pub nb: ModelScores,
}

impl<'a> Scored<'a> {
    fn new(
        example: &'a LabelledMessage,
        rules: &dyn EvidenceSource,
        policy: &ScoringPolicy,
        regression: Option<ModelScores>,
        nb: ModelScores,
    ) -> Self {
        let evidence = rules.evidence(&example.message);
        Scored {
            corpus: &example.corpus,
            label: example.class,
            group: ChannelGroup::of(&example.message),
            has_words: has_words(&example.message),
            decided: evidence.decided(),
            view: RulesView::of(&evidence, policy.threshold),
            model: regression.unwrap_or(nb),
            regression,
            nb,
        }
    }

    /// Scores with the regression plus `weight` of Naive Bayes (Naive Bayes alone without a regression).
    fn set_blend(&mut self, weight: f64) {
        self.model = match self.regression {
            Some(regression) if weight > 0.0 => blend(regression, &self.nb, weight),
            Some(regression) => regression,
            None => self.nb,
        };
    }

    /// The rules alone.
    fn rules_verdict(&self, policy: &ScoringPolicy) -> Verdict {
        policy.decide_scores(&self.view.scores, self.decided, false).0
    }

    /// The model alone, as [`crate::ModelOnlyClassifier`] decides.
    fn model_verdict(&self, policy: &ScoringPolicy, calibration: &Calibration) -> Verdict {
        let mut scores = [0.0; 5];
        let points = model_points(&self.model, calibration, self.group, &RulesView::NONE);
        for (class, p) in SCORED_CLASSES.iter().zip(points) {
            scores[class.index()] += p;
        }
        policy.decide_scores(&scores, None, false).0
    }

    /// Rules + model, as [`crate::CombinedClassifier`] decides: the same
    /// points added to the same rule scores, the same decision.
    fn combined_verdict(&self, policy: &ScoringPolicy, calibration: &Calibration) -> Verdict {
        if !self.has_words {
            return self.rules_verdict(policy);
        }
        self.verdict_with_points(policy, &model_points(&self.model, calibration, self.group, &self.view))
    }

    /// The verdict with the model's `points` added to the rules' scores.
    fn verdict_with_points(&self, policy: &ScoringPolicy, points: &[f64; 4]) -> Verdict {
        self.verdict_and_margin(policy, points).0
    }

    /// The verdict with the model's `points`, and by how much the label's
    /// class clears the threshold (an inquiry: by how much every junk class
    /// stays under it), at most [`MARGIN_CLIP`]: what breaks ties between
    /// calibrations that decide alike.
    fn verdict_and_margin(&self, policy: &ScoringPolicy, points: &[f64; 4]) -> (Verdict, f64) {
        let mut scores = self.view.scores;
        for (class, p) in SCORED_CLASSES.iter().zip(points) {
            scores[class.index()] += p;
        }
        let inquiry = scores[Verdict::Inquiry.index()];
        let over = |class: Verdict| scores[class.index()] - inquiry - policy.threshold;
        let margin = if self.label == Verdict::Inquiry {
            -SCORED_CLASSES.iter().map(|c| over(*c)).fold(f64::NEG_INFINITY, f64::max)
        } else {
            over(self.label)
        };
        (policy.decide_scores(&scores, self.decided, false).0, margin.min(MARGIN_CLIP))
    }
}

pub(crate) fn validation_figures(
    scored: &[Scored<'_>],
    policy: &ScoringPolicy,
    calibration: &Calibration,
) -> ValidationFigures {
    let (mut rules_only, mut model_only, mut combined) = (Evaluator::new(), Evaluator::new(), Evaluator::new());
    for s in scored {
        rules_only.add_verdict(s.corpus, s.label, s.rules_verdict(policy));
        model_only.add_verdict(s.corpus, s.label, s.model_verdict(policy, calibration));
        combined.add_verdict(s.corpus, s.label, s.combined_verdict(policy, calibration));
    }
    ValidationFigures {
        rules_only: rules_only.summary(),
        model_only: model_only.summary(),
        combined: combined.summary(),
    }
}

/// The Naive Bayes weights in the ensemble `train` tries (see [`crate::linear::LinearModel::nb_blend`]).
pub const NB_BLENDS: [f64; 5] = [0.0, 0.05, 0.1, 0.2, 0.4];

/// What `calibrate` maximises: (within the false-positive budget, −false
/// positives over it, macro F1, −inquiries junked, the summed margins by
/// which the examples' own classes clear the threshold (each at most
/// [`MARGIN_CLIP`]), −distance of the grid point from the plain log-odds
/// `w = 1, b = 0, e = 0`). The last two only break ties, which small training
/// sets have many of: the calibration deciding with most room to spare, as
/// the shipped model, fitted on all folds, scores a little differently.
pub(crate) type CalibrationKey = (bool, std::cmp::Reverse<u64>, f64, std::cmp::Reverse<u64>, f64, f64);

/// The most a single example's margin adds to the tie-breaking sum (rule points).
pub const MARGIN_CLIP: f64 = 2.0;

/// How far a grid point is from using the log-odds as they are.
fn distance_from_plain(group: GroupCalibration) -> f64 {
    let newsletter = group.newsletter_bias.map_or(0.0, |bias| (bias - group.bias).abs() / 4.0);
    group.weight.ln().abs() + group.bias.abs() / 4.0 + group.length_exponent.abs() + newsletter
}

/// Rounds of the per-group calibration search (each group once per round).
pub const CALIBRATION_ROUNDS: usize = 2;

/// The weight grid `calibrate` searches.
pub const CALIBRATION_WEIGHTS: [f64; 13] = [0.05, 0.1, 0.15, 0.2, 0.3, 0.45, 0.6, 0.8, 1.0, 1.5, 2.0, 3.0, 4.0];
/// The length exponents `calibrate` searches (0: raw log-odds; 0.5: scaled by
/// √(100/length); −0.25: short texts, on which the regression is too sure, damped).
pub const CALIBRATION_LENGTH_EXPONENTS: [f64; 4] = [-0.25, 0.0, 0.25, 0.5];
/// The log-odds biases `calibrate` searches: half steps where the
/// regression's near-calibrated log-odds cross the threshold, then the large
/// shifts Naive Bayes' overconfident ones need.
pub const CALIBRATION_BIASES: [f64; 35] = [
    -3.0, -2.5, -2.0, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 5.5, 6.0, 6.5, 7.0, 7.5,
    8.0, 8.5, 9.0, 9.5, 10.0, 12.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 80.0,
];

/// A confusion matrix, false positives per corpus, and the few figures the
/// calibration search compares (the same definitions as [`crate::eval::EvalSummary`]).
#[derive(Debug, Clone, Default)]
struct Confusion {
    matrix: [[u64; 5]; 5],
    /// Ham→spam false positives per corpus (by [`corpus_ids`] index),
    /// including those of other channel groups, which count against the same budget.
    false_positives: Vec<u64>,
    /// Summed margins of the examples scored here (see [`CalibrationKey`]).
    margin: f64,
}

impl Confusion {
    fn new(corpora: usize) -> Self {
        Confusion { matrix: [[0; 5]; 5], false_positives: vec![0; corpora], margin: 0.0 }
    }

    fn add(&mut self, corpus: usize, label: Verdict, predicted: Verdict) {
        self.matrix[label.index()][predicted.index()] += 1;
        if label != Verdict::Spam && predicted == Verdict::Spam {
            self.false_positives[corpus] += 1;
        }
    }

    fn macro_f1(&self) -> f64 {
        let mut sum = 0.0;
        let mut present = 0;
        for i in 0..5 {
            let support: u64 = self.matrix[i].iter().sum();
            if support == 0 {
                continue;
            }
            let predicted: u64 = self.matrix.iter().map(|row| row[i]).sum();
            let correct = self.matrix[i][i];
            let precision = if predicted == 0 { 0.0 } else { correct as f64 / predicted as f64 };
            let recall = correct as f64 / support as f64;
            sum += if precision + recall > 0.0 { 2.0 * precision * recall / (precision + recall) } else { 0.0 };
            present += 1;
        }
        if present == 0 { 0.0 } else { sum / f64::from(present) }
    }

    fn inquiry_as_junk(&self) -> u64 {
        let inquiry = Verdict::Inquiry.index();
        (0..5).filter(|&i| i != inquiry).map(|i| self.matrix[inquiry][i]).sum()
    }

    /// The search key under `allowed` ham→spam false positives per corpus, for grid point `group`.
    fn key(&self, allowed: &[u64], group: GroupCalibration) -> CalibrationKey {
        let excess: u64 =
            self.false_positives.iter().zip(allowed).map(|(fp, allowed)| fp.saturating_sub(*allowed)).sum();
        let within = excess == 0;
        let (macro_f1, junked) = (self.macro_f1(), std::cmp::Reverse(self.inquiry_as_junk()));
        (within, std::cmp::Reverse(excess), macro_f1, junked, self.margin, -distance_from_plain(group))
    }
}

/// Small indices for the corpora of the scored examples, and how many there are.
fn corpus_ids(scored: &[Scored<'_>]) -> (Vec<usize>, usize) {
    let mut names: Vec<&str> = scored.iter().map(|s| s.corpus).collect();
    names.sort_unstable();
    names.dedup();
    let ids = scored.iter().map(|s| names.binary_search(&s.corpus).unwrap_or(0)).collect();
    (ids, names.len())
}

/// Picks the Naive Bayes blends and the calibration on `scored` (out-of-fold
/// predictions of the training side). The budget is per corpus, as the bar
/// is: at most `max_fp_rate` of each corpus's ham (or the rules' own false
/// positives there, if more) may become spam, counted over all channel
/// groups. Each group in turn (two rounds, as a corpus's messages can fall in
/// several groups) takes, among the grid points that keep every corpus within
/// budget given the other groups' current calibration, the one with the
/// group's best macro F1, ties going to fewer inquiries junked (if none is
/// within, the fewest false positives over budget). With `per_group` each
/// group also picks its own blend; otherwise the blend whose calibration does
/// best over all groups by the same key. Returns the blends per
/// [`ChannelGroup`] and leaves `scored` scoring with them.
pub(crate) fn calibrate(
    scored: &mut [Scored<'_>],
    policy: &ScoringPolicy,
    max_fp_rate: f64,
    blends: &[f64],
    per_group: bool,
    progress: &mut dyn FnMut(TrainProgress),
) -> (Calibration, [f64; 2]) {
    let (ids, corpora) = corpus_ids(scored);
    let mut rules_only = Confusion::new(corpora);
    let mut ham = vec![0u64; corpora];
    for (s, &id) in scored.iter().zip(&ids) {
        rules_only.add(id, s.label, s.rules_verdict(policy));
        ham[id] += u64::from(s.label != Verdict::Spam);
    }
    let allowed: Vec<u64> = ham
        .iter()
        .zip(&rules_only.false_positives)
        .map(|(ham, rules_fp)| (*rules_fp).max((max_fp_rate * *ham as f64 + 1e-9).floor() as u64))
        .collect();
    let grid = CALIBRATION_WEIGHTS.len() * CALIBRATION_LENGTH_EXPONENTS.len() * CALIBRATION_BIASES.len();
    // A second round only matters when a corpus has messages in several groups.
    let mut groups_of = vec![[false; 2]; corpora];
    for (s, &id) in scored.iter().zip(&ids) {
        groups_of[id][s.group as usize] = true;
    }
    let spanning = groups_of.iter().any(|g| g.iter().all(|in_group| *in_group));
    let rounds = if per_group && spanning { CALIBRATION_ROUNDS } else { 1 };
    let total = (rounds * blends.len() * ChannelGroup::ALL.len() * grid) as u64;
    let mut search = GroupSearch { policy, ids: &ids, corpora, allowed: &allowed, done: 0, total };
    let mut chosen = [0.0; 2];
    let calibration = if per_group {
        let mut calibration = Calibration::default();
        for _round in 0..rounds {
            for group in ChannelGroup::ALL {
                let mut best: Option<(GroupCalibration, f64, CalibrationKey)> = None;
                for &weight in blends {
                    let (candidate, key) = search.best(scored, group, weight, &calibration, progress);
                    if best.as_ref().is_none_or(|(_, _, best_key)| key > *best_key) {
                        best = Some((candidate, weight, key));
                    }
                }
                if let Some((candidate, weight, _)) = best {
                    calibration = calibration.with_group(group, candidate);
                    chosen[group as usize] = weight;
                }
                for s in scored.iter_mut().filter(|s| s.group == group) {
                    s.set_blend(chosen[group as usize]);
                }
            }
        }
        calibration
    } else {
        let mut best: Option<(Calibration, f64, CalibrationKey)> = None;
        for &weight in blends {
            let mut calibration = Calibration::default();
            for group in ChannelGroup::ALL {
                let (candidate, _) = search.best(scored, group, weight, &calibration, progress);
                calibration = calibration.with_group(group, candidate);
            }
            for s in scored.iter_mut() {
                s.set_blend(weight);
            }
            let mut confusion = Confusion::new(corpora);
            for (s, &id) in scored.iter().zip(&ids) {
                confusion.add(id, s.label, s.combined_verdict(policy, &calibration));
            }
            let key = confusion.key(&allowed, calibration.group(ChannelGroup::Email));
            if best.as_ref().is_none_or(|(_, _, best_key)| key > *best_key) {
                best = Some((calibration, weight, key));
            }
        }
        let (calibration, weight, _) = best.unwrap_or_default();
        chosen = [weight; 2];
        calibration
    };
    for s in scored.iter_mut() {
        s.set_blend(chosen[s.group as usize]);
    }
    (calibration, chosen)
}

/// The grid search of one channel group's calibration.
struct GroupSearch<'p> {
    policy: &'p ScoringPolicy,
    /// Corpus index of each scored example, how many corpora, and their false-positive budgets.
    ids: &'p [usize],
    corpora: usize,
    allowed: &'p [u64],
    done: u64,
    total: u64,
}

impl GroupSearch<'_> {
    /// The best grid point for `group`'s examples scoring with Naive Bayes
    /// blend `weight` (the other group's calibration as in `calibration`).
    fn best(
        &mut self,
        scored: &mut [Scored<'_>],
        group: ChannelGroup,
        weight: f64,
        calibration: &Calibration,
        progress: &mut dyn FnMut(TrainProgress),
    ) -> (GroupCalibration, CalibrationKey) {
        // The other groups' false positives as they stand count against each corpus's budget.
        let mut others = Confusion::new(self.corpora);
        for (s, &id) in scored.iter().zip(self.ids).filter(|(s, _)| s.group != group) {
            if s.label != Verdict::Spam && s.combined_verdict(self.policy, calibration) == Verdict::Spam {
                others.false_positives[id] += 1;
            }
        }
        for s in scored.iter_mut().filter(|s| s.group == group) {
            s.set_blend(weight);
        }
        // Members whose verdict the model cannot change (a decisive rule, no
        // words) are counted once; the others are scored per grid point from
        // log-odds scaled once per length exponent.
        let mut fixed = Confusion::new(self.corpora);
        fixed.false_positives.clone_from(&others.false_positives);
        let mut members: Vec<(&Scored<'_>, usize, [f64; 4])> = Vec::new();
        for (s, &id) in scored.iter().zip(self.ids).filter(|(s, _)| s.group == group) {
            if s.decided.is_some() || !s.has_words {
                fixed.add(id, s.label, s.combined_verdict(self.policy, calibration));
            } else {
                members.push((s, id, [0.0; 4]));
            }
        }
        // The members' verdicts under one candidate, counted on top of the fixed ones.
        let (policy, allowed) = (self.policy, self.allowed);
        let key_of = |members: &[(&Scored<'_>, usize, [f64; 4])], candidate: GroupCalibration| {
            let mut confusion = fixed.clone();
            for (s, id, scaled) in members {
                let points = points_of_scaled(scaled, s.model.active, calibration, candidate, &s.view);
                let (verdict, margin) = s.verdict_and_margin(policy, &points);
                confusion.add(*id, s.label, verdict);
                confusion.margin += margin;
            }
            confusion.key(allowed, candidate)
        };
        let debug = std::env::var_os("LEADSIFT_CALIBRATION_DEBUG").is_some();
        let mut best: Option<(GroupCalibration, CalibrationKey)> = None;
        for &length_exponent in &CALIBRATION_LENGTH_EXPONENTS {
            for (s, _, scaled) in &mut members {
                *scaled = s.model.length_scaled(length_exponent);
            }
            for &bias in &CALIBRATION_BIASES {
                for &w in &CALIBRATION_WEIGHTS {
                    let candidate = GroupCalibration { weight: w, bias, length_exponent, newsletter_bias: None };
                    let key = key_of(&members, candidate);
                    if debug {
                        eprintln!("calibration {group:?} blend {weight} w={w} b={bias} e={length_exponent}: {key:?}");
                    }
                    if best.as_ref().is_none_or(|(_, best_key)| key > *best_key) {
                        best = Some((candidate, key));
                    }
                    self.done += 1;
                    progress(TrainProgress { stage: TrainStage::Calibrating, done: self.done, total: self.total });
                }
            }
        }
        // Then the newsletter bias alone, the rest as chosen.
        if let Some((chosen, _)) = best {
            for (s, _, scaled) in &mut members {
                *scaled = s.model.length_scaled(chosen.length_exponent);
            }
            for &newsletter_bias in &CALIBRATION_BIASES {
                let candidate = GroupCalibration { newsletter_bias: Some(newsletter_bias), ..chosen };
                let key = key_of(&members, candidate);
                if best.as_ref().is_none_or(|(_, best_key)| key > *best_key) {
                    best = Some((candidate, key));
                }
            }
        }
        let fallback = calibration.group(group);
        best.unwrap_or((fallback, Confusion::new(0).key(&[], fallback)))
    }
}

/// Validation figures of `model` (with its own calibration) on the corpus's
/// validation split, against `rules`: what [`crate::accept_candidate`] compares.
pub fn validate(model: &Model, rules: &dyn EvidenceSource, corpus: &Corpus) -> ValidationFigures {
    validate_examples(model, rules, corpus.validation())
}

/// Like [`validate`] on any labelled examples (a running system validates on
/// the messages its managers labelled or worked as real inquiries).
pub fn validate_examples<'a>(
    model: &Model,
    rules: &dyn EvidenceSource,
    examples: impl IntoIterator<Item = &'a LabelledMessage>,
) -> ValidationFigures {
    let policy = rules.scoring();
    let scored: Vec<Scored<'_>> = examples
        .into_iter()
        .map(|e| {
            // Naive Bayes' slot holds what the model scores with; no blend is chosen here.
            Scored::new(e, rules, &policy, None, model.scores(&e.message))
        })
        .collect();
    validation_figures(&scored, &policy, model.calibration())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::features::tests_support::message;
    use leadsift_core::{Channel, Evidence};

    pub(crate) fn synthetic_corpus() -> Corpus {
        let spam = [
            "WIN a FREE prize now!!! click http://win.example to claim your cash",
            "Cheap pills, viagra, casino bonus: click here http://casino.example",
            "Заработок без вложений! Пиши в лс, казино бонус 💰🔥",
            "Удаленная работа, доход от 5000 в день, пиши в личку 💰",
            "You have won $1000000 cash prize, send your bank details",
            "Казино онлайн, бонус за регистрацию, переходи по ссылке",
        ];
        let ham = [
            "Здравствуйте! Подскажите, пожалуйста, стоимость доставки в Казань?",
            "Добрый день, нужен расчет фасада 200 м2, перезвоните мне",
            "Hello, could you send me a quote for 50 units and delivery terms?",
            "Hi, we would like to order your service next week, what are the prices?",
            "Добрый вечер, какие документы нужны для поступления?",
            "Good afternoon, is the product in stock? Please call me back.",
        ];
        let mut corpus = Corpus::default();
        for round in 0..8 {
            for (i, text) in spam.iter().enumerate() {
                let m = message(Channel::Messenger, None, &format!("{text} #{round}{i}"));
                corpus.examples.push(LabelledMessage::new("synthetic", "spam", Verdict::Spam, m));
            }
            for (i, text) in ham.iter().enumerate() {
                let m = message(Channel::Email, Some("Вопрос"), &format!("{text} ({round}{i})"));
                corpus.examples.push(LabelledMessage::new("synthetic", "ham", Verdict::Inquiry, m));
            }
        }
        corpus
    }

    pub(crate) fn small_settings() -> TrainSettings {
        TrainSettings {
            features: FeatureSettings { dimension_bits: 12, ..FeatureSettings::default() },
            batch_size: 7,
            ..TrainSettings::default()
        }
    }

    pub(crate) fn no_rules() -> impl EvidenceSource {
        struct NoRules;
        impl EvidenceSource for NoRules {
            fn evidence(&self, _: &Message) -> Evidence {
                Evidence::default()
            }
            fn scoring(&self) -> ScoringPolicy {
                ScoringPolicy::default()
            }
        }
        NoRules
    }

    #[test]
    fn training_on_a_small_synthetic_set_learns_it() {
        let corpus = synthetic_corpus();
        let outcome = train(&corpus, &[], &no_rules(), &small_settings(), &mut |_| {})
            .unwrap_or_else(|e| panic!("training failed: {e}"));
        let model = &outcome.model;
        let spam = message(Channel::Messenger, None, "Казино бонус, заработок без вложений, пиши в лс 💰");
        let ham = message(Channel::Email, Some("Вопрос"), "Здравствуйте, подскажите стоимость доставки и сроки");
        assert_eq!(model.scores(&spam).predicted(), Verdict::Spam);
        assert_eq!(model.scores(&ham).predicted(), Verdict::Inquiry);
        let figures = &outcome.figures.model_only;
        assert!(figures.total > 0, "the synthetic set has a validation part");
        assert!(outcome.algorithms[0].model_only.accuracy > 0.9, "{:?}", outcome.algorithms[0].model_only);
    }

    #[test]
    fn fast_scorer_agrees_with_linfa_predict() {
        let corpus = synthetic_corpus();
        let settings = small_settings();
        let outcome = train(&corpus, &[], &no_rules(), &settings, &mut |_| {}).unwrap_or_else(|e| panic!("{e}"));
        let model = &outcome.model;
        let linfa = linfa_from_counts(model.counts()).unwrap_or_else(|e| panic!("{e}"));
        let mut probes: Vec<Message> = corpus.examples.iter().map(|e| e.message.clone()).collect();
        probes.push(message(Channel::Call, None, ""));
        probes.push(message(Channel::Webform, Some("Заявка"), "Нужна консультация по цене, казино не нужно"));
        let rows: Vec<SparseFeatures> = probes.iter().map(|m| model.featurizer().features(m)).collect();
        let linfa_labels = linfa_predict(&linfa, &rows, settings.features.dimension());
        for ((m, features), expected) in probes.iter().zip(&rows).zip(linfa_labels) {
            let jll = model.component_scores(features);
            let best = (0..jll.len()).max_by(|&a, &b| jll[a].total_cmp(&jll[b])).unwrap_or(usize::MAX);
            assert_eq!(best, expected, "{:?}", m.text);
            let streamed = model.scores(m);
            let sparse = model.scores_sparse(features, ChannelGroup::of(m));
            for k in 0..4 {
                assert!((streamed.log_odds[k] - sparse.log_odds[k]).abs() < 1e-3 * (1.0 + sparse.log_odds[k].abs()));
            }
            assert_eq!(streamed.predicted(), sparse.predicted());
        }
    }

    #[test]
    fn linfa_counts_round_trip_through_its_serde_form() {
        let corpus = synthetic_corpus();
        let outcome =
            train(&corpus, &[], &no_rules(), &small_settings(), &mut |_| {}).unwrap_or_else(|e| panic!("{e}"));
        let counts = outcome.model.counts();
        let linfa = linfa_from_counts(counts).unwrap_or_else(|e| panic!("{e}"));
        let back = counts_from_linfa(&linfa, counts).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(&back, counts);
    }

    #[test]
    fn linfa_fit_with_learns_exactly_the_sparse_counts() {
        let corpus = synthetic_corpus();
        let sparse = train(&corpus, &[], &no_rules(), &small_settings(), &mut |_| {}).unwrap_or_else(|e| panic!("{e}"));
        let settings = TrainSettings { engine: FitEngine::LinfaFitWith, ..small_settings() };
        let linfa = train(&corpus, &[], &no_rules(), &settings, &mut |_| {}).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(sparse.model.counts(), linfa.model.counts());
        assert_eq!(sparse.model.to_bytes().ok(), linfa.model.to_bytes().ok());
    }

    #[test]
    fn training_is_deterministic() {
        let corpus = synthetic_corpus();
        let a = train(&corpus, &[], &no_rules(), &small_settings(), &mut |_| {}).unwrap_or_else(|e| panic!("{e}"));
        let b = train(&corpus, &[], &no_rules(), &small_settings(), &mut |_| {}).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a.model.to_bytes().ok(), b.model.to_bytes().ok());
    }

    #[test]
    fn the_logistic_regression_scores_and_naive_bayes_remains_for_comparison() {
        let corpus = synthetic_corpus();
        let outcome =
            train(&corpus, &[], &no_rules(), &small_settings(), &mut |_| {}).unwrap_or_else(|e| panic!("{e}"));
        assert!(outcome.model.linear().is_some());
        assert_eq!(outcome.algorithms.len(), 3, "Naive Bayes, the regression and their blend reported");
        let probe = message(Channel::Messenger, None, "Казино бонус, заработок без вложений 💰");
        assert_ne!(outcome.model.scores(&probe), outcome.model.nb_scores(&probe));
        assert_eq!(outcome.model.scores(&probe).predicted(), Verdict::Spam);

        let nb_only = TrainSettings { linear: None, ..small_settings() };
        let nb = train(&corpus, &[], &no_rules(), &nb_only, &mut |_| {}).unwrap_or_else(|e| panic!("{e}"));
        assert!(nb.model.linear().is_none());
        assert_eq!(nb.model.scores(&probe), nb.model.nb_scores(&probe));
        assert_eq!(nb.model.counts(), outcome.model.counts(), "the Naive Bayes counts do not depend on the scorer");
    }

    #[test]
    fn the_calibration_search_decides_exactly_as_the_classifier() {
        let corpus = synthetic_corpus();
        let rules = leadsift_rules::RuleSet::builtin();
        let outcome = train(&corpus, &[], &rules, &small_settings(), &mut |_| {}).unwrap_or_else(|e| panic!("{e}"));
        let model = std::sync::Arc::new(outcome.model);
        let fast = validate_examples(&model, &rules, corpus.examples.iter());
        let classifier = crate::CombinedClassifier::new(rules.clone(), std::sync::Arc::clone(&model));
        let slow = crate::evaluate(&classifier, corpus.examples.iter(), &mut |_| {});
        assert_eq!(fast.combined.confusion, slow.summary.confusion);
        let model_only = crate::ModelOnlyClassifier { model: std::sync::Arc::clone(&model), policy: rules.scoring() };
        let slow = crate::evaluate(&model_only, corpus.examples.iter(), &mut |_| {});
        assert_eq!(fast.model_only.confusion, slow.summary.confusion);
        let slow = crate::evaluate(&rules, corpus.examples.iter(), &mut |_| {});
        assert_eq!(fast.rules_only.confusion, slow.summary.confusion);
    }

    #[test]
    fn the_validation_split_does_not_shape_the_model() {
        // Relabel every validation example: the model (weights, blend and
        // calibration) must not change, as only the training side's folds choose them.
        let corpus = synthetic_corpus();
        let mut relabelled = corpus.clone();
        for example in &mut relabelled.examples {
            if example.split() == crate::corpora::Split::Validation {
                example.class = if example.class == Verdict::Spam { Verdict::Inquiry } else { Verdict::Spam };
            }
        }
        let settings = small_settings();
        let a = train(&corpus, &[], &no_rules(), &settings, &mut |_| {}).unwrap_or_else(|e| panic!("{e}"));
        let b = train(&relabelled, &[], &no_rules(), &settings, &mut |_| {}).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a.model.to_bytes().ok(), b.model.to_bytes().ok());
        assert_ne!(a.figures.combined.confusion, b.figures.combined.confusion, "yet the reported figures differ");
        assert!(a.out_of_fold.combined.total > 0);
    }

    #[test]
    fn folds_are_fixed_and_cover_the_training_side() {
        let corpus = synthetic_corpus();
        let mut sizes = [0usize; 5];
        for example in corpus.train() {
            let fold = example.fold(5);
            assert_eq!(fold, example.fold(5));
            sizes[fold as usize] += 1;
        }
        assert!(sizes.iter().all(|&n| n > 0), "{sizes:?}");
        let spread =
            (0..10_000).map(|i| crate::corpora::fold_of("x", &format!("text {i}"), 5)).fold([0; 5], |mut n, f| {
                n[f as usize] += 1;
                n
            });
        assert!(spread.iter().all(|&n| (1_800..2_200).contains(&n)), "{spread:?}");
    }

    #[test]
    fn progress_is_reported() {
        let corpus = synthetic_corpus();
        let mut stages = Vec::new();
        train(&corpus, &[], &no_rules(), &small_settings(), &mut |p| stages.push(p.stage))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(stages.contains(&TrainStage::Fitting) && stages.contains(&TrainStage::Calibrating));
    }
}
