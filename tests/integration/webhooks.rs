//! The intake webhooks of `leadsift run`, over real HTTP against the real
//! binary and a real SQLite store: authentication, bad input, telephony
//! semantics, source attribution, and the Telegram `getUpdates` poller
//! against a fake Bot API server.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use leadsift_integration_tests::TestDb;
use serde_json::{Value, json};

use crate::pipeline::{Daemon, wait_for};

const EVENT_TOKEN: &str = "event-token-1";
const TG_SECRET: &str = "tg-secret-1";
const WA_VERIFY: &str = "wa-verify-1";
const WA_SECRET: &str = "wa-app-secret-1";
const ZD_SECRET: &str = "zd-secret-1";

struct Setup {
    db: TestDb,
    daemon: Daemon,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

/// A daemon with every channel configured, plus `extra` config lines.
async fn start(extra: &str) -> Setup {
    start_with_env(extra, &[]).await
}

async fn start_with_env(extra: &str, env: &[(&str, &str)]) -> Setup {
    let db = TestDb::sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("leadsift.toml");
    let rules = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/default.toml");
    std::fs::write(
        &config,
        format!(
            r#"[database]
url = "{url}"
[rules]
path = "{rules}"
[http]
listen = "127.0.0.1:0"
[triage]
idle_poll_ms = 50
[intake]
drop_folder = ""
[webhooks]
max_body_bytes = 4096
[webhooks.event]
token = "{EVENT_TOKEN}"
[webhooks.form]
rate_limit_per_minute = 4
allowed_origins = ["https://shop.example"]
[webhooks.whatsapp]
verify_token = "{WA_VERIFY}"
app_secret = "{WA_SECRET}"
[webhooks.zadarma]
secret = "{ZD_SECRET}"
[[attribution.destinations]]
destination = "+7 (495) 123-45-01"
source = "yandex_direct"
campaign = "fasad_msk"
[[attribution.destinations]]
destination = "form:calc"
source = "vk_ads"
campaign = "calculator"
[[attribution.destinations]]
destination = "telegram:shop_bot"
source = "telegram_bot"
{extra}
"#,
            url = db.url,
            rules = rules.display(),
        ),
    )
    .unwrap();
    let mut command = leadsift_integration_tests::leadsift_command();
    command.args(["--config", config.to_str().unwrap(), "run"]);
    for (key, value) in env {
        command.env(key, value);
    }
    let daemon = Daemon::spawn(&mut command);
    Setup { db, daemon, client: reqwest::Client::new(), _dir: dir }
}

impl Setup {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.daemon.address)
    }

    async fn post(&self, path: &str, headers: &[(&str, &str)], body: impl Into<reqwest::Body>) -> (u16, String) {
        let mut request = self.client.post(self.url(path)).body(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned())).fetch_one(self.db.store.pool()).await.unwrap()
    }

    async fn text(&self, sql: &str) -> Option<String> {
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned())).fetch_one(self.db.store.pool()).await.unwrap()
    }

    /// Nothing reached the store: no message, nothing queued.
    async fn assert_nothing_stored(&self, what: &str) {
        // Give a wrongly accepted request time to be triaged.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(self.count("SELECT COUNT(*) FROM messages").await, 0, "{what}: a message was stored");
        assert_eq!(self.count("SELECT COUNT(*) FROM inbox").await, 0, "{what}: a message was queued");
    }

    async fn wait_messages(&self, n: i64) {
        wait_for(&format!("{n} stored messages"), async || self.count("SELECT COUNT(*) FROM messages").await >= n)
            .await;
    }

    async fn metrics(&self) -> String {
        self.daemon.get("/metrics").await.1
    }
}

fn telegram_update(update_id: i64, user_id: i64, text: &str) -> String {
    json!({
        "update_id": update_id,
        "message": {"message_id": update_id * 10, "date": 1_764_000_000, "text": text,
                    "from": {"id": user_id, "is_bot": false, "first_name": "Анна"},
                    "chat": {"id": user_id, "type": "private"}}
    })
    .to_string()
}

