//! The rules in force, swapped atomically when the rules file changes.
//!
//! A reload validates the whole new file first; an invalid file leaves the
//! old rules running, logs every error with file and line, and bumps
//! `leadsift_rules_reloads_total{result="error"}`. The file is polled
//! (size, mtime and content hash) rather than watched with inotify, which
//! misses atomic renames on some editors and volumes; one `stat` a second
//! is free.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use leadsift_rules::{RuleSet, RulesError};
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

#[derive(Debug)]
pub struct RulesHandle {
    current: ArcSwap<RuleSet>,
    path: Option<PathBuf>,
    metrics: Metrics,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
}

fn stamp(path: &Path) -> Option<FileStamp> {
    let meta = std::fs::metadata(path).ok()?;
    Some(FileStamp { modified: meta.modified().ok(), len: meta.len() })
}

impl RulesHandle {
    /// Loads `path`, or the built-in default rules when `path` is `None`.
    pub fn load(path: Option<PathBuf>, metrics: Metrics) -> Result<Self, RulesError> {
        let rules = match &path {
            Some(path) => RuleSet::load(path)?,
            None => RuleSet::builtin(),
        };
        metrics.rules_loaded.set(rules.rules().count() as i64);
        Ok(Self { current: ArcSwap::from_pointee(rules), path, metrics })
    }

    /// The rules in force now; cheap, lock-free.
    pub fn current(&self) -> Arc<RuleSet> {
        self.current.load_full()
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Re-reads the file; on success swaps the rules in, on failure keeps the old ones.
    pub fn reload(&self) -> Result<usize, RulesError> {
        let Some(path) = &self.path else { return Ok(self.current().rules().count()) };
        match RuleSet::load(path) {
            Ok(rules) => {
                let count = rules.rules().count();
                self.current.store(Arc::new(rules));
                self.metrics.rules_reloads.with_label_values(&["ok"]).inc();
                self.metrics.rules_loaded.set(count as i64);
                tracing::info!(path = %path.display(), rules = count, "rules reloaded");
                Ok(count)
            }
            Err(errors) => {
                self.metrics.rules_reloads.with_label_values(&["error"]).inc();
                tracing::error!(path = %path.display(), errors = %errors, "rules file invalid; previous rules stay in force");
                Err(errors)
            }
        }
    }

    /// Polls the rules file until `shutdown` and reloads when it changes.
    pub async fn watch(self: Arc<Self>, interval: Duration, shutdown: CancellationToken) {
        let Some(path) = self.path.clone() else { return };
        let mut last = stamp(&path);
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = ticker.tick() => {}
            }
            let now = stamp(&path);
            if now != last && now.is_some() {
                last = now;
                let handle = Arc::clone(&self);
                // Parsing and regex compilation are CPU work: keep them off the async threads.
                let _ = tokio::task::spawn_blocking(move || handle.reload()).await;
            }
        }
    }
}
