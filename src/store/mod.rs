//! The config store: merge-preserving updates of the files that hold a token.
//!
//! * [`update_ccr_token`] replaces only the `api_key` of the `databricks` provider in CCR's `config.json`; every
//!   other key, provider and value stays, in its order (serde_json's `preserve_order`), and the text is written
//!   the way Python's `json.dump(indent=2)` writes it. A missing file gets the full config (as
//!   [`crate::ccr::write_ccr_config`] writes it). A file that is not JSON, or has no `databricks` provider, is an
//!   [`Error::Config`] naming the file, and the file is left untouched: we do not guess where the user's own
//!   config wanted our provider.
//! * [`update_databricks_cfg`] sets keys of one profile of `.databrickscfg` with a line-based edit ([`ini`]), so
//!   other profiles, comments and blank lines survive byte for byte.
//!
//! Both run under the file's cross-process lock ([`crate::fsutil::update_file`]), refuse a file, symlink or
//! folder another user controls ([`crate::fsutil::check_file`]), write through a trusted symlink to the final
//! target, tighten a looser file to 0600 (with a warning) and replace the file atomically.

pub mod ini;

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::ccr::{CcrPaths, Created, check_targets, check_token, render_config, to_python_json};
use crate::config::normalize_host;
use crate::error::{Error, Result};
use crate::fsutil::{Private, ensure_private_dir, read_private, update_file};

/// The CCR provider whose `api_key` we own.
pub const PROVIDER: &str = "databricks";

/// Replace the `api_key` of every provider named `databricks` in a parsed config. Returns how many were set.
pub fn set_provider_key(config: &mut Value, token: &str) -> std::result::Result<usize, String> {
    let obj = config.as_object_mut().ok_or("the top level is not a JSON object")?;
    let providers = obj
        .get_mut("Providers")
        .ok_or("it has no \"Providers\" list")?
        .as_array_mut()
        .ok_or("\"Providers\" is not a list")?;
    let mut n = 0;
    for p in providers.iter_mut().filter_map(Value::as_object_mut) {
        if p.get("name").and_then(Value::as_str) == Some(PROVIDER) {
            // `insert` on an existing key keeps its position (preserve_order's IndexMap).
            p.insert("api_key".into(), Value::String(token.to_string()));
            n += 1;
        }
    }
    if n == 0 {
        return Err(format!("it has no provider named \"{PROVIDER}\""));
    }
    Ok(n)
}

/// `scheme://host[:port]` of a URL, lower-cased, without any `user:password@` (never shown).
fn origin(url: &str) -> Option<String> {
    let (scheme, rest) = url.trim().split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    (!host.is_empty()).then(|| format!("{}://{}", scheme.to_ascii_lowercase(), host.to_ascii_lowercase()))
}

