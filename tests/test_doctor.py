"""`devbox-native doctor`: it asks the workspace (accepted / refused / unreachable, `--offline` skips it), finds
CCR's version without npm when a cheaper source answers, and is clean right after `setup`."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import devbox_native
import pytest
from devbox_native.cli import EXIT_OK, EXIT_PROBLEMS, main
from devbox_native.testing import FakeWorkspace

Doctor = Callable[..., tuple[int, dict[str, dict[str, Any]]]]


@pytest.fixture
def doctor(capsys: pytest.CaptureFixture[str]) -> Doctor:
    """Runs `doctor --json ARGS...`: its exit code and its checks by name."""

    def run(*args: str) -> tuple[int, dict[str, dict[str, Any]]]:
        capsys.readouterr()
        code = main("doctor", "--json", *args)
        return code, {c["check"]: c for c in json.loads(capsys.readouterr().out)["checks"]}

    return run


def _no_ccr(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A PATH with neither ccr nor npm (keeps the tests quick and independent of what is installed)."""
    empty = tmp_path / "empty-bin"
    empty.mkdir(exist_ok=True)
    monkeypatch.setenv("PATH", str(empty))


# ------------------------------------------------------------------------------------------------ workspace


def test_the_workspace_accepts_the_credentials(
    fake_workspace_env: FakeWorkspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, doctor: Doctor
) -> None:
    _no_ccr(tmp_path, monkeypatch)
    fake_workspace_env.clear_requests()
    code, checks = doctor("--root", str(tmp_path))
    assert code == EXIT_OK
    assert checks["workspace"]["status"] == "ok" and "accepted" in checks["workspace"]["detail"]
    assert any(r.path == "/api/2.0/token/list" for r in fake_workspace_env.requests)


def test_a_revoked_token_is_refused_with_exit_3(
    fake_workspace_env: FakeWorkspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, doctor: Doctor
) -> None:
    _no_ccr(tmp_path, monkeypatch)
    ws = fake_workspace_env
    created = devbox_native.create_token(comment="doctor-test")
    ws.revoke_token(created.token_id)
    monkeypatch.delenv("DATABRICKS_CLIENT_ID")
    monkeypatch.delenv("DATABRICKS_CLIENT_SECRET")
    monkeypatch.setenv("DATABRICKS_TOKEN", created.token_value)
    code, checks = doctor("--root", str(tmp_path))
    assert code == EXIT_PROBLEMS
    check = checks["workspace"]
    assert check["status"] == "problem" and check["status_code"] == 403 and "error_code" in check
    assert "refused the credentials (403" in check["detail"] and created.token_value not in json.dumps(checks)
    # The same with a token the workspace never issued.
    monkeypatch.setenv("DATABRICKS_TOKEN", "dapi-not-a-token-of-this-workspace")
    code, checks = doctor("--root", str(tmp_path))
    assert code == EXIT_PROBLEMS and checks["workspace"]["status_code"] in (401, 403)


def test_a_wrong_client_secret_is_refused_with_exit_3(
    fake_workspace_env: FakeWorkspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, doctor: Doctor
) -> None:
    _no_ccr(tmp_path, monkeypatch)
    monkeypatch.setenv("DATABRICKS_CLIENT_SECRET", "not-the-secret-of-this-principal")
    code, checks = doctor("--root", str(tmp_path))
    assert code == EXIT_PROBLEMS
    assert checks["workspace"]["status"] == "problem" and "refused the credentials" in checks["workspace"]["detail"]
    assert "not-the-secret-of-this-principal" not in json.dumps(checks)


def test_an_unreachable_host_is_a_problem_with_the_cause_within_seconds(
    clean_env: pytest.MonkeyPatch, tmp_path: Path, doctor: Doctor
) -> None:
    _no_ccr(tmp_path, clean_env)
    clean_env.setenv("DATABRICKS_HOST", "http://127.0.0.1:1")
    clean_env.setenv("DATABRICKS_TOKEN", "dapi-anything")
    started = time.monotonic()
    code, checks = doctor("--root", str(tmp_path))
    elapsed = time.monotonic() - started
    assert code == EXIT_PROBLEMS
    check = checks["workspace"]
    assert check["status"] == "problem" and "unreachable" in check["detail"]
    assert "refused" in check["detail"].lower(), check["detail"]
    assert elapsed < 60, "well under the library's 300 s budget (doctor allows 5 s)"
    # --timeout sets that budget.
    started = time.monotonic()
    code, checks = doctor("--root", str(tmp_path), "--timeout", "1")
    assert code == EXIT_PROBLEMS and "unreachable" in checks["workspace"]["detail"]
    assert time.monotonic() - started < 30


