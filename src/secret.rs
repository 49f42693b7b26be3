//! Secrets: a string that must never be shown, the process-wide registry of every secret value the process
//! knows, and the one redaction function that consults it.
//!
//! Every [`Secret`] registers its value when it is made (PATs, OAuth access tokens, client secrets, OIDC ID
//! tokens, `Basic` headers and their base64 part), and a resolved configuration registers its sensitive
//! attributes (passwords, tokens, client secrets). [`redact`] masks all of them in any text, including text
//! that came from a server or a child process; the Python boundary (exception messages, log records, reprs,
//! the CLI's output) passes every message through it.

use std::collections::VecDeque;
use std::sync::Mutex;

/// A secret value (token, client secret, authorization header). Read it only with [`Secret::expose`].
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Secret(String);

impl Secret {
    /// Wrap a secret value (and register it, so that [`redact`] masks it everywhere).
    pub fn new(value: impl Into<String>) -> Self {
        let value = value.into();
        register(&value);
        Secret(value)
    }

    /// The value itself, for the one place that must send or store it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// Shorter values given to [`redact`] are not masked: masking `abc` everywhere would garble every message.
const MIN_LEN: usize = 4;
/// Shorter values are not registered: a registered value is masked in every message of the process, and real
/// tokens and client secrets are far longer (a password this short is only masked where it is known to be).
const MIN_REGISTERED: usize = 8;
/// A value of letters only is registered from this length: a shorter one is a word (`password`), and masking it
/// everywhere would garble messages rather than protect anything.
const MIN_REGISTERED_WORD: usize = 16;

/// Whether a value is distinctive enough to be masked in every text (see [`MIN_REGISTERED`]).
fn worth_registering(value: &str) -> bool {
    value.len() >= MIN_REGISTERED_WORD || (value.len() >= MIN_REGISTERED && !value.chars().all(char::is_alphabetic))
}
/// The registry keeps this many values, the oldest dropped first (a rotation mints one token per turn, so a
/// year of hourly rotations still fits).
const REGISTRY_CAP: usize = 16 * 1024;
/// What a masked secret becomes.
const MASK: &str = "***";

static REGISTRY: Mutex<VecDeque<String>> = Mutex::new(VecDeque::new());

fn registry() -> std::sync::MutexGuard<'static, VecDeque<String>> {
    REGISTRY.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Remember a secret value so that [`redact`] masks it from now on. An authorization header is registered
/// with and without its scheme (`Bearer <t>`, `<t>`; `Basic <base64>`, `<base64>`).
pub fn register(value: &str) {
    let mut parts = vec![value];
    if let Some((scheme, rest)) = value.split_once(' ')
        && !scheme.is_empty()
        && scheme.bytes().all(|b| b.is_ascii_alphabetic())
    {
        parts.push(rest);
    }
    let mut reg = registry();
    for part in parts.into_iter().filter(|p| worth_registering(p)) {
        if !reg.iter().any(|known| known == part) {
            if reg.len() >= REGISTRY_CAP {
                reg.pop_front();
            }
            reg.push_back(part.to_string());
        }
    }
}

/// `text` with every secret the process knows, and each of `extra`, replaced by `***`.
pub fn redact(text: &str, extra: &[&str]) -> String {
    let mut out = text.to_string();
    let mut mask = |s: &str| {
        if s.len() >= MIN_LEN && out.contains(s) {
            out = out.replace(s, MASK);
        }
    };
    for s in extra {
        mask(s);
    }
    let reg = registry();
    // Longest first, so that a header is masked whole before its token part.
    let mut known: Vec<&String> = reg.iter().filter(|s| text.contains(s.as_str())).collect();
    known.sort_by_key(|s| std::cmp::Reverse(s.len()));
    for s in known {
        mask(s);
    }
    out
}

/// Environment variables that hold Databricks secrets: children (the rotation hook, the `databricks` CLI)
/// never inherit them unless the caller gives their environment explicitly.
pub const SECRET_ENV_VARS: [&str; 6] = [
    "DATABRICKS_TOKEN",
    "DATABRICKS_CLIENT_SECRET",
    "DATABRICKS_PASSWORD",
    "DATABRICKS_OIDC_TOKEN",
    "ARM_CLIENT_SECRET",
    "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
];

/// The names of the variables to take out of a child's environment: [`SECRET_ENV_VARS`] plus the OIDC token
/// variable named by `DATABRICKS_OIDC_TOKEN_ENV`, if any.
pub fn child_env_removals() -> Vec<std::ffi::OsString> {
    let mut names: Vec<std::ffi::OsString> = SECRET_ENV_VARS.iter().map(Into::into).collect();
    if let Some(named) = std::env::var_os("DATABRICKS_OIDC_TOKEN_ENV").filter(|n| !n.is_empty()) {
        names.push(named);
    }
    names
}

/// Check a token value received from a server or a child (`field` names it in the error, the value is never
/// shown): it becomes an HTTP header and a line of output, so only visible ASCII is allowed (no space, CR, LF,
/// NUL, control or non-ASCII character).
pub fn check_token_value(field: &str, value: &str) -> std::result::Result<(), String> {
    if value.is_empty() {
        return Err(format!("{field} is empty"));
    }
    if let Some(bad) = value.chars().find(|c| !c.is_ascii_graphic()) {
        let what = match bad {
            '\r' => "a carriage return",
            '\n' => "a line feed",
            '\0' => "a NUL byte",
            ' ' | '\t' => "whitespace",
            c if c.is_control() => "a control character",
            _ => "a non-ASCII character",
        };
        return Err(format!("{field} contains {what}, which a token never holds"));
    }
    Ok(())
}

/// The `Authorization` header `<token_type> <access_token>` of a token a server or a child handed us, after
/// checking both with [`check_token_value`] (the error names the field, never the value).
pub fn auth_header(token_type: &str, access_token: &str) -> std::result::Result<Secret, String> {
    check_token_value("access_token", access_token)?;
    check_token_value("token_type", token_type)?;
    Ok(Secret::new(format!("{token_type} {access_token}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_format() {
        let s = Secret::new("hunter2-token");
        assert_eq!(format!("{s} {s:?}"), "*** Secret(***)");
        assert_eq!(s.expose(), "hunter2-token");
    }

    #[test]
    fn redact_replaces_all_occurrences() {
        assert_eq!(redact("a tok1234 b tok1234", &["tok1234"]), "a *** b ***");
        assert_eq!(redact("short ab", &["ab"]), "short ab");
    }

    #[test]
    fn every_secret_made_or_registered_is_masked_in_any_text() {
        let _pat = Secret::new("dapi-registry-test-1");
        let _basic = Secret::new("Basic YWxpY2U6cmVnaXN0cnktcHc=");
        let _bearer = Secret::new("Bearer eyJ-registry-access");
        register("client-secret-registry-test");
        let text = "server said: dapi-registry-test-1, YWxpY2U6cmVnaXN0cnktcHc=, \
                    Authorization: Bearer eyJ-registry-access, eyJ-registry-access, client-secret-registry-test";
        assert_eq!(redact(text, &[]), "server said: ***, ***, Authorization: ***, ***, ***");
        assert_eq!(redact("nothing secret here", &[]), "nothing secret here");
        // Short values and single words are not masked everywhere (they would garble every message).
        register("password");
        register("ab1");
        assert_eq!(redact("password=*** ab1", &[]), "password=*** ab1");
    }

    #[test]
    fn token_values_must_be_visible_ascii() {
        assert!(check_token_value("token_value", "dapi0123-abc.def_ghi~").is_ok());
        for (value, what) in [
            ("", "is empty"),
            ("ab\r\ncd", "a carriage return"),
            ("ab\ncd", "a line feed"),
            ("ab\0cd", "a NUL byte"),
            ("ab cd", "whitespace"),
            ("ab\u{7f}", "a control character"),
            ("abé", "a non-ASCII character"),
        ] {
            let err = check_token_value("access_token", value).unwrap_err();
            assert!(err.starts_with("access_token ") && err.contains(what), "{err}");
        }
    }
}
