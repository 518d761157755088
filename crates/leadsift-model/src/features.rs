//! Message → hashed sparse feature counts.
//!
//! Every feature is a small integer count in one of `2^dimension_bits`
//! buckets (the hashing trick), so the model's size is fixed whatever the
//! vocabulary, and a feature never needs a dictionary lookup:
//! - word unigrams and bigrams of subject and text (the subject's words are
//!   counted a second time in their own namespace, as subjects say more per
//!   word than bodies);
//! - character n-grams (`char_ngram_min..=char_ngram_max`) inside each word,
//!   with `<` and `>` marking the word's edges, over the first
//!   `char_ngram_bytes` of the text: they stand in for a stemmer on Russian
//!   morphology (`заявка`, `заявку`, `заявки` share `<зая`, `заяв`) and for
//!   obfuscated spam spellings;
//! - symbols and emoji as tokens of their own, numbers as `#digits(len)`,
//!   and words that mix Cyrillic and Latin letters (`зaработок` with a Latin
//!   `a`) as a flag;
//! - structural facts: list headers, link count bucket, attachment types,
//!   sender kind, free-mail sender, channel, call answered/duration bucket,
//!   text length bucket.
//!
//! Tokenisation is Unicode-aware: letters and digits of any script form
//! words, text is lower-cased, `ё` becomes `е`. Only the first
//! `max_text_bytes` of the text are read, so a huge message costs no more
//! than a large one; empty text, binary junk and emoji are just fewer or
//! odder tokens. Hashing is a fixed FNV-style function of the characters,
//! identical on every platform and run.

use leadsift_core::{Channel, Message};
use serde::{Deserialize, Serialize};

/// How messages become features; saved with the model, since a model only
/// makes sense with the exact settings it was trained with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureSettings {
    /// Number of hash buckets is `2^dimension_bits`.
    pub dimension_bits: u8,
    /// Only this many bytes of the text (after the subject) are tokenised.
    pub max_text_bytes: usize,
    /// Character n-grams are taken from words in this many leading bytes of the text
    /// (the subject always), as they are the most numerous and costly features.
    pub char_ngram_bytes: usize,
    /// Shortest character n-gram (0 disables character n-grams).
    pub char_ngram_min: u8,
    /// Longest character n-gram.
    pub char_ngram_max: u8,
    /// Character n-grams only for words with a non-ASCII letter (Cyrillic and
    /// other scripts): that is where morphology needs them, and skipping
    /// plain English words halves the cost of scoring long English mail.
    pub char_ngrams_non_ascii_only: bool,
    /// Words longer than this many characters get no character n-grams
    /// (URLs, base64 and hashes would otherwise flood the buckets).
    pub char_ngram_max_word: u8,
    /// Emit word bigrams.
    pub word_bigrams: bool,
    /// Count each structural feature this many times, so that one header
    /// weighs like a few words.
    pub structural_weight: u32,
    /// Count each distinct feature once per message (binarised multinomial
    /// Naive Bayes): repetition in long mail otherwise swamps everything else.
    pub binary: bool,
    /// Shape features: the mail's MIME type and missing standard headers,
    /// shouting (capitals), exclamation marks and money signs in the subject
    /// and text. Off in models trained before they existed.
    #[serde(default)]
    pub shape_features: bool,
    /// E-mail header tokens: the sender's domain and its last two labels,
    /// the mailer, the charset, a Reply-To on another domain, the number of
    /// Received hops; and the hosts of links in the text. Off in models
    /// trained before they existed.
    #[serde(default)]
    pub header_features: bool,
    /// For plain ASCII words of 6+ letters that get no character n-grams:
    /// their first and last 4 letters as features (a stemmer's worth of
    /// morphology, `pharmacy`/`pharmacies`, for two features a word).
    #[serde(default)]
    pub ascii_affixes: bool,
    /// Flags that only say whether an e-mail *has* headers: no MIME type,
    /// a missing `Message-ID`/`Date`/`To`, and the number of `Received`
    /// hops. Off: in the corpora only Enron, stored without headers, lacks
    /// them, so they taught the model "has headers → not Enron's ham" and
    /// pushed every e-mail of a new mailbox towards newsletter (trained
    /// without SpamAssassin, 543 of its 781 personal mails became newsletters
    /// with them, 49 without). On in models trained before this setting existed.
    #[serde(default = "default_true")]
    pub header_presence: bool,
}

fn default_true() -> bool {
    true
}

impl Default for FeatureSettings {
    fn default() -> Self {
        Self {
            dimension_bits: 17,
            max_text_bytes: 2 * 1024,
            char_ngram_bytes: 1024,
            char_ngram_min: 3,
            char_ngram_max: 5,
            char_ngrams_non_ascii_only: true,
            char_ngram_max_word: 24,
            word_bigrams: true,
            structural_weight: 3,
            binary: true,
            shape_features: true,
            header_features: true,
            ascii_affixes: true,
            header_presence: false,
        }
    }
}

impl FeatureSettings {
    pub fn dimension(&self) -> usize {
        1usize << self.dimension_bits
    }
}

/// A message's features: bucket indices in increasing order with their counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SparseFeatures {
    pub indices: Vec<u32>,
    pub counts: Vec<u32>,
}

