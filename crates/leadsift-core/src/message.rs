//! The one normalised message every channel produces.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::identity::{EmailAddress, MessengerHandle, PhoneNumber, SourceRef};

/// The channel a message arrived through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Email,
    Call,
    Messenger,
    Webform,
}

crate::names::wire_names!(Channel, "channel" {
    Email => "email",
    Call => "call",
    Messenger => "messenger",
    Webform => "webform",
});

/// Stable identity of one inbound message, used to make every write
/// idempotent: `email:<Message-ID>#<hash>`, `call:<pbx id>`, `messenger:<update id>`,
/// or `<channel>:sha256:<hash of content>` when the source gives no id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DedupKey(String);

impl DedupKey {
    /// A key from an id the upstream system assigned.
    pub fn from_upstream_id(channel: Channel, id: &str) -> Self {
        Self(format!("{channel}:{}", id.trim()))
    }

    /// A key from a content hash, for sources without ids.
    pub fn from_content(channel: Channel, parts: &[&[u8]]) -> Self {
        Self(format!("{channel}:sha256:{}", short_hash(parts)))
    }

    /// Rebuilds a key read back from storage.
    pub fn from_stored(raw: String) -> Self {
        Self(raw)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DedupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// First 16 bytes of SHA-256 over the parts (separated, so `["ab","c"]` and
/// `["a","bc"]` differ), hex-encoded.
pub fn short_hash(parts: &[&[u8]]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    hex::encode(&hasher.finalize()[..16])
}

/// Who sent the message. Any subset may be known.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sender {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<EmailAddress>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<PhoneNumber>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handle: Option<MessengerHandle>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl Sender {
    /// Identities that can link this sender to a contact or a list entry,
    /// most specific first. The email's domain is not included: a domain
    /// is shared by many people and never identifies one contact.
    pub fn identities(&self) -> Vec<SourceRef> {
        let mut out = Vec::with_capacity(3);
        if let Some(email) = &self.email {
            out.push(SourceRef::Email(email.clone()));
        }
        if let Some(phone) = &self.phone {
            out.push(SourceRef::Phone(phone.clone()));
        }
        if let Some(handle) = &self.handle {
            out.push(SourceRef::Handle(handle.clone()));
        }
        out
    }

    /// Identities plus the sender's email domain: what list entries match on.
    pub fn list_keys(&self) -> Vec<SourceRef> {
        let mut out = self.identities();
        if let Some(email) = &self.email {
            out.push(SourceRef::Domain(email.domain()));
        }
        out
    }

    pub fn is_anonymous(&self) -> bool {
        self.email.is_none() && self.phone.is_none() && self.handle.is_none()
    }

    /// A short human label: name, else the first identity.
    pub fn label(&self) -> String {
        if let Some(name) = self.name.as_deref().filter(|n| !n.trim().is_empty()) {
            return name.trim().to_owned();
        }
        self.identities().first().map_or_else(|| "unknown sender".to_owned(), |id| id.value().to_owned())
    }
}

/// A header as received (name case preserved, value decoded to text).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub name: String,
    pub value: String,
}

/// Metadata of one attachment; the content itself is not kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `type/subtype`, lower-case.
    pub mime_type: String,
    pub size: u64,
}

/// Telephony facts of a call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallInfo {
    #[serde(default)]
    pub duration_secs: u32,
    #[serde(default)]
    pub answered: bool,
}

/// UTM tags as the ad platform set them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Utm {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub medium: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub term: Option<String>,
}

impl Utm {
    pub fn is_empty(&self) -> bool {
        self.source.is_none()
            && self.medium.is_none()
            && self.campaign.is_none()
            && self.content.is_none()
            && self.term.is_none()
    }
}

/// One inbound message, whatever the channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub channel: Channel,
    pub dedup_key: DedupKey,
    pub received_at: DateTime<Utc>,
    #[serde(default)]
    pub sender: Sender,
    /// Where it was sent: our mailbox, tracking number, bot or form id.
    /// Source attribution maps this to an ad source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Plain text: HTML converted, charsets decoded. Capped at intake.
    #[serde(default)]
    pub text: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<Header>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Attachment>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call: Option<CallInfo>,
    #[serde(default, skip_serializing_if = "Utm::is_empty")]
    pub utm: Utm,
    /// True when `text` was cut to the intake size cap.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

impl Message {
    /// A message with only the required fields set; intake fills the rest.
    pub fn new(channel: Channel, dedup_key: DedupKey, received_at: DateTime<Utc>) -> Self {
        Self {
            channel,
            dedup_key,
            received_at,
            sender: Sender::default(),
            destination: None,
            subject: None,
            text: String::new(),
            headers: Vec::new(),
            attachments: Vec::new(),
            call: None,
            utm: Utm::default(),
            truncated: false,
        }
    }

    /// All values of a header, matched case-insensitively.
    pub fn header_values<'a, 'n>(&'a self, name: &'n str) -> impl Iterator<Item = &'a str> + use<'a, 'n> {
        self.headers.iter().filter(move |h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value.as_str())
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.header_values(name).next()
    }

    /// Number of `http(s)://` and `www.` links in subject and text.
    pub fn link_count(&self) -> usize {
        let count = |s: &str| s.matches("http://").count() + s.matches("https://").count() + s.matches("www.").count();
        count(&self.text) + self.subject.as_deref().map_or(0, count)
    }

    /// Cuts `text` to at most `max_bytes` on a char boundary, marking the message truncated.
    pub fn cap_text(&mut self, max_bytes: usize) {
        if self.text.len() > max_bytes {
            let mut cut = max_bytes;
            while !self.text.is_char_boundary(cut) {
                cut -= 1;
            }
            self.text.truncate(cut);
            self.truncated = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_keys_are_stable_and_separated() {
        let a = DedupKey::from_content(Channel::Webform, &[b"ab", b"c"]);
        let b = DedupKey::from_content(Channel::Webform, &[b"a", b"bc"]);
        assert_ne!(a, b);
        assert_eq!(a, DedupKey::from_content(Channel::Webform, &[b"ab", b"c"]));
        assert!(a.as_str().starts_with("webform:sha256:"));
    }

    #[test]
    fn cap_text_respects_char_boundaries() {
        let mut m = Message::new(Channel::Email, DedupKey::from_stored("k".into()), Utc::now());
        m.text = "жжжж".into();
        m.cap_text(3);
        assert_eq!(m.text, "ж");
        assert!(m.truncated);
    }

    #[test]
    fn message_round_trips_through_json() {
        let mut m = Message::new(Channel::Call, DedupKey::from_upstream_id(Channel::Call, "pbx-1"), Utc::now());
        m.sender.phone = Some(PhoneNumber::parse("+79162045581", "RU").unwrap());
        m.call = Some(CallInfo { duration_secs: 3, answered: false });
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(serde_json::from_str::<Message>(&json).unwrap(), m);
    }

    #[test]
    fn header_lookup_ignores_case() {
        let mut m = Message::new(Channel::Email, DedupKey::from_stored("k".into()), Utc::now());
        m.headers.push(Header { name: "List-Unsubscribe".into(), value: "<mailto:x@y.z>".into() });
        assert_eq!(m.header("list-unsubscribe"), Some("<mailto:x@y.z>"));
    }
}
