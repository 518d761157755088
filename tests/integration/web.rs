//! Access control of the web UI over real HTTP against `leadsift run`:
//! every page refuses anonymous and lower-role requests, logins need the
//! right password and the login form's CSRF token, every POST needs the
//! session's CSRF token, and logout or a disabled user ends the session.

use leadsift_integration_tests::TestDb;
use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};

use crate::pipeline::Daemon;

pub(crate) const PASSWORD: &str = "correct horse battery";

pub(crate) struct Web {
    pub(crate) db: TestDb,
    pub(crate) daemon: Daemon,
    client: reqwest::Client,
    config: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

/// The value of `name="csrf" value="…"` in a page.
fn csrf_field(page: &str) -> String {
    let start = page.find("name=\"csrf\" value=\"").expect("a CSRF field") + "name=\"csrf\" value=\"".len();
    page[start..].split('"').next().unwrap().to_owned()
}

fn set_cookie(response: &reqwest::Response, name: &str) -> Option<String> {
    response.headers().get_all(SET_COOKIE).iter().filter_map(|v| v.to_str().ok()).find_map(|v| {
        let (pair, _) = v.split_once(';').unwrap_or((v, ""));
        pair.strip_prefix(name)?.strip_prefix('=').map(str::to_owned)
    })
}

impl Web {
    pub(crate) async fn start() -> Web {
        let db = TestDb::sqlite().await;
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("leadsift.toml");
        let rules = dir.path().join("rules.toml");
        std::fs::copy(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/default.toml"), &rules).unwrap();
        std::fs::write(
            &config,
            format!(
                "[database]\nurl = \"{}\"\n[http]\nlisten = \"127.0.0.1:0\"\n[intake]\ndrop_folder = \"\"\n\
                 [web]\nsecure_cookies = false\n[rules]\npath = \"{}\"\npoll_ms = 100\n",
                db.url,
                rules.display()
            ),
        )
        .unwrap();
        for (user, role) in [("vera", "viewer"), ("mark", "manager"), ("ada", "admin")] {
            let output = leadsift_integration_tests::leadsift_command()
                .args(["--config", config.to_str().unwrap(), "users", "add", user, "--role", role])
                .env("LEADSIFT_PASSWORD", PASSWORD)
                .output()
                .unwrap();
            assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        }
        let mut command = leadsift_integration_tests::leadsift_command();
        command.args(["--config", config.to_str().unwrap(), "run"]);
        let daemon = Daemon::spawn(&mut command);
        let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        Web { db, daemon, client, config, _dir: dir }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.daemon.address)
    }

    /// Logs in; returns the session cookie and the page CSRF token.
    async fn login(&self, user: &str, password: &str) -> Result<(String, String), StatusCode> {
        let form = self.client.get(self.url("/login")).send().await.unwrap();
        assert_eq!(form.status(), StatusCode::OK);
        let login_cookie = set_cookie(&form, "leadsift_login_csrf").expect("a login CSRF cookie");
        let csrf = csrf_field(&form.text().await.unwrap());
        let response = self
            .client
            .post(self.url("/login"))
            .header(COOKIE, format!("leadsift_login_csrf={login_cookie}"))
            .form(&[("username", user), ("password", password), ("csrf", &csrf), ("next", "/leads")])
            .send()
            .await
            .unwrap();
        if response.status() != StatusCode::SEE_OTHER {
            return Err(response.status());
        }
        assert_eq!(response.headers()[LOCATION], "/leads");
        let raw =
            response.headers().get_all(SET_COOKIE).iter().map(|v| v.to_str().unwrap().to_owned()).collect::<Vec<_>>();
        let session_header = raw.iter().find(|c| c.starts_with("leadsift_session=")).unwrap();
        assert!(session_header.contains("HttpOnly") && session_header.contains("SameSite=Strict"), "{session_header}");
        let session = set_cookie(&response, "leadsift_session").unwrap();
        let home = self.get("/", Some(&session)).await;
        assert_eq!(home.status(), StatusCode::OK);
        let csrf = csrf_field(&home.text().await.unwrap());
        Ok((session, csrf))
    }

