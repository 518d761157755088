//! The management reports' SQL: raw figures for a period, one grouped query
//! per table, the same text on SQLite and PostgreSQL. Rates, totals and ROI
//! are derived from these figures by the pure `Report::assemble`, so the
//! two backends can differ only in what they count, which the scenario test
//! pins figure by figure.
//!
//! Every aggregate is `CAST(… AS BIGINT)`: PostgreSQL's `SUM(bigint)` is
//! `numeric`, which sqlx's `Any` driver does not decode.

use leadsift_core::report::{
    BlacklistGrowth, CurrencyNote, DealFigures, JunkReasonRow, LeadCohortRow, LostReasonRow, VerdictCountRow,
};
use leadsift_core::{Amount, Report, ReportInputs, ReportPeriod, StoreError};

use crate::rows::{col, parsed};
use crate::{SqlStore, millis, query_error};

/// Leads created in the period per (source, channel). `auto_junk` are the
/// leads triage closed as junk on arrival (their first history row); the
/// rest are inquiries. Outcomes count when they happened before the end.
const COHORT_SQL: &str = "\
SELECT l.source AS source, l.channel AS channel,
  CAST(COUNT(*) AS BIGINT) AS leads,
  CAST(SUM(CASE WHEN aj.lead_id IS NULL THEN 1 ELSE 0 END) AS BIGINT) AS inquiries,
  CAST(SUM(CASE WHEN aj.lead_id IS NULL AND l.returning_client = 0 THEN 1 ELSE 0 END) AS BIGINT) AS new_clients,
  CAST(SUM(CASE WHEN aj.lead_id IS NULL AND l.returning_client <> 0 THEN 1 ELSE 0 END) AS BIGINT) AS returning_clients,
  CAST(SUM(CASE WHEN l.stage = 'junk' AND l.closed_at < $2 THEN 1 ELSE 0 END) AS BIGINT) AS junk,
  CAST(SUM(CASE WHEN d.id IS NOT NULL THEN 1 ELSE 0 END) AS BIGINT) AS converted,
  CAST(SUM(CASE WHEN d.id IS NOT NULL AND l.returning_client = 0 THEN 1 ELSE 0 END) AS BIGINT) AS new_converted
FROM leads l
LEFT JOIN lead_stage_changes aj
  ON aj.lead_id = l.id AND aj.from_stage IS NULL AND aj.actor = 'triage' AND aj.to_stage = 'junk'
LEFT JOIN deals d ON d.lead_id = l.id AND d.created_at < $2
WHERE l.created_at >= $1 AND l.created_at < $2
GROUP BY l.source, l.channel";

const COHORT_BY_CAMPAIGN_SQL: &str = "\
SELECT source, campaign, CAST(COUNT(*) AS BIGINT) AS leads
FROM leads WHERE created_at >= $1 AND created_at < $2
GROUP BY source, campaign";

/// Deals that matter to the period: of its leads, closed in it, or open at
/// some moment of it. Amounts count in the report's currency ($3) only.
const DEALS_SQL: &str = "\
SELECT d.source AS source, d.channel AS channel, d.campaign AS campaign,
  CAST(SUM(CASE WHEN l.created_at >= $1 AND l.created_at < $2 THEN 1 ELSE 0 END) AS BIGINT) AS cohort_deals,
  CAST(SUM(CASE WHEN l.created_at >= $1 AND l.created_at < $2 AND d.stage = 'won' AND d.closed_at < $2
    THEN 1 ELSE 0 END) AS BIGINT) AS cohort_won,
  CAST(SUM(CASE WHEN l.created_at >= $1 AND l.created_at < $2 AND d.stage = 'won' AND d.closed_at < $2
    AND d.currency = $3 THEN d.amount_minor ELSE 0 END) AS BIGINT) AS cohort_won_amount,
  CAST(SUM(CASE WHEN d.stage = 'won' AND d.closed_at >= $1 AND d.closed_at < $2 THEN 1 ELSE 0 END) AS BIGINT)
    AS closed_won,
  CAST(SUM(CASE WHEN d.stage = 'won' AND d.closed_at >= $1 AND d.closed_at < $2 AND d.currency = $3
    THEN d.amount_minor ELSE 0 END) AS BIGINT) AS closed_won_amount,
  CAST(SUM(CASE WHEN d.stage = 'lost' AND d.closed_at >= $1 AND d.closed_at < $2 THEN 1 ELSE 0 END) AS BIGINT)
    AS closed_lost,
  CAST(SUM(CASE WHEN d.stage = 'lost' AND d.closed_at >= $1 AND d.closed_at < $2 AND d.currency = $3
    THEN d.amount_minor ELSE 0 END) AS BIGINT) AS closed_lost_amount,
  CAST(SUM(CASE WHEN d.closed_at IS NULL OR d.closed_at >= $1 THEN 1 ELSE 0 END) AS BIGINT) AS in_progress,
  CAST(SUM(CASE WHEN d.closed_at IS NULL OR d.closed_at >= $2 THEN 1 ELSE 0 END) AS BIGINT) AS open_at_end,
  CAST(SUM(CASE WHEN (d.closed_at IS NULL OR d.closed_at >= $1) AND d.currency = $3
    THEN d.amount_minor ELSE 0 END) AS BIGINT) AS in_progress_amount,
  CAST(SUM(CASE WHEN d.currency IS NOT NULL AND d.currency <> $3 THEN 1 ELSE 0 END) AS BIGINT) AS other_currency
