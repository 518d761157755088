//! The store trait: messages with verdicts, leads, contacts, lists, quarantine.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::feedback::{Feedback, ModelVersion, NewFeedback, NewModelVersion};
use crate::identity::{PhoneNumber, SourceRef};
use crate::lead::{Lead, LeadFilter, StageChange, StageMove};
use crate::lists::{ListAuditRecord, ListEntry, ListKind, NewListEntry, SenderStanding};
use crate::message::{Channel, DedupKey, Message, Sender};
use crate::report::{Report, ReportPeriod};
use crate::routing::Route;
use crate::sales::{AdSpend, Converted, Deal, DealClosing, DealFilter, LeadConversion, SpendImport};
use crate::verdict::{Classification, Verdict};

/// A classified, routed message ready to be written.
#[derive(Debug, Clone)]
pub struct Triaged {
    pub message: Message,
    pub classification: Classification,
    pub route: Route,
    /// Ad source and campaign from attribution (UTM wins over destination mapping).
    pub source: Option<String>,
    pub campaign: Option<String>,
}

/// What the store did with one triaged message.
#[derive(Debug, Clone, PartialEq)]
pub enum TriageWrite {
    Stored {
        message_id: i64,
        lead_id: Option<i64>,
        /// False when the message was attached to the contact's open lead.
        lead_created: bool,
        blacklisted: Vec<SourceRef>,
    },
    /// A message with this dedup key was stored before; nothing changed.
    Duplicate,
}

/// Input that could not be turned into a message, kept for inspection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Quarantined {
    /// Where it came from: a file path, an endpoint, a queue.
    pub origin: String,
    pub channel: Option<Channel>,
    pub error: String,
    /// The raw input, capped by the caller.
    pub raw: Vec<u8>,
    pub at: DateTime<Utc>,
}

/// A stored message with its verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredMessage {
    pub id: i64,
    pub message: Message,
    pub classification: Classification,
    pub lead_id: Option<i64>,
    pub triaged_at: DateTime<Utc>,
}

/// Counts of stored messages by channel and verdict.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MessageCounts {
    pub rows: Vec<(Channel, Verdict, i64)>,
}

impl MessageCounts {
    pub fn total(&self) -> i64 {
        self.rows.iter().map(|(_, _, n)| n).sum()
    }

    pub fn by_verdict(&self, verdict: Verdict) -> i64 {
        self.rows.iter().filter(|(_, v, _)| *v == verdict).map(|(_, _, n)| n).sum()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot connect to the store: {0}")]
    Connect(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("store migration failed: {0}")]
    Migrate(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("store query failed while {operation}: {source}")]
    Query {
        operation: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("stored data is corrupt ({what}): {detail}")]
    Corrupt { what: &'static str, detail: String },
    #[error("{0} not found")]
    NotFound(String),
    #[error("invalid request: {0}")]
    Invalid(String),
}

impl StoreError {
    /// Connection and query failures may heal; the rest are permanent.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Connect(_) | StoreError::Query { .. })
    }
}

#[async_trait]
pub trait LeadStore: Send + Sync {
    /// List standing of each sender (in order), at time `at` (expired entries don't count).
    async fn standings(&self, senders: &[Sender], at: DateTime<Utc>) -> Result<Vec<SenderStanding>, StoreError>;

    /// Writes verdicts, leads, contacts and blacklist changes for a batch in
    /// one transaction. Idempotent on each message's dedup key.
    async fn record_triage(&self, batch: &[Triaged], at: DateTime<Utc>) -> Result<Vec<TriageWrite>, StoreError>;

    /// Stored calls from `phone` received at or after `since` that lasted at
    /// most `max_secs` (a call without a duration counts as short), not
    /// counting the call `except`. Telephony intake uses it to mark
    /// repeated short calls for the rules.
    async fn recent_short_calls(
        &self,
        phone: &PhoneNumber,
        since: DateTime<Utc>,
        max_secs: u32,
        except: &DedupKey,
    ) -> Result<u32, StoreError>;

    /// Keeps input that could not be processed; returns its id.
    async fn quarantine(&self, record: &Quarantined) -> Result<i64, StoreError>;
    async fn quarantined(&self, limit: u32) -> Result<Vec<(i64, Quarantined)>, StoreError>;

