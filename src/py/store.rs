//! The config store's functions: `update_ccr_token` and `update_databricks_cfg` (core: `crate::ccr`, `crate::databrickscfg`).

use std::path::PathBuf;

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;

use crate::config::{Env, ProcessEnv};
use crate::databrickscfg::file as config_file;
use crate::error::{Error, Result};
use crate::py::functions::{host_or_env, root_or_home};
use crate::py::logging;
use crate::{ccr, databrickscfg, fsutil};

/// Put ``token`` into ``<root>/.claude-code-router/config.json``, changing nothing else.
///
/// With ``gateway_url`` (gateway mode), ``token`` is the gateway key and every ``databricks`` provider's
/// ``api_base_url`` is moved onto the gateway too (its path from ``/serving-endpoints/`` on is kept); a missing
/// file gets the gateway-mode config of :func:`write_ccr_config`.
///
/// Only the ``api_key`` of the provider named ``databricks`` is replaced; every other key, provider and value
/// is kept, in its order (numbers keep their exact text, e.g. ``1e-07``), and the file is written as
/// ``json.dump(indent=2)`` writes it. The update holds the file's cross-process lock (``config.json.lock``)
/// across read-modify-write, replaces the file atomically (0600; a looser file is tightened and a warning
/// logged) and writes through a symlink to its target when the link and its target are yours (or root's).
/// Every target is checked first (see the README's "Security model"): a file, symlink or folder another user
/// controls is refused, and a refused or failed call leaves the folder as it found it. When the
/// ``databricks`` provider's ``api_base_url`` is not on the workspace host, a warning is logged.
///
/// Args:
///     token: The new token.
///     root_dir: The folder holding ``.claude-code-router`` (None: the home folder).
///     host: Workspace host (None: ``DATABRICKS_HOST``): written when the file does not exist, else compared
///         with the provider's URL.
///     model: Only used when the file does not exist: serving endpoint name.
///
/// Returns:
///     The path of ``config.json``. When it did not exist, the full config and the plugin were written, as
///     :func:`write_ccr_config` does.
///
/// Raises:
///     ConfigError: the file is not JSON, or has no ``Providers`` entry named ``databricks`` (the message names
///         the file, which is left untouched).
///     ValueError: the token is empty or holds whitespace.
///     MissingEnvVarError: the file is missing, ``host`` is None and ``DATABRICKS_HOST`` is not set.
///     FileError: (an ``OSError``, with ``filename``) the file cannot be read or written, or is not trusted (the
///         message names the path and why).
#[pyfunction]
#[pyo3(signature = (token, root_dir = None, *, host = None, model = "databricks-claude-sonnet-4", gateway_url = None))]
pub fn update_ccr_token(
    py: Python<'_>,
    token: &str,
    root_dir: Option<PathBuf>,
    host: Option<String>,
    model: &str,
    gateway_url: Option<String>,
) -> PyResult<PathBuf> {
    logging::ensure(py);
    Ok(py.detach(|| {
        let root = root_or_home(root_dir)?;
        match gateway_url {
            // Gateway mode: `token` is the gateway key.
            Some(g) => ccr::update_ccr_gateway(&root, token, &g, model),
            None => ccr::update_ccr_token(&root, token, || host_or_env(host), model),
        }
    })?)
}

