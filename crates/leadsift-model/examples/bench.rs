//! Throughput of parse + rules + model on one thread, the way the
//! `leadsift-bench classify` figure is measured, plus model load time.
//!
//! ```text
//! cargo run --release -p leadsift-model --example bench -- [--rounds 5] [--model DIR] PATH...
//! ```

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use leadsift_core::{Classifier, SenderStanding};
use leadsift_formats::{ParseOptions, parse_item, read_inputs};
use leadsift_model::{CombinedClassifier, Model};
use leadsift_rules::RuleSet;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let (mut rounds, mut model_dir, mut paths) = (5usize, None, Vec::new());
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--rounds" => rounds = args.next().unwrap_or_default().parse()?,
            "--model" => model_dir = args.next().map(PathBuf::from),
            other => paths.push(PathBuf::from(other)),
        }
    }
    let started = Instant::now();
    let model = match &model_dir {
        Some(dir) => Model::load(dir)?,
        None => Model::builtin().clone(),
    };
    println!("model load: {:.1} ms", started.elapsed().as_secs_f64() * 1e3);

    let options = ParseOptions::default();
    let items: Vec<_> = read_inputs(&paths, &options).filter_map(Result::ok).collect();
    anyhow::ensure!(!items.is_empty(), "no inputs");
    let messages: Vec<_> = items.iter().filter_map(|i| parse_item(i, &options).ok()).collect();
    let rules = RuleSet::builtin();
    let combined = CombinedClassifier::new(rules.clone(), Arc::new(model));
    let standing = SenderStanding::default();
    for round in 0..rounds {
        let t = Instant::now();
        for item in &items {
            if let Ok(message) = parse_item(item, &options) {
                std::hint::black_box(rules.classify(&message, &standing));
            }
        }
        let rules_rate = items.len() as f64 / t.elapsed().as_secs_f64();
        let t = Instant::now();
        for item in &items {
            if let Ok(message) = parse_item(item, &options) {
                std::hint::black_box(combined.classify(&message, &standing));
            }
        }
        let combined_rate = items.len() as f64 / t.elapsed().as_secs_f64();
        let t = Instant::now();
        for message in &messages {
            std::hint::black_box(combined.model().scores(message));
        }
        let model_us = t.elapsed().as_secs_f64() * 1e6 / messages.len() as f64;
        let t = Instant::now();
        let mut emitted = 0u64;
        for message in &messages {
            combined.model().featurizer().for_each(message, &mut |b, c| emitted += u64::from(b & 1) + u64::from(c));
        }
        let features_us = t.elapsed().as_secs_f64() * 1e6 / messages.len() as f64;
        println!(
            "  featurisation alone {features_us:.1} µs/msg, {:.0} feature occurrences/msg",
            emitted as f64 / messages.len() as f64 / 1.5
        );
        println!(
            "round {}: parse+rules {rules_rate:.0} msg/s, parse+rules+model {combined_rate:.0} msg/s, model alone {model_us:.1} µs/msg ({} messages)",
            round + 1,
            items.len()
        );
    }
    Ok(())
}
