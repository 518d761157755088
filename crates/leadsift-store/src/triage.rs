//! Writing triage results: message, contact, lead, stage history and
//! blacklist entries, all in the caller's transaction.

use chrono::{DateTime, Utc};
use leadsift_core::{
    Channel, LeadStage, ListKind, Message, Quarantined, Route, SourceRef, StoreError, TriageWrite, Triaged,
};
use sqlx::{Any, Transaction};

use crate::rows::to_json;
use crate::{SqlStore, millis, query_error};

type Tx<'c> = Transaction<'c, Any>;

impl SqlStore {
    pub(crate) async fn record_triage_batch(
        &self,
        batch: &[Triaged],
        at: DateTime<Utc>,
    ) -> Result<Vec<TriageWrite>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(query_error("starting a triage transaction"))?;
        let mut out = Vec::with_capacity(batch.len());
        for item in batch {
            out.push(record_one(&mut tx, item, at).await?);
        }
        tx.commit().await.map_err(query_error("committing triage"))?;
        Ok(out)
    }
}

async fn record_one(tx: &mut Tx<'_>, item: &Triaged, at: DateTime<Utc>) -> Result<TriageWrite, StoreError> {
    let message = &item.message;
    let at_ms = millis(at);
    let message_id: Option<i64> = sqlx::query_scalar(
        "INSERT INTO messages (dedup_key, channel, received_at, triaged_at, sender_email, sender_phone, \
         sender_handle, sender_name, destination, subject, verdict, confidence, reasons, route, source, campaign, payload) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17) \
         ON CONFLICT (dedup_key) DO NOTHING RETURNING id",
    )
    .bind(message.dedup_key.as_str())
    .bind(message.channel.as_str())
    .bind(millis(message.received_at))
    .bind(at_ms)
    .bind(message.sender.email.as_ref().map(|e| e.as_str().to_owned()))
    .bind(message.sender.phone.as_ref().map(|p| p.as_str().to_owned()))
    .bind(message.sender.handle.as_ref().map(|h| h.as_str().to_owned()))
    .bind(message.sender.name.clone())
    .bind(message.destination.clone())
    .bind(message.subject.clone())
    .bind(item.classification.verdict.as_str())
    .bind(item.classification.confidence)
    .bind(to_json(&item.classification.reasons)?)
    .bind(to_json(&item.route)?)
    .bind(item.source.clone())
    .bind(item.campaign.clone())
    .bind(to_json(message)?)
    .fetch_optional(&mut **tx)
    .await
    .map_err(query_error("storing a message"))?;
    let Some(message_id) = message_id else {
        return Ok(TriageWrite::Duplicate);
    };

    let Route::Lead { stage, junk_reason, needs_review, review_note, blacklist_sender } = &item.route else {
        return Ok(TriageWrite::Stored { message_id, lead_id: None, lead_created: false, blacklisted: vec![] });
    };

    let contact = resolve_contact(tx, message, at_ms).await?;
    let mut lead_id = None;
    if stage.is_open()
        && let Some(contact) = contact
    {
        lead_id = attach_to_open_lead(tx, contact.id, at_ms).await?;
    }
    let lead_created = lead_id.is_none();
    let lead_id = match lead_id {
        Some(id) => id,
        None => {
            let returning = match contact {
                Some(c) if c.existed => had_real_lead(tx, c.id).await?,
                _ => false,
            };
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO leads (contact_id, stage, junk_reason, needs_review, review_note, returning_client, \
                 channel, title, verdict, confidence, reasons, source, campaign, destination, utm_source, utm_medium, \
                 utm_campaign, utm_content, utm_term, message_count, created_at, updated_at, closed_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, 1, \
                 $20, $20, $21) RETURNING id",
            )
            .bind(contact.map(|c| c.id))
            .bind(stage.as_str())
            .bind(junk_reason.map(|r| r.as_str()))
            .bind(i64::from(*needs_review))
            .bind(review_note.clone())
            .bind(i64::from(returning))
            .bind(message.channel.as_str())
            .bind(lead_title(message))
            .bind(item.classification.verdict.as_str())
            .bind(item.classification.confidence)
            .bind(to_json(&item.classification.reasons)?)
            .bind(item.source.clone())
            .bind(item.campaign.clone())
            .bind(message.destination.clone())
            .bind(message.utm.source.clone())
            .bind(message.utm.medium.clone())
            .bind(message.utm.campaign.clone())
            .bind(message.utm.content.clone())
            .bind(message.utm.term.clone())
            .bind(at_ms)
            .bind((!stage.is_open()).then_some(at_ms))
            .fetch_one(&mut **tx)
            .await
            .map_err(query_error("creating a lead"))?;
            let why = format!(
                "triage: {} ({:.2}){}",
                item.classification.verdict,
                item.classification.confidence,
                rule_summary(&item.classification.reasons)
            );
            sqlx::query(
                "INSERT INTO lead_stage_changes (lead_id, from_stage, to_stage, junk_reason, actor, reason, at) \
                 VALUES ($1, NULL, $2, $3, 'triage', $4, $5)",
            )
            .bind(id)
            .bind(stage.as_str())
            .bind(junk_reason.map(|r| r.as_str()))
            .bind(why)
            .bind(at_ms)
            .execute(&mut **tx)
            .await
            .map_err(query_error("recording a stage change"))?;
            id
        }
    };

    sqlx::query("UPDATE messages SET lead_id = $1, contact_id = $2 WHERE id = $3")
        .bind(lead_id)
        .bind(contact.map(|c| c.id))
        .bind(message_id)
        .execute(&mut **tx)
        .await
        .map_err(query_error("linking a message to its lead"))?;

    let mut blacklisted = Vec::new();
    if *blacklist_sender {
        let reason = format!(
            "auto: spam verdict {:.2}{}",
            item.classification.confidence,
            rule_summary(&item.classification.reasons)
        );
        // Only the sender's own identities: never a whole (possibly free-mail) domain.
        for identity in message.sender.identities() {
            if insert_auto_blacklist(tx, &identity, &reason, at_ms).await? {
                blacklisted.push(identity);
            }
        }
    }
    Ok(TriageWrite::Stored { message_id, lead_id: Some(lead_id), lead_created, blacklisted })
}

