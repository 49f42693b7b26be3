//! Claude Code: `~/.claude/settings.json` or `$CLAUDE_CONFIG_DIR/settings.json` (user settings; `env` applies to
//! every session). Which file: [`super::main_file`].
//!
//! We set `apiKeyHelper` (our `token get`, by absolute path and shell-quoted: Claude Code runs it with
//! `/bin/sh`, and the agent's `PATH` may lack our venv) and, in `env`, `ANTHROPIC_BASE_URL`,
//! `ANTHROPIC_MODEL`, `CLAUDE_CODE_API_KEY_HELPER_TTL_MS` and our line of `ANTHROPIC_CUSTOM_HEADERS` (other
//! lines the user has there stay). `ANTHROPIC_API_KEY` and `ANTHROPIC_AUTH_TOKEN` in `env` would silently win
//! over the helper: they are removed, with a warning.

use std::path::Path;

use serde_json::{Map, Value};

use super::json::{self, object_at};
use super::{CODING_AGENT_HEADER, Outcome, REFRESH_MS, Route, Settings, shell_quote};
use crate::error::Result;

/// The `env` keys whose values are ours.
const OWNED_ENV: [&str; 3] = [
    "ANTHROPIC_BASE_URL",
    "ANTHROPIC_MODEL",
    "CLAUDE_CODE_API_KEY_HELPER_TTL_MS",
];
/// Credentials that take precedence over `apiKeyHelper`.
const OVERRIDING: [&str; 2] = ["ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN"];
/// Where the custom headers go (`Name: Value` lines).
const HEADERS: &str = "ANTHROPIC_CUSTOM_HEADERS";
/// What our `apiKeyHelper` ends with (how `unconfigure` recognises it).
const HELPER_TAIL: &str = " token get";

/// The Anthropic base URL of a route.
pub fn base_url(host: &str, route: Route) -> String {
    match route {
        Route::ServingEndpoints => format!("{host}/serving-endpoints/anthropic"),
        Route::AiGateway => format!("{host}/ai-gateway/anthropic"),
    }
}

/// The `apiKeyHelper` command line.
pub fn helper_command(helper: &[String]) -> String {
    let words: Vec<String> = helper.iter().map(|w| shell_quote(w)).collect();
    words.join(" ") + HELPER_TAIL
}

fn header_line() -> String {
    format!("{}: {}", CODING_AGENT_HEADER.0, CODING_AGENT_HEADER.1)
}

/// Whether a custom-headers line is ours (the header name, any case).
fn is_our_header(line: &str) -> bool {
    line.split(':')
        .next()
        .is_some_and(|n| n.trim().eq_ignore_ascii_case(CODING_AGENT_HEADER.0))
}

/// Our keys merged into the parsed settings; returns the warnings.
pub fn apply(obj: &mut Map<String, Value>, path: &Path, settings: &Settings) -> Result<Vec<String>> {
    let mut warnings = Vec::new();
    let helper = helper_command(&settings.helper);
    if let Some(old) = obj.get("apiKeyHelper").and_then(Value::as_str)
        && old != helper
        && !old.ends_with(HELPER_TAIL)
    {
        warnings.push(format!("{}: replaced the apiKeyHelper that was there", path.display()));
    }
    json::set(obj, "apiKeyHelper", Value::String(helper));
    let env = object_at(obj, "env", path, "\"env\"")?;
    for key in OVERRIDING {
        if json::remove(env, key) {
            warnings.push(format!(
                "{}: removed {key} from \"env\": it would override the apiKeyHelper",
                path.display()
            ));
        }
    }
    let values = [
        base_url(&settings.host, settings.route),
        settings.model_for(super::Agent::ClaudeCode).to_string(),
        REFRESH_MS.to_string(),
    ];
    for (key, value) in OWNED_ENV.into_iter().zip(values) {
        json::set(env, key, Value::String(value));
    }
    let mut lines: Vec<String> = match env.get(HEADERS).and_then(Value::as_str) {
        Some(h) => h.lines().filter(|l| !is_our_header(l)).map(str::to_string).collect(),
        None => Vec::new(),
    };
    lines.push(header_line());
    json::set(env, HEADERS, Value::String(lines.join("\n")));
    Ok(warnings)
}

