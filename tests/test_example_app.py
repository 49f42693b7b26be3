"""examples/app/vibe_code.py: the app's start-up file rewired to devbox_native, run against the emulator."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest
from conftest import expected_config, mode
from devbox_native.testing import FakeWorkspace

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "app" / "vibe_code.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("vibe_code_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_app_never_imports_the_sdk() -> None:
    before = set(sys.modules)
    _load()
    assert not any(m.startswith("databricks") for m in set(sys.modules) - before)


def test_token_and_config_steps_against_the_emulator(
    fake_workspace_env: FakeWorkspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    app = _load()
    config_path = app.start_tokens_and_configs()
    assert config_path == tmp_path / ".claude-code-router" / "config.json"
    cfg = json.loads(config_path.read_text())
    token = cfg["Providers"][0]["api_key"]
    assert fake_workspace_env.is_live(token)
    assert cfg == expected_config(token, tmp_path, fake_workspace_env.host)
    assert mode(config_path) == 0o600 and mode(config_path.parent) == 0o700
    app.setup_databricks_cfg()
    assert mode(tmp_path / ".databrickscfg") == 0o600
