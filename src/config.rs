//! Configuration: the attribute table and its resolution, shaped like the Databricks SDKs' `Config`.
//!
//! Resolution order (SDK-BEHAVIOUR.md §1): explicit arguments, then environment variables (never overwriting a
//! value that is already set; empty values ignored), then host normalisation, then validation. The environment
//! is injected through the [`Env`] trait so tests never touch the process environment.

use std::collections::HashMap;
use std::time::Duration;

use crate::error::{Error, Result};

/// One configuration attribute: its name (also the `.databrickscfg` key), env var, auth group and whether it
/// is a secret that must be masked.
#[derive(Debug, Clone, Copy)]
pub struct Attribute {
    /// Attribute name, as in the SDKs and as the key in `~/.databrickscfg`.
    pub name: &'static str,
    /// Environment variable read for it, if any.
    pub env: Option<&'static str>,
    /// Authentication family it belongs to (`pat`, `basic`, `oauth`), used by the "more than one method" check.
    pub auth: Option<&'static str>,
    /// Whether the value must never be shown (masked as `***`).
    pub sensitive: bool,
}

const fn attr(name: &'static str, env: &'static str, auth: Option<&'static str>, sensitive: bool) -> Attribute {
    Attribute {
        name,
        env: Some(env),
        auth,
        sensitive,
    }
}

/// The attributes we support, in the SDK's declaration order (that order is visible in debug strings).
pub const ATTRIBUTES: &[Attribute] = &[
    attr("host", "DATABRICKS_HOST", None, false),
    attr("account_id", "DATABRICKS_ACCOUNT_ID", None, false),
    attr("token", "DATABRICKS_TOKEN", Some("pat"), true),
    attr("username", "DATABRICKS_USERNAME", Some("basic"), false),
    attr("password", "DATABRICKS_PASSWORD", Some("basic"), true),
    attr("client_id", "DATABRICKS_CLIENT_ID", Some("oauth"), false),
    attr("client_secret", "DATABRICKS_CLIENT_SECRET", Some("oauth"), true),
    attr("profile", "DATABRICKS_CONFIG_PROFILE", None, false),
    attr("config_file", "DATABRICKS_CONFIG_FILE", None, false),
    attr("auth_type", "DATABRICKS_AUTH_TYPE", None, false),
    attr("workspace_id", "DATABRICKS_WORKSPACE_ID", None, false),
];

/// Index of an attribute in [`ATTRIBUTES`], by name.
fn index_of(name: &str) -> Option<usize> {
    ATTRIBUTES.iter().position(|a| a.name == name)
}

/// Where environment variables (and, later, the home directory) come from.
pub trait Env: Sync {
    /// The value of an environment variable, `None` when unset.
    fn var(&self, name: &str) -> Option<String>;
}

/// The real process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var_os(name).map(|v| v.to_string_lossy().into_owned())
    }
}

impl Env for HashMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

/// Default per-attempt HTTP timeout (the SDK's `http_timeout_seconds`).
pub const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(60);
/// Default total retry budget per call (the SDK's `retry_timeout_seconds`).
pub const DEFAULT_RETRY_TIMEOUT: Duration = Duration::from_secs(300);

/// A resolved configuration.
#[derive(Clone, PartialEq)]
pub struct Config {
    values: Vec<Option<String>>,
    envs_used: Vec<&'static str>,
    /// Per-attempt HTTP timeout.
    pub http_timeout: Duration,
    /// Total budget for one call, retries included.
    pub retry_timeout: Duration,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Config({})", self.debug_string())
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            values: vec![None; ATTRIBUTES.len()],
            envs_used: Vec::new(),
            http_timeout: DEFAULT_HTTP_TIMEOUT,
            retry_timeout: DEFAULT_RETRY_TIMEOUT,
        }
    }
}

