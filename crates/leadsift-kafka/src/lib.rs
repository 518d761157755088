//! The Kafka queue between intake and triage: `leadsift_core::Queue` over
//! rdkafka, for running intake and triage as separate processes.
//!
//! Depends on the core traits and rdkafka only; it knows nothing of the
//! store. The key design decision is that Kafka's offset is the ack: a
//! consumer group member commits a partition's position only up to the
//! lowest message not yet acked (the triage worker acks after its store
//! transaction committed), so a crash or rebalance redelivers whatever was
//! not stored and the store's idempotent writes absorb the repeats. A
//! message that fails `max_attempts` times is copied to the dead-letter
//! topic with its error in headers and then counts as done.
//!
//! Messages are keyed by the sender's identity, so one sender's messages
//! stay in one partition and in order (blacklisting and repeat-inquiry
//! merging see them in sequence). Topics are created by the deployment
//! (`deploy/` has the compose service that does it), not by this crate.

mod config;
pub mod mock;
mod offsets;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use leadsift_core::{Delivery, DeliveryId, Message, Nacked, Published, Queue, QueueError};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientConfig, ClientContext, Message as _, Offset, TopicPartitionList};

pub use config::KafkaSettings;
pub use offsets::{InFlight, OffsetTracker};

/// Header names on dead-letter messages.
pub const HEADER_ERROR: &str = "leadsift-error";
pub const HEADER_ATTEMPTS: &str = "leadsift-attempts";
pub const HEADER_SOURCE: &str = "leadsift-source";

/// How long a computed queue depth is reused.
const DEPTH_REFRESH: Duration = Duration::from_secs(2);

/// How often librdkafka reports statistics, which carry each partition's
/// high watermark as of the last fetch.
const STATISTICS_INTERVAL: Duration = Duration::from_secs(1);

/// High watermarks older than this are not trusted for the depth.
const WATERMARKS_FRESH: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum KafkaQueueError {
    #[error("invalid Kafka queue URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: &'static str },
    #[error("cannot create the Kafka {client}: {source}")]
    CreatingClient {
        client: &'static str,
        #[source]
        source: KafkaError,
    },
    #[error("cannot subscribe to Kafka topic {topic}: {source}")]
    Subscribing {
        topic: String,
        #[source]
        source: KafkaError,
    },
}

/// What this process does with the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueRole {
    /// Intake only: publishes, never joins the consumer group.
    Publish,
    /// Triage (and intake): publishes, and consumes as a group member.
    PublishAndConsume,
}

fn unavailable(operation: &'static str) -> impl FnOnce(KafkaError) -> QueueError {
    move |e| QueueError::Unavailable { operation, source: e.into() }
}

/// A nacked message waiting to be handed out again.
#[derive(Debug)]
struct Retry {
    due: Instant,
    delivery: Delivery,
}

/// State shared between the queue and the consumer's rebalance callback.
#[derive(Debug)]
struct Shared {
    topic: String,
    drain_deadline: Duration,
    tracker: Mutex<OffsetTracker>,
    /// Signalled whenever messages finish, for drains.
    finished: Condvar,
    retries: Mutex<VecDeque<Retry>>,
    /// Each partition's high watermark from the last statistics, and when
    /// they came: the depth without a round trip to the broker (one that
    /// queues behind the consumer's long-polling fetch on the same
    /// connection took 2–3 s for six partitions).
    high_watermarks: Mutex<Option<(Instant, HashMap<i32, i64>)>>,
}

impl Shared {
    fn tracker(&self) -> MutexGuard<'_, OffsetTracker> {
        // A panic while holding the lock leaves plain bookkeeping behind: keep using it.
        self.tracker.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn retries(&self) -> MutexGuard<'_, VecDeque<Retry>> {
        self.retries.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn high_watermarks(&self) -> MutexGuard<'_, Option<(Instant, HashMap<i32, i64>)>> {
        self.high_watermarks.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn positions(&self, positions: &[(i32, i64)]) -> Result<TopicPartitionList, KafkaError> {
        let mut list = TopicPartitionList::new();
        for (partition, position) in positions {
            list.add_partition_offset(&self.topic, *partition, Offset::Offset(*position))?;
        }
        Ok(list)
    }
}

/// The consumer's context: drains and commits partitions before giving them up.
#[derive(Debug)]
struct TriageContext {
    shared: Arc<Shared>,
}

