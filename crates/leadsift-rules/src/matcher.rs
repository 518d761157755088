//! The hot path: compiled conditions and their evaluation on one message.
//!
//! Text conditions (`subject`, `body`, `text`, `phrases`, `phrases_in`) are
//! "atoms", all evaluated once per message before any rule runs: admin
//! regexes through one [`RegexSet`] per field (one scan of the subject and
//! one of the capped body, however many rules there are), and the phrases of
//! all rules in one pass over a normalised copy of the text (see
//! [`crate::phrase`]). Each rule then checks its cheap conditions and looks
//! its atoms up in the matched-atom table. The one exception is a regex
//! with a Unicode word boundary (`\b`): the regex engine cannot run those on
//! its fast DFA over non-ASCII text, so such atoms stay out of the sets and
//! run only for rules whose other conditions already hold.

use std::collections::HashSet;
use std::sync::Arc;

use leadsift_core::{Channel, Message};
use regex::{Regex, RegexSet};

use crate::phrase::{FIELD_SEPARATOR, Phrase, PhraseMatcher, normalize_into};

/// Longest prefix of the body that text conditions look at: a huge
/// message must not slow triage down.
pub const BODY_SCAN_LIMIT: usize = 64 * 1024;
/// Longest prefix of the subject that text conditions look at.
pub const SUBJECT_SCAN_LIMIT: usize = 4 * 1024;
/// Longest prefix of each header value, sender field and attachment field.
pub const FIELD_SCAN_LIMIT: usize = 8 * 1024;

pub(crate) type AtomId = usize;

/// Which message fields a text atom looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Scope {
    Subject,
    Body,
    /// Subject or body: matches when either does.
    SubjectOrBody,
}

impl Scope {
    fn covers_subject(self) -> bool {
        matches!(self, Self::Subject | Self::SubjectOrBody)
    }

    fn covers_body(self) -> bool {
        matches!(self, Self::Body | Self::SubjectOrBody)
    }
}

/// A text atom as registered while loading.
#[derive(Debug, Clone)]
pub(crate) enum AtomSpec {
    /// An admin regex over the subject, the body or either.
    Regex {
        pattern: String,
        scope: Scope,
        /// Set for atoms evaluated one by one (see the module docs).
        slow: Option<Regex>,
    },
    /// Any of these phrases, in the subject or the body.
    Phrases(Vec<Phrase>),
}

/// All text atoms of a rule set, compiled.
#[derive(Debug, Clone)]
pub(crate) struct TextMatcher {
    /// Per atom: the regex to run on demand, for slow atoms only.
    slow: Vec<Option<(Regex, Scope)>>,
    subject_set: RegexSet,
    subject_atoms: Vec<AtomId>,
    body_set: RegexSet,
    body_atoms: Vec<AtomId>,
    phrases: PhraseMatcher,
}

impl TextMatcher {
    pub(crate) fn new(atoms: Vec<AtomSpec>) -> Result<Self, regex::Error> {
        let mut slow = Vec::with_capacity(atoms.len());
        let (mut subject_patterns, mut subject_atoms) = (Vec::new(), Vec::new());
        let (mut body_patterns, mut body_atoms) = (Vec::new(), Vec::new());
        let mut phrase_atoms = Vec::new();
        for (id, atom) in atoms.into_iter().enumerate() {
            match atom {
                AtomSpec::Regex { slow: Some(re), scope, .. } => slow.push(Some((re, scope))),
                AtomSpec::Regex { pattern, scope, slow: None } => {
                    if scope.covers_subject() {
                        subject_patterns.push(pattern.clone());
                        subject_atoms.push(id);
                    }
                    if scope.covers_body() {
                        body_patterns.push(pattern);
                        body_atoms.push(id);
                    }
                    slow.push(None);
                }
                AtomSpec::Phrases(phrases) => {
                    phrase_atoms.push((id, phrases));
                    slow.push(None);
                }
            }
        }
        let build = |patterns: Vec<String>| {
            regex::RegexSetBuilder::new(patterns).size_limit(256 << 20).dfa_size_limit(32 << 20).build()
        };
        Ok(Self {
            slow,
            subject_set: build(subject_patterns)?,
            subject_atoms,
            body_set: build(body_patterns)?,
            body_atoms,
            phrases: PhraseMatcher::new(phrase_atoms)?,
        })
    }
}

#[cfg(test)]
impl TextMatcher {
    pub(crate) fn atom_count(&self) -> usize {
        self.slow.len()
    }
}

