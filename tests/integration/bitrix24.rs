//! Bitrix24 sync: the real `leadsift` binary pushes leads to a local fake
//! Bitrix24 that implements `crm.duplicate.findbycomm`, `crm.lead.add`,
//! `crm.lead.update` and `crm.lead.list` with their documented request and
//! answer shapes (`{"result": …, "time": {…}}`, errors as `{"error": …,
//! "error_description": …}`, `QUERY_LIMIT_EXCEEDED` as HTTP 503) and its own
//! leaky bucket, and records every call. Each test checks that every lead
//! reached Bitrix24 exactly once and that the webhook token never showed in
//! the daemon's log or metrics. The outbox store methods run on SQLite and
//! PostgreSQL.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use leadsift_core::{JunkReason, LeadStage, LeadStore, StageMove};
use leadsift_integration_tests::TestDb;
use leadsift_integration_tests::mailservers::free_port;
use serde_json::{Value, json};

const TOKEN: &str = "k3y9tok3nSECRETx1";
const EVENT_TOKEN: &str = "event-token-b24";
const WEBHOOK_ENV: &str = "LEADSIFT_TEST_BITRIX24_WEBHOOK";

// ---------------------------------------------------------------- fake Bitrix24

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Normal,
    /// Every call answers HTTP 500.
    Outage,
    /// Two calls of three answer 503 QUERY_LIMIT_EXCEEDED, on top of the bucket.
    Storm,
}

#[derive(Debug)]
struct Call {
    method: String,
    params: Value,
    status: u16,
    at: Instant,
}

#[derive(Debug)]
struct FakeState {
    mode: Mode,
    leads: BTreeMap<i64, Value>,
    /// (id, phones, emails) of contacts that exist before the test.
    contacts: Vec<(i64, Vec<String>, Vec<String>)>,
    next_lead_id: i64,
    calls: Vec<Call>,
    /// The next this many adds create the lead and then never answer.
    lose_adds: u32,
    storm_counter: u64,
    /// Milliseconds each answer takes.
    delay_ms: u64,
    /// `crm.lead.add` answers 400 INVALID_ARGUMENT.
    reject_adds: bool,
    bucket_capacity: f64,
    bucket_rate: f64,
    bucket_level: f64,
    bucket_updated: Instant,
}

#[derive(Debug, Clone)]
struct FakeBitrix24 {
    state: Arc<Mutex<FakeState>>,
    port: u16,
}

fn time_block() -> Value {
    json!({"start": 1_764_000_000.1, "finish": 1_764_000_000.2, "duration": 0.1, "processing": 0.05,
           "date_start": "2026-12-01T19:00:00+03:00", "date_finish": "2026-12-01T19:00:00+03:00"})
}

fn error(status: StatusCode, code: &str, description: &str) -> (StatusCode, Value) {
    (status, json!({"error": code, "error_description": description}))
}

fn digits(value: &str) -> String {
    value.chars().filter(char::is_ascii_digit).collect()
}

fn multifield_values(fields: &Value, key: &str) -> Vec<String> {
    fields[key]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v["VALUE"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

impl FakeBitrix24 {
    async fn start(port: Option<u16>) -> FakeBitrix24 {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port.unwrap_or(0))).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(FakeState {
            mode: Mode::Normal,
            leads: BTreeMap::new(),
            contacts: Vec::new(),
            next_lead_id: 1000,
            calls: Vec::new(),
            lose_adds: 0,
            storm_counter: 0,
            delay_ms: 0,
            reject_adds: false,
            bucket_capacity: 50.0,
            bucket_rate: 2.0,
            bucket_level: 0.0,
            bucket_updated: Instant::now(),
        }));
        let app = axum::Router::new()
            .route("/rest/{user}/{token}/{method}", axum::routing::post(handle))
            .with_state(Arc::clone(&state));
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakeBitrix24 { state, port }
    }

    fn with<T>(&self, f: impl FnOnce(&mut FakeState) -> T) -> T {
        f(&mut self.state.lock().unwrap())
    }

    fn leads(&self) -> BTreeMap<i64, Value> {
        self.with(|s| s.leads.clone())
    }

    /// Bitrix24 leads we added, by our lead id (ORIGIN_ID); more than one per id is a duplicate.
    fn ours(&self) -> BTreeMap<i64, Vec<(i64, Value)>> {
        let mut by_origin: BTreeMap<i64, Vec<(i64, Value)>> = BTreeMap::new();
        for (id, fields) in self.leads() {
            if fields["ORIGINATOR_ID"] == "leadsift" {
                let origin: i64 = fields["ORIGIN_ID"].as_str().unwrap().parse().unwrap();
                by_origin.entry(origin).or_default().push((id, fields));
            }
        }
        by_origin
    }

    fn calls(&self, method: &str, status: u16) -> usize {
        self.with(|s| s.calls.iter().filter(|c| c.method == method && c.status == status).count())
    }
}

