//! The settings tree: one optional TOML file plus `LEADSIFT__SECTION__KEY`
//! environment overrides (and `LEADSIFT_DB` / `--db` for the database URL).
//! Every field has a default, so the binary runs with no file at all.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use leadsift_core::{LeadStage, RoutingPolicy};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[serde(default)]
    pub database: DatabaseSettings,
    #[serde(default)]
    pub queue: QueueSettings,
    #[serde(default)]
    pub triage: TriageSettings,
    #[serde(default)]
    pub rules: RulesSettings,
    #[serde(default)]
    pub model: ModelSettings,
    #[serde(default)]
    pub intake: IntakeSettings,
    #[serde(default)]
    pub http: HttpSettings,
    /// IMAP accounts whose mail is read into the pipeline (none by default).
    #[serde(default)]
    pub imap: leadsift_imap::ImapSettings,
    /// Emails to managers about new inquiry leads (off by default).
    #[serde(default)]
    pub notify: leadsift_notify::NotifySettings,
    /// Pushing leads and their stage changes to Bitrix24 (off by default).
    #[serde(default)]
    pub bitrix24: leadsift_bitrix24::Bitrix24Settings,
    #[serde(default)]
    pub webhooks: leadsift_webhooks::WebhookSettings,
    #[serde(default)]
    pub attribution: AttributionSettings,
    /// Currency and time zone of the management reports.
    #[serde(default)]
    pub reports: ReportSettings,
    /// The JSON API under `/api/` (off until a token is set).
    #[serde(default)]
    pub api: ApiSettings,
    /// The web UI (logins with roles; users from `leadsift users add`).
    #[serde(default)]
    pub web: leadsift_web::WebSettings,
    /// Display names of the lead stages (Russian by default), keyed by stage id.
    #[serde(default)]
    pub stages: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    /// `sqlite://PATH` (embedded default) or `postgres://USER@HOST:PORT/DB`.
    #[serde(default = "default_database_url")]
    pub url: String,
    /// Connection pool size (SQLite uses at most 4).
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueSettings {
    /// Empty (the default) for the built-in queue in the database, or
    /// `kafka://host:port[,host:port…]` for Kafka (intake and triage may then
    /// run as separate processes: `leadsift run --role intake|triage`).
    #[serde(default)]
    pub url: String,
    /// Kafka topic of inbound messages, keyed by sender identity.
    #[serde(default = "default_kafka_topic")]
    pub topic: String,
    /// Kafka topic for messages that failed `max_attempts` times (error in headers).
    #[serde(default = "default_kafka_dead_letter_topic")]
    pub dead_letter_topic: String,
    /// Kafka consumer group of the triage workers.
    #[serde(default = "default_kafka_group")]
    pub group: String,
    /// Kafka: milliseconds after which a silent triage process loses its partitions.
    #[serde(default = "default_kafka_session_timeout_ms")]
    pub session_timeout_ms: u64,
    /// Kafka: milliseconds shutdown and rebalance wait for batches in hand.
    #[serde(default = "default_kafka_drain_deadline_ms")]
    pub drain_deadline_ms: u64,
    /// Seconds a claimed message stays invisible to other workers.
    #[serde(default = "default_lease_secs")]
    pub lease_secs: u64,
    /// Deliveries after which a failing message goes to quarantine.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Seconds before a failed delivery is retried.
    #[serde(default = "default_retry_delay_secs")]
    pub retry_delay_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriageSettings {
    /// Messages per store transaction.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Concurrent triage workers in this process.
    #[serde(default = "default_workers")]
    pub workers: usize,
    /// Milliseconds an idle worker waits before polling again.
    #[serde(default = "default_idle_poll_ms")]
    pub idle_poll_ms: u64,
    /// Verdicts below this confidence become `contact_client` leads flagged for review.
    #[serde(default = "default_review_below")]
    pub review_below: f64,
    /// Spam verdicts at or above this confidence count towards blacklisting the sender.
    #[serde(default = "default_auto_blacklist_min")]
    pub auto_blacklist_min: f64,
    /// The sender's address/phone/handle is blacklisted after this many confident spam
    /// messages from it, if it never sent anything else (never a whole domain).
    #[serde(default = "default_auto_blacklist_after")]
    pub auto_blacklist_after: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesSettings {
    /// Rules file; when it does not exist the built-in default rules are used.
    #[serde(default = "default_rules_path")]
    pub path: PathBuf,
    /// Milliseconds between checks of the rules file for changes.
    #[serde(default = "default_rules_poll_ms")]
    pub poll_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSettings {
    /// Combine the ML model with the rules (false: rules alone).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Model directory (`model.json.gz`, `metadata.json`); when it does not
    /// exist the model built into the binary (a copy of `models/default`) is used.
    #[serde(default = "default_model_path")]
    pub path: PathBuf,
    /// Learn from managers' feedback while `leadsift run` runs.
    #[serde(default = "default_true")]
    pub learn: bool,
    /// Seconds between checks for new feedback.
    #[serde(default = "default_learn_interval_secs")]
    pub learn_interval_secs: u64,
    /// Seconds between checks for a model version another process accepted.
    #[serde(default = "default_model_refresh_secs")]
    pub refresh_secs: u64,
    /// Labelled corpora (see `leadsift train`) whose validation split is part
    /// of the validation set a model update must not get worse on.
    #[serde(default)]
    pub validation_corpora: Vec<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntakeSettings {
    /// Folder watched for new `.eml`/`.json`/mbox files; empty string disables it.
    #[serde(default = "default_drop_folder")]
    pub drop_folder: PathBuf,
    /// ISO 3166 region for national phone numbers (`8 916 …` in RU).
    #[serde(default = "default_region")]
    pub default_region: String,
    /// Largest single input accepted, in bytes.
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
    /// Message text kept (and classified) at most, in bytes.
    #[serde(default = "default_max_text_bytes")]
    pub max_text_bytes: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    /// Address of the HTTP server (`/healthz`, `/metrics`).
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Bearer token that may read `/metrics` from anywhere (empty: none).
    #[serde(default = "default_metrics_token")]
    pub metrics_token: leadsift_core::Secret,
    /// Networks (CIDR) whose clients may read `/metrics` without a token:
    /// this machine only by default; add the scraper's network in a deployment.
    #[serde(default = "default_metrics_networks")]
    pub metrics_networks: Vec<String>,
}

impl HttpSettings {
    pub fn metrics_networks(&self) -> anyhow::Result<Vec<crate::http::Network>> {
        self.metrics_networks
            .iter()
            .map(|raw| raw.parse().map_err(|e: String| anyhow::anyhow!("http.metrics_networks: {e}")))
            .collect()
    }
}

/// `[reports]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportSettings {
    /// ISO 4217 code the reports sum money in; deals and spend in other
    /// currencies are counted apart, never converted.
    #[serde(default = "default_report_currency")]
    pub currency: String,
    /// The team's UTC offset (`+03:00` is Moscow): report periods are whole
    /// local days, and so are ad spend dates.
    #[serde(default = "default_utc_offset")]
    pub utc_offset: String,
}

impl ReportSettings {
    pub fn currency(&self) -> anyhow::Result<leadsift_core::Currency> {
        leadsift_core::Currency::parse(&self.currency).context("reports.currency")
    }

    pub fn utc_offset(&self) -> anyhow::Result<chrono::FixedOffset> {
        self.utc_offset.parse().map_err(|e| {
            anyhow::anyhow!("reports.utc_offset {:?} is not an offset such as +03:00: {e}", self.utc_offset)
        })
    }
}

/// `[api]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSettings {
    /// Bearer token for `/api/*` (`Authorization: Bearer <token>`); empty
    /// (the default) turns the API off (404). Never logged.
    #[serde(default = "default_api_token")]
    pub token: leadsift_core::Secret,
}

/// `[attribution]`: which ad source and campaign each destination belongs to.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttributionSettings {
    /// One entry per tracking number, email address, bot, WhatsApp number or form.
    #[serde(default)]
    pub destinations: Vec<DestinationSettings>,
}

/// `[[attribution.destinations]]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationSettings {
    /// `+74951234501` (tracking number), `sales@firm.ru`, `telegram:<bot username>`,
    /// a WhatsApp business number, or `form:<form id>`.
    pub destination: String,
    /// Ad source (`yandex_direct`, `avito`, …); a message's own `utm_source` wins.
    #[serde(default)]
    pub source: Option<String>,
    /// Campaign; a message's own `utm_campaign` wins.
    #[serde(default)]
    pub campaign: Option<String>,
}

