//! Claude Code Router 3.x: our provider in the form 3.x reads (CCR-CONFIG.md, section "CCR 3.x").
//!
//! * Before CCR 3.x's first start (no `config.sqlite` yet) we write `config.json`, which 3.x imports once into
//!   its SQLite store: a `databricks` provider on the Anthropic-messages protocol at
//!   `<base>/serving-endpoints/anthropic` (3.x appends `/v1/messages`), the model, and the Claude Code
//!   profile's model `databricks/<model>` (3.x drops the legacy `Router.default`; a request whose model no
//!   provider serves is routed by that profile's model).
//! * Once `config.sqlite` exists we never touch the file: the running CCR's management RPC (`getConfig`,
//!   then `saveConfig`, applied live) gets our provider installed or updated, and the profile's model only
//!   when it is unset. The RPC URL and its token come from `service.json`'s `url` (query `ccr_web_token`), or
//!   the token from the caller (`CCR_WEB_AUTH_TOKEN`). Nothing is changed when that fails.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use crate::ccr::{CcrPaths, check_model, check_token, to_python_json};
use crate::config::normalize_host;
use crate::error::{Error, Result};
use crate::fsutil::{ensure_private_dir, update_file};
use crate::runtime;

/// The provider we own.
pub const PROVIDER: &str = "databricks";
/// The protocol our provider speaks (Databricks' Anthropic-compatible endpoint).
pub const PROTOCOL: &str = "anthropic_messages";
/// 3.x's store; when it exists, `config.json` is no longer read.
pub const SQLITE_FILE: &str = "config.sqlite";
/// Where a running 3.x service records its management URL.
pub const SERVICE_FILE: &str = "service.json";
/// The header that carries the management token.
const AUTH_HEADER: &str = "x-ccr-web-auth";
/// The query parameter of `service.json`'s `url` that carries it.
const TOKEN_QUERY: &str = "ccr_web_token";

/// Where our provider sends requests: `<base>/serving-endpoints/anthropic` (the base is a gateway URL or a
/// workspace host; `param` names it in errors).
pub fn provider_base(param: &str, base: &str) -> Result<String> {
    let base = normalize_host(base).map_err(|r| Error::invalid(param, r))?;
    Ok(format!("{base}/serving-endpoints/anthropic"))
}

/// The model selector 3.x routes by: `databricks/<model>`.
pub fn selector(model: &str) -> String {
    format!("{PROVIDER}/{model}")
}

fn check(api_key: &str, model: &str) -> Result<()> {
    check_token("api_key", api_key)?;
    check_model(model)
}

/// The legacy `config.json` that 3.x imports on its first start.
pub fn render_legacy(url: &str, api_key: &str, model: &str) -> Result<Value> {
    check(api_key, model)?;
    Ok(json!({
        "HOST": "127.0.0.1",
        "PORT": crate::ccr::DEFAULT_CCR_PORT,
        "APIKEY": "",
        "Providers": [
            {
                "name": PROVIDER,
                "api_base_url": url,
                "api_key": api_key,
                "protocol": PROTOCOL,
                "models": [model]
            }
        ],
        "profile": { "claudeCode": { "model": selector(model) } }
    }))
}

/// Put the provider of `fresh` (a [`render_legacy`] config) into a legacy config in place of every provider
/// named `databricks` (or after the others), and its Claude Code model when the config has none.
fn merge_legacy(config: &mut Value, fresh: &Value) -> std::result::Result<(), String> {
    let ours = fresh["Providers"][0].clone();
    let obj = config.as_object_mut().ok_or("the top level is not a JSON object")?;
    let providers = obj
        .entry("Providers")
        .or_insert_with(|| Value::Array(Vec::new()))
        .as_array_mut()
        .ok_or("\"Providers\" is not a list")?;
    providers.retain(|p| p.get("name").and_then(Value::as_str) != Some(PROVIDER));
    providers.push(ours);
    let claude = obj
        .entry("profile")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .ok_or("\"profile\" is not an object")?
        .entry("claudeCode")
        .or_insert_with(|| json!({}));
    if let Some(claude) = claude.as_object_mut()
        && claude.get("model").and_then(Value::as_str).is_none_or(str::is_empty)
    {
        claude.insert("model".into(), fresh["profile"]["claudeCode"]["model"].clone());
    }
    Ok(())
}

