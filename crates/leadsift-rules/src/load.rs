//! Parsing and validating a rules file into compiled rules.
//!
//! The file is parsed with toml's recovering parser into a spanned tree and
//! then walked key by key, rather than deserialised into structs: serde
//! stops at the first problem, while an admin wants every problem in the
//! file, each with its line. Unknown keys are rejected (the walk's
//! equivalent of `deny_unknown_fields`) with a "did you mean" hint.

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use leadsift_core::{Channel, Domain, EmailAddress, MessengerHandle, PhoneNumber, ScoringPolicy, Verdict};
use regex::{Regex, RegexBuilder};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::error::{Diagnostics, Location, RulesError, SourceText};
use crate::matcher::{AtomId, AtomSpec, ChannelMask, Conditions, Scope, TextMatcher};
use crate::phrase::{Phrase, parse_phrase};
use crate::{RuleEffect, SUPPORTED_VERSION};

type Value<'i> = Spanned<DeValue<'i>>;

const TOP_LEVEL_KEYS: &[&str] = &["version", "scoring", "lists", "rule"];
const SCORING_KEYS: &[&str] = &["threshold", "steepness"];
const RULE_KEYS: &[&str] = &["id", "description", "score", "decide", "confidence", "not", "any"];
const CONDITION_KEYS: &[&str] = &[
    "channel",
    "header",
    "header_matches",
    "subject",
    "body",
    "text",
    "sender",
    "recipient",
    "sender_in",
    "sender_domain_in",
    "phrases_in",
    "phrases",
    "attachment_type",
    "attachment_name",
    "has_attachment",
    "call_answered",
    "call_duration_min",
    "call_duration_max",
    "links_min",
];
/// Compiled size limit for one author regex; generous, but stops a
/// pathological `(a{1000}){1000}` from eating memory.
const REGEX_SIZE_LIMIT: usize = 16 << 20;

/// A rule ready for evaluation.
#[derive(Debug, Clone)]
pub(crate) struct CompiledRule {
    pub(crate) id: String,
    pub(crate) description: String,
    pub(crate) line: usize,
    pub(crate) conditions: Conditions,
    pub(crate) effect: RuleEffect,
}

/// Everything a rules file compiles to.
#[derive(Debug)]
pub(crate) struct Compiled {
    pub(crate) version: u32,
    pub(crate) scoring: ScoringPolicy,
    pub(crate) rules: Vec<CompiledRule>,
    pub(crate) text: TextMatcher,
}

pub(crate) fn compile(text: &str, origin: &Path) -> Result<Compiled, RulesError> {
    let source = SourceText::new(origin.into(), text);
    let mut diags = Diagnostics::default();
    let (root, syntax_errors) = DeTable::parse_recoverable(text);
    for error in &syntax_errors {
        diags.syntax(&source, &error.span().unwrap_or(0..0), error.message());
    }
    let root = root.into_inner();

    for key in root.keys() {
        if !TOP_LEVEL_KEYS.contains(&key.get_ref().as_ref()) {
            diags.at(&source, &key.span(), unknown_key("top-level key", key.get_ref(), TOP_LEVEL_KEYS));
        }
    }
    check_version(&root, &source, &mut diags);
    let scoring = root.get("scoring").map_or_else(ScoringPolicy::default, |v| scoring(v, &source, &mut diags));
    let lists = root.get("lists").map(|v| lists(v, &source, &mut diags)).unwrap_or_default();

    let mut compiler = Compiler::new(&source, &lists, &mut diags);
    let mut rules = Vec::new();
    match root.get("rule").map(|v| (v, v.get_ref())) {
        None => {}
        Some((_, DeValue::Array(array))) => rules.extend(array.iter().filter_map(|r| compiler.rule(r))),
        Some((v, other)) => compiler.error(
            &v.span(),
            format!("`rule` must be a list of rules written as [[rule]] tables, found {}", other.type_str()),
        ),
    }
    let atoms = std::mem::take(&mut compiler.atoms);
    compiler.check_unique_ids(&rules);

    if !diags.is_empty() {
        return Err(diags.into_error());
    }
    match TextMatcher::new(atoms) {
        Ok(text) => Ok(Compiled { version: SUPPORTED_VERSION, scoring, rules, text }),
        Err(error) => {
            diags.at(&source, &(0..0), format!("the rules' regexes together are too large to compile: {error}"));
            Err(diags.into_error())
        }
    }
}

