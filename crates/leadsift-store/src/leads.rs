//! Reading leads and moving them between stages.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use leadsift_core::{
    IdentityKind, JunkReason, Lead, LeadFilter, LeadStage, SourceRef, StageChange, StageMove, StoreError,
};
use sqlx::any::AnyRow;

use crate::rows::{col, json, parsed, parsed_opt};
use crate::{SqlStore, from_millis, millis, query_error};

const LEAD_COLUMNS: &str = "id, stage, junk_reason, needs_review, review_note, contact_id, returning_client, channel, \
     title, verdict, confidence, reasons, source, campaign, destination, message_count, created_at, updated_at";

fn lead_from_row(row: &AnyRow) -> Result<Lead, StoreError> {
    Ok(Lead {
        id: col(row, "id")?,
        stage: parsed(row, "stage")?,
        junk_reason: parsed_opt(row, "junk_reason")?,
        needs_review: col::<i64>(row, "needs_review")? != 0,
        review_note: col(row, "review_note")?,
        contact_id: col(row, "contact_id")?,
        returning_client: col::<i64>(row, "returning_client")? != 0,
        channel: parsed(row, "channel")?,
        title: col(row, "title")?,
        verdict: parsed(row, "verdict")?,
        confidence: col(row, "confidence")?,
        reasons: json(row, "reasons")?,
        source: col(row, "source")?,
        campaign: col(row, "campaign")?,
        destination: col(row, "destination")?,
        message_count: col(row, "message_count")?,
        created_at: from_millis(col(row, "created_at")?),
        updated_at: from_millis(col(row, "updated_at")?),
        identities: Vec::new(),
    })
}

fn change_from_row(row: &AnyRow) -> Result<StageChange, StoreError> {
    Ok(StageChange {
        lead_id: col(row, "lead_id")?,
        from: parsed_opt(row, "from_stage")?,
        to: parsed(row, "to_stage")?,
        junk_reason: parsed_opt(row, "junk_reason")?,
        actor: col(row, "actor")?,
        reason: col(row, "reason")?,
        at: from_millis(col(row, "at")?),
    })
}

