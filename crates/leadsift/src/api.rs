//! The JSON API of `leadsift run` under `/api/`: leads and their stage
//! moves, conversion, deals, ad spend and the reports — the same store
//! calls as the CLI, so both record the same history and return the same
//! numbers.
//!
//! Access: off (404) until `api.token` is set, then every request needs
//! `Authorization: Bearer <token>` (compared in constant time; 401
//! otherwise). The actor recorded in histories is the request's `actor`
//! field, `api` by default.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{MatchedPath, Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{NaiveDate, Utc};
use leadsift_core::{
    Amount, Currency, DealClosing, DealFilter, DealStage, JunkReason, LeadConversion, LeadFilter, LeadStage, LeadStore,
    Money, ReportPeriod, Secret, StageMove, StoreError,
};
use serde::Deserialize;
use serde_json::json;
use subtle::ConstantTimeEq;

use leadsift_web::report_render::{ReportFormat, render_report};

#[derive(Clone)]
pub struct ApiState {
    pub store: Arc<dyn LeadStore>,
    pub token: Secret,
    pub currency: Currency,
    pub utc_offset: chrono::FixedOffset,
    pub requests: prometheus::IntCounterVec,
}

impl ApiState {
    /// `leadsift_api_requests_total{route, status}`: route is the matched
    /// template (`/api/leads/{id}`), status the HTTP code — both bounded.
    pub fn requests_metric(metrics: &leadsift_pipeline::Metrics) -> prometheus::IntCounterVec {
        let requests = prometheus::IntCounterVec::new(
            prometheus::Opts::new("api_requests_total", "JSON API requests by route template and status."),
            &["route", "status"],
        )
        .expect("static metric definition");
        let _ = metrics.registry.register(Box::new(requests.clone()));
        requests
    }
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState")
            .field("token", &self.token)
            .field("currency", &self.currency)
            .field("utc_offset", &self.utc_offset)
            .finish_non_exhaustive()
    }
}

/// An API error: a status and a message for the caller.
#[derive(Debug)]
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        let status = match &error {
            StoreError::NotFound(_) => StatusCode::NOT_FOUND,
            StoreError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            _ if error.is_retryable() => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status.is_server_error() {
            tracing::warn!(error = %error, "API request failed");
        }
        ApiError(status, error.to_string())
    }
}

fn bad_request(message: impl std::fmt::Display) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, message.to_string())
}

type ApiResult = Result<Response, ApiError>;

pub fn router(state: ApiState) -> Router {
    let enabled = !state.token.is_empty();
    let routes = Router::new()
        .route("/api/reports", get(reports))
        .route("/api/leads", get(list_leads))
        .route("/api/leads/{id}", get(show_lead))
        .route("/api/leads/{id}/move", post(move_lead))
        .route("/api/leads/{id}/convert", post(convert_lead))
        .route("/api/deals", get(list_deals))
        .route("/api/deals/{id}", get(show_deal))
        .route("/api/deals/{id}/close", post(close_deal))
        .route("/api/spend", get(list_spend).post(import_spend));
    if !enabled {
        // Off: every API path is simply not there.
        return Router::new();
    }
    routes
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .route_layer(middleware::from_fn_with_state(state.clone(), count))
        .with_state(state)
}

async fn count(State(state): State<ApiState>, route: MatchedPath, request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    state.requests.with_label_values(&[route.as_str(), response.status().as_str()]).inc();
    response
}

async fn authenticate(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let ok: bool = presented.as_bytes().ct_eq(state.token.expose().as_bytes()).into();
    if !ok || presented.is_empty() {
        return ApiError(StatusCode::UNAUTHORIZED, "missing or wrong bearer token".into()).into_response();
    }
    next.run(request).await
}

