//! Claude Code Router (CCR) files: `<root>/.claude-code-router/config.json` and the transformer plugin.
//! The structure is exactly the one in CCR-CONFIG.md; the JSON text is byte-identical to what the DevBox
//! app's `json.dump(config, f, indent=2)` writes (2-space indent, ASCII escapes, no trailing newline).

mod merge;
pub mod v3;
mod view;

pub use merge::{
    PROVIDER, foreign_endpoints, merged_ccr_config, set_provider_key, update_ccr_gateway, update_ccr_token,
};
pub use view::{CcrFile, CcrView, DEFAULT_CCR_HOST, DEFAULT_CCR_PORT};

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::{Value, json};

use crate::config::normalize_host;
use crate::error::{Error, Result};
use crate::fsutil::{check_file, refusal, secure_dir, write_locked, write_private};

/// Our transformer plugin (see CCR-CONFIG.md for what it must do).
pub const PLUGIN_JS: &str = include_str!("databricks-claude-transformers.js");
/// CCR's folder under the root.
pub const CCR_DIR: &str = ".claude-code-router";
/// The plugin's file name under `<root>/.claude-code-router/plugins/`.
pub const PLUGIN_FILE: &str = "databricks-claude-transformers.js";
/// The serving endpoint used when none is given.
pub const DEFAULT_MODEL: &str = "databricks-claude-sonnet-4";

/// Paths of the CCR files under a root folder.
#[derive(Debug, Clone, PartialEq)]
pub struct CcrPaths {
    /// `<root>/.claude-code-router`
    pub dir: PathBuf,
    /// `<root>/.claude-code-router/config.json`
    pub config: PathBuf,
    /// `<root>/.claude-code-router/plugins`
    pub plugins: PathBuf,
    /// `<root>/.claude-code-router/plugins/databricks-claude-transformers.js`
    pub plugin: PathBuf,
}

impl CcrPaths {
    /// The paths under `root` (made absolute against the current folder, since CCR `require()`s the plugin
    /// by the path written in the config).
    pub fn new(root: &Path) -> Result<CcrPaths> {
        let root = std::path::absolute(root).map_err(|e| Error::io("resolve", root, e))?;
        let dir = root.join(CCR_DIR);
        let plugins = dir.join("plugins");
        Ok(CcrPaths {
            config: dir.join("config.json"),
            plugin: plugins.join(PLUGIN_FILE),
            dir,
            plugins,
        })
    }
}

/// Check a token before it is written anywhere: non-empty, no whitespace or control characters.
pub fn check_token(param: &str, token: &str) -> Result<()> {
    if token.is_empty() {
        return Err(Error::invalid(param, "must not be empty"));
    }
    if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Error::invalid(
            param,
            "must not contain whitespace or control characters",
        ));
    }
    Ok(())
}

/// Check a serving endpoint name (it goes into a URL path).
pub fn check_model(model: &str) -> Result<()> {
    let ok = !model.is_empty()
        && model.len() <= 256
        && model
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !model.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            "model",
            format!("{model:?} is not a serving endpoint name"),
        ))
    }
}

/// The config as a JSON value, keys in CCR-CONFIG.md's order. `host` may carry a scheme or not; the URL has
/// exactly one (https unless `http://` was given explicitly, as for a local emulator).
pub fn render_config(token: &str, paths: &CcrPaths, host: &str, model: &str) -> Result<Value> {
    check_token("databricks_token", token)?;
    check_model(model)?;
    let host = normalize_host(host).map_err(|r| Error::invalid("host", r))?;
    let use_ = json!(["OpenAI", "databricks-custom"]);
    let mut transformer = serde_json::Map::new();
    transformer.insert("use".into(), use_.clone());
    transformer.insert(model.into(), json!({ "use": use_ }));
    Ok(json!({
        "LOG": false,
        "LOG_LEVEL": "debug",
        "CLAUDE_PATH": "",
        "HOST": "127.0.0.1",
        "PORT": 3456,
        "APIKEY": "",
        "API_TIMEOUT_MS": "600000",
        "PROXY_URL": "",
        "transformers": [
            { "path": paths.plugin.to_string_lossy(), "options": { "debug": false } }
        ],
        "Providers": [
            {
                "name": "databricks",
                "api_base_url": format!("{host}/serving-endpoints/{model}/invocations"),
                "api_key": token,
                "models": [model],
                "transformer": transformer,
            }
        ],
        "StatusLine": {
            "enabled": false,
            "currentStyle": "default",
            "default": { "modules": [] },
            "powerline": { "modules": [] }
        },
        "Router": { "default": format!("databricks,{model}") }
    }))
}

