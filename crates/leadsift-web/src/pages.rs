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

fn store_error(error: leadsift_core::StoreError) -> Response {
    tracing::warn!(error = %error, "page query failed");
    (StatusCode::SERVICE_UNAVAILABLE, format!("the store is unavailable: {error}")).into_response()
}

fn stage_name(state: &WebState, stage: LeadStage) -> String {
    state.stage_names.get(stage.as_str()).cloned().unwrap_or_else(|| stage.default_display_name().to_owned())
}

/// Messages by channel and verdict, and leads by stage.
pub async fn overview(
    State(state): State<WebState>,
    Extension(session): Extension<Session>,
    headers: HeaderMap,
) -> Response {
    let lang = Lang::of(&headers);
    let counts = match state.store.message_counts().await {
        Ok(counts) => counts,
        Err(error) => return store_error(error),
    };
    let stages = match state.store.lead_stage_counts().await {
        Ok(stages) => stages,
        Err(error) => return store_error(error),
    };
    let mut body = format!(
        "<h1>{}</h1><div class=\"card\"><h2>{}</h2><table><tr><th>{}</th><th>{}</th><th>{}</th></tr>",
        lang.t("Overview", "Обзор"),
        lang.t("Messages by channel and verdict", "Сообщения по каналам и вердиктам"),
        lang.t("Channel", "Канал"),
        lang.t("Verdict", "Вердикт"),
        lang.t("Messages", "Сообщений")
    );
    for (channel, verdict, n) in &counts.rows {
        let _ = write!(body, "<tr><td>{channel}</td><td>{verdict}</td><td class=\"n\">{n}</td></tr>");
    }
    let _ = write!(
        body,
        "<tr><th colspan=\"2\">{}</th><th class=\"n\">{}</th></tr></table></div>",
        lang.t("Total", "Всего"),
        counts.total()
    );
    let _ = write!(body, "<div class=\"card\"><h2>{}</h2><table>", lang.t("Leads by stage", "Лиды по стадиям"));
    for (stage, n) in &stages {
        let _ = write!(body, "<tr><td>{}</td><td class=\"n\">{n}</td></tr>", escape(&stage_name(&state, *stage)));
    }
    body.push_str("</table></div>");
    axum::response::Html(page(lang, lang.t("Overview", "Обзор"), Some(&session), &body)).into_response()
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
    let contact = LeadFilter { stage: Some(LeadStage::ContactClient), needs_review: Some(false), limit: Some(100) };
    let contact = match state.store.leads(&contact).await {
        Ok(leads) => leads,
        Err(error) => return store_error(error),
    };
    let mut body = format!("<h1>{}</h1>", lang.t("Leads", "Лиды"));
    for (title, leads, class) in [
        (lang.t("Needs review", "На проверку").to_owned(), &review, "review"),
        (stage_name(&state, LeadStage::ContactClient), &contact, ""),
    ] {
        let _ = write!(
            body,
            "<div class=\"card\"><h2>{} ({})</h2><table id=\"{}\">",
            escape(&title),
            leads.len(),
            if class.is_empty() { "contact" } else { class }
        );
        for lead in leads {
            let client = if lead.returning_client {
                lang.t("returning", "повторный")
            } else {
                lang.t("new", "новый")
            };
            let _ = write!(
                body,
                "<tr class=\"{class}\" data-lead=\"{id}\"><td>{id}</td><td>{channel}</td><td>{title}</td><td>{client}</td><td>{verdict} {confidence:.2}</td><td>{note}</td></tr>",
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
