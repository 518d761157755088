//! `[bitrix24]` settings: the webhook, pacing, retries and the field mapping.

use std::collections::BTreeMap;
use std::time::Duration;

use leadsift_core::{Channel, LeadStage, Secret};
use serde::Deserialize;

use crate::Bitrix24Error;

/// `[bitrix24]`: pushes new leads and their stage changes to Bitrix24. Off by default.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bitrix24Settings {
    /// Push leads to Bitrix24.
    #[serde(default)]
    pub enabled: bool,
    /// The incoming webhook, `https://<portal>.bitrix24.ru/rest/<user>/<token>/`. A secret: never logged. Prefer `webhook_url_env`.
    #[serde(default)]
    pub webhook_url: Secret,
    /// Name of an environment variable holding the webhook URL; wins over `webhook_url`.
    #[serde(default)]
    pub webhook_url_env: Option<String>,
    /// Milliseconds between looks at the store for new events.
    #[serde(default = "default_poll_ms")]
    pub poll_ms: u64,
    /// Outbox rows claimed per look.
    #[serde(default = "default_batch")]
    pub batch: u32,
    /// Requests per second the client-side leaky bucket lets through (Bitrix24 allows 2).
    #[serde(default = "default_rate_per_sec")]
    pub rate_per_sec: f64,
    /// Requests the bucket lets through at once before pacing starts (Bitrix24 allows 50).
    #[serde(default = "default_burst")]
    pub burst: u32,
    /// Milliseconds to wait after `QUERY_LIMIT_EXCEEDED` before the same call is sent again.
    #[serde(default = "default_limit_wait_ms")]
    pub limit_wait_ms: u64,
    /// Seconds one HTTP request may take; a slower answer counts as lost.
    #[serde(default = "default_request_timeout_secs")]
    pub request_timeout_secs: u64,
    /// Seconds a claimed outbox row stays invisible to other processes; more than 2 x `request_timeout_secs` + 10.
    #[serde(default = "default_lease_secs")]
    pub lease_secs: u64,
    /// Attempts after which a row Bitrix24 keeps rejecting (a 4xx error) is marked failed.
    /// Outages and rate limits never fail a row.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Milliseconds before the first retry; doubled per failed attempt, with jitter.
    #[serde(default = "default_backoff_initial_ms")]
    pub backoff_initial_ms: u64,
    /// Longest pause between retries, in seconds.
    #[serde(default = "default_backoff_max_secs")]
    pub backoff_max_secs: u64,
    /// `SOURCE_ID` per channel (`email`, `call`, `webform`, `messenger`); unlisted channels keep the defaults
    /// EMAIL, CALL, WEBFORM and OTHER.
    #[serde(default)]
    pub source_ids: BTreeMap<String, String>,
    /// `STATUS_ID` per stage (`contact_client`, `qualification`, `offer`, `converted`, `junk`); unlisted stages keep
    /// the Bitrix24 defaults NEW, IN_PROCESS, PROCESSED, CONVERTED and JUNK.
    #[serde(default)]
    pub statuses: BTreeMap<String, String>,
    /// What to do when `crm.duplicate.findbycomm` finds earlier Bitrix24 leads with the same phone or email:
    /// `comment` names them in `COMMENTS`, `ignore` does nothing. A found contact is always linked (`CONTACT_ID`).
    #[serde(default)]
    pub duplicate_leads: DuplicateLeadPolicy,
    /// Bitrix24 user id to assign new leads to (`ASSIGNED_BY_ID`); the webhook's user when absent.
    #[serde(default)]
    pub assigned_by_id: Option<i64>,
}

/// What a lead found by phone or email in Bitrix24 does to the new lead.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DuplicateLeadPolicy {
    /// Name the earlier Bitrix24 leads in `COMMENTS`.
    #[default]
    Comment,
    /// Add the lead without mentioning them.
    Ignore,
}

fn default_poll_ms() -> u64 {
    1000
}
fn default_batch() -> u32 {
    20
}
fn default_rate_per_sec() -> f64 {
    2.0
}
fn default_burst() -> u32 {
    50
}
fn default_limit_wait_ms() -> u64 {
    1000
}
fn default_request_timeout_secs() -> u64 {
    15
}
fn default_lease_secs() -> u64 {
    120
}
fn default_max_attempts() -> u32 {
    5
}
fn default_backoff_initial_ms() -> u64 {
    1000
}
fn default_backoff_max_secs() -> u64 {
    300
}

