//! The trained model: the sparse softmax regressions that score, one per
//! [`ChannelGroup`] ([`crate::linear::LinearModel`]), Multinomial Naive Bayes sufficient
//! statistics beside it (per component message counts and hashed feature
//! counts, exactly what linfa's `MultinomialNb` accumulates in `fit_with`)
//! blended in with a small weight, the feature settings, and the calibration
//! that turns the log-odds into rule-compatible scores.
//!
//! Scoring never builds linfa's dense `1 × dim` row: the message's distinct
//! hashed buckets are collected once, and the regression's f32 row and the
//! Naive Bayes i16 row of each (centred `ln p(feature | component)`) are
//! summed in one loop, so the two tables' cache misses overlap.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::OnceLock;

use flate2::Compression;
use flate2::read::GzDecoder;
use leadsift_core::{Channel, Evidence, Message, Reason, ReasonOrigin, Verdict};
use serde::{Deserialize, Serialize};

use crate::ModelError;
use crate::features::{FeatureSettings, Featurizer, SparseFeatures};
use crate::linear::LinearModel;

/// Version of the `model.json.gz` layout this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;
/// File names inside a model directory.
pub const MODEL_FILE: &str = "model.json.gz";
pub const METADATA_FILE: &str = "metadata.json";
/// A class the model has fewer examples of than this never gets model evidence
/// (non_target until managers label some).
pub const MIN_CLASS_EXAMPLES: u64 = 10;

/// The junk classes the model scores against `inquiry`, in table order.
pub const SCORED_CLASSES: [Verdict; 4] =
    [Verdict::Spam, Verdict::BankStatement, Verdict::Newsletter, Verdict::NonTarget];

/// How the model's log-odds become rule points: for each scored class,
/// `clamp(weight * (log_odds / (max(n_features, 1) / 100)^length_exponent - bias), -negative_cap, cap[class])`,
/// i.e. the log-odds are first scaled to those of a 100-feature message
/// (Naive Bayes log-odds grow with length), then shifted by `bias`.
/// E-mail uses the top-level `weight`, `bias` and `length_exponent`; short
/// messages (messenger, calls, web forms) use [`Calibration::short_messages`]
/// when present ([`ChannelGroup`]): each kind of traffic reaches the
/// false-positive budget at its own model confidence.
/// Chosen on out-of-fold predictions of the training side (see `train::calibrate`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Calibration {
    pub weight: f64,
    /// Log-odds the model must exceed before it argues for a junk class
    /// (Naive Bayes is overconfident; this is its shift to calibrated odds).
    pub bias: f64,
    pub length_exponent: f64,
    /// The bias of the newsletter log-odds, when not `bias`: the spam bias is
    /// set by the false-positive budget, which says nothing about newsletters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub newsletter_bias: Option<f64>,
    /// Largest score the model may add per class, in [`SCORED_CLASSES`] order.
    pub cap: [f64; 4],
    /// Largest score the model may take away from a class (a confident
    /// "this is a real message" pulls back a rule false positive). It never
    /// takes points from a class that a rule strong enough on its own
    /// (score ≥ the policy threshold) argued for: see [`model_points`].
    pub negative_cap: f64,
    /// Weight, bias and length exponent for messages on other channels than
    /// e-mail; `None` (models before it) uses the e-mail ones everywhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub short_messages: Option<GroupCalibration>,
}

impl Default for Calibration {
    fn default() -> Self {
        Self {
            weight: 0.1,
            bias: 0.0,
            length_exponent: 0.0,
            newsletter_bias: None,
            cap: [10.0, 3.0, 8.0, 3.0],
            negative_cap: 3.0,
            short_messages: None,
        }
    }
}

/// The part of a [`Calibration`] chosen per [`ChannelGroup`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupCalibration {
    pub weight: f64,
    pub bias: f64,
    pub length_exponent: f64,
    /// See [`Calibration::newsletter_bias`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub newsletter_bias: Option<f64>,
}

impl GroupCalibration {
    /// The bias of scored class `k`.
    #[inline]
    pub fn bias_of(&self, k: usize) -> f64 {
        match self.newsletter_bias {
            Some(bias) if SCORED_CLASSES[k] == Verdict::Newsletter => bias,
            _ => self.bias,
        }
    }
}

/// The kinds of traffic that have their own regression and calibration:
/// e-mail, and the short texts of messengers, calls and web forms, written on
/// the spot. They differ in length, vocabulary and how sure the model can be,
/// so each reaches the false-positive budget at its own model confidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelGroup {
    Email,
    ShortMessages,
}

impl ChannelGroup {
    pub const ALL: [ChannelGroup; 2] = [ChannelGroup::Email, ChannelGroup::ShortMessages];

    pub fn of(message: &Message) -> Self {
        if message.channel == Channel::Email { ChannelGroup::Email } else { ChannelGroup::ShortMessages }
    }

    /// The group whose regression and calibration this one uses when it has none of its own.
    pub fn fallback(self) -> Option<ChannelGroup> {
        match self {
            ChannelGroup::Email => None,
            ChannelGroup::ShortMessages => Some(ChannelGroup::Email),
        }
    }
}

impl Calibration {
    fn own(&self, group: ChannelGroup) -> Option<GroupCalibration> {
        match group {
            ChannelGroup::Email => Some(GroupCalibration {
                weight: self.weight,
                bias: self.bias,
                length_exponent: self.length_exponent,
                newsletter_bias: self.newsletter_bias,
            }),
            ChannelGroup::ShortMessages => self.short_messages,
        }
    }

    /// The weight, bias and length exponent used for `group`.
    pub fn group(&self, group: ChannelGroup) -> GroupCalibration {
        let mut current = group;
        loop {
            if let Some(own) = self.own(current) {
                return own;
            }
            match current.fallback() {
                Some(next) => current = next,
                None => unreachable!("e-mail always has its own calibration"),
            }
        }
    }

    /// This calibration with `group`'s weight, bias and length exponent set
    /// to `value`, every other group keeping what it used before.
    pub fn with_group(mut self, group: ChannelGroup, value: GroupCalibration) -> Self {
        self.short_messages = Some(self.group(ChannelGroup::ShortMessages));
        match group {
            ChannelGroup::Email => {
                (self.weight, self.bias, self.length_exponent, self.newsletter_bias) =
                    (value.weight, value.bias, value.length_exponent, value.newsletter_bias);
            }
            ChannelGroup::ShortMessages => self.short_messages = Some(value),
        }
        self
    }
}

/// Rule points of inquiry evidence from which the model alone may not junk a
/// message: a price question or an order (2–2.5 points), or a callback
/// request with a question. Below it the rules have only seen a polite
/// opener, which spam uses as well.
pub const REQUEST_POINTS: f64 = 2.0;

/// What the rules said about a message, as far as the model's points depend
/// on it (see [`model_points`]): the model reads text, the rules read the
/// message, and where the rules know more the model's say is limited.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RulesView {
    /// Classes a rule strong enough to decide on its own argued for
    /// ([`protected_classes`]): the model may add to them, never take from them.
    pub protected: [bool; 4],
    /// The rules' scores per class, in [`Verdict::ALL`] order.
    pub scores: [f64; 5],
    /// The policy threshold the scores are decided with.
    pub threshold: f64,
}

impl RulesView {
    /// No rules at all: the model's points are its calibrated opinion alone.
    pub const NONE: RulesView = RulesView { protected: [false; 4], scores: [0.0; 5], threshold: f64::INFINITY };