/// Only [`SUPPORTED_VERSION`] is accepted: a file written for another schema
/// could mean something else with the same keys.
fn check_version(root: &DeTable<'_>, source: &SourceText<'_>, diags: &mut Diagnostics) {
    let Some(value) = root.get("version") else {
        diags.at(source, &(0..0), format!("missing `version = {SUPPORTED_VERSION}` (the rules schema version)"));
        return;
    };
    match integer(value) {
        Some(v) if v == i64::from(SUPPORTED_VERSION) => {}
        Some(v) => diags.at(
            source,
            &value.span(),
            format!("unsupported rules version {v}: this leadsift reads version {SUPPORTED_VERSION}"),
        ),
        None => diags.at(source, &value.span(), format!("`version` must be an integer, found {}", type_of(value))),
    }
}

fn scoring(value: &Value<'_>, source: &SourceText<'_>, diags: &mut Diagnostics) -> ScoringPolicy {
    let mut policy = ScoringPolicy::default();
    let Some(table) = value.get_ref().as_table() else {
        diags.at(source, &value.span(), format!("`scoring` must be a table, found {}", type_of(value)));
        return policy;
    };
    for (key, value) in table.iter() {
        let slot = match key.get_ref().as_ref() {
            "threshold" => &mut policy.threshold,
            "steepness" => &mut policy.steepness,
            other => {
                diags.at(source, &key.span(), unknown_key("key in [scoring]", other, SCORING_KEYS));
                continue;
            }
        };
        match number(value) {
            Some(n) if n.is_finite() && (key.get_ref() != "steepness" || n > 0.0) => *slot = n,
            Some(_) => diags.at(source, &value.span(), format!("`{}` must be a positive number", key.get_ref())),
            None => diags.at(source, &value.span(), format!("`{}` must be a number", key.get_ref())),
        }
    }
    policy
}

/// One entry of a named list and where it was written.
#[derive(Debug)]
struct ListEntry {
    value: String,
    location: Location,
}

/// Named lists; `None` for a list that could not be read (already reported),
/// so rules using it add no second error.
type Lists = HashMap<String, Option<Vec<ListEntry>>>;

fn lists(value: &Value<'_>, source: &SourceText<'_>, diags: &mut Diagnostics) -> Lists {
    let mut out = HashMap::new();
    let Some(table) = value.get_ref().as_table() else {
        diags.at(source, &value.span(), format!("`lists` must be a table, found {}", type_of(value)));
        return out;
    };
    for (name, value) in table.iter() {
        let entries = match value.get_ref() {
            DeValue::Array(items) => Some(
                items
                    .iter()
                    .filter_map(|item| match item.get_ref().as_str() {
                        Some(s) => {
                            Some(ListEntry { value: s.to_owned(), location: Location::of_span(source, &item.span()) })
                        }
                        None => {
                            diags.at(
                                source,
                                &item.span(),
                                format!("list entries must be strings, found {}", type_of(item)),
                            );
                            None
                        }
                    })
                    .collect(),
            ),
            DeValue::Table(spec) => side_file(spec, &value.span(), source, diags),
            _ => {
                diags.at(
                    source,
                    &value.span(),
                    format!(
                        "list `{}` must be an array of strings or {{ file = \"path\" }}, found {}",
                        name.get_ref(),
                        type_of(value)
                    ),
                );
                None
            }
        };
        out.insert(name.get_ref().to_string(), entries);
    }
    out
}