async fn handle(
    State(state): State<Arc<Mutex<FakeState>>>,
    UrlPath((user, token, method)): UrlPath<(String, String, String)>,
    body: Bytes,
) -> Response {
    let method = method.trim_end_matches(".json").to_owned();
    let params: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let (status, answer, lose, delay) = {
        let mut s = state.lock().unwrap();
        let (status, answer, lose) = answer(&mut s, &user, &token, &method, &params);
        s.calls.push(Call { method: method.clone(), params, status: status.as_u16(), at: Instant::now() });
        (status, answer, lose, Duration::from_millis(s.delay_ms))
    };
    tokio::time::sleep(delay).await;
    if lose {
        // The lead exists now, but the answer never comes: the client times out.
        tokio::time::sleep(Duration::from_secs(30)).await;
    }
    (status, axum::Json(answer)).into_response()
}

fn answer(s: &mut FakeState, user: &str, token: &str, method: &str, params: &Value) -> (StatusCode, Value, bool) {
    let fail = |(status, body): (StatusCode, Value)| (status, body, false);
    if user != "1" || token != TOKEN {
        return fail(error(StatusCode::UNAUTHORIZED, "NO_AUTH_FOUND", "Wrong authorization data"));
    }
    match s.mode {
        Mode::Outage => {
            return fail(error(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_SERVER_ERROR", "Internal server error"));
        }
        Mode::Storm => {
            s.storm_counter += 1;
            if !s.storm_counter.is_multiple_of(3) {
                return fail(error(StatusCode::SERVICE_UNAVAILABLE, "QUERY_LIMIT_EXCEEDED", "Too many requests"));
            }
        }
        Mode::Normal => {}
    }
    // The portal's own leaky bucket.
    let now = Instant::now();
    s.bucket_level = (s.bucket_level - now.duration_since(s.bucket_updated).as_secs_f64() * s.bucket_rate).max(0.0);
    s.bucket_updated = now;
    if s.bucket_level + 1.0 > s.bucket_capacity {
        return fail(error(StatusCode::SERVICE_UNAVAILABLE, "QUERY_LIMIT_EXCEEDED", "Too many requests"));
    }
    s.bucket_level += 1.0;
    let ok = |result: Value| (StatusCode::OK, json!({"result": result, "time": time_block()}), false);
    match method {
        "crm.duplicate.findbycomm" => {
            let kind = params["type"].as_str().unwrap_or_default();
            let Some(values) = params["values"].as_array().filter(|v| !v.is_empty() && v.len() <= 20) else {
                return fail(error(StatusCode::BAD_REQUEST, "", "Parameter 'values' must be array of up to 20 items"));
            };
            let key = match kind {
                "PHONE" => "PHONE",
                "EMAIL" => "EMAIL",
                _ => return fail(error(StatusCode::BAD_REQUEST, "", "Communication type is not defined")),
            };
            let wanted: Vec<String> = values
                .iter()
                .filter_map(Value::as_str)
                .map(|v| if key == "PHONE" { digits(v) } else { v.to_lowercase() })
                .collect();
            let matches = |candidates: &[String]| {
                candidates.iter().any(|c| wanted.contains(&if key == "PHONE" { digits(c) } else { c.to_lowercase() }))
            };
            let contacts: Vec<i64> = s
                .contacts
                .iter()
                .filter(|(_, phones, emails)| matches(if key == "PHONE" { phones } else { emails }))
                .map(|(id, _, _)| *id)
                .collect();
            let leads: Vec<i64> =
                s.leads.iter().filter(|(_, f)| matches(&multifield_values(f, key))).map(|(id, _)| *id).collect();
            if contacts.is_empty() && leads.is_empty() {
                return ok(json!([]));
            }
            let mut result = serde_json::Map::new();
            if !leads.is_empty() {
                result.insert("LEAD".into(), json!(leads));
            }
            if !contacts.is_empty() {
                result.insert("CONTACT".into(), json!(contacts));
            }
            ok(Value::Object(result))
        }
        "crm.lead.add" if s.reject_adds => {
            fail(error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", "Field 'STATUS_ID' has an invalid value"))
        }
        "crm.lead.add" => {
            let Some(fields) = params["fields"].as_object() else {
                return fail(error(StatusCode::BAD_REQUEST, "", "Parameter 'fields' must be array."));
            };
            let id = s.next_lead_id;
            s.next_lead_id += 1;
            s.leads.insert(id, Value::Object(fields.clone()));
            if s.lose_adds > 0 {
                s.lose_adds -= 1;
                return (StatusCode::OK, json!({"result": id, "time": time_block()}), true);
            }
            ok(json!(id))
        }
        "crm.lead.update" => {
            let id = match &params["id"] {
                Value::Number(n) => n.as_i64(),
                Value::String(text) => text.parse().ok(),
                _ => None,
            };
            let (Some(id), Some(fields)) = (id, params["fields"].as_object()) else {
                return fail(error(StatusCode::BAD_REQUEST, "", "ID is not defined or invalid."));
            };
            let Some(lead) = s.leads.get_mut(&id) else {
                return fail(error(StatusCode::BAD_REQUEST, "", "Not found"));
            };
            for (key, value) in fields {
                lead[key] = value.clone();
            }
            ok(json!(true))
        }
        "crm.lead.list" => {
            let filter = params["filter"].as_object().cloned().unwrap_or_default();
            let found: Vec<Value> = s
                .leads
                .iter()
                .filter(|(_, f)| filter.iter().all(|(k, v)| &f[k] == v))
                .map(|(id, _)| json!({"ID": id.to_string()}))
                .collect();
            let total = found.len();
            (StatusCode::OK, json!({"result": found, "total": total, "time": time_block()}), false)
        }
        _ => fail(error(StatusCode::NOT_FOUND, "ERROR_METHOD_NOT_FOUND", "Method not found!")),
    }
}

// ---------------------------------------------------------------- the daemon

/// The shared test daemon, plus what only these tests need.
struct Daemon(crate::pipeline::Daemon);

impl std::ops::Deref for Daemon {
    type Target = crate::pipeline::Daemon;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl Daemon {
    /// Starts `leadsift run` with debug logging, the webhook URL in the environment.
    fn start(config: &Path, bitrix_port: u16) -> Daemon {
        Daemon(crate::pipeline::Daemon::spawn(
            leadsift_integration_tests::leadsift_command()
                .args(["--config", config.to_str().unwrap(), "run"])
                .env("LEADSIFT_LOG", "debug,sqlx=warn,hyper=info,h2=info")
                .env(WEBHOOK_ENV, format!("http://127.0.0.1:{bitrix_port}/rest/1/{TOKEN}/")),
        ))
    }

    async fn post_event(&self, event: &Value) {
        let response = reqwest::Client::new()
            .post(format!("http://{}/intake/event", self.address))
            .bearer_auth(EVENT_TOKEN)
            .json(event)
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "event refused: {}", response.text().await.unwrap());
    }

    /// The token is in no log line and no metric.
    async fn assert_token_kept_secret(&self) {
        let log = self.log_text();
        assert!(log.contains("bitrix24"), "the sync logged nothing:\n{log}");
        assert!(!log.contains(TOKEN), "the webhook token leaked into the log:\n{log}");
        assert!(!self.metrics().await.contains(TOKEN), "the webhook token leaked into the metrics");
    }
}

fn config(dir: &Path, db: &TestDb, extra: &str) -> std::path::PathBuf {
    let path = dir.join("leadsift.toml");
    std::fs::write(
        &path,
        format!(
            "[database]\nurl = \"{}\"\n[intake]\ndrop_folder = \"\"\n[http]\nlisten = \"127.0.0.1:0\"\n\
             [triage]\nidle_poll_ms = 50\n[webhooks.event]\ntoken = \"{EVENT_TOKEN}\"\n\
             [bitrix24]\nenabled = true\nwebhook_url_env = \"{WEBHOOK_ENV}\"\npoll_ms = 100\n\
             request_timeout_secs = 1\nlease_secs = 15\nlimit_wait_ms = 200\nbackoff_initial_ms = 100\n\
             backoff_max_secs = 1\n{extra}",
            db.url
        ),
    )
    .unwrap();
    path
}

fn inquiry_event(id: &str, channel: &str, from: Value, utm: Value) -> Value {
    json!({"channel": channel, "id": id, "from": from, "to": "sales@our.example",
           "subject": format!("Запрос цены {id}"),
           "text": "Добрый день! Сколько стоит монтаж фасада? Пришлите коммерческое предложение.",
           "utm": utm})
}

async fn scalar(db: &TestDb, sql: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned())).fetch_one(db.store.pool()).await.unwrap()
}

async fn wait_until(what: &str, limit: Duration, daemon: &Daemon, mut check: impl AsyncFnMut() -> bool) {
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < limit, "timed out waiting for {what}; daemon log:\n{}", daemon.log_text());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every lead of ours is in Bitrix24 exactly once, and every delivered add maps to it.
async fn assert_exactly_once(db: &TestDb, fake: &FakeBitrix24, leads: usize) {
    let ours = fake.ours();
    assert_eq!(ours.len(), leads, "every lead reached Bitrix24: {ours:?}");
    for (origin, copies) in &ours {
        assert_eq!(copies.len(), 1, "lead {origin} was added {} times", copies.len());
        assert_eq!(db.store.bitrix24_lead_id(*origin).await.unwrap(), Some(copies[0].0), "the id map of lead {origin}");
    }
    let counts = db.store.bitrix24_outbox_counts().await.unwrap();
    assert_eq!((counts.pending, counts.failed), (0, 0), "{counts:?}");
}

// ---------------------------------------------------------------- daemon tests

#[tokio::test]
async fn leads_reach_bitrix24_with_their_fields_and_stage_changes_follow() {
    let fake = FakeBitrix24::start(None).await;
    fake.with(|s| {
        s.contacts.push((501, vec!["+7 (916) 111-22-33".into()], vec![]));
        s.leads.insert(
            301,
            json!({"TITLE": "Old inquiry", "EMAIL": [{"VALUE": "maria@firm.example", "VALUE_TYPE": "WORK"}]}),
        );
    });
    let db = TestDb::sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&config(dir.path(), &db, ""), fake.port);

    daemon
        .post_event(&json!({"channel": "call", "id": "pbx-1", "from": {"phone": "+79161112233"}, "to": "+74951234501",
                            "call": {"duration_secs": 0, "answered": false},
                            "utm": {"source": "yandex", "medium": "cpc", "campaign": "fasad_moscow"}}))
        .await;
    daemon
        .post_event(&inquiry_event(
            "form-1",
            "webform",
            json!({"email": "maria@firm.example", "name": "Мария"}),
            json!({"source": "google", "medium": "cpc", "campaign": "brand", "content": "ad1", "term": "фасад"}),
        ))
        .await;
    daemon
        .post_event(&inquiry_event("tg-1", "messenger", json!({"handle": "petr_tg", "name": "Пётр"}), json!({})))
        .await;
    daemon
        .post_event(&json!({"channel": "email", "id": "spam-1", "from": {"email": "promo@spam-seo.example"},
                            "subject": "Продвижение сайта в ТОП-10",
                            "text": "Продвижение сайта, вывод в топ Яндекса, база клиентов. Пассивный доход! \
                                     https://a.example https://b.example https://c.example"}))
        .await;

    let limit = Duration::from_secs(60);
    wait_until("four leads", limit, &daemon, async || scalar(&db, "SELECT COUNT(*) FROM leads").await == 4).await;
    wait_until("four Bitrix24 leads", limit, &daemon, async || fake.ours().len() == 4).await;
    let lead_of = async |channel: &str| scalar(&db, &format!("SELECT id FROM leads WHERE channel = '{channel}'")).await;
    let (call, form, messenger, email) =
        (lead_of("call").await, lead_of("webform").await, lead_of("messenger").await, lead_of("email").await);
    let fields = |lead: i64| fake.ours()[&lead][0].1.clone();

    let call_fields = fields(call);
    assert_eq!(call_fields["SOURCE_ID"], "CALL");
    assert_eq!(call_fields["PHONE"], json!([{"VALUE": "+79161112233", "VALUE_TYPE": "WORK"}]));
    assert_eq!(call_fields["CONTACT_ID"], 501, "the returning client is linked to the Bitrix24 contact");
    assert_eq!(call_fields["STATUS_ID"], "NEW");
    for (key, value) in [("UTM_SOURCE", "yandex"), ("UTM_MEDIUM", "cpc"), ("UTM_CAMPAIGN", "fasad_moscow")] {
        assert_eq!(call_fields[key], value, "{key}");
    }
    assert_eq!(call_fields["ORIGIN_ID"], call.to_string());
    assert!(call_fields["COMMENTS"].as_str().unwrap().contains("inquiry"), "{call_fields}");

    let form_fields = fields(form);
    assert_eq!(form_fields["SOURCE_ID"], "WEBFORM");
    assert_eq!(form_fields["NAME"], "Мария");
    assert_eq!(form_fields["EMAIL"], json!([{"VALUE": "maria@firm.example", "VALUE_TYPE": "WORK"}]));
    assert!(form_fields.get("CONTACT_ID").is_none(), "no contact has that email");
    assert!(form_fields["COMMENTS"].as_str().unwrap().contains("#301"), "the earlier Bitrix24 lead is named");
    for (key, value) in [("UTM_SOURCE", "google"), ("UTM_CONTENT", "ad1"), ("UTM_TERM", "фасад")] {
        assert_eq!(form_fields[key], value, "{key}");
    }
    assert_eq!(form_fields["SOURCE_DESCRIPTION"], "google / brand");
    assert_eq!(fields(messenger)["SOURCE_ID"], "OTHER");
    assert_eq!(fields(email)["SOURCE_ID"], "EMAIL");
    assert_eq!(fields(email)["STATUS_ID"], "JUNK", "junk goes as JUNK");
    assert!(fake.with(|s| {
        s.calls.iter().any(|c| {
            c.method == "crm.duplicate.findbycomm" && c.params == json!({"type": "PHONE", "values": ["+79161112233"]})
        })
    }));

    // Stage changes follow, as updates of the same Bitrix24 leads.
    let at = Utc::now();
    let to = |lead_id, to, junk_reason| StageMove { lead_id, to, junk_reason, actor: "anna".into(), note: None };
    db.store.move_lead(&to(call, LeadStage::Qualification, None), at).await.unwrap();
    db.store.move_lead(&to(call, LeadStage::Offer, None), at).await.unwrap();
    db.store.move_lead(&to(form, LeadStage::Junk, Some(JunkReason::NonTarget)), at).await.unwrap();
    wait_until("the stage changes", limit, &daemon, async || {
        fields(call)["STATUS_ID"] == "PROCESSED" && fields(form)["STATUS_ID"] == "JUNK"
    })
    .await;
    wait_until("an empty outbox", limit, &daemon, async || {
        db.store.bitrix24_outbox_counts().await.unwrap().delivered == 7
    })
    .await;
    assert_eq!(fields(form)["STATUS_DESCRIPTION"], "leadsift: нецелевое обращение");
    let updates: Vec<Value> = fake.with(|s| {
        s.calls
            .iter()
            .filter(|c| c.method == "crm.lead.update")
            .map(|c| c.params["fields"]["STATUS_ID"].clone())
            .collect()
    });
    assert_eq!(updates.iter().filter(|s| *s == "IN_PROCESS").count(), 1);
    assert!(
        updates.iter().position(|s| s == "IN_PROCESS") < updates.iter().position(|s| s == "PROCESSED"),
        "one lead's changes arrive in order: {updates:?}"
    );
    assert_eq!(fake.calls("crm.lead.add", 200), 4, "one add per lead");
    assert_exactly_once(&db, &fake, 4).await;
    let metrics = daemon.metrics().await;
    assert!(
        metrics.contains("leadsift_bitrix24_requests_total{method=\"crm.lead.add\",outcome=\"ok\"} 4"),
        "{metrics}"
    );
    assert!(metrics.contains("leadsift_bitrix24_outbox_rows{state=\"pending\"} 0"), "{metrics}");
    daemon.assert_token_kept_secret().await;
}

