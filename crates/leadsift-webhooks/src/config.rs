//! Typed settings of the `[webhooks]` section. Every channel is off until
//! its secret is set (web forms excepted: they are public by nature and
//! protected by the honeypot, the per-IP rate limit and CORS).

use std::fmt;

use serde::Deserialize;

/// A secret read from the config file or the environment: never printed.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret value, for comparing and signing only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// `[webhooks]`: the HTTP intake endpoints served by `leadsift run`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    /// Largest request body accepted, in bytes; larger bodies get 413.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// Messages published in one queue transaction at most (group commit).
    #[serde(default = "default_publish_batch")]
    pub publish_batch: usize,
    /// Requests waiting for the publisher at most; beyond it requests get 503.
    #[serde(default = "default_publish_backlog")]
    pub publish_backlog: usize,
    /// A call of at most this many seconds counts as short (for spotting robodialers).
    #[serde(default = "default_short_call_max_secs")]
    pub short_call_max_secs: u32,
    /// How far back a caller's short calls are counted, in seconds; the count goes to the
    /// `X-Leadsift-Recent-Short-Calls` header the rules read.
    #[serde(default = "default_short_call_window_secs")]
    pub short_call_window_secs: u64,
    /// `POST /intake/event` (leadsift event JSON).
    #[serde(default)]
    pub event: EventSettings,
    /// `POST /intake/form` (web forms).
    #[serde(default)]
    pub form: FormSettings,
    /// `POST /intake/telegram` and the `getUpdates` poller.
    #[serde(default)]
    pub telegram: TelegramSettings,
    /// `GET|POST /intake/whatsapp` (WhatsApp Cloud API).
    #[serde(default)]
    pub whatsapp: WhatsAppSettings,
    /// `GET|POST /intake/zadarma` (Zadarma-style PBX call notifications).
    #[serde(default)]
    pub zadarma: ZadarmaSettings,
}

/// `[webhooks.event]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventSettings {
    /// Bearer token callers send as `Authorization: Bearer <token>`; unset disables the endpoint.
    #[serde(default)]
    pub token: Option<Secret>,
}

/// `[webhooks.form]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FormSettings {
    /// Whether `POST /intake/form` accepts submissions.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// When set, submissions must carry it in `X-Leadsift-Token` (for forms posted by a site's backend).
    #[serde(default)]
    pub token: Option<Secret>,
    /// Hidden form field humans leave empty; a filled one marks a bot and nothing is stored.
    #[serde(default = "default_honeypot_field")]
    pub honeypot_field: String,
    /// Submissions per minute accepted from one client IP (burst of the same size); 0 disables the limit.
    #[serde(default = "default_rate_limit_per_minute")]
    pub rate_limit_per_minute: u32,
    /// Take the client IP from the first `X-Forwarded-For` entry (only behind a trusted reverse proxy).
    #[serde(default)]
    pub trust_forwarded_for: bool,
    /// Origins browsers may post from (`https://example.ru`, or `*`); empty sends no CORS headers.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
}

/// `[webhooks.telegram]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelegramSettings {
    /// The `secret_token` given to `setWebhook`, checked against `X-Telegram-Bot-Api-Secret-Token`;
    /// unset disables the webhook.
    #[serde(default)]
    pub secret_token: Option<Secret>,
    /// The bot's username; messages get destination `telegram:<bot_username>` for attribution.
    #[serde(default = "default_bot_username")]
    pub bot_username: String,
    /// Bot API token; needed by the `getUpdates` poller only.
    #[serde(default)]
    pub bot_token: Option<Secret>,
    /// Run the `getUpdates` long-polling worker (instead of or besides the webhook).
    #[serde(default)]
    pub polling: bool,
    /// Bot API base URL (tests point it at a local fake server).
    #[serde(default = "default_telegram_api_base")]
    pub api_base_url: String,
    /// Long-poll timeout of one `getUpdates` call, in seconds.
    #[serde(default = "default_poll_timeout_secs")]
    pub poll_timeout_secs: u64,
}

/// `[webhooks.whatsapp]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WhatsAppSettings {
    /// The verify token entered in the Meta app dashboard (GET verification challenge).
    #[serde(default)]
    pub verify_token: Option<Secret>,
    /// The Meta app secret: `X-Hub-Signature-256` is HMAC-SHA256 of the raw body with it;
    /// unset disables the POST endpoint.
    #[serde(default)]
    pub app_secret: Option<Secret>,
}

/// `[webhooks.zadarma]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZadarmaSettings {
    /// The PBX API secret the `Signature` header is computed with; unset disables the endpoint.
    #[serde(default)]
    pub secret: Option<Secret>,
}

fn default_true() -> bool {
    true
}
fn default_max_body_bytes() -> usize {
    256 * 1024
}
fn default_publish_batch() -> usize {
    512
}
fn default_publish_backlog() -> usize {
    8192
}
fn default_short_call_max_secs() -> u32 {
    15
}
fn default_short_call_window_secs() -> u64 {
    600
}
fn default_honeypot_field() -> String {
    "website".into()
}
fn default_rate_limit_per_minute() -> u32 {
    10
}
fn default_bot_username() -> String {
    "bot".into()
}
fn default_telegram_api_base() -> String {
    "https://api.telegram.org".into()
}
fn default_poll_timeout_secs() -> u64 {
    25
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
default_from_serde!(WebhookSettings, FormSettings, TelegramSettings);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_in_debug_output() {
        let settings: WebhookSettings =
            serde_json::from_value(serde_json::json!({"zadarma": {"secret": "hunter2"}})).unwrap();
        let printed = format!("{settings:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert_eq!(settings.zadarma.secret.unwrap().expose(), "hunter2");
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let error = serde_json::from_value::<WebhookSettings>(serde_json::json!({"telegram": {"secert_token": "x"}}))
            .unwrap_err();
        assert!(error.to_string().contains("secert_token"), "{error}");
    }
}
