//! A sparse multinomial logistic regression (softmax) over the hashed binary
//! features, trained by averaged stochastic gradient descent: the
//! discriminative linear model that wins the TREC spam-track comparisons
//! (Goodman & Yih 2006, Sculley & Wachman 2007), here as a linfa estimator
//! ([`LinearSettings`] implements `linfa::traits::Fit` and [`LinearModel`]
//! `PredictInplace` over [`SparseRows`]) that never builds a dense matrix.
//!
//! Parametrisation: `inquiry` is the reference class with logit 0; each of
//! [`SCORED_CLASSES`] has a weight per bucket and a bias, so a logit is
//! directly the log-odds `ln p(c|x) − ln p(inquiry|x)` the calibration and
//! the rules combination already work in. A message's features are its
//! distinct buckets, each with value `1/√n` (the vector has unit length), so
//! long mail and short chat are on one scale.
//!
//! Training is deterministic: a seeded Fisher–Yates shuffle per epoch, the
//! learning rate `η₀ / (1 + t/N)`, and the iterate average (Polyak–Ruppert,
//! computed lazily with the `w − u/T` trick) from the second epoch on. The
//! averaged weights are quantised to multiples of 2⁻¹² before use, so a
//! saved and reloaded model scores exactly as the trained one.
//!
//! Managers' labels are learned online ([`LinearModel::learn`]): a few
//! fixed-rate steps on each labelled message until the model gives it its
//! label by [`FEEDBACK_MARGIN`] log-odds — the same primitive as training,
//! so a retrain with the labels and an incremental update agree.

use leadsift_core::Verdict;
use linfa::DatasetBase;
use linfa::dataset::Records;
use linfa::traits::{Fit, PredictInplace};
use serde::{Deserialize, Serialize};

use crate::ModelError;
use crate::features::SparseFeatures;
use crate::model::SCORED_CLASSES;

/// Weights are multiples of this (2⁻¹²) once trained, so they store as integers.
pub const WEIGHT_QUANTUM: f64 = 1.0 / 4096.0;
/// Feedback steps stop once the labelled message's own class leads every
/// other class by this many log-odds (about 99.3 %).
pub const FEEDBACK_MARGIN: f64 = 5.0;
/// Learning rate of a feedback step (features have unit length, so one step
/// moves the message's logits by at most this).
pub const FEEDBACK_LEARNING_RATE: f64 = 1.0;

/// How the logistic regression is trained. Saved with the model's metadata.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinearSettings {
    /// Passes over the training set (the average is taken from the second on).
    pub epochs: u32,
    /// Initial learning rate `η₀`; the rate at step `t` is `η₀ / (1 + t/N)`.
    pub learning_rate: f64,
    /// Sample weight of a real-message (`inquiry`) example relative to junk:
    /// above 1 makes a false positive cost more than a miss.
    pub inquiry_weight: f64,
    /// Seeds the per-epoch shuffle.
    pub seed: u64,
    /// Balances the sources: an example of a (class, corpus) component of
    /// size `m` weighs `(mean size / m)^source_balance`, so the large Russian
    /// chat corpora do not drown e-mail and SMS. 0 weighs every example alike.
    #[serde(default)]
    pub source_balance: f64,
    /// `Some(γ)`: one regression per channel group (e-mail; short messages),
    /// each fitted on every example but counting the other group's at weight
    /// γ, so e-mail gets weights of its own while still learning from chat
    /// what a Russian spam word means. `None`: one regression for all.
    #[serde(default)]
    pub other_channel_weight: Option<f64>,
    /// The loss the SGD minimises.
    #[serde(default)]
    pub loss: Loss,
}

/// The training loss of [`LinearSettings`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Loss {
    /// Softmax cross-entropy: every example pulls, less as it is learned.
    #[default]
    Softmax,
    /// Multiclass hinge (Crammer–Singer, margin 1): only examples whose label
    /// does not lead the strongest other class by the margin pull.
    Hinge,
}

impl Default for LinearSettings {
    fn default() -> Self {
        Self {
            epochs: 6,
            learning_rate: 8.0,
            inquiry_weight: 2.0,
            seed: 20_021_010,
            source_balance: 0.0,
            other_channel_weight: Some(0.1),
            loss: Loss::Softmax,
        }
    }
}

/// Sparse feature rows as linfa records: the training set is never a dense matrix.
#[derive(Debug, Clone, Default)]
pub struct SparseRows {
    pub rows: Vec<SparseFeatures>,
    pub dimension: usize,
}

