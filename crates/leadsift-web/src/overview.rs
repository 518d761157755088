//! The overview page: what ops watch. The pipeline's own counters (intake
//! per channel, verdicts, queue depth, triage latency, rules reloads,
//! quarantine) come from this process's Prometheus registry; the verdict
//! mix of the last 24 hours, the totals, the leads per stage and the last
//! errors come from the store. The live part refreshes itself every 10 s
//! from `/overview/live` (a few lines of script; the page works without).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use axum::Extension;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse, Response};
use chrono::Utc;
use leadsift_core::{LeadStore, Session, Verdict};

use crate::WebState;
use crate::html::{Lang, escape, page};
use crate::pages::{stage_name, store_error};

/// Sums of a metric family's samples by one label (or "" without it).
fn sums(metrics: &leadsift_pipeline::Metrics, name: &str, label: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for family in metrics.registry.gather().iter().filter(|f| f.name() == format!("leadsift_{name}")) {
        for metric in family.get_metric() {
            let key =
                metric.get_label().iter().find(|l| l.name() == label).map(|l| l.value().to_owned()).unwrap_or_default();
            // A sample is a counter or a gauge; the other part reads 0.
            let value = metric.get_counter().get_value() + metric.get_gauge().get_value();
            *out.entry(key).or_default() += value;
        }
    }
    out
}

/// Mean triage latency in milliseconds since start.
fn mean_latency_ms(metrics: &leadsift_pipeline::Metrics) -> Option<f64> {
    let histogram = &metrics.triage_latency;
    let count = histogram.get_sample_count();
    (count > 0).then(|| histogram.get_sample_sum() / count as f64 * 1000.0)
}

const VERDICT_COLOURS: [(Verdict, &str); 5] = [
    (Verdict::Inquiry, "#2f8f4e"),
    (Verdict::Spam, "#c0392b"),
    (Verdict::Newsletter, "#7f8c8d"),
    (Verdict::BankStatement, "#2c6fbb"),
    (Verdict::NonTarget, "#d68910"),
];

/// Stacked bars of messages per hour by verdict.
fn verdict_chart(hours: &[(i64, Verdict, i64)], since_ms: i64) -> String {
    let mut per_hour: BTreeMap<i64, BTreeMap<Verdict, i64>> = BTreeMap::new();
    for (hour, verdict, n) in hours {
        *per_hour.entry(*hour).or_default().entry(*verdict).or_default() += n;
    }
    let max = per_hour.values().map(|v| v.values().sum::<i64>()).max().unwrap_or(0).max(1);
    let first_hour = since_ms / 3_600_000;
    let mut svg = String::from(
        "<svg class=\"chart\" id=\"verdict-mix\" role=\"img\" aria-label=\"verdicts per hour\" viewBox=\"0 0 620 150\" width=\"620\" height=\"150\">",
    );
    for slot in 0..24i64 {
        let hour = (first_hour + slot + 1) * 3_600_000;
        let x = slot * 25 + 10;
        let mut y = 130.0;
        if let Some(verdicts) = per_hour.get(&hour) {
            for (verdict, colour) in VERDICT_COLOURS {
                let n = verdicts.get(&verdict).copied().unwrap_or(0);
                if n == 0 {
                    continue;
                }
                let h = n as f64 / max as f64 * 120.0;
                y -= h;
                let _ = write!(
                    svg,
                    "<rect x=\"{x}\" y=\"{y:.1}\" width=\"20\" height=\"{h:.1}\" fill=\"{colour}\"><title>{verdict}: {n}</title></rect>"
                );
            }
        }
    }
    let _ = write!(
        svg,
        "<text x=\"10\" y=\"145\" font-size=\"11\">−24 h</text><text x=\"575\" y=\"145\" font-size=\"11\">now</text>"
    );
    let mut x = 120;
    for (verdict, colour) in VERDICT_COLOURS {
        let _ = write!(
            svg,
            "<rect x=\"{x}\" y=\"136\" width=\"9\" height=\"9\" fill=\"{colour}\"></rect><text x=\"{}\" y=\"145\" font-size=\"11\">{verdict}</text>",
            x + 12
        );
        x += 90;
    }
    svg.push_str("</svg>");
    svg
}

fn table(out: &mut String, title: &str, rows: &BTreeMap<String, f64>) {
    let _ = write!(out, "<div class=\"card\"><h3>{}</h3><table>", escape(title));
    if rows.is_empty() {
        out.push_str("<tr><td>-</td></tr>");
    }
    for (key, value) in rows {
        let key = if key.is_empty() { "-" } else { key };
        let _ = write!(out, "<tr><td>{}</td><td class=\"n\">{value}</td></tr>", escape(key));
    }
    out.push_str("</table></div>");
}

