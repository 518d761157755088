//! Telegram Bot API: the webhook (`POST /intake/telegram`, authenticated
//! by `X-Telegram-Bot-Api-Secret-Token`) and the `getUpdates` long-polling
//! [`Poller`]. Both turn an `Update` into a message the same way, so the
//! dedup key (`messenger:telegram:<chat>:<message id>`) is the same
//! whichever delivered it.
//!
//! A `/start <payload>` deep link (`t.me/<bot>?start=<payload>`) carries the
//! campaign: the payload becomes `utm_campaign`.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::HeaderMap;
use axum::response::Response;
use chrono::{DateTime, Utc};
use leadsift_core::{Channel, DedupKey, Message, MessengerHandle};
use leadsift_pipeline::Intake;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::config::TelegramSettings;
use crate::signature::constant_time_eq;
use crate::{HookState, Publisher, WebhookError, WebhookMetrics};

const ENDPOINT: &str = "telegram";

#[derive(Debug, Deserialize)]
pub struct Update {
    pub update_id: i64,
    #[serde(default)]
    message: Option<TgMessage>,
    #[serde(default)]
    edited_message: Option<TgMessage>,
}

#[derive(Debug, Deserialize)]
struct TgMessage {
    message_id: i64,
    #[serde(default)]
    from: Option<TgUser>,
    chat: TgChat,
    date: i64,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    caption: Option<String>,
}

#[derive(Debug, Deserialize)]
struct TgUser {
    id: i64,
    #[serde(default)]
    is_bot: bool,
    #[serde(default)]
    first_name: Option<String>,
    #[serde(default)]
    last_name: Option<String>,
    #[serde(default)]
    username: Option<String>,
}

#[derive(Debug, Deserialize)]
struct TgChat {
    id: i64,
}

/// The message an update carries, if any (service updates, bot senders and
/// other update kinds carry none).
pub fn update_message(update: &Update, bot_username: &str) -> Option<Message> {
    let edited = update.message.is_none();
    let tg = update.message.as_ref().or(update.edited_message.as_ref())?;
    let from = tg.from.as_ref()?;
    if from.is_bot {
        return None;
    }
    let text = tg.text.as_deref().or(tg.caption.as_deref()).unwrap_or_default().trim().to_owned();
    let mut id = format!("telegram:{}:{}", tg.chat.id, tg.message_id);
    if edited {
        id.push_str(":edited");
    }
    let received_at = DateTime::<Utc>::from_timestamp(tg.date, 0).unwrap_or_else(Utc::now);
    let mut message =
        Message::new(Channel::Messenger, DedupKey::from_upstream_id(Channel::Messenger, &id), received_at);
    message.sender.handle = MessengerHandle::parse(&format!("telegram:{}", from.id)).ok();
    let name =
        [from.first_name.as_deref(), from.last_name.as_deref()].into_iter().flatten().collect::<Vec<_>>().join(" ");
    message.sender.name = Some(name).filter(|n| !n.trim().is_empty()).or_else(|| from.username.clone());
    message.destination = Some(format!("telegram:{}", bot_username.trim_start_matches('@')));
    if let Some(rest) = text.strip_prefix("/start") {
        // `/start` or `/start@bot payload`: the payload names the campaign.
        let payload = rest.split_once(' ').map_or("", |(_, p)| p).trim();
        if rest.is_empty() || rest.starts_with(' ') || rest.starts_with('@') {
            message.utm.campaign = Some(payload.to_owned()).filter(|p| !p.is_empty());
        }
    }
    message.text = text;
    Some(message)
}

pub(crate) async fn handle(
    State(state): State<HookState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match state.body(ENDPOINT, body) {
        Ok(body) => body,
        Err(response) => return *response,
    };
    let Some(secret) = &state.settings.telegram.secret_token else {
        return state.reject(ENDPOINT, &WebhookError::NotConfigured);
    };
    let presented = headers.get("x-telegram-bot-api-secret-token").map(|v| v.as_bytes()).unwrap_or_default();
    if !constant_time_eq(presented, secret.expose().as_bytes()) {
        return state.reject(ENDPOINT, &WebhookError::Unauthorized("wrong or missing X-Telegram-Bot-Api-Secret-Token"));
    }
    let update: Update = match serde_json::from_slice(&body) {
        Ok(update) => update,
        Err(error) => {
            return state
                .malformed(ENDPOINT, Some(Channel::Messenger), format!("invalid Telegram update: {error}"), &body)
                .await;
        }
    };
    match update_message(&update, &state.settings.telegram.bot_username) {
        Some(message) => state.accept(ENDPOINT, vec![state.cap(message)]).await,
        None => state.ignored(ENDPOINT, "update carries no user message"),
    }
}

#[derive(Debug, Deserialize)]
struct GetUpdates {
    ok: bool,
    #[serde(default)]
    result: Vec<serde_json::Value>,
    #[serde(default)]
    description: Option<String>,
}

/// The `getUpdates` long-polling worker. The offset that confirms updates
/// to Telegram advances only after their messages were durably published,
/// so a crash means redelivery (deduplicated), never loss.
#[derive(Debug)]
pub struct Poller {
    settings: TelegramSettings,
    publisher: Publisher,
    intake: Intake,
    metrics: WebhookMetrics,
    client: reqwest::Client,
}

