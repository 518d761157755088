//! The management reports: what the store counts for a period, and the
//! definitions every backend must count by.
//!
//! Definitions (the store's SQL implements them; the scenario test pins them):
//! - The period is `[from 00:00, to + 1 day 00:00)` in the team's UTC offset.
//! - **Leads of the period** are leads created in it. **Inquiries** are those
//!   of them that entered the funnel: every lead except the ones triage
//!   closed as junk on arrival (spam, non-target).
//! - Outcomes of the period's leads (conversion, junk, won revenue) count
//!   when they happened before the period's end, so a report for a closed
//!   period does not change later except through back-dated corrections.
//! - A **new client** is a lead whose contact had no earlier non-junk lead;
//!   **returning** otherwise.
//! - **Ad spend** is the spend dated inside the period; ROI is
//!   `(won revenue − spend) / spend` of the same source (and campaign).
//! - Money counts in the report's currency only; deals and spend in other
//!   currencies are counted in [`CurrencyNote`] and left out of the sums.

use chrono::{DateTime, Days, FixedOffset, NaiveDate, NaiveTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use crate::message::Channel;
use crate::sales::{Amount, Currency};
use crate::verdict::Verdict;

/// A reporting period of whole days in a fixed UTC offset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportPeriod {
    pub from: NaiveDate,
    /// Inclusive.
    pub to: NaiveDate,
    #[serde(with = "offset_text")]
    pub utc_offset: FixedOffset,
    pub currency: Currency,
}

impl ReportPeriod {
    pub fn new(from: NaiveDate, to: NaiveDate, utc_offset: FixedOffset, currency: Currency) -> Result<Self, String> {
        if to < from {
            return Err(format!("the period ends ({to}) before it starts ({from})"));
        }
        Ok(Self { from, to, utc_offset, currency })
    }

    /// The first instant of the period.
    pub fn start(&self) -> DateTime<Utc> {
        self.midnight(self.from)
    }

    /// The first instant after the period.
    pub fn end(&self) -> DateTime<Utc> {
        self.midnight(self.to.checked_add_days(Days::new(1)).unwrap_or(self.to))
    }

    fn midnight(&self, day: NaiveDate) -> DateTime<Utc> {
        // A fixed offset has exactly one local midnight per day.
        self.utc_offset
            .from_local_datetime(&day.and_time(NaiveTime::MIN))
            .single()
            .map(|at| at.with_timezone(&Utc))
            .unwrap_or_else(|| day.and_time(NaiveTime::MIN).and_utc())
    }
}

mod offset_text {
    use chrono::FixedOffset;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(offset: &FixedOffset, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(offset)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<FixedOffset, D::Error> {
        let raw = String::deserialize(deserializer)?;
        raw.parse().map_err(serde::de::Error::custom)
    }
}

/// The value shown for a lead without an ad source (direct traffic,
/// unattributed numbers and mailboxes).
pub const NO_SOURCE: &str = "(none)";

fn rate(part: i64, whole: i64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

/// `(revenue − spend) / spend`, none without spend.
pub fn roi(revenue: Amount, spend: Amount) -> Option<f64> {
    (spend.minor() > 0).then(|| (revenue.minor() - spend.minor()) as f64 / spend.minor() as f64)
}

/// Report 1: inquiries from new vs returning clients.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClientMixRow {
    pub source: String,
    pub channel: Option<Channel>,
    pub inquiries: i64,
    pub new_clients: i64,
    pub returning_clients: i64,
    pub returning_share: Option<f64>,
}

/// Report 2: cost of acquiring a new client, by source.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AcquisitionCostRow {
    pub source: String,
    pub spend: Amount,
    /// New clients whose lead of the period converted before its end.
    pub new_clients_converted: i64,
    /// Spend / new clients converted; none when nobody converted.
    pub cost_per_new_client: Option<Amount>,
}

