//! One account + folder: connect, catch up from the checkpoint, wait for
//! more (IDLE or polling), reconnect with backoff on any failure.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_imap::extensions::idle::IdleResponse;
use async_imap::types::Fetch;
use chrono::Utc;
use futures_util::TryStreamExt;
use leadsift_core::{Channel, Message, Verdict};
use leadsift_formats::{ParseOptions, parse_rfc822};
use leadsift_pipeline::Intake;
use leadsift_store::{ImapCheckpoint, ImapFeedback, ImapOrigin, SqlStore};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls;
use tokio_util::either::Either;
use tokio_util::sync::CancellationToken;

use crate::config::{ImapAccount, ImapSecurity, MailAction};
use crate::{ImapError, ImapMetrics};

type ImapStream = Either<TcpStream, TlsStream<TcpStream>>;
type Session = async_imap::Session<ImapStream>;

/// With post-triage actions on, the longest wait between looks at the
/// store for new verdicts (triage usually needs well under a second).
const ACTION_POLL: Duration = Duration::from_secs(2);

/// Pending actions handled per cycle.
const ACTIONS_PER_CYCLE: u32 = 200;

/// Servers drop IDLE after 30 minutes; re-issue it well before.
const MAX_IDLE: Duration = Duration::from_secs(25 * 60);

/// What a watched folder is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FolderMode {
    /// New mail is queued for triage.
    Triage,
    /// Mail found here is a person's label for it; it is recorded as feedback.
    Learn(Verdict),
}

/// The worker of one account and folder.
#[derive(Debug)]
pub struct FolderWorker {
    account: Arc<ImapAccount>,
    folder: String,
    mode: FolderMode,
    intake: Intake,
    store: SqlStore,
    metrics: ImapMetrics,
}

/// One fetched mail.
struct Fetched {
    uid: u32,
    raw: Vec<u8>,
}

impl FolderWorker {
    pub fn new(
        account: Arc<ImapAccount>,
        folder: String,
        mode: FolderMode,
        intake: Intake,
        store: SqlStore,
        metrics: ImapMetrics,
    ) -> Self {
        Self { account, folder, mode, intake, store, metrics }
    }

    fn address(&self) -> String {
        format!("{}:{}", self.account.host, self.account.port)
    }

