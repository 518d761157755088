//! `leadsift-bench report`: the management reports over a large
//! PostgreSQL store.
//!
//! Creates a fresh database, applies the real migrations, and seeds it
//! with SQL (`generate_series`, so seeding takes seconds, not the hours
//! triage would): contacts, leads over one year with every stage, source,
//! channel and campaign mix, messages (five per lead on average, plus
//! newsletters without a lead) with a payload of realistic size, the
//! stage history triage and people write, deals with outcomes and amounts,
//! daily ad spend per source and campaign, and blacklist entries. After
//! `ANALYZE` it times `LeadStore::report` — every report of one period —
//! for a month and for the whole year, several rounds each.

use std::time::Instant;

use anyhow::Context;
use chrono::{FixedOffset, NaiveDate};
use leadsift_core::{Currency, LeadStore, ReportPeriod};
use leadsift_store::{SqlStore, StoreSettings};
use sqlx::Connection;

#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// Leads to seed (spread over 2026).
    #[arg(long, default_value_t = 200_000)]
    leads: i64,
    /// Messages to seed.
    #[arg(long, default_value_t = 1_000_000)]
    messages: i64,
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// PostgreSQL server to create the benchmark database on.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    admin_url: String,
    /// Keep the database afterwards (its name is printed).
    #[arg(long)]
    keep: bool,
    /// Also time the web UI's overview and reports pages, served by a real
    /// `leadsift run` on the seeded database (request to last byte).
    #[arg(long)]
    pages: bool,
    /// The leadsift binary for --pages (default: next to this one).
    #[arg(long)]
    leadsift: Option<std::path::PathBuf>,
}

/// 2026-01-01T00:00:00Z and one year, in milliseconds.
const YEAR_START_MS: i64 = 1_767_225_600_000;
const YEAR_MS: i64 = 365 * 86_400_000;

pub fn run(args: ReportArgs) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(run_async(args))
}

async fn run_async(args: ReportArgs) -> anyhow::Result<()> {
    let name = format!("leadsift_bench_report_{}", std::process::id());
    let mut admin = sqlx::PgConnection::connect(&args.admin_url)
        .await
        .with_context(|| format!("cannot reach PostgreSQL at {} (./scripts/services.sh starts it)", args.admin_url))?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut admin).await?;
    let (base, _) = args.admin_url.rsplit_once('/').context("admin URL without a database")?;
    let url = format!("{base}/{name}");
    let outcome = bench(&args, &url).await;
    if args.keep {
        println!("kept database {url}");
    } else {
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
            .execute(&mut admin)
            .await?;
    }
    outcome
}

async fn bench(args: &ReportArgs, url: &str) -> anyhow::Result<()> {
    let store = SqlStore::connect(&StoreSettings::new(url)).await?;
    let seeding = Instant::now();
    seed(&store, args.leads, args.messages).await?;
    let counts: (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT COUNT(*) FROM messages), (SELECT COUNT(*) FROM leads), (SELECT COUNT(*) FROM deals)",
    )
    .fetch_one(store.pool())
    .await?;
    println!(
        "seeded {} messages, {} leads, {} deals in {:.1} s",
        counts.0,
        counts.1,
        counts.2,
        seeding.elapsed().as_secs_f64()
    );
    let offset = FixedOffset::east_opt(3 * 3600).context("offset")?;
    let rub = Currency::parse("RUB")?;
    let day = |m, d| NaiveDate::from_ymd_opt(2026, m, d).context("date");
    let periods = [
        ("one month (2026-06)", ReportPeriod::new(day(6, 1)?, day(6, 30)?, offset, rub.clone())),
        ("one quarter (2026-Q3)", ReportPeriod::new(day(7, 1)?, day(9, 30)?, offset, rub.clone())),
        ("whole year (2026)", ReportPeriod::new(day(1, 1)?, day(12, 31)?, offset, rub)),
    ];
    for (label, period) in periods {
        let period = period.map_err(anyhow::Error::msg)?;
        let mut times = Vec::new();
        let mut leads_seen = 0;
        for _ in 0..args.rounds {
            let started = Instant::now();
            let report = store.report(&period).await?;
            times.push(started.elapsed().as_secs_f64() * 1000.0);
            leads_seen = report.source_effectiveness.iter().map(|r| r.leads).sum::<i64>();
        }
        let best = times.iter().copied().fold(f64::INFINITY, f64::min);
        let worst = times.iter().copied().fold(0.0, f64::max);
        println!(
            "report {label}: {leads_seen} leads in the period; median {:.0} ms, best {best:.0} ms, worst {worst:.0} ms ({} rounds)",
            crate::median(times),
            args.rounds
        );
    }
    store.close().await;
    if args.pages {
        time_pages(args, url).await?;
    }
    Ok(())
}