    async fn message(&self, id: i64) -> Result<Option<StoredMessage>, StoreError>;
    async fn message_counts(&self) -> Result<MessageCounts, StoreError>;

    async fn leads(&self, filter: &LeadFilter) -> Result<Vec<Lead>, StoreError>;
    async fn lead(&self, id: i64) -> Result<Option<Lead>, StoreError>;
    async fn lead_history(&self, id: i64) -> Result<Vec<StageChange>, StoreError>;
    async fn move_lead(&self, request: &StageMove, at: DateTime<Utc>) -> Result<StageChange, StoreError>;

    /// Adds an entry; if an active one exists for the same target, returns it unchanged.
    async fn add_list_entry(&self, entry: &NewListEntry, at: DateTime<Utc>) -> Result<ListEntry, StoreError>;
    /// Removes the active entry for `target`; false if there was none.
    async fn remove_list_entry(
        &self,
        list: ListKind,
        target: &SourceRef,
        actor: &str,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    async fn list_entries(&self, list: ListKind, at: DateTime<Utc>) -> Result<Vec<ListEntry>, StoreError>;
    async fn list_audit(&self, list: ListKind, limit: u32) -> Result<Vec<ListAuditRecord>, StoreError>;

    /// Records a label for a stored message (moves to or out of junk record
    /// theirs inside [`LeadStore::move_lead`]). `NotFound` if there is no such message.
    async fn record_feedback(&self, feedback: &NewFeedback, at: DateTime<Utc>) -> Result<i64, StoreError>;
    /// Labels with id greater than `after_id`, oldest first, at most `limit`.
    async fn feedback(&self, after_id: i64, limit: u32) -> Result<Vec<Feedback>, StoreError>;
    /// Messages of leads a manager moved past the first stage (qualification,
    /// offer, converted): real inquiries, as judged by the people who worked them.
    async fn worked_lead_messages(&self, limit: u32) -> Result<Vec<Message>, StoreError>;

    /// Records an attempt to update the model; returns its id.
    async fn record_model_version(&self, version: &NewModelVersion, at: DateTime<Utc>) -> Result<i64, StoreError>;
    /// The newest accepted model version with its serialised model.
    async fn current_model(&self) -> Result<Option<(ModelVersion, Vec<u8>)>, StoreError>;
    /// The id of the newest accepted model version (cheap; polled by workers).
    async fn current_model_id(&self) -> Result<Option<i64>, StoreError>;
    /// The newest attempts, accepted or refused, newest first.
    async fn model_versions(&self, limit: u32) -> Result<Vec<ModelVersion>, StoreError>;

    /// Converts an open lead into contact + company + deal in one
    /// transaction: the lead's contact (created from its identities if it
    /// has none), a company (the explicit one, else one derived from a
    /// corporate email domain, never a free-mail one), a deal in progress,
    /// and the lead's move to `converted` in its history.
    async fn convert_lead(&self, request: &LeadConversion, at: DateTime<Utc>) -> Result<Converted, StoreError>;
    /// Closes a deal in progress as won or lost.
    async fn close_deal(&self, request: &DealClosing, at: DateTime<Utc>) -> Result<Deal, StoreError>;
    async fn deal(&self, id: i64) -> Result<Option<Deal>, StoreError>;
    async fn deals(&self, filter: &DealFilter) -> Result<Vec<Deal>, StoreError>;

    /// Upserts ad spend lines, idempotent per (date, source, campaign): a
    /// line already stored with the same amount is unchanged, with another
    /// amount it is updated. All lines in one transaction.
    async fn import_spend(&self, lines: &[AdSpend], at: DateTime<Utc>) -> Result<SpendImport, StoreError>;
    /// Spend lines dated within `[from, to]`, by date.
    async fn spend(&self, from: chrono::NaiveDate, to: chrono::NaiveDate) -> Result<Vec<AdSpend>, StoreError>;

    /// Every management report for a period (definitions in [`crate::report`]).
    async fn report(&self, period: &ReportPeriod) -> Result<Report, StoreError>;
}
