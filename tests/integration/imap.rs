//! IMAP intake against a real Dovecot: `leadsift run` reads appended mail,
//! picks new mail up with IDLE (and by polling when the server has no
//! IDLE), survives SIGKILL, handles a UIDVALIDITY change, retries an
//! unreachable server, acts on verdicts and learns from folders.

use std::path::Path;
use std::time::{Duration, Instant};

use leadsift_core::LeadStore as _;
use leadsift_integration_tests::mailservers::{Dovecot, IMAP_PASSWORD, free_port};
use leadsift_integration_tests::{TestDb, leadsift_command};

pub(crate) use crate::pipeline::Daemon;

/// `leadsift run` on `config`, with the test IMAP password and IMAP debug logs.
pub(crate) fn start_daemon(config: &Path) -> Daemon {
    Daemon::spawn(
        leadsift_command()
            .args(["--config", config.to_str().unwrap(), "run"])
            .env("LEADSIFT_TEST_IMAP_PASSWORD", IMAP_PASSWORD)
            .env("LEADSIFT_LOG", "info,sqlx=warn,leadsift_imap=debug"),
    )
}

pub async fn count(db: &TestDb, sql: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned())).fetch_one(db.store.pool()).await.unwrap()
}

pub async fn wait_until(what: &str, limit: Duration, daemon: &Daemon, mut check: impl AsyncFnMut() -> bool) {
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < limit, "timed out waiting for {what}; daemon log:\n{}", daemon.log_text());
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A config file: the test database, no drop folder, a random HTTP port, then `extra`.
pub fn write_config(dir: &Path, db: &TestDb, extra: &str) -> std::path::PathBuf {
    let path = dir.join("leadsift.toml");
    std::fs::write(
        &path,
        format!(
            "[database]\nurl = \"{}\"\n[intake]\ndrop_folder = \"\"\n[http]\nlisten = \"127.0.0.1:0\"\n\
             [triage]\nidle_poll_ms = 50\n[queue]\nlease_secs = 2\n{extra}",
            db.url
        ),
    )
    .unwrap();
    path
}

pub fn inquiry(id: &str) -> String {
    format!(
        "From: Иван Петров <ivan.{id}@client.example>\nTo: sales@our.example\nSubject: Запрос цены {id}\n\
         Message-ID: <{id}@client.example>\nDate: Fri, 20 Nov 2026 10:00:00 +0000\nMIME-Version: 1.0\n\
         Content-Type: text/plain; charset=utf-8\n\n\
         Добрый день! Сколько стоит монтаж фасада? Пришлите коммерческое предложение.\n"
    )
}

pub fn spam(id: &str) -> String {
    format!(
        "From: <promo.{id}@spam-seo.example>\nTo: sales@our.example\nSubject: Продвижение сайта в ТОП-10 {id}\n\
         Message-ID: <{id}@spam-seo.example>\nDate: Fri, 20 Nov 2026 10:00:00 +0000\nMIME-Version: 1.0\n\
         Content-Type: text/plain; charset=utf-8\n\n\
         Продвижение сайта, вывод в топ Яндекса, база клиентов. Пассивный доход! https://a.example \
         https://b.example https://c.example\n"
    )
}

fn newsletter(id: &str) -> String {
    format!(
        "From: <news@digest.example>\nTo: sales@our.example\nSubject: Digest {id}\nMessage-ID: <{id}@digest.example>\n\
         List-Unsubscribe: <https://digest.example/u>\nList-Id: <digest.example>\nPrecedence: bulk\n\
         Date: Fri, 20 Nov 2026 10:00:00 +0000\n\nWeekly digest. Unsubscribe here.\n"
    )
}

async fn checkpoint(db: &TestDb, folder: &str) -> Option<(i64, i64)> {
    sqlx::query_as::<_, (i64, i64)>("SELECT uidvalidity, last_uid FROM imap_checkpoints WHERE folder = $1")
        .bind(folder)
        .fetch_optional(db.store.pool())
        .await
        .unwrap()
}

