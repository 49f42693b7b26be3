//! `cleanup_tokens` and its async twin (core: `crate::hygiene`).

use std::path::PathBuf;

use pyo3::prelude::*;

use crate::broker;
use crate::config::ProcessEnv;
use crate::hygiene::{self, Cleanup};
use crate::py::config::PyConfig;
use crate::py::functions::{chosen, seconds_arg, wait, workspace};
use crate::py::{asyncio, logging};

fn options(
    comment_prefix: String,
    older_than: Option<&Bound<'_, PyAny>>,
    include_app_tokens: bool,
    cache_path: Option<PathBuf>,
    dry_run: bool,
) -> PyResult<Cleanup> {
    let older_than = older_than.map(|o| seconds_arg(o, "older_than")).transpose()?;
    // Never revoke a token the broker cache records (current, minted, pending or held).
    let cache = match cache_path {
        Some(p) => Some(p),
        None => broker::default_cache_path(&ProcessEnv).ok(),
    };
    let keep = match cache {
        Some(p) => broker::protected_token_ids(&p)?,
        None => Default::default(),
    };
    let opts = Cleanup {
        comment_prefix,
        older_than,
        include_app_tokens,
        keep,
        dry_run,
    };
    opts.check()?;
    Ok(opts)
}

/// Revoke the stale tokens this library minted (``GET token/list``, then ``POST token/delete`` each).
///
/// Only tokens whose comment starts with ``comment_prefix`` are revoked (and, with ``include_app_tokens``, the
/// DevBox app's ``sdk-<time_ns>`` tokens); every token the broker's cache file records (the current token,
/// ``minted``, ``pending`` and held ones, of every entry) is always kept. A token revoked by someone else
/// meanwhile counts as revoked.
///
/// Args:
///     comment_prefix: Comment prefix of the tokens to revoke (must not be empty).
///     older_than: Only tokens created at least this many seconds ago.
///     include_app_tokens: Also the app's ``sdk-`` tokens (with no ``older_than`` this includes the one the
///         running app uses).
///
/// Keyword Args:
///     config: Use this configuration instead of resolving one from the environment.
///     cache_path: The broker cache whose tokens are kept (None: the default cache file).
///     dry_run: Revoke nothing; return what would be revoked.
///
/// Returns:
///     The revoked token ids.
///
/// Raises:
///     ValueError: an empty prefix or a negative ``older_than``.
///     ApiError: listing failed, or a revocation failed (the first error; the others were still tried).
#[pyfunction]
#[pyo3(signature = (
    comment_prefix = "devbox-native-", older_than = None, include_app_tokens = false,
    *, config = None, cache_path = None, dry_run = false
))]
pub fn cleanup_tokens(
    py: Python<'_>,
    comment_prefix: &str,
    older_than: Option<&Bound<'_, PyAny>>,
    include_app_tokens: bool,
    config: Option<&Bound<'_, PyConfig>>,
    cache_path: Option<PathBuf>,
    dry_run: bool,
) -> PyResult<Vec<String>> {
    let opts = options(
        comment_prefix.to_string(),
        older_than,
        include_app_tokens,
        cache_path,
        dry_run,
    )?;
    let config = chosen(config);
    wait(py, async move { hygiene::cleanup(&workspace(config)?, &opts).await })
}

/// Async version of :func:`cleanup_tokens`.
#[pyfunction]
#[pyo3(signature = (
    comment_prefix = "devbox-native-", older_than = None, include_app_tokens = false,
    *, config = None, cache_path = None, dry_run = false
))]
pub fn cleanup_tokens_async<'py>(
    py: Python<'py>,
    comment_prefix: &str,
    older_than: Option<&Bound<'py, PyAny>>,
    include_app_tokens: bool,
    config: Option<&Bound<'py, PyConfig>>,
    cache_path: Option<PathBuf>,
    dry_run: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let opts = options(
        comment_prefix.to_string(),
        older_than,
        include_app_tokens,
        cache_path,
        dry_run,
    )?;
    let config = chosen(config);
    logging::ensure(py);
    let fut = async move { hygiene::cleanup(&workspace(config)?, &opts).await };
    asyncio::spawn(py, fut, |py, ids| Ok(ids.into_pyobject(py)?.into_any().unbind()))
}
