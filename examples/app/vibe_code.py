"""The DevBox app's start-up file (``app/vibe_code.py``), rewired to devbox_native.

What changed against the original:
- ``from databricks.sdk import WorkspaceClient`` is gone: the token functions come from devbox_native
  (same names and signatures; no 1.4 s SDK import, the OAuth token is cached between calls).
- ``materialize_configs``/``setup_databricks_cfg`` write atomically with mode 0600 (folders 0700), honour
  the root folder everywhere (the plugin path too) and never write ``https://https://``.
- The rest (npm installs, ``ccr restart``, shell aliases) is the app's own business and stays as it was.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from devbox_native import (
    ensure_https_url,
    generate_spn_token,
    get_databricks_transformers_js,
    make_config,
    materialize_configs,
    setup_databricks_cfg,
)

__all__ = [
    "DEFAULT_ROOT_DIR",
    "ensure_https_url",
    "generate_spn_token",
    "get_databricks_transformers_js",
    "make_config",
    "materialize_configs",
    "setup_databricks_cfg",
    "setup_node_and_vibe_coding_tools",
    "start_tokens_and_configs",
]

DEFAULT_ROOT_DIR = "/app/python/source_code"
DEFAULT_ROOT_DIR_PATH = Path(DEFAULT_ROOT_DIR)


def _run(cmd: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, check=True, text=True, env=env or dict(os.environ))


def start_tokens_and_configs() -> Path:
    """The token + config part of the app's start-up: mint a token, write CCR's files under HOME."""
    databricks_token = generate_spn_token()
    materialize_configs(databricks_token)
    return Path.home() / ".claude-code-router" / "config.json"


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
    codex_alias = "alias codex='mkdir -p $CODEX_HOME && \\codex'"
    lines = bashrc.read_text().splitlines() if bashrc.exists() else []
    if not any(line.strip() == ccr_code_alias for line in lines):
        with open(bashrc, "a") as f:
            f.write(f"\n{ccr_code_alias}\n{codex_alias}\n")