/// (1) Mail appended to INBOX becomes stored messages and leads; a broken
/// mail is quarantined; spam is moved to Junk, inquiries are flagged, mail
/// stays unread; a mail a person then moves from Junk to "Not junk"
/// becomes one inquiry label.
#[tokio::test]
async fn appended_mail_is_triaged_acted_on_and_learnt_from() {
    let Some(dovecot) = Dovecot::start() else { return };
    let db = TestDb::sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    // Neither "Junk" (the spam action's target) nor "Not junk" (a learning folder) exists: leadsift creates them.
    dovecot
        .append(
            "INBOX",
            &[inquiry("in-1"), spam("sp-1"), newsletter("nl-1"), "# Notes\n\nnot an email at all\n".to_owned()],
        )
        .await;
    let account = dovecot.account_toml(
        "sales",
        "poll_secs = 1\nlearn = { \"Not junk\" = \"inquiry\" }\n[imap.accounts.actions]\nspam_folder = \"Junk\"\n\
         flag_inquiries = true\n",
    );
    let config = write_config(dir.path(), &db, &account);
    let daemon = start_daemon(&config);

    let limit = Duration::from_secs(30);
    wait_until("3 stored messages", limit, &daemon, async || count(&db, "SELECT COUNT(*) FROM messages").await == 3)
        .await;
    assert_eq!(count(&db, "SELECT COUNT(*) FROM messages WHERE channel = 'email'").await, 3);
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM messages WHERE dedup_key LIKE '%in-1@client.example%' AND verdict = 'inquiry'"
        )
        .await,
        1
    );
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM messages WHERE dedup_key LIKE '%sp-1@spam-seo.example%' AND verdict = 'spam'")
            .await,
        1
    );
    assert_eq!(count(&db, "SELECT COUNT(*) FROM leads WHERE stage = 'contact_client' AND channel = 'email'").await, 1);
    // The broken mail is kept with its raw bytes and its IMAP origin.
    wait_until("quarantine", limit, &daemon, async || count(&db, "SELECT COUNT(*) FROM quarantine").await == 1).await;
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM quarantine WHERE origin LIKE 'imap://sales@127.0.0.1/INBOX;UIDVALIDITY=%;UID=4'"
        )
        .await,
        1
    );
    assert_eq!(checkpoint(&db, "INBOX").await.map(|c| c.1), Some(4));

    // Post-triage actions: spam moved to Junk, the inquiry flagged, nothing marked read.
    wait_until("spam moved to Junk", limit, &daemon, async || dovecot.list("Junk").await.len() == 1).await;
    wait_until("inquiry flagged", limit, &daemon, async || {
        dovecot.list("INBOX").await.iter().any(|(_, flags)| flags.iter().any(|f| f.contains("Flagged")))
    })
    .await;
    let inbox = dovecot.list("INBOX").await;
    assert_eq!(inbox.len(), 3, "inquiry, newsletter and the broken mail stay: {inbox:?}");
    assert!(inbox.iter().all(|(_, flags)| !flags.iter().any(|f| f.contains("Seen"))), "BODY.PEEK keeps mail unread");
    let flagged = inbox.iter().filter(|(_, flags)| flags.iter().any(|f| f.contains("Flagged"))).count();
    assert_eq!(flagged, 1, "{inbox:?}");

    // A person disagrees and moves the spam mail to "Not junk": one label, once.
    let mut session = dovecot.session().await;
    session.select("Junk").await.unwrap();
    session.uid_mv("1:*", "Not junk").await.unwrap();
    session.logout().await.ok();
    wait_until("feedback", limit, &daemon, async || count(&db, "SELECT COUNT(*) FROM imap_feedback").await == 1).await;
    let feedback = db.store.imap_feedback(10).await.unwrap();
    assert_eq!(feedback.len(), 1);
    assert_eq!(feedback[0].label, leadsift_core::Verdict::Inquiry);
    assert_eq!(feedback[0].folder, "Not junk");
    assert!(feedback[0].dedup_key.contains("sp-1@spam-seo.example"), "{:?}", feedback[0]);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(count(&db, "SELECT COUNT(*) FROM imap_feedback").await, 1, "recorded once");
    assert_eq!(count(&db, "SELECT COUNT(*) FROM messages").await, 3, "learning folders are not triaged");
    // The label reaches the table the model learns from.
    let labels = db.store.feedback(0, 10).await.unwrap();
    assert_eq!(labels.len(), 1, "{labels:?}");
    assert_eq!(labels[0].label, leadsift_core::Verdict::Inquiry);
    assert_eq!(labels[0].origin, leadsift_core::FeedbackOrigin::ImapFolder);
    assert_eq!(labels[0].actor, "imap:sales/Not junk", "{:?}", labels[0]);
}

