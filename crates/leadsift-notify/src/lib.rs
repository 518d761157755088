//! Manager notifications: every new inquiry lead is emailed to the manager
//! responsible for it (by lead source, else round-robin), and optionally the
//! author of an email inquiry gets a templated acknowledgement.
//!
//! Key design decision: the notifier never sits in triage's path. It polls
//! the store for inquiry leads created since a watermark (set once, when
//! notifications are first switched on, so old leads are not mailed) that
//! have no `lead_notifications` row, sends, and only then writes the row.
//! A crash between sending and writing re-sends: delivery is at least
//! once, and restarts lose nothing. SMTP failures back off and retry.
//!
//! This crate reads leads and messages from the store and talks SMTP
//! (lettre); it must not classify or change leads.

pub mod config;

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use leadsift_core::{Channel, Lead, LeadStage, Message, StoreError};
use leadsift_store::SqlStore;
use lettre::message::{Mailbox, header::ContentType};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use prometheus::{IntCounterVec, Opts, Registry};
use tokio_util::sync::CancellationToken;

pub use config::{AutoAckSettings, NotifySettings, SmtpSecurity, SmtpSettings};

use crate::config::parse_mailbox;

/// The watermark naming where notifications start.
const SINCE_WATERMARK: &str = "notify.leads_since";

/// Message text quoted in a notification at most, in characters.
const QUOTED_TEXT_CHARS: usize = 2000;

/// Longest pause after repeated SMTP failures.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("invalid [notify] settings: {0}")]
    Config(String),
    #[error("cannot build the email for lead {lead_id}: {reason}")]
    Build { lead_id: i64, reason: String },
    #[error("SMTP delivery to {recipient} via {server} failed: {source}")]
    Send {
        server: String,
        recipient: String,
        #[source]
        source: lettre::transport::smtp::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl NotifyError {
    /// Everything but bad settings or a mail that cannot be built may heal.
    pub fn is_retryable(&self) -> bool {
        matches!(self, NotifyError::Send { .. } | NotifyError::Store(_))
    }
}

/// Metrics of the notifier (bounded labels: kind, result).
#[derive(Debug, Clone)]
pub struct NotifyMetrics {
    /// Emails sent, by kind (manager, ack) and result (ok, error).
    pub sent: IntCounterVec,
}

impl NotifyMetrics {
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let sent = IntCounterVec::new(
            Opts::new("notifications_total", "Notification emails by kind and result."),
            &["kind", "result"],
        )?;
        registry.register(Box::new(sent.clone()))?;
        Ok(Self { sent })
    }
}

/// The notifier: one task polling the store.
#[derive(Debug)]
pub struct Notifier {
    settings: NotifySettings,
    store: SqlStore,
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    metrics: NotifyMetrics,
    /// Display names of stages (the daemon's `[stages]`); defaults otherwise.
    stage_names: BTreeMap<LeadStage, String>,
}