    pub fn of(rules: &Evidence, threshold: f64) -> Self {
        Self { protected: protected_classes(rules, threshold), scores: rules.scores(), threshold }
    }

    /// Most points the model may add to each scored class, and why, for a
    /// model scoring the `active` classes. Two limits, both for what the
    /// model cannot know:
    ///
    /// - [`Ceiling::UnlearnedClass`]: the rules alone put the message in a
    ///   class the model has not learned (a bank statement, a CV, a wrong
    ///   number: no corpus labels them). To the model such a message is
    ///   merely "not a chat message", which reads as spam; that is no
    ///   evidence against the rules' class, so the model may not lift
    ///   another class past it.
    /// - [`Ceiling::Request`]: the rules see a request ([`REQUEST_POINTS`] of
    ///   inquiry evidence) and no rule argued for the class: the model alone
    ///   may bring the class up to just under the threshold, an unsure lead
    ///   with the model's doubt in its reasons, never over it. A real inquiry
    ///   lost to the spam filter is the costly mistake, and the corpora hold
    ///   no inbound customer e-mail for the model to know one by.
    pub fn ceilings(&self, active: [bool; 4]) -> [Option<(f64, Ceiling)>; 4] {
        let inquiry = self.scores[Verdict::Inquiry.index()];
        let score = |k: usize| self.scores[SCORED_CLASSES[k].index()];
        let unlearned =
            (0..4).filter(|&k| !active[k] && score(k) - inquiry >= self.threshold).map(score).reduce(f64::max);
        std::array::from_fn(|k| {
            if !active[k] {
                return None;
            }
            let mut ceiling: Option<(f64, Ceiling)> = None;
            let mut lower = |points: f64, why: Ceiling| {
                if ceiling.is_none_or(|(c, _)| points < c) {
                    ceiling = Some((points, why));
                }
            };
            if let Some(top) = unlearned {
                lower((top - score(k) - CEILING_GAP).max(0.0), Ceiling::UnlearnedClass);
            }
            if inquiry >= REQUEST_POINTS && score(k) <= 0.0 {
                lower((self.threshold + inquiry - score(k) - CEILING_GAP).max(0.0), Ceiling::Request);
            }
            ceiling
        })
    }
}

/// Per [`SCORED_CLASSES`] entry: whether the model's doubt may take points
/// from the class. Not from newsletters: SpamAssassin's newsletter labels are
/// derived from its list headers (see the label mapping), so "no list headers,
/// so no newsletter" is how the labels were made, not evidence, and it held
/// back shops' promotions and Russian digests the rules recognised. (On the
/// validation split dropping it changes one newsletter and one inquiry.)
const PULLS_BACK: [bool; 4] = [true, true, false, true];

/// How far under a rival's score a [`RulesView::ceilings`] limit stops.
const CEILING_GAP: f64 = 0.01;

/// Why the model's points for a class were limited ([`RulesView::ceilings`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ceiling {
    UnlearnedClass,
    Request,
}

impl Ceiling {
    fn explain(self) -> &'static str {
        match self {
            Ceiling::UnlearnedClass => "held under the rules' verdict: a class the model has not learned",
            Ceiling::Request => "held under the threshold: the rules see a request and no rule sees this class",
        }
    }
}

/// Which scored classes a rule strong enough to decide on its own argued
/// for (a rule's score for the class reached the policy threshold): the
/// model may add to them but never take from them, so its doubt cannot
/// cancel a rule its authors meant to be decisive (a robocall transcript
/// reads to the model like a person talking).
pub fn protected_classes(rules: &Evidence, threshold: f64) -> [bool; 4] {
    let mut protected = [false; 4];
    for reason in rules.reasons() {
        if reason.origin == ReasonOrigin::Rule
            && (reason.decisive || reason.score >= threshold)
            && let Some(k) = reason.class.and_then(|c| SCORED_CLASSES.iter().position(|s| *s == c))
        {
            protected[k] = true;
        }
    }
    protected
}

/// The rule points the model adds per scored class (0 for none): the
/// calibrated log-odds of `group`, no pull-back on the rules' protected
/// classes, no more than the rules' [`RulesView::ceilings`], rounded to
/// 0.001, and nothing below 0.01. The one function behind the model's
/// evidence and the calibration search, so both agree exactly.
pub fn model_points(
    scores: &ModelScores,
    calibration: &Calibration,
    group: ChannelGroup,
    rules: &RulesView,
) -> [f64; 4] {
    let calibrated = calibration.group(group);
    let scaled = scores.length_scaled(calibrated.length_exponent);
    points_of_scaled(&scaled, scores.active, calibration, calibrated, rules)
}

/// [`model_points`] from log-odds already divided by the length factor
/// ([`ModelScores::length_scaled`]), which a calibration search computes once
/// per length exponent instead of once per grid point.
#[inline]
pub(crate) fn points_of_scaled(
    scaled: &[f64; 4],
    active: [bool; 4],
    calibration: &Calibration,
    group: GroupCalibration,
    rules: &RulesView,
) -> [f64; 4] {
    let ceilings = rules.ceilings(active);
    let mut points = [0.0; 4];
    for (k, p) in points.iter_mut().enumerate() {
        if !active[k] {
            continue;
        }
        let mut raw =
            (group.weight * (scaled[k] - group.bias_of(k))).clamp(-calibration.negative_cap, calibration.cap[k]);
        if rules.protected[k] || !PULLS_BACK[k] {
            raw = raw.max(0.0);
        }
        if let Some((ceiling, _)) = ceilings[k] {
            raw = raw.min(ceiling.max(raw.min(0.0)));
        }
        *p = if raw.abs() < 0.01 { 0.0 } else { (raw * 1000.0).round() / 1000.0 };
    }
    points
}

/// Most mixture components a model may have (the scorer keeps one
/// accumulator per component on the stack).
pub const MAX_COMPONENTS: usize = 32;

/// One Naive Bayes label: a class as seen in one source (`spam:telegram_ru`,
/// `inquiry:enron`, `spam:feedback`). A class is the mixture of its
/// components; see the crate docs for why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NbComponent {
    pub name: String,
    pub class: Verdict,
    /// Messages seen, weighted (linfa's `class_count`).
    pub count: u64,
    /// Distinct messages seen (feedback counts once here, [`crate::FEEDBACK_WEIGHT`] times in `count`).
    pub examples: u64,
    /// Summed count of every bucket (linfa's `feature_count`; u32 keeps a
    /// 2^18-bucket model under 30 MB in memory).
    pub features: Vec<u32>,
}

/// Learned Naive Bayes statistics, exactly what linfa's `MultinomialNb`
/// accumulates, one linfa label per component.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NbCounts {
    /// Additive (Laplace/Lidstone) smoothing.
    pub alpha: f64,
    pub dimension: usize,
    /// Sorted by name, so the linfa label of a component is stable.
    pub components: Vec<NbComponent>,
}

/// The component name for examples of `class` from `source`.
pub fn component_name(class: Verdict, source: &str) -> String {
    format!("{class}:{source}")
}

impl NbCounts {
    pub fn new(alpha: f64, dimension: usize) -> Self {
        Self { alpha, dimension, components: Vec::new() }
    }

    /// The index of the named component, adding it (in name order) if new.
    pub fn component(&mut self, name: &str, class: Verdict) -> usize {
        match self.components.binary_search_by(|c| c.name.as_str().cmp(name)) {
            Ok(i) => i,
            Err(i) => {
                let features = vec![0; self.dimension];
                let component = NbComponent { name: name.to_owned(), class, count: 0, examples: 0, features };
                self.components.insert(i, component);
                i
            }
        }
    }

