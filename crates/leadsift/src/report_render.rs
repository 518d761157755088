//! Renders a [`Report`] as a table, JSON or CSV. `leadsift report` and
//! `GET /api/reports` both call [`render_report`], so they return the same
//! numbers in the same shape.
//!
//! Every report section is a list of flat rows; the renderers work on
//! their JSON form, so a figure added to a row type shows up in all three
//! formats without touching this file. CSV is in long form — one line per
//! figure: `report,source,channel,campaign,reason,verdict,metric,value` —
//! which pivots in any spreadsheet.

use std::fmt::Write as _;

use anyhow::Context;
use leadsift_core::Report;
use leadsift_core::report::REPORT_NAMES;
use serde_json::{Map, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReportFormat {
    #[default]
    Table,
    Json,
    Csv,
}

/// Row fields that identify a row; the others are figures.
const DIMENSIONS: [&str; 5] = ["source", "channel", "campaign", "reason", "verdict"];

fn title(name: &str) -> &'static str {
    match name {
        "client_mix" => "1. Inquiries from new vs returning clients",
        "acquisition_cost" => "2. Cost of acquiring a new client",
        "source_effectiveness" => "3. Most effective sources",
        "conversions" => "4. Inquiries converted into deals",
        "deal_outcomes" => "5. Deals won vs lost",
        "lost_reasons" => "5b. Lost reasons",
        "deals_in_progress" => "6. Deals in progress during the period",
        "spend_vs_revenue" => "7. Ad spend vs revenue",
        "messages_by_verdict" => "Triage: messages by verdict and channel",
        "junk_by_reason" => "Triage: junk by reason",
        "blacklist" => "Triage: blacklist growth",
        _ => "",
    }
}

/// The sections to render, as (name, rows).
/// A report section: its name and its rows.
type Section = (&'static str, Vec<Map<String, Value>>);

fn sections(report: &Report, only: Option<&str>) -> anyhow::Result<Vec<Section>> {
    if let Some(name) = only {
        anyhow::ensure!(
            REPORT_NAMES.contains(&name),
            "unknown report {name:?} (expected one of {})",
            REPORT_NAMES.join(", ")
        );
    }
    let whole = serde_json::to_value(report).context("encoding the report")?;
    let mut out = Vec::new();
    for name in REPORT_NAMES {
        if only.is_some_and(|o| o != name) {
            continue;
        }
        let rows = match &whole[name] {
            Value::Array(rows) => rows.iter().filter_map(|r| r.as_object().cloned()).collect(),
            Value::Object(row) => vec![row.clone()],
            _ => Vec::new(),
        };
        out.push((name, rows));
    }
    Ok(out)
}

pub fn render_report(report: &Report, format: ReportFormat, only: Option<&str>) -> anyhow::Result<String> {
    let sections = sections(report, only)?;
    match format {
        ReportFormat::Json => {
            let mut object = Map::new();
            object.insert("period".into(), serde_json::to_value(&report.period)?);
            for (name, rows) in sections {
                let value = if name == "blacklist" {
                    rows.into_iter().next().map(Value::Object).unwrap_or(Value::Null)
                } else {
                    Value::Array(rows.into_iter().map(Value::Object).collect())
                };
                object.insert(name.into(), value);
            }
            if only.is_none() {
                object.insert("currency_note".into(), serde_json::to_value(&report.currency_note)?);
            }
            Ok(serde_json::to_string_pretty(&Value::Object(object))? + "\n")
        }
        ReportFormat::Csv => {
            let mut writer = csv::Writer::from_writer(Vec::new());
            writer.write_record(["report", "source", "channel", "campaign", "reason", "verdict", "metric", "value"])?;
            for (name, rows) in sections {
                for row in rows {
                    let dims: Vec<String> = DIMENSIONS.iter().map(|d| plain(row.get(*d))).collect();
                    for (metric, value) in row.iter().filter(|(k, _)| !DIMENSIONS.contains(&k.as_str())) {
                        let mut record = vec![name.to_owned()];
                        record.extend(dims.iter().cloned());
                        record.push(metric.clone());
                        record.push(plain(Some(value)));
                        writer.write_record(&record)?;
                    }
                }
            }
            Ok(String::from_utf8(writer.into_inner().context("writing CSV")?)?)
        }
        ReportFormat::Table => {
            let mut text = format!(
                "Reports {} – {} (UTC{}), money in {}\n",
                report.period.from, report.period.to, report.period.utc_offset, report.period.currency
            );
            for (name, rows) in sections {
                let _ = write!(text, "\n{}\n", title(name));
                table(&mut text, &rows);
            }
            let note = &report.currency_note;
            if note.deals_in_other_currencies + note.spend_lines_in_other_currencies > 0 && only.is_none() {
                let _ = writeln!(
                    text,
                    "\nNot summed (other currencies): {} deals, {} spend lines",
                    note.deals_in_other_currencies, note.spend_lines_in_other_currencies
                );
            }
            Ok(text)
        }
    }
}

fn plain(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// Rates and ROI as percentages; everything else as is.
fn cell(key: &str, value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => "-".to_owned(),
        Some(Value::Number(n)) if key.ends_with("_share") || key.ends_with("_rate") || key == "roi" => {
            format!("{:.1}%", n.as_f64().unwrap_or(0.0) * 100.0)
        }
        Some(other) => plain(Some(other)),
    }
}

fn table(text: &mut String, rows: &[Map<String, Value>]) {
    let Some(first) = rows.first() else {
        text.push_str("  (nothing in this period)\n");
        return;
    };
    // Identifying columns first, then the figures (alphabetical: serde_json's map is sorted).
    let mut keys: Vec<&String> = DIMENSIONS.iter().filter_map(|d| first.get_key_value(*d).map(|(k, _)| k)).collect();
    keys.extend(first.keys().filter(|k| !DIMENSIONS.contains(&k.as_str())));
    let cells: Vec<Vec<String>> = rows.iter().map(|row| keys.iter().map(|k| cell(k, row.get(*k))).collect()).collect();
    let widths: Vec<usize> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| cells.iter().map(|r| r[i].chars().count()).max().unwrap_or(0).max(k.chars().count()))
        .collect();
    let line = |values: Vec<&str>| -> String {
        let mut out = String::from(" ");
        for (i, value) in values.iter().enumerate() {
            let pad = widths[i].saturating_sub(value.chars().count());
            if DIMENSIONS.contains(&keys[i].as_str()) {
                let _ = write!(out, " {value}{}", " ".repeat(pad));
            } else {
                let _ = write!(out, " {}{value}", " ".repeat(pad));
            }
        }
        out.trim_end().to_owned() + "\n"
    };
    text.push_str(&line(keys.iter().map(|k| k.as_str()).collect()));
    for row in &cells {
        text.push_str(&line(row.iter().map(String::as_str).collect()));
    }
}
