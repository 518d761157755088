//! Training: linfa `MultinomialNb` statistics from sparse sums (or `FitWith`
//! on dense mini-batches as a cross-check), then the sparse softmax
//! regression ([`crate::linear`], a linfa `Fit` over the sparse rows), then
//! the Naive Bayes blend and the calibration against the rules, both chosen
//! on the validation split. Optionally a linfa multinomial logistic
//! regression on dense columns is fitted on the same split for comparison.
//!
//! Memory: the regression keeps every training message's distinct buckets
//! (8 bytes each) plus two f64 tables of `2^dimension_bits × 4`; with the
//! parsed corpora the whole run peaks at 332 MB on the shared corpora;
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

use leadsift_core::{Evidence, Message, ScoringPolicy, SenderStanding, Verdict};
use linfa::DatasetBase;
use linfa::ParamGuard;
use linfa::traits::{Fit, FitWith, Predict};
use linfa_bayes::{MultinomialNb, MultinomialNbParams};
use ndarray::{Array1, Array2, Axis, Slice};
use serde::{Deserialize, Serialize};

use crate::ModelError;
use crate::combined::EvidenceSource;
use crate::corpora::{Corpus, LabelledMessage};
use crate::eval::{EvalSummary, Evaluator, ValidationFigures};
use crate::features::{FeatureSettings, Featurizer, SparseFeatures};
use crate::linear::{LinearSettings, SparseRows};
use crate::model::{
    Calibration, Model, ModelMetadata, ModelScores, NB_ALGORITHM, NbCounts, component_name, evidence_from_scores,
};

/// The false-positive budget of the calibration: the bar (0.15 %).
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
    /// The calibration may let the combined classifier reach this validation
    /// ham→spam false-positive rate, or the rules' own rate if that is
    /// higher. `0.0` means "never more false positives than the rules alone".
    pub max_ham_spam_fp_rate: f64,
    /// The logistic regression that scores (see [`crate::linear`]); `None`
    /// leaves Naive Bayes scoring, as models before it did.
    pub linear: Option<LinearSettings>,
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
    pub figures: ValidationFigures,
    /// Naive Bayes and any compared algorithm, uncalibrated argmax.
    pub algorithms: Vec<AlgorithmFigures>,
}