/// Set keys of one profile of ``.databrickscfg``, keeping other profiles, keys and comments.
///
/// The file is ``config_file``, else ``<root_dir>/.databrickscfg``, else the one :class:`Config` reads:
/// ``DATABRICKS_CONFIG_FILE``, else ``~/.databrickscfg`` (``~`` expanded in both, as the reader does).
///
/// A line-based edit: an existing key (matched case-insensitively, as ``configparser`` does) is replaced in
/// place, a missing one is added after the profile's last key, a missing profile is appended, a missing file
/// is created. Same locking, atomicity, 0600 and symlink rules as :func:`update_ccr_token`.
///
/// Args:
///     values: Keys and values to set, e.g. ``{"token": "dapi..."}``.
///     profile: The profile (section) name.
///     root_dir: The folder holding ``.databrickscfg`` (None: the file ``Config()`` reads).
///     config_file: The file to edit (not together with ``root_dir``).
///
/// Returns:
///     The path of the file edited.
///
/// Raises:
///     ValueError: a bad profile name, key, or a value that is empty, has surrounding whitespace or a line
///         break (values are never shown in the message); both ``config_file`` and ``root_dir``.
///     ConfigError: the profile or a key appears twice, or the file is not UTF-8 (file left untouched).
///     FileError: (an ``OSError``, with ``filename``) the file cannot be read or written, or it, a symlink to it
///         or a folder above it is not trusted (see the README's "Security model"; the message names the path and
///         why).
#[pyfunction]
#[pyo3(signature = (values, *, profile = "DEFAULT", root_dir = None, config_file = None))]
pub fn update_databricks_cfg(
    py: Python<'_>,
    values: &Bound<'_, PyAny>,
    profile: &str,
    root_dir: Option<PathBuf>,
    config_file: Option<PathBuf>,
) -> PyResult<PathBuf> {
    let mut pairs = Vec::new();
    for item in values.call_method0("items")?.try_iter()? {
        let (k, v): (Bound<'_, PyAny>, Bound<'_, PyAny>) = item?.extract()?;
        let (Ok(k), Ok(v)) = (k.extract::<String>(), v.extract::<String>()) else {
            return Err(PyTypeError::new_err("values: expected a mapping of str to str"));
        };
        pairs.push((k, v));
    }
    logging::ensure(py);
    let path = databrickscfg_path(config_file, root_dir, &ProcessEnv)?;
    Ok(py.detach(|| databrickscfg::update_databricks_cfg(&path, profile, &pairs))?)
}

/// The file `update_databricks_cfg` edits: `config_file`, else `<root_dir>/.databrickscfg`, else the file
/// `Config()` reads (`DATABRICKS_CONFIG_FILE`, else `~/.databrickscfg`). An explicit argument beats the
/// environment; `~` is expanded as the reader expands it.
fn databrickscfg_path(config_file: Option<PathBuf>, root_dir: Option<PathBuf>, env: &dyn Env) -> Result<PathBuf> {
    let expand = |p: PathBuf| match p.to_str() {
        Some(s) => config_file::path(Some(s), env.home().as_deref()),
        None => Some(p),
    };
    let chosen = match (config_file, root_dir) {
        (Some(_), Some(_)) => {
            return Err(Error::InvalidArgument {
                param: "config_file".into(),
                reason: "pass config_file or root_dir, not both".into(),
            });
        }
        (Some(f), None) => expand(f),
        (None, Some(r)) => return Ok(r.join(".databrickscfg")),
        (None, None) => match env.var_os("DATABRICKS_CONFIG_FILE").filter(|v| !v.is_empty()) {
            Some(f) => expand(PathBuf::from(f)),
            None => config_file::path(None, env.home().as_deref()),
        },
    };
    chosen.ok_or_else(|| {
        Error::Config("cannot find the home folder (HOME is not set): pass root_dir or config_file".into())
    })
}

/// Why a private file (or, with `folder`, a folder we write into) cannot be trusted, as `doctor` shows it:
/// `(path, problem, fixable)` per finding; empty when trusted. `fixable`: our own, only too loose (the next
/// write tightens it); anything else is refused.
#[pyfunction(name = "_check_path")]
#[pyo3(signature = (path, *, folder = false))]
pub fn check_path(py: Python<'_>, path: PathBuf, folder: bool) -> Vec<(PathBuf, String, bool)> {
    py.detach(|| {
        let found = if folder {
            fsutil::check_dir(&path)
        } else {
            fsutil::check_file(&path).1
        };
        found
            .into_iter()
            .map(|f| (f.path, f.problem, f.tighten_to.is_some()))
            .collect()
    })
}