    /// Adds one message's features `times` times to a component.
    pub fn add(&mut self, component: usize, features: &SparseFeatures, times: u64) {
        let target = &mut self.components[component];
        target.count += times;
        target.examples += 1;
        for (bucket, count) in features.iter() {
            let slot = &mut target.features[bucket as usize];
            *slot = slot.saturating_add(u32::try_from(u64::from(count) * times).unwrap_or(u32::MAX));
        }
    }

    /// Messages seen of a class, weighted, over its components.
    pub fn class_count(&self, class: Verdict) -> u64 {
        self.components.iter().filter(|c| c.class == class).map(|c| c.count).sum()
    }

    /// Distinct messages seen of a class, over its components.
    pub fn class_examples(&self, class: Verdict) -> u64 {
        self.components.iter().filter(|c| c.class == class).map(|c| c.examples).sum()
    }

    /// `ln p(feature | component)` exactly as linfa computes it:
    /// `ln(count + alpha) − ln(Σ(count + alpha))`.
    pub fn feature_log_prob(&self, component: usize) -> Vec<f64> {
        let row = &self.components[component].features;
        let total: f64 = row.iter().map(|&c| c as f64 + self.alpha).sum();
        let ln_total = total.ln();
        row.iter().map(|&c| (c as f64 + self.alpha).ln() - ln_total).collect()
    }

    /// `ln prior(component)` from the message counts, as linfa does.
    pub fn log_prior(&self, component: usize) -> f64 {
        let total: u64 = self.components.iter().map(|c| c.count).sum();
        (self.components[component].count as f64 / total.max(1) as f64).ln()
    }
}

/// What `model.json.gz` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelFile {
    format: u32,
    name: String,
    algorithm: String,
    features: FeatureSettings,
    calibration: Calibration,
    alpha: f64,
    components: Vec<StoredComponent>,
    /// The logistic regression that scores, when the model has one (Naive
    /// Bayes scores otherwise): e-mail's, and every channel's without `linear_short`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    linear: Option<StoredLinear>,
    /// The regression of short messages (messenger, calls, web forms), when
    /// they have their own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    linear_short: Option<StoredLinear>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredLinear {
    bias: [f64; 4],
    active: [bool; 4],
    #[serde(default)]
    nb_blend: f64,
    /// Per [`SCORED_CLASSES`] entry, the nonzero weights as (gap, weight in
    /// [`crate::linear::WEIGHT_QUANTUM`] units) pairs, flattened.
    columns: Vec<Vec<i64>>,
}

impl StoredLinear {
    fn of(linear: &LinearModel) -> Self {
        StoredLinear {
            bias: linear.bias,
            active: linear.active,
            nb_blend: linear.nb_blend,
            columns: (0..4).map(|k| linear.encode_column(k)).collect(),
        }
    }

    fn model(&self, dimension: usize) -> Result<LinearModel, ModelError> {
        if self.columns.len() != 4 {
            return Err(ModelError::Invalid("linear weights need one column per scored class".into()));
        }
        let mut linear = LinearModel::zeros(dimension, self.active);
        linear.bias = self.bias;
        linear.nb_blend = self.nb_blend;
        for (k, column) in self.columns.iter().enumerate() {
            linear.decode_column(k, column)?;
        }
        Ok(linear)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredComponent {
    name: String,
    class: Verdict,
    count: u64,
    examples: u64,
    /// The nonzero buckets as (gap since the previous nonzero bucket, count) pairs, flattened.
    features: Vec<u64>,
}

/// Metadata written beside the model (`metadata.json`), for people and `leadsift eval`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelMetadata {
    pub name: String,
    pub algorithm: String,
    pub features: FeatureSettings,
    pub dimension: usize,
    pub alpha: f64,
    pub seed: u64,
    /// RFC 3339; `SOURCE_DATE_EPOCH` overrides the clock.
    pub trained_at: String,
    pub corpora: Vec<crate::corpora::CorpusStats>,
    pub train_examples: std::collections::BTreeMap<String, u64>,
    pub feedback_examples: u64,
    pub calibration: Calibration,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<crate::eval::ValidationFigures>,
    /// Out-of-fold figures on the training side, under the chosen calibration:
    /// what the calibration and the blend were chosen on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub out_of_fold: Option<crate::eval::ValidationFigures>,
    /// Other algorithms tried on the same split, for the record.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alternatives: Vec<crate::train::AlgorithmFigures>,
    pub notes: String,
}

/// A loaded model, ready to score.
#[derive(Debug, Clone)]
pub struct Model {
    name: String,
    featurizer: Featurizer,
    counts: NbCounts,
    calibration: Calibration,
    metadata: Option<ModelMetadata>,
    /// The Naive Bayes scoring table. Built at load when scoring uses it (no
    /// regression, or a Naive Bayes blend), on first use otherwise (a
    /// regression-only model needs it for feedback and comparisons only).
    table: OnceLock<ScoringTable>,
    /// When present, the scorer (see [`crate::linear`]); the Naive Bayes
    /// counts are kept beside it: blended in with `nb_blend`, updated by feedback.
    /// Per [`ChannelGroup`]; a group without one uses its fallback's (e-mail's
    /// scores every group when it is the only one).
    linear: [Option<LinearModel>; 2],
}

#[derive(Debug, Clone, PartialEq)]
enum Rows {
    Narrow(Vec<[i16; 16]>),
    Wide(Vec<[i16; MAX_COMPONENTS]>),
}

/// Per-component sums of i16 rows in i32 lanes, spilled to i64 before they can overflow.
#[derive(Debug)]
struct Accumulator<const W: usize> {
    lanes: [i32; W],
    wide: [i64; W],
    since_flush: u32,
    total: u64,
}

impl<const W: usize> Accumulator<W> {
    fn new() -> Self {
        Self { lanes: [0; W], wide: [0; W], since_flush: 0, total: 0 }
    }

    #[inline]
    fn add(&mut self, row: &[i16; W], count: u32) {
        let count = count.min(1 << 14);
        for (acc, &w) in self.lanes.iter_mut().zip(row) {
            *acc += i32::from(w) * count as i32;
        }
        self.total += u64::from(count);
        self.since_flush += count;
        // An i32 lane holds 2^31 / 2^15 = 65,536 unit counts; spill well before.
        if self.since_flush >= 1 << 15 {
            self.spill();
        }
    }

    fn spill(&mut self) {
        for (w, l) in self.wide.iter_mut().zip(self.lanes.iter_mut()) {
            *w += i64::from(*l);
            *l = 0;
        }
        self.since_flush = 0;
    }

