//! The Bitrix24 REST client: one JSON POST per method to the incoming
//! webhook, paced by a client-side leaky bucket, with `QUERY_LIMIT_EXCEEDED`
//! answered by waiting and sending the same call again.

use std::time::Duration;

use leadsift_core::Secret;
use prometheus::IntCounterVec;
use serde_json::Value;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::Bitrix24Error;

/// Bitrix24's own limiter, mirrored on our side: every request adds one to
/// the level, the level leaks at `rate` per second, and a request that would
/// lift it above `capacity` waits until it would not.
#[derive(Debug)]
pub struct LeakyBucket {
    capacity: f64,
    rate: f64,
    level: f64,
    updated: Instant,
}

impl LeakyBucket {
    pub fn new(rate_per_sec: f64, burst: u32) -> Self {
        Self { capacity: f64::from(burst.max(1)), rate: rate_per_sec, level: 0.0, updated: Instant::now() }
    }

    fn leak(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.level = (self.level - elapsed * self.rate).max(0.0);
        self.updated = now;
    }

    /// Reserves a slot for one request and says how long to wait before sending it.
    pub fn reserve(&mut self, now: Instant) -> Duration {
        self.leak(now);
        self.level += 1.0;
        let excess = self.level - self.capacity;
        if excess <= 0.0 { Duration::ZERO } else { Duration::from_secs_f64(excess / self.rate) }
    }

    /// Bitrix24 said its bucket is full: assume ours is too, so the next
    /// requests go out at the sustained rate instead of as a burst.
    pub fn saturate(&mut self, now: Instant) {
        self.leak(now);
        self.level = self.level.max(self.capacity);
    }
}

/// A Bitrix24 webhook client. The webhook URL is a [`Secret`]: it is in no
/// log line, error or `Debug` output; only the portal's host name is.
#[derive(Debug)]
pub struct Bitrix24Client {
    http: reqwest::Client,
    webhook: Secret,
    host: String,
    bucket: Mutex<LeakyBucket>,
    limit_wait: Duration,
    /// How long one call keeps retrying `QUERY_LIMIT_EXCEEDED` before giving the row back.
    limit_patience: Duration,
    requests: IntCounterVec,
}

impl Bitrix24Client {
    pub fn new(
        webhook: Secret,
        timeout: Duration,
        bucket: LeakyBucket,
        limit_wait: Duration,
        limit_patience: Duration,
        requests: IntCounterVec,
    ) -> Result<Self, Bitrix24Error> {
        let host =
            webhook.expose().split("://").nth(1).and_then(|rest| rest.split('/').next()).unwrap_or_default().to_owned();
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| Bitrix24Error::Config(format!("cannot build the HTTP client: {}", e.without_url())))?;
        Ok(Self { http, webhook, host, bucket: Mutex::new(bucket), limit_wait, limit_patience, requests })
    }

    /// The portal's host name (safe to log).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Calls `method` with `params`; returns the `result` of the answer.
    /// `QUERY_LIMIT_EXCEEDED` is waited out and the same call sent again,
    /// for up to the client's patience; then it is returned as
    /// [`Bitrix24Error::RateLimited`].
    #[tracing::instrument(name = "bitrix24_call", skip_all, fields(method, portal = %self.host))]
    pub async fn call(&self, method: &'static str, params: &Value) -> Result<Value, Bitrix24Error> {
        tracing::Span::current().record("method", method);
        let started = Instant::now();
        loop {
            let wait = self.bucket.lock().await.reserve(Instant::now());
            if !wait.is_zero() {
                tracing::debug!(wait_ms = wait.as_millis() as u64, "pacing to the Bitrix24 rate limit");
                tokio::time::sleep(wait).await;
            }
            let outcome = self.send(method, params).await;
            self.requests.with_label_values(&[method, outcome_label(&outcome)]).inc();
            match outcome {
                Err(Bitrix24Error::RateLimited { .. }) if started.elapsed() < self.limit_patience => {
                    self.bucket.lock().await.saturate(Instant::now());
                    tracing::debug!(wait_ms = self.limit_wait.as_millis() as u64, "QUERY_LIMIT_EXCEEDED; waiting");
                    tokio::time::sleep(self.limit_wait).await;
                }
                Err(error @ Bitrix24Error::RateLimited { .. }) => {
                    self.bucket.lock().await.saturate(Instant::now());
                    return Err(error);
                }
                other => return other,
            }
        }
    }

    async fn send(&self, method: &'static str, params: &Value) -> Result<Value, Bitrix24Error> {
        let url = format!("{}{method}.json", self.webhook.expose());
        let response = match self.http.post(url).json(params).send().await {
            Ok(response) => response,
            Err(error) => {
                return Err(Bitrix24Error::Unavailable {
                    method,
                    detail: transport_detail(&error),
                    sent: !error.is_connect(),
                });
            }
        };
        let status = response.status().as_u16();
        let body = match response.bytes().await {
            Ok(body) => body,
            Err(error) => {
                return Err(Bitrix24Error::Unavailable { method, detail: transport_detail(&error), sent: true });
            }
        };
        parse_answer(method, status, &body)
    }
}