#[tokio::test]
async fn an_outage_delays_the_leads_but_delivers_each_exactly_once() {
    let port = free_port();
    let db = TestDb::sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&config(dir.path(), &db, ""), port);
    for i in 0..5 {
        let from = json!({"phone": format!("+7916200{i:04}"), "email": format!("client{i}@firm.example")});
        daemon.post_event(&inquiry_event(&format!("outage-{i}"), "webform", from, json!({}))).await;
    }
    let limit = Duration::from_secs(60);
    // Nothing listens: connection refused, retried with backoff.
    wait_until("refused attempts", limit, &daemon, async || {
        scalar(&db, "SELECT COUNT(*) FROM bitrix24_outbox WHERE attempts >= 2").await == 5
    })
    .await;
    // Then Bitrix24 answers 500 for a while.
    let fake = FakeBitrix24::start(Some(port)).await;
    fake.with(|s| s.mode = Mode::Outage);
    wait_until("500 answers", limit, &daemon, async || fake.with(|s| s.calls.len()) >= 10).await;
    assert!(fake.ours().is_empty());
    fake.with(|s| s.mode = Mode::Normal);
    wait_until("every lead delivered", limit, &daemon, async || {
        db.store.bitrix24_outbox_counts().await.unwrap().delivered == 5
    })
    .await;
    assert_exactly_once(&db, &fake, 5).await;
    assert!(daemon.log_text().contains("Bitrix24 delivery failed; retrying"));
    daemon.assert_token_kept_secret().await;
}

