//! The pages: login and logout, the overview, the leads board, users.

use std::fmt::Write as _;

use axum::Extension;
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;
use leadsift_core::{LeadFilter, LeadStage, LeadStore, Session};
use serde::Deserialize;

use crate::auth::{self, LOGIN_CSRF_COOKIE, SESSION_COOKIE};
use crate::html::{Lang, escape, page};
use crate::{WebState, session_ttl};

#[derive(Debug, Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
}

/// Only paths of this site: `/x`, never `//host` or `https://…`.
fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(path) if path.starts_with('/') && !path.starts_with("//") && !path.contains('\\') => path,
        _ => "/",
    }
}

fn login_page(lang: Lang, csrf: &str, next: &str, error: Option<&str>) -> String {
    let error = error.map(|e| format!("<p class=\"card review\" role=\"alert\">{}</p>", escape(e))).unwrap_or_default();
    let body = format!(
        "<h1>{title}</h1>{error}<form class=\"card\" method=\"post\" action=\"/login\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><input type=\"hidden\" name=\"next\" value=\"{next}\">\
         <p><label>{user}<br><input name=\"username\" autocomplete=\"username\" required autofocus></label></p>\
         <p><label>{password}<br><input name=\"password\" type=\"password\" autocomplete=\"current-password\" required></label></p>\
         <p><button type=\"submit\">{submit}</button></p></form>",
        title = lang.t("Log in", "Вход"),
        csrf = escape(csrf),
        next = escape(next),
        user = lang.t("User name", "Имя пользователя"),
        password = lang.t("Password", "Пароль"),
        submit = lang.t("Log in", "Войти"),
    );
    page(lang, lang.t("Log in", "Вход"), None, &body)
}

pub async fn login_form(
    State(state): State<WebState>,
    headers: HeaderMap,
    Query(query): Query<LoginQuery>,
) -> Response {
    let lang = Lang::of(&headers);
    let token = auth::random_token();
    let set = auth::cookie(LOGIN_CSRF_COOKIE, &token, 3600, state.settings.secure_cookies);
    (
        [(header::SET_COOKIE, set)],
        axum::response::Html(login_page(lang, &token, safe_next(query.next.as_deref()), None)),
    )
        .into_response()
}

#[derive(Deserialize)]
pub struct LoginForm {
    username: String,
    password: String,
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    next: Option<String>,
}

pub async fn login(State(state): State<WebState>, headers: HeaderMap, Form(form): Form<LoginForm>) -> Response {
    let lang = Lang::of(&headers);
    let cookie = headers
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|c| auth::cookie_value(c, LOGIN_CSRF_COOKIE))
        .unwrap_or("");
    if !auth::tokens_match(&form.csrf, cookie) {
        return (StatusCode::FORBIDDEN, "missing or wrong CSRF token; reload the login page").into_response();
    }
    let next = safe_next(form.next.as_deref()).to_owned();
    let credentials = match state.store.user_credentials(form.username.trim()).await {
        Ok(credentials) => credentials,
        Err(error) => {
            tracing::warn!(error = %error, "cannot check a login");
            return (StatusCode::SERVICE_UNAVAILABLE, "the store is unavailable; try again").into_response();
        }
    };
    // Verify against a dummy hash for unknown users: the answer takes as long either way.
    let (user, hash) = match credentials {
        Some((user, hash)) => (Some(user), hash),
        None => (None, auth::dummy_hash().to_owned()),
    };
    let password = form.password;
    let verified = tokio::task::spawn_blocking(move || auth::verify_password(&password, &hash)).await.unwrap_or(false);
    let user = match user {
        Some(user) if verified && !user.disabled => user,
        _ => {
            tracing::info!(user = %form.username.chars().take(64).collect::<String>(), "failed login");
            let message = lang.t("Wrong user name or password.", "Неверное имя пользователя или пароль.");
            let body = login_page(lang, cookie, &next, Some(message));
            return (StatusCode::UNAUTHORIZED, axum::response::Html(body)).into_response();
        }
    };
    let token = auth::random_token();
    let now = Utc::now();
    let ttl = session_ttl(&state.settings);
    let expires = now + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::hours(12));
    if let Err(error) =
        state.store.create_session(&auth::token_digest(&token), user.id, &auth::random_token(), now, expires).await
    {
        tracing::warn!(error = %error, "cannot start a session");
        return (StatusCode::SERVICE_UNAVAILABLE, "the store is unavailable; try again").into_response();
    }
    tracing::info!(user = %user.username, role = %user.role, "logged in");
    let secure = state.settings.secure_cookies;
    // Two Set-Cookie headers: `AppendHeaders`, since a plain array replaces.
    let headers = axum::response::AppendHeaders([
        (header::SET_COOKIE, auth::cookie(SESSION_COOKIE, &token, ttl.as_secs() as i64, secure)),
        (header::SET_COOKIE, auth::cookie(LOGIN_CSRF_COOKIE, "", 0, secure)),
    ]);
    (headers, Redirect::to(&next)).into_response()
}