FROM deals d JOIN leads l ON l.id = d.lead_id
WHERE d.created_at < $2
  AND (d.closed_at IS NULL OR d.closed_at >= $1 OR (l.created_at >= $1 AND l.created_at < $2))
GROUP BY d.source, d.channel, d.campaign";

const LOST_REASONS_SQL: &str = "\
SELECT COALESCE(lost_reason, '') AS reason, CAST(COUNT(*) AS BIGINT) AS deals,
  CAST(SUM(CASE WHEN currency = $3 THEN amount_minor ELSE 0 END) AS BIGINT) AS amount
FROM deals WHERE stage = 'lost' AND closed_at >= $1 AND closed_at < $2
GROUP BY COALESCE(lost_reason, '')";

const SPEND_SQL: &str = "\
SELECT source, campaign, CAST(SUM(amount_minor) AS BIGINT) AS amount
FROM ad_spend WHERE day >= $1 AND day <= $2 AND currency = $3
GROUP BY source, campaign";

const SPEND_OTHER_CURRENCY_SQL: &str = "\
SELECT CAST(COUNT(*) AS BIGINT) AS n FROM ad_spend WHERE day >= $1 AND day <= $2 AND currency <> $3";

const MESSAGES_SQL: &str = "\
SELECT channel, verdict, CAST(COUNT(*) AS BIGINT) AS messages
FROM messages WHERE received_at >= $1 AND received_at < $2
GROUP BY channel, verdict";

const JUNK_SQL: &str = "\
SELECT COALESCE(junk_reason, 'other') AS reason,
  CAST(SUM(CASE WHEN actor = 'triage' AND from_stage IS NULL THEN 1 ELSE 0 END) AS BIGINT) AS by_triage,
  CAST(SUM(CASE WHEN actor = 'triage' AND from_stage IS NULL THEN 0 ELSE 1 END) AS BIGINT) AS by_people
FROM lead_stage_changes WHERE to_stage = 'junk' AND at >= $1 AND at < $2
GROUP BY COALESCE(junk_reason, 'other')";

const BLACKLIST_SQL: &str = "\
SELECT
  CAST(COALESCE(SUM(CASE WHEN created_at >= $1 AND created_at < $2 THEN 1 ELSE 0 END), 0) AS BIGINT) AS added,
  CAST(COALESCE(SUM(CASE WHEN created_at >= $1 AND created_at < $2 AND origin = 'auto' THEN 1 ELSE 0 END), 0)
    AS BIGINT) AS added_auto,
  CAST(COALESCE(SUM(CASE WHEN removed_at >= $1 AND removed_at < $2 THEN 1 ELSE 0 END), 0) AS BIGINT) AS removed,
  CAST(COALESCE(SUM(CASE WHEN created_at < $2 AND (removed_at IS NULL OR removed_at >= $2)
    AND (expires_at IS NULL OR expires_at >= $2) THEN 1 ELSE 0 END), 0) AS BIGINT) AS active
FROM list_entries WHERE list = 'blacklist'";

/// A period's bounds as a query binds them: Unix milliseconds, or days
/// (`YYYY-MM-DD`, inclusive) for ad spend.
enum Bounds<'a> {
    Millis(i64, i64),
    Days(&'a str, &'a str),
}

impl SqlStore {
    /// Runs one report query with the period's bounds as `$1`, `$2` and,
    /// for the queries that sum money, the report's currency as `$3`.
    async fn period_rows(
        &self,
        sql: &'static str,
        bounds: Bounds<'_>,
        currency: Option<&str>,
    ) -> Result<Vec<sqlx::any::AnyRow>, StoreError> {
        let query = match bounds {
            Bounds::Millis(start, end) => sqlx::query(sql).bind(start).bind(end),
            Bounds::Days(from, to) => sqlx::query(sql).bind(from.to_owned()).bind(to.to_owned()),
        };
        let query = match currency {
            Some(currency) => query.bind(currency.to_owned()),
            None => query,
        };
        query.fetch_all(&self.pool).await.map_err(query_error("building reports"))
    }

