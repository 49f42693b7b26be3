//! OpenCode: `~/.config/opencode/opencode.json` (or where its variables move it: [`super::main_file`]), through
//! the loopback gateway.
//!
//! OpenCode substitutes `{file:...}` once, when it loads its config, so it talks to the gateway (which puts a
//! fresh Databricks token on every request) with the gateway key, read from the key file. We own the
//! `databricks` provider (`@ai-sdk/openai-compatible`, chat completions at the gateway) and set `model` to one
//! of its models.

use std::path::Path;

use serde_json::{Value, json};

use super::json::{self, object_at};
use super::{CODING_AGENT_HEADER, Outcome, Route};
use crate::error::Result;

/// Our provider's id.
pub const PROVIDER: &str = "databricks";

/// The chat-completions base URL at the gateway for a route.
pub fn base_url(gateway_url: &str, route: Route) -> String {
    match route {
        Route::ServingEndpoints => format!("{gateway_url}/serving-endpoints"),
        Route::AiGateway => format!("{gateway_url}/ai-gateway/mlflow/v1"),
    }
}

/// Write our provider into the config file `path`.
pub fn configure(path: &Path, gateway_url: &str, key_file: &Path, route: Route, model: &str) -> Result<Outcome> {
    let path = path.to_path_buf();
    let provider = json!({
        "npm": "@ai-sdk/openai-compatible",
        "name": "Databricks",
        "options": {
            "baseURL": base_url(gateway_url, route),
            "apiKey": format!("{{file:{}}}", key_file.display()),
            "headers": {CODING_AGENT_HEADER.0: CODING_AGENT_HEADER.1},
        },
        "models": {model: {"name": model}},
    });
    let changed = json::update_object(&path, |obj| {
        let providers = object_at(obj, "provider", &path, "\"provider\"")?;
        let mut changed = json::set(providers, PROVIDER, provider);
        changed |= json::set(obj, "model", Value::String(format!("{PROVIDER}/{model}")));
        Ok(changed)
    })?;
    Ok(Outcome::quiet(path, changed))
}

/// Take our provider (and a `model` pointing at it) out of the config.
pub fn unconfigure(path: &Path) -> Result<Outcome> {
    let path = path.to_path_buf();
    let changed = json::update_existing(&path, |obj| {
        let mut changed = false;
        if obj
            .get("model")
            .and_then(Value::as_str)
            .is_some_and(|m| m.starts_with(&format!("{PROVIDER}/")))
        {
            changed |= json::remove(obj, "model");
        }
        if let Some(p) = obj.get_mut("provider").and_then(Value::as_object_mut) {
            changed |= json::remove(p, PROVIDER);
        }
        if changed {
            json::prune(obj, "provider");
        }
        Ok(changed)
    })?;
    Ok(Outcome::quiet(path, changed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_is_merged_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("opencode").join("opencode.json");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, r#"{"theme": "x", "provider": {"mine": {"npm": "y"}}}"#).unwrap();
        let key = Path::new("/c/devbox-native/gateway.key");
        configure(&path, "http://127.0.0.1:5", key, Route::AiGateway, "m1").unwrap();
        let v: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(v["provider"]["mine"]["npm"], "y");
        let ours = &v["provider"]["databricks"];
        assert_eq!(ours["options"]["baseURL"], "http://127.0.0.1:5/ai-gateway/mlflow/v1");
        assert_eq!(ours["options"]["apiKey"], "{file:/c/devbox-native/gateway.key}");
        assert_eq!(v["model"], "databricks/m1");
        assert!(unconfigure(&path).unwrap().changed);
        let v: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(v, json!({"theme": "x", "provider": {"mine": {"npm": "y"}}}));
    }
}
