//! Writing triage results: messages, contacts, leads, stage history and
//! blacklist entries for a batch, all in one transaction.
//!
//! The batch is planned in memory first (which contact each message
//! belongs to, which lead it opens or joins, in message order) and then
//! written with a handful of multi-row statements, so a batch of 256
//! messages costs about ten round trips instead of a thousand. Row ids are
//! allocated up front (sequence on PostgreSQL, under the write lock on
//! SQLite), so no multi-row insert has to rely on the order of RETURNING.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use leadsift_core::{
    Channel, IdentityKind, LeadStage, ListKind, Message, Quarantined, Route, SourceRef, StoreError, TriageWrite,
    Triaged,
};
use sqlx::{Any, Transaction};

use crate::rows::{col, parsed, to_json};
use crate::{Backend, SqlStore, millis, query_error};

type Tx<'c> = Transaction<'c, Any>;

// Chunk sizes. Every statement is a round trip inside the transaction (sqlx
// does not pipeline), and while the transaction waits for the triage process
// it holds its senders' locks.

/// Rows per multi-row insert (at most 24 parameters each). 1,000-row inserts
/// saved round trips but PostgreSQL spent longer planning each one (3.6 ms)
/// than the round trips cost.
const ROWS_PER_INSERT: usize = 100;

/// Keys per `IN (...)` lookup of single values.
const KEYS_PER_LOOKUP: usize = 2000;

/// Identities per `(kind, value)` lookup. SQLite gets an OR chain, one
/// expression level per identity, and refuses trees deeper than 1,000.
pub(crate) fn identities_per_lookup(backend: Backend) -> usize {
    match backend {
        Backend::Postgres => 1000,
        Backend::Sqlite => 200,
    }
}

/// A contact known before this batch, or created by it (index into the new contacts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum ContactSlot {
    Stored(i64),
    New(usize),
}

/// A lead known before this batch, or created by it (index into the new leads).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum LeadSlot {
    Stored(i64),
    New(usize),
}

/// What a contact's leads say about the next message from them.
#[derive(Debug, Default, Clone, Copy)]
struct ContactLeads {
    /// The newest lead still being worked: a repeat inquiry joins it.
    newest_open: Option<LeadSlot>,
    /// A client is returning when they had a lead before that was not junk.
    had_real_lead: bool,
}

struct PlannedLead<'a> {
    item: &'a Triaged,
    contact: Option<ContactSlot>,
    stage: LeadStage,
    junk_reason: Option<&'static str>,
    needs_review: bool,
    review_note: Option<String>,
    returning: bool,
    message_count: i64,
}

struct PlannedMessage<'a> {
    item: &'a Triaged,
    index: usize,
    contact: Option<ContactSlot>,
    lead: Option<LeadSlot>,
    lead_created: bool,
    /// Sender identities this message puts on the blacklist.
    blacklist: Vec<SourceRef>,
}

#[derive(Default)]
struct Plan<'a> {
    new_contacts: Vec<Option<String>>,
    new_identities: Vec<(ContactSlot, SourceRef)>,
    new_leads: Vec<PlannedLead<'a>>,
    /// Extra messages joining leads stored before this batch.
    attached: HashMap<i64, i64>,
    messages: Vec<PlannedMessage<'a>>,
}

