//! Admin phrases ("вебинар*", "сколько стоит", "click here") and the one
//! matcher that finds all of them in a message.
//!
//! A phrase matches whole words, ignoring case, with `ё` and `е` equal; a
//! `*` at the end of a word lets the word go on (`выписк*` matches
//! выписка, выписку, выписки), which is how Russian inflection is handled
//! without a stemmer. Between words any run of spaces, line breaks, commas
//! and dashes matches, so "прайс-лист" also finds "прайс лист".
//!
//! Design: the message is normalised once (lower case, `ё`→`е`, every run
//! of separators → one space), and all phrases of all rules are found in a
//! single pass of one alternation of their literal keys over that text;
//! only the few hits are then checked for word boundaries and the parts
//! after a `*`. One alternation has one automaton state per position in the
//! merged key trie, whatever the number of lists. Giving each list its own
//! pattern in a `RegexSet` was measured to be several times slower on real
//! mail (SpamAssassin corpus: ~50 µs instead of ~7 µs per message until the
//! lazy DFA had seen thousands of messages), because the DFA has to build
//! the product of all lists' states.

use std::collections::HashMap;

use regex::bytes::Regex;

use crate::matcher::AtomId;

/// Separates the subject from the body in the normalised text; never part
/// of a phrase, so no phrase matches across the two.
pub(crate) const FIELD_SEPARATOR: u8 = b'\n';

/// What [`normalize_into`] does with each ASCII byte: the byte to write,
/// or [`SEPARATOR`].
const ASCII_MAP: [u8; 128] = {
    let mut map = [0u8; 128];
    let mut b = 0;
    while b < 128 {
        map[b] = match b as u8 {
            b'A'..=b'Z' => b as u8 + 32,
            b' ' | b'\t' | b'\n' | b'\r' | 0x0B | 0x0C | b',' | b'-' | b'"' => SEPARATOR,
            other => other,
        };
        b += 1;
    }
    map
};
const SEPARATOR: u8 = 0xFF;

/// Lower-cases `text` into `out` with `ё`→`е`, typographic apostrophes →
/// `'`, and every run of whitespace, commas, dashes, quotes and non-ASCII
/// symbols (emoji, №, €) → one space. ASCII punctuation other than `,`, `-`
/// and `"` is kept: phrases such as `$$$` and `t.me/` use it.
/// This runs over every message's text, so ASCII and Russian letters take a
/// byte-level path writing into a pre-sized buffer.
pub(crate) fn normalize_into(text: &str, out: &mut Vec<u8>) {
    let bytes = text.as_bytes();
    let mut separator = out.last().is_none_or(|&b| b == b' ');
    // ASCII and Russian letters never grow, so the output fits in the
    // input's length unless the general path below lengthens a character.
    let mut written = out.len();
    out.resize(written + bytes.len(), 0);
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b < 0x80 {
            let mapped = ASCII_MAP[usize::from(b)];
            let is_separator = mapped == SEPARATOR;
            out[written] = if is_separator { b' ' } else { mapped };
            written += usize::from(!(is_separator && separator));
            separator = is_separator;
            i += 1;
            continue;
        }
        if let (0xD0 | 0xD1, Some(&next)) = (b, bytes.get(i + 1)) {
            let pair = match (b, next) {
                (0xD0, 0x90..=0x9F) => Some([0xD0, next + 0x20]), // А..П → а..п
                (0xD0, 0xA0..=0xAF) => Some([0xD1, next - 0x20]), // Р..Я → р..я
                (0xD0, 0xB0..=0xBF) | (0xD1, 0x80..=0x8F) => Some([b, next]), // а..я
                (0xD0, 0x81) | (0xD1, 0x91) => Some([0xD0, 0xB5]), // Ё, ё → е
                _ => None,
            };
            if let Some(pair) = pair {
                out[written..written + 2].copy_from_slice(&pair);
                written += 2;
                separator = false;
                i += 2;
                continue;
            }
        }
        let Some(c) = text[i..].chars().next() else { break };
        i += c.len_utf8();
        // Lower-casing at most triples a character; keep room for the rest.
        let room = written + 3 * c.len_utf8() + (bytes.len() - i);
        if out.len() < room {
            out.resize(room, 0);
        }
        let mapped = match c {
            '\u{2018}' | '\u{2019}' | '\u{201B}' | '\u{02BC}' => '\'',
            '\u{2026}' => '.',
            '\u{AB}' | '\u{BB}' | '\u{2010}'..='\u{2015}' | '\u{201C}'..='\u{201F}' | '\u{2039}' | '\u{203A}' => ' ',
            // Emoji, symbols and other punctuation separate words too.
            c if !c.is_alphanumeric() => ' ',
            c => {
                // Dropping combining marks that lower-casing can add (İ → i̇)
                // keeps normalising a normalised text a no-op.
                for lower in c.to_lowercase().filter(|l| l.is_alphanumeric()) {
                    written += lower.encode_utf8(&mut out[written..]).len();
                }
                separator = false;
                continue;
            }
        };
        if mapped != ' ' {
            out[written] = mapped as u8;
            written += 1;
            separator = false;
        } else if !separator {
            out[written] = b' ';
            written += 1;
            separator = true;
        }
    }
    out.truncate(written);
}

