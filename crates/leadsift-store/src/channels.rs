//! State kept for the channel adapters (migration 0003): IMAP folder
//! checkpoints, where each IMAP mail came from (for post-triage actions),
//! labels learnt from IMAP folders, named watermarks, and which leads'
//! managers were notified.
//!
//! These are inherent methods of [`SqlStore`], not part of the core
//! `LeadStore` trait: only the adapters that own the tables call them.

use chrono::{DateTime, Utc};
use leadsift_core::{Lead, Message, StoreError, Verdict};

use crate::{SqlStore, from_millis, millis, query_error, rows};

/// How far an IMAP folder has been read: mail up to `last_uid` under
/// `uidvalidity` is durably queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImapCheckpoint {
    pub uidvalidity: u32,
    pub last_uid: u32,
}

/// Where one queued mail lives on the IMAP server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImapOrigin {
    pub account: String,
    pub folder: String,
    pub uidvalidity: u32,
    pub uid: u32,
    pub dedup_key: String,
}

/// A triaged IMAP mail whose post-triage action has not run yet.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingImapAction {
    pub origin: ImapOrigin,
    pub verdict: Verdict,
}

/// A label a person gave by moving a mail into a configured folder.
#[derive(Debug, Clone, PartialEq)]
pub struct ImapFeedback {
    pub account: String,
    pub folder: String,
    pub uidvalidity: u32,
    pub uid: u32,
    pub dedup_key: String,
    pub label: Verdict,
    pub created_at: DateTime<Utc>,
}

impl SqlStore {
    /// The checkpoint of one folder, if it was ever read.
    pub async fn imap_checkpoint(&self, account: &str, folder: &str) -> Result<Option<ImapCheckpoint>, StoreError> {
        let row = sqlx::query("SELECT uidvalidity, last_uid FROM imap_checkpoints WHERE account = $1 AND folder = $2")
            .bind(account)
            .bind(folder)
            .fetch_optional(&self.pool)
            .await
            .map_err(query_error("reading an IMAP checkpoint"))?;
        let Some(row) = row else { return Ok(None) };
        let uidvalidity: i64 = rows::col(&row, "uidvalidity")?;
        let last_uid: i64 = rows::col(&row, "last_uid")?;
        Ok(Some(ImapCheckpoint { uidvalidity: to_u32(uidvalidity)?, last_uid: to_u32(last_uid)? }))
    }

    /// Advances a folder's checkpoint and records the origins of the mail
    /// just queued, in one transaction. Call it only after the mail was
    /// published: a crash before it re-reads the batch, and the queue's
    /// dedup key makes that harmless. Within one UIDVALIDITY the
    /// checkpoint never moves backwards.
    pub async fn commit_imap_batch(
        &self,
        account: &str,
        folder: &str,
        checkpoint: ImapCheckpoint,
        origins: &[ImapOrigin],
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let operation = "advancing an IMAP checkpoint";
        let (mut tx, _write_gate) = self.begin_write().await.map_err(query_error(operation))?;
        sqlx::query(
            "INSERT INTO imap_checkpoints (account, folder, uidvalidity, last_uid, updated_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (account, folder) DO UPDATE SET \
             last_uid = CASE WHEN imap_checkpoints.uidvalidity = excluded.uidvalidity \
                              AND imap_checkpoints.last_uid > excluded.last_uid \
                        THEN imap_checkpoints.last_uid ELSE excluded.last_uid END, \
             uidvalidity = excluded.uidvalidity, updated_at = excluded.updated_at",
        )
        .bind(account)
        .bind(folder)
        .bind(i64::from(checkpoint.uidvalidity))
        .bind(i64::from(checkpoint.last_uid))
        .bind(millis(at))
        .execute(&mut *tx)
        .await
        .map_err(query_error(operation))?;
        for origin in origins {
            sqlx::query(
                "INSERT INTO imap_origins (account, folder, uidvalidity, uid, dedup_key, action_done, created_at) \
                 VALUES ($1, $2, $3, $4, $5, 0, $6) ON CONFLICT (account, folder, uidvalidity, uid) DO NOTHING",
            )
            .bind(&origin.account)
            .bind(&origin.folder)
            .bind(i64::from(origin.uidvalidity))
            .bind(i64::from(origin.uid))
            .bind(&origin.dedup_key)
            .bind(millis(at))
            .execute(&mut *tx)
            .await
            .map_err(query_error(operation))?;
        }
        tx.commit().await.map_err(query_error(operation))?;
        Ok(())
    }