impl Notifier {
    pub fn new(settings: NotifySettings, store: SqlStore, registry: &Registry) -> Result<Self, NotifyError> {
        settings.validate()?;
        let from = parse_mailbox("from", &settings.from)?;
        let smtp = &settings.smtp;
        let tls = match smtp.security {
            SmtpSecurity::Plain => Tls::None,
            SmtpSecurity::Starttls | SmtpSecurity::Tls => {
                let parameters = TlsParameters::new(smtp.host.clone())
                    .map_err(|e| NotifyError::Config(format!("SMTP TLS setup for {}: {e}", smtp.host)))?;
                if smtp.security == SmtpSecurity::Tls { Tls::Wrapper(parameters) } else { Tls::Required(parameters) }
            }
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(smtp.host.clone())
            .port(smtp.port)
            .tls(tls)
            .timeout(Some(smtp.timeout()));
        if let Some(username) = &smtp.username {
            builder = builder.credentials(Credentials::new(username.clone(), smtp.password()?.expose().to_owned()));
        }
        let metrics = NotifyMetrics::register(registry)
            .map_err(|e| NotifyError::Config(format!("cannot register notification metrics: {e}")))?;
        Ok(Self { transport: builder.build(), from, settings, store, metrics, stage_names: BTreeMap::new() })
    }

    /// Stage names to show instead of the built-in Russian ones.
    pub fn with_stage_names(mut self, names: BTreeMap<LeadStage, String>) -> Self {
        self.stage_names = names;
        self
    }

    pub fn is_enabled(&self) -> bool {
        self.settings.enabled
    }

    /// Polls and sends until `shutdown`; store and SMTP failures back off and retry.
    #[tracing::instrument(name = "notify", skip_all)]
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), NotifyError> {
        let since_millis = self.store.init_watermark(SINCE_WATERMARK, Utc::now().timestamp_millis()).await?;
        let since = DateTime::from_timestamp_millis(since_millis).unwrap_or_default();
        tracing::info!(%since, server = %self.server(), "notifying managers of new inquiry leads");
        let poll = Duration::from_millis(self.settings.poll_ms.max(10));
        let mut delay = poll;
        loop {
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = shutdown.cancelled() => return Ok(()),
            }
            match self.notify_new_leads(since).await {
                Ok(_) => delay = poll,
                Err(error) if error.is_retryable() => {
                    delay = (delay * 2).clamp(poll, MAX_BACKOFF);
                    tracing::warn!(error = %error, retry_in_ms = delay.as_millis() as u64, "notification failed; retrying");
                }
                Err(error) => return Err(error),
            }
        }
    }

    fn server(&self) -> String {
        format!("{}:{}", self.settings.smtp.host, self.settings.smtp.port)
    }

    /// Sends what is due now; returns how many leads were handled.
    pub async fn notify_new_leads(&self, since: DateTime<Utc>) -> Result<usize, NotifyError> {
        let leads = self.store.leads_to_notify(since, self.settings.batch.max(1)).await?;
        for lead in &leads {
            let first = self.store.lead_first_message(lead.id).await?;
            let manager = self.manager_for(lead);
            match self.manager_email(lead, first.as_ref(), &manager) {
                Ok(email) => self.send("manager", &manager, email).await?,
                Err(error) => {
                    // Settings were validated, so this is one odd lead: say so and go on.
                    self.metrics.sent.with_label_values(&["manager", "error"]).inc();
                    tracing::error!(lead_id = lead.id, error = %error, "manager notification cannot be built; skipped");
                }
            }
            if self.settings.auto_ack.enabled
                && let Some(message) = &first
                && let Some(email) = self.acknowledgement(lead, message)
            {
                let recipient = message.sender.email.as_ref().map(|e| e.as_str().to_owned()).unwrap_or_default();
                // Best effort: a failed acknowledgement must not re-send the manager's email.
                if let Err(error) = self.send("ack", &recipient, email).await {
                    tracing::warn!(lead_id = lead.id, error = %error, "auto-acknowledgement failed; not retried");
                }
            }
            self.store.mark_lead_notified(lead.id, &manager, Utc::now()).await?;
            tracing::info!(lead_id = lead.id, "manager notified");
        }
        Ok(leads.len())
    }

    async fn send(&self, kind: &'static str, recipient: &str, email: lettre::Message) -> Result<(), NotifyError> {
        match self.transport.send(email).await {
            Ok(_) => {
                self.metrics.sent.with_label_values(&[kind, "ok"]).inc();
                Ok(())
            }
            Err(source) => {
                self.metrics.sent.with_label_values(&[kind, "error"]).inc();
                Err(NotifyError::Send { server: self.server(), recipient: recipient.to_owned(), source })
            }
        }
    }

    /// The lead source's manager, else the managers in turn by lead id
    /// (stable across restarts, so a re-send goes to the same person).
    pub fn manager_for(&self, lead: &Lead) -> String {
        if let Some(manager) = lead.source.as_deref().and_then(|source| self.settings.by_source.get(source)) {
            return manager.clone();
        }
        let managers = &self.settings.managers;
        managers[(lead.id.unsigned_abs() as usize) % managers.len()].clone()
    }

    fn manager_email(
        &self,
        lead: &Lead,
        first: Option<&Message>,
        manager: &str,
    ) -> Result<lettre::Message, NotifyError> {
        let build = |reason: String| NotifyError::Build { lead_id: lead.id, reason };
        let to = parse_mailbox("manager", manager).map_err(|e| build(e.to_string()))?;
        lettre::Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(format!("Новый лид #{}: {}", lead.id, one_line(&lead.title)))
            .header(ContentType::TEXT_PLAIN)
            .body(manager_body(lead, first, self.stage_names.get(&lead.stage).map(String::as_str)))
            .map_err(|e| build(e.to_string()))
    }

    /// The acknowledgement to an email inquiry's author, unless the inquiry
    /// was itself automatic or bulk mail (no mail loops).
    fn acknowledgement(&self, lead: &Lead, message: &Message) -> Option<lettre::Message> {
        if lead.channel != Channel::Email || is_automatic(message) {
            return None;
        }
        let address = message.sender.email.as_ref()?;
        let name = message.sender.name.clone().filter(|n| !n.trim().is_empty());
        let to = Mailbox::new(name.clone(), address.as_str().parse().ok()?);
        let subject = one_line(message.subject.as_deref().unwrap_or("ваше обращение"));
        let ack = &self.settings.auto_ack;
        let fill = |template: &str| {
            template.replace("{name}", name.as_deref().unwrap_or("клиент")).replace("{subject}", &subject)
        };
        let mut builder = lettre::Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(fill(&ack.subject))
            .header(ContentType::TEXT_PLAIN)
            .header(AutoSubmitted);
        if let Some(id) = message.header("Message-ID") {
            builder = builder.in_reply_to(id.to_owned()).references(id.to_owned());
        }
        builder.body(fill(&ack.template)).ok()
    }
}

