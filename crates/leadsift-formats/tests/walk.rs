//! Reading inputs from paths: Maildir, mbox, directories, gzip and tar.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::fs;
use std::io::Write;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::write::GzEncoder;
use leadsift_core::Channel;
use leadsift_formats::walk::visit_inputs;
use leadsift_formats::{FormatError, InputItem, InputKind, ParseOptions, parse_item, read_inputs};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn fixture(name: &str) -> Vec<u8> {
    fs::read(fixtures().join(name)).expect("fixture exists")
}

/// Origins (relative to `base`) of items and failures, in order.
fn walk(paths: &[PathBuf], opts: &ParseOptions, base: &Path) -> (Vec<String>, Vec<InputItem>, Vec<String>, usize) {
    let mut inputs = read_inputs(paths, opts);
    let mut origins = Vec::new();
    let mut items = Vec::new();
    let mut failures = Vec::new();
    let prefix = format!("{}/", base.display());
    for result in inputs.by_ref() {
        match result {
            Ok(item) => {
                origins.push(item.origin.replace(&prefix, ""));
                items.push(item);
            }
            Err(failure) => failures.push(format!("{}", failure).replace(&prefix, "")),
        }
    }
    (origins, items, failures, inputs.skipped())
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn tar(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut dir = tar::Header::new_gnu();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_mode(0o755);
    dir.set_size(0);
    builder.append_data(&mut dir, "mail/", &[][..]).unwrap();
    let mut link = tar::Header::new_gnu();
    link.set_entry_type(tar::EntryType::Symlink);
    link.set_size(0);
    builder.append_link(&mut link, "mail/link.eml", "mail/1.eml").unwrap();
    for (path, data) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        builder.append_data(&mut header, path, *data).unwrap();
    }
    builder.into_inner().unwrap()
}

#[test]
fn maildir_reads_cur_and_new_only() {
    let root = fixtures();
    let (origins, items, failures, skipped) = walk(&[root.join("maildir")], &ParseOptions::default(), &root);
    assert_eq!(origins, ["maildir/cur/1732600000.M1P1.host:2,S", "maildir/new/1732600100.M2P1.host"]);
    assert!(failures.is_empty() && skipped == 0, "{failures:?}");
    let subjects: Vec<_> =
        items.iter().map(|i| parse_item(i, &ParseOptions::default()).unwrap().subject.unwrap()).collect();
    assert_eq!(subjects, ["Seen message", "New message"]);
}

#[test]
fn mbox_is_split_and_unquoted() {
    let root = fixtures();
    let (origins, items, failures, _) = walk(&[root.join("three.mbox")], &ParseOptions::default(), &root);
    assert_eq!(origins, ["three.mbox#1", "three.mbox#2", "three.mbox#3"]);
    assert!(failures.is_empty());
    let first = parse_item(&items[0], &ParseOptions::default()).unwrap();
    assert_eq!(first.text, "First body.\nFrom the quoted line.");
    let third = parse_item(&items[2], &ParseOptions::default()).unwrap();
    assert_eq!((third.subject.as_deref(), third.text.as_str()), (Some("Third"), "Third body."));
}

#[test]
fn directory_walk_is_sorted_skips_documents_and_detects_formats() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fs::create_dir_all(root.join("sub/.git")).unwrap();
    fs::write(root.join("README.md"), "# docs").unwrap();
    fs::write(root.join("LICENSE"), "MIT").unwrap();
    fs::write(root.join("labels.csv"), "a,b").unwrap();
    fs::write(root.join("shot.PNG"), b"\x89PNG").unwrap();
    fs::write(root.join(".hidden"), "Subject: x\n\nx").unwrap();
    fs::write(root.join("sub/.git/config"), "[core]").unwrap();
    fs::write(root.join("sub/00001.abc"), fixture("koi8r_8bit.eml")).unwrap();
    fs::write(root.join("b_call.json"), fixture("call.json")).unwrap();
    fs::write(root.join("c_events.jsonl"), fixture("events.jsonl")).unwrap();
    fs::write(root.join("d.mbox.gz"), gzip(&fixture("three.mbox"))).unwrap();
    fs::write(root.join("a.eml.gz"), gzip(&fixture("no_message_id.eml"))).unwrap();

    let opts = ParseOptions::default();
    let (origins, items, failures, skipped) = walk(&[root.to_path_buf()], &opts, root);
    assert_eq!(
        origins,
        [
            "a.eml.gz",
            "b_call.json",
            "c_events.jsonl#1",
            "c_events.jsonl#3",
            "c_events.jsonl#4",
            "d.mbox.gz#1",
            "d.mbox.gz#2",
            "d.mbox.gz#3",
            "sub/00001.abc",
        ]
    );
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(skipped, 6, "README.md, LICENSE, labels.csv, shot.PNG, .hidden, sub/.git");
    let kinds: Vec<InputKind> = items.iter().map(|i| i.kind).collect();
    assert_eq!(
        kinds[..5],
        [InputKind::Rfc822, InputKind::EventJson, InputKind::EventJson, InputKind::EventJson, InputKind::EventJson]
    );
    let parsed: Vec<_> = items.iter().map(|i| parse_item(i, &opts)).collect();
    assert_eq!(parsed.iter().filter(|p| p.is_err()).count(), 1, "only the bad JSON line fails");
    assert_eq!(parsed[1].as_ref().unwrap().channel, Channel::Call);

    // The same walk twice gives the same order.
    assert_eq!(walk(&[root.to_path_buf()], &opts, root).0, origins);
    // A path named explicitly is never skipped.
    let (origins, _, _, skipped) = walk(&[root.join("README.md")], &opts, root);
    assert_eq!((origins, skipped), (vec!["README.md".to_owned()], 0));
}

