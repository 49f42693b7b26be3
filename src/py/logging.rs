//! Rust `log` records reach Python's `logging` under the logger `devbox_native` (through pyo3-log).
//!
//! The bridge is installed lazily, on the first call made after the application has imported `logging`:
//! importing `logging` ourselves would cost several milliseconds of every cold start, and before the
//! application imports it nobody can have configured a handler to see our records. Logger levels are cached
//! (so a disabled level costs no GIL round trip); after changing levels at run time, call
//! `devbox_native.refresh_logging()`.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use pyo3::prelude::*;

static INSTALLED: AtomicBool = AtomicBool::new(false);
static RESET: OnceLock<pyo3_log::ResetHandle> = OnceLock::new();

/// Install the log bridge if `logging` is loaded and the bridge is not installed yet. Cheap when done.
pub fn ensure(py: Python<'_>) {
    if INSTALLED.load(Ordering::Relaxed) {
        return;
    }
    let loaded = py
        .import("sys")
        .and_then(|sys| sys.getattr("modules"))
        .and_then(|m| m.contains("logging"))
        .unwrap_or(false);
    if loaded && !INSTALLED.swap(true, Ordering::Relaxed) {
        // Our targets start with the crate name `_native`; the prefix puts them under the `devbox_native`
        // logger. Other crates (hyper, rustls) only pass warnings: their debug output is noise to our users.
        let Ok(logger) = pyo3_log::Logger::new(py, pyo3_log::Caching::LoggersAndLevels) else {
            return;
        };
        let logger = logger
            .set_prefix("devbox_native")
            .filter(log::LevelFilter::Warn)
            .filter_target("_native".to_string(), log::LevelFilter::Trace);
        // Fails only when the host process installed another Rust logger first; then records go there.
        if let Ok(handle) = logger.install() {
            let _ = RESET.set(handle);
        }
    }
}

/// Forget cached logger levels (after the application changed them), and install the bridge if needed.
#[pyfunction]
pub fn refresh_logging(py: Python<'_>) {
    ensure(py);
    if let Some(h) = RESET.get() {
        h.reset();
    }
}
