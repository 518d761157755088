//! HTML body → plain text for HTML-only email.
//!
//! `mail-parser` has an `html_to_text`, but it loses everything after a
//! `<head>` that is never closed (common in spam), glues block elements
//! together (`<div>a</div><div>b</div>` → `ab`, which merges words for the
//! classifier), drops link targets (`<a href="http://spam.example">click</a>`
//! → `click`, while link counts and domains are triage signals) and was the
//! slowest step of parsing. This converter fixes those and reuses
//! `mail-parser`'s entity table (`add_html_token`) for decoding.
//!
//! Rules: tags are removed; the contents of `script`, `style`, `title` and
//! `template` and comments are dropped; block elements and `<br>` become
//! line breaks, table cells a space; runs of whitespace collapse to one space
//! (`&nbsp;` counts as whitespace); entities are decoded; an anchor's
//! `http(s)://`, `www.`, `mailto:` or `tel:` target is appended after its text
//! as ` (target)` unless the text already shows it.

use mail_parser::decoders::html::add_html_token;

/// What a tag means for the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TagRole {
    /// `script`, `style`, `title`, `template`: the content is not text for a reader.
    HiddenContent,
    Anchor,
    LineBreak,
    /// Block elements start a new line.
    Block,
    /// Table cells are separated by a space.
    Cell,
    Inline,
}

fn tag_role(name: &[u8]) -> TagRole {
    let mut lower = [0u8; 10];
    if name.len() > lower.len() {
        return TagRole::Inline;
    }
    for (dst, src) in lower.iter_mut().zip(name) {
        *dst = src.to_ascii_lowercase();
    }
    match &lower[..name.len()] {
        b"script" | b"style" | b"title" | b"template" => TagRole::HiddenContent,
        b"a" => TagRole::Anchor,
        b"br" => TagRole::LineBreak,
        b"p" | b"div" | b"li" | b"ul" | b"ol" | b"tr" | b"table" | b"h1" | b"h2" | b"h3" | b"h4" | b"h5" | b"h6"
        | b"blockquote" | b"pre" | b"hr" | b"dd" | b"dt" | b"dl" | b"section" | b"article" | b"header" | b"footer"
        | b"form" | b"center" | b"address" | b"body" | b"caption" => TagRole::Block,
        b"td" | b"th" => TagRole::Cell,
        _ => TagRole::Inline,
    }
}

/// Link targets worth showing (and counting) in the text.
const SHOWN_LINK_PREFIXES: [&str; 5] = ["http://", "https://", "www.", "mailto:", "tel:"];

/// Converts an HTML body to readable text (see the module docs for the rules).
pub(crate) fn html_body_to_text(html: &str) -> String {
    let bytes = html.as_bytes();
    let mut out = TextSink::with_capacity(html.len() / 2);
    let mut anchor: Option<(String, usize)> = None;
    let mut pos = 0;
    while pos < bytes.len() {
        let lt = html[pos..].find('<').map_or(bytes.len(), |i| pos + i);
        out.push_html_text(&html[pos..lt]);
        if lt >= bytes.len() {
            break;
        }
        pos = lt;
        let rest = &bytes[pos + 1..];
        if rest.starts_with(b"!--") {
            pos = find_bytes(bytes, pos + 4, b"-->").map_or(bytes.len(), |end| end + 3);
            continue;
        }
        let is_end_tag = rest.first() == Some(&b'/');
        let name_start = pos + 1 + usize::from(is_end_tag);
        let starts_tag = match bytes.get(name_start) {
            Some(b) => b.is_ascii_alphabetic() || (!is_end_tag && matches!(b, b'!' | b'?')),
            None => false,
        };
        if !starts_tag {
            // A lone `<` ("a < b") is text.
            out.push_html_text("<");
            pos += 1;
            continue;
        }
        let Some(tag_end) = find_tag_end(bytes, name_start) else {
            break; // an unterminated tag at the end: nothing readable follows
        };
        let name_len = bytes[name_start..tag_end]
            .iter()
            .position(|b| b.is_ascii_whitespace() || *b == b'/' || *b == b'>')
            .unwrap_or(tag_end - name_start);
        let name = &bytes[name_start..name_start + name_len];
        pos = tag_end + 1;

        match tag_role(name) {
            TagRole::HiddenContent if !is_end_tag => {
                pos = find_end_tag(bytes, pos, name).unwrap_or(bytes.len());
            }
            TagRole::Anchor => {
                if let Some((target, start)) = anchor.take() {
                    out.show_link_target(&target, start);
                }
                if !is_end_tag && let Some(target) = link_target(&html[name_start + name_len..tag_end]) {
                    out.separate();
                    anchor = Some((target, out.text.len()));
                }
            }
            TagRole::LineBreak => out.line_break(true),
            TagRole::Block => out.line_break(false),
            TagRole::Cell => out.pending_space = true,
            TagRole::HiddenContent | TagRole::Inline => {}
        }
    }
    if let Some((target, start)) = anchor {
        out.show_link_target(&target, start);
    }
    out.finish()
}