pub async fn logout(State(state): State<WebState>, headers: HeaderMap) -> Response {
    let token = headers
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|c| auth::cookie_value(c, SESSION_COOKIE))
        .unwrap_or("");
    if let Err(error) = state.store.end_session(&auth::token_digest(token)).await {
        tracing::warn!(error = %error, "cannot end a session");
    }
    let clear = auth::cookie(SESSION_COOKIE, "", 0, state.settings.secure_cookies);
    ([(header::SET_COOKIE, clear)], Redirect::to("/login")).into_response()
}

pub(crate) fn store_error(error: leadsift_core::StoreError) -> Response {
    tracing::warn!(error = %error, "page query failed");
    (StatusCode::SERVICE_UNAVAILABLE, format!("the store is unavailable: {error}")).into_response()
}

pub(crate) fn stage_name(state: &WebState, stage: LeadStage) -> String {
    state.stage_names.get(stage.as_str()).cloned().unwrap_or_else(|| stage.default_display_name().to_owned())
}

/// The review queue first, then the newest leads to contact.
pub async fn leads(
    State(state): State<WebState>,
    Extension(session): Extension<Session>,
    headers: HeaderMap,
) -> Response {
    let lang = Lang::of(&headers);
    let review = LeadFilter { stage: None, needs_review: Some(true), limit: Some(100) };
    let review = match state.store.leads(&review).await {
        Ok(leads) => leads,
        Err(error) => return store_error(error),
    };
    let counts: std::collections::HashMap<LeadStage, i64> = match state.store.lead_stage_counts().await {
        Ok(counts) => counts.into_iter().collect(),
        Err(error) => return store_error(error),
    };
    // The board: the review queue first, then each open stage (newest 100 of each).
    let mut columns = vec![(lang.t("Needs review", "На проверку").to_owned(), review.len() as i64, review, "review")];
    for stage in LeadStage::OPEN {
        let filter = LeadFilter { stage: Some(stage), needs_review: Some(false), limit: Some(100) };
        let leads = match state.store.leads(&filter).await {
            Ok(leads) => leads,
            Err(error) => return store_error(error),
        };
        columns.push((stage_name(&state, stage), counts.get(&stage).copied().unwrap_or(0), leads, stage.as_str()));
    }
    let mut body = format!("<h1>{}</h1>", lang.t("Leads", "Лиды"));
    for (title, count, leads, id) in &columns {
        let class = if *id == "review" { "review" } else { "" };
        let _ = write!(body, "<div class=\"card\"><h2>{} ({count})</h2><table id=\"{id}\">", escape(title));
        for lead in leads {
            let client = if lead.returning_client {
                lang.t("returning", "повторный")
            } else {
                lang.t("new", "новый")
            };
            let _ = write!(
                body,
                "<tr class=\"{class}\" data-lead=\"{id}\"><td><a href=\"/leads/{id}\">{id}</a></td><td>{channel}</td><td><a href=\"/leads/{id}\">{title}</a></td><td>{client}</td><td>{verdict} {confidence:.2}</td><td>{note}</td></tr>",
                id = lead.id,
                channel = lead.channel,
                title = escape(&lead.title),
                verdict = lead.verdict,
                confidence = lead.confidence,
                note = escape(lead.review_note.as_deref().unwrap_or(""))
            );
        }
        body.push_str("</table></div>");
    }
    axum::response::Html(page(lang, lang.t("Leads", "Лиды"), Some(&session), &body)).into_response()
}

