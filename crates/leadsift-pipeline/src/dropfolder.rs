//! The drop folder: `.eml`, `.json`, mbox and archive files put into a
//! folder (by a person, a script, an MTA pipe) are ingested and moved to
//! `.processed/` — or `.failed/` when any part was quarantined — only after
//! their messages are durably queued. A file still being written (size or
//! mtime changed since the last scan) is left for the next scan.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

use crate::PipelineError;
use crate::intake::Intake;

#[derive(Debug, Clone)]
pub struct DropFolder {
    pub path: PathBuf,
    pub scan_interval: Duration,
}

type Stamp = (u64, Option<SystemTime>);

impl DropFolder {
    pub fn new(path: PathBuf) -> Self {
        Self { path, scan_interval: Duration::from_millis(500) }
    }

    fn ensure_dirs(&self) -> Result<(), PipelineError> {
        for dir in [self.path.clone(), self.path.join(".processed"), self.path.join(".failed")] {
            std::fs::create_dir_all(&dir)
                .map_err(|source| PipelineError::DropFolder { path: dir.display().to_string(), source })?;
        }
        Ok(())
    }

    /// Files ready to ingest: regular, not hidden, unchanged since the previous scan.
    fn ready_files(&self, seen: &mut HashMap<PathBuf, Stamp>) -> Result<Vec<PathBuf>, PipelineError> {
        let entries = std::fs::read_dir(&self.path)
            .map_err(|source| PipelineError::DropFolder { path: self.path.display().to_string(), source })?;
        let mut current = HashMap::new();
        let mut ready = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            let hidden = path.file_name().and_then(|n| n.to_str()).is_none_or(|n| n.starts_with('.'));
            let Ok(meta) = entry.metadata() else { continue };
            if hidden || !meta.is_file() {
                continue;
            }
            let stamp = (meta.len(), meta.modified().ok());
            if seen.get(&path) == Some(&stamp) {
                ready.push(path.clone());
            }
            current.insert(path, stamp);
        }
        *seen = current;
        ready.sort();
        Ok(ready)
    }

    fn move_to(&self, file: &Path, subdir: &str) -> Result<(), PipelineError> {
        let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3f");
        let target = self.path.join(subdir).join(format!("{stamp}-{name}"));
        std::fs::rename(file, &target)
            .map_err(|source| PipelineError::DropFolder { path: file.display().to_string(), source })
    }

    /// Scans until `shutdown`.
    pub async fn run(self, intake: Intake, shutdown: CancellationToken) -> Result<(), PipelineError> {
        self.ensure_dirs()?;
        tracing::info!(path = %self.path.display(), "watching drop folder");
        let mut seen = HashMap::new();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                () = tokio::time::sleep(self.scan_interval) => {}
            }
            let ready = match self.ready_files(&mut seen) {
                Ok(ready) => ready,
                Err(error) => {
                    tracing::warn!(%error, "cannot scan drop folder");
                    continue;
                }
            };
            for file in ready {
                match intake.ingest_paths(vec![file.clone()], |_| {}).await {
                    Ok(report) => {
                        let subdir = if report.failed > 0 { ".failed" } else { ".processed" };
                        tracing::info!(file = %file.display(), new = report.new, duplicate = report.duplicate,
                            failed = report.failed, "drop folder file ingested");
                        self.move_to(&file, subdir)?;
                        seen.remove(&file);
                    }
                    // The file stays where it is and is tried again next scan.
                    Err(error) => tracing::warn!(file = %file.display(), %error, "cannot ingest drop folder file"),
                }
            }
        }
    }
}