impl SqlStore {
    pub(crate) async fn record_triage_batch(
        &self,
        batch: &[Triaged],
        at: DateTime<Utc>,
    ) -> Result<Vec<TriageWrite>, StoreError> {
        let backend = self.backend;
        let at_ms = millis(at);
        let (mut tx, _write_gate) = self.begin_write().await.map_err(query_error("starting a triage transaction"))?;

        let stored = stored_keys(&mut tx, backend, batch).await?;
        let mut seen = HashSet::new();
        let fresh: Vec<(usize, &Triaged)> = batch
            .iter()
            .enumerate()
            .filter(|(_, item)| {
                let key = item.message.dedup_key.as_str();
                !stored.contains(key) && seen.insert(key)
            })
            .collect();

        let identities: Vec<SourceRef> = fresh
            .iter()
            .filter(|(_, item)| item.route.creates_lead())
            .flat_map(|(_, item)| item.message.sender.identities())
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        if backend == Backend::Postgres {
            lock_identities(&mut tx, &identities).await?;
        }
        let mut contact_of = stored_contacts(&mut tx, backend, &identities).await?;
        let known: Vec<i64> = contact_of
            .values()
            .filter_map(|slot| match slot {
                ContactSlot::Stored(id) => Some(*id),
                ContactSlot::New(_) => None,
            })
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let mut leads_of = stored_contact_leads(&mut tx, backend, &known).await?;
        let candidates: Vec<SourceRef> = fresh
            .iter()
            .filter(|(_, item)| matches!(item.route, Route::Lead { blacklist_after: Some(_), .. }))
            .flat_map(|(_, item)| item.message.sender.identities())
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        // A listed sender's history decides nothing (the entry would not be
        // added twice), and a spammer keeps sending after being listed.
        let listed = blacklisted_identities(&mut tx, backend, &candidates).await?;
        let candidates: Vec<SourceRef> = candidates.into_iter().filter(|id| !listed.contains(id)).collect();
        let mut sender_history = stored_sender_history(&mut tx, backend, &candidates).await?;

        let plan = plan_batch(&fresh, &mut contact_of, &mut leads_of, &mut sender_history, &listed);

        let contact_ids = allocate_ids(&mut tx, backend, "contacts", plan.new_contacts.len()).await?;
        let lead_ids = allocate_ids(&mut tx, backend, "leads", plan.new_leads.len()).await?;
        let message_ids = allocate_ids(&mut tx, backend, "messages", plan.messages.len()).await?;
        let contact_id = |slot: ContactSlot| match slot {
            ContactSlot::Stored(id) => id,
            ContactSlot::New(i) => contact_ids[i],
        };
        let lead_id = |slot: LeadSlot| match slot {
            LeadSlot::Stored(id) => id,
            LeadSlot::New(i) => lead_ids[i],
        };

        insert_contacts(&mut tx, backend, &plan.new_contacts, &contact_ids, at_ms).await?;
        let identity_rows: Vec<(i64, &SourceRef)> =
            plan.new_identities.iter().map(|(slot, identity)| (contact_id(*slot), identity)).collect();
        insert_identities(&mut tx, backend, &identity_rows, at_ms).await?;
        let lead_contacts: Vec<Option<i64>> = plan.new_leads.iter().map(|l| l.contact.map(contact_id)).collect();
        insert_leads(&mut tx, backend, &plan.new_leads, &lead_ids, &lead_contacts, at_ms).await?;
        attach_to_leads(&mut tx, backend, &plan.attached, at_ms).await?;
        let message_rows: Vec<MessageRow<'_>> = plan
            .messages
            .iter()
            .zip(&message_ids)
            .map(|(m, id)| MessageRow {
                id: *id,
                item: m.item,
                lead_id: m.lead.map(lead_id),
                contact_id: m.contact.map(contact_id),
            })
            .collect();
        insert_messages(&mut tx, backend, &message_rows, at_ms).await?;

        // Only the sender's own identities: never a whole (possibly free-mail)
        // domain. The first message of the batch that earns an entry adds it.
        let mut proposed = HashSet::new();
        let mut entries: Vec<(usize, &SourceRef, String)> = Vec::new();
        for (position, planned) in plan.messages.iter().enumerate() {
            if planned.blacklist.is_empty() {
                continue;
            }
            let classification = &planned.item.classification;
            let reason = format!(
                "auto: repeated spam, last verdict {:.2}{}",
                classification.confidence,
                rule_summary(&classification.reasons)
            );
            for identity in &planned.blacklist {
                if proposed.insert(identity) {
                    entries.push((position, identity, reason.clone()));
                }
            }
        }
        let mut blacklisted_by: Vec<Vec<SourceRef>> = vec![Vec::new(); plan.messages.len()];
        for (position, identity) in insert_auto_blacklist(&mut tx, backend, &entries, at_ms).await? {
            blacklisted_by[position].push(identity);
        }

        let mut writes = vec![TriageWrite::Duplicate; batch.len()];
        for ((planned, message_id), blacklisted) in plan.messages.iter().zip(&message_ids).zip(blacklisted_by) {
            writes[planned.index] = TriageWrite::Stored {
                message_id: *message_id,
                lead_id: planned.lead.map(lead_id),
                lead_created: planned.lead_created,
                blacklisted,
            };
        }
        tx.commit().await.map_err(query_error("committing triage"))?;
        Ok(writes)
    }
}

