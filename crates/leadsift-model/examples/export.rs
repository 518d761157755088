//! Writes the labelled corpora as JSON lines, one message each, with the
//! split `train` and `eval` use — so an outside reference classifier (see
//! `scripts/reference-ceiling.py`) is measured on exactly the same messages,
//! texts and validation split as leadsift.
//!
//! ```text
//! cargo run --release -p leadsift-model --example export -- [--out FILE] [CORPUS...]
//! ```
//! Without CORPUS arguments the shared corpora; without `--out` standard output.
//! Each line: `{"corpus", "class", "split", "channel", "subject", "text"}`.

use std::io::{BufWriter, Write};
use std::path::PathBuf;

use anyhow::Context;
use leadsift_model::{Corpus, Split};

fn main() -> anyhow::Result<()> {
    let (mut out, mut corpora): (Option<PathBuf>, Vec<PathBuf>) = (None, Vec::new());
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--out" => out = Some(PathBuf::from(args.next().context("--out FILE")?)),
            other => corpora.push(PathBuf::from(other)),
        }
    }
    let corpus =
        if corpora.is_empty() { Corpus::load_root("../shared/corpora".as_ref())? } else { Corpus::load(&corpora)? };
    let sink: Box<dyn Write> = match &out {
        Some(path) => Box::new(std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut sink = BufWriter::new(sink);
    for example in &corpus.examples {
        let line = serde_json::json!({
            "corpus": example.corpus,
            "class": example.class,
            "split": if example.split() == Split::Validation { "validation" } else { "train" },
            "channel": example.message.channel,
            "subject": example.message.subject,
            "text": example.message.text,
        });
        serde_json::to_writer(&mut sink, &line)?;
        sink.write_all(b"\n")?;
    }
    sink.flush()?;
    eprintln!("{} messages", corpus.examples.len());
    Ok(())
}
