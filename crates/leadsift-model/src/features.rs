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
        structural_features(message, self.settings.max_text_bytes, &mut flag);
        if self.settings.shape_features {
            shape_features(message, self.settings.max_text_bytes, &mut flag);
        }

        let mut state = TokenState::default();
        if let Some(subject) = message.subject.as_deref() {
            self.tokenize(capped(subject, 1024), true, usize::MAX, &mut state, emit);
        }
        state.previous = None;
        let text = capped(&message.text, self.settings.max_text_bytes);
        self.tokenize(text, false, self.settings.char_ngram_bytes, &mut state, emit);
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
        emit: &mut F,
    ) {
        let mut word = WordBuf::default();
        for (offset, raw) in text.char_indices() {
            if raw.is_ascii() {
                if raw.is_ascii_alphanumeric() {
                    word.push(raw.to_ascii_lowercase());
                    continue;
                }
            } else if raw.is_alphanumeric() {
                for c in raw.to_lowercase() {
                    word.push(if c == 'ё' { 'е' } else { c });
                }
                continue;
            }
            if !word.is_empty() {
                self.flush_word(&mut word, is_subject, offset <= char_ngram_bytes, state, emit);
            }
            // Emoji and other symbols are strong short-message spam signals (💰🔥✅).
            if u32::from(raw) >= 0x2000 && !raw.is_whitespace() {
                let h = fnv_step(FNV_OFFSET ^ NS_WORD ^ 0x5, raw);
                emit(self.bucket(h), 1);
            }
        }
        if !word.is_empty() {
            self.flush_word(&mut word, is_subject, text.len() <= char_ngram_bytes, state, emit);
        }
    }

    fn flush_word<F: FnMut(u32, u32)>(
        &self,
        word: &mut WordBuf,
        is_subject: bool,
        char_ngrams: bool,
        state: &mut TokenState,
        emit: &mut F,
    ) {
        let chars = &word.chars;
        let (mut cyrillic, mut latin, mut all_digits, mut ascii) = (false, false, true, true);
        for &c in chars {
            cyrillic |= ('\u{0400}'..='\u{04ff}').contains(&c);
            latin |= c.is_ascii_lowercase();
            all_digits &= c.is_ascii_digit();
            ascii &= c.is_ascii();
        }
        if cyrillic && latin {
            state.mixed_script_words += 1;
        }
        // Numbers by length only: amounts, account numbers and phones differ
        // in every digit but share their shape.
        let hash = if all_digits {
            fnv_step(FNV_OFFSET ^ NS_WORD ^ 0x7, char::from(b'0' + chars.len().min(12) as u8))
        } else {
            chars.iter().fold(FNV_OFFSET ^ NS_WORD, |h, &c| fnv_step(h, c))
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
        let script_wants = !(ascii && self.settings.char_ngrams_non_ascii_only);
        if char_ngrams && min > 0 && !all_digits && fits && script_wants {
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
        word.chars.clear();
    }
}

#[derive(Debug, Default)]
struct TokenState {
    previous: Option<u64>,
    mixed_script_words: u32,
}

#[derive(Debug, Default)]
struct WordBuf {
    chars: Vec<char>,
    edged: Vec<char>,
}

impl WordBuf {
    fn push(&mut self, c: char) {
        // A 1,000-letter "word" is junk; keep its start, which is all that is hashed anyway.
        if self.chars.len() < 64 {
            self.chars.push(c);
        }
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

/// Structural facts as named flags (hashed like words, in their own namespace).
fn structural_features(message: &Message, max_text_bytes: usize, flag: &mut dyn FnMut(&str)) {
    flag(match message.channel {
        Channel::Email => "channel:email",
        Channel::Call => "channel:call",
        Channel::Messenger => "channel:messenger",
        Channel::Webform => "channel:webform",
    });
    if message.header("List-Unsubscribe").is_some() {
        flag("header:list_unsubscribe");
    }
    if message.header("List-Id").is_some() {
        flag("header:list_id");
    }
    if let Some(precedence) = message.header("Precedence") {
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

/// Capitals, exclamation marks and money signs of a text, as `prefix:` flags.
fn text_shape(prefix: &str, text: &str, flag: &mut dyn FnMut(&str)) {
    let (mut letters, mut upper, mut exclaims, mut money) = (0usize, 0usize, 0usize, 0usize);
    for c in text.chars() {
        if c.is_alphabetic() {
            letters += 1;
            upper += usize::from(c.is_uppercase());
        } else if c == '!' {
            exclaims += 1;
        } else if matches!(c, '$' | '€' | '£' | '₽') {
            money += 1;
        }
    }
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

/// Generic shape of a message: how it is built rather than what it says.
fn shape_features(message: &Message, max_text_bytes: usize, flag: &mut dyn FnMut(&str)) {
    if let Some(subject) = message.subject.as_deref() {
        text_shape("subject:", capped(subject, 1024), flag);
    }
    text_shape("text:", capped(&message.text, max_text_bytes), flag);
    if message.channel != Channel::Email {
        return;
    }
    let content_type = message.header("Content-Type").map(|v| {
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
    flag(content_type.unwrap_or("mime:none"));
    for (header, missing) in
        [("Message-ID", "header:no_message_id"), ("Date", "header:no_date"), ("To", "header:no_to")]
    {
        if message.header(header).is_none() {
            flag(missing);
        }
    }
    if message.header("X-Mailer").is_some() || message.header("User-Agent").is_some() {
        flag("header:mailer");
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
        let settings = FeatureSettings { char_ngram_min: 0, word_bigrams: false, ..*f.settings() };
        let f = Featurizer::new(settings);
        let mut out = Vec::new();
        let mut state = TokenState::default();
        f.tokenize(text, false, 0, &mut state, &mut |b, _| out.push(b));
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
