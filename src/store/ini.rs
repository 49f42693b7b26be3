//! A line-based editor for `.databrickscfg` (INI, read by the SDKs with Python's `configparser` or Go's `ini`).
//!
//! Editing lines instead of parsing and re-serialising keeps comments, blank lines, other profiles and the
//! spelling of every untouched line exactly as they were. The rules follow `configparser`: a section header is
//! `[name]` (the name is not trimmed and is case-sensitive), a key line is `key = value` or `key: value` (keys are
//! case-insensitive), full-line comments start with `#` or `;`, and an indented line after a key continues its
//! value. Replacing a key replaces its continuation lines too.

use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Blank,
    Comment,
    Section(String),
    /// A key line: the lower-cased key.
    Key(String),
    Continuation,
    Other,
}

struct Line<'a> {
    text: &'a str,
    kind: Kind,
}

fn indent_of(s: &str) -> usize {
    s.len() - s.trim_start().len()
}

fn body(line: &str) -> &str {
    line.trim_end_matches(['\n', '\r'])
}

fn classify(text: &str) -> Vec<Line<'_>> {
    let mut lines = Vec::new();
    // Indentation of the current key line, while its value may continue.
    let mut key_indent: Option<usize> = None;
    for raw in text.split_inclusive('\n') {
        let b = body(raw);
        let trimmed = b.trim();
        let kind = if trimmed.is_empty() {
            Kind::Blank
        } else if trimmed.starts_with('#') || trimmed.starts_with(';') {
            Kind::Comment
        } else if key_indent.is_some_and(|k| indent_of(b) > k) {
            Kind::Continuation
        } else if let Some(name) = trimmed
            .strip_prefix('[')
            .and_then(|rest| rest.rfind(']').map(|end| &rest[..end]))
            .filter(|n| !n.is_empty())
        {
            Kind::Section(name.to_string())
        } else if let Some(pos) = b.find(['=', ':']) {
            Kind::Key(b[..pos].trim().to_lowercase())
        } else {
            Kind::Other
        };
        match &kind {
            Kind::Key(_) => key_indent = Some(indent_of(b)),
            Kind::Continuation | Kind::Comment => {}
            _ => key_indent = None,
        }
        lines.push(Line { text: raw, kind });
    }
    lines
}

/// Check a profile name and the keys and values to set (they become whole lines: no line breaks, no
/// surrounding whitespace, keys of letters, digits, `_`, `-`, `.`).
pub fn check_edit(profile: &str, values: &[(String, String)]) -> Result<()> {
    if profile.is_empty()
        || profile.trim() != profile
        || profile.contains(['[', ']'])
        || profile.chars().any(char::is_control)
    {
        return Err(Error::invalid(
            "profile",
            format!("{profile:?} is not a usable profile name"),
        ));
    }
    if values.is_empty() {
        return Err(Error::invalid("values", "nothing to set"));
    }
    let mut seen = std::collections::HashSet::new();
    for (key, value) in values {
        let key_ok = key
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !key_ok {
            return Err(Error::invalid("values", format!("{key:?} is not a usable key")));
        }
        if !seen.insert(key.to_lowercase()) {
            return Err(Error::invalid("values", format!("key {key:?} is given twice")));
        }
        // The value is never shown: it may be a secret.
        if value.is_empty() || value.trim() != value || value.chars().any(char::is_control) {
            return Err(Error::invalid(
                "values",
                format!("the value of {key:?} must be non-empty, without surrounding whitespace or line breaks"),
            ));
        }
    }
    Ok(())
}

/// The key line for `key = value`, reusing the old line's indentation, key spelling and separator when given.
fn key_line(old: Option<&str>, key: &str, value: &str, eol: &str) -> String {
    if let Some(old) = old {
        let b = body(old);
        if let Some(pos) = b.find(['=', ':']) {
            let after = &b[pos + 1..];
            let value_start = pos + 1 + (after.len() - after.trim_start().len());
            if value_start < b.len() {
                return format!("{}{value}{eol}", &b[..value_start]);
            }
            return format!("{} = {value}{eol}", b[..pos].trim_end());
        }
    }
    format!("{key} = {value}{eol}")
}

