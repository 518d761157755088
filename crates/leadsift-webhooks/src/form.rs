//! `POST /intake/form`: web-form submissions, JSON or urlencoded, with a
//! honeypot field, a per-IP rate limit and configurable CORS.
//!
//! Fields: `name`, `phone`, `email`, `text` (or `message`, `comment`),
//! `form_id` (or `form`), `page`, and `utm_source` … `utm_term`. The
//! destination of the message is `form:<form_id>` for attribution.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::Instant;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use leadsift_core::{Channel, DedupKey, EmailAddress, Header, Message, PhoneNumber};

use crate::signature::constant_time_eq;
use crate::{HookState, WebhookError};

const ENDPOINT: &str = "form";

/// Entries kept before idle buckets are dropped.
const RATE_LIMIT_TABLE_CAP: usize = 100_000;

/// A token bucket per client IP: `per_minute` submissions, burst of the same size.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    per_minute: u32,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

impl RateLimiter {
    pub(crate) fn new(per_minute: u32) -> Self {
        Self { per_minute, buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes one token for `ip`; false when its bucket is empty.
    pub(crate) fn allow(&self, ip: IpAddr, now: Instant) -> bool {
        if self.per_minute == 0 {
            return true;
        }
        let capacity = f64::from(self.per_minute);
        let refill_per_sec = capacity / 60.0;
        let mut buckets = self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() >= RATE_LIMIT_TABLE_CAP {
            // Buckets that would be full again carry no state worth keeping.
            buckets
                .retain(|_, (tokens, at)| *tokens + now.duration_since(*at).as_secs_f64() * refill_per_sec < capacity);
        }
        let (tokens, at) = buckets.entry(ip).or_insert((capacity, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * refill_per_sec).min(capacity);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

fn cors_origin(state: &HookState, headers: &HeaderMap) -> Option<HeaderValue> {
    let origin = headers.get(header::ORIGIN)?;
    let allowed = &state.settings.form.allowed_origins;
    if allowed.iter().any(|a| a == "*") {
        return Some(HeaderValue::from_static("*"));
    }
    let origin_str = origin.to_str().ok()?;
    allowed.iter().any(|a| a.trim_end_matches('/').eq_ignore_ascii_case(origin_str)).then(|| origin.clone())
}

fn with_cors(mut response: Response, origin: Option<HeaderValue>) -> Response {
    if let Some(origin) = origin {
        let headers = response.headers_mut();
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.insert(header::VARY, HeaderValue::from_static("Origin"));
    }
    response
}

/// CORS preflight.
pub(crate) async fn preflight(State(state): State<HookState>, headers: HeaderMap) -> Response {
    let Some(origin) = cors_origin(&state, &headers) else {
        return StatusCode::FORBIDDEN.into_response();
    };
    let mut response = StatusCode::NO_CONTENT.into_response();
    let out = response.headers_mut();
    out.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("POST, OPTIONS"));
    out.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("content-type, x-leadsift-token"));
    out.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
    with_cors(response, Some(origin))
}

fn client_ip(state: &HookState, headers: &HeaderMap, connect: Option<&ConnectInfo<SocketAddr>>) -> Option<IpAddr> {
    if state.settings.form.trust_forwarded_for
        && let Some(ip) = headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .and_then(|v| v.trim().parse().ok())
    {
        return Some(ip);
    }
    crate::peer_ip(connect)
}

pub(crate) async fn handle(
    State(state): State<HookState>,
    connect: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let origin = cors_origin(&state, &headers);
    let body = match state.body(ENDPOINT, body) {
        Ok(body) => body,
        Err(response) => return with_cors(*response, origin),
    };
    with_cors(submit(&state, connect.as_ref().map(|e| &e.0), &headers, &body).await, origin)
}

async fn submit(
    state: &HookState,
    connect: Option<&ConnectInfo<SocketAddr>>,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let settings = &state.settings.form;
    if !settings.enabled {
        return state.reject(ENDPOINT, &WebhookError::NotConfigured);
    }
    if let Some(token) = &settings.token {
        let presented = headers.get("x-leadsift-token").map(HeaderValue::as_bytes).unwrap_or_default();
        if !constant_time_eq(presented, token.expose().as_bytes()) {
            return state.reject(ENDPOINT, &WebhookError::Unauthorized("wrong or missing X-Leadsift-Token"));
        }
    }
    if let Some(ip) = client_ip(state, headers, connect)
        && !state.rate_limiter.allow(ip, Instant::now())
    {
        return state.reject(ENDPOINT, &WebhookError::RateLimited);
    }
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("application/json"));
    let fields = match parse_fields(body, is_json) {
        Ok(fields) => fields,
        Err(error) => return state.malformed(ENDPOINT, Some(Channel::Webform), error, body).await,
    };
    if fields.get(&settings.honeypot_field).is_some_and(|v| !v.trim().is_empty()) {
        // Answered like a success so the bot learns nothing; nothing is stored.
        tracing::info!(field = %settings.honeypot_field, "web form honeypot filled; submission dropped");
        state.count(ENDPOINT, "honeypot");
        return (StatusCode::OK, axum::Json(serde_json::json!({"status": "accepted"}))).into_response();
    }
    match form_message(&fields, &state.intake.options().default_region, &settings.honeypot_field) {
        Ok(message) => state.accept(ENDPOINT, vec![state.cap(message)]).await,
        Err(error) => state.malformed(ENDPOINT, Some(Channel::Webform), error, body).await,
    }
}

/// Field name → value; JSON numbers and booleans become text.
fn parse_fields(body: &[u8], is_json: bool) -> Result<HashMap<String, String>, String> {
    if is_json {
        let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| format!("invalid JSON: {e}"))?;
        let serde_json::Value::Object(object) = value else {
            return Err("form JSON must be an object".into());
        };
        return Ok(object
            .into_iter()
            .filter_map(|(k, v)| match v {
                serde_json::Value::String(s) => Some((k, s)),
                serde_json::Value::Number(n) => Some((k, n.to_string())),
                serde_json::Value::Bool(b) => Some((k, b.to_string())),
                _ => None,
            })
            .collect());
    }
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_bytes(body).map_err(|e| format!("invalid urlencoded form: {e}"))?;
    Ok(pairs.into_iter().collect())
}

fn form_message(fields: &HashMap<String, String>, region: &str, honeypot: &str) -> Result<Message, String> {
    let get = |names: &[&str]| {
        names.iter().find_map(|n| fields.get(*n)).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
    };
    let name = get(&["name"]);
    let phone = get(&["phone", "tel"]);
    let email = get(&["email"]);
    let text = get(&["text", "message", "comment"]).unwrap_or_default();
    let form_id = get(&["form_id", "form"]);
    if phone.is_none() && email.is_none() && text.is_empty() {
        return Err("the form has no phone, email or text".into());
    }
    let mut headers = Vec::new();
    let mut message = Message::new(Channel::Webform, DedupKey::from_stored(String::new()), Utc::now());
    if let Some(raw) = &phone {
        match PhoneNumber::parse(raw, region) {
            Ok(phone) => message.sender.phone = Some(phone),
            Err(_) => headers.push(Header { name: "X-Leadsift-Unparsed-From-Phone".into(), value: raw.clone() }),
        }
    }
    if let Some(raw) = &email {
        match EmailAddress::parse(raw) {
            Ok(email) => message.sender.email = Some(email),
            Err(_) => headers.push(Header { name: "X-Leadsift-Unparsed-From-Email".into(), value: raw.clone() }),
        }
    }
    if let Some(page) = get(&["page"]) {
        headers.push(Header { name: "X-Form-Page".into(), value: page });
    }
    message.sender.name = name;
    message.destination = form_id.as_ref().map(|id| format!("form:{id}"));
    message.utm.source = get(&["utm_source"]);
    message.utm.medium = get(&["utm_medium"]);
    message.utm.campaign = get(&["utm_campaign"]);
    message.utm.content = get(&["utm_content"]);
    message.utm.term = get(&["utm_term"]);
    message.text = text;
    message.headers = headers;
    // Forms carry no id: the content is the identity (a double submit is one message).
    let mut parts: Vec<(&String, &String)> = fields.iter().filter(|(k, _)| k.as_str() != honeypot).collect();
    parts.sort();
    let flat: Vec<&[u8]> = parts.iter().flat_map(|(k, v)| [k.as_bytes(), v.as_bytes()]).collect();
    message.dedup_key = DedupKey::from_content(Channel::Webform, &flat);
    Ok(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limiter_refills_over_time() {
        let limiter = RateLimiter::new(2);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let t0 = Instant::now();
        assert!(limiter.allow(ip, t0));
        assert!(limiter.allow(ip, t0));
        assert!(!limiter.allow(ip, t0));
        assert!(limiter.allow("10.0.0.2".parse().unwrap(), t0), "another client has its own bucket");
        assert!(limiter.allow(ip, t0 + std::time::Duration::from_secs(30)), "one token back after 30 s");
    }

    #[test]
    fn urlencoded_form_becomes_a_message() {
        let fields = parse_fields(
            "name=%D0%98%D0%B2%D0%B0%D0%BD&phone=8+916+204-55-81&text=Need+a+quote&form_id=contact&utm_source=yandex"
                .as_bytes(),
            false,
        )
        .unwrap();
        let message = form_message(&fields, "RU", "website").unwrap();
        assert_eq!(message.sender.name.as_deref(), Some("Иван"));
        assert_eq!(message.sender.phone.as_ref().unwrap().as_str(), "+79162045581");
        assert_eq!(message.destination.as_deref(), Some("form:contact"));
        assert_eq!(message.utm.source.as_deref(), Some("yandex"));
        assert!(message.dedup_key.as_str().starts_with("webform:sha256:"));
    }

    #[test]
    fn empty_forms_and_bad_json_are_errors() {
        assert!(parse_fields(b"{not json", true).is_err());
        assert!(parse_fields(b"[1]", true).is_err());
        let fields = parse_fields(b"name=x", false).unwrap();
        assert!(form_message(&fields, "RU", "website").is_err());
    }
}
