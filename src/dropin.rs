//! The DevBox app's start-up functions (`app/vibe_code.py`), reimplemented: same names, same results, minus
//! the bugs (double `https://`, world-readable files, non-atomic writes).

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::api::tokens::{CreatedToken, check_lifetime};
use crate::config::{Config, Env, normalize_host};
use crate::error::{Error, Result};
use crate::fsutil::{ensure_private_dir, write_locked};
use crate::workspace::Workspace;

/// The app's default `duration_seconds`.
pub const DEFAULT_DURATION: i64 = 3600;

/// The env var that overrides `duration_seconds`, exactly as the app reads it.
pub const LIFETIME_ENV: &str = "CLAUDE_CODE_TOKEN_EXPIRY_SECONDS";

/// The token lifetime the app would use: `CLAUDE_CODE_TOKEN_EXPIRY_SECONDS` when set, else the argument. The
/// variable is read the way the app's Python `int()` reads it (see [`parse_python_int`]).
pub fn effective_lifetime(env: &dyn Env, duration_seconds: i64) -> Result<i64> {
    match env_lifetime(env)? {
        Some(seconds) => Ok(seconds),
        None => check_lifetime("duration_seconds", duration_seconds),
    }
}

/// `CLAUDE_CODE_TOKEN_EXPIRY_SECONDS` as a checked lifetime, `None` when unset: the one rule every command
/// that mints a token follows (an explicit lifetime option wins over it).
pub fn env_lifetime(env: &dyn Env) -> Result<Option<i64>> {
    let Some(raw) = env.var(LIFETIME_ENV) else {
        return Ok(None);
    };
    let parsed = parse_python_int(&raw)
        .ok_or_else(|| Error::invalid(LIFETIME_ENV, format!("must be a whole number of seconds, got {raw:?}")))?;
    check_lifetime(LIFETIME_ENV, parsed).map(Some)
}

/// Python's `int(text)` in base 10, for what fits an `i64`: surrounding whitespace (`str.strip()`'s), an
/// optional sign, then decimal digits of any script (Unicode category Nd) with single underscores between
/// digits. `None` for anything `int()` rejects (or a value out of range).
pub fn parse_python_int(text: &str) -> Option<i64> {
    let is_space = |c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c);
    let t = text.trim_matches(is_space);
    let (negative, digits) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let mut value: i64 = 0;
    let mut seen_digit = false;
    let mut after_underscore = false;
    for c in digits.chars() {
        if c == '_' {
            if !seen_digit || after_underscore {
                return None;
            }
            after_underscore = true;
            continue;
        }
        let d = decimal_value(c)?;
        value = value.checked_mul(10)?.checked_add(i64::from(d))?;
        seen_digit = true;
        after_underscore = false;
    }
    if !seen_digit || after_underscore {
        return None;
    }
    Some(if negative { -value } else { value })
}

/// The first code point (digit zero) of every run of ten Unicode decimal digits (category Nd), as Python
/// 3.11's `unicodedata` (Unicode 14) lists them.
const DIGIT_ZEROS: [u32; 66] = [
    0x30, 0x660, 0x6F0, 0x7C0, 0x966, 0x9E6, 0xA66, 0xAE6, 0xB66, 0xBE6, 0xC66, 0xCE6, 0xD66, 0xDE6, 0xE50, 0xED0,
    0xF20, 0x1040, 0x1090, 0x17E0, 0x1810, 0x1946, 0x19D0, 0x1A80, 0x1A90, 0x1B50, 0x1BB0, 0x1C40, 0x1C50, 0xA620,
    0xA8D0, 0xA900, 0xA9D0, 0xA9F0, 0xAA50, 0xABF0, 0xFF10, 0x104A0, 0x10D30, 0x11066, 0x110F0, 0x11136, 0x111D0,
    0x112F0, 0x11450, 0x114D0, 0x11650, 0x116C0, 0x11730, 0x118E0, 0x11950, 0x11C50, 0x11D50, 0x11DA0, 0x16A60,
    0x16AC0, 0x16B50, 0x1D7CE, 0x1D7D8, 0x1D7E2, 0x1D7EC, 0x1D7F6, 0x1E140, 0x1E2F0, 0x1E950, 0x1FBF0,
];

/// The value of a decimal digit of any script.
fn decimal_value(c: char) -> Option<u32> {
    let cp = u32::from(c);
    let i = DIGIT_ZEROS.partition_point(|&zero| zero <= cp).checked_sub(1)?;
    let d = cp - DIGIT_ZEROS[i];
    (d < 10).then_some(d)
}

/// `sdk-<time_ns>`, the app's comment for the tokens it mints.
pub fn app_comment() -> String {
    let ns = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("sdk-{ns}")
}