/// The `api_base_url` origins of `databricks` providers that are not on the workspace `host`'s origin: the
/// token would be sent there.
pub fn foreign_endpoints(config: &Value, host: &str) -> Vec<String> {
    let Some(want) = normalize_host(host).ok().as_deref().and_then(origin) else {
        return Vec::new();
    };
    config
        .get("Providers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|p| p.get("name").and_then(Value::as_str) == Some(PROVIDER))
        .map(|p| {
            p.get("api_base_url")
                .and_then(Value::as_str)
                .and_then(origin)
                .unwrap_or_else(|| "no valid api_base_url".to_string())
        })
        .filter(|o| *o != want)
        .collect()
}

/// The new text of an existing `config.json` with `token` as the `databricks` provider's key. Every other
/// value keeps its text (numbers too: serde_json's `arbitrary_precision`). With the workspace `host`, a
/// `databricks` provider whose `api_base_url` is on another origin is logged as a warning.
pub fn merged_ccr_config(path: &Path, current: &[u8], token: &str, host: Option<&str>) -> Result<String> {
    let untouched = |what: String| {
        Error::Config(format!(
            "{}: {what}; the file was left untouched (`devbox-native ccr write` writes a fresh config)",
            path.display()
        ))
    };
    // The parser's message carries a position, never the text around it (which may hold a token).
    let mut value: Value = serde_json::from_slice(current).map_err(|e| untouched(format!("not valid JSON ({e})")))?;
    set_provider_key(&mut value, token).map_err(untouched)?;
    for elsewhere in host.map(|h| foreign_endpoints(&value, h)).unwrap_or_default() {
        log::warn!(
            "{}: the databricks provider sends the token to {elsewhere}, not to the configured workspace {}",
            path.display(),
            normalize_host(host.unwrap_or_default()).unwrap_or_default()
        );
    }
    Ok(to_python_json(&value))
}

/// Put `token` into `<root>/.claude-code-router/config.json`, keeping everything else. When the file does not
/// exist, write the full config and the plugin, with `host()` and `model`; when it exists, `host()` (if it
/// answers) is compared with the provider's URL ([`merged_ccr_config`]). Every target is checked first
/// ([`check_targets`]): a refused or failed call leaves the folder as it found it. Returns the config's path.
pub fn update_ccr_token(
    root: &Path,
    token: &str,
    host: impl FnOnce() -> Result<String>,
    model: &str,
) -> Result<PathBuf> {
    check_token("token", token)?;
    update_ccr(root, token, host, model, None)
}

/// [`update_ccr_token`] in gateway mode: every `databricks` provider gets `gateway_key` as its `api_key` and
/// its `api_base_url` moved onto `gateway_url` (the path from `/serving-endpoints/` on is kept; a URL without
/// one gets `/serving-endpoints/<model>/invocations`). A missing file gets the full gateway-mode config.
pub fn update_ccr_gateway(root: &Path, gateway_key: &str, gateway_url: &str, model: &str) -> Result<PathBuf> {
    check_token("gateway_key", gateway_key)?;
    let base = crate::ccr::gateway_base(gateway_url)?;
    crate::ccr::check_model(model)?;
    update_ccr(root, gateway_key, || Ok(base.clone()), model, Some((&base, model)))
}

/// Move the `databricks` providers' `api_base_url` onto `base`.
fn rebase_providers(config: &mut Value, base: &str, model: &str) {
    let providers = config
        .get_mut("Providers")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object_mut)
        .filter(|p| p.get("name").and_then(Value::as_str) == Some(PROVIDER));
    for p in providers {
        let old = p.get("api_base_url").and_then(Value::as_str).unwrap_or_default();
        let url = match old.find("/serving-endpoints/") {
            Some(i) => format!("{base}{}", &old[i..]),
            None => format!("{base}/serving-endpoints/{model}/invocations"),
        };
        p.insert("api_base_url".into(), Value::String(url));
    }
}

fn update_ccr(
    root: &Path,
    token: &str,
    host: impl FnOnce() -> Result<String>,
    model: &str,
    rebase: Option<(&str, &str)>,
) -> Result<PathBuf> {
    let paths = CcrPaths::new(root)?;
    check_targets(&paths)?;
    let host = host();
    let mut created = Created::default();
    let result = created.dir(&paths.dir).and_then(|()| {
        update_file(&paths.config, |current| match current {
            Some(bytes) => {
                // In gateway mode the provider's URL is moved onto the gateway: nothing to compare.
                let compare = if rebase.is_some() { None } else { host.as_deref().ok() };
                let text = merged_ccr_config(&paths.config, bytes, token, compare)?;
                let Some((base, model)) = rebase else {
                    return Ok(Some(text.into_bytes()));
                };
                let mut value: Value = serde_json::from_str(&text)
                    .map_err(|e| Error::Config(format!("{}: {e}", paths.config.display())))?;
                rebase_providers(&mut value, base, model);
                Ok(Some(to_python_json(&value).into_bytes()))
            }
            None => {
                let config = render_config(token, &paths, host.clone()?.as_str(), model)?;
                created.plugin(&paths)?;
                Ok(Some(to_python_json(&config).into_bytes()))
            }
        })
    });
    if let Err(e) = result {
        created.undo();
        return Err(e);
    }
    Ok(paths.config)
}

/// What rotation needs to know about an existing `config.json`: whether the `databricks` provider holds a
/// token, and where CCR listens (`HOST`/`PORT`, defaults [`DEFAULT_CCR_HOST`]:[`DEFAULT_CCR_PORT`]).
#[derive(Debug, Clone, PartialEq)]
pub struct CcrView {
    /// `HOST`, or the default.
    pub host: String,
    /// `PORT` (a number, or a string of digits), or the default.
    pub port: u16,
    value: Value,
}

/// Where CCR listens unless its config says otherwise.
pub const DEFAULT_CCR_HOST: &str = "127.0.0.1";
/// CCR's default port.
pub const DEFAULT_CCR_PORT: u16 = 3456;

impl CcrView {
    /// Read `config.json`; None when it is missing or not a JSON object (nothing to learn from it).
    /// A file that cannot be trusted ([`crate::fsutil::check_file`]) is an error naming it and why.
    pub fn read(path: &Path) -> Result<Option<CcrView>> {
        Ok(match Self::inspect(path)? {
            CcrFile::View(v) => Some(v),
            CcrFile::Missing | CcrFile::NotAConfig(_) => None,
        })
    }

