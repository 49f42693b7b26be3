"""The DevBox app's start-up file (``app/vibe_code.py``), rewired to devbox_native.

What changed against the original:
- ``from databricks.sdk import WorkspaceClient`` is gone: the token functions come from devbox_native
  (same names and signatures; no 1.4 s SDK import, the OAuth token is cached between calls).
- ``materialize_configs``/``setup_databricks_cfg`` write atomically with mode 0600 (folders 0700), honour
  the root folder everywhere (the plugin path too) and never write ``https://https://``.
- The agents the app installs are wired to the workspace too, with credentials that refresh themselves and no
  Databricks token in their files (``configure_agents``): Claude Code and Codex run ``devbox-native token get``;
  Gemini CLI, which reads its key once, talks to the loopback credential gateway with the gateway key. CCR is
  configured as before (a token minted at start-up).
- The rest (npm installs, ``ccr restart``, shell aliases) is the app's own business and stays as it was.

The gateway runs inside the app's process (``start_gateway``, on the library's runtime), so it lives exactly as
long as the app: call the start-up from the app's long-lived process, not from a short-lived child. Nothing else
is to be managed: no PID file, no second process to stop; the container's terminals (and the agents in them) go
away with the app anyway. At the next start the gateway.json of the stopped one is replaced, a new gateway
starts and Gemini CLI's ``.env`` is written again with its URL; the key file stays. One gateway runs per
cache: when one is already running (a ``devbox-native gateway`` someone started, or an earlier call in this
process), it is used instead of starting a second.
"""

from __future__ import annotations

import atexit
import os
import subprocess
from pathlib import Path

from devbox_native import (
    Gateway,
    configure_agents,
    ensure_https_url,
    generate_spn_token,
    get_databricks_transformers_js,
    make_config,
    materialize_configs,
    running_gateway,
    setup_databricks_cfg,
    start_gateway,
)

__all__ = [
    "APP_AGENTS",
    "DEFAULT_ROOT_DIR",
    "ensure_https_url",
    "generate_spn_token",
    "get_databricks_transformers_js",
    "make_config",
    "materialize_configs",
    "setup_databricks_cfg",
    "setup_node_and_vibe_coding_tools",
    "start_credential_gateway",
    "start_tokens_and_configs",
    "stop_credential_gateway",
]

DEFAULT_ROOT_DIR = "/app/python/source_code"
DEFAULT_ROOT_DIR_PATH = Path(DEFAULT_ROOT_DIR)

#: The agents the app installs with npm (besides CCR), as ``configure_agents`` names them.
APP_AGENTS = ("claude-code", "codex", "gemini")

_gateway: Gateway | None = None  # the gateway this process started, kept alive as long as the process


def _run(cmd: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, check=True, text=True, env=env or dict(os.environ))


def start_credential_gateway() -> str:
    """The loopback credential gateway's URL: the one already running on the default cache, else one started
    in this process (stopped when the process exits)."""
    global _gateway
    running = running_gateway()
    if running is not None:
        return running[2]
    _gateway = start_gateway()
    atexit.register(_gateway.stop)
    return _gateway.url


def stop_credential_gateway() -> None:
    """Stop the gateway this process started, if any (as the app's exit does)."""
    global _gateway
    if _gateway is not None:
        _gateway.stop()
        atexit.unregister(_gateway.stop)
        _gateway = None


def start_tokens_and_configs() -> dict[str, Path]:
    """The token + config part of the app's start-up: mint a token and write CCR's files under HOME, start the
    credential gateway, wire the app's agents. Returns each file written: ``ccr`` and one per agent."""
    databricks_token = generate_spn_token()
    materialize_configs(databricks_token)
    written = configure_agents(APP_AGENTS, gateway_url=start_credential_gateway())
    return {"ccr": Path.home() / ".claude-code-router" / "config.json", **written}


def setup_node_and_vibe_coding_tools() -> None:
    """The app's full start-up (installs the coding tools with npm and restarts CCR)."""
    home = os.environ["HOME"]
    Path(f"{home}/.npm-global/bin").mkdir(parents=True, exist_ok=True)
    os.environ["NPM_CONFIG_PREFIX"] = f"{home}/.npm-global"
    os.environ["PATH"] = f"{home}/.npm-global/bin:{os.environ['PATH']}"

    start_tokens_and_configs()

    for package in (
        "@anthropic-ai/claude-code",
        # Pinned: CCR 3.x imports config.json once and ignores later edits (see CCR-CONFIG.md).
        "@musistudio/claude-code-router@1.0.73",
        "@openai/codex",
        "@google/gemini-cli",
    ):
        _run(["npm", "install", "-g", package])
    _run(["ccr", "restart"])

    bashrc = Path(home) / ".bashrc"
    ccr_code_alias = 'alias cc="ccr code"'
    # Codex reads $CODEX_HOME/config.toml when CODEX_HOME is set (the app's environment sets it), and
    # configure_agents above, run in that same environment, wrote our provider there (each agent's file goes where
    # the agent reads it: README "Agents"); the alias only recreates the folder should it have been removed.
    codex_alias = "alias codex='mkdir -p $CODEX_HOME && \\codex'"
    lines = bashrc.read_text().splitlines() if bashrc.exists() else []
    if not any(line.strip() == ccr_code_alias for line in lines):
        with open(bashrc, "a") as f:
            f.write(f"\n{ccr_code_alias}\n{codex_alias}\n")
