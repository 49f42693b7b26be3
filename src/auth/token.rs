//! The one token cache behind every strategy whose token expires (`oauth-m2m`, `env-oidc`, `file-oidc`,
//! `metadata-service`, `databricks-cli`).
//!
//! A token is *fresh* until [`STALE_WINDOW`] before its expiry, then *stale* until [`EXPIRY_MARGIN`] before
//! it (the SDK's `Token.expired` margin), then *expired*. A fresh token is returned at once. A stale one is
//! still returned to every caller but one: the first caller to see it refreshes it ahead of time, for at most
//! as long as the token stays usable (a failure or that bound then is logged and the still-valid token used).
//! An expired or missing token is refreshed by exactly one caller while the others wait for its result, so many
//! threads never cause more than one request (issue 3). A failure is that result too: the callers that waited
//! for it get it without asking again, and so does any caller within [`FAILURE_TTL`] after it.

use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::secret::Secret;

/// A token this close to expiry is not used any more.
pub const EXPIRY_MARGIN: Duration = Duration::from_secs(40);
/// A token this close to expiry is refreshed ahead of time (the SDK 0.67's stale window).
pub const STALE_WINDOW: Duration = Duration::from_secs(180);
/// How long a failed refresh is handed to new callers instead of asking again.
pub const FAILURE_TTL: Duration = Duration::from_secs(1);

/// An `Authorization` header value and when it stops being valid.
#[derive(Clone, Debug)]
pub struct Token {
    /// The header value, e.g. `Bearer <access token>`.
    pub header: Secret,
    /// When the token expires.
    pub expires: Instant,
}

impl Token {
    /// A token that expires `lifetime` from now (clamped to ten years).
    pub fn expiring_in(header: Secret, lifetime: Duration) -> Token {
        let lifetime = lifetime.min(Duration::from_secs(10 * 365 * 86_400));
        Token {
            header,
            expires: Instant::now() + lifetime,
        }
    }

    fn state(&self, now: Instant) -> State {
        let left = self.expires.saturating_duration_since(now);
        if left > STALE_WINDOW {
            State::Fresh
        } else if left > EXPIRY_MARGIN {
            State::Stale
        } else {
            State::Expired
        }
    }
}

#[derive(PartialEq)]
enum State {
    Fresh,
    Stale,
    Expired,
}

/// A cached token with single-flight refresh.
#[derive(Default)]
pub struct TokenCache {
    current: Mutex<Option<Token>>,
    refreshing: tokio::sync::Mutex<()>,
    /// The last failed refresh of a missing or expired token, and when it ended.
    failure: Mutex<Option<(Instant, Box<Error>)>>,
}

impl TokenCache {
    /// The cached header when it is usable, refreshing it with `refresh` as the module doc describes.
    pub async fn get<F, Fut>(&self, refresh: F) -> Result<Secret>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Token>>,
    {
        match self.peek() {
            Some((header, State::Fresh, _)) => return Ok(header),
            Some((header, State::Stale, expires)) => {
                // Somebody else is refreshing: the current token is still good.
                let Ok(_guard) = self.refreshing.try_lock() else {
                    return Ok(header);
                };
                // Never wait for the new token longer than the current one stays usable.
                let usable = expires.saturating_duration_since(Instant::now() + EXPIRY_MARGIN);
                return match tokio::time::timeout(usable, refresh()).await {
                    Ok(Ok(token)) => Ok(self.store(token)),
                    Ok(Err(e)) => {
                        log::debug!("refreshing a token before it expires failed, using the current one: {e}");
                        Ok(header)
                    }
                    Err(_) => {
                        log::debug!("refreshing a token before it expires took too long, using the current one");
                        Ok(header)
                    }
                };
            }
            _ => {}
        }
        let asked = Instant::now();
        let _guard = self.refreshing.lock().await;
        // The caller that held the lock may have refreshed it while we waited, or failed to.
        if let Some((header, State::Fresh | State::Stale, _)) = self.peek() {
            return Ok(header);
        }
        if let Some((at, e)) = self
            .failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            && (*at >= asked || at.elapsed() < FAILURE_TTL)
        {
            return Err((**e).clone());
        }
        match refresh().await {
            Ok(token) => Ok(self.store(token)),
            Err(e) => {
                *self.failure.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
                    Some((Instant::now(), Box::new(e.clone())));
                Err(e)
            }
        }
    }

    /// Drop the cached token if it is `rejected` (the server refused it before its expiry, e.g. it was
    /// revoked). Returns whether it was dropped, i.e. whether asking again can give a different token.
    pub fn forget(&self, rejected: &Secret) -> bool {
        let mut current = self.current.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if current.as_ref().is_some_and(|t| &t.header == rejected) {
            *current = None;
            return true;
        }
        // Another caller already replaced it: a retry will use the new one.
        current.is_some()
    }

    fn peek(&self) -> Option<(Secret, State, Instant)> {
        let now = Instant::now();
        let current = self.current.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        current.as_ref().map(|t| (t.header.clone(), t.state(now), t.expires))
    }

