//! Scale-out: separate intake and triage processes (the real binary) over
//! Kafka and PostgreSQL, one triage process SIGKILLed midway; and
//! PostgreSQL migrations when several workers start at once.
//!
//! Kafka is librdkafka's mock cluster served by this test process; the
//! child processes reach it on 127.0.0.1 like any broker.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use leadsift_integration_tests::kafka::{KafkaBroker, read_topic};
use leadsift_integration_tests::{TestDb, leadsift_command};
use leadsift_store::{SqlStore, StoreSettings};

/// A `leadsift run` child whose stderr is kept for assertions and failure output.
struct Process {
    name: &'static str,
    child: std::process::Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl Process {
    fn start(name: &'static str, config: &Path, role: &str) -> Process {
        let mut child = leadsift_command()
            .args(["--config", config.to_str().unwrap(), "run", "--role", role])
            .env("NO_COLOR", "1")
            .env("LEADSIFT_LOG", "info,sqlx=warn,librdkafka=warn,rdkafka=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Process { name, child, log }
    }

    /// The partitions this process was last assigned (empty after a revoke).
    fn assigned(&self) -> usize {
        let log = self.log.lock().unwrap();
        for line in log.iter().rev() {
            if line.contains("partitions revoked") {
                return 0;
            }
            if line.contains("partitions assigned")
                && let Some(list) = line.split("partitions=[").nth(1)
            {
                return list.split(']').next().unwrap_or_default().split(',').filter(|p| !p.trim().is_empty()).count();
            }
        }
        0
    }

    fn dump(&self) -> String {
        let log = self.log.lock().unwrap();
        let tail = log.len().saturating_sub(40);
        format!("--- {} (last lines) ---\n{}", self.name, log[tail..].join("\n"))
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn scalar(store: &SqlStore, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(store.pool()).await.unwrap()
}

/// `count` event-JSON lines, numbered from `first`: inquiries, spam and
/// calls from 1,500 repeat senders, so leads are merged per contact.
fn write_events(folder: &Path, file: &str, first: usize, count: usize) {
    let staging = folder.join(format!(".{file}.part"));
    let mut out = std::io::BufWriter::new(std::fs::File::create(&staging).unwrap());
    for i in first..first + count {
        let sender = i % 1500;
        let line = match i % 3 {
            0 => serde_json::json!({
                "channel": "webform", "id": format!("kill-{i}"), "received_at": "2026-11-20T10:15:00Z",
                "from": {"email": format!("client{sender}@firm{}.example", sender % 37), "name": "Client"},
                "text": format!("Добрый день! Сколько стоит монтаж фасада, объект {i}? Пришлите коммерческое предложение."),
                "utm": {"source": "yandex", "medium": "cpc", "campaign": "fasad"}
            }),
            1 => serde_json::json!({
                "channel": "email", "id": format!("kill-{i}"), "received_at": "2026-11-20T10:16:00Z",
                "from": {"email": format!("promo{sender}@spam-seo.example")},
                "subject": "Продвижение сайта в ТОП-10",
                "text": "Продвижение сайта, вывод в топ Яндекса, база клиентов. Пассивный доход!"
            }),
            _ => serde_json::json!({
                "channel": "call", "id": format!("kill-{i}"), "received_at": "2026-11-20T10:17:00Z",
                "from": {"phone": format!("+7916{:07}", sender)},
                "to": "+74951234501", "call": {"duration_secs": 95, "answered": false}
            }),
        };
        writeln!(out, "{line}").unwrap();
    }
    out.flush().unwrap();
    drop(out);
    // Renamed into place whole, so the drop folder never reads half a file.
    std::fs::rename(&staging, folder.join(file)).unwrap();
}

fn config(dir: &Path, db_url: &str, broker: &KafkaBroker) -> std::path::PathBuf {
    let path = dir.join("leadsift.toml");
    std::fs::write(
        &path,
        format!(
            "[database]\nurl = \"{db_url}\"\nmax_connections = 4\n\
             [queue]\nurl = \"kafka://{}\"\ntopic = \"{}\"\ndead_letter_topic = \"{}\"\ngroup = \"{}\"\n\
             session_timeout_ms = 6000\ndrain_deadline_ms = 3000\n\
             [intake]\ndrop_folder = \"{}\"\n[http]\nlisten = \"127.0.0.1:0\"\n\
             [rules]\npath = \"{}\"\n",
            broker.brokers,
            broker.topic,
            broker.dead_letter_topic,
            broker.group,
            dir.join("inbox").display(),
            dir.join("no-rules-file.toml").display(),
        ),
    )
    .unwrap();
    path
}

/// The number of messages; `LEADSIFT_TEST_KILL_MESSAGES` makes a shorter run while iterating.
fn kill_test_messages() -> usize {
    std::env::var("LEADSIFT_TEST_KILL_MESSAGES").ok().and_then(|n| n.parse().ok()).unwrap_or(20_000)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intake_and_two_triage_processes_over_kafka_survive_a_sigkill() {
    let Some(db) = TestDb::postgres().await else { return };
    let broker = KafkaBroker::mock(6);
    let dir = tempfile::tempdir().unwrap();
    let inbox = dir.path().join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    let config = config(dir.path(), &db.url, &broker);
    let total = kill_test_messages();
    let files = 10;
    let per_file = total / files;
    let started = Instant::now();

    let mut victim = Process::start("triage-a", &config, "triage");
    let survivor = Process::start("triage-b", &config, "triage");
    let intake = Process::start("intake", &config, "intake");
    let fail = |what: String, processes: &[&Process]| -> ! {
        let logs: Vec<String> = processes.iter().map(|p| p.dump()).collect();
        panic!("{what}\n{}", logs.join("\n"));
    };

    // Both triage processes own partitions before the load starts, so the kill hits one that works.
    let deadline = Instant::now() + Duration::from_secs(60);
    while victim.assigned() == 0 || survivor.assigned() == 0 || victim.assigned() + survivor.assigned() != 6 {
        if Instant::now() > deadline {
            fail("the two triage processes did not share the 6 partitions".into(), &[&victim, &survivor, &intake]);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Half the files, then SIGKILL one triage process while it is busy.
    for f in 0..files / 2 {
        write_events(&inbox, &format!("batch-{f:02}.jsonl"), f * per_file, per_file);
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let stored = scalar(&db.store, "SELECT COUNT(*) FROM messages").await;
        if stored >= (total / 4) as i64 {
            break;
        }
        if Instant::now() > deadline {
            fail(format!("only {stored} messages stored before the kill"), &[&victim, &survivor, &intake]);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    victim.child.kill().unwrap(); // SIGKILL: no drain, no commit, no leaving the group
    victim.child.wait().unwrap();
    let stored_at_kill = scalar(&db.store, "SELECT COUNT(*) FROM messages").await;
    for f in files / 2..files {
        write_events(&inbox, &format!("batch-{f:02}.jsonl"), f * per_file, per_file);
    }

    // The survivor takes over the victim's partitions once its session times
    // out, and gets everything the victim had not committed.
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let stored = scalar(&db.store, "SELECT COUNT(*) FROM messages").await;
        if stored == (files * per_file) as i64 {
            break;
        }
        assert!(stored <= (files * per_file) as i64, "more messages stored than sent: {stored}");
        if Instant::now() > deadline {
            fail(
                format!("{stored} of {} messages stored after 300 s", files * per_file),
                &[&victim, &survivor, &intake],
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let elapsed = started.elapsed();

    // Every message exactly once, no lead twice, nothing dead-lettered or quarantined.
    let duplicated = scalar(
        &db.store,
        "SELECT COUNT(*) FROM (SELECT dedup_key FROM messages GROUP BY dedup_key HAVING COUNT(*) > 1) d",
    )
    .await;
    assert_eq!(duplicated, 0, "messages stored twice");
    let open_leads_twice = scalar(
        &db.store,
        "SELECT COUNT(*) FROM (SELECT contact_id FROM leads WHERE stage NOT IN ('junk', 'converted') \
         GROUP BY contact_id HAVING COUNT(*) > 1) d",
    )
    .await;
    assert_eq!(open_leads_twice, 0, "a contact got two open leads");
    let inquiry_leads = scalar(&db.store, "SELECT COUNT(*) FROM leads WHERE stage NOT IN ('junk', 'converted')").await;
    let inquiry_contacts =
        scalar(&db.store, "SELECT COUNT(DISTINCT contact_id) FROM leads WHERE stage NOT IN ('junk', 'converted')")
            .await;
    assert_eq!(inquiry_leads, inquiry_contacts);
    assert!(
        inquiry_leads > 0 && inquiry_leads <= 3000,
        "{inquiry_leads} open leads from 1,500 web-form and 1,500 phone senders"
    );
    let orphans = scalar(&db.store, "SELECT COUNT(*) FROM messages m WHERE m.lead_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM leads l WHERE l.id = m.lead_id)").await;
    assert_eq!(orphans, 0);
    assert_eq!(scalar(&db.store, "SELECT COUNT(*) FROM quarantine").await, 0, "nothing quarantined");
    let dead = read_topic(&broker.brokers, &broker.dead_letter_topic, Duration::from_secs(2)).await;
    assert!(dead.is_empty(), "dead-letter topic holds {} messages", dead.len());
    assert_eq!(survivor.assigned(), 6, "the survivor took over the killed process's partitions");
    eprintln!(
        "kill test: {} messages, {stored_at_kill} stored when triage-a was killed, all stored once after {:.1} s",
        files * per_file,
        elapsed.as_secs_f64()
    );
}

/// Several workers starting together against one fresh database: sqlx's
/// migrator takes a PostgreSQL advisory lock, so each migration runs once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_startups_migrate_postgres_once() {
    let Some(url) = TestDb::postgres_url().await else { return };
    let mut starts = tokio::task::JoinSet::new();
    for _ in 0..6 {
        let url = url.clone();
        starts.spawn(async move { SqlStore::connect(&StoreSettings::new(url)).await });
    }
    let mut stores = Vec::new();
    while let Some(started) = starts.join_next().await {
        stores.push(started.unwrap().expect("every concurrent start succeeds"));
    }
    let store = &stores[0];
    let applied = scalar(store, "SELECT COUNT(*) FROM _sqlx_migrations").await;
    let distinct = scalar(store, "SELECT COUNT(DISTINCT version) FROM _sqlx_migrations").await;
    assert!(applied >= 1);
    assert_eq!(applied, distinct, "a migration was applied twice");
    assert_eq!(scalar(store, "SELECT COUNT(*) FROM _sqlx_migrations WHERE NOT success").await, 0);
    for store in &stores {
        store.close().await;
    }
    // Dropped the same way TestDb drops its databases.
    let admin = leadsift_integration_tests::postgres_admin_url();
    let name = url.rsplit('/').next().unwrap().to_owned();
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
        .execute(&mut conn)
        .await
        .unwrap();
}
