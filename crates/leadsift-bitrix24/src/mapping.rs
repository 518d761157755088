//! Pure mapping from our leads to Bitrix24 request parameters, and from
//! Bitrix24 answers back. No I/O here.

use std::fmt::Write;

use leadsift_core::{JunkReason, Lead, LeadStage, SourceRef, Utm};
use serde_json::{Map, Value, json};

use crate::Bitrix24Error;
use crate::config::{Bitrix24Settings, DuplicateLeadPolicy};

/// `ORIGINATOR_ID` of every lead we add: with `ORIGIN_ID` = our lead id it
/// names the lead in Bitrix24, so a lost answer can be looked up.
pub const ORIGINATOR_ID: &str = "leadsift";

/// Longest `TITLE` we send, in characters.
const TITLE_CHARS: usize = 250;

/// What `crm.duplicate.findbycomm` found for a lead's phones and emails.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Duplicates {
    pub contacts: Vec<i64>,
    pub leads: Vec<i64>,
}

impl Duplicates {
    /// Adds the ids of one `crm.duplicate.findbycomm` result: an object of id
    /// arrays by entity type, or an empty array when nothing matched.
    pub fn merge(&mut self, result: &Value) -> Result<(), Bitrix24Error> {
        let bad = || Bitrix24Error::BadResponse {
            method: "crm.duplicate.findbycomm",
            detail: "result is neither an object of id lists nor an empty array".into(),
        };
        match result {
            Value::Array(items) if items.is_empty() => Ok(()),
            Value::Object(map) => {
                for (key, target) in [("CONTACT", &mut self.contacts), ("LEAD", &mut self.leads)] {
                    let Some(ids) = map.get(key) else { continue };
                    for id in ids.as_array().ok_or_else(bad)? {
                        let id = parse_id(id).ok_or_else(bad)?;
                        if !target.contains(&id) {
                            target.push(id);
                        }
                    }
                }
                Ok(())
            }
            _ => Err(bad()),
        }
    }
}

/// A Bitrix24 id, sent as a JSON number or a numeric string.
pub fn parse_id(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// The lead's phones (E.164) and emails, as Bitrix24 compares them.
pub fn communications(lead: &Lead) -> (Vec<String>, Vec<String>) {
    let mut phones = Vec::new();
    let mut emails = Vec::new();
    for identity in &lead.identities {
        match identity {
            SourceRef::Phone(phone) => phones.push(phone.as_str().to_owned()),
            SourceRef::Email(email) => emails.push(email.as_str().to_owned()),
            SourceRef::Domain(_) | SourceRef::Handle(_) => {}
        }
    }
    phones.truncate(20);
    emails.truncate(20);
    (phones, emails)
}

/// `crm.duplicate.findbycomm` parameters for one kind of communication.
pub fn findbycomm_params(kind: &str, values: &[String]) -> Value {
    json!({ "type": kind, "values": values })
}

/// `crm.lead.list` parameters finding the lead an earlier attempt may have added.
pub fn lookup_params(lead_id: i64) -> Value {
    json!({
        "filter": { "ORIGINATOR_ID": ORIGINATOR_ID, "ORIGIN_ID": lead_id.to_string() },
        "select": ["ID"],
        "order": { "ID": "ASC" },
    })
}

/// The id of the first lead in a `crm.lead.list` result.
pub fn first_listed_id(result: &Value) -> Result<Option<i64>, Bitrix24Error> {
    let items = result
        .as_array()
        .ok_or_else(|| Bitrix24Error::BadResponse { method: "crm.lead.list", detail: "result is not a list".into() })?;
    Ok(items.iter().find_map(|item| item.get("ID").and_then(parse_id)))
}

/// Everything `crm.lead.add` needs besides the settings.
#[derive(Debug, Clone, Copy)]
pub struct NewLead<'a> {
    pub lead: &'a Lead,
    /// The stage the lead was created in (its first history row).
    pub stage: LeadStage,
    pub junk_reason: Option<JunkReason>,
    pub utm: &'a Utm,
    pub contact_name: Option<&'a str>,
    pub duplicates: &'a Duplicates,
}

