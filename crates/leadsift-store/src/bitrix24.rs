//! The Bitrix24 sync outbox (migration 0005): which lead events still have
//! to reach Bitrix24, who is delivering each one, and which Bitrix24 lead
//! each of our leads became.
//!
//! The outbox is filled from `lead_stage_changes`, never by triage itself,
//! so triage never waits for Bitrix24: a lead's first history row becomes
//! an `add`, every later one an `update`. Rows are claimed under a lease
//! with a conditional `UPDATE` (the row is taken only if its lease expired),
//! so several `leadsift run` processes never deliver the same row at once,
//! on SQLite and PostgreSQL alike. A row is claimable only when no earlier
//! row of the same lead is still pending, which keeps each lead's events in
//! order.
//!
//! These are inherent methods of [`SqlStore`], not part of the core
//! `LeadStore` trait: only the Bitrix24 sink calls them.

use chrono::{DateTime, Utc};
use leadsift_core::{JunkReason, Lead, LeadStage, StoreError, Utm};

use crate::{SqlStore, millis, query_error, rows};

/// Watermark: every stage change with a smaller id is in the outbox (or
/// was deliberately left out), so filling need not look at it again.
const FILLED_BELOW: &str = "bitrix24.changes_filled_below";

/// How old a stage change must be before the fill watermark may pass it. A
/// PostgreSQL transaction can commit a smaller id after a larger one was
/// visible; no triage or move transaction stays open this long.
const SETTLE_MILLIS: i64 = 10 * 60 * 1000;

/// What a Bitrix24 outbox row asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bitrix24EventKind {
    /// Create the Bitrix24 lead (`crm.lead.add`).
    Add,
    /// Move the Bitrix24 lead to the row's stage (`crm.lead.update`).
    Update,
}

impl Bitrix24EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Add => "add",
            Self::Update => "update",
        }
    }

    fn parse(raw: &str) -> Result<Self, StoreError> {
        match raw {
            "add" => Ok(Self::Add),
            "update" => Ok(Self::Update),
            other => Err(StoreError::Corrupt { what: "bitrix24_outbox.kind", detail: other.to_owned() }),
        }
    }
}

/// One claimed outbox row with everything needed to deliver it.
#[derive(Debug, Clone, PartialEq)]
pub struct Bitrix24Event {
    pub outbox_id: i64,
    pub change_id: i64,
    pub kind: Bitrix24EventKind,
    /// The stage the lead entered with this change.
    pub stage: LeadStage,
    pub junk_reason: Option<JunkReason>,
    /// Failed attempts so far (rate-limit waits do not count).
    pub attempts: u32,
    /// An earlier attempt sent `crm.lead.add` and never learnt the outcome.
    pub add_outcome_unknown: bool,
    /// The Bitrix24 lead id, once an add succeeded.
    pub bitrix_id: Option<i64>,
    /// The lead as it is now (identities, reasons, attribution).
    pub lead: Lead,
    pub utm: Utm,
    /// The sender name of the lead's first message.
    pub contact_name: Option<String>,
}

/// How a failed attempt is put back.
#[derive(Debug, Clone, PartialEq)]
pub struct Bitrix24Retry {
    pub next_attempt_at: DateTime<Utc>,
    pub error: String,
    /// Count the attempt (false for a rate-limit wait).
    pub count_attempt: bool,
    /// `Some(true)`: this attempt sent an add whose outcome is unknown;
    /// `Some(false)`: Bitrix24 certainly did not create the lead; `None`: no add was sent.
    pub add_outcome_unknown: Option<bool>,
}

/// Outbox rows by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bitrix24OutboxCounts {
    pub pending: i64,
    pub delivered: i64,
    pub failed: i64,
}