fn default_database_url() -> String {
    "sqlite://leadsift.db".into()
}
fn default_max_connections() -> u32 {
    8
}
fn default_lease_secs() -> u64 {
    15
}
fn default_max_attempts() -> u32 {
    5
}
fn default_retry_delay_secs() -> u64 {
    5
}
fn default_kafka_topic() -> String {
    "leadsift.inbound".into()
}
fn default_kafka_dead_letter_topic() -> String {
    "leadsift.dead-letter".into()
}
fn default_kafka_group() -> String {
    "leadsift-triage".into()
}
fn default_kafka_session_timeout_ms() -> u64 {
    10_000
}
fn default_kafka_drain_deadline_ms() -> u64 {
    10_000
}
fn default_batch_size() -> usize {
    256
}
fn default_workers() -> usize {
    2
}
fn default_idle_poll_ms() -> u64 {
    250
}
fn default_review_below() -> f64 {
    RoutingPolicy::default().review_below
}
fn default_auto_blacklist_min() -> f64 {
    RoutingPolicy::default().auto_blacklist_min
}
fn default_auto_blacklist_after() -> u32 {
    RoutingPolicy::default().auto_blacklist_after
}
fn default_rules_path() -> PathBuf {
    PathBuf::from("rules/default.toml")
}
fn default_rules_poll_ms() -> u64 {
    1000
}
fn default_true() -> bool {
    true
}
fn default_model_path() -> PathBuf {
    PathBuf::from("models/default")
}
fn default_learn_interval_secs() -> u64 {
    60
}
fn default_model_refresh_secs() -> u64 {
    10
}
fn default_drop_folder() -> PathBuf {
    PathBuf::from("inbox")
}
fn default_region() -> String {
    "RU".into()
}
fn default_max_message_bytes() -> usize {
    25 * 1024 * 1024
}
fn default_max_text_bytes() -> usize {
    256 * 1024
}
fn default_report_currency() -> String {
    "RUB".into()
}
fn default_utc_offset() -> String {
    "+03:00".into()
}
fn default_api_token() -> leadsift_core::Secret {
    leadsift_core::Secret::new("")
}
fn default_metrics_token() -> leadsift_core::Secret {
    leadsift_core::Secret::new("")
}
fn default_metrics_networks() -> Vec<String> {
    vec!["127.0.0.0/8".into(), "::1/128".into()]
}
fn default_listen() -> String {
    "127.0.0.1:8080".into()
}