impl SparseFeatures {
    pub fn len(&self) -> usize {
        self.indices.len()
    }

    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }

    /// Sum of all counts.
    pub fn total(&self) -> u64 {
        self.counts.iter().map(|&c| u64::from(c)).sum()
    }

    pub fn iter(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        self.indices.iter().copied().zip(self.counts.iter().copied())
    }
}

// Namespace salts: the same string in two roles must land in different buckets.
const NS_WORD: u64 = 0x9e37_79b9_7f4a_7c15;
const NS_SUBJECT: u64 = 0xc2b2_ae3d_27d4_eb4f;
const NS_BIGRAM: u64 = 0x1656_67b1_9e37_79f9;
const NS_CHAR: u64 = 0x27d4_eb2f_1656_67c5;
const NS_STRUCT: u64 = 0x94d0_49bb_1331_11eb;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

#[inline]
fn fnv_step(hash: u64, c: char) -> u64 {
    (hash ^ u64::from(u32::from(c))).wrapping_mul(FNV_PRIME)
}

/// Final avalanche (splitmix64), so the top bits used as the bucket depend on every input bit.
#[inline]
fn finish(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn hash_str(namespace: u64, s: &str) -> u64 {
    s.chars().fold(FNV_OFFSET ^ namespace, fnv_step)
}

/// Turns messages into hashed features with fixed settings.
#[derive(Debug, Clone)]
pub struct Featurizer {
    settings: FeatureSettings,
    shift: u32,
}

/// Domains of free mail services: a client writing from one is an individual,
/// which is common for both real small clients and throwaway spam accounts.
const FREE_MAIL_DOMAINS: &[&str] = &[
    "gmail.com",
    "googlemail.com",
    "yahoo.com",
    "yahoo.co.uk",
    "hotmail.com",
    "outlook.com",
    "live.com",
    "msn.com",
    "aol.com",
    "icloud.com",
    "me.com",
    "mail.com",
    "gmx.com",
    "gmx.de",
    "gmx.net",
    "web.de",
    "protonmail.com",
    "proton.me",
    "yandex.ru",
    "yandex.com",
    "ya.ru",
    "mail.ru",
    "bk.ru",
    "list.ru",
    "inbox.ru",
    "rambler.ru",
    "internet.ru",
    "zoho.com",
    "qq.com",
    "163.com",
];

impl Featurizer {
    pub fn new(settings: FeatureSettings) -> Self {
        let bits = u32::from(settings.dimension_bits.clamp(4, 30));
        Self { settings, shift: 64 - bits }
    }

    pub fn settings(&self) -> &FeatureSettings {
        &self.settings
    }

    #[inline]
    fn bucket(&self, hash: u64) -> u32 {
        (finish(hash) >> self.shift) as u32
    }

    /// Calls `emit(bucket, count)` for every feature occurrence, unsorted and
    /// possibly repeating a bucket: scoring sums weights as it goes, without
    /// collecting or sorting.
    pub fn for_each<F: FnMut(u32, u32)>(&self, message: &Message, emit: &mut F) {
        let structural = self.settings.structural_weight;
        let mut flag = |name: &str| emit(self.bucket(hash_str(NS_STRUCT, name)), structural);
        let headers = Headers::of(message);
        structural_features(message, &headers, self.settings.max_text_bytes, &mut flag);
        if self.settings.shape_features {
            shape_features(message, &headers, self.settings.header_presence, &mut flag);
        }
        if self.settings.header_features {
            header_features(message, &headers, &self.settings, &mut flag);
        }

        let mut state =
            TokenState { ascii_char_ngrams: !self.settings.char_ngrams_non_ascii_only, ..TokenState::default() };
        // The shape of subject and text (capitals, exclamation marks, money
        // signs) is counted in the same pass as their words.
        let shapes = self.settings.shape_features;
        let mut shape = Shape::default();
        if let Some(subject) = message.subject.as_deref() {
            self.tokenize(capped(subject, 1024), true, usize::MAX, &mut state, shapes.then_some(&mut shape), emit);
            if shapes {
                shape.flags("subject:", &mut |name| emit(self.bucket(hash_str(NS_STRUCT, name)), structural));
            }
        }
        state.previous = None;
        let text = capped(&message.text, self.settings.max_text_bytes);
        let mut shape = Shape::default();
        self.tokenize(text, false, self.settings.char_ngram_bytes, &mut state, shapes.then_some(&mut shape), emit);
        if shapes {
            shape.flags("text:", &mut |name| emit(self.bucket(hash_str(NS_STRUCT, name)), structural));
        }
        if state.mixed_script_words > 0 {
            let bucket = self.bucket(hash_str(NS_STRUCT, "mixed_script_words"));
            emit(bucket, state.mixed_script_words.min(5) * structural);
        }
    }

    /// The message's features, aggregated and sorted by bucket.
    pub fn features(&self, message: &Message) -> SparseFeatures {
        let mut raw: Vec<(u32, u32)> = Vec::with_capacity(512);
        self.for_each(message, &mut |bucket, count| raw.push((bucket, count)));
        raw.sort_unstable_by_key(|&(bucket, _)| bucket);
        let mut out = SparseFeatures { indices: Vec::with_capacity(raw.len()), counts: Vec::with_capacity(raw.len()) };
        let binary = self.settings.binary;
        for (bucket, count) in raw {
            if out.indices.last() == Some(&bucket) {
                if let Some(last) = out.counts.last_mut()
                    && !binary
                {
                    *last = last.saturating_add(count);
                }
            } else if binary {
                out.indices.push(bucket);
                out.counts.push(1);
            } else {
                out.indices.push(bucket);
                out.counts.push(count);
            }
        }
        out
    }

    fn tokenize<F: FnMut(u32, u32)>(
        &self,
        text: &str,
        is_subject: bool,
        char_ngram_bytes: usize,
        state: &mut TokenState,
        mut shape: Option<&mut Shape>,
        emit: &mut F,
    ) {
        let mut word = WordBuf::default();
        let bytes = text.as_bytes();
        let mut offset = 0;
        while offset < bytes.len() {
            // Bytes, not chars, for ASCII: most mail is, and it needs no decoding.
            let byte = bytes[offset];
            let raw = if byte.is_ascii() {
                if let Some(shape) = shape.as_deref_mut() {
                    shape.add_ascii(byte);
                }
                if byte.is_ascii_alphanumeric() {
                    word.push(char::from(byte.to_ascii_lowercase()));
                    offset += 1;
                    continue;
                }
                char::from(byte)
            } else {
                let raw = text[offset..].chars().next().unwrap_or(char::REPLACEMENT_CHARACTER);
                if let Some(shape) = shape.as_deref_mut() {
                    shape.add(raw);
                }
                if raw.is_alphanumeric() {
                    for c in raw.to_lowercase() {
                        word.push(if c == 'ё' { 'е' } else { c });
                    }
                    offset += raw.len_utf8();
                    continue;
                }
                raw
            };
            if !word.is_empty() {
                self.flush_word(&mut word, is_subject, offset, char_ngram_bytes, state, emit);
            }
            // Emoji and other symbols are strong short-message spam signals (💰🔥✅).
            if u32::from(raw) >= 0x2000 && !raw.is_whitespace() {
                let h = fnv_step(FNV_OFFSET ^ NS_WORD ^ 0x5, raw);
                emit(self.bucket(h), 1);
            }
            offset += raw.len_utf8();
        }
        if !word.is_empty() {
            self.flush_word(&mut word, is_subject, text.len(), char_ngram_bytes, state, emit);
        }
    }

    /// `end` is the word's end offset in its text; it gets character
    /// n-grams when that is within `char_ngram_bytes` (a plain ASCII word only
    /// when the message's ASCII words get them).
    fn flush_word<F: FnMut(u32, u32)>(
        &self,
        word: &mut WordBuf,
        is_subject: bool,
        end: usize,
        char_ngram_bytes: usize,
        state: &mut TokenState,
        emit: &mut F,
    ) {
        let chars = &word.chars;
        let WordBuf { cyrillic, latin, all_digits, ascii, .. } = *word;
        if cyrillic && latin {
            state.mixed_script_words += 1;
        }
        // Numbers by length only: amounts, account numbers and phones differ
        // in every digit but share their shape.
        let hash = if all_digits {
            fnv_step(FNV_OFFSET ^ NS_WORD ^ 0x7, char::from(b'0' + chars.len().min(12) as u8))
        } else {
            word.hash
        };
        emit(self.bucket(hash), 1);
        if is_subject {
            emit(self.bucket(hash ^ NS_SUBJECT), 1);
        }
        if self.settings.word_bigrams
            && let Some(previous) = state.previous
        {
            emit(self.bucket(previous.rotate_left(17) ^ hash ^ NS_BIGRAM), 1);
        }
        state.previous = Some(hash);

        let (min, max) = (usize::from(self.settings.char_ngram_min), usize::from(self.settings.char_ngram_max));
        let fits = chars.len() + 2 > min && chars.len() <= usize::from(self.settings.char_ngram_max_word);
        let char_ngrams = end <= char_ngram_bytes && (!ascii || state.ascii_char_ngrams);
        if !char_ngrams && ascii && self.settings.ascii_affixes && chars.len() >= 6 && !all_digits {
            let prefix = chars[..4].iter().fold(fnv_step(FNV_OFFSET ^ NS_CHAR, '<'), |h, &c| fnv_step(h, c));
            emit(self.bucket(prefix), 1);
            let suffix = chars[chars.len() - 4..].iter().fold(FNV_OFFSET ^ NS_CHAR, |h, &c| fnv_step(h, c));
            emit(self.bucket(fnv_step(suffix, '>')), 1);
        }
        if char_ngrams && min > 0 && !all_digits && fits {
            // The word with edge markers; every n-gram starting at `start` is a
            // prefix of the next `max` characters, so one pass hashes them all.
            word.edged.clear();
            word.edged.push('<');
            word.edged.extend_from_slice(chars);
            word.edged.push('>');
            let edged = &word.edged;
            for start in 0..edged.len() {
                let mut h = FNV_OFFSET ^ NS_CHAR;
                for (n, &c) in edged[start..].iter().take(max).enumerate() {
                    h = fnv_step(h, c);
                    if n + 1 >= min {
                        emit(self.bucket(h), 1);
                    }
                }
            }
        }
        word.clear();
    }
}

#[derive(Debug, Default)]
struct TokenState {
    previous: Option<u64>,
    mixed_script_words: u32,
    /// Whether plain ASCII words get character n-grams.
    ascii_char_ngrams: bool,
}

/// The word being read: its first 64 characters, their hash and what kinds of
/// characters they are, kept up as characters arrive.
#[derive(Debug)]
struct WordBuf {
    chars: Vec<char>,
    edged: Vec<char>,
    hash: u64,
    cyrillic: bool,
    latin: bool,
    all_digits: bool,
    ascii: bool,
}

impl Default for WordBuf {
    fn default() -> Self {
        WordBuf {
            chars: Vec::with_capacity(64),
            edged: Vec::new(),
            hash: FNV_OFFSET ^ NS_WORD,
            cyrillic: false,
            latin: false,
            all_digits: true,
            ascii: true,
        }
    }
}

impl WordBuf {
    #[inline]
    fn push(&mut self, c: char) {
        // A 1,000-letter "word" is junk; keep its start, which is all that is hashed anyway.
        if self.chars.len() < 64 {
            self.chars.push(c);
            self.hash = fnv_step(self.hash, c);
            if c.is_ascii() {
                self.latin |= c.is_ascii_lowercase();
                self.all_digits &= c.is_ascii_digit();
            } else {
                self.cyrillic |= ('\u{0400}'..='\u{04ff}').contains(&c);
                self.all_digits = false;
                self.ascii = false;
            }
        }
    }

    fn clear(&mut self) {
        self.chars.clear();
        (self.hash, self.cyrillic, self.latin, self.all_digits, self.ascii) =
            (FNV_OFFSET ^ NS_WORD, false, false, true, true);
    }

    fn is_empty(&self) -> bool {
        self.chars.is_empty()
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a char boundary.
pub fn capped(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut cut = max;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    &s[..cut]
}

fn bucket_of(value: usize, bounds: &[usize]) -> usize {
    bounds.iter().take_while(|&&b| value >= b).count()
}

/// `Message::link_count` over the tokenised prefix only (a huge text must not cost more).
fn link_count(message: &Message, max_text_bytes: usize) -> usize {
    let count = |s: &str| s.matches("http://").count() + s.matches("https://").count() + s.matches("www.").count();
    count(capped(&message.text, max_text_bytes)) + message.subject.as_deref().map_or(0, |s| count(capped(s, 1024)))
}

/// The headers the features look at, found in one pass over the message's
/// headers (the first of each name, as [`Message::header`] finds it).
#[derive(Debug, Default)]
struct Headers<'a> {
    list_unsubscribe: bool,
    list_id: bool,
    precedence: Option<&'a str>,
    content_type: Option<&'a str>,
    message_id: bool,
    date: bool,
    to: bool,
    mailer: Option<&'a str>,
    user_agent: Option<&'a str>,
    reply_to: Option<&'a str>,
    received: usize,
}

impl<'a> Headers<'a> {
    fn of(message: &'a Message) -> Self {
        let mut found = Headers::default();
        for header in &message.headers {
            let (name, value) = (header.name.as_str(), header.value.as_str());
            let is = |expected: &str| name.len() == expected.len() && name.eq_ignore_ascii_case(expected);
            let first = |slot: &mut Option<&'a str>| {
                slot.get_or_insert(value);
            };
            match name.len() {
                2 if is("To") => found.to = true,
                4 if is("Date") => found.date = true,
                7 if is("List-Id") => found.list_id = true,
                8 if is("X-Mailer") => first(&mut found.mailer),
                8 if is("Received") => found.received += 1,
                8 if is("Reply-To") => first(&mut found.reply_to),
                10 if is("Precedence") => first(&mut found.precedence),
                10 if is("Message-ID") => found.message_id = true,
                10 if is("User-Agent") => first(&mut found.user_agent),
                12 if is("Content-Type") => first(&mut found.content_type),
                16 if is("List-Unsubscribe") => found.list_unsubscribe = true,
                _ => {}
            }
        }
        found
    }
}

/// Structural facts as named flags (hashed like words, in their own namespace).
fn structural_features(message: &Message, headers: &Headers<'_>, max_text_bytes: usize, flag: &mut dyn FnMut(&str)) {
    flag(match message.channel {
        Channel::Email => "channel:email",
        Channel::Call => "channel:call",
        Channel::Messenger => "channel:messenger",
        Channel::Webform => "channel:webform",
    });
    if headers.list_unsubscribe {
        flag("header:list_unsubscribe");
    }
    if headers.list_id {
        flag("header:list_id");
    }
    if let Some(precedence) = headers.precedence {
        match precedence.trim().to_ascii_lowercase().as_str() {
            "bulk" => flag("header:precedence_bulk"),
            "list" => flag("header:precedence_list"),
            "junk" => flag("header:precedence_junk"),
            _ => flag("header:precedence_other"),
        }
    }
    const LINK_BUCKETS: [&str; 5] = ["links:0", "links:1", "links:2-4", "links:5-14", "links:15+"];
    flag(LINK_BUCKETS[bucket_of(link_count(message, max_text_bytes), &[1, 2, 5, 15])]);

    for attachment in message.attachments.iter().take(16) {
        let mime = attachment.mime_type.as_str();
        let name = attachment.name.as_deref().unwrap_or("").to_ascii_lowercase();
        let kind = if mime == "application/pdf" || name.ends_with(".pdf") {
            "attachment:pdf"
        } else if mime.starts_with("image/") {
            "attachment:image"
        } else if mime.contains("spreadsheet")
            || mime.contains("excel")
            || name.ends_with(".xls")
            || name.ends_with(".xlsx")
        {
            "attachment:spreadsheet"
        } else if mime.contains("word") || name.ends_with(".doc") || name.ends_with(".docx") || name.ends_with(".rtf") {
            "attachment:document"
        } else if mime.contains("zip") || mime.contains("rar") || mime.contains("compressed") {
            "attachment:archive"
        } else if mime.contains("msdownload") || name.ends_with(".exe") || name.ends_with(".scr") {
            "attachment:executable"
        } else {
            "attachment:other"
        };
        flag(kind);
    }

    let sender = &message.sender;
    if let Some(email) = &sender.email {
        flag("sender:email");
        let domain = email.domain();
        if FREE_MAIL_DOMAINS.contains(&domain.as_str()) {
            flag("sender:free_mail");
        }
        if let Some(tld) = domain.as_str().rsplit('.').next() {
            match tld {
                "ru" | "su" | "рф" => flag("sender:tld:ru"),
                "com" | "net" | "org" => flag("sender:tld:generic"),
                _ => flag("sender:tld:other"),
            }
        }
    }
    if sender.phone.is_some() {
        flag("sender:phone");
    }
    if let Some(handle) = &sender.handle {
        flag("sender:handle");
        flag(match handle.network() {
            "telegram" => "sender:network:telegram",
            "whatsapp" => "sender:network:whatsapp",
            _ => "sender:network:other",
        });
    }
    if sender.is_anonymous() {
        flag("sender:none");
    }

    if let Some(call) = message.call {
        flag(if call.answered { "call:answered" } else { "call:missed" });
        const DURATION: [&str; 5] = ["call:0-4s", "call:5-19s", "call:20-59s", "call:1-5min", "call:5min+"];
        flag(DURATION[bucket_of(call.duration_secs as usize, &[5, 20, 60, 300])]);
    }

    const LENGTH: [&str; 6] = ["len:0", "len:1-39", "len:40-199", "len:200-999", "len:1k-5k", "len:5k+"];
    flag(LENGTH[bucket_of(message.text.len(), &[1, 40, 200, 1000, 5000])]);
    if message.subject.as_deref().is_none_or(|s| s.trim().is_empty()) {
        flag("subject:none");
    }
}

/// Capitals, exclamation marks and money signs of a text, counted while it is tokenised.
#[derive(Debug, Default)]
struct Shape {
    letters: usize,
    upper: usize,
    exclaims: usize,
    money: usize,
}

impl Shape {
    #[inline]
    fn add_ascii(&mut self, b: u8) {
        if b.is_ascii_alphabetic() {
            self.letters += 1;
            self.upper += usize::from(b.is_ascii_uppercase());
        } else if b == b'!' {
            self.exclaims += 1;
        } else if b == b'$' {
            self.money += 1;
        }
    }

    #[inline]
    fn add(&mut self, c: char) {
        if c.is_alphabetic() {
            self.letters += 1;
            self.upper += usize::from(c.is_uppercase());
        } else if c == '!' {
            self.exclaims += 1;
        } else if matches!(c, '$' | '€' | '£' | '₽') {
            self.money += 1;
        }
    }

    /// The counts as `prefix:` flags.
    fn flags(&self, prefix: &str, flag: &mut dyn FnMut(&str)) {
        text_shape(prefix, self, flag);
    }
}

/// Capitals, exclamation marks and money signs of a text, as `prefix:` flags.
fn text_shape(prefix: &str, shape: &Shape, flag: &mut dyn FnMut(&str)) {
    let Shape { letters, upper, exclaims, money } = *shape;
    let mut name = String::with_capacity(prefix.len() + 16);
    let mut emit = |what: &str| {
        name.clear();
        name.push_str(prefix);
        name.push_str(what);
        flag(&name);
    };
    if letters >= 8 {
        const CAPS: [&str; 4] = ["caps:<10%", "caps:10-30%", "caps:30-60%", "caps:60%+"];
        emit(CAPS[bucket_of(upper * 100 / letters, &[10, 30, 60])]);
    }
    const EXCLAIMS: [&str; 4] = ["exclaim:0", "exclaim:1", "exclaim:2-4", "exclaim:5+"];
    emit(EXCLAIMS[bucket_of(exclaims, &[1, 2, 5])]);
    if money > 0 {
        emit(if money > 2 { "money:3+" } else { "money:1-2" });
    }
}

/// Generic shape of an e-mail: how it is built rather than what it says (the
/// shape of its subject and text is counted while they are tokenised).
fn shape_features(message: &Message, headers: &Headers<'_>, presence: bool, flag: &mut dyn FnMut(&str)) {
    if message.channel != Channel::Email {
        return;
    }
    let content_type = headers.content_type.map(|v| {
        let essence = v.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        match essence.as_str() {
            "text/plain" => "mime:text_plain",
            "text/html" => "mime:text_html",
            "multipart/alternative" => "mime:multipart_alternative",
            "multipart/mixed" => "mime:multipart_mixed",
            "multipart/related" => "mime:multipart_related",
            _ => "mime:other",
        }
    });
    match content_type {
        Some(essence) => flag(essence),
        None if presence => flag("mime:none"),
        None => {}
    }
    for (present, missing) in
        [(headers.message_id, "header:no_message_id"), (headers.date, "header:no_date"), (headers.to, "header:no_to")]
    {
        if presence && !present {
            flag(missing);
        }
    }
    if headers.mailer.is_some() || headers.user_agent.is_some() {
        flag("header:mailer");
    }
}

/// The last two labels of a host name (`mail.example.co` → `example.co`): a
/// rough registered domain, good enough to group a sender's hosts.
fn last_two_labels(host: &str) -> &str {
    match host.rmatch_indices('.').nth(1) {
        Some((dot, _)) => &host[dot + 1..],
        None => host,
    }
}

/// The host of each link in `text` (`http://`, `https://`, `www.`), at most `limit`.
fn link_hosts(text: &str, limit: usize, out: &mut dyn FnMut(&str)) {
    const PREFIXES: [&str; 3] = ["http://", "https://", "www."];
    // The next occurrence of each prefix at or after `from`, searched again only once passed.
    let next_of = |prefix: &str, from: usize| text.get(from..).and_then(|rest| rest.find(prefix)).map(|i| from + i);
    let mut next = PREFIXES.map(|p| next_of(p, 0));
    let (mut from, mut found) = (0, 0);
    while found < limit {
        for (slot, prefix) in next.iter_mut().zip(PREFIXES) {
            if slot.is_some_and(|at| at < from) {
                *slot = next_of(prefix, from);
            }
        }
        let Some((at, k)) = next.iter().enumerate().filter_map(|(k, at)| at.map(|at| (at, k))).min() else { break };
        let start = at + if PREFIXES[k] == "www." { 0 } else { PREFIXES[k].len() };
        let host_len = text[start..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '-'))
            .unwrap_or(text.len() - start);
        let host = text[start..start + host_len].trim_end_matches('.');
        if !host.is_empty() {
            out(host);
            found += 1;
        }
        from = (start + host_len).max(at + 1);
    }
}

