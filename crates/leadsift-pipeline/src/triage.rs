//! Triage workers: take messages from the queue, classify them off the
//! async threads, write verdict + lead + blacklist changes in one store
//! transaction, and only then ack.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use leadsift_core::{
    Classifier, Delivery, DeliveryId, LeadStore, Nacked, Queue, Route, RoutingPolicy, SenderStanding, TriageWrite,
    Triaged, Verdict,
};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::PipelineError;
use crate::metrics::Metrics;
use crate::model_handle::ModelHandle;
use crate::rules_handle::RulesHandle;
use leadsift_model::CombinedClassifier;

/// Triage tuning.
#[derive(Debug, Clone, Copy)]
pub struct TriageSettings {
    /// Messages per store transaction.
    pub batch_size: usize,
    /// How long an idle worker waits before polling the queue again.
    pub idle_poll: Duration,
    pub routing: RoutingPolicy,
}

impl Default for TriageSettings {
    fn default() -> Self {
        Self { batch_size: 256, idle_poll: Duration::from_millis(250), routing: RoutingPolicy::default() }
    }
}

/// What one or more batches did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TriageReport {
    pub stored: u64,
    pub duplicate: u64,
    pub failed: u64,
    pub dead_lettered: u64,
    pub leads_created: u64,
    pub by_verdict: BTreeMap<Verdict, u64>,
}

impl TriageReport {
    pub fn add(&mut self, other: &TriageReport) {
        self.stored += other.stored;
        self.duplicate += other.duplicate;
        self.failed += other.failed;
        self.dead_lettered += other.dead_lettered;
        self.leads_created += other.leads_created;
        for (verdict, n) in &other.by_verdict {
            *self.by_verdict.entry(*verdict).or_default() += n;
        }
    }

    fn handled(&self) -> u64 {
        self.stored + self.duplicate + self.failed
    }
}

#[derive(Clone)]
pub struct TriageWorker {
    queue: Arc<dyn Queue>,
    store: Arc<dyn LeadStore>,
    rules: Arc<RulesHandle>,
    /// The model combined with the rules; rules alone when `None`.
    model: Option<Arc<ModelHandle>>,
    settings: TriageSettings,
    metrics: Metrics,
    wake: Arc<Notify>,
}

impl std::fmt::Debug for TriageWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TriageWorker").field("settings", &self.settings).finish_non_exhaustive()
    }
}

impl TriageWorker {
    pub fn new(
        queue: Arc<dyn Queue>,
        store: Arc<dyn LeadStore>,
        rules: Arc<RulesHandle>,
        settings: TriageSettings,
        metrics: Metrics,
        wake: Arc<Notify>,
    ) -> Self {
        Self { queue, store, rules, model: None, settings, metrics, wake }
    }

    /// Classifies with the rules and this model (see `leadsift_model::CombinedClassifier`).
    pub fn with_model(mut self, model: Arc<ModelHandle>) -> Self {
        self.model = Some(model);
        self
    }

    /// Processes up to one batch; returns what it did (all zero when the queue had nothing claimable).
    pub async fn process_batch(&self) -> Result<TriageReport, PipelineError> {
        let receiving = Instant::now();
        let deliveries = self.queue.receive(self.settings.batch_size).await?;
        if deliveries.is_empty() {
            self.phase("idle", receiving);
            return Ok(TriageReport::default());
        }
        let started = Instant::now();
        self.phase("receive", receiving);
        let count = deliveries.len();
        let senders: Vec<_> = deliveries.iter().map(|d| d.message.sender.clone()).collect();
        let standings = self.store.standings(&senders, Utc::now()).await?;
        let classifying = self.phase("standings", started);
        let rules = self.rules.current();
        let model = self.model.as_ref().map(|m| m.current());
        let routing = self.settings.routing;
        let classified = tokio::task::spawn_blocking(move || match model {
            Some(model) => classify_batch(&CombinedClassifier::new(rules, model), routing, deliveries, standings),
            None => classify_batch(rules.as_ref(), routing, deliveries, standings),
        })
        .await
        .map_err(|e| PipelineError::Internal(format!("classification task failed: {e}")))?;
        let storing = self.phase("classify", classifying);
        let mut report = TriageReport::default();
        let mut ids = Vec::with_capacity(count);
        let mut triaged = Vec::with_capacity(count);
        for (id, outcome) in classified {
            match outcome {
                Ok(item) => {
                    ids.push(id);
                    triaged.push(item);
                }
                Err(error) => report.add(&self.fail(id, &error).await?),
            }
        }
        match self.store.record_triage(&triaged, Utc::now()).await {
            Ok(writes) => {
                let acking = self.phase("store", storing);
                self.queue.ack(&ids).await?;
                self.phase("ack", acking);
                report.add(&self.account(&triaged, &writes));
            }
            Err(error) if triaged.len() > 1 => {
                tracing::warn!(%error, batch = triaged.len(), "triage batch failed; storing one by one");
                self.metrics.triage_failures.inc();
                report.add(&self.store_individually(ids, triaged).await?);
            }
            Err(error) => match ids.first() {
                Some(id) if !error.is_retryable() => report.add(&self.fail(*id, &error.to_string()).await?),
                _ => return Err(error.into()),
            },
        }
        let per_message = started.elapsed().as_secs_f64() / count as f64;
        for _ in 0..count {
            self.metrics.triage_latency.observe(per_message);
        }
        Ok(report)
    }

