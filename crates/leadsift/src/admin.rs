//! Management commands: leads, black/allowlists, rules check, quarantine.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use chrono::{DateTime, Utc};
use leadsift_core::{
    EntryOrigin, IdentityKind, JunkReason, LeadFilter, LeadStage, LeadStore, ListKind, NewListEntry, SourceRef,
    StageMove, lists::is_free_mail,
};
use leadsift_rules::RuleSet;

use crate::app::connect_store;
use crate::config::Settings;

#[derive(Debug, clap::Subcommand)]
pub enum LeadsCommand {
    /// List leads, review leads first.
    List {
        /// Only leads in this stage (contact_client, qualification, offer, converted, junk).
        #[arg(long)]
        stage: Option<LeadStage>,
        /// Only leads flagged for review.
        #[arg(long)]
        review: bool,
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// One lead with its reasons and stage history.
    Show {
        id: i64,
        #[arg(long)]
        json: bool,
    },
    /// Move a lead to another stage.
    Move {
        id: i64,
        stage: LeadStage,
        /// For junk: spam, non_target, duplicate or other. Otherwise a free-text note.
        #[arg(long)]
        reason: Option<String>,
        /// Free-text note recorded with the move.
        #[arg(long)]
        note: Option<String>,
        /// Who is moving it (recorded in the history).
        #[arg(long, env = "USER", default_value = "cli")]
        actor: String,
    },
    /// Convert an open lead into contact + company + deal (one transaction).
    Convert(crate::sales::ConvertArgs),
}

#[derive(Debug, clap::Subcommand)]
pub enum ListCommand {
    /// Add an email address, domain, phone or messenger handle (kind guessed from the spelling).
    Add {
        value: String,
        #[arg(long)]
        kind: Option<IdentityKind>,
        #[arg(long, default_value = "added by an admin")]
        reason: String,
        /// Expiry: a duration such as 30d, 12h, or an RFC 3339 time.
        #[arg(long)]
        expires: Option<String>,
        /// Allow blacklisting a whole free-mail domain (gmail.com, mail.ru, …).
        #[arg(long)]
        force: bool,
        #[arg(long, env = "USER", default_value = "cli")]
        actor: String,
    },
    /// Remove an entry (recorded in the audit trail).
    Remove {
        value: String,
        #[arg(long)]
        kind: Option<IdentityKind>,
        #[arg(long, default_value = "removed by an admin")]
        reason: String,
        #[arg(long, env = "USER", default_value = "cli")]
        actor: String,
    },
    /// Active entries, or the audit trail with --audit.
    List {
        #[arg(long)]
        audit: bool,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum RulesCommand {
    /// Validate a rules file; prints every error as FILE:LINE:COLUMN: message.
    Check { file: PathBuf },
}

#[derive(Debug, clap::Subcommand)]
pub enum QuarantineCommand {
    /// Recent quarantined inputs.
    List {
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
}

pub fn rules(command: &RulesCommand) -> anyhow::Result<ExitCode> {
    let RulesCommand::Check { file } = command;
    match RuleSet::load(file) {
        Ok(rules) => {
            writeln!(
                std::io::stdout(),
                "{}: ok, {} rules (schema version {})",
                file.display(),
                rules.rules().count(),
                rules.version()
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Err(errors) => {
            eprintln!("{errors}");
            Ok(ExitCode::FAILURE)
        }
    }
}

pub async fn leads(settings: &Settings, command: LeadsCommand) -> anyhow::Result<ExitCode> {
    if let LeadsCommand::Convert(args) = command {
        return crate::sales::convert(settings, args).await;
    }
    let store = connect_store(settings).await?;
    match command {
        LeadsCommand::List { stage, review, limit, json } => {
            let filter = LeadFilter { stage, needs_review: review.then_some(true), limit: Some(limit) };
            let leads = store.leads(&filter).await?;
            if json {
                for lead in &leads {
                    writeln!(std::io::stdout(), "{}", serde_json::to_string(lead)?)?;
                }
            } else {
                for lead in &leads {
                    let flag = if lead.needs_review { " [review]" } else { "" };
                    let junk = lead.junk_reason.map(|r| format!(" ({r})")).unwrap_or_default();
                    let client = if lead.returning_client { "returning" } else { "new" };
                    writeln!(
                        std::io::stdout(),
                        "{:>6}  {}{junk}{flag}  {}  {} client  {}",
                        lead.id,
                        settings.stage_name(lead.stage),
                        lead.channel,
                        client,
                        lead.title
                    )?;
                }
            }
        }
        LeadsCommand::Show { id, json } => {
            let lead = store.lead(id).await?.with_context(|| format!("lead {id} not found"))?;
            let history = store.lead_history(id).await?;
            if json {
                writeln!(std::io::stdout(), "{}", serde_json::json!({ "lead": lead, "history": history }))?;
            } else {
                writeln!(std::io::stdout(), "lead {}: {}", lead.id, lead.title)?;
                writeln!(
                    std::io::stdout(),
                    "stage: {}{}",
                    settings.stage_name(lead.stage),
                    lead.junk_reason.map(|r| format!(" ({r})")).unwrap_or_default()
                )?;
                if let Some(note) = &lead.review_note {
                    writeln!(std::io::stdout(), "needs review: {note}")?;
                }
                writeln!(std::io::stdout(), "verdict: {} ({:.2})", lead.verdict, lead.confidence)?;
                for reason in &lead.reasons {
                    writeln!(std::io::stdout(), "  - {}: {}", reason.rule, reason.description)?;
                }
                let ids: Vec<String> = lead.identities.iter().map(ToString::to_string).collect();
                writeln!(
                    std::io::stdout(),
                    "contact: {} ({})",
                    ids.join(", "),
                    if lead.returning_client { "returning" } else { "new" }
                )?;
                writeln!(
                    std::io::stdout(),
                    "source: {} / {}",
                    lead.source.as_deref().unwrap_or("-"),
                    lead.campaign.as_deref().unwrap_or("-")
                )?;
                for change in history {
                    writeln!(
                        std::io::stdout(),
                        "  {} {} → {} by {}{}",
                        change.at.format("%Y-%m-%d %H:%M"),
                        change.from.map_or("-".to_owned(), |s| s.to_string()),
                        change.to,
                        change.actor,
                        change.reason.map(|r| format!(": {r}")).unwrap_or_default()
                    )?;
                }
            }
        }
        LeadsCommand::Move { id, stage, reason, note, actor } => {
            let (junk_reason, note) = match stage {
                LeadStage::Junk => {
                    let reason = reason.context("moving to junk needs --reason spam|non_target|duplicate|other")?;
                    (Some(reason.parse::<JunkReason>()?), note)
                }
                _ => (None, note.or(reason)),
            };
            let change =
                store.move_lead(&StageMove { lead_id: id, to: stage, junk_reason, actor, note }, Utc::now()).await?;
            writeln!(
                std::io::stdout(),
                "lead {id}: {} → {}",
                change.from.map_or("-".to_owned(), |s| settings.stage_name(s)),
                settings.stage_name(change.to)
            )?;
            let label = change.from.and_then(|from| leadsift_core::label_for_move(from, change.to, change.junk_reason));
            if let Some(label) = label {
                writeln!(std::io::stdout(), "its messages are labelled {label} for the model")?;
                crate::model_cmd::update_model(settings, &store).await?;
            }
        }
        LeadsCommand::Convert(_) => unreachable!("handled above"),
    }
    store.close().await;
    Ok(ExitCode::SUCCESS)
}

fn parse_target(value: &str, kind: Option<IdentityKind>, region: &str) -> anyhow::Result<SourceRef> {
    let target = match kind {
        Some(kind) => SourceRef::parse(kind, value, region),
        None => SourceRef::guess(value, region),
    };
    target.with_context(|| format!("cannot use {value:?} as a list entry"))
}

fn parse_expiry(raw: &str, now: DateTime<Utc>) -> anyhow::Result<DateTime<Utc>> {
    if let Ok(at) = DateTime::parse_from_rfc3339(raw) {
        return Ok(at.with_timezone(&Utc));
    }
    let (number, unit) = raw.split_at(raw.len().saturating_sub(1));
    let n: i64 =
        number.parse().with_context(|| format!("invalid expiry {raw:?}: use 30d, 12h, 45m or an RFC 3339 time"))?;
    let delta = match unit {
        "d" => chrono::Duration::days(n),
        "h" => chrono::Duration::hours(n),
        "m" => chrono::Duration::minutes(n),
        _ => anyhow::bail!("invalid expiry {raw:?}: use 30d, 12h, 45m or an RFC 3339 time"),
    };
    Ok(now + delta)
}

pub async fn list(settings: &Settings, list: ListKind, command: ListCommand) -> anyhow::Result<ExitCode> {
    let region = settings.intake.default_region.clone();
    let now = Utc::now();
    let store = connect_store(settings).await?;
    match command {
        ListCommand::Add { value, kind, reason, expires, force, actor } => {
            let target = parse_target(&value, kind, &region)?;
            if let SourceRef::Domain(domain) = &target
                && list == ListKind::Blacklist
                && is_free_mail(domain)
                && !force
            {
                anyhow::bail!(
                    "{domain} is a free-mail domain shared by millions of people; blacklist single addresses, \
                     or pass --force if you really mean the whole domain"
                );
            }
            let expires_at = expires.as_deref().map(|e| parse_expiry(e, now)).transpose()?;
            let entry = NewListEntry { list, target, reason, origin: EntryOrigin::Admin, actor, expires_at };
            let stored = store.add_list_entry(&entry, now).await?;
            writeln!(std::io::stdout(), "{list}: {} (entry {}, {})", stored.target, stored.id, stored.reason)?;
        }
        ListCommand::Remove { value, kind, reason, actor } => {
            let target = parse_target(&value, kind, &region)?;
            if !store.remove_list_entry(list, &target, &actor, &reason, now).await? {
                anyhow::bail!("{target} is not on the {list}");
            }
            writeln!(std::io::stdout(), "{list}: removed {target}")?;
        }
        ListCommand::List { audit: false, json } => {
            for entry in store.list_entries(list, now).await? {
                if json {
                    writeln!(std::io::stdout(), "{}", serde_json::to_string(&entry)?)?;
                } else {
                    let expiry = entry.expires_at.map(|e| format!(" until {}", e.to_rfc3339())).unwrap_or_default();
                    writeln!(
                        std::io::stdout(),
                        "{}\t{}\t{}\t{}{expiry}",
                        entry.target,
                        entry.origin.as_str(),
                        entry.created_by,
                        entry.reason
                    )?;
                }
            }
        }
        ListCommand::List { audit: true, json } => {
            for record in store.list_audit(list, 1000).await? {
                if json {
                    writeln!(std::io::stdout(), "{}", serde_json::to_string(&record)?)?;
                } else {
                    writeln!(
                        std::io::stdout(),
                        "{}\t{}\t{}\t{}\t{}",
                        record.at.to_rfc3339(),
                        record.action,
                        record.target,
                        record.actor,
                        record.reason
                    )?;
                }
            }
        }
    }
    store.close().await;
    Ok(ExitCode::SUCCESS)
}

pub async fn quarantine(settings: &Settings, command: QuarantineCommand) -> anyhow::Result<ExitCode> {
    let QuarantineCommand::List { limit, json } = command;
    let store = connect_store(settings).await?;
    for (id, record) in store.quarantined(limit).await? {
        if json {
            writeln!(
                std::io::stdout(),
                "{}",
                serde_json::json!({ "id": id, "origin": record.origin, "channel": record.channel,
                    "error": record.error, "bytes": record.raw.len(), "at": record.at })
            )?;
        } else {
            writeln!(std::io::stdout(), "{id}\t{}\t{}\t{}", record.at.to_rfc3339(), record.origin, record.error)?;
        }
    }
    store.close().await;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_accepts_durations_and_times() {
        let now = Utc::now();
        assert_eq!(parse_expiry("30d", now).unwrap(), now + chrono::Duration::days(30));
        assert_eq!(parse_expiry("2h", now).unwrap(), now + chrono::Duration::hours(2));
        assert!(parse_expiry("2026-12-01T00:00:00Z", now).is_ok());
        assert!(parse_expiry("soon", now).is_err());
    }
}