#[tokio::test]
async fn telegram_webhook_needs_the_secret_and_start_links_carry_the_campaign() {
    // The secret comes from the environment, as in production.
    let s = start_with_env(
        "[webhooks.telegram]\nbot_username = \"shop_bot\"\n",
        &[("LEADSIFT__WEBHOOKS__TELEGRAM__SECRET_TOKEN", TG_SECRET)],
    )
    .await;
    let inquiry = telegram_update(1, 58_112_093, "Здравствуйте! Сколько стоит доставка в Казань?");

    let (status, body) =
        s.post("/intake/telegram", &[("X-Telegram-Bot-Api-Secret-Token", "wrong")], inquiry.clone()).await;
    assert_eq!(status, 401, "{body}");
    let (status, _) = s.post("/intake/telegram", &[], inquiry.clone()).await;
    assert_eq!(status, 401);
    s.assert_nothing_stored("a forged Telegram update").await;

    let secret = [("X-Telegram-Bot-Api-Secret-Token", TG_SECRET), ("Content-Type", "application/json")];
    let (status, body) = s.post("/intake/telegram", &secret, inquiry).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = s.post("/intake/telegram", &secret, telegram_update(2, 700_100, "/start tg_promo")).await;
    assert_eq!(status, 200, "{body}");
    wait_for("two leads", async || s.count("SELECT COUNT(*) FROM leads").await == 2).await;
    assert_eq!(s.count("SELECT COUNT(*) FROM leads WHERE stage = 'contact_client'").await, 2);
    assert_eq!(
        s.text("SELECT campaign FROM leads WHERE source = 'telegram_bot' AND campaign IS NOT NULL").await.as_deref(),
        Some("tg_promo"),
        "the /start payload names the campaign, the bot the source"
    );
    assert!(
        s.metrics().await.contains("leadsift_webhook_requests_total{endpoint=\"telegram\",outcome=\"unauthorized\"} 2")
    );
}

#[tokio::test]
async fn whatsapp_verifies_the_challenge_and_the_body_signature() {
    let s = start("").await;
    let (status, body) = s
        .daemon
        .get(&format!("/intake/whatsapp?hub.mode=subscribe&hub.verify_token={WA_VERIFY}&hub.challenge=1158201444"))
        .await;
    assert_eq!((status, body.as_str()), (200, "1158201444"));
    let (status, _) = s.daemon.get("/intake/whatsapp?hub.mode=subscribe&hub.verify_token=guess&hub.challenge=1").await;
    assert_eq!(status, 401);

    let notification = json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "74951234502", "phone_number_id": "1055"},
            "contacts": [{"profile": {"name": "Oleg"}, "wa_id": "79162045581"}],
            "messages": [{"from": "79162045581", "id": "wamid.A1", "timestamp": "1764000000",
                          "type": "text", "text": {"body": "Добрый день, нужна консультация по монтажу фасада"}}]
        }}]}]
    })
    .to_string();
    let good = leadsift_webhooks::signature::hub_signature_256(WA_SECRET.as_bytes(), notification.as_bytes());
    let forged = leadsift_webhooks::signature::hub_signature_256(b"not-the-secret", notification.as_bytes());
    let (status, _) = s.post("/intake/whatsapp", &[("X-Hub-Signature-256", &forged)], notification.clone()).await;
    assert_eq!(status, 401);
    let (status, _) = s.post("/intake/whatsapp", &[], notification.clone()).await;
    assert_eq!(status, 401);
    s.assert_nothing_stored("a WhatsApp POST with a bad signature").await;

    let (status, body) = s.post("/intake/whatsapp", &[("X-Hub-Signature-256", &good)], notification).await;
    assert_eq!(status, 200, "{body}");
    s.wait_messages(1).await;
    assert_eq!(
        s.text("SELECT sender_phone FROM messages WHERE dedup_key = 'messenger:whatsapp:wamid.A1'").await.as_deref(),
        Some("+79162045581")
    );

    // A delivery status callback is acknowledged and ignored.
    let statuses =
        json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{"field": "messages",
        "value": {"statuses": [{"id": "wamid.A1", "status": "read"}]}}]}]})
        .to_string();
    let signature = leadsift_webhooks::signature::hub_signature_256(WA_SECRET.as_bytes(), statuses.as_bytes());
    let (status, body) = s.post("/intake/whatsapp", &[("X-Hub-Signature-256", &signature)], statuses).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("ignored"), "{body}");
}

