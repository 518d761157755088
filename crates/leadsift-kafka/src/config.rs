//! Settings of the Kafka queue.

use std::time::Duration;

use crate::KafkaQueueError;

/// Where the queue lives and how it behaves.
#[derive(Debug, Clone)]
pub struct KafkaSettings {
    /// `host:port[,host:port…]`.
    pub brokers: String,
    /// Inbound messages, keyed by sender identity.
    pub topic: String,
    /// Messages that failed `max_attempts` times, error in headers.
    pub dead_letter_topic: String,
    /// Consumer group of the triage workers.
    pub group: String,
    /// Deliveries after which a failing message is dead-lettered.
    pub max_attempts: u32,
    /// Delay before a nacked message is handed out again.
    pub retry_delay: Duration,
    /// A member silent this long is dropped from the group and its
    /// partitions are reassigned (bounds recovery after a crash).
    pub session_timeout: Duration,
    /// How long shutdown and rebalance wait for the batches in hand.
    pub drain_deadline: Duration,
    /// Producer batching delay.
    pub linger: Duration,
    /// How long a publish waits for the broker's acknowledgement.
    pub publish_timeout: Duration,
    /// How long `receive` waits for a first message before returning empty.
    pub poll_wait: Duration,
}

impl KafkaSettings {
    /// Defaults for brokers `host:port[,host:port…]`.
    pub fn new(brokers: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            topic: "leadsift.inbound".into(),
            dead_letter_topic: "leadsift.dead-letter".into(),
            group: "leadsift-triage".into(),
            max_attempts: 5,
            retry_delay: Duration::from_secs(5),
            session_timeout: Duration::from_secs(10),
            drain_deadline: Duration::from_secs(10),
            linger: Duration::from_millis(5),
            publish_timeout: Duration::from_secs(30),
            poll_wait: Duration::from_millis(200),
        }
    }

    /// Parses `kafka://host:port[,host:port…]`.
    pub fn from_url(url: &str) -> Result<Self, KafkaQueueError> {
        let invalid = |reason| KafkaQueueError::InvalidUrl { url: url.to_owned(), reason };
        let brokers = url.strip_prefix("kafka://").ok_or_else(|| invalid("expected kafka://host:port"))?;
        let brokers = brokers.trim_end_matches('/');
        if brokers.is_empty() {
            return Err(invalid("no broker address"));
        }
        for broker in brokers.split(',') {
            let (host, port) = broker.rsplit_once(':').ok_or_else(|| invalid("every broker needs host:port"))?;
            if host.is_empty() || port.parse::<u16>().is_err() {
                return Err(invalid("every broker needs host:port"));
            }
        }
        Ok(Self::new(brokers))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_one_or_more_brokers() {
        assert_eq!(KafkaSettings::from_url("kafka://kafka:9092").unwrap().brokers, "kafka:9092");
        assert_eq!(KafkaSettings::from_url("kafka://a:1,b:2/").unwrap().brokers, "a:1,b:2");
        for bad in ["kafka://", "kafka://host", "kafka://host:port", "http://a:1", "kafka://:9092"] {
            assert!(KafkaSettings::from_url(bad).is_err(), "{bad}");
        }
    }
}
