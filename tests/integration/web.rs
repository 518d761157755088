//! Access control of the web UI over real HTTP against `leadsift run`:
//! every page refuses anonymous and lower-role requests, logins need the
//! right password and the login form's CSRF token, every POST needs the
//! session's CSRF token, and logout or a disabled user ends the session.

use leadsift_integration_tests::TestDb;
use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};

use crate::pipeline::Daemon;

const PASSWORD: &str = "correct horse battery";

struct Web {
    _db: TestDb,
    daemon: Daemon,
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
    async fn start() -> Web {
        let db = TestDb::sqlite().await;
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("leadsift.toml");
        std::fs::write(
            &config,
            format!(
                "[database]\nurl = \"{}\"\n[http]\nlisten = \"127.0.0.1:0\"\n[intake]\ndrop_folder = \"\"\n\
                 [web]\nsecure_cookies = false\n",
                db.url
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
        Web { _db: db, daemon, client, config, _dir: dir }
    }

    fn url(&self, path: &str) -> String {
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
    let pages = [("/", 0), ("/leads", 1), ("/users", 2)];

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
            let expected = if rank >= needs { StatusCode::OK } else { StatusCode::FORBIDDEN };
            assert_eq!(status, expected, "{user} GET {path}");
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
