//! `~/.databrickscfg`: reading the file and choosing the profile, with the Databricks SDKs' rules
//! (SDK-BEHAVIOUR.md §3, and the newer SDKs' `[__settings__] default_profile`).
//!
//! * The file is `config_file` / `DATABRICKS_CONFIG_FILE`, else `~/.databrickscfg` (`~` is the injected home).
//!   A missing file is not an error; an unreadable or malformed one is, naming the file (and the line).
//! * The profile is the one named (`profile` / `DATABRICKS_CONFIG_PROFILE`), else `[__settings__]
//!   default_profile`, else `DEFAULT` when that section has keys. A named profile that is absent is an error;
//!   the `DEFAULT` fallback is not.
//! * Named profiles do not inherit `DEFAULT`'s keys (both SDKs bypass configparser's merging).
//!
//! Lines are read with the grammar of [`super::lines`] (configparser's rules plus the Go SDK's inline
//! comments), the one the editor ([`super::edit`]) uses too: `#` and `;` start a comment line, quotes and
//! backslashes are part of the value, keys are case-insensitive (lower-cased), section names are trimmed but
//! case-sensitive. Inline comments need whitespace before the `#` or `;` (passwords may contain `#`).
//!
//! What configparser rejects is rejected, with the line number: a line that is neither a comment, a
//! `[section]` nor `key = value`; a key before any section; a duplicate section or key. Indented continuation
//! lines, which configparser joins into a multi-line value, are rejected too: no attribute we read spans lines.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use super::lines::{self as ini_lines, Kind};

/// The section of tool settings (not a profile), written by `databricks auth switch`.
pub const SETTINGS_SECTION: &str = "__settings__";
/// The fallback profile.
pub const DEFAULT_SECTION: &str = "DEFAULT";

/// A parsed config file: its sections in file order, keys lower-cased, `DEFAULT` merged if repeated.
#[derive(Debug, Default)]
pub struct ConfigFile {
    sections: Vec<(String, Vec<(String, String)>)>,
}

/// The profile picked from a file, with the values to apply.
#[derive(Debug, PartialEq)]
pub struct Profile {
    /// The section name.
    pub name: String,
    /// Whether it is the implicit `DEFAULT` fallback (then the `profile` attribute is left unset).
    pub fallback: bool,
    /// Its `key = value` pairs, keys lower-cased, in file order.
    pub values: Vec<(String, String)>,
}

impl ConfigFile {
    /// Parse the text of a config file. Errors are `line N: what` (without the path).
    pub fn parse(text: &str) -> std::result::Result<ConfigFile, String> {
        let mut file = ConfigFile::default();
        let mut current: Option<usize> = None;
        let mut keys_seen: HashMap<usize, HashSet<String>> = HashMap::new();
        for (n, line) in (1..).zip(ini_lines::lines(text)) {
            match line.kind {
                Kind::Blank | Kind::Comment => {}
                Kind::Continuation => {
                    return Err(format!(
                        "line {n}: an indented line continues the previous value, which is not supported: \
                         remove the indentation or join the lines"
                    ));
                }
                Kind::Invalid(why) => return Err(format!("line {n}: {why}")),
                Kind::Section(name) => {
                    // Only DEFAULT may repeat, and then it merges (as in configparser).
                    current = Some(match file.sections.iter().position(|(s, _)| s == name) {
                        Some(_) if name != DEFAULT_SECTION => {
                            return Err(format!("line {n}: section [{name}] appears twice"));
                        }
                        Some(i) => i,
                        None => {
                            file.sections.push((name.to_string(), Vec::new()));
                            file.sections.len() - 1
                        }
                    });
                }
                Kind::Key { key, delimiter, value } => {
                    let key = key.to_lowercase();
                    if key.is_empty() {
                        return Err(format!("line {n}: a key is missing before '{delimiter}'"));
                    }
                    let Some(i) = current else {
                        return Err(format!(
                            "line {n}: '{key}' is outside any [section]: the file must start with a section header"
                        ));
                    };
                    if !keys_seen.entry(i).or_default().insert(key.clone()) {
                        return Err(format!("line {n}: '{key}' appears twice in [{}]", file.sections[i].0));
                    }
                    file.sections[i].1.push((key, value.to_string()));
                }
            }
        }
        Ok(file)
    }

