//! Kafka for tests: librdkafka's mock cluster in this process (always
//! available), or a real broker named by `LEADSIFT_TEST_KAFKA=host:port`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use leadsift_kafka::KafkaSettings;
use leadsift_kafka::mock::MockBroker;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

/// A broker with fresh topics for one test.
#[derive(Debug)]
pub struct KafkaBroker {
    pub brokers: String,
    pub topic: String,
    pub dead_letter_topic: String,
    pub group: String,
    _mock: Option<MockBroker>,
}

fn unique(prefix: &str) -> String {
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        chrono::Utc::now().timestamp_micros() % 1_000_000
    )
}

impl KafkaBroker {
    /// A mock cluster serving the default topic names, `partitions` for the inbound one.
    pub fn mock(partitions: i32) -> KafkaBroker {
        let settings = KafkaSettings::new("unused:1");
        let mock = MockBroker::start(&[(&settings.topic, partitions), (&settings.dead_letter_topic, 1)])
            .expect("start librdkafka's mock cluster");
        KafkaBroker {
            brokers: mock.brokers.clone(),
            topic: settings.topic,
            dead_letter_topic: settings.dead_letter_topic,
            group: unique("leadsift-test"),
            _mock: Some(mock),
        }
    }

    /// Fresh topics on the broker at `LEADSIFT_TEST_KAFKA`, or `None` when unset.
    pub async fn external(partitions: i32) -> Option<KafkaBroker> {
        let Some(brokers) = std::env::var("LEADSIFT_TEST_KAFKA").ok().filter(|b| !b.is_empty()) else {
            eprintln!("SKIPPED (optional): set LEADSIFT_TEST_KAFKA=host:port to run the queue suite on a real broker");
            return None;
        };
        let broker = KafkaBroker {
            topic: unique("leadsift.inbound"),
            dead_letter_topic: unique("leadsift.dead-letter"),
            group: unique("leadsift-test"),
            brokers,
            _mock: None,
        };
        let admin: AdminClient<_> = ClientConfig::new()
            .set("bootstrap.servers", &broker.brokers)
            .create()
            .expect("Kafka admin client for LEADSIFT_TEST_KAFKA");
        let topics = [
            NewTopic::new(&broker.topic, partitions, TopicReplication::Fixed(1)),
            NewTopic::new(&broker.dead_letter_topic, 1, TopicReplication::Fixed(1)),
        ];
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        for result in admin
            .create_topics(&topics, &options)
            .await
            .unwrap_or_else(|e| panic!("cannot create topics on LEADSIFT_TEST_KAFKA={}: {e}", broker.brokers))
        {
            result.unwrap_or_else(|(topic, e)| panic!("cannot create topic {topic}: {e}"));
        }
        Some(broker)
    }

    /// Queue settings for this broker's topics and group.
    pub fn settings(&self) -> KafkaSettings {
        let mut settings = KafkaSettings::new(self.brokers.clone());
        settings.topic = self.topic.clone();
        settings.dead_letter_topic = self.dead_letter_topic.clone();
        settings.group = self.group.clone();
        settings
    }
}

/// One record read back from a topic.
#[derive(Debug, Clone)]
pub struct Record {
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: HashMap<String, String>,
}

/// Every record of `topic`, read from the beginning until nothing new
/// arrived for `idle`.
pub async fn read_topic(brokers: &str, topic: &str, idle: Duration) -> Vec<Record> {
    let (brokers, topic) = (brokers.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("group.id", unique("leadsift-reader"))
            .set("enable.auto.commit", "false")
            .create()
            .expect("Kafka reader");
        let metadata = consumer.fetch_metadata(Some(&topic), Duration::from_secs(10)).expect("topic metadata");
        let mut assignment = TopicPartitionList::new();
        for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
            assignment.add_partition_offset(&topic, partition.id(), Offset::Beginning).expect("partition");
        }
        consumer.assign(&assignment).expect("assign partitions");
        let mut records = Vec::new();
        let mut last = Instant::now();
        while last.elapsed() < idle {
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(message)) => {
                    let mut headers = HashMap::new();
                    if let Some(list) = message.headers() {
                        for header in list.iter() {
                            let value = header.value.map(|v| String::from_utf8_lossy(v).into_owned());
                            headers.insert(header.key.to_owned(), value.unwrap_or_default());
                        }
                    }
                    records.push(Record {
                        key: message.key().map(<[u8]>::to_vec),
                        payload: message.payload().unwrap_or_default().to_vec(),
                        headers,
                    });
                    last = Instant::now();
                }
                Some(Err(error)) => panic!("reading {topic}: {error}"),
                None => {}
            }
        }
        records
    })
    .await
    .expect("topic reader thread")
}
