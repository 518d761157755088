//! `[imap]` settings: the accounts and folders to watch.

use std::collections::BTreeMap;
use std::time::Duration;

use leadsift_core::{Secret, Verdict};
use serde::Deserialize;

use crate::ImapError;

/// `[imap]`: mail accounts read into the pipeline. None by default.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImapSettings {
    /// Accounts to watch, each as an `[[imap.accounts]]` table.
    #[serde(default)]
    pub accounts: Vec<ImapAccount>,
}

/// How the connection is protected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImapSecurity {
    /// Implicit TLS (rustls, Mozilla's root certificates), usually port 993.
    #[default]
    Tls,
    /// No encryption: only for servers on this machine or in tests.
    Plain,
}

/// One IMAP account.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImapAccount {
    /// Short unique name of the account: used in logs, metrics and checkpoints.
    pub name: String,
    /// Server host name (also the name checked against the TLS certificate).
    pub host: String,
    /// Server port: 993 for `tls`, usually 143 for `plain`.
    #[serde(default = "default_port")]
    pub port: u16,
    /// `tls` (default) or `plain`.
    #[serde(default)]
    pub security: ImapSecurity,
    /// PEM file of extra CA certificates to trust for this server (a private
    /// CA or a self-signed certificate), on top of Mozilla's roots.
    #[serde(default)]
    pub ca_file: Option<std::path::PathBuf>,
    /// Login name.
    pub username: String,
    /// Login password. Prefer `password_env` so the file holds no secret.
    #[serde(default)]
    pub password: Secret,
    /// Name of an environment variable holding the password; wins over `password`.
    #[serde(default)]
    pub password_env: Option<String>,
    /// Folders whose new mail is queued for triage.
    #[serde(default = "default_folders")]
    pub folders: Vec<String>,
    /// Wait for new mail with IMAP IDLE when the server offers it; otherwise poll.
    #[serde(default = "default_idle")]
    pub idle: bool,
    /// Seconds between polls when IDLE is off or unsupported (and the longest IDLE wait).
    #[serde(default = "default_poll_secs")]
    pub poll_secs: u64,
    /// Mails fetched and queued per batch (the checkpoint advances per batch).
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Seconds a connect, login or command may take before the connection is dropped.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// First reconnect delay in milliseconds; doubles per failure, with jitter.
    #[serde(default = "default_backoff_initial_ms")]
    pub backoff_initial_ms: u64,
    /// Longest reconnect delay in milliseconds.
    #[serde(default = "default_backoff_max_ms")]
    pub backoff_max_ms: u64,
    /// What to do with mail after triage (all off by default).
    #[serde(default)]
    pub actions: ImapActions,
    /// Folders a person files mail into, and the class that filing means,
    /// e.g. `{ "Junk" = "spam", "Not junk" = "inquiry" }`. Each mail found
    /// there becomes one labelled feedback record; it is not triaged again.
    #[serde(default)]
    pub learn: BTreeMap<String, Verdict>,
}

/// Post-triage actions on the server. Every field is off by default.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImapActions {
    /// Move mail triaged as spam to this folder (e.g. `Junk`).
    #[serde(default)]
    pub spam_folder: Option<String>,
    /// Move bank statements and notifications to this folder.
    #[serde(default)]
    pub bank_statement_folder: Option<String>,
    /// Move newsletters to this folder.
    #[serde(default)]
    pub newsletter_folder: Option<String>,
    /// Move non-target mail (misdirected, job applications) to this folder.
    #[serde(default)]
    pub non_target_folder: Option<String>,
    /// Set `\Flagged` on mail triaged as an inquiry.
    #[serde(default)]
    pub flag_inquiries: bool,
}

/// What to do on the server with one triaged mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MailAction {
    MoveTo(String),
    Flag,
    Nothing,
}

impl ImapActions {
    pub fn any(&self) -> bool {
        self.flag_inquiries
            || self.spam_folder.is_some()
            || self.bank_statement_folder.is_some()
            || self.newsletter_folder.is_some()
            || self.non_target_folder.is_some()
    }

    pub fn for_verdict(&self, verdict: Verdict) -> MailAction {
        let folder = match verdict {
            Verdict::Inquiry => return if self.flag_inquiries { MailAction::Flag } else { MailAction::Nothing },
            Verdict::Spam => &self.spam_folder,
            Verdict::BankStatement => &self.bank_statement_folder,
            Verdict::Newsletter => &self.newsletter_folder,
            Verdict::NonTarget => &self.non_target_folder,
        };
        folder.clone().map_or(MailAction::Nothing, MailAction::MoveTo)
    }
}