/// The part of the overview that refreshes.
async fn live(state: &WebState, lang: Lang) -> Result<String, leadsift_core::StoreError> {
    let now = Utc::now();
    let since = now - chrono::Duration::hours(24);
    let hours = state.store.verdicts_by_hour(since).await?;
    let counts = state.store.message_counts().await?;
    let stages = state.store.lead_stage_counts().await?;
    let quarantined = state.store.quarantined(5).await?;
    let mut out =
        format!("<p class=\"muted\">{} {}</p>", lang.t("Updated", "Обновлено"), now.format("%Y-%m-%d %H:%M:%S UTC"));
    let _ = write!(
        out,
        "<div class=\"card\"><h2>{}</h2>{}</div>",
        lang.t("Verdicts per hour, last 24 h", "Вердикты по часам за сутки"),
        verdict_chart(&hours, since.timestamp_millis())
    );
    out.push_str("<div class=\"grid\">");
    if let Some(metrics) = &state.metrics {
        let mut pipeline = BTreeMap::new();
        pipeline.insert(lang.t("queue depth", "очередь").to_owned(), sums(metrics, "queue_depth", "").values().sum());
        if let Some(ms) = mean_latency_ms(metrics) {
            pipeline.insert(
                lang.t("mean triage latency, ms", "средняя задержка, мс").to_owned(),
                (ms * 100.0).round() / 100.0,
            );
        }
        pipeline
            .insert(lang.t("rules in force", "правил").to_owned(), sums(metrics, "rules_loaded", "").values().sum());
        pipeline.insert(
            lang.t("quarantined since start", "в карантине с запуска").to_owned(),
            sums(metrics, "quarantined_total", "").values().sum(),
        );
        table(&mut out, lang.t("Pipeline (this process)", "Конвейер (этот процесс)"), &pipeline);
        table(
            &mut out,
            lang.t("Intake per channel since start", "Приём по каналам с запуска"),
            &sums(metrics, "intake_messages_total", "channel"),
        );
        table(
            &mut out,
            lang.t("Verdicts since start", "Вердикты с запуска"),
            &sums(metrics, "messages_triaged_total", "verdict"),
        );
        table(
            &mut out,
            lang.t("Rules reloads", "Перезагрузки правил"),
            &sums(metrics, "rules_reloads_total", "result"),
        );
    }
    let by_channel: BTreeMap<String, f64> =
        counts.rows.iter().fold(BTreeMap::new(), |mut acc, (channel, verdict, n)| {
            *acc.entry(format!("{channel} · {verdict}")).or_default() += *n as f64;
            acc
        });
    table(
        &mut out,
        lang.t("Stored messages by channel and verdict", "Сообщения в базе по каналам и вердиктам"),
        &by_channel,
    );
    let stages: BTreeMap<String, f64> =
        stages.iter().map(|(stage, n)| (stage_name(state, *stage), *n as f64)).collect();
    table(&mut out, lang.t("Leads by stage", "Лиды по стадиям"), &stages);
    out.push_str("</div>");
    let _ = write!(
        out,
        "<div class=\"card\"><h2>{}</h2><table id=\"last-errors\">",
        lang.t("Last errors (quarantine)", "Последние ошибки (карантин)")
    );
    if quarantined.is_empty() {
        let _ = write!(out, "<tr><td>{}</td></tr>", lang.t("none", "нет"));
    }
    for (id, record) in quarantined {
        let _ = write!(
            out,
            "<tr><td>{id}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            record.at.format("%Y-%m-%d %H:%M"),
            escape(&record.origin),
            escape(&record.error)
        );
    }
    out.push_str("</table></div>");
    Ok(out)
}

pub async fn overview(
    State(state): State<WebState>,
    Extension(session): Extension<Session>,
    headers: HeaderMap,
) -> Response {
    let lang = Lang::of(&headers);
    let live = match live(&state, lang).await {
        Ok(live) => live,
        Err(error) => return store_error(error),
    };
    let body = format!(
        "<h1>{}</h1><div id=\"live\">{live}</div><script>setInterval(()=>fetch('/overview/live',{{credentials:'same-origin'}})\
         .then(r=>r.ok?r.text():null).then(t=>{{if(t)document.getElementById('live').innerHTML=t}}),10000)</script>",
        lang.t("Overview", "Обзор")
    );
    Html(page(lang, lang.t("Overview", "Обзор"), Some(&session), &body)).into_response()
}

pub async fn overview_live(State(state): State<WebState>, headers: HeaderMap) -> Response {
    match live(&state, Lang::of(&headers)).await {
        Ok(live) => Html(live).into_response(),
        Err(error) => store_error(error),
    }
}
