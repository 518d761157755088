//! RFC 822 / MIME email → [`Message`], on top of `mail-parser`.
//!
//! `mail-parser` is deliberately forgiving: it "parses" a PNG or a README as
//! a message with odd headers. Intake must not, so [`parse_rfc822`] first
//! checks that the input starts with a header field. It also repairs two
//! malformations real corpora have: a header block that runs straight into
//! the body without the blank separator line (the Enron corpus keeps only
//! `Subject: …` followed directly by the body), and a multipart message cut
//! off before its closing boundary (a dozen SpamAssassin spams), whose last
//! part `mail-parser` would leave undecoded.

use std::borrow::Cow;
use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use leadsift_core::message::short_hash;
use leadsift_core::{Attachment, Channel, DedupKey, EmailAddress, Header, Message};
use mail_parser::parsers::MessageStream;
use mail_parser::{Encoding, HeaderName, HeaderValue, MessageParser, MessagePart, MimeHeaders, PartType};

use crate::html::html_body_to_text;
use crate::{FormatError, MAX_HEADER_VALUE_BYTES, ParseOptions, UNPARSED_HEADER_PREFIX, truncate_on_char_boundary};

/// Headers that name our mailbox, most specific first (the MTA's
/// envelope recipient beats the `To` the sender wrote).
const DESTINATION_HEADERS: [&str; 3] = ["Delivered-To", "X-Original-To", "Envelope-To"];

/// Only the headers this module reads as structured values, and the MIME
/// headers body parsing needs, are parsed by `mail-parser`; all others are
/// skipped there and decoded from their raw bytes in [`decoded_headers`],
/// which is cheaper (most values are plain ASCII without encoded words).
/// `Received` dates are parsed lazily, only for messages without a usable
/// `Date`, because `Received` is the most frequent and most expensive header.
static PARSER: LazyLock<MessageParser> = LazyLock::new(|| {
    MessageParser::new()
        .with_mime_headers()
        .header_address(HeaderName::From)
        .header_address(HeaderName::To)
        .header_date(HeaderName::Date)
        .header_id(HeaderName::MessageId)
        .default_header_ignore()
});

/// Parses one raw email.
///
/// Errors: empty input, input over `max_raw_bytes`, and input whose first
/// line is not a header field (`Name: value`). Everything after that is
/// best effort: broken MIME still yields the text that could be recovered,
/// and an unparsable `From` is kept as an `X-Leadsift-Unparsed-From` header.
///
/// `received_at` is the `Date` header, else the newest `Received:` date,
/// else `Utc::now()`; the dedup key never uses the latter.
pub fn parse_rfc822(raw: &[u8], opts: &ParseOptions) -> Result<Message, FormatError> {
    let data = normalize_header_block(raw, opts)?;
    let no_headers = || FormatError::NotRfc822 { reason: "no header fields found".to_owned() };
    let parsed = PARSER.parse(data.as_ref()).ok_or_else(no_headers)?;
    match with_closed_multiparts(&parsed, data.as_ref()) {
        None => build_message(&parsed, data.as_ref(), opts),
        Some(repaired) => {
            drop(parsed);
            let reparsed = PARSER.parse(&repaired).ok_or_else(no_headers)?;
            build_message(&reparsed, &repaired, opts)
        }
    }
}

