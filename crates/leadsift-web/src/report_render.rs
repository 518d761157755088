//! Renders a [`Report`] as a table, JSON, CSV or HTML. `leadsift report`,
//! `GET /api/reports` and the web UI's reports page all call these, so they
//! return the same numbers in the same shape.
//!
//! Every report section is a list of flat rows; the renderers work on
//! their JSON form, so a figure added to a row type shows up in all three
//! formats without touching this file. CSV is in long form — one line per
//! figure: `report,source,channel,campaign,reason,verdict,metric,value` —
//! which pivots in any spreadsheet.

use std::fmt::Write as _;

use leadsift_core::Report;
use leadsift_core::report::REPORT_NAMES;
use serde_json::{Map, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReportFormat {
    #[default]
    Table,
    Json,
    Csv,
}

impl std::str::FromStr for ReportFormat {
    type Err = String;
    fn from_str(raw: &str) -> Result<Self, String> {
        match raw {
            "table" => Ok(Self::Table),
            "json" => Ok(Self::Json),
            "csv" => Ok(Self::Csv),
            _ => Err(format!("unknown format {raw:?} (expected table, json, csv)")),
        }
    }
}

impl std::fmt::Display for ReportFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Table => "table",
            Self::Json => "json",
            Self::Csv => "csv",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("unknown report {name:?} (expected one of {})", REPORT_NAMES.join(", "))]
    UnknownReport { name: String },
    #[error("cannot encode the report: {0}")]
    Encoding(String),
}

fn encoding(error: impl std::fmt::Display) -> RenderError {
    RenderError::Encoding(error.to_string())
}

/// Row fields that identify a row; the others are figures.
pub(crate) const DIMENSIONS: [&str; 5] = ["source", "channel", "campaign", "reason", "verdict"];

pub(crate) fn title(name: &str) -> &'static str {
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