/// `Auto-Submitted: auto-replied` (RFC 3834), so other robots do not answer.
#[derive(Debug, Clone, Copy)]
struct AutoSubmitted;

impl lettre::message::header::Header for AutoSubmitted {
    fn name() -> lettre::message::header::HeaderName {
        lettre::message::header::HeaderName::new_from_ascii_str("Auto-Submitted")
    }

    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(Self)
    }

    fn display(&self) -> lettre::message::header::HeaderValue {
        lettre::message::header::HeaderValue::new(Self::name(), "auto-replied".to_owned())
    }
}

fn is_automatic(message: &Message) -> bool {
    let auto_submitted = message.header("Auto-Submitted").is_some_and(|v| !v.trim().eq_ignore_ascii_case("no"));
    let bulk = message
        .header("Precedence")
        .is_some_and(|v| ["bulk", "list", "junk"].contains(&v.trim().to_ascii_lowercase().as_str()));
    auto_submitted || bulk || message.header("List-Id").is_some() || message.header("List-Unsubscribe").is_some()
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The notification text: summary, contact, source, reasons, the message.
/// `stage_name` overrides the stage's built-in display name.
pub fn manager_body(lead: &Lead, first: Option<&Message>, stage_name: Option<&str>) -> String {
    use std::fmt::Write;
    let mut body = String::new();
    let _ = writeln!(body, "Новый лид #{}: {}", lead.id, one_line(&lead.title));
    let _ = writeln!(body, "Стадия: {}", stage_name.unwrap_or(lead.stage.default_display_name()));
    if lead.needs_review {
        let note = lead.review_note.as_deref().unwrap_or("классификатор не уверен");
        let _ = writeln!(body, "Требует проверки: {note}");
    }
    let _ = writeln!(body, "Клиент: {}", if lead.returning_client { "повторный" } else { "новый" });
    let _ = writeln!(body, "Канал: {}", lead.channel);
    let _ = writeln!(body, "\nКонтакт:");
    if let Some(name) = first.and_then(|m| m.sender.name.as_deref()).filter(|n| !n.trim().is_empty()) {
        let _ = writeln!(body, "  имя: {name}");
    }
    for identity in &lead.identities {
        let _ = writeln!(body, "  {}: {}", identity.kind(), identity.value());
    }
    if lead.identities.is_empty()
        && let Some(sender) = first.map(|m| &m.sender)
    {
        let _ = writeln!(body, "  {}", sender.label());
    }
    let _ = writeln!(body, "\nИсточник: {}", lead.source.as_deref().unwrap_or("не указан"));
    let _ = writeln!(body, "Кампания: {}", lead.campaign.as_deref().unwrap_or("не указана"));
    if let Some(destination) = &lead.destination {
        let _ = writeln!(body, "Куда пришло: {destination}");
    }
    let _ = writeln!(body, "\nВердикт: {} (уверенность {:.2})", lead.verdict, lead.confidence);
    let _ = writeln!(body, "Причины:");
    for reason in &lead.reasons {
        let _ = writeln!(body, "  - {}: {} ({:+.2})", reason.rule, reason.description, reason.score);
    }
    if let Some(message) = first {
        let _ = writeln!(body, "\nСообщение:");
        if let Some(subject) = &message.subject {
            let _ = writeln!(body, "Тема: {}", one_line(subject));
        }
        let text: String = message.text.chars().take(QUOTED_TEXT_CHARS).collect();
        let _ = writeln!(body, "{}", text.trim());
        if message.text.chars().count() > QUOTED_TEXT_CHARS {
            let _ = writeln!(body, "[…]");
        }
    }
    body
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use leadsift_core::{DedupKey, EmailAddress, LeadStage, Reason, ReasonOrigin, SourceRef, Verdict};

    use super::*;

    fn lead() -> Lead {
        Lead {
            id: 7,
            stage: LeadStage::ContactClient,
            junk_reason: None,
            needs_review: false,
            review_note: None,
            contact_id: Some(1),
            returning_client: false,
            channel: Channel::Email,
            title: "Заявка на фасад".into(),
            verdict: Verdict::Inquiry,
            confidence: 0.93,
            reasons: vec![Reason {
                rule: "inquiry.price_request".into(),
                description: "asks for a price".into(),
                origin: ReasonOrigin::Rule,
                class: Some(Verdict::Inquiry),
                score: 2.5,
                decisive: false,
            }],
            source: Some("yandex".into()),
            campaign: Some("fasad_moscow".into()),
            destination: None,
            message_count: 1,
            created_at: Utc::now(),
            updated_at: Utc::now(),
            identities: vec![SourceRef::Email(EmailAddress::parse("ivan@client.example").unwrap())],
        }
    }

    #[test]
    fn body_names_contact_source_and_reasons() {
        let mut message = Message::new(Channel::Email, DedupKey::from_stored("k".into()), Utc::now());
        message.subject = Some("Фасад".into());
        message.text = "Сколько стоит?".into();
        let body = manager_body(&lead(), Some(&message), Some("Позвонить"));
        for needle in [
            "Стадия: Позвонить",
            "#7",
            "ivan@client.example",
            "yandex",
            "fasad_moscow",
            "inquiry.price_request",
            "Сколько стоит?",
        ] {
            assert!(body.contains(needle), "{needle} missing in:\n{body}");
        }
    }

    #[test]
    fn bulk_and_automatic_mail_is_not_acknowledged() {
        let mut message = Message::new(Channel::Email, DedupKey::from_stored("k".into()), Utc::now());
        assert!(!is_automatic(&message));
        message.headers.push(leadsift_core::Header { name: "Auto-Submitted".into(), value: "auto-replied".into() });
        assert!(is_automatic(&message));
    }
}
