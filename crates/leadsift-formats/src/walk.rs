//! Inputs from paths: files, directories, Maildir folders, mbox files, JSON
//! and JSON-lines files, gzip and tar archives (nested in any order).
//!
//! This is the only module that does I/O. Everything is streamed: a
//! directory is walked lazily in sorted order, archives and mailboxes are
//! read one item at a time, and each item's bytes are capped at
//! [`ParseOptions::max_raw_bytes`]. A failure (an unreadable file, an item
//! over the cap, a corrupt archive) becomes an [`InputFailure`] for that
//! item and the walk goes on.
//!
//! How a path is read:
//! - a directory with `cur` and `new` subdirectories is a Maildir: only the
//!   files in `cur` and `new` are read (not `tmp`, not Maildir++ subfolders);
//! - any other directory is walked recursively in file-name order, skipping
//!   dotfiles and obvious documents (`*.md`, `*.csv`, `*.png`, `*.jpg`,
//!   `*.jpeg`, `*.gif`, `*.pdf`, `README*`, `LICENSE*`), which are counted in
//!   [`Inputs::skipped`]; paths named explicitly are never skipped;
//! - gzip content (by magic bytes) is decompressed and detected again, with
//!   the name minus `.gz` (`.tgz` counts as `.tar`);
//! - tar content (`ustar` magic or a `.tar` name): every regular entry is
//!   read as if it were a file found while walking, origin `archive!inner/path`;
//! - `*.jsonl` / `*.ndjson`: one [`InputKind::EventJson`] item per non-blank
//!   line, origin `path#N`;
//! - `*.json`: one event object;
//! - content starting with `From `: an mbox, split by `mail-parser`'s mbox
//!   reader (which undoes `>From ` quoting), origin `path#N` (just `path` if it
//!   holds a single message, as the SpamAssassin corpus files do);
//! - anything else: one RFC 822 message, whatever its name.

use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Cursor, Read};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use leadsift_core::Message;
use mail_parser::mailbox::mbox::MessageIterator;

use crate::event::CappedLines;
use crate::{FormatError, ParseOptions, parse_event_json, parse_rfc822};

/// Gzip and tar layers allowed inside each other; deeper nesting is an
/// archive bomb or a mistake.
const MAX_NESTING: usize = 8;

/// Items the background reader may queue ahead of the consumer.
const QUEUE_DEPTH: usize = 16;

/// When an oversized stream of unknown length is drained to report its
/// size, stop counting here: the size reported is then a lower bound.
const MAX_DRAIN_BYTES: u64 = 1 << 30;

/// What parser an item needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InputKind {
    Rfc822,
    EventJson,
}

/// One raw input found under the given paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputItem {
    /// Where it came from: `path`, `path#N` (mbox message or JSON line),
    /// `archive.tar.gz!inner/path`.
    pub origin: String,
    pub kind: InputKind,
    pub bytes: Vec<u8>,
}

/// An input that could not be read; the walk continues after it.
#[derive(Debug)]
pub struct InputFailure {
    pub origin: String,
    pub error: FormatError,
}

impl fmt::Display for InputFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.origin, self.error)
    }
}

impl std::error::Error for InputFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// Parses an item with the parser its kind calls for.
pub fn parse_item(item: &InputItem, opts: &ParseOptions) -> Result<Message, FormatError> {
    match item.kind {
        InputKind::Rfc822 => parse_rfc822(&item.bytes, opts),
        InputKind::EventJson => parse_event_json(&item.bytes, opts),
    }
}

/// What a synchronous walk saw besides its items.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WalkSummary {
    /// Dotfiles, dot-directories and documents skipped while walking.
    pub skipped: usize,
}

/// Walks `paths` on the calling thread, handing each item or failure to
/// `visit` in order; `visit` returns [`ControlFlow::Break`] to stop early.
pub fn visit_inputs(
    paths: &[PathBuf],
    opts: &ParseOptions,
    visit: &mut dyn FnMut(Result<InputItem, InputFailure>) -> ControlFlow<()>,
) -> WalkSummary {
    let skipped = AtomicUsize::new(0);
    let mut walker = Walker { opts, skipped: &skipped, visit };
    for path in paths {
        if walker.explicit_path(path).is_break() {
            break;
        }
    }
    WalkSummary { skipped: skipped.load(Ordering::Relaxed) }
}

