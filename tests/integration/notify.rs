//! Manager notifications through a real SMTP sink (aiosmtpd): a new inquiry
//! emails its manager (and acknowledges the sender), spam emails nobody,
//! a restart does not re-send, and an SMTP outage only delays the email.

use std::time::Duration;

use leadsift_formats::{ParseOptions, parse_rfc822};
use leadsift_integration_tests::mailservers::{SmtpSink, free_port};
use leadsift_integration_tests::{TestDb, fixtures};

use crate::imap::{count, inquiry, spam, start_daemon, wait_until};

const MANAGERS: [&str; 2] = ["anna@our.example", "boris@our.example"];

fn config(dir: &std::path::Path, db: &TestDb, smtp_port: u16) -> std::path::PathBuf {
    let inbox = dir.join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    let path = dir.join("leadsift.toml");
    std::fs::write(
        &path,
        format!(
            "[database]\nurl = \"{}\"\n[intake]\ndrop_folder = \"{}\"\n[http]\nlisten = \"127.0.0.1:0\"\n\
             [triage]\nidle_poll_ms = 50\n\
             [notify]\nenabled = true\nfrom = \"leadsift <crm@our.example>\"\nmanagers = [\"{}\", \"{}\"]\n\
             poll_ms = 100\n[notify.smtp]\nhost = \"127.0.0.1\"\nport = {smtp_port}\nsecurity = \"plain\"\n\
             timeout_secs = 5\n[notify.auto_ack]\nenabled = true\n",
            db.url,
            inbox.display(),
            MANAGERS[0],
            MANAGERS[1]
        ),
    )
    .unwrap();
    path
}

/// The envelope recipient and the parsed mail.
fn received(sink: &SmtpSink) -> Vec<(String, String, leadsift_core::Message)> {
    sink.mails()
        .iter()
        .map(|raw| {
            let header = |name: &str| {
                raw.lines()
                    .find_map(|l| l.strip_prefix(&format!("{name}: ")).map(|v| v.trim().to_owned()))
                    .unwrap_or_default()
            };
            let parsed = parse_rfc822(raw.as_bytes(), &ParseOptions::default()).expect("a parsable email");
            (header("X-MailFrom"), header("X-RcptTo"), parsed)
        })
        .collect()
}

#[tokio::test]
async fn new_inquiry_emails_its_manager_and_spam_emails_nobody() {
    let Some(sink) = SmtpSink::start() else { return };
    let db = TestDb::sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &db, sink.port);
    let daemon = start_daemon(&config);
    let inbox = dir.path().join("inbox");
    std::fs::write(inbox.join("spam.eml"), spam("n-spam")).unwrap();
    std::fs::copy(fixtures().join("inquiry-ru.eml"), inbox.join("inquiry.eml")).unwrap();
    let limit = Duration::from_secs(30);
    wait_until("both messages", limit, &daemon, async || count(&db, "SELECT COUNT(*) FROM messages").await == 2).await;
    wait_until("two emails", limit, &daemon, async || sink.mails().len() >= 2).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;

    let mails = received(&sink);
    assert_eq!(mails.len(), 2, "one manager email and one acknowledgement, nothing for spam");
    let lead_id = count(&db, "SELECT id FROM leads WHERE verdict = 'inquiry'").await;
    let lead = db.store.leads_to_notify(chrono::DateTime::UNIX_EPOCH, 10).await.unwrap();
    assert!(lead.is_empty(), "the lead is marked notified");
    let stored = sqlx::query_scalar::<_, String>("SELECT payload FROM messages WHERE verdict = 'inquiry'")
        .fetch_one(db.store.pool())
        .await
        .unwrap();
    let inquiry: leadsift_core::Message = serde_json::from_str(&stored).unwrap();
    let sender = inquiry.sender.email.as_ref().unwrap().as_str().to_owned();

    let (from, to, manager_mail) =
        mails.iter().find(|(_, to, _)| MANAGERS.contains(&to.as_str())).expect("a manager email");
    assert_eq!(from, "crm@our.example");
    assert_eq!(to, MANAGERS[lead_id as usize % 2], "round-robin by lead id");
    eprintln!("manager email:\n{}", manager_mail.text);
    let subject = manager_mail.subject.clone().unwrap_or_default();
    assert!(subject.contains(&format!("Новый лид #{lead_id}")), "{subject}");
    for needle in [sender.as_str(), "Источник:", "Причины:", inquiry.subject.as_deref().unwrap_or_default()]
    {
        assert!(manager_mail.text.contains(needle), "{needle:?} missing in the manager email:\n{}", manager_mail.text);
    }
    assert!(!manager_mail.text.contains("n-spam"), "spam is not mentioned");

    let (from, _, ack) = mails.iter().find(|(_, to, _)| *to == sender).expect("an acknowledgement to the sender");
    assert_eq!(from, "crm@our.example");
    assert!(ack.text.contains("Спасибо за обращение"), "{}", ack.text);
    assert_eq!(ack.header("Auto-Submitted"), Some("auto-replied"));
    assert!(!mails.iter().any(|(_, to, _)| to.contains("spam-seo")), "no acknowledgement to spam");

    // A restart does not send again.
    drop(daemon);
    let daemon = start_daemon(&config);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(sink.mails().len(), 2, "no re-send after restart; log:\n{}", daemon.log_text());
}

#[tokio::test]
async fn smtp_outage_delays_the_email_but_does_not_lose_it() {
    if SmtpSink::start().is_none() {
        return; // not installed and not required
    }
    let port = free_port();
    let db = TestDb::sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &db, port);
    let daemon = start_daemon(&config);
    std::fs::write(dir.path().join("inbox").join("one.eml"), inquiry("outage-1")).unwrap();
    let limit = Duration::from_secs(30);
    wait_until("a failed send", limit, &daemon, async || daemon.log_count("notification failed; retrying") >= 1).await;
    let sink = SmtpSink::start_on(port).expect("aiosmtpd installed");
    wait_until("the delayed email", limit, &daemon, async || {
        sink.mails().iter().any(|m| MANAGERS.iter().any(|manager| m.contains(&format!("X-RcptTo: {manager}"))))
    })
    .await;
}
