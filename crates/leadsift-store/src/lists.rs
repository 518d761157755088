//! Blacklist and allowlist entries, their audit trail, and sender standing.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use leadsift_core::{
    IdentityKind, ListAuditRecord, ListEntry, ListKind, NewListEntry, Sender, SenderStanding, SourceRef, StoreError,
};
use sqlx::any::AnyRow;
use sqlx::{Any, Transaction};

use crate::rows::{col, parsed};
use crate::{SqlStore, from_millis, millis, query_error};

const ENTRY_COLUMNS: &str = "id, list, kind, value, reason, origin, created_by, created_at, expires_at";

fn target_from_row(row: &AnyRow) -> Result<SourceRef, StoreError> {
    let kind: IdentityKind = parsed(row, "kind")?;
    let value: String = col(row, "value")?;
    SourceRef::parse(kind, &value, "ZZ")
        .map_err(|e| StoreError::Corrupt { what: "list entry value", detail: e.to_string() })
}

fn entry_from_row(row: &AnyRow) -> Result<ListEntry, StoreError> {
    Ok(ListEntry {
        id: col(row, "id")?,
        list: parsed(row, "list")?,
        target: target_from_row(row)?,
        reason: col(row, "reason")?,
        origin: parsed(row, "origin")?,
        created_by: col(row, "created_by")?,
        created_at: from_millis(col(row, "created_at")?),
        expires_at: col::<Option<i64>>(row, "expires_at")?.map(from_millis),
    })
}