/// Decides, in message order, which contact each message belongs to and
/// which lead it opens or joins. Pure: no I/O.
fn plan_batch<'a>(
    fresh: &[(usize, &'a Triaged)],
    contact_of: &mut HashMap<SourceRef, ContactSlot>,
    leads_of: &mut HashMap<ContactSlot, ContactLeads>,
    sender_history: &mut HashMap<SourceRef, SenderHistory>,
    listed: &HashSet<SourceRef>,
) -> Plan<'a> {
    let mut plan = Plan::default();
    for &(index, item) in fresh {
        let mut planned =
            PlannedMessage { item, index, contact: None, lead: None, lead_created: false, blacklist: Vec::new() };
        if let Route::Lead { blacklist_after: Some(after), .. } = &item.route {
            // Stored messages and the earlier ones of this batch decide.
            for identity in item.message.sender.identities().into_iter().filter(|id| !listed.contains(id)) {
                let history = sender_history.get(&identity).copied().unwrap_or_default();
                if history.other == 0 && history.spam + 1 >= i64::from(*after) {
                    planned.blacklist.push(identity);
                }
            }
        }
        for identity in item.message.sender.identities() {
            let history = sender_history.entry(identity).or_default();
            if item.classification.verdict == leadsift_core::Verdict::Spam {
                history.spam += 1;
            } else {
                history.other += 1;
            }
        }
        if let Route::Lead { stage, junk_reason, needs_review, review_note, .. } = &item.route {
            let identities = item.message.sender.identities();
            let contact = if identities.is_empty() {
                None
            } else {
                // Identities of two contacts: the oldest stored contact wins.
                let slot =
                    identities.iter().filter_map(|id| contact_of.get(id).copied()).min_by_key(|slot| match slot {
                        ContactSlot::Stored(id) => (0, *id),
                        ContactSlot::New(i) => (1, *i as i64),
                    });
                let slot = slot.unwrap_or_else(|| {
                    plan.new_contacts.push(item.message.sender.name.clone());
                    ContactSlot::New(plan.new_contacts.len() - 1)
                });
                for identity in identities {
                    if !contact_of.contains_key(&identity) {
                        contact_of.insert(identity.clone(), slot);
                        plan.new_identities.push((slot, identity));
                    }
                }
                Some(slot)
            };
            let mut history = contact.and_then(|c| leads_of.get(&c).copied()).unwrap_or_default();
            let open = if stage.is_open() { history.newest_open } else { None };
            let lead = match open {
                Some(slot) => {
                    match slot {
                        LeadSlot::Stored(id) => *plan.attached.entry(id).or_default() += 1,
                        LeadSlot::New(i) => plan.new_leads[i].message_count += 1,
                    }
                    slot
                }
                None => {
                    plan.new_leads.push(PlannedLead {
                        item,
                        contact,
                        stage: *stage,
                        junk_reason: junk_reason.map(|r| r.as_str()),
                        needs_review: *needs_review,
                        review_note: review_note.clone(),
                        returning: history.had_real_lead,
                        message_count: 1,
                    });
                    planned.lead_created = true;
                    let slot = LeadSlot::New(plan.new_leads.len() - 1);
                    if stage.is_open() {
                        history.newest_open = Some(slot);
                    }
                    history.had_real_lead |= *stage != LeadStage::Junk;
                    slot
                }
            };
            if let Some(contact) = contact {
                leads_of.insert(contact, history);
            }
            planned.contact = contact;
            planned.lead = Some(lead);
        }
        plan.messages.push(planned);
    }
    plan
}

/// Serialises concurrent batches that touch the same sender, so two workers
/// cannot both create a contact or an open lead for them. Transaction-scoped
/// advisory locks, taken in key order (no deadlocks), released at commit.
/// SQLite needs none: it has one writer.
async fn lock_identities(tx: &mut Tx<'_>, identities: &[SourceRef]) -> Result<(), StoreError> {
    let mut keys: Vec<i64> = identities.iter().map(|id| advisory_key(id.kind().as_str(), id.value())).collect();
    keys.sort_unstable();
    keys.dedup();
    for chunk in keys.chunks(KEYS_PER_LOOKUP) {
        let values: Vec<String> = (1..=chunk.len()).map(|i| format!("(${i})")).collect();
        let sql = format!("SELECT pg_advisory_xact_lock(v.k) FROM (VALUES {}) AS v(k) ORDER BY v.k", values.join(", "));
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for key in chunk {
            query = query.bind(*key);
        }
        query.execute(&mut **tx).await.map_err(query_error("locking senders"))?;
    }
    Ok(())
}