pub async fn users(
    State(state): State<WebState>,
    Extension(session): Extension<Session>,
    headers: HeaderMap,
) -> Response {
    let lang = Lang::of(&headers);
    let users = match state.store.users().await {
        Ok(users) => users,
        Err(error) => return store_error(error),
    };
    let mut body = format!(
        "<h1>{}</h1><div class=\"card\"><table><tr><th>{}</th><th>{}</th><th>{}</th></tr>",
        lang.t("Users", "Пользователи"),
        lang.t("User name", "Имя"),
        lang.t("Role", "Роль"),
        lang.t("Status", "Статус")
    );
    for user in users {
        let status =
            if user.disabled { lang.t("disabled", "отключён") } else { lang.t("active", "активен") };
        let _ = write!(body, "<tr><td>{}</td><td>{}</td><td>{status}</td></tr>", escape(&user.username), user.role);
    }
    body.push_str("</table></div>");
    axum::response::Html(page(lang, lang.t("Users", "Пользователи"), Some(&session), &body)).into_response()
}

/// A select of stages with `current` chosen.
fn stage_options(state: &WebState, current: LeadStage) -> String {
    let mut out = String::new();
    for stage in [LeadStage::ContactClient, LeadStage::Qualification, LeadStage::Offer] {
        let selected = if stage == current { " selected" } else { "" };
        let _ = write!(out, "<option value=\"{stage}\"{selected}>{}</option>", escape(&stage_name(state, stage)));
    }
    out
}