    async fn get(&self, path: &str, session: Option<&str>) -> reqwest::Response {
        let mut request = self.client.get(self.url(path));
        if let Some(session) = session {
            request = request.header(COOKIE, format!("leadsift_session={session}"));
        }
        request.send().await.unwrap()
    }

    async fn post(&self, path: &str, session: Option<&str>, csrf: Option<&str>) -> reqwest::Response {
        let mut request = self.client.post(self.url(path));
        if let Some(session) = session {
            request = request.header(COOKIE, format!("leadsift_session={session}"));
        }
        let fields: Vec<(&str, &str)> = csrf.map(|c| vec![("csrf", c)]).unwrap_or_default();
        request.form(&fields).send().await.unwrap()
    }
}

#[tokio::test]
async fn every_page_refuses_anonymous_and_lower_roles() {
    let web = Web::start().await;
    // (path, the role it needs)
    let pages = [
        ("/", 0),
        ("/overview/live", 0),
        ("/reports", 0),
        ("/reports/export.csv", 0),
        ("/leads", 1),
        ("/leads/1", 1),
        ("/users", 2),
        ("/lists", 2),
        ("/rules", 2),
    ];

    assert_eq!(web.get("/healthz", None).await.status(), StatusCode::OK, "/healthz stays open");
    for (path, _) in pages {
        let response = web.get(path, None).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "anonymous GET {path}");
        assert!(response.headers()[LOCATION].to_str().unwrap().starts_with("/login?next="), "{path}");
        let forged = web.get(path, Some("not-a-session-token")).await;
        assert_eq!(forged.status(), StatusCode::SEE_OTHER, "forged session GET {path}");
    }
    assert_eq!(web.post("/logout", None, None).await.status(), StatusCode::UNAUTHORIZED);

    assert_eq!(web.login("vera", "wrong password!").await.unwrap_err(), StatusCode::UNAUTHORIZED);
    assert_eq!(web.login("nobody", PASSWORD).await.unwrap_err(), StatusCode::UNAUTHORIZED);
    for (rank, user) in ["vera", "mark", "ada"].into_iter().enumerate() {
        let (session, csrf) = web.login(user, PASSWORD).await.unwrap();
        for (path, needs) in pages {
            let status = web.get(path, Some(&session)).await.status();
            // There is no lead 1: a manager is let through to a 404.
            let found = if path == "/leads/1" { StatusCode::NOT_FOUND } else { StatusCode::OK };
            let expected = if rank >= needs { found } else { StatusCode::FORBIDDEN };
            assert_eq!(status, expected, "{user} GET {path}");
        }
        for (path, needs) in [
            ("/leads/1/move", 1),
            ("/leads/1/allowlist", 1),
            ("/lists/blacklist/add", 2),
            ("/lists/blacklist/remove", 2),
            ("/rules/test", 2),
        ] {
            let status = web.post(path, Some(&session), Some(&csrf)).await.status();
            if rank < needs {
                assert_eq!(status, StatusCode::FORBIDDEN, "{user} POST {path}");
            } else {
                // Let through (then refused for its empty form, or answered).
                assert!(
                    status != StatusCode::FORBIDDEN && status != StatusCode::UNAUTHORIZED,
                    "{user} POST {path}: {status}"
                );
            }
        }
        // POST needs the session's CSRF token.
        assert_eq!(web.post("/logout", Some(&session), None).await.status(), StatusCode::FORBIDDEN, "{user}");
        assert_eq!(web.post("/logout", Some(&session), Some("wrong")).await.status(), StatusCode::FORBIDDEN);
        assert_eq!(web.post("/logout", Some(&session), Some(&csrf)).await.status(), StatusCode::SEE_OTHER);
        assert_eq!(web.get("/", Some(&session)).await.status(), StatusCode::SEE_OTHER, "{user}: logged out");
    }
}

