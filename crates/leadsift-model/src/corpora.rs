//! Loaders for the labelled public corpora, the mapping of their labels to
//! leadsift's five classes, deduplication, and the fixed train/validation split.
//!
//! Label mapping (the reasoning is in the crate README):
//!
//! | corpus (folder name starts with) | source label | class |
//! |---|---|---|
//! | `spamassassin` | `spam/` | spam |
//! | `spamassassin` | `easy_ham/` with `List-Unsubscribe`, `List-Id` or `Precedence: bulk/list/junk` | newsletter |
//! | `spamassassin` | `hard_ham/` (opt-in commercial mail and promotions) | newsletter |
//! | `spamassassin` | other `easy_ham/` (person-to-person mail) | inquiry |
//! | `enron` | `spam/` | spam |
//! | `enron` | `ham/` (business mail) | inquiry |
//! | `sms-spam` | `spam` / `ham` | spam / inquiry |
//! | `markup` | every mailing except the sent and draft items | newsletter |
//! | `telegram-spam` | `1` / `0` (chat talk) | spam / inquiry |
//! | `stankin` | `1` and all of `dataset_discord.json` / `0` | spam / inquiry |
//! | `sberbank` | every statement text, one example per page | bank_statement |
//! | any other folder | a path component named after a class (`spam/`, `newsletter/`…) or `ham/` | that class (`ham` → inquiry) |
//!
//! "inquiry" here means "a legitimate message a person wrote to us": no
//! corpus has labelled non-target messages, and teaching the model that
//! casual or personal text is junk would push real inquiries written
//! informally into junk, the one mistake the product must not make. So the
//! model never argues for `non_target` until feedback provides examples; the
//! rules carry that class.
//!
//! Each corpus is deduplicated on its normalised text (subject + text,
//! lower-cased, `ё`→`е`, whitespace collapsed); the first occurrence wins.
//! The split is a stable hash of (corpus name, normalised text): 20 % of the
//! hash space is validation, whatever the order or the machine.

use std::collections::HashSet;
use std::io::Read;
use std::path::{Path, PathBuf};

use chrono::{DateTime, TimeZone, Utc};
use flate2::read::GzDecoder;
use leadsift_core::{Channel, DedupKey, Message, MessengerHandle, Verdict};
use leadsift_formats::{ParseOptions, parse_item, read_inputs};
use serde::{Deserialize, Serialize};

use crate::ModelError;

/// Percentage of the hash space that is validation.
pub const VALIDATION_PERCENT: u64 = 20;

/// One labelled example.
#[derive(Debug, Clone)]
pub struct LabelledMessage {
    /// Short corpus name (`spamassassin`, `telegram_ru`, `feedback`…).
    pub corpus: String,
    /// The label as the corpus spells it (`easy_ham`, `1`, `spam`…).
    pub source_label: String,
    pub class: Verdict,
    pub message: Message,
    /// What the split hashes: examples with the same key always fall on the same side.
    pub split_key: String,
}

impl LabelledMessage {
    /// A labelled message whose split key is its own normalised content.
    pub fn new(corpus: &str, source_label: &str, class: Verdict, message: Message) -> Self {
        let split_key = normalised_content(&message);
        Self { corpus: corpus.to_owned(), source_label: source_label.to_owned(), class, message, split_key }
    }

    pub fn split(&self) -> Split {
        split_of(&self.corpus, &self.split_key)
    }

    /// Its calibration fold of `folds` (see [`fold_of`]).
    pub fn fold(&self, folds: u32) -> u32 {
        fold_of(&self.corpus, &self.split_key, folds)
    }
}

/// Which side of the fixed split an example is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    Train,
    Validation,
}

/// The fixed split: FNV-1a of `corpus \0 key`, validation when `hash % 100 < 20`.
pub fn split_of(corpus: &str, key: &str) -> Split {
    if split_hash(corpus, key) % 100 < VALIDATION_PERCENT { Split::Validation } else { Split::Train }
}

/// The calibration fold (of `folds`) of a training-side example: the same
/// hash as [`split_of`], its bits above the split's, so folds are fixed,
/// independent of order and of the split.
pub fn fold_of(corpus: &str, key: &str, folds: u32) -> u32 {
    ((split_hash(corpus, key) / 100) % u64::from(folds.max(1))) as u32
}