/// A truncated multipart message (no closing boundary) leaves `mail-parser`
/// unable to decode its last part: a base64 HTML body stays base64 and is
/// filed as an attachment. Appending the missing closing delimiters and
/// parsing again recovers it; this only runs for messages with a part
/// `mail-parser` flagged as broken.
fn with_closed_multiparts(parsed: &mail_parser::Message<'_>, raw: &[u8]) -> Option<Vec<u8>> {
    if !parsed.parts.iter().any(|part| part.is_encoding_problem) {
        return None;
    }
    let missing: Vec<String> = parsed
        .parts
        .iter()
        .filter_map(|part| part.content_type())
        .filter(|ct| ct.ctype().eq_ignore_ascii_case("multipart"))
        .filter_map(|ct| ct.attribute("boundary"))
        .map(|boundary| format!("--{boundary}--"))
        .filter(|closing| !raw.windows(closing.len()).any(|w| w == closing.as_bytes()))
        .collect();
    if missing.is_empty() {
        return None;
    }
    let mut repaired = Vec::with_capacity(raw.len() + missing.iter().map(|c| c.len() + 2).sum::<usize>() + 2);
    repaired.extend_from_slice(raw);
    // Innermost multiparts come last in part order and must close first.
    for closing in missing.iter().rev() {
        repaired.extend_from_slice(b"\r\n");
        repaired.extend_from_slice(closing.as_bytes());
    }
    repaired.extend_from_slice(b"\r\n");
    Some(repaired)
}

fn build_message(
    parsed: &mail_parser::Message<'_>,
    raw_message: &[u8],
    opts: &ParseOptions,
) -> Result<Message, FormatError> {
    let root =
        parsed.parts.first().ok_or_else(|| FormatError::NotRfc822 { reason: "no header fields found".to_owned() })?;

    let headers = decoded_headers(root, raw_message, opts.max_headers);
    let first_header_value =
        |name: &str| headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value.as_str()).unwrap_or("");
    let from_text = first_header_value("From").to_owned();
    let to_text = first_header_value("To").to_owned();
    let date_text = first_header_value("Date").to_owned();
    let subject = Some(first_header_value("Subject")).filter(|s| !s.is_empty()).map(str::to_owned);

    let text = body_text(parsed);
    let dedup_key = match parsed.message_id().map(str::trim).filter(|id| !id.is_empty()) {
        Some(message_id) => {
            let guard =
                short_hash(&[from_text.as_bytes(), date_text.as_bytes(), subject.as_deref().unwrap_or("").as_bytes()]);
            DedupKey::from_upstream_id(Channel::Email, &format!("{message_id}#{guard}"))
        }
        None => DedupKey::from_content(
            Channel::Email,
            &[
                from_text.as_bytes(),
                to_text.as_bytes(),
                date_text.as_bytes(),
                subject.as_deref().unwrap_or("").as_bytes(),
                text.as_bytes(),
            ],
        ),
    };

    let received_at =
        date_header_time(parsed).or_else(|| newest_received_time(root, raw_message)).unwrap_or_else(Utc::now);
    let mut message = Message::new(Channel::Email, dedup_key, received_at);
    message.subject = subject;
    message.destination = destination(parsed, &headers);
    message.attachments = attachments(parsed);
    message.headers = headers;

    if let Some(from) = parsed.from().and_then(|from| from.first()) {
        message.sender.name =
            from.name().map(str::trim).filter(|n| !n.is_empty() && Some(*n) != from.address()).map(str::to_owned);
        match from.address().map(EmailAddress::parse) {
            Some(Ok(email)) => message.sender.email = Some(email),
            _ => message.headers.push(unparsed_header("From", &from_text)),
        }
    } else if !from_text.trim().is_empty() {
        message.headers.push(unparsed_header("From", &from_text));
    }

    message.text = text;
    message.cap_text(opts.max_text_bytes);
    Ok(message)
}

pub(crate) fn unparsed_header(what: &str, raw_value: &str) -> Header {
    let mut value = raw_value.trim().to_owned();
    truncate_on_char_boundary(&mut value, MAX_HEADER_VALUE_BYTES);
    Header { name: format!("{UNPARSED_HEADER_PREFIX}{what}"), value }
}

