//! The token broker: one short-lived personal access token per workspace identity, shared by every process of
//! the user through a private cache file, refreshed before it expires, and never left behind.
//!
//! **Cache.** A JSON file (mode 0600, folder 0700; default `$XDG_CACHE_HOME/devbox-native/token.json` or
//! `~/.cache/devbox-native/token.json`) with one entry per `host` + principal ([`identity`]: the PAT's hash,
//! the client id, the basic user, the OIDC subject or token file, the CLI and profile...), so two workspaces or
//! two principals never share a token. An entry holds the current token, its id and expiry, the ids of every
//! token we minted that is still live (`minted`), the replaced tokens still to revoke (`pending`) and a
//! rotation hook not yet finished (`hook_pending`, see [`crate::rotation`]).
//!
//! **Check-lock-check.** [`Broker::get`] reads the cache without a lock (writes are atomic renames, so a reader
//! sees a whole file) and returns the token while more than `refresh_margin` seconds are left. Otherwise it
//! takes the cache's cross-process lock (`token.json.lock`), reads again (another process may have refreshed
//! meanwhile) and only then mints. So when N processes find the token stale at once, one mints and the others
//! wait for the lock and then read its token.
//!
//! **Revocation.** The replaced token is recorded as pending in the same write that stores the new one, due
//! after a grace period ([`DEFAULT_REVOKE_GRACE`]) so whoever got it just before keeps working; a rotation's
//! replaced token is also held until the rotation released it. Once due, the next `get()` of any process
//! revokes it with a short budget. A mint whose caller was cancelled after the server created the token is
//! recorded and revoked when the answer arrives. A failure stays pending (with `attempts`, `last_error` and
//! `next_attempt_at`: the next `get()` retries at once, later ones back off from 30 s up to an hour) and never
//! fails or holds up `get()` for longer than that budget. Only ids in `minted` are ever revoked: a token this
//! broker did not mint is never touched. Expired pending tokens are dropped (they no longer count).
//!
//! **Kinds.** [`Kind::Pat`] mints personal access tokens as above. [`Kind::Oauth`] hands out the configured
//! identity's OAuth access token itself (strategies that produce one: oauth-m2m, env-oidc, file-oidc,
//! metadata-service, databricks-cli), stored in the same cache under the same check-lock-check: nothing is minted
//! and nothing revoked. [`Kind::Auto`] is `oauth` when the strategy yields one, else `pat`. The entry key is
//! `<host> <kind>:<identity>`, so the two kinds never share an entry.
//!
//! When minting fails while the current token has not expired yet (it is only inside the margin), `get()`
//! returns the current token and logs a warning: it fails only when there is no usable token at all.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::api::tokens::{self, check_lifetime};
use crate::auth::default;
use crate::config::{Config, Env};
use crate::error::{Error, Result};
use crate::fsutil::{
    FILE_MODE, FileLock, Private, read_private, secure_dir, secure_file, sweep_leftovers, write_private,
};
use crate::hygiene::{self, COMMENT_PREFIX, Cleanup, is_already_gone};
use crate::secret::Secret;
use crate::workspace::Workspace;

/// Default token lifetime, seconds.
pub const DEFAULT_LIFETIME: i64 = 3600;
/// Default refresh margin, seconds: a token with less left than this is replaced.
pub const DEFAULT_MARGIN: i64 = 600;
/// Default refresh margin of OAuth tokens, seconds (of their hour): an agent caching one for 5-10 minutes never
/// holds an expired one.
pub const DEFAULT_OAUTH_MARGIN: i64 = 900;

/// Which token the broker hands out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The identity's OAuth access token (never minted, never revoked).
    Oauth,
    /// A personal access token minted for the identity.
    Pat,
    /// `Oauth` when the strategy yields an OAuth token, else `Pat`.
    Auto,
}

impl Kind {
    /// Parse `oauth`/`pat`/`auto`; anything else is a ValueError naming `param`.
    pub fn parse(param: &str, value: &str) -> Result<Kind> {
        match value {
            "oauth" => Ok(Kind::Oauth),
            "pat" => Ok(Kind::Pat),
            "auto" => Ok(Kind::Auto),
            other => Err(Error::invalid(
                param,
                format!("must be one of 'auto', 'oauth', 'pat', got {other:?}"),
            )),
        }
    }

    /// The name (`oauth`, `pat`, `auto`).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Oauth => "oauth",
            Kind::Pat => "pat",
            Kind::Auto => "auto",
        }
    }

    /// The default refresh margin of this kind, seconds (`auto` as resolved for `oauth_capable`).
    pub fn default_margin(self, oauth_capable: bool) -> i64 {
        match self {
            Kind::Oauth => DEFAULT_OAUTH_MARGIN,
            Kind::Auto if oauth_capable => DEFAULT_OAUTH_MARGIN,
            _ => DEFAULT_MARGIN,
        }
    }
}

/// Whether the configured strategy yields OAuth tokens (resolves the strategy; no network).
pub fn yields_oauth(config: &Config) -> Result<bool> {
    Ok(default::resolve(config)?.yields_oauth())
}
/// Version of the cache file format.
pub const CACHE_VERSION: u32 = 1;
/// Default grace period of a replaced token, seconds: it stays valid this long after it was replaced, so whoever
/// got it just before (a CCR server a rotation restarts after its next look at the cache, every 30 s, within a
/// restart's 30 s command and 30 s port wait; a Claude Code `apiKeyHelper`, re-run every 5 minutes, or an agent
/// in another process) is not cut off mid-request.
pub const DEFAULT_REVOKE_GRACE: i64 = 300;
/// Budget (and per-attempt timeout) of one revocation, so a failing API never holds up `get()` for long.
pub const REVOKE_BUDGET: Duration = Duration::from_secs(3);
/// While one process revokes a pending token, others leave it alone for this long (seconds).
const REVOKE_LEASE: f64 = 60.0;
/// Longest wait between two retries of a failed revocation (seconds).
const MAX_REVOKE_BACKOFF: f64 = 3600.0;

/// Seconds since the epoch, now.
pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// When a revocation that failed `attempts` times is tried again, counted from the failure: the next `get()`
/// after the first failure, then 30 s, 60 s, ... up to an hour.
pub fn revoke_retry_delay(attempts: u32) -> f64 {
    if attempts <= 1 {
        return 0.0;
    }
    let exp = i32::try_from(attempts - 2).unwrap_or(i32::MAX).min(16);
    (30.0 * 2f64.powi(exp)).min(MAX_REVOKE_BACKOFF)
}

/// A token we minted and have not seen revoked or expired.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Minted {
    /// Its id.
    pub token_id: String,
    /// When it expires, epoch seconds.
    pub expires_at: f64,
}