impl ClientContext for TriageContext {
    fn stats(&self, statistics: Statistics) {
        let Some(topic) = statistics.topics.get(&self.shared.topic) else { return };
        // Partition -1 is librdkafka's internal "unassigned" partition.
        let watermarks: HashMap<i32, i64> = topic
            .partitions
            .values()
            .filter(|p| p.partition >= 0 && p.hi_offset >= 0)
            .map(|p| (p.partition, p.hi_offset))
            .collect();
        *self.shared.high_watermarks() = Some((Instant::now(), watermarks));
    }
}

impl ConsumerContext for TriageContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(revoked) = rebalance else { return };
        let partitions: Vec<i32> = revoked
            .elements()
            .iter()
            .filter(|e| e.topic() == self.shared.topic)
            .map(rdkafka::topic_partition_list::TopicPartitionListElem::partition)
            .collect();
        // Let the batches in hand finish (they ack after their store write)
        // so their offsets are committed before another member takes over.
        // This runs inside the consumer's poll, so it waits on a deadline.
        let deadline = Instant::now() + self.shared.drain_deadline;
        let mut tracker = self.shared.tracker();
        loop {
            let busy = tracker.busy(Some(&partitions));
            let now = Instant::now();
            if busy == 0 || now >= deadline {
                if busy > 0 {
                    tracing::warn!(busy, "rebalance drain deadline passed; unfinished messages will be redelivered");
                }
                break;
            }
            tracker = self
                .shared
                .finished
                .wait_timeout(tracker, deadline - now)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
        let positions: Vec<(i32, i64)> =
            partitions.iter().filter_map(|p| tracker.committable(*p).map(|pos| (*p, pos))).collect();
        for partition in &partitions {
            tracker.forget(*partition);
        }
        drop(tracker);
        self.shared.retries().retain(|r| !partitions.contains(&r.delivery.id.partition));
        if !positions.is_empty() && !consumer.assignment_lost() {
            match self.shared.positions(&positions).and_then(|list| consumer.commit(&list, CommitMode::Sync)) {
                Ok(()) => tracing::info!(?positions, "committed revoked partitions"),
                Err(error) => tracing::warn!(%error, "commit on revoke failed; those messages will be redelivered"),
            }
        }
        tracing::info!(?partitions, "partitions revoked");
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(assigned) = rebalance {
            let partitions: Vec<i32> = assigned.elements().iter().map(|e| e.partition()).collect();
            tracing::info!(?partitions, "partitions assigned");
        }
    }

    fn commit_callback(&self, result: rdkafka::error::KafkaResult<()>, _offsets: &TopicPartitionList) {
        if let Err(error) = result {
            tracing::warn!(%error, "offset commit failed; uncommitted messages may be redelivered");
        }
    }
}

/// `Queue` over Kafka. Cheap to share behind an `Arc`; all triage workers
/// of a process share one consumer (one group member).
pub struct KafkaQueue {
    settings: KafkaSettings,
    producer: FutureProducer,
    consumer: Option<Arc<StreamConsumer<TriageContext>>>,
    shared: Arc<Shared>,
    depth_cache: Mutex<Option<(Instant, u64)>>,
}

impl std::fmt::Debug for KafkaQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaQueue")
            .field("settings", &self.settings)
            .field("consumes", &self.consumer.is_some())
            .finish_non_exhaustive()
    }
}

