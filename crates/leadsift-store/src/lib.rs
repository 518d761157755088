//! The lead store and the built-in durable queue, on SQLite or PostgreSQL.
//!
//! One implementation, [`SqlStore`], serves both backends through sqlx's
//! `Any` driver: the schema is the same on both (times as Unix
//! milliseconds, flags as integers, JSON as text), so every query is written
//! once with `$n` placeholders, which SQLite accepts too. The few places
//! where the dialects differ (row locking for the queue, DDL types) branch
//! on [`Backend`]. The built-in queue is the `inbox` table of the same
//! database: intake inserts there idempotently, triage claims rows under a
//! lease and deletes them only after the triage transaction committed.
//!
//! This crate must not know about rules, models or channels: it stores what
//! the core types describe.

mod bitrix24;
mod calls;
mod channels;
mod deals;
mod feedback;
mod inbox;
mod leads;
mod lists;
mod reports;
mod rows;
mod triage;
mod users;

use std::borrow::Cow;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use leadsift_core::{
    AdSpend, Classification, Converted, Deal, DealClosing, DealFilter, DedupKey, Feedback, Lead, LeadConversion,
    LeadFilter, LeadStore, ListAuditRecord, ListEntry, ListKind, Message, MessageCounts, ModelVersion, NewFeedback,
    NewListEntry, NewModelVersion, PhoneNumber, Quarantined, Report, ReportPeriod, Sender, SenderStanding, SourceRef,
    SpendImport, StageChange, StageMove, StoreError, StoredMessage, TriageWrite, Triaged,
};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyPool, Executor};
use tokio::sync::{Mutex, OwnedMutexGuard};

pub use bitrix24::{Bitrix24Event, Bitrix24EventKind, Bitrix24OutboxCounts, Bitrix24Retry};
pub use channels::{ImapCheckpoint, ImapFeedback, ImapOrigin, PendingImapAction};
pub use inbox::InboxSettings;

/// Which database a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// Picks the backend from the URL scheme.
    pub fn from_url(url: &str) -> Result<Self, StoreError> {
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Ok(Backend::Postgres)
        } else {
            Err(StoreError::Invalid(format!(
                "unsupported database URL {:?}: expected sqlite://PATH or postgres://HOST/DB",
                redact_url(url)
            )))
        }
    }
}

impl Backend {
    /// Placeholders for `count` parameters numbered from `first`, each used
    /// once, in order. SQLite gets anonymous `?`: sqlx resolves numbered
    /// parameters by name, which costs O(n²) in a multi-row insert.
    pub(crate) fn placeholders(self, first: usize, count: usize) -> String {
        match self {
            Backend::Sqlite => vec!["?"; count].join(", "),
            Backend::Postgres => (first..first + count).map(|i| format!("${i}")).collect::<Vec<_>>().join(", "),
        }
    }
}

/// Connection settings.
#[derive(Debug, Clone)]
pub struct StoreSettings {
    pub url: String,
    pub max_connections: u32,
    pub acquire_timeout: Duration,
    pub inbox: InboxSettings,
}

impl StoreSettings {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            max_connections: 8,
            acquire_timeout: Duration::from_secs(30),
            inbox: InboxSettings::default(),
        }
    }
}

/// The store: leads, messages, contacts, lists, quarantine and the inbox queue.
#[derive(Debug, Clone)]
pub struct SqlStore {
    pool: AnyPool,
    backend: Backend,
    inbox: InboxSettings,
    write_gate: Arc<Mutex<()>>,
}

