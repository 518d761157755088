//! Throwaway mail servers for the IMAP and notification tests: a Dovecot
//! IMAP server and an aiosmtpd SMTP sink, each on 127.0.0.1 with its config
//! and mail in a temp dir, killed when dropped.
//!
//! When a server is not installed the test is skipped, except under
//! `CI=true` / `LEADSIFT_TEST_REQUIRE_SERVICES=1`, where it fails with a
//! message saying how to install it (`scripts/services.sh` does).

#![allow(clippy::unwrap_used)] // test helpers fail loudly by design

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::TryStreamExt;
use tokio::net::TcpStream;

use crate::services_required;

/// The IMAP user every test Dovecot has.
pub const IMAP_USER: &str = "sales";
pub const IMAP_PASSWORD: &str = "s3cret-imap";

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// Fails the test when services are required, else says it is skipped.
fn skip_or_fail(what: &str, how: &str) {
    let msg = format!("{what} is not installed: {how} (scripts/services.sh installs it)");
    if services_required() {
        panic!("{msg}");
    }
    eprintln!("SKIPPED: {msg}");
}

fn wait_for_port(port: u16, child: &mut Child, log: &Path, what: &str) {
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited with {status}: {}", std::fs::read_to_string(log).unwrap_or_default());
        }
        assert!(started.elapsed() < Duration::from_secs(20), "{what} did not listen on port {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A Dovecot serving one passwd-file user over plain IMAP on 127.0.0.1.
#[derive(Debug)]
pub struct Dovecot {
    /// Plain IMAP.
    pub port: u16,
    /// IMAPS, for servers started with [`Dovecot::start_tls`].
    pub tls_port: Option<u16>,
    child: Child,
    dir: tempfile::TempDir,
    certs: Option<tempfile::TempDir>,
}

impl Dovecot {
    fn binary() -> Option<PathBuf> {
        ["/usr/sbin/dovecot", "/usr/local/sbin/dovecot"].iter().map(PathBuf::from).find(|p| p.exists())
    }

    /// Whether Dovecot is installed; when it is not, fails under CI and says the test is skipped otherwise.
    pub fn installed() -> bool {
        let found = Self::binary().is_some();
        if !found {
            skip_or_fail("Dovecot", "apt-get install dovecot-imapd");
        }
        found
    }

    /// Starts on a free port, or `None` (skip) when Dovecot is missing and not required.
    pub fn start() -> Option<Dovecot> {
        Self::start_on(free_port())
    }

    pub fn start_on(port: u16) -> Option<Dovecot> {
        Self::start_with(port, "")
    }

    /// A server that does not offer IDLE (clients must poll).
    pub fn start_without_idle() -> Option<Dovecot> {
        Self::start_with(free_port(), "imap_capability = IMAP4rev1 LITERAL+ SASL-IR UIDPLUS MOVE\n")
    }

    /// Plain IMAP plus implicit TLS (IMAPS, `tls_port`) with a fresh
    /// certificate for `localhost` signed by a fresh test CA; returns the
    /// server and the CA certificate's PEM path.
    pub fn start_tls() -> Option<(Dovecot, PathBuf)> {
        let certs = tempfile::tempdir().expect("temp dir");
        let path = |name: &str| certs.path().join(name);
        std::fs::write(path("leaf.ext"), "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n").unwrap();
        let steps: [&[&str]; 3] = [
            &["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=leadsift test CA"],
            &["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost"],
            &["x509", "-req", "-days", "1", "-CAcreateserial"],
        ];
        let files: [Vec<String>; 3] = [
            vec!["-keyout".into(), "ca.key".into(), "-out".into(), "ca.pem".into()],
            vec!["-keyout".into(), "key.pem".into(), "-out".into(), "leaf.csr".into()],
            ["-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-extfile", "leaf.ext", "-out", "cert.pem"]
                .map(String::from)
                .to_vec(),
        ];
        for (args, files) in steps.iter().zip(&files) {
            let status = Command::new("openssl")
                .args(*args)
                .args(files)
                .current_dir(certs.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            if !status.is_ok_and(|s| s.success()) {
                skip_or_fail("openssl", "apt-get install openssl");
                return None;
            }
        }
        let tls = format!(
            "ssl = yes\nssl_cert = <{}\nssl_key = <{}\n",
            path("cert.pem").display(),
            path("key.pem").display()
        );
        let mut dovecot = Self::launch(free_port(), &tls, Some(free_port()))?;
        let ca = path("ca.pem");
        dovecot.certs = Some(certs);
        Some((dovecot, ca))
    }

    /// Starts on `port` with `extra` lines appended to the config.
    pub fn start_with(port: u16, extra: &str) -> Option<Dovecot> {
        Self::launch(port, extra, None)
    }

    /// Plain IMAP on `port` (what the test helpers use), IMAPS on `tls_port` if given.
    fn launch(port: u16, extra: &str, tls_port: Option<u16>) -> Option<Dovecot> {
        let Some(binary) = Self::binary() else {
            skip_or_fail("Dovecot", "apt-get install dovecot-imapd");
            return None;
        };
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path();
        for sub in ["run", "state", "mail"] {
            std::fs::create_dir_all(root.join(sub)).unwrap();
        }
        // Mail processes must not run as root: as root, use `nobody`; otherwise ourselves.
        let (user, group) = if is_root() { ("nobody".to_owned(), nogroup()) } else { current_user_and_group() };
        if is_root() {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).unwrap();
            let status = Command::new("chown").arg(format!("{user}:{group}")).arg(root.join("mail")).status().unwrap();
            assert!(status.success(), "chown of the test maildir failed");
        }
        std::fs::write(root.join("passwd"), format!("{IMAP_USER}:{{PLAIN}}{IMAP_PASSWORD}::::::\n")).unwrap();
        let r = root.display();
        let (ssl, tls_listener_port) = match tls_port {
            Some(tls_port) => ("", tls_port),
            None => ("ssl = no\n", 0),
        };
        let config = format!(
            "base_dir = {r}/run\nstate_dir = {r}/state\nlog_path = {r}/dovecot.log\nprotocols = imap\n\
             listen = 127.0.0.1\n{ssl}disable_plaintext_auth = no\nauth_mechanisms = plain login\n\
             mail_location = maildir:{r}/mail/%u\nfirst_valid_uid = 1\nmail_uid = {user}\nmail_gid = {group}\n\
             passdb {{\n  driver = passwd-file\n  args = scheme=PLAIN username_format=%u {r}/passwd\n}}\n\
             userdb {{\n  driver = static\n  args = uid={user} gid={group} home={r}/mail/%u\n}}\n\
             service imap-login {{\n  inet_listener imap {{\n    address = 127.0.0.1\n    port = {port}\n  }}\n\
             inet_listener imaps {{\n    address = 127.0.0.1\n    port = {tls_listener_port}\n    ssl = yes\n  }}\n}}\n\
             service pop3-login {{\n  inet_listener pop3 {{\n    port = 0\n  }}\n}}\n{extra}"
        );
        std::fs::write(root.join("dovecot.conf"), config).unwrap();
        let log = root.join("dovecot.log");
        let mut child = Command::new(binary)
            .args(["-F", "-c"])
            .arg(root.join("dovecot.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(root.join("dovecot.stderr")).unwrap())
            .spawn()
            .expect("start dovecot");
        wait_for_port(port, &mut child, &log, "dovecot");
        if let Some(tls_port) = tls_port {
            wait_for_port(tls_port, &mut child, &log, "dovecot (IMAPS)");
        }
        Some(Dovecot { port, tls_port, child, dir, certs: None })
    }

    /// The `[[imap.accounts]]` table for this server, polling as configured.
    pub fn account_toml(&self, name: &str, extra: &str) -> String {
        format!(
            "[[imap.accounts]]\nname = \"{name}\"\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"plain\"\n\
             username = \"{IMAP_USER}\"\npassword_env = \"LEADSIFT_TEST_IMAP_PASSWORD\"\nbackoff_initial_ms = 200\n\
             backoff_max_ms = 2000\ntimeout_secs = 10\n{extra}\n",
            self.port
        )
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dovecot.log")).unwrap_or_default()
    }

    /// A logged-in IMAP session of the test user.
    pub async fn session(&self) -> async_imap::Session<TcpStream> {
        let tcp = TcpStream::connect(("127.0.0.1", self.port)).await.expect("connect to dovecot");
        let mut client = async_imap::Client::new(tcp);
        client.read_response().await.expect("greeting").expect("greeting");
        client.login(IMAP_USER, IMAP_PASSWORD).await.map_err(|(e, _)| e).expect("login to dovecot")
    }

    /// Puts mails into `folder` with IMAP APPEND.
    pub async fn append(&self, folder: &str, mails: &[String]) {
        let mut session = self.session().await;
        for mail in mails {
            session.append(folder, None, None, mail.replace("\r\n", "\n").replace('\n', "\r\n")).await.expect("APPEND");
        }
        session.logout().await.ok();
    }

    /// UIDs and flags of the mail in `folder` (none if it does not exist).
    pub async fn list(&self, folder: &str) -> Vec<(u32, Vec<String>)> {
        let mut session = self.session().await;
        let Ok(mailbox) = session.select(folder).await else { return Vec::new() };
        if mailbox.exists == 0 {
            return Vec::new();
        }
        let fetches: Vec<_> = session.uid_fetch("1:*", "(UID FLAGS)").await.unwrap().try_collect().await.unwrap();
        let out = fetches
            .iter()
            .map(|f| (f.uid.unwrap_or_default(), f.flags().map(|flag| format!("{flag:?}")).collect()))
            .collect();
        session.logout().await.ok();
        out
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        // SIGTERM lets the master stop its children; SIGKILL only if it lingers.
        let _ = Command::new("kill").arg(self.child.id().to_string()).status();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn nogroup() -> String {
    let ok =
        Command::new("getent").args(["group", "nogroup"]).stdout(Stdio::null()).status().is_ok_and(|s| s.success());
    if ok { "nogroup".into() } else { "nobody".into() }
}

fn current_user_and_group() -> (String, String) {
    let id = |flag: &str| {
        let out = Command::new("id").arg(flag).output().expect("id");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    (id("-un"), id("-gn"))
}

/// An aiosmtpd SMTP server storing every mail in a Maildir, with the
/// envelope in `X-MailFrom` / `X-RcptTo` headers.
#[derive(Debug)]
pub struct SmtpSink {
    pub port: u16,
    child: Child,
    dir: tempfile::TempDir,
}

impl SmtpSink {
    pub fn start() -> Option<SmtpSink> {
        Self::start_on(free_port())
    }

    pub fn start_on(port: u16) -> Option<SmtpSink> {
        // Debian's python3-aiosmtpd lives with the system interpreter.
        let python = ["/usr/bin/python3", "python3"]
            .into_iter()
            .find(|p| Command::new(p).args(["-c", "import aiosmtpd"]).status().is_ok_and(|s| s.success()));
        let Some(python) = python else {
            skip_or_fail("aiosmtpd", "apt-get install python3-aiosmtpd");
            return None;
        };
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("aiosmtpd.log");
        let mut child = Command::new(python)
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}"), "-c", "aiosmtpd.handlers.Mailbox"])
            .arg(dir.path().join("Maildir"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start aiosmtpd");
        wait_for_port(port, &mut child, &log, "aiosmtpd");
        Some(SmtpSink { port, child, dir })
    }

    /// Every mail received so far, as raw text.
    pub fn mails(&self) -> Vec<String> {
        let mut out = Vec::new();
        for sub in ["new", "cur"] {
            let Ok(entries) = std::fs::read_dir(self.dir.path().join("Maildir").join(sub)) else { continue };
            for entry in entries.flatten() {
                if let Ok(text) = std::fs::read_to_string(entry.path()) {
                    out.push(text);
                }
            }
        }
        out
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
