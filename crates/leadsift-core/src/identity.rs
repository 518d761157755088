//! Validated sender and destination identities.
//!
//! Raw input (IMAP headers, webhook fields, CSV cells) is parsed into these
//! newtypes at the edge, so everything past intake can rely on one canonical
//! spelling: lower-case email addresses, E.164 phone numbers and
//! `network:id` messenger handles. Contacts, blacklist entries and dedup all
//! compare these canonical strings.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a raw identity string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("not an email address: {0:?}")]
    InvalidEmail(String),
    #[error("not a phone number: {0:?}")]
    InvalidPhone(String),
    #[error("not a messenger handle (expected network:id): {0:?}")]
    InvalidHandle(String),
    #[error("not a domain name: {0:?}")]
    InvalidDomain(String),
}

/// An email address, trimmed and lower-cased (local parts are
/// case-insensitive in practice, and contacts must match across spellings).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EmailAddress(String);

impl EmailAddress {
    pub fn parse(raw: &str) -> Result<Self, IdentityError> {
        let trimmed = raw.trim().trim_start_matches('<').trim_end_matches('>').trim();
        let lowered = trimmed.to_lowercase();
        let Some((local, domain)) = lowered.rsplit_once('@') else {
            return Err(IdentityError::InvalidEmail(raw.to_owned()));
        };
        let local_ok = !local.is_empty()
            && local.len() <= 64
            && !local.chars().any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>' || c == '@');
        if !local_ok || Domain::parse(domain).is_err() {
            return Err(IdentityError::InvalidEmail(raw.to_owned()));
        }
        Ok(Self(lowered))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The part after `@`.
    pub fn domain(&self) -> Domain {
        let (_, domain) = self.0.rsplit_once('@').unwrap_or(("", &self.0));
        Domain(domain.to_owned())
    }
}

/// A DNS domain name, lower-cased, without a trailing dot.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Domain(String);

impl Domain {
    pub fn parse(raw: &str) -> Result<Self, IdentityError> {
        let lowered = raw.trim().trim_end_matches('.').to_lowercase();
        let labels_ok = lowered.len() <= 253
            && lowered.contains('.')
            && lowered.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label.chars().all(|c| c.is_alphanumeric() || c == '-')
            });
        if labels_ok { Ok(Self(lowered)) } else { Err(IdentityError::InvalidDomain(raw.to_owned())) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True if this domain is `other` or a subdomain of it.
    pub fn is_within(&self, other: &Domain) -> bool {
        self.0 == other.0 || self.0.ends_with(&format!(".{}", other.0))
    }
}

/// A phone number in E.164 (`+79162045581`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PhoneNumber(String);

impl PhoneNumber {
    /// Parses international (`+7 916 204-55-81`) and national
    /// (`8 (916) 204-55-81`) spellings; national numbers are read in
    /// `default_region` (ISO 3166 code such as `RU`).
    pub fn parse(raw: &str, default_region: &str) -> Result<Self, IdentityError> {
        let region = phonenumber::country::Id::from_str(&default_region.to_uppercase()).ok();
        let parsed = phonenumber::parse(region, raw.trim()).map_err(|_| IdentityError::InvalidPhone(raw.to_owned()))?;
        if !phonenumber::is_valid(&parsed) {
            return Err(IdentityError::InvalidPhone(raw.to_owned()));
        }
        Ok(Self(parsed.format().mode(phonenumber::Mode::E164).to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A messenger account: `telegram:58112093`, `whatsapp:79162045581`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessengerHandle(String);

impl MessengerHandle {
    pub fn parse(raw: &str) -> Result<Self, IdentityError> {
        let trimmed = raw.trim();
        let Some((network, id)) = trimmed.split_once(':') else {
            return Err(IdentityError::InvalidHandle(raw.to_owned()));
        };
        let network = network.to_lowercase();
        let network_ok = !network.is_empty() && network.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        let id = id.trim_start_matches('@');
        let id_ok = !id.is_empty() && id.len() <= 128 && !id.chars().any(char::is_whitespace);
        if !network_ok || !id_ok {
            return Err(IdentityError::InvalidHandle(raw.to_owned()));
        }
        Ok(Self(format!("{network}:{}", id.to_lowercase())))
    }

    pub fn network(&self) -> &str {
        self.0.split_once(':').map_or("", |(network, _)| network)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

macro_rules! string_newtype_traits {
    ($($ty:ident),*) => {$(
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }
    )*};
}
string_newtype_traits!(EmailAddress, Domain, PhoneNumber, MessengerHandle);

// Deserialisation re-validates: stored payloads are trusted less than types.
impl<'de> Deserialize<'de> for EmailAddress {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}
impl<'de> Deserialize<'de> for Domain {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}
impl<'de> Deserialize<'de> for MessengerHandle {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}
impl<'de> Deserialize<'de> for PhoneNumber {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Stored numbers are already E.164, so no region is needed.
        let raw = String::deserialize(deserializer)?;
        Self::parse(&raw, "ZZ").map_err(serde::de::Error::custom)
    }
}

/// What kind of identity a blacklist entry or contact identity is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentityKind {
    Email,
    Domain,
    Phone,
    Handle,
}

crate::names::wire_names!(IdentityKind, "identity kind" {
    Email => "email",
    Domain => "domain",
    Phone => "phone",
    Handle => "handle",
});

/// One canonical identity: the unit contacts and blacklist entries match on.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum SourceRef {
    Email(EmailAddress),
    Domain(Domain),
    Phone(PhoneNumber),
    Handle(MessengerHandle),
}

impl SourceRef {
    /// Parses `value` as an identity of `kind`; phones use `default_region`.
    pub fn parse(kind: IdentityKind, value: &str, default_region: &str) -> Result<Self, IdentityError> {
        Ok(match kind {
            IdentityKind::Email => Self::Email(EmailAddress::parse(value)?),
            IdentityKind::Domain => Self::Domain(Domain::parse(value.trim_start_matches('@'))?),
            IdentityKind::Phone => Self::Phone(PhoneNumber::parse(value, default_region)?),
            IdentityKind::Handle => Self::Handle(MessengerHandle::parse(value)?),
        })
    }

    /// Guesses the kind from the spelling: `a@b.c` email, `+7…`/digits phone,
    /// `net:id` handle, `b.c` domain. Used by the CLI (`blacklist add VALUE`).
    pub fn guess(value: &str, default_region: &str) -> Result<Self, IdentityError> {
        let value = value.trim();
        if value.contains('@') && !value.starts_with('@') {
            return Ok(Self::Email(EmailAddress::parse(value)?));
        }
        if value.contains(':') {
            return Ok(Self::Handle(MessengerHandle::parse(value)?));
        }
        let digits = value.chars().filter(char::is_ascii_digit).count();
        if digits >= 5 && value.chars().all(|c| c.is_ascii_digit() || " +-()".contains(c)) {
            return Ok(Self::Phone(PhoneNumber::parse(value, default_region)?));
        }
        Ok(Self::Domain(Domain::parse(value.trim_start_matches('@'))?))
    }

    pub fn kind(&self) -> IdentityKind {
        match self {
            Self::Email(_) => IdentityKind::Email,
            Self::Domain(_) => IdentityKind::Domain,
            Self::Phone(_) => IdentityKind::Phone,
            Self::Handle(_) => IdentityKind::Handle,
        }
    }

    pub fn value(&self) -> &str {
        match self {
            Self::Email(v) => v.as_str(),
            Self::Domain(v) => v.as_str(),
            Self::Phone(v) => v.as_str(),
            Self::Handle(v) => v.as_str(),
        }
    }
}

impl fmt::Display for SourceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind(), self.value())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn email_is_canonicalised() {
        let email = EmailAddress::parse(" <Ivan.Petrov@Example.RU> ").unwrap();
        assert_eq!(email.as_str(), "ivan.petrov@example.ru");
        assert_eq!(email.domain().as_str(), "example.ru");
        assert!(EmailAddress::parse("no-at-sign").is_err());
        assert!(EmailAddress::parse("a@b").is_err());
        assert!(EmailAddress::parse("@example.com").is_err());
    }

