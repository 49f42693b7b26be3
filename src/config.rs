//! Configuration: the attribute table and its resolution, shaped like the Databricks SDKs' `Config`.
//!
//! Resolution order (SDK-BEHAVIOUR.md §1): explicit arguments, then environment variables (never overwriting a
//! value that is already set; empty values ignored), then the config file (`~/.databrickscfg`, see
//! [`crate::databrickscfg::file`]; never overwriting either), then host normalisation, then validation. The
//! environment and the home folder are injected through the [`Env`] trait so tests never touch the process
//! environment.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::databrickscfg::file::{self as config_file, ConfigFile, ProfileError};
use crate::error::{Error, Result};
use crate::secret::Secret;

/// One configuration attribute: its name (also the `.databrickscfg` key), env var, auth group and whether it
/// is a secret that must be masked.
#[derive(Debug, Clone, Copy)]
pub struct Attribute {
    /// Attribute name, as in the SDKs and as the key in `~/.databrickscfg`.
    pub name: &'static str,
    /// Environment variable read for it, if any.
    pub env: Option<&'static str>,
    /// Authentication family it belongs to (`pat`, `basic`, `oauth`, ...), used by the "more than one method"
    /// check and by the rule that skips the config file when credentials are already given.
    pub auth: Option<&'static str>,
    /// Whether the value must never be shown (masked as `***`).
    pub sensitive: bool,
}

const fn attr(name: &'static str, env: Option<&'static str>, auth: Option<&'static str>, sensitive: bool) -> Attribute {
    Attribute {
        name,
        env,
        auth,
        sensitive,
    }
}

/// The attributes, in the declaration order of databricks-sdk 0.67's `Config.attributes()` (that order shows in
/// debug strings), with the same env vars, auth groups and sensitive flags; `workspace_id` (newer SDKs) last.
/// Those we do not act on are kept so that the debug string, the "more than one method" check and the
/// config-file rule see what the SDK sees.
pub const ATTRIBUTES: &[Attribute] = &[
    attr("host", Some("DATABRICKS_HOST"), None, false),
    attr("account_id", Some("DATABRICKS_ACCOUNT_ID"), None, false),
    attr("token", Some("DATABRICKS_TOKEN"), Some("pat"), true),
    attr(
        "token_audience",
        Some("DATABRICKS_TOKEN_AUDIENCE"),
        Some("github-oidc"),
        false,
    ),
    attr(
        "oidc_token_env",
        Some("DATABRICKS_OIDC_TOKEN_ENV"),
        Some("env-oidc"),
        false,
    ),
    attr(
        "oidc_token_filepath",
        Some("DATABRICKS_OIDC_TOKEN_FILE"),
        Some("file-oidc"),
        false,
    ),
    attr("username", Some("DATABRICKS_USERNAME"), Some("basic"), false),
    attr("password", Some("DATABRICKS_PASSWORD"), Some("basic"), true),
    attr("client_id", Some("DATABRICKS_CLIENT_ID"), Some("oauth"), false),
    attr("client_secret", Some("DATABRICKS_CLIENT_SECRET"), Some("oauth"), true),
    attr("profile", Some("DATABRICKS_CONFIG_PROFILE"), None, false),
    attr("config_file", Some("DATABRICKS_CONFIG_FILE"), None, false),
    attr(
        "google_service_account",
        Some("DATABRICKS_GOOGLE_SERVICE_ACCOUNT"),
        Some("google"),
        false,
    ),
    attr("google_credentials", Some("GOOGLE_CREDENTIALS"), Some("google"), true),
    attr(
        "azure_workspace_resource_id",
        Some("DATABRICKS_AZURE_RESOURCE_ID"),
        Some("azure"),
        false,
    ),
    attr("azure_use_msi", Some("ARM_USE_MSI"), Some("azure"), false),
    attr("azure_client_secret", Some("ARM_CLIENT_SECRET"), Some("azure"), true),
    attr("azure_client_id", Some("ARM_CLIENT_ID"), Some("azure"), false),
    attr("azure_tenant_id", Some("ARM_TENANT_ID"), Some("azure"), false),
    attr("azure_environment", Some("ARM_ENVIRONMENT"), None, false),
    attr("databricks_cli_path", Some("DATABRICKS_CLI_PATH"), None, false),
    attr("auth_type", Some("DATABRICKS_AUTH_TYPE"), None, false),
    attr("cluster_id", Some("DATABRICKS_CLUSTER_ID"), None, false),
    attr("warehouse_id", Some("DATABRICKS_WAREHOUSE_ID"), None, false),
    attr(
        "serverless_compute_id",
        Some("DATABRICKS_SERVERLESS_COMPUTE_ID"),
        None,
        false,
    ),
    attr("skip_verify", None, None, false),
    attr("http_timeout_seconds", None, None, false),
    attr(
        "debug_truncate_bytes",
        Some("DATABRICKS_DEBUG_TRUNCATE_BYTES"),
        None,
        false,
    ),
    attr("debug_headers", Some("DATABRICKS_DEBUG_HEADERS"), None, false),
    attr("rate_limit", Some("DATABRICKS_RATE_LIMIT"), None, false),
    attr("retry_timeout_seconds", None, None, false),
    attr(
        "metadata_service_url",
        Some("DATABRICKS_METADATA_SERVICE_URL"),
        Some("metadata-service"),
        true,
    ),
    attr("max_connection_pools", None, None, false),
    attr("max_connections_per_pool", None, None, false),
    attr(
        "disable_async_token_refresh",
        Some("DATABRICKS_DISABLE_ASYNC_TOKEN_REFRESH"),
        None,
        false,
    ),
    attr(
        "enable_experimental_files_api_client",
        Some("DATABRICKS_ENABLE_EXPERIMENTAL_FILES_API_CLIENT"),
        None,
        false,
    ),
    attr("workspace_id", Some("DATABRICKS_WORKSPACE_ID"), None, false),
];