/// What [`merge_provider`] changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merged {
    /// Our provider was added (else updated).
    pub added: bool,
    /// The Claude Code profile's model was unset and is now ours.
    pub set_default: bool,
}

/// Install or update our provider in a config as 3.x's `getConfig` returns it, changing nothing else: the
/// provider's URL, key, protocol and model; the Claude Code profile's model only when it is empty.
pub fn merge_provider(
    config: &mut Value,
    url: &str,
    api_key: &str,
    model: &str,
) -> std::result::Result<Merged, String> {
    let obj = config.as_object_mut().ok_or("the config is not a JSON object")?;
    let providers = obj
        .entry("Providers")
        .or_insert_with(|| Value::Array(Vec::new()))
        .as_array_mut()
        .ok_or("\"Providers\" is not a list")?;
    let capabilities = json!([{ "baseUrl": url, "type": PROTOCOL }]);
    let mut added = true;
    for p in providers.iter_mut().filter_map(Value::as_object_mut) {
        if p.get("name").and_then(Value::as_str) != Some(PROVIDER) {
            continue;
        }
        added = false;
        p.insert("api_base_url".into(), json!(url));
        p.insert("api_key".into(), json!(api_key));
        p.insert("capabilities".into(), capabilities.clone());
        let models = p.entry("models").or_insert_with(|| json!([]));
        match models.as_array_mut() {
            Some(list) if list.iter().any(|m| m.as_str() == Some(model)) => {}
            Some(list) => list.push(json!(model)),
            None => *models = json!([model]),
        }
    }
    if added {
        providers.push(json!({
            "name": PROVIDER,
            "api_base_url": url,
            "api_key": api_key,
            "capabilities": capabilities,
            "models": [model]
        }));
    }
    let mut set_default = false;
    let chosen = selector(model);
    let profile = obj.entry("profile").or_insert_with(|| json!({}));
    if let Some(profile) = profile.as_object_mut() {
        let unset = |v: Option<&Value>| v.and_then(Value::as_str).is_none_or(str::is_empty);
        let claude = profile.entry("claudeCode").or_insert_with(|| json!({}));
        if let Some(claude) = claude.as_object_mut()
            && unset(claude.get("model"))
        {
            claude.insert("model".into(), json!(chosen));
            set_default = true;
        }
        for p in profile
            .get_mut("profiles")
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
            .filter_map(Value::as_object_mut)
        {
            if p.get("agent").and_then(Value::as_str) == Some("claude-code") && unset(p.get("model")) {
                p.insert("model".into(), json!(chosen));
                set_default = true;
            }
        }
    }
    Ok(Merged { added, set_default })
}

/// Our provider as a 3.x config holds it: `(url, key)` of the first provider named `databricks`.
pub fn our_provider(config: &Value) -> Option<(String, String)> {
    let p = config
        .get("Providers")?
        .as_array()?
        .iter()
        .find(|p| p.get("name").and_then(Value::as_str) == Some(PROVIDER))?;
    let url = p
        .get("capabilities")
        .and_then(Value::as_array)
        .and_then(|c| c.first())
        .and_then(|c| c.get("baseUrl"))
        .or_else(|| p.get("api_base_url"))
        .and_then(Value::as_str)?;
    let key = p.get("api_key").and_then(Value::as_str).unwrap_or_default();
    Some((url.to_string(), key.to_string()))
}

/// A running 3.x service's management endpoint.
#[derive(Clone)]
pub struct Service {
    /// `http://<host>:<port>/api/ccr/rpc` (no token in it).
    pub rpc_url: String,
    /// The service's pid from `service.json`, when it names one.
    pub pid: Option<u32>,
    token: String,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("rpc_url", &self.rpc_url)
            .field("pid", &self.pid)
            .finish_non_exhaustive()
    }
}

const START_HINT: &str = "start CCR with `ccr start` and try again";

