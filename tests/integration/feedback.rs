//! Learning from managers' feedback, through the `leadsift` binary on a
//! real SQLite store: labels change the verdict of near-duplicates, and an
//! update that would junk worked inquiries is refused.

use std::io::Write;
use std::process::{Output, Stdio};

use leadsift_integration_tests::leadsift_command;
use serde_json::Value;

struct Workspace {
    _dir: tempfile::TempDir,
    db: String,
}

impl Workspace {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = format!("sqlite://{}", dir.path().join("leadsift.db").display());
        Self { _dir: dir, db }
    }

    fn run(&self, args: &[&str]) -> Output {
        let output = leadsift_command().arg("--db").arg(&self.db).args(args).output().unwrap();
        assert!(
            output.status.success(),
            "leadsift {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    fn stdout(&self, args: &[&str]) -> String {
        String::from_utf8_lossy(&self.run(args).stdout).into_owned()
    }

    /// Imports one messenger message; returns its lead.
    fn import(&self, id: &str, handle: &str, text: &str) -> Value {
        let line = serde_json::json!({
            "channel": "messenger", "id": id, "from": {"handle": handle}, "text": text,
        });
        let mut child = leadsift_command()
            .arg("--db")
            .arg(&self.db)
            .args(["import", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(format!("{line}\n").as_bytes()).unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        self.lead_for(handle)
    }

    fn lead_for(&self, handle: &str) -> Value {
        let listed = self.stdout(&["leads", "list", "--json", "--limit", "100"]);
        listed
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .find(|lead| lead["title"].as_str().is_some_and(|t| t.starts_with(handle)))
            .unwrap_or_else(|| panic!("no lead from {handle} in {listed}"))
    }
}

fn id(lead: &Value) -> String {
    lead["id"].as_i64().unwrap().to_string()
}

const GARAGE: &str = "Продам гараж на Ленина, недорого, звонить вечером";
const GARAGE_AGAIN: &str = "Продам гараж на Ленина, недорого, звоните вечером";
const FISHING: &str = "Ребята, кто поедет на рыбалку в воскресенье, нужна лодка и удочки";
const FISHING_AGAIN: &str = "Ребята, кто поедет на рыбалку в субботу, нужна лодка и удочки";

#[test]
fn a_label_changes_the_verdict_of_a_near_duplicate_and_nothing_else() {
    let ws = Workspace::new();
    let garage = ws.import("m1", "telegram:1001", GARAGE);
    ws.import("m2", "telegram:1002", FISHING);
    assert_eq!(garage["verdict"], "inquiry", "before feedback: {garage}");
    let out = ws.stdout(&["learn", "--lead", &id(&garage), "--as", "spam"]);
    assert!(out.contains("labelled spam") && out.contains("accepted"), "{out}");

    let again = ws.import("m3", "telegram:2001", GARAGE_AGAIN);
    assert_eq!(again["verdict"], "spam", "after feedback: {again}");
    assert_eq!(again["stage"], "junk");
    let reasons = again["reasons"].as_array().unwrap();
    assert!(
        reasons.iter().any(|r| r["rule"] == "model:default" && r["class"] == "spam" && r["score"].as_f64() > Some(0.0)),
        "the model's contribution is visible: {again}"
    );
    let unrelated = ws.import("m4", "telegram:2002", FISHING_AGAIN);
    assert_eq!(unrelated["verdict"], "inquiry", "an unrelated message keeps its verdict: {unrelated}");

    let history = ws.stdout(&["model", "history"]);
    assert_eq!(history.lines().count(), 1, "{history}");
    assert!(history.contains("accepted"), "{history}");
}

#[test]
fn moving_a_lead_to_junk_teaches_the_model() {
    let ws = Workspace::new();
    let garage = ws.import("m1", "telegram:1001", GARAGE);
    let out = ws.stdout(&["leads", "move", &id(&garage), "junk", "--reason", "spam"]);
    assert!(out.contains("labelled spam") && out.contains("accepted"), "{out}");
    let again = ws.import("m2", "telegram:2001", GARAGE_AGAIN);
    assert_eq!(again["verdict"], "spam", "{again}");
}

#[test]
fn an_update_that_would_junk_worked_inquiries_is_refused() {
    let ws = Workspace::new();
    let fishing = ws.import("m1", "telegram:1001", FISHING);
    assert_eq!(fishing["verdict"], "inquiry");
    // A manager worked this lead: it was a real inquiry.
    ws.run(&["leads", "move", &id(&fishing), "qualification"]);
    let again = ws.import("m2", "telegram:2001", FISHING_AGAIN);
    // A wrong label: learning it would make the model junk the worked inquiry.
    let out = ws.stdout(&["learn", "--lead", &id(&again), "--as", "spam"]);
    assert!(out.contains("refused") && out.contains("false-positive rate rose"), "{out}");

    let history = ws.stdout(&["model", "history"]);
    assert!(history.lines().next().is_some_and(|l| l.contains("refused")), "{history}");
    // The shipped model stays in force.
    let third = ws.import("m3", "telegram:3001", "Ребята, кто поедет на рыбалку в пятницу, нужна лодка и удочки");
    assert_eq!(third["verdict"], "inquiry", "{third}");

    // Correcting the label lets learning go on.
    let out = ws.stdout(&["learn", "--lead", &id(&again), "--as", "inquiry"]);
    assert!(out.contains("accepted"), "{out}");
}