/// E-mail header tokens and link hosts, as named flags (see [`FeatureSettings::header_features`]).
fn header_features(message: &Message, headers: &Headers<'_>, settings: &FeatureSettings, flag: &mut dyn FnMut(&str)) {
    let mut name = String::with_capacity(64);
    let mut emit = |prefix: &str, value: &str| {
        name.clear();
        name.push_str(prefix);
        name.extend(value.chars().take(48).flat_map(char::to_lowercase));
        flag(&name);
    };
    let text = capped(&message.text, settings.max_text_bytes);
    link_hosts(text, 16, &mut |host| {
        let host = host.to_ascii_lowercase();
        if host.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            emit("link:", "ip_host");
        } else {
            emit("link_host:", &host);
            emit("link_domain:", last_two_labels(&host));
        }
    });
    if message.channel != Channel::Email {
        return;
    }
    let from_domain = message.sender.email.as_ref().map(|e| e.domain().as_str().to_owned());
    if let Some(domain) = &from_domain {
        emit("from_domain:", domain);
        emit("from_base:", last_two_labels(domain));
    }
    if let Some(reply_to) = headers.reply_to
        && let Some((_, domain)) = reply_to.trim().trim_end_matches('>').rsplit_once('@')
        && from_domain.as_deref().is_none_or(|from| !from.eq_ignore_ascii_case(domain.trim()))
    {
        emit("header:", "reply_to_other_domain");
    }
    if let Some(mailer) = headers.mailer.or(headers.user_agent) {
        // The product, without its version: "Microsoft Outlook Express 6.00" → "microsoft outlook express".
        let product = mailer.split(|c: char| c.is_ascii_digit() || c == '(' || c == '[' || c == '/').next();
        emit("mailer:", product.unwrap_or("").trim());
    }
    if let Some(content_type) = headers.content_type
        && let Some(at) = content_type.to_ascii_lowercase().find("charset=")
    {
        let charset = content_type[at + 8..].trim_start_matches(['"', '\'']);
        let end =
            charset.find(|c: char| c == '"' || c == '\'' || c == ';' || c.is_whitespace()).unwrap_or(charset.len());
        emit("charset:", &charset[..end]);
    }
    if settings.header_presence {
        const HOPS: [&str; 4] = ["0", "1-2", "3-5", "6+"];
        emit("received:", HOPS[bucket_of(headers.received, &[1, 3, 6])]);
    }
}

