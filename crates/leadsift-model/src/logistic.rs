//! The comparison algorithm: linfa's multinomial logistic regression
//! (L-BFGS via argmin). It takes a dense matrix and has no incremental fit,
//! so it runs on a feasible dense setup: the `LOGISTIC_COLUMNS` hashed
//! buckets most frequent in training (document frequency), `ln(1 + count)`
//! L2-normalised per row, on a seeded subsample of at most
//! `LOGISTIC_MAX_ROWS` training messages (20 000 × 4 096 f64 = 625 MiB).
//! Only its validation figures are kept, for the model's metadata.

use std::time::Instant;

use leadsift_core::Verdict;
use linfa::DatasetBase;
use linfa::traits::{Fit, Predict};
use linfa_logistic::MultiLogisticRegression;
use ndarray::{Array1, Array2};

use crate::ModelError;
use crate::corpora::LabelledMessage;
use crate::eval::Evaluator;
use crate::features::{Featurizer, SparseFeatures};
use crate::train::{AlgorithmFigures, TrainProgress, TrainStage};

pub const LOGISTIC_COLUMNS: usize = 4096;
pub const LOGISTIC_MAX_ROWS: usize = 20_000;
pub const LOGISTIC_ALPHA: f64 = 1e-3;
pub const LOGISTIC_ITERATIONS: u64 = 150;

fn dense_rows(rows: &[SparseFeatures], columns: &std::collections::HashMap<u32, usize>) -> Array2<f64> {
    let mut x = Array2::<f64>::zeros((rows.len(), columns.len()));
    for (r, features) in rows.iter().enumerate() {
        let mut norm = 0.0;
        for (bucket, count) in features.iter() {
            if let Some(&c) = columns.get(&bucket) {
                let v = f64::from(count).ln_1p();
                x[[r, c]] = v;
                norm += v * v;
            }
        }
        if norm > 0.0 {
            let norm = norm.sqrt();
            x.row_mut(r).mapv_inplace(|v| v / norm);
        }
    }
    x
}

/// Fits the logistic regression on a subsample of `train` and reports its
/// model-only (argmax) figures on `validation`.
pub(crate) fn compare(
    featurizer: &Featurizer,
    train: &[&LabelledMessage],
    validation: &[&LabelledMessage],
    seed: u64,
    progress: &mut dyn FnMut(TrainProgress),
) -> Result<AlgorithmFigures, ModelError> {
    let step = |done| TrainProgress { stage: TrainStage::Comparing, done, total: 4 };
    progress(step(0));
    // Seeded subsample: order by a hash of (seed, split key), keep the first rows.
    let mut order: Vec<(u64, usize)> = train
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let mut h = seed ^ 0xcbf2_9ce4_8422_2325;
            for b in e.corpus.bytes().chain(e.split_key.bytes()) {
                h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
            }
            (h, i)
        })
        .collect();
    order.sort_unstable();
    order.truncate(LOGISTIC_MAX_ROWS);
    order.sort_unstable_by_key(|&(_, i)| i);
    let rows: Vec<SparseFeatures> = order.iter().map(|&(_, i)| featurizer.features(&train[i].message)).collect();
    let targets: Array1<usize> = order.iter().map(|&(_, i)| train[i].class.index()).collect();

    let mut document_frequency: std::collections::HashMap<u32, u32> = std::collections::HashMap::new();
    for features in &rows {
        for &bucket in &features.indices {
            *document_frequency.entry(bucket).or_default() += 1;
        }
    }
    let mut by_frequency: Vec<(u32, u32)> = document_frequency.into_iter().collect();
    by_frequency.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let columns: std::collections::HashMap<u32, usize> =
        by_frequency.iter().take(LOGISTIC_COLUMNS).enumerate().map(|(c, &(bucket, _))| (bucket, c)).collect();
    let x = dense_rows(&rows, &columns);
    drop(rows);
    progress(step(1));

    let started = Instant::now();
    let dataset = DatasetBase::new(x, targets);
    let fitted = MultiLogisticRegression::default()
        .alpha(LOGISTIC_ALPHA)
        .max_iterations(LOGISTIC_ITERATIONS)
        .fit(&dataset)
        .map_err(|e| ModelError::Fit(format!("logistic regression: {e}")))?;
    let fit_seconds = started.elapsed().as_secs_f64();
    drop(dataset);
    progress(step(2));

    let mut evaluator = Evaluator::new();
    for chunk in validation.chunks(2048) {
        let rows: Vec<SparseFeatures> = chunk.iter().map(|e| featurizer.features(&e.message)).collect();
        let predicted: Array1<usize> = fitted.predict(&dense_rows(&rows, &columns));
        for (example, class) in chunk.iter().zip(predicted.iter()) {
            evaluator.add_verdict(&example.corpus, example.class, Verdict::ALL[*class]);
        }
    }
    progress(step(4));
    Ok(AlgorithmFigures {
        algorithm: "linfa-logistic MultiLogisticRegression (L-BFGS, dense subsample)".into(),
        settings: format!(
            "{} most frequent buckets, ln(1+count) L2-normalised, {} rows, alpha {LOGISTIC_ALPHA}, {LOGISTIC_ITERATIONS} iterations",
            columns.len(),
            order.len()
        ),
        train_examples: order.len() as u64,
        fit_seconds,
        model_only: evaluator.summary(),
    })
}
