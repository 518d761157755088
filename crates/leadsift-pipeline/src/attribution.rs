//! Source attribution: which ad source and campaign a message belongs to.
//!
//! Each destination we publish — a tracking phone number, one of our email
//! addresses, a bot (`telegram:<bot>`), a WhatsApp number, a web form
//! (`form:<id>`) — is mapped to a source and campaign. Intake applies the
//! mapping to every message before it is queued, whatever its channel, by
//! filling the message's UTM source/campaign; UTM tags the message already
//! carries win field by field. Triage stores UTM source/campaign as the
//! lead's source and campaign.

use std::collections::HashMap;

use leadsift_core::{EmailAddress, Message, PhoneNumber};

/// Source and campaign of one destination.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AttributionTarget {
    pub source: Option<String>,
    pub campaign: Option<String>,
}

/// Destination → source/campaign, with destinations normalised (phones to
/// E.164, emails and ids to lower case) on both sides.
#[derive(Debug, Clone, Default)]
pub struct Attribution {
    by_destination: HashMap<String, AttributionTarget>,
    region: String,
}

impl Attribution {
    pub fn new(
        destinations: impl IntoIterator<Item = (String, AttributionTarget)>,
        default_region: &str,
    ) -> Attribution {
        let region = default_region.to_owned();
        let by_destination =
            destinations.into_iter().map(|(destination, target)| (normalize(&destination, &region), target)).collect();
        Attribution { by_destination, region }
    }

    pub fn is_empty(&self) -> bool {
        self.by_destination.is_empty()
    }

    /// Fills the message's UTM source and campaign from its destination
    /// where the message has none of its own. Returns whether it matched.
    pub fn apply(&self, message: &mut Message) -> bool {
        let Some(destination) = message.destination.as_deref() else { return false };
        let Some(target) = self.by_destination.get(&normalize(destination, &self.region)) else { return false };
        if message.utm.source.is_none() {
            message.utm.source.clone_from(&target.source);
        }
        if message.utm.campaign.is_none() {
            message.utm.campaign.clone_from(&target.campaign);
        }
        true
    }
}

/// Phone-like → E.164, email → its normalised form, anything else lower case.
fn normalize(destination: &str, region: &str) -> String {
    let trimmed = destination.trim();
    if trimmed.contains('@') {
        return EmailAddress::parse(trimmed).map_or_else(|_| trimmed.to_lowercase(), |e| e.as_str().to_owned());
    }
    let digits = trimmed.chars().filter(char::is_ascii_digit).count();
    if digits >= 5
        && trimmed.chars().all(|c| c.is_ascii_digit() || " +-().".contains(c))
        && let Ok(phone) = PhoneNumber::parse(trimmed, region)
    {
        return phone.as_str().to_owned();
    }
    trimmed.to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use leadsift_core::{Channel, DedupKey};

    fn target(source: &str, campaign: &str) -> AttributionTarget {
        AttributionTarget { source: Some(source.into()), campaign: Some(campaign.into()) }
    }

    fn attribution() -> Attribution {
        Attribution::new(
            [
                ("+7 (495) 123-45-01".to_owned(), target("yandex_direct", "fasad_msk")),
                ("Sales@Our.example".to_owned(), target("website", "contacts")),
                ("form:Calc".to_owned(), target("vk_ads", "calculator")),
            ],
            "RU",
        )
    }

    fn message(destination: &str) -> Message {
        let mut m = Message::new(Channel::Call, DedupKey::from_stored("k".into()), Utc::now());
        m.destination = Some(destination.into());
        m
    }

    #[test]
    fn destinations_match_in_any_spelling() {
        let attribution = attribution();
        for destination in ["84951234501", "+74951234501", "sales@our.example", "FORM:calc"] {
            let mut m = message(destination);
            assert!(attribution.apply(&mut m), "{destination}");
            assert!(m.utm.source.is_some() && m.utm.campaign.is_some());
        }
        let mut m = message("+74950000000");
        assert!(!attribution.apply(&mut m));
        assert!(m.utm.is_empty());
    }

    #[test]
    fn utm_tags_win_field_by_field() {
        let mut m = message("+74951234501");
        m.utm.source = Some("google".into());
        attribution().apply(&mut m);
        assert_eq!(m.utm.source.as_deref(), Some("google"));
        assert_eq!(m.utm.campaign.as_deref(), Some("fasad_msk"));
    }
}