/// One lead: the message, contact, source, the verdict's reasons, history, and the actions.
pub async fn lead(
    State(state): State<WebState>,
    Extension(session): Extension<Session>,
    headers: HeaderMap,
    axum::extract::Path(id): axum::extract::Path<i64>,
) -> Response {
    let lang = Lang::of(&headers);
    let lead = match state.store.lead(id).await {
        Ok(Some(lead)) => lead,
        Ok(None) => return (StatusCode::NOT_FOUND, lang.t("No such lead.", "Такого лида нет.")).into_response(),
        Err(error) => return store_error(error),
    };
    let (message, history) = match (state.store.lead_first_message(id).await, state.store.lead_history(id).await) {
        (Ok(message), Ok(history)) => (message, history),
        (Err(error), _) | (_, Err(error)) => return store_error(error),
    };
    let csrf = escape(&session.csrf_token);
    let client = if lead.returning_client {
        lang.t("returning client", "повторный клиент")
    } else {
        lang.t("new client", "новый клиент")
    };
    let junk = lead.junk_reason.map(|r| format!(" ({r})")).unwrap_or_default();
    let mut body = format!(
        "<h1 id=\"lead-title\">{title}</h1><div class=\"card\"><p><b>{stage_label}:</b> <span id=\"stage\">{stage}{junk}</span>{review}</p>\
         <p><b>{channel_label}:</b> {channel} · <b>{source_label}:</b> {source} / {campaign} · {client}</p>",
        title = escape(&lead.title),
        stage_label = lang.t("Stage", "Стадия"),
        stage = escape(&stage_name(&state, lead.stage)),
        review = if lead.needs_review {
            format!(
                " · <span class=\"review\">{}: {}</span>",
                lang.t("needs review", "на проверку"),
                escape(lead.review_note.as_deref().unwrap_or(""))
            )
        } else {
            String::new()
        },
        channel_label = lang.t("Channel", "Канал"),
        channel = lead.channel,
        source_label = lang.t("Source", "Источник"),
        source = escape(lead.source.as_deref().unwrap_or("-")),
        campaign = escape(lead.campaign.as_deref().unwrap_or("-")),
    );
    let identities: Vec<String> = lead.identities.iter().map(|i| escape(&i.to_string())).collect();
    let _ = write!(
        body,
        "<p><b>{}:</b> <span id=\"identities\">{}</span></p>",
        lang.t("Contact", "Контакт"),
        identities.join(", ")
    );
    let _ =
        write!(body, "<p><b>{}:</b> {} ({:.2})</p><ul>", lang.t("Verdict", "Вердикт"), lead.verdict, lead.confidence);
    for reason in &lead.reasons {
        let _ = write!(body, "<li><code>{}</code> {}</li>", escape(&reason.rule), escape(&reason.description));
    }
    body.push_str("</ul></div>");
    if let Some(message) = message {
        let _ = write!(
            body,
            "<div class=\"card\"><h2>{}</h2><p><b>{}</b></p><pre style=\"white-space:pre-wrap\">{}</pre></div>",
            lang.t("Message", "Сообщение"),
            escape(message.subject.as_deref().unwrap_or("")),
            escape(&message.text.chars().take(20_000).collect::<String>())
        );
    }
    if lead.stage.is_open() {
        let _ = write!(
            body,
            "<div class=\"card\"><h2>{actions}</h2>\
             <form method=\"post\" action=\"/leads/{id}/move\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <select name=\"stage\">{options}</select> <input name=\"note\" placeholder=\"{note}\"> <button id=\"move\">{move_label}</button></form>\
             <form method=\"post\" action=\"/leads/{id}/move\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <input type=\"hidden\" name=\"stage\" value=\"junk\"><select name=\"junk_reason\">\
             <option value=\"spam\">{spam}</option><option value=\"non_target\">{non_target}</option>\
             <option value=\"duplicate\">{duplicate}</option><option value=\"other\">{other}</option></select> \
             <label><input type=\"checkbox\" name=\"blacklist\" value=\"on\" checked> {blacklist}</label> \
             <button id=\"junk\">{junk_label}</button></form></div>",
            actions = lang.t("Actions", "Действия"),
            options = stage_options(&state, lead.stage),
            note = lang.t("note", "комментарий"),
            move_label = lang.t("Move", "Перевести"),
            spam = lang.t("spam", "спам"),
            non_target = lang.t("non-target", "нецелевой"),
            duplicate = lang.t("duplicate", "дубль"),
            other = lang.t("other", "другое"),
            blacklist = lang.t("blacklist the sender (spam only)", "в чёрный список (только спам)"),
            junk_label = lang.t("Junk", "В брак"),
        );
    } else if lead.stage == LeadStage::Junk {
        let _ = write!(
            body,
            "<div class=\"card\"><form method=\"post\" action=\"/leads/{id}/move\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <input type=\"hidden\" name=\"stage\" value=\"contact_client\"><button id=\"restore\">{}</button></form></div>",
            lang.t("Restore: not junk", "Вернуть: это не брак"),
        );
    }
    if !lead.identities.is_empty() {
        let _ = write!(
            body,
            "<div class=\"card\"><form method=\"post\" action=\"/leads/{id}/allowlist\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <button id=\"allowlist\">{}</button> {}</form></div>",
            lang.t("Allowlist the sender", "В белый список"),
            lang.t("(their messages never become spam)", "(сообщения отправителя никогда не станут спамом)"),
        );
    }
    let _ = write!(body, "<div class=\"card\"><h2>{}</h2><table id=\"history\">", lang.t("History", "История"));
    for change in history {
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{} → {}</td><td>{}</td><td>{}</td></tr>",
            change.at.format("%Y-%m-%d %H:%M"),
            change.from.map(|s| s.to_string()).unwrap_or_else(|| "-".into()),
            change.to,
            escape(&change.actor),
            escape(change.reason.as_deref().unwrap_or(""))
        );
    }
    body.push_str("</table></div>");
    axum::response::Html(page(lang, &lead.title, Some(&session), &body)).into_response()
}