fn zadarma_form(pairs: &[(&str, &str)]) -> (String, String) {
    let fields: HashMap<String, String> = pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    let signature = leadsift_webhooks::zadarma::signature(ZD_SECRET, &fields);
    let mut serializer = String::new();
    for (k, v) in pairs {
        if !serializer.is_empty() {
            serializer.push('&');
        }
        serializer.push_str(&format!("{k}={}", urlencode(v)));
    }
    (serializer, signature)
}

fn urlencode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            b' ' => "+".to_owned(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn call_end(pbx_call_id: &str, caller: &str, duration: &str, disposition: &str) -> Vec<(&'static str, String)> {
    vec![
        ("event", "NOTIFY_END".to_owned()),
        ("call_start", "2026-11-27 10:15:00".to_owned()),
        ("pbx_call_id", pbx_call_id.to_owned()),
        ("caller_id", caller.to_owned()),
        ("called_did", "74951234501".to_owned()),
        ("duration", duration.to_owned()),
        ("disposition", disposition.to_owned()),
    ]
}

async fn post_call(s: &Setup, fields: &[(&'static str, String)]) -> (u16, String) {
    let pairs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (body, signature) = zadarma_form(&pairs);
    s.post("/intake/zadarma", &[("Signature", &signature), ("Content-Type", "application/x-www-form-urlencoded")], body)
        .await
}

#[tokio::test]
async fn zadarma_missed_call_becomes_a_call_back_lead_attributed_to_the_tracking_number() {
    let s = start("").await;
    let (status, body) = s.daemon.get("/intake/zadarma?zd_echo=a1b2c3").await;
    assert_eq!((status, body.as_str()), (200, "a1b2c3"));

    // Unsigned and wrongly signed notifications store nothing.
    let missed = call_end("in_1001", "+79162045581", "0", "no answer");
    let pairs: Vec<(&str, &str)> = missed.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (body, signature) = zadarma_form(&pairs);
    let (status, _) = s.post("/intake/zadarma", &[], body.clone()).await;
    assert_eq!(status, 401);
    let tampered = body.replace("%2B79162045581", "%2B79160000000");
    let (status, _) = s.post("/intake/zadarma", &[("Signature", &signature)], tampered).await;
    assert_eq!(status, 401, "the signature covers the caller");
    let (status, _) = s.post("/intake/zadarma", &[("Signature", "bm90IGEgc2lnbmF0dXJl")], body.clone()).await;
    assert_eq!(status, 401, "a wrong signature");
    s.assert_nothing_stored("a forged call notification").await;

    // NOTIFY_START is acknowledged, the outcome comes with NOTIFY_END.
    let start_fields = vec![
        ("event", "NOTIFY_START".to_owned()),
        ("call_start", "2026-11-27 10:15:00".to_owned()),
        ("caller_id", "+79162045581".to_owned()),
        ("called_did", "74951234501".to_owned()),
    ];
    let (status, body) = post_call(&s, &start_fields).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = post_call(&s, &missed).await;
    assert_eq!(status, 200, "{body}");
    wait_for("the call-back lead", async || s.count("SELECT COUNT(*) FROM leads").await == 1).await;
    assert_eq!(s.count("SELECT COUNT(*) FROM messages").await, 1, "NOTIFY_START stored nothing");
    assert_eq!(
        s.text("SELECT stage || '/' || source || '/' || campaign FROM leads").await.as_deref(),
        Some("contact_client/yandex_direct/fasad_msk")
    );
    assert_eq!(s.text("SELECT verdict FROM messages").await.as_deref(), Some("inquiry"));
}

#[tokio::test]
async fn repeated_short_calls_from_one_number_become_spam() {
    let s = start("").await;
    for (i, id) in ["in_2001", "in_2002", "in_2003"].iter().enumerate() {
        let (status, body) = post_call(&s, &call_end(id, "+79031112233", "3", "cancel")).await;
        assert_eq!(status, 200, "{body}");
        // The count is taken from stored calls: let each one be triaged first.
        s.wait_messages(i as i64 + 1).await;
    }
    let verdict = |id: &str| format!("SELECT verdict FROM messages WHERE dedup_key = 'call:{id}'");
    assert_eq!(s.text(&verdict("in_2001")).await.as_deref(), Some("inquiry"), "a first missed call is a lead");
    assert_eq!(s.text(&verdict("in_2002")).await.as_deref(), Some("inquiry"), "a second try is a person");
    let reasons = s.text("SELECT reasons FROM messages WHERE dedup_key = 'call:in_2003'").await.unwrap_or_default();
    assert_eq!(s.text(&verdict("in_2003")).await.as_deref(), Some("spam"), "reasons: {reasons}");
    assert!(
        s.text("SELECT reasons FROM messages WHERE dedup_key = 'call:in_2003'")
            .await
            .unwrap()
            .contains("CALL_REPEATED_SHORT")
    );

    // Another number is not affected; a robocall transcript is spam on the first call.
    let mut robocall = call_end("in_3001", "+79035554433", "20", "answered");
    robocall.push(("transcript", "Это автоматическое сообщение. Для соединения с оператором нажмите 1.".to_owned()));
    let (status, body) = post_call(&s, &robocall).await;
    assert_eq!(status, 200, "{body}");
    s.wait_messages(4).await;
    assert_eq!(s.text(&verdict("in_3001")).await.as_deref(), Some("spam"));
}

#[tokio::test]
async fn web_form_honeypot_rate_limit_cors_and_utm_override() {
    let s = start("").await;
    let form = [("Content-Type", "application/x-www-form-urlencoded"), ("Origin", "https://shop.example")];
    let (status, _) =
        s.post("/intake/form", &form, "name=Bot&phone=89161234567&text=hi&website=http%3A%2F%2Fspam.example").await;
    assert_eq!(status, 200, "a bot is told nothing");

    let response = s
        .client
        .post(s.url("/intake/form"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .header("Origin", "https://shop.example")
        .body("name=%D0%98%D0%B2%D0%B0%D0%BD&phone=8+916+204-55-81&text=%D0%A0%D0%B0%D1%81%D1%81%D1%87%D0%B8%D1%82%D0%B0%D0%B9%D1%82%D0%B5+%D1%81%D1%82%D0%BE%D0%B8%D0%BC%D0%BE%D1%81%D1%82%D1%8C&form_id=calc")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers().get("access-control-allow-origin").unwrap(), "https://shop.example");

    let json_form = json!({"name": "Maria", "email": "maria@firm.example", "text": "Please send a price quote",
                           "form_id": "calc", "utm_source": "google", "utm_campaign": "brand"});
    let (status, body) = s.post("/intake/form", &[("Content-Type", "application/json")], json_form.to_string()).await;
    assert_eq!(status, 200, "{body}");
    s.wait_messages(2).await;
    assert_eq!(s.count("SELECT COUNT(*) FROM messages").await, 2, "the honeypot submission was not stored");
    assert_eq!(
        s.text("SELECT source || '/' || campaign FROM leads WHERE source = 'vk_ads'").await.as_deref(),
        Some("vk_ads/calculator"),
        "the form id gives source and campaign"
    );
    assert_eq!(
        s.text("SELECT source || '/' || campaign FROM leads WHERE source = 'google'").await.as_deref(),
        Some("google/brand"),
        "UTM tags override the form's attribution"
    );

    // Three submissions so far from 127.0.0.1; the limit is 4 a minute.
    let (status, _) = s.post("/intake/form", &form, "phone=89160000001&text=again").await;
    assert_eq!(status, 200);
    let (status, _) = s.post("/intake/form", &form, "phone=89160000002&text=and+again").await;
    assert_eq!(status, 429);
    assert!(s.metrics().await.contains("leadsift_webhook_requests_total{endpoint=\"form\",outcome=\"honeypot\"} 1"));

    // A preflight from an unknown origin is refused.
    let preflight = s
        .client
        .request(reqwest::Method::OPTIONS, s.url("/intake/form"))
        .header("Origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status().as_u16(), 403);
}

#[tokio::test]
async fn bad_input_gets_401_413_or_400_with_a_quarantine_record() {
    let s = start("").await;
    let auth = format!("Bearer {EVENT_TOKEN}");
    let event = json!({"channel": "call", "id": "pbx-1", "from": {"phone": "+79162045581"}, "to": "+74951234501",
                       "text": "Хочу заказать монтаж фасада", "call": {"duration_secs": 120, "answered": true}})
    .to_string();
    let (status, _) = s.post("/intake/event", &[("Authorization", "Bearer nope")], event.clone()).await;
    assert_eq!(status, 401);
    let (status, _) = s.post("/intake/event", &[], event.clone()).await;
    assert_eq!(status, 401);

    let huge = json!({"channel": "webform", "text": "x".repeat(10_000)}).to_string();
    let (status, _) = s.post("/intake/event", &[("Authorization", &auth)], huge).await;
    assert_eq!(status, 413);
    s.assert_nothing_stored("an oversized event").await;

    let (status, body) = s.post("/intake/event", &[("Authorization", &auth)], "{\"channel\": \"call\", oops}").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(s.count("SELECT COUNT(*) FROM quarantine WHERE origin = 'webhook:event'").await, 1);
    let reason = s.text("SELECT error FROM quarantine").await.unwrap();
    assert!(reason.contains("JSON"), "{reason}");
    let (status, _) = s.post("/intake/form", &[("Content-Type", "application/json")], "[not, an, object").await;
    assert_eq!(status, 400);
    assert_eq!(s.count("SELECT COUNT(*) FROM quarantine").await, 2);
    let metrics = s.metrics().await;
    assert!(
        metrics.contains("leadsift_webhook_requests_total{endpoint=\"event\",outcome=\"malformed\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("leadsift_quarantined_total{stage=\"intake\"} 2"), "{metrics}");
    assert!(
        metrics.contains("leadsift_webhook_requests_total{endpoint=\"event\",outcome=\"too_large\"} 1"),
        "{metrics}"
    );

    // A good event goes through and is attributed to its tracking number.
    let (status, body) = s.post("/intake/event", &[("Authorization", &auth)], event).await;
    assert_eq!(status, 200, "{body}");
    wait_for("the lead", async || s.count("SELECT COUNT(*) FROM leads").await == 1).await;
    assert_eq!(s.text("SELECT source FROM leads").await.as_deref(), Some("yandex_direct"));
}

/// A fake Bot API: serves two updates, then empty long polls; records the offsets asked for.
async fn fake_bot_api(offsets: Arc<Mutex<Vec<Option<i64>>>>) -> String {
    use axum::extract::{Query, State};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .route(
            "/bot123:secret/getUpdates",
            axum::routing::get(
                async |State(offsets): State<Arc<Mutex<Vec<Option<i64>>>>>,
                       Query(query): Query<HashMap<String, String>>| {
                    let offset = query.get("offset").and_then(|o| o.parse::<i64>().ok());
                    offsets.lock().unwrap().push(offset);
                    let updates: Vec<Value> = if offset.unwrap_or(0) <= 41 {
                        vec![
                            serde_json::from_str(&telegram_update(41, 500, "Нужна консультация по доставке")).unwrap(),
                            serde_json::from_str(&telegram_update(42, 501, "Сколько стоит установка окон?")).unwrap(),
                        ]
                    } else {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        Vec::new()
                    };
                    axum::Json(json!({"ok": true, "result": updates}))
                },
            ),
        )
        .with_state(offsets);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{address}")
}

#[tokio::test]
async fn telegram_poller_stores_updates_then_confirms_the_offset() {
    let offsets = Arc::new(Mutex::new(Vec::new()));
    let api = fake_bot_api(Arc::clone(&offsets)).await;
    let s = start(&format!(
        "[webhooks.telegram]\npolling = true\nbot_token = \"123:secret\"\napi_base_url = \"{api}\"\n\
         poll_timeout_secs = 1\nbot_username = \"shop_bot\"\n"
    ))
    .await;
    s.wait_messages(2).await;
    wait_for("the confirming offset", async || offsets.lock().unwrap().contains(&Some(43))).await;
    let seen = offsets.lock().unwrap().clone();
    assert_eq!(seen.first(), Some(&None), "the first poll has no offset");
    assert!(!seen.contains(&Some(42)), "offsets only move past stored updates: {seen:?}");
    assert_eq!(s.count("SELECT COUNT(*) FROM messages WHERE dedup_key LIKE 'messenger:telegram:%'").await, 2);
    assert_eq!(s.count("SELECT COUNT(*) FROM leads WHERE source = 'telegram_bot'").await, 2);
    assert!(!s.daemon.log_contains("123:secret"), "the bot token never appears in the log");
}