    pub(crate) async fn build_report(&self, period: &ReportPeriod) -> Result<Report, StoreError> {
        let (start, end) = (millis(period.start()), millis(period.end()));
        let currency = period.currency.as_str().to_owned();
        let (from_day, to_day) = (period.from.format("%Y-%m-%d").to_string(), period.to.format("%Y-%m-%d").to_string());

        let rows = self.period_rows(COHORT_SQL, Bounds::Millis(start, end), None).await?;
        let cohort = rows
            .iter()
            .map(|row| {
                Ok(LeadCohortRow {
                    source: col(row, "source")?,
                    channel: parsed(row, "channel")?,
                    leads: col(row, "leads")?,
                    inquiries: col(row, "inquiries")?,
                    new_clients: col(row, "new_clients")?,
                    returning_clients: col(row, "returning_clients")?,
                    junk: col(row, "junk")?,
                    converted: col(row, "converted")?,
                    new_clients_converted: col(row, "new_converted")?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;

        let rows = self.period_rows(COHORT_BY_CAMPAIGN_SQL, Bounds::Millis(start, end), None).await?;
        let cohort_by_campaign = rows
            .iter()
            .map(|row| Ok((col(row, "source")?, col(row, "campaign")?, col(row, "leads")?)))
            .collect::<Result<Vec<_>, StoreError>>()?;

        let rows = self.period_rows(DEALS_SQL, Bounds::Millis(start, end), Some(&currency)).await?;
        let mut currency_note = CurrencyNote::default();
        let amount = |row: &sqlx::any::AnyRow, name: &'static str| col::<i64>(row, name).map(Amount::from_minor);
        let deals = rows
            .iter()
            .map(|row| {
                currency_note.deals_in_other_currencies += col::<i64>(row, "other_currency")?;
                Ok(DealFigures {
                    source: col(row, "source")?,
                    channel: parsed(row, "channel")?,
                    campaign: col(row, "campaign")?,
                    cohort_deals: col(row, "cohort_deals")?,
                    cohort_won: col(row, "cohort_won")?,
                    cohort_won_amount: amount(row, "cohort_won_amount")?,
                    closed_won: col(row, "closed_won")?,
                    closed_won_amount: amount(row, "closed_won_amount")?,
                    closed_lost: col(row, "closed_lost")?,
                    closed_lost_amount: amount(row, "closed_lost_amount")?,
                    in_progress: col(row, "in_progress")?,
                    in_progress_open_at_end: col(row, "open_at_end")?,
                    in_progress_amount: amount(row, "in_progress_amount")?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;

        let rows = self.period_rows(LOST_REASONS_SQL, Bounds::Millis(start, end), Some(&currency)).await?;
        let lost_reasons = rows
            .iter()
            .map(|row| {
                Ok(LostReasonRow {
                    reason: col(row, "reason")?,
                    deals: col(row, "deals")?,
                    amount: amount(row, "amount")?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;

        let rows = self.period_rows(SPEND_SQL, Bounds::Days(&from_day, &to_day), Some(&currency)).await?;
        let spend = rows
            .iter()
            .map(|row| Ok((col(row, "source")?, col(row, "campaign")?, amount(row, "amount")?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        let rows =
            self.period_rows(SPEND_OTHER_CURRENCY_SQL, Bounds::Days(&from_day, &to_day), Some(&currency)).await?;
        currency_note.spend_lines_in_other_currencies = rows.first().map(|row| col(row, "n")).transpose()?.unwrap_or(0);

        let rows = self.period_rows(MESSAGES_SQL, Bounds::Millis(start, end), None).await?;
        let messages_by_verdict = rows
            .iter()
            .map(|row| {
                Ok(VerdictCountRow {
                    channel: parsed(row, "channel")?,
                    verdict: parsed(row, "verdict")?,
                    messages: col(row, "messages")?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;

        let rows = self.period_rows(JUNK_SQL, Bounds::Millis(start, end), None).await?;
        let junk_by_reason = rows
            .iter()
            .map(|row| {
                Ok(JunkReasonRow {
                    reason: col(row, "reason")?,
                    by_triage: col(row, "by_triage")?,
                    by_people: col(row, "by_people")?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;

        let rows = self.period_rows(BLACKLIST_SQL, Bounds::Millis(start, end), None).await?;
        let row = rows.first().ok_or(StoreError::Corrupt { what: "blacklist growth", detail: "no row".into() })?;
        let blacklist = BlacklistGrowth {
            added: col(row, "added")?,
            added_automatically: col(row, "added_auto")?,
            removed: col(row, "removed")?,
            active_at_end: col(row, "active")?,
        };

        let inputs = ReportInputs {
            cohort,
            cohort_by_campaign,
            deals,
            lost_reasons,
            spend,
            messages_by_verdict,
            junk_by_reason,
            blacklist,
            currency_note,
        };
        Ok(Report::assemble(period.clone(), inputs))
    }
}
