//! Converting leads into contact + company + deal, closing deals, and ad
//! spend (migration 0004).

use chrono::{DateTime, NaiveDate, Utc};
use leadsift_core::sales::{company_domain, company_key};
use leadsift_core::{
    AdSpend, Amount, Company, Converted, Currency, Deal, DealClosing, DealFilter, DealStage, IdentityKind,
    LeadConversion, LeadStage, Money, SourceRef, SpendImport, StoreError,
};
use sqlx::any::AnyRow;

use crate::rows::{col, parsed, parsed_opt};
use crate::{SqlStore, from_millis, millis, query_error};

type Tx = sqlx::Transaction<'static, sqlx::Any>;

const DEAL_COLUMNS: &str = "id, lead_id, contact_id, company_id, title, stage, amount_minor, currency, lost_reason, \
     channel, source, campaign, created_at, closed_at";

fn deal_from_row(row: &AnyRow) -> Result<Deal, StoreError> {
    let amount: Option<i64> = col(row, "amount_minor")?;
    let currency: Option<Currency> = parsed_opt(row, "currency")?;
    Ok(Deal {
        id: col(row, "id")?,
        lead_id: col(row, "lead_id")?,
        contact_id: col(row, "contact_id")?,
        company_id: col(row, "company_id")?,
        title: col(row, "title")?,
        stage: parsed(row, "stage")?,
        amount: amount.zip(currency).map(|(minor, currency)| Money { amount: Amount::from_minor(minor), currency }),
        lost_reason: col(row, "lost_reason")?,
        channel: parsed(row, "channel")?,
        source: col(row, "source")?,
        campaign: col(row, "campaign")?,
        created_at: from_millis(col(row, "created_at")?),
        closed_at: col::<Option<i64>>(row, "closed_at")?.map(from_millis),
    })
}

fn company_from_row(row: &AnyRow) -> Result<Company, StoreError> {
    Ok(Company {
        id: col(row, "id")?,
        name: col(row, "name")?,
        domain: col(row, "domain")?,
        created_at: from_millis(col(row, "created_at")?),
    })
}

fn invalid(message: String) -> StoreError {
    StoreError::Invalid(message)
}