#[cfg(test)]
pub(crate) mod tests_support {
    use chrono::{TimeZone, Utc};
    use leadsift_core::{Channel, DedupKey, Message};

    pub(crate) fn message(channel: Channel, subject: Option<&str>, text: &str) -> Message {
        let mut m = Message::new(
            channel,
            DedupKey::from_stored("test".into()),
            Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).single().unwrap_or_default(),
        );
        m.subject = subject.map(str::to_owned);
        m.text = text.to_owned();
        m
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::message;
    use super::*;
    use leadsift_core::{Attachment, Header};

    fn word_buckets(f: &Featurizer, text: &str) -> Vec<u32> {
        let settings =
            FeatureSettings { char_ngram_min: 0, word_bigrams: false, ascii_affixes: false, ..*f.settings() };
        let f = Featurizer::new(settings);
        let mut out = Vec::new();
        let mut state = TokenState::default();
        f.tokenize(text, false, 0, &mut state, None, &mut |b, _| out.push(b));
        out
    }

    const PINNED_CHANNEL_EMAIL_HASH: u64 = 1_802_668_399_166_265_707;

    #[test]
    fn tokenisation_lowercases_and_folds_yo() {
        let f = Featurizer::new(FeatureSettings::default());
        assert_eq!(word_buckets(&f, "ЁЛКА"), word_buckets(&f, "елка"));
        assert_eq!(word_buckets(&f, "Ещё"), word_buckets(&f, "еще"));
        assert_eq!(word_buckets(&f, "Hello, WORLD!"), word_buckets(&f, "hello world"));
        assert_ne!(word_buckets(&f, "заявка"), word_buckets(&f, "zayavka"));
        // Russian and English words both become tokens; punctuation does not.
        assert_eq!(word_buckets(&f, "Нужна цена, please!").len(), 3);
    }