/// Attributes a config file never sets (they choose the file and the profile).
const NOT_FROM_FILE: [&str; 2] = ["profile", "config_file"];

/// The env var that holds the OIDC ID token for `env-oidc` unless `oidc_token_env` names another one.
pub const DEFAULT_OIDC_TOKEN_ENV: &str = "DATABRICKS_OIDC_TOKEN";

/// The error for a secret variable that is not UTF-8 (converting it would change the secret).
fn not_unicode(var: &str) -> Error {
    Error::invalid(var, "is not valid UTF-8; a secret must be UTF-8 text")
}

/// Index of an attribute in [`ATTRIBUTES`], by name.
fn index_of(name: &str) -> Option<usize> {
    ATTRIBUTES.iter().position(|a| a.name == name)
}

/// Where environment variables and the home folder come from.
pub trait Env: Sync {
    /// The value of an environment variable, `None` when unset.
    fn var(&self, name: &str) -> Option<String>;
    /// The value as the OS holds it (bytes on Unix: never converted lossily), for variables that are paths.
    fn var_os(&self, name: &str) -> Option<std::ffi::OsString> {
        self.var(name).map(Into::into)
    }
    /// The home folder (`~`), `None` when there is none.
    fn home(&self) -> Option<PathBuf>;
    /// Whether the variable is unset or valid UTF-8 (a secret that is not is refused, not converted).
    fn is_unicode(&self, _name: &str) -> bool {
        true
    }
}

/// The real process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var_os(name).map(|v| v.to_string_lossy().into_owned())
    }

    fn is_unicode(&self, name: &str) -> bool {
        std::env::var_os(name).is_none_or(|v| v.to_str().is_some())
    }

    fn var_os(&self, name: &str) -> Option<std::ffi::OsString> {
        std::env::var_os(name)
    }

    fn home(&self) -> Option<PathBuf> {
        std::env::home_dir().filter(|h| !h.as_os_str().is_empty())
    }
}

/// A map of variables; its `HOME` entry is the home folder (as in the Go SDK's test fixtures).
impl Env for HashMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }

    fn home(&self) -> Option<PathBuf> {
        self.get("HOME").filter(|h| !h.is_empty()).map(PathBuf::from)
    }
}

/// Default per-attempt HTTP timeout (the SDK's `http_timeout_seconds`).
pub const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(60);
/// Default total retry budget per call (the SDK's `retry_timeout_seconds`).
pub const DEFAULT_RETRY_TIMEOUT: Duration = Duration::from_secs(300);

/// What credential strategies read from the environment besides the attributes, captured at resolution so that
/// a resolved [`Config`] is self-contained (and part of its identity for the credentials cache).
#[derive(Clone, PartialEq, Default)]
pub struct Ambient {
    /// The OIDC ID token for `env-oidc` (from `DATABRICKS_OIDC_TOKEN` or the var named by `oidc_token_env`).
    pub oidc_token: Option<Secret>,
    /// `PATH`, to find the `databricks` CLI.
    pub path: Option<String>,
}

/// A resolved configuration.
#[derive(Clone, PartialEq)]
pub struct Config {
    values: Vec<Option<String>>,
    envs_used: Vec<&'static str>,
    /// Per-attempt HTTP timeout.
    pub http_timeout: Duration,
    /// Total budget for one call, retries included.
    pub retry_timeout: Duration,
    /// Environment read by the strategies.
    pub ambient: Ambient,
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
            ambient: Ambient::default(),
        }
    }
}