/// Report 3: the most effective sources (best won revenue first).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SourceEffectivenessRow {
    pub source: String,
    /// Every lead of the period, junk included.
    pub leads: i64,
    pub junk: i64,
    pub junk_share: Option<f64>,
    pub converted: i64,
    /// Converted / inquiries.
    pub conversion_rate: Option<f64>,
    pub won_deals: i64,
    pub won_revenue: Amount,
    pub spend: Amount,
    pub roi: Option<f64>,
}

/// Report 4: inquiries converted into deals.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConversionRow {
    pub source: String,
    pub channel: Option<Channel>,
    pub inquiries: i64,
    pub converted: i64,
    pub conversion_rate: Option<f64>,
}

/// Report 5: deals closed in the period, won vs lost.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DealOutcomeRow {
    pub source: String,
    pub channel: Option<Channel>,
    pub won: i64,
    pub won_amount: Amount,
    pub lost: i64,
    pub lost_amount: Amount,
    pub win_rate: Option<f64>,
}

/// Report 5, continued: why deals were lost.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LostReasonRow {
    pub reason: String,
    pub deals: i64,
    pub amount: Amount,
}

/// Report 6: deals open at any moment of the period.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DealsInProgressRow {
    pub source: String,
    pub channel: Option<Channel>,
    pub deals: i64,
    /// Of those, still open at the period's end.
    pub open_at_end: i64,
    pub amount: Amount,
}

/// Report 7: ad spend vs the revenue of the deals it brought.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SpendRevenueRow {
    pub source: String,
    pub campaign: String,
    pub spend: Amount,
    pub leads: i64,
    pub deals: i64,
    pub won_deals: i64,
    pub won_revenue: Amount,
    pub roi: Option<f64>,
}

/// Triage view: stored messages by verdict and channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerdictCountRow {
    pub channel: Channel,
    pub verdict: Verdict,
    pub messages: i64,
}

/// Triage view: leads closed as junk in the period, by reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JunkReasonRow {
    pub reason: String,
    /// Closed by triage on arrival.
    pub by_triage: i64,
    /// Moved to junk by a person.
    pub by_people: i64,
}

/// Triage view: blacklist growth.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlacklistGrowth {
    pub added: i64,
    pub added_automatically: i64,
    pub removed: i64,
    pub active_at_end: i64,
}

/// Money in other currencies than the report's, left out of its sums.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CurrencyNote {
    pub deals_in_other_currencies: i64,
    pub spend_lines_in_other_currencies: i64,
}

/// Every report for one period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub period: ReportPeriod,
    pub client_mix: Vec<ClientMixRow>,
    pub acquisition_cost: Vec<AcquisitionCostRow>,
    pub source_effectiveness: Vec<SourceEffectivenessRow>,
    pub conversions: Vec<ConversionRow>,
    pub deal_outcomes: Vec<DealOutcomeRow>,
    pub lost_reasons: Vec<LostReasonRow>,
    pub deals_in_progress: Vec<DealsInProgressRow>,
    pub spend_vs_revenue: Vec<SpendRevenueRow>,
    pub messages_by_verdict: Vec<VerdictCountRow>,
    pub junk_by_reason: Vec<JunkReasonRow>,
    pub blacklist: BlacklistGrowth,
    pub currency_note: CurrencyNote,
}

/// The report names, in order: `leadsift report --only NAME`, `?only=NAME`.
pub const REPORT_NAMES: [&str; 11] = [
    "client_mix",
    "acquisition_cost",
    "source_effectiveness",
    "conversions",
    "deal_outcomes",
    "lost_reasons",
    "deals_in_progress",
    "spend_vs_revenue",
    "messages_by_verdict",
    "junk_by_reason",
    "blacklist",
];

/// Raw counts per (source, channel) of the period's leads, as the store
/// reads them; [`Report::assemble`] derives rates, totals and ROI from them.
#[derive(Debug, Clone, PartialEq)]
pub struct LeadCohortRow {
    pub source: Option<String>,
    pub channel: Channel,
    pub leads: i64,
    pub inquiries: i64,
    pub new_clients: i64,
    pub returning_clients: i64,
    pub junk: i64,
    pub converted: i64,
    pub new_clients_converted: i64,
}