    /// The keys of a section, if the section exists.
    pub fn section(&self, name: &str) -> Option<&[(String, String)]> {
        self.sections.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_slice())
    }

    /// Choose the profile as the SDKs do. `Ok(None)`: nothing to load (no DEFAULT fallback). `Err` carries the
    /// message without the path prefix decisions: the caller formats it.
    pub fn choose(&self, requested: Option<&str>) -> std::result::Result<Option<Profile>, ProfileError> {
        let default_has_keys = self.section(DEFAULT_SECTION).is_some_and(|s| !s.is_empty());
        let settings_default = self
            .section(SETTINGS_SECTION)
            .and_then(|s| s.iter().find(|(k, _)| k == "default_profile"))
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty());
        let (name, fallback) = match (requested, settings_default) {
            (Some(p), _) | (None, Some(p)) if p == SETTINGS_SECTION => return Err(ProfileError::Reserved),
            (Some(p), _) | (None, Some(p)) => (p, false),
            (None, None) if default_has_keys => (DEFAULT_SECTION, true),
            (None, None) => return Ok(None),
        };
        // An empty DEFAULT is no profile (configparser keeps DEFAULT apart from its sections).
        let values = match name {
            DEFAULT_SECTION if !default_has_keys => None,
            _ => self.section(name),
        };
        match values {
            Some(v) => Ok(Some(Profile {
                name: name.to_string(),
                fallback,
                values: v.to_vec(),
            })),
            None if fallback => Ok(None),
            None => Err(ProfileError::Missing(name.to_string())),
        }
    }
}

/// Why no profile could be chosen.
#[derive(Debug, PartialEq)]
pub enum ProfileError {
    /// The named profile (or `default_profile`) has no section.
    Missing(String),
    /// `__settings__` was named as a profile.
    Reserved,
}