impl Config {
    /// Resolve a configuration from explicit arguments and the environment.
    ///
    /// `args` are `(attribute name, value)` pairs; unknown names are a programming error reported as
    /// `InvalidArgument`. Empty values count as unset, like the SDK.
    pub fn resolve(args: &[(&str, Option<String>)], env: &dyn Env) -> Result<Config> {
        let mut cfg = Config::default();
        for (name, value) in args {
            let idx = index_of(name).ok_or_else(|| Error::invalid(*name, "unknown configuration attribute"))?;
            if let Some(v) = value.as_ref().filter(|v| !v.is_empty()) {
                cfg.values[idx] = Some(v.clone());
            }
        }
        for (idx, a) in ATTRIBUTES.iter().enumerate() {
            let Some(env_name) = a.env else { continue };
            let Some(v) = env.var(env_name).filter(|v| !v.is_empty()) else {
                continue;
            };
            cfg.envs_used.push(env_name);
            if cfg.values[idx].is_none() {
                cfg.values[idx] = Some(v);
            }
        }
        cfg.fix_host()?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The value of an attribute, if set.
    pub fn get(&self, name: &str) -> Option<&str> {
        index_of(name).and_then(|i| self.values[i].as_deref())
    }

    /// Set an attribute (used after resolution, e.g. to record the chosen `auth_type`).
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        if let Some(i) = index_of(name) {
            self.values[i] = Some(value.into());
        }
    }

    /// The normalised workspace URL (`https://host` unless a scheme was given), if set.
    pub fn host(&self) -> Option<&str> {
        self.get("host")
    }

    /// The SDK's `debug_string()`: `Config: host=..., token=***. Env: DATABRICKS_HOST, ...` (secrets masked).
    pub fn debug_string(&self) -> String {
        let attrs: Vec<String> = ATTRIBUTES
            .iter()
            .zip(&self.values)
            .filter_map(|(a, v)| {
                v.as_ref().map(|v| {
                    if a.sensitive {
                        format!("{}=***", a.name)
                    } else {
                        format!("{}={v}", a.name)
                    }
                })
            })
            .collect();
        let mut parts = Vec::new();
        if !attrs.is_empty() {
            parts.push(format!("Config: {}", attrs.join(", ")));
        }
        if !self.envs_used.is_empty() {
            parts.push(format!("Env: {}", self.envs_used.join(", ")));
        }
        parts.join(". ")
    }

    /// Append the debug string to a message, the way the SDK's `wrap_debug_info` does.
    pub fn wrap(&self, message: &str) -> String {
        let debug = self.debug_string();
        if debug.is_empty() {
            message.to_string()
        } else {
            format!("{}. {debug}", message.trim_end_matches('.'))
        }
    }

    /// A key that identifies the credentials this config describes (used for the in-process token cache).
    /// It holds secrets, so it must only ever live in memory and never be formatted.
    pub(crate) fn identity_key(&self) -> Vec<Option<String>> {
        self.values.clone()
    }

    fn fix_host(&mut self) -> Result<()> {
        let Some(idx) = index_of("host") else { return Ok(()) };
        if let Some(raw) = self.values[idx].take() {
            let param = if self.envs_used.contains(&"DATABRICKS_HOST") {
                "DATABRICKS_HOST"
            } else {
                "host"
            };
            self.values[idx] = Some(normalize_host(&raw).map_err(|reason| Error::invalid(param, reason))?);
        }
        Ok(())
    }

    fn validate(&self) -> Result<()> {
        let mut groups: Vec<&str> = ATTRIBUTES
            .iter()
            .zip(&self.values)
            .filter(|(a, v)| v.is_some() && a.auth.is_some())
            .filter_map(|(a, _)| a.auth)
            .collect();
        groups.sort_unstable();
        groups.dedup();
        if groups.len() > 1 && self.get("auth_type").is_none() {
            let msg = format!(
                "validate: more than one authorization method configured: {}",
                groups.join(" and ")
            );
            return Err(Error::Config(self.wrap(&msg)));
        }
        Ok(())
    }
}

/// Normalise a workspace host the way the SDK does: add `https://` when there is no scheme, drop a trailing
/// `/` and a default `:443`. Unlike the SDK we also reject what is not a URL at all, with a reason.
pub fn normalize_host(raw: &str) -> std::result::Result<String, String> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err("is empty".into());
    }
    if trimmed.chars().any(char::is_whitespace) {
        return Err("must not contain whitespace".into());
    }
    let with_scheme = if trimmed.contains("://") {
        trimmed.to_string()
    } else {
        format!("https://{trimmed}")
    };
    let url = reqwest::Url::parse(&with_scheme).map_err(|e| format!("is not a valid URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("must be an http(s) URL, not {}://", url.scheme()));
    }
    let Some(host) = url.host_str().filter(|h| !h.is_empty()) else {
        return Err("has no host name".into());
    };
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry credentials".into());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("must not have a query or fragment".into());
    }
    let port = match url.port() {
        Some(443) if url.scheme() == "https" => String::new(),
        Some(p) => format!(":{p}"),
        None => String::new(),
    };
    let path = url.path().trim_end_matches('/');
    Ok(format!("{}://{host}{port}{path}", url.scheme()))
}