/// Enumerates the inputs under `paths`, in order (paths as given,
/// directory entries sorted by name, archive entries in archive order).
///
/// Reading happens on a background thread a bounded number of items ahead
/// of the consumer, so decompression overlaps with parsing and memory stays
/// bounded; dropping the iterator stops the reader at its next item.
pub fn read_inputs(paths: &[PathBuf], opts: &ParseOptions) -> Inputs {
    let (sender, receiver) = sync_channel(QUEUE_DEPTH);
    let skipped = Arc::new(AtomicUsize::new(0));
    let paths = paths.to_vec();
    let opts = opts.clone();
    let worker_skipped = Arc::clone(&skipped);
    let spawned = std::thread::Builder::new()
        .name("leadsift-read-inputs".to_owned())
        .spawn(move || read_inputs_worker(&paths, &opts, &worker_skipped, &sender));
    let (worker, spawn_error) = match spawned {
        Ok(handle) => (Some(handle), None),
        Err(error) => (
            None,
            Some(InputFailure { origin: "read_inputs".to_owned(), error: FormatError::io("read_inputs", error) }),
        ),
    };
    Inputs { receiver, skipped, worker, pending_failure: spawn_error }
}

fn read_inputs_worker(
    paths: &[PathBuf],
    opts: &ParseOptions,
    skipped: &AtomicUsize,
    sender: &SyncSender<Result<InputItem, InputFailure>>,
) {
    let mut visit = |item| match sender.send(item) {
        Ok(()) => ControlFlow::Continue(()),
        Err(_) => ControlFlow::Break(()), // the consumer dropped the iterator
    };
    let mut walker = Walker { opts, skipped, visit: &mut visit };
    for path in paths {
        if walker.explicit_path(path).is_break() {
            break;
        }
    }
}

/// The items under some paths; see [`read_inputs`].
#[derive(Debug)]
pub struct Inputs {
    receiver: Receiver<Result<InputItem, InputFailure>>,
    skipped: Arc<AtomicUsize>,
    worker: Option<JoinHandle<()>>,
    pending_failure: Option<InputFailure>,
}

impl Inputs {
    /// Dotfiles, dot-directories and documents skipped so far while walking
    /// directories and archives; final once the iterator has returned `None`.
    pub fn skipped(&self) -> usize {
        self.skipped.load(Ordering::Relaxed)
    }
}

impl Iterator for Inputs {
    type Item = Result<InputItem, InputFailure>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(failure) = self.pending_failure.take() {
            return Some(Err(failure));
        }
        match self.receiver.recv() {
            Ok(item) => Some(item),
            Err(_) => {
                // The reader finished; surface a panic instead of ending quietly.
                let worker = self.worker.take()?;
                worker.join().err().map(|_| {
                    Err(InputFailure {
                        origin: "read_inputs".to_owned(),
                        error: FormatError::io("read_inputs", io::Error::other("the input reader thread panicked")),
                    })
                })
            }
        }
    }
}

struct Walker<'a> {
    opts: &'a ParseOptions,
    skipped: &'a AtomicUsize,
    visit: &'a mut dyn FnMut(Result<InputItem, InputFailure>) -> ControlFlow<()>,
}

