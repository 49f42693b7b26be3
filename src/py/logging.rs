//! Rust `log` records reach Python's `logging` under the logger `devbox_native` (through pyo3-log).
//!
//! The bridge is installed lazily, on the first call made after the application has imported `logging`:
//! importing `logging` ourselves would cost several milliseconds of every cold start, and before the
//! application imports it nobody can have configured a handler to see our records. Logger levels are cached
//! (so a disabled level costs no GIL round trip); after changing levels at run time, call
//! `devbox_native.refresh_logging()`.
//!
//! Every record passes through [`crate::secret::redact`] on its way: a message may quote a server's answer or
//! a child's output, which can echo a secret.

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
        let handle = logger.reset_handle();
        let level = log::LevelFilter::Trace;
        if log::set_boxed_logger(Box::new(Redacting(logger))).is_ok() {
            log::set_max_level(level);
            let _ = RESET.set(handle);
        }
    }
}

/// The pyo3-log bridge with every message masked.
struct Redacting(pyo3_log::Logger);

impl log::Log for Redacting {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        self.0.enabled(metadata)
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.0.enabled(record.metadata()) {
            return;
        }
        let text = crate::secret::redact(&record.args().to_string(), &[]);
        self.0.log(
            &log::Record::builder()
                .args(format_args!("{text}"))
                .metadata(record.metadata().clone())
                .module_path(record.module_path())
                .file(record.file())
                .line(record.line())
                .build(),
        );
    }

    fn flush(&self) {
        self.0.flush();
    }
}

/// Re-read Python logger levels (they are cached) and install the log bridge if ``logging`` is loaded.
///
/// Call it after changing the level of the ``devbox_native`` logger (or its parents) at run time.
#[pyfunction]
pub fn refresh_logging(py: Python<'_>) {
    ensure(py);
    if let Some(h) = RESET.get() {
        h.reset();
    }
}