    fn finish(mut self) -> (Vec<i64>, u64) {
        self.spill();
        (self.wide.to_vec(), self.total)
    }
}

/// Streams the message's features, deduplicated when binary, into `found`,
/// then sums their rows in a tight second loop: gathering first lets the CPU
/// keep many table loads in flight instead of stalling on each one between
/// hashing steps (measured: the row loads were 84 % of scoring time).
fn stream<const W: usize>(
    rows: &[[i16; W]],
    featurizer: &Featurizer,
    message: &Message,
    scratch: &mut Scratch,
) -> (Vec<i64>, u64) {
    let Scratch { seen, touched, found } = scratch;
    let binary = featurizer.settings().binary;
    featurizer.for_each(message, &mut |bucket, count| {
        if !binary {
            found.push((bucket, count));
        } else if first_sight(seen, touched, bucket) {
            found.push((bucket, 1));
        }
    });
    forget_seen(seen, touched);
    let mut acc = Accumulator::<W>::new();
    for (bucket, count) in found.drain(..) {
        acc.add(&rows[bucket as usize], count);
    }
    acc.finish()
}

/// The message's distinct buckets into `scratch.found` (count 1), for the linear model.
fn distinct_buckets(featurizer: &Featurizer, message: &Message, scratch: &mut Scratch) {
    let Scratch { seen, touched, found } = scratch;
    featurizer.for_each(message, &mut |bucket, _| {
        if first_sight(seen, touched, bucket) {
            found.push((bucket, 1));
        }
    });
    forget_seen(seen, touched);
}

/// Marks `bucket` in the bitset `seen` (noting touched words in `touched`);
/// true the first time a bucket is seen for this message.
fn first_sight(seen: &mut [u64], touched: &mut Vec<u32>, bucket: u32) -> bool {
    let (word, bit) = (bucket as usize / 64, 1u64 << (bucket % 64));
    if seen[word] & bit != 0 {
        return false;
    }
    if seen[word] == 0 {
        touched.push(bucket / 64);
    }
    seen[word] |= bit;
    true
}

/// Clears the words of `seen` that this message touched, for the next message.
fn forget_seen(seen: &mut [u64], touched: &mut Vec<u32>) {
    for word in touched.drain(..) {
        seen[word as usize] = 0;
    }
}

/// Per-thread buffers of [`stream`], reused across messages.
#[derive(Debug, Default)]
struct Scratch {
    seen: Vec<u64>,
    touched: Vec<u32>,
    found: Vec<(u32, u32)>,
}

/// The regression's per-class weight sums (in bucket order, as
/// [`LinearModel::log_odds_of_buckets`] sums them) and the Naive Bayes
/// component sums of the distinct buckets in `found`, in one pass.
fn sum_both<const W: usize>(
    weights: &[[f32; 4]],
    rows: &[[i16; W]],
    found: &[(u32, u32)],
) -> (([f32; 4], u64), Vec<i64>) {
    let mut sum = [0f32; 4];
    let mut wide = [0i64; W];
    // i32 lanes of unit counts cannot overflow within 2^16 buckets: spill per chunk.
    for chunk in found.chunks(1 << 15) {
        let mut lanes = [0i32; W];
        for &(bucket, _) in chunk {
            let (weight, row) = (&weights[bucket as usize], &rows[bucket as usize]);
            for (s, w) in sum.iter_mut().zip(weight) {
                *s += *w;
            }
            for (lane, &w) in lanes.iter_mut().zip(row) {
                *lane += i32::from(w);
            }
        }
        for (w, lane) in wide.iter_mut().zip(lanes) {
            *w += i64::from(lane);
        }
    }
    ((sum, found.len() as u64), wide.to_vec())
}

fn sum_sparse<const W: usize>(rows: &[[i16; W]], features: &SparseFeatures) -> (Vec<i64>, u64) {
    let mut acc = Accumulator::<W>::new();
    for (bucket, count) in features.iter() {
        acc.add(&rows[bucket as usize], count);
    }
    acc.finish()
}

#[derive(Debug, Clone, PartialEq)]
struct ScoringTable {
    components: usize,
    /// Per bucket, per component: `ln p(f|component)` minus its mean over the
    /// components (a per-bucket constant cancels in every comparison),
    /// quantised to i16 in rows of 16 or 32 so one lookup touches one cache line.
    rows: Rows,
    /// `weight = quantised / scale`.
    scale: f64,
    log_prior: Vec<f64>,
    class: Vec<Verdict>,
    /// Components that take part in scoring (their class is active).
    usable: Vec<bool>,
    /// Which of [`SCORED_CLASSES`] have enough examples.
    active: [bool; 4],
}

/// Which of [`SCORED_CLASSES`] have [`MIN_CLASS_EXAMPLES`] distinct examples
/// (and inquiry too): the classes the model may argue for.
pub fn active_classes(counts: &NbCounts) -> [bool; 4] {
    let class_active = |class: Verdict| counts.class_examples(class) >= MIN_CLASS_EXAMPLES;
    let inquiry_active = class_active(Verdict::Inquiry);
    std::array::from_fn(|k| inquiry_active && class_active(SCORED_CLASSES[k]))
}

impl ScoringTable {
    fn build(counts: &NbCounts) -> Self {
        let k = counts.components.len().min(MAX_COMPONENTS);
        let dimension = counts.dimension;
        let class_active = |class: Verdict| counts.class_examples(class) >= MIN_CLASS_EXAMPLES;
        let inquiry_active = class_active(Verdict::Inquiry);
        let active = active_classes(counts);
        let usable: Vec<bool> = counts.components[..k]
            .iter()
            .map(|c| c.count > 0 && (c.class == Verdict::Inquiry || class_active(c.class)) && inquiry_active)
            .collect();
        let log_probs: Vec<Vec<f64>> = (0..k).map(|j| counts.feature_log_prob(j)).collect();
        let mut centred = vec![0f64; dimension * k];
        let mut max_abs = 0f64;
        for f in 0..dimension {
            let mean = log_probs.iter().map(|lp| lp[f]).sum::<f64>() / k.max(1) as f64;
            for j in 0..k {
                let value = log_probs[j][f] - mean;
                centred[f * k + j] = value;
                max_abs = max_abs.max(value.abs());
            }
        }
        let scale = f64::from(i16::MAX) / max_abs.max(1e-9);
        let quantise = |value: f64| (value * scale).round() as i16;
        let rows = if k <= 16 {
            Rows::Narrow(
                (0..dimension)
                    .map(|f| std::array::from_fn(|j| if j < k { quantise(centred[f * k + j]) } else { 0 }))
                    .collect(),
            )
        } else {
            Rows::Wide(
                (0..dimension)
                    .map(|f| std::array::from_fn(|j| if j < k { quantise(centred[f * k + j]) } else { 0 }))
                    .collect(),
            )
        };
        Self {
            components: k,
            rows,
            scale,
            log_prior: (0..k).map(|j| counts.log_prior(j)).collect(),
            class: counts.components[..k].iter().map(|c| c.class).collect(),
            usable,
            active,
        }
    }

    /// Per-component `ln prior + Σ count · weight` from the quantised sums.
    fn joint_log_likelihood(&self, sums: &[i64]) -> Vec<f64> {
        (0..self.components).map(|j| self.log_prior[j] + sums[j] as f64 / self.scale).collect()
    }

    /// Per-class log-odds against inquiry from per-component joint log-likelihoods:
    /// `logsumexp(class components) − logsumexp(inquiry components)`.
    fn log_odds(&self, jll: &[f64]) -> [f64; 4] {
        let class_ll = |class: Verdict| {
            let values = jll.iter().zip(&self.class).zip(&self.usable).filter(|((_, c), u)| **c == class && **u);
            let max = values.clone().map(|((v, _), _)| *v).fold(f64::NEG_INFINITY, f64::max);
            if max == f64::NEG_INFINITY {
                return max;
            }
            max + values.map(|((v, _), _)| (v - max).exp()).sum::<f64>().ln()
        };
        let inquiry = class_ll(Verdict::Inquiry);
        let mut out = [0.0; 4];
        for (k, class) in SCORED_CLASSES.into_iter().enumerate() {
            if self.active[k] {
                out[k] = class_ll(class) - inquiry;
            }
        }
        out
    }
}

/// The model's opinion of one message.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelScores {
    /// Naive Bayes log-odds `ln p(c|x) − ln p(inquiry|x)` for [`SCORED_CLASSES`]
    /// (0 for inactive classes).
    pub log_odds: [f64; 4],
    /// Which of [`SCORED_CLASSES`] the model has enough examples of.
    pub active: [bool; 4],
    /// Number of feature occurrences (the length used by the calibration).
    pub feature_total: u64,
}

impl ModelScores {
    /// Posterior probabilities over [`Verdict::ALL`] (inactive classes 0).
    pub fn probabilities(&self) -> [f64; 5] {
        let mut logits = [f64::NEG_INFINITY; 5];
        logits[Verdict::Inquiry.index()] = 0.0;
        for (k, class) in SCORED_CLASSES.into_iter().enumerate() {
            if self.active[k] {
                logits[class.index()] = self.log_odds[k];
            }
        }
        let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let exp: Vec<f64> = logits.iter().map(|l| (l - max).exp()).collect();
        let sum: f64 = exp.iter().sum();
        let mut out = [0.0; 5];
        for (o, e) in out.iter_mut().zip(exp) {
            *o = e / sum;
        }
        out
    }

    /// The most probable class.
    pub fn predicted(&self) -> Verdict {
        let p = self.probabilities();
        Verdict::ALL.into_iter().max_by(|a, b| p[a.index()].total_cmp(&p[b.index()])).unwrap_or(Verdict::Inquiry)
    }

    /// Rule points per scored class under `calibration`'s e-mail weight and bias.
    pub fn calibrated(&self, calibration: &Calibration) -> [f64; 4] {
        self.calibrated_with(calibration, calibration.group(ChannelGroup::Email))
    }

    /// Rule points per scored class under `calibration`'s caps and `group`'s weight and bias.
    pub fn calibrated_with(&self, calibration: &Calibration, group: GroupCalibration) -> [f64; 4] {
        let scaled = self.length_scaled(group.length_exponent);
        let mut out = [0.0; 4];
        for (k, slot) in out.iter_mut().enumerate() {
            if self.active[k] {
                *slot = (group.weight * (scaled[k] - group.bias_of(k)))
                    .clamp(-calibration.negative_cap, calibration.cap[k]);
            }
        }
        out
    }

    /// The log-odds scaled to a 100-feature message: divided by `(n / 100)^exponent`.
    pub fn length_scaled(&self, exponent: f64) -> [f64; 4] {
        let length = (self.feature_total.max(1) as f64 / 100.0).powf(exponent);
        self.log_odds.map(|l| l / length)
    }
}

impl Model {
    /// A model from learned counts.
    pub fn from_counts(
        name: &str,
        features: FeatureSettings,
        counts: NbCounts,
        calibration: Calibration,
    ) -> Result<Model, ModelError> {
        if counts.dimension != features.dimension()
            || counts.components.iter().any(|c| c.features.len() != counts.dimension)
        {
            return Err(ModelError::Invalid("feature counts do not match the feature dimension".into()));
        }
        if counts.components.len() > MAX_COMPONENTS {
            return Err(ModelError::Invalid(format!("more than {MAX_COMPONENTS} mixture components")));
        }
        if counts.alpha.is_nan() || counts.alpha <= 0.0 {
            return Err(ModelError::Invalid(format!("smoothing alpha must be positive, got {}", counts.alpha)));
        }
        let table = OnceLock::new();
        Ok(Model {
            name: name.to_owned(),
            featurizer: Featurizer::new(features),
            counts,
            calibration,
            metadata: None,
            table,
            linear: [None, None],
        })
    }

    /// Sets the logistic regression that scores every channel group (its dimension must match).
    pub fn set_linear(&mut self, linear: LinearModel) -> Result<(), ModelError> {
        if linear.dimension() != self.counts.dimension {
            return Err(ModelError::Invalid("linear weights do not match the feature dimension".into()));
        }
        self.linear = [Some(linear), None];
        Ok(())
    }

    /// Sets `group`'s own regression (e-mail's first: it is every group's fallback).
    pub fn set_linear_for(&mut self, group: ChannelGroup, linear: LinearModel) -> Result<(), ModelError> {
        if linear.dimension() != self.counts.dimension || (group != ChannelGroup::Email && self.linear[0].is_none()) {
            return Err(ModelError::Invalid("a group's weights need e-mail's and the feature dimension".into()));
        }
        self.linear[group as usize] = Some(linear);
        Ok(())
    }

    /// The regression that scores `group`, if any.
    pub fn linear_for(&self, group: ChannelGroup) -> Option<&LinearModel> {
        let mut current = group;
        loop {
            if let Some(linear) = &self.linear[current as usize] {
                return Some(linear);
            }
            current = current.fallback()?;
        }
    }

    /// Whether every channel group has a regression of its own.
    pub fn has_group_linear(&self) -> bool {
        self.linear.iter().all(Option::is_some)
    }

    fn table(&self) -> &ScoringTable {
        self.table.get_or_init(|| ScoringTable::build(&self.counts))
    }

    /// The e-mail regression (every group's, when it is the only one).
    pub fn linear(&self) -> Option<&LinearModel> {
        self.linear[0].as_ref()
    }

    /// What scores: [`ALGORITHM`] or [`NB_ALGORITHM`].
    pub fn algorithm(&self) -> &'static str {
        if self.linear[0].is_some() { ALGORITHM } else { NB_ALGORITHM }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn featurizer(&self) -> &Featurizer {
        &self.featurizer
    }

    pub fn counts(&self) -> &NbCounts {
        &self.counts
    }

    pub fn calibration(&self) -> &Calibration {
        &self.calibration
    }

    pub fn set_calibration(&mut self, calibration: Calibration) {
        self.calibration = calibration;
    }

    pub fn metadata(&self) -> Option<&ModelMetadata> {
        self.metadata.as_ref()
    }

    pub fn set_metadata(&mut self, metadata: ModelMetadata) {
        self.metadata = Some(metadata);
    }

    /// The model's log-odds of one message: the logistic regression's when
    /// the model has one, else Naive Bayes'.
    pub fn scores(&self, message: &Message) -> ModelScores {
        let Some(linear) = self.linear_for(ChannelGroup::of(message)) else { return self.nb_scores(message) };
        // One tokenisation for both halves of the blend: with binary features the
        // distinct buckets are exactly what Naive Bayes sums too.
        let binary = self.featurizer.settings().binary;
        if linear.nb_blend > 0.0 && !binary {
            let scores = self.linear_scores(linear, message, |_| ());
            return blend(scores, &self.nb_scores(message), linear.nb_blend);
        }
        if linear.nb_blend == 0.0 {
            return self.linear_scores(linear, message, |_| ());
        }
        // Both tables in one pass over the distinct buckets: the two row loads
        // of a bucket are independent, so their cache misses overlap.
        thread_local! {
            static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
        }
        let table = self.table();
        let words = self.counts.dimension.div_ceil(64);
        let (sum, sums) = SCRATCH.with_borrow_mut(|scratch| {
            if scratch.seen.len() != words {
                scratch.seen = vec![0u64; words];
            }
            distinct_buckets(&self.featurizer, message, scratch);
            let out = match &table.rows {
                Rows::Narrow(rows) => sum_both(&linear.weights, rows, &scratch.found),
                Rows::Wide(rows) => sum_both(&linear.weights, rows, &scratch.found),
            };
            scratch.found.clear();
            out
        });
        let n = sum.1;
        let scores =
            ModelScores { log_odds: linear.log_odds_of_sum(sum.0, n), active: linear.active, feature_total: n };
        let jll = table.joint_log_likelihood(&sums);
        let nb = ModelScores { log_odds: table.log_odds(&jll), active: table.active, feature_total: n };
        blend(scores, &nb, linear.nb_blend)
    }