/// FNV-1a: a hash that is the same in every process and every build.
fn advisory_key(kind: &str, value: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in kind.bytes().chain([b':']).chain(value.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash as i64
}

/// Dedup keys of the batch that are already stored.
async fn stored_keys(tx: &mut Tx<'_>, backend: Backend, batch: &[Triaged]) -> Result<HashSet<String>, StoreError> {
    let mut stored = HashSet::new();
    for chunk in batch.chunks(KEYS_PER_LOOKUP) {
        let sql =
            format!("SELECT dedup_key FROM messages WHERE dedup_key IN ({})", backend.placeholders(1, chunk.len()));
        let mut query = sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql));
        for item in chunk {
            query = query.bind(item.message.dedup_key.as_str());
        }
        stored.extend(query.fetch_all(&mut **tx).await.map_err(query_error("checking for stored messages"))?);
    }
    Ok(stored)
}

/// The contact each already-linked identity belongs to.
async fn stored_contacts(
    tx: &mut Tx<'_>,
    backend: Backend,
    identities: &[SourceRef],
) -> Result<HashMap<SourceRef, ContactSlot>, StoreError> {
    let mut found = HashMap::new();
    for chunk in identities.chunks(identities_per_lookup(backend)) {
        let sql = format!(
            "SELECT kind, value, contact_id FROM contact_identities WHERE {}",
            identities_match(backend, chunk.len())
        );
        // Planned per call on PostgreSQL: a cached generic plan from when the table was small scans it whole.
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).persistent(backend == Backend::Sqlite);
        for identity in chunk {
            query = query.bind(identity.kind().as_str()).bind(identity.value());
        }
        let index = by_kind_and_value(chunk);
        for row in query.fetch_all(&mut **tx).await.map_err(query_error("looking up contacts"))? {
            let kind: String = col(&row, "kind")?;
            let value: String = col(&row, "value")?;
            if let Some(identity) = index.get(&(kind.as_str(), value.as_str())) {
                found.insert((*identity).clone(), ContactSlot::Stored(col(&row, "contact_id")?));
            }
        }
    }
    Ok(found)
}

/// The identities of a lookup chunk by `(kind, value)`, to find the one a
/// returned row names: scanning the chunk for every row was a million
/// string comparisons per 1,000-sender batch.
fn by_kind_and_value(chunk: &[SourceRef]) -> HashMap<(&'static str, &str), &SourceRef> {
    chunk.iter().map(|identity| ((identity.kind().as_str(), identity.value()), identity)).collect()
}

/// `(kind, value)` is one of `count` identities bound as parameters from `$1`.
/// PostgreSQL joins a VALUES list against the index; an OR chain can be tested row by row.
fn identities_match(backend: Backend, count: usize) -> String {
    match backend {
        Backend::Postgres => format!(
            "(kind, value) IN (VALUES {})",
            (0..count).map(|i| format!("({})", backend.placeholders(2 * i + 1, 2))).collect::<Vec<_>>().join(", ")
        ),
        Backend::Sqlite => vec!["(kind = ? AND value = ?)"; count].join(" OR "),
    }
}

/// Identities with a blacklist entry not removed (expired or not): the ones
/// an auto-blacklist insert would leave alone.
async fn blacklisted_identities(
    tx: &mut Tx<'_>,
    backend: Backend,
    identities: &[SourceRef],
) -> Result<HashSet<SourceRef>, StoreError> {
    let mut found = HashSet::new();
    for chunk in identities.chunks(identities_per_lookup(backend)) {
        // The list is checked here, not in SQL: with `list = ...` in the query
        // PostgreSQL walked the (list, kind, value) index for every key (120 ms a
        // batch at 5,000 entries) instead of probing (kind, value).
        let sql = format!(
            "SELECT list, kind, value FROM list_entries WHERE removed_at IS NULL AND {}",
            identities_match(backend, chunk.len())
        );
        // Planned per call on PostgreSQL, like the other list lookups.
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).persistent(backend == Backend::Sqlite);
        for identity in chunk {
            query = query.bind(identity.kind().as_str()).bind(identity.value());
        }
        let index = by_kind_and_value(chunk);
        for row in query.fetch_all(&mut **tx).await.map_err(query_error("looking up listed senders"))? {
            if parsed::<ListKind>(&row, "list")? != ListKind::Blacklist {
                continue;
            }
            let kind: String = col(&row, "kind")?;
            let value: String = col(&row, "value")?;
            if let Some(identity) = index.get(&(kind.as_str(), value.as_str())) {
                found.insert((*identity).clone());
            }
        }
    }
    Ok(found)
}