/// Reads `{ file = "path" }`: one entry per line, blank lines and lines
/// starting with `#` skipped, path relative to the rules file.
fn side_file(
    spec: &DeTable<'_>,
    span: &Range<usize>,
    source: &SourceText<'_>,
    diags: &mut Diagnostics,
) -> Option<Vec<ListEntry>> {
    for key in spec.keys() {
        if key.get_ref() != "file" {
            diags.at(source, &key.span(), unknown_key("key in a list file reference", key.get_ref(), &["file"]));
        }
    }
    let Some(file) = spec.get("file") else {
        diags.at(source, span, "a list table needs `file = \"path\"` (relative to the rules file)");
        return None;
    };
    let Some(relative) = file.get_ref().as_str() else {
        diags.at(source, &file.span(), format!("`file` must be a string, found {}", type_of(file)));
        return None;
    };
    let path: Arc<Path> = source.path.parent().unwrap_or(Path::new("")).join(relative).into();
    let text = match std::fs::read(&path).map(String::from_utf8) {
        Ok(Ok(text)) => text,
        Ok(Err(not_utf8)) => {
            let valid = &not_utf8.as_bytes()[..not_utf8.utf8_error().valid_up_to()];
            let valid = std::str::from_utf8(valid).unwrap_or_default();
            diags.at(
                &SourceText::new(path.clone(), valid),
                &(valid.len()..valid.len()),
                "list file is not valid UTF-8",
            );
            return None;
        }
        Err(io) => {
            diags.at(source, &file.span(), format!("cannot read list file {}: {io}", path.display()));
            return None;
        }
    };
    let entries = text
        .lines()
        .enumerate()
        .filter_map(|(i, line)| {
            let entry = line.trim();
            (!entry.is_empty() && !entry.starts_with('#')).then(|| ListEntry {
                value: entry.to_owned(),
                location: Location {
                    file: path.clone(),
                    line: i + 1,
                    column: line[..line.len() - line.trim_start().len()].chars().count() + 1,
                },
            })
        })
        .collect();
    Some(entries)
}

/// Canonical entries of each list, per kind of use (`None`: the list had errors).
type EntrySets = HashMap<String, Option<Arc<HashSet<String>>>>;

/// Walks rules, registering text atoms and compiling list lookups once per list.
struct Compiler<'a, 't> {
    source: &'a SourceText<'t>,
    lists: &'a Lists,
    diags: &'a mut Diagnostics,
    atoms: Vec<AtomSpec>,
    atom_ids: HashMap<(String, Scope), AtomId>,
    phrase_lists: HashMap<String, Option<AtomId>>,
    domain_lists: EntrySets,
    identity_lists: EntrySets,
}

/// What a [[rule]] table says besides its conditions.
#[derive(Default)]
struct RuleHead {
    id: Option<String>,
    description: Option<String>,
    score: Option<Vec<(Verdict, f64)>>,
    decide: Option<Verdict>,
    confidence: Option<(f64, Range<usize>)>,
}

impl<'a, 't> Compiler<'a, 't> {
    fn new(source: &'a SourceText<'t>, lists: &'a Lists, diags: &'a mut Diagnostics) -> Self {
        Self {
            source,
            lists,
            diags,
            atoms: Vec::new(),
            atom_ids: HashMap::new(),
            phrase_lists: HashMap::new(),
            domain_lists: HashMap::new(),
            identity_lists: HashMap::new(),
        }
    }

    fn error(&mut self, span: &Range<usize>, message: impl Into<String>) {
        self.diags.at(self.source, span, message);
    }

    fn line_of(&self, span: &Range<usize>) -> usize {
        self.source.position(span.start).0
    }