impl ImapAccount {
    /// The password from `password_env` if set, else `password`.
    pub fn password(&self) -> Result<Secret, ImapError> {
        match &self.password_env {
            Some(variable) => std::env::var(variable).map(Secret::new).map_err(|_| ImapError::Config {
                account: self.name.clone(),
                reason: format!("password_env names {variable}, which is not set"),
            }),
            None => Ok(self.password.clone()),
        }
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs.max(1))
    }

    pub fn poll_interval(&self) -> Duration {
        Duration::from_secs(self.poll_secs.max(1))
    }

    /// Checks what serde cannot: names, sizes, folder overlaps.
    pub fn validate(&self) -> Result<(), ImapError> {
        let invalid = |reason: String| Err(ImapError::Config { account: self.name.clone(), reason });
        if self.name.trim().is_empty() {
            return invalid("name must not be empty".into());
        }
        if self.host.trim().is_empty() {
            return invalid("host must not be empty".into());
        }
        if self.folders.is_empty() && self.learn.is_empty() {
            return invalid("no folders to watch: set folders or learn".into());
        }
        if self.batch_size == 0 {
            return invalid("batch_size must be at least 1".into());
        }
        if self.backoff_initial_ms == 0 || self.backoff_max_ms < self.backoff_initial_ms {
            return invalid("backoff_initial_ms must be at least 1 and at most backoff_max_ms".into());
        }
        if let Some(folder) = self.folders.iter().find(|f| self.learn.contains_key(*f)) {
            return invalid(format!("folder {folder:?} is both triaged (folders) and learnt from (learn)"));
        }
        // The password is checked when the workers start, not here: admin
        // commands load the same settings and need no IMAP password.
        Ok(())
    }
}

impl ImapSettings {
    pub fn validate(&self) -> Result<(), ImapError> {
        let mut names = std::collections::BTreeSet::new();
        for account in &self.accounts {
            account.validate()?;
            if !names.insert(account.name.as_str()) {
                return Err(ImapError::Config {
                    account: account.name.clone(),
                    reason: "two accounts have this name".into(),
                });
            }
        }
        Ok(())
    }
}

fn default_port() -> u16 {
    993
}
fn default_folders() -> Vec<String> {
    vec!["INBOX".to_owned()]
}
fn default_idle() -> bool {
    true
}
fn default_poll_secs() -> u64 {
    60
}
fn default_batch_size() -> usize {
    50
}
fn default_timeout_secs() -> u64 {
    30
}
fn default_backoff_initial_ms() -> u64 {
    1000
}
fn default_backoff_max_ms() -> u64 {
    5 * 60 * 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> ImapSettings {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn defaults_are_tls_inbox_idle_and_no_actions() {
        let settings = parse("[[accounts]]\nname = \"sales\"\nhost = \"imap.example.org\"\nusername = \"u\"\n");
        let account = &settings.accounts[0];
        assert_eq!(account.port, 993);
        assert_eq!(account.security, ImapSecurity::Tls);
        assert_eq!(account.folders, ["INBOX"]);
        assert!(account.idle);
        assert!(!account.actions.any());
        assert_eq!(account.actions.for_verdict(Verdict::Spam), MailAction::Nothing);
        settings.validate().unwrap();
    }

    #[test]
    fn actions_and_learning_folders_parse() {
        let settings = parse(
            "[[accounts]]\nname = \"sales\"\nhost = \"h\"\nusername = \"u\"\npassword = \"p\"\n\
             learn = { \"Junk\" = \"spam\", \"Not junk\" = \"inquiry\" }\n\
             [accounts.actions]\nspam_folder = \"Junk\"\nflag_inquiries = true\n",
        );
        let account = &settings.accounts[0];
        assert_eq!(account.learn.get("Not junk"), Some(&Verdict::Inquiry));
        assert_eq!(account.actions.for_verdict(Verdict::Spam), MailAction::MoveTo("Junk".into()));
        assert_eq!(account.actions.for_verdict(Verdict::Inquiry), MailAction::Flag);
        assert_eq!(account.actions.for_verdict(Verdict::Newsletter), MailAction::Nothing);
        assert!(format!("{account:?}").contains("\"***\""), "the password is redacted");
    }

    #[test]
    fn unknown_keys_and_bad_values_are_rejected() {
        assert!(
            toml::from_str::<ImapSettings>("[[accounts]]\nname=\"a\"\nhost=\"h\"\nusername=\"u\"\nprot=1\n").is_err()
        );
        let settings =
            parse("[[accounts]]\nname=\"a\"\nhost=\"h\"\nusername=\"u\"\nfolders=[\"Junk\"]\nlearn={Junk=\"spam\"}\n");
        assert!(settings.validate().unwrap_err().to_string().contains("both triaged"));
        let settings =
            parse("[[accounts]]\nname=\"a\"\nhost=\"h\"\nusername=\"u\"\npassword_env=\"LEADSIFT_NO_SUCH_VAR_X\"\n");
        settings.validate().unwrap();
        assert!(settings.accounts[0].password().unwrap_err().to_string().contains("LEADSIFT_NO_SUCH_VAR_X"));
    }
}