    /// [`CcrView::read`], saying why there is no view (what `doctor` reports): the same trust-checked read.
    pub fn inspect(path: &Path) -> Result<CcrFile> {
        let bytes = match read_private(path)? {
            Private::Data(b) => b,
            Private::Missing => return Ok(CcrFile::Missing),
            Private::Untrusted(f) => return Err(f.to_error()),
        };
        // The parser's message carries a position, never the text around it (which may hold a token).
        let value = match serde_json::from_slice::<Value>(&bytes) {
            Ok(v) => v,
            Err(e) => return Ok(CcrFile::NotAConfig(format!("not valid JSON ({e})"))),
        };
        let Some(obj) = value.as_object() else {
            return Ok(CcrFile::NotAConfig("the top level is not a JSON object".into()));
        };
        let host = obj
            .get("HOST")
            .and_then(Value::as_str)
            .filter(|h| !h.is_empty())
            .unwrap_or(DEFAULT_CCR_HOST)
            .to_string();
        let port = match obj.get("PORT") {
            Some(Value::Number(n)) => n.as_u64().and_then(|p| u16::try_from(p).ok()),
            Some(Value::String(s)) => s.trim().parse().ok(),
            _ => None,
        }
        .unwrap_or(DEFAULT_CCR_PORT);
        Ok(CcrFile::View(CcrView { host, port, value }))
    }