/// (2) With IDLE, a mail appended while the worker waits is stored within 2 s
/// (polling is set to 60 s, so only IDLE can explain it).
#[tokio::test]
async fn idle_picks_new_mail_up_within_two_seconds() {
    let Some(dovecot) = Dovecot::start() else { return };
    let db = TestDb::sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &db, &dovecot.account_toml("sales", "idle = true\npoll_secs = 60\n"));
    let daemon = start_daemon(&config);
    let limit = Duration::from_secs(20);
    wait_until("first sync", limit, &daemon, async || checkpoint(&db, "INBOX").await.is_some()).await;
    // Give the worker a moment to enter IDLE after its first sync.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut latencies = Vec::new();
    for i in 0..3 {
        let started = Instant::now();
        dovecot.append("INBOX", &[inquiry(&format!("idle-{i}"))]).await;
        wait_until("the IDLE mail", Duration::from_secs(10), &daemon, async || {
            count(&db, "SELECT COUNT(*) FROM messages").await == i + 1
        })
        .await;
        latencies.push(started.elapsed());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    eprintln!("IMAP IDLE latency, APPEND -> triaged and stored: {latencies:?}");
    for latency in &latencies {
        assert!(*latency < Duration::from_secs(2), "IDLE latency {latency:?} >= 2 s");
    }
}

/// (2b) A server without IDLE is polled.
#[tokio::test]
async fn server_without_idle_is_polled() {
    let Some(dovecot) = Dovecot::start_without_idle() else { return };
    let db = TestDb::sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &db, &dovecot.account_toml("sales", "idle = true\npoll_secs = 1\n"));
    let daemon = start_daemon(&config);
    let limit = Duration::from_secs(20);
    wait_until("connected without IDLE", limit, &daemon, async || daemon.log_count("idle=false") >= 1).await;
    dovecot.append("INBOX", &[inquiry("poll-1")]).await;
    wait_until("the polled mail", limit, &daemon, async || count(&db, "SELECT COUNT(*) FROM messages").await == 1)
        .await;
}

/// (3) SIGKILL `leadsift run` while it works through a folder, restart it:
/// every mail is stored exactly once.
#[tokio::test]
async fn sigkill_mid_batch_then_restart_stores_every_mail_once() {
    let Some(dovecot) = Dovecot::start() else { return };
    sigkill_mid_batch(dovecot, TestDb::sqlite().await).await;
}

#[tokio::test]
async fn postgres_sigkill_mid_batch_then_restart_stores_every_mail_once() {
    let Some(dovecot) = Dovecot::start() else { return };
    let Some(db) = TestDb::postgres().await else { return };
    sigkill_mid_batch(dovecot, db).await;
}