/// Builds text with collapsed whitespace and at most two line breaks in a row.
struct TextSink {
    text: String,
    pending_space: bool,
    pending_newlines: usize,
}

impl TextSink {
    fn with_capacity(capacity: usize) -> Self {
        Self { text: String::with_capacity(capacity), pending_space: false, pending_newlines: 0 }
    }

    fn line_break(&mut self, forced: bool) {
        self.pending_newlines = if forced { (self.pending_newlines + 1).min(2) } else { self.pending_newlines.max(1) };
    }

    /// Makes sure the next word does not glue onto the previous one.
    fn separate(&mut self) {
        self.pending_space = true;
    }

    /// Emits pending whitespace before visible content.
    fn before_content(&mut self) {
        if !self.text.is_empty() {
            if self.pending_newlines > 0 {
                let trimmed = self.text.trim_end_matches([' ', '\t']).len();
                self.text.truncate(trimmed);
                for _ in 0..self.pending_newlines {
                    self.text.push('\n');
                }
            } else if self.pending_space && !self.text.ends_with([' ', '\n']) {
                self.text.push(' ');
            }
        }
        self.pending_space = false;
        self.pending_newlines = 0;
    }

    fn push_run(&mut self, run: &str) {
        if !run.is_empty() {
            self.before_content();
            self.text.push_str(run);
        }
    }

    /// Text between tags: collapses whitespace and decodes entities.
    fn push_html_text(&mut self, raw: &str) {
        let bytes = raw.as_bytes();
        let mut run_start = 0;
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b' ' | b'\t' | b'\r' | b'\n' | 0x0c => {
                    self.push_run(&raw[run_start..i]);
                    self.pending_space = true;
                    i += 1;
                    run_start = i;
                }
                b'&' => match entity_end(bytes, i) {
                    Some(semicolon) => {
                        self.push_run(&raw[run_start..i]);
                        let entity = &bytes[i..=semicolon];
                        if matches!(entity, b"&nbsp;" | b"&#160;" | b"&#xa0;" | b"&#xA0;") {
                            self.pending_space = true;
                        } else {
                            self.before_content();
                            add_html_token(&mut self.text, entity, false);
                        }
                        i = semicolon + 1;
                        run_start = i;
                    }
                    None => i += 1,
                },
                _ => i += 1,
            }
        }
        self.push_run(&raw[run_start..]);
    }

    /// Appends ` (target)` unless the anchor text since `start` shows it.
    fn show_link_target(&mut self, target: &str, start: usize) {
        if self.text.get(start..).is_some_and(|anchor_text| anchor_text.contains(target)) {
            return;
        }
        self.pending_space = true;
        self.before_content();
        self.text.push('(');
        self.text.push_str(target);
        self.text.push(')');
        self.pending_space = true;
    }

    fn finish(mut self) -> String {
        let trimmed = self.text.trim_end().len();
        self.text.truncate(trimmed);
        self.text
    }
}

/// The `;` ending an entity that starts at `amp` (`&name;`, `&#123;`, `&#x1F;`).
fn entity_end(bytes: &[u8], amp: usize) -> Option<usize> {
    let body = bytes.get(amp + 1..)?;
    let len = body.iter().take(33).position(|&b| b == b';')?;
    let name = &body[..len];
    let valid = match name {
        [b'#', b'x' | b'X', hex @ ..] => !hex.is_empty() && hex.iter().all(u8::is_ascii_hexdigit),
        [b'#', dec @ ..] => !dec.is_empty() && dec.iter().all(u8::is_ascii_digit),
        _ => !name.is_empty() && name.iter().all(u8::is_ascii_alphanumeric),
    };
    valid.then_some(amp + 1 + len)
}

fn find_bytes(haystack: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    haystack.get(from..)?.windows(needle.len()).position(|w| w == needle).map(|i| from + i)
}

/// Offset just past the `</name …>` closing a hidden element that started before `from`.
fn find_end_tag(bytes: &[u8], from: usize, name: &[u8]) -> Option<usize> {
    let mut pos = from;
    loop {
        let lt = pos + bytes.get(pos..)?.iter().position(|&b| b == b'<')?;
        let candidate = bytes.get(lt + 2..lt + 2 + name.len());
        if bytes.get(lt + 1) == Some(&b'/')
            && candidate.is_some_and(|c| c.eq_ignore_ascii_case(name))
            && bytes.get(lt + 2 + name.len()).is_none_or(|b| !b.is_ascii_alphanumeric())
        {
            return Some(find_tag_end(bytes, lt + 2).map_or(bytes.len(), |end| end + 1));
        }
        pos = lt + 1;
    }
}