#[derive(Debug, Clone, Copy)]
struct ContactRef {
    id: i64,
    existed: bool,
}

/// Finds the contact any of the sender's identities belongs to, or creates
/// one; links identities the contact did not have yet.
async fn resolve_contact(tx: &mut Tx<'_>, message: &Message, at_ms: i64) -> Result<Option<ContactRef>, StoreError> {
    let identities = message.sender.identities();
    if identities.is_empty() {
        return Ok(None);
    }
    let mut found: Option<i64> = None;
    let mut missing = Vec::new();
    for identity in &identities {
        let contact: Option<i64> =
            sqlx::query_scalar("SELECT contact_id FROM contact_identities WHERE kind = $1 AND value = $2")
                .bind(identity.kind().as_str())
                .bind(identity.value())
                .fetch_optional(&mut **tx)
                .await
                .map_err(query_error("looking up a contact"))?;
        match contact {
            Some(id) => found = Some(found.map_or(id, |f: i64| f.min(id))),
            None => missing.push(identity),
        }
    }
    let contact = match found {
        Some(id) => ContactRef { id, existed: true },
        None => {
            let id: i64 =
                sqlx::query_scalar("INSERT INTO contacts (display_name, created_at) VALUES ($1, $2) RETURNING id")
                    .bind(message.sender.name.clone())
                    .bind(at_ms)
                    .fetch_one(&mut **tx)
                    .await
                    .map_err(query_error("creating a contact"))?;
            ContactRef { id, existed: false }
        }
    };
    for identity in missing {
        sqlx::query(
            "INSERT INTO contact_identities (kind, value, contact_id, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (kind, value) DO NOTHING",
        )
        .bind(identity.kind().as_str())
        .bind(identity.value())
        .bind(contact.id)
        .bind(at_ms)
        .execute(&mut **tx)
        .await
        .map_err(query_error("linking an identity to a contact"))?;
    }
    Ok(Some(contact))
}

