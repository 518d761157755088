//! One conformance suite for every queue backend: the built-in queue on a
//! fresh SQLite file and a fresh PostgreSQL database, and Kafka on
//! librdkafka's mock cluster (a Kafka-protocol broker inside this process on
//! 127.0.0.1) — plus a real broker when `LEADSIFT_TEST_KAFKA=host:port` is set.
//!
//! Kafka cases each pay a consumer-group join (about 3 s on the mock
//! cluster) per consumer they open, so the suite is a few broad cases.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::Utc;
use leadsift_core::{Channel, DedupKey, Delivery, EmailAddress, Message, Nacked, Published, Queue, Sender};
use leadsift_integration_tests::TestDb;
use leadsift_integration_tests::kafka::{KafkaBroker, read_topic};
use leadsift_kafka::{HEADER_ERROR, KafkaQueue, KafkaSettings, QueueRole};
use leadsift_store::{InboxSettings, SqlStore, StoreSettings};

/// Deliveries before a message is dead-lettered, on every backend.
const MAX_ATTEMPTS: u32 = 3;

#[async_trait]
trait Backend: Send + Sync {
    /// A queue client; for Kafka a new member of the triage group.
    async fn open(&self) -> Arc<dyn Queue>;
    /// Makes a client disappear the way a crashed process does: whatever it
    /// did not ack must reach the next client.
    async fn crash(&self, queue: Arc<dyn Queue>);
    /// Dead-lettered messages: dedup key and the error recorded with them.
    async fn dead_letters(&self) -> Vec<(String, String)>;
}

struct BuiltIn {
    store: SqlStore,
    lease: Duration,
    _db: TestDb,
}

impl BuiltIn {
    async fn on(db: TestDb) -> BuiltIn {
        let lease = Duration::from_secs(1);
        let mut settings = StoreSettings::new(db.url.clone());
        settings.inbox = InboxSettings { lease, max_attempts: MAX_ATTEMPTS, retry_delay: Duration::ZERO };
        let store = SqlStore::connect(&settings).await.unwrap();
        BuiltIn { store, lease, _db: db }
    }
}

#[async_trait]
impl Backend for BuiltIn {
    async fn open(&self) -> Arc<dyn Queue> {
        Arc::new(self.store.clone())
    }

    async fn crash(&self, queue: Arc<dyn Queue>) {
        drop(queue);
        // A crashed worker's rows come back when their lease runs out.
        tokio::time::sleep(self.lease + Duration::from_millis(200)).await;
    }

    async fn dead_letters(&self) -> Vec<(String, String)> {
        use leadsift_core::LeadStore;
        self.store
            .quarantined(100)
            .await
            .unwrap()
            .into_iter()
            .map(|(_, q)| {
                let message: Message = serde_json::from_slice(&q.raw).unwrap();
                (message.dedup_key.as_str().to_owned(), q.error)
            })
            .collect()
    }
}

struct Kafka {
    broker: KafkaBroker,
    settings: KafkaSettings,
}

impl Kafka {
    fn on(broker: KafkaBroker) -> Kafka {
        let mut settings = broker.settings();
        settings.max_attempts = MAX_ATTEMPTS;
        settings.retry_delay = Duration::ZERO;
        settings.drain_deadline = Duration::from_millis(500);
        Kafka { broker, settings }
    }
}

#[async_trait]
impl Backend for Kafka {
    async fn open(&self) -> Arc<dyn Queue> {
        Arc::new(KafkaQueue::connect(self.settings.clone(), QueueRole::PublishAndConsume).unwrap())
    }

    async fn crash(&self, queue: Arc<dyn Queue>) {
        // Dropping the consumer leaves the group without acking anything more;
        // only offsets below the first unacked message were ever committed.
        tokio::task::spawn_blocking(move || drop(queue)).await.unwrap();
    }

    async fn dead_letters(&self) -> Vec<(String, String)> {
        read_topic(&self.broker.brokers, &self.settings.dead_letter_topic, Duration::from_secs(3))
            .await
            .into_iter()
            .map(|record| {
                let message: Message = serde_json::from_slice(&record.payload).unwrap();
                (message.dedup_key.as_str().to_owned(), record.headers.get(HEADER_ERROR).cloned().unwrap_or_default())
            })
            .collect()
    }
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod builtin_sqlite {
            $(
                #[tokio::test]
                async fn $case() {
                    let backend = super::BuiltIn::on(leadsift_integration_tests::TestDb::sqlite().await).await;
                    super::$case(&backend).await;
                }
            )*
        }
        mod builtin_postgres {
            $(
                #[tokio::test]
                async fn $case() {
                    let Some(db) = leadsift_integration_tests::TestDb::postgres().await else { return };
                    super::$case(&super::BuiltIn::on(db).await).await;
                }
            )*
        }
        mod kafka_mock {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let backend = super::Kafka::on(leadsift_integration_tests::kafka::KafkaBroker::mock(4));
                    super::$case(&backend).await;
                }
            )*
        }
        mod kafka_external {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some(broker) = leadsift_integration_tests::kafka::KafkaBroker::external(4).await else {
                        return;
                    };
                    super::$case(&super::Kafka::on(broker)).await;
                }
            )*
        }
    };
}

