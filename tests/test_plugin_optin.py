"""The pytest plugin is opt-in: installing devbox_native does not give another project our fixtures."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

_TEST = """
def test_uses_the_fixture(fake_workspace):
    assert fake_workspace.env()["DATABRICKS_HOST"].startswith("http://127.0.0.1:")
"""


def _run_pytest(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """pytest in a scratch project, with plugin autoloading left on (as in any project that installs the wheel)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "DATABRICKS_"))}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    (tmp_path / "test_it.py").write_text(_TEST, encoding="utf-8")
    return tmp_path


def test_without_the_opt_in_there_is_no_fixture(project: Path) -> None:
    done = _run_pytest(project)
    assert done.returncode != 0, done.stdout + done.stderr
    assert "fixture 'fake_workspace' not found" in done.stdout, done.stdout + done.stderr


def test_dash_p_enables_the_fixtures(project: Path) -> None:
    done = _run_pytest(project, "-p", "devbox_native.pytest_plugin")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout


def test_pytest_plugins_in_conftest_enables_the_fixtures(project: Path) -> None:
    (project / "conftest.py").write_text('pytest_plugins = ["devbox_native.pytest_plugin"]\n', encoding="utf-8")
    done = _run_pytest(project)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout
