//! The coding agents' config writers (core: `crate::agents`): one agent per call; the Python wrapper
//! (`devbox_native._agents`) picks the agents, the helper command and the gateway.

use std::path::PathBuf;

use pyo3::prelude::*;

use crate::agents::{self, Agent, Place, Route, Settings};
use crate::config::ProcessEnv;
use crate::py::functions::host_or_env;
use crate::py::logging;

/// The coding agents :func:`devbox_native.configure_agents` knows: ``(name, program, needs_gateway)`` each, in
/// order: ``("claude-code", "claude", False)``, ``("codex", "codex", False)``, ``("gemini", "gemini", True)``,
/// ``("opencode", "opencode", True)``.
#[pyfunction]
pub fn known_agents() -> Vec<(&'static str, &'static str, bool)> {
    Agent::ALL
        .iter()
        .map(|a| (a.name(), a.program(), a.needs_gateway()))
        .collect()
}

fn place(root_dir: &Option<PathBuf>) -> Place<'_> {
    root_dir.as_deref().map_or(Place::Home, Place::Root)
}

/// The file :func:`configure_agent` writes for ``agent`` and the agent reads: under ``root_dir`` when given
/// (``<root>/.claude/settings.json``, ``<root>/.codex/config.toml``, ``<root>/.gemini/.env``,
/// ``<root>/.config/opencode/opencode.json``; the agents' variables do not apply), else where the agent's own
/// variable puts it when set (``CLAUDE_CONFIG_DIR``, ``CODEX_HOME``, ``GEMINI_CLI_HOME``,
/// ``OPENCODE_CONFIG_DIR``/``OPENCODE_CONFIG``/``XDG_CONFIG_HOME``), else under the home folder.
///
/// Raises:
///     ValueError: an unknown agent, or its variable holds a relative path (or, for ``CLAUDE_CONFIG_DIR``, is
///         empty), which the agent would resolve from wherever it starts; the message names the variable.
///     ConfigError: ``root_dir`` is None and there is no home folder.
#[pyfunction]
#[pyo3(signature = (agent, *, root_dir = None))]
pub fn agent_config_file(agent: &str, root_dir: Option<PathBuf>) -> PyResult<PathBuf> {
    let agent = Agent::parse(agent)?;
    Ok(agents::main_file(agent, place(&root_dir), &ProcessEnv)?)
}

/// Write one agent's configuration (the core of :func:`devbox_native.configure_agents`, which picks
/// ``helper`` and the gateway for you).
///
/// The agent's files are merged, never overwritten: only our keys are set, every other key, comment (TOML) and
/// order stays. Each file is replaced atomically, 0600 from the first byte, under its sidecar lock
/// (``<file>.lock``), through a symlink to its target; folders we create are 0700. No Databricks token is
/// written: ``claude-code`` and ``codex`` run ``helper`` + ``token get``; ``gemini`` and ``opencode`` use the
/// gateway key.
///
/// Args:
///     agent: ``claude-code``, ``codex``, ``gemini`` or ``opencode``.
///     helper: The command that prints a token without ``token get``: an absolute program and its leading
///         arguments (e.g. ``["/app/.venv/bin/devbox-native"]``).
///     root_dir: The folder holding the agents' folders (None: where the agent reads, see
///         :func:`agent_config_file`).
///     host: The workspace (None: ``DATABRICKS_HOST``); ``https://`` is added when there is no scheme.
///     route: ``serving-endpoints`` or ``ai-gateway``.
///     model: The model (None: the agent's default).
///     gateway_url: The loopback gateway (``gemini`` and ``opencode`` only, required there).
///     gateway_key_file: The gateway key's file (``gemini`` and ``opencode`` only, required there).
///
/// Returns:
///     The agent's main file, whether a file changed, and warnings (e.g. a removed ``ANTHROPIC_API_KEY``).
///
/// Raises:
///     ValueError: an unknown agent or route (naming it and listing the valid ones), a helper that is not
///         absolute, a bad host, model or gateway URL.
///     ConfigError: a file that is not valid JSON/TOML (named; left untouched), or a gateway agent without a
///         gateway (the message says how to start one).
///     MissingEnvVarError: ``host`` is None and ``DATABRICKS_HOST`` is not set.
///     OSError: a file cannot be read or written.
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
        agents::configure(agent, place(&root_dir), &ProcessEnv, &settings)
    })?;
    Ok((out.path, out.changed, out.warnings))
}

/// Take out of one agent's files what :func:`configure_agent` put there; everything else stays, and a
/// missing file stays missing. Returns the agent's main file and whether a file changed.
#[pyfunction]
#[pyo3(signature = (agent, *, root_dir = None))]
pub fn unconfigure_agent(py: Python<'_>, agent: &str, root_dir: Option<PathBuf>) -> PyResult<(PathBuf, bool)> {
    let agent = Agent::parse(agent)?;
    let out = py.detach(|| agents::unconfigure(agent, place(&root_dir), &ProcessEnv))?;
    Ok((out.path, out.changed))
}
