//! `leadsift classify`: verdicts without a store.

use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use leadsift_core::{Classification, Classifier, Message, SenderStanding};
use leadsift_formats::{parse_item, parse_json_lines, read_inputs};
use leadsift_model::CombinedClassifier;
use leadsift_rules::RuleSet;
use serde_json::json;

use crate::config::Settings;

#[derive(Debug, clap::Args)]
pub struct ClassifyArgs {
    /// One JSON object per line: path, verdict, confidence, reasons (or path and error).
    #[arg(long)]
    json: bool,
    /// Rules file to use instead of the configured one.
    #[arg(long)]
    rules: Option<PathBuf>,
    /// Rules alone, without the ML model.
    #[arg(long)]
    no_model: bool,
    /// Files, folders, Maildirs, mboxes, archives; `-` reads event JSON lines from stdin.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
}

struct Output<W: Write> {
    out: W,
    json: bool,
}

impl<W: Write> Output<W> {
    fn verdict(&mut self, origin: &str, message: &Message, c: &Classification) -> std::io::Result<()> {
        if self.json {
            let line = json!({
                "path": origin,
                "channel": message.channel,
                "dedup_key": message.dedup_key,
                "verdict": c.verdict,
                "confidence": (c.confidence * 1000.0).round() / 1000.0,
                "reasons": c.reasons,
            });
            writeln!(self.out, "{line}")
        } else {
            let rules: Vec<&str> = c.reasons.iter().map(|r| r.rule.as_str()).collect();
            writeln!(self.out, "{origin}\t{}\t{:.2}\t{}", c.verdict, c.confidence, rules.join(","))
        }
    }

    fn error(&mut self, origin: &str, error: &str) -> std::io::Result<()> {
        if self.json {
            writeln!(self.out, "{}", json!({ "path": origin, "error": error }))
        } else {
            writeln!(self.out, "{origin}\terror\t{error}")
        }
    }
}

pub fn run(settings: &Settings, args: ClassifyArgs) -> anyhow::Result<ExitCode> {
    let rules = match args.rules.as_deref().map(PathBuf::from).or_else(|| settings.rules_file()) {
        Some(path) => RuleSet::load(&path).map_err(|errors| anyhow::anyhow!("invalid rules file:\n{errors}"))?,
        None => RuleSet::builtin(),
    };
    let classifier: Box<dyn Classifier> = if settings.model.enabled && !args.no_model {
        Box::new(CombinedClassifier::new(rules, Arc::new(crate::app::load_model(settings)?)))
    } else {
        Box::new(rules)
    };
    let options = settings.parse_options();
    let standing = SenderStanding::default();
    let mut output = Output { out: BufWriter::new(std::io::stdout().lock()), json: args.json };
    let mut failed = 0usize;

    let (stdin_requested, paths): (Vec<PathBuf>, Vec<PathBuf>) =
        args.paths.into_iter().partition(|p| p.as_os_str() == "-");
    if !stdin_requested.is_empty() {
        for (origin, parsed) in parse_json_lines(std::io::stdin().lock(), "-", &options) {
            match parsed {
                Ok(message) => output.verdict(&origin, &message, &classifier.classify(&message, &standing))?,
                Err(error) => {
                    failed += 1;
                    output.error(&origin, &error.to_string())?;
                }
            }
        }
    }
    for input in read_inputs(&paths, &options) {
        let outcome = input.map_err(|failure| (failure.origin, failure.error.to_string())).and_then(|item| {
            parse_item(&item, &options).map(|m| (item.origin.clone(), m)).map_err(|e| (item.origin, e.to_string()))
        });
        match outcome {
            Ok((origin, message)) => output.verdict(&origin, &message, &classifier.classify(&message, &standing))?,
            Err((origin, error)) => {
                failed += 1;
                output.error(&origin, &error)?;
            }
        }
    }
    output.out.flush()?;
    if failed > 0 {
        eprintln!("{failed} input(s) could not be read or parsed");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