    /// Mail of one folder that triage has stored but whose action has not run, oldest first.
    pub async fn pending_imap_actions(
        &self,
        account: &str,
        folder: &str,
        limit: u32,
    ) -> Result<Vec<PendingImapAction>, StoreError> {
        let rows = sqlx::query(
            "SELECT o.account, o.folder, o.uidvalidity, o.uid, o.dedup_key, m.verdict \
             FROM imap_origins o JOIN messages m ON m.dedup_key = o.dedup_key \
             WHERE o.action_done = 0 AND o.account = $1 AND o.folder = $2 ORDER BY o.created_at, o.uid LIMIT $3",
        )
        .bind(account)
        .bind(folder)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(query_error("reading pending IMAP actions"))?;
        rows.iter()
            .map(|row| {
                Ok(PendingImapAction {
                    origin: ImapOrigin {
                        account: rows::col(row, "account")?,
                        folder: rows::col(row, "folder")?,
                        uidvalidity: to_u32(rows::col(row, "uidvalidity")?)?,
                        uid: to_u32(rows::col(row, "uid")?)?,
                        dedup_key: rows::col(row, "dedup_key")?,
                    },
                    verdict: rows::parsed(row, "verdict")?,
                })
            })
            .collect()
    }

    /// Marks post-triage actions as done (or as nothing to do).
    pub async fn finish_imap_actions(&self, origins: &[ImapOrigin]) -> Result<(), StoreError> {
        let operation = "finishing IMAP actions";
        let (mut tx, _write_gate) = self.begin_write().await.map_err(query_error(operation))?;
        for origin in origins {
            sqlx::query(
                "UPDATE imap_origins SET action_done = 1 \
                 WHERE account = $1 AND folder = $2 AND uidvalidity = $3 AND uid = $4",
            )
            .bind(&origin.account)
            .bind(&origin.folder)
            .bind(i64::from(origin.uidvalidity))
            .bind(i64::from(origin.uid))
            .execute(&mut *tx)
            .await
            .map_err(query_error(operation))?;
        }
        tx.commit().await.map_err(query_error(operation))?;
        Ok(())
    }

    /// Records labels learnt from folders; a mail already recorded (same
    /// account, folder, UIDVALIDITY and UID) is skipped. A new label of a
    /// stored message also goes to the `feedback` table the model learns
    /// from (origin `imap_folder`). Returns how many were new.
    pub async fn record_imap_feedback(&self, feedback: &[ImapFeedback]) -> Result<u64, StoreError> {
        let operation = "recording IMAP feedback";
        let (mut tx, _write_gate) = self.begin_write().await.map_err(query_error(operation))?;
        let mut new = 0;
        for item in feedback {
            let done = sqlx::query(
                "INSERT INTO imap_feedback (account, folder, uidvalidity, uid, dedup_key, label, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (account, folder, uidvalidity, uid) DO NOTHING",
            )
            .bind(&item.account)
            .bind(&item.folder)
            .bind(i64::from(item.uidvalidity))
            .bind(i64::from(item.uid))
            .bind(&item.dedup_key)
            .bind(item.label.as_str())
            .bind(millis(item.created_at))
            .execute(&mut *tx)
            .await
            .map_err(query_error(operation))?;
            if done.rows_affected() == 1 {
                // The model learns from the main feedback table; a mail this
                // store never triaged has no text to learn from.
                sqlx::query(
                    "INSERT INTO feedback (message_id, label, origin, actor, created_at) \
                     SELECT id, $1, $2, $3, $4 FROM messages WHERE dedup_key = $5",
                )
                .bind(item.label.as_str())
                .bind(leadsift_core::FeedbackOrigin::ImapFolder.as_str())
                .bind(format!("imap:{}/{}", item.account, item.folder))
                .bind(millis(item.created_at))
                .bind(&item.dedup_key)
                .execute(&mut *tx)
                .await
                .map_err(query_error(operation))?;
            }
            new += done.rows_affected();
        }
        tx.commit().await.map_err(query_error(operation))?;
        Ok(new)
    }

    /// Labels learnt from IMAP folders, oldest first.
    pub async fn imap_feedback(&self, limit: u32) -> Result<Vec<ImapFeedback>, StoreError> {
        let rows = sqlx::query(
            "SELECT account, folder, uidvalidity, uid, dedup_key, label, created_at FROM imap_feedback \
             ORDER BY id LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(query_error("reading IMAP feedback"))?;
        rows.iter()
            .map(|row| {
                Ok(ImapFeedback {
                    account: rows::col(row, "account")?,
                    folder: rows::col(row, "folder")?,
                    uidvalidity: to_u32(rows::col(row, "uidvalidity")?)?,
                    uid: to_u32(rows::col(row, "uid")?)?,
                    dedup_key: rows::col(row, "dedup_key")?,
                    label: rows::parsed(row, "label")?,
                    created_at: from_millis(rows::col(row, "created_at")?),
                })
            })
            .collect()
    }

    /// The verdict a stored message got, by its dedup key.
    pub async fn verdict_of(&self, dedup_key: &str) -> Result<Option<Verdict>, StoreError> {
        let row = sqlx::query("SELECT verdict FROM messages WHERE dedup_key = $1")
            .bind(dedup_key)
            .fetch_optional(&self.pool)
            .await
            .map_err(query_error("reading a verdict"))?;
        row.map(|row| rows::parsed(&row, "verdict")).transpose()
    }

    /// A named watermark, if it was ever set.
    pub async fn watermark(&self, name: &str) -> Result<Option<i64>, StoreError> {
        let row = sqlx::query("SELECT value FROM watermarks WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(query_error("reading a watermark"))?;
        row.map(|row| rows::col(&row, "value")).transpose()
    }

    /// Sets a named watermark only if it is not set yet; returns the value in force.
    pub async fn init_watermark(&self, name: &str, value: i64) -> Result<i64, StoreError> {
        let operation = "setting a watermark";
        let (mut tx, _write_gate) = self.begin_write().await.map_err(query_error(operation))?;
        sqlx::query(
            "INSERT INTO watermarks (name, value, updated_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(value)
        .bind(millis(Utc::now()))
        .execute(&mut *tx)
        .await
        .map_err(query_error(operation))?;
        tx.commit().await.map_err(query_error(operation))?;
        self.watermark(name).await?.ok_or(StoreError::Corrupt { what: "watermarks", detail: name.to_owned() })
    }

    /// Inquiry leads (not junk) created at or after `since` whose manager
    /// has not been notified yet, oldest first.
    pub async fn leads_to_notify(&self, since: DateTime<Utc>, limit: u32) -> Result<Vec<Lead>, StoreError> {
        let rows = sqlx::query(
            "SELECT l.id FROM leads l WHERE l.created_at >= $1 AND l.verdict = 'inquiry' AND l.stage <> 'junk' \
             AND NOT EXISTS (SELECT 1 FROM lead_notifications n WHERE n.lead_id = l.id) ORDER BY l.id LIMIT $2",
        )
        .bind(millis(since))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(query_error("reading leads to notify"))?;
        let mut leads = Vec::with_capacity(rows.len());
        for row in &rows {
            if let Some(lead) = self.query_lead(rows::col(row, "id")?).await? {
                leads.push(lead);
            }
        }
        Ok(leads)
    }

    /// The first stored message of a lead (what opened it).
    pub async fn lead_first_message(&self, lead_id: i64) -> Result<Option<Message>, StoreError> {
        let row = sqlx::query("SELECT payload FROM messages WHERE lead_id = $1 ORDER BY id LIMIT 1")
            .bind(lead_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(query_error("reading a lead's first message"))?;
        row.map(|row| rows::json(&row, "payload")).transpose()
    }

    /// Records that a lead's manager was notified (idempotent).
    pub async fn mark_lead_notified(&self, lead_id: i64, recipient: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        let operation = "recording a lead notification";
        let (mut tx, _write_gate) = self.begin_write().await.map_err(query_error(operation))?;
        sqlx::query(
            "INSERT INTO lead_notifications (lead_id, recipient, sent_at) VALUES ($1, $2, $3) \
             ON CONFLICT (lead_id) DO NOTHING",
        )
        .bind(lead_id)
        .bind(recipient)
        .bind(millis(at))
        .execute(&mut *tx)
        .await
        .map_err(query_error(operation))?;
        tx.commit().await.map_err(query_error(operation))?;
        Ok(())
    }
}

fn to_u32(value: i64) -> Result<u32, StoreError> {
    u32::try_from(value).map_err(|_| StoreError::Corrupt { what: "IMAP uid", detail: value.to_string() })
}
