//! Blacklist and allowlist entries.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::identity::{Domain, SourceRef};

/// Which list an entry is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ListKind {
    /// Senders whose messages are spam without further classification.
    Blacklist,
    /// Senders whose messages can never become spam.
    Allowlist,
}

crate::names::wire_names!(ListKind, "list" {
    Blacklist => "blacklist",
    Allowlist => "allowlist",
});

/// Who created an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryOrigin {
    /// Added by triage after a confident spam verdict.
    Auto,
    /// Added by a person.
    Admin,
}

crate::names::wire_names!(EntryOrigin, "entry origin" {
    Auto => "auto",
    Admin => "admin",
});

/// An active list entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListEntry {
    pub id: i64,
    pub list: ListKind,
    pub target: SourceRef,
    pub reason: String,
    pub origin: EntryOrigin,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
}

/// A request to put an identity on a list.
#[derive(Debug, Clone, PartialEq)]
pub struct NewListEntry {
    pub list: ListKind,
    pub target: SourceRef,
    pub reason: String,
    pub origin: EntryOrigin,
    pub actor: String,
    pub expires_at: Option<DateTime<Utc>>,
}

/// One line of a list's audit trail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListAuditRecord {
    pub entry_id: i64,
    pub list: ListKind,
    pub target: SourceRef,
    /// `added` or `removed`.
    pub action: String,
    pub actor: String,
    pub reason: String,
    pub at: DateTime<Utc>,
}

/// The list entries that match one sender, as seen at classification time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SenderStanding {
    pub blocked: Option<ListEntry>,
    pub allowed: Option<ListEntry>,
}

/// Free-mail providers: a whole domain of these is shared by millions of
/// unrelated people, so it is never blacklisted automatically and admins are
/// warned before doing it by hand.
pub const FREE_MAIL_DOMAINS: &[&str] = &[
    "gmail.com",
    "googlemail.com",
    "yahoo.com",
    "yahoo.co.uk",
    "ymail.com",
    "hotmail.com",
    "outlook.com",
    "live.com",
    "msn.com",
    "icloud.com",
    "me.com",
    "mac.com",
    "aol.com",
    "gmx.com",
    "gmx.de",
    "gmx.net",
    "web.de",
    "proton.me",
    "protonmail.com",
    "zoho.com",
    "mail.com",
    "yandex.ru",
    "yandex.com",
    "ya.ru",
    "yandex.by",
    "yandex.kz",
    "yandex.ua",
    "mail.ru",
    "inbox.ru",
    "list.ru",
    "bk.ru",
    "internet.ru",
    "rambler.ru",
    "lenta.ru",
    "autorambler.ru",
    "myrambler.ru",
    "ro.ru",
    "qip.ru",
    "ngs.ru",
    "tut.by",
    "ukr.net",
    "i.ua",
    "meta.ua",
    "qq.com",
    "163.com",
    "126.com",
];

pub fn is_free_mail(domain: &Domain) -> bool {
    FREE_MAIL_DOMAINS.iter().any(|free| domain.as_str() == *free)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_mail_is_recognised() {
        assert!(is_free_mail(&Domain::parse("Mail.ru").unwrap()));
        assert!(!is_free_mail(&Domain::parse("stroy-fasad.ru").unwrap()));
    }
}
