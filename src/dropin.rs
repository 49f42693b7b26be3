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

/// The token lifetime the app would use: `CLAUDE_CODE_TOKEN_EXPIRY_SECONDS` when set, else the argument.
pub fn effective_lifetime(env: &dyn Env, duration_seconds: i64) -> Result<i64> {
    match env.var(LIFETIME_ENV) {
        Some(raw) => {
            let parsed = raw
                .trim()
                .parse::<i64>()
                .map_err(|_| Error::invalid(LIFETIME_ENV, format!("must be a whole number of seconds, got {raw:?}")))?;
            check_lifetime(LIFETIME_ENV, parsed)
        }
        None => check_lifetime("duration_seconds", duration_seconds),
    }
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
        assert_eq!(effective_lifetime(&env(&[(LIFETIME_ENV, " 60 ")]), 3600).unwrap(), 60);
        for bad in ["", "abc", "0", "-5", "1.5"] {
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