    fn rule(&mut self, value: &Value<'_>) -> Option<CompiledRule> {
        let span = value.span();
        let Some(table) = value.get_ref().as_table() else {
            self.error(&span, format!("each rule must be a table, found {}", type_of(value)));
            return None;
        };
        let mut head = RuleHead::default();
        let mut conditions = Conditions::default();
        for (key, value) in table.iter() {
            let name = key.get_ref().as_ref();
            match name {
                "id" => head.id = self.rule_id(value),
                "description" => head.description = self.nonempty_string(name, value),
                "score" => head.score = self.score(value),
                "decide" => head.decide = self.string(name, value).and_then(|s| self.class(&s, &value.span())),
                "confidence" => match number(value) {
                    Some(c) if c > 0.0 && c <= 1.0 => head.confidence = Some((c, value.span())),
                    _ => self.error(&value.span(), "`confidence` must be a number above 0 and at most 1"),
                },
                "not" => {
                    conditions.not = self.nested(name, value).map(Box::new);
                }
                "any" => conditions.any = self.any(value),
                _ => {
                    if !self.condition(name, value, &mut conditions) {
                        let known: Vec<&str> = RULE_KEYS.iter().chain(CONDITION_KEYS).copied().collect();
                        self.error(&key.span(), unknown_key("key in a rule", name, &known));
                    }
                }
            }
        }

        let rule_name = head.id.as_deref().map_or_else(|| "rule".to_owned(), |id| format!("rule {id}"));
        if head.id.is_none() && !table.contains_key("id") {
            self.error(&span, "rule has no `id` (upper-case letters, digits and `_`, unique in the file)");
        }
        if head.description.is_none() && !table.contains_key("description") {
            self.error(&span, format!("{rule_name} has no `description` (shown to managers as the reason)"));
        }
        let has_condition_key = table
            .keys()
            .any(|k| CONDITION_KEYS.contains(&k.get_ref().as_ref()) || ["not", "any"].contains(&k.get_ref().as_ref()));
        if !has_condition_key {
            self.error(&span, format!("{rule_name} has no condition, so it would match every message"));
        }
        let effect = match (head.score, head.decide, table.contains_key("score"), table.contains_key("decide")) {
            (_, _, true, true) => {
                self.error(&span, format!("{rule_name} has both `score` and `decide`: use one of them"));
                None
            }
            (Some(scores), None, _, _) => Some(RuleEffect::Score(scores)),
            (None, Some(class), _, _) => {
                Some(RuleEffect::Decide { class, confidence: head.confidence.as_ref().map_or(1.0, |c| c.0) })
            }
            (None, None, false, false) => {
                self.error(
                    &span,
                    format!("{rule_name} has no effect: add `score = {{ class = points }}` or `decide = \"class\"`"),
                );
                None
            }
            _ => None, // the bad `score` or `decide` value is reported already
        };
        if let Some((_, confidence_span)) = &head.confidence
            && !table.contains_key("decide")
        {
            self.error(confidence_span, "`confidence` only applies to rules with `decide`");
        }
        Some(CompiledRule {
            id: head.id?,
            description: head.description?,
            line: self.line_of(&span),
            conditions,
            effect: effect?,
        })
    }

    fn check_unique_ids(&mut self, rules: &[CompiledRule]) {
        let mut first_line: HashMap<&str, usize> = HashMap::new();
        for rule in rules {
            if let Some(line) = first_line.get(rule.id.as_str()) {
                self.diags.push(
                    Location { file: self.source.path.clone(), line: rule.line, column: 1 }
                        .error(format!("duplicate rule id {} (first defined on line {line})", rule.id)),
                );
            } else {
                first_line.insert(&rule.id, rule.line);
            }
        }
    }

    fn rule_id(&mut self, value: &Value<'_>) -> Option<String> {
        let id = self.string("id", value)?;
        let valid = !id.is_empty() && id.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
        if !valid {
            self.error(&value.span(), format!("rule id {id:?} must be upper-case letters, digits and `_`"));
            return None;
        }
        Some(id)
    }

    fn score(&mut self, value: &Value<'_>) -> Option<Vec<(Verdict, f64)>> {
        let Some(table) = value.get_ref().as_table() else {
            self.error(&value.span(), "`score` must be a table such as { spam = 2.0, inquiry = -1.0 }");
            return None;
        };
        if table.is_empty() {
            self.error(&value.span(), "`score` is empty: name at least one class and its points");
            return None;
        }
        let mut scores = Vec::new();
        let mut ok = true;
        for (class, points) in table.iter() {
            let class = self.class(class.get_ref(), &class.span());
            let points = match number(points) {
                Some(p) if p.is_finite() && p.abs() <= 100.0 => Some(p),
                _ => {
                    self.error(&points.span(), "a score must be a number between -100 and 100");
                    None
                }
            };
            match (class, points) {
                (Some(class), Some(points)) => scores.push((class, points)),
                _ => ok = false,
            }
        }
        scores.sort_by_key(|(class, _)| *class);
        ok.then_some(scores)
    }