impl Config {
    /// Resolve a configuration from explicit arguments, the environment and the config file.
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
            if a.sensitive && !env.is_unicode(env_name) {
                return Err(not_unicode(env_name));
            }
            let Some(v) = env.var(env_name).filter(|v| !v.is_empty()) else {
                continue;
            };
            cfg.envs_used.push(env_name);
            if cfg.values[idx].is_none() {
                cfg.values[idx] = Some(v);
            }
        }
        cfg.load_config_file(env)?;
        cfg.fix_host()?;
        cfg.validate()?;
        cfg.http_timeout = cfg.seconds("http_timeout_seconds", DEFAULT_HTTP_TIMEOUT)?;
        cfg.retry_timeout = cfg.seconds("retry_timeout_seconds", DEFAULT_RETRY_TIMEOUT)?;
        let token_env = cfg.get("oidc_token_env").unwrap_or(DEFAULT_OIDC_TOKEN_ENV);
        if !env.is_unicode(token_env) {
            return Err(not_unicode(token_env));
        }
        // Every secret the configuration holds is masked in any text from now on.
        for (a, v) in ATTRIBUTES.iter().zip(&cfg.values) {
            if let (true, Some(v)) = (a.sensitive, v) {
                crate::secret::register(v);
            }
        }
        cfg.ambient = Ambient {
            oidc_token: env.var(token_env).filter(|t| !t.is_empty()).map(Secret::new),
            path: env.var("PATH"),
        };
        Ok(cfg)
    }

    /// `config` when the caller gave one, else the default configuration resolved from `env` now (what every
    /// call without `config=` uses).
    pub fn given_or_default(config: Option<Config>, env: &dyn Env) -> Result<Config> {
        match config {
            Some(c) => Ok(c),
            None => Config::resolve(&[], env),
        }
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

    /// Whether the host is an accounts console (`https://accounts.` or `https://accounts-dod.`).
    pub fn is_account_client(&self) -> bool {
        self.host()
            .is_some_and(|h| h.starts_with("https://accounts.") || h.starts_with("https://accounts-dod."))
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
        let mut key = self.values.clone();
        key.push(self.ambient.oidc_token.as_ref().map(|t| t.expose().to_string()));
        key.push(self.ambient.path.clone());
        key
    }

    /// Whether any attribute of an auth group is set (the SDK's `is_any_auth_configured`).
    fn any_auth_configured(&self) -> bool {
        ATTRIBUTES
            .iter()
            .zip(&self.values)
            .any(|(a, v)| a.auth.is_some() && v.is_some())
    }

    /// Apply the config file's profile (see [`crate::config_file`]); values already set win.
    fn load_config_file(&mut self, env: &dyn Env) -> Result<()> {
        let requested = self.get("profile").map(str::to_string);
        if requested.is_none() && (self.any_auth_configured() || self.host().is_some()) {
            return Ok(());
        }
        let Some(path) = config_file::path(self.get("config_file"), env.home().as_deref()) else {
            log::debug!("no home folder: no ~/.databrickscfg to read");
            return Ok(());
        };
        let shown = path.display().to_string();
        let text = match crate::small_file::read(&path) {
            Ok(bytes) => String::from_utf8(bytes)
                .map_err(|_| Error::Config(self.wrap(&format!("resolve: {shown} is not UTF-8 text"))))?,
            Err(crate::small_file::ReadError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                log::debug!("{shown} does not exist");
                return Ok(());
            }
            Err(crate::small_file::ReadError::Io(e)) => {
                return Err(Error::Config(self.wrap(&format!("resolve: cannot read {shown}: {e}"))));
            }
            Err(e) => {
                return Err(Error::Config(
                    self.wrap(&format!("resolve: cannot read {shown}: it {e}")),
                ));
            }
        };
        let file = ConfigFile::parse(&text)
            .map_err(|e| Error::Config(self.wrap(&format!("resolve: {shown} is not a valid config file: {e}"))))?;
        let profile = match file.choose(requested.as_deref()) {
            Ok(Some(p)) => p,
            Ok(None) => {
                log::debug!("{shown} has no DEFAULT profile configured");
                return Ok(());
            }
            Err(ProfileError::Missing(name)) => {
                return Err(Error::Config(
                    self.wrap(&format!("resolve: {shown} has no {name} profile configured")),
                ));
            }
            Err(ProfileError::Reserved) => {
                return Err(Error::Config(self.wrap(&format!(
                    "resolve: {shown}: {} is a reserved section name and cannot be used as a profile",
                    config_file::SETTINGS_SECTION
                ))));
            }
        };
        let keys: Vec<&str> = profile.values.iter().map(|(k, _)| k.as_str()).collect();
        log::debug!("loading {} profile from {shown}: {}", profile.name, keys.join(", "));
        for (key, value) in &profile.values {
            if NOT_FROM_FILE.contains(&key.as_str()) || value.is_empty() {
                continue;
            }
            // Keys we have no attribute for are ignored (the SDK keeps them as plain attributes no one reads).
            if let Some(i) = index_of(key)
                && self.values[i].is_none()
            {
                self.values[i] = Some(value.clone());
            }
        }
        if !profile.fallback {
            self.set("profile", profile.name);
        }
        Ok(())
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

    /// A duration attribute in seconds (`http_timeout_seconds`, `retry_timeout_seconds`).
    fn seconds(&self, name: &str, default: Duration) -> Result<Duration> {
        let Some(raw) = self.get(name) else { return Ok(default) };
        let secs: f64 = raw
            .trim()
            .parse()
            .map_err(|_| Error::invalid(name, format!("expected a number of seconds, got {raw:?}")))?;
        if !(secs.is_finite() && secs > 0.0 && secs <= 86_400.0) {
            return Err(Error::invalid(
                name,
                format!("must be more than 0 and at most 86400 seconds, got {raw}"),
            ));
        }
        Ok(Duration::from_secs_f64(secs))
    }
}

/// Normalise a workspace host the way the SDK does: add `https://` when there is no scheme, drop a trailing
/// `/` and a default `:443`. Unlike the SDK, the text is parsed with WHATWG rules (the `url` crate, which
/// `reqwest` uses to connect) and only `scheme://host[:port][/path]` is accepted, so the host shown is the host
/// contacted: credentials, a query, a backslash, a missing host and invisible characters are refused with a
/// reason, and a host that is not plain ASCII is shown in its IDNA (`xn--`) form.
pub fn normalize_host(raw: &str) -> std::result::Result<String, String> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err("is empty".into());
    }
    if trimmed.chars().any(char::is_whitespace) {
        return Err("must not contain whitespace".into());
    }
    if let Some(c) = trimmed.chars().find(|c| c.is_control() || is_invisible(*c)) {
        return Err(format!(
            "must not contain the invisible character U+{:04X}",
            u32::from(c)
        ));
    }
    if trimmed.contains('\\') {
        return Err("must not contain a backslash".into());
    }
    let (scheme, rest) = trimmed.split_once("://").unwrap_or(("https", trimmed));
    if !(scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")) {
        return Err(format!("must be an http(s) URL, not {scheme}://"));
    }
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    if authority.is_empty() {
        return Err("has no host name (expected scheme://host[:port][/path])".into());
    }
    if authority.contains('@') {
        return Err("must not carry credentials".into());
    }
    let url = reqwest::Url::parse(&format!("{scheme}://{rest}")).map_err(|e| format!("is not a valid URL ({e})"))?;
    let Some(host) = url.host_str().filter(|h| !h.is_empty()) else {
        return Err("has no host name".into());
    };
    if url.query().is_some() || url.fragment().is_some() {
        return Err("must not have a query or fragment".into());
    }
    // Keep the host as written when it is the host contacted (the SDK does not lower-case it); otherwise
    // (IDNA, a fullwidth dot, a short IPv4 form, percent-escapes) show what the parser made of it.
    let written = if authority.starts_with('[') {
        authority.find(']').map_or(authority, |end| &authority[..=end])
    } else {
        authority.rsplit_once(':').map_or(authority, |(h, _)| h)
    };
    let shown = if written.is_ascii() && written.eq_ignore_ascii_case(host) {
        written
    } else {
        host
    };
    // The parser reports no port when it is the scheme's default: an explicit `:443` on https is dropped.
    let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
    Ok(format!(
        "{}://{shown}{port}{}",
        url.scheme(),
        url.path().trim_end_matches('/')
    ))
}

/// Format characters that render as nothing (zero-width spaces and joiners, direction marks, soft hyphen,
/// BOM): a host holding one looks like another host.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}' | '\u{061C}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}' | '\u{FEFF}'
    )
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
            (
                "https://DBC-X.Cloud.Databricks.com:443/Path/",
                "https://DBC-X.Cloud.Databricks.com/Path",
            ),
            ("HTTPS://[::1]:443", "https://[::1]"),
            ("http://[::1]:8080/x", "http://[::1]:8080/x"),
            // IDNA: the host shown is the host contacted.
            ("https://b\u{fc}cher.example", "https://xn--bcher-kva.example"),
            ("https://h\u{ff0e}example", "https://h.example"),
            ("h%2Eexample", "https://h.example"),
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
            "http://h:1\\@good.example",
            "//evil.example",
            "https:////evil.example",
            "https://ev\u{200b}il.example",
            "https://\u{feff}h.example",
            "h:notaport",
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