/// Raw deal figures per (source, channel, campaign) as the store reads them.
#[derive(Debug, Clone, PartialEq)]
pub struct DealFigures {
    pub source: Option<String>,
    pub channel: Channel,
    pub campaign: Option<String>,
    /// Deals of the period's leads (converted before its end).
    pub cohort_deals: i64,
    /// Of those, won before the period's end, with their amount.
    pub cohort_won: i64,
    pub cohort_won_amount: Amount,
    /// Deals closed in the period.
    pub closed_won: i64,
    pub closed_won_amount: Amount,
    pub closed_lost: i64,
    pub closed_lost_amount: Amount,
    /// Deals open at some moment of the period.
    pub in_progress: i64,
    pub in_progress_open_at_end: i64,
    pub in_progress_amount: Amount,
}

/// Raw figures the store reads for a period.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportInputs {
    pub cohort: Vec<LeadCohortRow>,
    /// Leads of the period per (source, campaign), for report 7.
    pub cohort_by_campaign: Vec<(Option<String>, Option<String>, i64)>,
    pub deals: Vec<DealFigures>,
    pub lost_reasons: Vec<LostReasonRow>,
    /// Spend per (source, campaign) in the report's currency.
    pub spend: Vec<(String, String, Amount)>,
    pub messages_by_verdict: Vec<VerdictCountRow>,
    pub junk_by_reason: Vec<JunkReasonRow>,
    pub blacklist: BlacklistGrowth,
    pub currency_note: CurrencyNote,
}

fn source_name(source: &Option<String>) -> String {
    source.clone().unwrap_or_else(|| NO_SOURCE.to_owned())
}

fn add(a: Amount, b: Amount) -> Amount {
    a.checked_add(b).unwrap_or(Amount::from_minor(i64::MAX))
}