    /// The `api_key` of each `databricks` provider, in order (None: not a string).
    pub fn provider_keys(&self) -> Vec<Option<&str>> {
        self.value
            .get("Providers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|p| p.get("name").and_then(Value::as_str) == Some(PROVIDER))
            .map(|p| p.get("api_key").and_then(Value::as_str))
            .collect()
    }

    /// Whether every `databricks` provider's `api_key` is `token` (compared here: the value is never returned).
    pub fn holds(&self, token: &str) -> bool {
        let keys = self.provider_keys();
        !keys.is_empty() && keys.iter().all(|k| *k == Some(token))
    }
}

/// What [`CcrView::inspect`] found in `config.json`.
#[derive(Debug, Clone, PartialEq)]
pub enum CcrFile {
    /// No such file.
    Missing,
    /// Not JSON, or not a JSON object: why (a parser position, never the file's text).
    NotAConfig(String),
    /// A JSON object: its view.
    View(CcrView),
}

/// Set `values` in `profile` of the `.databrickscfg` at `path` (created, 0600, when missing), keeping other
/// profiles, keys and comments. Returns `path`.
pub fn update_databricks_cfg(path: &Path, profile: &str, values: &[(String, String)]) -> Result<PathBuf> {
    ini::check_edit(profile, values)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        ensure_private_dir(dir)?;
    }
    update_file(path, |current| {
        let text = match current {
            None => String::new(),
            Some(bytes) => String::from_utf8(bytes.to_vec()).map_err(|_| {
                Error::Config(format!(
                    "{}: not UTF-8 text; the file was left untouched",
                    path.display()
                ))
            })?,
        };
        let new = ini::set_profile_values(&text, profile, values)
            .map_err(|e| Error::Config(format!("{}: {e}; the file was left untouched", path.display())))?;
        Ok((new != text || current.is_none()).then(|| new.into_bytes()))
    })?;
    Ok(path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn merge_keeps_unknown_keys_order_and_other_providers() {
        let text = r#"{"Z": 1, "Providers": [{"name": "other", "api_key": "keep"},
            {"api_key": "old", "name": "databricks", "extra": [1.5, null, "é"]}], "A": {"b": true}}"#;
        let out = merged_ccr_config(Path::new("c.json"), text.as_bytes(), "new-token", None).unwrap();
        let v: Value = serde_json::from_str(&out).unwrap();
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["Z", "Providers", "A"]);
        assert_eq!(v["Providers"][0], json!({"name": "other", "api_key": "keep"}));
        let ours: Vec<&String> = v["Providers"][1].as_object().unwrap().keys().collect();
        assert_eq!(ours, ["api_key", "name", "extra"]);
        assert_eq!(v["Providers"][1]["api_key"], "new-token");
        assert_eq!(v["Providers"][1]["extra"], json!([1.5, null, "é"]));
        assert!(out.contains("\\u00e9"), "non-ASCII is escaped like json.dump: {out}");
    }

    #[test]
    fn gateway_update_moves_our_provider_onto_the_gateway_and_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join(".claude-code-router/config.json");
        std::fs::create_dir_all(cfg.parent().unwrap()).unwrap();
        std::fs::write(
            &cfg,
            r#"{"PORT": 4000, "Providers": [{"name": "other", "api_base_url": "https://o/x", "api_key": "keep"},
            {"name": "databricks", "api_base_url": "https://h/serving-endpoints/m/invocations", "api_key": "dapi-old"},
            {"name": "databricks", "api_key": "dapi-old"}]}"#,
        )
        .unwrap();
        update_ccr_gateway(dir.path(), "gw-key", "http://127.0.0.1:9", "m2").unwrap();
        let v: Value = serde_json::from_slice(&std::fs::read(&cfg).unwrap()).unwrap();
        assert_eq!(v["PORT"], 4000);
        assert_eq!(
            v["Providers"][0],
            json!({"name": "other", "api_base_url": "https://o/x", "api_key": "keep"})
        );
        assert_eq!(
            v["Providers"][1]["api_base_url"],
            "http://127.0.0.1:9/serving-endpoints/m/invocations"
        );
        assert_eq!(
            v["Providers"][2]["api_base_url"],
            "http://127.0.0.1:9/serving-endpoints/m2/invocations"
        );
        assert!(!std::fs::read_to_string(&cfg).unwrap().contains("dapi-old"));
        let err = update_ccr_gateway(dir.path(), "k", "nope://x", "m")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("gateway_url: "), "{err}");
    }

    #[test]
    fn a_view_reads_the_listen_address_and_compares_the_token() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.json");
        assert_eq!(CcrView::read(&p).unwrap(), None);
        std::fs::write(&p, "{not json").unwrap();
        assert_eq!(CcrView::read(&p).unwrap(), None);
        std::fs::write(&p, r#"{"Providers": [{"name": "databricks", "api_key": "tok-1"}]}"#).unwrap();
        let v = CcrView::read(&p).unwrap().unwrap();
        assert_eq!((v.host.as_str(), v.port), ("127.0.0.1", 3456));
        assert!(v.holds("tok-1") && !v.holds("tok-2"));
        std::fs::write(&p, r#"{"HOST": "0.0.0.0", "PORT": "4000", "Providers": []}"#).unwrap();
        let v = CcrView::read(&p).unwrap().unwrap();
        assert_eq!((v.host.as_str(), v.port), ("0.0.0.0", 4000));
        assert!(!v.holds("tok-1"));
        std::fs::write(&p, r#"{"PORT": 70000}"#).unwrap();
        assert_eq!(CcrView::read(&p).unwrap().unwrap().port, 3456);
    }

    #[test]
    fn inspect_says_why_there_is_no_view_and_lists_the_keys() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.json");
        assert_eq!(CcrView::inspect(&p).unwrap(), CcrFile::Missing);
        std::fs::write(&p, "{\"api_key\": \"s3cret\", ").unwrap();
        let CcrFile::NotAConfig(why) = CcrView::inspect(&p).unwrap() else {
            panic!()
        };
        assert!(why.starts_with("not valid JSON (") && !why.contains("s3cret"), "{why}");
        std::fs::write(&p, "[1]").unwrap();
        assert_eq!(
            CcrView::inspect(&p).unwrap(),
            CcrFile::NotAConfig("the top level is not a JSON object".into())
        );
        let text = r#"{"PORT": true, "Providers": [{"name": "databricks", "api_key": "a"}, {"name": "x", "api_key": "b"},
            {"name": "databricks", "api_key": 5}]}"#;
        std::fs::write(&p, text).unwrap();
        let CcrFile::View(v) = CcrView::inspect(&p).unwrap() else {
            panic!()
        };
        assert_eq!((v.port, v.provider_keys()), (3456, vec![Some("a"), None]));
        assert!(!v.holds("a"));
    }

    #[test]
    fn bad_configs_name_the_file_and_never_show_its_text() {
        let cases = [
            ("{\"api_key\": \"s3cret-tok\", ", "not valid JSON"),
            ("[1]", "the top level is not a JSON object"),
            ("{\"Providers\": {}}", "\"Providers\" is not a list"),
            ("{\"x\": \"s3cret-tok\"}", "no \"Providers\" list"),
            (
                "{\"Providers\": [{\"name\": \"openrouter\"}]}",
                "no provider named \"databricks\"",
            ),
        ];
        for (text, want) in cases {
            let err = merged_ccr_config(Path::new("/h/config.json"), text.as_bytes(), "t", None)
                .unwrap_err()
                .to_string();
            assert!(err.starts_with("/h/config.json: ") && err.contains(want), "{err}");
            assert!(!err.contains("s3cret"), "{err}");
        }
    }
}