/// Read `<dir>/service.json`; `token` (CCR_WEB_AUTH_TOKEN) replaces the one in its URL.
pub fn read_service(dir: &Path, token: Option<&str>) -> Result<Service> {
    let path = dir.join(SERVICE_FILE);
    let bad = |what: &str| {
        Error::Config(format!(
            "{}: {what}; {START_HINT} (nothing was changed)",
            path.display()
        ))
    };
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(bad("missing, so CCR 3.x is not running"));
        }
        Err(e) => return Err(Error::io("read", &path, e)),
    };
    let value: Value = serde_json::from_slice(&bytes).map_err(|_| bad("not valid JSON"))?;
    let raw = value
        .get("url")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("has no \"url\""))?;
    let url = reqwest::Url::parse(raw).map_err(|_| bad("its \"url\" is not a URL"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(bad("its \"url\" is not an http URL"));
    }
    let from_url = url
        .query_pairs()
        .find(|(k, _)| k == TOKEN_QUERY)
        .map(|(_, v)| v.trim().to_string());
    let token = match token.map(str::trim).filter(|t| !t.is_empty()) {
        Some(t) => t.to_string(),
        None => from_url
            .filter(|t| !t.is_empty())
            .ok_or_else(|| bad("its \"url\" has no management token (set CCR_WEB_AUTH_TOKEN)"))?,
    };
    let pid = value
        .get("pid")
        .and_then(Value::as_u64)
        .and_then(|p| u32::try_from(p).ok());
    Ok(Service {
        rpc_url: format!("{}/api/ccr/rpc", url.origin().ascii_serialization()),
        pid,
        token,
    })
}

fn client(timeout: Duration) -> Result<reqwest::Client> {
    // Loopback HTTP only; a TLS config is still required by the builder (no roots: nothing is trusted).
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Transport(format!("cannot configure TLS: {e}")))?
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .no_proxy()
        .connect_timeout(timeout)
        .timeout(timeout)
        .build()
        .map_err(|e| Error::Transport(format!("cannot build the RPC client: {e}")))
}

/// Call one management RPC method; returns its `value`.
pub fn rpc(service: &Service, method: &str, args: Vec<Value>, timeout: Duration) -> Result<Value> {
    let client = client(timeout)?;
    let url = &service.rpc_url;
    let body = serde_json::to_vec(&json!({ "method": method, "args": args }))
        .map_err(|e| Error::Transport(format!("cannot encode the RPC call: {e}")))?;
    // Built and sent inside the runtime: reqwest's timers need its reactor.
    runtime::block_on(async move {
        let send = client
            .post(url)
            .header("content-type", "application/json")
            .header(AUTH_HEADER, &service.token)
            .body(body)
            .send();
        let resp = send.await.map_err(|e| {
            let cause = std::error::Error::source(&e).map_or_else(|| e.to_string(), ToString::to_string);
            Error::Config(format!(
                "CCR 3.x's management RPC {url} does not answer ({cause}); {START_HINT} (nothing was changed)"
            ))
        })?;
        let status = resp.status();
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            return Err(Error::Config(format!(
                "CCR 3.x's management RPC {url} refused the management token (HTTP {}): it comes from \
                 service.json's url or CCR_WEB_AUTH_TOKEN (nothing was changed)",
                status.as_u16()
            )));
        }
        let text = resp
            .bytes()
            .await
            .map_err(|e| Error::Transport(format!("CCR 3.x's management RPC {url}: reading the answer: {e}")))?;
        let answer: Value = serde_json::from_slice(&text).unwrap_or(Value::Null);
        if !status.is_success() || answer.get("ok") != Some(&Value::Bool(true)) {
            let message = answer
                .pointer("/error/message")
                .and_then(Value::as_str)
                .unwrap_or("no error message");
            return Err(Error::Config(format!(
                "CCR 3.x's management RPC {url}: {method} failed (HTTP {}): {message} (nothing was changed)",
                status.as_u16()
            )));
        }
        Ok(answer.get("value").cloned().unwrap_or(Value::Null))
    })?
}

/// How [`install`] put our provider in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Installed {
    /// Written to this `config.json` for 3.x to import on its first start.
    Legacy(PathBuf),
    /// Installed through the running service's RPC at this URL.
    Rpc {
        /// The RPC URL.
        rpc_url: String,
        /// What changed.
        merged: Merged,
    },
}