async fn sigkill_mid_batch(dovecot: Dovecot, db: TestDb) {
    const MAILS: i64 = 400;
    let dir = tempfile::tempdir().unwrap();
    let mails: Vec<String> =
        (0..MAILS).map(|i| if i % 3 == 0 { spam(&format!("k-{i}")) } else { inquiry(&format!("k-{i}")) }).collect();
    dovecot.append("INBOX", &mails).await;
    let config = write_config(dir.path(), &db, &dovecot.account_toml("sales", "batch_size = 10\npoll_secs = 1\n"));

    let daemon = start_daemon(&config);
    wait_until("some progress", Duration::from_secs(60), &daemon, async || {
        count(&db, "SELECT COUNT(*) FROM messages").await >= 30
    })
    .await;
    daemon.kill();
    let stored_at_kill = count(&db, "SELECT COUNT(*) FROM messages").await;
    let queued_at_kill = count(&db, "SELECT COUNT(*) FROM inbox").await;
    let checkpoint_at_kill = checkpoint(&db, "INBOX").await.map_or(0, |c| c.1);
    eprintln!("killed with {stored_at_kill} stored, {queued_at_kill} queued, checkpoint at UID {checkpoint_at_kill}");
    assert!(stored_at_kill < MAILS, "killed midway");

    let daemon = start_daemon(&config);
    wait_until("every mail", Duration::from_secs(120), &daemon, async || {
        count(&db, "SELECT COUNT(*) FROM messages").await >= MAILS
            && count(&db, "SELECT COUNT(*) FROM inbox").await == 0
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(count(&db, "SELECT COUNT(*) FROM messages").await, MAILS);
    assert_eq!(count(&db, "SELECT COUNT(DISTINCT dedup_key) FROM messages").await, MAILS);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM inbox").await, 0);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM quarantine").await, 0);
    assert_eq!(checkpoint(&db, "INBOX").await.map(|c| c.1), Some(MAILS));
    drop(daemon);
}

/// (4) The folder is deleted and created again (new UIDVALIDITY) with the old
/// mail plus new mail: the folder is read again, old mail is not stored
/// twice, new mail is stored.
#[tokio::test]
async fn uidvalidity_change_rereads_without_loss_or_duplicates() {
    let Some(dovecot) = Dovecot::start() else { return };
    let db = TestDb::sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let mut session = dovecot.session().await;
    session.create("Sales").await.unwrap();
    session.logout().await.ok();
    let old: Vec<String> = (0..3).map(|i| inquiry(&format!("uv-old-{i}"))).collect();
    dovecot.append("Sales", &old).await;
    let config =
        write_config(dir.path(), &db, &dovecot.account_toml("sales", "folders = [\"Sales\"]\npoll_secs = 1\n"));
    let daemon = start_daemon(&config);
    let limit = Duration::from_secs(30);
    wait_until("old mail", limit, &daemon, async || count(&db, "SELECT COUNT(*) FROM messages").await == 3).await;
    wait_until("checkpoint", limit, &daemon, async || checkpoint(&db, "Sales").await.is_some_and(|c| c.1 == 3)).await;
    let (first_validity, _) = checkpoint(&db, "Sales").await.unwrap();

    let mut session = dovecot.session().await;
    session.delete("Sales").await.unwrap();
    session.create("Sales").await.unwrap();
    let new_validity = session.select("Sales").await.unwrap().uid_validity.unwrap();
    session.logout().await.ok();
    assert_ne!(i64::from(new_validity), first_validity, "Dovecot gave the new folder a new UIDVALIDITY");
    let mut again = old.clone();
    again.push(inquiry("uv-new-1"));
    again.push(spam("uv-new-2"));
    dovecot.append("Sales", &again).await;

    wait_until("the new UIDVALIDITY read through", limit, &daemon, async || {
        checkpoint(&db, "Sales").await == Some((i64::from(new_validity), 5))
    })
    .await;
    wait_until("new mail", limit, &daemon, async || count(&db, "SELECT COUNT(*) FROM messages").await == 5).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(count(&db, "SELECT COUNT(*) FROM messages").await, 5);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM inbox").await, 0);
    let metrics = daemon.metrics().await;
    assert!(metrics.contains("leadsift_imap_uidvalidity_changes_total{account=\"sales\"} 1"), "{metrics}");
}

