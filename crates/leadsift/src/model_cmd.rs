//! `leadsift train`, `eval`, `learn` and `model history`: the ML model's tools.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;
use indicatif::{ProgressBar, ProgressStyle};
use leadsift_core::{Classifier, FeedbackOrigin, LeadStore, NewFeedback, Verdict};
use leadsift_model::{
    CombinedClassifier, Corpus, EvalReport, FitEngine, ModelOnlyClassifier, TrainSettings, TrainStage, evaluate, train,
};
use leadsift_pipeline::{LearnOutcome, Metrics};
use leadsift_rules::RuleSet;
use serde_json::json;

use crate::app::{connect_store, learner, load_model, load_rules, model_handle};
use crate::config::Settings;

/// Where `train` and `eval` look when no corpus is named.
pub const DEFAULT_CORPORA: &str = "../shared/corpora";

#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    /// Model directory to write (`model.json.gz`, `metadata.json`), e.g. models/default.
    #[arg(long)]
    out: PathBuf,
    /// Model name (reasons say `model:<name>`); defaults to the directory's name.
    #[arg(long)]
    name: Option<String>,
    /// Hash features into 2^BITS buckets.
    #[arg(long, default_value_t = TrainSettings::default().features.dimension_bits)]
    bits: u8,
    /// Naive Bayes additive smoothing.
    #[arg(long, default_value_t = TrainSettings::default().alpha)]
    alpha: f64,
    /// Message text tokenised at most, in bytes (scoring time grows with it).
    #[arg(long, default_value_t = TrainSettings::default().features.max_text_bytes)]
    max_text_bytes: usize,
    /// Largest ham→spam false-positive rate per corpus the calibration may accept (on out-of-fold predictions).
    #[arg(long, default_value_t = TrainSettings::default().max_ham_spam_fp_rate)]
    max_fp: f64,
    /// Also fit linfa's logistic regression on the same split, for comparison (slow).
    #[arg(long)]
    compare_logistic: bool,
    /// Fit with linfa's own `FitWith` on dense mini-batches instead of sparse sums (same model, minutes).
    #[arg(long)]
    linfa_fit_with: bool,
    /// Labelled corpus folders (default: every corpus under ../shared/corpora).
    corpora: Vec<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// One JSON document instead of tables.
    #[arg(long)]
    json: bool,
    /// Model directory (default: the configured model, else the built-in one).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Rules file instead of the configured one.
    #[arg(long)]
    rules: Option<PathBuf>,
    /// Score every example, not only the fixed validation split.
    #[arg(long)]
    all: bool,
    /// Labelled corpus folders (default: every corpus under ../shared/corpora).
    corpora: Vec<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct LearnArgs {
    /// Id of a stored message, or of a lead with `--lead` (all its messages).
    id: i64,
    /// ID is a lead: label every message of it.
    #[arg(long)]
    lead: bool,
    /// Its true class: inquiry, spam, bank_statement, newsletter or non_target.
    #[arg(long = "as")]
    class: Verdict,
    /// Who labels it (recorded with the label).
    #[arg(long, env = "USER", default_value = "cli")]
    actor: String,
    /// Only record the label; the running daemon learns from it within `model.learn_interval_secs`.
    #[arg(long)]
    no_update: bool,
}