/// A replaced token still to revoke.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pending {
    /// Its id.
    pub token_id: String,
    /// When it expires anyway, epoch seconds (after that it is dropped, not revoked).
    pub expires_at: f64,
    /// Failed attempts so far.
    #[serde(default)]
    pub attempts: u32,
    /// Not retried before this time, epoch seconds.
    #[serde(default)]
    pub next_attempt_at: f64,
    /// The last failure (never a secret).
    #[serde(default)]
    pub last_error: Option<String>,
    /// When it was replaced, epoch seconds (its grace period counts from then; 0 in older caches).
    #[serde(default)]
    pub replaced_at: f64,
    /// Held by a rotation still installing its replacement: not revoked (not even with `force`) until the
    /// rotation releases it ([`Broker::release_held`]) or it expires.
    #[serde(default)]
    pub held: bool,
}

/// A rotation hook that has not succeeded yet for the installed token (issue 9 item 14): a rotation killed
/// during its hook left CCR on the old token, and the next rotation resumes from the hook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HookPending {
    /// The token written into config.json.
    pub token_id: String,
    /// The token CCR ran with before, if known (released once the hook succeeded).
    #[serde(default)]
    pub replaced_token_id: Option<String>,
}

/// One cache entry: the current token of one host + identity. Not `Debug`: it holds the token.
#[derive(Clone, Serialize, Deserialize)]
pub struct Entry {
    /// Workspace URL.
    pub host: String,
    /// `pat:<sha256 prefix>` or `oauth-m2m:<client id>`.
    pub identity: String,
    /// The token.
    pub token: String,
    /// Its id.
    pub token_id: String,
    /// When we minted it, epoch seconds.
    pub created_at: f64,
    /// When it expires, epoch seconds.
    pub expires_at: f64,
    /// Tokens we minted that may still be live (the current one included).
    #[serde(default)]
    pub minted: Vec<Minted>,
    /// Replaced tokens still to revoke.
    #[serde(default)]
    pub pending: Vec<Pending>,
    /// A rotation wrote this entry's token into CCR's config but its hook (and port wait) has not succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hook_pending: Option<HookPending>,
}

impl Entry {
    /// Every token id this entry records as ours: the current one, `minted` and `pending`.
    fn ids(&self) -> impl Iterator<Item = &String> {
        std::iter::once(&self.token_id)
            .chain(self.minted.iter().map(|m| &m.token_id))
            .chain(self.pending.iter().map(|p| &p.token_id))
            .filter(|id| !id.is_empty())
    }
}

impl CacheFile {
    /// Every token id the cache records (current, minted, pending or held, of every entry): a cleanup never
    /// revokes one of them (issue 9 item 2).
    pub fn protected_ids(&self) -> HashSet<String> {
        self.entries.values().flat_map(Entry::ids).cloned().collect()
    }
}

/// The cache file.
#[derive(Default, Serialize, Deserialize)]
pub struct CacheFile {
    /// [`CACHE_VERSION`].
    pub version: u32,
    /// Entries by `<host> <identity>`.
    #[serde(default)]
    pub entries: BTreeMap<String, Entry>,
}

/// What the bytes of a cache file are.
enum Parsed {
    /// A cache of our format.
    Ours(CacheFile),
    /// A cache written by a newer build (its format number): never overwritten.
    Newer(u32),
    /// Not a cache we can read (the position of the first error, never the text: it may hold a token).
    Corrupt(String),
}

fn parse_cache(bytes: &[u8]) -> Parsed {
    #[derive(Deserialize)]
    struct Version {
        version: Option<serde_json::Value>,
    }
    if let Ok(Version { version: Some(v) }) = serde_json::from_slice::<Version>(bytes)
        && let Some(n) = v.as_u64().filter(|n| *n > u64::from(CACHE_VERSION))
    {
        return Parsed::Newer(u32::try_from(n).unwrap_or(u32::MAX));
    }
    match serde_json::from_slice::<CacheFile>(bytes) {
        Ok(c) if c.version == CACHE_VERSION => Parsed::Ours(c),
        Ok(c) => Parsed::Corrupt(format!("unknown format {}", c.version)),
        Err(e) => Parsed::Corrupt(format!("line {}, column {}", e.line(), e.column())),
    }
}

fn newer_error(path: &Path, version: u32) -> Error {
    Error::Config(format!(
        "{}: the token cache has format {version}, newer than this build's {CACHE_VERSION}; it was left \
         untouched (upgrade devbox-native, or pass another cache_path)",
        path.display()
    ))
}

/// Read a cache file. A missing file is empty. A file that cannot be trusted (another user's, a symlink of
/// another user, in a folder others can write, not a regular file: see [`crate::fsutil::check_file`]) is not
/// used: a warning, and it reads as empty. A corrupt file reads as empty with a warning (the next write keeps
/// it aside, see [`save_cache`]); a newer format is an error (never overwritten). Other I/O errors are errors.
pub fn load_cache(path: &Path) -> Result<CacheFile> {
    let bytes = match read_private(path)? {
        Private::Missing => return Ok(CacheFile::default()),
        Private::Data(b) => b,
        Private::Untrusted(f) => {
            log::warn!(
                "not using the token cache {}: {} is {}",
                path.display(),
                f.path.display(),
                f.problem
            );
            return Ok(CacheFile::default());
        }
    };
    match parse_cache(&bytes) {
        Parsed::Ours(c) => Ok(c),
        Parsed::Newer(v) => Err(newer_error(path, v)),
        Parsed::Corrupt(why) => {
            log::warn!("{}: not a token cache ({why}); starting afresh", path.display());
            Ok(CacheFile::default())
        }
    }
}

/// Write a cache file; call with its lock held. A corrupt file in the way is kept aside first, as
/// `<name>.corrupt-<epoch ms>` (0600), so the entries it held can still be recovered by hand; a newer format
/// is never overwritten (an error). A file another user owns is replaced, never read.
pub fn save_cache(path: &Path, cache: &CacheFile) -> Result<()> {
    let target = secure_file(path, true)?;
    if let Private::Data(bytes) = read_private(&target)? {
        match parse_cache(&bytes) {
            Parsed::Ours(_) => {}
            Parsed::Newer(v) => return Err(newer_error(path, v)),
            Parsed::Corrupt(why) => {
                let mut name = target.file_name().unwrap_or_default().to_os_string();
                name.push(format!(".corrupt-{}", hygiene::now_ms()));
                let aside = target.with_file_name(name);
                std::fs::rename(&target, &aside).map_err(|e| Error::io("keep aside", &target, e))?;
                std::fs::set_permissions(
                    &aside,
                    <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(FILE_MODE),
                )
                .map_err(|e| Error::io("change the mode of", &aside, e))?;
                log::warn!(
                    "{}: not a token cache ({why}); kept it as {} and started afresh",
                    path.display(),
                    aside.display()
                );
            }
        }
    }
    let text = serde_json::to_vec_pretty(cache)
        .map_err(|e| Error::Config(format!("cannot serialise the token cache: {e}")))?;
    write_private(&target, &text)
}

/// Every token id a cache file records (current, minted, pending, held): what a cleanup must keep.
/// A cache that cannot be trusted or read is an error here, not an empty set: a cleanup that cannot see which
/// tokens to keep must not revoke any.
pub fn protected_token_ids(path: &Path) -> Result<HashSet<String>> {
    if let Private::Untrusted(f) = read_private(path)? {
        return Err(Error::Config(format!(
            "cannot tell which tokens the cache {} protects: {} is {}",
            path.display(),
            f.path.display(),
            f.problem
        )));
    }
    Ok(load_cache(path)?.protected_ids())
}

