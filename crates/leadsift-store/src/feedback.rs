//! Managers' labels and model versions.

use chrono::{DateTime, Utc};
use leadsift_core::{Feedback, LeadStage, Message, ModelVersion, NewFeedback, NewModelVersion, StoreError, Verdict};
use sqlx::any::AnyRow;

use crate::{SqlStore, from_millis, millis, query_error, rows};

/// Stages that mean a manager worked the lead as a real inquiry.
const WORKED_STAGES: [LeadStage; 3] = [LeadStage::Qualification, LeadStage::Offer, LeadStage::Converted];

fn version_from_row(row: &AnyRow) -> Result<ModelVersion, StoreError> {
    let accepted: i64 = rows::col(row, "accepted")?;
    Ok(ModelVersion {
        id: rows::col(row, "id")?,
        name: rows::col(row, "name")?,
        created_at: from_millis(rows::col(row, "created_at")?),
        feedback_upto: rows::col(row, "feedback_upto")?,
        feedback_used: rows::col(row, "feedback_used")?,
        accepted: accepted != 0,
        note: rows::col(row, "note")?,
        figures: rows::col(row, "figures")?,
    })
}

const VERSION_COLUMNS: &str = "id, name, created_at, feedback_upto, feedback_used, accepted, note, figures";

/// Inserts one label per message of `lead_id` inside a stage move's transaction.
pub(crate) async fn label_lead_messages(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    lead_id: i64,
    label: Verdict,
    actor: &str,
    at_ms: i64,
) -> Result<u64, StoreError> {
    let done = sqlx::query(
        "INSERT INTO feedback (message_id, label, origin, actor, created_at) \
         SELECT id, $1, $2, $3, $4 FROM messages WHERE lead_id = $5",
    )
    .bind(label.as_str())
    .bind(leadsift_core::FeedbackOrigin::LeadMove.as_str())
    .bind(actor.to_owned())
    .bind(at_ms)
    .bind(lead_id)
    .execute(&mut **tx)
    .await
    .map_err(query_error("recording feedback"))?;
    Ok(done.rows_affected())
}

impl SqlStore {
    /// Ids of the messages attached to a lead, oldest first.
    pub async fn lead_message_ids(&self, lead_id: i64) -> Result<Vec<i64>, StoreError> {
        sqlx::query_scalar("SELECT id FROM messages WHERE lead_id = $1 ORDER BY id")
            .bind(lead_id)
            .fetch_all(&self.pool)
            .await
            .map_err(query_error("reading a lead's messages"))
    }

    pub(crate) async fn insert_feedback(&self, feedback: &NewFeedback, at: DateTime<Utc>) -> Result<i64, StoreError> {
        let (mut tx, _write_gate) = self.begin_write().await.map_err(query_error("recording feedback"))?;
        let exists: Option<i64> = sqlx::query_scalar("SELECT id FROM messages WHERE id = $1")
            .bind(feedback.message_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(query_error("recording feedback"))?;
        if exists.is_none() {
            return Err(StoreError::NotFound(format!("message {}", feedback.message_id)));
        }
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO feedback (message_id, label, origin, actor, created_at) \
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .bind(feedback.message_id)
        .bind(feedback.label.as_str())
        .bind(feedback.origin.as_str())
        .bind(feedback.actor.clone())
        .bind(millis(at))
        .fetch_one(&mut *tx)
        .await
        .map_err(query_error("recording feedback"))?;
        tx.commit().await.map_err(query_error("recording feedback"))?;
        Ok(id)
    }

    pub(crate) async fn query_feedback(&self, after_id: i64, limit: u32) -> Result<Vec<Feedback>, StoreError> {
        let rows = sqlx::query(
            "SELECT f.id, f.message_id, f.label, f.origin, f.actor, f.created_at, m.payload \
             FROM feedback f JOIN messages m ON m.id = f.message_id WHERE f.id > $1 ORDER BY f.id LIMIT $2",
        )
        .bind(after_id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(query_error("reading feedback"))?;
        rows.iter()
            .map(|row| {
                Ok(Feedback {
                    id: rows::col(row, "id")?,
                    message_id: rows::col(row, "message_id")?,
                    label: rows::parsed(row, "label")?,
                    origin: rows::parsed(row, "origin")?,
                    actor: rows::col(row, "actor")?,
                    created_at: from_millis(rows::col(row, "created_at")?),
                    message: rows::json(row, "payload")?,
                })
            })
            .collect()
    }

    pub(crate) async fn query_worked_lead_messages(&self, limit: u32) -> Result<Vec<Message>, StoreError> {
        let stages = WORKED_STAGES.map(|s| format!("'{}'", s.as_str())).join(", ");
        let sql = format!(
            "SELECT m.payload FROM messages m JOIN leads l ON l.id = m.lead_id \
             WHERE l.stage IN ({stages}) ORDER BY m.id DESC LIMIT $1"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(query_error("reading worked leads' messages"))?;
        rows.iter().map(|row| rows::json(row, "payload")).collect()
    }

    pub(crate) async fn insert_model_version(
        &self,
        version: &NewModelVersion,
        at: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        let (mut tx, _write_gate) = self.begin_write().await.map_err(query_error("recording a model version"))?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO model_versions \
             (name, created_at, feedback_upto, feedback_used, accepted, note, figures, model) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
        )
        .bind(version.name.clone())
        .bind(millis(at))
        .bind(version.feedback_upto)
        .bind(version.feedback_used)
        .bind(i64::from(version.accepted))
        .bind(version.note.clone())
        .bind(version.figures.clone())
        .bind(version.model.clone())
        .fetch_one(&mut *tx)
        .await
        .map_err(query_error("recording a model version"))?;
        tx.commit().await.map_err(query_error("recording a model version"))?;
        Ok(id)
    }

    pub(crate) async fn query_current_model(&self) -> Result<Option<(ModelVersion, Vec<u8>)>, StoreError> {
        let sql = format!(
            "SELECT {VERSION_COLUMNS}, model FROM model_versions \
             WHERE accepted = 1 AND model IS NOT NULL ORDER BY id DESC LIMIT 1"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_optional(&self.pool)
            .await
            .map_err(query_error("reading the current model"))?;
        row.map(|row| Ok((version_from_row(&row)?, rows::col(&row, "model")?))).transpose()
    }

    pub(crate) async fn query_current_model_id(&self) -> Result<Option<i64>, StoreError> {
        sqlx::query_scalar("SELECT MAX(id) FROM model_versions WHERE accepted = 1 AND model IS NOT NULL")
            .fetch_one(&self.pool)
            .await
            .map_err(query_error("reading the current model id"))
    }

    pub(crate) async fn query_model_versions(&self, limit: u32) -> Result<Vec<ModelVersion>, StoreError> {
        let sql = format!("SELECT {VERSION_COLUMNS} FROM model_versions ORDER BY id DESC LIMIT $1");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(query_error("reading model versions"))?;
        rows.iter().map(version_from_row).collect()
    }
}