/// Mint a token the way `generate_spn_token` does, with `config` or one resolved from `env`. On
/// `QUOTA_EXCEEDED` the error says how many tokens are live and how to clean up.
pub async fn generate_spn_token(env: &dyn Env, duration_seconds: i64, config: Option<Config>) -> Result<CreatedToken> {
    let lifetime = effective_lifetime(env, duration_seconds)?;
    let ws = Workspace::new(Config::given_or_default(config, env)?)?;
    crate::hygiene::create_token(&ws, Some(lifetime), Some(&app_comment()), None).await
}

/// A required env var for `.databrickscfg`: set, and free of line breaks (which would inject INI lines).
fn required(env: &dyn Env, name: &str) -> Result<String> {
    let v = env.var(name).ok_or_else(|| Error::MissingEnv(name.to_string()))?;
    if v.chars().any(char::is_control) {
        return Err(Error::invalid(
            name,
            "must not contain line breaks or control characters",
        ));
    }
    Ok(v)
}

/// The `.databrickscfg` text the app writes (same bytes, host normalised once).
pub fn databricks_cfg_text(env: &dyn Env) -> Result<String> {
    let host = required(env, "DATABRICKS_HOST")?;
    let host = normalize_host(&host).map_err(|r| Error::invalid("DATABRICKS_HOST", r))?;
    let client_id = required(env, "DATABRICKS_CLIENT_ID")?;
    let client_secret = required(env, "DATABRICKS_CLIENT_SECRET")?;
    Ok(format!(
        "\n[DEFAULT]\nhost = {host}\nclient_id = {client_id}\nclient_secret = {client_secret}\n"
    ))
}

/// Write `<root>/.databrickscfg` (0600, atomic, under its lock) from the environment. Returns its path.
pub fn setup_databricks_cfg(env: &dyn Env, root: &Path) -> Result<PathBuf> {
    let text = databricks_cfg_text(env)?;
    ensure_private_dir(root)?;
    let path = root.join(".databrickscfg");
    write_locked(&path, text.as_bytes())?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect()
    }

    #[test]
    fn the_env_var_overrides_the_argument() {
        assert_eq!(effective_lifetime(&env(&[]), 3600).unwrap(), 3600);
        // Exactly what Python's int() accepts.
        for (raw, want) in [
            (" 60 ", 60),
            ("+3600", 3600),
            ("3_600", 3600),
            ("0060", 60),
            ("\u{663}\u{666}\u{660}\u{660}", 3600),
            ("\u{ff13}\u{ff16}\u{ff10}\u{ff10}", 3600),
            ("\u{1c}\u{3000}120\t\n", 120),
        ] {
            assert_eq!(
                effective_lifetime(&env(&[(LIFETIME_ENV, raw)]), 1).unwrap(),
                want,
                "{raw:?}"
            );
        }
        for bad in [
            "",
            "abc",
            "0",
            "-5",
            "1.5",
            "_3600",
            "3600_",
            "3__600",
            "+ 1",
            "+-1",
            "1e3",
            "0x10",
            "\u{b2}",
            "\u{2155}",
            "3600s",
            "99999999999999999999",
        ] {
            let err = effective_lifetime(&env(&[(LIFETIME_ENV, bad)]), 3600)
                .unwrap_err()
                .to_string();
            assert!(err.starts_with(LIFETIME_ENV), "{err}");
        }
        let err = effective_lifetime(&env(&[]), 0).unwrap_err().to_string();
        assert!(err.starts_with("duration_seconds: "), "{err}");
    }

    #[test]
    fn databricks_cfg_matches_the_app_and_rejects_injection() {
        let e = env(&[
            ("DATABRICKS_HOST", "adb-1.azuredatabricks.net"),
            ("DATABRICKS_CLIENT_ID", "cid"),
            ("DATABRICKS_CLIENT_SECRET", "sec"),
        ]);
        assert_eq!(
            databricks_cfg_text(&e).unwrap(),
            "\n[DEFAULT]\nhost = https://adb-1.azuredatabricks.net\nclient_id = cid\nclient_secret = sec\n"
        );
        let missing = databricks_cfg_text(&env(&[("DATABRICKS_HOST", "h")])).unwrap_err();
        assert!(matches!(missing, Error::MissingEnv(ref n) if n == "DATABRICKS_CLIENT_ID"));
        let inj = env(&[
            ("DATABRICKS_HOST", "h"),
            ("DATABRICKS_CLIENT_ID", "c"),
            ("DATABRICKS_CLIENT_SECRET", "s\n[evil]"),
        ]);
        let err = databricks_cfg_text(&inj).unwrap_err().to_string();
        assert!(
            err.starts_with("DATABRICKS_CLIENT_SECRET: ") && !err.contains("evil"),
            "{err}"
        );
    }

    #[test]
    fn comment_is_the_apps() {
        let c = app_comment();
        assert!(c.starts_with("sdk-") && c[4..].parse::<u128>().is_ok(), "{c}");
    }
}
