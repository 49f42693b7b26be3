"""pytest fixtures for testing against a local Databricks workspace emulator.

Opt-in: installing devbox_native does not load it. Enable it with ``pytest_plugins = ["devbox_native.pytest_plugin"]``
in a top-level ``conftest.py`` or with ``pytest -p devbox_native.pytest_plugin``; it provides:

* ``fake_workspace``: a started `devbox_native.testing.FakeWorkspace`, stopped after the test;
* ``fake_workspace_env``: the same workspace, with every ``DATABRICKS_*`` variable and
  ``CLAUDE_CODE_TOKEN_EXPIRY_SECONDS`` removed from the environment and ``ws.env()`` set instead.

The emulator module is imported inside the fixtures, so loading this plugin costs nothing.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from devbox_native.testing import FakeWorkspace

__all__ = ["fake_workspace", "fake_workspace_env"]

_EXTRA_ENV_TO_CLEAR = ("CLAUDE_CODE_TOKEN_EXPIRY_SECONDS",)


@pytest.fixture
def fake_workspace() -> Iterator[FakeWorkspace]:
    """A started `FakeWorkspace` with default settings; stopped when the test ends."""
    from devbox_native.testing import FakeWorkspace

    with FakeWorkspace() as ws:
        yield ws


@pytest.fixture
def fake_workspace_env(fake_workspace: FakeWorkspace, monkeypatch: pytest.MonkeyPatch) -> FakeWorkspace:
    """`fake_workspace`, with the process environment pointing at it (and nothing else Databricks-related)."""
    for name in list(os.environ):
        if name.startswith("DATABRICKS_") or name in _EXTRA_ENV_TO_CLEAR:
            monkeypatch.delenv(name)
    for name, value in fake_workspace.env().items():
        monkeypatch.setenv(name, value)
    return fake_workspace