#[tokio::test]
async fn a_rate_limit_storm_delivers_each_lead_exactly_once() {
    let fake = FakeBitrix24::start(None).await;
    // A small portal bucket at 2 requests/s, and most calls refused on top.
    fake.with(|s| {
        s.mode = Mode::Storm;
        s.bucket_capacity = 5.0;
    });
    let db = TestDb::sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    // The client's own limits are the defaults: 2 requests/s, burst 50.
    let config = config(dir.path(), &db, "");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(!text.contains("rate_per_sec") && !text.contains("burst"));
    let daemon = Daemon::start(&config, fake.port);
    let leads = 6;
    for i in 0..leads {
        let from = json!({"phone": format!("+7916300{i:04}")});
        daemon.post_event(&inquiry_event(&format!("storm-{i}"), "webform", from, json!({}))).await;
    }
    wait_until("every lead delivered", Duration::from_secs(120), &daemon, async || {
        db.store.bitrix24_outbox_counts().await.unwrap().delivered == leads
    })
    .await;
    assert_exactly_once(&db, &fake, leads as usize).await;
    let limited = fake.with(|s| s.calls.iter().filter(|c| c.status == 503).count());
    let total = fake.with(|s| s.calls.len());
    eprintln!("storm: {limited} of {total} calls answered 503 QUERY_LIMIT_EXCEEDED");
    assert!(limited * 2 > total, "most calls were refused: {limited} of {total}");
    assert_eq!(scalar(&db, "SELECT MAX(attempts) FROM bitrix24_outbox").await, 0, "rate limits are not failures");
    let metrics = daemon.metrics().await;
    assert!(metrics.contains("outcome=\"rate_limited\""), "{metrics}");
    daemon.assert_token_kept_secret().await;
}

