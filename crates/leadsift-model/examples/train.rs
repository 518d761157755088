//! Trains a model on labelled corpora and writes it to a model directory;
//! the reference for `leadsift train`.
//!
//! ```text
//! cargo run --release -p leadsift-model --example train -- \
//!     --out models/default [--bits 18] [--alpha 0.1] [--batch 64] [--compare-logistic] \
//!     [--nb-only | --epochs N --lr RATE --inquiry-weight W] [--hinge] [--ascii-char-ngrams] [CORPUS...]
//! ```
//! Without CORPUS arguments every known folder under `../shared/corpora` is used.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use leadsift_model::{Corpus, TrainSettings, TrainStage, train};
use leadsift_rules::RuleSet;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let mut settings = TrainSettings::default();
    let mut out = PathBuf::from("models/default");
    let mut corpora = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().context("missing value");
        match arg.as_str() {
            "--out" => out = PathBuf::from(value()?),
            "--bits" => settings.features.dimension_bits = value()?.parse()?,
            "--alpha" => settings.alpha = value()?.parse()?,
            "--batch" => settings.batch_size = value()?.parse()?,
            "--char-bytes" => settings.features.char_ngram_bytes = value()?.parse()?,
            "--char-min" => settings.features.char_ngram_min = value()?.parse()?,
            "--char-max" => settings.features.char_ngram_max = value()?.parse()?,
            "--max-text" => settings.features.max_text_bytes = value()?.parse()?,
            "--structural" => settings.features.structural_weight = value()?.parse()?,
            "--no-bigrams" => settings.features.word_bigrams = false,
            "--name" => settings.name = value()?,
            "--max-fp" => settings.max_ham_spam_fp_rate = value()?.parse()?,
            "--compare-logistic" => settings.compare_logistic = true,
            "--nb-only" => settings.linear = None,
            "--epochs" => settings.linear.get_or_insert_default().epochs = value()?.parse()?,
            "--lr" => settings.linear.get_or_insert_default().learning_rate = value()?.parse()?,
            "--inquiry-weight" => settings.linear.get_or_insert_default().inquiry_weight = value()?.parse()?,
            "--source-balance" => settings.linear.get_or_insert_default().source_balance = value()?.parse()?,
            "--ascii-char-ngrams" => settings.features.char_ngrams_non_ascii_only = false,
            "--other-channel-weight" => {
                let weight: f64 = value()?.parse()?;
                settings.linear.get_or_insert_default().other_channel_weight = (weight < 1.0).then_some(weight);
            }
            "--header-presence" => settings.features.header_presence = true,
            "--hinge" => settings.linear.get_or_insert_default().loss = leadsift_model::Loss::Hinge,
            "--no-ascii-affixes" => settings.features.ascii_affixes = false,
            "--no-header-features" => settings.features.header_features = false,
            "--folds" => settings.calibration_folds = value()?.parse()?,
            "--linfa-fit-with" => settings.engine = leadsift_model::FitEngine::LinfaFitWith,
            other => corpora.push(PathBuf::from(other)),
        }
    }
    let started = Instant::now();
    let corpus =
        if corpora.is_empty() { Corpus::load_root("../shared/corpora".as_ref())? } else { Corpus::load(&corpora)? };
    eprintln!(
        "loaded {} examples ({} train, {} validation) in {:.1} s",
        corpus.examples.len(),
        corpus.train().count(),
        corpus.validation().count(),
        started.elapsed().as_secs_f64()
    );
    for stats in &corpus.stats {
        eprintln!(
            "  {}: {:?} (duplicates {}, skipped {})",
            stats.corpus, stats.per_class, stats.duplicates, stats.skipped
        );
    }
    let started = Instant::now();
    let mut last = (TrainStage::Comparing, u64::MAX);
    let outcome = train(&corpus, &[], &RuleSet::builtin(), &settings, &mut |p| {
        let pct = p.done * 10 / p.total.max(1);
        if (p.stage, pct) != last {
            last = (p.stage, pct);
            eprintln!("  {:?} {}/{} ({:.1} s)", p.stage, p.done, p.total, started.elapsed().as_secs_f64());
        }
    })?;
    eprintln!("trained in {:.1} s; calibration {:?}", started.elapsed().as_secs_f64(), outcome.model.calibration());
    outcome.model.save(&out)?;
    let size = std::fs::metadata(out.join(leadsift_model::model::MODEL_FILE))?.len();
    println!("model written to {} ({size} bytes)", out.display());
    for algorithm in &outcome.algorithms {
        println!(
            "\n== {} [{}], fit {:.1} s, model alone (argmax):",
            algorithm.algorithm, algorithm.settings, algorithm.fit_seconds
        );
        print!("{}", algorithm.model_only);
    }
    println!(
        "\n== out of fold (training side, what the calibration was chosen on), rules + model:\n{}",
        outcome.out_of_fold.combined
    );
    println!("\n== validation, rules only:\n{}", outcome.figures.rules_only);
    println!("== validation, model only (calibrated, scoring policy):\n{}", outcome.figures.model_only);
    println!("== validation, rules + model:\n{}", outcome.figures.combined);
    Ok(())
}