conformance!(
    every_message_is_delivered_in_sender_order_and_never_again_once_acked,
    unacked_messages_are_redelivered_after_a_crash,
    failing_messages_are_retried_then_dead_lettered_with_their_error,
    depth_counts_the_messages_not_yet_acked_and_answers_at_once,
);

fn message(key: &str, from: &str) -> Message {
    let mut m = Message::new(Channel::Email, DedupKey::from_upstream_id(Channel::Email, key), Utc::now());
    m.sender = Sender { email: Some(EmailAddress::parse(from).unwrap()), ..Sender::default() };
    m.subject = Some(format!("subject of {key}"));
    m.text = format!("body of {key}");
    m
}

fn key(delivery: &Delivery) -> String {
    delivery.message.dedup_key.as_str().to_owned()
}

/// Receives until `want` deliveries arrived (the first receive on Kafka
/// waits for the group join).
async fn receive(queue: &dyn Queue, want: usize) -> Vec<Delivery> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut out = Vec::new();
    while out.len() < want {
        assert!(Instant::now() < deadline, "only {} of {want} deliveries arrived within 30 s", out.len());
        out.extend(queue.receive(want - out.len()).await.unwrap());
    }
    out
}

/// Publishes a sentinel and receives until it arrives; returns what came before it.
async fn receive_until_sentinel(queue: &dyn Queue, name: &str) -> Vec<Delivery> {
    let sentinel = message(name, "sentinel@test.example");
    queue.publish(std::slice::from_ref(&sentinel)).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut before = Vec::new();
    loop {
        assert!(Instant::now() < deadline, "the sentinel did not arrive within 30 s");
        for delivery in queue.receive(100).await.unwrap() {
            if delivery.message.dedup_key == sentinel.dedup_key {
                queue.ack(&[delivery.id]).await.unwrap();
                return before;
            }
            before.push(delivery);
        }
    }
}

async fn every_message_is_delivered_in_sender_order_and_never_again_once_acked(backend: &dyn Backend) {
    let queue = backend.open().await;
    let senders = ["anna@firm.example", "boris@shop.example", "clara@mail.example"];
    let messages: Vec<Message> = (0..30).map(|i| message(&format!("m{i}"), senders[i % senders.len()])).collect();
    let outcomes = queue.publish(&messages).await.unwrap();
    assert!(outcomes.iter().all(|o| matches!(o, Published::New | Published::Accepted)), "{outcomes:?}");

    let delivered = receive(queue.as_ref(), messages.len()).await;
    let keys: HashSet<String> = delivered.iter().map(key).collect();
    assert_eq!(keys.len(), messages.len(), "each message exactly once");
    for delivery in &delivered {
        let original = messages.iter().find(|m| m.dedup_key == delivery.message.dedup_key).unwrap();
        assert_eq!(delivery.message.subject, original.subject);
        assert_eq!(delivery.message.sender, original.sender);
        assert_eq!(delivery.attempt, 1);
    }
    // One sender's messages come out in the order they were published.
    let mut by_sender: HashMap<String, Vec<String>> = HashMap::new();
    let mut ordered = delivered.clone();
    ordered.sort_by_key(|d| d.id);
    for delivery in &ordered {
        by_sender.entry(format!("{:?}", delivery.message.sender.email)).or_default().push(key(delivery));
    }
    for sender in senders {
        let published: Vec<String> = messages
            .iter()
            .filter(|m| m.sender.email.as_ref().is_some_and(|e| e.as_str() == sender))
            .map(|m| m.dedup_key.as_str().to_owned())
            .collect();
        let got = &by_sender[&format!("{:?}", EmailAddress::parse(sender).ok())];
        assert_eq!(got, &published, "order of {sender}");
    }
    let ids: Vec<_> = delivered.iter().map(|d| d.id).collect();
    queue.ack(&ids).await.unwrap();

    // Acked means done: a client after a crash sees none of them again.
    backend.crash(queue).await;
    let queue = backend.open().await;
    let again = receive_until_sentinel(queue.as_ref(), "sentinel-1").await;
    assert!(again.is_empty(), "acked messages were delivered again: {:?}", again.iter().map(key).collect::<Vec<_>>());
    assert!(backend.dead_letters().await.is_empty());
}

