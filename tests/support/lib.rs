//! Helpers for leadsift's integration tests: fresh databases on real
//! SQLite and PostgreSQL, and the path of the built `leadsift` binary.
//!
//! A test that needs PostgreSQL fails (never skips) when `CI=true` or
//! `LEADSIFT_TEST_REQUIRE_SERVICES=1` and the server is unreachable; the
//! message says how to start it.

pub mod kafka;
pub mod mailservers;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use leadsift_store::{SqlStore, StoreSettings};
use sqlx::Connection;

/// Admin URL used to create throwaway databases.
pub fn postgres_admin_url() -> String {
    std::env::var("LEADSIFT_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// True when missing services must fail the test instead of skipping it.
pub fn services_required() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
        || std::env::var("LEADSIFT_TEST_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

/// A database that exists for one test.
#[derive(Debug)]
pub struct TestDb {
    pub url: String,
    pub store: SqlStore,
    cleanup: Cleanup,
    _dir: Option<tempfile::TempDir>,
}

#[derive(Debug)]
enum Cleanup {
    None,
    DropPostgres { admin_url: String, name: String },
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn unique_name(prefix: &str) -> String {
    format!(
        "{prefix}_{}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        chrono::Utc::now().timestamp_micros() % 1_000_000
    )
}

impl TestDb {
    /// A fresh SQLite file in a temp dir.
    pub async fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("leadsift.db").display());
        let store = SqlStore::connect(&StoreSettings::new(url.clone())).await.expect("open SQLite store");
        TestDb { url, store, cleanup: Cleanup::None, _dir: Some(dir) }
    }

    /// A fresh PostgreSQL database, or `None` (skip) when the server is
    /// unreachable and services are not required.
    pub async fn postgres() -> Option<TestDb> {
        let url = Self::postgres_url().await?;
        let store = SqlStore::connect(&StoreSettings::new(url.clone())).await.expect("open PostgreSQL store");
        let name = url.rsplit('/').next().unwrap_or_default().to_owned();
        Some(TestDb {
            url,
            store,
            cleanup: Cleanup::DropPostgres { admin_url: postgres_admin_url(), name },
            _dir: None,
        })
    }

    /// Creates an empty PostgreSQL database and returns its URL (no schema yet).
    pub async fn postgres_url() -> Option<String> {
        let admin_url = postgres_admin_url();
        let mut admin = match sqlx::PgConnection::connect(&admin_url).await {
            Ok(conn) => conn,
            Err(e) => {
                let msg = format!(
                    "PostgreSQL is not reachable at {admin_url} ({e}). Start it with \
                     `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start` \
                     or run the whole suite with scripts/test.sh"
                );
                if services_required() {
                    panic!("{msg}");
                }
                eprintln!("SKIPPED (no PostgreSQL): {msg}");
                return None;
            }
        };
        let name = unique_name("leadsift_t");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .expect("create test database");
        let base = admin_url.rsplit_once('/').map_or(admin_url.as_str(), |(base, _)| base);
        Some(format!("{base}/{name}"))
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Cleanup::DropPostgres { admin_url, name } = &self.cleanup {
            let (admin_url, name) = (admin_url.clone(), name.clone());
            // Best effort, on a thread of its own: Drop cannot be async.
            let _ = std::thread::spawn(move || {
                let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
                rt.block_on(async {
                    if let Ok(mut conn) = sqlx::PgConnection::connect(&admin_url).await {
                        let _ =
                            sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
                                .execute(&mut conn)
                                .await;
                    }
                });
            })
            .join();
        }
    }
}

/// Path of the `leadsift` binary built by cargo for this test run.
pub fn leadsift_bin() -> PathBuf {
    if let Ok(path) = std::env::var("LEADSIFT_BIN") {
        return PathBuf::from(path);
    }
    // target/<profile>/deps/integration-xxxx -> target/<profile>/leadsift
    let exe = std::env::current_exe().expect("current exe");
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).expect("target dir");
    profile_dir.join("leadsift")
}

/// The `leadsift` binary with a clean environment for one test.
pub fn leadsift_command() -> std::process::Command {
    let bin = leadsift_bin();
    assert!(
        bin.exists(),
        "{} does not exist: build it first with `cargo build --bin leadsift` (scripts/test.sh does)",
        bin.display()
    );
    let mut command = std::process::Command::new(bin);
    for (key, _) in std::env::vars() {
        if key.starts_with("LEADSIFT") && key != "LEADSIFT_BIN" {
            command.env_remove(key);
        }
    }
    command.env("LEADSIFT_LOG", "info,sqlx=warn");
    command
}

/// Folder of the hand-written fixtures under tests/fixtures.
pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Writes `count` distinct, realistic RFC 822 messages (a mix of inquiries,
/// spam and newsletters from a few repeat senders) into `dir`.
pub fn write_synthetic_mail(dir: &std::path::Path, count: usize) {
    std::fs::create_dir_all(dir).expect("create mail dir");
    for i in 0..count {
        let (from, subject, extra_headers, body) = match i % 4 {
            0 => (
                format!("client{}@firm{}.example", i % 97, i % 13),
                format!("Запрос цены #{i}"),
                String::new(),
                "Добрый день! Сколько стоит монтаж фасада? Пришлите коммерческое предложение.".to_owned(),
            ),
            1 => (
                format!("promo{i}@spam-seo.example"),
                format!("Продвижение сайта в ТОП-10 #{i}"),
                String::new(),
                "Продвижение сайта, вывод в топ Яндекса, база клиентов. Пассивный доход! https://a.example \
                 https://b.example https://c.example"
                    .to_owned(),
            ),
            2 => (
                "news@digest.example".to_owned(),
                format!("Digest #{i}"),
                "List-Unsubscribe: <https://digest.example/u>\nList-Id: <digest.example>\nPrecedence: bulk\n"
                    .to_owned(),
                "Weekly digest. Unsubscribe here.".to_owned(),
            ),
            _ => (
                format!("buyer{}@gmail.com", i % 211),
                format!("Re: order {i}"),
                String::new(),
                "Hello, we would like a price quote for 40 units, delivery to Moscow.".to_owned(),
            ),
        };
        let message = format!(
            "From: <{from}>\nTo: sales@our.example\nSubject: {subject}\nDate: Fri, 20 Nov 2026 10:{:02}:{:02} +0000\n\
             Message-ID: <synthetic-{i}@test.example>\n{extra_headers}MIME-Version: 1.0\n\
             Content-Type: text/plain; charset=utf-8\n\n{body}\n",
            (i / 60) % 60,
            i % 60
        );
        std::fs::write(dir.join(format!("{i:06}.eml")), message).expect("write message");
    }
}