/// Formats like Python's `json.dumps(obj, indent=2)`: pretty with two spaces, non-ASCII escaped as `\uXXXX`.
struct PythonJson<'a>(serde_json::ser::PrettyFormatter<'a>);

impl serde_json::ser::Formatter for PythonJson<'_> {
    fn write_string_fragment<W: ?Sized + std::io::Write>(&mut self, w: &mut W, fragment: &str) -> std::io::Result<()> {
        for c in fragment.chars() {
            if c.is_ascii() {
                w.write_all(&[c as u8])?;
            } else {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    write!(w, "\\u{unit:04x}")?;
                }
            }
        }
        Ok(())
    }
    fn begin_array<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.begin_array(w)
    }
    fn end_array<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.end_array(w)
    }
    fn begin_array_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W, first: bool) -> std::io::Result<()> {
        self.0.begin_array_value(w, first)
    }
    fn end_array_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.end_array_value(w)
    }
    fn begin_object<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.begin_object(w)
    }
    fn end_object<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.end_object(w)
    }
    fn begin_object_key<W: ?Sized + std::io::Write>(&mut self, w: &mut W, first: bool) -> std::io::Result<()> {
        self.0.begin_object_key(w, first)
    }
    fn begin_object_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.begin_object_value(w)
    }
    fn end_object_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.end_object_value(w)
    }
}

/// Serialise like Python's `json.dump(value, f, indent=2)`.
pub fn to_python_json(value: &Value) -> String {
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(
        &mut out,
        PythonJson(serde_json::ser::PrettyFormatter::with_indent(b"  ")),
    );
    // Serialising a Value into a Vec cannot fail.
    value.serialize(&mut ser).unwrap_or_default();
    String::from_utf8(out).unwrap_or_default()
}

/// Check every CCR target before anything is written (see [`crate::fsutil::check_file`]), so a refused call
/// changes nothing: `config.json` must be a trusted regular file or absent, the plugin's folders trusted.
pub fn check_targets(paths: &CcrPaths) -> Result<()> {
    for (path, replacing) in [(&paths.config, false), (&paths.plugin, true)] {
        if let Some(f) = refusal(&check_file(path).1, replacing) {
            return Err(f.to_error());
        }
    }
    Ok(())
}

/// What a CCR write created (folders, the plugin), so that a write failing midway can remove it again and
/// leave the folder as it found it.
#[derive(Debug, Default)]
pub struct Created {
    dirs: Vec<PathBuf>,
    plugin: Option<PathBuf>,
}

impl Created {
    /// Make `dir` a trusted folder (0700 when created), remembering whether it is new.
    pub fn dir(&mut self, dir: &Path) -> Result<()> {
        let existed = std::fs::symlink_metadata(dir).is_ok();
        secure_dir(dir)?;
        if !existed {
            self.dirs.push(dir.to_path_buf());
        }
        Ok(())
    }

    /// Write the plugin (its folders first), remembering whether it is new.
    pub fn plugin(&mut self, paths: &CcrPaths) -> Result<()> {
        self.dir(&paths.dir)?;
        self.dir(&paths.plugins)?;
        let existed = std::fs::symlink_metadata(&paths.plugin).is_ok();
        write_private(&paths.plugin, PLUGIN_JS.as_bytes())?;
        if !existed {
            self.plugin = Some(paths.plugin.clone());
        }
        Ok(())
    }

