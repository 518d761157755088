//! The `leadsift` binary as a user runs it.

use std::process::Output;

use leadsift_integration_tests::{TestDb, fixtures, leadsift_command};
use serde_json::Value;

fn run(args: &[&str]) -> Output {
    leadsift_command().args(args).output().expect("run leadsift")
}

fn stdout_lines(output: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect()
}

#[test]
fn classify_json_reports_verdicts_and_errors_per_file() {
    let dir = fixtures();
    let output = run(&["classify", "--json", dir.to_str().unwrap()]);
    assert!(!output.status.success(), "malformed inputs make the exit code non-zero");
    let lines = stdout_lines(&output);
    assert_eq!(lines.len(), 7, "one line per input file");
    let by_file = |name: &str| {
        lines
            .iter()
            .find(|l| l["path"].as_str().unwrap().ends_with(name))
            .unwrap_or_else(|| panic!("no line for {name}"))
            .clone()
    };
    for (file, verdict) in [
        ("inquiry-ru.eml", "inquiry"),
        ("newsletter-en.eml", "newsletter"),
        ("missed-call.json", "inquiry"),
        ("telegram-spam.json", "spam"),
        ("telegram-spam-again.json", "spam"),
    ] {
        let line = by_file(file);
        assert_eq!(line["verdict"], verdict, "{file}: {line}");
        let confidence = line["confidence"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&confidence));
        let reasons = line["reasons"].as_array().unwrap();
        assert!(!reasons.is_empty(), "{file} names its reasons");
        assert!(reasons.iter().all(|r| r["rule"].is_string() && r["description"].is_string()));
    }
    for file in ["broken.json", "not-a-message.eml"] {
        let line = by_file(file);
        assert!(line["error"].as_str().is_some_and(|e| !e.is_empty()), "{file}: {line}");
        assert!(line.get("verdict").is_none());
    }
}

#[test]
fn classify_reads_json_lines_from_stdin() {
    use std::io::Write;
    let mut child = leadsift_command()
        .args(["classify", "--json", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let input = "{\"channel\":\"webform\",\"text\":\"Здравствуйте, сколько стоит доставка 20 тонн щебня?\",\"from\":{\"phone\":\"8 916 204-55-81\"}}\n\
                 {\"channel\":\"telegram\"}\n";
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    let lines = stdout_lines(&output);
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["verdict"], "inquiry");
    assert_eq!(lines[0]["path"], "-#1");
    assert!(lines[1]["error"].as_str().unwrap().contains("telegram"));
    assert!(!output.status.success());
}

#[test]
fn rules_check_names_every_bad_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rules.toml");
    std::fs::write(
        &file,
        "version = 1\n\n[[rule]]\nid = \"GOOD\"\ndescription = \"ok\"\nsubject = 'hello'\nscore = { spam = 1.0 }\n\n\
         [[rule]]\nid = \"BAD_REGEX\"\ndescription = \"broken\"\nbody = '(unclosed'\nscore = { spam = 1.0 }\n\n\
         [[rule]]\nid = \"BAD_CLASS\"\ndescription = \"broken\"\nsubject = 'x'\ndecide = \"ham\"\n",
    )
    .unwrap();
    let output = run(&["rules", "check", file.to_str().unwrap()]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("rules.toml:12:"), "regex error on line 12: {stderr}");
    assert!(stderr.contains("rules.toml:19:"), "class error on line 19: {stderr}");

    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/default.toml");
    let output = run(&["rules", "check", shipped.to_str().unwrap()]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
}

#[tokio::test]
async fn import_then_manage_leads_and_lists_from_the_cli() {
    let db = TestDb::sqlite().await;
    let fixtures = fixtures();
    let output = run(&["--db", &db.url, "import", "--json", fixtures.to_str().unwrap()]);
    let summary: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        (summary["read"].as_u64(), summary["new"].as_u64(), summary["failed"].as_u64()),
        (Some(7), Some(5), Some(2))
    );
    assert_eq!(summary["by_verdict"]["spam"], 2);
    assert_eq!(summary["by_verdict"]["newsletter"], 1);
    assert_eq!(summary["by_verdict"]["inquiry"], 2);
    assert!(!output.status.success(), "failed inputs make the exit code non-zero");

    // The malformed inputs are in quarantine, with their error.
    let quarantine = stdout_lines(&run(&["--db", &db.url, "quarantine", "list", "--json"]));
    assert_eq!(quarantine.len(), 2);

    // The sender of two spam messages (and nothing else) was blacklisted automatically.
    let blacklist = stdout_lines(&run(&["--db", &db.url, "blacklist", "list", "--json"]));
    assert_eq!(blacklist.len(), 1);
    assert_eq!(blacklist[0]["target"]["value"], "telegram:58112093");
    assert_eq!(blacklist[0]["origin"], "auto");

    // Leads: the inquiry and the missed call are in contact_client; the spam is junk.
    let leads = stdout_lines(&run(&["--db", &db.url, "leads", "list", "--stage", "contact_client", "--json"]));
    assert_eq!(leads.len(), 2);
    let call = leads.iter().find(|l| l["channel"] == "call").unwrap();
    assert_eq!(call["source"], "yandex");
    assert_eq!(call["campaign"], "fasad_moscow");
    let id = call["id"].as_i64().unwrap().to_string();
    let moved = run(&["--db", &db.url, "leads", "move", &id, "qualification", "--reason", "called back"]);
    assert!(moved.status.success(), "{}", String::from_utf8_lossy(&moved.stderr));
    let refused = run(&["--db", &db.url, "leads", "move", &id, "junk"]);
    assert!(!refused.status.success(), "junk needs a reason");
    let shown: Value = serde_json::from_slice(&run(&["--db", &db.url, "leads", "show", &id, "--json"]).stdout).unwrap();
    assert_eq!(shown["lead"]["stage"], "qualification");
    assert_eq!(shown["history"][1]["reason"], "called back");

    // Admin list management, with the free-mail guard and the audit trail.
    assert!(!run(&["--db", &db.url, "blacklist", "add", "gmail.com"]).status.success());
    assert!(run(&["--db", &db.url, "blacklist", "add", "spam-seo.example", "--reason", "SEO"]).status.success());
    assert!(
        run(&["--db", &db.url, "blacklist", "remove", "telegram:58112093", "--reason", "false positive"])
            .status
            .success()
    );
    let audit = stdout_lines(&run(&["--db", &db.url, "blacklist", "list", "--audit", "--json"]));
    let actions: Vec<&str> = audit.iter().map(|a| a["action"].as_str().unwrap()).collect();
    assert_eq!(actions, vec!["removed", "added", "added"]);
    assert_eq!(audit[0]["reason"], "false positive");

    // Importing again adds nothing.
    let again: Value =
        serde_json::from_slice(&run(&["--db", &db.url, "import", "--json", fixtures.to_str().unwrap()]).stdout)
            .unwrap();
    assert_eq!((again["new"].as_u64(), again["duplicate"].as_u64()), (Some(0), Some(5)));
}