impl Records for SparseRows {
    type Elem = f32;

    fn nsamples(&self) -> usize {
        self.rows.len()
    }

    fn nfeatures(&self) -> usize {
        self.dimension
    }
}

/// A trained softmax regression: per bucket the weights of the scored
/// classes against `inquiry`, and which classes take part.
#[derive(Debug, Clone, PartialEq)]
pub struct LinearModel {
    /// Per bucket, per [`SCORED_CLASSES`] entry: its weight minus inquiry's (inquiry is 0).
    pub weights: Vec<[f32; 4]>,
    pub bias: [f64; 4],
    /// Which of [`SCORED_CLASSES`] the softmax includes.
    pub active: [bool; 4],
    /// Weight of the Naive Bayes log-odds (scaled to a 100-feature message,
    /// `ℓ_NB / √(n/100)`) added to the regression's: the ensemble `train`
    /// chose out of fold (0 = the regression alone).
    pub nb_blend: f64,
}

fn class_slot(class: Verdict) -> Option<usize> {
    SCORED_CLASSES.iter().position(|c| *c == class)
}

impl LinearModel {
    pub fn zeros(dimension: usize, active: [bool; 4]) -> Self {
        Self { weights: vec![[0.0; 4]; dimension], bias: [0.0; 4], active, nb_blend: 0.0 }
    }

    pub fn dimension(&self) -> usize {
        self.weights.len()
    }

    /// Log-odds against inquiry of a message with these distinct buckets
    /// (inactive classes 0).
    #[inline]
    pub fn log_odds_of_buckets(&self, buckets: impl Iterator<Item = u32>) -> ([f64; 4], u64) {
        let mut sum = [0f32; 4];
        let mut n = 0u64;
        for bucket in buckets {
            let row = &self.weights[bucket as usize];
            for (s, w) in sum.iter_mut().zip(row) {
                *s += *w;
            }
            n += 1;
        }
        (self.log_odds_of_sum(sum, n), n)
    }

    /// Log-odds from the weight sums of `n` distinct buckets.
    #[inline]
    pub fn log_odds_of_sum(&self, sum: [f32; 4], n: u64) -> [f64; 4] {
        let scale = 1.0 / ((n.max(1)) as f64).sqrt();
        let mut out = [0.0; 4];
        for k in 0..4 {
            if self.active[k] {
                out[k] = self.bias[k] + f64::from(sum[k]) * scale;
            }
        }
        out
    }

    pub fn log_odds(&self, features: &SparseFeatures) -> [f64; 4] {
        self.log_odds_of_buckets(features.indices.iter().copied()).0
    }

    /// The most probable class (inquiry when no junk class has positive log-odds).
    pub fn predict_one(&self, features: &SparseFeatures) -> Verdict {
        let z = self.log_odds(features);
        let mut best = (Verdict::Inquiry, 0.0);
        for (k, class) in SCORED_CLASSES.into_iter().enumerate() {
            if self.active[k] && z[k] > best.1 {
                best = (class, z[k]);
            }
        }
        best.0
    }

    /// One gradient step of the softmax loss on one example, `rate` already
    /// including the sample weight. Returns the per-class change it applied
    /// to each of the example's buckets (for the running average).
    fn step(&mut self, weights: &mut [[f64; 4]], features: &SparseFeatures, label: Verdict, rate: f64) -> [f64; 4] {
        let n = features.indices.len().max(1) as f64;
        let value = 1.0 / n.sqrt();
        let mut z = self.bias;
        let mut sums = [0f64; 4];
        for &bucket in &features.indices {
            for (s, w) in sums.iter_mut().zip(&weights[bucket as usize]) {
                *s += *w;
            }
        }
        for k in 0..4 {
            z[k] += sums[k] * value;
        }
        let p = softmax(&z, &self.active);
        let mut delta = [0.0; 4];
        for k in 0..4 {
            if !self.active[k] {
                continue;
            }
            let target = if Some(k) == class_slot(label) { 1.0 } else { 0.0 };
            let gradient = p[k + 1] - target;
            delta[k] = -rate * gradient * value;
            self.bias[k] -= rate * gradient;
        }
        for &bucket in &features.indices {
            let w = &mut weights[bucket as usize];
            for k in 0..4 {
                w[k] += delta[k];
            }
        }
        delta
    }