/// `crm.lead.add` parameters.
pub fn add_params(settings: &Bitrix24Settings, new: &NewLead<'_>) -> Value {
    let lead = new.lead;
    let mut fields = Map::new();
    let title: String = lead.title.split_whitespace().collect::<Vec<_>>().join(" ").chars().take(TITLE_CHARS).collect();
    fields.insert("TITLE".into(), json!(if title.is_empty() { format!("Лид #{}", lead.id) } else { title }));
    if let Some(name) = new.contact_name.map(str::trim).filter(|n| !n.is_empty()) {
        fields.insert("NAME".into(), json!(name));
    }
    let (phones, emails) = communications(lead);
    let multifield =
        |values: &[String]| -> Value { values.iter().map(|v| json!({ "VALUE": v, "VALUE_TYPE": "WORK" })).collect() };
    if !phones.is_empty() {
        fields.insert("PHONE".into(), multifield(&phones));
    }
    if !emails.is_empty() {
        fields.insert("EMAIL".into(), multifield(&emails));
    }
    fields.insert("SOURCE_ID".into(), json!(settings.source_id(lead.channel)));
    let description: Vec<&str> =
        [lead.source.as_deref(), lead.campaign.as_deref()].into_iter().flatten().filter(|s| !s.is_empty()).collect();
    if !description.is_empty() {
        fields.insert("SOURCE_DESCRIPTION".into(), json!(description.join(" / ")));
    }
    for (key, value) in [
        ("UTM_SOURCE", &new.utm.source),
        ("UTM_MEDIUM", &new.utm.medium),
        ("UTM_CAMPAIGN", &new.utm.campaign),
        ("UTM_CONTENT", &new.utm.content),
        ("UTM_TERM", &new.utm.term),
    ] {
        if let Some(value) = value.as_deref().filter(|v| !v.is_empty()) {
            fields.insert(key.into(), json!(value));
        }
    }
    fields.insert("STATUS_ID".into(), json!(settings.status_id(new.stage)));
    if let Some(reason) = new.junk_reason {
        fields.insert("STATUS_DESCRIPTION".into(), json!(junk_description(reason)));
    }
    if let Some(contact) = new.duplicates.contacts.iter().min() {
        fields.insert("CONTACT_ID".into(), json!(contact));
    }
    if let Some(user) = settings.assigned_by_id {
        fields.insert("ASSIGNED_BY_ID".into(), json!(user));
    }
    fields.insert("COMMENTS".into(), json!(comments(settings, new)));
    fields.insert("ORIGINATOR_ID".into(), json!(ORIGINATOR_ID));
    fields.insert("ORIGIN_ID".into(), json!(lead.id.to_string()));
    json!({ "fields": fields, "params": { "REGISTER_SONET_EVENT": "Y" } })
}

/// `crm.lead.update` parameters moving a Bitrix24 lead to `stage`.
pub fn update_params(
    settings: &Bitrix24Settings,
    bitrix_id: i64,
    stage: LeadStage,
    junk_reason: Option<JunkReason>,
) -> Value {
    let mut fields = Map::new();
    fields.insert("STATUS_ID".into(), json!(settings.status_id(stage)));
    if let Some(reason) = junk_reason {
        fields.insert("STATUS_DESCRIPTION".into(), json!(junk_description(reason)));
    }
    json!({ "id": bitrix_id, "fields": fields })
}

fn junk_description(reason: JunkReason) -> &'static str {
    match reason {
        JunkReason::Spam => "leadsift: спам",
        JunkReason::NonTarget => "leadsift: нецелевое обращение",
        JunkReason::Duplicate => "leadsift: дубль",
        JunkReason::Other => "leadsift: другое",
    }
}