fn split_hash(corpus: &str, key: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in corpus.bytes().chain([0u8]).chain(key.bytes()) {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// Subject and text, lower-cased, `ё`→`е`, whitespace runs collapsed: what
/// deduplication and the split compare.
pub fn normalised_content(message: &Message) -> String {
    let mut out = String::with_capacity(message.text.len() + 64);
    let subject = message.subject.as_deref().unwrap_or("");
    let mut space = true;
    for c in subject.chars().chain(['\n']).chain(message.text.chars()) {
        if c.is_whitespace() {
            if !space {
                out.push(' ');
                space = true;
            }
            continue;
        }
        space = false;
        for lower in c.to_lowercase() {
            out.push(if lower == 'ё' { 'е' } else { lower });
        }
    }
    out.truncate(out.trim_end().len());
    out
}

/// Counts for one loaded corpus.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CorpusStats {
    pub corpus: String,
    pub path: String,
    /// Examples kept per class, after deduplication (class name → count).
    pub per_class: std::collections::BTreeMap<String, usize>,
    /// Examples kept per source label.
    pub per_source_label: std::collections::BTreeMap<String, usize>,
    pub duplicates: usize,
    /// Empty texts, unparsable items and excluded items (Markup's sent/draft).
    pub skipped: usize,
}

/// Labelled examples from one or more corpora.
#[derive(Debug, Clone, Default)]
pub struct Corpus {
    pub examples: Vec<LabelledMessage>,
    pub stats: Vec<CorpusStats>,
}

impl Corpus {
    /// Loads each path (a corpus folder, or any folder/archive laid out by
    /// class), in order.
    pub fn load(paths: &[PathBuf]) -> Result<Corpus, ModelError> {
        let mut corpus = Corpus::default();
        for path in paths {
            corpus.add_path(path)?;
        }
        Ok(corpus)
    }

    /// Loads every known corpus folder directly under `root` (e.g. `../shared/corpora`), sorted by name.
    pub fn load_root(root: &Path) -> Result<Corpus, ModelError> {
        let entries =
            std::fs::read_dir(root).map_err(|source| ModelError::Io { path: root.display().to_string(), source })?;
        let mut dirs: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_dir() && CorpusKind::detect(p).is_some())
            .collect();
        dirs.sort();
        if dirs.is_empty() {
            return Err(ModelError::Corpus {
                path: root.display().to_string(),
                reason: "no known corpus folders".into(),
            });
        }
        Self::load(&dirs)
    }

    /// Adds one corpus path. A folder that is no corpus itself but holds
    /// known corpus folders (like `../shared/corpora`) adds each of them.
    pub fn add_path(&mut self, path: &Path) -> Result<(), ModelError> {
        if CorpusKind::detect(path).is_none() && path.is_dir() {
            let mut known: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|source| ModelError::Io { path: path.display().to_string(), source })?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_dir() && CorpusKind::detect(p).is_some())
                .collect();
            if !known.is_empty() {
                known.sort();
                for corpus in known {
                    self.add_path(&corpus)?;
                }
                return Ok(());
            }
        }
        let kind = CorpusKind::detect(path).unwrap_or(CorpusKind::ByFolder);
        let mut sink = Sink::new(kind.name(path), path);
        kind.load(path, &mut sink)?;
        self.stats.push(sink.stats);
        self.examples.extend(sink.examples);
        Ok(())
    }

    pub fn train(&self) -> impl Iterator<Item = &LabelledMessage> {
        self.examples.iter().filter(|e| e.split() == Split::Train)
    }

    pub fn validation(&self) -> impl Iterator<Item = &LabelledMessage> {
        self.examples.iter().filter(|e| e.split() == Split::Validation)
    }
}

struct Sink {
    corpus: String,
    seen: HashSet<String>,
    examples: Vec<LabelledMessage>,
    stats: CorpusStats,
}

impl Sink {
    fn new(corpus: String, path: &Path) -> Self {
        let stats = CorpusStats { corpus: corpus.clone(), path: path.display().to_string(), ..CorpusStats::default() };
        Self { corpus, seen: HashSet::new(), examples: Vec::new(), stats }
    }