/// Schema migrations: version, description, SQLite and PostgreSQL text.
const MIGRATIONS: &[(i64, &str, &str, &str)] = &[
    (
        1,
        "init",
        include_str!("../migrations/sqlite/0001_init.sql"),
        include_str!("../migrations/postgres/0001_init.sql"),
    ),
    (
        2,
        "feedback",
        include_str!("../migrations/sqlite/0002_feedback.sql"),
        include_str!("../migrations/postgres/0002_feedback.sql"),
    ),
    (
        3,
        "channels",
        include_str!("../migrations/sqlite/0003_channels.sql"),
        include_str!("../migrations/postgres/0003_channels.sql"),
    ),
    (
        4,
        "sales",
        include_str!("../migrations/sqlite/0004_sales.sql"),
        include_str!("../migrations/postgres/0004_sales.sql"),
    ),
    (
        5,
        "bitrix24",
        include_str!("../migrations/sqlite/0005_bitrix24.sql"),
        include_str!("../migrations/postgres/0005_bitrix24.sql"),
    ),
    (
        6,
        "hot path indexes",
        include_str!("../migrations/sqlite/0006_hot_path_indexes.sql"),
        include_str!("../migrations/postgres/0006_hot_path_indexes.sql"),
    ),
    (
        7,
        "users",
        include_str!("../migrations/sqlite/0007_users.sql"),
        include_str!("../migrations/postgres/0007_users.sql"),
    ),
    (
        8,
        "partial sender indexes",
        include_str!("../migrations/sqlite/0008_partial_sender_indexes.sql"),
        include_str!("../migrations/postgres/0008_partial_sender_indexes.sql"),
    ),
];

/// The URL with any password replaced, for logs and errors.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{}:***{}", &url[..scheme_end + 3], user, &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