    /// The regression's log-odds alone (no Naive Bayes blend), computed as
    /// [`Self::scores`] computes them; Naive Bayes' when there is no regression.
    pub fn regression_scores(&self, message: &Message) -> ModelScores {
        match self.linear_for(ChannelGroup::of(message)) {
            Some(linear) => self.linear_scores(linear, message, |_| ()),
            None => self.nb_scores(message),
        }
    }

    /// The regression's log-odds (if any) and Naive Bayes' from already
    /// aggregated binary features, apart (training chooses their blend).
    pub fn regression_and_nb_sparse(
        &self,
        features: &SparseFeatures,
        group: ChannelGroup,
    ) -> (Option<ModelScores>, ModelScores) {
        let regression = self.linear_for(group).map(|linear| ModelScores {
            log_odds: linear.log_odds(features),
            active: linear.active,
            feature_total: features.indices.len() as u64,
        });
        let jll = self.component_scores(features);
        let table = self.table();
        let nb = ModelScores { log_odds: table.log_odds(&jll), active: table.active, feature_total: features.total() };
        (regression, nb)
    }

    /// The regression's scores of a message; `also` sees its distinct buckets before they are cleared.
    fn linear_scores(&self, linear: &LinearModel, message: &Message, also: impl FnOnce(&[(u32, u32)])) -> ModelScores {
        thread_local! {
            static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
        }
        let words = self.counts.dimension.div_ceil(64);
        let (log_odds, n) = SCRATCH.with_borrow_mut(|scratch| {
            if scratch.seen.len() != words {
                scratch.seen = vec![0u64; words];
            }
            distinct_buckets(&self.featurizer, message, scratch);
            let out = linear.log_odds_of_buckets(scratch.found.iter().map(|&(b, _)| b));
            also(&scratch.found);
            scratch.found.clear();
            out
        });
        ModelScores { log_odds, active: linear.active, feature_total: n }
    }

    /// Naive Bayes log-odds of one message, summed from the hashed feature stream
    /// (what scores when the model has no logistic regression).
    pub fn nb_scores(&self, message: &Message) -> ModelScores {
        // Binary features: a per-thread bitset drops repeats without collecting
        // and sorting; only the words touched are cleared afterwards.
        thread_local! {
            static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
        }
        let words = self.counts.dimension.div_ceil(64);
        let (sums, total) = SCRATCH.with_borrow_mut(|scratch| {
            if scratch.seen.len() != words {
                scratch.seen = vec![0u64; words];
            }
            match &self.table().rows {
                Rows::Narrow(rows) => stream(rows, &self.featurizer, message, scratch),
                Rows::Wide(rows) => stream(rows, &self.featurizer, message, scratch),
            }
        });
        let table = self.table();
        let jll = table.joint_log_likelihood(&sums);
        ModelScores { log_odds: table.log_odds(&jll), active: table.active, feature_total: total }
    }

    /// Joint log-likelihood of every component (prior included, up to a
    /// per-message constant), from aggregated features: linfa's
    /// `joint_log_likelihood`, whose argmax is linfa's `predict`.
    pub fn component_scores(&self, features: &SparseFeatures) -> Vec<f64> {
        let (sums, _) = match &self.table().rows {
            Rows::Narrow(rows) => sum_sparse(rows, features),
            Rows::Wide(rows) => sum_sparse(rows, features),
        };
        self.table().joint_log_likelihood(&sums)
    }

    /// Log-odds from already aggregated features of a message of `group` (used in training and tests).
    pub fn scores_sparse(&self, features: &SparseFeatures, group: ChannelGroup) -> ModelScores {
        if let Some(linear) = self.linear_for(group) {
            let distinct = features.indices.len() as u64;
            let scores =
                ModelScores { log_odds: linear.log_odds(features), active: linear.active, feature_total: distinct };
            if linear.nb_blend > 0.0 {
                let jll = self.component_scores(features);
                let table = self.table();
                let nb = ModelScores {
                    log_odds: table.log_odds(&jll),
                    active: table.active,
                    feature_total: features.total(),
                };
                return blend(scores, &nb, linear.nb_blend);
            }
            return scores;
        }
        let jll = self.component_scores(features);
        let table = self.table();
        ModelScores { log_odds: table.log_odds(&jll), active: table.active, feature_total: features.total() }
    }

    /// The model's contribution to a verdict: one [`Reason`] per scored class
    /// (`rule: "model:<name>"`, `description: "model: spam 0.93"`), scored in
    /// rule points under the model's calibration.
    pub fn evidence(&self, message: &Message) -> Evidence {
        self.evidence_beside(message, &RulesView::NONE)
    }

    /// [`Self::evidence`] next to the rules' evidence (see [`RulesView`]):
    /// a limited class's reason says what held it.
    pub fn evidence_beside(&self, message: &Message, rules: &RulesView) -> Evidence {
        let scores = self.scores(message);
        let group = ChannelGroup::of(message);
        let points = model_points(&scores, &self.calibration, group, rules);
        // A class whose points stopped at its ceiling says so (ceilings are rare:
        // the points without them are computed only then).
        let ceilings = rules.ceilings(scores.active);
        let mut notes = [None; 4];
        if ceilings.iter().any(Option::is_some) {
            let unlimited = RulesView { protected: rules.protected, ..RulesView::NONE };
            let unlimited = model_points(&scores, &self.calibration, group, &unlimited);
            for (k, note) in notes.iter_mut().enumerate() {
                *note =
                    ceilings[k].and_then(|(ceiling, why)| (unlimited[k] > ceiling + 0.001).then_some(why.explain()));
            }
        }
        evidence_from_points(&self.name, &scores, &points, notes)
    }

    /// Adds labelled messages to the counts (each counted `times` times) and
    /// rebuilds the scoring table: linfa `fit_with` semantics, applied to
    /// our sparse counts. Returns a new model; `self` is untouched, so the
    /// caller can validate the candidate and keep the old one.
    pub fn updated(&self, labelled: &[(Message, Verdict)], times: u64) -> Model {
        let mut counts = self.counts.clone();
        let mut learned = Vec::new();
        for (message, class) in labelled {
            let features = self.featurizer.features(message);
            // Join the class's component the message is most like: a new tiny
            // component would claim every message with rare words (Naive Bayes
            // favours small classes on unseen features). A class with no
            // component yet (non_target) gets a `<class>:feedback` one.
            let jll = self.component_scores(&features);
            let nearest = (0..jll.len().min(self.counts.components.len()))
                .filter(|&j| self.counts.components[j].class == *class && self.table().usable.get(j) == Some(&true))
                .max_by(|&a, &b| jll[a].total_cmp(&jll[b]));
            let component = match nearest {
                Some(j) => counts.component(&self.counts.components[j].name.clone(), *class),
                None => counts.component(&component_name(*class, FEEDBACK_SOURCE), *class),
            };
            counts.add(component, &features, times);
            if self.linear[0].is_some() {
                learned.push((features, *class));
            }
        }
        let active = active_classes(&counts);
        // Every group's regression learns every label: a correction on one
        // channel is evidence about the same text on another.
        let learn = |current: &LinearModel| {
            let mut linear = current.clone();
            // A class that just reached MIN_CLASS_EXAMPLES joins the softmax
            // as unlikely a priori; its labels then teach it its words.
            for ((now, before), bias) in active.iter().zip(&linear.active).zip(&mut linear.bias) {
                if *now && !*before {
                    *bias = -crate::linear::FEEDBACK_MARGIN;
                }
            }
            linear.active = active;
            linear.learn(&learned, times);
            linear
        };
        let linear = self.linear.each_ref().map(|l| l.as_ref().map(learn));
        Model { counts, table: OnceLock::new(), linear, metadata: self.metadata.clone(), ..self.clone() }
    }

