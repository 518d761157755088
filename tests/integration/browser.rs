//! End to end in a real browser: Debian's Chromium, headless, driven over
//! WebDriver (chromedriver) against `leadsift run` on 127.0.0.1. A manager
//! logs in, finds the seeded unsure lead at the top of the review queue,
//! junks it as spam and sees it leave the queue; the admin finds the sender
//! on the blacklist and tries a rule draft in the tester. Screenshots of
//! the main pages go to `target/test-output/screenshots/`.
//!
//! Needs `chromium` and `chromium-driver` (scripts/services.sh installs
//! them); without them the test fails under CI and is skipped elsewhere.

use std::path::PathBuf;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use leadsift_core::{
    Channel, Classification, DedupKey, EmailAddress, LeadStore, Message, RoutingPolicy, Sender, Triaged, Verdict,
};
use leadsift_integration_tests::services_required;
use serde_json::json;

use crate::web::{PASSWORD, Web};

/// chromedriver on a free loopback port, killed on drop.
struct Driver {
    child: std::process::Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn driver() -> Option<Driver> {
    let binary = ["chromedriver", "/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
        .into_iter()
        .find(|b| std::process::Command::new(b).arg("--version").output().is_ok_and(|o| o.status.success()));
    let Some(binary) = binary else {
        let msg = "chromedriver not found: install Debian's chromium and chromium-driver (scripts/services.sh does)";
        assert!(!services_required(), "{msg}");
        eprintln!("SKIPPED: {msg}");
        return None;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = std::process::Command::new(binary)
        .args([format!("--port={port}"), "--allowed-ips=127.0.0.1".into()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    Some(Driver { child, url: format!("http://127.0.0.1:{port}") })
}

async fn browser(driver: &Driver) -> Client {
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        json!({"args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                        "--window-size=1280,1000", "--lang=en-US"]}),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        match ClientBuilder::new(connector).capabilities(capabilities.clone()).connect(&driver.url).await {
            Ok(client) => return client,
            Err(error) if std::time::Instant::now() < deadline => {
                eprintln!("waiting for chromedriver: {error}");
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            Err(error) => panic!("cannot start a Chromium session: {error}"),
        }
    }
}

fn screenshots() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-output/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn shot(client: &Client, name: &str) {
    let png = client.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "{name}: not a PNG");
    std::fs::write(screenshots().join(format!("{name}.png")), png).unwrap();
}

/// Logs in on the login page (opened first unless the browser is already on it).
async fn log_in(client: &Client, web: &Web, user: &str) {
    if client.current_url().await.unwrap().path() != "/login" {
        client.goto(&web.url("/login")).await.unwrap();
    }
    client.find(Locator::Css("input[name=username]")).await.unwrap().send_keys(user).await.unwrap();
    client.find(Locator::Css("input[name=password]")).await.unwrap().send_keys(PASSWORD).await.unwrap();
    client.find(Locator::Css("button[type=submit]")).await.unwrap().click().await.unwrap();
    client
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("header form[action='/logout']"))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_manager_junks_a_review_lead_and_an_admin_tries_a_rule_draft_in_chromium() {
    let Some(driver) = driver() else { return };
    let web = Web::start().await;
    let mut message =
        Message::new(Channel::Email, DedupKey::from_upstream_id(Channel::Email, "br1"), chrono::Utc::now());
    message.sender =
        Sender { email: Some(EmailAddress::parse("seo-wave@promo.example").unwrap()), ..Sender::default() };
    message.subject = Some("Раскрутка сайта".into());
    message.text = "Продвинем ваш сайт в ТОП-10 за неделю".into();
    let classification = Classification { verdict: Verdict::Spam, confidence: 0.6, reasons: vec![] };
    let route = RoutingPolicy::default().route(&classification);
    web.db
        .store
        .record_triage(&[Triaged { message, classification, route, source: None, campaign: None }], chrono::Utc::now())
        .await
        .unwrap();
    let lead_id = web
        .db
        .store
        .leads(&leadsift_core::LeadFilter { needs_review: Some(true), ..Default::default() })
        .await
        .unwrap()[0]
        .id;
    crate::sales::build_scenario(&web.db.store).await;

    let client = browser(&driver).await;
    client.goto(&web.url("/leads")).await.unwrap();
    assert!(client.current_url().await.unwrap().path().starts_with("/login"), "anonymous users land on the login page");
    shot(&client, "login").await;

    log_in(&client, &web, "mark").await;
    assert_eq!(client.current_url().await.unwrap().path(), "/leads", "back to the page asked for");
    let row = format!("table#review tr[data-lead='{lead_id}']");
    client.find(Locator::Css(&row)).await.expect("the unsure lead is in the review queue");
    shot(&client, "leads").await;
    client.find(Locator::Css(&format!("{row} a"))).await.unwrap().click().await.unwrap();
    client.wait().for_element(Locator::Id("junk")).await.unwrap();
    shot(&client, "lead").await;
    client.find(Locator::Id("junk")).await.unwrap().click().await.unwrap();
    client.wait().for_element(Locator::Id("restore")).await.expect("a junked lead offers restore");
    client.goto(&web.url("/leads")).await.unwrap();
    assert!(client.find(Locator::Css(&row)).await.is_err(), "the junked lead left the review queue");

    client.find(Locator::Css("header form[action='/logout'] button")).await.unwrap().click().await.unwrap();
    client.wait().for_element(Locator::Css("input[name=username]")).await.unwrap();
    log_in(&client, &web, "ada").await;
    client.goto(&web.url("/lists")).await.unwrap();
    let blacklist = client.find(Locator::Id("blacklist")).await.unwrap().text().await.unwrap();
    assert!(blacklist.contains("seo-wave@promo.example"), "the sender is on the blacklist: {blacklist}");
    shot(&client, "lists").await;

    client.goto(&web.url("/rules")).await.unwrap();
    let draft = client.find(Locator::Css("textarea[name=draft]")).await.unwrap();
    draft
        .send_keys("\n[[rule]]\nid = \"BROWSER_DRAFT\"\ndescription = \"draft: SEO offers are spam\"\nbody = '(?i)продвинем ваш сайт'\ndecide = \"spam\"\nconfidence = 0.99\n")
        .await
        .unwrap();
    client
        .find(Locator::Css("textarea[name=message]"))
        .await
        .unwrap()
        .send_keys("Предложение\n\nПродвинем ваш сайт в ТОП")
        .await
        .unwrap();
    client.find(Locator::Id("test")).await.unwrap().click().await.unwrap();
    client.wait().for_element(Locator::Css(".verdict")).await.unwrap();
    let verdicts = client.find_all(Locator::Css(".verdict")).await.unwrap();
    assert_eq!(verdicts.len(), 2, "current rules and the draft");
    let draft_verdict = verdicts[1].text().await.unwrap();
    assert!(draft_verdict.contains("BROWSER_DRAFT") && draft_verdict.contains("spam"), "{draft_verdict}");
    shot(&client, "rules").await;

    client.goto(&web.url("/reports?from=2026-11-01&to=2026-11-30")).await.unwrap();
    client.find(Locator::Css("#report-source_effectiveness svg.chart")).await.expect("a chart on the reports page");
    shot(&client, "reports").await;
    client.goto(&web.url("/")).await.unwrap();
    client.find(Locator::Id("verdict-mix")).await.unwrap();
    shot(&client, "overview").await;
    client.close().await.unwrap();
}