impl Default for Bitrix24Settings {
    fn default() -> Self {
        serde_json::from_value(serde_json::json!({})).expect("every field has a default")
    }
}

/// The Bitrix24 defaults of `SOURCE_ID`.
pub fn default_source_id(channel: Channel) -> &'static str {
    match channel {
        Channel::Email => "EMAIL",
        Channel::Call => "CALL",
        Channel::Webform => "WEBFORM",
        Channel::Messenger => "OTHER",
    }
}

/// The Bitrix24 default lead statuses.
pub fn default_status_id(stage: LeadStage) -> &'static str {
    match stage {
        LeadStage::ContactClient => "NEW",
        LeadStage::Qualification => "IN_PROCESS",
        LeadStage::Offer => "PROCESSED",
        LeadStage::Converted => "CONVERTED",
        LeadStage::Junk => "JUNK",
    }
}

impl Bitrix24Settings {
    /// Checks keys and numbers; the webhook URL is checked when the sync starts
    /// (admin commands load the same settings and need none).
    pub fn validate(&self) -> Result<(), Bitrix24Error> {
        let config = |m: String| Err(Bitrix24Error::Config(m));
        for key in self.source_ids.keys() {
            if key.parse::<Channel>().is_err() {
                return config(format!(
                    "bitrix24.source_ids: {key:?} is not a channel (email, call, webform, messenger)"
                ));
            }
        }
        for key in self.statuses.keys() {
            if key.parse::<LeadStage>().is_err() {
                return config(format!(
                    "bitrix24.statuses: {key:?} is not a stage (contact_client, qualification, offer, converted, junk)"
                ));
            }
        }
        if let Some((key, _)) = self.source_ids.iter().chain(&self.statuses).find(|(_, value)| value.trim().is_empty())
        {
            return config(format!("bitrix24: the Bitrix24 id for {key:?} is empty"));
        }
        if !(self.rate_per_sec.is_finite() && self.rate_per_sec > 0.0) {
            return config(format!("bitrix24.rate_per_sec must be above 0, got {}", self.rate_per_sec));
        }
        if self.burst == 0 || self.batch == 0 || self.max_attempts == 0 {
            return config("bitrix24.burst, batch and max_attempts must be at least 1".into());
        }
        if self.lease_secs <= self.request_timeout_secs.max(1) * 2 + 10 {
            return config(format!(
                "bitrix24.lease_secs ({}) must exceed twice request_timeout_secs ({}) plus 10: a row must not \
                 change hands while its add may still be in flight",
                self.lease_secs, self.request_timeout_secs
            ));
        }
        Ok(())
    }

