//! The built-in durable queue: the `inbox` table.
//!
//! A row is claimed by setting a lease; it is deleted (acked) only after
//! the triage transaction committed. A crashed worker's rows become
//! claimable again when the lease runs out. Publishing skips messages that
//! are already queued or already stored, so re-importing adds nothing.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use leadsift_core::{Delivery, DeliveryId, Message, Nacked, Published, Quarantined, Queue, QueueError, StoreError};
use sqlx::Row;

use crate::{Backend, SqlStore, millis};

/// Messages per multi-row insert (3 parameters each; far below both backends' limits).
const PUBLISH_CHUNK: usize = 200;

/// Tuning of the built-in queue.
#[derive(Debug, Clone)]
pub struct InboxSettings {
    /// How long a claimed row stays invisible to other workers.
    pub lease: Duration,
    /// Deliveries after which a failing message is dead-lettered to quarantine.
    pub max_attempts: u32,
    /// Delay before a failed delivery is retried.
    pub retry_delay: Duration,
}

impl Default for InboxSettings {
    fn default() -> Self {
        Self { lease: Duration::from_secs(15), max_attempts: 5, retry_delay: Duration::from_secs(5) }
    }
}

fn unavailable(operation: &'static str) -> impl FnOnce(sqlx::Error) -> QueueError {
    move |e| QueueError::Unavailable { operation, source: e.into() }
}

fn store_unavailable(operation: &'static str) -> impl FnOnce(StoreError) -> QueueError {
    move |e| QueueError::Unavailable { operation, source: e.into() }
}

