//! The channel-state tables of migration 0003 (IMAP checkpoints, origins and
//! feedback; watermarks; lead notifications) on SQLite and PostgreSQL.

use chrono::Utc;
use leadsift_core::Verdict;
use leadsift_integration_tests::TestDb;
use leadsift_store::{ImapCheckpoint, ImapFeedback, ImapOrigin};

async fn channel_state_behaves(db: TestDb) {
    let store = &db.store;
    assert_eq!(store.imap_checkpoint("sales", "INBOX").await.unwrap(), None);
    let at = Utc::now();
    let origin = |uid| ImapOrigin {
        account: "sales".into(),
        folder: "INBOX".into(),
        uidvalidity: 7,
        uid,
        dedup_key: format!("email:<{uid}@x>"),
    };
    store
        .commit_imap_batch(
            "sales",
            "INBOX",
            ImapCheckpoint { uidvalidity: 7, last_uid: 10 },
            &[origin(9), origin(10)],
            at,
        )
        .await
        .unwrap();
    // A stale writer cannot move the checkpoint backwards under the same UIDVALIDITY…
    store
        .commit_imap_batch("sales", "INBOX", ImapCheckpoint { uidvalidity: 7, last_uid: 4 }, &[origin(9)], at)
        .await
        .unwrap();
    assert_eq!(
        store.imap_checkpoint("sales", "INBOX").await.unwrap(),
        Some(ImapCheckpoint { uidvalidity: 7, last_uid: 10 })
    );
    // …but a new UIDVALIDITY starts over.
    store.commit_imap_batch("sales", "INBOX", ImapCheckpoint { uidvalidity: 8, last_uid: 0 }, &[], at).await.unwrap();
    assert_eq!(
        store.imap_checkpoint("sales", "INBOX").await.unwrap(),
        Some(ImapCheckpoint { uidvalidity: 8, last_uid: 0 })
    );
    // Origins wait for their message to be triaged before an action is due.
    assert!(store.pending_imap_actions("sales", "INBOX", 10).await.unwrap().is_empty());
    store.finish_imap_actions(&[origin(9), origin(10)]).await.unwrap();
    let origins: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM imap_origins WHERE action_done = 1")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(origins, 2, "one origin per UID, both finished");

    let feedback = ImapFeedback {
        account: "sales".into(),
        folder: "Junk".into(),
        uidvalidity: 3,
        uid: 1,
        dedup_key: "email:<a@x>".into(),
        label: Verdict::Spam,
        created_at: at,
    };
    assert_eq!(store.record_imap_feedback(std::slice::from_ref(&feedback)).await.unwrap(), 1);
    assert_eq!(store.record_imap_feedback(std::slice::from_ref(&feedback)).await.unwrap(), 0, "once per mail");
    let listed = store.imap_feedback(10).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].label, Verdict::Spam);
    assert_eq!(listed[0].dedup_key, "email:<a@x>");

    assert_eq!(store.watermark("w").await.unwrap(), None);
    assert_eq!(store.init_watermark("w", 5).await.unwrap(), 5);
    assert_eq!(store.init_watermark("w", 9).await.unwrap(), 5, "set once");
    assert!(store.leads_to_notify(chrono::DateTime::UNIX_EPOCH, 10).await.unwrap().is_empty());
}

#[tokio::test]
async fn sqlite_channel_state() {
    channel_state_behaves(TestDb::sqlite().await).await;
}

#[tokio::test]
async fn postgres_channel_state() {
    let Some(db) = TestDb::postgres().await else { return };
    channel_state_behaves(db).await;
}