#[derive(Deserialize)]
pub struct MoveForm {
    stage: LeadStage,
    #[serde(default)]
    junk_reason: Option<leadsift_core::JunkReason>,
    #[serde(default)]
    note: Option<String>,
    #[serde(default)]
    blacklist: Option<String>,
}

/// Moves a lead (junk and restore label its messages for the model, in the
/// store); junking as spam with "blacklist" checked lists its sender's
/// identities, never a whole domain.
pub async fn move_lead(
    State(state): State<WebState>,
    Extension(session): Extension<Session>,
    axum::extract::Path(id): axum::extract::Path<i64>,
    Form(form): Form<MoveForm>,
) -> Response {
    let note = form.note.filter(|n| !n.trim().is_empty());
    let request = leadsift_core::StageMove {
        lead_id: id,
        to: form.stage,
        junk_reason: form.junk_reason.filter(|_| form.stage == LeadStage::Junk),
        actor: session.user.username.clone(),
        note,
    };
    match state.store.move_lead(&request, Utc::now()).await {
        Ok(_) => {}
        Err(leadsift_core::StoreError::NotFound(what)) => return (StatusCode::NOT_FOUND, what).into_response(),
        Err(leadsift_core::StoreError::Invalid(why)) => return (StatusCode::UNPROCESSABLE_ENTITY, why).into_response(),
        Err(error) => return store_error(error),
    }
    let blacklist = form.blacklist.is_some_and(|v| v == "on")
        && form.stage == LeadStage::Junk
        && form.junk_reason == Some(leadsift_core::JunkReason::Spam);
    if blacklist {
        let identities = match state.store.lead(id).await {
            Ok(Some(lead)) => lead.identities,
            Ok(None) => Vec::new(),
            Err(error) => return store_error(error),
        };
        if let Err(error) = list_identities(
            &state,
            &session,
            leadsift_core::ListKind::Blacklist,
            identities,
            &format!("lead {id} junked as spam"),
        )
        .await
        {
            return store_error(error);
        }
    }
    tracing::info!(lead = id, stage = %form.stage, user = %session.user.username, "lead moved in the web UI");
    Redirect::to(&format!("/leads/{id}")).into_response()
}

/// Puts each identity on `list` (never a whole domain: identities are addresses, phones, handles).
async fn list_identities(
    state: &WebState,
    session: &Session,
    list: leadsift_core::ListKind,
    identities: Vec<leadsift_core::SourceRef>,
    reason: &str,
) -> Result<(), leadsift_core::StoreError> {
    for target in identities {
        let entry = leadsift_core::NewListEntry {
            list,
            target,
            reason: reason.to_owned(),
            origin: leadsift_core::EntryOrigin::Admin,
            actor: session.user.username.clone(),
            expires_at: None,
        };
        state.store.add_list_entry(&entry, Utc::now()).await?;
    }
    Ok(())
}

/// Allowlists a lead's sender: their messages never become spam.
pub async fn allowlist_sender(
    State(state): State<WebState>,
    Extension(session): Extension<Session>,
    axum::extract::Path(id): axum::extract::Path<i64>,
) -> Response {
    let lead = match state.store.lead(id).await {
        Ok(Some(lead)) => lead,
        Ok(None) => return StatusCode::NOT_FOUND.into_response(),
        Err(error) => return store_error(error),
    };
    let reason = format!("allowlisted from lead {id}");
    match list_identities(&state, &session, leadsift_core::ListKind::Allowlist, lead.identities, &reason).await {
        Ok(()) => Redirect::to(&format!("/leads/{id}")).into_response(),
        Err(error) => store_error(error),
    }
}