impl KafkaQueue {
    /// Creates the producer and, for `PublishAndConsume`, joins the consumer group.
    pub fn connect(settings: KafkaSettings, role: QueueRole) -> Result<Self, KafkaQueueError> {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &settings.brokers)
            .set("client.id", "leadsift")
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", settings.linger.as_millis().to_string())
            .set("compression.type", "lz4")
            .set("message.timeout.ms", settings.publish_timeout.as_millis().to_string())
            .create()
            .map_err(|source| KafkaQueueError::CreatingClient { client: "producer", source })?;
        let shared = Arc::new(Shared {
            topic: settings.topic.clone(),
            drain_deadline: settings.drain_deadline,
            tracker: Mutex::new(OffsetTracker::default()),
            finished: Condvar::new(),
            retries: Mutex::new(VecDeque::new()),
            high_watermarks: Mutex::new(None),
        });
        let consumer = match role {
            QueueRole::Publish => None,
            QueueRole::PublishAndConsume => {
                let consumer: StreamConsumer<TriageContext> = ClientConfig::new()
                    .set("bootstrap.servers", &settings.brokers)
                    .set("client.id", "leadsift-triage")
                    .set("group.id", &settings.group)
                    .set("enable.auto.commit", "false")
                    .set("auto.offset.reset", "earliest")
                    .set("enable.partition.eof", "false")
                    .set("session.timeout.ms", settings.session_timeout.as_millis().to_string())
                    .set("heartbeat.interval.ms", (settings.session_timeout.as_millis() / 4).max(100).to_string())
                    .set("statistics.interval.ms", STATISTICS_INTERVAL.as_millis().to_string())
                    .create_with_context(TriageContext { shared: Arc::clone(&shared) })
                    .map_err(|source| KafkaQueueError::CreatingClient { client: "consumer", source })?;
                consumer
                    .subscribe(&[&settings.topic])
                    .map_err(|source| KafkaQueueError::Subscribing { topic: settings.topic.clone(), source })?;
                Some(Arc::new(consumer))
            }
        };
        tracing::info!(brokers = %settings.brokers, topic = %settings.topic, ?role, "Kafka queue connected");
        Ok(Self { settings, producer, consumer, shared, depth_cache: Mutex::new(None) })
    }

    pub fn settings(&self) -> &KafkaSettings {
        &self.settings
    }

    /// Stops consuming: waits (up to the drain deadline) for the batches in
    /// hand to be acked, commits, leaves the group, flushes the producer.
    pub async fn close(&self) {
        let deadline = Instant::now() + self.settings.drain_deadline;
        while self.shared.tracker().busy(None) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if let Some(consumer) = &self.consumer {
            let positions = self.shared.tracker().all_committable();
            if !positions.is_empty() {
                match self.shared.positions(&positions).and_then(|list| consumer.commit(&list, CommitMode::Sync)) {
                    Ok(()) => tracing::info!(?positions, "committed on shutdown"),
                    Err(error) => tracing::warn!(%error, "commit on shutdown failed; messages will be redelivered"),
                }
            }
            consumer.unsubscribe();
        }
        if let Err(error) = self.producer.flush(self.settings.drain_deadline) {
            tracing::warn!(%error, "producer flush on shutdown failed");
        }
    }

    fn consumer(&self) -> Result<&StreamConsumer<TriageContext>, QueueError> {
        self.consumer.as_deref().ok_or_else(|| QueueError::Unavailable {
            operation: "receiving",
            source: "this process only publishes (role intake); run triage with --role triage or all".into(),
        })
    }

    /// Hands out nacked messages whose retry delay has passed.
    fn due_retries(&self, max: usize) -> Vec<Delivery> {
        let now = Instant::now();
        let mut retries = self.shared.retries();
        let mut due = Vec::new();
        let mut waiting = VecDeque::with_capacity(retries.len());
        while let Some(retry) = retries.pop_front() {
            if retry.due <= now && due.len() < max {
                due.push(retry.delivery);
            } else {
                waiting.push_back(retry);
            }
        }
        *retries = waiting;
        drop(retries);
        let mut tracker = self.shared.tracker();
        // A retry of a partition given away since is the new owner's to deliver.
        due.retain(|d| match tracker.get_mut(d.id.partition, d.id.offset) {
            Some(entry) => {
                entry.waiting_retry = false;
                true
            }
            None => false,
        });
        due
    }

    /// Marks messages done and commits the partitions whose position moved.
    fn finish(&self, ids: impl IntoIterator<Item = (i32, i64)>) -> Result<(), QueueError> {
        let moved = self.shared.tracker().finish(ids);
        self.shared.finished.notify_all();
        if moved.is_empty() {
            return Ok(());
        }
        let list = self.shared.positions(&moved).map_err(unavailable("committing offsets"))?;
        self.consumer()?.commit(&list, CommitMode::Async).map_err(unavailable("committing offsets"))
    }

    /// Copies a failed message to the dead-letter topic, error in headers.
    async fn dead_letter(&self, id: DeliveryId, entry: &InFlight, error: &str) -> Result<(), QueueError> {
        let source = format!("{}/{}/{}", self.settings.topic, id.partition, id.offset);
        let attempts = entry.attempt.to_string();
        let headers = OwnedHeaders::new()
            .insert(Header { key: HEADER_ERROR, value: Some(error) })
            .insert(Header { key: HEADER_ATTEMPTS, value: Some(&attempts) })
            .insert(Header { key: HEADER_SOURCE, value: Some(&source) });
        let mut record =
            FutureRecord::<[u8], [u8]>::to(&self.settings.dead_letter_topic).payload(&entry.payload).headers(headers);
        if let Some(key) = &entry.key {
            record = record.key(key.as_slice());
        }
        self.producer
            .send(record, self.settings.publish_timeout)
            .await
            .map_err(|(e, _)| unavailable("writing to the dead-letter topic")(e))?;
        tracing::error!(%source, %error, attempts = entry.attempt, topic = %self.settings.dead_letter_topic, "message dead-lettered");
        Ok(())
    }
}