/// A word character in normalised text. Every non-ASCII byte counts:
/// [`normalize_into`] turned all non-ASCII characters that are not letters
/// or digits into ASCII.
fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80
}

/// One phrase, normalised, split at its stars.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Phrase {
    /// Literal text up to the first star (or all of it): what is searched for.
    key: String,
    /// After the key: alternately "skip the rest of the word" and literal text.
    rest: Vec<Segment>,
    bounded_start: bool,
    bounded_end: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    RestOfWord,
    Literal(String),
}

/// Parses one phrase, or says why it is not usable.
pub(crate) fn parse_phrase(raw: &str) -> Result<Phrase, String> {
    let mut buffer = Vec::new();
    normalize_into(raw, &mut buffer);
    let normalized = String::from_utf8_lossy(&buffer);
    let normalized = normalized.trim_end();
    if normalized.is_empty() {
        return Err("empty phrase".into());
    }
    // Literals that end in a star, then the trailing literal after the last star.
    let mut starred_literals = Vec::new();
    let mut current = String::new();
    for (i, word) in normalized.split(' ').enumerate() {
        let stem = word.trim_end_matches('*');
        if stem.contains('*') {
            return Err(format!("phrase {raw:?}: `*` is only allowed at the end of a word"));
        }
        if stem.is_empty() {
            return Err(format!("phrase {raw:?}: `*` must follow at least one letter"));
        }
        if i > 0 {
            current.push(' ');
        }
        current.push_str(stem);
        if stem.len() != word.len() {
            starred_literals.push(std::mem::take(&mut current));
        }
    }
    let (key, rest) = if starred_literals.is_empty() {
        (std::mem::take(&mut current), Vec::new())
    } else {
        let mut literals = starred_literals.into_iter();
        let key = literals.next().unwrap_or_default();
        let mut rest = vec![Segment::RestOfWord];
        for literal in literals {
            rest.extend([Segment::Literal(literal), Segment::RestOfWord]);
        }
        if !current.is_empty() {
            rest.push(Segment::Literal(current));
        }
        (key, rest)
    };
    let is_word_char = |c: char| c.is_alphanumeric() || c == '_';
    Ok(Phrase {
        bounded_start: normalized.starts_with(is_word_char),
        bounded_end: !normalized.ends_with('*') && normalized.ends_with(is_word_char),
        key,
        rest,
    })
}

impl Phrase {
    /// Whether the phrase occurs at byte `start` of normalised `text`, where its key was found.
    fn matches_at(&self, text: &[u8], start: usize) -> bool {
        if self.bounded_start && start > 0 && is_word_byte(text[start - 1]) {
            return false;
        }
        let mut at = start + self.key.len();
        for segment in &self.rest {
            match segment {
                Segment::RestOfWord => {
                    while at < text.len() && is_word_byte(text[at]) {
                        at += 1;
                    }
                }
                Segment::Literal(literal) => {
                    if !text[at..].starts_with(literal.as_bytes()) {
                        return false;
                    }
                    at += literal.len();
                }
            }
        }
        !(self.bounded_end && at < text.len() && is_word_byte(text[at]))
    }
}