    /// For a hinge step: the feature value `1/√n`, the logit of the label's
    /// slot `own` (inquiry's is 0), and the strongest competitor with its
    /// logit — a junk class, or inquiry (`None`, logit 0) when the label is junk.
    fn hinge_rival(
        &self,
        weights: &[[f64; 4]],
        features: &SparseFeatures,
        own: Option<usize>,
    ) -> (f64, f64, (Option<usize>, f64)) {
        let value = 1.0 / (features.indices.len().max(1) as f64).sqrt();
        let mut sums = [0f64; 4];
        for &bucket in &features.indices {
            for (s, w) in sums.iter_mut().zip(&weights[bucket as usize]) {
                *s += *w;
            }
        }
        let z: [f64; 4] = std::array::from_fn(|k| self.bias[k] + sums[k] * value);
        let mut rival: (Option<usize>, f64) = (None, if own.is_some() { 0.0 } else { f64::NEG_INFINITY });
        for (k, z) in z.iter().enumerate() {
            if self.active[k] && Some(k) != own && *z > rival.1 {
                rival = (Some(k), *z);
            }
        }
        (value, own.map_or(0.0, |k| z[k]), rival)
    }

    /// One training step of the multiclass hinge loss (margin 1) on one
    /// example, `rate` including the sample weight; returns the per-class
    /// change applied to each of its buckets, as [`Self::step`] does.
    fn hinge_train_step(
        &mut self,
        weights: &mut [[f64; 4]],
        features: &SparseFeatures,
        label: Verdict,
        rate: f64,
    ) -> [f64; 4] {
        let own = class_slot(label);
        let (value, own_z, rival) = self.hinge_rival(weights, features, own);
        let mut delta = [0.0; 4];
        if own_z - rival.1 >= 1.0 {
            return delta;
        }
        if let Some(k) = own.filter(|k| self.active[*k]) {
            delta[k] = rate * value;
            self.bias[k] += rate;
        }
        if let Some(k) = rival.0 {
            delta[k] = -rate * value;
            self.bias[k] -= rate;
        }
        for &bucket in &features.indices {
            let w = &mut weights[bucket as usize];
            for k in 0..4 {
                w[k] += delta[k];
            }
        }
        delta
    }

    /// One multiclass hinge (Crammer–Singer) step: the label's weights up and
    /// the strongest other class's down on the message's buckets, by
    /// [`FEEDBACK_LEARNING_RATE`]·`1/√n` each, so the margin grows by 1 or 2
    /// log-odds per step. Unlike a softmax step it does not fade as the
    /// label's probability nears 1, so a handful of labels can reach the margin.
    fn hinge_step(&mut self, weights: &mut [[f64; 4]], features: &SparseFeatures, label: Verdict) {
        let own = class_slot(label);
        let (value, _, rival) = self.hinge_rival(weights, features, own);
        let step = FEEDBACK_LEARNING_RATE * value;
        for &bucket in &features.indices {
            let w = &mut weights[bucket as usize];
            if let Some(k) = own {
                w[k] += step;
            }
            if let Some(k) = rival.0 {
                w[k] -= step;
            }
        }
    }

    /// How far `label` leads the best other class on this message, in log-odds.
    pub fn margin(&self, features: &SparseFeatures, label: Verdict) -> f64 {
        let z = self.log_odds(features);
        let own = class_slot(label).map_or(0.0, |k| z[k]);
        let mut best_other: f64 = if label == Verdict::Inquiry { f64::NEG_INFINITY } else { 0.0 };
        for (k, z) in z.iter().enumerate() {
            if self.active[k] && Some(k) != class_slot(label) {
                best_other = best_other.max(*z);
            }
        }
        own - best_other
    }

