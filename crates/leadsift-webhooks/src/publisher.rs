//! Group commit: concurrent webhook requests share one queue transaction.
//!
//! A request hands its messages to a bounded channel and waits; one task
//! takes everything waiting (up to a batch), publishes it with a single
//! `Intake::publish` (one durable transaction), and only then answers each
//! request. Under load batches grow by themselves, so the per-transaction
//! fsync cost is shared; when idle a request is published alone at once.

use std::time::Duration;

use leadsift_core::{Message, Published};
use leadsift_pipeline::Intake;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::WebhookError;

struct Job {
    messages: Vec<Message>,
    reply: oneshot::Sender<Result<Vec<Published>, String>>,
}

/// The request side of the group-commit publisher.
#[derive(Debug, Clone)]
pub struct Publisher {
    jobs: mpsc::Sender<Job>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job").field("messages", &self.messages.len()).finish_non_exhaustive()
    }
}

/// The task that publishes batches; run it with [`PublisherTask::run`].
#[derive(Debug)]
pub struct PublisherTask {
    jobs: mpsc::Receiver<Job>,
    intake: Intake,
    max_batch: usize,
}

impl Publisher {
    pub fn new(intake: Intake, backlog: usize, max_batch: usize) -> (Publisher, PublisherTask) {
        let (jobs, receiver) = mpsc::channel(backlog.max(1));
        (Publisher { jobs }, PublisherTask { jobs: receiver, intake, max_batch: max_batch.max(1) })
    }

    /// Durably queues `messages`; returns after their transaction committed.
    pub async fn publish(&self, messages: Vec<Message>) -> Result<Vec<Published>, WebhookError> {
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, answer) = oneshot::channel();
        self.jobs.try_send(Job { messages, reply }).map_err(|error| match error {
            mpsc::error::TrySendError::Full(_) => WebhookError::Overloaded,
            mpsc::error::TrySendError::Closed(_) => WebhookError::Unavailable("the publisher stopped".into()),
        })?;
        answer
            .await
            .map_err(|_| WebhookError::Unavailable("the publisher stopped".into()))?
            .map_err(WebhookError::Unavailable)
    }
}

impl PublisherTask {
    /// Publishes until every [`Publisher`] is gone, or until `shutdown`
    /// (then what is already waiting is still published).
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut jobs: Vec<Job> = Vec::new();
        loop {
            let first = tokio::select! {
                job = self.jobs.recv() => job,
                () = shutdown.cancelled() => {
                    self.jobs.close();
                    self.jobs.recv().await
                }
            };
            let Some(first) = first else { return };
            let mut size = first.messages.len();
            jobs.push(first);
            while size < self.max_batch {
                match self.jobs.try_recv() {
                    Ok(job) => {
                        size += job.messages.len();
                        jobs.push(job);
                    }
                    Err(_) => break,
                }
            }
            self.publish(&mut jobs).await;
        }
    }

    async fn publish(&self, jobs: &mut Vec<Job>) {
        let batch: Vec<Message> = jobs.iter().flat_map(|job| job.messages.iter().cloned()).collect();
        let result = self.intake.publish(&batch).await;
        if let Err(error) = &result {
            tracing::error!(%error, messages = batch.len(), "webhook publish failed; answering 503");
        }
        let mut outcomes = result.as_ref().ok().map(|o| o.iter().cloned());
        for job in jobs.drain(..) {
            let answer = match outcomes.as_mut() {
                Some(outcomes) => Ok(outcomes.by_ref().take(job.messages.len()).collect()),
                None => Err(result.as_ref().err().map(ToString::to_string).unwrap_or_default()),
            };
            // The requester may have gone away (client timeout); the message is queued anyway.
            let _ = job.reply.send(answer);
        }
        if result.is_err() {
            // A store that fails now usually fails for a moment; do not spin on it.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
