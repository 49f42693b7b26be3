//! The process-wide tokio runtime, HTTP client and credentials cache, created lazily and rebuilt after `fork()`.
//!
//! Tokio's worker threads do not survive `fork()`: a child that reused the parent's runtime would hang
//! (tokio-rs/tokio#4301, developmentseed/obstore#441). Everything here is keyed by the process id; a child sees
//! a different pid, leaks the parent's copies (dropping them would join threads that do not exist) and builds
//! its own.

use std::collections::HashMap;
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
    pub credentials: Mutex<HashMap<Vec<Option<String>>, Arc<Credentials>>>,
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
        credentials: Mutex::new(HashMap::new()),
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