    fn push(&mut self, source_label: &str, class: Verdict, message: Message) {
        self.push_keyed(source_label, class, message, None);
    }

    /// `split_key` overrides the content as the split key (pages of one document stay together).
    fn push_keyed(&mut self, source_label: &str, class: Verdict, message: Message, split_key: Option<String>) {
        let content = normalised_content(&message);
        if content.is_empty() && message.attachments.is_empty() {
            self.stats.skipped += 1;
            return;
        }
        if !self.seen.insert(content.clone()) {
            self.stats.duplicates += 1;
            return;
        }
        *self.stats.per_class.entry(class.to_string()).or_default() += 1;
        *self.stats.per_source_label.entry(source_label.to_owned()).or_default() += 1;
        self.examples.push(LabelledMessage {
            corpus: self.corpus.clone(),
            source_label: source_label.to_owned(),
            class,
            message,
            split_key: split_key.unwrap_or(content),
        });
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CorpusKind {
    SpamAssassin,
    Enron,
    Sms,
    Markup,
    TelegramRu,
    Stankin,
    Sberbank,
    /// Class taken from a path component (`spam/`, `inquiry/`, `ham/`…).
    ByFolder,
}

impl CorpusKind {
    fn detect(path: &Path) -> Option<Self> {
        let name = path.file_name()?.to_str()?.to_ascii_lowercase();
        let kinds = [
            ("spamassassin", Self::SpamAssassin),
            ("enron", Self::Enron),
            ("sms-spam", Self::Sms),
            ("markup", Self::Markup),
            ("telegram-spam", Self::TelegramRu),
            ("stankin", Self::Stankin),
            ("sberbank", Self::Sberbank),
        ];
        kinds.into_iter().find(|(prefix, _)| name.starts_with(prefix)).map(|(_, kind)| kind)
    }

    fn name(self, path: &Path) -> String {
        match self {
            Self::SpamAssassin => "spamassassin".into(),
            Self::Enron => "enron".into(),
            Self::Sms => "sms".into(),
            Self::Markup => "markup".into(),
            Self::TelegramRu => "telegram_ru".into(),
            Self::Stankin => "stankin".into(),
            Self::Sberbank => "sberbank".into(),
            Self::ByFolder => path.file_name().map_or_else(|| "corpus".into(), |n| n.to_string_lossy().into_owned()),
        }
    }

    fn load(self, path: &Path, sink: &mut Sink) -> Result<(), ModelError> {
        match self {
            Self::SpamAssassin => load_emails(path, sink, spamassassin_label),
            Self::Enron => load_emails(path, sink, |origin, _| {
                if origin.contains("/spam/") || origin.ends_with(".spam.txt") {
                    Some(("spam", Verdict::Spam))
                } else if origin.contains("/ham/") || origin.ends_with(".ham.txt") {
                    Some(("ham", Verdict::Inquiry))
                } else {
                    None // Summary.txt
                }
            }),
            Self::Markup => load_emails(path, sink, |_, message| {
                let labels = message.header("X-Gmail-Labels").unwrap_or("");
                let own = labels.split(',').any(|l| matches!(l.trim(), "Sent" | "Drafts" | "Draft"));
                (!own).then_some(("mailing", Verdict::Newsletter))
            }),
            Self::Sms => {
                for (name, bytes) in archive_files(path, &["SMSSpamCollection"])? {
                    let text = String::from_utf8_lossy(&bytes);
                    for line in text.lines() {
                        let Some((label, body)) = line.split_once('\t') else { continue };
                        let class = if label == "spam" { Verdict::Spam } else { Verdict::Inquiry };
                        sink.push(label, class, chat_message("sms", &name, body));
                    }
                }
                Ok(())
            }
            Self::TelegramRu => {
                for (name, bytes) in archive_files(path, &[".csv"])? {
                    for row in csv_rows(&String::from_utf8_lossy(&bytes)).into_iter().skip(1) {
                        let [label, body] = row.as_slice() else { continue };
                        let class = if label.trim() == "1" { Verdict::Spam } else { Verdict::Inquiry };
                        sink.push(label.trim(), class, chat_message("telegram", &name, body));
                    }
                }
                Ok(())
            }
            Self::Stankin => {
                #[derive(Deserialize)]
                struct Row {
                    text: String,
                    label: u8,
                }
                for (name, bytes) in archive_files(path, &[".json"])? {
                    let rows: Vec<Row> = serde_json::from_slice(&bytes).map_err(|e| ModelError::Corpus {
                        path: format!("{}!{name}", path.display()),
                        reason: e.to_string(),
                    })?;
                    let discord = name.contains("discord");
                    for row in rows {
                        let (label, class) =
                            if row.label == 1 || discord { ("1", Verdict::Spam) } else { ("0", Verdict::Inquiry) };
                        sink.push(label, class, chat_message("telegram", &name, &row.text));
                    }
                }
                Ok(())
            }
            Self::Sberbank => {
                for (name, bytes) in archive_files(path, &[".txt"])? {
                    let text = String::from_utf8_lossy(&bytes).trim_start_matches('\u{feff}').to_owned();
                    for (page_no, page) in text.split("----------------------- Page").enumerate() {
                        let page = page.trim();
                        if page.len() < 200 {
                            continue;
                        }
                        let mut message = base_message(Channel::Email, &["sberbank", &name, &page_no.to_string()]);
                        message.text = page.to_owned();
                        sink.push_keyed("statement", Verdict::BankStatement, message, Some(name.clone()));
                    }
                }
                Ok(())
            }
            Self::ByFolder => load_emails(path, sink, |origin, _| class_from_path(origin)),
        }
    }
}

fn spamassassin_label(origin: &str, message: &Message) -> Option<(&'static str, Verdict)> {
    if origin.contains("spam/") && !origin.contains("ham/") {
        return Some(("spam", Verdict::Spam));
    }
    if origin.contains("hard_ham/") {
        return Some(("hard_ham", Verdict::Newsletter));
    }
    if origin.contains("easy_ham/") {
        return Some(if is_bulk(message) {
            ("easy_ham_list", Verdict::Newsletter)
        } else {
            ("easy_ham", Verdict::Inquiry)
        });
    }
    None
}

/// List and bulk-mail headers, as the SpamAssassin corpus README counts them.
pub fn is_bulk(message: &Message) -> bool {
    message.header("List-Unsubscribe").is_some()
        || message.header("List-Id").is_some()
        || message
            .header("Precedence")
            .is_some_and(|p| matches!(p.trim().to_ascii_lowercase().as_str(), "bulk" | "list" | "junk"))
}

fn class_from_path(origin: &str) -> Option<(&'static str, Verdict)> {
    origin.split(['/', '!', '\\']).rev().skip(1).find_map(|component| {
        let lower = component.to_ascii_lowercase();
        if lower == "ham" {
            return Some(("ham", Verdict::Inquiry));
        }
        Verdict::ALL.into_iter().find(|v| v.as_str() == lower).map(|v| (v.as_str(), v))
    })
}

fn load_emails(
    path: &Path,
    sink: &mut Sink,
    label: impl Fn(&str, &Message) -> Option<(&'static str, Verdict)>,
) -> Result<(), ModelError> {
    let options = ParseOptions::default();
    let mut inputs = vec![path.to_path_buf()];
    if path.is_dir() {
        // Name archives and mailboxes explicitly: the walker skips *.csv and
        // README files but would also read nothing else we do not want.
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|source| ModelError::Io { path: path.display().to_string(), source })?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                !name.starts_with('.') && !name.ends_with(".md") && !name.ends_with(".csv")
            })
            .collect();
        files.sort();
        inputs = files;
    }
    for item in read_inputs(&inputs, &options) {
        let Ok(item) = item else {
            sink.stats.skipped += 1;
            continue;
        };
        let Ok(message) = parse_item(&item, &options) else {
            sink.stats.skipped += 1;
            continue;
        };
        match label(&item.origin, &message) {
            Some((source_label, class)) => sink.push(source_label, class, message),
            None => sink.stats.skipped += 1,
        }
    }
    Ok(())
}