/// Trains on the corpus's train split plus `feedback` (all of it, each
/// example [`FEEDBACK_WEIGHT`] times), calibrates against `rules` on the
/// validation split and reports validation figures. Deterministic: the same
/// corpus, feedback and settings give a byte-identical `model.json.gz`.
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

    let rows: Vec<TrainRow<'_>> = train_set
        .iter()
        .map(|e| TrainRow {
            message: &e.message,
            component: component_name(e.class, &e.corpus),
            class: e.class,
            times: 1,
        })
        .collect();
    let started = Instant::now();
    let counts = fit_naive_bayes(&featurizer, settings, &rows, progress)?;
    let fit_seconds = started.elapsed().as_secs_f64();
    let mut model = Model::from_counts(&settings.name, settings.features, counts, Calibration::default())?;
    let mut linear_seconds = 0.0;
    if let Some(linear_settings) = &settings.linear {
        let started = Instant::now();
        let total = train_set.len() as u64;
        let mut records =
            SparseRows { rows: Vec::with_capacity(train_set.len()), dimension: settings.features.dimension() };
        for (done, example) in train_set.iter().enumerate() {
            let mut features = featurizer.features(&example.message);
            features.counts.iter_mut().for_each(|c| *c = 1);
            records.rows.push(features);
            if done.is_multiple_of(1024) {
                progress(TrainProgress { stage: TrainStage::Fitting, done: done as u64, total });
            }
        }
        let targets: Vec<Verdict> = train_set.iter().map(|e| e.class).collect();
        let mut sizes: BTreeMap<(Verdict, &str), usize> = BTreeMap::new();
        for example in &train_set {
            *sizes.entry((example.class, example.corpus.as_str())).or_default() += 1;
        }
        let mean = train_set.len() as f64 / sizes.len().max(1) as f64;
        let weights: Array1<f32> = train_set
            .iter()
            .map(|e| (mean / sizes[&(e.class, e.corpus.as_str())] as f64).powf(linear_settings.source_balance) as f32)
            .collect();
        let dataset = DatasetBase::new(records, targets).with_weights(weights);
        model.set_linear(linear_settings.fit(&dataset)?)?;
        progress(TrainProgress { stage: TrainStage::Fitting, done: total, total });
        linear_seconds = started.elapsed().as_secs_f64();
    }
    // Feedback joins the corpus model exactly as an incremental update would.
    if !feedback.is_empty() {
        model = model.updated(feedback, FEEDBACK_WEIGHT);
    }

    // Score the validation split once: rules evidence and model log-odds
    // (the regression's and Naive Bayes' apart, to choose their blend).
    let total = validation.len() as u64;
    let mut scored = Vec::with_capacity(validation.len());
    let mut nb_scores = Vec::with_capacity(validation.len());
    for (done, example) in validation.iter().enumerate() {
        scored.push(Scored {
            corpus: &example.corpus,
            label: example.class,
            rules: rules.evidence(&example.message),
            model: model.scores(&example.message),
        });
        nb_scores.push(model.nb_scores(&example.message));
        if done.is_multiple_of(256) {
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
    let policy = rules.scoring();
    let (mut calibration, mut best_key) = calibrate(&scored, &policy, settings.max_ham_spam_fp_rate, progress);
    if let Some(mut linear) = model.linear().cloned() {
        let linear_scores: Vec<ModelScores> = scored.iter().map(|s| s.model).collect();
        let mut best_blend = 0.0;
        for &weight in &NB_BLENDS[1..] {
            for (s, (lr, nb)) in scored.iter_mut().zip(linear_scores.iter().zip(&nb_scores)) {
                s.model = crate::model::blend(*lr, nb, weight);
            }
            let (candidate, key) = calibrate(&scored, &policy, settings.max_ham_spam_fp_rate, progress);
            if key > best_key {
                (calibration, best_key, best_blend) = (candidate, key, weight);
            }
        }
        for (s, (lr, nb)) in scored.iter_mut().zip(linear_scores.iter().zip(&nb_scores)) {
            s.model = if best_blend > 0.0 { crate::model::blend(*lr, nb, best_blend) } else { *lr };
        }
        linear.nb_blend = best_blend;
        model.set_linear(linear)?;
    }
    model.set_calibration(calibration);
    let figures = validation_figures(&scored, &policy, &calibration, model.name());

    let mut nb_argmax = Evaluator::new();
    for (example, nb) in validation.iter().zip(&nb_scores) {
        nb_argmax.add_verdict(&example.corpus, example.class, nb.predicted());
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
        let nb_blend = model.linear().map_or(0.0, |l| l.nb_blend);
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
        // Fit times are not saved (see `AlgorithmFigures::fit_seconds`): zero here too, so a loaded model's
        // metadata equals the trained one's.
        alternatives: algorithms
            .iter()
            .filter(|a| a.algorithm != model.algorithm())
            .map(|a| AlgorithmFigures { fit_seconds: 0.0, ..a.clone() })
            .collect(),
        notes: "train_examples counts feedback examples FEEDBACK_WEIGHT times; validation is the fixed 20% hash \
                split of the corpora (see crates/leadsift-model/README.md)"
            .into(),
    });
    Ok(TrainOutcome { model, figures, algorithms })
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

/// One validation example, scored once.
#[derive(Debug)]
pub(crate) struct Scored<'a> {
    pub corpus: &'a str,
    pub label: Verdict,
    pub rules: Evidence,
    pub model: ModelScores,
}

fn verdict_of(
    policy: &ScoringPolicy,
    rules: Option<&Evidence>,
    model: Option<(&ModelScores, &Calibration)>,
) -> Verdict {
    let mut evidence = rules.cloned().unwrap_or_default();
    if let Some((scores, calibration)) = model {
        evidence.merge(evidence_from_scores("m", scores, calibration));
    }
    policy.decide(evidence, &SenderStanding::default()).verdict
}

