//! The durable pipeline under crashes, and the daemon's hot reload, drop
//! folder and HTTP endpoints.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use leadsift_integration_tests::{TestDb, leadsift_command, write_synthetic_mail};
use serde_json::Value;

async fn count(db: &TestDb, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(db.store.pool()).await.unwrap()
}

/// SIGKILL `leadsift import` midway, run it again: every message is stored
/// exactly once, no lead is duplicated, the queue is empty.
async fn import_survives_sigkill(db: TestDb) {
    const MESSAGES: usize = 3_000;
    let dir = tempfile::tempdir().unwrap();
    write_synthetic_mail(dir.path(), MESSAGES);
    let mail = dir.path().to_str().unwrap().to_owned();

    let mut child = leadsift_command()
        .args(["--db", &db.url, "import", "--json", &mail])
        .env("LEADSIFT__QUEUE__LEASE_SECS", "1")
        .env("LEADSIFT__TRIAGE__BATCH_SIZE", "64")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        let stored = count(&db, "SELECT COUNT(*) FROM messages").await;
        if stored >= 300 {
            break;
        }
        assert!(child.try_wait().unwrap().is_none(), "import finished before it could be killed; make the test bigger");
        assert!(started.elapsed() < Duration::from_secs(120), "import made no progress");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let stored_at_kill = count(&db, "SELECT COUNT(*) FROM messages").await;
    assert!(stored_at_kill < MESSAGES as i64, "killed midway ({stored_at_kill} stored)");

    let output = leadsift_command()
        .args(["--db", &db.url, "import", "--json", &mail])
        .env("LEADSIFT__QUEUE__LEASE_SECS", "1")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let summary: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(summary["read"], MESSAGES as u64);
    assert_eq!(summary["new"].as_u64().unwrap() + summary["duplicate"].as_u64().unwrap(), MESSAGES as u64);

    assert_eq!(count(&db, "SELECT COUNT(*) FROM messages").await, MESSAGES as i64);
    assert_eq!(count(&db, "SELECT COUNT(DISTINCT dedup_key) FROM messages").await, MESSAGES as i64);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM inbox").await, 0);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM quarantine").await, 0);
    // Every message that should have a lead has exactly one, and lead counters agree with the messages.
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM messages WHERE lead_id IS NULL AND verdict IN ('inquiry', 'spam', 'non_target')"
        )
        .await,
        0
    );
    assert_eq!(
        count(&db, "SELECT CAST(COALESCE(SUM(message_count), 0) AS BIGINT) FROM leads").await,
        count(&db, "SELECT COUNT(*) FROM messages WHERE lead_id IS NOT NULL").await
    );
    // One stage-history row per lead from triage, never two.
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM lead_stage_changes WHERE actor = 'triage'").await,
        count(&db, "SELECT COUNT(*) FROM leads").await
    );
    // Repeat inquiries from one contact share one open lead.
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM (SELECT contact_id FROM leads WHERE stage = 'contact_client' GROUP BY contact_id HAVING COUNT(*) > 1) AS t").await,
        0
    );
}

#[tokio::test]
async fn sqlite_import_survives_sigkill() {
    import_survives_sigkill(TestDb::sqlite().await).await;
}

#[tokio::test]
async fn postgres_import_survives_sigkill() {
    let Some(db) = TestDb::postgres().await else { return };
    import_survives_sigkill(db).await;
}

pub(crate) struct Daemon {
    child: std::process::Child,
    pub(crate) address: String,
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Daemon {
    pub(crate) fn start(config: &std::path::Path) -> Daemon {
        Self::spawn(leadsift_command().args(["--config", config.to_str().unwrap(), "run"]))
    }

    pub(crate) fn spawn(command: &mut std::process::Command) -> Daemon {
        let mut child = command.env("NO_COLOR", "1").stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = std::sync::Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("HTTP server listening")
                    && let Some(rest) = line.split("address=").nth(1)
                {
                    let _ = tx.send(rest.split_whitespace().next().unwrap_or_default().to_owned());
                }
                sink.lock().unwrap().push(line);
            }
        });
        let address = rx.recv_timeout(Duration::from_secs(30)).expect("daemon announced its HTTP address");
        Daemon { child, address, log }
    }

    pub(crate) fn log_contains(&self, needle: &str) -> bool {
        self.log_count(needle) > 0
    }

    pub(crate) fn log_count(&self, needle: &str) -> usize {
        self.log.lock().unwrap().iter().filter(|l| l.contains(needle)).count()
    }

    pub(crate) fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    pub(crate) fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    pub(crate) async fn metrics(&self) -> String {
        reqwest::get(format!("http://{}/metrics", self.address)).await.unwrap().text().await.unwrap()
    }

    /// SIGKILL: no shutdown, no flush.
    pub(crate) fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    pub(crate) async fn get(&self, path: &str) -> (u16, String) {
        let response = reqwest::get(format!("http://{}{path}", self.address)).await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) async fn wait_for(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < Duration::from_secs(30), "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn mail(id: &str, subject: &str) -> String {
    format!(
        "From: <{id}@client.example>\nTo: sales@our.example\nSubject: {subject}\nMessage-ID: <{id}@client.example>\n\
         Date: Fri, 20 Nov 2026 10:00:00 +0000\n\nHello, a question about your services.\n"
    )
}

