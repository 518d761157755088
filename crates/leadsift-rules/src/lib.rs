//! leadsift's rules engine: an admin-editable TOML rules file, loaded and
//! validated whole, that turns a [`Message`] into [`Evidence`].
//!
//! The crate is pure: it depends on the core model, `regex` and `toml`, and
//! does no I/O beyond reading the rules file and its list side files at
//! load time. It never decides a verdict itself; [`ScoringPolicy::decide`]
//! in the core does, so rules, the ML model and list standing combine the
//! same way everywhere. The format is documented for admins in
//! `rules/README.md`; the shipped rules are `rules/default.toml`, embedded
//! at build time as [`RuleSet::builtin`].
//!
//! The key design decision is that the text conditions of all rules are
//! compiled together when the file is loaded (one regex set per field and
//! one phrase automaton), so classifying a message scans a capped prefix of
//! its text a fixed number of times, however many rules the file has.

mod error;
mod load;
mod matcher;
mod phrase;

#[cfg(test)]
mod default_rules_tests;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use leadsift_core::{
    Classification, Classifier, Evidence, Message, Reason, ReasonOrigin, ScoringPolicy, SenderStanding, Verdict,
};
use serde::Serialize;

pub use error::{RuleFileError, RulesError};
pub use matcher::{BODY_SCAN_LIMIT, FIELD_SCAN_LIMIT, SUBJECT_SCAN_LIMIT};

use load::{Compiled, CompiledRule};
use matcher::{Scan, TextMatcher};

/// The rules-file schema version this build reads.
pub const SUPPORTED_VERSION: u32 = 1;

/// A loaded, compiled rules file. Cloning is cheap (the compiled rules are
/// shared), so the pipeline can hold it in an `Arc` or an `ArcSwap` and
/// swap in a freshly loaded file without stopping triage.
#[derive(Debug, Clone)]
pub struct RuleSet {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    origin: PathBuf,
    version: u32,
    scoring: ScoringPolicy,
    rules: Vec<CompiledRule>,
    text: TextMatcher,
}

/// What a rule does when it matches.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleEffect {
    /// Adds points to classes; negative points pull away from a class.
    Score(Vec<(Verdict, f64)>),
    /// Decides the class outright.
    Decide { class: Verdict, confidence: f64 },
}

impl fmt::Display for RuleEffect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Score(scores) => {
                for (i, (class, points)) in scores.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{class} {points:+}")?;
                }
                Ok(())
            }
            Self::Decide { class, confidence } => write!(f, "decides {class} (confidence {confidence})"),
        }
    }
}

/// A rule as shown in docs, the UI and metrics.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleInfo<'a> {
    pub id: &'a str,
    pub description: &'a str,
    pub effect: &'a RuleEffect,
    /// Line of the rule's `[[rule]]` header in its file.
    pub line: usize,
}

impl RuleSet {
    /// Reads and compiles a rules file and the list files it references.
    pub fn load(path: &Path) -> Result<RuleSet, RulesError> {
        let bytes = std::fs::read(path).map_err(|io| RulesError {
            errors: vec![RuleFileError {
                file: path.to_path_buf(),
                line: 1,
                column: 1,
                message: format!("cannot read rules file: {io}"),
            }],
        })?;
        match String::from_utf8(bytes) {
            Ok(text) => Self::parse(&text, path),
            Err(not_utf8) => {
                let valid = &not_utf8.as_bytes()[..not_utf8.utf8_error().valid_up_to()];
                let line = valid.iter().filter(|&&b| b == b'\n').count() + 1;
                let line_start = valid.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
                let column = String::from_utf8_lossy(&valid[line_start..]).chars().count() + 1;
                Err(RulesError {
                    errors: vec![RuleFileError {
                        file: path.to_path_buf(),
                        line,
                        column,
                        message: "rules file is not valid UTF-8".into(),
                    }],
                })
            }
        }
    }

    /// Compiles rules from text. `origin` names the file in errors, and list
    /// side files are read relative to its directory.
    pub fn parse(text: &str, origin: &Path) -> Result<RuleSet, RulesError> {
        let Compiled { version, scoring, rules, text } = load::compile(text, origin)?;
        Ok(Self { inner: Arc::new(Inner { origin: origin.to_path_buf(), version, scoring, rules, text }) })
    }

    /// The rules shipped with leadsift (`rules/default.toml`), embedded at
    /// build time so the service classifies sensibly with no rules file.
    pub fn builtin() -> RuleSet {
        static BUILTIN: OnceLock<RuleSet> = OnceLock::new();
        BUILTIN
            .get_or_init(|| {
                Self::parse(include_str!("../../../rules/default.toml"), Path::new(BUILTIN_ORIGIN))
                    .unwrap_or_else(|error| panic!("the built-in rules are invalid (a test catches this):\n{error}"))
            })
            .clone()
    }

    /// Runs every rule on the message and records what matched, in file
    /// order. Only the first [`BODY_SCAN_LIMIT`] bytes of the text are
    /// examined.
    pub fn evidence(&self, message: &Message) -> Evidence {
        let inner = &*self.inner;
        let mut scan = Scan::new(&inner.text, message);
        let mut evidence = Evidence::default();
        for rule in &inner.rules {
            if !rule.conditions.holds(&inner.text, &mut scan) {
                continue;
            }
            let reason = Reason {
                rule: rule.id.clone(),
                description: rule.description.clone(),
                origin: ReasonOrigin::Rule,
                class: None,
                score: 0.0,
                decisive: false,
            };
            match &rule.effect {
                RuleEffect::Score(scores) => {
                    for (class, points) in scores {
                        evidence.add_score(reason.clone(), *class, *points);
                    }
                }
                RuleEffect::Decide { class, confidence } => evidence.decide(reason, *class, *confidence),
            }
        }
        evidence
    }

    /// The file's `[scoring]` section, or the core defaults.
    pub fn scoring(&self) -> ScoringPolicy {
        self.inner.scoring
    }

    /// The rules in file order.
    pub fn rules(&self) -> impl Iterator<Item = RuleInfo<'_>> + '_ {
        self.inner.rules.iter().map(|rule| RuleInfo {
            id: &rule.id,
            description: &rule.description,
            effect: &rule.effect,
            line: rule.line,
        })
    }

    /// The file's schema version.
    pub fn version(&self) -> u32 {
        self.inner.version
    }

    /// The path the rules were loaded from (a placeholder for the built-in rules).
    pub fn origin(&self) -> &Path {
        &self.inner.origin
    }
}

/// The path the built-in rules report in errors and [`RuleSet::origin`].
pub const BUILTIN_ORIGIN: &str = "<builtin>/rules/default.toml";

impl Classifier for RuleSet {
    fn classify(&self, message: &Message, standing: &SenderStanding) -> Classification {
        self.scoring().decide(self.evidence(message), standing)
    }
}

#[cfg(test)]
mod tests;