    /// Online learning from labelled messages: up to `rounds` passes, each a
    /// hinge step on every message whose label does not yet lead by
    /// [`FEEDBACK_MARGIN`]. Labels of classes outside the softmax are skipped
    /// (their Naive Bayes counts still record them until the class is active).
    /// Deterministic: the order is the given order.
    pub fn learn(&mut self, labelled: &[(SparseFeatures, Verdict)], rounds: u64) {
        let mut weights: Vec<[f64; 4]> =
            self.weights.iter().map(|row| std::array::from_fn(|k| f64::from(row[k]))).collect();
        let active = self.active;
        let usable = |class: Verdict| class == Verdict::Inquiry || class_slot(class).is_some_and(|k| active[k]);
        for _ in 0..rounds {
            let mut stepped = false;
            for (features, class) in labelled {
                if !usable(*class) || features.is_empty() {
                    continue;
                }
                self.weights_from(&weights, features);
                if self.margin(features, *class) >= FEEDBACK_MARGIN {
                    continue;
                }
                self.hinge_step(&mut weights, features, *class);
                stepped = true;
            }
            if !stepped {
                break;
            }
        }
        self.weights = weights.iter().map(|row| std::array::from_fn(|k| quantise(row[k]))).collect();
        self.bias = self.bias.map(|b| (b / WEIGHT_QUANTUM).round() * WEIGHT_QUANTUM);
    }

    /// Copies the working f64 weights of `features`' buckets into the f32 table
    /// (so [`Self::margin`] sees the current state).
    fn weights_from(&mut self, weights: &[[f64; 4]], features: &SparseFeatures) {
        for &bucket in &features.indices {
            let source = &weights[bucket as usize];
            self.weights[bucket as usize] = std::array::from_fn(|k| source[k] as f32);
        }
    }

    /// Nonzero weights of one class column as flattened (gap since the
    /// previous nonzero bucket, weight in [`WEIGHT_QUANTUM`] units) pairs.
    pub fn encode_column(&self, k: usize) -> Vec<i64> {
        let mut out = Vec::new();
        let mut previous = 0usize;
        for (i, row) in self.weights.iter().enumerate() {
            let q = (f64::from(row[k]) / WEIGHT_QUANTUM).round() as i64;
            if q != 0 {
                out.push((i - previous) as i64);
                out.push(q);
                previous = i;
            }
        }
        out
    }

    pub fn decode_column(&mut self, k: usize, pairs: &[i64]) -> Result<(), ModelError> {
        if !pairs.len().is_multiple_of(2) {
            return Err(ModelError::Invalid("odd-length linear weights".into()));
        }
        let mut index = 0usize;
        for pair in pairs.chunks_exact(2) {
            index += usize::try_from(pair[0]).map_err(|_| ModelError::Invalid("negative weight gap".into()))?;
            let row = self
                .weights
                .get_mut(index)
                .ok_or_else(|| ModelError::Invalid("linear weight bucket out of range".into()))?;
            row[k] = (pair[1] as f64 * WEIGHT_QUANTUM) as f32;
        }
        Ok(())
    }
}

fn quantise(w: f64) -> f32 {
    ((w / WEIGHT_QUANTUM).round() * WEIGHT_QUANTUM) as f32
}

/// Probabilities of `[inquiry, SCORED_CLASSES...]` (inactive ones 0).
fn softmax(z: &[f64; 4], active: &[bool; 4]) -> [f64; 5] {
    let mut max = 0.0f64;
    for k in 0..4 {
        if active[k] {
            max = max.max(z[k]);
        }
    }
    let mut p = [0.0; 5];
    p[0] = (-max).exp();
    let mut sum = p[0];
    for k in 0..4 {
        if active[k] {
            p[k + 1] = (z[k] - max).exp();
            sum += p[k + 1];
        }
    }
    for v in &mut p {
        *v /= sum;
    }
    p
}

/// SplitMix64: a tiny, fixed, platform-independent generator for the shuffle.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// The classes the softmax may include: those with at least `min_examples` in
/// the training targets (and inquiry, the reference, must have them too).
pub fn active_classes(targets: &[Verdict], min_examples: u64) -> [bool; 4] {
    let count = |class: Verdict| targets.iter().filter(|t| **t == class).count() as u64;
    let inquiry = count(Verdict::Inquiry) >= min_examples;
    std::array::from_fn(|k| inquiry && count(SCORED_CLASSES[k]) >= min_examples)
}

impl Fit<SparseRows, Vec<Verdict>, ModelError> for LinearSettings {
    type Object = LinearModel;

