//! Parses the shared real-world corpora, when present. Ignored by default
//! (the corpora are not part of the repository):
//! `cargo test -p leadsift-formats --release --test corpora -- --ignored --nocapture`
//! Set `LEADSIFT_CORPORA` to the corpora directory (default `/work/shared/corpora`).

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::path::PathBuf;

use leadsift_formats::{ParseOptions, parse_item, read_inputs};

fn corpus(relative: &str) -> Option<PathBuf> {
    let root =
        std::env::var_os("LEADSIFT_CORPORA").map_or_else(|| PathBuf::from("/work/shared/corpora"), PathBuf::from);
    let path = root.join(relative);
    if path.exists() {
        Some(path)
    } else if std::env::var_os("CI").is_some() {
        panic!("corpus {} not found; set LEADSIFT_CORPORA to the shared corpora directory", path.display())
    } else {
        eprintln!("skipping: {} not found", path.display());
        None
    }
}

/// (items read, read failures, parse failures)
fn parse_all(path: PathBuf) -> (usize, usize, Vec<String>) {
    let opts = ParseOptions::default();
    let (mut read, mut read_failures, mut parse_failures) = (0, 0, Vec::new());
    for item in read_inputs(&[path], &opts) {
        match item {
            Ok(item) => {
                read += 1;
                if let Err(error) = parse_item(&item, &opts) {
                    parse_failures.push(format!("{}: {error}", item.origin));
                }
            }
            Err(_) => read_failures += 1,
        }
    }
    (read, read_failures, parse_failures)
}

#[test]
#[ignore = "needs the shared corpora"]
fn spamassassin_all_parse() {
    let Some(path) = corpus("spamassassin-20021010/spamassassin-20021010.tar.gz") else { return };
    let (read, read_failures, parse_failures) = parse_all(path);
    assert_eq!((read, read_failures), (3250, 0));
    assert!(parse_failures.is_empty(), "{parse_failures:#?}");
}

#[test]
#[ignore = "needs the shared corpora"]
fn markup_mbox_all_parse() {
    let Some(path) = corpus("markup-gmail-political-newsletters/2019-10-28.mbox.gz") else { return };
    let (read, read_failures, parse_failures) = parse_all(path);
    assert_eq!((read, read_failures), (448, 0));
    assert!(parse_failures.is_empty(), "{parse_failures:#?}");
}

#[test]
#[ignore = "needs the shared corpora"]
fn enron_preprocessed_all_parse() {
    let Some(path) = corpus("enron-spam-enron1/enron1.tar.gz") else { return };
    let (read, read_failures, parse_failures) = parse_all(path);
    // 5,172 messages plus Summary.txt, a document that must not parse.
    assert_eq!((read, read_failures), (5173, 0));
    assert_eq!(parse_failures.len(), 1, "{parse_failures:#?}");
    assert!(parse_failures[0].contains("enron1/Summary.txt"), "{parse_failures:#?}");
}