/// The partition key: the sender's most specific identity, so one sender's
/// messages stay in order; a sender with no identity is keyed by the message.
pub fn partition_key(message: &Message) -> String {
    match message.sender.identities().first() {
        Some(identity) => identity.to_string(),
        None => message.dedup_key.as_str().to_owned(),
    }
}

async fn delivered(future: DeliveryFuture) -> Result<(), QueueError> {
    match future.await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((error, _))) => Err(unavailable("publishing")(error)),
        Err(_canceled) => Err(QueueError::Unavailable {
            operation: "publishing",
            source: "the producer was dropped before the broker confirmed the message".into(),
        }),
    }
}

#[async_trait]
impl Queue for KafkaQueue {
    async fn publish(&self, messages: &[Message]) -> Result<Vec<Published>, QueueError> {
        // Everything is handed to the producer first (it batches per
        // partition), then every confirmation (acks=all) is awaited.
        let mut pending: VecDeque<DeliveryFuture> = VecDeque::with_capacity(messages.len());
        for message in messages {
            let payload = serde_json::to_vec(message)
                .map_err(|e| QueueError::Payload { operation: "encoding a message", source: e.into() })?;
            let key = partition_key(message);
            let mut record = FutureRecord::to(&self.settings.topic).key(&key).payload(&payload);
            loop {
                match self.producer.send_result(record) {
                    Ok(future) => {
                        pending.push_back(future);
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                        record = returned;
                        match pending.pop_front() {
                            Some(oldest) => delivered(oldest).await?,
                            None => tokio::time::sleep(Duration::from_millis(5)).await,
                        }
                    }
                    Err((error, _)) => return Err(unavailable("publishing")(error)),
                }
            }
        }
        for future in pending {
            delivered(future).await?;
        }
        Ok(vec![Published::Accepted; messages.len()])
    }

    async fn receive(&self, max: usize) -> Result<Vec<Delivery>, QueueError> {
        let consumer = self.consumer()?;
        let mut out = self.due_retries(max);
        // Wait a while for the first message, then take what is already fetched.
        let mut wait = if out.is_empty() { self.settings.poll_wait } else { Duration::ZERO };
        while out.len() < max {
            let received = match tokio::time::timeout(wait, consumer.recv()).await {
                Err(_elapsed) => break,
                Ok(Err(error)) if out.is_empty() => return Err(unavailable("receiving")(error)),
                Ok(Err(error)) => {
                    tracing::warn!(%error, "Kafka receive error after a partial batch");
                    break;
                }
                Ok(Ok(message)) => message,
            };
            wait = Duration::ZERO;
            let id = DeliveryId { partition: received.partition(), offset: received.offset() };
            let entry = InFlight {
                key: received.key().map(<[u8]>::to_vec),
                payload: received.payload().unwrap_or_default().to_vec(),
                attempt: 1,
                waiting_retry: false,
            };
            drop(received);
            match serde_json::from_slice::<Message>(&entry.payload) {
                Ok(message) => {
                    self.shared.tracker().delivered(id.partition, id.offset, entry);
                    out.push(Delivery { id, message, attempt: 1 });
                }
                Err(error) => {
                    // It will never decode: keep it on the dead-letter topic, never lose it.
                    let error = format!("undecodable queue payload: {error}");
                    self.dead_letter(id, &entry, &error).await?;
                    self.shared.tracker().delivered(id.partition, id.offset, entry);
                    self.finish([(id.partition, id.offset)])?;
                }
            }
        }
        Ok(out)
    }