/// Our keys taken out of the parsed settings; returns whether anything changed.
pub fn remove(obj: &mut Map<String, Value>) -> bool {
    let mut changed = false;
    if obj
        .get("apiKeyHelper")
        .and_then(Value::as_str)
        .is_some_and(|h| h.ends_with(HELPER_TAIL))
    {
        changed |= json::remove(obj, "apiKeyHelper");
    }
    if let Some(env) = obj.get_mut("env").and_then(Value::as_object_mut) {
        for key in OWNED_ENV {
            changed |= json::remove(env, key);
        }
        if let Some(h) = env.get(HEADERS).and_then(Value::as_str) {
            let rest: Vec<&str> = h.lines().filter(|l| !is_our_header(l)).collect();
            if rest.len() != h.lines().count() {
                changed = true;
                if rest.is_empty() {
                    json::remove(env, HEADERS);
                } else {
                    let joined = rest.join("\n");
                    env.insert(HEADERS.into(), Value::String(joined));
                }
            }
        }
        if changed {
            json::prune(obj, "env");
        }
    }
    changed
}

/// Write our settings into the settings file `path`.
pub fn configure(path: &Path, settings: &Settings) -> Result<Outcome> {
    let path = path.to_path_buf();
    let mut warnings = Vec::new();
    let changed = json::update_object(&path, |obj| {
        warnings = apply(obj, &path, settings)?;
        Ok(true)
    })?;
    Ok(Outcome {
        path,
        changed,
        warnings,
    })
}

/// Take our settings out of the settings file `path`.
pub fn unconfigure(path: &Path) -> Result<Outcome> {
    let path = path.to_path_buf();
    let changed = json::update_existing(&path, |obj| Ok(remove(obj)))?;
    Ok(Outcome::quiet(path, changed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn settings() -> Settings {
        let helper = vec!["/opt/my venv/bin/devbox-native".to_string()];
        Settings::new("ws.example.com", Route::ServingEndpoints, None, helper, None, None).unwrap()
    }

    #[test]
    fn merges_our_keys_and_drops_overriding_credentials() {
        let mut obj = json!({
            "permissions": {"allow": ["Bash(ls)"]},
            "apiKeyHelper": "cat /secret",
            "env": {"MY_VAR": "1", "ANTHROPIC_API_KEY": "sk-x", "ANTHROPIC_CUSTOM_HEADERS": "X-Team: a"},
        })
        .as_object()
        .unwrap()
        .clone();
        let warnings = apply(&mut obj, Path::new("/h/.claude/settings.json"), &settings()).unwrap();
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[1].contains("removed ANTHROPIC_API_KEY"));
        assert!(!warnings.iter().any(|w| w.contains("sk-x") || w.contains("/secret")));
        assert_eq!(
            Value::Object(obj.clone()),
            json!({
                "permissions": {"allow": ["Bash(ls)"]},
                "apiKeyHelper": "'/opt/my venv/bin/devbox-native' token get",
                "env": {
                    "MY_VAR": "1",
                    "ANTHROPIC_CUSTOM_HEADERS": "X-Team: a\nx-databricks-use-coding-agent-mode: true",
                    "ANTHROPIC_BASE_URL": "https://ws.example.com/serving-endpoints/anthropic",
                    "ANTHROPIC_MODEL": "databricks-claude-sonnet-4-5",
                    "CLAUDE_CODE_API_KEY_HELPER_TTL_MS": "300000",
                },
            })
        );
        // Idempotent: a second run changes nothing and warns about nothing.
        let before = obj.clone();
        assert!(apply(&mut obj, Path::new("/x"), &settings()).unwrap().is_empty());
        assert_eq!(obj, before);
        assert!(remove(&mut obj));
        assert_eq!(
            Value::Object(obj.clone()),
            json!({"permissions": {"allow": ["Bash(ls)"]}, "env": {"MY_VAR": "1", "ANTHROPIC_CUSTOM_HEADERS": "X-Team: a"}})
        );
        assert!(!remove(&mut obj));
    }

    #[test]
    fn ai_gateway_route_and_empty_env_is_pruned() {
        let mut s = settings();
        s.route = Route::AiGateway;
        let mut obj = Map::new();
        apply(&mut obj, Path::new("/x"), &s).unwrap();
        assert_eq!(
            obj["env"]["ANTHROPIC_BASE_URL"],
            "https://ws.example.com/ai-gateway/anthropic"
        );
        assert!(remove(&mut obj));
        assert!(obj.is_empty(), "{obj:?}");
    }

    #[test]
    fn files_are_private_and_bad_json_is_left_alone() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(".claude").join("settings.json");
        let out = configure(&file, &settings()).unwrap();
        assert!(out.changed);
        let mode = std::fs::metadata(&out.path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        std::fs::write(&out.path, b"{not json").unwrap();
        let e = configure(&file, &settings()).unwrap_err().to_string();
        assert!(e.contains("not valid JSON") && e.contains("left untouched"), "{e}");
        assert_eq!(std::fs::read(&out.path).unwrap(), b"{not json");
        assert!(
            !unconfigure(&dir.path().join("nowhere").join("settings.json"))
                .unwrap()
                .changed
        );
        assert!(!dir.path().join("nowhere").exists());
    }
}