#[tokio::test]
async fn the_client_bucket_keeps_to_the_portal_limit() {
    let fake = FakeBitrix24::start(None).await;
    // The portal's bucket: burst 5, 2 requests/s. Ours is one request
    // smaller: network delays vary, so two requests sent 500 ms apart may
    // arrive closer together.
    fake.with(|s| s.bucket_capacity = 5.0);
    let db = TestDb::sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&config(dir.path(), &db, "burst = 4\nrate_per_sec = 2.0\n"), fake.port);
    let leads = 8;
    for i in 0..leads {
        let from = json!({"phone": format!("+7916600{i:04}")});
        daemon.post_event(&inquiry_event(&format!("paced-{i}"), "webform", from, json!({}))).await;
    }
    wait_until("every lead delivered", Duration::from_secs(60), &daemon, async || {
        db.store.bitrix24_outbox_counts().await.unwrap().delivered == leads
    })
    .await;
    assert_exactly_once(&db, &fake, leads as usize).await;
    let (limited, total, span) = fake.with(|s| {
        let span = s.calls.last().unwrap().at.duration_since(s.calls[0].at);
        (s.calls.iter().filter(|c| c.status == 503).count(), s.calls.len(), span)
    });
    eprintln!("paced: {total} calls in {:.1} s, {limited} refused", span.as_secs_f64());
    assert_eq!(total, 16, "findbycomm and add per lead");
    assert_eq!(limited, 0, "the client never went over the portal's bucket");
    // 16 calls through a bucket of 4 at 2/s take at least (16 - 4) / 2 s.
    assert!(span >= Duration::from_millis(5500), "{span:?}");
    daemon.assert_token_kept_secret().await;
}

