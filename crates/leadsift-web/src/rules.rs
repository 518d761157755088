//! The rules page (admin): the rules in force with their hit counts, a
//! tester that shows a pasted message's verdict under the current rules
//! and under an edited draft, a dry run of the draft over the newest
//! stored messages ("this change would flip N verdicts"), and saving the
//! draft — written atomically to the rules file, which the daemon then
//! reloads (a draft that does not compile is never written).

use std::fmt::Write as _;
use std::sync::Arc;

use axum::Extension;
use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use leadsift_core::{Classification, Classifier, Message, SenderStanding, Session};
use leadsift_rules::RuleSet;
use prometheus::core::Collector as _;
use serde::Deserialize;

use crate::WebState;
use crate::html::{Lang, escape, page};

/// Messages a dry run replays at most.
const MAX_DRY_RUN: u32 = 5_000;

/// The rules in force, the model if triage uses one, and the counters.
#[derive(Debug, Clone)]
pub struct RulesContext {
    pub rules: Arc<leadsift_pipeline::RulesHandle>,
    pub model: Option<Arc<leadsift_pipeline::ModelHandle>>,
    pub metrics: leadsift_pipeline::Metrics,
}

fn classify(context: &RulesContext, rules: &RuleSet, message: &Message) -> Classification {
    let standing = SenderStanding::default();
    match &context.model {
        Some(model) => {
            leadsift_model::CombinedClassifier::new(rules.clone(), model.current()).classify(message, &standing)
        }
        None => rules.classify(message, &standing),
    }
}