def test_offline_makes_no_request(
    fake_workspace_env: FakeWorkspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, doctor: Doctor
) -> None:
    _no_ccr(tmp_path, monkeypatch)
    fake_workspace_env.clear_requests()
    code, checks = doctor("--root", str(tmp_path), "--offline")
    assert code == EXIT_OK and "workspace" not in checks
    assert fake_workspace_env.requests == []


# ---------------------------------------------------------------------------------------------- CCR version


def _fake_npm(bin_dir: Path) -> Path:
    """An `npm` that records each call in a file next to it."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    calls = bin_dir / "npm-calls"
    npm = bin_dir / "npm"
    npm.write_text(f'#!/bin/sh\necho "$@" >> {calls}\necho "{{}}"\n')
    npm.chmod(0o755)
    return calls


def test_npm_is_not_run_when_package_json_answers(
    fake_workspace_env: FakeWorkspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, doctor: Doctor
) -> None:
    package = tmp_path / "lib" / "node_modules" / "@musistudio" / "claude-code-router"
    (package / "dist").mkdir(parents=True)
    (package / "package.json").write_text(json.dumps({"name": devbox_native._ccr.PACKAGE, "version": "1.0.73"}))
    cli = package / "dist" / "cli.js"
    cli.write_text("#!/bin/sh\nexit 1\n")
    cli.chmod(0o755)
    bin_dir = tmp_path / "bin"
    calls = _fake_npm(bin_dir)
    (bin_dir / "ccr").symlink_to(cli)
    monkeypatch.setenv("PATH", str(bin_dir))
    code, checks = doctor("--root", str(tmp_path), "--offline")
    assert code == EXIT_OK
    assert checks["ccr"]["version"] == "1.0.73" and checks["ccr"]["source"] == "package.json"
    assert not calls.exists(), "npm was run although package.json answered"


def test_npm_is_run_last_when_nothing_else_answers(
    fake_workspace_env: FakeWorkspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, doctor: Doctor
) -> None:
    calls = _fake_npm(tmp_path / "bin")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    code, checks = doctor("--root", str(tmp_path), "--offline")
    assert code == EXIT_OK and checks["ccr"]["version"] is None
    assert calls.read_text().split()[:2] == ["ls", "-g"]


def _npm_prefix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """npm installed as node installs it: <prefix>/bin/npm -> ../lib/node_modules/npm/bin/npm-cli.js (a fake that
    records its calls); PATH holds only <prefix>/bin. Returns the global folder and the record of calls."""
    prefix = tmp_path / "node"
    npm_bin = prefix / "lib" / "node_modules" / "npm" / "bin"
    calls = _fake_npm(npm_bin)
    (npm_bin / "npm").rename(npm_bin / "npm-cli.js")
    (prefix / "bin").mkdir()
    (prefix / "bin" / "npm").symlink_to(npm_bin / "npm-cli.js")
    monkeypatch.setenv("PATH", str(prefix / "bin"))
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.npmrc
    for name in ("NPM_CONFIG_PREFIX", "npm_config_prefix"):
        monkeypatch.delenv(name, raising=False)
    return prefix / "lib" / "node_modules", calls


def test_a_global_install_off_path_is_found_without_running_npm(
    fake_workspace_env: FakeWorkspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, doctor: Doctor
) -> None:
    folder, calls = _npm_prefix(tmp_path, monkeypatch)
    package = folder / devbox_native._ccr.PACKAGE
    package.mkdir(parents=True)
    (package / "package.json").write_text(json.dumps({"name": devbox_native._ccr.PACKAGE, "version": "3.1.1"}))
    code, checks = doctor("--root", str(tmp_path), "--offline")
    assert code == EXIT_OK and checks["ccr"]["version"] == "3.1.1" and checks["ccr"]["source"] == "package.json"
    assert not calls.exists(), "npm was run although its global folder answered"


def test_the_global_folder_of_a_configured_prefix_is_read(
    fake_workspace_env: FakeWorkspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, doctor: Doctor
) -> None:
    _folder, calls = _npm_prefix(tmp_path, monkeypatch)
    elsewhere = tmp_path / "custom" / "lib" / "node_modules" / devbox_native._ccr.PACKAGE
    elsewhere.mkdir(parents=True)
    (elsewhere / "package.json").write_text(json.dumps({"name": devbox_native._ccr.PACKAGE, "version": "1.0.73"}))
    (tmp_path / ".npmrc").write_text(f"fund=false\nprefix = {tmp_path / 'custom'}\n")
    code, checks = doctor("--root", str(tmp_path), "--offline")
    assert code == EXIT_OK and checks["ccr"]["version"] == "1.0.73" and not calls.exists()
    (tmp_path / ".npmrc").unlink()
    monkeypatch.setenv("NPM_CONFIG_PREFIX", str(tmp_path / "custom"))
    code, checks = doctor("--root", str(tmp_path), "--offline")
    assert code == EXIT_OK and checks["ccr"]["version"] == "1.0.73" and not calls.exists()


def test_no_ccr_in_the_global_folder_means_not_installed_without_running_npm(
    fake_workspace_env: FakeWorkspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, doctor: Doctor
) -> None:
    _folder, calls = _npm_prefix(tmp_path, monkeypatch)
    code, checks = doctor("--root", str(tmp_path), "--offline")
    assert code == EXIT_OK and checks["ccr"]["version"] is None and checks["ccr"]["status"] == "warn"
    assert not calls.exists(), "npm was run although its global folder has no CCR"


# ---------------------------------------------------------------------------------------------- after setup


def test_a_fresh_setup_leaves_doctor_clean(
    fake_workspace_env: FakeWorkspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, doctor: Doctor
) -> None:
    _no_ccr(tmp_path, monkeypatch)
    devbox_native.TokenBroker(kind="pat").get()  # the broker holds its own token
    assert main("setup", "--root", str(tmp_path)) == EXIT_OK  # the app's sdk- token goes into config.json
    code, checks = doctor("--root", str(tmp_path))
    assert code == EXIT_OK
    check = checks["ccr_config"]
    assert check["status"] == "ok" and "different token" not in check["detail"], check
    # Once the workspace refuses that token, doctor says so (exit 3).
    token = json.loads((tmp_path / ".claude-code-router" / "config.json").read_text())["Providers"][0]["api_key"]
    token_id = fake_workspace_env.token_id_of(token)
    assert token_id is not None
    fake_workspace_env.revoke_token(token_id)
    code, checks = doctor("--root", str(tmp_path))
    assert code == EXIT_PROBLEMS and checks["ccr_config"]["status"] == "problem"
    assert "refuses" in checks["ccr_config"]["detail"] and token not in json.dumps(checks)
    # --offline cannot tell: a warning.
    code, checks = doctor("--root", str(tmp_path), "--offline")
    assert code == EXIT_OK and checks["ccr_config"]["status"] == "warn"


# ---------------------------------------------------------------------------------------------------- agents


def test_each_configured_agent_points_here_and_its_helper_returns_a_token(
    fake_workspace_env: FakeWorkspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, doctor: Doctor
) -> None:
    _no_ccr(tmp_path, monkeypatch)
    assert main("setup", "--agents", "claude-code,codex", "--root", str(tmp_path)) == EXIT_OK
    code, checks = doctor("--root", str(tmp_path))
    assert code == EXIT_OK
    for name in ("agent_claude_code", "agent_codex"):
        assert checks[name]["status"] == "ok" and "returns a token" in checks[name]["detail"], checks[name]
    assert fake_workspace_env.host in checks["agent_codex"]["detail"]
    # --offline does not run the helpers (they may mint a token): no request.
    fake_workspace_env.clear_requests()
    code, offline = doctor("--root", str(tmp_path), "--offline")
    assert code == EXIT_OK and "helper not run" in offline["agent_codex"]["detail"]
    assert fake_workspace_env.requests == []
    # The token the helpers print is never shown.
    token = devbox_native.TokenBroker().get()
    assert token not in json.dumps(checks)
    # A helper that gives no token is a problem; a file pointing elsewhere a warning.
    settings = tmp_path / ".claude" / "settings.json"
    data = json.loads(settings.read_text())
    data["apiKeyHelper"] = "/bin/false token get"
    settings.write_text(json.dumps(data))
    config = tmp_path / ".codex" / "config.toml"
    config.write_text(config.read_text().replace(fake_workspace_env.host, "https://elsewhere.example"))
    code, checks = doctor("--root", str(tmp_path))
    assert code == EXIT_PROBLEMS
    assert checks["agent_claude_code"]["status"] == "problem" and "no token" in checks["agent_claude_code"]["detail"]
    assert checks["agent_codex"]["status"] == "warn" and "elsewhere" in checks["agent_codex"]["detail"]
    # An agent neither configured nor installed gets no line.
    assert main("setup", "--remove", "--agents", "claude-code,codex", "--root", str(tmp_path)) == EXIT_OK
    settings.unlink(missing_ok=True)
    config.unlink(missing_ok=True)
    code, checks = doctor("--root", str(tmp_path))
    assert "agent_claude_code" not in checks and "agent_codex" not in checks