#[tokio::test]
async fn a_lost_answer_to_an_add_does_not_create_a_second_lead() {
    let fake = FakeBitrix24::start(None).await;
    fake.with(|s| s.lose_adds = 2);
    let db = TestDb::sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&config(dir.path(), &db, ""), fake.port);
    for i in 0..3 {
        let from = json!({"email": format!("lost{i}@firm.example")});
        daemon.post_event(&inquiry_event(&format!("lost-{i}"), "webform", from, json!({}))).await;
    }
    wait_until("every lead delivered", Duration::from_secs(60), &daemon, async || {
        db.store.bitrix24_outbox_counts().await.unwrap().delivered == 3
    })
    .await;
    assert_eq!(fake.with(|s| s.lose_adds), 0, "two answers were lost");
    assert_exactly_once(&db, &fake, 3).await;
    assert_eq!(fake.calls("crm.lead.add", 200), 3, "no add was sent twice");
    assert!(fake.calls("crm.lead.list", 200) >= 2, "each lost add was looked up by ORIGIN_ID");
    daemon.assert_token_kept_secret().await;
}

#[tokio::test]
async fn a_crash_while_an_add_is_in_flight_does_not_create_a_second_lead() {
    let fake = FakeBitrix24::start(None).await;
    fake.with(|s| s.lose_adds = 1);
    let db = TestDb::sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &db, "");
    let daemon = Daemon::start(&config, fake.port);
    let from = json!({"phone": "+79164000001"});
    daemon.post_event(&inquiry_event("crash-1", "webform", from, json!({}))).await;
    wait_until("the add to arrive", Duration::from_secs(60), &daemon, async || fake.leads().len() == 1).await;
    // SIGKILL before the answer: no chance to record anything.
    drop(daemon);
    assert_eq!(scalar(&db, "SELECT add_outcome_unknown FROM bitrix24_outbox").await, 1);
    let daemon = Daemon::start(&config, fake.port);
    wait_until("the lead delivered", Duration::from_secs(60), &daemon, async || {
        db.store.bitrix24_outbox_counts().await.unwrap().delivered == 1
    })
    .await;
    assert_exactly_once(&db, &fake, 1).await;
    assert_eq!(fake.calls("crm.lead.add", 200), 1, "the add was not sent again");
    assert_eq!(fake.calls("crm.lead.list", 200), 1, "the restarted process looked the lead up");
    daemon.assert_token_kept_secret().await;
}

#[tokio::test]
async fn a_lead_bitrix24_keeps_refusing_is_marked_failed_and_counted() {
    let fake = FakeBitrix24::start(None).await;
    fake.with(|s| s.reject_adds = true);
    let db = TestDb::sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&config(dir.path(), &db, "max_attempts = 3\n"), fake.port);
    let from = json!({"phone": "+79165000001"});
    daemon.post_event(&inquiry_event("refused-1", "webform", from, json!({}))).await;
    let limit = Duration::from_secs(60);
    wait_until("the row failed", limit, &daemon, async || db.store.bitrix24_outbox_counts().await.unwrap().failed == 1)
        .await;
    assert_eq!(scalar(&db, "SELECT attempts FROM bitrix24_outbox").await, 3, "max_attempts");
    assert_eq!(fake.calls("crm.lead.add", 400), 3);
    let error: String =
        sqlx::query_scalar("SELECT last_error FROM bitrix24_outbox").fetch_one(db.store.pool()).await.unwrap();
    assert!(error.contains("INVALID_ARGUMENT"), "{error}");
    // A later stage change of that lead cannot be delivered either, and says so.
    let lead_id = scalar(&db, "SELECT id FROM leads").await;
    let to_offer = StageMove { lead_id, to: LeadStage::Offer, junk_reason: None, actor: "anna".into(), note: None };
    db.store.move_lead(&to_offer, Utc::now()).await.unwrap();
    wait_until("the update failed", limit, &daemon, async || {
        db.store.bitrix24_outbox_counts().await.unwrap().failed == 2
    })
    .await;
    assert!(fake.ours().is_empty());
    assert_eq!(fake.calls("crm.lead.update", 200) + fake.calls("crm.lead.update", 400), 0);
    wait_until("the gauge", limit, &daemon, async || {
        daemon.metrics().await.contains("leadsift_bitrix24_outbox_rows{state=\"failed\"} 2")
    })
    .await;
    let metrics = daemon.metrics().await;
    assert!(metrics.contains("leadsift_bitrix24_events_total{kind=\"add\",result=\"failed\"} 1"), "{metrics}");
    assert!(metrics.contains("leadsift_bitrix24_requests_total{method=\"crm.lead.add\",outcome=\"rejected\"} 3"));
    daemon.assert_token_kept_secret().await;
}