const RULES_V1: &str = "version = 1\n\n[[rule]]\nid = \"TEST_MARKER\"\ndescription = \"test marker in subject\"\nsubject = 'ZZMARKER'\ndecide = \"non_target\"\n";

#[tokio::test]
async fn daemon_hot_reloads_rules_keeps_old_ones_on_error_and_serves_metrics() {
    let db = TestDb::sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.toml");
    let inbox = dir.path().join("inbox");
    std::fs::write(&rules, RULES_V1).unwrap();
    let config = dir.path().join("leadsift.toml");
    std::fs::write(
        &config,
        format!(
            "[database]\nurl = \"{}\"\n[rules]\npath = \"{}\"\npoll_ms = 100\n[intake]\ndrop_folder = \"{}\"\n\
             [http]\nlisten = \"127.0.0.1:0\"\n[triage]\nidle_poll_ms = 50\n",
            db.url,
            rules.display(),
            inbox.display()
        ),
    )
    .unwrap();
    let daemon = Daemon::start(&config);
    let (status, body) = daemon.get("/healthz").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["status"], "ok");

    // The drop folder picks up a message; the rule in force decides it.
    std::fs::write(inbox.join("one.eml"), mail("one", "ZZMARKER please")).unwrap();
    wait_for("first message", async || count(&db, "SELECT COUNT(*) FROM messages").await == 1).await;
    assert_eq!(count(&db, "SELECT COUNT(*) FROM messages WHERE verdict = 'non_target'").await, 1);
    assert!(inbox.join(".processed").read_dir().unwrap().count() == 1, "file moved after it was queued");

    // A broken rules file (bad regex on line 6) is refused; the old rules stay.
    std::fs::write(&rules, RULES_V1.replace("'ZZMARKER'", "'(ZZMARKER'")).unwrap();
    wait_for("reload error in the log", async || daemon.log_contains("rules.toml:6:")).await;
    let (_, metrics) = daemon.get("/metrics").await;
    assert!(metrics.contains("leadsift_rules_reloads_total{result=\"error\"} 1"), "{metrics}");
    std::fs::write(inbox.join("two.eml"), mail("two", "ZZMARKER again")).unwrap();
    wait_for("second message", async || count(&db, "SELECT COUNT(*) FROM messages").await == 2).await;
    assert_eq!(count(&db, "SELECT COUNT(*) FROM messages WHERE verdict = 'non_target'").await, 2);

    // A valid new file takes effect.
    std::fs::write(&rules, RULES_V1.replace("ZZMARKER", "QQOTHER")).unwrap();
    wait_for("reload ok", async || {
        daemon.get("/metrics").await.1.contains("leadsift_rules_reloads_total{result=\"ok\"} 1")
    })
    .await;
    std::fs::write(inbox.join("three.eml"), mail("three", "ZZMARKER third")).unwrap();
    wait_for("third message", async || count(&db, "SELECT COUNT(*) FROM messages").await == 3).await;
    assert_eq!(count(&db, "SELECT COUNT(*) FROM messages WHERE verdict = 'non_target'").await, 2);

    // Bad input in the drop folder is quarantined, not lost, and the daemon goes on.
    std::fs::write(inbox.join("bad.json"), "{not json").unwrap();
    wait_for("quarantine", async || count(&db, "SELECT COUNT(*) FROM quarantine").await == 1).await;
    // The file is moved after its quarantine record is written: wait for the move too.
    wait_for("the file in .failed", async || inbox.join(".failed").read_dir().unwrap().count() == 1).await;
    let (_, metrics) = daemon.get("/metrics").await;
    for expected in [
        "leadsift_messages_triaged_total{channel=\"email\",verdict=\"non_target\"} 2",
        "leadsift_quarantined_total{stage=\"intake\"} 1",
        "leadsift_triage_latency_seconds_count",
        "leadsift_triage_phase_seconds_count{phase=\"classify\"}",
        "leadsift_triage_phase_seconds_count{phase=\"store\"}",
        "leadsift_triage_phase_seconds_count{phase=\"idle\"}",
        "leadsift_queue_depth",
        "leadsift_rule_hits_total{rule=\"TEST_MARKER\"} 2",
    ] {
        assert!(metrics.contains(expected), "missing {expected} in\n{metrics}");
    }
}

/// The main job with no configuration at all: no config file, no rules file
/// (built-in rules), default drop folder under the working directory.
#[tokio::test]
async fn daemon_runs_with_no_configuration_at_all() {
    let db = TestDb::sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::spawn(
        leadsift_command()
            .args(["--db", &db.url, "run"])
            .current_dir(dir.path())
            .env("LEADSIFT__HTTP__LISTEN", "127.0.0.1:0"),
    );
    let inbox = dir.path().join("inbox");
    wait_for("the default drop folder", async || inbox.join(".processed").is_dir()).await;
    std::fs::write(inbox.join("hello.eml"), mail("hello", "Сколько стоит доставка?")).unwrap();
    wait_for("the message", async || count(&db, "SELECT COUNT(*) FROM leads").await == 1).await;
    let (status, body) = daemon.get("/healthz").await;
    assert_eq!(status, 200, "{body}");
    assert!(daemon.log_contains("built-in default rules"));
}
