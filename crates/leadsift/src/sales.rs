//! Sales commands: converting leads, closing deals, ad spend, reports.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use chrono::{NaiveDate, Utc};
use leadsift_core::{
    Amount, Currency, DealClosing, DealFilter, DealStage, LeadConversion, LeadStore, Money, ReportPeriod,
};

use crate::app::connect_store;
use crate::config::Settings;
use leadsift_web::report_render::{ReportFormat, render_report};

/// `leadsift leads convert`
#[derive(Debug, clap::Args)]
pub struct ConvertArgs {
    pub id: i64,
    /// Company name; without it the company comes from the contact's corporate email domain (never a free-mail one).
    #[arg(long)]
    pub company: Option<String>,
    /// Deal title (default: the lead's title).
    #[arg(long)]
    pub title: Option<String>,
    /// Expected amount, e.g. 150000 or 1 250,50.
    #[arg(long)]
    pub amount: Option<String>,
    /// Currency of the amount (default: reports.currency).
    #[arg(long)]
    pub currency: Option<String>,
    #[arg(long)]
    pub note: Option<String>,
    #[arg(long, env = "USER", default_value = "cli")]
    pub actor: String,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Subcommand)]
pub enum DealsCommand {
    /// Deals, newest first.
    List {
        /// in_progress, won or lost.
        #[arg(long)]
        stage: Option<DealStage>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    Show {
        id: i64,
        #[arg(long)]
        json: bool,
    },
    /// Close a deal as won (with its amount) or lost (with a reason).
    Close {
        id: i64,
        /// won or lost.
        outcome: DealStage,
        /// Final amount (required when won, unless the deal has one).
        #[arg(long)]
        amount: Option<String>,
        #[arg(long)]
        currency: Option<String>,
        /// Why it was lost (required when lost).
        #[arg(long)]
        reason: Option<String>,
        /// Close date YYYY-MM-DD (default: now).
        #[arg(long)]
        on: Option<NaiveDate>,
        #[arg(long, env = "USER", default_value = "cli")]
        actor: String,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum SpendCommand {
    /// Import ad spend from CSV (date, source, campaign, amount, currency); idempotent per (date, source, campaign).
    Import { file: PathBuf },
    /// Spend lines of a period.
    List {
        #[arg(long)]
        from: NaiveDate,
        #[arg(long)]
        to: NaiveDate,
        #[arg(long)]
        json: bool,
    },
}

/// `leadsift report`
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// First day of the period (YYYY-MM-DD, in reports.utc_offset).
    #[arg(long)]
    pub from: NaiveDate,
    /// Last day of the period, inclusive.
    #[arg(long)]
    pub to: NaiveDate,
    #[arg(long, default_value_t = ReportFormat::Table)]
    pub format: ReportFormat,
    /// Sum money in this currency (default: reports.currency).
    #[arg(long)]
    pub currency: Option<String>,
    /// Only this report (client_mix, acquisition_cost, source_effectiveness, conversions, deal_outcomes,
    /// lost_reasons, deals_in_progress, spend_vs_revenue, messages_by_verdict, junk_by_reason, blacklist).
    #[arg(long)]
    pub only: Option<String>,
}

pub fn money(settings: &Settings, amount: Option<&str>, currency: Option<&str>) -> anyhow::Result<Option<Money>> {
    match (amount, currency) {
        (None, None) => Ok(None),
        (None, Some(_)) => anyhow::bail!("a currency needs an amount"),
        (Some(amount), currency) => {
            let currency = match currency {
                Some(code) => Currency::parse(code)?,
                None => settings.reports.currency()?,
            };
            Ok(Some(Money { amount: Amount::parse(amount)?, currency }))
        }
    }
}

pub fn period(
    settings: &Settings,
    from: NaiveDate,
    to: NaiveDate,
    currency: Option<&str>,
) -> anyhow::Result<ReportPeriod> {
    let currency = match currency {
        Some(code) => Currency::parse(code)?,
        None => settings.reports.currency()?,
    };
    ReportPeriod::new(from, to, settings.reports.utc_offset()?, currency).map_err(anyhow::Error::msg)
}

/// A local date's midnight in the team's offset, as the close time of a back-dated deal.
fn local_midnight(settings: &Settings, day: NaiveDate) -> anyhow::Result<chrono::DateTime<Utc>> {
    let offset = settings.reports.utc_offset()?;
    let period = ReportPeriod::new(day, day, offset, settings.reports.currency()?).map_err(anyhow::Error::msg)?;
    Ok(period.start())
}

pub async fn convert(settings: &Settings, args: ConvertArgs) -> anyhow::Result<ExitCode> {
    let store = connect_store(settings).await?;
    let request = LeadConversion {
        lead_id: args.id,
        company: args.company,
        deal_title: args.title,
        amount: money(settings, args.amount.as_deref(), args.currency.as_deref())?,
        actor: args.actor,
        note: args.note,
    };
    let converted = store.convert_lead(&request, Utc::now()).await?;
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", serde_json::to_string(&converted)?)?;
    } else {
        let company = match &converted.company {
            Some(c) => format!("{} ({}{})", c.name, c.id, if converted.company_created { ", new" } else { "" }),
            None => "none".to_owned(),
        };
        writeln!(
            out,
            "lead {} converted: deal {} \"{}\", contact {}{}, company {company}",
            converted.lead_id,
            converted.deal.id,
            converted.deal.title,
            converted.contact_id,
            if converted.contact_created { " (new)" } else { "" },
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn deals(settings: &Settings, command: DealsCommand) -> anyhow::Result<ExitCode> {
    let store = connect_store(settings).await?;
    let mut out = std::io::stdout().lock();
    match command {
        DealsCommand::List { stage, limit, json } => {
            for deal in store.deals(&DealFilter { stage, limit: Some(limit) }).await? {
                if json {
                    writeln!(out, "{}", serde_json::to_string(&deal)?)?;
                } else {
                    let amount = deal.amount.as_ref().map(ToString::to_string).unwrap_or_else(|| "-".into());
                    writeln!(
                        out,
                        "{:>6}  {:<11}  {:>16}  lead {:<6} {:<10} {}",
                        deal.id,
                        deal.stage,
                        amount,
                        deal.lead_id,
                        deal.source.as_deref().unwrap_or("-"),
                        deal.title
                    )?;
                }
            }
        }
        DealsCommand::Show { id, json } => {
            let deal = store.deal(id).await?.with_context(|| format!("no deal {id}"))?;
            if json {
                writeln!(out, "{}", serde_json::to_string(&deal)?)?;
            } else {
                writeln!(out, "{}", serde_json::to_string_pretty(&deal)?)?;
            }
        }
        DealsCommand::Close { id, outcome, amount, currency, reason, on, actor } => {
            let closed_at = on.map(|day| local_midnight(settings, day)).transpose()?;
            let request = DealClosing {
                deal_id: id,
                outcome,
                amount: money(settings, amount.as_deref(), currency.as_deref())?,
                lost_reason: reason,
                closed_at,
                actor,
            };
            let deal = store.close_deal(&request, Utc::now()).await?;
            let amount = deal.amount.as_ref().map(ToString::to_string).unwrap_or_else(|| "no amount".into());
            writeln!(out, "deal {} closed as {} ({amount})", deal.id, deal.stage)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn spend(settings: &Settings, command: SpendCommand) -> anyhow::Result<ExitCode> {
    match command {
        SpendCommand::Import { file } => {
            // A year of daily spend for hundreds of campaigns is a few MB.
            const MAX_SPEND_FILE_BYTES: u64 = 64 * 1024 * 1024;
            let size = std::fs::metadata(&file).with_context(|| format!("cannot read {}", file.display()))?.len();
            anyhow::ensure!(
                size <= MAX_SPEND_FILE_BYTES,
                "{}: {size} bytes is not a spend file (at most {MAX_SPEND_FILE_BYTES} bytes); split it",
                file.display()
            );
            let bytes = std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let lines = match leadsift_formats::parse_spend_csv(&bytes, &settings.reports.currency()?) {
                Ok(lines) => lines,
                Err(errors) => {
                    for error in &errors.errors {
                        eprintln!("{}:{}: {}", file.display(), error.line, error.message);
                    }
                    if errors.more > 0 {
                        eprintln!("{}: … and {} more errors", file.display(), errors.more);
                    }
                    eprintln!("{}: nothing imported; fix the lines above and import the file again", file.display());
                    return Ok(ExitCode::FAILURE);
                }
            };
            let store = connect_store(settings).await?;
            let outcome = store.import_spend(&lines, Utc::now()).await?;
            writeln!(
                std::io::stdout(),
                "{}: {} lines: {} new, {} updated, {} unchanged",
                file.display(),
                lines.len(),
                outcome.inserted,
                outcome.updated,
                outcome.unchanged
            )?;
        }
        SpendCommand::List { from, to, json } => {
            let store = connect_store(settings).await?;
            let mut out = std::io::stdout().lock();
            for line in store.spend(from, to).await? {
                if json {
                    writeln!(out, "{}", serde_json::to_string(&line)?)?;
                } else {
                    writeln!(
                        out,
                        "{}  {:<16} {:<20} {:>14} {}",
                        line.date, line.source, line.campaign, line.amount, line.currency
                    )?;
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn report(settings: &Settings, args: ReportArgs) -> anyhow::Result<ExitCode> {
    let period = period(settings, args.from, args.to, args.currency.as_deref())?;
    let store = connect_store(settings).await?;
    let report = store.report(&period).await?;
    let text = render_report(&report, args.format, args.only.as_deref())?;
    std::io::stdout().write_all(text.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}