/// Put our provider (`url`, `api_key`, `model`) into the CCR 3.x under `root`: `config.json` before the first
/// start, the RPC once `config.sqlite` exists.
pub fn install(
    root: &Path,
    url: &str,
    api_key: &str,
    model: &str,
    web_token: Option<&str>,
    timeout: Duration,
) -> Result<Installed> {
    check(api_key, model)?;
    let paths = CcrPaths::new(root)?;
    if !paths.dir.join(SQLITE_FILE).exists() {
        let fresh = render_legacy(url, api_key, model)?;
        ensure_private_dir(&paths.dir)?;
        update_file(&paths.config, |current| {
            let Some(bytes) = current else {
                return Ok(Some(to_python_json(&fresh).into_bytes()));
            };
            // The user's own config.json (e.g. from CCR 1.x), not imported yet: keep it, put our provider in.
            let untouched = |what: String| {
                Error::Config(format!(
                    "{}: {what}; the file was left untouched",
                    paths.config.display()
                ))
            };
            let mut value: Value =
                serde_json::from_slice(bytes).map_err(|e| untouched(format!("not valid JSON ({e})")))?;
            merge_legacy(&mut value, &fresh).map_err(untouched)?;
            Ok(Some(to_python_json(&value).into_bytes()))
        })?;
        return Ok(Installed::Legacy(paths.config));
    }
    let service = read_service(&paths.dir, web_token)?;
    let mut config = rpc(&service, "getConfig", Vec::new(), timeout)?;
    let merged = merge_provider(&mut config, url, api_key, model).map_err(|e| {
        Error::Config(format!(
            "CCR 3.x's getConfig at {}: {e} (nothing was changed)",
            service.rpc_url
        ))
    })?;
    let saved = rpc(&service, "saveConfig", vec![config], timeout)?;
    if our_provider(&saved).is_none_or(|(u, _)| u != url) {
        return Err(Error::Config(format!(
            "CCR 3.x's saveConfig at {} did not keep the {PROVIDER} provider",
            service.rpc_url
        )));
    }
    Ok(Installed::Rpc {
        rpc_url: service.rpc_url,
        merged,
    })
}