    /// Remove what was created, newest first (a folder only while it is empty).
    pub fn undo(self) {
        if let Some(p) = self.plugin {
            let _ = std::fs::remove_file(p);
        }
        for d in self.dirs.iter().rev() {
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// Write the plugin and then the config (the config names the plugin), both atomically and 0600, in 0700
/// folders; the config under its lock (`config.json.lock`), like every other writer. Every target is checked
/// first ([`check_targets`]); when a write fails, the plugin and folders this call created are removed again.
/// Returns the config path.
pub fn write_ccr_config(root: &Path, token: &str, host: &str, model: &str) -> Result<PathBuf> {
    let paths = CcrPaths::new(root)?;
    let config = render_config(token, &paths, host, model)?;
    check_targets(&paths)?;
    let mut created = Created::default();
    let written = created
        .plugin(&paths)
        .and_then(|()| write_locked(&paths.config, to_python_json(&config).as_bytes()));
    if let Err(e) = written {
        created.undo();
        return Err(e);
    }
    Ok(paths.config)
}

/// Gateway mode: check a gateway URL (`param` names it) and give it in the form `render_config` takes as a host.
pub fn gateway_base(gateway_url: &str) -> Result<String> {
    normalize_host(gateway_url).map_err(|r| Error::invalid("gateway_url", r))
}

/// Gateway mode for CCR 1.x: the config of [`render_config`] with the `databricks` provider pointing at the
/// loopback credential gateway (`<gateway_url>/serving-endpoints/<model>/invocations`) and holding the gateway
/// key, so the file never holds a Databricks token and a new token never needs a CCR restart.
pub fn render_gateway_config(gateway_key: &str, paths: &CcrPaths, gateway_url: &str, model: &str) -> Result<Value> {
    check_token("gateway_key", gateway_key)?;
    render_config(gateway_key, paths, &gateway_base(gateway_url)?, model)
}

/// [`write_ccr_config`] in gateway mode (see [`render_gateway_config`]).
pub fn write_ccr_gateway_config(root: &Path, gateway_key: &str, gateway_url: &str, model: &str) -> Result<PathBuf> {
    check_token("gateway_key", gateway_key)?;
    write_ccr_config(root, gateway_key, &gateway_base(gateway_url)?, model)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_has_one_scheme_and_the_exact_shape() {
        let paths = CcrPaths::new(Path::new("/home/app")).unwrap();
        for host in [
            "x.cloud.databricks.com",
            "https://x.cloud.databricks.com/",
            "https://x.cloud.databricks.com",
        ] {
            let v = render_config("tok", &paths, host, DEFAULT_MODEL).unwrap();
            assert_eq!(
                v["Providers"][0]["api_base_url"],
                "https://x.cloud.databricks.com/serving-endpoints/databricks-claude-sonnet-4/invocations"
            );
        }
        let v = render_config("tok", &paths, "h", DEFAULT_MODEL).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "LOG",
                "LOG_LEVEL",
                "CLAUDE_PATH",
                "HOST",
                "PORT",
                "APIKEY",
                "API_TIMEOUT_MS",
                "PROXY_URL",
                "transformers",
                "Providers",
                "StatusLine",
                "Router"
            ]
        );
        assert_eq!(
            v["transformers"][0]["path"],
            "/home/app/.claude-code-router/plugins/databricks-claude-transformers.js"
        );
    }

    #[test]
    fn gateway_mode_points_at_the_gateway_and_keeps_the_structure() {
        let paths = CcrPaths::new(Path::new("/home/app")).unwrap();
        let plain = render_config("tok", &paths, "h", DEFAULT_MODEL).unwrap();
        let gw = render_gateway_config("gw-key", &paths, "http://127.0.0.1:8080/", DEFAULT_MODEL).unwrap();
        assert_eq!(
            gw["Providers"][0]["api_base_url"],
            "http://127.0.0.1:8080/serving-endpoints/databricks-claude-sonnet-4/invocations"
        );
        assert_eq!(gw["Providers"][0]["api_key"], "gw-key");
        let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        assert_eq!(keys(&gw), keys(&plain));
        assert_eq!(keys(&gw["Providers"][0]), keys(&plain["Providers"][0]));
        let err = render_gateway_config("k", &paths, "ftp://x", DEFAULT_MODEL)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("gateway_url: "), "{err}");
        let err = render_gateway_config("", &paths, "http://127.0.0.1:1", DEFAULT_MODEL)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("gateway_key: "), "{err}");
    }

    #[test]
    fn python_json_escapes_non_ascii_like_json_dump() {
        let v = json!({"a": "é😀", "b": [], "c": {}, "d": [1, {"e": null}]});
        assert_eq!(
            to_python_json(&v),
            "{\n  \"a\": \"\\u00e9\\ud83d\\ude00\",\n  \"b\": [],\n  \"c\": {},\n  \"d\": [\n    1,\n    {\n      \"e\": null\n    }\n  ]\n}"
        );
    }

    #[test]
    fn bad_inputs_name_their_parameter() {
        let paths = CcrPaths::new(Path::new("/r")).unwrap();
        let cases = [
            ("", "h", "m", "databricks_token"),
            ("a b", "h", "m", "databricks_token"),
            ("t", "h", "a/b", "model"),
            ("t", "ftp://h", "m", "host"),
        ];
        for (tok, host, model, param) in cases {
            let err = render_config(tok, &paths, host, model).unwrap_err().to_string();
            assert!(err.starts_with(&format!("{param}: ")), "{err}");
        }
    }
}
