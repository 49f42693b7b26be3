//! Gemini CLI: `~/.gemini/.env` and `settings.json` beside it (`$GEMINI_CLI_HOME/.gemini/...` when set; which
//! file: [`super::main_file`]), through the loopback gateway.
//!
//! Gemini CLI reads its key once and cannot refresh it, so it talks to the gateway (which puts a fresh
//! Databricks token on every request) with the gateway key, which is not a Databricks credential.
//! `.env`: `GOOGLE_GEMINI_BASE_URL=<gateway>/ai-gateway/gemini`, `GEMINI_API_KEY=<gateway key>`,
//! `GEMINI_API_KEY_AUTH_MECHANISM=bearer`, `GEMINI_MODEL`; every other line stays as it is.
//! `settings.json`: `security.auth.selectedType = "gemini-api-key"` (else Gemini CLI refuses to start).

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::Outcome;
use super::json::{self, object_at};
use crate::error::{Error, Result};
use crate::fsutil::{ensure_private_dir, update_file};

/// The `.env` keys we own.
const KEYS: [&str; 4] = [
    "GOOGLE_GEMINI_BASE_URL",
    "GEMINI_API_KEY",
    "GEMINI_API_KEY_AUTH_MECHANISM",
    "GEMINI_MODEL",
];
/// The auth type our key needs.
const AUTH_TYPE: &str = "gemini-api-key";

/// The settings file beside the `.env` file `env_path`.
pub fn settings_path(env_path: &Path) -> PathBuf {
    env_path.with_file_name("settings.json")
}

/// The key a `.env` line sets (`KEY=...` or `export KEY=...`), if any.
fn line_key(line: &str) -> Option<&str> {
    let t = line.trim_start();
    let t = t.strip_prefix("export ").map_or(t, str::trim_start);
    let (key, _) = t.split_once('=')?;
    let key = key.trim_end();
    (!key.is_empty() && !key.starts_with('#')).then_some(key)
}

/// `text` with our keys set to `values` (the first line of each replaced in place, later ones dropped,
/// missing ones appended) or, with `values` None, with our keys' lines removed.
pub fn edit_env(text: &str, values: Option<&[(&str, String)]>) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut done: Vec<&str> = Vec::new();
    for line in text.lines() {
        match line_key(line).and_then(|k| KEYS.iter().find(|o| **o == k)) {
            Some(key) => {
                if let Some(vals) = values
                    && !done.contains(key)
                    && let Some((_, v)) = vals.iter().find(|(k, _)| k == key)
                {
                    out.push(format!("{key}={v}"));
                    done.push(key);
                }
            }
            None => out.push(line.to_string()),
        }
    }
    for (key, v) in values.unwrap_or(&[]) {
        if !done.contains(key) {
            out.push(format!("{key}={v}"));
        }
    }
    let mut s = out.join("\n");
    if !s.is_empty() {
        s.push('\n');
    }
    s
}

/// Read the gateway key (one line) from `path`.
pub fn read_key(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io("read the gateway key", path, e))?;
    let key = text.trim();
    if key.is_empty() || key.chars().any(char::is_whitespace) {
        return Err(Error::Config(format!(
            "{}: not a gateway key (one word expected)",
            path.display()
        )));
    }
    Ok(key.to_string())
}

/// Write our keys into the `.env` file `path` and the `settings.json` beside it. Returns the `.env` path.
pub fn configure(path: &Path, gateway_url: &str, key_file: &Path, model: &str) -> Result<Outcome> {
    let key = read_key(key_file)?;
    let path = path.to_path_buf();
    if let Some(dir) = path.parent() {
        ensure_private_dir(dir)?;
    }
    let settings = settings_path(&path);
    json::update_object(&settings, |obj| {
        let auth = object_at(
            object_at(obj, "security", &settings, "\"security\"")?,
            "auth",
            &settings,
            "\"security.auth\"",
        )?;
        Ok(json::set(auth, "selectedType", Value::String(AUTH_TYPE.into())))
    })?;
    let values = [
        ("GOOGLE_GEMINI_BASE_URL", format!("{gateway_url}/ai-gateway/gemini")),
        ("GEMINI_API_KEY", key),
        ("GEMINI_API_KEY_AUTH_MECHANISM", "bearer".to_string()),
        ("GEMINI_MODEL", model.to_string()),
    ];
    let changed = update_file(&path, |current| {
        let text = String::from_utf8_lossy(current.unwrap_or_default());
        Ok(Some(edit_env(&text, Some(&values)).into_bytes()))
    })?;
    Ok(Outcome::quiet(path, changed))
}