/// Where the config file is: `config_file` with `~` expanded, else `<home>/.databrickscfg`. `None` when it
/// needs the home folder and there is none.
pub fn path(config_file: Option<&str>, home: Option<&Path>) -> Option<PathBuf> {
    let raw = config_file.unwrap_or("~/.databrickscfg");
    match raw.strip_prefix('~') {
        Some("") => home.map(Path::to_path_buf),
        Some(rest) if rest.starts_with('/') => home.map(|h| h.join(rest.trim_start_matches('/'))),
        _ => Some(PathBuf::from(raw)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(text: &str, section: &str) -> Vec<(String, String)> {
        ConfigFile::parse(text).unwrap().section(section).unwrap().to_vec()
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter().map(|(k, v)| ((*k).to_string(), (*v).to_string())).collect()
    }

    #[test]
    fn comments_quotes_and_case_follow_configparser_and_the_go_comment_rule() {
        let text = "; leading comment\n# another\n[p]\nPassword = %Y#X$Z # comment\nq = \"%Y#X$Z\" ; c\n\
                    s = 'single'\nw = C:\\tmp\\x\nc: colon\nempty =\n";
        assert_eq!(
            values(text, "p"),
            pairs(&[
                ("password", "%Y#X$Z"),
                ("q", "\"%Y#X$Z\""),
                ("s", "'single'"),
                ("w", "C:\\tmp\\x"),
                ("c", "colon"),
                ("empty", ""),
            ])
        );
    }

    #[test]
    fn an_indented_comment_is_a_comment_and_headers_are_trimmed() {
        let f = ConfigFile::parse("[ dev ]\nhost = h\n  # note\ntoken = t\n").unwrap();
        assert_eq!(f.section("dev").unwrap(), pairs(&[("host", "h"), ("token", "t")]));
        assert_eq!(
            ConfigFile::parse("[dev]\n[ dev ]\n").unwrap_err(),
            "line 2: section [dev] appears twice"
        );
    }

    #[test]
    fn crlf_bom_dotted_names_and_bracketed_comment() {
        let text = "\u{feff}[pat.with.dot] ; note\r\nhost = h\r\n[Case]\r\nK = v\r\n";
        assert_eq!(values(text, "pat.with.dot"), pairs(&[("host", "h")]));
        assert_eq!(values(text, "Case"), pairs(&[("k", "v")]));
        assert!(ConfigFile::parse(text).unwrap().section("case").is_none());
    }

    #[test]
    fn malformed_files_are_rejected_with_the_line() {
        let cases = [
            (
                "[a]\ngarbage\nhost = x\n",
                "line 2: expected 'key = value', a [section] header or a comment",
            ),
            (
                "[a]\nhost = x\ngarbage",
                "line 3: expected 'key = value', a [section] header or a comment",
            ),
            ("[broken\nhost = x\n", "line 1: a section header must end with ']'"),
            (
                "host = x\n[a]\n",
                "line 1: 'host' is outside any [section]: the file must start with a section header",
            ),
            ("[a]\nh = 1\n[b]\n[a]\n", "line 4: section [a] appears twice"),
            ("[a]\nh = 1\nH = 2\n", "line 3: 'h' appears twice in [a]"),
            ("[a]\n= x\n", "line 2: a key is missing before '='"),
            ("[]\n", "line 1: empty section name"),
            (
                "[a]\nscopes = a\n  b\n",
                "line 3: an indented line continues the previous value, which is not supported: remove the \
                 indentation or join the lines",
            ),
        ];
        for (text, want) in cases {
            assert_eq!(ConfigFile::parse(text).unwrap_err(), want, "{text:?}");
        }
        // A repeated DEFAULT merges, as in configparser; indented keys right after a header are keys.
        let f = ConfigFile::parse("[DEFAULT]\na = 1\n[x]\n  k = v\n[DEFAULT]\nb = 2\n").unwrap();
        assert_eq!(f.section("DEFAULT").unwrap(), pairs(&[("a", "1"), ("b", "2")]));
        assert_eq!(f.section("x").unwrap(), pairs(&[("k", "v")]));
    }

    #[test]
    fn profile_choice() {
        let f = ConfigFile::parse("[__settings__]\ndefault_profile = w\n[DEFAULT]\nhost = d\n[w]\nhost = w\n[empty]\n")
            .unwrap();
        let pick = |req: Option<&str>| f.choose(req).map(|p| p.map(|p| (p.name, p.fallback)));
        assert_eq!(pick(None), Ok(Some(("w".into(), false))));
        assert_eq!(pick(Some("DEFAULT")), Ok(Some(("DEFAULT".into(), false))));
        assert_eq!(pick(Some("empty")), Ok(Some(("empty".into(), false))));
        assert_eq!(pick(Some("nope")), Err(ProfileError::Missing("nope".into())));
        assert_eq!(pick(Some("__settings__")), Err(ProfileError::Reserved));

        let empty_default = ConfigFile::parse("[DEFAULT]\n[abc]\nhost = x\n").unwrap();
        assert_eq!(empty_default.choose(None), Ok(None));
        assert_eq!(
            empty_default.choose(Some("DEFAULT")),
            Err(ProfileError::Missing("DEFAULT".into()))
        );
        let blank_setting = ConfigFile::parse("[__settings__]\ndefault_profile =  \n[DEFAULT]\nhost = d\n").unwrap();
        assert_eq!(blank_setting.choose(None).unwrap().unwrap().name, "DEFAULT");
    }

    #[test]
    fn path_expands_the_home() {
        let home = Path::new("/h");
        assert_eq!(path(None, Some(home)), Some(PathBuf::from("/h/.databrickscfg")));
        assert_eq!(path(Some("~/x/cfg"), Some(home)), Some(PathBuf::from("/h/x/cfg")));
        assert_eq!(path(Some("rel/cfg"), None), Some(PathBuf::from("rel/cfg")));
        assert_eq!(path(None, None), None);
        assert_eq!(path(Some("~other/cfg"), Some(home)), Some(PathBuf::from("~other/cfg")));
    }
}