impl Poller {
    pub fn new(settings: TelegramSettings, publisher: Publisher, intake: Intake, metrics: WebhookMetrics) -> Self {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(settings.poll_timeout_secs + 10))
            .build()
            .unwrap_or_default();
        Self { settings, publisher, intake, metrics, client }
    }

    pub async fn run(self, shutdown: CancellationToken) -> Result<(), WebhookError> {
        let Some(token) = self.settings.bot_token.clone() else {
            return Err(WebhookError::TelegramApi("telegram.polling is on but telegram.bot_token is not set".into()));
        };
        let url = format!("{}/bot{}/getUpdates", self.settings.api_base_url.trim_end_matches('/'), token.expose());
        let mut offset: Option<i64> = None;
        let mut backoff = Duration::from_millis(500);
        loop {
            let step = tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                step = self.poll_once(&url, offset) => step,
            };
            match step {
                Ok(next) => {
                    offset = next.or(offset);
                    backoff = Duration::from_millis(500);
                }
                Err(error) => {
                    // The URL holds the bot token: log the error kind, never the URL.
                    tracing::warn!(%error, retry_in = ?backoff, "Telegram getUpdates failed; retrying");
                    tokio::select! {
                        () = shutdown.cancelled() => return Ok(()),
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(60));
                }
            }
        }
    }

    /// One `getUpdates` call; returns the next offset once everything it got is stored.
    async fn poll_once(&self, url: &str, offset: Option<i64>) -> Result<Option<i64>, WebhookError> {
        let mut query = vec![("timeout", self.settings.poll_timeout_secs.to_string())];
        if let Some(offset) = offset {
            query.push(("offset", offset.to_string()));
        }
        let response = self
            .client
            .get(url)
            .query(&query)
            .send()
            .await
            .map_err(|e| WebhookError::TelegramApi(e.without_url().to_string()))?;
        let status = response.status();
        let body: GetUpdates = response
            .json()
            .await
            .map_err(|e| WebhookError::TelegramApi(format!("HTTP {status}: {}", e.without_url())))?;
        if !body.ok {
            return Err(WebhookError::TelegramApi(body.description.unwrap_or_else(|| format!("HTTP {status}"))));
        }
        let mut next = None;
        let mut messages = Vec::new();
        for raw in body.result {
            let update_id = raw.get("update_id").and_then(serde_json::Value::as_i64);
            match serde_json::from_value::<Update>(raw.clone()) {
                Ok(update) => {
                    if let Some(message) = update_message(&update, &self.settings.bot_username) {
                        let mut message = message;
                        message.cap_text(self.intake.options().max_text_bytes);
                        messages.push(message);
                    }
                }
                Err(error) => {
                    let raw_bytes = serde_json::to_vec(&raw).unwrap_or_default();
                    self.intake
                        .quarantine(
                            "telegram:getUpdates",
                            Some(Channel::Messenger),
                            &format!("invalid Telegram update: {error}"),
                            &raw_bytes,
                        )
                        .await
                        .map_err(|e| WebhookError::Unavailable(e.to_string()))?;
                    self.metrics.requests.with_label_values(&["telegram_poll", "malformed"]).inc();
                }
            }
            if let Some(id) = update_id {
                next = Some(next.map_or(id + 1, |n: i64| n.max(id + 1)));
            }
        }
        if !messages.is_empty() {
            let count = messages.len();
            self.publisher.publish(messages).await?;
            self.metrics.requests.with_label_values(&["telegram_poll", "accepted"]).inc_by(count as u64);
        }
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(text: &str) -> Update {
        serde_json::from_value(serde_json::json!({
            "update_id": 10,
            "message": {"message_id": 5, "date": 1_764_000_000, "text": text,
                        "from": {"id": 58_112_093, "is_bot": false, "first_name": "Анна", "last_name": "К"},
                        "chat": {"id": 58_112_093, "type": "private"}}
        }))
        .unwrap()
    }

    #[test]
    fn start_payload_names_the_campaign() {
        let message = update_message(&update("/start fasad_msk"), "@shop_bot").unwrap();
        assert_eq!(message.utm.campaign.as_deref(), Some("fasad_msk"));
        assert_eq!(message.destination.as_deref(), Some("telegram:shop_bot"));
        assert_eq!(message.sender.handle.as_ref().unwrap().as_str(), "telegram:58112093");
        assert_eq!(message.sender.name.as_deref(), Some("Анна К"));
        assert_eq!(message.dedup_key.as_str(), "messenger:telegram:58112093:5");
        assert!(update_message(&update("/startle"), "b").unwrap().utm.campaign.is_none());
        assert!(update_message(&update("/start"), "b").unwrap().utm.campaign.is_none());
    }

    #[test]
    fn updates_without_a_user_message_carry_nothing() {
        let update: Update = serde_json::from_value(serde_json::json!({"update_id": 1, "poll": {}})).unwrap();
        assert!(update_message(&update, "b").is_none());
    }
}