/// The default cache file: `$XDG_CACHE_HOME/devbox-native/token.json` (when absolute), else
/// `~/.cache/devbox-native/token.json`. Both variables are taken as bytes: a path that is not UTF-8 is kept
/// exactly.
pub fn default_cache_path(env: &dyn Env) -> Result<PathBuf> {
    if let Some(xdg) = env.var_os("XDG_CACHE_HOME").filter(|v| Path::new(v).is_absolute()) {
        return Ok(PathBuf::from(xdg).join("devbox-native").join("token.json"));
    }
    let home = env
        .var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .or_else(std::env::home_dir)
        .ok_or_else(|| Error::Config("cannot find the home folder (HOME is not set): pass cache_path".into()))?;
    Ok(home.join(".cache").join("devbox-native").join("token.json"))
}

fn sha256_hex_prefix(data: &str, chars: usize) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, data.as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect::<String>()[..chars].to_string()
}

/// The principal a configuration authenticates as, without secrets: the identity part of the cache key, so two
/// principals never share a cached token (issue 9 item 1). Per strategy:
/// `pat:<16 hex of sha256(token)>`, `oauth-m2m:<client id>`, `basic:<username>`,
/// `env-oidc:<client id>:<16 hex of sha256(issuer, subject)>` (of the ID token's `iss` and `sub` claims; of the
/// whole token when it is not a readable JWT), `file-oidc:<client id>:<token file>`,
/// `metadata-service:<16 hex of sha256(URL)>`, and `databricks-cli:<16 hex of sha256(CLI path or PATH, profile,
/// config file, account id)>`; any other strategy `<name>:<16 hex of sha256(all its settings)>`.
pub fn identity(config: &Config) -> String {
    let get = |name: &str| config.get(name).unwrap_or_default();
    let hash = |parts: &[&str]| sha256_hex_prefix(&parts.join("\n"), 16);
    match config.get("auth_type") {
        Some("pat") => format!("pat:{}", hash(&[get("token")])),
        Some("oauth-m2m") => format!("oauth-m2m:{}", get("client_id")),
        Some("basic") => format!("basic:{}", get("username")),
        Some("env-oidc") => {
            let token = config
                .ambient
                .oidc_token
                .as_ref()
                .map(Secret::expose)
                .unwrap_or_default();
            let subject = match jwt_subject(token) {
                Some((iss, sub)) => hash(&[&iss, &sub]),
                None => hash(&[token]),
            };
            format!("env-oidc:{}:{subject}", get("client_id"))
        }
        Some("file-oidc") => {
            let file = get("oidc_token_filepath");
            let file = std::path::absolute(file).map_or_else(|_| file.to_string(), |p| p.display().to_string());
            format!("file-oidc:{}:{file}", get("client_id"))
        }
        Some("metadata-service") => format!("metadata-service:{}", hash(&[get("metadata_service_url")])),
        Some("databricks-cli") => {
            let cli = match config.get("databricks_cli_path") {
                Some(p) => p.to_string(),
                None => format!("PATH={}", config.ambient.path.as_deref().unwrap_or_default()),
            };
            let parts = [cli.as_str(), get("profile"), get("config_file"), get("account_id")];
            format!("databricks-cli:{}", hash(&parts))
        }
        Some(other) => {
            let key = config.identity_key();
            let all: Vec<&str> = key.iter().map(|v| v.as_deref().unwrap_or_default()).collect();
            format!("{other}:{}", hash(&all))
        }
        None => "unknown".to_string(),
    }
}

/// The `iss` and `sub` claims of a JWT (not verified: they only tell principals apart).
fn jwt_subject(token: &str) -> Option<(String, String)> {
    use base64::Engine as _;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let claim = |name: &str| claims.get(name).and_then(serde_json::Value::as_str).map(str::to_string);
    Some((claim("iss").unwrap_or_default(), claim("sub")?))
}

/// What the broker hands out.
#[derive(Debug, Clone)]
pub struct Lease {
    /// The token.
    pub token: Secret,
    /// Its id.
    pub token_id: String,
    /// When it was minted, epoch seconds.
    pub created_at: f64,
    /// When it expires, epoch seconds.
    pub expires_at: f64,
}

impl Lease {
    fn of(e: &Entry) -> Lease {
        Lease {
            token: Secret::new(e.token.clone()),
            token_id: e.token_id.clone(),
            created_at: e.created_at,
            expires_at: e.expires_at,
        }
    }
}

/// The outcome of one revocation round.
#[derive(Debug, Default, Clone)]
pub struct RevokeReport {
    /// Ids revoked now (or found already gone).
    pub revoked: Vec<String>,
    /// Ids that failed, with the error (they stay pending).
    pub failed: Vec<(String, Error)>,
}

/// Broker settings.
#[derive(Debug, Clone)]
pub struct Options {
    /// Lifetime of minted tokens, seconds.
    pub lifetime_seconds: i64,
    /// Refresh when less than this is left, seconds.
    pub refresh_margin: i64,
    /// The cache file.
    pub cache_path: PathBuf,
    /// Comment prefix of minted tokens (also what `auto_cleanup` revokes).
    pub comment_prefix: String,
    /// On `QUOTA_EXCEEDED`, revoke our stale tokens and retry once.
    pub auto_cleanup: bool,
    /// A replaced token is revoked no sooner than this many seconds after it was replaced.
    pub revoke_grace: i64,
    /// Which token to hand out.
    pub kind: Kind,
}

/// A token broker for one workspace identity (cheap to clone: settings only).
#[derive(Clone)]
pub struct Broker {
    config: Config,
    key: String,
    identity: String,
    kind: Kind,
    strategy: &'static str,
    opts: Options,
}

impl Broker {
    /// Check the options and the credentials (no network).
    pub fn new(mut config: Config, opts: Options) -> Result<Broker> {
        check_lifetime("lifetime_seconds", opts.lifetime_seconds)?;
        if opts.refresh_margin < 0 || opts.refresh_margin >= opts.lifetime_seconds {
            return Err(Error::invalid(
                "refresh_margin",
                format!(
                    "must be at least 0 and less than lifetime_seconds ({}), got {}",
                    opts.lifetime_seconds, opts.refresh_margin
                ),
            ));
        }
        if opts.revoke_grace < 0 {
            return Err(Error::invalid(
                "revoke_grace",
                format!("must be zero or more seconds, got {}", opts.revoke_grace),
            ));
        }
        if opts.comment_prefix.is_empty() || opts.comment_prefix.chars().any(char::is_control) {
            return Err(Error::invalid(
                "comment_prefix",
                "must be non-empty, without control characters",
            ));
        }
        let credentials = default::resolve(&config)?;
        let auth_type = credentials.auth_type();
        let kind = match opts.kind {
            Kind::Auto if credentials.yields_oauth() => Kind::Oauth,
            Kind::Auto => Kind::Pat,
            Kind::Oauth if !credentials.yields_oauth() => {
                return Err(Error::Config(format!(
                    "kind='oauth': the {auth_type} strategy yields no OAuth token (use kind='pat' or 'auto')"
                )));
            }
            k => k,
        };
        config.set("auth_type", auth_type);
        let host = config.host().unwrap_or_default().to_string();
        let identity = identity(&config);
        Ok(Broker {
            key: format!("{host} {}:{identity}", kind.as_str()),
            identity,
            kind,
            strategy: auth_type,
            config,
            opts,
        })
    }

