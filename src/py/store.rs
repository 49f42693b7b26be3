//! The config store's functions: `update_ccr_token` and `update_databricks_cfg` (core: `crate::store`).

use std::path::PathBuf;

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;

use crate::config::{Env, ProcessEnv};
use crate::config_file;
use crate::error::{Error, Result};
use crate::py::functions::{host_or_env, root_or_home};
use crate::py::logging;
use crate::{fsutil, store};

/// Replace only the `databricks` provider's `api_key` in `<root>/.claude-code-router/config.json`.
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
            Some(g) => store::update_ccr_gateway(&root, token, &g, model),
            None => store::update_ccr_token(&root, token, || host_or_env(host), model),
        }
    })?)
}

/// Set keys of one profile of `.databrickscfg`, keeping everything else.
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
    Ok(py.detach(|| store::update_databricks_cfg(&path, profile, &pairs))?)
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
