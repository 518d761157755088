//! Raw inbound bytes → validated [`leadsift_core::Message`]: RFC 822 email
//! (via `mail-parser`), the leadsift event JSON used by the call, messenger
//! and web-form adapters, and readers that enumerate inputs from paths
//! (files, directories, Maildir, mbox, gzip and tar archives).
//!
//! Parsing is pure: [`parse_rfc822`], [`parse_event_json`] and
//! [`parse_json_lines`] take bytes or a reader and never touch the file
//! system; only the [`walk`] module opens files. This crate must not depend
//! on a runtime, a store or the rules engine.
//!
//! Key design decisions:
//! - Input is parsed at the edge into core newtypes; an identity that does
//!   not validate (a malformed `From`, an unparsable phone) is kept as an
//!   `X-Leadsift-Unparsed-*` header rather than dropping the message, because
//!   a lost inquiry costs more than a noisy one.
//! - Dedup keys never depend on the wall clock, so re-importing the same
//!   bytes always yields the same key even when `received_at` had to default
//!   to `now()`.
//! - Every input is bounded ([`ParseOptions`]): raw size, text size, header
//!   count and header value size, so one hostile message cannot exhaust
//!   memory; archives and mailboxes are streamed one item at a time.

mod error;
mod event;
mod html;
mod rfc822;
pub mod spend;
pub mod walk;

pub use error::FormatError;
pub use event::{parse_event_json, parse_json_lines};
pub use rfc822::parse_rfc822;
pub use spend::{SpendFileError, SpendLineError, parse_spend_csv};
pub use walk::{InputFailure, InputItem, InputKind, Inputs, WalkSummary, parse_item, read_inputs, visit_inputs};

/// Prefix of the headers this crate adds for identities it could not validate,
/// e.g. `X-Leadsift-Unparsed-From` or `X-Leadsift-Unparsed-From-Phone`.
pub const UNPARSED_HEADER_PREFIX: &str = "X-Leadsift-Unparsed-";

/// Each header value is cut to this many bytes (on a char boundary): real
/// headers are far shorter, and a multi-megabyte header is an attack.
pub const MAX_HEADER_VALUE_BYTES: usize = 8 * 1024;

/// Limits and defaults for turning raw input into messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseOptions {
    /// ISO 3166 region national phone numbers are read in (`8 (916) …` in `RU`).
    pub default_region: String,
    /// Largest raw item (one email, one JSON event) accepted, in bytes.
    pub max_raw_bytes: usize,
    /// `Message::text` is capped to this many bytes ([`leadsift_core::Message::cap_text`]).
    pub max_text_bytes: usize,
    /// At most this many headers are kept per message (the first ones, in order).
    pub max_headers: usize,
}

impl Default for ParseOptions {
    fn default() -> Self {
        Self {
            default_region: default_region(),
            max_raw_bytes: default_max_raw_bytes(),
            max_text_bytes: default_max_text_bytes(),
            max_headers: default_max_headers(),
        }
    }
}

fn default_region() -> String {
    "RU".to_owned()
}

fn default_max_raw_bytes() -> usize {
    25 * 1024 * 1024
}

fn default_max_text_bytes() -> usize {
    256 * 1024
}

fn default_max_headers() -> usize {
    256
}

/// Cuts `value` to at most `max` bytes on a char boundary.
pub(crate) fn truncate_on_char_boundary(value: &mut String, max: usize) {
    if value.len() > max {
        let mut cut = max;
        while !value.is_char_boundary(cut) {
            cut -= 1;
        }
        value.truncate(cut);
    }
}