#[test]
fn tar_gz_with_mixed_content() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let inner = gzip(&tar(&[("deep/x.eml", &fixture("utf8_base64.eml"))]));
    let archive = tar(&[
        ("mail/1.eml", &fixture("multipart_alternative.eml")),
        ("mail/README.md", b"# corpus"),
        ("mail/._1.eml", b"\0\x05\x16\x07AppleDouble"),
        ("mail/pic.jpg", b"\xff\xd8\xff"),
        ("inbox.mbox", &fixture("three.mbox")),
        ("events/call.json", &fixture("call.json")),
        ("events/all.ndjson", &fixture("events.jsonl")),
        ("nested.tgz", &inner),
        ("notes.txt", b"Legitimate\n----------\n- Owner: farmer-d\n"),
    ]);
    fs::write(root.join("corpus.tar.gz"), gzip(&archive)).unwrap();
    fs::write(root.join("plain.tar"), tar(&[("only.eml", &fixture("no_message_id.eml"))])).unwrap();

    let opts = ParseOptions::default();
    let paths = [root.join("corpus.tar.gz"), root.join("plain.tar")];
    let (origins, items, failures, skipped) = walk(&paths, &opts, root);
    assert_eq!(
        origins,
        [
            "corpus.tar.gz!mail/1.eml",
            "corpus.tar.gz!inbox.mbox#1",
            "corpus.tar.gz!inbox.mbox#2",
            "corpus.tar.gz!inbox.mbox#3",
            "corpus.tar.gz!events/call.json",
            "corpus.tar.gz!events/all.ndjson#1",
            "corpus.tar.gz!events/all.ndjson#3",
            "corpus.tar.gz!events/all.ndjson#4",
            "corpus.tar.gz!nested.tgz!deep/x.eml",
            "corpus.tar.gz!notes.txt",
            "plain.tar!only.eml",
        ]
    );
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(skipped, 3, "README.md, ._1.eml, pic.jpg");
    let results: Vec<_> = items.iter().map(|i| parse_item(i, &opts)).collect();
    assert!(matches!(results[9], Err(FormatError::NotRfc822 { .. })), "a document is not a message");
    assert_eq!(results.iter().filter(|r| r.is_err()).count(), 2, "the document and the bad JSON line");
    assert_eq!(results[8].as_ref().unwrap().subject.as_deref(), Some("Заявка на расчёт фасада"));
}

#[test]
fn oversized_and_unreadable_items_fail_alone() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let opts = ParseOptions { max_raw_bytes: 4096, ..ParseOptions::default() };
    let big = format!("Subject: big\n\n{}", "x".repeat(10_000));
    fs::write(root.join("1_big.eml"), &big).unwrap();
    fs::write(root.join("2_big.eml.gz"), gzip(big.as_bytes())).unwrap();
    fs::write(root.join("3_ok.eml"), "Subject: ok\n\nfine").unwrap();
    fs::write(root.join("4.tar"), tar(&[("big.eml", big.as_bytes()), ("ok.eml", b"Subject: ok\n\nfine")])).unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(root.join("missing"), root.join("5_dangling.eml")).unwrap();

    let paths = [root.join("does-not-exist"), root.to_path_buf()];
    let (origins, _, failures, _) = walk(&paths, &opts, root);
    assert_eq!(origins, ["3_ok.eml", "4.tar!ok.eml"]);
    assert_eq!(failures.len(), if cfg!(unix) { 5 } else { 4 }, "{failures:#?}");
    assert!(failures[0].starts_with("does-not-exist: cannot read"), "{}", failures[0]);
    assert_eq!(failures[1], "1_big.eml: input is 10014 bytes, over the limit of 4096 bytes");
    assert_eq!(failures[2], "2_big.eml.gz: input is 10014 bytes, over the limit of 4096 bytes");
    assert_eq!(failures[3], "4.tar!big.eml: input is 10014 bytes, over the limit of 4096 bytes");
    if cfg!(unix) {
        assert!(failures[4].starts_with("5_dangling.eml"), "{}", failures[4]);
    }
}

#[test]
fn single_message_files_keep_their_path_as_origin() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let message =
        b"From spammer@example.com  Thu Aug 22 13:17:22 2002\nFrom: spammer@example.com\nSubject: hi\n\nbody\n";
    fs::write(root.join("00001.abc"), message).unwrap();
    let (origins, items, _, _) = walk(&[root.join("00001.abc")], &ParseOptions::default(), root);
    assert_eq!(origins, ["00001.abc"]);
    let m = parse_item(&items[0], &ParseOptions::default()).unwrap();
    assert_eq!(m.sender.email.unwrap().as_str(), "spammer@example.com");
    assert_eq!(m.text, "body");
}

#[test]
fn visiting_can_stop_early() {
    let root = fixtures();
    let mut seen = 0;
    let summary = visit_inputs(&[root.join("three.mbox"), root.join("maildir")], &ParseOptions::default(), &mut |_| {
        seen += 1;
        if seen == 2 { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
    });
    assert_eq!((seen, summary.skipped), (2, 0));
    // Dropping the iterator early must not hang.
    let mut inputs = read_inputs(&[root.join("three.mbox")], &ParseOptions::default());
    assert!(inputs.next().is_some());
    drop(inputs);
}