/// `COMMENTS`: the verdict and its reasons, and what was found in Bitrix24.
fn comments(settings: &Bitrix24Settings, new: &NewLead<'_>) -> String {
    let lead = new.lead;
    let mut text = String::new();
    let _ = writeln!(text, "leadsift #{}: {} ({:.2})", lead.id, lead.verdict, lead.confidence);
    if lead.needs_review {
        let _ =
            writeln!(text, "Требует проверки: {}", lead.review_note.as_deref().unwrap_or("классификатор не уверен"));
    }
    if lead.returning_client {
        let _ = writeln!(text, "Повторный клиент");
    }
    if !lead.reasons.is_empty() {
        let _ = writeln!(text, "Причины:");
        for reason in &lead.reasons {
            let _ = writeln!(text, "- {}: {} ({:+.2})", reason.rule, reason.description, reason.score);
        }
    }
    if settings.duplicate_leads == DuplicateLeadPolicy::Comment && !new.duplicates.leads.is_empty() {
        let ids: Vec<String> = new.duplicates.leads.iter().map(|id| format!("#{id}")).collect();
        let _ = writeln!(text, "Ранее в Битрикс24 с этими контактами: лиды {}", ids.join(", "));
    }
    text.trim_end().to_owned()
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use leadsift_core::{Channel, EmailAddress, PhoneNumber, Reason, ReasonOrigin, Verdict};

    use super::*;

    fn lead() -> Lead {
        Lead {
            id: 42,
            stage: LeadStage::ContactClient,
            junk_reason: None,
            needs_review: false,
            review_note: None,
            contact_id: Some(3),
            returning_client: true,
            channel: Channel::Call,
            title: "Пропущенный  звонок\n+7 916 111-22-33".into(),
            verdict: Verdict::Inquiry,
            confidence: 0.91,
            reasons: vec![Reason {
                rule: "call.missed".into(),
                description: "a missed call is a lead to call back".into(),
                origin: ReasonOrigin::Rule,
                class: Some(Verdict::Inquiry),
                score: 3.0,
                decisive: true,
            }],
            source: Some("yandex_direct".into()),
            campaign: Some("fasad_msk".into()),
            destination: None,
            message_count: 1,
            created_at: Utc::now(),
            updated_at: Utc::now(),
            identities: vec![
                SourceRef::Phone(PhoneNumber::parse("+79161112233", "RU").unwrap()),
                SourceRef::Email(EmailAddress::parse("ivan@client.example").unwrap()),
            ],
        }
    }

    #[test]
    fn add_carries_contacts_source_utm_status_comments_and_our_marker() {
        let lead = lead();
        let utm = Utm { source: Some("yandex".into()), medium: Some("cpc".into()), ..Utm::default() };
        let duplicates = Duplicates { contacts: vec![77, 12], leads: vec![301] };
        let new = NewLead {
            lead: &lead,
            stage: LeadStage::ContactClient,
            junk_reason: None,
            utm: &utm,
            contact_name: Some("Иван"),
            duplicates: &duplicates,
        };
        let params = add_params(&Bitrix24Settings::default(), &new);
        let fields = &params["fields"];
        assert_eq!(fields["TITLE"], "Пропущенный звонок +7 916 111-22-33");
        assert_eq!(fields["NAME"], "Иван");
        assert_eq!(fields["PHONE"], json!([{"VALUE": "+79161112233", "VALUE_TYPE": "WORK"}]));
        assert_eq!(fields["EMAIL"], json!([{"VALUE": "ivan@client.example", "VALUE_TYPE": "WORK"}]));
        assert_eq!(fields["SOURCE_ID"], "CALL");
        assert_eq!(fields["SOURCE_DESCRIPTION"], "yandex_direct / fasad_msk");
        assert_eq!((&fields["UTM_SOURCE"], &fields["UTM_MEDIUM"]), (&json!("yandex"), &json!("cpc")));
        assert!(fields.get("UTM_TERM").is_none(), "absent tags are not sent");
        assert_eq!(fields["STATUS_ID"], "NEW");
        assert_eq!(fields["CONTACT_ID"], 12, "the oldest matching contact");
        assert_eq!((&fields["ORIGINATOR_ID"], &fields["ORIGIN_ID"]), (&json!("leadsift"), &json!("42")));
        let comments = fields["COMMENTS"].as_str().unwrap();
        for needle in ["inquiry (0.91)", "call.missed", "Повторный клиент", "#301"] {
            assert!(comments.contains(needle), "{needle} missing in {comments}");
        }
    }

    #[test]
    fn junk_goes_as_junk_and_duplicate_leads_can_be_ignored() {
        let mut lead = lead();
        lead.channel = Channel::Messenger;
        let settings: Bitrix24Settings = toml::from_str("duplicate_leads = \"ignore\"\n").unwrap();
        let duplicates = Duplicates { contacts: vec![], leads: vec![301] };
        let new = NewLead {
            lead: &lead,
            stage: LeadStage::Junk,
            junk_reason: Some(JunkReason::Spam),
            utm: &Utm::default(),
            contact_name: None,
            duplicates: &duplicates,
        };
        let params = add_params(&settings, &new);
        assert_eq!(params["fields"]["STATUS_ID"], "JUNK");
        assert_eq!(params["fields"]["SOURCE_ID"], "OTHER");
        assert!(params["fields"].get("CONTACT_ID").is_none());
        assert!(!params["fields"]["COMMENTS"].as_str().unwrap().contains("#301"));
        let update = update_params(&settings, 9, LeadStage::Junk, Some(JunkReason::NonTarget));
        assert_eq!(
            update,
            json!({"id": 9, "fields": {"STATUS_ID": "JUNK", "STATUS_DESCRIPTION": "leadsift: нецелевое обращение"}})
        );
    }

    #[test]
    fn findbycomm_results_merge_objects_and_the_empty_array() {
        let mut found = Duplicates::default();
        found.merge(&json!([])).unwrap();
        assert_eq!(found, Duplicates::default());
        found.merge(&json!({"LEAD": [5, "6"], "CONTACT": [7]})).unwrap();
        found.merge(&json!({"CONTACT": [7, 8], "COMPANY": [1]})).unwrap();
        assert_eq!(found, Duplicates { contacts: vec![7, 8], leads: vec![5, 6] });
        assert!(found.merge(&json!("nope")).is_err());
        assert_eq!(first_listed_id(&json!([{"ID": "31"}])).unwrap(), Some(31));
        assert_eq!(first_listed_id(&json!([])).unwrap(), None);
    }
}