/// A pasted message: RFC 822 when it starts with header fields, else the
/// text of an email (first line as the subject when followed by a blank line).
fn pasted_message(raw: &str) -> Result<Message, String> {
    let looks_like_mail = raw.lines().next().is_some_and(|line| {
        line.split_once(':')
            .is_some_and(|(name, _)| !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
    });
    if looks_like_mail {
        return leadsift_formats::parse_rfc822(raw.as_bytes(), &leadsift_formats::ParseOptions::default())
            .map_err(|e| e.to_string());
    }
    let key = leadsift_core::DedupKey::from_upstream_id(leadsift_core::Channel::Email, "rules-tester");
    let mut message = Message::new(leadsift_core::Channel::Email, key, chrono::Utc::now());
    match raw.split_once("\n\n") {
        Some((subject, body)) if !subject.contains('\n') => {
            message.subject = Some(subject.trim().to_owned());
            message.text = body.to_owned();
        }
        _ => message.text = raw.to_owned(),
    }
    Ok(message)
}

fn verdict_html(lang: Lang, title: &str, classification: &Classification) -> String {
    let mut out = format!(
        "<div class=\"card verdict\"><h3>{}</h3><p><b class=\"verdict-class\">{}</b> ({:.2})</p><ul>",
        escape(title),
        classification.verdict,
        classification.confidence
    );
    for reason in &classification.reasons {
        let _ = write!(
            out,
            "<li><code>{}</code> {} ({:+.1})</li>",
            escape(&reason.rule),
            escape(&reason.description),
            reason.score
        );
    }
    if classification.reasons.is_empty() {
        let _ = write!(out, "<li>{}</li>", lang.t("no rule matched", "ни одно правило не сработало"));
    }
    out.push_str("</ul></div>");
    out
}

fn rules_text(context: &RulesContext) -> String {
    context.rules.path().and_then(|path| std::fs::read_to_string(path).ok()).unwrap_or_default()
}

fn page_body(
    state_lang: Lang,
    context: &RulesContext,
    session: &Session,
    draft: &str,
    sample: &str,
    dry_run: u32,
    results: &str,
) -> String {
    let lang = state_lang;
    let rules = context.rules.current();
    let hits: std::collections::HashMap<String, u64> = context
        .metrics
        .rule_hits
        .collect()
        .iter()
        .flat_map(|family| family.get_metric().iter())
        .filter_map(|metric| {
            let rule = metric.get_label().iter().find(|l| l.name() == "rule")?.value().to_owned();
            Some((rule, metric.get_counter().get_value() as u64))
        })
        .collect();
    let mut body = format!("<h1>{}</h1>{results}", lang.t("Rules", "Правила"));
    let file = context.rules.path().map(|p| p.display().to_string());
    let _ = write!(
        body,
        "<form class=\"card\" method=\"post\" action=\"/rules/test\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <h2>{tester}</h2><p><label>{message}<br><textarea name=\"message\" rows=\"8\" cols=\"100\">{sample}</textarea></label><br>\
         <input type=\"file\" accept=\".eml,message/rfc822,text/plain\" id=\"eml\"></p>\
         <p><label>{draft_label} ({file})<br><textarea name=\"draft\" rows=\"16\" cols=\"100\" spellcheck=\"false\">{draft}</textarea></label></p>\
         <p><label>{dry} <input type=\"number\" name=\"dry_run\" min=\"0\" max=\"{MAX_DRY_RUN}\" value=\"{dry_run}\"></label> \
         <button name=\"action\" value=\"test\" id=\"test\">{test}</button> <button name=\"action\" value=\"save\" id=\"save\">{save}</button></p></form>\
         <script>document.getElementById('eml').addEventListener('change',e=>{{const f=e.target.files[0];if(f)f.text().then(t=>{{document.querySelector('textarea[name=message]').value=t}})}})</script>",
        csrf = escape(&session.csrf_token),
        tester = lang.t("Try a message", "Проверить сообщение"),
        message = lang.t(
            "Message (plain text, or a whole .eml with its headers)",
            "Сообщение (текст или целиком .eml с заголовками)"
        ),
        draft_label = lang.t("Draft of the rules file", "Черновик файла правил"),
        file = escape(
            file.as_deref()
                .unwrap_or(lang.t("built-in rules: set rules.path to edit", "встроенные правила: задайте rules.path"))
        ),
        draft = escape(draft),
        dry = lang.t("Dry run over the newest stored messages:", "Прогнать по последним сообщениям:"),
        test = lang.t("Test", "Проверить"),
        save = lang.t("Save the draft", "Сохранить черновик"),
        sample = escape(sample),
    );
    let _ = write!(
        body,
        "<div class=\"card\"><h2>{} ({})</h2><table id=\"rules\"><tr><th>id</th><th>{}</th><th>{}</th><th>{}</th></tr>",
        lang.t("Rules in force", "Действующие правила"),
        rules.rules().count(),
        lang.t("effect", "действие"),
        lang.t("hits since start", "срабатываний"),
        lang.t("description", "описание"),
    );
    for rule in rules.rules() {
        let _ = write!(
            body,
            "<tr><td><code>{}</code></td><td>{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
            escape(rule.id),
            escape(&rule.effect.to_string()),
            hits.get(rule.id).copied().unwrap_or(0),
            escape(rule.description)
        );
    }
    body.push_str("</table></div>");
    body
}

pub async fn rules_page(
    State(state): State<WebState>,
    Extension(session): Extension<Session>,
    headers: HeaderMap,
) -> Response {
    let lang = Lang::of(&headers);
    let Some(context) = &state.rules else { return StatusCode::NOT_FOUND.into_response() };
    let body = page_body(lang, context, &session, &rules_text(context), "", 200, "");
    Html(page(lang, lang.t("Rules", "Правила"), Some(&session), &body)).into_response()
}

#[derive(Debug, Deserialize)]
pub struct TestForm {
    #[serde(default)]
    message: String,
    #[serde(default)]
    draft: String,
    #[serde(default)]
    dry_run: Option<u32>,
    #[serde(default)]
    action: Option<String>,
}

pub async fn rules_test(
    State(state): State<WebState>,
    Extension(session): Extension<Session>,
    headers: HeaderMap,
    Form(form): Form<TestForm>,
) -> Response {
    let lang = Lang::of(&headers);
    let Some(context) = state.rules.clone() else { return StatusCode::NOT_FOUND.into_response() };
    let origin = context.rules.path().map(|p| p.to_path_buf()).unwrap_or_else(|| "draft.toml".into());
    let dry_run = form.dry_run.unwrap_or(0).min(MAX_DRY_RUN);
    let mut results = String::new();
    let draft = match RuleSet::parse(&form.draft, &origin) {
        Ok(draft) => Some(draft),
        Err(errors) => {
            let _ = write!(
                results,
                "<div class=\"card review\" id=\"draft-errors\"><h2>{}</h2><pre>{}</pre></div>",
                lang.t("The draft does not compile", "Черновик содержит ошибки"),
                escape(&errors.to_string())
            );
            None
        }
    };
    let mut status = StatusCode::OK;
    if form.action.as_deref() == Some("save") {
        match (&draft, context.rules.path()) {
            (Some(_), Some(path)) => match save_atomically(path, &form.draft)
                .and_then(|()| context.rules.reload().map(|_| ()).map_err(|e| e.to_string()))
            {
                Ok(()) => {
                    tracing::info!(user = %session.user.username, file = %path.display(), "rules saved from the web UI");
                    let _ = write!(
                        results,
                        "<div class=\"card\" id=\"saved\">{}</div>",
                        lang.t("Saved; the new rules are in force.", "Сохранено; новые правила действуют.")
                    );
                }
                Err(error) => {
                    status = StatusCode::INTERNAL_SERVER_ERROR;
                    let _ = write!(results, "<div class=\"card review\">{}</div>", escape(&error));
                }
            },
            (None, _) => status = StatusCode::UNPROCESSABLE_ENTITY,
            (Some(_), None) => {
                status = StatusCode::CONFLICT;
                let _ = write!(
                    results,
                    "<div class=\"card review\">{}</div>",
                    lang.t("No rules file to save to: set rules.path.", "Некуда сохранять: задайте rules.path.")
                );
            }
        }
    }
    let current = context.rules.current();
    if !form.message.trim().is_empty() {
        match pasted_message(&form.message) {
            Ok(message) => {
                results.push_str(&verdict_html(
                    lang,
                    lang.t("Current rules", "Текущие правила"),
                    &classify(&context, &current, &message),
                ));
                if let Some(draft) = &draft {
                    results.push_str(&verdict_html(
                        lang,
                        lang.t("Draft", "Черновик"),
                        &classify(&context, draft, &message),
                    ));
                }
            }
            Err(error) => {
                let _ = write!(
                    results,
                    "<div class=\"card review\">{}: {}</div>",
                    lang.t("Cannot read the message", "Не удалось разобрать сообщение"),
                    escape(&error)
                );
            }
        }
    }
    if let (Some(draft), true) = (&draft, dry_run > 0) {
        let stored = match state.store.recent_messages(dry_run).await {
            Ok(stored) => stored,
            Err(error) => return (StatusCode::SERVICE_UNAVAILABLE, error.to_string()).into_response(),
        };
        let replay = {
            let context = context.clone();
            let current = current.clone();
            let draft = draft.clone();
            tokio::task::spawn_blocking(move || {
                stored
                    .into_iter()
                    .filter_map(|(id, message)| {
                        let before = classify(&context, &current, &message).verdict;
                        let after = classify(&context, &draft, &message).verdict;
                        (before != after).then(|| (id, message.subject.unwrap_or_default(), before, after))
                    })
                    .collect::<Vec<_>>()
            })
        };
        let flips = replay.await.unwrap_or_default();
        let _ = write!(
            results,
            "<div class=\"card\" id=\"dry-run\"><h2>{} <span id=\"flips\">{}</span> {}</h2><table>",
            lang.t("This change would flip", "Изменение поменяет"),
            flips.len(),
            lang.t("verdicts of the newest stored messages", "вердиктов последних сообщений"),
        );
        for (id, subject, before, after) in flips.iter().take(200) {
            let _ = write!(results, "<tr><td>{id}</td><td>{}</td><td>{before} → {after}</td></tr>", escape(subject));
        }
        results.push_str("</table></div>");
    }
    let sample = form.message.clone();
    let body = page_body(lang, &context, &session, &form.draft, &sample, dry_run, &results);
    (status, Html(page(lang, lang.t("Rules", "Правила"), Some(&session), &body))).into_response()
}

/// Writes `text` next to `path` and renames it over: readers see the old
/// file or the new one, never half of it.
fn save_atomically(path: &std::path::Path, text: &str) -> Result<(), String> {
    let temporary = path.with_extension("toml.saving");
    std::fs::write(&temporary, text).map_err(|e| format!("cannot write {}: {e}", temporary.display()))?;
    std::fs::rename(&temporary, path).map_err(|e| format!("cannot replace {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pasted_text_becomes_a_message() {
        let message = pasted_message("Quote for a facade\n\nHow much for 300 m2?").unwrap();
        assert_eq!(message.subject.as_deref(), Some("Quote for a facade"));
        assert_eq!(message.text, "How much for 300 m2?");
        let mail = pasted_message("From: a@b.example\nSubject: Hi\n\nBody text\n").unwrap();
        assert_eq!(mail.subject.as_deref(), Some("Hi"));
        assert!(mail.sender.email.is_some());
    }
}
