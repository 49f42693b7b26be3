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

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::api::tokens::{self, check_lifetime};
use crate::auth::default;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::fsutil::{FileLock, secure_dir, secure_file, sweep_leftovers};
use crate::hygiene::{self, COMMENT_PREFIX, Cleanup};
use crate::secret::Secret;
use crate::workspace::Workspace;

mod cache;
mod identity;
mod revoke;
#[cfg(test)]
mod tests;

pub use cache::{
    CACHE_VERSION, CacheFile, Entry, HookPending, Minted, Pending, default_cache_path, load_cache, protected_token_ids,
    save_cache,
};
pub use identity::identity;
use identity::sha256_hex_prefix;
pub use revoke::{DEFAULT_REVOKE_GRACE, REVOKE_BUDGET, RevokeReport, revoke_retry_delay};

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

/// Seconds since the epoch, now.
pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
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

    fn fresh<'a>(&self, cache: &'a CacheFile, at: f64) -> Option<&'a Entry> {
        #[allow(clippy::cast_precision_loss)]
        let margin = self.opts.refresh_margin as f64;
        cache
            .entries
            .get(&self.key)
            .filter(|e| !e.token.is_empty() && e.expires_at - at > margin)
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
