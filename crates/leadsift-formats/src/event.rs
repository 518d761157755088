//! The leadsift event JSON: how the call, messenger and web-form adapters
//! (and anything else that is not raw email) hand a message to intake.
//!
//! ```json
//! {"channel":"call","id":"pbx-778812","received_at":"2026-11-20T10:15:00Z",
//!  "from":{"phone":"+79162045581","email":null,"handle":null,"name":null},
//!  "to":"+74951234501","subject":null,"text":"transcript or message text",
//!  "call":{"duration_secs":214,"answered":true},
//!  "utm":{"source":"yandex","medium":"cpc","campaign":"fasad_moscow","content":null,"term":null},
//!  "headers":{"X-Form-Page":"/fasad"},
//!  "attachments":[{"name":"plan.pdf","mime_type":"application/pdf","size":48213}]}
//! ```
//!
//! Only `channel` (`email`, `call`, `messenger` or `webform`) is required;
//! every other field may be missing or `null`. `id`, phones and `to` may be
//! JSON strings or numbers. `headers` is an object (`{"Name": "value"}` or
//! `{"Name": ["v1", "v2"]}`) or a list (`[{"name": …, "value": …}]` or
//! `[["Name", "value"]]`).
//!
//! Unknown top-level and nested fields are ignored, so producers can add
//! fields before intake knows them (forward compatibility); a misspelt
//! field is therefore silently absent, not an error.

use std::io::BufRead;

use chrono::{DateTime, Utc};
use leadsift_core::{
    Attachment, CallInfo, Channel, DedupKey, EmailAddress, Header, Message, MessengerHandle, PhoneNumber, Utm,
};
use serde::Deserialize;

use crate::rfc822::unparsed_header;
use crate::{FormatError, MAX_HEADER_VALUE_BYTES, ParseOptions, truncate_on_char_boundary};

#[derive(Debug, Deserialize)]
struct RawEvent {
    channel: Option<String>,
    id: Option<StringOrNumber>,
    received_at: Option<String>,
    from: Option<RawFrom>,
    to: Option<StringOrNumber>,
    subject: Option<String>,
    text: Option<String>,
    call: Option<RawCall>,
    utm: Option<RawUtm>,
    headers: Option<RawHeaders>,
    attachments: Option<Vec<RawAttachment>>,
}

