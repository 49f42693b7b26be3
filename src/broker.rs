//! The token broker: one short-lived personal access token per workspace identity, shared by every process of
//! the user through a private cache file, refreshed before it expires, and never left behind.
//!
//! **Cache.** A JSON file (mode 0600, folder 0700; default `$XDG_CACHE_HOME/devbox-native/token.json` or
//! `~/.cache/devbox-native/token.json`) with one entry per `host` + identity (`pat:<sha256 prefix of the
//! token>` or `oauth-m2m:<client id>`), so two workspaces or two principals never share a token. An entry holds
//! the current token, its id and expiry, the ids of every token we minted that is still live (`minted`), and
//! the replaced tokens still to revoke (`pending`).
//!
//! **Check-lock-check.** [`Broker::get`] reads the cache without a lock (writes are atomic renames, so a reader
//! sees a whole file) and returns the token while more than `refresh_margin` seconds are left. Otherwise it
//! takes the cache's cross-process lock (`token.json.lock`), reads again (another process may have refreshed
//! meanwhile) and only then mints. So when N processes find the token stale at once, one mints and the others
//! wait for the lock and then read its token.
//!
//! **Revocation.** The replaced token is recorded as pending in the same write that stores the new one; then
//! (lock released) it is revoked with a short budget. A failure stays pending (with `attempts`, `last_error` and
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
use crate::fsutil::{FileLock, ensure_private_dir, file_mode, is_loose, sweep_leftovers, write_private, write_target};
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

/// Read a cache file. A missing file is empty; an unreadable or foreign one is treated as empty with a warning
/// (the next write replaces it); other I/O errors are errors.
pub fn load_cache(path: &Path) -> Result<CacheFile> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(CacheFile::default()),
        Err(e) => return Err(Error::io("read", path, e)),
    };
    match serde_json::from_slice::<CacheFile>(&bytes) {
        Ok(c) if c.version == CACHE_VERSION => Ok(c),
        Ok(c) => {
            log::warn!(
                "{}: cache format {} is not {CACHE_VERSION}; starting afresh",
                path.display(),
                c.version
            );
            Ok(CacheFile::default())
        }
        Err(e) => {
            // Only the position: a type error's message would quote the value, which may be a token.
            log::warn!(
                "{}: not a token cache (line {}, column {}); starting afresh",
                path.display(),
                e.line(),
                e.column()
            );
            Ok(CacheFile::default())
        }
    }
}

/// Ids of the current token of every entry in a cache file (what a cleanup must keep).
pub fn cached_token_ids(path: &Path) -> Result<HashSet<String>> {
    Ok(load_cache(path)?
        .entries
        .into_values()
        .map(|e| e.token_id)
        .filter(|id| !id.is_empty())
        .collect())
}

/// The default cache file: `$XDG_CACHE_HOME/devbox-native/token.json` (when absolute), else
/// `~/.cache/devbox-native/token.json`.
pub fn default_cache_path(env: &dyn Env) -> Result<PathBuf> {
    if let Some(xdg) = env.var("XDG_CACHE_HOME").filter(|v| Path::new(v).is_absolute()) {
        return Ok(PathBuf::from(xdg).join("devbox-native").join("token.json"));
    }
    let home = env
        .var("HOME")
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

/// The identity a configuration authenticates as, without secrets: `pat:<16 hex of sha256(token)>`,
/// `oauth-m2m:<client id>`, or the strategy name.
pub fn identity(config: &Config) -> String {
    match config.get("auth_type") {
        Some("pat") => format!("pat:{}", sha256_hex_prefix(config.get("token").unwrap_or_default(), 16)),
        Some("oauth-m2m") => format!("oauth-m2m:{}", config.get("client_id").unwrap_or_default()),
        Some(other) => other.to_string(),
        None => "unknown".to_string(),
    }
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
    /// Which token to hand out.
    pub kind: Kind,
}

/// A token broker for one workspace identity.
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
        let path = &self.opts.cache_path;
        if let Some(m) = file_mode(path).filter(|m| is_loose(*m)) {
            log::warn!(
                "{} was readable or writable by others (mode {m:04o}); it is now 0600",
                path.display()
            );
        }
        let text = serde_json::to_vec_pretty(cache)
            .map_err(|e| Error::Config(format!("cannot serialise the token cache: {e}")))?;
        write_private(path, &text)
    }

    async fn lock(&self) -> Result<FileLock> {
        let path = self.opts.cache_path.clone();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            ensure_private_dir(dir)?;
        }
        // flock blocks: keep it off the async workers.
        tokio::task::spawn_blocking(move || {
            let lock = FileLock::acquire(&path)?;
            // Holding the lock, no other writer of the cache is midway: remove what a killed one left behind.
            sweep_leftovers(&write_target(&path));
            Ok(lock)
        })
        .await
        .map_err(|e| Error::Config(format!("the lock task failed: {e}")))?
    }

    /// The cached token of this identity, fresh or not (no lock, no network).
    pub fn current(&self) -> Result<Option<Lease>> {
        Ok(self.load()?.entries.get(&self.key).map(Lease::of))
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

    /// Mint a new token now, whatever the cache holds, and revoke the one it replaces. With `replacing`, mint
    /// only if the cached token is still that id (another process may have replaced it already: then its
    /// token is returned).
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
            let mut c = Cleanup::ours(cache.entries.values().map(|e| e.token_id.clone()).collect());
            c.comment_prefix.clone_from(&self.opts.comment_prefix);
            c
        });
        let created =
            hygiene::create_token(&ws, Some(self.opts.lifetime_seconds), Some(&comment), auto.as_ref()).await?;
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
        };
        let at = now();
        let mut next = entry.clone();
        if let Some(old) = cache.entries.remove(&self.key) {
            next.minted = old.minted;
            next.pending = old.pending;
            let ours = next.minted.iter().any(|m| m.token_id == old.token_id);
            if ours && !old.token_id.is_empty() && !next.pending.iter().any(|p| p.token_id == old.token_id) {
                next.pending.push(Pending {
                    token_id: old.token_id,
                    expires_at: old.expires_at,
                    attempts: 0,
                    next_attempt_at: if hold { old.expires_at } else { 0.0 },
                    last_error: None,
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

    /// Revoke the pending tokens that are due (all of them with `force`). Failures stay pending, with back-off.
    pub async fn revoke_pending(&self, force: bool) -> Result<RevokeReport> {
        let at = now();
        let peek = self.load()?;
        let due = |p: &Pending| force || p.next_attempt_at <= at || p.expires_at <= at;
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
            for p in entry.pending.iter_mut().filter(|p| force || p.next_attempt_at <= at) {
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

/// Default broker options with this cache file.
pub fn options(cache_path: PathBuf) -> Options {
    Options {
        lifetime_seconds: DEFAULT_LIFETIME,
        refresh_margin: DEFAULT_MARGIN,
        cache_path,
        comment_prefix: COMMENT_PREFIX.to_string(),
        auto_cleanup: false,
        kind: Kind::Pat,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

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
    fn a_corrupt_cache_reads_as_empty() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.json");
        std::fs::write(&p, "{not json").unwrap();
        assert!(load_cache(&p).unwrap().entries.is_empty());
        std::fs::write(&p, r#"{"version": 99, "entries": {}}"#).unwrap();
        assert!(load_cache(&p).unwrap().entries.is_empty());
        assert!(cached_token_ids(&dir.path().join("missing.json")).unwrap().is_empty());
    }
}