pub(crate) fn validation_figures(
    scored: &[Scored<'_>],
    policy: &ScoringPolicy,
    calibration: &Calibration,
    _name: &str,
) -> ValidationFigures {
    let (mut rules_only, mut model_only, mut combined) = (Evaluator::new(), Evaluator::new(), Evaluator::new());
    for s in scored {
        rules_only.add_verdict(s.corpus, s.label, verdict_of(policy, Some(&s.rules), None));
        model_only.add_verdict(s.corpus, s.label, verdict_of(policy, None, Some((&s.model, calibration))));
        combined.add_verdict(s.corpus, s.label, verdict_of(policy, Some(&s.rules), Some((&s.model, calibration))));
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
/// positives if not, macro F1, −inquiries junked).
pub(crate) type CalibrationKey = (bool, std::cmp::Reverse<u64>, f64, std::cmp::Reverse<u64>);

/// The weight grid `calibrate` searches.
pub const CALIBRATION_WEIGHTS: [f64; 12] = [0.05, 0.1, 0.15, 0.2, 0.3, 0.45, 0.6, 0.8, 1.0, 1.5, 2.0, 3.0];
/// The length exponents `calibrate` searches (0: raw log-odds; 0.5: scaled by √(100/length)).
pub const CALIBRATION_LENGTH_EXPONENTS: [f64; 3] = [0.0, 0.25, 0.5];
/// The log-odds biases `calibrate` searches.
/// (Small ones for the logistic regression's calibrated-ish log-odds, large
/// ones for Naive Bayes' overconfident ones.)
pub const CALIBRATION_BIASES: [f64; 17] =
    [-2.0, -1.0, 0.0, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 80.0];

/// Picks the calibration on the validation split: among the grid points
/// whose combined ham→spam false positives stay within the budget (the
/// rules' own count, or `max_fp_rate` of the ham if that allows more), the
/// one with the best macro F1, ties going to fewer inquiries junked. If no
/// grid point is within the budget, the one with the fewest.
pub(crate) fn calibrate(
    scored: &[Scored<'_>],
    policy: &ScoringPolicy,
    max_fp_rate: f64,
    progress: &mut dyn FnMut(TrainProgress),
) -> (Calibration, CalibrationKey) {
    let mut rules_only = Evaluator::new();
    for s in scored {
        rules_only.add_verdict(s.corpus, s.label, verdict_of(policy, Some(&s.rules), None));
    }
    let rules_summary = rules_only.summary();
    let allowed_fp = rules_summary.ham_as_spam.max((max_fp_rate * rules_summary.ham_total as f64).floor() as u64);
    let total = (CALIBRATION_WEIGHTS.len() * CALIBRATION_LENGTH_EXPONENTS.len() * CALIBRATION_BIASES.len()) as u64;
    type Key = CalibrationKey;
    let mut best: Option<(Calibration, Key)> = None;
    let mut done = 0;
    for &length_exponent in &CALIBRATION_LENGTH_EXPONENTS {
        for &bias in &CALIBRATION_BIASES {
            for &weight in &CALIBRATION_WEIGHTS {
                let calibration = Calibration { weight, bias, length_exponent, ..Calibration::default() };
                let mut combined = Evaluator::new();
                for s in scored {
                    combined.add_verdict(
                        s.corpus,
                        s.label,
                        verdict_of(policy, Some(&s.rules), Some((&s.model, &calibration))),
                    );
                }
                let summary = combined.summary();
                let within = summary.ham_as_spam <= allowed_fp;
                if std::env::var_os("LEADSIFT_CALIBRATION_DEBUG").is_some() {
                    eprintln!(
                        "calibration w={weight} b={bias} e={length_exponent}: fp {} macro F1 {:.4} spam F1 {:.4} inquiry→junk {}",
                        summary.ham_as_spam,
                        summary.macro_f1,
                        summary.spam_f1(),
                        summary.inquiry_as_junk
                    );
                }
                let key: Key = (
                    within,
                    std::cmp::Reverse(if within { 0 } else { summary.ham_as_spam }),
                    summary.macro_f1,
                    std::cmp::Reverse(summary.inquiry_as_junk),
                );
                if best.as_ref().is_none_or(|(_, best_key)| key > *best_key) {
                    best = Some((calibration, key));
                }
                done += 1;
                progress(TrainProgress { stage: TrainStage::Calibrating, done, total });
            }
        }
    }
    best.unwrap_or_else(|| {
        (Calibration::default(), (false, std::cmp::Reverse(u64::MAX), 0.0, std::cmp::Reverse(u64::MAX)))
    })
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
    let scored: Vec<Scored<'_>> = examples
        .into_iter()
        .map(|e| Scored {
            corpus: &e.corpus,
            label: e.class,
            rules: rules.evidence(&e.message),
            model: model.scores(&e.message),
        })
        .collect();
    validation_figures(&scored, &rules.scoring(), model.calibration(), model.name())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::features::tests_support::message;
    use leadsift_core::Channel;

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
            let sparse = model.scores_sparse(features);
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
    fn progress_is_reported() {
        let corpus = synthetic_corpus();
        let mut stages = Vec::new();
        train(&corpus, &[], &no_rules(), &small_settings(), &mut |p| stages.push(p.stage))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(stages.contains(&TrainStage::Fitting) && stages.contains(&TrainStage::Calibrating));
    }
}