    #[test]
    fn russian_phone_spellings_become_e164() {
        for raw in ["+7 916 204-55-81", "8 (916) 204-55-81", "+79162045581", "7 916 2045581"] {
            assert_eq!(PhoneNumber::parse(raw, "RU").unwrap().as_str(), "+79162045581", "{raw}");
        }
        assert!(PhoneNumber::parse("12", "RU").is_err());
        assert!(PhoneNumber::parse("call me", "RU").is_err());
    }

    #[test]
    fn handle_needs_network_and_id() {
        assert_eq!(MessengerHandle::parse("Telegram:58112093").unwrap().as_str(), "telegram:58112093");
        assert_eq!(MessengerHandle::parse("telegram:@IvanP").unwrap().as_str(), "telegram:ivanp");
        assert!(MessengerHandle::parse("58112093").is_err());
        assert!(MessengerHandle::parse("telegram:").is_err());
    }

    #[test]
    fn subdomains_are_within_their_parent() {
        let parent = Domain::parse("sberbank.ru").unwrap();
        assert!(Domain::parse("notify.sberbank.ru").unwrap().is_within(&parent));
        assert!(Domain::parse("sberbank.ru").unwrap().is_within(&parent));
        assert!(!Domain::parse("notsberbank.ru").unwrap().is_within(&parent));
    }

    #[test]
    fn guess_picks_the_kind() {
        assert_eq!(SourceRef::guess("a@b.ru", "RU").unwrap().kind(), IdentityKind::Email);
        assert_eq!(SourceRef::guess("+7 916 204 55 81", "RU").unwrap().kind(), IdentityKind::Phone);
        assert_eq!(SourceRef::guess("telegram:1", "RU").unwrap().kind(), IdentityKind::Handle);
        assert_eq!(SourceRef::guess("@spam.example", "RU").unwrap().kind(), IdentityKind::Domain);
    }

    proptest! {
        #[test]
        fn parsers_never_panic(raw in "\\PC{0,80}") {
            let _ = EmailAddress::parse(&raw);
            let _ = PhoneNumber::parse(&raw, "RU");
            let _ = MessengerHandle::parse(&raw);
            let _ = SourceRef::guess(&raw, "RU");
        }

        #[test]
        fn canonical_email_round_trips(local in "[a-z0-9._%+-]{1,20}", domain in "[a-z0-9]{1,10}\\.(ru|com|org)") {
            let email = EmailAddress::parse(&format!("{local}@{domain}")).unwrap();
            prop_assert_eq!(EmailAddress::parse(email.as_str()).unwrap(), email);
        }
    }
}