    /// Writes `model.json.gz` (byte-identical for identical models: gzip
    /// without timestamp or name) and `metadata.json`.
    pub fn save(&self, dir: &Path) -> Result<(), ModelError> {
        let io = |path: &Path| {
            let path = path.display().to_string();
            move |source| ModelError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let model_path = dir.join(MODEL_FILE);
        std::fs::write(&model_path, self.to_bytes()?).map_err(io(&model_path))?;
        if let Some(metadata) = &self.metadata {
            let meta_path = dir.join(METADATA_FILE);
            let mut json = serde_json::to_vec_pretty(metadata).map_err(|e| ModelError::Invalid(e.to_string()))?;
            json.push(b'\n');
            std::fs::write(&meta_path, json).map_err(io(&meta_path))?;
        }
        Ok(())
    }

    /// The gzip-compressed model file.
    pub fn to_bytes(&self) -> Result<Vec<u8>, ModelError> {
        let file = ModelFile {
            format: FORMAT_VERSION,
            name: self.name.clone(),
            algorithm: self.algorithm().to_owned(),
            features: *self.featurizer.settings(),
            calibration: self.calibration,
            alpha: self.counts.alpha,
            components: self
                .counts
                .components
                .iter()
                .map(|c| StoredComponent {
                    name: c.name.clone(),
                    class: c.class,
                    count: c.count,
                    examples: c.examples,
                    features: encode_sparse(&c.features),
                })
                .collect(),
            linear: self.linear[0].as_ref().map(StoredLinear::of),
            linear_short: self.linear[1].as_ref().map(StoredLinear::of),
        };
        let json = serde_json::to_vec(&file).map_err(|e| ModelError::Invalid(e.to_string()))?;
        let mut gz = flate2::GzBuilder::new().mtime(0).write(Vec::new(), Compression::best());
        gz.write_all(&json)
            .and_then(|()| gz.finish())
            .map_err(|source| ModelError::Io { path: MODEL_FILE.into(), source })
    }

    /// Reads a model from `model.json.gz` bytes (and optional `metadata.json` bytes).
    pub fn from_bytes(model: &[u8], metadata: Option<&[u8]>) -> Result<Model, ModelError> {
        let mut json = Vec::new();
        GzDecoder::new(model)
            .read_to_end(&mut json)
            .map_err(|source| ModelError::Io { path: MODEL_FILE.into(), source })?;
        let file: ModelFile =
            serde_json::from_slice(&json).map_err(|e| ModelError::Invalid(format!("{MODEL_FILE}: {e}")))?;
        if file.format != FORMAT_VERSION {
            return Err(ModelError::Invalid(format!(
                "{MODEL_FILE} has format {}, this build reads {FORMAT_VERSION}",
                file.format
            )));
        }
        let dimension = file.features.dimension();
        let mut components = Vec::with_capacity(file.components.len());
        for c in file.components {
            let features = decode_sparse(&c.features, dimension)?;
            components.push(NbComponent {
                name: c.name,
                class: c.class,
                count: c.count,
                examples: c.examples,
                features,
            });
        }
        if !components.windows(2).all(|w| w[0].name < w[1].name) {
            return Err(ModelError::Invalid("mixture components are not sorted by name".into()));
        }
        let counts = NbCounts { alpha: file.alpha, dimension, components };
        let mut loaded = Model::from_counts(&file.name, file.features, counts, file.calibration)?;
        if let Some(stored) = file.linear {
            loaded.linear[0] = Some(stored.model(dimension)?);
            if let Some(stored) = file.linear_short {
                loaded.linear[1] = Some(stored.model(dimension)?);
            }
        }
        let blended = loaded.linear.iter().flatten().any(|l| l.nb_blend > 0.0);
        if loaded.linear[0].is_none() || blended {
            loaded.table();
        }
        if let Some(bytes) = metadata {
            loaded.metadata =
                Some(serde_json::from_slice(bytes).map_err(|e| ModelError::Invalid(format!("{METADATA_FILE}: {e}")))?);
        }
        Ok(loaded)
    }

    /// Reads `dir/model.json.gz` and, if present, `dir/metadata.json`.
    pub fn load(dir: &Path) -> Result<Model, ModelError> {
        let model_path = dir.join(MODEL_FILE);
        let model = std::fs::read(&model_path)
            .map_err(|source| ModelError::Io { path: model_path.display().to_string(), source })?;
        let metadata = std::fs::read(dir.join(METADATA_FILE)).ok();
        Model::from_bytes(&model, metadata.as_deref())
    }

    /// The default model (`models/default/`), embedded at build time so a
    /// fresh clone classifies with rules + model and no corpora. Parsed once.
    pub fn builtin() -> &'static Model {
        static BUILTIN: OnceLock<Model> = OnceLock::new();
        BUILTIN.get_or_init(|| {
            Model::from_bytes(
                include_bytes!("../../../models/default/model.json.gz"),
                Some(include_bytes!("../../../models/default/metadata.json")),
            )
            .unwrap_or_else(|error| panic!("the built-in model is invalid (a test catches this): {error}"))
        })
    }
}

/// What the `algorithm` field of a saved model with a logistic regression says.
pub const ALGORITHM: &str = "sparse softmax regression (averaged SGD, linfa Fit) over binary hashed features, \
     blended with linfa-bayes MultinomialNb log-odds";
/// What the `algorithm` field of a Naive Bayes-only model says.
pub const NB_ALGORITHM: &str =
    "linfa-bayes MultinomialNb, one label per (class, source) mixture component, binary hashed features";

/// The ensemble of the regression's log-odds and Naive Bayes' (scaled to a
/// 100-feature message, as Naive Bayes log-odds grow with length).
pub(crate) fn blend(linear: ModelScores, nb: &ModelScores, weight: f64) -> ModelScores {
    let length = (nb.feature_total.max(1) as f64 / 100.0).sqrt();
    let mut out = linear;
    for k in 0..4 {
        if out.active[k] && nb.active[k] {
            out.log_odds[k] += weight * nb.log_odds[k] / length;
        }
    }
    out
}

/// The source name of feedback components (`spam:feedback`).
pub const FEEDBACK_SOURCE: &str = "feedback";

/// The model's reasons for `points` (see [`model_points`]).
pub(crate) fn evidence_from_points(
    name: &str,
    scores: &ModelScores,
    points: &[f64; 4],
    notes: [Option<&str>; 4],
) -> Evidence {
    let mut evidence = Evidence::default();
    let probabilities = scores.probabilities();
    for (k, class) in SCORED_CLASSES.into_iter().enumerate() {
        if points[k] == 0.0 && notes[k].is_none() {
            continue;
        }
        let note = notes[k].map(|n| format!(", {n}")).unwrap_or_default();
        let reason = Reason {
            rule: format!("model:{name}"),
            description: format!("model: {class} {:.2}{note}", probabilities[class.index()]),
            origin: ReasonOrigin::Model,
            class: None,
            score: 0.0,
            decisive: false,
        };
        evidence.add_score(reason, class, points[k]);
    }
    evidence
}