impl SqlStore {
    pub(crate) async fn apply_conversion(
        &self,
        request: &LeadConversion,
        at: DateTime<Utc>,
    ) -> Result<Converted, StoreError> {
        let operation = "converting a lead";
        let at_ms = millis(at);
        let (mut tx, _write_gate) = self.begin_write().await.map_err(query_error(operation))?;
        let row = sqlx::query("SELECT stage, contact_id, title, channel, source, campaign FROM leads WHERE id = $1")
            .bind(request.lead_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(query_error(operation))?;
        let Some(row) = row else {
            return Err(StoreError::NotFound(format!("lead {}", request.lead_id)));
        };
        let stage: LeadStage = parsed(&row, "stage")?;
        match stage {
            LeadStage::Converted => {
                let deal: Option<i64> = sqlx::query_scalar("SELECT id FROM deals WHERE lead_id = $1")
                    .bind(request.lead_id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(query_error(operation))?;
                let deal = deal.map(|id| format!(" into deal {id}")).unwrap_or_default();
                return Err(invalid(format!("lead {} is already converted{deal}", request.lead_id)));
            }
            LeadStage::Junk => {
                return Err(invalid(format!(
                    "lead {} is junk: restore it to an open stage before converting it",
                    request.lead_id
                )));
            }
            _ => {}
        }
        let title: String = col(&row, "title")?;
        let channel: String = col(&row, "channel")?;
        let source: Option<String> = col(&row, "source")?;
        let campaign: Option<String> = col(&row, "campaign")?;

        // The contact: the lead's, or a new one named after its first sender.
        let (contact_id, contact_created) = match col::<Option<i64>>(&row, "contact_id")? {
            Some(id) => (id, false),
            None => {
                let name: Option<String> = sqlx::query_scalar(
                    "SELECT sender_name FROM messages WHERE lead_id = $1 AND sender_name IS NOT NULL ORDER BY id LIMIT 1",
                )
                .bind(request.lead_id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(query_error(operation))?
                .flatten();
                let id: i64 =
                    sqlx::query_scalar("INSERT INTO contacts (display_name, created_at) VALUES ($1, $2) RETURNING id")
                        .bind(name)
                        .bind(at_ms)
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(query_error(operation))?;
                sqlx::query("UPDATE leads SET contact_id = $1 WHERE id = $2")
                    .bind(id)
                    .bind(request.lead_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(query_error(operation))?;
                sqlx::query("UPDATE messages SET contact_id = $1 WHERE lead_id = $2")
                    .bind(id)
                    .bind(request.lead_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(query_error(operation))?;
                (id, true)
            }
        };

        let (company, company_created) =
            resolve_company(&mut tx, contact_id, request.company.as_deref(), at_ms).await?;
        if let Some(company) = &company {
            sqlx::query("UPDATE contacts SET company_id = $1 WHERE id = $2")
                .bind(company.id)
                .bind(contact_id)
                .execute(&mut *tx)
                .await
                .map_err(query_error(operation))?;
        }

        let deal_title = request.deal_title.clone().filter(|t| !t.trim().is_empty()).unwrap_or(title);
        let deal_id: i64 = sqlx::query_scalar(
            "INSERT INTO deals (lead_id, contact_id, company_id, title, stage, amount_minor, currency, channel, \
             source, campaign, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
             RETURNING id",
        )
        .bind(request.lead_id)
        .bind(contact_id)
        .bind(company.as_ref().map(|c| c.id))
        .bind(deal_title)
        .bind(DealStage::InProgress.as_str())
        .bind(request.amount.as_ref().map(|m| m.amount.minor()))
        .bind(request.amount.as_ref().map(|m| m.currency.as_str().to_owned()))
        .bind(channel)
        .bind(source)
        .bind(campaign)
        .bind(at_ms)
        .bind(at_ms)
        .fetch_one(&mut *tx)
        .await
        .map_err(query_error(operation))?;
        insert_deal_change(
            &mut tx,
            deal_id,
            None,
            DealStage::InProgress,
            &request.actor,
            request.note.as_deref(),
            at_ms,
        )
        .await?;

        sqlx::query(
            "UPDATE leads SET stage = $1, junk_reason = NULL, needs_review = 0, updated_at = $2, closed_at = $2 \
             WHERE id = $3",
        )
        .bind(LeadStage::Converted.as_str())
        .bind(at_ms)
        .bind(request.lead_id)
        .execute(&mut *tx)
        .await
        .map_err(query_error(operation))?;
        let note = match &request.note {
            Some(note) => format!("converted into deal {deal_id}: {note}"),
            None => format!("converted into deal {deal_id}"),
        };
        sqlx::query(
            "INSERT INTO lead_stage_changes (lead_id, from_stage, to_stage, actor, reason, at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(request.lead_id)
        .bind(stage.as_str())
        .bind(LeadStage::Converted.as_str())
        .bind(request.actor.clone())
        .bind(note)
        .bind(at_ms)
        .execute(&mut *tx)
        .await
        .map_err(query_error("recording a stage change"))?;

        let deal =
            fetch_deal(&mut tx, deal_id).await?.ok_or_else(|| StoreError::NotFound(format!("deal {deal_id}")))?;
        tx.commit().await.map_err(query_error(operation))?;
        Ok(Converted { lead_id: request.lead_id, contact_id, contact_created, company, company_created, deal })
    }

    pub(crate) async fn apply_deal_closing(
        &self,
        request: &DealClosing,
        at: DateTime<Utc>,
    ) -> Result<Deal, StoreError> {
        request.validate().map_err(invalid)?;
        let operation = "closing a deal";
        let (mut tx, _write_gate) = self.begin_write().await.map_err(query_error(operation))?;
        let Some(deal) = fetch_deal(&mut tx, request.deal_id).await? else {
            return Err(StoreError::NotFound(format!("deal {}", request.deal_id)));
        };
        if deal.stage.is_closed() {
            return Err(invalid(format!("deal {} is already closed as {}", deal.id, deal.stage)));
        }
        let amount = request.amount.clone().or(deal.amount.clone());
        if request.outcome == DealStage::Won && amount.is_none() {
            return Err(invalid(format!("closing deal {} as won needs its amount (--amount, --currency)", deal.id)));
        }
        let closed_at = request.closed_at.unwrap_or(at);
        if closed_at < deal.created_at {
            return Err(invalid(format!(
                "deal {} cannot close ({}) before it was created ({})",
                deal.id,
                closed_at.date_naive(),
                deal.created_at.date_naive()
            )));
        }
        let lost_reason = request.lost_reason.as_deref().map(str::trim).filter(|r| !r.is_empty()).map(str::to_owned);
        sqlx::query(
            "UPDATE deals SET stage = $1, amount_minor = $2, currency = $3, lost_reason = $4, closed_at = $5, \
             updated_at = $6 WHERE id = $7",
        )
        .bind(request.outcome.as_str())
        .bind(amount.as_ref().map(|m| m.amount.minor()))
        .bind(amount.as_ref().map(|m| m.currency.as_str().to_owned()))
        .bind(lost_reason.clone())
        .bind(millis(closed_at))
        .bind(millis(at))
        .bind(deal.id)
        .execute(&mut *tx)
        .await
        .map_err(query_error(operation))?;
        insert_deal_change(
            &mut tx,
            deal.id,
            Some(deal.stage),
            request.outcome,
            &request.actor,
            lost_reason.as_deref(),
            millis(at),
        )
        .await?;
        let closed =
            fetch_deal(&mut tx, deal.id).await?.ok_or_else(|| StoreError::NotFound(format!("deal {}", deal.id)))?;
        tx.commit().await.map_err(query_error(operation))?;
        Ok(closed)
    }

    pub(crate) async fn query_deal(&self, id: i64) -> Result<Option<Deal>, StoreError> {
        let sql = format!("SELECT {DEAL_COLUMNS} FROM deals WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(query_error("reading a deal"))?;
        row.as_ref().map(deal_from_row).transpose()
    }

    pub(crate) async fn query_deals(&self, filter: &DealFilter) -> Result<Vec<Deal>, StoreError> {
        let sql =
            format!("SELECT {DEAL_COLUMNS} FROM deals WHERE ($1 IS NULL OR stage = $1) ORDER BY id DESC LIMIT $2");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(filter.stage.map(|s| s.as_str()))
            .bind(i64::from(filter.limit.unwrap_or(100)))
            .fetch_all(&self.pool)
            .await
            .map_err(query_error("listing deals"))?;
        rows.iter().map(deal_from_row).collect()
    }

    pub(crate) async fn upsert_spend(&self, lines: &[AdSpend], at: DateTime<Utc>) -> Result<SpendImport, StoreError> {
        let operation = "importing ad spend";
        let mut outcome = SpendImport::default();
        let (mut tx, _write_gate) = self.begin_write().await.map_err(query_error(operation))?;
        for line in lines {
            let day = line.date.format("%Y-%m-%d").to_string();
            let existing = sqlx::query(
                "SELECT amount_minor, currency FROM ad_spend WHERE day = $1 AND source = $2 AND campaign = $3",
            )
            .bind(day.clone())
            .bind(line.source.clone())
            .bind(line.campaign.clone())
            .fetch_optional(&mut *tx)
            .await
            .map_err(query_error(operation))?;
            match existing {
                Some(row) => {
                    let amount: i64 = col(&row, "amount_minor")?;
                    let currency: String = col(&row, "currency")?;
                    if amount == line.amount.minor() && currency == line.currency.as_str() {
                        outcome.unchanged += 1;
                        continue;
                    }
                    sqlx::query(
                        "UPDATE ad_spend SET amount_minor = $1, currency = $2, updated_at = $3 \
                         WHERE day = $4 AND source = $5 AND campaign = $6",
                    )
                    .bind(line.amount.minor())
                    .bind(line.currency.as_str().to_owned())
                    .bind(millis(at))
                    .bind(day)
                    .bind(line.source.clone())
                    .bind(line.campaign.clone())
                    .execute(&mut *tx)
                    .await
                    .map_err(query_error(operation))?;
                    outcome.updated += 1;
                }
                None => {
                    sqlx::query(
                        "INSERT INTO ad_spend (day, source, campaign, amount_minor, currency, updated_at) \
                         VALUES ($1, $2, $3, $4, $5, $6)",
                    )
                    .bind(day)
                    .bind(line.source.clone())
                    .bind(line.campaign.clone())
                    .bind(line.amount.minor())
                    .bind(line.currency.as_str().to_owned())
                    .bind(millis(at))
                    .execute(&mut *tx)
                    .await
                    .map_err(query_error(operation))?;
                    outcome.inserted += 1;
                }
            }
        }
        tx.commit().await.map_err(query_error(operation))?;
        Ok(outcome)
    }

    pub(crate) async fn query_spend(&self, from: NaiveDate, to: NaiveDate) -> Result<Vec<AdSpend>, StoreError> {
        let rows = sqlx::query(
            "SELECT day, source, campaign, amount_minor, currency FROM ad_spend WHERE day >= $1 AND day <= $2 \
             ORDER BY day, source, campaign",
        )
        .bind(from.format("%Y-%m-%d").to_string())
        .bind(to.format("%Y-%m-%d").to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(query_error("reading ad spend"))?;
        rows.iter()
            .map(|row| {
                Ok(AdSpend {
                    date: parsed(row, "day")?,
                    source: col(row, "source")?,
                    campaign: col(row, "campaign")?,
                    amount: Amount::from_minor(col(row, "amount_minor")?),
                    currency: parsed(row, "currency")?,
                })
            })
            .collect()
    }
}

async fn fetch_deal(tx: &mut Tx, id: i64) -> Result<Option<Deal>, StoreError> {
    let sql = format!("SELECT {DEAL_COLUMNS} FROM deals WHERE id = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(&mut **tx)
        .await
        .map_err(query_error("reading a deal"))?;
    row.as_ref().map(deal_from_row).transpose()
}

async fn insert_deal_change(
    tx: &mut Tx,
    deal_id: i64,
    from: Option<DealStage>,
    to: DealStage,
    actor: &str,
    reason: Option<&str>,
    at_ms: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO deal_stage_changes (deal_id, from_stage, to_stage, actor, reason, at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(deal_id)
    .bind(from.map(|s| s.as_str()))
    .bind(to.as_str())
    .bind(actor.to_owned())
    .bind(reason.map(str::to_owned))
    .bind(at_ms)
    .execute(&mut **tx)
    .await
    .map_err(query_error("recording a deal stage change"))?;
    Ok(())
}

/// The explicit company (found by name or created), else the contact's
/// company, else one derived from the contact's corporate email domain.
async fn resolve_company(
    tx: &mut Tx,
    contact_id: i64,
    explicit: Option<&str>,
    at_ms: i64,
) -> Result<(Option<Company>, bool), StoreError> {
    let operation = "finding the lead's company";
    if let Some(name) = explicit.map(str::trim).filter(|n| !n.is_empty()) {
        let key = company_key(name);
        let row = sqlx::query("SELECT id, name, domain, created_at FROM companies WHERE name_key = $1")
            .bind(key.clone())
            .fetch_optional(&mut **tx)
            .await
            .map_err(query_error(operation))?;
        if let Some(row) = row {
            return Ok((Some(company_from_row(&row)?), false));
        }
        let row = sqlx::query(
            "INSERT INTO companies (name, name_key, created_at) VALUES ($1, $2, $3) \
             RETURNING id, name, domain, created_at",
        )
        .bind(name.to_owned())
        .bind(key)
        .bind(at_ms)
        .fetch_one(&mut **tx)
        .await
        .map_err(query_error(operation))?;
        return Ok((Some(company_from_row(&row)?), true));
    }
    let row = sqlx::query(
        "SELECT c.id, c.name, c.domain, c.created_at FROM companies c JOIN contacts p ON p.company_id = c.id \
         WHERE p.id = $1",
    )
    .bind(contact_id)
    .fetch_optional(&mut **tx)
    .await
    .map_err(query_error(operation))?;
    if let Some(row) = row {
        return Ok((Some(company_from_row(&row)?), false));
    }
    let rows =
        sqlx::query("SELECT kind, value FROM contact_identities WHERE contact_id = $1 ORDER BY created_at, value")
            .bind(contact_id)
            .fetch_all(&mut **tx)
            .await
            .map_err(query_error(operation))?;
    let identities: Vec<SourceRef> = rows
        .iter()
        .filter_map(|row| {
            let kind: IdentityKind = parsed(row, "kind").ok()?;
            let value: String = col(row, "value").ok()?;
            SourceRef::parse(kind, &value, "ZZ").ok()
        })
        .collect();
    let Some(domain) = company_domain(&identities) else { return Ok((None, false)) };
    let row = sqlx::query("SELECT id, name, domain, created_at FROM companies WHERE domain = $1")
        .bind(domain.as_str().to_owned())
        .fetch_optional(&mut **tx)
        .await
        .map_err(query_error(operation))?;
    if let Some(row) = row {
        return Ok((Some(company_from_row(&row)?), false));
    }
    // Named after its domain until someone renames it; a company of that
    // name created by hand earlier gets the domain instead.
    let key = company_key(domain.as_str());
    let row = sqlx::query("SELECT id, name, domain, created_at FROM companies WHERE name_key = $1")
        .bind(key.clone())
        .fetch_optional(&mut **tx)
        .await
        .map_err(query_error(operation))?;
    if let Some(row) = row {
        let company = company_from_row(&row)?;
        sqlx::query("UPDATE companies SET domain = $1 WHERE id = $2")
            .bind(domain.as_str().to_owned())
            .bind(company.id)
            .execute(&mut **tx)
            .await
            .map_err(query_error(operation))?;
        return Ok((Some(Company { domain: Some(domain.as_str().to_owned()), ..company }), false));
    }
    let row = sqlx::query(
        "INSERT INTO companies (name, name_key, domain, created_at) VALUES ($1, $2, $3, $4) \
         RETURNING id, name, domain, created_at",
    )
    .bind(domain.as_str().to_owned())
    .bind(key)
    .bind(domain.as_str().to_owned())
    .bind(at_ms)
    .fetch_one(&mut **tx)
    .await
    .map_err(query_error(operation))?;
    Ok((Some(company_from_row(&row)?), true))
}