/// How many stored messages from one identity were spam, and how many anything else.
#[derive(Debug, Default, Clone, Copy)]
struct SenderHistory {
    spam: i64,
    other: i64,
}

/// Verdict history of each identity (blacklisting candidates only).
async fn stored_sender_history(
    tx: &mut Tx<'_>,
    backend: Backend,
    identities: &[SourceRef],
) -> Result<HashMap<SourceRef, SenderHistory>, StoreError> {
    // One grouped query per identity kind and chunk (a query per sender was
    // hundreds of round trips per batch); senders with no messages count zero.
    let mut found: HashMap<SourceRef, SenderHistory> = identities
        .iter()
        .filter(|id| id.kind() != IdentityKind::Domain)
        .map(|id| (id.clone(), SenderHistory { spam: 0, other: 0 }))
        .collect();
    for (kind, column) in [
        (IdentityKind::Email, "sender_email"),
        (IdentityKind::Phone, "sender_phone"),
        (IdentityKind::Handle, "sender_handle"),
    ] {
        let of_kind: Vec<&SourceRef> = identities.iter().filter(|id| id.kind() == kind).collect();
        for chunk in of_kind.chunks(KEYS_PER_LOOKUP) {
            let sql = format!(
                "SELECT {column} AS sender, \
                 CAST(COALESCE(SUM(CASE WHEN verdict = 'spam' THEN 1 ELSE 0 END), 0) AS BIGINT) AS spam, \
                 CAST(COALESCE(SUM(CASE WHEN verdict <> 'spam' THEN 1 ELSE 0 END), 0) AS BIGINT) AS other \
                 FROM messages WHERE {column} IN ({}) GROUP BY {column}",
                backend.placeholders(1, chunk.len())
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).persistent(backend == Backend::Sqlite);
            for identity in chunk {
                query = query.bind(identity.value());
            }
            let index: HashMap<&str, &SourceRef> = chunk.iter().map(|id| (id.value(), *id)).collect();
            for row in query.fetch_all(&mut **tx).await.map_err(query_error("reading senders' history"))? {
                let sender: String = col(&row, "sender")?;
                if let Some(identity) = index.get(sender.as_str()) {
                    found.insert(
                        (*identity).clone(),
                        SenderHistory { spam: col(&row, "spam")?, other: col(&row, "other")? },
                    );
                }
            }
        }
    }
    Ok(found)
}

/// Open lead and history of each stored contact.
async fn stored_contact_leads(
    tx: &mut Tx<'_>,
    backend: Backend,
    contacts: &[i64],
) -> Result<HashMap<ContactSlot, ContactLeads>, StoreError> {
    // Junk leads decide nothing (not open, not a real lead), and a spammer
    // collects one per message: naming the other stages lets the
    // (contact_id, stage) index skip them instead of reading each row.
    let stages: Vec<LeadStage> = LeadStage::ALL.into_iter().filter(|s| *s != LeadStage::Junk).collect();
    let mut found: HashMap<ContactSlot, ContactLeads> = HashMap::new();
    for chunk in contacts.chunks(KEYS_PER_LOOKUP) {
        let sql = format!(
            "SELECT id, contact_id, stage FROM leads WHERE contact_id IN ({}) AND stage IN ({}) ORDER BY id DESC",
            backend.placeholders(1, chunk.len()),
            backend.placeholders(chunk.len() + 1, stages.len())
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).persistent(backend == Backend::Sqlite);
        for id in chunk {
            query = query.bind(*id);
        }
        for stage in &stages {
            query = query.bind(stage.as_str());
        }
        for row in query.fetch_all(&mut **tx).await.map_err(query_error("reading contacts' leads"))? {
            let stage: LeadStage = parsed(&row, "stage")?;
            let entry = found.entry(ContactSlot::Stored(col(&row, "contact_id")?)).or_default();
            if entry.newest_open.is_none() && stage.is_open() {
                entry.newest_open = Some(LeadSlot::Stored(col(&row, "id")?));
            }
            entry.had_real_lead |= stage != LeadStage::Junk;
        }
    }
    Ok(found)
}