    #[test]
    fn emoji_and_symbols_are_tokens_but_not_words() {
        let f = Featurizer::new(FeatureSettings::default());
        let plain = word_buckets(&f, "заработок");
        let with_emoji = word_buckets(&f, "💰заработок🔥");
        assert_eq!(with_emoji.len(), 3);
        assert!(with_emoji.contains(&plain[0]));
        assert_ne!(word_buckets(&f, "💰"), word_buckets(&f, "🔥"));
    }

    #[test]
    fn numbers_hash_by_length() {
        let f = Featurizer::new(FeatureSettings::default());
        assert_eq!(word_buckets(&f, "40817810"), word_buckets(&f, "12345678"));
        assert_ne!(word_buckets(&f, "123"), word_buckets(&f, "1234"));
    }

    #[test]
    fn hashing_is_deterministic_and_bounded() {
        let settings = FeatureSettings { dimension_bits: 12, ..FeatureSettings::default() };
        let f = Featurizer::new(settings);
        let m = message(
            Channel::Email,
            Some("Коммерческое предложение"),
            "Здравствуйте! Нужен расчёт стоимости 💡 https://x.ru",
        );
        let a = f.features(&m);
        let b = Featurizer::new(settings).features(&m);
        assert_eq!(a, b);
        assert!(a.indices.iter().all(|&i| (i as usize) < settings.dimension()));
        assert!(a.indices.windows(2).all(|w| w[0] < w[1]));
        // Pinned values: a change to hashing silently invalidates every saved model.
        assert_eq!(f.bucket(hash_str(NS_WORD, "заявка")), f.bucket(hash_str(NS_WORD, "заявка")));
        assert_eq!(hash_str(NS_STRUCT, "channel:email"), PINNED_CHANNEL_EMAIL_HASH);
    }