/// The running 3.x's config (`getConfig`).
pub fn read_config(root: &Path, web_token: Option<&str>, timeout: Duration) -> Result<(Service, Value)> {
    let paths = CcrPaths::new(root)?;
    let service = read_service(&paths.dir, web_token)?;
    let config = rpc(&service, "getConfig", Vec::new(), timeout)?;
    Ok((service, config))
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "http://127.0.0.1:9/serving-endpoints/anthropic";

    #[test]
    fn the_legacy_config_names_protocol_model_and_profile_model() {
        let v = render_legacy(URL, "key-1", "m-1").unwrap();
        assert_eq!(v["Providers"][0]["protocol"], "anthropic_messages");
        assert_eq!(v["Providers"][0]["api_base_url"], URL);
        assert_eq!(v["Providers"][0]["models"], json!(["m-1"]));
        assert_eq!(v["profile"]["claudeCode"]["model"], "databricks/m-1");
        assert_eq!(provider_base("gateway_url", "http://127.0.0.1:9/").unwrap(), URL);
        let err = provider_base("gateway_url", "ftp://x").unwrap_err().to_string();
        assert!(err.starts_with("gateway_url: "), "{err}");
        let err = render_legacy(URL, "a b", "m").unwrap_err().to_string();
        assert!(err.starts_with("api_key: "), "{err}");
    }

    #[test]
    fn a_users_config_json_before_the_first_start_keeps_its_providers() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join(".claude-code-router/config.json");
        std::fs::create_dir_all(cfg.parent().unwrap()).unwrap();
        std::fs::write(
            &cfg,
            r#"{"PORT": 4000, "Providers": [{"name": "other", "api_key": "keep"},
               {"name": "databricks", "api_base_url": "https://h/serving-endpoints/m/invocations", "api_key": "dapi-old"}]}"#,
        )
        .unwrap();
        let done = install(dir.path(), URL, "gw", "m-1", None, Duration::from_secs(1)).unwrap();
        assert_eq!(done, Installed::Legacy(cfg.clone()));
        let v: Value = serde_json::from_slice(&std::fs::read(&cfg).unwrap()).unwrap();
        assert_eq!(v["PORT"], 4000);
        assert_eq!(v["Providers"][0], json!({"name": "other", "api_key": "keep"}));
        assert_eq!(v["Providers"][1]["protocol"], "anthropic_messages");
        assert_eq!(v["Providers"].as_array().unwrap().len(), 2);
        assert_eq!(v["profile"]["claudeCode"]["model"], "databricks/m-1");
        std::fs::write(&cfg, "{not json").unwrap();
        let err = install(dir.path(), URL, "gw", "m-1", None, Duration::from_secs(1)).unwrap_err();
        assert!(err.to_string().contains("left untouched"), "{err}");
        assert_eq!(std::fs::read(&cfg).unwrap(), b"{not json");
    }

    #[test]
    fn merge_adds_our_provider_and_keeps_the_users() {
        let mut c = json!({
            "Providers": [{"name": "openrouter", "api_key": "user-key", "models": ["x"]}],
            "profile": {"claudeCode": {"model": ""},
                        "profiles": [{"agent": "claude-code", "model": ""}, {"agent": "codex", "model": ""}]},
            "theme": "dark"
        });
        let m = merge_provider(&mut c, URL, "gw-key", "m-1").unwrap();
        assert_eq!(
            m,
            Merged {
                added: true,
                set_default: true
            }
        );
        assert_eq!(
            c["Providers"][0],
            json!({"name": "openrouter", "api_key": "user-key", "models": ["x"]})
        );
        assert_eq!(c["Providers"][1]["capabilities"][0]["type"], "anthropic_messages");
        assert_eq!(our_provider(&c), Some((URL.to_string(), "gw-key".to_string())));
        assert_eq!(c["profile"]["claudeCode"]["model"], "databricks/m-1");
        assert_eq!(c["profile"]["profiles"][0]["model"], "databricks/m-1");
        assert_eq!(c["profile"]["profiles"][1]["model"], "");
        assert_eq!(c["theme"], "dark");
    }

    #[test]
    fn merge_updates_ours_in_place_and_keeps_a_chosen_model() {
        let mut c = json!({
            "Providers": [{"name": "databricks", "id": "p1", "api_key": "old", "models": ["other"],
                           "capabilities": [{"baseUrl": "http://old", "type": "openai_chat_completions"}]}],
            "profile": {"claudeCode": {"model": "openrouter/x"}}
        });
        let m = merge_provider(&mut c, URL, "new", "m-1").unwrap();
        assert_eq!(
            m,
            Merged {
                added: false,
                set_default: false
            }
        );
        assert_eq!(c["Providers"].as_array().unwrap().len(), 1);
        assert_eq!(c["Providers"][0]["id"], "p1");
        assert_eq!(c["Providers"][0]["models"], json!(["other", "m-1"]));
        assert_eq!(our_provider(&c), Some((URL.to_string(), "new".to_string())));
        assert_eq!(c["profile"]["claudeCode"]["model"], "openrouter/x");
        assert!(merge_provider(&mut json!([1]), URL, "k", "m").is_err());
        assert!(merge_provider(&mut json!({"Providers": {}}), URL, "k", "m").is_err());
    }

    #[test]
    fn service_json_gives_the_rpc_url_and_token_and_bad_ones_say_start_ccr() {
        let dir = tempfile::tempdir().unwrap();
        let err = read_service(dir.path(), None).unwrap_err().to_string();
        assert!(
            err.contains("service.json: missing") && err.contains("`ccr start`"),
            "{err}"
        );
        let p = dir.path().join(SERVICE_FILE);
        std::fs::write(&p, "{not json").unwrap();
        let err = read_service(dir.path(), None).unwrap_err().to_string();
        assert!(err.contains("not valid JSON") && err.contains("`ccr start`"), "{err}");
        std::fs::write(
            &p,
            r#"{"pid": 7, "url": "http://127.0.0.1:3458/?ccr_web_token=s3cret"}"#,
        )
        .unwrap();
        let s = read_service(dir.path(), None).unwrap();
        assert_eq!(
            (s.rpc_url.as_str(), s.pid),
            ("http://127.0.0.1:3458/api/ccr/rpc", Some(7))
        );
        assert_eq!(s.token, "s3cret");
        assert!(!format!("{s:?}").contains("s3cret"));
        assert_eq!(read_service(dir.path(), Some("other")).unwrap().token, "other");
        std::fs::write(&p, r#"{"url": "http://127.0.0.1:3458/"}"#).unwrap();
        let err = read_service(dir.path(), None).unwrap_err().to_string();
        assert!(err.contains("CCR_WEB_AUTH_TOKEN"), "{err}");
    }

    #[test]
    fn an_unreachable_rpc_names_the_url_and_says_start_ccr() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(SERVICE_FILE),
            format!(r#"{{"url": "http://127.0.0.1:{port}/?ccr_web_token=t"}}"#),
        )
        .unwrap();
        let s = read_service(dir.path(), None).unwrap();
        let err = rpc(&s, "getConfig", Vec::new(), Duration::from_secs(5))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("http://127.0.0.1:{port}/api/ccr/rpc")) && err.contains("`ccr start`"),
            "{err}"
        );
    }
}
