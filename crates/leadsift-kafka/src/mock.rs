//! librdkafka's mock cluster, served from a thread of its own: a real
//! Kafka-protocol broker on 127.0.0.1 inside this process, for tests and
//! benchmarks (child processes reach it through its bootstrap address).
//! Topics are created with the cluster's own call; its admin API does not
//! support CreateTopics.

use std::sync::mpsc;

use rdkafka::error::KafkaError;
use rdkafka::mocking::MockCluster;

/// A running mock cluster; dropping it stops the brokers.
#[derive(Debug)]
pub struct MockBroker {
    /// `host:port` bootstrap list.
    pub brokers: String,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl MockBroker {
    /// Starts one broker with `topics` (name, partitions) created.
    pub fn start(topics: &[(&str, i32)]) -> Result<MockBroker, KafkaError> {
        let topics: Vec<(String, i32)> = topics.iter().map(|(t, p)| ((*t).to_owned(), *p)).collect();
        let (ready_tx, ready_rx) = mpsc::channel::<Result<String, KafkaError>>();
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        // The cluster handle is not Send: it lives and dies on this thread.
        let thread = std::thread::Builder::new()
            .name("kafka-mock".into())
            .spawn(move || {
                let cluster = match MockCluster::new(1) {
                    Ok(cluster) => cluster,
                    Err(error) => {
                        let _ = ready_tx.send(Err(error));
                        return;
                    }
                };
                for (topic, partitions) in &topics {
                    if let Err(error) = cluster.create_topic(topic, *partitions, 1) {
                        let _ = ready_tx.send(Err(error));
                        return;
                    }
                }
                let _ = ready_tx.send(Ok(cluster.bootstrap_servers()));
                // Serve until the handle is dropped.
                let _ = stop_rx.recv();
            })
            .map_err(|e| KafkaError::ClientCreation(format!("cannot start the mock cluster thread: {e}")))?;
        let brokers =
            ready_rx.recv().map_err(|_| KafkaError::ClientCreation("the mock cluster thread stopped".into()))??;
        Ok(MockBroker { brokers, stop: Some(stop_tx), thread: Some(thread) })
    }
}

impl Drop for MockBroker {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