    fn class(&mut self, name: &str, span: &Range<usize>) -> Option<Verdict> {
        match Verdict::from_str(name) {
            Ok(class) => Some(class),
            Err(unknown) => {
                self.error(span, unknown.to_string());
                None
            }
        }
    }

    /// A `not = { ... }` table or one element of `any`: plain conditions only.
    fn nested(&mut self, context: &str, value: &Value<'_>) -> Option<Conditions> {
        let Some(table) = value.get_ref().as_table() else {
            self.error(&value.span(), format!("`{context}` takes a table of conditions, such as {{ body = '...' }}"));
            return None;
        };
        if table.is_empty() {
            self.error(&value.span(), format!("`{context}` has no condition"));
            return None;
        }
        let mut conditions = Conditions::default();
        for (key, value) in table.iter() {
            let name = key.get_ref().as_ref();
            if ["not", "any"].contains(&name) {
                self.error(&key.span(), format!("`{name}` cannot be used inside `{context}`"));
            } else if !self.condition(name, value, &mut conditions) {
                self.error(&key.span(), unknown_key(&format!("condition in `{context}`"), name, CONDITION_KEYS));
            }
        }
        // Bad values and unknown keys are reported above.
        (conditions.count() > 0).then_some(conditions)
    }

    fn any(&mut self, value: &Value<'_>) -> Vec<Conditions> {
        let Some(items) = value.get_ref().as_array() else {
            self.error(&value.span(), "`any` takes a list of condition tables: any = [{ ... }, { ... }]");
            return Vec::new();
        };
        if items.is_empty() {
            self.error(&value.span(), "`any` is empty");
        }
        items.iter().filter_map(|item| self.nested("any", item)).collect()
    }

    /// Parses one condition key into `into`; false if the key is not a condition.
    fn condition(&mut self, name: &str, value: &Value<'_>, into: &mut Conditions) -> bool {
        let span = value.span();
        match name {
            "channel" => into.channels = self.channels(value),
            "header" => {
                if let Some(header) = self.header_name(name, value) {
                    into.headers_present.push(header);
                }
            }
            "header_matches" => {
                if let Some(pair) = self.header_matches(value) {
                    into.header_matches.push(pair);
                }
            }
            "subject" => self.push_text_atom(name, value, Scope::Subject, into),
            "body" => self.push_text_atom(name, value, Scope::Body, into),
            "text" => self.push_text_atom(name, value, Scope::SubjectOrBody, into),
            "sender" => into.sender = self.regex(name, value),
            "recipient" => into.recipient = self.regex(name, value),
            "attachment_type" => into.attachment_type = self.regex(name, value),
            "attachment_name" => into.attachment_name = self.regex(name, value),
            "sender_in" => {
                into.sender_in = self.list_name(name, value).and_then(|list| self.identity_list(&list, &span));
            }
            "sender_domain_in" => {
                into.sender_domain_in = self.list_name(name, value).and_then(|list| self.domain_list(&list, &span));
            }
            "phrases_in" => {
                if let Some(atom) = self.list_name(name, value).and_then(|list| self.phrase_list(&list, &span)) {
                    into.atoms.push(atom);
                }
            }
            "phrases" => {
                if let Some(atom) = self.inline_phrases(value) {
                    into.atoms.push(atom);
                }
            }
            "has_attachment" => into.has_attachment = self.boolean(name, value),
            "call_answered" => into.call_answered = self.boolean(name, value),
            "call_duration_min" => into.call_duration_min = self.count(name, value, 0),
            "call_duration_max" => into.call_duration_max = self.count(name, value, 0),
            "links_min" => into.links_min = self.count(name, value, 1).map(|n| n as usize),
            _ => return false,
        }
        true
    }