    /// The settings.
    pub fn options(&self) -> &Options {
        &self.opts
    }

    /// The workspace URL.
    pub fn host(&self) -> &str {
        self.config.host().unwrap_or_default()
    }

    /// The identity part of the cache key (no secret).
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// The kind of token handed out (`Oauth` or `Pat`, never `Auto`).
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The credentials strategy the tokens come from (`oauth-m2m`, `pat`, ...).
    pub fn strategy(&self) -> &'static str {
        self.strategy
    }

    fn load(&self) -> Result<CacheFile> {
        load_cache(&self.opts.cache_path)
    }

    fn save(&self, cache: &CacheFile) -> Result<()> {
        save_cache(&self.opts.cache_path, cache)
    }

    async fn lock(&self) -> Result<FileLock> {
        let path = self.opts.cache_path.clone();
        // Wait for another process's mint no longer than this call would wait for the server.
        let wait = crate::fsutil::lock_wait(self.config.retry_timeout);
        // The checks and flock block: keep them off the async workers.
        tokio::task::spawn_blocking(move || {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                secure_dir(dir)?;
            }
            // Refused here, before anything is minted: a folder or symlink another user controls. A file of
            // another owner in our own folder is only replaced.
            let target = secure_file(&path, true)?;
            let lock = FileLock::acquire_within(&target, wait)?;
            // Holding the lock, no other writer of the cache is midway: remove what a killed one left behind.
            sweep_leftovers(&target);
            Ok(lock)
        })
        .await
        .map_err(|e| Error::Config(format!("the lock task failed: {e}")))?
    }

    /// The cached token of this identity, fresh or not (no lock, no network).
    pub fn current(&self) -> Result<Option<Lease>> {
        Ok(self
            .load()?
            .entries
            .get(&self.key)
            .filter(|e| !e.token.is_empty())
            .map(Lease::of))
    }

    /// The hook a rotation left unfinished for this identity's token, if any.
    pub fn hook_pending(&self) -> Result<Option<HookPending>> {
        Ok(self.load()?.entries.get(&self.key).and_then(|e| e.hook_pending.clone()))
    }

    /// Record (`Some`) or clear (`None`, only when it names `token_id`) the unfinished hook of `token_id`.
    pub async fn set_hook_pending(&self, token_id: &str, pending: Option<HookPending>) -> Result<()> {
        let _lock = self.lock().await?;
        let mut cache = self.load()?;
        let Some(entry) = cache.entries.get_mut(&self.key) else {
            return Ok(());
        };
        match pending {
            Some(p) => entry.hook_pending = Some(p),
            None if entry.hook_pending.as_ref().is_some_and(|h| h.token_id == token_id) => entry.hook_pending = None,
            None => return Ok(()),
        }
        self.save(&cache)
    }

    /// End every hold on this identity's replaced tokens (a rotation installed their replacement): each is
    /// then revoked once its grace period is over. Returns how many were held.
    pub async fn release_held(&self) -> Result<usize> {
        let peek = self.load()?;
        if !peek
            .entries
            .get(&self.key)
            .is_some_and(|e| e.pending.iter().any(|p| p.held))
        {
            return Ok(0);
        }
        let _lock = self.lock().await?;
        let mut cache = self.load()?;
        let grace = self.grace();
        let Some(entry) = cache.entries.get_mut(&self.key) else {
            return Ok(0);
        };
        let mut released = 0;
        for p in entry.pending.iter_mut().filter(|p| p.held) {
            p.held = false;
            p.next_attempt_at = p.replaced_at + grace;
            released += 1;
        }
        self.save(&cache)?;
        Ok(released)
    }

    fn grace(&self) -> f64 {
        #[allow(clippy::cast_precision_loss)]
        let grace = self.opts.revoke_grace as f64;
        grace
    }

    /// Ids of the replaced tokens still waiting to be revoked.
    pub fn pending(&self) -> Result<Vec<Pending>> {
        Ok(self
            .load()?
            .entries
            .get(&self.key)
            .map(|e| e.pending.clone())
            .unwrap_or_default())
    }

    fn fresh<'a>(&self, cache: &'a CacheFile, at: f64) -> Option<&'a Entry> {
        #[allow(clippy::cast_precision_loss)]
        let margin = self.opts.refresh_margin as f64;
        cache
            .entries
            .get(&self.key)
            .filter(|e| !e.token.is_empty() && e.expires_at - at > margin)
    }

    fn has_due(&self, cache: &CacheFile, at: f64) -> bool {
        cache
            .entries
            .get(&self.key)
            .is_some_and(|e| e.pending.iter().any(|p| p.next_attempt_at <= at || p.expires_at <= at))
    }

    /// The cached token when `get()` would return it without any network call or lock (fresh, and no
    /// revocation due): the fast path, which needs no async runtime.
    pub fn fast_path(&self) -> Result<Option<Lease>> {
        let cache = self.load()?;
        let at = now();
        Ok(self
            .fresh(&cache, at)
            .filter(|_| !self.has_due(&cache, at))
            .map(Lease::of))
    }

    /// A token with more than the margin left: the cached one, or a new one minted (once across processes).
    pub async fn get(&self) -> Result<Lease> {
        let cache = self.load()?;
        if let Some(e) = self.fresh(&cache, now()) {
            let lease = Lease::of(e);
            if self.has_due(&cache, now()) {
                self.revoke_quietly().await;
            }
            return Ok(lease);
        }
        let lock = self.lock().await?;
        let mut cache = self.load()?;
        if let Some(e) = self.fresh(&cache, now()) {
            let lease = Lease::of(e);
            drop(lock);
            if self.has_due(&cache, now()) {
                self.revoke_quietly().await;
            }
            return Ok(lease);
        }
        let old = cache.entries.get(&self.key).map(Lease::of);
        match self.obtain_locked(&mut cache, false).await {
            Ok(lease) => {
                drop(lock);
                self.revoke_quietly().await;
                Ok(lease)
            }
            Err(e) => {
                drop(lock);
                // Inside the margin the old token still works: better than failing.
                match old.filter(|o| o.expires_at - now() > 0.0) {
                    Some(o) => {
                        log::warn!(
                            "could not mint a new token ({e}); using the current one, which expires in {:.0} s",
                            o.expires_at - now()
                        );
                        Ok(o)
                    }
                    None => Err(e),
                }
            }
        }
    }

    /// Mint a new token now, whatever the cache holds; the one it replaces is revoked after its grace period.
    /// With `replacing`, mint only if the cached token is still that id (another process may have replaced it
    /// already: then its token is returned).
    pub async fn force_refresh(&self, replacing: Option<&str>) -> Result<Lease> {
        let lease = self.replace(replacing, false).await?;
        self.revoke_quietly().await;
        Ok(lease)
    }

    /// Like [`Broker::force_refresh`], but the replaced token is not revoked yet: its pending entry is held
    /// (not due, for this or any other process, until it expires), so whoever still uses it (a CCR server not
    /// restarted yet) keeps working. The caller revokes it with `revoke_pending(true)` once nothing uses it.
    pub async fn rotate(&self, replacing: Option<&str>) -> Result<Lease> {
        self.replace(replacing, true).await
    }

    async fn replace(&self, replacing: Option<&str>, hold: bool) -> Result<Lease> {
        let _lock = self.lock().await?;
        let mut cache = self.load()?;
        if let Some(r) = replacing
            && let Some(e) = cache.entries.get(&self.key)
            && e.token_id != r
            && e.expires_at > now()
        {
            return Ok(Lease::of(e));
        }
        self.obtain_locked(&mut cache, hold).await
    }

    /// A new token of the broker's kind, stored in the cache. Call with the lock held.
    async fn obtain_locked(&self, cache: &mut CacheFile, hold: bool) -> Result<Lease> {
        match self.kind {
            Kind::Oauth => self.fetch_oauth_locked(cache).await,
            Kind::Pat | Kind::Auto => self.mint_locked(cache, hold).await,
        }
    }

    /// Fetch a new OAuth access token and store it (nothing to mint, nothing to revoke). Call with the lock held.
    async fn fetch_oauth_locked(&self, cache: &mut CacheFile) -> Result<Lease> {
        let shared = crate::runtime::shared()?;
        let credentials = default::resolve(&self.config)?;
        let token = credentials
            .fetch_new(&shared.http, &self.config)
            .await?
            .ok_or_else(|| Error::Config(format!("the {} strategy yields no OAuth token", self.strategy)))?;
        let left = token
            .expires
            .saturating_duration_since(std::time::Instant::now())
            .as_secs_f64();
        let header = token.header.expose();
        let value = header
            .split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map_or(header, |(_, v)| v.trim());
        let at = now();
        let entry = Entry {
            host: self.host().to_string(),
            identity: self.identity.clone(),
            token: value.to_string(),
            // Not a secret: a short hash, so `force_refresh(replacing=...)` can name the token it replaces.
            token_id: format!("oauth-{}", sha256_hex_prefix(value, 16)),
            created_at: at,
            expires_at: at + left,
            minted: Vec::new(),
            pending: Vec::new(),
            hook_pending: None,
        };
        cache.version = CACHE_VERSION;
        cache.entries.insert(self.key.clone(), entry.clone());
        self.save(cache)?;
        #[allow(clippy::cast_precision_loss)]
        if left <= self.opts.refresh_margin as f64 {
            log::warn!(
                "the OAuth token of {} lives {left:.0} s, not more than refresh_margin ({} s)",
                self.host(),
                self.opts.refresh_margin
            );
        }
        log::info!(
            "fetched an OAuth token ({}) for {} (expires in {left:.0} s)",
            self.strategy,
            self.host()
        );
        Ok(Lease::of(&entry))
    }

    /// Mint, store the new token and queue the old one for revocation (held until it expires with `hold`).
    /// Call with the lock held.
    async fn mint_locked(&self, cache: &mut CacheFile, hold: bool) -> Result<Lease> {
        let started = now();
        let ws = Workspace::new(self.config.clone())?;
        let comment = format!("{}broker-{}", self.opts.comment_prefix, hygiene::now_ms());
        let auto = self.opts.auto_cleanup.then(|| {
            let mut c = Cleanup::ours(cache.protected_ids());
            c.comment_prefix.clone_from(&self.opts.comment_prefix);
            c
        });
        // The request runs in its own task: when the caller is cancelled (`stop()`, asyncio) after the server
        // created the token, the answer is still received, recorded as pending and revoked (MintGuard).
        let lifetime_seconds = self.opts.lifetime_seconds;
        let task = tokio::spawn(async move {
            hygiene::create_token(&ws, Some(lifetime_seconds), Some(&comment), auto.as_ref()).await
        });
        let mut guard = MintGuard {
            broker: self.clone(),
            task: Some(task),
            started,
        };
        let created = guard.wait().await?;
        let ws = Workspace::new(self.config.clone())?;
        // The workspace may cap the lifetime (maxTokenLifetimeDays); its clock may differ from ours, so only the
        // granted duration is used, counted from before the request.
        #[allow(clippy::cast_precision_loss)]
        let mut lifetime = self.opts.lifetime_seconds as f64;
        let info = &created.info;
        if info.expiry_time > 0 && info.creation_time > 0 {
            #[allow(clippy::cast_precision_loss)]
            let granted = (info.expiry_time - info.creation_time) as f64 / 1000.0;
            lifetime = lifetime.min(granted);
        }
        let entry = Entry {
            host: self.host().to_string(),
            identity: self.identity.clone(),
            token: created.value.expose().to_string(),
            token_id: info.token_id.clone(),
            created_at: started,
            expires_at: started + lifetime,
            minted: Vec::new(),
            pending: Vec::new(),
            hook_pending: None,
        };
        let at = now();
        let mut next = entry.clone();
        if let Some(old) = cache.entries.remove(&self.key) {
            next.minted = old.minted;
            next.pending = old.pending;
            next.hook_pending = old.hook_pending;
            let ours = next.minted.iter().any(|m| m.token_id == old.token_id);
            if ours && !old.token_id.is_empty() && !next.pending.iter().any(|p| p.token_id == old.token_id) {
                next.pending.push(Pending {
                    token_id: old.token_id,
                    expires_at: old.expires_at,
                    attempts: 0,
                    next_attempt_at: if hold { old.expires_at } else { at + self.grace() },
                    last_error: None,
                    replaced_at: at,
                    held: hold,
                });
            } else if !ours && !old.token_id.is_empty() {
                log::warn!("not revoking token {}: this broker did not mint it", old.token_id);
            }
        }
        next.minted.retain(|m| m.expires_at > at);
        if !entry.token_id.is_empty() {
            next.minted.push(Minted {
                token_id: entry.token_id.clone(),
                expires_at: entry.expires_at,
            });
        }
        cache.version = CACHE_VERSION;
        cache.entries.insert(self.key.clone(), next);
        if let Err(e) = self.save(cache) {
            // Not recorded means never revoked later: revoke it now rather than leak it.
            if !entry.token_id.is_empty() {
                let _ = tokens::delete(&ws, &entry.token_id).await;
            }
            return Err(e);
        }
        log::info!(
            "minted token {} for {} (expires in {:.0} s)",
            entry.token_id,
            self.host(),
            lifetime
        );
        Ok(Lease::of(&entry))
    }

    async fn revoke_quietly(&self) {
        match self.revoke_pending(false).await {
            Ok(r) => {
                for (id, err) in r.failed {
                    log::warn!("could not revoke replaced token {id} (will retry later): {err}");
                }
            }
            Err(e) => log::warn!("could not revoke replaced tokens (will retry later): {e}"),
        }
    }

    /// Revoke the pending tokens that are due (with `force`, all of them except those a rotation holds).
    /// Failures stay pending, with back-off.
    pub async fn revoke_pending(&self, force: bool) -> Result<RevokeReport> {
        let at = now();
        let peek = self.load()?;
        let due = |p: &Pending| (force && !p.held) || p.next_attempt_at <= at || p.expires_at <= at;
        if !peek.entries.get(&self.key).is_some_and(|e| e.pending.iter().any(due)) {
            return Ok(RevokeReport::default());
        }
        // Claim the due ones (so other processes leave them alone for a while), then revoke without the lock.
        let claimed: Vec<String> = {
            let _lock = self.lock().await?;
            let mut cache = self.load()?;
            let Some(entry) = cache.entries.get_mut(&self.key) else {
                return Ok(RevokeReport::default());
            };
            let minted: HashSet<String> = entry.minted.iter().map(|m| m.token_id.clone()).collect();
            let mut expired = Vec::new();
            entry.pending.retain(|p| {
                // Expired tokens no longer count; ids we did not mint are never revoked.
                let keep = p.expires_at > at && minted.contains(&p.token_id);
                if !keep {
                    expired.push(p.token_id.clone());
                }
                keep
            });
            entry.minted.retain(|m| !expired.contains(&m.token_id));
            let mut claimed = Vec::new();
            for p in entry
                .pending
                .iter_mut()
                .filter(|p| (force && !p.held) || p.next_attempt_at <= at)
            {
                p.next_attempt_at = at + REVOKE_LEASE;
                claimed.push(p.token_id.clone());
            }
            self.save(&cache)?;
            claimed
        };
        let mut report = RevokeReport::default();
        if claimed.is_empty() {
            return Ok(report);
        }
        let mut quick = self.config.clone();
        quick.retry_timeout = quick.retry_timeout.min(REVOKE_BUDGET);
        quick.http_timeout = quick.http_timeout.min(REVOKE_BUDGET);
        match Workspace::new(quick) {
            Ok(ws) => {
                for id in claimed {
                    match tokens::delete(&ws, &id).await {
                        Ok(()) => report.revoked.push(id),
                        Err(e) if is_already_gone(&e) => report.revoked.push(id),
                        Err(e) => report.failed.push((id, e)),
                    }
                }
            }
            Err(e) => report.failed = claimed.into_iter().map(|id| (id, e.clone())).collect(),
        }
        let _lock = self.lock().await?;
        let mut cache = self.load()?;
        if let Some(entry) = cache.entries.get_mut(&self.key) {
            let done: HashSet<&String> = report.revoked.iter().collect();
            entry.pending.retain(|p| !done.contains(&p.token_id));
            entry.minted.retain(|m| !done.contains(&m.token_id));
            let failed_at = now();
            for (id, err) in &report.failed {
                if let Some(p) = entry.pending.iter_mut().find(|p| &p.token_id == id) {
                    p.attempts += 1;
                    p.next_attempt_at = failed_at + revoke_retry_delay(p.attempts);
                    p.last_error = Some(err.to_string());
                }
            }
            self.save(&cache)?;
        }
        for id in &report.revoked {
            log::info!("revoked replaced token {id}");
        }
        Ok(report)
    }
}