    /// Runs until `shutdown`, reconnecting after every failure.
    #[tracing::instrument(name = "imap", skip_all, fields(account = %self.account.name, folder = %self.folder))]
    pub async fn run(self, shutdown: CancellationToken) {
        let initial = Duration::from_millis(self.account.backoff_initial_ms);
        let max = Duration::from_millis(self.account.backoff_max_ms);
        let mut backoff = initial;
        while !shutdown.is_cancelled() {
            let error = match self.connected(&shutdown, &mut backoff, initial).await {
                Ok(()) => break,
                Err(error) => error,
            };
            self.metrics.errors.with_label_values(&[self.account.name.as_str(), error.kind()]).inc();
            let delay = with_jitter(backoff);
            tracing::error!(
                error = %error,
                kind = error.kind(),
                retry_in_ms = delay.as_millis() as u64,
                "IMAP worker failed; reconnecting after a delay"
            );
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = shutdown.cancelled() => break,
            }
            backoff = (backoff * 2).min(max);
        }
        tracing::info!("IMAP worker stopped");
    }

    /// One connection's life: returns `Ok` only on shutdown.
    async fn connected(
        &self,
        shutdown: &CancellationToken,
        backoff: &mut Duration,
        initial: Duration,
    ) -> Result<(), ImapError> {
        let mut session = self.connect().await?;
        let capabilities = self.command("CAPABILITY", session.capabilities()).await?;
        let idle = self.account.idle && capabilities.has_str("IDLE");
        let can_move = capabilities.has_str("MOVE");
        tracing::info!(address = %self.address(), idle, "IMAP connected");
        loop {
            self.sync(&mut session, can_move).await?;
            // A full cycle worked: the next failure starts backing off afresh.
            *backoff = initial;
            if shutdown.is_cancelled() {
                break;
            }
            session = self.wait_for_mail(session, idle, shutdown).await?;
            if shutdown.is_cancelled() {
                break;
            }
        }
        let _ = tokio::time::timeout(self.account.timeout(), session.logout()).await;
        Ok(())
    }

    /// Runs one IMAP command under the account's timeout.
    async fn command<T>(
        &self,
        operation: &'static str,
        command: impl Future<Output = async_imap::error::Result<T>>,
    ) -> Result<T, ImapError> {
        match tokio::time::timeout(self.account.timeout(), command).await {
            Ok(result) => result.map_err(|source| ImapError::Protocol { operation, source }),
            Err(_) => Err(ImapError::Timeout { operation, secs: self.account.timeout().as_secs() }),
        }
    }

    async fn connect(&self) -> Result<Session, ImapError> {
        let address = self.address();
        let timeout = self.account.timeout();
        let timed_out = |operation| ImapError::Timeout { operation, secs: timeout.as_secs() };
        let tcp = tokio::time::timeout(timeout, TcpStream::connect((self.account.host.as_str(), self.account.port)))
            .await
            .map_err(|_| timed_out("connect"))?
            .map_err(|source| ImapError::Connect { address: address.clone(), source })?;
        let stream = match self.account.security {
            ImapSecurity::Plain => Either::Left(tcp),
            ImapSecurity::Tls => {
                let name = rustls::pki_types::ServerName::try_from(self.account.host.clone()).map_err(|e| {
                    ImapError::Config { account: self.account.name.clone(), reason: format!("bad TLS host name: {e}") }
                })?;
                let connector = tls_connector(&self.account)?;
                let tls = tokio::time::timeout(timeout, connector.connect(name, tcp))
                    .await
                    .map_err(|_| timed_out("TLS handshake"))?
                    .map_err(|source| ImapError::Tls { address: address.clone(), source })?;
                Either::Right(tls)
            }
        };
        let mut client = async_imap::Client::new(stream);
        let greeting = tokio::time::timeout(timeout, client.read_response())
            .await
            .map_err(|_| timed_out("greeting"))?
            .map_err(|source| ImapError::Connect { address: address.clone(), source })?;
        if greeting.is_none() {
            return Err(ImapError::Server {
                operation: "greeting",
                detail: "connection closed before greeting".into(),
            });
        }
        let password = self.account.password()?;
        tokio::time::timeout(timeout, client.login(&self.account.username, password.expose()))
            .await
            .map_err(|_| timed_out("login"))?
            .map_err(|(source, _client)| ImapError::Login { address, username: self.account.username.clone(), source })
    }

    /// Catches the folder up from its checkpoint, then runs pending actions.
    async fn sync(&self, session: &mut Session, can_move: bool) -> Result<(), ImapError> {
        let account = self.account.name.as_str();
        let mailbox = match self.command("SELECT", session.select(&self.folder)).await {
            // A learning folder is ours to offer: create it so people can file mail into it.
            Err(ImapError::Protocol { source: async_imap::error::Error::No(_), .. })
                if matches!(self.mode, FolderMode::Learn(_)) =>
            {
                tracing::info!("creating the missing learning folder");
                self.command("CREATE", session.create(&self.folder)).await?;
                self.command("SELECT", session.select(&self.folder)).await?
            }
            selected => selected?,
        };
        let uidvalidity = mailbox.uid_validity.ok_or_else(|| ImapError::Server {
            operation: "SELECT",
            detail: format!("no UIDVALIDITY for folder {:?}", self.folder),
        })?;
        let checkpoint = self.store.imap_checkpoint(account, &self.folder).await?;
        let mut last_uid = match checkpoint {
            Some(seen) if seen.uidvalidity == uidvalidity => seen.last_uid,
            Some(seen) => {
                self.metrics.uidvalidity_changes.with_label_values(&[account]).inc();
                tracing::warn!(
                    old = seen.uidvalidity,
                    new = uidvalidity,
                    "UIDVALIDITY changed: reading the folder again from UID 1 (known mail is deduplicated)"
                );
                // Record the new UIDVALIDITY even if the folder is empty now.
                let restart = ImapCheckpoint { uidvalidity, last_uid: 0 };
                self.store.commit_imap_batch(account, &self.folder, restart, &[], Utc::now()).await?;
                0
            }
            None => {
                // First sight of the folder: remember its UIDVALIDITY from now on.
                let start = ImapCheckpoint { uidvalidity, last_uid: 0 };
                self.store.commit_imap_batch(account, &self.folder, start, &[], Utc::now()).await?;
                0
            }
        };
        let found = self.command("UID SEARCH", session.uid_search(format!("UID {}:*", last_uid + 1))).await?;
        // `n:*` always matches the highest UID, even below n.
        let mut uids: Vec<u32> = found.into_iter().filter(|uid| *uid > last_uid).collect();
        uids.sort_unstable();
        for chunk in uids.chunks(self.account.batch_size) {
            let fetched = self.fetch(session, chunk).await?;
            self.metrics.fetched.with_label_values(&[account]).inc_by(fetched.len() as u64);
            let highest = chunk.iter().copied().max().unwrap_or(last_uid);
            let checkpoint = ImapCheckpoint { uidvalidity, last_uid: highest };
            match self.mode {
                FolderMode::Triage => self.queue_batch(fetched, checkpoint).await?,
                FolderMode::Learn(label) => self.learn_batch(fetched, checkpoint, label).await?,
            }
            last_uid = highest;
            tracing::debug!(last_uid, "IMAP batch queued; checkpoint advanced");
        }
        if self.mode == FolderMode::Triage && self.account.actions.any() {
            self.run_actions(session, uidvalidity, can_move).await?;
        }
        Ok(())
    }

    async fn fetch(&self, session: &mut Session, uids: &[u32]) -> Result<Vec<Fetched>, ImapError> {
        let set = uids.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
        let fetches: Vec<Fetch> = self
            .command("UID FETCH", async {
                let stream = session.uid_fetch(&set, "(UID BODY.PEEK[])").await?;
                stream.try_collect().await
            })
            .await?;
        // A mail expunged meanwhile has no body: nothing to queue.
        let mut fetched: Vec<Fetched> = fetches
            .iter()
            .filter_map(|f| Some(Fetched { uid: f.uid?, raw: f.body()?.to_vec() }))
            .filter(|f| uids.binary_search(&f.uid).is_ok())
            .collect();
        fetched.sort_by_key(|f| f.uid);
        fetched.dedup_by_key(|f| f.uid);
        Ok(fetched)
    }

    fn origin(&self, uidvalidity: u32, uid: u32) -> String {
        format!(
            "imap://{}@{}/{};UIDVALIDITY={uidvalidity}/;UID={uid}",
            self.account.username, self.account.host, self.folder
        )
    }

    /// Parses on a blocking thread (MIME decoding is CPU work).
    async fn parse(&self, fetched: Vec<Fetched>) -> Result<Vec<(Fetched, Result<Message, String>)>, ImapError> {
        let options: ParseOptions = self.intake.options().clone();
        tokio::task::spawn_blocking(move || {
            fetched
                .into_iter()
                .map(|mail| {
                    let parsed = parse_rfc822(&mail.raw, &options).map_err(|e| e.to_string());
                    (mail, parsed)
                })
                .collect()
        })
        .await
        .map_err(|e| ImapError::Server { operation: "parsing", detail: format!("parser thread failed: {e}") })
    }

    /// Queues a batch, quarantines what does not parse, then advances the checkpoint.
    async fn queue_batch(&self, fetched: Vec<Fetched>, checkpoint: ImapCheckpoint) -> Result<(), ImapError> {
        let mut messages = Vec::with_capacity(fetched.len());
        let mut origins = Vec::new();
        for (mail, parsed) in self.parse(fetched).await? {
            match parsed {
                Ok(message) => {
                    if self.account.actions.any() {
                        origins.push(ImapOrigin {
                            account: self.account.name.clone(),
                            folder: self.folder.clone(),
                            uidvalidity: checkpoint.uidvalidity,
                            uid: mail.uid,
                            dedup_key: message.dedup_key.as_str().to_owned(),
                        });
                    }
                    messages.push(message);
                }
                Err(error) => {
                    let origin = self.origin(checkpoint.uidvalidity, mail.uid);
                    self.intake.quarantine(&origin, Some(Channel::Email), &error, &mail.raw).await?;
                }
            }
        }
        if !messages.is_empty() {
            self.intake.publish(&messages).await?;
        }
        self.store.commit_imap_batch(&self.account.name, &self.folder, checkpoint, &origins, Utc::now()).await?;
        Ok(())
    }

    /// Records a person's label for each mail in a learning folder, once.
    /// Mail whose stored verdict already equals the label is skipped: it
    /// teaches nothing (and includes mail leadsift moved there itself).
    async fn learn_batch(
        &self,
        fetched: Vec<Fetched>,
        checkpoint: ImapCheckpoint,
        label: Verdict,
    ) -> Result<(), ImapError> {
        let mut feedback = Vec::new();
        for (mail, parsed) in self.parse(fetched).await? {
            let message = match parsed {
                Ok(message) => message,
                Err(error) => {
                    tracing::warn!(uid = mail.uid, error, "mail in a learning folder cannot be parsed; skipped");
                    continue;
                }
            };
            let key = message.dedup_key.as_str();
            if self.store.verdict_of(key).await? == Some(label) {
                continue;
            }
            feedback.push(ImapFeedback {
                account: self.account.name.clone(),
                folder: self.folder.clone(),
                uidvalidity: checkpoint.uidvalidity,
                uid: mail.uid,
                dedup_key: key.to_owned(),
                label,
                created_at: Utc::now(),
            });
        }
        let new = self.store.record_imap_feedback(&feedback).await?;
        self.metrics.feedback.with_label_values(&[label.as_str()]).inc_by(new);
        self.store.commit_imap_batch(&self.account.name, &self.folder, checkpoint, &[], Utc::now()).await?;
        Ok(())
    }

    /// Moves or flags triaged mail of this folder as configured.
    async fn run_actions(&self, session: &mut Session, uidvalidity: u32, can_move: bool) -> Result<(), ImapError> {
        let pending = self.store.pending_imap_actions(&self.account.name, &self.folder, ACTIONS_PER_CYCLE).await?;
        if pending.is_empty() {
            return Ok(());
        }
        let mut done = Vec::with_capacity(pending.len());
        for item in pending {
            // Under another UIDVALIDITY the UID names nothing any more.
            if item.origin.uidvalidity == uidvalidity {
                let uid = item.origin.uid.to_string();
                match self.account.actions.for_verdict(item.verdict) {
                    MailAction::Nothing => {}
                    MailAction::Flag => {
                        let result = self
                            .command("UID STORE", async {
                                let stream = session.uid_store(&uid, "+FLAGS (\\Flagged)").await?;
                                stream.try_collect::<Vec<_>>().await
                            })
                            .await;
                        self.action_outcome("flag", &uid, result)?;
                    }
                    MailAction::MoveTo(target) => {
                        let mut result = self.move_mail(session, &uid, &target, can_move).await;
                        if matches!(&result, Err(ImapError::Protocol { source: async_imap::error::Error::No(_), .. })) {
                            // The folder may not exist yet: create it and try once more.
                            let _ = self.command("CREATE", session.create(&target)).await;
                            result = self.move_mail(session, &uid, &target, can_move).await;
                        }
                        self.action_outcome("move", &uid, result)?;
                    }
                }
            }
            done.push(item.origin);
        }
        self.store.finish_imap_actions(&done).await?;
        Ok(())
    }

    async fn move_mail(&self, session: &mut Session, uid: &str, target: &str, can_move: bool) -> Result<(), ImapError> {
        if can_move {
            return self.command("UID MOVE", session.uid_mv(uid, target)).await;
        }
        self.command("UID COPY", session.uid_copy(uid, target)).await?;
        self.command("UID STORE", async {
            let stream = session.uid_store(uid, "+FLAGS (\\Deleted)").await?;
            stream.try_collect::<Vec<_>>().await
        })
        .await?;
        self.command("UID EXPUNGE", async {
            let stream = session.uid_expunge(uid).await?;
            stream.try_collect::<Vec<_>>().await
        })
        .await?;
        Ok(())
    }

    /// A refused action (NO/BAD) is logged and counted and not retried; a
    /// broken connection is passed on so the worker reconnects.
    fn action_outcome<T>(
        &self,
        action: &'static str,
        uid: &str,
        result: Result<T, ImapError>,
    ) -> Result<(), ImapError> {
        match result {
            Ok(_) => {
                self.metrics.actions.with_label_values(&[action, "ok"]).inc();
                Ok(())
            }
            Err(ImapError::Protocol {
                source: source @ (async_imap::error::Error::No(_) | async_imap::error::Error::Bad(_)),
                ..
            }) => {
                self.metrics.actions.with_label_values(&[action, "error"]).inc();
                tracing::warn!(uid, action, error = %source, "the server refused a post-triage action; skipped");
                Ok(())
            }
            Err(error) => Err(error),
        }
    }

    /// Waits for new mail with IDLE, or sleeps a poll interval.
    async fn wait_for_mail(
        &self,
        session: Session,
        idle: bool,
        shutdown: &CancellationToken,
    ) -> Result<Session, ImapError> {
        let mut wait = self.account.poll_interval().min(MAX_IDLE);
        if self.mode == FolderMode::Triage && self.account.actions.any() {
            wait = wait.min(ACTION_POLL);
        }
        // Drop what the server told us unasked meanwhile (EXISTS, FETCH …): the next sync reads the folder anyway.
        while session.unsolicited_responses.try_recv().is_ok() {}
        if !idle {
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = shutdown.cancelled() => {}
            }
            return Ok(session);
        }
        let mut handle = session.idle();
        self.command("IDLE", handle.init()).await?;
        let outcome = {
            let (waiting, _stop) = handle.wait_with_timeout(wait);
            tokio::select! {
                outcome = waiting => Some(outcome),
                () = shutdown.cancelled() => None,
            }
        };
        let session = self.command("DONE", handle.done()).await?;
        match outcome {
            Some(Ok(IdleResponse::NewData(_))) => tracing::debug!("IDLE: the server reported a change"),
            Some(Ok(IdleResponse::Timeout | IdleResponse::ManualInterrupt)) | None => {}
            Some(Err(source)) => return Err(ImapError::Protocol { operation: "IDLE", source }),
        }
        Ok(session)
    }
}

