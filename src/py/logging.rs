//! Rust `log` records reach Python's `logging` under the logger `devbox_native` (through pyo3-log).
//!
//! The bridge is installed lazily, on the first call made after the application has imported `logging`:
//! importing `logging` ourselves would cost several milliseconds of every cold start, and before the
//! application imports it nobody can have configured a handler to see our records.

use std::sync::atomic::{AtomicBool, Ordering};

use pyo3::prelude::*;

static INSTALLED: AtomicBool = AtomicBool::new(false);

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
        let logger = pyo3_log::Logger::new(py, pyo3_log::Caching::LoggersAndLevels).map(|l| {
            l.set_prefix("devbox_native")
                .filter(log::LevelFilter::Warn)
                .filter_target("_native".to_string(), log::LevelFilter::Trace)
                .install()
        });
        if let Ok(Err(e)) = logger {
            // Another logger was installed first by the host process: nothing to do but say so once.
            log::warn!("devbox_native: cannot install the log bridge: {e}");
        }
    }
}