impl SqlStore {
    /// How many leads each stage holds (stages without leads are left out).
    pub async fn lead_stage_counts(&self) -> Result<Vec<(LeadStage, i64)>, StoreError> {
        let rows = sqlx::query("SELECT stage, CAST(COUNT(*) AS BIGINT) AS n FROM leads GROUP BY stage")
            .fetch_all(&self.pool)
            .await
            .map_err(query_error("counting leads by stage"))?;
        let mut counts = rows
            .iter()
            .map(|row| Ok((parsed(row, "stage")?, col(row, "n")?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        counts.sort();
        Ok(counts)
    }

    /// Stored messages received since `since`, per hour (the hour's start in
    /// Unix milliseconds) and verdict.
    pub async fn verdicts_by_hour(
        &self,
        since: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<(i64, leadsift_core::Verdict, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT CAST((received_at / 3600000) * 3600000 AS BIGINT) AS hour, verdict, CAST(COUNT(*) AS BIGINT) AS n \
             FROM messages WHERE received_at >= $1 GROUP BY (received_at / 3600000), verdict",
        )
        .bind(millis(since))
        .fetch_all(&self.pool)
        .await
        .map_err(query_error("counting verdicts per hour"))?;
        rows.iter().map(|row| Ok((col(row, "hour")?, parsed(row, "verdict")?, col(row, "n")?))).collect()
    }

    /// The newest stored messages with their ids, newest first (a rules dry run replays them).
    pub async fn recent_messages(&self, limit: u32) -> Result<Vec<(i64, leadsift_core::Message)>, StoreError> {
        let rows = sqlx::query("SELECT id, payload FROM messages ORDER BY id DESC LIMIT $1")
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(query_error("reading recent messages"))?;
        rows.iter().map(|row| Ok((col(row, "id")?, crate::rows::json(row, "payload")?))).collect()
    }

    pub(crate) async fn query_leads(&self, filter: &LeadFilter) -> Result<Vec<Lead>, StoreError> {
        // Review leads first: they are the ones a person must look at.
        let sql = format!(
            "SELECT {LEAD_COLUMNS} FROM leads WHERE ($1 IS NULL OR stage = $1) AND ($2 IS NULL OR needs_review = $2) \
             ORDER BY needs_review DESC, id DESC LIMIT $3"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(filter.stage.map(|s| s.as_str()))
            .bind(filter.needs_review.map(i64::from))
            .bind(i64::from(filter.limit.unwrap_or(100)))
            .fetch_all(&self.pool)
            .await
            .map_err(query_error("listing leads"))?;
        let mut leads = rows.iter().map(lead_from_row).collect::<Result<Vec<_>, _>>()?;
        self.fill_identities(&mut leads).await?;
        Ok(leads)
    }

    pub(crate) async fn query_lead(&self, id: i64) -> Result<Option<Lead>, StoreError> {
        let sql = format!("SELECT {LEAD_COLUMNS} FROM leads WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(query_error("reading a lead"))?;
        let Some(row) = row else { return Ok(None) };
        let mut leads = vec![lead_from_row(&row)?];
        self.fill_identities(&mut leads).await?;
        Ok(leads.pop())
    }

    async fn fill_identities(&self, leads: &mut [Lead]) -> Result<(), StoreError> {
        let contact_ids: Vec<i64> = leads.iter().filter_map(|l| l.contact_id).collect();
        if contact_ids.is_empty() {
            return Ok(());
        }
        let mut by_contact: HashMap<i64, Vec<SourceRef>> = HashMap::new();
        for chunk in contact_ids.chunks(500) {
            let placeholders: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT contact_id, kind, value FROM contact_identities WHERE contact_id IN ({}) ORDER BY kind, value",
                placeholders.join(", ")
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for id in chunk {
                query = query.bind(*id);
            }
            for row in query.fetch_all(&self.pool).await.map_err(query_error("reading lead identities"))? {
                let kind: IdentityKind = parsed(&row, "kind")?;
                let value: String = col(&row, "value")?;
                let identity = SourceRef::parse(kind, &value, "ZZ")
                    .map_err(|e| StoreError::Corrupt { what: "contact identity", detail: e.to_string() })?;
                by_contact.entry(col(&row, "contact_id")?).or_default().push(identity);
            }
        }
        for lead in leads {
            if let Some(ids) = lead.contact_id.and_then(|c| by_contact.get(&c)) {
                lead.identities = ids.clone();
            }
        }
        Ok(())
    }

    pub(crate) async fn query_lead_history(&self, id: i64) -> Result<Vec<StageChange>, StoreError> {
        let rows = sqlx::query(
            "SELECT lead_id, from_stage, to_stage, junk_reason, actor, reason, at FROM lead_stage_changes \
             WHERE lead_id = $1 ORDER BY id",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await
        .map_err(query_error("reading stage history"))?;
        rows.iter().map(change_from_row).collect()
    }

    pub(crate) async fn apply_stage_move(
        &self,
        request: &StageMove,
        at: DateTime<Utc>,
    ) -> Result<StageChange, StoreError> {
        if request.to == LeadStage::Converted {
            return Err(StoreError::Invalid(format!(
                "lead {} becomes converted by converting it (contact + company + deal): `leadsift leads convert {}`",
                request.lead_id, request.lead_id
            )));
        }
        let junk_reason = match (request.to, request.junk_reason) {
            (LeadStage::Junk, None) => {
                return Err(StoreError::Invalid(format!(
                    "moving lead {} to junk needs a reason: {}",
                    request.lead_id,
                    JunkReason::ALL.map(|r| r.as_str()).join(", ")
                )));
            }
            (LeadStage::Junk, reason) => reason,
            (_, _) => None,
        };
        let (mut tx, _write_gate) = self.begin_write().await.map_err(query_error("moving a lead"))?;
        let current: Option<String> = sqlx::query_scalar("SELECT stage FROM leads WHERE id = $1")
            .bind(request.lead_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(query_error("moving a lead"))?;
        let Some(current) = current else {
            return Err(StoreError::NotFound(format!("lead {}", request.lead_id)));
        };
        let from: LeadStage = current.parse().map_err(|e: leadsift_core::UnknownName| StoreError::Corrupt {
            what: "leads.stage",
            detail: e.to_string(),
        })?;
        if from == LeadStage::Converted {
            return Err(StoreError::Invalid(format!(
                "lead {} was converted into a deal; work the deal instead (`leadsift deals`)",
                request.lead_id
            )));
        }
        let at_ms = millis(at);
        let closed_at = (!request.to.is_open()).then_some(at_ms);
        sqlx::query(
            "UPDATE leads SET stage = $1, junk_reason = $2, needs_review = 0, updated_at = $3, closed_at = $4 \
             WHERE id = $5",
        )
        .bind(request.to.as_str())
        .bind(junk_reason.map(|r| r.as_str()))
        .bind(at_ms)
        .bind(closed_at)
        .bind(request.lead_id)
        .execute(&mut *tx)
        .await
        .map_err(query_error("moving a lead"))?;
        sqlx::query(
            "INSERT INTO lead_stage_changes (lead_id, from_stage, to_stage, junk_reason, actor, reason, at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(request.lead_id)
        .bind(from.as_str())
        .bind(request.to.as_str())
        .bind(junk_reason.map(|r| r.as_str()))
        .bind(request.actor.clone())
        .bind(request.note.clone())
        .bind(at_ms)
        .execute(&mut *tx)
        .await
        .map_err(query_error("recording a stage change"))?;
        if let Some(label) = leadsift_core::label_for_move(from, request.to, junk_reason) {
            crate::feedback::label_lead_messages(&mut tx, request.lead_id, label, &request.actor, at_ms).await?;
        }
        tx.commit().await.map_err(query_error("moving a lead"))?;
        Ok(StageChange {
            lead_id: request.lead_id,
            from: Some(from),
            to: request.to,
            junk_reason,
            actor: request.actor.clone(),
            reason: request.note.clone(),
            at: from_millis(at_ms),
        })
    }
}