/// Take our keys out of the `.env` file `path` and the `settings.json` beside it.
pub fn unconfigure(path: &Path) -> Result<Outcome> {
    let path = path.to_path_buf();
    let settings = settings_path(&path);
    let mut changed = json::update_existing(&settings, |obj| {
        let Some(security) = obj.get_mut("security").and_then(Value::as_object_mut) else {
            return Ok(false);
        };
        let Some(auth) = security.get_mut("auth").and_then(Value::as_object_mut) else {
            return Ok(false);
        };
        if auth.get("selectedType").and_then(Value::as_str) != Some(AUTH_TYPE) {
            return Ok(false);
        }
        json::remove(auth, "selectedType");
        json::prune(security, "auth");
        json::prune(obj, "security");
        Ok(true)
    })?;
    if path.exists() {
        changed |= update_file(&path, |current| {
            let text = String::from_utf8_lossy(current.unwrap_or_default()).into_owned();
            let new = edit_env(&text, None);
            Ok((new != text).then(|| new.into_bytes()))
        })?;
    }
    Ok(Outcome::quiet(path, changed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_lines_are_merged_and_removed() {
        let user = "# mine\nFOO=1\nexport GEMINI_MODEL=old\nGEMINI_MODEL=dup\n";
        let values = [("GEMINI_MODEL", "m".to_string()), ("GEMINI_API_KEY", "k".to_string())];
        let merged = edit_env(user, Some(&values));
        assert_eq!(merged, "# mine\nFOO=1\nGEMINI_MODEL=m\nGEMINI_API_KEY=k\n");
        assert_eq!(edit_env(&merged, None), "# mine\nFOO=1\n");
        assert_eq!(edit_env("", None), "");
    }

    #[test]
    fn configure_and_unconfigure_files() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("gateway.key");
        std::fs::write(&key, "k3y\n").unwrap();
        let root = dir.path().join("home");
        std::fs::create_dir_all(root.join(".gemini")).unwrap();
        let env_file = root.join(".gemini").join(".env");
        std::fs::write(settings_path(&env_file), r#"{"ui": {"theme": "dark"}}"#).unwrap();
        let out = configure(&env_file, "http://127.0.0.1:9", &key, "databricks-gemini-2-5-pro").unwrap();
        let env = std::fs::read_to_string(&out.path).unwrap();
        assert!(env.contains("GOOGLE_GEMINI_BASE_URL=http://127.0.0.1:9/ai-gateway/gemini\nGEMINI_API_KEY=k3y\n"));
        let s: Value = serde_json::from_slice(&std::fs::read(settings_path(&env_file)).unwrap()).unwrap();
        assert_eq!(
            s,
            serde_json::json!({"ui": {"theme": "dark"}, "security": {"auth": {"selectedType": "gemini-api-key"}}})
        );
        assert!(unconfigure(&env_file).unwrap().changed);
        let s: Value = serde_json::from_slice(&std::fs::read(settings_path(&env_file)).unwrap()).unwrap();
        assert_eq!(s, serde_json::json!({"ui": {"theme": "dark"}}));
        assert_eq!(std::fs::read_to_string(&out.path).unwrap(), "");
        let e = configure(&env_file, "http://127.0.0.1:9", &dir.path().join("none"), "m").unwrap_err();
        assert!(e.to_string().contains("gateway key"), "{e}");
    }
}