    /// Records the time since `since` as `phase`; returns now, the start of the next phase.
    fn phase(&self, phase: &str, since: Instant) -> Instant {
        let now = Instant::now();
        self.metrics.triage_phase.with_label_values(&[phase]).observe((now - since).as_secs_f64());
        now
    }

    /// Isolates a failing message so the rest of its batch is stored.
    async fn store_individually(
        &self,
        ids: Vec<DeliveryId>,
        triaged: Vec<Triaged>,
    ) -> Result<TriageReport, PipelineError> {
        let mut report = TriageReport::default();
        for (id, item) in ids.into_iter().zip(triaged) {
            let one = std::slice::from_ref(&item);
            match self.store.record_triage(one, Utc::now()).await {
                Ok(writes) => {
                    self.queue.ack(&[id]).await?;
                    report.add(&self.account(one, &writes));
                }
                Err(error) => report.add(&self.fail(id, &error.to_string()).await?),
            }
        }
        Ok(report)
    }

    async fn fail(&self, id: DeliveryId, error: &str) -> Result<TriageReport, PipelineError> {
        let mut report = TriageReport { failed: 1, ..TriageReport::default() };
        if self.queue.nack(id, error).await? == Nacked::DeadLettered {
            self.metrics.quarantined.with_label_values(&["triage"]).inc();
            report.dead_lettered = 1;
            tracing::error!(offset = id.offset, %error, "message failed too often; moved to quarantine");
        }
        Ok(report)
    }

    fn account(&self, triaged: &[Triaged], writes: &[TriageWrite]) -> TriageReport {
        let mut report = TriageReport::default();
        for (item, write) in triaged.iter().zip(writes) {
            match write {
                TriageWrite::Duplicate => report.duplicate += 1,
                TriageWrite::Stored { lead_created, blacklisted, .. } => {
                    report.stored += 1;
                    let verdict = item.classification.verdict;
                    *report.by_verdict.entry(verdict).or_default() += 1;
                    self.metrics.triaged.with_label_values(&[item.message.channel.as_str(), verdict.as_str()]).inc();
                    for reason in &item.classification.reasons {
                        self.metrics.rule_hits.with_label_values(&[reason.rule.as_str()]).inc();
                    }
                    if *lead_created && let Route::Lead { stage, .. } = &item.route {
                        report.leads_created += 1;
                        self.metrics.leads_created.with_label_values(&[stage.as_str()]).inc();
                    }
                    self.metrics.auto_blacklisted.inc_by(blacklisted.len() as u64);
                }
            }
        }
        report
    }

    /// Triage until the queue is empty (messages leased by other workers are waited for).
    pub async fn drain(&self, mut progress: impl FnMut(&TriageReport)) -> Result<TriageReport, PipelineError> {
        let mut total = TriageReport::default();
        loop {
            let report = self.process_batch().await?;
            total.add(&report);
            progress(&total);
            if report.handled() == 0 {
                let depth = self.queue.depth().await?;
                self.metrics.queue_depth.set(depth as i64);
                if depth == 0 {
                    return Ok(total);
                }
                tracing::info!(depth, "waiting for messages in flight elsewhere or scheduled for a retry");
                tokio::time::sleep(self.settings.idle_poll).await;
            }
        }
    }