impl SqlStore {
    /// Copies new stage changes of leads created at or after `since` into
    /// the outbox (at most `limit`, oldest first); returns how many.
    /// Idempotent, and safe to run from several processes at once.
    pub async fn bitrix24_fill_outbox(
        &self,
        since: DateTime<Utc>,
        limit: u32,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let operation = "filling the Bitrix24 outbox";
        let below = self.watermark(FILLED_BELOW).await?.unwrap_or(0);
        let (mut tx, _write_gate) = self.begin_write().await.map_err(query_error(operation))?;
        let inserted = sqlx::query(
            "INSERT INTO bitrix24_outbox (change_id, lead_id, kind, stage, junk_reason, next_attempt_at, created_at) \
             SELECT c.id, c.lead_id, CASE WHEN c.from_stage IS NULL THEN 'add' ELSE 'update' END, c.to_stage, \
             c.junk_reason, $1, $1 FROM lead_stage_changes c JOIN leads l ON l.id = c.lead_id \
             WHERE c.id >= $2 AND l.created_at >= $3 \
             AND NOT EXISTS (SELECT 1 FROM bitrix24_outbox o WHERE o.change_id = c.id) \
             ORDER BY c.id LIMIT $4 ON CONFLICT (change_id) DO NOTHING",
        )
        .bind(millis(now))
        .bind(below)
        .bind(millis(since))
        .bind(i64::from(limit))
        .execute(&mut *tx)
        .await
        .map_err(query_error(operation))?
        .rows_affected();
        if inserted < u64::from(limit) {
            // Everything visible is in the outbox now; changes older than the
            // settle window cannot appear later, so the next fill may skip them.
            let settled: Option<i64> = sqlx::query_scalar("SELECT MAX(id) FROM lead_stage_changes WHERE at < $1")
                .bind(millis(now) - SETTLE_MILLIS)
                .fetch_one(&mut *tx)
                .await
                .map_err(query_error(operation))?;
            if let Some(settled) = settled {
                sqlx::query(
                    "INSERT INTO watermarks (name, value, updated_at) VALUES ($1, $2, $3) ON CONFLICT (name) \
                     DO UPDATE SET value = CASE WHEN excluded.value > watermarks.value THEN excluded.value \
                     ELSE watermarks.value END, updated_at = excluded.updated_at",
                )
                .bind(FILLED_BELOW)
                .bind(settled + 1)
                .bind(millis(now))
                .execute(&mut *tx)
                .await
                .map_err(query_error(operation))?;
            }
        }
        tx.commit().await.map_err(query_error(operation))?;
        Ok(inserted)
    }

