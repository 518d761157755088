//! Evaluates rules only, model only and rules + model on labelled corpora;
//! the reference for `leadsift eval`.
//!
//! ```text
//! cargo run --release -p leadsift-model --example eval -- [--model DIR] [--all] [--json] [--show-fp] [--show-fn] [--show-junked] [CORPUS...]
//! ```
//! Without `--model` the built-in model is used; without CORPUS arguments
//! the shared corpora; without `--all` only their validation split.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use leadsift_core::{Classifier, SenderStanding, Verdict};
use leadsift_model::{CombinedClassifier, Corpus, Model, ModelOnlyClassifier, evaluate};
use leadsift_rules::RuleSet;

fn main() -> anyhow::Result<()> {
    let (mut model_dir, mut all, mut json, mut show_fp, mut show_fn, mut show_junked, mut corpora) =
        (None, false, false, false, false, false, Vec::new());
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--model" => model_dir = Some(PathBuf::from(args.next().context("--model DIR")?)),
            "--all" => all = true,
            "--json" => json = true,
            "--show-fp" => show_fp = true,
            "--show-fn" => show_fn = true,
            "--show-junked" => show_junked = true,
            other => corpora.push(PathBuf::from(other)),
        }
    }
    let model = Arc::new(match &model_dir {
        Some(dir) => Model::load(dir)?,
        None => Model::builtin().clone(),
    });
    let corpus =
        if corpora.is_empty() { Corpus::load_root("../shared/corpora".as_ref())? } else { Corpus::load(&corpora)? };
    let examples: Vec<_> = if all { corpus.examples.iter().collect() } else { corpus.validation().collect() };
    let rules = RuleSet::builtin();
    let combined = CombinedClassifier::new(rules.clone(), Arc::clone(&model));
    let model_only = ModelOnlyClassifier { model: Arc::clone(&model), policy: rules.scoring() };
    let variants: [(&str, &dyn Classifier); 3] =
        [("rules only", &rules), ("model only", &model_only), ("rules + model", &combined)];
    for (name, classifier) in variants {
        let report = evaluate(classifier, examples.iter().copied(), &mut |_| {});
        if json {
            println!("{}", serde_json::json!({ "variant": name, "report": report }));
        } else {
            println!("== {name}, {} examples\n{report}", examples.len());
        }
    }
    if show_fp || show_fn || show_junked {
        for example in &examples {
            let c = combined.classify(&example.message, &SenderStanding::default());
            let false_positive = example.class != Verdict::Spam && c.verdict == Verdict::Spam;
            let false_negative = example.class == Verdict::Spam && c.verdict != Verdict::Spam;
            let junked = example.class == Verdict::Inquiry && c.verdict != Verdict::Inquiry;
            if (show_fp && false_positive) || (show_fn && false_negative) || (show_junked && junked) {
                let text: String = example.message.text.chars().take(160).collect();
                let reasons: Vec<String> = c.reasons.iter().map(|r| format!("{} {:+.1}", r.rule, r.score)).collect();
                println!(
                    "{} [{} {}] {:?} | {} | {}",
                    if junked {
                        format!("JUNKED as {}", c.verdict)
                    } else if false_positive {
                        "FP".to_owned()
                    } else {
                        "FN".to_owned()
                    },
                    example.corpus,
                    example.source_label,
                    example.message.subject,
                    text.replace('\n', " "),
                    reasons.join(", ")
                );
            }
        }
    }
    Ok(())
}
