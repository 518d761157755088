//! A caller's recent call history, for telling robodialers (many short
//! calls from one number within minutes) from people.

use chrono::{DateTime, Utc};
use leadsift_core::{DedupKey, PhoneNumber, StoreError};

use crate::{Backend, SqlStore, millis, query_error};

impl SqlStore {
    pub(crate) async fn count_recent_short_calls(
        &self,
        phone: &PhoneNumber,
        since: DateTime<Utc>,
        max_secs: u32,
        except: &DedupKey,
    ) -> Result<u32, StoreError> {
        // The duration lives in the stored message JSON; a call without one counts as short.
        let duration = match self.backend {
            Backend::Sqlite => "COALESCE(CAST(json_extract(payload, '$.call.duration_secs') AS INTEGER), 0)",
            Backend::Postgres => "COALESCE(CAST(CAST(payload AS jsonb) #>> '{call,duration_secs}' AS BIGINT), 0)",
        };
        let sql = format!(
            "SELECT COUNT(*) FROM messages WHERE sender_phone = $1 AND channel = 'call' AND received_at >= $2 \
             AND dedup_key <> $3 AND {duration} <= $4"
        );
        let count: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(phone.as_str())
            .bind(millis(since))
            .bind(except.as_str())
            .bind(i64::from(max_secs))
            .fetch_one(&self.pool)
            .await
            .map_err(query_error("counting a caller's recent short calls"))?;
        Ok(u32::try_from(count).unwrap_or(u32::MAX))
    }
}