/// Reads a Bitrix24 answer: `{"result": …, "time": {…}}` on success,
/// `{"error": "…", "error_description": "…"}` otherwise.
pub fn parse_answer(method: &'static str, status: u16, body: &[u8]) -> Result<Value, Bitrix24Error> {
    let json: Option<Value> = serde_json::from_slice(body).ok();
    let field = |name: &str| json.as_ref().and_then(|j| j.get(name)).and_then(Value::as_str).unwrap_or_default();
    let code = field("error").to_owned();
    let description: String = field("error_description").chars().take(300).collect();
    if code == "QUERY_LIMIT_EXCEEDED" || code == "OPERATION_TIME_LIMIT" || status == 429 {
        return Err(Bitrix24Error::RateLimited { method });
    }
    if (200..300).contains(&status)
        && let Some(result) = json.as_ref().and_then(|j| j.get("result"))
        && code.is_empty()
    {
        return Ok(result.clone());
    }
    if status == 503 && json.is_some() && code.is_empty() {
        return Err(Bitrix24Error::RateLimited { method });
    }
    if (400..500).contains(&status) || (status < 300 && !code.is_empty()) {
        return Err(Bitrix24Error::Rejected { method, status, code, description });
    }
    if status >= 500 {
        let detail = if code.is_empty() { format!("HTTP {status}") } else { format!("HTTP {status} {code}") };
        return Err(Bitrix24Error::Unavailable { method, detail, sent: true });
    }
    Err(Bitrix24Error::BadResponse { method, detail: format!("HTTP {status} without a result") })
}

/// A transport error without the URL (which holds the webhook token) and with its causes.
fn transport_detail(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "cannot connect"
    } else {
        "connection failed"
    };
    let mut detail = kind.to_owned();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !text.contains("://") && !detail.contains(&text) {
            detail.push_str(": ");
            detail.push_str(&text);
        }
        source = cause.source();
    }
    detail
}

fn outcome_label(outcome: &Result<Value, Bitrix24Error>) -> &'static str {
    match outcome {
        Ok(_) => "ok",
        Err(Bitrix24Error::RateLimited { .. }) => "rate_limited",
        Err(Bitrix24Error::Unavailable { .. }) => "unavailable",
        Err(Bitrix24Error::Rejected { .. }) => "rejected",
        Err(_) => "bad_response",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The bucket takes the time as an argument, so these tests step a
    // synthetic clock instead of sleeping.
    #[test]
    fn bucket_lets_a_burst_through_then_paces_at_the_rate() {
        let start = Instant::now();
        let mut bucket = LeakyBucket::new(2.0, 50);
        bucket.updated = start;
        for _ in 0..50 {
            assert_eq!(bucket.reserve(start), Duration::ZERO, "the burst passes at once");
        }
        assert_eq!(bucket.reserve(start), Duration::from_millis(500));
        assert_eq!(bucket.reserve(start), Duration::from_millis(1000));
        // Half a second later one slot has leaked away.
        assert_eq!(bucket.reserve(start + Duration::from_millis(500)), Duration::from_millis(1000));
        // After the backlog leaks away, a burst is allowed again.
        let later = start + Duration::from_secs(27);
        for _ in 0..50 {
            assert_eq!(bucket.reserve(later), Duration::ZERO);
        }
        assert_eq!(bucket.reserve(later), Duration::from_millis(500));
    }

    #[test]
    fn a_saturated_bucket_sends_at_the_sustained_rate() {
        let start = Instant::now();
        let mut bucket = LeakyBucket::new(2.0, 50);
        bucket.updated = start;
        bucket.saturate(start);
        assert_eq!(bucket.reserve(start), Duration::from_millis(500));
        assert_eq!(bucket.reserve(start + Duration::from_millis(500)), Duration::from_millis(500));
        assert_eq!(bucket.reserve(start + Duration::from_millis(1500)), Duration::ZERO);
    }

    #[test]
    fn answers_are_read_as_documented() {
        let ok = parse_answer("crm.lead.add", 200, br#"{"result": 17, "time": {"start": 1.0}}"#).unwrap();
        assert_eq!(ok, serde_json::json!(17));
        let limit = br#"{"error":"QUERY_LIMIT_EXCEEDED","error_description":"Too many requests"}"#;
        assert!(matches!(parse_answer("crm.lead.add", 503, limit), Err(Bitrix24Error::RateLimited { .. })));
        let invalid = br#"{"error":"INVALID_ARGUMENT","error_description":"fields is required"}"#;
        let error = parse_answer("crm.lead.add", 400, invalid).unwrap_err();
        assert!(matches!(&error, Bitrix24Error::Rejected { code, .. } if code == "INVALID_ARGUMENT"));
        assert!(!error.is_retryable());
        assert!(error.lead_not_created());
        let down = parse_answer("crm.lead.add", 500, b"<html>Bad gateway</html>").unwrap_err();
        assert!(matches!(down, Bitrix24Error::Unavailable { sent: true, .. }));
        assert!(down.is_retryable() && !down.lead_not_created(), "a 500 after sending may have created the lead");
        let auth = br#"{"error":"NO_AUTH_FOUND","error_description":"Wrong authorization data"}"#;
        assert!(matches!(parse_answer("crm.lead.list", 401, auth), Err(Bitrix24Error::Rejected { status: 401, .. })));
    }
}