/// A mint request in flight. Dropped before its answer (the caller was cancelled), it leaves a task behind that
/// waits for the answer and, when a token was created, records it as minted and pending (due at once) and
/// revokes it: a token nobody will use is never left live and unrecorded.
struct MintGuard {
    broker: Broker,
    task: Option<tokio::task::JoinHandle<Result<tokens::CreatedToken>>>,
    started: f64,
}

impl MintGuard {
    async fn wait(&mut self) -> Result<tokens::CreatedToken> {
        let Some(task) = self.task.as_mut() else {
            return Err(Error::Config("the mint was already answered".into()));
        };
        let answer = task.await;
        self.task = None;
        answer.map_err(|e| Error::Transport(format!("the mint task failed: {e}")))?
    }
}

impl Drop for MintGuard {
    fn drop(&mut self) {
        let Some(task) = self.task.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            log::warn!("a cancelled mint cannot be followed (no runtime): its token may stay live until it expires");
            return;
        };
        let broker = self.broker.clone();
        let started = self.started;
        runtime.spawn(async move {
            if let Ok(Ok(created)) = task.await {
                broker.revoke_orphan(&created, started).await;
            }
        });
    }
}

impl Broker {
    /// Record a token minted for a cancelled caller as minted and pending (due now), then revoke it.
    async fn revoke_orphan(&self, created: &tokens::CreatedToken, started: f64) {
        let id = created.info.token_id.clone();
        if id.is_empty() {
            return;
        }
        #[allow(clippy::cast_precision_loss)]
        let expires_at = started + self.opts.lifetime_seconds as f64;
        let recorded = async {
            let _lock = self.lock().await?;
            let mut cache = self.load()?;
            let entry = cache.entries.entry(self.key.clone()).or_insert_with(|| Entry {
                host: self.host().to_string(),
                identity: self.identity.clone(),
                token: String::new(),
                token_id: String::new(),
                created_at: 0.0,
                expires_at: 0.0,
                minted: Vec::new(),
                pending: Vec::new(),
                hook_pending: None,
            });
            entry.minted.push(Minted {
                token_id: id.clone(),
                expires_at,
            });
            entry.pending.push(Pending {
                token_id: id.clone(),
                expires_at,
                attempts: 0,
                next_attempt_at: 0.0,
                last_error: Some("minted for a caller that was cancelled".into()),
                replaced_at: now(),
                held: false,
            });
            cache.version = CACHE_VERSION;
            self.save(&cache)
        };
        match recorded.await {
            Ok(()) => {
                log::info!("token {id} was minted for a cancelled caller: revoking it");
                self.revoke_quietly().await;
            }
            Err(e) => {
                log::warn!("token {id} was minted for a cancelled caller and cannot be recorded ({e}): revoking it");
                if let Ok(ws) = Workspace::new(self.config.clone()) {
                    let _ = tokens::delete(&ws, &id).await;
                }
            }
        }
    }
}

