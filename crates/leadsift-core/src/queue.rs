//! The durable queue between intake and triage.
//!
//! Intake publishes; triage receives, writes to the store, then acks. The
//! contract is at-least-once: anything not acked is delivered again (after a
//! crash, a lease expiry or a rebalance), and the store's writes are
//! idempotent on the message's dedup key, so redelivery never duplicates.

use async_trait::async_trait;

use crate::message::Message;

/// Identifies one delivery for ack/nack: a partition and an offset
/// (the built-in queue uses partition 0 and the inbox row id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeliveryId {
    pub partition: i32,
    pub offset: i64,
}

/// One message handed to a triage worker.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: DeliveryId,
    pub message: Message,
    /// 1 on first delivery.
    pub attempt: u32,
}

/// What publishing one message did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    /// Newly queued.
    New,
    /// Already queued or already stored: nothing was added.
    Duplicate,
    /// Accepted by a queue that cannot tell duplicates at publish time
    /// (the store deduplicates on write).
    Accepted,
}

/// What a failed delivery turned into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nacked {
    /// It will be delivered again.
    WillRetry,
    /// It failed too often and was moved to the dead-letter store.
    DeadLettered,
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("queue unavailable while {operation}: {source}")]
    Unavailable {
        operation: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("queue payload could not be encoded or decoded while {operation}: {source}")]
    Payload {
        operation: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl QueueError {
    /// Unavailability is worth retrying; a payload error never heals.
    pub fn is_retryable(&self) -> bool {
        matches!(self, QueueError::Unavailable { .. })
    }
}

#[async_trait]
pub trait Queue: Send + Sync + std::fmt::Debug {
    /// Durably enqueues messages; returns one outcome per message, in order.
    /// Returning `Ok` means every message is safe to acknowledge upstream.
    async fn publish(&self, messages: &[Message]) -> Result<Vec<Published>, QueueError>;

    /// Takes up to `max` messages for processing; they are invisible to
    /// other consumers until acked, nacked or their lease expires.
    async fn receive(&self, max: usize) -> Result<Vec<Delivery>, QueueError>;

    /// Marks deliveries as done. Call only after the store write committed.
    async fn ack(&self, ids: &[DeliveryId]) -> Result<(), QueueError>;

    /// Reports a failed delivery; after too many attempts it is dead-lettered.
    async fn nack(&self, id: DeliveryId, error: &str) -> Result<Nacked, QueueError>;

    /// Messages waiting or in flight.
    async fn depth(&self) -> Result<u64, QueueError>;
}
