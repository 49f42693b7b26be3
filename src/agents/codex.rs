//! Codex: `~/.codex/config.toml` or `$CODEX_HOME/config.toml` (which file: [`super::main_file`]), edited with
//! `toml_edit` so the user's comments, order and formatting survive.
//!
//! We set `model_provider = "databricks"` and `model`, and `[model_providers.databricks]` with `base_url`,
//! `wire_api = "responses"` (the only one Codex accepts), our header in `http_headers`, and
//! `[model_providers.databricks.auth]`: `command` (our program, by absolute path), `args` (`token get`),
//! `timeout_ms` and `refresh_interval_ms`. Keys that Codex refuses next to `auth` (`env_key`,
//! `experimental_bearer_token`, `requires_openai_auth`) are removed from our provider, with a warning.
//!
//! We also set `[features] shell_snapshot = false` (marked by a comment, so `remove` takes out only ours):
//! with it on, Codex writes its shell's whole environment into `~/.codex/shell_snapshots/`, and in a
//! Databricks App that environment holds `DATABRICKS_CLIENT_SECRET`. A user's own `true` is kept, with a
//! warning.

use std::path::Path;

use toml_edit::{Array, DocumentMut, InlineTable, Item, Table, value};

use super::{Agent, CODING_AGENT_HEADER, Outcome, REFRESH_MS, Route, Settings};
use crate::error::{Error, Result};
use crate::fsutil::{ensure_private_dir, update_file};

/// Our provider's id.
pub const PROVIDER: &str = "databricks";
/// How long Codex waits for `token get` (ms): a cold start mints a token, which may take a few seconds.
pub const TIMEOUT_MS: i64 = 30_000;
/// Provider keys Codex refuses in combination with `auth`.
const CONFLICTING: [&str; 3] = ["env_key", "experimental_bearer_token", "requires_openai_auth"];

/// The OpenAI Responses base URL of a route (Codex appends `/responses` and `/models`).
pub fn base_url(host: &str, route: Route) -> String {
    match route {
        Route::ServingEndpoints => format!("{host}/serving-endpoints"),
        Route::AiGateway => format!("{host}/ai-gateway/codex/v1"),
    }
}

/// The table under `key`, created (as an implicit parent when `implicit`) when absent.
fn table_at<'a>(parent: &'a mut Table, key: &str, implicit: bool, path: &Path) -> Result<&'a mut Table> {
    let item = parent.entry(key).or_insert_with(|| {
        let mut t = Table::new();
        t.set_implicit(implicit);
        Item::Table(t)
    });
    item.as_table_mut()
        .ok_or_else(|| untouched(path, format!("`{key}` is not a table")))
}

fn untouched(path: &Path, what: String) -> Error {
    Error::Config(format!("{}: {what}; the file was left untouched", path.display()))
}

/// Our keys merged into the parsed document; returns the warnings.
pub fn apply(doc: &mut DocumentMut, path: &Path, settings: &Settings) -> Result<Vec<String>> {
    let mut warnings = Vec::new();
    let root = doc.as_table_mut();
    let providers = table_at(root, "model_providers", true, path)?;
    let ours = table_at(providers, PROVIDER, false, path)?;
    for key in CONFLICTING {
        if ours.remove(key).is_some() {
            warnings.push(format!(
                "{}: removed {key} from [model_providers.{PROVIDER}]: Codex refuses it next to auth",
                path.display()
            ));
        }
    }
    if ours.get("name").is_none() {
        ours.insert("name", value("Databricks"));
    }
    ours.insert("base_url", value(base_url(&settings.host, settings.route)));
    ours.insert("wire_api", value("responses"));
    let mut headers = match ours.get("http_headers").and_then(Item::as_inline_table) {
        Some(t) => t.clone(),
        None => InlineTable::new(),
    };
    headers.insert(CODING_AGENT_HEADER.0, CODING_AGENT_HEADER.1.into());
    ours.insert("http_headers", value(headers));
    let auth = table_at(ours, "auth", false, path)?;
    let (program, leading) = settings
        .helper
        .split_first()
        .map_or(("", &[][..]), |(p, r)| (p.as_str(), r));
    let mut args: Array = leading.iter().map(String::as_str).collect();
    args.push("token");
    args.push("get");
    auth.insert("command", value(program));
    auth.insert("args", value(args));
    auth.insert("timeout_ms", value(TIMEOUT_MS));
    auth.insert(
        "refresh_interval_ms",
        value(i64::try_from(REFRESH_MS).unwrap_or(i64::MAX)),
    );
    let features = table_at(root, "features", true, path)?;
    match features.get(SNAPSHOT_FEATURE).and_then(Item::as_bool) {
        None => {
            features.insert(SNAPSHOT_FEATURE, value(false));
            if let Some(mut key) = features.key_mut(SNAPSHOT_FEATURE) {
                key.leaf_decor_mut().set_prefix(SNAPSHOT_MARK);
            }
        }
        Some(true) => warnings.push(format!(
            "{}: [features] {SNAPSHOT_FEATURE} = true makes Codex copy its environment, Databricks secrets \
             included, into ~/.codex/shell_snapshots/; set it to false",
            path.display()
        )),
        Some(false) => {}
    }
    // Root keys print before every table, whatever the insertion order.
    root.insert("model_provider", value(PROVIDER));
    root.insert("model", value(settings.model_for(Agent::Codex)));
    Ok(warnings)
}

