//! The one line grammar of `.databrickscfg`, shared by the reader ([`super::file`]) and the editor
//! ([`super::edit`]), so that what one writes the other reads back the same way.
//!
//! The rules are Python `configparser`'s (what the Python SDK reads the file with), plus one of ours:
//!
//! * a line that is empty after trimming is blank; one whose trimmed text starts with `#` or `;` is a comment,
//!   however far it is indented;
//! * a line indented deeper than the key line before it (blank and comment lines in between do not count)
//!   continues that key's value;
//! * `[name]` is a section header; the name is trimmed (`[ dev ]` is the profile `dev`, as in the Go SDK and the
//!   Databricks CLI);
//! * `key = value` or `key: value`: the key is everything before the first `=` or `:`, trimmed; the value is
//!   the rest, trimmed;
//! * ours: in a value or after a section header, a `#` or `;` that follows whitespace starts an inline comment
//!   (the Go SDK's and the CLI's rule: `password = a#b` keeps its `#`, `host = h # note` is `h`).
//!   configparser has no inline comments, so the editor never writes a value that holds such a sequence.

/// What a line is.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind<'a> {
    /// Empty or only whitespace.
    Blank,
    /// A full-line comment.
    Comment,
    /// A section header: the trimmed name.
    Section(&'a str),
    /// A key line.
    Key {
        /// The key as written, trimmed (may be empty: a line starting with the delimiter).
        key: &'a str,
        /// The delimiter, `=` or `:`.
        delimiter: char,
        /// The value, trimmed, its inline comment removed.
        value: &'a str,
    },
    /// An indented line that continues the previous key's value.
    Continuation,
    /// Anything else (configparser refuses it); says what is wrong.
    Invalid(&'static str),
}

/// One line of a file.
#[derive(Debug, Clone, PartialEq)]
pub struct Line<'a> {
    /// The line as it is in the file, line break included.
    pub text: &'a str,
    /// What it is.
    pub kind: Kind<'a>,
}

/// The text of a line without its line break.
pub fn body(line: &str) -> &str {
    line.trim_end_matches(['\n', '\r'])
}

fn indent_of(s: &str) -> usize {
    s.len() - s.trim_start().len()
}

/// Where an inline comment starts in `text`: the first `#` or `;` right after whitespace.
fn inline_comment_at(text: &str) -> Option<usize> {
    let mut prev_space = false;
    for (i, c) in text.char_indices() {
        if prev_space && matches!(c, '#' | ';') {
            return Some(i);
        }
        prev_space = c.is_whitespace();
    }
    None
}

/// `text` without its inline comment, trimmed at the end.
pub fn strip_inline_comment(text: &str) -> &str {
    inline_comment_at(text).map_or(text, |i| &text[..i]).trim_end()
}

/// Whether `text` holds a sequence that the reader takes for the start of an inline comment.
pub fn has_inline_comment(text: &str) -> bool {
    inline_comment_at(text).is_some()
}

/// The message for a line that is none of the known kinds.
pub const NOT_A_LINE: &str = "expected 'key = value', a [section] header or a comment";

/// Classify every line of `text` (a leading byte order mark is ignored).
pub fn lines(text: &str) -> Vec<Line<'_>> {
    let mut out = Vec::new();
    // Indentation of the last section or key line, and whether a key's value may continue.
    let mut indent_level = 0;
    let mut in_key = false;
    for (n, raw) in text.split_inclusive('\n').enumerate() {
        let b = body(raw);
        let b = if n == 0 {
            b.strip_prefix('\u{feff}').unwrap_or(b)
        } else {
            b
        };
        let trimmed = b.trim();
        let indent = indent_of(b);
        let kind = if trimmed.is_empty() {
            Kind::Blank
        } else if trimmed.starts_with(['#', ';']) {
            Kind::Comment
        } else if in_key && indent > indent_level {
            Kind::Continuation
        } else {
            indent_level = indent;
            if let Some(rest) = trimmed.strip_prefix('[') {
                in_key = false;
                match strip_inline_comment(rest).strip_suffix(']').map(str::trim) {
                    None => Kind::Invalid("a section header must end with ']'"),
                    Some("") => Kind::Invalid("empty section name"),
                    Some(name) => Kind::Section(name),
                }
            } else if let Some(at) = trimmed.find(['=', ':']) {
                in_key = true;
                Kind::Key {
                    key: trimmed[..at].trim_end(),
                    delimiter: if trimmed.as_bytes()[at] == b'=' { '=' } else { ':' },
                    value: strip_inline_comment(trimmed[at + 1..].trim_start()),
                }
            } else {
                Kind::Invalid(NOT_A_LINE)
            }
        };
        out.push(Line { text: raw, kind });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<Kind<'_>> {
        lines(text).into_iter().map(|l| l.kind).collect()
    }

    fn key<'a>(key: &'a str, value: &'a str) -> Kind<'a> {
        Kind::Key {
            key,
            delimiter: '=',
            value,
        }
    }

    #[test]
    fn configparser_rules_and_the_inline_comment_rule() {
        let text = "\u{feff}[ dev ] ; note\n  # indented comment\ntoken = a#b # c\nHost: h\n\n   more\n;x\n[p]\n  k = v\nk2=#v\n";
        assert_eq!(
            kinds(text),
            vec![
                Kind::Section("dev"),
                Kind::Comment,
                key("token", "a#b"),
                Kind::Key {
                    key: "Host",
                    delimiter: ':',
                    value: "h"
                },
                Kind::Blank,
                Kind::Continuation,
                Kind::Comment,
                Kind::Section("p"),
                key("k", "v"),
                key("k2", "#v"),
            ]
        );
    }

    #[test]
    fn an_indented_comment_does_not_swallow_the_next_key() {
        assert_eq!(
            kinds("[a]\n  # c\ntoken = t\n"),
            vec![Kind::Section("a"), Kind::Comment, key("token", "t")]
        );
    }

    #[test]
    fn bad_lines_say_why_and_the_first_delimiter_wins() {
        assert_eq!(
            kinds("[a\n[]\ngarbage\n= x\nurl = http://h:1/x=y\n"),
            vec![
                Kind::Invalid("a section header must end with ']'"),
                Kind::Invalid("empty section name"),
                Kind::Invalid(NOT_A_LINE),
                key("", "x"),
                Kind::Key {
                    key: "url",
                    delimiter: '=',
                    value: "http://h:1/x=y"
                },
            ]
        );
        assert!(has_inline_comment("a #b") && has_inline_comment("a\t;b") && !has_inline_comment("a#b;c"));
    }
}