#[derive(Debug, clap::Subcommand)]
pub enum ModelCommand {
    /// Model updates from feedback, newest first: accepted or refused, with the figures.
    History {
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
}

fn load_corpora(paths: &[PathBuf]) -> anyhow::Result<Corpus> {
    let started = Instant::now();
    let corpus = if paths.is_empty() {
        let root = Path::new(DEFAULT_CORPORA);
        anyhow::ensure!(root.is_dir(), "no corpus given and {DEFAULT_CORPORA} does not exist");
        Corpus::load_root(root)?
    } else {
        Corpus::load(paths)?
    };
    eprintln!(
        "loaded {} examples ({} train, {} validation) in {:.1} s",
        corpus.examples.len(),
        corpus.train().count(),
        corpus.validation().count(),
        started.elapsed().as_secs_f64()
    );
    for stats in &corpus.stats {
        let classes: Vec<String> = stats.per_class.iter().map(|(class, n)| format!("{class} {n}")).collect();
        eprintln!(
            "  {}: {} (duplicates {}, skipped {})",
            stats.corpus,
            classes.join(", "),
            stats.duplicates,
            stats.skipped
        );
    }
    Ok(corpus)
}

fn bar(total: u64) -> ProgressBar {
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{msg:12} [{bar:40}] {pos}/{len} {elapsed}")
            .expect("static template")
            .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

pub fn train_command(settings: &Settings, args: TrainArgs) -> anyhow::Result<ExitCode> {
    let corpus = load_corpora(&args.corpora)?;
    let name = args.name.clone().unwrap_or_else(|| {
        args.out.file_name().map_or_else(|| "model".to_owned(), |n| n.to_string_lossy().into_owned())
    });
    let defaults = TrainSettings::default();
    let mut train_settings = TrainSettings {
        name,
        features: leadsift_model::FeatureSettings {
            dimension_bits: args.bits,
            max_text_bytes: args.max_text_bytes,
            ..defaults.features
        },
        alpha: args.alpha,
        max_ham_spam_fp_rate: args.max_fp,
        compare_logistic: args.compare_logistic,
        ..defaults
    };
    if args.linfa_fit_with {
        train_settings.engine = FitEngine::LinfaFitWith;
    }
    let rules = rules_for(settings, None)?;
    let progress = bar(0);
    let started = Instant::now();
    let mut stage = None;
    let outcome = train(&corpus, &[], &rules, &train_settings, &mut |p| {
        if stage != Some(p.stage) {
            stage = Some(p.stage);
            progress.set_message(match p.stage {
                TrainStage::Fitting => "fitting",
                TrainStage::Validating => "validating",
                TrainStage::Calibrating => "calibrating",
                TrainStage::Comparing => "comparing",
            });
            progress.set_length(p.total);
        }
        progress.set_position(p.done);
    })?;
    progress.finish_and_clear();
    outcome.model.save(&args.out)?;
    let size = std::fs::metadata(args.out.join(leadsift_model::model::MODEL_FILE))?.len();
    eprintln!(
        "trained in {:.1} s; model written to {} ({size} bytes)",
        started.elapsed().as_secs_f64(),
        args.out.display()
    );
    for algorithm in &outcome.algorithms {
        writeln!(
            std::io::stdout(),
            "== {} [{}], fit {:.1} s, model alone (argmax), validation:\n{}",
            algorithm.algorithm,
            algorithm.settings,
            algorithm.fit_seconds,
            algorithm.model_only
        )?;
    }
    writeln!(
        std::io::stdout(),
        "== out of fold on the training side (what the calibration was chosen on), rules + model:\n{}",
        outcome.out_of_fold.combined
    )?;
    writeln!(std::io::stdout(), "== validation, rules only:\n{}", outcome.figures.rules_only)?;
    writeln!(std::io::stdout(), "== validation, model only (calibrated):\n{}", outcome.figures.model_only)?;
    writeln!(std::io::stdout(), "== validation, rules + model:\n{}", outcome.figures.combined)?;
    Ok(ExitCode::SUCCESS)
}

fn rules_for(settings: &Settings, path: Option<&Path>) -> anyhow::Result<RuleSet> {
    match path.map(Path::to_path_buf).or_else(|| settings.rules_file()) {
        Some(path) => RuleSet::load(&path).map_err(|errors| anyhow::anyhow!("invalid rules file:\n{errors}")),
        None => Ok(RuleSet::builtin()),
    }
}

pub fn eval_command(settings: &Settings, args: EvalArgs) -> anyhow::Result<ExitCode> {
    let model = Arc::new(match &args.model {
        Some(dir) => leadsift_model::Model::load(dir)?,
        None => load_model(settings)?,
    });
    let rules = rules_for(settings, args.rules.as_deref())?;
    let corpus = load_corpora(&args.corpora)?;
    let examples: Vec<_> = if args.all { corpus.examples.iter().collect() } else { corpus.validation().collect() };
    anyhow::ensure!(!examples.is_empty(), "the corpora hold no labelled examples");
    let combined = CombinedClassifier::new(rules.clone(), Arc::clone(&model));
    let model_only = ModelOnlyClassifier { model: Arc::clone(&model), policy: rules.scoring() };
    let variants: [(&str, &dyn Classifier); 3] =
        [("rules only", &rules), ("model only", &model_only), ("rules + model", &combined)];
    let mut reports: Vec<(&str, EvalReport)> = Vec::new();
    for (name, classifier) in variants {
        let progress = bar(examples.len() as u64);
        progress.set_message(name);
        let report = evaluate(classifier, examples.iter().copied(), &mut |done| progress.set_position(done as u64));
        progress.finish_and_clear();
        reports.push((name, report));
    }
    let split = if args.all { "all" } else { "validation" };
    if args.json {
        let variants: Vec<_> =
            reports.iter().map(|(name, report)| json!({ "variant": name, "report": report })).collect();
        let document = json!({
            "model": model.name(),
            "split": split,
            "examples": examples.len(),
            "variants": variants,
        });
        writeln!(std::io::stdout(), "{}", serde_json::to_string_pretty(&document)?)?;
    } else {
        for (name, report) in &reports {
            writeln!(
                std::io::stdout(),
                "== {name}: model {}, {split} split, {} examples\n{report}",
                model.name(),
                examples.len()
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn learn_command(settings: &Settings, args: LearnArgs) -> anyhow::Result<ExitCode> {
    let store = connect_store(settings).await?;
    let message_ids = if args.lead {
        let ids = store.lead_message_ids(args.id).await?;
        anyhow::ensure!(!ids.is_empty(), "lead {} not found or has no messages", args.id);
        ids
    } else {
        vec![args.id]
    };
    for message_id in message_ids {
        let stored = store.message(message_id).await?.with_context(|| format!("no stored message {message_id}"))?;
        let feedback =
            NewFeedback { message_id, label: args.class, origin: FeedbackOrigin::Learn, actor: args.actor.clone() };
        let id = store.record_feedback(&feedback, Utc::now()).await?;
        writeln!(
            std::io::stdout(),
            "message {message_id}: labelled {} (classified {} at {:.2}); feedback {id}",
            args.class,
            stored.classification.verdict,
            stored.classification.confidence
        )?;
    }
    let code = if args.no_update { ExitCode::SUCCESS } else { update_model(settings, &store).await? };
    store.close().await;
    Ok(code)
}

/// Runs one learning pass now and prints its outcome (after a label from the CLI).
pub async fn update_model(settings: &Settings, store: &leadsift_store::SqlStore) -> anyhow::Result<ExitCode> {
    if !settings.model.enabled {
        writeln!(std::io::stdout(), "model disabled ([model] enabled = false): label stored, nothing learned")?;
        return Ok(ExitCode::SUCCESS);
    }
    let metrics = Metrics::new();
    let rules = load_rules(settings, metrics.clone())?;
    let model = model_handle(settings, store, &metrics).await?;
    let learner = learner(settings, store, model, rules, &metrics).await?;
    match learner.learn_once().await? {
        LearnOutcome::UpToDate => writeln!(std::io::stdout(), "model already learned every label")?,
        LearnOutcome::Accepted { version, labels, figures } => {
            writeln!(std::io::stdout(), "model version {version} accepted ({labels} labels): {}", figures.summary())?;
        }
        LearnOutcome::Refused { version, labels, reason, figures } => {
            writeln!(
                std::io::stdout(),
                "model update {version} refused ({labels} labels): {reason}\n  {}",
                figures.summary()
            )?;
            writeln!(
                std::io::stdout(),
                "the previous model stays in force; correct a wrong label with `leadsift learn ID --as CLASS`"
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn model_command(settings: &Settings, command: ModelCommand) -> anyhow::Result<ExitCode> {
    let store = connect_store(settings).await?;
    match command {
        ModelCommand::History { limit } => {
            let versions = store.model_versions(limit).await?;
            if versions.is_empty() {
                writeln!(std::io::stdout(), "no model updates yet: the shipped model is in force")?;
            }
            for v in versions {
                let state = if v.accepted { "accepted" } else { "refused" };
                writeln!(
                    std::io::stdout(),
                    "{}\t{}\t{state}\t{} labels (feedback ≤ {})\t{}",
                    v.id,
                    v.created_at.format("%Y-%m-%d %H:%M:%S"),
                    v.feedback_used,
                    v.feedback_upto,
                    v.note
                )?;
            }
        }
    }
    store.close().await;
    Ok(ExitCode::SUCCESS)
}