    #[test]
    fn mixed_script_words_are_flagged() {
        let f = Featurizer::new(FeatureSettings::default());
        let flagged = f.bucket(hash_str(NS_STRUCT, "mixed_script_words"));
        let clean = f.features(&message(Channel::Messenger, None, "заработок"));
        let mixed = f.features(&message(Channel::Messenger, None, "зaработок")); // Latin a
        assert!(!clean.indices.contains(&flagged));
        assert!(mixed.indices.contains(&flagged));
    }

    #[test]
    fn header_features_name_the_sender_mailer_charset_and_link_hosts() {
        let f = Featurizer::new(FeatureSettings::default());
        let mut m =
            message(Channel::Email, Some("Offer"), "See http://Promo.Example.co/x and www.shop.example.com now");
        m.sender.email = leadsift_core::EmailAddress::parse("sales@mail.vendor.ru").ok();
        for (name, value) in [
            ("X-Mailer", "Microsoft Outlook Express 6.00.2600"),
            ("Content-Type", "text/plain; charset=\"windows-1251\""),
            ("Reply-To", "<other@elsewhere.example>"),
            ("Received", "from a"),
            ("Received", "from b"),
        ] {
            m.headers.push(Header { name: name.into(), value: value.into() });
        }
        let features = f.features(&m);
        for name in [
            "from_domain:mail.vendor.ru",
            "from_base:vendor.ru",
            "mailer:microsoft outlook express",
            "charset:windows-1251",
            "header:reply_to_other_domain",
            "link_host:promo.example.co",
            "link_domain:example.co",
            "link_host:www.shop.example.com",
            "link_domain:example.com",
        ] {
            assert!(features.indices.contains(&f.bucket(hash_str(NS_STRUCT, name))), "{name}");
        }
        // Header-presence flags only when asked for (models trained before the setting).
        let presence = Featurizer::new(FeatureSettings { header_presence: true, ..FeatureSettings::default() });
        let has = |f: &Featurizer, m: &Message, name: &str| {
            f.features(m).indices.contains(&f.bucket(hash_str(NS_STRUCT, name)))
        };
        assert!(has(&presence, &m, "received:1-2") && has(&presence, &m, "header:no_message_id"));
        assert!(!has(&f, &m, "received:1-2") && !has(&f, &m, "header:no_message_id") && !has(&f, &m, "mime:none"));
        assert!(has(&f, &m, "mime:text_plain"), "the MIME type itself is kept");
        // Off, none of them; and a messenger message gets link hosts but no mail headers.
        let off = Featurizer::new(FeatureSettings { header_features: false, ..FeatureSettings::default() });
        assert!(!off.features(&m).indices.contains(&off.bucket(hash_str(NS_STRUCT, "charset:windows-1251"))));
        let chat = f.features(&message(Channel::Messenger, None, "go to http://1.2.3.4/win"));
        assert!(chat.indices.contains(&f.bucket(hash_str(NS_STRUCT, "link:ip_host"))));
        assert!(!chat.indices.contains(&f.bucket(hash_str(NS_STRUCT, "received:0"))));
    }

