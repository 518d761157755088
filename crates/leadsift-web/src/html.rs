//! HTML building blocks: escaping, the page layout, and the UI's words in
//! Russian and English (chosen from `Accept-Language`).

use std::fmt::Write as _;

use axum::http::{HeaderMap, header};
use leadsift_core::{Role, Session};

/// Escapes text for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes a query value.
pub fn url_encode(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(byte as char);
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Ru,
    En,
}

impl Lang {
    /// Russian when the browser prefers it, English otherwise.
    pub fn of(headers: &HeaderMap) -> Lang {
        let accept = headers.get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok()).unwrap_or("");
        if accept.trim_start().to_ascii_lowercase().starts_with("ru") { Lang::Ru } else { Lang::En }
    }

    pub fn code(self) -> &'static str {
        match self {
            Lang::Ru => "ru",
            Lang::En => "en",
        }
    }

    /// One phrase of the UI.
    pub fn t(self, en: &'static str, ru: &'static str) -> &'static str {
        match self {
            Lang::Ru => ru,
            Lang::En => en,
        }
    }
}

const STYLE: &str = "body{font:15px/1.45 system-ui,sans-serif;margin:0;color:#1d2430;background:#f6f7f9}\
header{background:#1d2430;color:#fff;padding:.6em 1.2em;display:flex;gap:1.2em;align-items:center}\
header a{color:#cfe3ff;text-decoration:none}header form{margin-left:auto}main{padding:1.2em;max-width:72em}\
table{border-collapse:collapse;background:#fff;width:100%}th,td{padding:.35em .6em;border-bottom:1px solid #e3e6ea;\
text-align:left}td.n{text-align:right}.review{background:#fff6d6}.card{background:#fff;padding:1em;margin:0 0 1em;\
border-radius:6px;box-shadow:0 1px 2px #0001}button{cursor:pointer}tr.total td{font-weight:600}\
svg.chart{max-width:100%;height:auto;margin:.4em 0}\
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(18em,1fr));gap:0 1em}.muted{color:#6b7480}";

/// A whole page; `session` adds the navigation and the logout button.
pub fn page(lang: Lang, title: &str, session: Option<&Session>, body: &str) -> String {
    let mut nav = String::new();
    if let Some(session) = session {
        let _ = write!(nav, "<a href=\"/\">{}</a>", lang.t("Overview", "Обзор"));
        let _ = write!(nav, "<a href=\"/reports\">{}</a>", lang.t("Reports", "Отчёты"));
        if session.user.role.allows(Role::Manager) {
            let _ = write!(nav, "<a href=\"/leads\">{}</a>", lang.t("Leads", "Лиды"));
        }
        if session.user.role.allows(Role::Admin) {
            let _ = write!(nav, "<a href=\"/rules\">{}</a>", lang.t("Rules", "Правила"));
            let _ = write!(nav, "<a href=\"/lists\">{}</a>", lang.t("Lists", "Списки"));
            let _ = write!(nav, "<a href=\"/users\">{}</a>", lang.t("Users", "Пользователи"));
        }
        let _ = write!(
            nav,
            "<form method=\"post\" action=\"/logout\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <span>{} ({})</span> <button>{}</button></form>",
            escape(&session.csrf_token),
            escape(&session.user.username),
            session.user.role,
            lang.t("Log out", "Выйти")
        );
    }
    format!(
        "<!doctype html><html lang=\"{lang}\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{title} · leadsift</title>\
         <style>{STYLE}</style></head><body><header><strong>leadsift</strong>{nav}</header><main>{body}</main></body></html>",
        lang = lang.code(),
        title = escape(title),
    )
}

pub fn forbidden(session: &Session, needed: Role, lang: Lang) -> String {
    let body = format!(
        "<h1>{}</h1><p>{} <b>{}</b>.</p>",
        lang.t("Not allowed", "Нет доступа"),
        lang.t("This page needs the role", "Эта страница требует роли"),
        needed
    );
    page(lang, lang.t("Not allowed", "Нет доступа"), Some(session), &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_markup_and_quotes() {
        assert_eq!(escape("<a href=\"x\">'&'</a>"), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
        assert_eq!(url_encode("/leads?x=1 2"), "/leads%3Fx%3D1%202");
    }

    #[test]
    fn language_follows_the_browser() {
        let mut headers = HeaderMap::new();
        assert_eq!(Lang::of(&headers), Lang::En);
        headers.insert(header::ACCEPT_LANGUAGE, "ru-RU,ru;q=0.9,en;q=0.8".parse().unwrap());
        assert_eq!(Lang::of(&headers), Lang::Ru);
    }
}