macro_rules! default_from_serde {
    ($($ty:ident),*) => {$(
        impl Default for $ty {
            fn default() -> Self {
                serde_json::from_value(serde_json::json!({})).expect("every field has a default")
            }
        }
    )*};
}
default_from_serde!(
    DatabaseSettings,
    QueueSettings,
    TriageSettings,
    RulesSettings,
    ModelSettings,
    IntakeSettings,
    HttpSettings,
    ReportSettings,
    ApiSettings
);

impl Settings {
    /// Loads `file` (required if given), then `LEADSIFT__…` overrides, then
    /// `LEADSIFT_DB`, then `--db`.
    pub fn load(file: Option<&Path>, db_override: Option<&str>) -> anyhow::Result<Self> {
        let mut builder = config::Config::builder();
        if let Some(file) = file {
            anyhow::ensure!(file.exists(), "config file {} does not exist", file.display());
            builder = builder.add_source(config::File::from(file).format(config::FileFormat::Toml));
        }
        builder = builder.add_source(
            config::Environment::with_prefix("LEADSIFT").prefix_separator("__").separator("__").try_parsing(true),
        );
        let mut settings: Settings =
            builder.build().and_then(config::Config::try_deserialize).with_context(|| match file {
                Some(file) => format!("invalid configuration in {} or LEADSIFT__* variables", file.display()),
                None => "invalid configuration in LEADSIFT__* variables".to_owned(),
            })?;
        if let Ok(url) = std::env::var("LEADSIFT_DB")
            && !url.is_empty()
        {
            settings.database.url = url;
        }
        if let Some(url) = db_override {
            settings.database.url = url.to_owned();
        }
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> anyhow::Result<()> {
        for key in self.stages.keys() {
            key.parse::<LeadStage>().context("in [stages]")?;
        }
        for (name, value) in
            [("review_below", self.triage.review_below), ("auto_blacklist_min", self.triage.auto_blacklist_min)]
        {
            anyhow::ensure!((0.0..=1.0).contains(&value), "triage.{name} must be between 0 and 1, got {value}");
        }
        anyhow::ensure!(self.triage.batch_size > 0, "triage.batch_size must be at least 1");
        anyhow::ensure!(self.triage.workers > 0, "triage.workers must be at least 1");
        let hooks = &self.webhooks;
        anyhow::ensure!(
            !hooks.telegram.polling || hooks.telegram.bot_token.is_some(),
            "webhooks.telegram.polling needs webhooks.telegram.bot_token"
        );
        anyhow::ensure!(
            hooks.publish_batch > 0 && hooks.publish_backlog > 0,
            "webhooks.publish_batch and publish_backlog must be at least 1"
        );
        for d in &self.attribution.destinations {
            anyhow::ensure!(!d.destination.trim().is_empty(), "attribution.destinations: empty destination");
        }
        anyhow::ensure!(self.triage.auto_blacklist_after > 0, "triage.auto_blacklist_after must be at least 1");
        anyhow::ensure!(self.model.learn_interval_secs > 0, "model.learn_interval_secs must be at least 1");
        anyhow::ensure!(self.model.refresh_secs > 0, "model.refresh_secs must be at least 1");
        self.http.metrics_networks()?;
        self.reports.currency()?;
        self.reports.utc_offset()?;
        self.imap.validate()?;
        self.notify.validate()?;
        self.bitrix24.validate()?;
        self.kafka_settings()?;
        Ok(())
    }

    pub fn routing(&self) -> RoutingPolicy {
        RoutingPolicy {
            review_below: self.triage.review_below,
            auto_blacklist_min: self.triage.auto_blacklist_min,
            auto_blacklist_after: self.triage.auto_blacklist_after,
        }
    }

    pub fn stage_name(&self, stage: LeadStage) -> String {
        self.stages.get(stage.as_str()).cloned().unwrap_or_else(|| stage.default_display_name().to_owned())
    }

    pub fn parse_options(&self) -> leadsift_formats::ParseOptions {
        leadsift_formats::ParseOptions {
            default_region: self.intake.default_region.clone(),
            max_raw_bytes: self.intake.max_message_bytes,
            max_text_bytes: self.intake.max_text_bytes,
            ..leadsift_formats::ParseOptions::default()
        }
    }

    /// The model directory if it exists; `None` means the built-in model.
    pub fn model_dir(&self) -> Option<PathBuf> {
        self.model.path.join(leadsift_model::model::MODEL_FILE).exists().then(|| self.model.path.clone())
    }

    /// The rules file if it exists; `None` means the built-in rules.
    pub fn rules_file(&self) -> Option<PathBuf> {
        self.rules.path.exists().then(|| self.rules.path.clone())
    }

    pub fn attribution(&self) -> leadsift_pipeline::Attribution {
        let targets = self.attribution.destinations.iter().map(|d| {
            let target =
                leadsift_pipeline::AttributionTarget { source: d.source.clone(), campaign: d.campaign.clone() };
            (d.destination.clone(), target)
        });
        leadsift_pipeline::Attribution::new(targets, &self.intake.default_region)
    }

    /// The Kafka queue's settings, or `None` for the built-in queue.
    pub fn kafka_settings(&self) -> anyhow::Result<Option<leadsift_kafka::KafkaSettings>> {
        let url = self.queue.url.trim();
        if url.is_empty() || url == "builtin" {
            return Ok(None);
        }
        let mut kafka = leadsift_kafka::KafkaSettings::from_url(url).context("in [queue] url")?;
        kafka.topic = self.queue.topic.clone();
        kafka.dead_letter_topic = self.queue.dead_letter_topic.clone();
        kafka.group = self.queue.group.clone();
        kafka.max_attempts = self.queue.max_attempts;
        kafka.retry_delay = std::time::Duration::from_secs(self.queue.retry_delay_secs);
        kafka.session_timeout = std::time::Duration::from_millis(self.queue.session_timeout_ms);
        kafka.drain_deadline = std::time::Duration::from_millis(self.queue.drain_deadline_ms);
        Ok(Some(kafka))
    }

    pub fn store_settings(&self) -> leadsift_store::StoreSettings {
        let mut store = leadsift_store::StoreSettings::new(self.database.url.clone());
        store.max_connections = self.database.max_connections;
        store.inbox = leadsift_store::InboxSettings {
            lease: std::time::Duration::from_secs(self.queue.lease_secs),
            max_attempts: self.queue.max_attempts,
            retry_delay: std::time::Duration::from_secs(self.queue.retry_delay_secs),
        };
        store
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_need_no_file() {
        let settings: Settings = serde_json::from_value(serde_json::json!({})).unwrap();
        assert_eq!(settings.database.url, "sqlite://leadsift.db");
        assert_eq!(settings.http.listen, "127.0.0.1:8080");
        assert_eq!(settings.stage_name(LeadStage::ContactClient), "Связаться с клиентом");
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("leadsift.toml");
        std::fs::write(&file, "[database]\nurl = \"sqlite://x.db\"\nulr = 1\n").unwrap();
        let error = format!("{:#}", Settings::load(Some(&file), None).unwrap_err());
        assert!(error.contains("ulr"), "{error}");
    }

    #[test]
    fn webhook_and_attribution_sections_load() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("leadsift.toml");
        std::fs::write(
            &file,
            "[webhooks.zadarma]\nsecret = \"s3cret\"\n[[attribution.destinations]]\n\
             destination = \"8 (495) 123-45-01\"\nsource = \"avito\"\ncampaign = \"spring\"\n",
        )
        .unwrap();
        let settings = Settings::load(Some(&file), None).unwrap();
        assert_eq!(settings.webhooks.zadarma.secret.as_ref().unwrap().expose(), "s3cret");
        assert!(!format!("{settings:?}").contains("s3cret"), "secrets are redacted");
        let mut message = leadsift_core::Message::new(
            leadsift_core::Channel::Call,
            leadsift_core::DedupKey::from_stored("k".into()),
            chrono::Utc::now(),
        );
        message.destination = Some("+74951234501".into());
        assert!(settings.attribution().apply(&mut message));
        assert_eq!(message.utm.source.as_deref(), Some("avito"));

        std::fs::write(&file, "[webhooks.telegram]\npolling = true\n").unwrap();
        assert!(format!("{:#}", Settings::load(Some(&file), None).unwrap_err()).contains("bot_token"));
        std::fs::write(&file, "[[attribution.destinations]]\ndestination = \"x\"\nsorce = \"y\"\n").unwrap();
        assert!(format!("{:#}", Settings::load(Some(&file), None).unwrap_err()).contains("sorce"));
    }

    #[test]
    fn bitrix24_section_is_off_by_default_and_checked_when_loaded() {
        let settings: Settings = serde_json::from_value(serde_json::json!({})).unwrap();
        assert!(!settings.bitrix24.enabled);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("leadsift.toml");
        std::fs::write(
            &file,
            "[bitrix24]\nenabled = true\nwebhook_url = \"https://acme.bitrix24.ru/rest/1/t0k3n/\"\n\
             [bitrix24.statuses]\nqualification = \"UC_QUAL\"\n",
        )
        .unwrap();
        let settings = Settings::load(Some(&file), None).unwrap();
        assert_eq!(settings.bitrix24.status_id(LeadStage::Qualification), "UC_QUAL");
        assert!(!format!("{settings:?}").contains("t0k3n"), "the webhook URL is redacted");
        std::fs::write(&file, "[bitrix24.statuses]\nqualificaton = \"UC_QUAL\"\n").unwrap();
        let error = format!("{:#}", Settings::load(Some(&file), None).unwrap_err());
        assert!(error.contains("qualificaton"), "{error}");
    }

    #[test]
    fn file_and_override_apply() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("leadsift.toml");
        std::fs::write(&file, "[triage]\nbatch_size = 7\n[stages]\noffer = \"КП\"\n").unwrap();
        let settings = Settings::load(Some(&file), Some("postgres://h/db")).unwrap();
        assert_eq!(settings.triage.batch_size, 7);
        assert_eq!(settings.database.url, "postgres://h/db");
        assert_eq!(settings.stage_name(LeadStage::Offer), "КП");
        assert!(settings.kafka_settings().unwrap().is_none());
    }

    #[test]
    fn kafka_queue_comes_from_the_url() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("leadsift.toml");
        std::fs::write(&file, "[queue]\nurl = \"kafka://kafka:9092\"\nmax_attempts = 3\ngroup = \"g\"\n").unwrap();
        let kafka = Settings::load(Some(&file), None).unwrap().kafka_settings().unwrap().unwrap();
        assert_eq!((kafka.brokers.as_str(), kafka.max_attempts, kafka.group.as_str()), ("kafka:9092", 3, "g"));
        std::fs::write(&file, "[queue]\nurl = \"kafka://nohostport\"\n").unwrap();
        let error = format!("{:#}", Settings::load(Some(&file), None).unwrap_err());
        assert!(error.contains("[queue] url"), "{error}");
    }
}
