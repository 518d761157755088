//! `leadsift-bench`: reproducible throughput figures for the README.
//!
//! ```text
//! cargo run --release -p leadsift --bin leadsift-bench -- classify PATH...
//! cargo run --release -p leadsift --bin leadsift-bench -- import PATH...
//! cargo run --release -p leadsift --bin leadsift-bench -- pipeline --triage 1,2
//! ```
//! `pipeline` measures intake → committed verdict over Kafka and PostgreSQL
//! with separate triage processes (see `bench/pipeline.rs`).
//! `classify` reads every input into memory first, then parses the raw
//! bytes and classifies them with the built-in rules on one thread, several
//! rounds; it reports messages per second. `import` runs the real
//! `leadsift import` binary into a fresh SQLite database per round and
//! reports messages stored per second of wall time (process start included).

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::Context;
use clap::{Parser, Subcommand};
use leadsift_core::{Classifier, SenderStanding};
use leadsift_formats::{ParseOptions, parse_item, read_inputs};
use leadsift_rules::RuleSet;

#[path = "bench/pipeline.rs"]
mod pipeline;

#[derive(Debug, Parser)]
struct Args {
    #[command(subcommand)]
    bench: Bench,
}

#[derive(Debug, Subcommand)]
enum Bench {
    /// Parse from raw bytes + rules-only classification, one thread.
    Classify {
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        #[arg(long)]
        rules: Option<PathBuf>,
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// `leadsift import` into a fresh SQLite database, wall time.
    Import {
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// The leadsift binary (default: next to this one).
        #[arg(long)]
        leadsift: Option<PathBuf>,
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Intake → committed verdict over Kafka + PostgreSQL with 1..N triage processes.
    Pipeline(pipeline::PipelineArgs),
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() -> anyhow::Result<()> {
    match Args::parse().bench {
        Bench::Classify { rounds, rules, paths } => classify(rounds, rules, &paths),
        Bench::Import { rounds, leadsift, paths } => import(rounds, leadsift, &paths),
        Bench::Pipeline(args) => tokio::runtime::Runtime::new()?.block_on(pipeline::run(args)),
    }
}

fn classify(rounds: usize, rules: Option<PathBuf>, paths: &[PathBuf]) -> anyhow::Result<()> {
    let options = ParseOptions::default();
    let items: Vec<_> = read_inputs(paths, &options).filter_map(Result::ok).collect();
    anyhow::ensure!(!items.is_empty(), "no inputs found");
    let bytes: usize = items.iter().map(|i| i.bytes.len()).sum();
    let rules = match rules {
        Some(path) => RuleSet::load(&path).map_err(|e| anyhow::anyhow!("{e}"))?,
        None => RuleSet::builtin(),
    };
    let standing = SenderStanding::default();
    let mut rates = Vec::new();
    let mut counts = std::collections::BTreeMap::new();
    for round in 0..rounds.max(1) {
        let started = Instant::now();
        let mut classified = 0usize;
        for item in &items {
            if let Ok(message) = parse_item(item, &options) {
                let verdict = rules.classify(&message, &standing).verdict;
                classified += 1;
                if round == 0 {
                    *counts.entry(verdict.to_string()).or_insert(0usize) += 1;
                }
            }
        }
        let rate = classified as f64 / started.elapsed().as_secs_f64();
        rates.push(rate);
        println!(
            "round {}: {classified} messages in {:.3} s = {rate:.0} msg/s",
            round + 1,
            started.elapsed().as_secs_f64()
        );
    }
    println!(
        "classify: {} inputs ({:.1} MB), median {:.0} msg/s, best {:.0} msg/s, one thread; verdicts {counts:?}",
        items.len(),
        bytes as f64 / 1e6,
        median(rates.clone()),
        rates.iter().copied().fold(0.0, f64::max)
    );
    Ok(())
}

fn import(rounds: usize, leadsift: Option<PathBuf>, paths: &[PathBuf]) -> anyhow::Result<()> {
    let leadsift = match leadsift {
        Some(path) => path,
        None => std::env::current_exe()?.with_file_name("leadsift"),
    };
    anyhow::ensure!(
        leadsift.exists(),
        "{} not found: build it with cargo build --release -p leadsift",
        leadsift.display()
    );
    let mut rates = Vec::new();
    for round in 0..rounds.max(1) {
        let dir = tempfile::tempdir()?;
        let url = format!("sqlite://{}", dir.path().join("bench.db").display());
        let started = Instant::now();
        let output = Command::new(&leadsift)
            .args(["--db", &url, "import", "--json"])
            .args(paths)
            .env("LEADSIFT_LOG", "warn")
            .output()
            .context("run leadsift import")?;
        let elapsed = started.elapsed().as_secs_f64();
        let summary: serde_json::Value = serde_json::from_slice(&output.stdout)
            .with_context(|| format!("import printed no summary: {}", String::from_utf8_lossy(&output.stderr)))?;
        let stored = summary["stored"].as_u64().unwrap_or(0);
        let rate = stored as f64 / elapsed;
        rates.push(rate);
        println!("round {}: {stored} messages stored in {elapsed:.3} s = {rate:.0} msg/s ({summary})", round + 1);
    }
    println!(
        "import into SQLite: median {:.0} msg/s, best {:.0} msg/s",
        median(rates.clone()),
        rates.iter().copied().fold(0.0, f64::max)
    );
    Ok(())
}
