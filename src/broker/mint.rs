//! Obtaining a new token with the cache's lock held: minting a PAT (the replaced one queued for revocation) or
//! fetching the identity's OAuth token, and following a mint whose caller was cancelled.

use super::{Broker, CACHE_VERSION, CacheFile, Entry, Kind, Lease, Minted, Pending, now, sha256_hex_prefix};
use crate::api::tokens;
use crate::auth::default;
use crate::error::{Error, Result};
use crate::hygiene::{self, Cleanup};
use crate::workspace::Workspace;

impl Broker {
    /// A new token of the broker's kind, stored in the cache. Call with the lock held.
    pub(super) async fn obtain_locked(&self, cache: &mut CacheFile, hold: bool) -> Result<Lease> {
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