/// Offset of the `>` closing the tag whose name starts at `from`, skipping
/// quoted attribute values. As in browsers, a quote opens a value only right
/// after `=`; a stray quote (`src=x.gif?q=1">`) is part of an unquoted value.
/// If a quoted value never closes, the first `>` ends the tag, so one broken
/// attribute cannot swallow the rest of the document.
fn find_tag_end(bytes: &[u8], from: usize) -> Option<usize> {
    let tail = bytes.get(from..)?;
    let mut quote = None;
    let mut after_equals = false;
    for (offset, &byte) in tail.iter().enumerate() {
        match quote {
            Some(q) if q == byte => quote = None,
            Some(_) => {}
            None => match byte {
                b'>' => return Some(from + offset),
                b'"' | b'\'' if after_equals => quote = Some(byte),
                b'=' => after_equals = true,
                b if b.is_ascii_whitespace() => {}
                _ => after_equals = false,
            },
        }
        if byte != b'=' && !byte.is_ascii_whitespace() {
            after_equals = false;
        }
    }
    tail.iter().position(|&b| b == b'>').map(|offset| from + offset)
}

/// The decoded `href` of an anchor's attributes, if it is worth showing.
fn link_target(attributes: &str) -> Option<String> {
    let bytes = attributes.as_bytes();
    let mut search = 0;
    let value = loop {
        let at = search + bytes.get(search..)?.windows(4).position(|w| w.eq_ignore_ascii_case(b"href"))?;
        search = at + 4;
        let attribute_starts = at == 0 || bytes[at - 1].is_ascii_whitespace();
        if attribute_starts && let Some(after_eq) = attributes[search..].trim_start().strip_prefix('=') {
            break after_eq.trim_start();
        }
    };
    let raw_target = match value.as_bytes().first()? {
        quote @ (b'"' | b'\'') => {
            let inner = &value[1..];
            &inner[..inner.find(char::from(*quote)).unwrap_or(inner.len())]
        }
        _ => value.split(|c: char| c.is_ascii_whitespace()).next()?,
    };
    let mut decoded = TextSink::with_capacity(raw_target.len());
    decoded.push_html_text(raw_target.trim());
    let target = decoded.finish();
    let shown = SHOWN_LINK_PREFIXES.iter().any(|prefix| {
        target.len() > prefix.len() && target.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
    });
    shown.then_some(target)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn link_targets_stay_visible_once() {
        let text = html_body_to_text(
            "<p>Hello <a class=x href=\"https://shop.example/buy?a=1&amp;b=2\">click here</a></p>\
             <a href='http://same.example'>http://same.example</a> \
             <A HREF=www.bare.example>bare</A> <a href=\"#top\">top</a> <a href=\"mailto:sales@firm.example\">write</a>",
        );
        assert!(text.contains("click here (https://shop.example/buy?a=1&b=2)"), "{text}");
        assert_eq!(text.matches("http://same.example").count(), 1, "{text}");
        assert!(text.contains("bare (www.bare.example)"), "{text}");
        assert!(text.contains("write (mailto:sales@firm.example)"), "{text}");
        assert!(!text.contains("#top"), "{text}");
    }

    #[test]
    fn hidden_content_is_dropped_even_without_closing_head() {
        let text = html_body_to_text(
            "<html><head><title>Title</title><style>p{color:red}</style><body>\
             <script type=\"text/javascript\">var x = \"</p>\";</script><!-- a comment -->\
             <p>Visible text</p></body></html>",
        );
        assert_eq!(text, "Visible text");
    }

    #[test]
    fn blocks_and_cells_do_not_glue_words() {
        let text = html_body_to_text(
            "<div>one</div><div>two</div><table><tr><td>three</td><td>four</td></tr></table>a<br>b<br><br><br>c",
        );
        assert_eq!(text, "one\ntwo\nthree four\na\nb\n\nc");
    }

    #[test]
    fn entities_and_whitespace() {
        let text = html_body_to_text(
            "<p>Цена&nbsp;&mdash;   5&#160;000 &#1088;&#1091;&#1073;. &lt;b&gt; AT&amp;T &copy; &#x41; R&D &unknown;</p>",
        );
        assert_eq!(text, "Цена — 5 000 руб. <b> AT&T © A R&D &unknown;");
    }

    #[test]
    fn stray_quotes_do_not_swallow_the_document() {
        let text = html_body_to_text(
            "</head><img src=http://x.example/p.gif?q=9\">\n<body bgcolor=\"#FFF\">You requested <b>this</b> mailing.\
             <a href=\"http://x.example/unclosed>click</a> and more",
        );
        assert_eq!(text, "You requested this mailing. click (http://x.example/unclosed) and more");
    }

    #[test]
    fn lone_angle_brackets_are_text() {
        assert_eq!(html_body_to_text("1 < 2 and 3 > 2"), "1 < 2 and 3 > 2");
    }

    #[test]
    fn broken_html_never_panics() {
        for html in [
            "<a href=",
            "<a href='x",
            "</a>",
            "<a href=\"http://x\">unclosed",
            "<<<>>>",
            "<a\n href=http://y>t</a",
            "<script>",
            "<!--",
            "&#xFFFFFFFF;",
            "&#99999999999;",
            "<",
            "&",
            "<style",
            "</",
        ] {
            let _ = html_body_to_text(html);
        }
    }

    proptest! {
        #[test]
        fn never_panics(html in "(<[a-z/!]{0,3}|[a-z ]{0,5}|&[#a-z0-9]{0,5};?|href=['\"]?|[<>\"'=]|\\PC){0,40}") {
            let _ = html_body_to_text(&html);
        }
    }
}