    fn store(&self, token: Token) -> Secret {
        *self.failure.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = None;
        let header = token.header.clone();
        *self.current.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(token);
        header
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::error::Error;

    fn token(n: usize, lifetime: Duration) -> Token {
        Token::expiring_in(Secret::new(format!("Bearer t{n}")), lifetime)
    }

    async fn get(cache: &TokenCache, calls: &AtomicUsize, lifetime: Duration) -> Result<Secret> {
        cache
            .get(|| async {
                let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
                Ok(token(n, lifetime))
            })
            .await
    }

    #[tokio::test]
    async fn a_rejected_token_is_forgotten_once() {
        let cache = TokenCache::default();
        let calls = AtomicUsize::new(0);
        let first = get(&cache, &calls, Duration::from_secs(3600)).await.unwrap();
        // Another token was refused: ours stays (a retry would use it), nothing is fetched.
        assert!(cache.forget(&Secret::new("Bearer unrelated")));
        assert_eq!(
            get(&cache, &calls, Duration::from_secs(3600)).await.unwrap().expose(),
            "Bearer t1"
        );
        assert!(cache.forget(&first));
        let second = get(&cache, &calls, Duration::from_secs(3600)).await.unwrap();
        assert_eq!((first.expose(), second.expose()), ("Bearer t1", "Bearer t2"));
        // A second caller holding the old token sees that a newer one is already there.
        assert!(cache.forget(&first));
        assert_eq!(
            get(&cache, &calls, Duration::from_secs(3600)).await.unwrap().expose(),
            "Bearer t2"
        );
        assert!(!TokenCache::default().forget(&first));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_concurrent_callers_cause_one_refresh() {
        let cache = Arc::new(TokenCache::default());
        let calls = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..32)
            .map(|_| {
                let (cache, calls) = (cache.clone(), calls.clone());
                tokio::spawn(async move { get(&cache, &calls, Duration::from_secs(3600)).await })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap().expose(), "Bearer t1");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn expired_tokens_are_refreshed_and_stale_ones_refreshed_ahead() {
        let cache = TokenCache::default();
        let calls = AtomicUsize::new(0);
        // Inside the expiry margin: unusable, so every get refreshes.
        assert_eq!(
            get(&cache, &calls, Duration::from_secs(10)).await.unwrap().expose(),
            "Bearer t1"
        );
        assert_eq!(
            get(&cache, &calls, Duration::from_secs(120)).await.unwrap().expose(),
            "Bearer t2"
        );
        // t2 is stale (120 s left): the next caller refreshes ahead and gets the new token.
        assert_eq!(
            get(&cache, &calls, Duration::from_secs(3600)).await.unwrap().expose(),
            "Bearer t3"
        );
        // t3 is fresh: no more refreshes.
        assert_eq!(
            get(&cache, &calls, Duration::from_secs(3600)).await.unwrap().expose(),
            "Bearer t3"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_failed_early_refresh_keeps_the_valid_token_and_a_failed_refresh_is_an_error() {
        let cache = TokenCache::default();
        cache.store(token(1, Duration::from_secs(100)));
        let got = cache.get(|| async { Err(Error::Auth("down".into())) }).await.unwrap();
        assert_eq!(got.expose(), "Bearer t1");
        cache.store(token(2, Duration::from_secs(1)));
        let err = cache
            .get(|| async { Err(Error::Auth("down".into())) })
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "down");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn waiters_share_a_failed_refresh() {
        let cache = Arc::new(TokenCache::default());
        let calls = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (cache, calls) = (cache.clone(), calls.clone());
                tokio::spawn(async move {
                    cache
                        .get(|| async {
                            calls.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            Err::<Token, _>(Error::Auth("down".into()))
                        })
                        .await
                })
            })
            .collect();
        let started = Instant::now();
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap_err().to_string(), "down");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // One refresh's time, not eight in a row.
        assert!(
            started.elapsed() < Duration::from_millis(1200),
            "{:?}",
            started.elapsed()
        );
        // A caller right after it gets the same failure without asking again ...
        let err = cache
            .get(|| async { Ok(token(99, Duration::from_secs(3600))) })
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "down");
        // ... and once the failure is older than FAILURE_TTL, the next caller asks again.
        tokio::time::sleep(FAILURE_TTL).await;
        assert_eq!(
            get(&cache, &calls, Duration::from_secs(3600)).await.unwrap().expose(),
            "Bearer t2"
        );
    }

    #[tokio::test]
    async fn an_early_refresh_is_bounded_by_the_validity_left() {
        let cache = TokenCache::default();
        cache.store(token(1, EXPIRY_MARGIN + Duration::from_millis(300)));
        let started = Instant::now();
        let got = cache
            .get(|| async {
                tokio::time::sleep(Duration::from_secs(60)).await;
                Ok(token(2, Duration::from_secs(3600)))
            })
            .await
            .unwrap();
        assert_eq!(got.expose(), "Bearer t1");
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    }
}