fn encode_sparse(row: &[u32]) -> Vec<u64> {
    let mut out = Vec::new();
    let mut previous = 0usize;
    for (i, &count) in row.iter().enumerate() {
        if count > 0 {
            out.push((i - previous) as u64);
            out.push(u64::from(count));
            previous = i;
        }
    }
    out
}

fn decode_sparse(pairs: &[u64], dimension: usize) -> Result<Vec<u32>, ModelError> {
    let mut row = vec![0u32; dimension];
    let mut index = 0usize;
    if !pairs.len().is_multiple_of(2) {
        return Err(ModelError::Invalid("odd-length sparse feature counts".into()));
    }
    for pair in pairs.chunks_exact(2) {
        index += pair[0] as usize;
        let slot = row.get_mut(index).ok_or_else(|| ModelError::Invalid("feature bucket out of range".into()))?;
        *slot = u32::try_from(pair[1]).map_err(|_| ModelError::Invalid("feature count out of range".into()))?;
    }
    Ok(row)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_encoding_round_trips() {
        let row = vec![0, 3, 0, 0, 7, 1, 0];
        assert_eq!(decode_sparse(&encode_sparse(&row), 7).ok(), Some(row));
        assert!(decode_sparse(&[9, 1], 7).is_err());
    }

    #[test]
    fn channel_groups_fall_back_and_calibrate_apart() {
        use crate::features::tests_support::message;
        assert_eq!(ChannelGroup::of(&message(Channel::Email, None, "")), ChannelGroup::Email);
        for channel in [Channel::Messenger, Channel::Call, Channel::Webform] {
            assert_eq!(ChannelGroup::of(&message(channel, None, "")), ChannelGroup::ShortMessages);
        }
        assert_eq!(ChannelGroup::ShortMessages.fallback(), Some(ChannelGroup::Email));

        // A calibration without short_messages (models before groups) uses e-mail's everywhere.
        let old = Calibration { weight: 1.5, ..Calibration::default() };
        assert_eq!(old.group(ChannelGroup::ShortMessages), old.group(ChannelGroup::Email));
        let short = GroupCalibration { weight: 0.8, bias: -2.0, length_exponent: 0.0, newsletter_bias: None };
        let both = old.with_group(ChannelGroup::ShortMessages, short);
        assert_eq!(both.group(ChannelGroup::ShortMessages), short);
        let email = GroupCalibration { weight: 4.0, bias: 2.0, length_exponent: 0.5, newsletter_bias: Some(1.0) };
        let both = both.with_group(ChannelGroup::Email, email);
        assert_eq!((both.group(ChannelGroup::Email), both.group(ChannelGroup::ShortMessages)), (email, short));

        // Points: the group's weight and bias, the newsletter's own bias, no pull-back on protected classes.
        let scores =
            ModelScores { log_odds: [3.0, 0.0, 2.0, 0.0], active: [true, false, true, false], feature_total: 100 };
        let points = model_points(&scores, &both, ChannelGroup::Email, &RulesView::NONE);
        assert_eq!(points, [4.0, 0.0, 4.0, 0.0]);
        let doubt =
            ModelScores { log_odds: [-4.0, 0.0, 2.0, 0.0], active: [true, false, true, false], feature_total: 100 };
        let points = model_points(&doubt, &both, ChannelGroup::ShortMessages, &RulesView::NONE);
        assert_eq!(points, [-1.6, 0.0, 3.2, 0.0]);
        let protected = RulesView { protected: [true, false, false, false], ..RulesView::NONE };
        let points = model_points(&doubt, &both, ChannelGroup::ShortMessages, &protected);
        assert_eq!(points, [0.0, 0.0, 3.2, 0.0]);
    }

    #[test]
    fn the_rules_view_sets_ceilings_and_newsletters_are_never_pulled_back() {
        let rule = |class: Verdict, score: f64| {
            let reason = Reason {
                rule: "R".into(),
                description: "r".into(),
                origin: ReasonOrigin::Rule,
                class: None,
                score: 0.0,
                decisive: false,
            };
            (reason, class, score)
        };
        let evidence = |rules: &[(Verdict, f64)]| {
            let mut e = Evidence::default();
            for (class, score) in rules {
                let (reason, class, score) = rule(*class, *score);
                e.add_score(reason, class, score);
            }
            e
        };
        // Two spam hints that reach the threshold together do not protect it; one rule at it does.
        let spam = RulesView::of(&evidence(&[(Verdict::Spam, 2.5), (Verdict::Spam, 2.0)]), 4.0);
        assert_eq!(spam.protected, [false; 4]);
        assert_eq!(RulesView::of(&evidence(&[(Verdict::Spam, 4.0)]), 4.0).protected, [true, false, false, false]);

        let active = [true, false, true, false];
        assert_eq!(RulesView::NONE.ceilings(active), [None; 4]);
        // Non-target at 5 (a class this model has not learned): spam and newsletter stop under it.
        let cv = RulesView::of(&evidence(&[(Verdict::NonTarget, 5.0), (Verdict::Newsletter, 1.0)]), 4.0);
        let c = cv.ceilings(active);
        assert_eq!(c[0], Some((4.99, Ceiling::UnlearnedClass)));
        assert_eq!(c[2], Some((3.99, Ceiling::UnlearnedClass)));
        assert_eq!((c[1], c[3]), (None, None), "inactive classes get no points anyway");
        // Learned by the model (feedback made it active): no ceiling.
        assert_eq!(cv.ceilings([true; 4])[0], None);
        // A request (2 points) and no spam rule: spam stops under the threshold; newsletter has a rule.
        let request = RulesView::of(&evidence(&[(Verdict::Inquiry, 2.0), (Verdict::Newsletter, 1.0)]), 4.0);
        let c = request.ceilings(active);
        assert_eq!(c[0], Some((5.99, Ceiling::Request)));
        assert_eq!(c[2], None);
        // Points honour the ceiling and never turn a negative opinion positive.
        let calibration = Calibration { weight: 10.0, ..Calibration::default() };
        let scores = ModelScores { log_odds: [3.0, 0.0, -4.0, 0.0], active, feature_total: 100 };
        let points = model_points(&scores, &calibration, ChannelGroup::Email, &cv);
        assert_eq!(points, [4.99, 0.0, 0.0, 0.0], "newsletters lose no points to the model");
        let doubt = ModelScores { log_odds: [-3.0, 0.0, -4.0, 0.0], active, feature_total: 100 };
        assert_eq!(model_points(&doubt, &calibration, ChannelGroup::Email, &RulesView::NONE), [-3.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn probabilities_sum_to_one_and_skip_inactive_classes() {
        let scores =
            ModelScores { log_odds: [2.0, 0.0, -1.0, 0.0], active: [true, false, true, false], feature_total: 10 };
        let p = scores.probabilities();
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert_eq!(p[Verdict::BankStatement.index()], 0.0);
        assert_eq!(scores.predicted(), Verdict::Spam);
        let calibrated = scores.calibrated(&Calibration { weight: 10.0, ..Calibration::default() });
        assert_eq!(calibrated, [10.0, 0.0, -3.0, 0.0]);
    }
}