/// The lock a rotation holds on its broker cache for its whole life (issue 9 item 15): two rotations on one
/// cache would revoke the token the other one is installing. The file `<cache>.rotation.lock` (0600) holds the
/// holder's pid; the lock (`flock`) goes with the process, so a killed rotation leaves nothing to clean.
#[derive(Debug)]
pub struct RotationLock {
    file: std::fs::File,
}

impl Drop for RotationLock {
    fn drop(&mut self) {
        let _ = self.file.unlock();
    }
}

impl Broker {
    /// Take this cache's rotation lock, or fail at once naming the pid of the rotation that holds it.
    pub fn lock_rotation(&self) -> Result<RotationLock> {
        use std::io::{Read, Seek, Write};
        use std::os::unix::fs::OpenOptionsExt;
        // The same trust rule as the cache itself: our folder, no link another user controls.
        if let Some(dir) = self.opts.cache_path.parent().filter(|d| !d.as_os_str().is_empty()) {
            secure_dir(dir)?;
        }
        let target = secure_file(&self.opts.cache_path, true)?;
        let mut name = target
            .file_name()
            .map(std::ffi::OsStr::to_os_string)
            .unwrap_or_default();
        name.push(".rotation.lock");
        let path = target.with_file_name(name);
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(|e| Error::io("open the rotation lock", &path, e))?;
        match file.try_lock() {
            Ok(()) => {
                let pid = std::process::id().to_string();
                let written = file
                    .set_len(0)
                    .and_then(|()| file.rewind())
                    .and_then(|()| file.write_all(pid.as_bytes()));
                written.map_err(|e| Error::io("write", &path, e))?;
                Ok(RotationLock { file })
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.take(32).read_to_string(&mut text);
                let holder = text
                    .trim()
                    .parse::<u32>()
                    .map_or_else(|_| "unknown".into(), |p| p.to_string());
                Err(Error::Busy(format!(
                    "another rotation (pid {holder}) is running on the broker cache {}: run one rotation per cache",
                    self.opts.cache_path.display()
                )))
            }
            Err(std::fs::TryLockError::Error(e)) => Err(Error::io("lock", &path, e)),
        }
    }
}