    /// Claims up to `limit` due rows for `owner` until `lease_until`, at most
    /// one per lead (its earliest pending row), oldest first. A row another
    /// process holds under an unexpired lease is not taken.
    pub async fn bitrix24_claim(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Bitrix24Event>, StoreError> {
        let operation = "claiming Bitrix24 outbox rows";
        let candidates: Vec<i64> = sqlx::query_scalar(
            "SELECT o.id FROM bitrix24_outbox o WHERE o.state = 'pending' AND o.next_attempt_at <= $1 \
             AND o.lease_until <= $1 AND NOT EXISTS (SELECT 1 FROM bitrix24_outbox p \
             WHERE p.lead_id = o.lead_id AND p.change_id < o.change_id AND p.state = 'pending') \
             ORDER BY o.change_id LIMIT $2",
        )
        .bind(millis(now))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(query_error(operation))?;
        let mut claimed = Vec::with_capacity(candidates.len());
        for id in candidates {
            let (mut tx, _write_gate) = self.begin_write().await.map_err(query_error(operation))?;
            let taken = sqlx::query(
                "UPDATE bitrix24_outbox SET lease_owner = $1, lease_until = $2 \
                 WHERE id = $3 AND state = 'pending' AND lease_until <= $4",
            )
            .bind(owner)
            .bind(millis(lease_until))
            .bind(id)
            .bind(millis(now))
            .execute(&mut *tx)
            .await
            .map_err(query_error(operation))?
            .rows_affected();
            tx.commit().await.map_err(query_error(operation))?;
            if taken == 1
                && let Some(event) = self.bitrix24_event(id).await?
            {
                claimed.push(event);
            }
        }
        Ok(claimed)
    }

    async fn bitrix24_event(&self, outbox_id: i64) -> Result<Option<Bitrix24Event>, StoreError> {
        let row = sqlx::query(
            "SELECT o.id, o.change_id, o.lead_id, o.kind, o.stage, o.junk_reason, o.attempts, o.add_outcome_unknown, \
             b.bitrix_id, l.utm_source, l.utm_medium, l.utm_campaign, l.utm_content, l.utm_term, \
             (SELECT m.sender_name FROM messages m WHERE m.lead_id = o.lead_id ORDER BY m.id LIMIT 1) AS sender_name \
             FROM bitrix24_outbox o JOIN leads l ON l.id = o.lead_id \
             LEFT JOIN bitrix24_leads b ON b.lead_id = o.lead_id WHERE o.id = $1",
        )
        .bind(outbox_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(query_error("reading a Bitrix24 outbox row"))?;
        let Some(row) = row else { return Ok(None) };
        let lead_id: i64 = rows::col(&row, "lead_id")?;
        let Some(lead) = self.query_lead(lead_id).await? else { return Ok(None) };
        let attempts: i64 = rows::col(&row, "attempts")?;
        Ok(Some(Bitrix24Event {
            outbox_id: rows::col(&row, "id")?,
            change_id: rows::col(&row, "change_id")?,
            kind: Bitrix24EventKind::parse(&rows::col::<String>(&row, "kind")?)?,
            stage: rows::parsed(&row, "stage")?,
            junk_reason: rows::parsed_opt(&row, "junk_reason")?,
            attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
            add_outcome_unknown: rows::col::<i64>(&row, "add_outcome_unknown")? != 0,
            bitrix_id: rows::col(&row, "bitrix_id")?,
            utm: Utm {
                source: rows::col(&row, "utm_source")?,
                medium: rows::col(&row, "utm_medium")?,
                campaign: rows::col(&row, "utm_campaign")?,
                content: rows::col(&row, "utm_content")?,
                term: rows::col(&row, "utm_term")?,
            },
            contact_name: rows::col(&row, "sender_name")?,
            lead,
        }))
    }

    /// Extends `owner`'s lease of a row to `lease_until`, only while the lease
    /// still holds at `now`. False when it expired or changed hands: the
    /// row must then be left alone.
    pub async fn bitrix24_renew_lease(
        &self,
        outbox_id: i64,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let operation = "renewing a Bitrix24 outbox lease";
        let (mut tx, _write_gate) = self.begin_write().await.map_err(query_error(operation))?;
        let done = sqlx::query(
            "UPDATE bitrix24_outbox SET lease_until = $1 \
             WHERE id = $2 AND lease_owner = $3 AND state = 'pending' AND lease_until > $4",
        )
        .bind(millis(lease_until))
        .bind(outbox_id)
        .bind(owner)
        .bind(millis(now))
        .execute(&mut *tx)
        .await
        .map_err(query_error(operation))?
        .rows_affected();
        tx.commit().await.map_err(query_error(operation))?;
        Ok(done == 1)
    }

    /// Records, before `crm.lead.add` is sent, that its outcome is unknown
    /// until an answer arrives (a crash or a lost response then makes the
    /// next attempt look the lead up instead of adding it again), and gives
    /// the row a fresh lease until `lease_until` for the add and its answer.
    /// False when `owner` no longer holds the row: the add must not be sent.
    pub async fn bitrix24_mark_add_sent(
        &self,
        outbox_id: i64,
        owner: &str,
        lease_until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let operation = "marking a Bitrix24 add as sent";
        let (mut tx, _write_gate) = self.begin_write().await.map_err(query_error(operation))?;
        let done = sqlx::query(
            "UPDATE bitrix24_outbox SET add_outcome_unknown = 1, lease_until = $1 \
             WHERE id = $2 AND lease_owner = $3 AND state = 'pending'",
        )
        .bind(millis(lease_until))
        .bind(outbox_id)
        .bind(owner)
        .execute(&mut *tx)
        .await
        .map_err(query_error(operation))?
        .rows_affected();
        tx.commit().await.map_err(query_error(operation))?;
        Ok(done == 1)
    }

    /// Marks a row delivered and, for an add, remembers the Bitrix24 lead id,
    /// in one transaction. False when `owner` no longer held the row.
    pub async fn bitrix24_delivered(
        &self,
        outbox_id: i64,
        owner: &str,
        lead_id: i64,
        bitrix_id: Option<i64>,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let operation = "recording a Bitrix24 delivery";
        let (mut tx, _write_gate) = self.begin_write().await.map_err(query_error(operation))?;
        let done = sqlx::query(
            "UPDATE bitrix24_outbox SET state = 'delivered', delivered_at = $1, lease_until = 0, \
             add_outcome_unknown = 0, last_error = NULL WHERE id = $2 AND lease_owner = $3 AND state = 'pending'",
        )
        .bind(millis(at))
        .bind(outbox_id)
        .bind(owner)
        .execute(&mut *tx)
        .await
        .map_err(query_error(operation))?
        .rows_affected();
        if let Some(bitrix_id) = bitrix_id {
            sqlx::query(
                "INSERT INTO bitrix24_leads (lead_id, bitrix_id, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (lead_id) DO NOTHING",
            )
            .bind(lead_id)
            .bind(bitrix_id)
            .bind(millis(at))
            .execute(&mut *tx)
            .await
            .map_err(query_error(operation))?;
        }
        tx.commit().await.map_err(query_error(operation))?;
        Ok(done == 1)
    }

    /// Puts a row back for a later attempt and releases the lease. False when
    /// `owner` no longer held the row.
    pub async fn bitrix24_retry_later(
        &self,
        outbox_id: i64,
        owner: &str,
        retry: &Bitrix24Retry,
    ) -> Result<bool, StoreError> {
        let operation = "rescheduling a Bitrix24 delivery";
        let (mut tx, _write_gate) = self.begin_write().await.map_err(query_error(operation))?;
        let done = sqlx::query(
            "UPDATE bitrix24_outbox SET next_attempt_at = $1, last_error = $2, attempts = attempts + $3, \
             add_outcome_unknown = CASE WHEN $4 < 0 THEN add_outcome_unknown ELSE $4 END, lease_until = 0 \
             WHERE id = $5 AND lease_owner = $6 AND state = 'pending'",
        )
        .bind(millis(retry.next_attempt_at))
        .bind(&retry.error)
        .bind(i64::from(retry.count_attempt))
        .bind(retry.add_outcome_unknown.map_or(-1, i64::from))
        .bind(outbox_id)
        .bind(owner)
        .execute(&mut *tx)
        .await
        .map_err(query_error(operation))?
        .rows_affected();
        tx.commit().await.map_err(query_error(operation))?;
        Ok(done == 1)
    }

    /// Gives a row up: it stays in the outbox as `failed`, with its error.
    pub async fn bitrix24_failed(&self, outbox_id: i64, owner: &str, error: &str) -> Result<bool, StoreError> {
        let operation = "recording a failed Bitrix24 delivery";
        let (mut tx, _write_gate) = self.begin_write().await.map_err(query_error(operation))?;
        let done = sqlx::query(
            "UPDATE bitrix24_outbox SET state = 'failed', last_error = $1, attempts = attempts + 1, lease_until = 0 \
             WHERE id = $2 AND lease_owner = $3 AND state = 'pending'",
        )
        .bind(error)
        .bind(outbox_id)
        .bind(owner)
        .execute(&mut *tx)
        .await
        .map_err(query_error(operation))?
        .rows_affected();
        tx.commit().await.map_err(query_error(operation))?;
        Ok(done == 1)
    }

    /// Outbox rows by state (the depth gauge).
    pub async fn bitrix24_outbox_counts(&self) -> Result<Bitrix24OutboxCounts, StoreError> {
        let rows = sqlx::query("SELECT state, COUNT(*) AS n FROM bitrix24_outbox GROUP BY state")
            .fetch_all(&self.pool)
            .await
            .map_err(query_error("counting Bitrix24 outbox rows"))?;
        let mut counts = Bitrix24OutboxCounts::default();
        for row in &rows {
            let n: i64 = rows::col(row, "n")?;
            match rows::col::<String>(row, "state")?.as_str() {
                "pending" => counts.pending = n,
                "delivered" => counts.delivered = n,
                "failed" => counts.failed = n,
                other => return Err(StoreError::Corrupt { what: "bitrix24_outbox.state", detail: other.to_owned() }),
            }
        }
        Ok(counts)
    }

    /// The Bitrix24 lead id of one of our leads, once it was added.
    pub async fn bitrix24_lead_id(&self, lead_id: i64) -> Result<Option<i64>, StoreError> {
        sqlx::query_scalar("SELECT bitrix_id FROM bitrix24_leads WHERE lead_id = $1")
            .bind(lead_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(query_error("reading a Bitrix24 lead id"))
    }
}