impl SqlStore {
    /// Connects (creating a SQLite file if needed) and applies migrations.
    pub async fn connect(settings: &StoreSettings) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = Backend::from_url(&settings.url)?;
        let url = match backend {
            Backend::Sqlite if !settings.url.contains("mode=") && !settings.url.contains(":memory:") => {
                let sep = if settings.url.contains('?') { '&' } else { '?' };
                format!("{}{sep}mode=rwc", settings.url)
            }
            _ => settings.url.clone(),
        };
        let options = AnyConnectOptions::from_str(&url).map_err(|e| StoreError::Connect(e.into()))?;
        let max_connections = match backend {
            // SQLite has one writer; a few readers are plenty.
            Backend::Sqlite => settings.max_connections.min(4),
            Backend::Postgres => settings.max_connections,
        };
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(settings.acquire_timeout)
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        conn.execute(
                            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                             PRAGMA busy_timeout = 15000; PRAGMA foreign_keys = ON;",
                        )
                        .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(|e| StoreError::Connect(format!("{}: {e}", redact_url(&settings.url)).into()))?;
        let store = Self { pool, backend, inbox: settings.inbox.clone(), write_gate: Arc::new(Mutex::new(())) };
        store.migrate().await?;
        Ok(store)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Applies pending migrations. On PostgreSQL sqlx holds an advisory lock
    /// meanwhile, so workers starting together migrate once.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let migrations = MIGRATIONS
            .iter()
            .map(|&(version, description, sqlite, postgres)| {
                let sql = match self.backend {
                    Backend::Sqlite => sqlite,
                    Backend::Postgres => postgres,
                };
                Migration::new(
                    version,
                    Cow::Borrowed(description),
                    MigrationType::Simple,
                    sqlx::SqlSafeStr::into_sql_str(sql),
                    false,
                )
            })
            .collect();
        let migrator = Migrator { migrations: Cow::Owned(migrations), ..Migrator::DEFAULT };
        migrator.run(&self.pool).await.map_err(|e| StoreError::Migrate(e.into()))
    }

    /// A transaction that will write, with the in-process write gate held
    /// until the returned guard is dropped (after commit).
    ///
    /// SQLite has one writer. Queuing writers of this process on a mutex
    /// avoids SQLite's busy handler, which sleeps in millisecond steps
    /// while another connection writes; `BEGIN IMMEDIATE` takes the lock up
    /// front, because a deferred transaction that reads first and writes
    /// later fails with "database is locked" when another writer committed
    /// in between. Other processes on the same file still wait through
    /// `busy_timeout`. PostgreSQL needs neither.
    pub(crate) async fn begin_write(
        &self,
    ) -> Result<(sqlx::Transaction<'static, sqlx::Any>, Option<OwnedMutexGuard<()>>), sqlx::Error> {
        match self.backend {
            Backend::Sqlite => {
                let gate = Arc::clone(&self.write_gate).lock_owned().await;
                Ok((self.pool.begin_with("BEGIN IMMEDIATE").await?, Some(gate)))
            }
            Backend::Postgres => Ok((self.pool.begin().await?, None)),
        }
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

#[async_trait]
impl LeadStore for SqlStore {
    async fn standings(&self, senders: &[Sender], at: DateTime<Utc>) -> Result<Vec<SenderStanding>, StoreError> {
        self.query_standings(senders, at).await
    }

    async fn record_triage(&self, batch: &[Triaged], at: DateTime<Utc>) -> Result<Vec<TriageWrite>, StoreError> {
        self.record_triage_batch(batch, at).await
    }

    async fn recent_short_calls(
        &self,
        phone: &PhoneNumber,
        since: DateTime<Utc>,
        max_secs: u32,
        except: &DedupKey,
    ) -> Result<u32, StoreError> {
        self.count_recent_short_calls(phone, since, max_secs, except).await
    }

    async fn quarantine(&self, record: &Quarantined) -> Result<i64, StoreError> {
        let (mut tx, _write_gate) = self.begin_write().await.map_err(query_error("quarantining input"))?;
        let id = triage::insert_quarantine(&mut tx, record).await?;
        tx.commit().await.map_err(query_error("quarantining input"))?;
        Ok(id)
    }

    async fn quarantined(&self, limit: u32) -> Result<Vec<(i64, Quarantined)>, StoreError> {
        let rows = sqlx::query("SELECT id, origin, channel, error, raw, at FROM quarantine ORDER BY id DESC LIMIT $1")
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(query_error("reading quarantine"))?;
        rows.iter()
            .map(|row| {
                Ok((
                    rows::col(row, "id")?,
                    Quarantined {
                        origin: rows::col(row, "origin")?,
                        channel: rows::parsed_opt(row, "channel")?,
                        error: rows::col(row, "error")?,
                        raw: rows::col(row, "raw")?,
                        at: from_millis(rows::col(row, "at")?),
                    },
                ))
            })
            .collect()
    }

    async fn message(&self, id: i64) -> Result<Option<StoredMessage>, StoreError> {
        let row = sqlx::query(
            "SELECT id, payload, verdict, confidence, reasons, lead_id, triaged_at FROM messages WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(query_error("reading a message"))?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(StoredMessage {
            id: rows::col(&row, "id")?,
            message: rows::json(&row, "payload")?,
            classification: Classification {
                verdict: rows::parsed(&row, "verdict")?,
                confidence: rows::col(&row, "confidence")?,
                reasons: rows::json(&row, "reasons")?,
            },
            lead_id: rows::col(&row, "lead_id")?,
            triaged_at: from_millis(rows::col(&row, "triaged_at")?),
        }))
    }

    async fn message_counts(&self) -> Result<MessageCounts, StoreError> {
        let rows = sqlx::query(
            "SELECT channel, verdict, COUNT(*) AS n FROM messages GROUP BY channel, verdict ORDER BY channel, verdict",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(query_error("counting messages"))?;
        let rows = rows
            .iter()
            .map(|row| Ok((rows::parsed(row, "channel")?, rows::parsed(row, "verdict")?, rows::col(row, "n")?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(MessageCounts { rows })
    }

    async fn leads(&self, filter: &LeadFilter) -> Result<Vec<Lead>, StoreError> {
        self.query_leads(filter).await
    }

    async fn lead(&self, id: i64) -> Result<Option<Lead>, StoreError> {
        self.query_lead(id).await
    }

    async fn lead_history(&self, id: i64) -> Result<Vec<StageChange>, StoreError> {
        self.query_lead_history(id).await
    }

    async fn move_lead(&self, request: &StageMove, at: DateTime<Utc>) -> Result<StageChange, StoreError> {
        self.apply_stage_move(request, at).await
    }

    async fn add_list_entry(&self, entry: &NewListEntry, at: DateTime<Utc>) -> Result<ListEntry, StoreError> {
        self.insert_list_entry(entry, at).await
    }

    async fn remove_list_entry(
        &self,
        list: ListKind,
        target: &SourceRef,
        actor: &str,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.retire_list_entry(list, target, actor, reason, at).await
    }

    async fn list_entries(&self, list: ListKind, at: DateTime<Utc>) -> Result<Vec<ListEntry>, StoreError> {
        self.query_list_entries(list, at).await
    }

    async fn list_audit(&self, list: ListKind, limit: u32) -> Result<Vec<ListAuditRecord>, StoreError> {
        self.query_list_audit(list, limit).await
    }

    async fn record_feedback(&self, feedback: &NewFeedback, at: DateTime<Utc>) -> Result<i64, StoreError> {
        self.insert_feedback(feedback, at).await
    }

    async fn feedback(&self, after_id: i64, limit: u32) -> Result<Vec<Feedback>, StoreError> {
        self.query_feedback(after_id, limit).await
    }

    async fn worked_lead_messages(&self, limit: u32) -> Result<Vec<Message>, StoreError> {
        self.query_worked_lead_messages(limit).await
    }

    async fn record_model_version(&self, version: &NewModelVersion, at: DateTime<Utc>) -> Result<i64, StoreError> {
        self.insert_model_version(version, at).await
    }

    async fn current_model(&self) -> Result<Option<(ModelVersion, Vec<u8>)>, StoreError> {
        self.query_current_model().await
    }

    async fn current_model_id(&self) -> Result<Option<i64>, StoreError> {
        self.query_current_model_id().await
    }

    async fn model_versions(&self, limit: u32) -> Result<Vec<ModelVersion>, StoreError> {
        self.query_model_versions(limit).await
    }

    async fn convert_lead(&self, request: &LeadConversion, at: DateTime<Utc>) -> Result<Converted, StoreError> {
        self.apply_conversion(request, at).await
    }

    async fn close_deal(&self, request: &DealClosing, at: DateTime<Utc>) -> Result<Deal, StoreError> {
        self.apply_deal_closing(request, at).await
    }

    async fn deal(&self, id: i64) -> Result<Option<Deal>, StoreError> {
        self.query_deal(id).await
    }

    async fn deals(&self, filter: &DealFilter) -> Result<Vec<Deal>, StoreError> {
        self.query_deals(filter).await
    }

    async fn import_spend(&self, lines: &[AdSpend], at: DateTime<Utc>) -> Result<SpendImport, StoreError> {
        self.upsert_spend(lines, at).await
    }

    async fn spend(&self, from: NaiveDate, to: NaiveDate) -> Result<Vec<AdSpend>, StoreError> {
        self.query_spend(from, to).await
    }

    async fn report(&self, period: &ReportPeriod) -> Result<Report, StoreError> {
        self.build_report(period).await
    }
}

pub(crate) fn millis(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

pub(crate) fn from_millis(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// Wraps an sqlx error with the operation that failed.
pub(crate) fn query_error(operation: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| StoreError::Query { operation, source: source.into() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_follows_the_scheme() {
        assert_eq!(Backend::from_url("sqlite://x.db").unwrap(), Backend::Sqlite);
        assert_eq!(Backend::from_url("postgres://h/db").unwrap(), Backend::Postgres);
        assert!(Backend::from_url("mysql://h/db").is_err());
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact_url("postgres://u:secret@h:5432/db"), "postgres://u:***@h:5432/db");
        assert_eq!(redact_url("postgres://h/db"), "postgres://h/db");
        assert_eq!(redact_url("sqlite://x.db"), "sqlite://x.db");
    }
}
