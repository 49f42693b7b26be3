//! The coding agents' config writers (core: `crate::agents`): one agent per call; the Python wrapper
//! (`devbox_native._agents`) picks the agents, the helper command and the gateway.

use std::path::PathBuf;

use pyo3::prelude::*;

use crate::agents::{self, Agent, Route, Settings};
use crate::py::functions::{host_or_env, root_or_home};
use crate::py::logging;

/// `(name, program, needs_gateway)` for every agent we know.
#[pyfunction]
pub fn known_agents() -> Vec<(&'static str, &'static str, bool)> {
    Agent::ALL
        .iter()
        .map(|a| (a.name(), a.program(), a.needs_gateway()))
        .collect()
}

/// Write one agent's configuration; returns its main file, whether a file changed, and the warnings.
#[pyfunction]
#[pyo3(signature = (agent, *, helper, root_dir = None, host = None, route = "serving-endpoints", model = None,
    gateway_url = None, gateway_key_file = None))]
#[allow(clippy::too_many_arguments)]
pub fn configure_agent(
    py: Python<'_>,
    agent: &str,
    helper: Vec<String>,
    root_dir: Option<PathBuf>,
    host: Option<String>,
    route: &str,
    model: Option<String>,
    gateway_url: Option<String>,
    gateway_key_file: Option<PathBuf>,
) -> PyResult<(PathBuf, bool, Vec<String>)> {
    let agent = Agent::parse(agent)?;
    let route = Route::parse(route)?;
    logging::ensure(py);
    let out = py.detach(|| {
        let settings = Settings::new(&host_or_env(host)?, route, model, helper, gateway_url, gateway_key_file)?;
        agents::configure(agent, &root_or_home(root_dir)?, &settings)
    })?;
    Ok((out.path, out.changed, out.warnings))
}

/// Take out what `configure_agent` added; returns the main file and whether a file changed.
#[pyfunction]
#[pyo3(signature = (agent, *, root_dir = None))]
pub fn unconfigure_agent(py: Python<'_>, agent: &str, root_dir: Option<PathBuf>) -> PyResult<(PathBuf, bool)> {
    let agent = Agent::parse(agent)?;
    let out = py.detach(|| agents::unconfigure(agent, &root_or_home(root_dir)?))?;
    Ok((out.path, out.changed))
}
