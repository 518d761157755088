//! Zadarma-style PBX call notifications.
//!
//! - `GET /intake/zadarma?zd_echo=<x>` answers `<x>` (the PBX's URL check).
//! - `POST /intake/zadarma` with an urlencoded body: `event` (`NOTIFY_START`
//!   or `NOTIFY_END`), `caller_id`, `called_did`, `call_start`, and for
//!   `NOTIFY_END` also `pbx_call_id`, `duration` (seconds), `disposition`
//!   (`answered`, `busy`, `cancel`, `no answer`, `failed`, …) and an
//!   optional `transcript`.
//!
//! Signature, exactly as Zadarma computes it (so a real Zadarma account
//! works unchanged): the `Signature` header is the base64 of the lower-case
//! hex digest of `HMAC-SHA1(secret, caller_id + called_did + call_start)`
//! for `NOTIFY_START` and `NOTIFY_END` alike (Zadarma's API library signs
//! the same three fields for both). The outcome fields are not covered by
//! Zadarma's scheme; restrict the endpoint to Zadarma's addresses at the
//! reverse proxy if replayed notifications are a concern.
//!
//! `NOTIFY_START` is authenticated and acknowledged but stores nothing: the
//! call's outcome arrives with `NOTIFY_END`, which becomes one `call`
//! message keyed `call:<pbx_call_id>`. A missed call (`disposition` other
//! than `answered`, or a duration of 0) is stored unanswered, which the
//! rules turn into a `contact_client` lead to call back.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use leadsift_core::{CallInfo, Channel, DedupKey, Header, Message, PhoneNumber};

use crate::signature::{base64_hex_hmac_sha1, constant_time_eq};
use crate::{HookState, WebhookError};

const ENDPOINT: &str = "zadarma";

pub(crate) async fn echo(State(state): State<HookState>, Query(query): Query<HashMap<String, String>>) -> Response {
    if state.settings.zadarma.secret.is_none() {
        return state.reject(ENDPOINT, &WebhookError::NotConfigured);
    }
    match query.get("zd_echo") {
        Some(echo) => {
            state.count(ENDPOINT, "echo");
            (StatusCode::OK, echo.clone()).into_response()
        }
        None => state.reject(ENDPOINT, &WebhookError::Malformed("GET needs a zd_echo parameter".into())),
    }
}

/// The `Signature` header value for these form fields (what a PBX sends).
pub fn signature(secret: &str, fields: &HashMap<String, String>) -> String {
    base64_hex_hmac_sha1(secret.as_bytes(), signed_string(fields).as_bytes())
}

/// The string the signature covers (see the module docs).
pub fn signed_string(fields: &HashMap<String, String>) -> String {
    let get = |name: &str| fields.get(name).map(String::as_str).unwrap_or_default();
    format!("{}{}{}", get("caller_id"), get("called_did"), get("call_start"))
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
    let Some(secret) = &state.settings.zadarma.secret else {
        return state.reject(ENDPOINT, &WebhookError::NotConfigured);
    };
    let Some(presented) = headers.get("signature").map(|v| v.as_bytes().to_vec()) else {
        return state.reject(ENDPOINT, &WebhookError::Unauthorized("no Signature header"));
    };
    // The signature covers decoded fields, so decode first; an undecodable
    // body cannot be checked and is treated as unsigned (nothing stored).
    let Ok(pairs) = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&body) else {
        return state.reject(ENDPOINT, &WebhookError::Unauthorized("body is not an urlencoded form"));
    };
    let fields: HashMap<String, String> = pairs.into_iter().collect();
    let expected = signature(secret.expose(), &fields);
    if !constant_time_eq(&presented, expected.as_bytes()) {
        return state.reject(ENDPOINT, &WebhookError::Unauthorized("wrong Signature"));
    }
    match fields.get("event").map(String::as_str) {
        Some("NOTIFY_START") => state.ignored(ENDPOINT, "call started; NOTIFY_END carries the outcome"),
        Some("NOTIFY_END") => match call_message(&fields, &state.intake.options().default_region) {
            Ok(message) => state.accept_call(ENDPOINT, state.cap(message)).await,
            Err(error) => state.malformed(ENDPOINT, Some(Channel::Call), error, &body).await,
        },
        Some(other) if other.starts_with("NOTIFY_") => state.ignored(ENDPOINT, "event not used for intake"),
        _ => {
            let error = "missing or unknown `event` (expected NOTIFY_START or NOTIFY_END)".to_owned();
            state.malformed(ENDPOINT, Some(Channel::Call), error, &body).await
        }
    }
}