/// Starts `leadsift run` on the database, logs in, and times the pages.
async fn time_pages(args: &ReportArgs, url: &str) -> anyhow::Result<()> {
    let binary = crate::leadsift_binary(args.leadsift.clone())?;
    let work = tempfile::tempdir()?;
    let status = std::process::Command::new(&binary)
        .args(["--db", url, "users", "add", "bench", "--role", "admin"])
        .env("LEADSIFT_PASSWORD", "bench-password-1")
        .status()?;
    anyhow::ensure!(status.success(), "leadsift users add failed");
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let mut daemon = std::process::Command::new(&binary)
        .args(["--db", url, "run"])
        .env("LEADSIFT__HTTP__LISTEN", format!("127.0.0.1:{port}"))
        .env("LEADSIFT__INTAKE__DROP_FOLDER", work.path().join("inbox"))
        .env("LEADSIFT__WEB__SECURE_COOKIES", "false")
        .env("LEADSIFT__MODEL__LEARN", "false")
        .env("LEADSIFT_LOG", "warn")
        .spawn()?;
    let outcome = async {
        let base = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build()?;
        let started = Instant::now();
        while client.get(format!("{base}/healthz")).send().await.is_err() {
            anyhow::ensure!(started.elapsed().as_secs() < 60, "leadsift run did not start");
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        let form = client.get(format!("{base}/login")).send().await?;
        let cookie_of = |response: &reqwest::Response, name: &str| {
            response
                .headers()
                .get_all("set-cookie")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .find_map(|v| v.split(';').next()?.strip_prefix(name)?.strip_prefix('=').map(str::to_owned))
        };
        let login_cookie = cookie_of(&form, "leadsift_login_csrf").context("no login cookie")?;
        let page = form.text().await?;
        let csrf =
            page.split("name=\"csrf\" value=\"").nth(1).and_then(|r| r.split('"').next()).context("no CSRF field")?;
        let response = client
            .post(format!("{base}/login"))
            .header("cookie", format!("leadsift_login_csrf={login_cookie}"))
            .form(&[("username", "bench"), ("password", "bench-password-1"), ("csrf", csrf)])
            .send()
            .await?;
        let session = cookie_of(&response, "leadsift_session").context("login failed")?;
        for (label, path) in [
            ("overview /", "/".to_owned()),
            ("reports, one month", "/reports?from=2026-06-01&to=2026-06-30".to_owned()),
            ("reports, whole year", "/reports?from=2026-01-01&to=2026-12-31".to_owned()),
        ] {
            let mut times = Vec::new();
            let mut bytes = 0;
            for _ in 0..args.rounds {
                let started = Instant::now();
                let response = client
                    .get(format!("{base}{path}"))
                    .header("cookie", format!("leadsift_session={session}"))
                    .send()
                    .await?;
                anyhow::ensure!(response.status().is_success(), "{path}: {}", response.status());
                bytes = response.bytes().await?.len();
                times.push(started.elapsed().as_secs_f64() * 1000.0);
            }
            let worst = times.iter().copied().fold(0.0, f64::max);
            println!(
                "page {label}: {bytes} bytes; median {:.0} ms, worst {worst:.0} ms ({} rounds)",
                crate::median(times),
                args.rounds
            );
        }
        Ok(())
    }
    .await;
    let _ = daemon.kill();
    let _ = daemon.wait();
    outcome
}

async fn seed(store: &SqlStore, leads: i64, messages: i64) -> anyhow::Result<()> {
    let contacts = (leads * 4 / 5).max(1);
    let step = YEAR_MS / leads.max(1);
    // ~600 bytes: a short email or messenger message as triage stores it
    // (longer mail is TOASTed out of the row, so the row stays this size).
    let payload = format!(
        "{{\"channel\":\"email\",\"subject\":\"Запрос цены\",\"text\":\"{}\"}}",
        "Здравствуйте! Просим рассчитать стоимость монтажа фасада. ".repeat(6)
    );
    let statements = [
        format!(
            "INSERT INTO contacts (id, display_name, created_at)
             SELECT g, 'Client ' || g, {YEAR_START_MS} FROM generate_series(1::bigint, {contacts}) g"
        ),
        format!(
            "INSERT INTO contact_identities (kind, value, contact_id, created_at)
             SELECT 'email', 'client' || g || '@firm' || (g % 7000) || '.example', g, {YEAR_START_MS}
             FROM generate_series(1::bigint, {contacts}) g"
        ),
        // Stage mix per lead id: 0-1 spam junked by triage, 2 non-target junked
        // by a manager, 3 converted, 4-5 qualification, 6 offer, 7-9 contact_client.
        format!(
            "INSERT INTO leads (id, contact_id, stage, junk_reason, needs_review, returning_client, channel, title,
               verdict, confidence, reasons, source, campaign, message_count, created_at, updated_at, closed_at)
             SELECT g, 1 + (g * 7919) % {contacts},
               CASE WHEN g % 10 IN (0, 1, 2) THEN 'junk' WHEN g % 10 = 3 THEN 'converted'
                    WHEN g % 10 IN (4, 5) THEN 'qualification' WHEN g % 10 = 6 THEN 'offer' ELSE 'contact_client' END,
               CASE WHEN g % 10 IN (0, 1) THEN 'spam' WHEN g % 10 = 2 THEN 'non_target' END,
               CASE WHEN g % 13 = 0 THEN 1 ELSE 0 END,
               CASE WHEN g % 3 = 0 THEN 1 ELSE 0 END,
               (ARRAY['email', 'call', 'messenger', 'webform'])[1 + (g / 7) % 4],
               'Lead ' || g,
               CASE WHEN g % 10 IN (0, 1) THEN 'spam' ELSE 'inquiry' END,
               0.9, '[]',
               (ARRAY['yandex_direct', 'google_ads', 'vk_ads', 'avito', 'seo', 'referral'])[1 + g % 6],
               'campaign_' || (g % 24),
               5,
               {YEAR_START_MS} + g * {step}, {YEAR_START_MS} + g * {step},
               CASE WHEN g % 10 IN (0, 1) THEN {YEAR_START_MS} + g * {step}
                    WHEN g % 10 IN (2, 3) THEN {YEAR_START_MS} + g * {step} + 86400000 END
             FROM generate_series(1::bigint, {leads}) g"
        ),
        format!(
            "INSERT INTO lead_stage_changes (lead_id, from_stage, to_stage, junk_reason, actor, reason, at)
             SELECT g, NULL, CASE WHEN g % 10 IN (0, 1) THEN 'junk' ELSE 'contact_client' END,
               CASE WHEN g % 10 IN (0, 1) THEN 'spam' END, 'triage', 'triage', {YEAR_START_MS} + g * {step}
             FROM generate_series(1::bigint, {leads}) g"
        ),
        format!(
            "INSERT INTO lead_stage_changes (lead_id, from_stage, to_stage, junk_reason, actor, reason, at)
             SELECT g, 'contact_client', CASE WHEN g % 10 = 2 THEN 'junk' WHEN g % 10 = 3 THEN 'converted'
               WHEN g % 10 = 6 THEN 'offer' ELSE 'qualification' END,
               CASE WHEN g % 10 = 2 THEN 'non_target' END, 'anna', NULL, {YEAR_START_MS} + g * {step} + 86400000
             FROM generate_series(1::bigint, {leads}) g WHERE g % 10 IN (2, 3, 4, 5, 6)"
        ),
        // Every converted lead has a deal: a third won, a third lost, a third open.
        "INSERT INTO deals (lead_id, contact_id, title, stage, amount_minor, currency, lost_reason, channel, source,
               campaign, created_at, updated_at, closed_at)
             SELECT l.id, l.contact_id, l.title,
               CASE WHEN l.id % 3 = 0 THEN 'won' WHEN l.id % 3 = 1 THEN 'lost' ELSE 'in_progress' END,
               100000 + (l.id % 50) * 1000000, 'RUB',
               CASE WHEN l.id % 3 = 1 THEN (ARRAY['price', 'timing', 'competitor'])[1 + l.id % 3] END,
               l.channel, l.source, l.campaign, l.closed_at, l.closed_at,
               CASE WHEN l.id % 3 IN (0, 1) THEN l.closed_at + (l.id % 40) * 86400000 END
             FROM leads l WHERE l.stage = 'converted'"
            .to_owned(),
        // Messages: most belong to a lead (received around its creation); every 17th is a newsletter.
        format!(
            "INSERT INTO messages (dedup_key, channel, received_at, triaged_at, sender_email, subject, verdict,
               confidence, reasons, route, lead_id, contact_id, source, campaign, payload)
             SELECT 'bench:' || g, (ARRAY['email', 'call', 'messenger', 'webform'])[1 + (g / 7) % 4],
               {YEAR_START_MS} + (g % {leads}) * {step} + (g / {leads}) * 60000,
               {YEAR_START_MS} + (g % {leads}) * {step} + (g / {leads}) * 60000,
               'client' || (g % {contacts}) || '@firm.example', 'Subject ' || g,
               CASE WHEN g % 17 = 0 THEN 'newsletter' WHEN (g % {leads}) % 10 IN (0, 1) THEN 'spam' ELSE 'inquiry' END,
               0.9, '[]', 'lead',
               CASE WHEN g % 17 = 0 OR g % {leads} = 0 THEN NULL ELSE g % {leads} END, NULL,
               'yandex_direct', 'campaign_1', $1
             FROM generate_series(1::bigint, {messages}) g"
        ),
        // Daily spend of every source and campaign in 2026.
        "INSERT INTO ad_spend (day, source, campaign, amount_minor, currency, updated_at)
         SELECT to_char(DATE '2026-01-01' + d, 'YYYY-MM-DD'), s, 'campaign_' || c, 150000 + c * 1000, 'RUB', 0
         FROM generate_series(0, 364) d,
              unnest(ARRAY['yandex_direct', 'google_ads', 'vk_ads', 'avito']) s, generate_series(0, 23) c"
            .to_owned(),
        format!(
            "INSERT INTO list_entries (list, kind, value, reason, origin, created_by, created_at)
             SELECT 'blacklist', 'email', 'spammer' || g || '@spam.example', 'spam', 'auto', 'triage',
               {YEAR_START_MS} + g * 3600000 FROM generate_series(1::bigint, 5000) g"
        ),
    ];
    for sql in statements {
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql.clone()));
        if sql.contains("$1") {
            query = query.bind(payload.clone());
        }
        query
            .execute(store.pool())
            .await
            .with_context(|| format!("seeding: {}", sql.lines().next().unwrap_or_default()))?;
    }
    for table in ["contacts", "leads", "deals"] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT MAX(id) FROM {table}))"
        )))
        .execute(store.pool())
        .await?;
    }
    sqlx::raw_sql("VACUUM ANALYZE").execute(store.pool()).await?;
    Ok(())
}
