//! The one error type of this crate.

use leadsift_core::UnknownName;

/// Why raw input could not become a message. Each variant names the
/// operation that failed; all but [`FormatError::Io`] are permanent (the same
/// bytes will fail the same way), so callers quarantine them instead of retrying.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("input is empty")]
    EmptyInput,
    #[error("input is {size} bytes, over the limit of {limit} bytes")]
    TooLarge { size: u64, limit: usize },
    #[error("not an RFC 822 message: {reason}")]
    NotRfc822 { reason: String },
    #[error("invalid event JSON at line {line}, column {column}: {message}")]
    InvalidEventJson { line: usize, column: usize, message: String },
    #[error("event JSON must be one object, found {found}")]
    EventNotAnObject { found: &'static str },
    #[error("event JSON lacks the required field {field:?}")]
    MissingEventField { field: &'static str },
    #[error("event JSON field {field:?} is invalid: {reason}")]
    InvalidEventField { field: &'static str, reason: String },
    #[error("event JSON: {0}")]
    UnknownChannel(#[from] UnknownName),
    #[error("archive nesting deeper than {limit} levels")]
    NestedTooDeep { limit: usize },
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl FormatError {
    /// True when trying again later may succeed (an I/O hiccup); parse
    /// failures are permanent.
    pub fn is_retryable(&self) -> bool {
        match self {
            FormatError::Io { source, .. } => !matches!(
                source.kind(),
                std::io::ErrorKind::NotFound
                    | std::io::ErrorKind::PermissionDenied
                    | std::io::ErrorKind::InvalidData
                    | std::io::ErrorKind::UnexpectedEof
            ),
            _ => false,
        }
    }

    pub(crate) fn io(path: impl Into<String>, source: std::io::Error) -> Self {
        FormatError::Io { path: path.into(), source }
    }
}