/// Black- and allowlist with their audit trail (admin).
pub async fn lists(
    State(state): State<WebState>,
    Extension(session): Extension<Session>,
    headers: HeaderMap,
) -> Response {
    let lang = Lang::of(&headers);
    let csrf = escape(&session.csrf_token);
    let mut body = format!("<h1>{}</h1>", lang.t("Black- and allowlist", "Чёрный и белый списки"));
    for list in [leadsift_core::ListKind::Blacklist, leadsift_core::ListKind::Allowlist] {
        let (entries, audit) =
            match (state.store.list_entries(list, Utc::now()).await, state.store.list_audit(list, 50).await) {
                (Ok(entries), Ok(audit)) => (entries, audit),
                (Err(error), _) | (_, Err(error)) => return store_error(error),
            };
        let title = match list {
            leadsift_core::ListKind::Blacklist => lang.t("Blacklist", "Чёрный список"),
            leadsift_core::ListKind::Allowlist => lang.t("Allowlist", "Белый список"),
        };
        let _ = write!(
            body,
            "<div class=\"card\"><h2>{title} ({})</h2>\
            <form method=\"post\" action=\"/lists/{list}/add\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
            <input name=\"value\" placeholder=\"email, domain, +7…, telegram:…\" required> <input name=\"reason\" placeholder=\"{reason}\"> <button>{add}</button></form>\
            <table id=\"{list}\">",
            entries.len(),
            reason = lang.t("reason", "причина"),
            add = lang.t("Add", "Добавить")
        );
        for entry in entries {
            let _ = write!(
                body,
                "<tr><td>{target}</td><td>{}</td><td>{}</td><td>{}</td><td><form method=\"post\" action=\"/lists/{list}/remove\">\
                <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><input type=\"hidden\" name=\"value\" value=\"{target}\"><button>{}</button></form></td></tr>",
                escape(&entry.reason),
                entry.origin,
                escape(&entry.created_by),
                lang.t("Remove", "Убрать"),
                target = escape(&entry.target.to_string())
            );
        }
        let _ = write!(body, "</table><h3>{}</h3><table>", lang.t("Audit", "Журнал"));
        for record in audit {
            let _ = write!(
                body,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                record.at.format("%Y-%m-%d %H:%M"),
                escape(&record.action),
                escape(&record.target.to_string()),
                escape(&record.actor),
                escape(&record.reason)
            );
        }
        body.push_str("</table></div>");
    }
    axum::response::Html(page(lang, lang.t("Lists", "Списки"), Some(&session), &body)).into_response()
}

#[derive(Deserialize)]
pub struct ListForm {
    value: String,
    #[serde(default)]
    reason: Option<String>,
}

/// The list named in the path and the identity in the form, or the answer refusing them.
fn list_target(
    list: &str,
    value: &str,
) -> Result<(leadsift_core::ListKind, leadsift_core::SourceRef), (StatusCode, String)> {
    let list = list.parse().map_err(|_| (StatusCode::NOT_FOUND, format!("no list {list:?}")))?;
    let target = leadsift_core::SourceRef::guess(value.trim(), "RU")
        .map_err(|error| (StatusCode::UNPROCESSABLE_ENTITY, error.to_string()))?;
    Ok((list, target))
}

pub async fn list_add(
    State(state): State<WebState>,
    Extension(session): Extension<Session>,
    axum::extract::Path(list): axum::extract::Path<String>,
    Form(form): Form<ListForm>,
) -> Response {
    let (list, target) = match list_target(&list, &form.value) {
        Ok(found) => found,
        Err(refusal) => return refusal.into_response(),
    };
    if let leadsift_core::SourceRef::Domain(domain) = &target
        && list == leadsift_core::ListKind::Blacklist
        && leadsift_core::lists::is_free_mail(domain)
    {
        return (StatusCode::UNPROCESSABLE_ENTITY, "a free-mail domain cannot be blacklisted whole; list the address")
            .into_response();
    }
    let entry = leadsift_core::NewListEntry {
        list,
        target,
        reason: form.reason.filter(|r| !r.trim().is_empty()).unwrap_or_else(|| "added in the web UI".into()),
        origin: leadsift_core::EntryOrigin::Admin,
        actor: session.user.username.clone(),
        expires_at: None,
    };
    match state.store.add_list_entry(&entry, Utc::now()).await {
        Ok(_) => Redirect::to("/lists").into_response(),
        Err(error) => store_error(error),
    }
}