async fn unacked_messages_are_redelivered_after_a_crash(backend: &dyn Backend) {
    let queue = backend.open().await;
    // One sender: one partition, so "the first half" is an offset prefix on Kafka too.
    let messages: Vec<Message> = (0..10).map(|i| message(&format!("c{i}"), "dmitry@firm.example")).collect();
    queue.publish(&messages).await.unwrap();
    let mut delivered = receive(queue.as_ref(), messages.len()).await;
    delivered.sort_by_key(|d| d.id);
    let (done, in_flight) = delivered.split_at(5);
    // Acked out of order, as two workers would.
    let mut done_ids: Vec<_> = done.iter().map(|d| d.id).collect();
    done_ids.reverse();
    queue.ack(&done_ids).await.unwrap();

    backend.crash(queue).await;
    let queue = backend.open().await;
    let redelivered = receive_until_sentinel(queue.as_ref(), "sentinel-2").await;
    let mut got: Vec<String> = redelivered.iter().map(key).collect();
    got.sort();
    let mut want: Vec<String> = in_flight.iter().map(key).collect();
    want.sort();
    assert_eq!(got, want, "exactly the unacked messages come back");
    let ids: Vec<_> = redelivered.iter().map(|d| d.id).collect();
    queue.ack(&ids).await.unwrap();
}

async fn failing_messages_are_retried_then_dead_lettered_with_their_error(backend: &dyn Backend) {
    let queue = backend.open().await;
    let bad = message("poison", "eve@firm.example");
    let good = message("fine", "eve@firm.example");
    queue.publish(&[bad.clone(), good.clone()]).await.unwrap();
    let mut delivered = receive(queue.as_ref(), 2).await;
    delivered.sort_by_key(|d| d.id);
    assert_eq!(key(&delivered[0]), bad.dedup_key.as_str());
    queue.ack(&[delivered[1].id]).await.unwrap();

    let mut current = delivered.swap_remove(0);
    for attempt in 1..=MAX_ATTEMPTS {
        assert_eq!(current.attempt, attempt);
        let outcome = queue.nack(current.id, &format!("store rejected it (try {attempt})")).await.unwrap();
        if attempt < MAX_ATTEMPTS {
            assert_eq!(outcome, Nacked::WillRetry);
            current = receive(queue.as_ref(), 1).await.remove(0);
            assert_eq!(key(&current), bad.dedup_key.as_str(), "the failed message comes back");
        } else {
            assert_eq!(outcome, Nacked::DeadLettered);
        }
    }
    let dead = backend.dead_letters().await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].0, bad.dedup_key.as_str());
    assert!(dead[0].1.contains("store rejected it (try 3)"), "error kept with the message: {}", dead[0].1);

    // Dead-lettered counts as done: nothing comes back after a crash.
    backend.crash(queue).await;
    let queue = backend.open().await;
    let again = receive_until_sentinel(queue.as_ref(), "sentinel-3").await;
    assert!(again.is_empty(), "{:?}", again.iter().map(key).collect::<Vec<_>>());
}

/// Polls `depth` until it reports `want`.
async fn depth_becomes(queue: &dyn Queue, want: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let depth = queue.depth().await.unwrap();
        if depth == want {
            return;
        }
        assert!(Instant::now() < deadline, "depth is {depth}, not {want}, after 20 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn depth_counts_the_messages_not_yet_acked_and_answers_at_once(backend: &dyn Backend) {
    let queue = backend.open().await;
    let messages: Vec<Message> = (0..6)
        .map(|i| message(&format!("d{i}"), if i % 2 == 0 { "eva@firm.example" } else { "fedor@shop.example" }))
        .collect();
    queue.publish(&messages).await.unwrap();
    let delivered = receive(queue.as_ref(), messages.len()).await;
    depth_becomes(queue.as_ref(), 6).await;
    let (done, in_flight) = delivered.split_at(2);
    queue.ack(&done.iter().map(|d| d.id).collect::<Vec<_>>()).await.unwrap();
    // Kafka counts a partition from its first unacked message, so acking
    // out of order may not lower it yet; it never counts acked messages twice.
    let depth = queue.depth().await.unwrap();
    assert!((4..=6).contains(&depth), "depth {depth} after acking 2 of 6");
    queue.ack(&in_flight.iter().map(|d| d.id).collect::<Vec<_>>()).await.unwrap();
    depth_becomes(queue.as_ref(), 0).await;
    // An idle triage worker asks for the depth between empty receives, and
    // /metrics on every scrape: once running, it must come without a slow
    // broker round trip (Kafka's very first answers may need one, before
    // librdkafka's first statistics).
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut quick_in_a_row = 0;
    while quick_in_a_row < 3 {
        assert!(Instant::now() < deadline, "depth never answered at once three times in a row within 30 s");
        let idle = Instant::now();
        while idle.elapsed() < Duration::from_millis(2100) {
            // Past the Kafka queue's cached figure.
            assert!(queue.receive(10).await.unwrap().is_empty(), "nothing is left to deliver");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let asked = Instant::now();
        assert_eq!(queue.depth().await.unwrap(), 0);
        quick_in_a_row = if asked.elapsed() < Duration::from_millis(100) { quick_in_a_row + 1 } else { 0 };
    }
}