/// Per-message state: the capped fields and which atoms matched.
pub(crate) struct Scan<'m> {
    message: &'m Message,
    subject: &'m str,
    body: &'m str,
    /// `None` for slow atoms not evaluated yet.
    atoms: Vec<Option<bool>>,
    links: Option<usize>,
}

impl<'m> Scan<'m> {
    pub(crate) fn new(matcher: &TextMatcher, message: &'m Message) -> Self {
        let subject = capped(message.subject.as_deref().unwrap_or(""), SUBJECT_SCAN_LIMIT);
        let body = capped(&message.text, BODY_SCAN_LIMIT);
        let mut atoms: Vec<Option<bool>> =
            matcher.slow.iter().map(|slow| if slow.is_some() { None } else { Some(false) }).collect();
        for (set, ids, text) in
            [(&matcher.subject_set, &matcher.subject_atoms, subject), (&matcher.body_set, &matcher.body_atoms, body)]
        {
            if !text.is_empty() && !set.is_empty() {
                for i in set.matches(text).iter() {
                    atoms[ids[i]] = Some(true);
                }
            }
        }
        if !matcher.phrases.is_empty() {
            let mut normalized = Vec::with_capacity(subject.len() + body.len() + 1);
            normalize_into(subject, &mut normalized);
            normalized.push(FIELD_SEPARATOR);
            normalize_into(body, &mut normalized);
            matcher.phrases.scan(&normalized, &mut atoms);
        }
        Self { message, subject, body, atoms, links: None }
    }

    fn atom(&mut self, matcher: &TextMatcher, id: AtomId) -> bool {
        if let Some(known) = self.atoms[id] {
            return known;
        }
        let hit = matcher.slow[id].as_ref().is_some_and(|(re, scope)| {
            (scope.covers_subject() && re.is_match(self.subject)) || (scope.covers_body() && re.is_match(self.body))
        });
        self.atoms[id] = Some(hit);
        hit
    }

    /// `http(s)://` and `www.` links in the scanned subject and body, as
    /// [`Message::link_count`] counts them but over the capped text.
    fn links(&mut self) -> usize {
        *self.links.get_or_insert_with(|| {
            let count =
                |s: &str| s.matches("http://").count() + s.matches("https://").count() + s.matches("www.").count();
            count(self.subject) + count(self.body)
        })
    }
}

/// The longest prefix of `text` of at most `max` bytes that ends on a char boundary.
pub(crate) fn capped(text: &str, max: usize) -> &str {
    &text[..text.floor_char_boundary(max)]
}

/// A set of channels as a bit mask.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ChannelMask(u8);

impl ChannelMask {
    pub(crate) fn insert(&mut self, channel: Channel) {
        self.0 |= 1 << (channel as u8);
    }

    fn contains(self, channel: Channel) -> bool {
        self.0 & (1 << (channel as u8)) != 0
    }
}

/// The conditions of one rule (or of one `not`/`any` table): all must hold.
#[derive(Debug, Clone, Default)]
pub(crate) struct Conditions {
    pub(crate) channels: Option<ChannelMask>,
    pub(crate) has_attachment: Option<bool>,
    pub(crate) call_answered: Option<bool>,
    pub(crate) call_duration_min: Option<u32>,
    pub(crate) call_duration_max: Option<u32>,
    pub(crate) headers_present: Vec<String>,
    pub(crate) atoms: Vec<AtomId>,
    pub(crate) links_min: Option<usize>,
    pub(crate) sender_in: Option<Arc<HashSet<String>>>,
    pub(crate) sender_domain_in: Option<Arc<HashSet<String>>>,
    pub(crate) header_matches: Vec<(String, Regex)>,
    pub(crate) sender: Option<Regex>,
    pub(crate) recipient: Option<Regex>,
    pub(crate) attachment_type: Option<Regex>,
    pub(crate) attachment_name: Option<Regex>,
    pub(crate) not: Option<Box<Conditions>>,
    pub(crate) any: Vec<Conditions>,
}

impl Conditions {
    /// Number of conditions set, to reject rules that would match everything.
    pub(crate) fn count(&self) -> usize {
        [
            self.channels.is_some(),
            self.has_attachment.is_some(),
            self.call_answered.is_some(),
            self.call_duration_min.is_some(),
            self.call_duration_max.is_some(),
            self.links_min.is_some(),
            self.sender_in.is_some(),
            self.sender_domain_in.is_some(),
            self.sender.is_some(),
            self.recipient.is_some(),
            self.attachment_type.is_some(),
            self.attachment_name.is_some(),
            self.not.is_some(),
            !self.any.is_empty(),
        ]
        .into_iter()
        .filter(|set| *set)
        .count()
            + self.headers_present.len()
            + self.atoms.len()
            + self.header_matches.len()
    }