#[tokio::test]
async fn two_processes_share_the_outbox_and_each_lead_is_added_once() {
    two_processes_share_the_outbox(TestDb::sqlite().await).await;
}

#[tokio::test]
async fn two_processes_share_the_outbox_and_each_lead_is_added_once_on_postgres() {
    let Some(db) = TestDb::postgres().await else { return };
    two_processes_share_the_outbox(db).await;
}

async fn two_processes_share_the_outbox(db: TestDb) {
    let fake = FakeBitrix24::start(None).await;
    // Slow answers, so both processes are busy delivering at the same time.
    fake.with(|s| s.delay_ms = 150);
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &db, "batch = 3\n");
    let first = Daemon::start(&config, fake.port);
    let second = Daemon::start(&config, fake.port);
    let leads = 10;
    for i in 0..leads {
        let from = json!({"email": format!("shared{i}@firm.example")});
        first.post_event(&inquiry_event(&format!("shared-{i}"), "webform", from, json!({}))).await;
    }
    wait_until("every lead delivered", Duration::from_secs(90), &first, async || {
        db.store.bitrix24_outbox_counts().await.unwrap().delivered == leads
    })
    .await;
    assert_exactly_once(&db, &fake, leads as usize).await;
    assert_eq!(fake.calls("crm.lead.add", 200), leads as usize, "no add was sent twice");
    let synced = |d: &Daemon| d.log_text().matches("lead synced to Bitrix24").count();
    eprintln!("two processes: {} and {} rows delivered", synced(&first), synced(&second));
    assert_eq!(synced(&first) + synced(&second), leads as usize);
    first.assert_token_kept_secret().await;
    second.assert_token_kept_secret().await;
}

// ---------------------------------------------------------------- the outbox on both backends

mod store {
    use chrono::{Duration, Utc};
    use leadsift_core::{
        Channel, Classification, DedupKey, EmailAddress, LeadStage, LeadStore, Message, Reason, ReasonOrigin,
        RoutingPolicy, Sender, StageMove, TriageWrite, Triaged, Verdict,
    };
    use leadsift_integration_tests::TestDb;
    use leadsift_store::{Bitrix24EventKind, Bitrix24Retry, SqlStore};

    async fn new_lead(store: &SqlStore, sender: &str) -> i64 {
        let mut message = Message::new(Channel::Email, DedupKey::from_upstream_id(Channel::Email, sender), Utc::now());
        message.sender = Sender {
            email: Some(EmailAddress::parse(sender).unwrap()),
            name: Some("Ivan".into()),
            ..Sender::default()
        };
        message.subject = Some("Need a quote".into());
        message.text = "Need a quote for the facade".into();
        message.utm.source = Some("yandex".into());
        let classification = Classification {
            verdict: Verdict::Inquiry,
            confidence: 0.9,
            reasons: vec![Reason {
                rule: "TEST".into(),
                description: "test".into(),
                origin: ReasonOrigin::Rule,
                class: Some(Verdict::Inquiry),
                score: 3.0,
                decisive: false,
            }],
        };
        let route = RoutingPolicy::default().route(&classification);
        let item = Triaged { message, classification, route, source: None, campaign: None };
        match store.record_triage(&[item], Utc::now()).await.unwrap().pop() {
            Some(TriageWrite::Stored { lead_id: Some(id), .. }) => id,
            other => panic!("expected a lead, got {other:?}"),
        }
    }

