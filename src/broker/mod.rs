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

use crate::api::tokens::check_lifetime;
use crate::auth::default;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::fsutil::{FileLock, secure_dir, secure_file, sweep_leftovers};
use crate::hygiene::COMMENT_PREFIX;
use crate::secret::Secret;

mod cache;
mod identity;
mod mint;
mod revoke;
mod rotation_lock;
#[cfg(test)]
mod tests;

pub use cache::{
    CACHE_VERSION, CacheFile, Entry, HookPending, Minted, Pending, default_cache_path, load_cache, protected_token_ids,
    save_cache,
};
pub use identity::identity;
use identity::sha256_hex_prefix;
pub use revoke::{DEFAULT_REVOKE_GRACE, REVOKE_BUDGET, RevokeReport, revoke_retry_delay};
pub use rotation_lock::RotationLock;

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