    /// Averaged SGD on the softmax loss. Sample weights are the dataset's
    /// weights (1 when absent) times [`LinearSettings::inquiry_weight`] for inquiries.
    fn fit(&self, dataset: &DatasetBase<SparseRows, Vec<Verdict>>) -> Result<LinearModel, ModelError> {
        let rows = &dataset.records.rows;
        let targets = &dataset.targets;
        if rows.len() != targets.len() {
            return Err(ModelError::Fit(format!("{} rows but {} targets", rows.len(), targets.len())));
        }
        if rows.is_empty() {
            return Err(ModelError::Invalid("nothing to train on".into()));
        }
        if self.learning_rate.is_nan() || self.learning_rate <= 0.0 || self.epochs == 0 {
            return Err(ModelError::Fit("the learning rate and epochs must be positive".into()));
        }
        let dimension = dataset.records.dimension;
        let active = active_classes(targets, crate::model::MIN_CLASS_EXAMPLES);
        let mut model = LinearModel::zeros(dimension, active);
        let mut weights = vec![[0f64; 4]; dimension];
        // Running-average state: u accumulates (t−1)·Δ from the first averaged step.
        let mut u = vec![[0f64; 4]; dimension];
        let mut bias_u = [0f64; 4];
        let mut averaged_steps = 0u64;
        let n = rows.len();
        let mut order: Vec<usize> = (0..n).collect();
        let mut rng = SplitMix(self.seed);
        let mut t = 0u64;
        for epoch in 0..self.epochs {
            for i in (1..n).rev() {
                order.swap(i, rng.below(i + 1));
            }
            for &i in &order {
                let features = &rows[i];
                if features.is_empty() {
                    continue;
                }
                let class = targets[i];
                let sample = f64::from(dataset.weight_for(i))
                    * if class == Verdict::Inquiry { self.inquiry_weight } else { 1.0 };
                let rate = self.learning_rate / (1.0 + t as f64 / n as f64);
                t += 1;
                let before = model.bias;
                let delta = match self.loss {
                    Loss::Softmax => model.step(&mut weights, features, class, rate * sample),
                    Loss::Hinge => model.hinge_train_step(&mut weights, features, class, rate * sample),
                };
                if epoch >= 1 {
                    averaged_steps += 1;
                    let factor = (averaged_steps - 1) as f64;
                    for &bucket in &features.indices {
                        let row = &mut u[bucket as usize];
                        for k in 0..4 {
                            row[k] += factor * delta[k];
                        }
                    }
                    for k in 0..4 {
                        bias_u[k] += factor * (model.bias[k] - before[k]);
                    }
                }
            }
        }
        let steps = averaged_steps.max(1) as f64;
        let uses_average = averaged_steps > 0;
        model.weights = weights
            .iter()
            .zip(&u)
            .map(|(w, u)| std::array::from_fn(|k| quantise(if uses_average { w[k] - u[k] / steps } else { w[k] })))
            .collect();
        for (bias, u) in model.bias.iter_mut().zip(&bias_u) {
            let value = if uses_average { *bias - u / steps } else { *bias };
            *bias = (value / WEIGHT_QUANTUM).round() * WEIGHT_QUANTUM;
        }
        Ok(model)
    }
}

impl PredictInplace<SparseRows, Vec<Verdict>> for LinearModel {
    fn predict_inplace(&self, x: &SparseRows, y: &mut Vec<Verdict>) {
        y.clear();
        y.extend(x.rows.iter().map(|row| self.predict_one(row)));
    }

    fn default_target(&self, x: &SparseRows) -> Vec<Verdict> {
        Vec::with_capacity(x.rows.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use linfa::traits::Predict;

    fn row(buckets: &[u32]) -> SparseFeatures {
        let mut indices = buckets.to_vec();
        indices.sort_unstable();
        indices.dedup();
        SparseFeatures { counts: vec![1; indices.len()], indices }
    }

    /// Spam uses buckets 0..8, newsletters 8..16, inquiries 16..24, all share 30..32.
    fn dataset() -> DatasetBase<SparseRows, Vec<Verdict>> {
        let mut rows = Vec::new();
        let mut targets = Vec::new();
        for i in 0..60u32 {
            let (class, base) = match i % 3 {
                0 => (Verdict::Spam, 0),
                1 => (Verdict::Newsletter, 8),
                _ => (Verdict::Inquiry, 16),
            };
            rows.push(row(&[base + i % 8, base + (i + 3) % 8, base + (i + 5) % 8, 30, 31]));
            targets.push(class);
        }
        // Four bank statements: below MIN_CLASS_EXAMPLES, so the class stays out of the softmax.
        for i in 0..4 {
            rows.push(row(&[40 + i, 30]));
            targets.push(Verdict::BankStatement);
        }
        DatasetBase::new(SparseRows { rows, dimension: 64 }, targets)
    }

    fn fitted() -> LinearModel {
        LinearSettings::default().fit(&dataset()).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn fit_learns_a_separable_set_and_predicts_through_linfa() {
        let model = fitted();
        assert_eq!(model.active, [true, false, true, false]);
        let data = dataset();
        let predicted: Vec<Verdict> = model.predict(&data);
        let right = predicted.iter().zip(&data.targets).filter(|(p, t)| p == t).count();
        assert_eq!(right, 60, "every spam, newsletter and inquiry row right, bank statements not learned");
        assert_eq!(model.predict_one(&row(&[1, 2, 30])), Verdict::Spam);
        assert_eq!(model.predict_one(&row(&[17, 18, 30])), Verdict::Inquiry);
        // Inactive classes never get weights or log-odds.
        assert!(model.weights.iter().all(|w| w[1] == 0.0 && w[3] == 0.0));
        assert_eq!(model.log_odds(&row(&[40, 41]))[1], 0.0);
    }

    #[test]
    fn hinge_loss_fits_the_same_set_and_stops_at_the_margin() {
        let settings = LinearSettings { loss: Loss::Hinge, learning_rate: 1.0, ..LinearSettings::default() };
        let model = settings.fit(&dataset()).unwrap_or_else(|e| panic!("{e}"));
        let data = dataset();
        let predicted: Vec<Verdict> = model.predict(&data);
        let right = predicted.iter().zip(&data.targets).filter(|(p, t)| p == t).count();
        assert_eq!(right, 60);
        assert_ne!(model.weights, fitted().weights, "the loss setting is used");
        // Learned rows lead by about the margin, not by the softmax's ever-growing log-odds.
        let margin = model.margin(&data.records.rows[0], Verdict::Spam);
        assert!((0.5..4.0).contains(&margin), "{margin}");
    }

    #[test]
    fn fit_is_deterministic_and_quantised() {
        let (a, b) = (fitted(), fitted());
        assert_eq!(a, b);
        for w in a.weights.iter().flatten() {
            let units = f64::from(*w) / WEIGHT_QUANTUM;
            assert!((units - units.round()).abs() < 1e-6, "{w}");
        }
        let other = LinearSettings { seed: 7, ..LinearSettings::default() }.fit(&dataset());
        assert_ne!(other.ok().as_ref(), Some(&a), "the seed orders the passes");
    }

    #[test]
    fn columns_round_trip_exactly() {
        let model = fitted();
        let mut back = LinearModel::zeros(model.dimension(), model.active);
        back.bias = model.bias;
        for k in 0..4 {
            back.decode_column(k, &model.encode_column(k)).unwrap_or_else(|e| panic!("{e}"));
        }
        assert_eq!(back, model);
        assert!(back.decode_column(0, &[70, 1]).is_err(), "bucket out of range");
        assert!(back.decode_column(0, &[1]).is_err(), "odd length");
    }

    #[test]
    fn learning_a_label_moves_that_message_past_the_margin_and_leaves_the_biases() {
        let mut model = fitted();
        let bias = model.bias;
        // An inquiry-looking message labelled spam.
        let labelled = row(&[16, 17, 18, 30, 50]);
        assert_eq!(model.predict_one(&labelled), Verdict::Inquiry);
        model.learn(&[(labelled.clone(), Verdict::Spam)], 20);
        assert!(
            model.margin(&labelled, Verdict::Spam) >= FEEDBACK_MARGIN - 0.01,
            "{}",
            model.margin(&labelled, Verdict::Spam)
        );
        assert_eq!(model.predict_one(&labelled), Verdict::Spam);
        assert_eq!(model.bias, bias);
        // Labels of a class outside the softmax change nothing.
        let before = model.clone();
        model.learn(&[(row(&[40, 30]), Verdict::BankStatement)], 20);
        assert_eq!(model, before);
    }

    #[test]
    fn mismatched_or_empty_datasets_are_errors() {
        let empty = DatasetBase::new(SparseRows { rows: Vec::new(), dimension: 8 }, Vec::new());
        assert!(LinearSettings::default().fit(&empty).is_err());
        let mismatched = DatasetBase::new(SparseRows { rows: vec![row(&[1])], dimension: 8 }, Vec::new());
        assert!(LinearSettings::default().fit(&mismatched).is_err());
        let zero_rate = LinearSettings { learning_rate: 0.0, ..LinearSettings::default() };
        assert!(zero_rate.fit(&dataset()).is_err());
    }
}