/// Checks the input looks like a message and returns the bytes to parse:
/// without a BOM, leading blank lines or an mbox `From ` envelope line, and
/// with a blank line inserted where a header block runs into the body.
fn normalize_header_block<'a>(raw: &'a [u8], opts: &ParseOptions) -> Result<Cow<'a, [u8]>, FormatError> {
    if raw.len() > opts.max_raw_bytes {
        return Err(FormatError::TooLarge { size: raw.len() as u64, limit: opts.max_raw_bytes });
    }
    let mut data = raw.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(raw);
    while let Some(rest) = data.strip_prefix(b"\r\n").or_else(|| data.strip_prefix(b"\n")) {
        data = rest;
    }
    if data.iter().all(u8::is_ascii_whitespace) {
        return Err(FormatError::EmptyInput);
    }
    if data.starts_with(b"From ") {
        let (_, rest) = split_line(data);
        data = rest;
    }

    let mut offset = 0;
    let mut first = true;
    while offset < data.len() {
        let (line, _) = split_line(&data[offset..]);
        let content = line.strip_suffix(b"\n").unwrap_or(line);
        let content = content.strip_suffix(b"\r").unwrap_or(content);
        if content.is_empty() {
            break; // the blank line ending the header block
        }
        let is_continuation = matches!(content[0], b' ' | b'\t');
        if first && !is_header_field(content) {
            return Err(FormatError::NotRfc822 {
                reason: format!(
                    "the first line is not a header field (`Name: value`): {:?}",
                    String::from_utf8_lossy(&content[..content.len().min(60)])
                ),
            });
        }
        if !first && !is_continuation && !is_header_field(content) {
            // The body starts here but the separator is missing.
            let eol: &[u8] = if offset >= 2 && data[offset - 2] == b'\r' { b"\r\n" } else { b"\n" };
            let mut repaired = Vec::with_capacity(data.len() + 2);
            repaired.extend_from_slice(&data[..offset]);
            repaired.extend_from_slice(eol);
            repaired.extend_from_slice(&data[offset..]);
            return Ok(Cow::Owned(repaired));
        }
        first = false;
        offset += line.len();
    }
    Ok(Cow::Borrowed(data))
}

/// Splits off the first line including its `\n`.
fn split_line(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == b'\n') {
        Some(end) => data.split_at(end + 1),
        None => (data, &[]),
    }
}

/// `Name: value` with an RFC 5322 field name (printable ASCII, no colon, no
/// space). A line like `http://…` is a URL in a body, not a field named `http`.
fn is_header_field(line: &[u8]) -> bool {
    let Some(colon) = line.iter().position(|&b| b == b':') else {
        return false;
    };
    let name = &line[..colon];
    !name.is_empty()
        && name.len() <= 128
        && name.iter().all(|&b| (33..=126).contains(&b))
        && !line[colon + 1..].starts_with(b"//")
}

/// Root headers in order, names as written, values unfolded and decoded
/// to text (RFC 2047 encoded words decoded, invalid UTF-8 replaced).
fn decoded_headers(root: &MessagePart<'_>, raw: &[u8], max_headers: usize) -> Vec<Header> {
    root.headers()
        .iter()
        .take(max_headers)
        .map(|header| {
            let start = header.offset_start() as usize;
            let name_bytes = raw.get(header.offset_field() as usize..start).unwrap_or_default();
            let name = String::from_utf8_lossy(name_bytes);
            let name = name.trim_end().trim_end_matches(':').trim();
            let name = if name.is_empty() { header.name() } else { name };
            let raw_value = raw.get(start..header.offset_end() as usize).unwrap_or_default();
            let mut value = decode_header_value(raw_value);
            truncate_on_char_boundary(&mut value, MAX_HEADER_VALUE_BYTES);
            Header { name: name.to_owned(), value }
        })
        .collect()
}

/// Unfolds a raw header value (each line break plus the indentation after
/// it becomes one space) and decodes RFC 2047 encoded words.
fn decode_header_value(raw_value: &[u8]) -> String {
    let trimmed = raw_value.trim_ascii();
    // `from_utf8` is much faster than `from_utf8_lossy` on valid input.
    let text = match std::str::from_utf8(trimmed) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(trimmed),
    };
    if text.contains("=?") {
        return match MessageStream::new(raw_value).parse_unstructured() {
            HeaderValue::Text(decoded) => decoded.trim().to_owned(),
            _ => String::new(),
        };
    }
    if !text.contains('\n') {
        return text.into_owned();
    }
    let mut unfolded = String::with_capacity(text.len());
    for (index, line) in text.split('\n').enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let line = if index == 0 { line } else { line.trim_start() };
        if line.is_empty() {
            continue;
        }
        if !unfolded.is_empty() {
            unfolded.push(' ');
        }
        unfolded.push_str(line);
    }
    unfolded
}

/// All `text/plain` body parts; for HTML-only messages the HTML as text.
fn body_text(parsed: &mail_parser::Message<'_>) -> String {
    let parts = |ids: &[u32]| -> Vec<&PartType<'_>> {
        ids.iter().filter_map(|&id| parsed.parts.get(id as usize)).map(|p| &p.body).collect()
    };
    let plain: Vec<&str> = parts(&parsed.text_body)
        .into_iter()
        .filter_map(|body| match body {
            PartType::Text(text) => Some(text.as_ref()),
            _ => None,
        })
        .collect();
    if !plain.is_empty() {
        return join_parts(plain.into_iter().map(Cow::Borrowed));
    }
    let html = join_parts(parts(&parsed.html_body).into_iter().filter_map(|body| match body {
        PartType::Html(html) => Some(Cow::Owned(html_body_to_text(html))),
        _ => None,
    }));
    if !html.is_empty() {
        return html;
    }
    join_parts(recovered_text_parts(parsed).map(|part| match &part.body {
        PartType::Text(text) => Cow::Borrowed(text.as_ref()),
        _ => Cow::Borrowed(""),
    }))
}

/// Plain-text parts `mail-parser` could only recover from broken MIME (a
/// missing closing boundary, a bad transfer encoding). It files them as
/// attachments; for a message with no other body they are the body.
fn recovered_text_parts<'p>(parsed: &'p mail_parser::Message<'_>) -> impl Iterator<Item = &'p MessagePart<'p>> {
    parsed
        .attachments
        .iter()
        .filter_map(|&id| parsed.parts.get(id as usize))
        .filter(|part| part.is_encoding_problem && matches!(part.body, PartType::Text(_)) && is_plain_or_untyped(part))
}

fn is_plain_or_untyped(part: &MessagePart<'_>) -> bool {
    part.content_type().is_none_or(|ct| {
        ct.ctype().eq_ignore_ascii_case("text") && ct.subtype().is_none_or(|s| s.eq_ignore_ascii_case("plain"))
    })
}

/// Joins body parts with a blank line; line endings become `\n`.
fn join_parts<'a>(parts: impl Iterator<Item = Cow<'a, str>>) -> String {
    let mut text = String::new();
    for part in parts {
        let part = part.trim_end();
        if part.is_empty() {
            continue;
        }
        if !text.is_empty() {
            text.push_str("\n\n");
        }
        text.push_str(part);
    }
    if text.contains('\r') {
        text = text.replace("\r\n", "\n");
    }
    text
}

fn to_utc(date: &mail_parser::DateTime) -> Option<DateTime<Utc>> {
    if date.is_valid() { DateTime::from_timestamp(date.to_timestamp(), 0) } else { None }
}

fn date_header_time(parsed: &mail_parser::Message<'_>) -> Option<DateTime<Utc>> {
    parsed.date().and_then(to_utc)
}

/// The newest date among the `Received:` headers (the hop nearest to us).
fn newest_received_time(root: &MessagePart<'_>, raw: &[u8]) -> Option<DateTime<Utc>> {
    root.headers()
        .iter()
        .filter(|h| h.name == HeaderName::Received)
        .filter_map(|h| {
            let value = raw.get(h.offset_start() as usize..h.offset_end() as usize)?;
            match MessageStream::new(value).parse_received() {
                HeaderValue::Received(received) => received.date().as_ref().and_then(to_utc),
                _ => None,
            }
        })
        .max()
}

/// Our mailbox: the envelope recipient headers first, then `To`.
fn destination(parsed: &mail_parser::Message<'_>, headers: &[Header]) -> Option<String> {
    let envelope = DESTINATION_HEADERS.iter().find_map(|name| {
        headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .flat_map(|h| h.value.split(','))
            .find_map(|candidate| EmailAddress::parse(candidate).ok())
    });
    envelope
        .or_else(|| {
            parsed.to()?.iter().find_map(|addr| addr.address().and_then(|address| EmailAddress::parse(address).ok()))
        })
        .map(|email| email.as_str().to_owned())
}

/// Metadata of every part that is not a body (attachments, inline images,
/// attached messages).
fn attachments(parsed: &mail_parser::Message<'_>) -> Vec<Attachment> {
    let has_body = !parsed.text_body.is_empty() || !parsed.html_body.is_empty();
    parsed
        .attachments
        .iter()
        .filter_map(|&id| parsed.parts.get(id as usize))
        .filter(|part| {
            has_body
                || !(part.is_encoding_problem && matches!(part.body, PartType::Text(_)) && is_plain_or_untyped(part))
        })
        .map(|part| {
            let mime_type = match part.content_type() {
                Some(ct) => match ct.subtype() {
                    Some(subtype) => format!("{}/{}", ct.ctype(), subtype),
                    None => ct.ctype().to_owned(),
                }
                .to_ascii_lowercase(),
                None => match &part.body {
                    PartType::Text(_) => "text/plain",
                    PartType::Html(_) => "text/html",
                    PartType::Message(_) => "message/rfc822",
                    _ => "application/octet-stream",
                }
                .to_owned(),
            };
            let size = match &part.body {
                // A nested message that was not transfer-encoded borrows the
                // whole outer message as its `raw_message`; use its offsets.
                PartType::Message(_) if part.encoding == Encoding::None => {
                    part.raw_end_offset().saturating_sub(part.raw_body_offset()) as u64
                }
                _ => part.len() as u64,
            };
            let name = part.attachment_name().map(str::trim).filter(|n| !n.is_empty()).map(str::to_owned);
            Attachment { name, mime_type, size }
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use proptest::prelude::*;

    const RUSSIAN_BODY: &str =
        "Здравствуйте! Нужен расчёт фасада, площадь 1200 кв. м.\nПерезвоните: 8 (916) 204-55-81.";
    const RUSSIAN_SUBJECT: &str = "Заявка на расчёт фасада";

    fn parse(raw: &[u8]) -> Message {
        parse_rfc822(raw, &ParseOptions::default()).expect("fixture parses")
    }

    #[test]
    fn koi8r_body_and_encoded_words() {
        let m = parse(include_bytes!("../tests/fixtures/koi8r_8bit.eml"));
        assert_eq!(m.channel, Channel::Email);
        assert_eq!(m.subject.as_deref(), Some(RUSSIAN_SUBJECT));
        assert_eq!(m.text, RUSSIAN_BODY);
        assert_eq!(m.sender.email.as_ref().map(EmailAddress::as_str), Some("ivan.petrov@example.ru"));
        assert_eq!(m.sender.name.as_deref(), Some("Иван Петров"));
        // Delivered-To beats To.
        assert_eq!(m.destination.as_deref(), Some("sales@firm.example"));
        assert_eq!(m.received_at.to_rfc3339(), "2026-11-20T07:15:00+00:00");
        assert_eq!(m.header("subject"), Some(RUSSIAN_SUBJECT));
        assert_eq!(m.header("From"), Some("Иван Петров <Ivan.Petrov@Example.RU>"));
        assert_eq!(
            m.header("Received"),
            Some(
                "from mx.example.ru (mx.example.ru [192.0.2.1]) by mx.firm.example with ESMTP id 1A2B3C \
                 for <sales@firm.example>; Fri, 20 Nov 2026 10:15:03 +0300"
            )
        );
        // Names are kept as written.
        assert!(m.headers.iter().any(|h| h.name == "Message-ID" && h.value == "<koi8-1@example.ru>"));
        assert!(m.dedup_key.as_str().starts_with("email:koi8-1@example.ru#"), "{}", m.dedup_key);
        assert!(m.attachments.is_empty() && m.utm.is_empty() && m.call.is_none() && !m.truncated);
    }

    #[test]
    fn windows1251_quoted_printable_with_crlf() {
        let m = parse(include_bytes!("../tests/fixtures/cp1251_qp.eml"));
        assert_eq!(m.subject.as_deref(), Some(RUSSIAN_SUBJECT));
        assert_eq!(m.text, RUSSIAN_BODY);
        assert_eq!(m.sender.name.as_deref(), Some("Ольга Смирнова"));
        assert_eq!(m.destination.as_deref(), Some("sales@firm.example"));
    }

    #[test]
    fn iso8859_5_and_utf8_base64() {
        for raw in [
            &include_bytes!("../tests/fixtures/iso8859_5_base64.eml")[..],
            &include_bytes!("../tests/fixtures/utf8_base64.eml")[..],
        ] {
            let m = parse(raw);
            assert_eq!(m.subject.as_deref(), Some(RUSSIAN_SUBJECT));
            assert_eq!(m.text, RUSSIAN_BODY);
            assert_eq!(m.sender.name, None);
        }
    }

    #[test]
    fn html_only_becomes_text_with_links() {
        let m = parse(include_bytes!("../tests/fixtures/html_only_cp1251.eml"));
        assert_eq!(
            m.text,
            "Только сегодня — скидка 50%!\nКаталог\nПерейти в каталог (http://shop.example/catalog?utm=1&x=2)"
        );
        assert_eq!(m.link_count(), 1);
        assert_eq!(m.sender.name.as_deref(), Some("Shop"));
    }

    #[test]
    fn multipart_alternative_prefers_plain_text() {
        let m = parse(include_bytes!("../tests/fixtures/multipart_alternative.eml"));
        assert_eq!(m.text, "Hello, please send a quote for 12 windows.\nSee https://client.example/plan for the plan.");
        assert!(m.attachments.is_empty(), "{:?}", m.attachments);
        assert_eq!(m.received_at.to_rfc3339(), "2026-11-25T13:30:00+00:00");
    }

    #[test]
    fn attachment_metadata() {
        let m = parse(include_bytes!("../tests/fixtures/attachments.eml"));
        assert_eq!(m.text, "Drawings attached, logo below.");
        let summary: Vec<(Option<&str>, &str, u64)> =
            m.attachments.iter().map(|a| (a.name.as_deref(), a.mime_type.as_str(), a.size)).collect();
        assert_eq!(
            summary,
            vec![
                (Some("logo.png"), "image/png", 70),
                (Some("чертеж.pdf"), "application/pdf", 78),
                (None, "message/rfc822", 132),
            ]
        );
        assert_eq!(m.header("Cc"), Some("boss@client.example"));
    }

    #[test]
    fn no_message_id_uses_a_content_key() {
        let raw = include_bytes!("../tests/fixtures/no_message_id.eml");
        let m = parse(raw);
        assert!(m.dedup_key.as_str().starts_with("email:sha256:"), "{}", m.dedup_key);
        assert_eq!(parse(raw).dedup_key, m.dedup_key);
        let edited = String::from_utf8_lossy(raw).replace("Tula", "Kaluga");
        assert_ne!(parse(edited.as_bytes()).dedup_key, m.dedup_key);
    }

    #[test]
    fn reused_message_id_with_other_content_is_another_message() {
        let raw = String::from_utf8_lossy(include_bytes!("../tests/fixtures/multipart_alternative.eml")).into_owned();
        let original = parse(raw.as_bytes()).dedup_key;
        // The same message delivered to two folders: only trace headers differ.
        let refiled = format!("X-Folder: Archive\n{raw}");
        assert_eq!(parse(refiled.as_bytes()).dedup_key, original);
        let reused = raw.replace("Subject: Quote for windows", "Subject: Newsletter");
        assert_ne!(parse(reused.as_bytes()).dedup_key, original);
    }

    #[test]
    fn truncated_mime_keeps_the_text() {
        let m = parse(include_bytes!("../tests/fixtures/truncated_mime.eml"));
        assert_eq!(m.text, "Please call me back about the roof, the connection dropped");
        assert!(m.attachments.is_empty(), "{:?}", m.attachments);
    }

    #[test]
    fn truncated_base64_html_is_decoded() {
        let m = parse(
            b"Subject: s\nContent-Type: multipart/mixed; boundary=\"B\"\n\n--B\n\
              Content-Type: text/html; charset=utf-8\nContent-Transfer-Encoding: base64\n\n\
              PHA+UGxlYXNlIGNhbGwgbWUgYmFjayBhYm91dCB0aGUgPGI+cm9vZjwvYj4sIHRoZSBjb25uZWN0aW9uIGRyb3BwZWQ8L3A+\n",
        );
        assert_eq!(m.text, "Please call me back about the roof, the connection dropped");
        assert!(m.attachments.is_empty(), "{:?}", m.attachments);
    }

    #[test]
    fn header_block_without_separator_enron_style() {
        let m = parse(include_bytes!("../tests/fixtures/enron_style.txt"));
        assert_eq!(m.subject.as_deref(), Some("re : gas nomination for december"));
        assert_eq!(
            m.text,
            "vince ,\nplease see the attached nomination .\nhttp://www.enron.example/noms\ntime : 10 am"
        );
        assert_eq!(m.headers.len(), 1);
        assert!(m.sender.is_anonymous());
        assert!(m.dedup_key.as_str().starts_with("email:sha256:"));
    }

    #[test]
    fn url_line_after_headers_is_body() {
        let m = parse(b"Subject: hi\nhttp://spam.example/x\nmore");
        assert_eq!(m.text, "http://spam.example/x\nmore");
    }

    #[test]
    fn mbox_envelope_line_and_bom_are_skipped() {
        let m = parse(
            b"\xEF\xBB\xBFFrom someone@example.com Thu Aug 22 13:17:22 2002\nFrom: a@b.example\nSubject: s\n\nbody",
        );
        assert_eq!(m.sender.email.as_ref().map(EmailAddress::as_str), Some("a@b.example"));
        assert_eq!(m.text, "body");
    }

    #[test]
    fn rejects_non_messages() {
        let opts = ParseOptions::default();
        assert!(matches!(parse_rfc822(b"", &opts), Err(FormatError::EmptyInput)));
        assert!(matches!(parse_rfc822(b"\n\r\n  \n", &opts), Err(FormatError::EmptyInput)));
        let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01";
        assert!(matches!(parse_rfc822(png, &opts), Err(FormatError::NotRfc822 { .. })));
        let readme = b"# leadsift\n\nTriage for inbound sales inquiries.\nNote: not an email.\n";
        let error = parse_rfc822(readme, &opts).unwrap_err();
        assert!(error.to_string().contains("first line is not a header field"), "{error}");
        let binary: Vec<u8> = (0..=255u8).rev().cycle().take(4096).collect();
        assert!(matches!(parse_rfc822(&binary, &opts), Err(FormatError::NotRfc822 { .. })));
    }

    #[test]
    fn rejects_oversized_input() {
        let opts = ParseOptions { max_raw_bytes: 1024, ..ParseOptions::default() };
        let raw = format!("Subject: big\n\n{}", "x".repeat(2000));
        assert!(matches!(parse_rfc822(raw.as_bytes(), &opts), Err(FormatError::TooLarge { size: 2014, limit: 1024 })));
    }

    #[test]
    fn caps_text_and_headers() {
        let opts = ParseOptions { max_text_bytes: 10, max_headers: 2, ..ParseOptions::default() };
        let long_value = "v".repeat(MAX_HEADER_VALUE_BYTES + 100);
        let raw = format!("Subject: s\nX-Long: {long_value}\nX-Dropped: d\n\nжжжжжжжжж");
        let m = parse_rfc822(raw.as_bytes(), &opts).unwrap();
        assert_eq!(m.text, "жжжжж");
        assert!(m.truncated);
        assert_eq!(m.headers.len(), 2);
        assert_eq!(m.headers[1].value.len(), MAX_HEADER_VALUE_BYTES);
    }

    #[test]
    fn unparsable_from_is_kept_as_a_header() {
        let m = parse(b"From: Ivan (no address)\nSubject: s\n\nbody");
        assert!(m.sender.email.is_none());
        assert_eq!(m.header("X-Leadsift-Unparsed-From"), Some("Ivan (no address)"));
        let m = parse(b"From: \"Petr\" <petr@localhost>\nSubject: s\n\nbody");
        assert_eq!(m.header("X-Leadsift-Unparsed-From"), Some("\"Petr\" <petr@localhost>"));
        assert_eq!(m.sender.name.as_deref(), Some("Petr"));
    }

    #[test]
    fn received_at_falls_back_to_received_then_now() {
        let m = parse(
            b"Received: from a by b; Tue, 24 Nov 2026 10:00:00 +0000\n\
              Received: from c by a; Tue, 24 Nov 2026 09:59:00 +0000\nSubject: s\n\nx",
        );
        assert_eq!(m.received_at.to_rfc3339(), "2026-11-24T10:00:00+00:00");
        let before = Utc::now();
        let raw = b"Subject: s\nDate: garbage\n\nx";
        let m = parse(raw);
        assert!(m.received_at >= before);
        // The key never depends on the defaulted time.
        assert_eq!(parse(raw).dedup_key, m.dedup_key);
    }

    #[test]
    fn destination_order() {
        let m = parse(b"To: Sales <Sales@Firm.Example>, other@firm.example\nSubject: s\n\nx");
        assert_eq!(m.destination.as_deref(), Some("sales@firm.example"));
        let m = parse(b"To: sales@firm.example\nX-Original-To: leads+ads@firm.example\nSubject: s\n\nx");
        assert_eq!(m.destination.as_deref(), Some("leads+ads@firm.example"));
        let m = parse(b"Envelope-To: bad, env@firm.example\nSubject: s\n\nx");
        assert_eq!(m.destination.as_deref(), Some("env@firm.example"));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(raw in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = parse_rfc822(&raw, &ParseOptions::default());
        }

        #[test]
        fn header_like_input_never_panics_and_keys_are_deterministic(
            headers in proptest::collection::vec(("[A-Za-z-]{1,12}", "[ -~]{0,40}"), 1..8),
            body in "(\\PC|\n|--[a-z]{1,3}|=\\?utf-8\\?[BQ]\\?[A-Za-z0-9=+/]{0,12}\\?=){0,60}",
        ) {
            let mut raw = String::new();
            for (name, value) in &headers {
                raw.push_str(&format!("{name}: {value}\n"));
            }
            raw.push_str("Content-Type: multipart/mixed; boundary=\"b\"\n\n--b\n");
            raw.push_str(&body);
            let opts = ParseOptions::default();
            if let Ok(first) = parse_rfc822(raw.as_bytes(), &opts) {
                let second = parse_rfc822(raw.as_bytes(), &opts).unwrap();
                prop_assert_eq!(first.dedup_key, second.dedup_key);
                prop_assert_eq!(first.text, second.text);
            }
        }
    }
}