/// Finds every phrase of every phrase atom in one pass.
#[derive(Debug, Clone)]
pub(crate) struct PhraseMatcher {
    /// All distinct keys, longest first, as one literal alternation.
    finder: Option<Regex>,
    key_ids: HashMap<Box<[u8]>, usize>,
    /// For each key, the keys that are prefixes of it (itself included):
    /// when the longest key matches somewhere, exactly these match there too.
    prefix_keys: Vec<Vec<usize>>,
    /// For each key, the first offset inside it where another key could
    /// start; the search resumes there, or after the key if there is none.
    /// Resuming at every next character instead costs a fresh search per
    /// hit, which is slow on spam that repeats its phrases.
    resume_offset: Vec<Option<usize>>,
    /// For each key, the phrases that start with it and the atom each belongs to.
    key_phrases: Vec<Vec<(Phrase, AtomId)>>,
    atoms: Vec<AtomId>,
}

impl PhraseMatcher {
    pub(crate) fn new(phrase_atoms: Vec<(AtomId, Vec<Phrase>)>) -> Result<Self, regex::Error> {
        let mut key_ids: HashMap<Box<[u8]>, usize> = HashMap::new();
        let mut key_phrases: Vec<Vec<(Phrase, AtomId)>> = Vec::new();
        let mut atoms = Vec::with_capacity(phrase_atoms.len());
        for (atom, phrases) in phrase_atoms {
            atoms.push(atom);
            for phrase in phrases {
                let next_id = key_phrases.len();
                let id = *key_ids.entry(phrase.key.as_bytes().into()).or_insert(next_id);
                if id == next_id {
                    key_phrases.push(Vec::new());
                }
                key_phrases[id].push((phrase, atom));
            }
        }
        let mut keys: Vec<(&str, usize)> =
            key_phrases.iter().enumerate().map(|(id, phrases)| (phrases[0].0.key.as_str(), id)).collect();
        // Longest first, so a leftmost-first search reports the longest key
        // at each position; the shorter keys there are its prefixes.
        keys.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.0.cmp(b.0)));
        // Prefix relations between keys, by hashing instead of comparing all
        // pairs: a default rules file has about a thousand keys, and the
        // pairwise scan dominated rules load time.
        let key_set: HashMap<&str, usize> = keys.iter().map(|&(key, id)| (key, id)).collect();
        let all_prefixes: std::collections::HashSet<&str> = keys
            .iter()
            .flat_map(|&(key, _)| key.char_indices().skip(1).map(move |(i, _)| &key[..i]).chain(std::iter::once(key)))
            .collect();
        let mut prefix_keys = vec![Vec::new(); keys.len()];
        for &(key, id) in &keys {
            // Longest first, as the pairwise scan over `keys` produced them.
            let mut found: Vec<(&str, usize)> = key
                .char_indices()
                .skip(1)
                .map(|(i, _)| &key[..i])
                .chain(std::iter::once(key))
                .filter_map(|prefix| key_set.get(prefix).map(|&other| (prefix, other)))
                .collect();
            found.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.0.cmp(b.0)));
            prefix_keys[id] = found.into_iter().map(|(_, other)| other).collect();
        }
        let resume_offset = key_phrases
            .iter()
            .map(|phrases| {
                let key = phrases[0].0.key.as_str();
                key.char_indices().skip(1).map(|(offset, _)| offset).find(|&offset| {
                    let tail = &key[offset..];
                    all_prefixes.contains(tail)
                        || tail
                            .char_indices()
                            .skip(1)
                            .map(|(i, _)| &tail[..i])
                            .chain(std::iter::once(tail))
                            .any(|prefix| key_set.contains_key(prefix))
                })
            })
            .collect();
        let finder = if keys.is_empty() {
            None
        } else {
            let alternation: Vec<String> = keys.iter().map(|(k, _)| regex::escape(k)).collect();
            Some(
                regex::bytes::RegexBuilder::new(&alternation.join("|"))
                    .size_limit(256 << 20)
                    .dfa_size_limit(32 << 20)
                    .build()?,
            )
        };
        Ok(Self { finder, key_ids, prefix_keys, resume_offset, key_phrases, atoms })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.finder.is_none()
    }

    /// Marks the atoms whose phrases occur in `text`, normalised by [`normalize_into`].
    pub(crate) fn scan(&self, text: &[u8], matched: &mut [Option<bool>]) {
        let Some(finder) = &self.finder else { return };
        let mut remaining = self.atoms.len();
        let mut from = 0;
        while remaining > 0
            && let Some(found) = finder.find_at(text, from)
        {
            let start = found.start();
            let Some(&longest) = self.key_ids.get(found.as_bytes()) else { break };
            for &key in &self.prefix_keys[longest] {
                for (phrase, atom) in &self.key_phrases[key] {
                    if matched[*atom] != Some(true) && phrase.matches_at(text, start) {
                        matched[*atom] = Some(true);
                        remaining -= 1;
                    }
                }
            }
            from = match self.resume_offset[longest] {
                Some(offset) => start + offset,
                None => found.end(),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn normalized(text: &str) -> String {
        let mut out = Vec::new();
        normalize_into(text, &mut out);
        String::from_utf8(out).unwrap()
    }

    /// Which of the given phrases occur in `text`, each phrase its own atom.
    fn found(phrases: &[&str], text: &str) -> Vec<bool> {
        let atoms: Vec<_> = phrases.iter().enumerate().map(|(i, p)| (i, vec![parse_phrase(p).unwrap()])).collect();
        let matcher = PhraseMatcher::new(atoms).unwrap();
        let mut matched = vec![Some(false); phrases.len()];
        matcher.scan(normalized(text).as_bytes(), &mut matched);
        matched.into_iter().map(|m| m == Some(true)).collect()
    }

    #[test]
    fn normalisation_folds_case_yo_and_separators() {
        assert_eq!(normalized("  Счёт, ВЫПИСКА —\n\tпрайс-лист  "), "счет выписка прайс лист ");
        assert_eq!(normalized("Don’t «Click» HERE…"), "don't click here.");
        assert_eq!(normalized("Straße ÄÖ"), "straße äö");
    }

    #[test]
    fn phrases_match_whole_words_ignoring_case_and_yo() {
        assert_eq!(found(&["кп", "выписка по счёту", "click here"], "Пришлите КП, пожалуйста"), [true, false, false]);
        assert_eq!(found(&["кп"], "Проверка на КПП"), [false]);
        assert_eq!(found(&["кп"], "скпу"), [false]);
        assert_eq!(found(&["выписка по счёту"], "ВЫПИСКА  ПО\nСЧЕТУ за март"), [true]);
        assert_eq!(found(&["click here"], "Please CLICK HERE!"), [true]);
        assert_eq!(found(&["click here"], "doubleclick here"), [false]);
    }

    #[test]
    fn star_continues_a_word_and_separators_are_interchangeable() {
        let phrases = ["выписк* по сч*", "прайс-лист*", "подскажите, пожалуйста"];
        assert_eq!(found(&phrases, "Ваша выписку по счетам"), [true, false, false]);
        assert_eq!(found(&phrases, "новый прайс лист"), [false, true, false]);
        assert_eq!(found(&phrases, "Прайс-листы на май"), [false, true, false]);
        assert_eq!(found(&phrases, "невыписка по счету"), [false, false, false]);
        assert_eq!(found(&phrases, "Подскажите пожалуйста, есть ли"), [false, false, true]);
    }

    #[test]
    fn overlapping_and_nested_phrases_are_all_found() {
        let phrases = ["рассылк*", "массовые рассылки", "рассылки по базам", "по базам", "кп", "кп от"];
        assert_eq!(found(&phrases, "массовые рассылки по базам"), [true, true, true, true, false, false]);
        // The longer key fails its boundary; the shorter one at the same place still counts.
        assert_eq!(found(&phrases, "кп отдела"), [false, false, false, false, true, false]);
    }

    #[test]
    fn punctuation_edges_need_no_boundary() {
        assert_eq!(
            found(&["$$$", "100% free", "in stock?"], "earn $$$ now, it is 100% FREE! In stock?"),
            [true, true, true]
        );
    }

    #[test]
    fn characters_that_grow_when_lower_cased_fit() {
        assert_eq!(normalized("İİİ Ǆ"), "iii ǆ");
        assert_eq!(normalized("🔥Казино№1"), "казино 1");
    }

    proptest::proptest! {
        #[test]
        fn normalisation_is_valid_utf8_and_idempotent(text in "(\\PC|\\s)*") {
            let once = normalized(&text);
            proptest::prop_assert_eq!(normalized(&once), once);
        }
    }

    #[test]
    fn bad_phrases_are_rejected() {
        assert!(parse_phrase("  ").is_err());
        assert!(parse_phrase("a*b").is_err());
        assert!(parse_phrase("*").is_err());
        assert!(parse_phrase("(a+").is_ok(), "special characters are literal");
    }
}