impl Report {
    /// Derives every report from the store's raw figures. Rows are sorted by
    /// source then channel; a total row (`source = "total"`, no channel)
    /// closes each per-channel table.
    pub fn assemble(period: ReportPeriod, inputs: ReportInputs) -> Report {
        use std::collections::BTreeMap;

        let mut cohort = inputs.cohort;
        cohort.sort_by_key(|row| (source_name(&row.source), row.channel));

        let mut client_mix: Vec<ClientMixRow> = cohort
            .iter()
            .filter(|row| row.inquiries > 0)
            .map(|row| ClientMixRow {
                source: source_name(&row.source),
                channel: Some(row.channel),
                inquiries: row.inquiries,
                new_clients: row.new_clients,
                returning_clients: row.returning_clients,
                returning_share: rate(row.returning_clients, row.inquiries),
            })
            .collect();
        let (inquiries, new_clients, returning) = cohort
            .iter()
            .fold((0, 0, 0), |(i, n, r), row| (i + row.inquiries, n + row.new_clients, r + row.returning_clients));
        client_mix.push(ClientMixRow {
            source: "total".into(),
            channel: None,
            inquiries,
            new_clients,
            returning_clients: returning,
            returning_share: rate(returning, inquiries),
        });

        let mut conversions: Vec<ConversionRow> = cohort
            .iter()
            .filter(|row| row.inquiries > 0)
            .map(|row| ConversionRow {
                source: source_name(&row.source),
                channel: Some(row.channel),
                inquiries: row.inquiries,
                converted: row.converted,
                conversion_rate: rate(row.converted, row.inquiries),
            })
            .collect();
        let converted_total: i64 = cohort.iter().map(|row| row.converted).sum();
        conversions.push(ConversionRow {
            source: "total".into(),
            channel: None,
            inquiries,
            converted: converted_total,
            conversion_rate: rate(converted_total, inquiries),
        });

        // Spend by source, and by (source, campaign).
        let mut spend_by_source: BTreeMap<String, Amount> = BTreeMap::new();
        let mut spend_by_campaign: BTreeMap<(String, String), Amount> = BTreeMap::new();
        for (source, campaign, amount) in &inputs.spend {
            let total = spend_by_source.entry(source.clone()).or_default();
            *total = add(*total, *amount);
            let total = spend_by_campaign.entry((source.clone(), campaign.clone())).or_default();
            *total = add(*total, *amount);
        }

        // Per source: cohort and deal figures summed over channels.
        let mut by_source: BTreeMap<String, SourceEffectivenessRow> = BTreeMap::new();
        let mut new_converted_by_source: BTreeMap<String, i64> = BTreeMap::new();
        for row in &cohort {
            let name = source_name(&row.source);
            let entry = by_source
                .entry(name.clone())
                .or_insert_with(|| SourceEffectivenessRow { source: name.clone(), ..Default::default() });
            entry.leads += row.leads;
            entry.junk += row.junk;
            entry.converted += row.converted;
            // Inquiries are kept in `conversion_rate`'s denominator below.
            *new_converted_by_source.entry(name).or_default() += row.new_clients_converted;
        }
        let inquiries_by_source: BTreeMap<String, i64> = cohort.iter().fold(BTreeMap::new(), |mut acc, row| {
            *acc.entry(source_name(&row.source)).or_default() += row.inquiries;
            acc
        });
        for figures in &inputs.deals {
            let name = source_name(&figures.source);
            let entry = by_source
                .entry(name.clone())
                .or_insert_with(|| SourceEffectivenessRow { source: name.clone(), ..Default::default() });
            entry.won_deals += figures.cohort_won;
            entry.won_revenue = add(entry.won_revenue, figures.cohort_won_amount);
        }
        for (source, spend) in &spend_by_source {
            by_source
                .entry(source.clone())
                .or_insert_with(|| SourceEffectivenessRow { source: source.clone(), ..Default::default() })
                .spend = *spend;
        }
        let mut source_effectiveness: Vec<SourceEffectivenessRow> = by_source
            .into_values()
            .map(|mut row| {
                let inquiries = inquiries_by_source.get(&row.source).copied().unwrap_or(0);
                row.junk_share = rate(row.junk, row.leads);
                row.conversion_rate = rate(row.converted, inquiries);
                row.roi = roi(row.won_revenue, row.spend);
                row
            })
            .collect();
        source_effectiveness.sort_by(|a, b| {
            b.won_revenue
                .cmp(&a.won_revenue)
                .then(b.converted.cmp(&a.converted))
                .then(a.junk_share.unwrap_or(0.0).total_cmp(&b.junk_share.unwrap_or(0.0)))
                .then(a.source.cmp(&b.source))
        });

        let mut acquisition_cost: Vec<AcquisitionCostRow> = source_effectiveness
            .iter()
            .filter(|row| row.spend.minor() > 0 || new_converted_by_source.get(&row.source).is_some_and(|n| *n > 0))
            .map(|row| {
                let converted = new_converted_by_source.get(&row.source).copied().unwrap_or(0);
                AcquisitionCostRow {
                    source: row.source.clone(),
                    spend: row.spend,
                    new_clients_converted: converted,
                    cost_per_new_client: (converted > 0).then(|| Amount::from_minor(row.spend.minor() / converted)),
                }
            })
            .collect();
        acquisition_cost.sort_by(|a, b| a.source.cmp(&b.source));

        // Deals by (source, channel).
        let mut deal_rows: BTreeMap<(String, Channel), DealFigures> = BTreeMap::new();
        for figures in &inputs.deals {
            let entry = match deal_rows.entry((source_name(&figures.source), figures.channel)) {
                std::collections::btree_map::Entry::Vacant(slot) => {
                    slot.insert(figures.clone());
                    continue;
                }
                std::collections::btree_map::Entry::Occupied(slot) => slot.into_mut(),
            };
            entry.closed_won += figures.closed_won;
            entry.closed_won_amount = add(entry.closed_won_amount, figures.closed_won_amount);
            entry.closed_lost += figures.closed_lost;
            entry.closed_lost_amount = add(entry.closed_lost_amount, figures.closed_lost_amount);
            entry.in_progress += figures.in_progress;
            entry.in_progress_open_at_end += figures.in_progress_open_at_end;
            entry.in_progress_amount = add(entry.in_progress_amount, figures.in_progress_amount);
        }
        let mut deal_outcomes: Vec<DealOutcomeRow> = deal_rows
            .iter()
            .filter(|(_, f)| f.closed_won + f.closed_lost > 0)
            .map(|((source, channel), f)| DealOutcomeRow {
                source: source.clone(),
                channel: Some(*channel),
                won: f.closed_won,
                won_amount: f.closed_won_amount,
                lost: f.closed_lost,
                lost_amount: f.closed_lost_amount,
                win_rate: rate(f.closed_won, f.closed_won + f.closed_lost),
            })
            .collect();
        let mut total = DealOutcomeRow { source: "total".into(), ..Default::default() };
        for row in &deal_outcomes {
            total.won += row.won;
            total.won_amount = add(total.won_amount, row.won_amount);
            total.lost += row.lost;
            total.lost_amount = add(total.lost_amount, row.lost_amount);
        }
        total.win_rate = rate(total.won, total.won + total.lost);
        deal_outcomes.push(total);

        let mut deals_in_progress: Vec<DealsInProgressRow> = deal_rows
            .iter()
            .filter(|(_, f)| f.in_progress > 0)
            .map(|((source, channel), f)| DealsInProgressRow {
                source: source.clone(),
                channel: Some(*channel),
                deals: f.in_progress,
                open_at_end: f.in_progress_open_at_end,
                amount: f.in_progress_amount,
            })
            .collect();
        let mut total = DealsInProgressRow { source: "total".into(), ..Default::default() };
        for row in &deals_in_progress {
            total.deals += row.deals;
            total.open_at_end += row.open_at_end;
            total.amount = add(total.amount, row.amount);
        }
        deals_in_progress.push(total);

        // Report 7 by (source, campaign).
        let mut by_campaign: BTreeMap<(String, String), SpendRevenueRow> = BTreeMap::new();
        let campaign_key = |source: &Option<String>, campaign: &Option<String>| {
            (source_name(source), campaign.clone().unwrap_or_default())
        };
        for (source, campaign, leads) in &inputs.cohort_by_campaign {
            let key = campaign_key(source, campaign);
            by_campaign
                .entry(key.clone())
                .or_insert_with(|| SpendRevenueRow { source: key.0, campaign: key.1, ..Default::default() })
                .leads += leads;
        }
        for figures in &inputs.deals {
            let key = campaign_key(&figures.source, &figures.campaign);
            let entry = by_campaign.entry(key.clone()).or_insert_with(|| SpendRevenueRow {
                source: key.0,
                campaign: key.1,
                ..Default::default()
            });
            entry.deals += figures.cohort_deals;
            entry.won_deals += figures.cohort_won;
            entry.won_revenue = add(entry.won_revenue, figures.cohort_won_amount);
        }
        for ((source, campaign), spend) in spend_by_campaign {
            by_campaign
                .entry((source.clone(), campaign.clone()))
                .or_insert_with(|| SpendRevenueRow { source, campaign, ..Default::default() })
                .spend = spend;
        }
        let spend_vs_revenue: Vec<SpendRevenueRow> = by_campaign
            .into_values()
            .map(|mut row| {
                row.roi = roi(row.won_revenue, row.spend);
                row
            })
            .collect();

        let mut lost_reasons = inputs.lost_reasons;
        lost_reasons.sort_by(|a, b| b.deals.cmp(&a.deals).then(a.reason.cmp(&b.reason)));
        let mut messages_by_verdict = inputs.messages_by_verdict;
        messages_by_verdict.sort_by_key(|row| (row.channel, row.verdict));
        let mut junk_by_reason = inputs.junk_by_reason;
        junk_by_reason.sort_by(|a, b| a.reason.cmp(&b.reason));

        Report {
            period,
            client_mix,
            acquisition_cost,
            source_effectiveness,
            conversions,
            deal_outcomes,
            lost_reasons,
            deals_in_progress,
            spend_vs_revenue,
            messages_by_verdict,
            junk_by_reason,
            blacklist: inputs.blacklist,
            currency_note: inputs.currency_note,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn period() -> ReportPeriod {
        ReportPeriod::new(
            NaiveDate::from_ymd_opt(2026, 11, 1).unwrap(),
            NaiveDate::from_ymd_opt(2026, 11, 30).unwrap(),
            FixedOffset::east_opt(3 * 3600).unwrap(),
            Currency::parse("RUB").unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn period_bounds_are_local_midnights() {
        let period = period();
        assert_eq!(period.start().to_rfc3339(), "2026-10-31T21:00:00+00:00");
        assert_eq!(period.end().to_rfc3339(), "2026-11-30T21:00:00+00:00");
        let reversed = ReportPeriod::new(period.to, period.from, period.utc_offset, period.currency.clone());
        assert!(reversed.is_err());
    }

    #[test]
    fn assemble_derives_rates_totals_and_roi() {
        let cohort = vec![
            LeadCohortRow {
                source: Some("yandex".into()),
                channel: Channel::Call,
                leads: 5,
                inquiries: 4,
                new_clients: 3,
                returning_clients: 1,
                junk: 1,
                converted: 2,
                new_clients_converted: 1,
            },
            LeadCohortRow {
                source: None,
                channel: Channel::Email,
                leads: 2,
                inquiries: 2,
                new_clients: 2,
                returning_clients: 0,
                junk: 0,
                converted: 0,
                new_clients_converted: 0,
            },
        ];
        let deals = vec![DealFigures {
            source: Some("yandex".into()),
            channel: Channel::Call,
            campaign: Some("fasad".into()),
            cohort_deals: 2,
            cohort_won: 1,
            cohort_won_amount: Amount::from_minor(300_000),
            closed_won: 1,
            closed_won_amount: Amount::from_minor(300_000),
            closed_lost: 1,
            closed_lost_amount: Amount::from_minor(50_000),
            in_progress: 2,
            in_progress_open_at_end: 0,
            in_progress_amount: Amount::from_minor(350_000),
        }];
        let inputs = ReportInputs {
            cohort,
            cohort_by_campaign: vec![(Some("yandex".into()), Some("fasad".into()), 5), (None, None, 2)],
            deals,
            lost_reasons: vec![],
            spend: vec![("yandex".into(), "fasad".into(), Amount::from_minor(100_000))],
            messages_by_verdict: vec![],
            junk_by_reason: vec![],
            blacklist: BlacklistGrowth::default(),
            currency_note: CurrencyNote::default(),
        };
        let report = Report::assemble(period(), inputs);
        let total = report.client_mix.last().unwrap();
        assert_eq!((total.inquiries, total.new_clients, total.returning_clients), (6, 5, 1));
        assert_eq!(report.conversions.last().unwrap().conversion_rate, Some(2.0 / 6.0));
        let yandex = &report.source_effectiveness[0];
        assert_eq!(yandex.source, "yandex");
        assert_eq!(yandex.junk_share, Some(0.2));
        assert_eq!(yandex.conversion_rate, Some(0.5));
        assert_eq!(yandex.roi, Some(2.0));
        assert_eq!(report.acquisition_cost[0].cost_per_new_client, Some(Amount::from_minor(100_000)));
        assert_eq!(report.deal_outcomes.last().unwrap().win_rate, Some(0.5));
        let campaign = report.spend_vs_revenue.iter().find(|r| r.campaign == "fasad").unwrap();
        assert_eq!((campaign.leads, campaign.deals, campaign.won_deals, campaign.roi), (5, 2, 1, Some(2.0)));
    }
}