    #[test]
    fn link_hosts_are_found_once_each_in_order() {
        let mut hosts = Vec::new();
        link_hosts("a http://www.a.com/x b https://b.org. www.c.net http:// d", 16, &mut |h| hosts.push(h.to_owned()));
        assert_eq!(hosts, ["www.a.com", "b.org", "www.c.net"]);
        let mut first = Vec::new();
        link_hosts("www.a.com www.b.com www.c.com", 2, &mut |h| first.push(h.to_owned()));
        assert_eq!(first, ["www.a.com", "www.b.com"]);
    }

    #[test]
    fn long_ascii_words_share_their_affixes() {
        let f = Featurizer::new(FeatureSettings::default());
        let buckets = |text: &str| f.features(&message(Channel::Email, None, text)).indices;
        let (one, other) = (buckets("pharmacy"), buckets("pharmaceutical"));
        let shared = one.iter().filter(|b| other.contains(b)).count();
        assert!(shared >= 1, "the <phar prefix");
        // Short words get none: "cheap" is its own only feature beside the structural ones.
        let short = buckets("cheap");
        let plain = Featurizer::new(FeatureSettings { ascii_affixes: false, ..FeatureSettings::default() });
        assert_eq!(short, plain.features(&message(Channel::Email, None, "cheap")).indices);
        assert!(buckets("pharmacy").len() > plain.features(&message(Channel::Email, None, "pharmacy")).indices.len());
    }

