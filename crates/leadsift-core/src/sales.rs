//! What a lead becomes: companies, deals with their outcomes, and the ad
//! spend the reports weigh them against.
//!
//! Money is kept in minor units (hundredths) with an ISO 4217 code and is
//! never converted between currencies: nobody here knows the exchange rate
//! a sales director would use, so reports count one currency at a time.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::identity::{Domain, SourceRef};
use crate::lists::is_free_mail;
use crate::message::Channel;

/// An ISO 4217 currency code: three upper-case ASCII letters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency(String);

impl Currency {
    pub fn parse(raw: &str) -> Result<Self, MoneyError> {
        let code = raw.trim().to_ascii_uppercase();
        // Common spellings people type in spreadsheets.
        let code = match code.as_str() {
            "RUR" | "РУБ" | "₽" => "RUB".to_owned(),
            _ => code,
        };
        if code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase()) {
            Ok(Self(code))
        } else {
            Err(MoneyError::Currency(raw.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Currency {
    type Error = MoneyError;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(&raw)
    }
}

impl From<Currency> for String {
    fn from(currency: Currency) -> Self {
        currency.0
    }
}

impl FromStr for Currency {
    type Err = MoneyError;
    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        Self::parse(raw)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("invalid amount {0:?}: expected a non-negative number with at most two decimals, e.g. 1250.50 or 1 250,50")]
    Amount(String),
    #[error("invalid currency {0:?}: expected an ISO 4217 code such as RUB, USD, EUR")]
    Currency(String),
}

/// A non-negative amount in hundredths of the currency unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Amount(i64);

impl Amount {
    pub const ZERO: Amount = Amount(0);

    pub fn from_minor(minor: i64) -> Self {
        Self(minor)
    }

    pub fn minor(self) -> i64 {
        self.0
    }

    /// Parses "1250", "1250.5", "1250,50", "1 250,50" or "1\u{a0}250.50"
    /// exactly, without going through floating point.
    pub fn parse(raw: &str) -> Result<Self, MoneyError> {
        let error = || MoneyError::Amount(raw.to_owned());
        let cleaned: String =
            raw.trim().chars().filter(|c| !matches!(c, ' ' | '\u{a0}' | '\u{202f}' | '_' | '\'')).collect();
        let cleaned = cleaned.replace(',', ".");
        let (whole, fraction) = cleaned.split_once('.').unwrap_or((&cleaned, ""));
        if whole.is_empty() && fraction.is_empty()
            || !whole.bytes().all(|b| b.is_ascii_digit())
            || !fraction.bytes().all(|b| b.is_ascii_digit())
            || fraction.len() > 2
            || whole.len() > 15
        {
            return Err(error());
        }
        let whole: i64 = if whole.is_empty() { 0 } else { whole.parse().map_err(|_| error())? };
        let fraction: i64 = match fraction.len() {
            0 => 0,
            1 => fraction.parse::<i64>().map_err(|_| error())? * 10,
            _ => fraction.parse().map_err(|_| error())?,
        };
        Ok(Self(whole * 100 + fraction))
    }

    pub fn checked_add(self, other: Amount) -> Option<Amount> {
        self.0.checked_add(other.0).map(Amount)
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:02}", self.0 / 100, self.0 % 100)
    }
}

impl Serialize for Amount {
    /// As a decimal string ("1250.50"): exact in every JSON reader.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Integer(u64),
            Number(f64),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Text(text) => Amount::parse(&text).map_err(serde::de::Error::custom),
            Raw::Integer(n) => i64::try_from(n)
                .ok()
                .and_then(|n| n.checked_mul(100))
                .map(Amount)
                .ok_or_else(|| serde::de::Error::custom("amount too large")),
            // A JSON number such as 1250.5: read through its shortest decimal spelling.
            Raw::Number(n) => Amount::parse(&n.to_string()).map_err(serde::de::Error::custom),
        }
    }
}

/// An amount in a currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Money {
    pub amount: Amount,
    pub currency: Currency,
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.amount, self.currency)
    }
}

/// Where a deal stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DealStage {
    InProgress,
    Won,
    Lost,
}

crate::names::wire_names!(DealStage, "deal stage" {
    InProgress => "in_progress",
    Won => "won",
    Lost => "lost",
});

impl DealStage {
    pub fn is_closed(self) -> bool {
        self != DealStage::InProgress
    }
}

/// A company contacts belong to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Company {
    pub id: i64,
    pub name: String,
    /// The corporate email domain it was derived from (never a free-mail one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// A deal made from a converted lead.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deal {
    pub id: i64,
    pub lead_id: i64,
    pub contact_id: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub company_id: Option<i64>,
    pub title: String,
    pub stage: DealStage,
    /// Expected amount while in progress, final amount once won or lost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<Money>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lost_reason: Option<String>,
    /// Copied from the lead, so reports attribute the deal to its ad source.
    pub channel: Channel,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign: Option<String>,
    pub created_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_at: Option<DateTime<Utc>>,
}

/// A request to convert a lead into contact + company + deal.
#[derive(Debug, Clone, PartialEq)]
pub struct LeadConversion {
    pub lead_id: i64,
    /// Explicit company name; without it the company comes from the
    /// contact's corporate email domain, if any.
    pub company: Option<String>,
    /// Defaults to the lead's title.
    pub deal_title: Option<String>,
    pub amount: Option<Money>,
    pub actor: String,
    pub note: Option<String>,
}

/// What a conversion created or linked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Converted {
    pub lead_id: i64,
    pub contact_id: i64,
    pub contact_created: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub company: Option<Company>,
    pub company_created: bool,
    pub deal: Deal,
}