/// The bare host name (with port, without scheme and trailing slash) of a normalised host URL.
pub fn bare_host(host_url: &str) -> &str {
    host_url.split_once("://").map_or(host_url, |(_, rest)| rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect()
    }

    #[test]
    fn host_normalisation_matches_the_sdk() {
        let cases = [
            ("adb-1.2.azuredatabricks.net", "https://adb-1.2.azuredatabricks.net"),
            ("https://x.cloud.databricks.com/", "https://x.cloud.databricks.com"),
            ("https://x.cloud.databricks.com:443", "https://x.cloud.databricks.com"),
            ("http://127.0.0.1:8080/", "http://127.0.0.1:8080"),
            ("127.0.0.1:8080", "https://127.0.0.1:8080"),
            ("  host.example  ", "https://host.example"),
        ];
        for (raw, want) in cases {
            assert_eq!(normalize_host(raw).as_deref(), Ok(want), "{raw}");
        }
        for bad in [
            "",
            "   ",
            "ftp://x",
            "https://",
            "a b",
            "https://u:p@h",
            "https://h/?q=1",
        ] {
            assert!(normalize_host(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn args_win_over_env_and_empty_env_is_ignored() {
        let e = env(&[("DATABRICKS_HOST", "from-env"), ("DATABRICKS_TOKEN", "")]);
        let cfg = Config::resolve(&[("host", Some("from-arg".into()))], &e).unwrap();
        assert_eq!(cfg.host(), Some("https://from-arg"));
        assert_eq!(cfg.get("token"), None);
        assert_eq!(
            cfg.debug_string(),
            "Config: host=https://from-arg. Env: DATABRICKS_HOST"
        );
    }

    #[test]
    fn debug_string_masks_secrets_in_sdk_order() {
        let e = env(&[
            ("DATABRICKS_HOST", "h"),
            ("DATABRICKS_CLIENT_SECRET", "s3cr3t"),
            ("DATABRICKS_CLIENT_ID", "cid"),
        ]);
        let cfg = Config::resolve(&[], &e).unwrap();
        let s = cfg.debug_string();
        assert_eq!(
            s,
            "Config: host=https://h, client_id=cid, client_secret=***. \
             Env: DATABRICKS_HOST, DATABRICKS_CLIENT_ID, DATABRICKS_CLIENT_SECRET"
        );
        assert!(!format!("{cfg:?}").contains("s3cr3t"));
    }

    #[test]
    fn two_auth_methods_are_rejected_unless_auth_type_is_set() {
        let e = env(&[
            ("DATABRICKS_HOST", "h"),
            ("DATABRICKS_TOKEN", "t"),
            ("DATABRICKS_CLIENT_ID", "c"),
        ]);
        let err = Config::resolve(&[], &e).unwrap_err().to_string();
        assert_eq!(
            err,
            "validate: more than one authorization method configured: oauth and pat. \
             Config: host=https://h, token=***, client_id=c. Env: DATABRICKS_HOST, DATABRICKS_TOKEN, DATABRICKS_CLIENT_ID"
        );
        let cfg = Config::resolve(&[("auth_type", Some("pat".into()))], &e).unwrap();
        assert_eq!(cfg.get("auth_type"), Some("pat"));
    }

    #[test]
    fn bad_host_names_the_env_var() {
        let e = env(&[("DATABRICKS_HOST", "ftp://nope")]);
        let err = Config::resolve(&[], &e).unwrap_err().to_string();
        assert!(err.starts_with("DATABRICKS_HOST: "), "{err}");
    }

    #[test]
    fn bare_host_strips_the_scheme() {
        assert_eq!(bare_host("https://a.b/c"), "a.b/c");
        assert_eq!(bare_host("a.b"), "a.b");
    }
}