/// Our keys taken out of the parsed document; returns whether anything changed.
pub fn remove(doc: &mut DocumentMut) -> bool {
    let root = doc.as_table_mut();
    let mut changed = false;
    if root.get("model_provider").and_then(Item::as_str) == Some(PROVIDER) {
        root.remove("model_provider");
        root.remove("model");
        changed = true;
    }
    if let Some(providers) = root.get_mut("model_providers").and_then(Item::as_table_like_mut) {
        changed |= providers.remove(PROVIDER).is_some();
        if providers.is_empty() {
            root.remove("model_providers");
        }
    }
    if let Some(features) = root.get_mut("features").and_then(Item::as_table_mut) {
        let ours = features
            .key(SNAPSHOT_FEATURE)
            .and_then(|k| k.leaf_decor().prefix())
            .and_then(|p| p.as_str())
            .is_some_and(|p| p.contains(SNAPSHOT_MARK.trim()));
        if ours {
            features.remove(SNAPSHOT_FEATURE);
            changed = true;
            if features.is_empty() {
                root.remove("features");
            }
        }
    }
    changed
}

/// The Codex feature that snapshots the shell's environment into a file under `~/.codex`.
const SNAPSHOT_FEATURE: &str = "shell_snapshot";
/// The comment that marks our `shell_snapshot = false` (so that `remove` takes out only what we added).
const SNAPSHOT_MARK: &str =
    "# set by devbox-native: a shell snapshot would copy Databricks secrets from the environment\n";

fn parse(path: &Path, bytes: &[u8]) -> Result<DocumentMut> {
    let text = std::str::from_utf8(bytes).map_err(|_| untouched(path, "not UTF-8".into()))?;
    // toml_edit's message quotes the offending line, which may hold a secret: keep only the position.
    text.parse::<DocumentMut>().map_err(|e| {
        let at = e.span().map_or(String::new(), |s| {
            let line = text[..s.start].matches('\n').count() + 1;
            format!(" at line {line}")
        });
        untouched(path, format!("not valid TOML{at}"))
    })
}

/// Write our provider into the config file `path`.
pub fn configure(path: &Path, settings: &Settings) -> Result<Outcome> {
    let path = path.to_path_buf();
    if let Some(dir) = path.parent() {
        ensure_private_dir(dir)?;
    }
    let mut warnings = Vec::new();
    let changed = update_file(&path, |current| {
        let mut doc = match current {
            Some(b) => parse(&path, b)?,
            None => DocumentMut::new(),
        };
        warnings = apply(&mut doc, &path, settings)?;
        Ok(Some(doc.to_string().into_bytes()))
    })?;
    Ok(Outcome {
        path,
        changed,
        warnings,
    })
}

/// Take our provider out of the config file `path`.
pub fn unconfigure(path: &Path) -> Result<Outcome> {
    let path = path.to_path_buf();
    let changed = path.exists()
        && update_file(&path, |current| {
            let Some(b) = current else { return Ok(None) };
            let mut doc = parse(&path, b)?;
            Ok(remove(&mut doc).then(|| doc.to_string().into_bytes()))
        })?;
    Ok(Outcome::quiet(path, changed))
}

#[cfg(test)]
mod tests {
    use super::*;

    const USER: &str = r#"# my Codex settings
model_reasoning_effort = "high" # keep this

[profiles.fast]
model = "o4-mini"

[model_providers.other]
# a provider of mine
name = "Other"
base_url = "http://localhost:1234/v1"
"#;

    fn settings() -> Settings {
        let helper = vec!["/venv/bin/devbox-native".to_string()];
        Settings::new(
            "https://ws.example.com",
            Route::ServingEndpoints,
            None,
            helper,
            None,
            None,
        )
        .unwrap()
    }