    /// Runs until `shutdown`; finishes the batch in hand before returning.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), PipelineError> {
        let mut backoff = Duration::from_millis(100);
        loop {
            if shutdown.is_cancelled() {
                return Ok(());
            }
            let asked = Instant::now();
            match self.process_batch().await {
                Ok(report) if report.handled() > 0 => backoff = Duration::from_millis(100),
                Ok(_) => {
                    let idle = Instant::now();
                    if let Ok(depth) = self.queue.depth().await {
                        self.metrics.queue_depth.set(depth as i64);
                    }
                    // A queue that waits for messages itself (Kafka) has already
                    // spent most of the poll interval waiting: sleeping the whole
                    // interval again would only delay the next message.
                    let rest = self.settings.idle_poll.saturating_sub(asked.elapsed());
                    tokio::select! {
                        () = shutdown.cancelled() => return Ok(()),
                        () = self.wake.notified() => {}
                        () = tokio::time::sleep(rest) => {}
                    }
                    self.phase("idle", idle);
                }
                Err(error) if error.is_retryable() => {
                    tracing::warn!(%error, retry_in = ?backoff, "triage failed; retrying");
                    self.metrics.triage_failures.inc();
                    tokio::select! {
                        () = shutdown.cancelled() => return Ok(()),
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
                Err(error) => return Err(error),
            }
        }
    }
}

/// Classifies a batch. A message that makes the classifier panic fails
/// alone (and is dead-lettered after retries); the rest of the batch goes on.
pub fn classify_batch(
    classifier: &dyn Classifier,
    routing: RoutingPolicy,
    deliveries: Vec<Delivery>,
    standings: Vec<SenderStanding>,
) -> Vec<(DeliveryId, Result<Triaged, String>)> {
    deliveries
        .into_iter()
        .zip(standings)
        .map(|(delivery, standing)| {
            let classified = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                classifier.classify(&delivery.message, &standing)
            }));
            let classification = match classified {
                Ok(classification) => classification,
                Err(panic) => {
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|s| (*s).to_owned())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "unknown panic".to_owned());
                    return (delivery.id, Err(format!("classifier panicked: {what}")));
                }
            };
            let route = routing.route(&classification);
            let message = delivery.message;
            let triaged = Triaged {
                source: message.utm.source.clone(),
                campaign: message.utm.campaign.clone(),
                message,
                classification,
                route,
            };
            (delivery.id, Ok(triaged))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use leadsift_core::{Channel, DedupKey, EmailAddress, Evidence, Message, Reason, ReasonOrigin, ScoringPolicy};

    /// Spam when the subject says so; panics on a poisoned subject.
    struct SubjectClassifier;

    impl Classifier for SubjectClassifier {
        fn classify(&self, message: &Message, standing: &SenderStanding) -> leadsift_core::Classification {
            let subject = message.subject.as_deref().unwrap_or_default();
            assert!(subject != "poison", "classifier bug triggered by this message");
            let mut evidence = Evidence::default();
            if subject == "spam" {
                let reason = Reason {
                    rule: "TEST_SPAM".into(),
                    description: "test".into(),
                    origin: ReasonOrigin::Rule,
                    class: None,
                    score: 0.0,
                    decisive: false,
                };
                evidence.decide(reason, Verdict::Spam, 1.0);
            }
            ScoringPolicy::default().decide(evidence, standing)
        }
    }

    fn delivery(offset: i64, from: &str, subject: &str) -> Delivery {
        let mut message =
            Message::new(Channel::Email, DedupKey::from_upstream_id(Channel::Email, &offset.to_string()), Utc::now());
        message.sender.email = Some(EmailAddress::parse(from).unwrap());
        message.subject = Some(subject.into());
        Delivery { id: DeliveryId { partition: 0, offset }, message, attempt: 1 }
    }

    #[test]
    fn verdicts_are_routed_in_order() {
        let deliveries = vec![delivery(1, "spammer@spam.example", "spam"), delivery(2, "client@firm.example", "hello")];
        let out = classify_batch(
            &SubjectClassifier,
            RoutingPolicy::default(),
            deliveries,
            vec![SenderStanding::default(); 2],
        );
        let verdicts: Vec<Verdict> = out.iter().map(|(_, r)| r.as_ref().unwrap().classification.verdict).collect();
        assert_eq!(verdicts, vec![Verdict::Spam, Verdict::Inquiry]);
        assert!(matches!(out[0].1.as_ref().unwrap().route, Route::Lead { blacklist_after: Some(2), .. }));
    }

    #[test]
    fn a_panicking_message_fails_alone() {
        let deliveries = vec![delivery(1, "a@firm.example", "poison"), delivery(2, "b@firm.example", "hello")];
        let out = classify_batch(
            &SubjectClassifier,
            RoutingPolicy::default(),
            deliveries,
            vec![SenderStanding::default(); 2],
        );
        assert!(out[0].1.as_ref().unwrap_err().contains("classifier panicked"));
        assert_eq!(out[1].1.as_ref().unwrap().classification.verdict, Verdict::Inquiry);
        assert_eq!(out[1].0.offset, 2);
    }
}