#[allow(clippy::too_many_arguments)]
pub(crate) async fn insert_audit(
    tx: &mut Transaction<'_, Any>,
    entry_id: i64,
    list: ListKind,
    target: &SourceRef,
    action: &str,
    actor: &str,
    reason: &str,
    at_ms: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO list_audit (entry_id, list, kind, value, action, actor, reason, at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(entry_id)
    .bind(list.as_str())
    .bind(target.kind().as_str())
    .bind(target.value())
    .bind(action)
    .bind(actor)
    .bind(reason)
    .bind(at_ms)
    .execute(&mut **tx)
    .await
    .map_err(query_error("writing the list audit trail"))?;
    Ok(())
}

/// Every key a sender can be listed under: identities, the email domain and its parents.
fn lookup_keys(sender: &Sender) -> Vec<(IdentityKind, String)> {
    let mut keys: Vec<(IdentityKind, String)> =
        sender.identities().iter().map(|id| (id.kind(), id.value().to_owned())).collect();
    if let Some(email) = &sender.email {
        let domain = email.domain();
        let labels: Vec<&str> = domain.as_str().split('.').collect();
        for start in 0..labels.len().saturating_sub(1) {
            keys.push((IdentityKind::Domain, labels[start..].join(".")));
        }
    }
    keys
}

fn entry_matches(entry: &ListEntry, sender: &Sender) -> bool {
    match &entry.target {
        SourceRef::Domain(domain) => sender.email.as_ref().is_some_and(|email| email.domain().is_within(domain)),
        other => sender.identities().contains(other),
    }
}

/// Most specific entry first: an address beats a domain.
fn specificity(entry: &ListEntry) -> u8 {
    match entry.target.kind() {
        IdentityKind::Email | IdentityKind::Phone | IdentityKind::Handle => 0,
        IdentityKind::Domain => 1,
    }
}

impl SqlStore {
    pub(crate) async fn query_standings(
        &self,
        senders: &[Sender],
        at: DateTime<Utc>,
    ) -> Result<Vec<SenderStanding>, StoreError> {
        let keys: HashSet<(IdentityKind, String)> = senders.iter().flat_map(lookup_keys).collect();
        if keys.is_empty() {
            return Ok(vec![SenderStanding::default(); senders.len()]);
        }
        let keys: Vec<(IdentityKind, String)> = keys.into_iter().collect();
        let mut entries = Vec::new();
        for chunk in keys.chunks(crate::triage::identities_per_lookup(self.backend)) {
            let pairs = (0..chunk.len()).map(|i| (2 * i + 2, 2 * i + 3));
            // PostgreSQL joins a VALUES list (hash or index); with a chain of ORs
            // it tested every key against every entry (40 ms a batch at 4,000 entries).
            let matching = match self.backend {
                crate::Backend::Postgres => format!(
                    "(kind, value) IN (VALUES {})",
                    pairs.map(|(k, v)| format!("(${k}, ${v})")).collect::<Vec<_>>().join(", ")
                ),
                crate::Backend::Sqlite => {
                    pairs.map(|(k, v)| format!("(kind = ${k} AND value = ${v})")).collect::<Vec<_>>().join(" OR ")
                }
            };
            let sql = format!(
                "SELECT {ENTRY_COLUMNS} FROM list_entries WHERE removed_at IS NULL \
                 AND (expires_at IS NULL OR expires_at > $1) AND ({matching})"
            );
            // Not a cached prepared statement on PostgreSQL: a generic plan made
            // while the table was small scans every entry once per key (150 ms a
            // batch at 4,000 entries); planning each time uses the index.
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
                .persistent(self.backend == crate::Backend::Sqlite)
                .bind(millis(at));
            for (kind, value) in chunk {
                query = query.bind(kind.as_str()).bind(value.clone());
            }
            for row in query.fetch_all(&self.pool).await.map_err(query_error("looking up list standing"))? {
                entries.push(entry_from_row(&row)?);
            }
        }
        entries.sort_by_key(|e| (specificity(e), e.id));
        // Exact identities through a map, domains (few) by scan: testing every
        // entry against every sender of a 1,000-message batch was quadratic.
        let mut exact: HashMap<(ListKind, &SourceRef), &ListEntry> = HashMap::new();
        let mut domains: Vec<&ListEntry> = Vec::new();
        for entry in &entries {
            match entry.target {
                SourceRef::Domain(_) => domains.push(entry),
                _ => {
                    exact.entry((entry.list, &entry.target)).or_insert(entry);
                }
            }
        }
        Ok(senders
            .iter()
            .map(|sender| {
                let identities = sender.identities();
                let find = |list: ListKind| {
                    identities
                        .iter()
                        .filter_map(|identity| exact.get(&(list, identity)).copied())
                        .min_by_key(|e| e.id)
                        .or_else(|| domains.iter().copied().find(|e| e.list == list && entry_matches(e, sender)))
                        .cloned()
                };
                SenderStanding { blocked: find(ListKind::Blacklist), allowed: find(ListKind::Allowlist) }
            })
            .collect())
    }

    pub(crate) async fn insert_list_entry(
        &self,
        entry: &NewListEntry,
        at: DateTime<Utc>,
    ) -> Result<ListEntry, StoreError> {
        let at_ms = millis(at);
        let (mut tx, _write_gate) = self.begin_write().await.map_err(query_error("adding a list entry"))?;
        // An expired entry no longer counts: retire it so the new one can take its place.
        let expired: Vec<i64> = sqlx::query_scalar(
            "UPDATE list_entries SET removed_at = $1, removed_by = 'expiry', removed_reason = 'expired' \
             WHERE list = $2 AND kind = $3 AND value = $4 AND removed_at IS NULL AND expires_at IS NOT NULL \
             AND expires_at <= $1 RETURNING id",
        )
        .bind(at_ms)
        .bind(entry.list.as_str())
        .bind(entry.target.kind().as_str())
        .bind(entry.target.value())
        .fetch_all(&mut *tx)
        .await
        .map_err(query_error("retiring expired list entries"))?;
        for id in expired {
            insert_audit(&mut tx, id, entry.list, &entry.target, "expired", "expiry", "expired", at_ms).await?;
        }
        let id: Option<i64> = sqlx::query_scalar(
            "INSERT INTO list_entries (list, kind, value, reason, origin, created_by, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (list, kind, value) WHERE removed_at IS NULL DO NOTHING RETURNING id",
        )
        .bind(entry.list.as_str())
        .bind(entry.target.kind().as_str())
        .bind(entry.target.value())
        .bind(entry.reason.clone())
        .bind(entry.origin.as_str())
        .bind(entry.actor.clone())
        .bind(at_ms)
        .bind(entry.expires_at.map(millis))
        .fetch_optional(&mut *tx)
        .await
        .map_err(query_error("adding a list entry"))?;
        if let Some(id) = id {
            insert_audit(&mut tx, id, entry.list, &entry.target, "added", &entry.actor, &entry.reason, at_ms).await?;
        }
        let sql = format!(
            "SELECT {ENTRY_COLUMNS} FROM list_entries WHERE list = $1 AND kind = $2 AND value = $3 AND removed_at IS NULL"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(entry.list.as_str())
            .bind(entry.target.kind().as_str())
            .bind(entry.target.value())
            .fetch_one(&mut *tx)
            .await
            .map_err(query_error("reading a list entry"))?;
        let stored = entry_from_row(&row)?;
        tx.commit().await.map_err(query_error("adding a list entry"))?;
        Ok(stored)
    }

    pub(crate) async fn retire_list_entry(
        &self,
        list: ListKind,
        target: &SourceRef,
        actor: &str,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let at_ms = millis(at);
        let (mut tx, _write_gate) = self.begin_write().await.map_err(query_error("removing a list entry"))?;
        let removed: Vec<i64> = sqlx::query_scalar(
            "UPDATE list_entries SET removed_at = $1, removed_by = $2, removed_reason = $3 \
             WHERE list = $4 AND kind = $5 AND value = $6 AND removed_at IS NULL RETURNING id",
        )
        .bind(at_ms)
        .bind(actor)
        .bind(reason)
        .bind(list.as_str())
        .bind(target.kind().as_str())
        .bind(target.value())
        .fetch_all(&mut *tx)
        .await
        .map_err(query_error("removing a list entry"))?;
        for id in &removed {
            insert_audit(&mut tx, *id, list, target, "removed", actor, reason, at_ms).await?;
        }
        tx.commit().await.map_err(query_error("removing a list entry"))?;
        Ok(!removed.is_empty())
    }

    pub(crate) async fn query_list_entries(
        &self,
        list: ListKind,
        at: DateTime<Utc>,
    ) -> Result<Vec<ListEntry>, StoreError> {
        let sql = format!(
            "SELECT {ENTRY_COLUMNS} FROM list_entries WHERE list = $1 AND removed_at IS NULL \
             AND (expires_at IS NULL OR expires_at > $2) ORDER BY id"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(list.as_str())
            .bind(millis(at))
            .fetch_all(&self.pool)
            .await
            .map_err(query_error("listing list entries"))?;
        rows.iter().map(entry_from_row).collect()
    }

    pub(crate) async fn query_list_audit(
        &self,
        list: ListKind,
        limit: u32,
    ) -> Result<Vec<ListAuditRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT entry_id, list, kind, value, action, actor, reason, at FROM list_audit WHERE list = $1 \
             ORDER BY id DESC LIMIT $2",
        )
        .bind(list.as_str())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(query_error("reading the list audit trail"))?;
        rows.iter()
            .map(|row| {
                Ok(ListAuditRecord {
                    entry_id: col(row, "entry_id")?,
                    list: parsed(row, "list")?,
                    target: target_from_row(row)?,
                    action: col(row, "action")?,
                    actor: col(row, "actor")?,
                    reason: col(row, "reason")?,
                    at: from_millis(col(row, "at")?),
                })
            })
            .collect()
    }
}
