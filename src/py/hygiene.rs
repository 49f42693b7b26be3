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

/// Revoke the stale tokens this library minted (and the app's `sdk-` ones when asked).
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

/// Async version of [`cleanup_tokens`].
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
