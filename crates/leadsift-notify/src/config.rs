//! `[notify]` settings: SMTP server, sender, managers, auto-acknowledgement.

use std::collections::BTreeMap;
use std::time::Duration;

use leadsift_core::Secret;
use lettre::message::Mailbox;
use serde::Deserialize;

use crate::NotifyError;

/// `[notify]`: emails each new inquiry lead to its manager. Off by default.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifySettings {
    /// Send manager notifications.
    #[serde(default)]
    pub enabled: bool,
    /// The SMTP server the mail goes through.
    #[serde(default)]
    pub smtp: SmtpSettings,
    /// Sender of notifications and acknowledgements, e.g. `leadsift <crm@example.org>`.
    #[serde(default = "default_from")]
    pub from: String,
    /// Managers taking leads in turn (round-robin by lead id) when no `by_source` entry matches.
    #[serde(default)]
    pub managers: Vec<String>,
    /// The manager responsible for each lead source (the lead's `source`), e.g. `{ yandex = "anna@example.org" }`.
    #[serde(default)]
    pub by_source: BTreeMap<String, String>,
    /// Milliseconds between looks at the store for new leads.
    #[serde(default = "default_poll_ms")]
    pub poll_ms: u64,
    /// Leads handled per look.
    #[serde(default = "default_batch")]
    pub batch: u32,
    /// The acknowledgement sent to the author of an email inquiry.
    #[serde(default)]
    pub auto_ack: AutoAckSettings,
}

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmtpSecurity {
    /// Plain connection upgraded with STARTTLS (required), usually port 587.
    #[default]
    Starttls,
    /// Implicit TLS, usually port 465.
    Tls,
    /// No encryption: only for a relay on this machine or in tests.
    Plain,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpSettings {
    /// SMTP server host name (also checked against its TLS certificate).
    #[serde(default = "default_smtp_host")]
    pub host: String,
    /// SMTP server port.
    #[serde(default = "default_smtp_port")]
    pub port: u16,
    /// `starttls` (default), `tls` or `plain`.
    #[serde(default)]
    pub security: SmtpSecurity,
    /// Login name; no authentication when absent.
    #[serde(default)]
    pub username: Option<String>,
    /// Login password. Prefer `password_env`.
    #[serde(default)]
    pub password: Secret,
    /// Name of an environment variable holding the password; wins over `password`.
    #[serde(default)]
    pub password_env: Option<String>,
    /// Seconds one SMTP conversation may take.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutoAckSettings {
    /// Answer the sender of each new email inquiry.
    #[serde(default)]
    pub enabled: bool,
    /// Subject; `{subject}` is the inquiry's subject.
    #[serde(default = "default_ack_subject")]
    pub subject: String,
    /// Body; `{name}` is the sender's name (or «клиент»), `{subject}` the inquiry's subject.
    #[serde(default = "default_ack_template")]
    pub template: String,
}

fn default_from() -> String {
    "leadsift <leadsift@localhost>".into()
}
fn default_poll_ms() -> u64 {
    1000
}
fn default_batch() -> u32 {
    50
}
fn default_smtp_host() -> String {
    "localhost".into()
}
fn default_smtp_port() -> u16 {
    587
}
fn default_timeout_secs() -> u64 {
    30
}
fn default_ack_subject() -> String {
    "Re: {subject}".into()
}
fn default_ack_template() -> String {
    "Здравствуйте, {name}!\n\nСпасибо за обращение «{subject}». Мы получили ваше письмо, и менеджер свяжется с вами \
     в ближайшее рабочее время.\n\nЭто письмо отправлено автоматически, отвечать на него не нужно.\n"
        .into()
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
default_from_serde!(NotifySettings, SmtpSettings, AutoAckSettings);

impl SmtpSettings {
    /// The password from `password_env` if set, else `password`.
    pub fn password(&self) -> Result<Secret, NotifyError> {
        match &self.password_env {
            Some(variable) => std::env::var(variable)
                .map(Secret::new)
                .map_err(|_| NotifyError::Config(format!("smtp.password_env names {variable}, which is not set"))),
            None => Ok(self.password.clone()),
        }
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs.max(1))
    }
}

impl NotifySettings {
    /// Checks addresses and that every lead has someone to go to.
    pub fn validate(&self) -> Result<(), NotifyError> {
        if !self.enabled {
            return Ok(());
        }
        parse_mailbox("from", &self.from)?;
        if self.managers.is_empty() {
            return Err(NotifyError::Config(
                "notify.managers is empty: leads of sources without a by_source entry would reach nobody".into(),
            ));
        }
        for manager in self.managers.iter().chain(self.by_source.values()) {
            parse_mailbox("managers/by_source", manager)?;
        }
        // The SMTP password is checked when the notifier starts: admin
        // commands load the same settings and need none.
        Ok(())
    }
}

pub(crate) fn parse_mailbox(field: &str, value: &str) -> Result<Mailbox, NotifyError> {
    value.parse().map_err(|e| NotifyError::Config(format!("notify {field}: {value:?} is not an email address: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_by_default_and_validates_when_on() {
        let settings = NotifySettings::default();
        assert!(!settings.enabled);
        settings.validate().unwrap();
        let settings: NotifySettings = toml::from_str("enabled = true\n").unwrap();
        assert!(settings.validate().unwrap_err().to_string().contains("managers is empty"));
        let settings: NotifySettings =
            toml::from_str("enabled = true\nmanagers = [\"anna@example.org\", \"not an address\"]\n").unwrap();
        assert!(settings.validate().unwrap_err().to_string().contains("not an address"));
    }

    #[test]
    fn smtp_password_is_redacted_and_keys_checked() {
        let settings: NotifySettings = toml::from_str(
            "enabled = true\nmanagers = [\"a@example.org\"]\n[smtp]\nusername = \"u\"\npassword = \"s3cret\"\n",
        )
        .unwrap();
        settings.validate().unwrap();
        assert!(!format!("{settings:?}").contains("s3cret"));
        assert!(toml::from_str::<NotifySettings>("[smtp]\nhots = \"x\"\n").is_err());
    }
}