/// Default broker options with this cache file.
pub fn options(cache_path: PathBuf) -> Options {
    Options {
        lifetime_seconds: DEFAULT_LIFETIME,
        refresh_margin: DEFAULT_MARGIN,
        cache_path,
        comment_prefix: COMMENT_PREFIX.to_string(),
        auto_cleanup: false,
        revoke_grace: DEFAULT_REVOKE_GRACE,
        kind: Kind::Pat,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Config {
        let env: HashMap<String, String> = pairs.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
        Config::resolve(&[], &env).unwrap()
    }

    #[test]
    fn keys_separate_hosts_and_identities_without_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let opts = options(dir.path().join("t.json"));
        let a = Broker::new(
            config(&[("DATABRICKS_HOST", "a"), ("DATABRICKS_TOKEN", "s3cret-1")]),
            opts.clone(),
        );
        let b = Broker::new(
            config(&[("DATABRICKS_HOST", "b"), ("DATABRICKS_TOKEN", "s3cret-1")]),
            opts.clone(),
        );
        let c = Broker::new(
            config(&[("DATABRICKS_HOST", "a"), ("DATABRICKS_TOKEN", "s3cret-2")]),
            opts.clone(),
        );
        let m = Broker::new(
            config(&[
                ("DATABRICKS_HOST", "a"),
                ("DATABRICKS_CLIENT_ID", "cid"),
                ("DATABRICKS_CLIENT_SECRET", "s3cret-3"),
            ]),
            opts,
        );
        let keys: HashSet<String> = [a, b, c, m].into_iter().map(|x| x.unwrap().key).collect();
        assert_eq!(keys.len(), 4);
        assert!(keys.contains("https://a pat:oauth-m2m:cid"));
        assert!(keys.iter().all(|k| !k.contains("s3cret")), "{keys:?}");
    }

    #[test]
    fn every_strategy_keys_on_its_principal() {
        use base64::Engine as _;
        let jwt = |sub: &str, exp: u64| {
            let claims = format!(r#"{{"iss":"https://idp","sub":"{sub}","exp":{exp}}}"#);
            let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
            format!("h.{}.sig", b64.encode(claims))
        };
        let of = |auth: &str, pairs: &[(&str, &str)], oidc: Option<String>| {
            let mut c = config(&[("DATABRICKS_HOST", "a")]);
            for (k, v) in pairs {
                c.set(k, *v);
            }
            c.set("auth_type", auth);
            c.ambient.oidc_token = oidc.map(Secret::new);
            identity(&c)
        };
        let alice = of("basic", &[("username", "alice"), ("password", "pw-secret")], None);
        let bob = of("basic", &[("username", "bob"), ("password", "pw-secret")], None);
        assert_eq!(alice, "basic:alice");
        assert_ne!(alice, bob);
        // The same OIDC subject with a new ID token is the same principal; another subject is not.
        let s1 = of("env-oidc", &[("client_id", "sp")], Some(jwt("repo:a", 1)));
        assert_eq!(s1, of("env-oidc", &[("client_id", "sp")], Some(jwt("repo:a", 2))));
        assert_ne!(s1, of("env-oidc", &[("client_id", "sp")], Some(jwt("repo:b", 1))));
        assert_ne!(s1, of("env-oidc", &[("client_id", "sp2")], Some(jwt("repo:a", 1))));
        assert_ne!(
            of("env-oidc", &[], Some("opaque-1".into())),
            of("env-oidc", &[], Some("opaque-2".into()))
        );
        assert_eq!(
            of(
                "file-oidc",
                &[("client_id", "sp"), ("oidc_token_filepath", "/run/t1")],
                None
            ),
            "file-oidc:sp:/run/t1"
        );
        assert_ne!(
            of("file-oidc", &[("oidc_token_filepath", "/run/t1")], None),
            of("file-oidc", &[("oidc_token_filepath", "/run/t2")], None)
        );
        let md = of(
            "metadata-service",
            &[("metadata_service_url", "http://127.0.0.1:1/s3cret-md")],
            None,
        );
        assert_ne!(
            md,
            of(
                "metadata-service",
                &[("metadata_service_url", "http://127.0.0.1:1/other")],
                None
            )
        );
        let cli = |pairs: &[(&str, &str)]| of("databricks-cli", pairs, None);
        let distinct: HashSet<String> = [
            cli(&[]),
            cli(&[("databricks_cli_path", "/opt/a/databricks")]),
            cli(&[("databricks_cli_path", "/opt/b/databricks")]),
            cli(&[("databricks_cli_path", "/opt/a/databricks"), ("profile", "dev")]),
        ]
        .into_iter()
        .collect();
        assert_eq!(distinct.len(), 4);
        let all = [alice, bob, s1, md, cli(&[])].join(" ");
        assert!(
            !all.contains("s3cret") && !all.contains("pw-secret") && !all.contains("repo:a"),
            "{all}"
        );
    }

    #[test]
    fn one_rotation_lock_per_cache_naming_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(&[("DATABRICKS_HOST", "a"), ("DATABRICKS_TOKEN", "t")]);
        let a = Broker::new(cfg.clone(), options(dir.path().join("c").join("t.json"))).unwrap();
        let held = a.lock_rotation().unwrap();
        let err = a.clone().lock_rotation().unwrap_err().to_string();
        assert!(
            err.contains(&format!("another rotation (pid {})", std::process::id())),
            "{err}"
        );
        let other = Broker::new(cfg, options(dir.path().join("c").join("other.json"))).unwrap();
        drop(other.lock_rotation().unwrap());
        drop(held);
        drop(a.lock_rotation().unwrap());
        let lock = std::fs::metadata(dir.path().join("c").join("t.json.rotation.lock")).unwrap();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&lock.permissions()) & 0o777,
            0o600
        );
    }

    #[test]
    fn a_cleanup_keeps_every_id_the_cache_records() {
        let mut cache = CacheFile::default();
        let pending = |id: &str, held: bool| Pending {
            token_id: id.into(),
            expires_at: 10.0,
            attempts: 0,
            next_attempt_at: 0.0,
            last_error: None,
            replaced_at: 0.0,
            held,
        };
        let entry = |id: &str, minted: &[&str], pend: Vec<Pending>| Entry {
            host: "h".into(),
            identity: "i".into(),
            token: "t".into(),
            token_id: id.into(),
            created_at: 0.0,
            expires_at: 10.0,
            minted: minted
                .iter()
                .map(|m| Minted {
                    token_id: (*m).into(),
                    expires_at: 10.0,
                })
                .collect(),
            pending: pend,
            hook_pending: None,
        };
        cache.entries.insert(
            "a".into(),
            entry("cur-a", &["cur-a", "old-a"], vec![pending("old-a", false)]),
        );
        cache
            .entries
            .insert("b".into(), entry("cur-b", &["held-b"], vec![pending("held-b", true)]));
        cache.entries.insert("c".into(), entry("", &[], vec![]));
        let ids: std::collections::BTreeSet<String> = cache.protected_ids().into_iter().collect();
        assert_eq!(
            ids.into_iter().collect::<Vec<_>>(),
            ["cur-a", "cur-b", "held-b", "old-a"]
        );
    }

    #[test]
    fn kinds_resolve_from_the_strategy_and_key_the_entry() {
        let dir = tempfile::tempdir().unwrap();
        let m2m = config(&[
            ("DATABRICKS_HOST", "a"),
            ("DATABRICKS_CLIENT_ID", "cid"),
            ("DATABRICKS_CLIENT_SECRET", "s"),
        ]);
        let pat = config(&[("DATABRICKS_HOST", "a"), ("DATABRICKS_TOKEN", "t")]);
        let with = |kind| Options {
            kind,
            ..options(dir.path().join("t.json"))
        };
        let b = Broker::new(m2m.clone(), with(Kind::Auto)).unwrap();
        assert_eq!(
            (b.kind(), b.strategy(), b.key.as_str()),
            (Kind::Oauth, "oauth-m2m", "https://a oauth:oauth-m2m:cid")
        );
        assert_eq!(Broker::new(m2m, with(Kind::Pat)).unwrap().kind(), Kind::Pat);
        assert_eq!(Broker::new(pat.clone(), with(Kind::Auto)).unwrap().kind(), Kind::Pat);
        let err = Broker::new(pat, with(Kind::Oauth)).err().unwrap().to_string();
        assert!(err.contains("the pat strategy yields no OAuth token"), "{err}");
        assert_eq!(Kind::parse("kind", "oauth").unwrap(), Kind::Oauth);
        assert!(
            Kind::parse("kind", "OAUTH")
                .unwrap_err()
                .to_string()
                .starts_with("kind: ")
        );
        assert_eq!(Kind::Auto.default_margin(true), DEFAULT_OAUTH_MARGIN);
        assert_eq!(Kind::Auto.default_margin(false), DEFAULT_MARGIN);
    }

    #[test]
    fn bad_options_name_their_parameter() {
        let cfg = config(&[("DATABRICKS_HOST", "a"), ("DATABRICKS_TOKEN", "t")]);
        let mut o = options(PathBuf::from("/x"));
        o.refresh_margin = 3600;
        let err = Broker::new(cfg.clone(), o).err().unwrap().to_string();
        assert!(err.starts_with("refresh_margin: "), "{err}");
        let mut o = options(PathBuf::from("/x"));
        o.lifetime_seconds = 0;
        let err = Broker::new(cfg, o).err().unwrap().to_string();
        assert!(err.starts_with("lifetime_seconds: "), "{err}");
    }

    #[test]
    fn retry_delays_back_off_to_an_hour() {
        let d: Vec<f64> = (1..=10).map(revoke_retry_delay).collect();
        assert_eq!(&d[..4], &[0.0, 30.0, 60.0, 120.0]);
        assert!((d[9] - 3600.0).abs() < f64::EPSILON);
    }

    #[test]
    fn default_cache_path_prefers_an_absolute_xdg_cache_home() {
        let env = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect()
        };
        let p = default_cache_path(&env(&[("XDG_CACHE_HOME", "/xdg"), ("HOME", "/h")])).unwrap();
        assert_eq!(p, PathBuf::from("/xdg/devbox-native/token.json"));
        let p = default_cache_path(&env(&[("XDG_CACHE_HOME", "rel"), ("HOME", "/h")])).unwrap();
        assert_eq!(p, PathBuf::from("/h/.cache/devbox-native/token.json"));
    }

    #[test]
    fn a_corrupt_cache_reads_as_empty_and_is_kept_aside_when_written() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.json");
        std::fs::write(&p, "{not json").unwrap();
        assert!(load_cache(&p).unwrap().entries.is_empty());
        save_cache(&p, &CacheFile::default()).unwrap();
        let aside: Vec<PathBuf> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().contains("t.json.corrupt-"))
            .collect();
        assert_eq!(aside.len(), 1, "{aside:?}");
        assert_eq!(std::fs::read(&aside[0]).unwrap(), b"{not json");
        assert_eq!(
            std::fs::metadata(&aside[0]).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(
            protected_token_ids(&dir.path().join("missing.json"))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn a_newer_cache_format_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.json");
        let newer = r#"{"version": 2, "entries": {}, "future": true}"#;
        std::fs::write(&p, newer).unwrap();
        let err = load_cache(&p).err().unwrap().to_string();
        assert!(err.contains("format 2, newer than this build's 1"), "{err}");
        let err = save_cache(&p, &CacheFile::default()).unwrap_err().to_string();
        assert!(err.contains("left untouched"), "{err}");
        assert_eq!(std::fs::read_to_string(&p).unwrap(), newer);
    }

    #[test]
    fn a_non_utf8_home_or_cache_folder_is_kept_as_bytes() {
        use std::ffi::OsString;
        use std::os::unix::ffi::OsStringExt;
        struct Bytes(Vec<(&'static str, OsString)>);
        impl Env for Bytes {
            fn var(&self, name: &str) -> Option<String> {
                self.var_os(name).map(|v| v.to_string_lossy().into_owned())
            }
            fn var_os(&self, name: &str) -> Option<OsString> {
                self.0.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone())
            }
            fn home(&self) -> Option<PathBuf> {
                None
            }
        }
        let raw = |b: &[u8]| OsString::from_vec(b.to_vec());
        let p = default_cache_path(&Bytes(vec![("HOME", raw(b"/h\xff"))])).unwrap();
        assert_eq!(p.into_os_string().into_vec(), b"/h\xff/.cache/devbox-native/token.json");
        let p = default_cache_path(&Bytes(vec![("XDG_CACHE_HOME", raw(b"/x\xfe"))])).unwrap();
        assert_eq!(p.into_os_string().into_vec(), b"/x\xfe/devbox-native/token.json");
    }
}