    async fn ack(&self, ids: &[DeliveryId]) -> Result<(), QueueError> {
        self.finish(ids.iter().map(|id| (id.partition, id.offset)))
    }

    async fn nack(&self, id: DeliveryId, error: &str) -> Result<Nacked, QueueError> {
        let entry = {
            let mut tracker = self.shared.tracker();
            let Some(entry) = tracker.get_mut(id.partition, id.offset) else {
                // The partition went to another member, which redelivers it.
                return Ok(Nacked::WillRetry);
            };
            if entry.attempt < self.settings.max_attempts {
                entry.attempt += 1;
                entry.waiting_retry = true;
                Err((entry.attempt, entry.payload.clone()))
            } else {
                Ok(entry.clone())
            }
        };
        match entry {
            Ok(entry) => {
                self.dead_letter(id, &entry, &format!("failed {} times; last error: {error}", entry.attempt)).await?;
                self.finish([(id.partition, id.offset)])?;
                Ok(Nacked::DeadLettered)
            }
            Err((attempt, payload)) => {
                let message = serde_json::from_slice::<Message>(&payload)
                    .map_err(|e| QueueError::Payload { operation: "decoding a retried message", source: e.into() })?;
                let due = Instant::now() + self.settings.retry_delay;
                self.shared.retries().push_back(Retry { due, delivery: Delivery { id, message, attempt } });
                Ok(Nacked::WillRetry)
            }
        }
    }

    /// Messages behind this member's committed position on the partitions
    /// it owns (an intake-only process owns none). The high watermarks come
    /// from librdkafka's statistics (every `STATISTICS_INTERVAL`, from its
    /// fetches), so the answer needs no broker round trip; only before the
    /// first statistics arrive is the broker asked. The figure is reused
    /// for `DEPTH_REFRESH`.
    async fn depth(&self) -> Result<u64, QueueError> {
        let Some(consumer) = &self.consumer else { return Ok(0) };
        if let Some((at, depth)) = *self.depth_cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
            && at.elapsed() < DEPTH_REFRESH
        {
            return Ok(depth);
        }
        let assignment = consumer.assignment().map_err(unavailable("reading the assignment"))?;
        let positions = consumer.position().map_err(unavailable("reading positions"))?;
        let topic = self.settings.topic.clone();
        let behind: Vec<(i32, Option<i64>)> = {
            let tracker = self.shared.tracker();
            assignment
                .elements()
                .iter()
                .map(|element| {
                    let partition = element.partition();
                    let position = tracker.committable(partition).or_else(|| {
                        positions
                            .find_partition(&topic, partition)
                            .and_then(|e| if let Offset::Offset(o) = e.offset() { Some(o) } else { None })
                    });
                    (partition, position)
                })
                .collect()
        };
        let depth_from = |high: &dyn Fn(i32) -> Option<i64>| -> Option<u64> {
            behind.iter().try_fold(0u64, |depth, (partition, position)| {
                let high = high(*partition)?;
                Some(depth + u64::try_from(high - position.unwrap_or(high)).unwrap_or(0))
            })
        };
        let from_statistics = match &*self.shared.high_watermarks() {
            Some((at, watermarks)) if at.elapsed() < WATERMARKS_FRESH => {
                depth_from(&|partition| watermarks.get(&partition).copied())
            }
            _ => None,
        };
        let depth = match from_statistics {
            Some(depth) => depth,
            // No statistics yet (just started) or a partition missing from them: ask the broker.
            None => {
                let consumer = Arc::clone(consumer);
                let partitions: Vec<i32> = behind.iter().map(|(partition, _)| *partition).collect();
                let watermarks = tokio::task::spawn_blocking(move || -> Result<HashMap<i32, i64>, KafkaError> {
                    partitions
                        .into_iter()
                        .map(|partition| {
                            let (_, high) = consumer.fetch_watermarks(&topic, partition, Duration::from_secs(1))?;
                            Ok((partition, high))
                        })
                        .collect()
                })
                .await
                .map_err(|e| QueueError::Unavailable { operation: "reading watermarks", source: e.into() })?
                .map_err(unavailable("reading watermarks"))?;
                depth_from(&|partition| watermarks.get(&partition).copied()).unwrap_or(0)
            }
        };
        *self.depth_cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some((Instant::now(), depth));
        Ok(depth)
    }
}
