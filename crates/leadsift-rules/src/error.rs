//! Load errors that point at a file, a line and a column.
//!
//! A rules file is validated whole: every problem becomes one
//! [`RuleFileError`], and [`RulesError`] carries all of them so an admin
//! fixes the file in one round. Rules errors are permanent by nature (the
//! file must be edited); retrying the load without a change cannot help.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One problem in a rules file or one of its side files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleFileError {
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, counted in characters.
    pub column: usize,
    pub message: String,
}

impl fmt::Display for RuleFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: {}", self.file.display(), self.line, self.column, self.message)
    }
}

/// Every problem found while loading a rules file, in file and line order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RulesError {
    pub errors: Vec<RuleFileError>,
}

impl fmt::Display for RulesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for RulesError {}

/// A file's text with a line index, to turn byte offsets into line:column.
#[derive(Debug)]
pub(crate) struct SourceText<'t> {
    pub(crate) path: Arc<Path>,
    pub(crate) text: &'t str,
    line_starts: Vec<usize>,
}

impl<'t> SourceText<'t> {
    pub(crate) fn new(path: Arc<Path>, text: &'t str) -> Self {
        let line_starts = std::iter::once(0).chain(text.match_indices('\n').map(|(i, _)| i + 1)).collect();
        Self { path, text, line_starts }
    }

    /// 1-based line and character column of a byte offset.
    pub(crate) fn position(&self, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = self.line_starts.partition_point(|&start| start <= offset);
        let line_start = self.line_starts[line - 1];
        (line, self.text[line_start..offset].chars().count() + 1)
    }
}

/// Where a value came from, for errors found after parsing (bad list
/// entries, regexes that fail to compile).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Location {
    pub(crate) file: Arc<Path>,
    pub(crate) line: usize,
    pub(crate) column: usize,
}

impl Location {
    pub(crate) fn of_span(source: &SourceText<'_>, span: &Range<usize>) -> Self {
        let (line, column) = source.position(span.start);
        Self { file: source.path.clone(), line, column }
    }

    pub(crate) fn error(&self, message: impl Into<String>) -> RuleFileError {
        RuleFileError { file: self.file.to_path_buf(), line: self.line, column: self.column, message: message.into() }
    }
}

/// Collects errors during one load.
#[derive(Debug, Default)]
pub(crate) struct Diagnostics {
    syntax: Vec<RuleFileError>,
    errors: Vec<RuleFileError>,
}

impl Diagnostics {
    pub(crate) fn syntax(&mut self, source: &SourceText<'_>, span: &Range<usize>, message: impl Into<String>) {
        self.syntax.push(Location::of_span(source, span).error(message));
    }

    pub(crate) fn at(&mut self, source: &SourceText<'_>, span: &Range<usize>, message: impl Into<String>) {
        self.push(Location::of_span(source, span).error(message));
    }

    pub(crate) fn push(&mut self, error: RuleFileError) {
        self.errors.push(error);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.syntax.is_empty() && self.errors.is_empty()
    }

    /// Sorted by file, line and column, without repeats. Other errors on a
    /// line that has a TOML syntax error are dropped: they are echoes of the
    /// broken syntax, not separate problems.
    pub(crate) fn into_error(self) -> RulesError {
        let Self { syntax, errors } = self;
        let on_syntax_line = |e: &RuleFileError| syntax.iter().any(|s| s.file == e.file && s.line == e.line);
        let mut all: Vec<RuleFileError> = errors.iter().filter(|e| !on_syntax_line(e)).cloned().collect();
        all.extend(syntax.iter().cloned());
        all.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
        all.dedup();
        RulesError { errors: all }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_and_count_characters() {
        let source = SourceText::new(Path::new("r.toml").into(), "ab\nжж = 1\n\nx");
        assert_eq!(source.position(0), (1, 1));
        assert_eq!(source.position(2), (1, 3));
        assert_eq!(source.position(3), (2, 1));
        // "жж" is four bytes, two characters.
        assert_eq!(source.position(7), (2, 3));
        assert_eq!(source.position(12), (3, 1));
        assert_eq!(source.position(13), (4, 1));
        assert_eq!(source.position(999), (4, 2));
    }

    #[test]
    fn display_is_one_error_per_line() {
        let error = RulesError {
            errors: vec![
                RuleFileError { file: "a.toml".into(), line: 3, column: 1, message: "x".into() },
                RuleFileError { file: "a.toml".into(), line: 9, column: 5, message: "y".into() },
            ],
        };
        assert_eq!(error.to_string(), "a.toml:3:1: x\na.toml:9:5: y");
    }
}