    /// The webhook URL from `webhook_url_env` if set, else `webhook_url`,
    /// checked and ending in `/`. Errors never contain the URL.
    pub fn webhook(&self) -> Result<Secret, Bitrix24Error> {
        let raw = match &self.webhook_url_env {
            Some(variable) => std::env::var(variable).map(Secret::new).map_err(|_| {
                Bitrix24Error::Config(format!("bitrix24.webhook_url_env names {variable}, which is not set"))
            })?,
            None => self.webhook_url.clone(),
        };
        let url = raw.expose().trim();
        if url.is_empty() {
            return Err(Bitrix24Error::Config("bitrix24.webhook_url is empty".into()));
        }
        let Some(rest) = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://")) else {
            return Err(Bitrix24Error::Config("bitrix24.webhook_url must start with https://".into()));
        };
        // https://<portal>/rest/<user>/<token>/
        let parts: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
        if parts.len() != 4 || parts[1] != "rest" || parts.iter().any(|p| p.is_empty()) {
            return Err(Bitrix24Error::Config(
                "bitrix24.webhook_url must look like https://<portal>.bitrix24.ru/rest/<user>/<token>/".into(),
            ));
        }
        Ok(Secret::new(format!("{}/", url.trim_end_matches('/'))))
    }

    pub fn source_id(&self, channel: Channel) -> String {
        self.source_ids.get(channel.as_str()).cloned().unwrap_or_else(|| default_source_id(channel).to_owned())
    }

    pub fn status_id(&self, stage: LeadStage) -> String {
        self.statuses.get(stage.as_str()).cloned().unwrap_or_else(|| default_status_id(stage).to_owned())
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs.max(1))
    }

    pub fn lease(&self) -> Duration {
        Duration::from_secs(self.lease_secs.max(1))
    }

    pub fn limit_wait(&self) -> Duration {
        Duration::from_millis(self.limit_wait_ms.max(10))
    }

    /// The pause before attempt `attempts + 1`: exponential, capped, with
    /// jitter in [50 %, 100 %] so many rows do not retry in step. `jitter` is in [0, 1).
    pub fn backoff(&self, attempts: u32, jitter: f64) -> Duration {
        let initial = self.backoff_initial_ms.max(1) as f64;
        let max = (self.backoff_max_secs.max(1) * 1000) as f64;
        let exponential = initial * 2f64.powi(attempts.saturating_sub(1).min(30) as i32);
        let capped = exponential.min(max);
        Duration::from_millis((capped * (0.5 + 0.5 * jitter.clamp(0.0, 1.0))) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_by_default_with_bitrix24_limits() {
        let settings = Bitrix24Settings::default();
        assert!(!settings.enabled);
        assert_eq!((settings.rate_per_sec, settings.burst), (2.0, 50));
        settings.validate().unwrap();
        assert_eq!(settings.status_id(LeadStage::Junk), "JUNK");
        assert_eq!(settings.source_id(Channel::Messenger), "OTHER");
    }

    #[test]
    fn unknown_keys_stages_and_channels_are_refused() {
        assert!(toml::from_str::<Bitrix24Settings>("enabeld = true\n").is_err());
        let settings: Bitrix24Settings = toml::from_str("[statuses]\nqualifcation = \"UC_1\"\n").unwrap();
        assert!(settings.validate().unwrap_err().to_string().contains("qualifcation"));
        let settings: Bitrix24Settings = toml::from_str("[source_ids]\nfax = \"OTHER\"\n").unwrap();
        assert!(settings.validate().unwrap_err().to_string().contains("fax"));
        let settings: Bitrix24Settings =
            toml::from_str("[statuses]\nqualification = \"UC_QUAL\"\n[source_ids]\nmessenger = \"UC_TG\"\n").unwrap();
        settings.validate().unwrap();
        assert_eq!(settings.status_id(LeadStage::Qualification), "UC_QUAL");
        assert_eq!(settings.status_id(LeadStage::Offer), "PROCESSED");
        assert_eq!(settings.source_id(Channel::Messenger), "UC_TG");
    }

    #[test]
    fn webhook_url_is_checked_and_never_shown() {
        let settings: Bitrix24Settings =
            toml::from_str("enabled = true\nwebhook_url = \"https://acme.bitrix24.ru/rest/1/s3cr3tt0ken\"\n").unwrap();
        assert!(!format!("{settings:?}").contains("s3cr3tt0ken"));
        assert_eq!(settings.webhook().unwrap().expose(), "https://acme.bitrix24.ru/rest/1/s3cr3tt0ken/");
        for bad in ["ftp://acme.bitrix24.ru/rest/1/s3cr3tt0ken/", "https://acme.bitrix24.ru/1/s3cr3tt0ken/"] {
            let settings = Bitrix24Settings { webhook_url: Secret::new(bad), ..Bitrix24Settings::default() };
            let error = settings.webhook().unwrap_err().to_string();
            assert!(!error.contains("s3cr3tt0ken"), "{error}");
        }
        assert!(Bitrix24Settings::default().webhook().is_err(), "an empty URL is refused");
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap() {
        let settings = Bitrix24Settings::default();
        assert_eq!(settings.backoff(1, 0.999_999), Duration::from_millis(999));
        assert_eq!(settings.backoff(1, 0.0), Duration::from_millis(500));
        assert_eq!(settings.backoff(3, 0.999_999), Duration::from_millis(3999));
        assert_eq!(settings.backoff(40, 0.999_999), Duration::from_millis(299_999));
        let lease_too_short = Bitrix24Settings { lease_secs: 20, ..Bitrix24Settings::default() };
        assert!(lease_too_short.validate().is_err());
    }
}
