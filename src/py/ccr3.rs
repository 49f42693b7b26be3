//! CCR 3.x: `install_ccr3_provider` and `get_ccr3_config` (core: `crate::ccr::v3`).

use std::path::PathBuf;

use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::ccr::v3::{self, Installed};
use crate::py::functions::{host_or_env, root_or_home};
use crate::py::rotation::seconds;
use crate::py::values;

/// The management token: the argument, else `CCR_WEB_AUTH_TOKEN` (None: the one in service.json's url).
fn web_token(given: Option<String>) -> Option<String> {
    given.or_else(|| {
        std::env::var("CCR_WEB_AUTH_TOKEN")
            .ok()
            .filter(|t| !t.trim().is_empty())
    })
}

/// Install or update the ``databricks`` provider of Claude Code Router 3.x under ``root_dir``.
///
/// The provider speaks the Anthropic-messages protocol at ``<gateway_url>/serving-endpoints/anthropic`` (or
/// ``<host>/...`` without a gateway) with ``api_key`` (the gateway key in gateway mode), serves ``model``, and
/// the Claude Code profile's model becomes ``databricks/<model>`` when it is unset (3.x's router default).
///
/// * Before CCR 3.x's first start (no ``config.sqlite``): writes ``config.json`` (0600) in the form 3.x imports
///   once into its store (``mode`` ``"config.json"``). An existing config.json keeps its other providers and
///   settings; ours replaces any provider named ``databricks`` (a file that is not JSON is left untouched).
/// * Once ``config.sqlite`` exists (the file is never written): reads the running service's management URL
///   from ``service.json``, calls ``getConfig``, changes only our provider (and the profile's model if unset)
///   and calls ``saveConfig``, which CCR applies live, without a restart (``mode`` ``"rpc"``).
///
/// Args:
///     api_key: What the provider presents (the gateway key, or a token).
///     root_dir: The folder holding ``.claude-code-router`` (None: the home folder).
///     gateway_url: The credential gateway's URL.
///     host: Without ``gateway_url``: the workspace host (None: ``DATABRICKS_HOST``).
///     model: The serving endpoint name.
///     web_token: The management token (None: ``CCR_WEB_AUTH_TOKEN``, else the one in service.json's url).
///     timeout: Seconds for each RPC call.
///
/// Returns:
///     ``{"mode", "path", "rpc_url", "added", "set_default"}``: ``path`` is the written config.json (None over
///     the RPC), ``rpc_url`` the RPC endpoint (None for config.json), ``added`` whether the provider was new,
///     ``set_default`` whether the profile's model was set.
///
/// Raises:
///     TypeError: an argument has the wrong type.
///     ValueError: bad api_key, gateway_url, host, model or timeout (naming the parameter).
///     ConfigError: CCR 3.x is not running (service.json missing or corrupt, the RPC does not answer: the
///         message names the URL tried and says to run ``ccr start``) or refused the management token;
///         nothing was changed.
///     OSError: config.json cannot be written.
#[pyfunction]
#[pyo3(signature = (
    api_key, root_dir = None, *, gateway_url = None, host = None, model = "databricks-claude-sonnet-4",
    web_token = None, timeout = 10.0
))]
#[allow(clippy::too_many_arguments)]
pub fn install_ccr3_provider<'py>(
    py: Python<'py>,
    api_key: &str,
    root_dir: Option<PathBuf>,
    gateway_url: Option<String>,
    host: Option<String>,
    model: &str,
    web_token: Option<String>,
    timeout: f64,
) -> PyResult<Bound<'py, PyDict>> {
    let timeout = seconds(timeout, "timeout")?;
    let token = self::web_token(web_token);
    let installed = py.detach(|| {
        let url = match gateway_url {
            Some(g) => v3::provider_base("gateway_url", &g)?,
            None => v3::provider_base("host", &host_or_env(host)?)?,
        };
        v3::install(
            &root_or_home(root_dir)?,
            &url,
            api_key,
            model,
            token.as_deref(),
            timeout,
        )
    })?;
    let out = PyDict::new(py);
    match installed {
        Installed::Legacy(path) => {
            out.set_item("mode", "config.json")?;
            out.set_item("path", path)?;
            out.set_item("rpc_url", py.None())?;
            out.set_item("added", true)?;
            out.set_item("set_default", true)?;
        }
        Installed::Rpc { rpc_url, merged } => {
            out.set_item("mode", "rpc")?;
            out.set_item("path", py.None())?;
            out.set_item("rpc_url", rpc_url)?;
            out.set_item("added", merged.added)?;
            out.set_item("set_default", merged.set_default)?;
        }
    }
    Ok(out)
}

/// The running CCR 3.x's config through its management RPC (``getConfig``).
///
/// Returns:
///     ``{"rpc_url", "pid", "config"}`` (``pid`` from service.json, or None). The config holds the providers'
///     keys: do not log it.
///
/// Raises:
///     ConfigError: CCR 3.x is not running or refused the token (as :func:`install_ccr3_provider`).
///     ValueError: a bad timeout.
#[pyfunction]
#[pyo3(signature = (root_dir = None, *, web_token = None, timeout = 10.0))]
pub fn get_ccr3_config<'py>(
    py: Python<'py>,
    root_dir: Option<PathBuf>,
    web_token: Option<String>,
    timeout: f64,
) -> PyResult<Bound<'py, PyDict>> {
    let timeout = seconds(timeout, "timeout")?;
    let token = self::web_token(web_token);
    let (service, config) = py.detach(|| v3::read_config(&root_or_home(root_dir)?, token.as_deref(), timeout))?;
    let out = PyDict::new(py);
    out.set_item("rpc_url", service.rpc_url)?;
    out.set_item("pid", service.pid)?;
    out.set_item("config", values::to_py(py, &config)?)?;
    Ok(out)
}
