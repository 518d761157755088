//! WhatsApp Cloud API webhook: the `GET` verification challenge
//! (`hub.mode=subscribe`, `hub.verify_token`, `hub.challenge`) and `POST`
//! notifications signed with `X-Hub-Signature-256: sha256=<hex HMAC-SHA256
//! of the raw body with the app secret>`. Every message in a notification
//! becomes a `Message` (text as text; other types keep their kind in an
//! `X-WhatsApp-Type` header and any caption as text, so a client who sends
//! only a photo is not lost); delivery status callbacks are ignored.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use leadsift_core::{Channel, DedupKey, Header, Message, MessengerHandle, PhoneNumber};
use serde::Deserialize;

use crate::signature::{constant_time_eq, hub_signature_256};
use crate::{HookState, WebhookError};

const ENDPOINT: &str = "whatsapp";

pub(crate) async fn verify(State(state): State<HookState>, Query(query): Query<HashMap<String, String>>) -> Response {
    let Some(token) = &state.settings.whatsapp.verify_token else {
        return state.reject(ENDPOINT, &WebhookError::NotConfigured);
    };
    let presented = query.get("hub.verify_token").map(String::as_bytes).unwrap_or_default();
    if query.get("hub.mode").map(String::as_str) != Some("subscribe")
        || !constant_time_eq(presented, token.expose().as_bytes())
    {
        return state.reject(ENDPOINT, &WebhookError::Unauthorized("wrong hub.mode or hub.verify_token"));
    }
    state.count(ENDPOINT, "verified");
    (StatusCode::OK, query.get("hub.challenge").cloned().unwrap_or_default()).into_response()
}

#[derive(Debug, Deserialize)]
struct Notification {
    #[serde(default)]
    entry: Vec<Entry>,
}

#[derive(Debug, Deserialize)]
struct Entry {
    #[serde(default)]
    changes: Vec<Change>,
}

#[derive(Debug, Deserialize)]
struct Change {
    #[serde(default)]
    value: Value,
}

#[derive(Debug, Default, Deserialize)]
struct Value {
    #[serde(default)]
    metadata: Option<Metadata>,
    #[serde(default)]
    contacts: Vec<Contact>,
    #[serde(default)]
    messages: Vec<WaMessage>,
}

#[derive(Debug, Deserialize)]
struct Metadata {
    #[serde(default)]
    display_phone_number: Option<String>,
    #[serde(default)]
    phone_number_id: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Contact {
    wa_id: String,
    #[serde(default)]
    profile: Option<Profile>,
}

#[derive(Debug, Deserialize)]
struct Profile {
    #[serde(default)]
    name: Option<String>,
}

#[derive(Debug, Deserialize)]
struct WaMessage {
    from: String,
    id: String,
    #[serde(default)]
    timestamp: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    text: Option<Body>,
    #[serde(default)]
    image: Option<Caption>,
    #[serde(default)]
    video: Option<Caption>,
    #[serde(default)]
    document: Option<Caption>,
}

#[derive(Debug, Deserialize)]
struct Body {
    body: String,
}

#[derive(Debug, Deserialize)]
struct Caption {
    #[serde(default)]
    caption: Option<String>,
}

fn notification_messages(notification: Notification, region: &str) -> Vec<Message> {
    let mut out = Vec::new();
    for value in notification.entry.into_iter().flat_map(|e| e.changes).map(|c| c.value) {
        let destination = value.metadata.as_ref().and_then(|m| {
            m.display_phone_number
                .as_deref()
                .map(|n| if n.starts_with('+') { n.to_owned() } else { format!("+{n}") })
                .or_else(|| m.phone_number_id.as_ref().map(|id| format!("whatsapp:{id}")))
        });
        for wa in value.messages {
            let received_at = wa
                .timestamp
                .as_deref()
                .and_then(|t| t.parse::<i64>().ok())
                .and_then(|t| DateTime::<Utc>::from_timestamp(t, 0))
                .unwrap_or_else(Utc::now);
            let key = DedupKey::from_upstream_id(Channel::Messenger, &format!("whatsapp:{}", wa.id));
            let mut message = Message::new(Channel::Messenger, key, received_at);
            message.sender.phone = PhoneNumber::parse(&format!("+{}", wa.from.trim_start_matches('+')), region).ok();
            message.sender.handle = MessengerHandle::parse(&format!("whatsapp:{}", wa.from)).ok();
            message.sender.name =
                value.contacts.iter().find(|c| c.wa_id == wa.from).and_then(|c| c.profile.as_ref()?.name.clone());
            message.destination = destination.clone();
            let kind = wa.kind.as_deref().unwrap_or("text");
            message.text = match (&wa.text, &wa.image, &wa.video, &wa.document) {
                (Some(text), ..) => text.body.clone(),
                (_, Some(c), ..) | (_, _, Some(c), _) | (.., Some(c)) => c.caption.clone().unwrap_or_default(),
                _ => String::new(),
            };
            if kind != "text" {
                message.headers.push(Header { name: "X-WhatsApp-Type".into(), value: kind.to_owned() });
            }
            out.push(message);
        }
    }
    out
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
    let Some(secret) = &state.settings.whatsapp.app_secret else {
        return state.reject(ENDPOINT, &WebhookError::NotConfigured);
    };
    let presented = headers.get("x-hub-signature-256").map(|v| v.as_bytes()).unwrap_or_default();
    let expected = hub_signature_256(secret.expose().as_bytes(), &body);
    if !constant_time_eq(presented, expected.as_bytes()) {
        return state.reject(ENDPOINT, &WebhookError::Unauthorized("wrong or missing X-Hub-Signature-256"));
    }
    let notification: Notification = match serde_json::from_slice(&body) {
        Ok(n) => n,
        Err(error) => {
            let error = format!("invalid WhatsApp notification: {error}");
            return state.malformed(ENDPOINT, Some(Channel::Messenger), error, &body).await;
        }
    };
    let region = state.intake.options().default_region.clone();
    let messages: Vec<Message> =
        notification_messages(notification, &region).into_iter().map(|m| state.cap(m)).collect();
    if messages.is_empty() {
        return state.ignored(ENDPOINT, "status callback or no messages");
    }
    state.accept(ENDPOINT, messages).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_messages_become_messages_and_statuses_are_ignored() {
        let notification: Notification = serde_json::from_value(serde_json::json!({
            "object": "whatsapp_business_account",
            "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
                "messaging_product": "whatsapp",
                "metadata": {"display_phone_number": "74951234502", "phone_number_id": "1055"},
                "contacts": [{"profile": {"name": "Oleg"}, "wa_id": "79162045581"}],
                "messages": [{"from": "79162045581", "id": "wamid.A1", "timestamp": "1764000000",
                              "type": "text", "text": {"body": "Сколько стоит?"}}]
            }}, {"field": "messages", "value": {"statuses": [{"id": "wamid.X", "status": "delivered"}]}}]}]
        }))
        .unwrap();
        let messages = notification_messages(notification, "RU");
        assert_eq!(messages.len(), 1);
        let m = &messages[0];
        assert_eq!(m.text, "Сколько стоит?");
        assert_eq!(m.sender.phone.as_ref().unwrap().as_str(), "+79162045581");
        assert_eq!(m.sender.name.as_deref(), Some("Oleg"));
        assert_eq!(m.destination.as_deref(), Some("+74951234502"));
        assert_eq!(m.dedup_key.as_str(), "messenger:whatsapp:wamid.A1");
    }
}