/// Closing a deal as won or lost.
#[derive(Debug, Clone, PartialEq)]
pub struct DealClosing {
    pub deal_id: i64,
    pub outcome: DealStage,
    /// Final amount; without it the deal keeps its expected amount.
    pub amount: Option<Money>,
    /// Required when lost.
    pub lost_reason: Option<String>,
    /// When it closed (defaults to now).
    pub closed_at: Option<DateTime<Utc>>,
    pub actor: String,
}

impl DealClosing {
    pub fn validate(&self) -> Result<(), String> {
        match (self.outcome, self.lost_reason.as_deref().map(str::trim)) {
            (DealStage::InProgress, _) => Err("a deal is closed as won or lost".to_owned()),
            (DealStage::Lost, None | Some("")) => {
                Err(format!("closing deal {} as lost needs a lost reason", self.deal_id))
            }
            (DealStage::Won, Some(reason)) if !reason.is_empty() => {
                Err(format!("deal {}: a lost reason is for lost deals only", self.deal_id))
            }
            _ => Ok(()),
        }
    }
}

/// Filter for listing deals.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DealFilter {
    pub stage: Option<DealStage>,
    pub limit: Option<u32>,
}

/// The company a contact with these identities belongs to, derived from a
/// corporate email domain: the first non-free-mail domain among the email
/// identities. Free-mail domains (gmail.com, mail.ru, …) say nothing about
/// an employer.
pub fn company_domain(identities: &[SourceRef]) -> Option<Domain> {
    identities.iter().find_map(|identity| match identity {
        SourceRef::Email(email) => {
            let domain = email.domain();
            (!is_free_mail(&domain)).then_some(domain)
        }
        _ => None,
    })
}

/// Case- and space-insensitive key under which company names are unique.
pub fn company_key(name: &str) -> String {
    name.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase().replace('ё', "е")
}

/// One line of an ad spend file: what a source and campaign cost on a day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdSpend {
    pub date: NaiveDate,
    pub source: String,
    /// Empty when the spend is not split by campaign.
    pub campaign: String,
    pub amount: Amount,
    pub currency: Currency,
}

/// What importing spend lines did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpendImport {
    pub inserted: u64,
    pub updated: u64,
    pub unchanged: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{EmailAddress, PhoneNumber};
    use proptest::prelude::*;

    #[test]
    fn amounts_parse_exactly_in_common_spellings() {
        for (raw, minor) in [
            ("1250", 125_000),
            ("1250.5", 125_050),
            ("1250,50", 125_050),
            ("1 250,50", 125_050),
            ("1\u{a0}250.05", 125_005),
            (".5", 50),
            ("0", 0),
        ] {
            assert_eq!(Amount::parse(raw).unwrap().minor(), minor, "{raw}");
        }
        for raw in ["", "-5", "1.234", "1e3", "12,34,5", "abc", "1.2.3"] {
            assert!(Amount::parse(raw).is_err(), "{raw}");
        }
        assert_eq!(Amount::from_minor(125_005).to_string(), "1250.05");
    }

    #[test]
    fn amounts_read_json_strings_and_numbers() {
        let amounts: Vec<Amount> = serde_json::from_str(r#"["99.90", 150000, 1250.5]"#).unwrap();
        assert_eq!(amounts.iter().map(|a| a.minor()).collect::<Vec<_>>(), [9_990, 15_000_000, 125_050]);
        assert_eq!(serde_json::to_string(&Amount::from_minor(9_990)).unwrap(), "\"99.90\"");
    }

    #[test]
    fn currencies_are_iso_codes() {
        assert_eq!(Currency::parse("rub").unwrap().as_str(), "RUB");
        assert_eq!(Currency::parse("RUR").unwrap().as_str(), "RUB");
        assert!(Currency::parse("rubles").is_err());
        assert!(Currency::parse("").is_err());
    }

    #[test]
    fn company_comes_from_a_corporate_domain_never_free_mail() {
        let free = SourceRef::Email(EmailAddress::parse("ivan@mail.ru").unwrap());
        let phone = SourceRef::Phone(PhoneNumber::parse("+79162045581", "RU").unwrap());
        assert_eq!(company_domain(&[free.clone(), phone.clone()]), None);
        let work = SourceRef::Email(EmailAddress::parse("ivan@Stroy-Fasad.ru").unwrap());
        assert_eq!(company_domain(&[free, phone, work]).unwrap().as_str(), "stroy-fasad.ru");
    }

    #[test]
    fn company_keys_ignore_case_and_spacing() {
        assert_eq!(company_key("  ООО  «Ёлка» "), company_key("ооо «елка»"));
    }

    #[test]
    fn closing_needs_a_reason_only_when_lost() {
        let mut closing = DealClosing {
            deal_id: 1,
            outcome: DealStage::Lost,
            amount: None,
            lost_reason: None,
            closed_at: None,
            actor: "t".into(),
        };
        assert!(closing.validate().is_err());
        closing.lost_reason = Some("price".into());
        assert!(closing.validate().is_ok());
        closing.outcome = DealStage::Won;
        assert!(closing.validate().is_err());
        closing.lost_reason = None;
        assert!(closing.validate().is_ok());
    }

    proptest! {
        #[test]
        fn amounts_round_trip_through_their_display(minor in 0i64..1_000_000_000_000) {
            let amount = Amount::from_minor(minor);
            prop_assert_eq!(Amount::parse(&amount.to_string()).unwrap(), amount);
        }

        #[test]
        fn amount_parsing_never_panics(raw in "\\PC{0,24}") {
            let _ = Amount::parse(&raw);
        }
    }
}