/// Attaches a repeat inquiry to the contact's newest open lead, if any.
async fn attach_to_open_lead(tx: &mut Tx<'_>, contact_id: i64, at_ms: i64) -> Result<Option<i64>, StoreError> {
    let open: Option<i64> = sqlx::query_scalar(
        "SELECT id FROM leads WHERE contact_id = $1 AND stage IN ($2, $3, $4) ORDER BY id DESC LIMIT 1",
    )
    .bind(contact_id)
    .bind(LeadStage::OPEN[0].as_str())
    .bind(LeadStage::OPEN[1].as_str())
    .bind(LeadStage::OPEN[2].as_str())
    .fetch_optional(&mut **tx)
    .await
    .map_err(query_error("finding an open lead"))?;
    if let Some(id) = open {
        sqlx::query("UPDATE leads SET message_count = message_count + 1, updated_at = $1 WHERE id = $2")
            .bind(at_ms)
            .bind(id)
            .execute(&mut **tx)
            .await
            .map_err(query_error("attaching a message to its lead"))?;
    }
    Ok(open)
}

/// A client is returning when they had a lead before that was not junk.
async fn had_real_lead(tx: &mut Tx<'_>, contact_id: i64) -> Result<bool, StoreError> {
    let found: Option<i64> = sqlx::query_scalar("SELECT id FROM leads WHERE contact_id = $1 AND stage <> $2 LIMIT 1")
        .bind(contact_id)
        .bind(LeadStage::Junk.as_str())
        .fetch_optional(&mut **tx)
        .await
        .map_err(query_error("checking a contact's history"))?;
    Ok(found.is_some())
}

async fn insert_auto_blacklist(
    tx: &mut Tx<'_>,
    identity: &SourceRef,
    reason: &str,
    at_ms: i64,
) -> Result<bool, StoreError> {
    let list = ListKind::Blacklist.as_str();
    let id: Option<i64> = sqlx::query_scalar(
        "INSERT INTO list_entries (list, kind, value, reason, origin, created_by, created_at) \
         VALUES ($1, $2, $3, $4, 'auto', 'triage', $5) \
         ON CONFLICT (list, kind, value) WHERE removed_at IS NULL DO NOTHING RETURNING id",
    )
    .bind(list)
    .bind(identity.kind().as_str())
    .bind(identity.value())
    .bind(reason)
    .bind(at_ms)
    .fetch_optional(&mut **tx)
    .await
    .map_err(query_error("auto-blacklisting a sender"))?;
    let Some(id) = id else { return Ok(false) };
    crate::lists::insert_audit(tx, id, ListKind::Blacklist, identity, "added", "triage", reason, at_ms).await?;
    Ok(true)
}

pub(crate) async fn insert_quarantine(tx: &mut Tx<'_>, record: &Quarantined) -> Result<i64, StoreError> {
    sqlx::query_scalar(
        "INSERT INTO quarantine (origin, channel, error, raw, at) VALUES ($1, $2, $3, $4, $5) RETURNING id",
    )
    .bind(record.origin.clone())
    .bind(record.channel.map(|c| c.as_str()))
    .bind(record.error.clone())
    .bind(record.raw.clone())
    .bind(millis(record.at))
    .fetch_one(&mut **tx)
    .await
    .map_err(query_error("quarantining input"))
}

/// ` [RULE_A, RULE_B]`, or empty when no rule contributed.
fn rule_summary(reasons: &[leadsift_core::Reason]) -> String {
    let ids: Vec<&str> = reasons.iter().take(5).map(|r| r.rule.as_str()).collect();
    if ids.is_empty() { String::new() } else { format!(" [{}]", ids.join(", ")) }
}

/// A short board title: what and from whom.
pub(crate) fn lead_title(message: &Message) -> String {
    let who = message.sender.label();
    let what = message.subject.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).or_else(|| {
        let text = message.text.split_whitespace().collect::<Vec<_>>().join(" ");
        (!text.is_empty()).then(|| text.chars().take(80).collect())
    });
    match (message.channel, message.call, what) {
        (Channel::Call, Some(call), _) if !call.answered => format!("Missed call from {who}: call back"),
        (Channel::Call, _, None) => format!("Call from {who}"),
        (_, _, Some(what)) => format!("{who}: {what}"),
        (channel, _, None) => format!("{channel} from {who}"),
    }
}