impl Walker<'_> {
    fn fail(&mut self, origin: impl Into<String>, error: FormatError) -> ControlFlow<()> {
        (self.visit)(Err(InputFailure { origin: origin.into(), error }))
    }

    fn emit(&mut self, origin: String, kind: InputKind, bytes: Vec<u8>) -> ControlFlow<()> {
        (self.visit)(Ok(InputItem { origin, kind, bytes }))
    }

    fn skip(&self) {
        self.skipped.fetch_add(1, Ordering::Relaxed);
    }

    fn explicit_path(&mut self, path: &Path) -> ControlFlow<()> {
        let origin = path.display().to_string();
        match std::fs::metadata(path) {
            Ok(meta) if meta.is_dir() => self.directory(path),
            Ok(_) => self.file(path),
            Err(error) => self.fail(origin.clone(), FormatError::io(origin, error)),
        }
    }

    fn file(&mut self, path: &Path) -> ControlFlow<()> {
        let origin = path.display().to_string();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let opened = File::open(path).and_then(|file| Ok((file.metadata()?.len(), file)));
        match opened {
            Ok((size, mut file)) => self.stream(&origin, &name, &mut file, 0, Some(size)),
            Err(error) => self.fail(origin.clone(), FormatError::io(origin, error)),
        }
    }

    fn directory(&mut self, root: &Path) -> ControlFlow<()> {
        let mut maildirs: Vec<PathBuf> = Vec::new();
        let skipped = self.skipped;
        let entries =
            walkdir::WalkDir::new(root).follow_links(true).sort_by_file_name().into_iter().filter_entry(|entry| {
                let is_dir = entry.file_type().is_dir();
                if entry.depth() > 0 {
                    if entry.file_name().to_string_lossy().starts_with('.') {
                        skipped.fetch_add(1, Ordering::Relaxed);
                        return false;
                    }
                    let in_maildir = entry.path().parent().is_some_and(|parent| maildirs.iter().any(|m| m == parent));
                    if in_maildir {
                        // Only cur/ and new/ hold delivered mail; tmp/ holds
                        // half-written files, the rest is server bookkeeping.
                        return is_dir && matches!(entry.file_name().to_str(), Some("cur" | "new"));
                    }
                }
                if is_dir && is_maildir(entry.path()) {
                    maildirs.push(entry.path().to_path_buf());
                }
                true
            });
        for entry in entries {
            match entry {
                Ok(entry) if entry.file_type().is_dir() => {}
                Ok(entry) => {
                    let name = entry.file_name().to_string_lossy();
                    if is_skipped_document(&name) {
                        self.skip();
                    } else {
                        self.file(entry.path())?;
                    }
                }
                Err(error) => {
                    let origin = error.path().unwrap_or(root).display().to_string();
                    let error = io::Error::from(error);
                    self.fail(origin.clone(), FormatError::io(origin, error))?;
                }
            }
        }
        ControlFlow::Continue(())
    }

    /// Detects what `reader` holds and emits its items. `name` is the file
    /// name used for extension checks; `size` is the exact size if known.
    fn stream(
        &mut self,
        origin: &str,
        name: &str,
        reader: &mut dyn Read,
        depth: usize,
        size: Option<u64>,
    ) -> ControlFlow<()> {
        let mut head = Vec::with_capacity(512);
        if let Err(error) = reader.take(512).read_to_end(&mut head) {
            return self.fail(origin, FormatError::io(origin, error));
        }
        let lower = name.to_ascii_lowercase();
        let is_gzip = head.starts_with(&[0x1f, 0x8b]);
        let is_tar = head.get(257..262) == Some(b"ustar") || lower.ends_with(".tar");
        if (is_gzip || is_tar) && depth >= MAX_NESTING {
            return self.fail(origin, FormatError::NestedTooDeep { limit: MAX_NESTING });
        }
        let head_len = head.len() as u64;
        let is_mbox = head.starts_with(b"From ");
        let mut full = BufReader::with_capacity(64 * 1024, Cursor::new(head).chain(reader));

        if is_gzip {
            let inner_name = match lower.strip_suffix(".tgz") {
                Some(stem) => format!("{stem}.tar"),
                None => lower.strip_suffix(".gz").unwrap_or(&lower).to_owned(),
            };
            let mut decoder = flate2::bufread::MultiGzDecoder::new(full);
            return self.stream(origin, &inner_name, &mut decoder, depth + 1, None);
        }
        if is_tar {
            return self.tar(origin, &mut full, depth);
        }
        if lower.ends_with(".jsonl") || lower.ends_with(".ndjson") {
            for (line, bytes) in CappedLines::new(full, origin.to_owned(), self.opts.max_raw_bytes) {
                let line_origin = format!("{origin}#{line}");
                match bytes {
                    Ok(bytes) => self.emit(line_origin, InputKind::EventJson, bytes)?,
                    Err(error) => self.fail(line_origin, error)?,
                }
            }
            return ControlFlow::Continue(());
        }
        let kind = if lower.ends_with(".json") { InputKind::EventJson } else { InputKind::Rfc822 };
        if kind == InputKind::Rfc822 && is_mbox {
            return self.mbox(origin, full);
        }
        // `size` is known only for plain files and tar entries, which have
        // not been transformed: skip reading those that are too big.
        if let Some(size) = size.filter(|&s| s > self.opts.max_raw_bytes as u64 && s >= head_len) {
            return self.fail(origin, FormatError::TooLarge { size, limit: self.opts.max_raw_bytes });
        }
        match read_capped(&mut full, origin, self.opts.max_raw_bytes) {
            Ok(bytes) => self.emit(origin.to_owned(), kind, bytes),
            Err(error) => self.fail(origin, error),
        }
    }

    fn tar(&mut self, origin: &str, reader: &mut dyn Read, depth: usize) -> ControlFlow<()> {
        let mut archive = tar::Archive::new(reader);
        let entries = match archive.entries() {
            Ok(entries) => entries,
            Err(error) => return self.fail(origin, FormatError::io(origin, error)),
        };
        for entry in entries {
            let mut entry = match entry {
                Ok(entry) => entry,
                // A corrupt header leaves no way to find the next entry.
                Err(error) => return self.fail(origin, FormatError::io(origin, error)),
            };
            if !entry.header().entry_type().is_file() {
                continue;
            }
            let inner_path = match entry.path() {
                Ok(path) => path.into_owned(),
                Err(error) => {
                    self.fail(origin, FormatError::io(origin, error))?;
                    continue;
                }
            };
            let inner_origin = format!("{origin}!{}", inner_path.display());
            let hidden = inner_path.components().any(|c| match c {
                std::path::Component::Normal(part) => part.to_string_lossy().starts_with('.'),
                _ => false,
            });
            let name = inner_path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            if hidden || is_skipped_document(&name) {
                self.skip();
                continue;
            }
            let size = entry.size();
            self.stream(&inner_origin, &name, &mut entry, depth + 1, Some(size))?;
        }
        ControlFlow::Continue(())
    }

    fn mbox(&mut self, origin: &str, reader: impl BufRead) -> ControlFlow<()> {
        let mut messages = MessageIterator::new(reader);
        let mut pending = messages.next();
        let mut number = 0;
        while let Some(current) = pending.take() {
            number += 1;
            let message = match current {
                Ok(message) => message,
                Err(error) => return self.fail(format!("{origin}#{number}"), FormatError::io(origin, error)),
            };
            pending = messages.next();
            let item_origin =
                if number == 1 && pending.is_none() { origin.to_owned() } else { format!("{origin}#{number}") };
            let contents = message.unwrap_contents();
            if contents.len() > self.opts.max_raw_bytes {
                let error = FormatError::TooLarge { size: contents.len() as u64, limit: self.opts.max_raw_bytes };
                self.fail(item_origin, error)?;
            } else {
                self.emit(item_origin, InputKind::Rfc822, contents)?;
            }
        }
        ControlFlow::Continue(())
    }
}

/// Reads at most `limit` bytes; a longer stream is drained (up to
/// [`MAX_DRAIN_BYTES`]) to report its size.
fn read_capped(reader: &mut dyn Read, origin: &str, limit: usize) -> Result<Vec<u8>, FormatError> {
    let mut bytes = Vec::new();
    reader.take(limit as u64 + 1).read_to_end(&mut bytes).map_err(|error| FormatError::io(origin, error))?;
    if bytes.len() > limit {
        let rest = io::copy(&mut reader.take(MAX_DRAIN_BYTES), &mut io::sink()).unwrap_or(0);
        return Err(FormatError::TooLarge { size: bytes.len() as u64 + rest, limit });
    }
    Ok(bytes)
}

fn is_maildir(dir: &Path) -> bool {
    dir.join("cur").is_dir() && dir.join("new").is_dir()
}

/// Dotfiles and documents that sit next to mail in corpora and exports.
fn is_skipped_document(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    let extension = lower.rsplit_once('.').map(|(_, ext)| ext);
    lower.starts_with('.')
        || lower.starts_with("readme")
        || lower.starts_with("license")
        || matches!(extension, Some("md" | "csv" | "png" | "jpg" | "jpeg" | "gif" | "pdf"))
}