fn money(state: &ApiState, amount: Option<Amount>, currency: Option<&str>) -> Result<Option<Money>, ApiError> {
    match (amount, currency) {
        (None, None) => Ok(None),
        (None, Some(_)) => Err(bad_request("a currency needs an amount")),
        (Some(amount), currency) => {
            let currency = match currency {
                Some(code) => Currency::parse(code).map_err(bad_request)?,
                None => state.currency.clone(),
            };
            Ok(Some(Money { amount, currency }))
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReportQuery {
    from: NaiveDate,
    to: NaiveDate,
    /// `json` (the default here), `csv` or `table`.
    format: Option<ReportFormat>,
    currency: Option<String>,
    only: Option<String>,
}

async fn reports(State(state): State<ApiState>, Query(query): Query<ReportQuery>) -> ApiResult {
    let currency = match &query.currency {
        Some(code) => Currency::parse(code).map_err(bad_request)?,
        None => state.currency.clone(),
    };
    let period = ReportPeriod::new(query.from, query.to, state.utc_offset, currency).map_err(bad_request)?;
    let report = state.store.report(&period).await?;
    let format = query.format.unwrap_or(ReportFormat::Json);
    let body = render_report(&report, format, query.only.as_deref()).map_err(bad_request)?;
    let content_type = match format {
        ReportFormat::Json => "application/json",
        ReportFormat::Csv => "text/csv; charset=utf-8",
        ReportFormat::Table => "text/plain; charset=utf-8",
    };
    Ok(([(header::CONTENT_TYPE, content_type)], body).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LeadQuery {
    stage: Option<LeadStage>,
    #[serde(default)]
    review: bool,
    limit: Option<u32>,
}

async fn list_leads(State(state): State<ApiState>, Query(query): Query<LeadQuery>) -> ApiResult {
    let filter = LeadFilter {
        stage: query.stage,
        needs_review: query.review.then_some(true),
        limit: Some(query.limit.unwrap_or(100).min(1000)),
    };
    Ok(Json(state.store.leads(&filter).await?).into_response())
}

async fn show_lead(State(state): State<ApiState>, Path(id): Path<i64>) -> ApiResult {
    let lead = state.store.lead(id).await?.ok_or_else(|| StoreError::NotFound(format!("lead {id}")))?;
    let history = state.store.lead_history(id).await?;
    Ok(Json(json!({ "lead": lead, "history": history })).into_response())
}

fn default_actor() -> String {
    "api".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MoveBody {
    stage: LeadStage,
    junk_reason: Option<JunkReason>,
    note: Option<String>,
    #[serde(default = "default_actor")]
    actor: String,
}

/// JSON bodies with errors a person can act on (axum's own rejection
/// texts are terse).
fn json_body<T: serde::de::DeserializeOwned>(bytes: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| bad_request(format!("invalid JSON body: {e}")))
}

async fn move_lead(State(state): State<ApiState>, Path(id): Path<i64>, body: Bytes) -> ApiResult {
    let body: MoveBody = json_body(&body)?;
    let request =
        StageMove { lead_id: id, to: body.stage, junk_reason: body.junk_reason, actor: body.actor, note: body.note };
    let change = state.store.move_lead(&request, Utc::now()).await?;
    Ok(Json(change).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConvertBody {
    company: Option<String>,
    title: Option<String>,
    amount: Option<Amount>,
    currency: Option<String>,
    note: Option<String>,
    #[serde(default = "default_actor")]
    actor: String,
}

async fn convert_lead(State(state): State<ApiState>, Path(id): Path<i64>, body: Bytes) -> ApiResult {
    let body: ConvertBody = json_body(&body)?;
    let request = LeadConversion {
        lead_id: id,
        company: body.company,
        deal_title: body.title,
        amount: money(&state, body.amount, body.currency.as_deref())?,
        actor: body.actor,
        note: body.note,
    };
    let converted = state.store.convert_lead(&request, Utc::now()).await?;
    Ok((StatusCode::CREATED, Json(converted)).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DealQuery {
    stage: Option<DealStage>,
    limit: Option<u32>,
}

async fn list_deals(State(state): State<ApiState>, Query(query): Query<DealQuery>) -> ApiResult {
    let filter = DealFilter { stage: query.stage, limit: Some(query.limit.unwrap_or(100).min(1000)) };
    Ok(Json(state.store.deals(&filter).await?).into_response())
}

async fn show_deal(State(state): State<ApiState>, Path(id): Path<i64>) -> ApiResult {
    let deal = state.store.deal(id).await?.ok_or_else(|| StoreError::NotFound(format!("deal {id}")))?;
    Ok(Json(deal).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CloseBody {
    outcome: DealStage,
    amount: Option<Amount>,
    currency: Option<String>,
    lost_reason: Option<String>,
    /// Close date (local day of the team), default now.
    closed_on: Option<NaiveDate>,
    #[serde(default = "default_actor")]
    actor: String,
}

async fn close_deal(State(state): State<ApiState>, Path(id): Path<i64>, body: Bytes) -> ApiResult {
    let body: CloseBody = json_body(&body)?;
    let closed_at = body
        .closed_on
        .map(|day| ReportPeriod::new(day, day, state.utc_offset, state.currency.clone()).map(|p| p.start()))
        .transpose()
        .map_err(bad_request)?;
    let request = DealClosing {
        deal_id: id,
        outcome: body.outcome,
        amount: money(&state, body.amount, body.currency.as_deref())?,
        lost_reason: body.lost_reason,
        closed_at,
        actor: body.actor,
    };
    Ok(Json(state.store.close_deal(&request, Utc::now()).await?).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SpendQuery {
    from: NaiveDate,
    to: NaiveDate,
}

async fn list_spend(State(state): State<ApiState>, Query(query): Query<SpendQuery>) -> ApiResult {
    Ok(Json(state.store.spend(query.from, query.to).await?).into_response())
}

/// `POST /api/spend` with the CSV file as the body.
async fn import_spend(State(state): State<ApiState>, body: Bytes) -> ApiResult {
    let lines = match leadsift_formats::parse_spend_csv(&body, &state.currency) {
        Ok(lines) => lines,
        Err(errors) => {
            let listed: Vec<_> = errors.errors.iter().map(|e| json!({ "line": e.line, "error": e.message })).collect();
            let body = json!({ "error": "nothing imported", "lines": listed, "more_errors": errors.more });
            return Ok((StatusCode::BAD_REQUEST, Json(body)).into_response());
        }
    };
    let outcome = state.store.import_spend(&lines, Utc::now()).await?;
    Ok(Json(json!({ "lines": lines.len(), "outcome": outcome })).into_response())
}