pub async fn list_remove(
    State(state): State<WebState>,
    Extension(session): Extension<Session>,
    axum::extract::Path(list): axum::extract::Path<String>,
    Form(form): Form<ListForm>,
) -> Response {
    let (list, target) = match list_target(&list, &form.value) {
        Ok(found) => found,
        Err(refusal) => return refusal.into_response(),
    };
    let reason = form.reason.filter(|r| !r.trim().is_empty()).unwrap_or_else(|| "removed in the web UI".into());
    match state.store.remove_list_entry(list, &target, &session.user.username, &reason, Utc::now()).await {
        Ok(_) => Redirect::to("/lists").into_response(),
        Err(error) => store_error(error),
    }
}

#[derive(Debug, Deserialize)]
pub struct PeriodQuery {
    from: Option<chrono::NaiveDate>,
    to: Option<chrono::NaiveDate>,
}

/// The period asked for, or the current month so far (in the team's offset).
fn period(state: &WebState, query: &PeriodQuery) -> Result<leadsift_core::ReportPeriod, String> {
    use chrono::Datelike;
    let today = Utc::now().with_timezone(&state.utc_offset).date_naive();
    let from = query.from.unwrap_or_else(|| today.with_day(1).unwrap_or(today));
    let to = query.to.unwrap_or(today);
    leadsift_core::ReportPeriod::new(from, to, state.utc_offset, state.report_currency.clone())
}

/// The seven reports and the triage view: a period picker, charts, tables, CSV export.
pub async fn reports(
    State(state): State<WebState>,
    Extension(session): Extension<Session>,
    headers: HeaderMap,
    Query(query): Query<PeriodQuery>,
) -> Response {
    let lang = Lang::of(&headers);
    let period = match period(&state, &query) {
        Ok(period) => period,
        Err(error) => return (StatusCode::BAD_REQUEST, error).into_response(),
    };
    let report = match state.store.report(&period).await {
        Ok(report) => report,
        Err(error) => return store_error(error),
    };
    let tables = match crate::report_render::render_html(&report, lang) {
        Ok(tables) => tables,
        Err(error) => return (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response(),
    };
    let body = format!(
        "<h1>{title}</h1><form class=\"card\" method=\"get\" action=\"/reports\">\
         <label>{from_label} <input type=\"date\" name=\"from\" value=\"{from}\"></label> \
         <label>{to_label} <input type=\"date\" name=\"to\" value=\"{to}\"></label> <button>{show}</button> \
         <a id=\"csv\" href=\"/reports/export.csv?from={from}&amp;to={to}\">{csv}</a> · {money} {currency}</form>{tables}",
        title = lang.t("Reports", "Отчёты"),
        from_label = lang.t("From", "С"),
        to_label = lang.t("to", "по"),
        show = lang.t("Show", "Показать"),
        csv = lang.t("Download CSV", "Скачать CSV"),
        money = lang.t("money in", "деньги в"),
        from = period.from,
        to = period.to,
        currency = escape(period.currency.as_str()),
    );
    axum::response::Html(page(lang, lang.t("Reports", "Отчёты"), Some(&session), &body)).into_response()
}

pub async fn reports_csv(State(state): State<WebState>, Query(query): Query<PeriodQuery>) -> Response {
    let period = match period(&state, &query) {
        Ok(period) => period,
        Err(error) => return (StatusCode::BAD_REQUEST, error).into_response(),
    };
    let report = match state.store.report(&period).await {
        Ok(report) => report,
        Err(error) => return store_error(error),
    };
    match crate::report_render::render_report(&report, crate::report_render::ReportFormat::Csv, None) {
        Ok(csv) => {
            let disposition = format!("attachment; filename=\"leadsift-{}-{}.csv\"", period.from, period.to);
            (
                [
                    (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
                    (header::CONTENT_DISPOSITION, disposition),
                ],
                csv,
            )
                .into_response()
        }
        Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response(),
    }
}
