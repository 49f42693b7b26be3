//! A line-based editor for `.databrickscfg` (INI, read by the SDKs with Python's `configparser` or Go's `ini`).
//!
//! Editing lines instead of parsing and re-serialising keeps comments, blank lines, other profiles and the
//! spelling of every untouched line exactly as they were. Lines are classified by [`super::lines`], the
//! grammar our reader uses too (configparser's rules, section names trimmed, inline comments after whitespace),
//! so an edit is read back the way it was meant. Replacing a key replaces its continuation lines too. Values
//! the reader would cut (holding whitespace followed by `#` or `;`) are refused.

use super::file::ConfigFile;
use super::lines::{self as ini_lines, Kind, Line, body};
use crate::error::{Error, Result};

fn is_key(line: &Line<'_>, wanted: &str) -> bool {
    matches!(line.kind, Kind::Key { key, .. } if key.to_lowercase() == wanted)
}

fn is_section(line: &Line<'_>) -> bool {
    matches!(line.kind, Kind::Section(_))
}

/// Check a profile name and the keys and values to set (they become whole lines: no line breaks, no
/// surrounding whitespace, keys of letters, digits, `_`, `-`, `.`).
pub fn check_edit(profile: &str, values: &[(String, String)]) -> Result<()> {
    if profile.is_empty()
        || profile.trim() != profile
        || profile.contains(['[', ']'])
        || profile.chars().any(char::is_control)
        || ini_lines::has_inline_comment(profile)
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
        if ini_lines::has_inline_comment(value) {
            return Err(Error::invalid(
                "values",
                format!(
                    "the value of {key:?} cannot hold a '#' or ';' after whitespace: .databrickscfg readers take \
                     it for a comment"
                ),
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
    let out = edit(text, profile, values)?;
    // A file that loaded must still load: anything else is a bug here, and the old file stays.
    if ConfigFile::parse(text).is_ok()
        && let Err(e) = ConfigFile::parse(&out)
    {
        return Err(format!(
            "the edit would make the file unreadable ({e}); it was not written"
        ));
    }
    Ok(out)
}

fn edit(text: &str, profile: &str, values: &[(String, String)]) -> std::result::Result<String, String> {
    let lines = ini_lines::lines(text);
    let eol = if text.contains("\r\n") { "\r\n" } else { "\n" };
    let headers: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.kind == Kind::Section(profile))
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
        .find(|(_, l)| is_section(l))
        .map_or(lines.len(), |(i, _)| i);
    // Per line of the file: its replacement (None = keep as is).
    let mut replaced: Vec<Option<String>> = vec![None; lines.len()];
    let mut missing = Vec::new();
    for (key, value) in values {
        let wanted = key.to_lowercase();
        let found: Vec<usize> = (header + 1..end).filter(|&i| is_key(&lines[i], &wanted)).collect();
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
        .find(|&i| matches!(lines[i].kind, Kind::Key { .. } | Kind::Continuation))
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

    /// The edit, and what our reader then reads in the profile.
    fn set_and_read(text: &str, profile: &str, kv: &[(&str, &str)]) -> (String, Vec<(String, String)>) {
        let out = set(text, profile, kv);
        let read = ConfigFile::parse(&out).unwrap().section(profile).unwrap().to_vec();
        (out, read)
    }

    #[test]
    fn edits_are_read_back_as_written_by_our_reader() {
        // A padded header is the same profile for the reader and the editor: edited in place, not appended.
        let (out, read) = set_and_read("[ dev ]\nhost = h\n", "dev", &[("token", "t")]);
        assert_eq!(out, "[ dev ]\nhost = h\ntoken = t\n");
        assert_eq!(read, vec![("host".into(), "h".into()), ("token".into(), "t".into())]);
        // An indented comment is a comment, not the start of the next key.
        let (out, read) = set_and_read("[p]\n  # note\ntoken = old # c\n", "p", &[("token", "new#1")]);
        assert_eq!(out, "[p]\n  # note\ntoken = new#1\n");
        assert_eq!(read, vec![("token".into(), "new#1".into())]);
    }

    #[test]
    fn values_the_reader_would_cut_are_refused() {
        for value in ["abc #def", "abc ;def", "abc  #def"] {
            let err = check_edit("p", &[("password".into(), value.into())])
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with("values: ") && err.contains("comment") && !err.contains("def"),
                "{err}"
            );
        }
        assert!(check_edit("a #b", &[("k".into(), "v".into())]).is_err());
    }

    #[test]
    fn ambiguity_and_bad_input_are_refused() {
        let v = vec![("token".to_string(), "t".to_string())];
        assert!(
            set_profile_values("[p]\n[ p ]\n", "p", &v)
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