#[async_trait]
impl Queue for SqlStore {
    async fn publish(&self, messages: &[Message]) -> Result<Vec<Published>, QueueError> {
        let now = millis(Utc::now());
        let (mut tx, _write_gate) = self.begin_write().await.map_err(unavailable("publishing"))?;
        let mut inserted = HashSet::new();
        // Multi-row inserts: two statements per chunk instead of two per message.
        for chunk in messages.chunks(PUBLISH_CHUNK) {
            let rows: Vec<String> =
                (0..chunk.len()).map(|i| format!("({})", self.backend.placeholders(3 * i + 1, 3))).collect();
            let sql = format!(
                "INSERT INTO inbox (dedup_key, channel, enqueued_at) \
                 SELECT v.column1, v.column2, v.column3 FROM (VALUES {}) AS v \
                 WHERE NOT EXISTS (SELECT 1 FROM messages m WHERE m.dedup_key = v.column1) \
                 ON CONFLICT (dedup_key) DO NOTHING RETURNING id, dedup_key",
                rows.join(", ")
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for message in chunk {
                query = query.bind(message.dedup_key.as_str()).bind(message.channel.as_str()).bind(now);
            }
            let mut new_ids: HashMap<String, i64> = HashMap::new();
            for row in query.fetch_all(&mut *tx).await.map_err(unavailable("publishing"))? {
                let id: i64 = row.try_get("id").map_err(unavailable("publishing"))?;
                let key: String = row.try_get("dedup_key").map_err(unavailable("publishing"))?;
                new_ids.insert(key, id);
            }
            let fresh: Vec<(i64, &Message)> =
                chunk.iter().filter_map(|m| new_ids.remove(m.dedup_key.as_str()).map(|id| (id, m))).collect();
            if !fresh.is_empty() {
                let rows: Vec<String> =
                    (0..fresh.len()).map(|i| format!("({})", self.backend.placeholders(2 * i + 1, 2))).collect();
                let sql = format!("INSERT INTO inbox_payloads (inbox_id, payload) VALUES {}", rows.join(", "));
                let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
                for (id, message) in &fresh {
                    let payload = serde_json::to_string(message)
                        .map_err(|e| QueueError::Payload { operation: "encoding a message", source: e.into() })?;
                    query = query.bind(*id).bind(payload);
                }
                query.execute(&mut *tx).await.map_err(unavailable("publishing"))?;
                inserted.extend(fresh.iter().map(|(_, m)| m.dedup_key.as_str().to_owned()));
            }
        }
        tx.commit().await.map_err(unavailable("committing a publish"))?;
        // The first occurrence of an inserted key is new; everything else was there already.
        Ok(messages
            .iter()
            .map(|m| if inserted.remove(m.dedup_key.as_str()) { Published::New } else { Published::Duplicate })
            .collect())
    }

    async fn receive(&self, max: usize) -> Result<Vec<Delivery>, QueueError> {
        let now = Utc::now();
        let lease_until = millis(now) + self.inbox.lease.as_millis() as i64;
        let sql = match self.backend {
            Backend::Sqlite => {
                "UPDATE inbox SET lease_until = $1, attempts = attempts + 1 WHERE id IN \
                 (SELECT id FROM inbox WHERE lease_until <= $2 ORDER BY id LIMIT $3) RETURNING id, attempts"
            }
            Backend::Postgres => {
                "UPDATE inbox SET lease_until = $1, attempts = attempts + 1 WHERE id IN \
                 (SELECT id FROM inbox WHERE lease_until <= $2 ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED) \
                 RETURNING id, attempts"
            }
        };
        let (mut tx, write_gate) = self.begin_write().await.map_err(unavailable("claiming inbox rows"))?;
        let claimed = sqlx::query(sql)
            .bind(lease_until)
            .bind(millis(now))
            .bind(max as i64)
            .fetch_all(&mut *tx)
            .await
            .map_err(unavailable("claiming inbox rows"))?;
        tx.commit().await.map_err(unavailable("claiming inbox rows"))?;
        drop(write_gate);
        let mut attempts: HashMap<i64, i64> = HashMap::with_capacity(claimed.len());
        for row in &claimed {
            let id: i64 = row.try_get("id").map_err(unavailable("reading a claimed row"))?;
            attempts.insert(id, row.try_get("attempts").map_err(unavailable("reading a claimed row"))?);
        }
        if attempts.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<i64> = attempts.keys().copied().collect();
        let sql = format!(
            "SELECT inbox_id, payload FROM inbox_payloads WHERE inbox_id IN ({})",
            self.backend.placeholders(1, ids.len())
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for id in &ids {
            query = query.bind(*id);
        }
        let rows = query.fetch_all(&self.pool).await.map_err(unavailable("reading claimed payloads"))?;
        let mut deliveries = Vec::with_capacity(rows.len());
        for row in rows {
            let id: i64 = row.try_get("inbox_id").map_err(unavailable("reading a claimed row"))?;
            let payload: String = row.try_get("payload").map_err(unavailable("reading a claimed row"))?;
            match serde_json::from_str::<Message>(&payload) {
                Ok(message) => deliveries.push(Delivery {
                    id: DeliveryId { partition: 0, offset: id },
                    message,
                    attempt: attempts.get(&id).copied().unwrap_or(1).max(1) as u32,
                }),
                Err(e) => {
                    // A row that cannot be decoded never will be: keep it in
                    // quarantine rather than retrying or losing it.
                    tracing::error!(inbox_id = id, error = %e, "undecodable inbox row moved to quarantine");
                    self.dead_letter(id, &payload, &format!("undecodable queue payload: {e}"))
                        .await
                        .map_err(store_unavailable("quarantining an undecodable row"))?;
                }
            }
        }
        deliveries.sort_by_key(|d| d.id);
        Ok(deliveries)
    }

    async fn ack(&self, ids: &[DeliveryId]) -> Result<(), QueueError> {
        for chunk in ids.chunks(500) {
            let (mut tx, _write_gate) = self.begin_write().await.map_err(unavailable("acking inbox rows"))?;
            for table_sql in ["DELETE FROM inbox_payloads WHERE inbox_id IN", "DELETE FROM inbox WHERE id IN"] {
                let sql = format!("{table_sql} ({})", self.backend.placeholders(1, chunk.len()));
                let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
                for id in chunk {
                    query = query.bind(id.offset);
                }
                query.execute(&mut *tx).await.map_err(unavailable("acking inbox rows"))?;
            }
            tx.commit().await.map_err(unavailable("acking inbox rows"))?;
        }
        Ok(())
    }

    async fn nack(&self, id: DeliveryId, error: &str) -> Result<Nacked, QueueError> {
        let row = sqlx::query(
            "SELECT i.attempts, p.payload FROM inbox i JOIN inbox_payloads p ON p.inbox_id = i.id WHERE i.id = $1",
        )
        .bind(id.offset)
        .fetch_optional(&self.pool)
        .await
        .map_err(unavailable("reading a failed row"))?;
        let Some(row) = row else {
            // Already acked (a redelivery raced us): nothing to retry.
            return Ok(Nacked::WillRetry);
        };
        let attempts: i64 = row.try_get("attempts").map_err(unavailable("reading a failed row"))?;
        if attempts >= i64::from(self.inbox.max_attempts) {
            let payload: String = row.try_get("payload").map_err(unavailable("reading a failed row"))?;
            self.dead_letter(id.offset, &payload, &format!("failed {attempts} times; last error: {error}"))
                .await
                .map_err(store_unavailable("dead-lettering a row"))?;
            return Ok(Nacked::DeadLettered);
        }
        let retry_at = millis(Utc::now()) + self.inbox.retry_delay.as_millis() as i64;
        let (mut tx, _write_gate) = self.begin_write().await.map_err(unavailable("scheduling a retry"))?;
        sqlx::query("UPDATE inbox SET lease_until = $1, last_error = $2 WHERE id = $3")
            .bind(retry_at)
            .bind(error)
            .bind(id.offset)
            .execute(&mut *tx)
            .await
            .map_err(unavailable("scheduling a retry"))?;
        tx.commit().await.map_err(unavailable("scheduling a retry"))?;
        Ok(Nacked::WillRetry)
    }

    async fn depth(&self) -> Result<u64, QueueError> {
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM inbox")
            .fetch_one(&self.pool)
            .await
            .map_err(unavailable("counting inbox rows"))?;
        Ok(count as u64)
    }
}

impl SqlStore {
    /// Moves an inbox row to quarantine in one transaction.
    async fn dead_letter(&self, inbox_id: i64, payload: &str, error: &str) -> Result<(), StoreError> {
        let (mut tx, _write_gate) = self.begin_write().await.map_err(crate::query_error("dead-lettering"))?;
        let record = Quarantined {
            origin: format!("inbox:{inbox_id}"),
            channel: serde_json::from_str::<Message>(payload).ok().map(|m| m.channel),
            error: error.to_owned(),
            raw: payload.as_bytes().to_vec(),
            at: Utc::now(),
        };
        crate::triage::insert_quarantine(&mut tx, &record).await?;
        for sql in ["DELETE FROM inbox_payloads WHERE inbox_id = $1", "DELETE FROM inbox WHERE id = $1"] {
            sqlx::query(sql).bind(inbox_id).execute(&mut *tx).await.map_err(crate::query_error("dead-lettering"))?;
        }
        tx.commit().await.map_err(crate::query_error("dead-lettering"))?;
        Ok(())
    }
}
