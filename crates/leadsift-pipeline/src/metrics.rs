//! Prometheus metrics of the pipeline. Labels are bounded: channel,
//! verdict, rule id, outcome — never an address or a phone number.

use prometheus::{Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

/// All pipeline metrics, registered in one registry that `/metrics` serves.
#[derive(Debug, Clone)]
pub struct Metrics {
    pub registry: Registry,
    /// Messages offered to the queue, by channel and outcome (new, duplicate).
    pub intake_messages: IntCounterVec,
    /// Inputs that could not be turned into messages or processed, by stage (intake, triage).
    pub quarantined: IntCounterVec,
    /// Messages triaged and stored, by channel and verdict.
    pub triaged: IntCounterVec,
    /// Rule and list hits in stored verdicts, by rule id.
    pub rule_hits: IntCounterVec,
    /// Leads opened, by stage.
    pub leads_created: IntCounterVec,
    /// Sender identities blacklisted automatically.
    pub auto_blacklisted: IntCounter,
    /// Classification and store time of one message, averaged over its batch.
    pub triage_latency: Histogram,
    /// Wall time of each step of a triage batch (receive, standings,
    /// classify, store, ack) and of waiting for work (idle): shows whether
    /// the queue, the classifier or the store holds triage back.
    pub triage_phase: HistogramVec,
    /// Rules file reloads, by result (ok, error).
    pub rules_reloads: IntCounterVec,
    /// Rules in force.
    pub rules_loaded: IntGauge,
    /// Messages waiting or in flight in the queue.
    pub queue_depth: IntGauge,
    /// Triage batches that failed and were retried.
    pub triage_failures: IntCounter,
    /// Attempts to update the model from feedback, by result (accepted, refused).
    pub model_updates: IntCounterVec,
    /// Id of the model version in use (0: the shipped model).
    pub model_version: IntGauge,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new_custom(Some("leadsift".into()), None).expect("static metric prefix is valid");
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            let metric = IntCounterVec::new(Opts::new(name, help), labels).expect("static metric definition");
            registry.register(Box::new(metric.clone())).expect("metric registered once");
            metric
        };
        let intake_messages = counter_vec(
            "intake_messages_total",
            "Messages offered to the queue by channel and outcome.",
            &["channel", "outcome"],
        );
        let quarantined = counter_vec("quarantined_total", "Inputs kept in quarantine, by pipeline stage.", &["stage"]);
        let triaged = counter_vec("messages_triaged_total", "Messages triaged and stored.", &["channel", "verdict"]);
        let rule_hits = counter_vec("rule_hits_total", "Rules that contributed to stored verdicts.", &["rule"]);
        let leads_created = counter_vec("leads_created_total", "Leads opened by triage, by stage.", &["stage"]);
        let rules_reloads = counter_vec("rules_reloads_total", "Rules file reloads by result.", &["result"]);
        let auto_blacklisted = IntCounter::new("auto_blacklisted_total", "Sender identities blacklisted by triage.")
            .expect("static metric");
        let triage_latency = Histogram::with_opts(
            HistogramOpts::new("triage_latency_seconds", "Classification and store time per message.")
                .buckets(vec![0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0]),
        )
        .expect("static metric");
        let triage_phase = HistogramVec::new(
            HistogramOpts::new("triage_phase_seconds", "Wall time of one step of a triage batch.")
                .buckets(vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5]),
            &["phase"],
        )
        .expect("static metric");
        let rules_loaded = IntGauge::new("rules_loaded", "Rules in force.").expect("static metric");
        let queue_depth =
            IntGauge::new("queue_depth", "Messages waiting or in flight in the queue.").expect("static metric");
        let triage_failures = IntCounter::new("triage_failures_total", "Triage batches that failed and were retried.")
            .expect("static metric");
        let model_updates = counter_vec("model_updates_total", "Model updates from feedback, by result.", &["result"]);
        let model_version =
            IntGauge::new("model_version", "Model version in use (0: the shipped model).").expect("static metric");
        for metric in [
            Box::new(model_version.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(auto_blacklisted.clone()),
            Box::new(triage_latency.clone()),
            Box::new(triage_phase.clone()),
            Box::new(rules_loaded.clone()),
            Box::new(queue_depth.clone()),
            Box::new(triage_failures.clone()),
        ] {
            registry.register(metric).expect("metric registered once");
        }
        Self {
            registry,
            intake_messages,
            quarantined,
            triaged,
            rule_hits,
            leads_created,
            auto_blacklisted,
            triage_latency,
            triage_phase,
            rules_reloads,
            rules_loaded,
            queue_depth,
            triage_failures,
            model_updates,
            model_version,
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let encoder = prometheus::TextEncoder::new();
        encoder.encode_to_string(&self.registry.gather()).unwrap_or_else(|e| format!("# encoding failed: {e}\n"))
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