fn tls_connector(account: &ImapAccount) -> Result<TlsConnector, ImapError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let invalid = |reason: String| ImapError::Config { account: account.name.clone(), reason };
    let mut roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    if let Some(path) = &account.ca_file {
        let certificates = CertificateDer::pem_file_iter(path)
            .and_then(|certificates| certificates.collect::<Result<Vec<_>, _>>())
            .map_err(|e| invalid(format!("cannot read ca_file {}: {e}", path.display())))?;
        if certificates.is_empty() {
            return Err(invalid(format!("ca_file {} holds no PEM certificate", path.display())));
        }
        for certificate in certificates {
            roots.add(certificate).map_err(|e| invalid(format!("ca_file {}: {e}", path.display())))?;
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(format!("TLS setup: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

/// "Equal jitter": half the delay fixed, half random, so workers that
/// failed together do not reconnect together.
fn with_jitter(backoff: Duration) -> Duration {
    let millis = backoff.as_millis().max(2) as u64;
    Duration::from_millis(millis / 2 + fastrand::u64(0..=millis / 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_between_half_and_full_delay() {
        for _ in 0..1000 {
            let delay = with_jitter(Duration::from_millis(1000));
            assert!((500..=1000).contains(&(delay.as_millis() as u64)), "{delay:?}");
        }
    }

    #[test]
    fn tls_connector_builds_with_bundled_roots_and_rejects_a_bad_ca_file() {
        let mut account: ImapAccount =
            serde_json::from_value(serde_json::json!({"name": "a", "host": "h", "username": "u"})).unwrap();
        tls_connector(&account).unwrap();
        let dir = std::env::temp_dir().join(format!("leadsift-imap-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("ca.pem");
        std::fs::write(&file, "not a certificate").unwrap();
        account.ca_file = Some(file);
        let Err(error) = tls_connector(&account) else { panic!("a bad ca_file must be refused") };
        let error = error.to_string();
        assert!(error.contains("no PEM certificate"), "{error}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