#[derive(Debug, Default, Deserialize)]
struct RawFrom {
    phone: Option<StringOrNumber>,
    email: Option<String>,
    handle: Option<String>,
    name: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawCall {
    duration_secs: Option<f64>,
    answered: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct RawUtm {
    source: Option<String>,
    medium: Option<String>,
    campaign: Option<String>,
    content: Option<String>,
    term: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum StringOrNumber {
    String(String),
    Number(serde_json::Number),
}

impl StringOrNumber {
    fn into_string(self) -> String {
        match self {
            StringOrNumber::String(s) => s,
            StringOrNumber::Number(n) => n.to_string(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawHeaders {
    Map(serde_json::Map<String, serde_json::Value>),
    List(Vec<RawHeader>),
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawHeader {
    Object { name: String, value: Option<String> },
    Pair(String, Option<String>),
}

#[derive(Debug, Deserialize)]
struct RawAttachment {
    name: Option<String>,
    mime_type: Option<String>,
    size: Option<u64>,
}

/// Parses one event object (see the module docs for the format).
///
/// Errors: empty or oversized input, invalid JSON (with line and column),
/// a JSON value that is not an object, a missing or unknown `channel`, a
/// field of the wrong type, and a `received_at` that is not RFC 3339. An
/// invalid phone, email or handle is not an error: it is kept as an
/// `X-Leadsift-Unparsed-From-Phone` (`-Email`, `-Handle`) header.
///
/// The dedup key is `<channel>:<id>` when the event has an `id`, else a hash
/// of the fields present (never of a defaulted `received_at`).
pub fn parse_event_json(raw: &[u8], opts: &ParseOptions) -> Result<Message, FormatError> {
    if raw.len() > opts.max_raw_bytes {
        return Err(FormatError::TooLarge { size: raw.len() as u64, limit: opts.max_raw_bytes });
    }
    let Some(&first) = raw.iter().find(|b| !b.is_ascii_whitespace()) else {
        return Err(FormatError::EmptyInput);
    };
    if first != b'{' {
        return Err(match serde_json::from_slice::<serde_json::Value>(raw) {
            Ok(value) => FormatError::EventNotAnObject { found: json_kind(&value) },
            Err(error) => invalid_json(&error),
        });
    }
    let event: RawEvent = serde_json::from_slice(raw).map_err(|error| invalid_json(&error))?;
    build_message(event, opts)
}

fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

fn invalid_json(error: &serde_json::Error) -> FormatError {
    let full = error.to_string();
    let position = format!(" at line {} column {}", error.line(), error.column());
    let message = full.strip_suffix(&position).unwrap_or(&full).to_owned();
    FormatError::InvalidEventJson { line: error.line(), column: error.column(), message }
}

/// Trimmed, `None` when empty.
fn non_empty(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

fn build_message(event: RawEvent, opts: &ParseOptions) -> Result<Message, FormatError> {
    let channel: Channel = non_empty(event.channel)
        .ok_or(FormatError::MissingEventField { field: "channel" })?
        .to_ascii_lowercase()
        .parse()?;
    let received_at_raw = non_empty(event.received_at);
    let received_at = match &received_at_raw {
        Some(raw) => DateTime::parse_from_rfc3339(raw).map(|t| t.with_timezone(&Utc)).map_err(|error| {
            FormatError::InvalidEventField {
                field: "received_at",
                reason: format!("{raw:?} is not an RFC 3339 timestamp ({error})"),
            }
        })?,
        None => Utc::now(),
    };

    let mut headers = Vec::new();
    let from = event.from.unwrap_or_default();
    let mut sender = leadsift_core::Sender { name: non_empty(from.name), ..Default::default() };
    if let Some(raw) = non_empty(from.phone.map(StringOrNumber::into_string)) {
        match PhoneNumber::parse(&raw, &opts.default_region) {
            Ok(phone) => sender.phone = Some(phone),
            Err(_) => headers.push(unparsed_header("From-Phone", &raw)),
        }
    }
    if let Some(raw) = non_empty(from.email) {
        match EmailAddress::parse(&raw) {
            Ok(email) => sender.email = Some(email),
            Err(_) => headers.push(unparsed_header("From-Email", &raw)),
        }
    }
    if let Some(raw) = non_empty(from.handle) {
        match MessengerHandle::parse(&raw) {
            Ok(handle) => sender.handle = Some(handle),
            Err(_) => headers.push(unparsed_header("From-Handle", &raw)),
        }
    }
    let destination = non_empty(event.to.map(StringOrNumber::into_string)).map(|to| normalize_destination(&to, opts));
    let subject = non_empty(event.subject);
    let text = event.text.map(|t| t.trim_end().to_owned()).unwrap_or_default();
    let call = event.call.map(|call| CallInfo {
        // Float durations (some PBXs report 12.5) are rounded; NaN becomes 0.
        duration_secs: call.duration_secs.map_or(0, |d| d.round().clamp(0.0, f64::from(u32::MAX)) as u32),
        answered: call.answered.unwrap_or(false),
    });
    let utm = event.utm.map_or_else(Utm::default, |utm| Utm {
        source: non_empty(utm.source),
        medium: non_empty(utm.medium),
        campaign: non_empty(utm.campaign),
        content: non_empty(utm.content),
        term: non_empty(utm.term),
    });

    let dedup_key = match non_empty(event.id.map(StringOrNumber::into_string)) {
        Some(id) => DedupKey::from_upstream_id(channel, &id),
        None => content_key(
            channel,
            received_at_raw.as_deref(),
            &sender,
            &headers,
            &destination,
            &subject,
            &text,
            call,
            &utm,
        ),
    };

    let mut message = Message::new(channel, dedup_key, received_at);
    message.sender = sender;
    message.destination = destination;
    message.subject = subject;
    message.call = call;
    message.utm = utm;
    message.attachments = event
        .attachments
        .unwrap_or_default()
        .into_iter()
        .map(|a| Attachment {
            name: non_empty(a.name),
            mime_type: non_empty(a.mime_type)
                .map_or_else(|| "application/octet-stream".to_owned(), |m| m.to_ascii_lowercase()),
            size: a.size.unwrap_or(0),
        })
        .collect();
    let mut given = supplied_headers(event.headers, opts.max_headers);
    given.append(&mut headers);
    message.headers = given;
    message.text = text;
    message.cap_text(opts.max_text_bytes);
    Ok(message)
}

/// Phone → E.164, email → lower case, anything else (a form or bot id) as is.
fn normalize_destination(to: &str, opts: &ParseOptions) -> String {
    if to.contains('@') {
        return EmailAddress::parse(to).map_or_else(|_| to.to_owned(), |e| e.as_str().to_owned());
    }
    let digits = to.chars().filter(char::is_ascii_digit).count();
    let phone_like = digits >= 5 && to.chars().all(|c| c.is_ascii_digit() || " +-().".contains(c));
    if phone_like && let Ok(phone) = PhoneNumber::parse(to, &opts.default_region) {
        return phone.as_str().to_owned();
    }
    to.to_owned()
}

fn supplied_headers(raw: Option<RawHeaders>, max_headers: usize) -> Vec<Header> {
    let mut out = Vec::new();
    let mut push = |name: String, value: String| {
        let name = name.trim().to_owned();
        if out.len() < max_headers && !name.is_empty() {
            let mut value = value.trim().to_owned();
            truncate_on_char_boundary(&mut value, MAX_HEADER_VALUE_BYTES);
            out.push(Header { name, value });
        }
    };
    match raw {
        None => {}
        Some(RawHeaders::Map(map)) => {
            for (name, value) in map {
                match value {
                    serde_json::Value::String(v) => push(name, v),
                    serde_json::Value::Array(values) => {
                        for v in values {
                            push(name.clone(), json_scalar_text(v));
                        }
                    }
                    serde_json::Value::Null => {}
                    other => push(name, json_scalar_text(other)),
                }
            }
        }
        Some(RawHeaders::List(list)) => {
            for header in list {
                let (RawHeader::Object { name, value } | RawHeader::Pair(name, value)) = header;
                push(name, value.unwrap_or_default());
            }
        }
    }
    out
}

fn json_scalar_text(value: serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s,
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// A key over the fields the event actually carried, each tagged with its
/// name so that moving a value between fields changes the key.
#[allow(clippy::too_many_arguments)]
fn content_key(
    channel: Channel,
    received_at: Option<&str>,
    sender: &leadsift_core::Sender,
    unparsed: &[Header],
    destination: &Option<String>,
    subject: &Option<String>,
    text: &str,
    call: Option<CallInfo>,
    utm: &Utm,
) -> DedupKey {
    let call_text = call.map(|c| format!("{}/{}", c.duration_secs, c.answered));
    let fields: [(&str, Option<&str>); 14] = [
        ("received_at", received_at),
        ("from.phone", sender.phone.as_ref().map(PhoneNumber::as_str)),
        ("from.email", sender.email.as_ref().map(EmailAddress::as_str)),
        ("from.handle", sender.handle.as_ref().map(MessengerHandle::as_str)),
        ("from.name", sender.name.as_deref()),
        ("to", destination.as_deref()),
        ("subject", subject.as_deref()),
        ("text", Some(text).filter(|t| !t.is_empty())),
        ("call", call_text.as_deref()),
        ("utm.source", utm.source.as_deref()),
        ("utm.medium", utm.medium.as_deref()),
        ("utm.campaign", utm.campaign.as_deref()),
        ("utm.content", utm.content.as_deref()),
        ("utm.term", utm.term.as_deref()),
    ];
    let mut parts: Vec<&[u8]> = Vec::with_capacity(2 * (fields.len() + unparsed.len()));
    for (name, value) in fields {
        if let Some(value) = value {
            parts.push(name.as_bytes());
            parts.push(value.as_bytes());
        }
    }
    // Unvalidated identities still tell senders apart.
    for header in unparsed {
        parts.push(header.name.as_bytes());
        parts.push(header.value.as_bytes());
    }
    DedupKey::from_content(channel, &parts)
}

/// Reads JSON lines (one event object per line) and parses each. Blank lines
/// are skipped; a bad line yields its own error and the rest still parse.
/// Items are labelled `origin#N` with the 1-based line number. A line over
/// `max_raw_bytes` is skipped unread past the limit and reported as
/// [`FormatError::TooLarge`]; a read error ends the iteration after being
/// reported once.
pub fn parse_json_lines<R: BufRead>(
    reader: R,
    origin: &str,
    opts: &ParseOptions,
) -> impl Iterator<Item = (String, Result<Message, FormatError>)> + use<R> {
    let origin = origin.to_owned();
    let opts = opts.clone();
    CappedLines::new(reader, origin.clone(), opts.max_raw_bytes).map(move |(line, bytes)| {
        let label = format!("{origin}#{line}");
        let parsed = bytes.and_then(|bytes| parse_event_json(&bytes, &opts));
        (label, parsed)
    })
}

/// Non-blank lines of a reader, each capped at `limit` bytes, with 1-based
/// line numbers. Shared by [`parse_json_lines`] and the path walker.
pub(crate) struct CappedLines<R> {
    reader: R,
    origin: String,
    limit: usize,
    line: usize,
    done: bool,
}

impl<R: BufRead> CappedLines<R> {
    pub(crate) fn new(reader: R, origin: String, limit: usize) -> Self {
        Self { reader, origin, limit, line: 0, done: false }
    }

    fn read_error(&mut self, error: std::io::Error) -> Option<(usize, Result<Vec<u8>, FormatError>)> {
        self.done = true;
        Some((self.line, Err(FormatError::io(format!("{}#{}", self.origin, self.line), error))))
    }
}

/// Consumes the rest of the current line; returns its length without the `\n`.
fn skip_rest_of_line(reader: &mut impl BufRead) -> std::io::Result<usize> {
    let mut skipped = 0;
    loop {
        let buffer = match reader.fill_buf() {
            Ok(buffer) => buffer,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        if buffer.is_empty() {
            return Ok(skipped);
        }
        match buffer.iter().position(|&b| b == b'\n') {
            Some(end) => {
                reader.consume(end + 1);
                return Ok(skipped + end);
            }
            None => {
                let len = buffer.len();
                skipped += len;
                reader.consume(len);
            }
        }
    }
}

impl<R: BufRead> Iterator for CappedLines<R> {
    type Item = (usize, Result<Vec<u8>, FormatError>);

    fn next(&mut self) -> Option<Self::Item> {
        use std::io::Read;
        while !self.done {
            self.line += 1;
            let mut buf = Vec::new();
            let cap = self.limit as u64 + 1;
            match (&mut self.reader).take(cap).read_until(b'\n', &mut buf) {
                Ok(0) => self.done = true,
                Ok(read) if read as u64 == cap && !buf.ends_with(b"\n") => {
                    // Over the limit: skip the rest of the line without keeping it.
                    return match skip_rest_of_line(&mut self.reader) {
                        Ok(rest) => Some((
                            self.line,
                            Err(FormatError::TooLarge { size: (read + rest) as u64, limit: self.limit }),
                        )),
                        Err(error) => self.read_error(error),
                    };
                }
                Ok(_) if buf.iter().all(u8::is_ascii_whitespace) => {}
                Ok(_) => return Some((self.line, Ok(buf))),
                Err(error) => return self.read_error(error),
            }
        }
        None
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(json: &str) -> Result<Message, FormatError> {
        parse_event_json(json.as_bytes(), &ParseOptions::default())
    }

    #[test]
    fn call_event_from_the_docs() {
        let m = parse(include_str!("../tests/fixtures/call.json")).unwrap();
        assert_eq!(m.channel, Channel::Call);
        assert_eq!(m.dedup_key.as_str(), "call:pbx-778812");
        assert_eq!(m.received_at.to_rfc3339(), "2026-11-20T10:15:00+00:00");
        assert_eq!(m.sender.phone.as_ref().map(PhoneNumber::as_str), Some("+79162045581"));
        assert_eq!(m.destination.as_deref(), Some("+74951234501"));
        assert_eq!(m.text, "Хочу заказать расчёт фасада");
        assert_eq!(m.call, Some(CallInfo { duration_secs: 214, answered: true }));
        assert_eq!(m.utm.campaign.as_deref(), Some("fasad_moscow"));
        assert_eq!(m.utm.content, None);
        assert!(m.headers.is_empty() && m.subject.is_none());
    }

    #[test]
    fn messenger_event() {
        let m = parse(
            r#"{"channel":"messenger","id":58112093,"received_at":"2026-11-20T13:15:00+03:00",
                "from":{"handle":"Telegram:@IvanP","name":" Иван "},"to":"bot-sales","text":"Сколько стоит?"}"#,
        )
        .unwrap();
        assert_eq!(m.dedup_key.as_str(), "messenger:58112093");
        assert_eq!(m.received_at.to_rfc3339(), "2026-11-20T10:15:00+00:00");
        assert_eq!(m.sender.handle.as_ref().map(MessengerHandle::as_str), Some("telegram:ivanp"));
        assert_eq!(m.sender.name.as_deref(), Some("Иван"));
        assert_eq!(m.destination.as_deref(), Some("bot-sales"));
    }

    #[test]
    fn webform_event_with_headers_and_attachments() {
        let m = parse(
            r#"{"channel":"webform","from":{"email":"Anna@Client.Example","phone":"+7 916 204 55 81"},
                "to":"Leads@Firm.Example","subject":"Заявка","text":"Перезвоните",
                "headers":{"X-Form-Page":"/fasad","X-Tags":["a","b"],"X-Null":null},
                "attachments":[{"name":"plan.pdf","mime_type":"Application/PDF","size":48213},{"mime_type":null}]}"#,
        )
        .unwrap();
        assert_eq!(m.sender.email.as_ref().map(EmailAddress::as_str), Some("anna@client.example"));
        assert_eq!(m.destination.as_deref(), Some("leads@firm.example"));
        assert!(m.dedup_key.as_str().starts_with("webform:sha256:"));
        assert_eq!(m.header("X-Form-Page"), Some("/fasad"));
        assert_eq!(m.header_values("X-Tags").collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(m.header("X-Null"), None);
        assert_eq!(
            m.attachments[0],
            Attachment { name: Some("plan.pdf".into()), mime_type: "application/pdf".into(), size: 48213 }
        );
        assert_eq!(m.attachments[1].mime_type, "application/octet-stream");

        let listed = parse(r#"{"channel":"webform","headers":[{"name":"X-A","value":"1"},["X-B","2"]]}"#).unwrap();
        assert_eq!((listed.header("x-a"), listed.header("x-b")), (Some("1"), Some("2")));
    }

    #[test]
    fn email_channel_and_nulls_everywhere() {
        let m = parse(
            r#"{"channel":"email","id":null,"received_at":null,"from":null,"to":null,"subject":null,
                "text":null,"call":null,"utm":null,"headers":null,"attachments":null}"#,
        )
        .unwrap();
        assert_eq!(m.channel, Channel::Email);
        assert!(m.sender.is_anonymous() && m.text.is_empty() && m.call.is_none() && m.utm.is_empty());
        // No id and no fields: the key is still stable and not time based.
        assert_eq!(parse(r#"{"channel":"email"}"#).unwrap().dedup_key, m.dedup_key);
    }

    #[test]
    fn invalid_identities_are_kept_as_headers() {
        let m =
            parse(r#"{"channel":"call","from":{"phone":"call me maybe","email":"not-an-email","handle":"58112093"}}"#)
                .unwrap();
        assert!(m.sender.is_anonymous());
        assert_eq!(m.header("X-Leadsift-Unparsed-From-Phone"), Some("call me maybe"));
        assert_eq!(m.header("X-Leadsift-Unparsed-From-Email"), Some("not-an-email"));
        assert_eq!(m.header("X-Leadsift-Unparsed-From-Handle"), Some("58112093"));
        let other = parse(r#"{"channel":"call","from":{"phone":"call me later"}}"#).unwrap();
        assert_ne!(other.dedup_key, m.dedup_key);
    }

    #[test]
    fn content_key_ignores_defaulted_time_but_not_given_fields() {
        let a = parse(r#"{"channel":"webform","text":"hi","to":"form-1"}"#).unwrap();
        let b = parse(r#"{"channel":"webform","text":"hi","to":"form-1","unknown":1}"#).unwrap();
        assert_eq!(a.dedup_key, b.dedup_key);
        let moved = parse(r#"{"channel":"webform","subject":"hi","to":"form-1"}"#).unwrap();
        assert_ne!(a.dedup_key, moved.dedup_key);
        let timed =
            parse(r#"{"channel":"webform","text":"hi","to":"form-1","received_at":"2026-01-01T00:00:00Z"}"#).unwrap();
        assert_ne!(a.dedup_key, timed.dedup_key);
    }

    #[test]
    fn errors_name_the_problem() {
        let error = parse("{\"channel\":\"call\",\n \"id\": }").unwrap_err();
        assert!(matches!(error, FormatError::InvalidEventJson { line: 2, column: 8, .. }), "{error:?}");
        assert_eq!(error.to_string(), "invalid event JSON at line 2, column 8: expected value");
        assert!(matches!(parse("[{\"channel\":\"call\"}]"), Err(FormatError::EventNotAnObject { found: "an array" })));
        assert!(matches!(parse(" 42 "), Err(FormatError::EventNotAnObject { found: "a number" })));
        assert!(matches!(parse("\"call\""), Err(FormatError::EventNotAnObject { found: "a string" })));
        assert!(matches!(parse("[1,"), Err(FormatError::InvalidEventJson { .. })));
        assert!(matches!(parse("  "), Err(FormatError::EmptyInput)));
        assert!(matches!(parse("{}"), Err(FormatError::MissingEventField { field: "channel" })));
        assert!(matches!(parse(r#"{"channel":"fax"}"#), Err(FormatError::UnknownChannel(_))));
        assert!(matches!(parse(r#"{"channel":"call"} {}"#), Err(FormatError::InvalidEventJson { .. })));
        let error = parse(r#"{"channel":"call","received_at":"yesterday"}"#).unwrap_err();
        assert!(matches!(error, FormatError::InvalidEventField { field: "received_at", .. }), "{error:?}");
        let error = parse(r#"{"channel":"call","call":{"answered":"yes"}}"#).unwrap_err();
        assert!(error.to_string().contains("invalid type: string \"yes\", expected a boolean"), "{error}");
        let opts = ParseOptions { max_raw_bytes: 10, ..ParseOptions::default() };
        assert!(matches!(
            parse_event_json(br#"{"channel":"call"}"#, &opts),
            Err(FormatError::TooLarge { size: 18, limit: 10 })
        ));
    }

    #[test]
    fn text_is_capped() {
        let opts = ParseOptions { max_text_bytes: 4, ..ParseOptions::default() };
        let m = parse_event_json(r#"{"channel":"messenger","text":"абвгд"}"#.as_bytes(), &opts).unwrap();
        assert_eq!(m.text, "аб");
        assert!(m.truncated);
    }

    #[test]
    fn json_lines_with_a_bad_line() {
        let input = include_bytes!("../tests/fixtures/events.jsonl");
        let results: Vec<_> = parse_json_lines(&input[..], "stdin", &ParseOptions::default()).collect();
        let labels: Vec<&str> = results.iter().map(|(label, _)| label.as_str()).collect();
        assert_eq!(labels, ["stdin#1", "stdin#3", "stdin#4"]);
        assert_eq!(results[0].1.as_ref().unwrap().channel, Channel::Messenger);
        assert!(matches!(results[1].1, Err(FormatError::InvalidEventJson { line: 2, .. })), "{:?}", results[1].1);
        let call = results[2].1.as_ref().unwrap();
        assert_eq!(call.dedup_key.as_str(), "call:778813");
        assert_eq!(call.header("X-Leadsift-Unparsed-From-Phone"), Some("not a phone"));
    }

    #[test]
    fn json_lines_over_the_cap_are_skipped_not_buffered() {
        let opts = ParseOptions { max_raw_bytes: 32, ..ParseOptions::default() };
        let long = format!("{{\"channel\":\"call\",\"text\":\"{}\"}}", "x".repeat(100));
        let input = format!("{long}\n{{\"channel\":\"call\"}}\n{long}");
        let results: Vec<_> = parse_json_lines(input.as_bytes(), "in", &opts).collect();
        assert_eq!(results.len(), 3);
        assert!(matches!(results[0].1, Err(FormatError::TooLarge { size: 128, limit: 32 })), "{:?}", results[0].1);
        assert!(results[1].1.is_ok());
        assert!(matches!(results[2].1, Err(FormatError::TooLarge { size: 128, .. })), "{:?}", results[2].1);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(raw in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_event_json(&raw, &ParseOptions::default());
        }

        #[test]
        fn arbitrary_events_never_panic_and_keys_are_deterministic(
            channel in "(email|call|messenger|webform|x)",
            phone in proptest::option::of("[0-9 +()-]{0,16}"),
            handle in proptest::option::of("[a-z]{0,5}:?@?[A-Za-z0-9]{0,8}"),
            text in proptest::option::of("\\PC{0,40}"),
            id in proptest::option::of("[a-z0-9-]{0,8}"),
        ) {
            let event = serde_json::json!({
                "channel": channel, "id": id, "text": text,
                "from": {"phone": phone, "handle": handle},
            });
            let raw = event.to_string();
            let opts = ParseOptions::default();
            if let Ok(first) = parse_event_json(raw.as_bytes(), &opts) {
                let second = parse_event_json(raw.as_bytes(), &opts).unwrap();
                prop_assert_eq!(first.dedup_key, second.dedup_key);
            }
        }
    }
}