    #[test]
    fn the_shape_of_subject_and_text_is_counted_while_tokenising() {
        let f = Featurizer::new(FeatureSettings::default());
        let m = message(Channel::Email, Some("FREE MONEY NOW!!!"), "Only today: $100 for €5, really! Ёлки.");
        let features = f.features(&m);
        for name in ["subject:caps:60%+", "subject:exclaim:2-4", "text:caps:<10%", "text:exclaim:1", "text:money:1-2"] {
            assert!(features.indices.contains(&f.bucket(hash_str(NS_STRUCT, name))), "{name}");
        }
    }

    #[test]
    fn structural_features_reflect_headers_calls_and_attachments() {
        let f = Featurizer::new(FeatureSettings::default());
        let mut m = message(Channel::Email, Some("Digest"), "");
        m.headers.push(Header { name: "list-unsubscribe".into(), value: "<mailto:u@x.y>".into() });
        m.attachments.push(Attachment {
            name: Some("v.PDF".into()),
            mime_type: "application/octet-stream".into(),
            size: 1,
        });
        let features = f.features(&m);
        for name in ["header:list_unsubscribe", "attachment:pdf", "channel:email", "len:0", "sender:none"] {
            assert!(features.indices.contains(&f.bucket(hash_str(NS_STRUCT, name))), "{name}");
        }
        let mut call = message(Channel::Call, None, "");
        call.call = Some(leadsift_core::CallInfo { duration_secs: 3, answered: false });
        let features = f.features(&call);
        for name in ["call:missed", "call:0-4s", "channel:call"] {
            assert!(features.indices.contains(&f.bucket(hash_str(NS_STRUCT, name))), "{name}");
        }
    }

    #[test]
    fn empty_huge_and_binary_messages_are_handled() {
        let f = Featurizer::new(FeatureSettings::default());
        let empty = f.features(&message(Channel::Webform, None, ""));
        assert!(!empty.is_empty(), "structural features only");

        let huge_text = "слово word ".repeat(1_000_000); // ~12 MB
        let started = std::time::Instant::now();
        let huge = f.features(&message(Channel::Email, Some("x"), &huge_text));
        assert!(huge.total() < 40_000, "the text is capped: {}", huge.total());
        assert!(started.elapsed() < std::time::Duration::from_secs(1));

        let binary: String = (0u32..50_000).filter_map(|i| char::from_u32((i * 7919) % 0x2_0000)).collect();
        let junk = f.features(&message(Channel::Email, None, &binary));
        assert!(!junk.is_empty());
        let emoji_only = f.features(&message(Channel::Messenger, None, "🔥🔥🔥💰💰👉"));
        assert!(emoji_only.total() > 6);
    }
}