#[tokio::test]
async fn the_login_form_needs_its_csrf_cookie_and_a_disabled_user_is_locked_out() {
    let web = Web::start().await;
    let form = web.client.get(web.url("/login")).send().await.unwrap();
    let csrf = csrf_field(&form.text().await.unwrap());
    // The field without the matching cookie (a cross-site form post) is refused.
    let response = web
        .client
        .post(web.url("/login"))
        .form(&[("username", "ada"), ("password", PASSWORD), ("csrf", &csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);

    let (session, _) = web.login("mark", PASSWORD).await.unwrap();
    assert_eq!(web.get("/leads", Some(&session)).await.status(), StatusCode::OK);
    let output = leadsift_integration_tests::leadsift_command()
        .args(["--config", web.config.to_str().unwrap(), "users", "set", "mark", "--disable"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(web.get("/leads", Some(&session)).await.status(), StatusCode::SEE_OTHER, "session ended");
    assert_eq!(web.login("mark", PASSWORD).await.unwrap_err(), StatusCode::UNAUTHORIZED);
    // Open redirects are not followed: `next` must be a path of this site.
    let form = web.client.get(web.url("/login?next=//evil.example/")).send().await.unwrap();
    assert!(!form.text().await.unwrap().contains("evil.example"));
}

/// The manager's loop: the unsure lead is first in the review queue, junking
/// it as spam takes it out, labels it for the model and blacklists its
/// sender, which the admin then sees on the lists page with its audit line.
#[tokio::test]
async fn junking_a_review_lead_takes_it_out_of_the_queue_and_blacklists_the_sender() {
    use leadsift_core::{
        Channel, Classification, DedupKey, EmailAddress, LeadStore, Message, RoutingPolicy, Sender, Triaged, Verdict,
    };
    let web = Web::start().await;
    let mut message =
        Message::new(Channel::Email, DedupKey::from_upstream_id(Channel::Email, "rv1"), chrono::Utc::now());
    message.sender =
        Sender { email: Some(EmailAddress::parse("seo-offers@promo.example").unwrap()), ..Sender::default() };
    message.subject = Some("Продвижение сайта в ТОП".into());
    message.text = "Выведем ваш сайт в топ Яндекса за 7 дней".into();
    let classification = Classification { verdict: Verdict::Spam, confidence: 0.6, reasons: vec![] };
    let route = RoutingPolicy::default().route(&classification);
    let item = Triaged { message, classification, route, source: None, campaign: None };
    web.db.store.record_triage(&[item], chrono::Utc::now()).await.unwrap();
    let lead = web
        .db
        .store
        .leads(&leadsift_core::LeadFilter { needs_review: Some(true), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(lead.len(), 1, "an unsure verdict is a lead to review");
    let id = lead[0].id;

    let (session, _) = web.login("mark", PASSWORD).await.unwrap();
    let board = web.get("/leads", Some(&session)).await.text().await.unwrap();
    assert!(board.contains(&format!("data-lead=\"{id}\"")) && board.contains("Продвижение сайта"), "{board}");
    let page = web.get(&format!("/leads/{id}"), Some(&session)).await.text().await.unwrap();
    assert!(page.contains("seo-offers@promo.example") && page.contains("Выведем ваш сайт"), "{page}");
    let csrf = csrf_field(&page);
    let response = web
        .client
        .post(web.url(&format!("/leads/{id}/move")))
        .header(COOKIE, format!("leadsift_session={session}"))
        .form(&[("csrf", csrf.as_str()), ("stage", "junk"), ("junk_reason", "spam"), ("blacklist", "on")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let board = web.get("/leads", Some(&session)).await.text().await.unwrap();
    assert!(!board.contains(&format!("data-lead=\"{id}\"")), "the junked lead left the queue");
    let lead = web.db.store.lead(id).await.unwrap().unwrap();
    assert_eq!((lead.stage, lead.junk_reason), (leadsift_core::LeadStage::Junk, Some(leadsift_core::JunkReason::Spam)));
    let history = web.db.store.lead_history(id).await.unwrap();
    assert_eq!(history.last().unwrap().actor, "mark");
    let labels = web.db.store.feedback(0, 10).await.unwrap();
    assert_eq!(labels.len(), 1, "junking as spam is feedback for the model");

    // A manager can also allowlist a sender from the lead page.
    let page = web.get(&format!("/leads/{id}"), Some(&session)).await.text().await.unwrap();
    let allowlisted = web.post(&format!("/leads/{id}/allowlist"), Some(&session), Some(&csrf_field(&page))).await;
    assert_eq!(allowlisted.status(), StatusCode::SEE_OTHER);

    let (admin, _) = web.login("ada", PASSWORD).await.unwrap();
    let overview = web.get("/overview/live", Some(&admin)).await.text().await.unwrap();
    assert!(overview.contains("id=\"verdict-mix\"") && overview.contains("<title>spam: 1</title>"), "{overview}");
    assert!(overview.contains("email · spam"), "stored totals: {overview}");
    let lists = web.get("/lists", Some(&admin)).await.text().await.unwrap();
    assert!(
        lists.contains("seo-offers@promo.example") && lists.contains(&format!("lead {id} junked as spam")),
        "{lists}"
    );
    assert!(lists.contains(&format!("allowlisted from lead {id}")), "{lists}");
}

/// `/metrics` is for this machine, the scraper's network or a token holder.
#[tokio::test]
async fn metrics_need_a_token_or_a_trusted_network() {
    let db = TestDb::sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("leadsift.toml");
    std::fs::write(
        &config,
        format!(
            "[database]\nurl = \"{}\"\n[http]\nlisten = \"127.0.0.1:0\"\nmetrics_networks = []\n\
             metrics_token = \"scrape-token-1\"\n[intake]\ndrop_folder = \"\"\n",
            db.url
        ),
    )
    .unwrap();
    let mut command = leadsift_integration_tests::leadsift_command();
    command.args(["--config", config.to_str().unwrap(), "run"]);
    let daemon = Daemon::spawn(&mut command);
    let client = reqwest::Client::new();
    let url = format!("http://{}/metrics", daemon.address);
    assert_eq!(client.get(&url).send().await.unwrap().status(), StatusCode::UNAUTHORIZED);
    assert_eq!(client.get(&url).bearer_auth("wrong").send().await.unwrap().status(), StatusCode::UNAUTHORIZED);
    let response = client.get(&url).bearer_auth("scrape-token-1").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.text().await.unwrap().contains("leadsift_queue_depth"));
    let healthz = client.get(format!("http://{}/healthz", daemon.address)).send().await.unwrap();
    assert_eq!(healthz.status(), StatusCode::OK, "/healthz needs nothing");
}

/// The reports page shows the scenario's figures as tables and charts, and
/// its CSV export is byte for byte what `leadsift report --format csv` prints.
#[tokio::test]
async fn the_reports_page_and_its_csv_match_the_cli() {
    let web = Web::start().await;
    crate::sales::build_scenario(&web.db.store).await;
    let (session, _) = web.login("vera", PASSWORD).await.unwrap();
    let page = web.get("/reports?from=2026-11-01&to=2026-11-30", Some(&session)).await;
    assert_eq!(page.status(), StatusCode::OK);
    let page = page.text().await.unwrap();
    for needle in ["report-client_mix", "report-spend_vs_revenue", "55000.50", "266.7%", "<svg class=\"chart\""] {
        assert!(page.contains(needle), "reports page lacks {needle}");
    }
    let csv = web.get("/reports/export.csv?from=2026-11-01&to=2026-11-30", Some(&session)).await;
    assert_eq!(csv.status(), StatusCode::OK);
    assert!(csv.headers()["content-disposition"].to_str().unwrap().contains("leadsift-2026-11-01-2026-11-30.csv"));
    let csv = csv.text().await.unwrap();
    let output = leadsift_integration_tests::leadsift_command()
        .args(["--config", web.config.to_str().unwrap(), "report", "--from", "2026-11-01", "--to", "2026-11-30"])
        .args(["--format", "csv"])
        .output()
        .unwrap();
    assert_eq!(csv, String::from_utf8(output.stdout).unwrap());
    let bad = web.get("/reports?from=2026-11-30&to=2026-11-01", Some(&session)).await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
}

/// The admin's rules loop: a pasted message under the current rules and a
/// draft, a dry run that counts the flips over stored messages, a broken
/// draft refused with its line, and a good draft saved and put in force.
#[tokio::test]
async fn a_rule_draft_is_tested_dry_run_and_saved() {
    use leadsift_core::{Channel, Classification, DedupKey, LeadStore, Message, RoutingPolicy, Triaged, Verdict};
    let web = Web::start().await;
    let mut stored = Vec::new();
    for i in 0..3 {
        let mut message = Message::new(
            Channel::Email,
            DedupKey::from_upstream_id(Channel::Email, &format!("pe{i}")),
            chrono::Utc::now(),
        );
        message.subject = Some(format!("Facade quote {i}"));
        message.text = "Please quote a facade for 300 m2, purple elephant project".into();
        let classification = Classification { verdict: Verdict::Inquiry, confidence: 0.9, reasons: vec![] };
        let route = RoutingPolicy::default().route(&classification);
        stored.push(Triaged { message, classification, route, source: None, campaign: None });
    }
    web.db.store.record_triage(&stored, chrono::Utc::now()).await.unwrap();

    let (admin, _) = web.login("ada", PASSWORD).await.unwrap();
    let page = web.get("/rules", Some(&admin)).await.text().await.unwrap();
    assert!(page.contains("BANK_1C_EXCHANGE") && page.contains("version = 1"), "rules and the file's text are shown");
    let csrf = csrf_field(&page);
    let current = std::fs::read_to_string(web._dir.path().join("rules.toml")).unwrap();
    let draft = format!(
        "{current}\n[[rule]]\nid = \"TEST_PURPLE_ELEPHANT\"\ndescription = \"test: purple elephants are spam\"\n\
         body = \'(?i)purple elephant\'\ndecide = \"spam\"\nconfidence = 0.99\n"
    );
    let post = |fields: Vec<(&'static str, String)>| {
        web.client.post(web.url("/rules/test")).header(COOKIE, format!("leadsift_session={admin}")).form(&fields).send()
    };
    let message = "Quote please\n\nWe need a purple elephant facade".to_owned();
    let response = post(vec![
        ("csrf", csrf.clone()),
        ("message", message.clone()),
        ("draft", draft.clone()),
        ("dry_run", "100".into()),
        ("action", "test".into()),
    ])
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let result = response.text().await.unwrap();
    assert!(result.contains("TEST_PURPLE_ELEPHANT"), "the draft's rule shows in the draft verdict");
    assert!(result.contains("<span id=\"flips\">3</span>"), "three stored messages would flip: {result}");

    let broken = post(vec![
        ("csrf", csrf.clone()),
        (
            "draft",
            format!("{current}\n[[rule]]\nid = \"BROKEN\"\ndescription = \"x\"\nbody = \'(\'\ndecide = \"spam\"\n"),
        ),
        ("action", "save".into()),
    ])
    .await
    .unwrap();
    assert_eq!(broken.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(broken.text().await.unwrap().contains("draft-errors"));
    assert_eq!(
        std::fs::read_to_string(web._dir.path().join("rules.toml")).unwrap(),
        current,
        "a broken draft is not written"
    );

    let saved = post(vec![("csrf", csrf.clone()), ("draft", draft.clone()), ("action", "save".into())]).await.unwrap();
    assert_eq!(saved.status(), StatusCode::OK);
    assert!(saved.text().await.unwrap().contains("id=\"saved\""));
    assert_eq!(std::fs::read_to_string(web._dir.path().join("rules.toml")).unwrap(), draft);
    let page = web.get("/rules", Some(&admin)).await.text().await.unwrap();
    assert!(page.contains("TEST_PURPLE_ELEPHANT"), "the saved rules are in force");
}