/// `text` with `values` set in `[profile]`: existing keys are replaced in place (continuation lines dropped),
/// missing ones are added after the profile's last key, and a missing profile is appended at the end. The
/// error is a reason (the caller names the file).
pub fn set_profile_values(
    text: &str,
    profile: &str,
    values: &[(String, String)],
) -> std::result::Result<String, String> {
    let lines = classify(text);
    let eol = if text.contains("\r\n") { "\r\n" } else { "\n" };
    let headers: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.kind == Kind::Section(profile.to_string()))
        .map(|(i, _)| i)
        .collect();
    let Some(&header) = headers.first() else {
        let mut out = text.to_string();
        if !out.is_empty() {
            if !out.ends_with('\n') {
                out.push_str(eol);
            }
            out.push_str(eol);
        }
        out.push_str(&format!("[{profile}]{eol}"));
        for (k, v) in values {
            out.push_str(&key_line(None, k, v, eol));
        }
        return Ok(out);
    };
    if headers.len() > 1 {
        return Err(format!("profile [{profile}] appears more than once"));
    }
    let end = lines
        .iter()
        .enumerate()
        .skip(header + 1)
        .find(|(_, l)| matches!(l.kind, Kind::Section(_)))
        .map_or(lines.len(), |(i, _)| i);
    // Per line of the file: its replacement (None = keep as is).
    let mut replaced: Vec<Option<String>> = vec![None; lines.len()];
    let mut missing = Vec::new();
    for (key, value) in values {
        let wanted = key.to_lowercase();
        let found: Vec<usize> = (header + 1..end)
            .filter(|&i| lines[i].kind == Kind::Key(wanted.clone()))
            .collect();
        match found.as_slice() {
            [] => missing.push((key, value)),
            [i] => {
                let line_eol = &lines[*i].text[body(lines[*i].text).len()..];
                replaced[*i] = Some(key_line(Some(lines[*i].text), key, value, line_eol));
                for j in (*i + 1..end).take_while(|&j| matches!(lines[j].kind, Kind::Continuation | Kind::Comment)) {
                    if lines[j].kind == Kind::Continuation {
                        replaced[j] = Some(String::new());
                    }
                }
            }
            _ => return Err(format!("key {key:?} appears more than once in [{profile}]")),
        }
    }
    // New keys go after the last key (or continuation) of the profile, else right after its header.
    let anchor = (header + 1..end)
        .rev()
        .find(|&i| matches!(lines[i].kind, Kind::Key(_) | Kind::Continuation))
        .unwrap_or(header);
    let mut out = String::with_capacity(text.len() + 64);
    for (i, line) in lines.iter().enumerate() {
        out.push_str(replaced[i].as_deref().unwrap_or(line.text));
        if i == anchor && !missing.is_empty() {
            if !out.ends_with('\n') {
                out.push_str(eol);
            }
            for (k, v) in &missing {
                out.push_str(&key_line(None, k, v, eol));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(text: &str, profile: &str, kv: &[(&str, &str)]) -> String {
        let values: Vec<(String, String)> = kv.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
        check_edit(profile, &values).unwrap();
        set_profile_values(text, profile, &values).unwrap()
    }

    const FILE: &str = "; top comment\n[DEFAULT]\nhost = https://a\ntoken = old\n  continued\n# about b\n\n[b]\nTOKEN: x#y\nhost=https://b\n";

    #[test]
    fn replaces_in_place_and_keeps_everything_else() {
        let out = set(FILE, "DEFAULT", &[("token", "new")]);
        assert_eq!(
            out,
            "; top comment\n[DEFAULT]\nhost = https://a\ntoken = new\n# about b\n\n[b]\nTOKEN: x#y\nhost=https://b\n"
        );
        let out = set(FILE, "b", &[("token", "t2"), ("client_id", "c")]);
        assert_eq!(
            out,
            "; top comment\n[DEFAULT]\nhost = https://a\ntoken = old\n  continued\n# about b\n\n[b]\nTOKEN: t2\nhost=https://b\nclient_id = c\n"
        );
    }

    #[test]
    fn appends_missing_profiles_and_creates_files() {
        assert_eq!(set("", "p", &[("token", "t")]), "[p]\ntoken = t\n");
        assert_eq!(
            set("[a]\nx = 1", "p", &[("token", "t")]),
            "[a]\nx = 1\n\n[p]\ntoken = t\n"
        );
        assert_eq!(set("[p]\n\n[q]\n", "p", &[("k", "v")]), "[p]\nk = v\n\n[q]\n");
        assert_eq!(set("[p]\r\na = 1\r\n", "p", &[("b", "2")]), "[p]\r\na = 1\r\nb = 2\r\n");
    }

    #[test]
    fn ambiguity_and_bad_input_are_refused() {
        let v = vec![("token".to_string(), "t".to_string())];
        assert!(
            set_profile_values("[p]\n[p]\n", "p", &v)
                .unwrap_err()
                .contains("more than once")
        );
        assert!(
            set_profile_values("[p]\ntoken=1\nTOKEN=2\n", "p", &v)
                .unwrap_err()
                .contains("more than once")
        );
        for (profile, key, value) in [
            ("", "k", "v"),
            ("a]b", "k", "v"),
            ("p", "bad key", "v"),
            ("p", "k", "v\n[evil]"),
            ("p", "k", " v"),
            ("p", "k", ""),
        ] {
            assert!(
                check_edit(profile, &[(key.into(), value.into())]).is_err(),
                "{profile:?} {key:?}"
            );
        }
        let err = check_edit("p", &[("k".into(), "s3cret\n".into())])
            .unwrap_err()
            .to_string();
        assert!(!err.contains("s3cret"), "{err}");
    }
}
