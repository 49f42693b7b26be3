//! Revocation of replaced tokens: pending entries, the grace period, holds, back-off of failed attempts and
//! tokens minted for a cancelled caller.

use std::collections::HashSet;
use std::time::Duration;

use super::{Broker, CACHE_VERSION, CacheFile, Entry, Minted, Pending, now};
use crate::api::tokens;
use crate::backoff;
use crate::error::{Error, Result};
use crate::hygiene::is_already_gone;
use crate::workspace::Workspace;

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

/// When a revocation that failed `attempts` times is tried again, counted from the failure: the next `get()`
/// after the first failure, then 30 s, 60 s, ... up to an hour.
pub fn revoke_retry_delay(attempts: u32) -> f64 {
    backoff::exponential(30.0, MAX_REVOKE_BACKOFF, attempts.saturating_sub(1))
}

/// The outcome of one revocation round.
#[derive(Debug, Default, Clone)]
pub struct RevokeReport {
    /// Ids revoked now (or found already gone).
    pub revoked: Vec<String>,
    /// Ids that failed, with the error (they stay pending).
    pub failed: Vec<(String, Error)>,
}

impl Broker {
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

    pub(super) fn grace(&self) -> f64 {
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

    pub(super) fn has_due(&self, cache: &CacheFile, at: f64) -> bool {
        cache
            .entries
            .get(&self.key)
            .is_some_and(|e| e.pending.iter().any(|p| p.next_attempt_at <= at || p.expires_at <= at))
    }

    pub(super) async fn revoke_quietly(&self) {
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

impl Broker {
    /// Record a token minted for a cancelled caller as minted and pending (due now), then revoke it.
    pub(super) async fn revoke_orphan(&self, created: &tokens::CreatedToken, started: f64) {
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
