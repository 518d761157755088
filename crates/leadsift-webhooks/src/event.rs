//! `POST /intake/event`: one leadsift event JSON object (see
//! `leadsift_formats::parse_event_json`), authenticated with
//! `Authorization: Bearer <token>`.

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, header};
use axum::response::Response;
use leadsift_formats::parse_event_json;

use crate::signature::constant_time_eq;
use crate::{HookState, WebhookError};

const ENDPOINT: &str = "event";

pub(crate) async fn handle(
    State(state): State<HookState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match state.body(ENDPOINT, body) {
        Ok(body) => body,
        Err(response) => return *response,
    };
    let Some(token) = &state.settings.event.token else {
        return state.reject(ENDPOINT, &WebhookError::NotConfigured);
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match presented {
        Some(presented) if constant_time_eq(presented.as_bytes(), token.expose().as_bytes()) => {}
        Some(_) => return state.reject(ENDPOINT, &WebhookError::Unauthorized("wrong bearer token")),
        None => return state.reject(ENDPOINT, &WebhookError::Unauthorized("no `Authorization: Bearer` token")),
    }
    match parse_event_json(&body, state.intake.options()) {
        Ok(message) => state.accept_call(ENDPOINT, state.cap(message)).await,
        Err(error) => state.malformed(ENDPOINT, None, error.to_string(), &body).await,
    }
}