pub(crate) fn sections(report: &Report, only: Option<&str>) -> Result<Vec<Section>, RenderError> {
    if let Some(name) = only
        && !REPORT_NAMES.contains(&name)
    {
        return Err(RenderError::UnknownReport { name: name.to_owned() });
    }
    let whole = serde_json::to_value(report).map_err(encoding)?;
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

pub fn render_report(report: &Report, format: ReportFormat, only: Option<&str>) -> Result<String, RenderError> {
    let sections = sections(report, only)?;
    match format {
        ReportFormat::Json => {
            let mut object = Map::new();
            object.insert("period".into(), serde_json::to_value(&report.period).map_err(encoding)?);
            for (name, rows) in sections {
                let value = if name == "blacklist" {
                    rows.into_iter().next().map(Value::Object).unwrap_or(Value::Null)
                } else {
                    Value::Array(rows.into_iter().map(Value::Object).collect())
                };
                object.insert(name.into(), value);
            }
            if only.is_none() {
                object.insert("currency_note".into(), serde_json::to_value(&report.currency_note).map_err(encoding)?);
            }
            Ok(serde_json::to_string_pretty(&Value::Object(object)).map_err(encoding)? + "\n")
        }
        ReportFormat::Csv => {
            let mut writer = csv::Writer::from_writer(Vec::new());
            writer
                .write_record(["report", "source", "channel", "campaign", "reason", "verdict", "metric", "value"])
                .map_err(encoding)?;
            for (name, rows) in sections {
                for row in rows {
                    let dims: Vec<String> = DIMENSIONS.iter().map(|d| plain(row.get(*d))).collect();
                    for (metric, value) in row.iter().filter(|(k, _)| !DIMENSIONS.contains(&k.as_str())) {
                        let mut record = vec![name.to_owned()];
                        record.extend(dims.iter().cloned());
                        record.push(metric.clone());
                        record.push(plain(Some(value)));
                        writer.write_record(&record).map_err(encoding)?;
                    }
                }
            }
            String::from_utf8(writer.into_inner().map_err(encoding)?).map_err(encoding)
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
pub(crate) fn cell(key: &str, value: Option<&Value>) -> String {
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

/// Every section as an HTML table (plus a bar chart where one helps), for
/// the web UI's reports page.
pub fn render_html(report: &Report, lang: crate::html::Lang) -> Result<String, RenderError> {
    use crate::html::escape;
    let mut out = String::new();
    for (name, rows) in sections(report, None)? {
        let _ = write!(out, "<div class=\"card\" id=\"report-{name}\"><h2>{}</h2>", escape(title(name)));
        if let Some(chart) = chart(name, &rows) {
            out.push_str(&chart);
        }
        let Some(first) = rows.first() else {
            let _ = write!(out, "<p>{}</p></div>", lang.t("Nothing in this period.", "Нет данных за период."));
            continue;
        };
        let mut keys: Vec<&String> =
            DIMENSIONS.iter().filter_map(|d| first.get_key_value(*d).map(|(k, _)| k)).collect();
        keys.extend(first.keys().filter(|k| !DIMENSIONS.contains(&k.as_str())));
        out.push_str("<table><tr>");
        for key in &keys {
            let _ = write!(out, "<th>{}</th>", escape(&key.replace('_', " ")));
        }
        out.push_str("</tr>");
        for row in &rows {
            let total = row.get("source").and_then(Value::as_str) == Some("total");
            out.push_str(if total { "<tr class=\"total\">" } else { "<tr>" });
            for key in &keys {
                let class = if DIMENSIONS.contains(&key.as_str()) { "" } else { " class=\"n\"" };
                let _ = write!(out, "<td{class}>{}</td>", escape(&cell(key, row.get(*key))));
            }
            out.push_str("</tr>");
        }
        out.push_str("</table></div>");
    }
    Ok(out)
}

/// A horizontal bar chart (inline SVG, no script) of the figure that
/// matters most in a section, by source.
fn chart(name: &str, rows: &[Map<String, Value>]) -> Option<String> {
    let metric = match name {
        "client_mix" | "conversions" => "inquiries",
        "source_effectiveness" => "won_revenue",
        "spend_vs_revenue" => "spend",
        "deal_outcomes" => "won_amount",
        _ => return None,
    };
    let bars: Vec<(String, f64)> = rows
        .iter()
        .filter(|row| row.get("source").and_then(Value::as_str) != Some("total"))
        .filter_map(|row| {
            let label = DIMENSIONS
                .iter()
                .filter_map(|d| row.get(*d).and_then(Value::as_str).filter(|v| !v.is_empty()))
                .collect::<Vec<_>>()
                .join(" · ");
            let value = match row.get(metric)? {
                Value::Number(n) => n.as_f64()?,
                Value::String(s) => s.parse().ok()?,
                _ => return None,
            };
            Some((label, value))
        })
        .collect();
    let max = bars.iter().map(|(_, v)| *v).fold(0.0, f64::max);
    if bars.is_empty() || max <= 0.0 {
        return None;
    }
    let height = bars.len() * 22 + 8;
    let mut svg = format!(
        "<svg class=\"chart\" role=\"img\" aria-label=\"{metric}\" viewBox=\"0 0 640 {height}\" width=\"640\" height=\"{height}\">"
    );
    for (i, (label, value)) in bars.iter().enumerate() {
        let y = i * 22 + 4;
        let width = (value / max * 380.0).max(1.0);
        let _ = write!(
            svg,
            "<text x=\"0\" y=\"{ty}\" font-size=\"12\">{label}</text><rect x=\"200\" y=\"{y}\" width=\"{width:.1}\" height=\"16\" fill=\"#4a7bd0\"></rect>\
             <text x=\"{tx:.1}\" y=\"{ty}\" font-size=\"12\">{value}</text>",
            ty = y + 12,
            tx = 206.0 + width,
            label = crate::html::escape(&label.chars().take(30).collect::<String>()),
            value = if value.fract() == 0.0 { format!("{value:.0}") } else { format!("{value:.2}") },
        );
    }
    svg.push_str("</svg>");
    Some(svg)
}
