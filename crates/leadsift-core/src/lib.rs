//! leadsift's domain model: messages from every channel, verdicts and the
//! reasons behind them, leads with their sales stages, contacts, black- and
//! allowlists, and the traits the adapters implement (store, queue,
//! classifier).
//!
//! This crate does no I/O and depends on no runtime, database or network
//! crate: adapters depend on it, never the other way round. The key design
//! decision is that every triage decision passes through two pure
//! functions, [`ScoringPolicy::decide`] (evidence → verdict) and
//! [`RoutingPolicy::route`] (verdict → lead or stored message), so the rules
//! engine, the ML model and every channel share one behaviour, including the
//! rule that an unsure verdict becomes a lead to review rather than junk.

pub mod access;
pub mod classify;
pub mod feedback;
pub mod identity;
pub mod lead;
pub mod lists;
pub mod message;
pub mod names;
pub mod queue;
pub mod report;
pub mod routing;
pub mod sales;
pub mod secret;
pub mod store;
pub mod verdict;

pub use access::{Role, Session, User};
pub use classify::Classifier;
pub use feedback::{Feedback, FeedbackOrigin, ModelVersion, NewFeedback, NewModelVersion, label_for_move};
pub use identity::{Domain, EmailAddress, IdentityError, IdentityKind, MessengerHandle, PhoneNumber, SourceRef};
pub use lead::{JunkReason, Lead, LeadFilter, LeadStage, StageChange, StageMove};
pub use lists::{EntryOrigin, ListAuditRecord, ListEntry, ListKind, NewListEntry, SenderStanding};
pub use message::{Attachment, CallInfo, Channel, DedupKey, Header, Message, Sender, Utm};
pub use names::UnknownName;
pub use queue::{Delivery, DeliveryId, Nacked, Published, Queue, QueueError};
pub use report::{Report, ReportInputs, ReportPeriod};
pub use routing::{Route, RoutingPolicy};
pub use sales::{
    AdSpend, Amount, Company, Converted, Currency, Deal, DealClosing, DealFilter, DealStage, LeadConversion, Money,
    MoneyError, SpendImport,
};
pub use secret::Secret;
pub use store::{LeadStore, MessageCounts, Quarantined, StoreError, StoredMessage, TriageWrite, Triaged};
pub use verdict::{Classification, Evidence, Reason, ReasonOrigin, ScoringPolicy, Verdict};