    #[test]
    fn shell_snapshots_are_turned_off_unless_the_user_chose_them() {
        let mut doc: DocumentMut = USER.parse().unwrap();
        apply(&mut doc, Path::new("/x"), &settings()).unwrap();
        let reparsed: DocumentMut = doc.to_string().parse().unwrap();
        assert_eq!(reparsed["features"]["shell_snapshot"].as_bool(), Some(false));
        assert!(remove(&mut doc));
        assert_eq!(doc.to_string(), USER);

        let mine = format!("{USER}\n[features]\nshell_snapshot = true\n");
        let mut doc: DocumentMut = mine.parse().unwrap();
        let warnings = apply(&mut doc, Path::new("/x"), &settings()).unwrap();
        assert!(
            warnings.iter().any(|w| w.contains("shell_snapshot = true")),
            "{warnings:?}"
        );
        assert_eq!(doc["features"]["shell_snapshot"].as_bool(), Some(true));
        assert!(remove(&mut doc));
        assert_eq!(
            doc["features"]["shell_snapshot"].as_bool(),
            Some(true),
            "the user's own value stays"
        );
    }

    #[test]
    fn merges_our_provider_and_keeps_comments() {
        let mut doc: DocumentMut = USER.parse().unwrap();
        assert!(apply(&mut doc, Path::new("/x"), &settings()).unwrap().is_empty());
        let text = doc.to_string();
        assert!(
            text.starts_with("# my Codex settings\nmodel_reasoning_effort = \"high\" # keep this\n"),
            "{text}"
        );
        let reparsed: DocumentMut = text.parse().unwrap();
        assert_eq!(reparsed["model_provider"].as_str(), Some("databricks"));
        assert_eq!(reparsed["model"].as_str(), Some("databricks-gpt-5"));
        let p = &reparsed["model_providers"]["databricks"];
        assert_eq!(p["base_url"].as_str(), Some("https://ws.example.com/serving-endpoints"));
        assert_eq!(p["wire_api"].as_str(), Some("responses"));
        assert_eq!(
            p["http_headers"]["x-databricks-use-coding-agent-mode"].as_str(),
            Some("true")
        );
        assert_eq!(p["auth"]["command"].as_str(), Some("/venv/bin/devbox-native"));
        assert_eq!(
            p["auth"]["args"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|v| v.as_str())
                .collect::<Vec<_>>(),
            ["token", "get"]
        );
        assert_eq!(p["auth"]["refresh_interval_ms"].as_integer(), Some(300_000));
        assert!(text.contains("# a provider of mine\nname = \"Other\""), "{text}");
        // The model line sits above the first table, so it is not read as a profile's key.
        assert!(text.find("model = \"databricks-gpt-5\"").unwrap() < text.find("[profiles.fast]").unwrap());
        // Remove restores the user's file exactly.
        let mut doc = reparsed;
        assert!(remove(&mut doc));
        assert_eq!(doc.to_string(), USER);
        assert!(!remove(&mut doc));
    }

    #[test]
    fn conflicting_keys_are_removed_with_a_warning_and_ai_gateway_route() {
        let mut doc: DocumentMut = "[model_providers.databricks]\nenv_key = \"DATABRICKS_TOKEN\"\n"
            .parse()
            .unwrap();
        let mut s = settings();
        s.route = Route::AiGateway;
        s.helper = vec!["/usr/bin/python3".into(), "-m".into(), "devbox_native".into()];
        let w = apply(&mut doc, Path::new("/x"), &s).unwrap();
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("removed env_key"));
        let p = &doc["model_providers"]["databricks"];
        assert!(p.get("env_key").is_none());
        assert_eq!(
            p["base_url"].as_str(),
            Some("https://ws.example.com/ai-gateway/codex/v1")
        );
        assert_eq!(p["auth"]["command"].as_str(), Some("/usr/bin/python3"));
        assert_eq!(p["auth"]["args"].as_array().unwrap().len(), 4);
    }

    #[test]
    fn bad_toml_is_left_alone_without_quoting_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "a = 1\nsecret = \"dapi-leak\n").unwrap();
        let e = configure(&path, &settings()).unwrap_err().to_string();
        assert!(
            e.contains("not valid TOML at line 2") && !e.contains("dapi-leak"),
            "{e}"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a = 1\nsecret = \"dapi-leak\n");
        let e = unconfigure(&path).unwrap_err().to_string();
        assert!(e.contains("left untouched"));
    }
}
