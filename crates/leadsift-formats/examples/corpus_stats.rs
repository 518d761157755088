//! Parses every input under the given paths and prints counts, failures
//! grouped by error, and parse throughput.
//!
//! `cargo run --release -p leadsift-formats --example corpus_stats -- PATH…`

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use leadsift_formats::{ParseOptions, parse_item, read_inputs};

fn main() {
    let paths: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let opts = ParseOptions::default();
    let mut items = Vec::new();
    let mut read_failures: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut inputs = read_inputs(&paths, &opts);
    for item in inputs.by_ref() {
        match item {
            Ok(item) => items.push(item),
            Err(failure) => read_failures.entry(error_kind(&failure.error)).or_default().push(failure.to_string()),
        }
    }
    let bytes: usize = items.iter().map(|i| i.bytes.len()).sum();
    println!(
        "read {} items ({} bytes, {} skipped), {} read failures",
        items.len(),
        bytes,
        inputs.skipped(),
        read_failures.values().map(Vec::len).sum::<usize>()
    );
    print_failures(&read_failures);

    let mut parse_failures: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let (
        mut with_sender,
        mut with_date_header,
        mut with_text,
        mut with_destination,
        mut unparsed_from,
        mut with_attachments,
    ) = (0, 0, 0, 0, 0, 0);
    for item in &items {
        match parse_item(item, &opts) {
            Ok(message) => {
                with_sender += usize::from(!message.sender.is_anonymous());
                with_date_header += usize::from(message.header("Date").is_some());
                with_text += usize::from(!message.text.trim().is_empty());
                with_destination += usize::from(message.destination.is_some());
                unparsed_from += usize::from(message.header("X-Leadsift-Unparsed-From").is_some());
                with_attachments += usize::from(!message.attachments.is_empty());
            }
            Err(error) => {
                parse_failures.entry(error_kind(&error)).or_default().push(format!("{}: {error}", item.origin))
            }
        }
    }
    let failed: usize = parse_failures.values().map(Vec::len).sum();
    println!(
        "parsed {} ok, {failed} failed; {with_sender} with a sender, {with_date_header} with Date, {with_text} with text, {with_destination} with a destination, {unparsed_from} with an unparsable From, {with_attachments} with attachments",
        items.len() - failed
    );
    print_failures(&parse_failures);

    // Throughput: best of 5 passes over the in-memory items, plus the
    // per-message distribution from the last pass.
    let mut best = Duration::MAX;
    let mut per_item = Vec::with_capacity(items.len());
    for _ in 0..5 {
        per_item.clear();
        let start = Instant::now();
        for item in &items {
            let one = Instant::now();
            let _ = std::hint::black_box(parse_item(item, &opts));
            per_item.push(one.elapsed());
        }
        best = best.min(start.elapsed());
    }
    per_item.sort();
    let quantile =
        |q: f64| per_item.get(((per_item.len() as f64 - 1.0) * q) as usize).map_or(0.0, |d| d.as_secs_f64() * 1e6);
    let per_message = best.as_secs_f64() / items.len().max(1) as f64;
    println!(
        "parse throughput: {:.0} msgs/s on one core ({:.1} µs/msg mean, median {:.1} µs, p90 {:.1} µs, p99 {:.1} µs; {:.0} MB/s, avg {} bytes)",
        1.0 / per_message,
        per_message * 1e6,
        quantile(0.5),
        quantile(0.9),
        quantile(0.99),
        bytes as f64 / best.as_secs_f64() / 1e6,
        bytes / items.len().max(1)
    );
}

fn error_kind(error: &leadsift_formats::FormatError) -> String {
    format!("{error:?}").split([' ', '(', '{']).next().unwrap_or("").to_owned()
}

fn print_failures(failures: &BTreeMap<String, Vec<String>>) {
    for (kind, list) in failures {
        println!("  {kind}: {}", list.len());
        for line in list.iter().take(5) {
            println!("    {line}");
        }
    }
}
