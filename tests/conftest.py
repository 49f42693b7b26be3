"""Shared helpers for the Python tests. Fixtures for the emulator come from devbox_native's opt-in pytest plugin
(``fake_workspace``, ``fake_workspace_env``), enabled here."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytest_plugins = ["devbox_native.pytest_plugin"]


def mode(path: Path) -> int:
    """Permission bits of a path."""
    return stat.S_IMODE(os.stat(path).st_mode)


def expected_config(token: str, root: Path, host_url: str, model: str = "databricks-claude-sonnet-4") -> dict[str, Any]:
    """The config structure of CCR-CONFIG.md, written out independently of the implementation."""
    plugin = str(root / ".claude-code-router" / "plugins" / "databricks-claude-transformers.js")
    return {
        "LOG": False,
        "LOG_LEVEL": "debug",
        "CLAUDE_PATH": "",
        "HOST": "127.0.0.1",
        "PORT": 3456,
        "APIKEY": "",
        "API_TIMEOUT_MS": "600000",
        "PROXY_URL": "",
        "transformers": [{"path": plugin, "options": {"debug": False}}],
        "Providers": [
            {
                "name": "databricks",
                "api_base_url": f"{host_url}/serving-endpoints/{model}/invocations",
                "api_key": token,
                "models": [model],
                "transformer": {
                    "use": ["OpenAI", "databricks-custom"],
                    model: {"use": ["OpenAI", "databricks-custom"]},
                },
            }
        ],
        "StatusLine": {
            "enabled": False,
            "currentStyle": "default",
            "default": {"modules": []},
            "powerline": {"modules": []},
        },
        "Router": {"default": f"databricks,{model}"},
    }


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No DATABRICKS_* or CLAUDE_CODE_* variables, and a HOME with no config file."""
    for name in list(os.environ):
        if name.startswith(("DATABRICKS_", "CLAUDE_CODE_")):
            monkeypatch.delenv(name)
    home = tmp_path / "clean-env-home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    return monkeypatch


@pytest.fixture(autouse=True)
def _private_cache_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test (and every subprocess it starts) gets its own XDG_CACHE_HOME: the broker's default cache never
    touches the real ~/.cache."""
    cache = tmp_path_factory.mktemp("xdg-cache")
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    return cache


def age_cache(path: Path, seconds_left: float) -> None:
    """Make every entry of a broker cache file expire `seconds_left` seconds from now (the file format is
    documented in README "Token broker")."""
    data = json.loads(path.read_text())
    for entry in data["entries"].values():
        entry["expires_at"] = time.time() + seconds_left
    path.write_text(json.dumps(data))
    path.chmod(0o600)


def run_py(script: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run a Python snippet in a fresh interpreter with this environment."""
    return subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def wait_child(pid: int, timeout: float) -> int:
    """The exit code of a forked child; a child still running after `timeout` seconds is killed (it hung)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.05)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    pytest.fail("the forked child hung")