/// A fixed timestamp for corpus rows without one, so loading is deterministic.
fn corpus_epoch() -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000, 0).single().unwrap_or_default()
}

fn base_message(channel: Channel, key_parts: &[&str]) -> Message {
    let parts: Vec<&[u8]> = key_parts.iter().map(|p| p.as_bytes()).collect();
    Message::new(channel, DedupKey::from_content(channel, &parts), corpus_epoch())
}

/// A chat or SMS row as a messenger message. It gets a synthetic handle on
/// `network`, so sender-kind features look like production messenger
/// traffic rather than like an anonymous web form.
fn chat_message(network: &str, file: &str, text: &str) -> Message {
    let mut message = base_message(Channel::Messenger, &[network, file, text]);
    message.sender.handle = MessengerHandle::parse(&format!("{network}:corpus_user")).ok();
    message.text = text.trim().to_owned();
    message
}

/// Regular files of a `.tar.gz` (or of a folder holding one) whose names end with one of `suffixes`.
fn archive_files(path: &Path, suffixes: &[&str]) -> Result<Vec<(String, Vec<u8>)>, ModelError> {
    let io = |source| ModelError::Io { path: path.display().to_string(), source };
    let archives: Vec<PathBuf> = if path.is_dir() {
        let mut found: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(io)?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.to_string_lossy().ends_with(".tar.gz") || p.to_string_lossy().ends_with(".tgz"))
            .collect();
        found.sort();
        found
    } else {
        vec![path.to_path_buf()]
    };
    let mut out = Vec::new();
    for archive in archives {
        let file = std::fs::File::open(&archive).map_err(io)?;
        let mut tar = tar::Archive::new(GzDecoder::new(file));
        for entry in tar.entries().map_err(io)? {
            let mut entry = entry.map_err(io)?;
            if !entry.header().entry_type().is_file() {
                continue;
            }
            let name = entry.path().map_err(io)?.to_string_lossy().into_owned();
            if !suffixes.iter().any(|s| name.ends_with(s)) {
                continue;
            }
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).map_err(io)?;
            out.push((name, bytes));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// RFC 4180 CSV: quoted fields may hold commas, newlines and `""`.
fn csv_rows(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') if field.is_empty() => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\n') => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (false, '\r') => {}
            (false, c) => field.push(c),
        }
    }
    if !field.is_empty() || !row.is_empty() {
        row.push(field);
        rows.push(row);
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_handles_quotes_commas_and_newlines() {
        let rows = csv_rows("label,message\n1,\"a, b\nc \"\"q\"\"\"\n0,plain\r\n");
        assert_eq!(rows, vec![vec!["label", "message"], vec!["1", "a, b\nc \"q\""], vec!["0", "plain"]]);
    }

    #[test]
    fn split_is_stable_and_roughly_twenty_percent() {
        assert_eq!(split_of("sms", "hello"), split_of("sms", "hello"));
        let validation = (0..10_000).filter(|i| split_of("x", &format!("text {i}")) == Split::Validation).count();
        assert!((1_800..2_200).contains(&validation), "{validation}");
    }

    #[test]
    fn normalised_content_folds_case_yo_and_whitespace() {
        let mut m = base_message(Channel::Email, &["t"]);
        m.subject = Some("  Ёлки ".into());
        m.text = "Привет\n\n  МИР ".into();
        assert_eq!(normalised_content(&m), "елки привет мир");
    }

    #[test]
    fn class_comes_from_folder_names() {
        assert_eq!(class_from_path("set.tar.gz!x/spam/1.eml"), Some(("spam", Verdict::Spam)));
        assert_eq!(class_from_path("/data/non_target/a.json"), Some(("non_target", Verdict::NonTarget)));
        assert_eq!(class_from_path("/data/ham/a"), Some(("ham", Verdict::Inquiry)));
        assert_eq!(class_from_path("/data/other/a"), None);
    }

    #[test]
    fn duplicates_are_dropped_within_a_corpus() {
        let mut sink = Sink::new("t".into(), Path::new("t"));
        sink.push("0", Verdict::Inquiry, chat_message("telegram", "f", "Привет"));
        sink.push("0", Verdict::Inquiry, chat_message("telegram", "g", "  привет "));
        sink.push("0", Verdict::Inquiry, chat_message("telegram", "f", "   "));
        assert_eq!(sink.examples.len(), 1);
        assert_eq!((sink.stats.duplicates, sink.stats.skipped), (1, 1));
    }
}