    fn channels(&mut self, value: &Value<'_>) -> Option<ChannelMask> {
        let items: Vec<&Value<'_>> = match value.get_ref() {
            DeValue::String(_) => vec![value],
            DeValue::Array(items) if !items.is_empty() => items.iter().collect(),
            _ => {
                self.error(
                    &value.span(),
                    "`channel` must be a channel name or a list of them (email, call, messenger, webform)",
                );
                return None;
            }
        };
        let mut mask = ChannelMask::default();
        let mut ok = true;
        for item in items {
            match item.get_ref().as_str().map(Channel::from_str) {
                Some(Ok(channel)) => mask.insert(channel),
                Some(Err(unknown)) => {
                    self.error(&item.span(), unknown.to_string());
                    ok = false;
                }
                None => {
                    self.error(&item.span(), format!("a channel must be a string, found {}", type_of(item)));
                    ok = false;
                }
            }
        }
        ok.then_some(mask)
    }

    fn header_name(&mut self, key: &str, value: &Value<'_>) -> Option<String> {
        let name = self.string(key, value)?;
        let valid = !name.is_empty() && name.chars().all(|c| c.is_ascii_graphic() && c != ':');
        if !valid {
            self.error(&value.span(), format!("{name:?} is not a header name"));
            return None;
        }
        Some(name)
    }

    fn header_matches(&mut self, value: &Value<'_>) -> Option<(String, Regex)> {
        let usage = "`header_matches` takes { name = \"Header-Name\", regex = '...' }";
        let Some(table) = value.get_ref().as_table() else {
            self.error(&value.span(), usage);
            return None;
        };
        for key in table.keys() {
            if !["name", "regex"].contains(&key.get_ref().as_ref()) {
                self.error(&key.span(), unknown_key("key in `header_matches`", key.get_ref(), &["name", "regex"]));
            }
        }
        let (Some(name), Some(regex)) = (table.get("name"), table.get("regex")) else {
            self.error(&value.span(), usage);
            return None;
        };
        let name = self.header_name("name", name);
        let regex = self.regex("regex", regex);
        Some((name?, regex?))
    }

    fn regex(&mut self, key: &str, value: &Value<'_>) -> Option<Regex> {
        let pattern = self.string(key, value)?;
        match RegexBuilder::new(&pattern).size_limit(REGEX_SIZE_LIMIT).build() {
            Ok(re) => Some(re),
            Err(error) => {
                self.error(&value.span(), format!("bad regex in `{key}`: {}", regex_error_summary(&error)));
                None
            }
        }
    }

    fn push_text_atom(&mut self, key: &str, value: &Value<'_>, scope: Scope, into: &mut Conditions) {
        if let Some(re) = self.regex(key, value) {
            let slow = may_use_unicode_word_boundary(re.as_str()).then_some(re);
            let pattern = value.get_ref().as_str().unwrap_or_default().to_owned();
            into.atoms.push(self.atom(pattern, scope, slow));
        }
    }

    fn atom(&mut self, pattern: String, scope: Scope, slow: Option<Regex>) -> AtomId {
        let key = (pattern, scope);
        if let Some(&id) = self.atom_ids.get(&key) {
            return id;
        }
        let id = self.atoms.len();
        self.atoms.push(AtomSpec::Regex { pattern: key.0.clone(), scope, slow });
        self.atom_ids.insert(key, id);
        id
    }

    fn phrase_atom(&mut self, phrases: Vec<Phrase>) -> AtomId {
        let id = self.atoms.len();
        self.atoms.push(AtomSpec::Phrases(phrases));
        id
    }

    fn list_name(&mut self, key: &str, value: &Value<'_>) -> Option<String> {
        let name = self.string(key, value)?;
        if !self.lists.contains_key(&name) {
            let mut known: Vec<&str> = self.lists.keys().map(String::as_str).collect();
            known.sort_unstable();
            let hint = if known.is_empty() {
                "there is no [lists] section".to_owned()
            } else {
                format!("defined lists: {}", known.join(", "))
            };
            self.error(&value.span(), format!("unknown list {name:?} in `{key}` ({hint})"));
            return None;
        }
        Some(name)
    }

    fn phrase_list(&mut self, list: &str, used_at: &Range<usize>) -> Option<AtomId> {
        if let Some(known) = self.phrase_lists.get(list) {
            return *known;
        }
        let Some(entries) = &self.lists[list] else {
            self.phrase_lists.insert(list.to_owned(), None);
            return None;
        };
        let mut phrases = Vec::with_capacity(entries.len());
        for entry in entries {
            match parse_phrase(&entry.value) {
                Ok(p) => phrases.push(p),
                Err(message) => self.diags.push(entry.location.error(message)),
            }
        }
        if entries.is_empty() {
            self.error(used_at, format!("list {list:?} is empty"));
        }
        let atom = (phrases.len() == entries.len() && !phrases.is_empty()).then(|| self.phrase_atom(phrases));
        self.phrase_lists.insert(list.to_owned(), atom);
        atom
    }

    fn inline_phrases(&mut self, value: &Value<'_>) -> Option<AtomId> {
        let Some(items) = value.get_ref().as_array().filter(|items| !items.is_empty()) else {
            self.error(&value.span(), "`phrases` takes a non-empty list of strings: phrases = [\"...\", \"...\"]");
            return None;
        };
        let mut phrases = Vec::with_capacity(items.len());
        let mut ok = true;
        for item in items.iter() {
            match item.get_ref().as_str().map(parse_phrase) {
                Some(Ok(p)) => phrases.push(p),
                Some(Err(message)) => {
                    self.error(&item.span(), message);
                    ok = false;
                }
                None => {
                    self.error(&item.span(), format!("phrases must be strings, found {}", type_of(item)));
                    ok = false;
                }
            }
        }
        ok.then(|| self.phrase_atom(phrases))
    }

    fn domain_list(&mut self, list: &str, used_at: &Range<usize>) -> Option<Arc<HashSet<String>>> {
        self.entry_set(
            list,
            used_at,
            |entries| &mut entries.domain_lists,
            |raw| {
                let trimmed = raw.trim().trim_start_matches("*.").trim_start_matches('@');
                Domain::parse(trimmed)
                    .map(|d| d.as_str().to_owned())
                    .map_err(|_| format!("{raw:?} is not a domain name"))
            },
        )
    }

    fn identity_list(&mut self, list: &str, used_at: &Range<usize>) -> Option<Arc<HashSet<String>>> {
        self.entry_set(
            list,
            used_at,
            |entries| &mut entries.identity_lists,
            |raw| {
                let raw = raw.trim();
                let canonical = if raw.starts_with('+') {
                    PhoneNumber::parse(raw, "ZZ").map(|p| p.as_str().to_owned())
                } else if raw.contains(':') {
                    MessengerHandle::parse(raw).map(|h| h.as_str().to_owned())
                } else {
                    EmailAddress::parse(raw).map(|e| e.as_str().to_owned())
                };
                canonical.map_err(|_| {
                    format!("{raw:?} is not an email address, an international +phone number or a network:handle")
                })
            },
        )
    }

    /// Validates and canonicalises a list's entries once per kind of use.
    fn entry_set(
        &mut self,
        list: &str,
        used_at: &Range<usize>,
        cache: fn(&mut Self) -> &mut EntrySets,
        canonical: impl Fn(&str) -> Result<String, String>,
    ) -> Option<Arc<HashSet<String>>> {
        if let Some(known) = cache(self).get(list) {
            return known.clone();
        }
        let Some(entries) = &self.lists[list] else {
            cache(self).insert(list.to_owned(), None);
            return None;
        };
        let mut set = HashSet::with_capacity(entries.len());
        let mut ok = true;
        for entry in entries {
            match canonical(&entry.value) {
                Ok(value) => {
                    set.insert(value);
                }
                Err(message) => {
                    self.diags.push(entry.location.error(message));
                    ok = false;
                }
            }
        }
        if entries.is_empty() {
            self.error(used_at, format!("list {list:?} is empty"));
            ok = false;
        }
        let result = ok.then(|| Arc::new(set));
        cache(self).insert(list.to_owned(), result.clone());
        result
    }

    fn string(&mut self, key: &str, value: &Value<'_>) -> Option<String> {
        match value.get_ref().as_str() {
            Some(s) => Some(s.to_owned()),
            None => {
                self.error(&value.span(), format!("`{key}` must be a string, found {}", type_of(value)));
                None
            }
        }
    }

    fn nonempty_string(&mut self, key: &str, value: &Value<'_>) -> Option<String> {
        let s = self.string(key, value)?;
        if s.trim().is_empty() {
            self.error(&value.span(), format!("`{key}` is empty"));
            return None;
        }
        Some(s)
    }

    fn boolean(&mut self, key: &str, value: &Value<'_>) -> Option<bool> {
        let b = value.get_ref().as_bool();
        if b.is_none() {
            self.error(&value.span(), format!("`{key}` must be true or false, found {}", type_of(value)));
        }
        b
    }

    fn count(&mut self, key: &str, value: &Value<'_>, min: u32) -> Option<u32> {
        match integer(value).and_then(|n| u32::try_from(n).ok()).filter(|n| *n >= min) {
            Some(n) => Some(n),
            None => {
                self.error(&value.span(), format!("`{key}` must be a whole number of at least {min}"));
                None
            }
        }
    }
}