/// Reserves `count` ids of `table`. PostgreSQL draws them from the table's
/// sequence; on SQLite the caller holds the write lock (`BEGIN IMMEDIATE`),
/// so the next ids after the largest ever used are ours.
async fn allocate_ids(
    tx: &mut Tx<'_>,
    backend: Backend,
    table: &'static str,
    count: usize,
) -> Result<Vec<i64>, StoreError> {
    if count == 0 {
        return Ok(Vec::new());
    }
    match backend {
        Backend::Postgres => {
            // The sequence is looked up once (OFFSET 0 keeps the subquery from
            // being flattened): resolving its name for every id was 5 % of
            // PostgreSQL's CPU in the pipeline benchmark.
            let sql = format!(
                "SELECT nextval(s.seq) AS id \
                 FROM (SELECT CAST(pg_get_serial_sequence('{table}', 'id') AS regclass) AS seq OFFSET 0) AS s \
                 CROSS JOIN generate_series(1, CAST($1 AS BIGINT))"
            );
            let mut ids: Vec<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .bind(count as i64)
                .fetch_all(&mut **tx)
                .await
                .map_err(query_error("allocating ids"))?;
            ids.sort_unstable();
            Ok(ids)
        }
        Backend::Sqlite => {
            let sql = format!(
                "SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = '{table}'), 0), \
                 COALESCE((SELECT MAX(id) FROM {table}), 0))"
            );
            let last: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .fetch_one(&mut **tx)
                .await
                .map_err(query_error("allocating ids"))?;
            Ok((1..=count as i64).map(|i| last + i).collect())
        }
    }
}

async fn insert_contacts(
    tx: &mut Tx<'_>,
    backend: Backend,
    names: &[Option<String>],
    ids: &[i64],
    at_ms: i64,
) -> Result<(), StoreError> {
    let rows: Vec<(i64, &Option<String>)> = ids.iter().copied().zip(names).collect();
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let values: Vec<String> =
            (0..chunk.len()).map(|i| format!("({})", backend.placeholders(3 * i + 1, 3))).collect();
        let sql = format!("INSERT INTO contacts (id, display_name, created_at) VALUES {}", values.join(", "));
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (id, name) in chunk {
            query = query.bind(*id).bind((*name).clone()).bind(at_ms);
        }
        query.execute(&mut **tx).await.map_err(query_error("creating contacts"))?;
    }
    Ok(())
}

async fn insert_identities(
    tx: &mut Tx<'_>,
    backend: Backend,
    rows: &[(i64, &SourceRef)],
    at_ms: i64,
) -> Result<(), StoreError> {
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let values: Vec<String> =
            (0..chunk.len()).map(|i| format!("({})", backend.placeholders(4 * i + 1, 4))).collect();
        let sql = format!(
            "INSERT INTO contact_identities (kind, value, contact_id, created_at) VALUES {} \
             ON CONFLICT (kind, value) DO NOTHING",
            values.join(", ")
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (contact, identity) in chunk {
            query = query.bind(identity.kind().as_str()).bind(identity.value()).bind(*contact).bind(at_ms);
        }
        query.execute(&mut **tx).await.map_err(query_error("linking identities to contacts"))?;
    }
    Ok(())
}

async fn insert_leads(
    tx: &mut Tx<'_>,
    backend: Backend,
    leads: &[PlannedLead<'_>],
    ids: &[i64],
    contact_ids: &[Option<i64>],
    at_ms: i64,
) -> Result<(), StoreError> {
    const COLUMNS: usize = 24;
    let rows: Vec<(i64, &PlannedLead<'_>)> = ids.iter().copied().zip(leads).collect();
    let contacts: Vec<(&(i64, &PlannedLead<'_>), Option<i64>)> = rows.iter().zip(contact_ids.iter().copied()).collect();
    for chunk in contacts.chunks(ROWS_PER_INSERT) {
        let values: Vec<String> =
            (0..chunk.len()).map(|i| format!("({})", backend.placeholders(COLUMNS * i + 1, COLUMNS))).collect();
        let sql = format!(
            "INSERT INTO leads (id, contact_id, stage, junk_reason, needs_review, review_note, returning_client, \
             channel, title, verdict, confidence, reasons, source, campaign, destination, utm_source, utm_medium, \
             utm_campaign, utm_content, utm_term, message_count, created_at, updated_at, closed_at) VALUES {}",
            values.join(", ")
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for ((id, lead), contact) in chunk {
            let (item, message) = (lead.item, &lead.item.message);
            query = query
                .bind(*id)
                .bind(*contact)
                .bind(lead.stage.as_str())
                .bind(lead.junk_reason)
                .bind(i64::from(lead.needs_review))
                .bind(lead.review_note.clone())
                .bind(i64::from(lead.returning))
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
                .bind(lead.message_count)
                .bind(at_ms)
                .bind(at_ms)
                .bind((!lead.stage.is_open()).then_some(at_ms));
        }
        query.execute(&mut **tx).await.map_err(query_error("creating leads"))?;
    }
    insert_stage_changes(tx, backend, &rows, at_ms).await
}

/// The first stage-history row of each new lead.
async fn insert_stage_changes(
    tx: &mut Tx<'_>,
    backend: Backend,
    leads: &[(i64, &PlannedLead<'_>)],
    at_ms: i64,
) -> Result<(), StoreError> {
    const COLUMNS: usize = 5;
    for chunk in leads.chunks(ROWS_PER_INSERT) {
        let values: Vec<String> = (0..chunk.len())
            .map(|i| format!("({}, 'triage')", backend.placeholders(COLUMNS * i + 1, COLUMNS)))
            .collect();
        let sql = format!(
            "INSERT INTO lead_stage_changes (lead_id, to_stage, junk_reason, reason, at, actor) VALUES {}",
            values.join(", ")
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (id, lead) in chunk {
            let classification = &lead.item.classification;
            let reason = format!(
                "triage: {} ({:.2}){}",
                classification.verdict,
                classification.confidence,
                rule_summary(&classification.reasons)
            );
            query = query.bind(*id).bind(lead.stage.as_str()).bind(lead.junk_reason).bind(reason).bind(at_ms);
        }
        query.execute(&mut **tx).await.map_err(query_error("recording stage changes"))?;
    }
    Ok(())
}

struct MessageRow<'a> {
    id: i64,
    item: &'a Triaged,
    lead_id: Option<i64>,
    contact_id: Option<i64>,
}

async fn insert_messages(
    tx: &mut Tx<'_>,
    backend: Backend,
    rows: &[MessageRow<'_>],
    at_ms: i64,
) -> Result<(), StoreError> {
    const COLUMNS: usize = 20;
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let values: Vec<String> =
            (0..chunk.len()).map(|i| format!("({})", backend.placeholders(COLUMNS * i + 1, COLUMNS))).collect();
        let sql = format!(
            "INSERT INTO messages (id, dedup_key, channel, received_at, triaged_at, sender_email, sender_phone, \
             sender_handle, sender_name, destination, subject, verdict, confidence, reasons, route, source, campaign, \
             payload, lead_id, contact_id) VALUES {} ON CONFLICT (dedup_key) DO NOTHING",
            values.join(", ")
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for row in chunk {
            let (item, message) = (row.item, &row.item.message);
            query = query
                .bind(row.id)
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
                .bind(row.lead_id)
                .bind(row.contact_id);
        }
        let inserted = query.execute(&mut **tx).await.map_err(query_error("storing messages"))?;
        if inserted.rows_affected() != chunk.len() as u64 {
            // Another worker stored one of these after the duplicate check (a
            // redelivery racing the original): roll back; the retry sees it stored.
            return Err(StoreError::Query {
                operation: "storing messages",
                source: "a message of this batch was stored concurrently; retry".into(),
            });
        }
    }
    Ok(())
}

/// Adds the blacklist entries `(message position, identity, reason)` not
/// already listed, with their audit rows, in a statement or two per chunk
/// (one statement per sender was a round trip per spammer). Returns the
/// entries added.
async fn insert_auto_blacklist(
    tx: &mut Tx<'_>,
    backend: Backend,
    entries: &[(usize, &SourceRef, String)],
    at_ms: i64,
) -> Result<Vec<(usize, SourceRef)>, StoreError> {
    let list = ListKind::Blacklist.as_str();
    let mut added = Vec::new();
    for chunk in entries.chunks(ROWS_PER_INSERT) {
        let values: Vec<String> =
            (0..chunk.len()).map(|i| format!("({}, 'auto', 'triage')", backend.placeholders(5 * i + 1, 5))).collect();
        let sql = format!(
            "INSERT INTO list_entries (list, kind, value, reason, created_at, origin, created_by) VALUES {} \
             ON CONFLICT (list, kind, value) WHERE removed_at IS NULL DO NOTHING RETURNING id, kind, value",
            values.join(", ")
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (_, identity, reason) in chunk {
            query = query
                .bind(list)
                .bind(identity.kind().as_str())
                .bind(identity.value())
                .bind(reason.as_str())
                .bind(at_ms);
        }
        let rows = query.fetch_all(&mut **tx).await.map_err(query_error("auto-blacklisting senders"))?;
        let mut created: Vec<(i64, &(usize, &SourceRef, String))> = Vec::with_capacity(rows.len());
        for row in &rows {
            let kind: String = col(row, "kind")?;
            let value: String = col(row, "value")?;
            if let Some(entry) = chunk.iter().find(|(_, id, _)| id.kind().as_str() == kind && id.value() == value) {
                created.push((col(row, "id")?, entry));
            }
        }
        if created.is_empty() {
            continue;
        }
        // Audit rows in entry order, as one statement per entry wrote them.
        created.sort_unstable_by_key(|(id, _)| *id);
        let values: Vec<String> = (0..created.len())
            .map(|i| format!("({}, 'added', 'triage')", backend.placeholders(6 * i + 1, 6)))
            .collect();
        let sql = format!(
            "INSERT INTO list_audit (entry_id, list, kind, value, reason, at, action, actor) VALUES {}",
            values.join(", ")
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (id, (_, identity, reason)) in &created {
            query = query
                .bind(*id)
                .bind(list)
                .bind(identity.kind().as_str())
                .bind(identity.value())
                .bind(reason.as_str())
                .bind(at_ms);
        }
        query.execute(&mut **tx).await.map_err(query_error("writing the list audit trail"))?;
        added.extend(created.into_iter().map(|(_, (position, identity, _))| (*position, (*identity).clone())));
    }
    Ok(added)
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

/// Counts messages attached to existing leads. On PostgreSQL one statement
/// per chunk (a round trip per lead was a third of a batch's time).
async fn attach_to_leads(
    tx: &mut Transaction<'_, Any>,
    backend: Backend,
    attached: &HashMap<i64, i64>,
    at_ms: i64,
) -> Result<(), StoreError> {
    if backend == Backend::Sqlite {
        for (lead, extra) in attached {
            sqlx::query("UPDATE leads SET message_count = message_count + $1, updated_at = $2 WHERE id = $3")
                .bind(*extra)
                .bind(at_ms)
                .bind(*lead)
                .execute(&mut **tx)
                .await
                .map_err(query_error("attaching messages to their lead"))?;
        }
        return Ok(());
    }
    let attached: Vec<(i64, i64)> = attached.iter().map(|(lead, extra)| (*lead, *extra)).collect();
    for chunk in attached.chunks(KEYS_PER_LOOKUP) {
        let rows: Vec<String> = (0..chunk.len())
            .map(|i| format!("(CAST(${} AS BIGINT), CAST(${} AS BIGINT))", 2 * i + 2, 2 * i + 3))
            .collect();
        let sql = format!(
            "UPDATE leads AS l SET message_count = l.message_count + v.extra, updated_at = $1 \
             FROM (VALUES {}) AS v(id, extra) WHERE l.id = v.id",
            rows.join(", ")
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(at_ms);
        for (lead, extra) in chunk {
            query = query.bind(*lead).bind(*extra);
        }
        query.execute(&mut **tx).await.map_err(query_error("attaching messages to their lead"))?;
    }
    Ok(())
}
