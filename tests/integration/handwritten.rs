//! Hand-written messages over every channel and class (tests/handwritten),
//! through `leadsift classify --json -` with the built-in rules and model: no real
//! inquiry may be junked, and the share classified right must not fall.

use std::io::Write;
use std::process::Stdio;

use leadsift_integration_tests::leadsift_command;
use serde_json::Value;

/// (right, inquiries junked, total) of the built-in classifier on one fixture set.
fn score(name: &str) -> (usize, Vec<String>, usize) {
    // Beside tests/fixtures, not in it: other tests classify every file there.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/handwritten");
    let input = std::fs::read(dir.join(format!("{name}.jsonl"))).unwrap();
    let labels = std::fs::read_to_string(dir.join(format!("{name}.labels"))).unwrap();
    let labels: Vec<&str> = labels.lines().collect();
    let db = tempfile::tempdir().unwrap();
    let mut child = leadsift_command()
        .arg("--db")
        .arg(format!("sqlite://{}", db.path().join("t.db").display()))
        .args(["classify", "--json", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&input).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let verdicts: Vec<Value> =
        String::from_utf8_lossy(&output.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(verdicts.len(), labels.len(), "one verdict per message");
    let mut right = 0;
    let mut junked = Vec::new();
    for (verdict, label) in verdicts.iter().zip(&labels) {
        let got = verdict["verdict"].as_str().unwrap_or_else(|| panic!("no verdict: {verdict}"));
        if got == *label {
            right += 1;
        } else if *label == "inquiry" {
            junked.push(format!("{} as {got}: {}", verdict["dedup_key"], verdict["reasons"]));
        }
    }
    (right, junked, labels.len())
}

#[test]
fn no_handwritten_inquiry_is_junked_and_most_messages_are_right() {
    for (name, at_least) in [("checked", 43), ("blind", 60)] {
        let (right, junked, total) = score(name);
        println!("{name}: {right} / {total} right, {} inquiries junked", junked.len());
        assert!(junked.is_empty(), "{name}: real inquiries junked: {junked:#?}");
        assert!(right >= at_least, "{name}: {right} / {total} right, expected at least {at_least}");
    }
}