/// (5) An unreachable server: a clear error, retries with backoff, no
/// crash; once the server appears the mail comes through.
#[tokio::test]
async fn unreachable_server_is_retried_without_crashing() {
    if !Dovecot::installed() {
        return;
    }
    let port = free_port();
    let db = TestDb::sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let account = format!(
        "[[imap.accounts]]\nname = \"sales\"\nhost = \"127.0.0.1\"\nport = {port}\nsecurity = \"plain\"\n\
         username = \"sales\"\npassword_env = \"LEADSIFT_TEST_IMAP_PASSWORD\"\nbackoff_initial_ms = 200\n\
         backoff_max_ms = 1000\ntimeout_secs = 5\npoll_secs = 1\n"
    );
    let config = write_config(dir.path(), &db, &account);
    let mut daemon = start_daemon(&config);
    let needle = format!("cannot connect to IMAP server 127.0.0.1:{port}");
    wait_until("repeated connect errors", Duration::from_secs(20), &daemon, async || daemon.log_count(&needle) >= 3)
        .await;
    assert!(daemon.is_running(), "the daemon keeps running");
    assert!(daemon.log_text().contains("reconnecting after a delay"), "{}", daemon.log_text());
    let metrics = daemon.metrics().await;
    assert!(metrics.contains("leadsift_imap_errors_total{account=\"sales\",kind=\"connect\"}"), "{metrics}");
    let health = reqwest::get(format!("http://{}/healthz", daemon.address)).await.unwrap();
    assert_eq!(health.status().as_u16(), 200);

    // The server comes up: the worker connects on its next try.
    let dovecot = Dovecot::start_on(port).expect("dovecot installed");
    dovecot.append("INBOX", &[inquiry("late-1")]).await;
    wait_until("mail after recovery", Duration::from_secs(20), &daemon, async || {
        count(&db, "SELECT COUNT(*) FROM messages").await == 1
    })
    .await;
    assert!(daemon.is_running());
}

/// TLS (rustls): an IMAPS server whose self-signed certificate is trusted
/// through `ca_file` is read like any other; without it the handshake fails
/// with a clear error and is retried.
#[tokio::test]
async fn tls_server_is_read_with_its_ca_file_and_refused_without() {
    let Some((dovecot, cert)) = Dovecot::start_tls() else { return };
    let db = TestDb::sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let account = |name: &str, ca: &str| {
        format!(
            "[[imap.accounts]]\nname = \"{name}\"\nhost = \"localhost\"\nport = {}\nsecurity = \"tls\"\n{ca}\
             username = \"sales\"\npassword_env = \"LEADSIFT_TEST_IMAP_PASSWORD\"\nbackoff_initial_ms = 200\n\
             backoff_max_ms = 1000\ntimeout_secs = 5\npoll_secs = 1\n",
            dovecot.tls_port.unwrap()
        )
    };
    let trusted = account("trusted", &format!("ca_file = \"{}\"\n", cert.display()));
    let untrusted = account("untrusted", "");
    let config = write_config(dir.path(), &db, &format!("{trusted}{untrusted}"));
    let daemon = start_daemon(&config);
    let limit = Duration::from_secs(20);
    wait_until("a TLS session", limit, &daemon, async || daemon.log_count("IMAP connected") >= 1).await;
    dovecot.append("INBOX", &[inquiry("tls-1")]).await;
    wait_until("the mail read over TLS", limit, &daemon, async || {
        count(&db, "SELECT COUNT(*) FROM messages").await == 1
    })
    .await;
    wait_until("a refused handshake", limit, &daemon, async || {
        daemon.log_count("TLS handshake with IMAP server localhost") >= 1
    })
    .await;
    assert!(daemon.log_text().contains("account=untrusted"), "{}", daemon.log_text());
    let metrics = daemon.metrics().await;
    assert!(metrics.contains("leadsift_imap_errors_total{account=\"untrusted\",kind=\"tls\"}"), "{metrics}");
    assert!(!metrics.contains("leadsift_imap_errors_total{account=\"trusted\""), "{metrics}");
    assert!(checkpoint(&db, "INBOX").await.is_some(), "the trusted account synced INBOX");
}