/// Whether a PBX disposition means someone picked up.
fn answered(disposition: &str) -> bool {
    disposition.trim().eq_ignore_ascii_case("answered")
}

fn call_message(fields: &HashMap<String, String>, region: &str) -> Result<Message, String> {
    let get = |name: &str| fields.get(name).map(|v| v.trim()).filter(|v| !v.is_empty());
    let pbx_call_id = get("pbx_call_id").ok_or("NOTIFY_END without pbx_call_id")?;
    let duration: u32 = match get("duration") {
        Some(d) => d.parse().map_err(|_| format!("duration {d:?} is not a whole number of seconds"))?,
        None => 0,
    };
    let disposition = get("disposition").ok_or("NOTIFY_END without disposition")?;
    let mut message = Message::new(Channel::Call, DedupKey::from_upstream_id(Channel::Call, pbx_call_id), Utc::now());
    if let Some(caller) = get("caller_id") {
        match PhoneNumber::parse(caller, region) {
            Ok(phone) => message.sender.phone = Some(phone),
            Err(_) => {
                message.headers.push(Header { name: "X-Leadsift-Unparsed-From-Phone".into(), value: caller.into() })
            }
        }
    }
    message.destination = get("called_did").map(|did| match PhoneNumber::parse(did, region) {
        Ok(phone) => phone.as_str().to_owned(),
        Err(_) => did.to_owned(),
    });
    message.call = Some(CallInfo { duration_secs: duration, answered: answered(disposition) && duration > 0 });
    message.headers.push(Header { name: "X-Call-Disposition".into(), value: disposition.to_owned() });
    if let Some(start) = get("call_start") {
        message.headers.push(Header { name: "X-Call-Start".into(), value: start.to_owned() });
    }
    message.text = get("transcript").unwrap_or_default().to_owned();
    Ok(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn missed_calls_are_unanswered() {
        let f = fields(&[
            ("event", "NOTIFY_END"),
            ("caller_id", "+79162045581"),
            ("called_did", "74951234501"),
            ("pbx_call_id", "in_abc"),
            ("duration", "0"),
            ("disposition", "no answer"),
        ]);
        let m = call_message(&f, "RU").unwrap();
        assert_eq!(m.call, Some(CallInfo { duration_secs: 0, answered: false }));
        assert_eq!(m.destination.as_deref(), Some("+74951234501"));
        assert_eq!(m.dedup_key.as_str(), "call:in_abc");
        let answered_call = fields(&[("pbx_call_id", "x"), ("duration", "75"), ("disposition", "answered")]);
        assert!(call_message(&answered_call, "RU").unwrap().call.unwrap().answered);
    }

    #[test]
    fn start_and_end_sign_the_same_fields_as_zadarma() {
        let start = fields(&[("event", "NOTIFY_START"), ("caller_id", "1"), ("called_did", "2"), ("call_start", "3")]);
        assert_eq!(signed_string(&start), "123");
        let end = fields(&[
            ("event", "NOTIFY_END"),
            ("caller_id", "1"),
            ("called_did", "2"),
            ("call_start", "3"),
            ("pbx_call_id", "p"),
            ("duration", "0"),
            ("disposition", "busy"),
        ]);
        assert_eq!(signed_string(&end), "123");
        // base64(hex(HMAC-SHA1)), as Zadarma's PHP `base64_encode(hash_hmac('sha1', ...))`.
        // hex b14e92eb17f6b78ec5a205ee0e1ab220fb7f86d7 (Python's hmac), base64-encoded.
        assert_eq!(signature("secret", &end), "YjE0ZTkyZWIxN2Y2Yjc4ZWM1YTIwNWVlMGUxYWIyMjBmYjdmODZkNw==");
    }

    #[test]
    fn bad_durations_are_errors() {
        let f = fields(&[("pbx_call_id", "x"), ("duration", "long"), ("disposition", "answered")]);
        assert!(call_message(&f, "RU").unwrap_err().contains("duration"));
    }
}