    /// True when every condition holds. Cheap checks come first so most
    /// rules are rejected before any per-rule regex runs.
    pub(crate) fn holds(&self, matcher: &TextMatcher, scan: &mut Scan<'_>) -> bool {
        let m = scan.message;
        if self.channels.is_some_and(|mask| !mask.contains(m.channel)) {
            return false;
        }
        if self.has_attachment.is_some_and(|want| want == m.attachments.is_empty()) {
            return false;
        }
        if self.call_answered.is_some() || self.call_duration_min.is_some() || self.call_duration_max.is_some() {
            let Some(call) = m.call else { return false };
            if self.call_answered.is_some_and(|want| want != call.answered)
                || self.call_duration_min.is_some_and(|min| call.duration_secs < min)
                || self.call_duration_max.is_some_and(|max| call.duration_secs > max)
            {
                return false;
            }
        }
        if !self.headers_present.iter().all(|name| m.header(name).is_some()) {
            return false;
        }
        // Fast atoms are already known; slow ones run here, after the
        // cheap checks above.
        if !self.atoms.iter().all(|&id| scan.atom(matcher, id)) {
            return false;
        }
        if self.links_min.is_some_and(|min| scan.links() < min) {
            return false;
        }
        if let Some(set) = &self.sender_in {
            let listed = [
                m.sender.email.as_ref().map(|e| e.as_str()),
                m.sender.phone.as_ref().map(|p| p.as_str()),
                m.sender.handle.as_ref().map(|h| h.as_str()),
            ]
            .into_iter()
            .flatten()
            .any(|id| set.contains(id));
            if !listed {
                return false;
            }
        }
        if let Some(set) = &self.sender_domain_in {
            let Some(email) = &m.sender.email else { return false };
            if !domain_or_parent_in(email.domain().as_str(), set) {
                return false;
            }
        }
        if !self.header_matches.iter().all(|(name, re)| m.header_values(name).any(|v| field_matches(re, v))) {
            return false;
        }
        if let Some(re) = &self.sender {
            let fields = [
                m.sender.email.as_ref().map(|e| e.as_str()),
                m.sender.phone.as_ref().map(|p| p.as_str()),
                m.sender.handle.as_ref().map(|h| h.as_str()),
                m.sender.name.as_deref(),
            ];
            if !fields.into_iter().flatten().any(|f| field_matches(re, f)) {
                return false;
            }
        }
        if let Some(re) = &self.recipient
            && !m.destination.as_deref().is_some_and(|d| field_matches(re, d))
        {
            return false;
        }
        if let Some(re) = &self.attachment_type
            && !m.attachments.iter().any(|a| field_matches(re, &a.mime_type))
        {
            return false;
        }
        if let Some(re) = &self.attachment_name
            && !m.attachments.iter().filter_map(|a| a.name.as_deref()).any(|n| field_matches(re, n))
        {
            return false;
        }
        if let Some(not) = &self.not
            && not.holds(matcher, scan)
        {
            return false;
        }
        self.any.is_empty() || self.any.iter().any(|c| c.holds(matcher, scan))
    }
}

fn field_matches(re: &Regex, value: &str) -> bool {
    re.is_match(capped(value, FIELD_SCAN_LIMIT))
}

/// True when `domain` or one of its parent domains is in `set`.
fn domain_or_parent_in(domain: &str, set: &HashSet<String>) -> bool {
    let mut rest = domain;
    loop {
        if set.contains(rest) {
            return true;
        }
        match rest.split_once('.') {
            Some((_, parent)) if parent.contains('.') => rest = parent,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parent_domains_match_but_bare_tlds_do_not() {
        let set: HashSet<String> = ["sberbank.ru".to_owned(), "ru".to_owned()].into();
        assert!(domain_or_parent_in("sberbank.ru", &set));
        assert!(domain_or_parent_in("notify.online.sberbank.ru", &set));
        assert!(!domain_or_parent_in("notsberbank.ru", &set));
        assert!(!domain_or_parent_in("example.ru", &set));
    }

    #[test]
    fn capping_respects_char_boundaries() {
        assert_eq!(capped("жж", 3), "ж");
        assert_eq!(capped("abc", 10), "abc");
    }
}
