//! The process-wide tokio runtime, HTTP client and credentials cache, created lazily and rebuilt after `fork()`.
//!
//! Tokio's worker threads do not survive `fork()`: a child that reused the parent's runtime would hang
//! (tokio-rs/tokio#4301, developmentseed/obstore#441). Everything here is keyed by the process id; a child sees
//! a different pid, leaks the parent's copies (dropping them would join threads that do not exist) and builds
//! its own.

use std::sync::{Arc, Mutex, MutexGuard};

use crate::api::http::HttpClient;
use crate::auth::Credentials;
use crate::config::ProcessEnv;
use crate::error::{Error, Result};

/// Everything one process shares between calls.
pub struct Shared {
    /// The tokio runtime all network work runs on.
    pub runtime: Arc<tokio::runtime::Runtime>,
    /// The pooled HTTP client.
    pub http: Arc<HttpClient>,
    /// Resolved credentials per configuration identity, so OAuth tokens are reused until near expiry.
    pub credentials: CredentialsCache,
}

/// How many resolved credentials one process keeps: beyond that the least recently used are forgotten (a
/// caller still holding one keeps it), so a process that builds many configurations does not grow forever.
pub const MAX_CREDENTIALS: usize = 32;

/// The identity key of a configuration ([`crate::config::Config`]'s, secrets included: memory only).
type CredentialsKey = Vec<Option<String>>;

/// Resolved credentials by configuration identity, least recently used first, at most [`MAX_CREDENTIALS`].
#[derive(Default)]
pub struct CredentialsCache {
    entries: Mutex<Vec<(CredentialsKey, Arc<Credentials>)>>,
}

impl CredentialsCache {
    fn lock(&self) -> MutexGuard<'_, Vec<(CredentialsKey, Arc<Credentials>)>> {
        // Holders only push, remove and reorder whole entries.
        self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The credentials cached for `key`, else `make()`'s (cached, evicting the least recently used).
    /// `make` runs without the lock; when two callers race, the first one stored wins.
    pub fn get_or_insert(
        &self,
        key: CredentialsKey,
        make: impl FnOnce() -> Result<Credentials>,
    ) -> Result<Arc<Credentials>> {
        if let Some(found) = self.touch(&key) {
            return Ok(found);
        }
        let made = Arc::new(make()?);
        if let Some(found) = self.touch(&key) {
            return Ok(found);
        }
        let mut entries = self.lock();
        entries.push((key, made.clone()));
        let excess = entries.len().saturating_sub(MAX_CREDENTIALS);
        entries.drain(..excess);
        Ok(made)
    }

    /// The cached credentials of `key`, now the most recently used.
    fn touch(&self, key: &CredentialsKey) -> Option<Arc<Credentials>> {
        let mut entries = self.lock();
        let at = entries.iter().position(|(k, _)| k == key)?;
        let entry = entries.remove(at);
        let found = entry.1.clone();
        entries.push(entry);
        Some(found)
    }

    /// How many are cached.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether none is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

struct State {
    pid: u32,
    shared: Arc<Shared>,
}

static STATE: Mutex<Option<State>> = Mutex::new(None);

fn lock_state() -> MutexGuard<'static, Option<State>> {
    // A panic while holding this lock cannot leave the state half-written (we only swap whole values).
    STATE.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The shared state of this process, built on first use (and again in a forked child).
pub fn shared() -> Result<Arc<Shared>> {
    let pid = std::process::id();
    let mut state = lock_state();
    if let Some(s) = state.as_ref()
        && s.pid == pid
    {
        return Ok(s.shared.clone());
    }
    if let Some(old) = state.take() {
        // Inherited from the parent across fork(): never drop it here.
        std::mem::forget(old);
        log::debug!("fork detected: building a new runtime and HTTP client in process {pid}");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("devbox-native")
        .enable_all()
        .build()
        .map_err(|e| Error::Transport(format!("cannot start the async runtime: {e}")))?;
    let shared = Arc::new(Shared {
        runtime: Arc::new(runtime),
        http: Arc::new(HttpClient::new(&ProcessEnv)?),
        credentials: CredentialsCache::default(),
    });
    *state = Some(State {
        pid,
        shared: shared.clone(),
    });
    Ok(shared)
}

/// Run a future to completion on the shared runtime, from a thread that is not itself a runtime thread.
pub fn block_on<F: std::future::Future>(fut: F) -> Result<F::Output> {
    let shared = shared()?;
    Ok(shared.runtime.block_on(fut))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    fn pat(n: usize) -> Credentials {
        Credentials::Static {
            auth_type: "pat",
            header: Secret::new(format!("Bearer t{n}")),
        }
    }

    #[test]
    fn the_credentials_cache_is_bounded_and_keeps_the_recently_used() {
        let cache = CredentialsCache::default();
        let key = |n: usize| vec![Some(format!("k{n}"))];
        let first = cache.get_or_insert(key(0), || Ok(pat(0))).unwrap();
        for n in 1..200 {
            cache.get_or_insert(key(n), || Ok(pat(n))).unwrap();
            // Key 0 is used all along: it is never the least recently used one.
            let again = cache.get_or_insert(key(0), || panic!("key 0 was evicted")).unwrap();
            assert!(Arc::ptr_eq(&first, &again));
        }
        assert_eq!(cache.len(), MAX_CREDENTIALS);
        let mut made = false;
        cache
            .get_or_insert(key(1), || {
                made = true;
                Ok(pat(1))
            })
            .unwrap();
        assert!(made, "an old, unused entry was forgotten");
        assert!(
            cache
                .get_or_insert(key(500), || Err(crate::error::Error::Config("x".into())))
                .is_err()
        );
        assert_eq!(cache.len(), MAX_CREDENTIALS, "a failed resolution caches nothing");
    }
}