    async fn outbox_is_leased_ordered_and_counted(db: &TestDb) {
        let store = &db.store;
        let since = Utc::now() - Duration::minutes(1);
        let first = new_lead(store, "a@firm.example").await;
        let second = new_lead(store, "b@firm.example").await;
        let now = Utc::now();
        assert_eq!(store.bitrix24_fill_outbox(since, 100, now).await.unwrap(), 2);
        assert_eq!(store.bitrix24_fill_outbox(since, 100, now).await.unwrap(), 0, "filling is idempotent");
        // Leads created before the sync started are not pushed.
        assert_eq!(store.bitrix24_fill_outbox(Utc::now() + Duration::minutes(1), 100, now).await.unwrap(), 0);

        // Two processes claim at once: each row goes to one of them.
        let other = SqlStore::connect(&leadsift_store::StoreSettings::new(db.url.clone())).await.unwrap();
        let lease = now + Duration::seconds(60);
        let (a, b) = tokio::join!(store.bitrix24_claim("a", now, lease, 10), other.bitrix24_claim("b", now, lease, 10));
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!(a.len() + b.len(), 2, "a: {a:?}\nb: {b:?}");
        let mut events = a.iter().map(|e| ("a", e)).chain(b.iter().map(|e| ("b", e))).collect::<Vec<_>>();
        events.sort_by_key(|(_, e)| e.lead.id);
        let (first_owner, first_add) = events[0];
        assert_eq!(
            (first_add.lead.id, first_add.kind, first_add.stage),
            (first, Bitrix24EventKind::Add, LeadStage::ContactClient)
        );
        assert_eq!(first_add.utm.source.as_deref(), Some("yandex"));
        assert_eq!(first_add.contact_name.as_deref(), Some("Ivan"));
        assert!(!first_add.add_outcome_unknown && first_add.bitrix_id.is_none());
        assert!(
            store.bitrix24_claim("c", now, lease, 10).await.unwrap().is_empty(),
            "leased rows are not claimed again"
        );

        // A stage change waits for the lead's add.
        let moved = StageMove {
            lead_id: first,
            to: LeadStage::Qualification,
            junk_reason: None,
            actor: "t".into(),
            note: None,
        };
        store.move_lead(&moved, Utc::now()).await.unwrap();
        assert_eq!(store.bitrix24_fill_outbox(since, 100, Utc::now()).await.unwrap(), 1);
        let after_lease = lease + Duration::seconds(1);
        let later_lease = after_lease + Duration::seconds(60);
        let retaken = store.bitrix24_claim("c", after_lease, later_lease, 10).await.unwrap();
        assert_eq!(retaken.len(), 2, "expired leases are taken over; the update waits: {retaken:?}");
        assert!(retaken.iter().all(|e| e.kind == Bitrix24EventKind::Add));
        let first_add = retaken.iter().find(|e| e.lead.id == first).unwrap();
        assert!(
            !store.bitrix24_delivered(first_add.outbox_id, first_owner, first, Some(77), after_lease).await.unwrap(),
            "a process that lost the lease cannot settle the row"
        );
        assert!(store.bitrix24_mark_add_sent(first_add.outbox_id, "c", later_lease).await.unwrap());
        assert!(store.bitrix24_delivered(first_add.outbox_id, "c", first, Some(77), after_lease).await.unwrap());
        assert_eq!(store.bitrix24_lead_id(first).await.unwrap(), Some(77));

        let update = store.bitrix24_claim("c", after_lease, later_lease, 10).await.unwrap();
        assert_eq!(update.len(), 1, "{update:?}");
        let update = &update[0];
        assert_eq!(
            (update.kind, update.stage, update.bitrix_id),
            (Bitrix24EventKind::Update, LeadStage::Qualification, Some(77))
        );
        let retry = |add_outcome_unknown, count_attempt| Bitrix24Retry {
            next_attempt_at: after_lease + Duration::seconds(5),
            error: "HTTP 500".into(),
            count_attempt,
            add_outcome_unknown,
        };
        assert!(store.bitrix24_retry_later(update.outbox_id, "c", &retry(None, true)).await.unwrap());
        assert!(store.bitrix24_claim("c", after_lease, later_lease, 10).await.unwrap().is_empty(), "not due yet");
        let due = after_lease + Duration::seconds(6);
        let update = store.bitrix24_claim("c", due, due + Duration::seconds(60), 10).await.unwrap();
        assert_eq!(update.len(), 1);
        assert_eq!(update[0].attempts, 1);
        assert!(store.bitrix24_failed(update[0].outbox_id, "c", "refused").await.unwrap());

        // An add whose answer was lost stays marked until an answer settles it.
        let second_add = retaken.iter().find(|e| e.lead.id == second).unwrap();
        assert!(store.bitrix24_mark_add_sent(second_add.outbox_id, "c", later_lease).await.unwrap());
        assert!(store.bitrix24_retry_later(second_add.outbox_id, "c", &retry(Some(true), true)).await.unwrap());
        let again = store.bitrix24_claim("c", due, due + Duration::seconds(60), 10).await.unwrap();
        assert!(again[0].add_outcome_unknown);
        assert!(store.bitrix24_retry_later(again[0].outbox_id, "c", &retry(None, false)).await.unwrap());
        let again = store.bitrix24_claim("c", due, due + Duration::seconds(60), 10).await.unwrap();
        assert!(again[0].add_outcome_unknown, "a step that sent no add keeps the mark");
        assert_eq!(again[0].attempts, 1, "a rate-limit wait is not an attempt");

        let counts = store.bitrix24_outbox_counts().await.unwrap();
        assert_eq!((counts.pending, counts.delivered, counts.failed), (1, 1, 1));
    }

    #[tokio::test]
    async fn sqlite_outbox_is_leased_ordered_and_counted() {
        outbox_is_leased_ordered_and_counted(&TestDb::sqlite().await).await;
    }

    #[tokio::test]
    async fn postgres_outbox_is_leased_ordered_and_counted() {
        let Some(db) = TestDb::postgres().await else { return };
        outbox_is_leased_ordered_and_counted(&db).await;
    }
}