fn integer(value: &Value<'_>) -> Option<i64> {
    value.get_ref().as_integer().and_then(|i| i64::from_str_radix(i.as_str(), i.radix()).ok())
}

/// Floats and integers alike, so `score = { spam = 2 }` works.
fn number(value: &Value<'_>) -> Option<f64> {
    match value.get_ref() {
        DeValue::Float(f) => f.as_str().parse().ok(),
        DeValue::Integer(_) => integer(value).map(|i| i as f64),
        _ => None,
    }
}

fn type_of(value: &Value<'_>) -> &'static str {
    value.get_ref().type_str()
}

fn unknown_key(what: &str, key: &str, known: &[&str]) -> String {
    let closest = known.iter().map(|k| (edit_distance(key, k), *k)).filter(|(d, _)| *d <= 2).min();
    match closest {
        Some((_, suggestion)) => format!("unknown {what} `{key}`; did you mean `{suggestion}`?"),
        None => format!("unknown {what} `{key}` (expected one of: {})", known.join(", ")),
    }
}

/// Levenshtein distance, for "did you mean" hints.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (diagonal + usize::from(ca != *cb)).min(row[j] + 1).min(above + 1);
            diagonal = above;
        }
    }
    row[b.len()]
}

/// The one-line cause out of regex's multi-line error text.
fn regex_error_summary(error: &regex::Error) -> String {
    let text = error.to_string();
    text.lines()
        .find_map(|line| line.trim().strip_prefix("error: "))
        .map_or_else(|| text.lines().last().unwrap_or_default().trim().to_owned(), str::to_owned)
}

/// Whether a pattern may contain a Unicode word boundary (`\b`, `\B`,
/// `\<`, `\>`, `\b{...}`). Over-approximates: a false positive only moves
/// the regex to the slower, on-demand path.
fn may_use_unicode_word_boundary(pattern: &str) -> bool {
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c == '\\'
            && let Some('b' | 'B' | '<' | '>') = chars.next()
        {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_catch_typos() {
        assert_eq!(unknown_key("key", "bodyy", CONDITION_KEYS), "unknown key `bodyy`; did you mean `body`?");
        assert!(unknown_key("key", "zzzzzz", &["id"]).contains("expected one of: id"));
    }

    #[test]
    fn word_boundary_detection() {
        assert!(may_use_unicode_word_boundary(r"\bfoo\b"));
        assert!(!may_use_unicode_word_boundary(r"\\bar"));
        assert!(!may_use_unicode_word_boundary(r"(?m)^1CClientBankExchange"));
    }
}
