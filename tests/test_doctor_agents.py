"""`devbox-native doctor`, per coding agent (`agent_<name>`, `agent_<name>_cli`), with real files, a real
gateway, real helper processes and, where `make agents-deps` installed them, the real CLIs:

- Claude Code and Codex: the file points at this workspace and its helper, run as the agent runs it, returns
  the broker's token with more life left than the agent keeps it (never shown); too long a keep, Codex's
  `refresh_interval_ms = 0`, a helper slower than `timeout_ms` or one printing someone else's token are found;
- Gemini CLI and OpenCode: the file points at the running gateway with its key (compared, never shown), the
  gateway answers `/health`; a wrong key, URL, key file, auth type or a stopped gateway is a problem;
- a file that is not trusted (a FIFO) is not read;
- each CLI's version, from its package.json (what `--version` prints, checked against the real CLIs in a
  network namespace with loopback only), else from `--version` with a timeout.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import devbox_native
import pytest
from devbox_native import Gateway, start_gateway
from devbox_native.cli import EXIT_OK, EXIT_PROBLEMS, main
from devbox_native.testing import FakeWorkspace

ROOT = Path(__file__).resolve().parent.parent
AGENTS_BIN = ROOT / ".cache/agents/node_modules/.bin"
PINS = json.loads((ROOT / "tests/agents/package.json").read_text())["dependencies"]

Doctor = Callable[..., tuple[int, dict[str, dict[str, Any]]]]


@pytest.fixture
def doctor(capsys: pytest.CaptureFixture[str]) -> Doctor:
    """Runs `doctor --json ARGS...`: its exit code and its checks by name (the raw output must hold no secret:
    `secrets` lists what to look for)."""

    def run(*args: str, secrets: tuple[str, ...] = ()) -> tuple[int, dict[str, dict[str, Any]]]:
        capsys.readouterr()
        code = main("doctor", "--json", *args)
        out = capsys.readouterr().out
        for secret in secrets:
            assert secret not in out
        return code, {c["check"]: c for c in json.loads(out)["checks"]}

    return run


@pytest.fixture
def no_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A PATH with no agent CLI, ccr or npm on it: only agents configured under the root are checked. Returns
    that folder (a test may put a CLI in it)."""
    folder = tmp_path / "bin"
    folder.mkdir()
    monkeypatch.setenv("PATH", str(folder))
    return folder


@pytest.fixture
def gateway(fake_workspace_env: FakeWorkspace) -> Iterator[Gateway]:
    """A real credential gateway on the default broker cache (this test's XDG_CACHE_HOME)."""
    g = start_gateway()
    try:
        yield g
    finally:
        g.stop()


# ------------------------------------------------------------------------------------- Claude Code and Codex


def test_each_helper_returns_the_brokers_token_with_more_life_than_the_agent_keeps_it(
    fake_workspace_env: FakeWorkspace, tmp_path: Path, no_cli: Path, doctor: Doctor
) -> None:
    assert main("setup", "--agents", "claude-code,codex", "--root", str(tmp_path)) == EXIT_OK
    code, checks = doctor("--root", str(tmp_path))
    token = devbox_native.TokenBroker().get()  # what the helpers printed: the broker's cached token
    assert code == EXIT_OK
    for name in ("agent_claude_code", "agent_codex"):
        check = checks[name]
        assert check["status"] == "ok", check
        assert check["keeps_token_s"] == 300 and check["expires_in"] > 300, check
        assert f"{check['expires_in']} s left, more than the 300 s" in check["detail"]
        assert token not in json.dumps(check)
    assert "CLAUDE_CODE_API_KEY_HELPER_TTL_MS" in checks["agent_claude_code"]["detail"]
    assert "refresh_interval_ms" in checks["agent_codex"]["detail"]


def test_an_agent_keeping_the_token_longer_than_its_life_is_a_problem(
    fake_workspace_env: FakeWorkspace, tmp_path: Path, no_cli: Path, doctor: Doctor
) -> None:
    assert main("setup", "--agents", "claude-code,codex", "--root", str(tmp_path)) == EXIT_OK
    settings = tmp_path / ".claude" / "settings.json"
    data = json.loads(settings.read_text())
    data["env"]["CLAUDE_CODE_API_KEY_HELPER_TTL_MS"] = "7200000"  # 2 h: longer than a 1 h token lives
    settings.write_text(json.dumps(data))
    config = tmp_path / ".codex" / "config.toml"
    config.write_text(config.read_text().replace("refresh_interval_ms = 300000", "refresh_interval_ms = 0"))
    code, checks = doctor("--root", str(tmp_path))
    assert code == EXIT_PROBLEMS
    claude = checks["agent_claude_code"]
    assert claude["status"] == "problem" and "would send an expired token" in claude["detail"], claude
    assert claude["keeps_token_s"] == 7200 and 0 < claude["expires_in"] < 7200
    codex = checks["agent_codex"]
    assert codex["status"] == "problem" and "refresh_interval_ms = 0" in codex["detail"], codex
    # A keep that is not a number is named.
    data["env"]["CLAUDE_CODE_API_KEY_HELPER_TTL_MS"] = "5 minutes"
    settings.write_text(json.dumps(data))
    code, checks = doctor("--root", str(tmp_path))
    assert checks["agent_claude_code"]["status"] == "problem"
    assert "CLAUDE_CODE_API_KEY_HELPER_TTL_MS is not a number" in checks["agent_claude_code"]["detail"]


def _script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return path


def test_a_helper_slower_than_timeout_ms_or_printing_another_token_is_found(
    fake_workspace_env: FakeWorkspace, tmp_path: Path, no_cli: Path, doctor: Doctor
) -> None:
    assert main("setup", "--agents", "claude-code,codex", "--root", str(tmp_path)) == EXIT_OK
    pids = tmp_path / "helper-pids"
    slow = _script(tmp_path / "slow-helper", f"/bin/sleep 20 & echo $! > {pids}; wait; echo dapi-late")
    config = tmp_path / ".codex" / "config.toml"
    text = config.read_text()
    command = next(line for line in text.splitlines() if line.startswith("command = "))
    text = text.replace(command, f'command = "{slow}"').replace("timeout_ms = 30000", "timeout_ms = 500")
    config.write_text(text)
    settings = tmp_path / ".claude" / "settings.json"
    data = json.loads(settings.read_text())
    data["apiKeyHelper"] = "echo dapi-someone-elses; : token get"  # run by /bin/sh, as Claude Code runs it
    settings.write_text(json.dumps(data))
    started = time.monotonic()
    code, checks = doctor("--root", str(tmp_path))
    assert time.monotonic() - started < 15, "the slow helper is given Codex's 0.5 s, not 20 s"
    assert code == EXIT_PROBLEMS
    codex = checks["agent_codex"]
    assert codex["status"] == "problem" and "did not answer within 0.5 s" in codex["detail"], codex
    assert _gone(int(pids.read_text())), "the slow helper's process group was stopped"
    claude = checks["agent_claude_code"]
    assert claude["status"] == "warn" and "not the broker's cached one" in claude["detail"], claude
    assert "dapi-someone-elses" not in json.dumps(checks)


def _planted(path: Path) -> None:
    """Another user's Codex config naming a program of theirs as the helper."""
    if os.geteuid() != 0:
        pytest.skip("planting another user's file needs root")
    marker = path.parent / "ran"
    helper = _script(path.parent / "theirs", f"/bin/touch {marker}; echo dapi-x")
    host = os.environ["DATABRICKS_HOST"]  # fake_workspace_env's: the file would otherwise pass every check
    path.write_text(
        f'model_provider = "databricks"\n[model_providers.databricks]\nbase_url = "{host}/serving-endpoints"\n'
        f'[model_providers.databricks.auth]\ncommand = "{helper}"\nargs = ["token", "get"]\n'
    )
    os.chown(path, 4321, 4321)


@pytest.mark.parametrize("make", [lambda p: os.mkfifo(p, 0o600), _planted], ids=["fifo", "another-users-file"])
def test_an_agent_file_that_is_not_trusted_is_not_read(
    fake_workspace_env: FakeWorkspace, tmp_path: Path, no_cli: Path, doctor: Doctor, make: Callable[[Path], None]
) -> None:
    (tmp_path / ".codex").mkdir(mode=0o700)
    make(tmp_path / ".codex" / "config.toml")
    started = time.monotonic()
    code, checks = doctor("--root", str(tmp_path))
    assert time.monotonic() - started < 30, "a FIFO is not opened"
    assert code == EXIT_PROBLEMS
    check = checks["agent_codex"]
    assert check["status"] == "problem" and "not read, not trusted" in check["detail"], check
    assert not (tmp_path / ".codex" / "ran").exists(), "a helper named by someone else's file was run"


def test_without_root_doctor_checks_the_file_the_agent_reads(
    fake_workspace_env: FakeWorkspace, tmp_path: Path, no_cli: Path, doctor: Doctor, monkeypatch: pytest.MonkeyPatch
) -> None:
    home, codex_home = tmp_path / "home", tmp_path / "codex-home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("CODEX_HOME", str(codex_home))
    monkeypatch.delenv("CLAUDE_CONFIG_DIR", raising=False)
    assert main("setup", "--agents", "codex") == EXIT_OK
    _, checks = doctor()
    check = checks["agent_codex"]
    assert check["status"] == "ok" and check["path"] == str(codex_home / "config.toml"), check
    assert not (home / ".codex").exists()
    monkeypatch.setenv("CODEX_HOME", str(tmp_path / "empty"))  # moved again: doctor looks there, finds nothing
    (tmp_path / "empty").mkdir()
    _, checks = doctor()
    assert "agent_codex" not in checks  # neither configured there nor on PATH
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", "rel")
    code, checks = doctor()
    assert code == EXIT_PROBLEMS
    check = checks["agent_claude_code"]
    assert check["status"] == "problem" and "CLAUDE_CONFIG_DIR: must be an absolute path" in check["detail"], check


# ------------------------------------------------------------------------------------ Gemini CLI and OpenCode


def test_gateway_agents_point_at_the_running_gateway_with_its_key(
    fake_workspace_env: FakeWorkspace, gateway: Gateway, tmp_path: Path, no_cli: Path, doctor: Doctor
) -> None:
    devbox_native.configure_agents(["gemini", "opencode"], root_dir=tmp_path, gateway_url=gateway.url)
    key = gateway.key_path.read_text().strip()
    code, checks = doctor("--root", str(tmp_path), secrets=(key,))
    assert code == EXIT_OK
    for name in ("agent_gemini", "agent_opencode"):
        check = checks[name]
        assert check["status"] == "ok" and check["url"].startswith(gateway.url + "/"), check
        assert f"{gateway.url} answers (status ok)" in check["detail"], check
    assert checks["agent_gemini"]["url"] == gateway.url + "/ai-gateway/gemini"
    # --offline does not ask the gateway (its /health may mint a token).
    fake_workspace_env.clear_requests()
    code, checks = doctor("--root", str(tmp_path), "--offline", secrets=(key,))
    assert code == EXIT_OK and "not asked (--offline)" in checks["agent_gemini"]["detail"]
    assert fake_workspace_env.requests == []


def test_a_gateway_agent_with_another_key_url_key_file_or_auth_type_is_a_problem(
    fake_workspace_env: FakeWorkspace, gateway: Gateway, tmp_path: Path, no_cli: Path, doctor: Doctor
) -> None:
    devbox_native.configure_agents(["gemini", "opencode"], root_dir=tmp_path, gateway_url=gateway.url)
    key = gateway.key_path.read_text().strip()
    env_file = tmp_path / ".gemini" / ".env"
    good_env = env_file.read_text()
    opencode = tmp_path / ".config" / "opencode" / "opencode.json"
    good_opencode = opencode.read_text()

    def problem(name: str) -> str:
        code, checks = doctor("--root", str(tmp_path), secrets=(key,))
        assert code == EXIT_PROBLEMS and checks[name]["status"] == "problem", checks[name]
        return str(checks[name]["detail"])

    env_file.write_text(good_env.replace(key, "b2" * 32))
    assert "GEMINI_API_KEY is not the gateway's key" in problem("agent_gemini")
    env_file.write_text(good_env.replace(gateway.url, "http://127.0.0.1:9"))
    assert "GOOGLE_GEMINI_BASE_URL is http://127.0.0.1:9/ai-gateway/gemini, not" in problem("agent_gemini")
    env_file.write_text(good_env)
    settings = tmp_path / ".gemini" / "settings.json"
    settings.write_text(json.dumps({"security": {"auth": {"selectedType": "oauth-personal"}}}))
    assert "selectedType is not gemini-api-key" in problem("agent_gemini")
    opencode.write_text(good_opencode.replace(str(gateway.key_path), str(tmp_path / "another.key")))
    assert f"apiKey is not {{file:{gateway.key_path}}}" in problem("agent_opencode")
    opencode.write_text(good_opencode.replace(gateway.url, "https://elsewhere.example"))
    assert "points at https://elsewhere.example" in problem("agent_opencode")
    opencode.write_text(good_opencode)
    # No gateway running: both are problems (they cannot reach the workspace without it).
    gateway.stop()
    code, checks = doctor("--root", str(tmp_path), secrets=(key,))
    assert code == EXIT_PROBLEMS
    for name in ("agent_gemini", "agent_opencode"):
        assert "no credential gateway runs" in checks[name]["detail"], checks[name]


# ---------------------------------------------------------------------------------------------------- CLIs


def test_a_cli_outside_a_package_gives_its_version_with_a_timeout(
    fake_workspace_env: FakeWorkspace, tmp_path: Path, no_cli: Path, doctor: Doctor
) -> None:
    """No package.json around it: `--version` is run (stdin closed, telemetry off), and one that hangs is
    stopped after a few seconds, its process group with it."""
    marker = tmp_path / "stdin-and-env"
    body = f'/bin/cat > {marker}; echo "$DISABLE_TELEMETRY" >> {marker}; echo "2.9.1 (Claude Code)"'
    _script(no_cli / "claude", body)
    pids = tmp_path / "codex-pids"
    _script(no_cli / "codex", f"/bin/sleep 60 & echo $! >> {pids}; echo $$ >> {pids}; wait")
    started = time.monotonic()
    code, checks = doctor("--root", str(tmp_path), "--offline")
    elapsed = time.monotonic() - started
    assert code == EXIT_OK  # absent files and CLI versions are warnings at most
    claude = checks["agent_claude_code_cli"]
    assert claude["status"] == "ok" and claude["version"] == "2.9.1" and claude["source"] == "--version", claude
    assert marker.read_text() == "1\n", "stdin was closed (nothing read) and telemetry off"
    codex = checks["agent_codex_cli"]
    assert codex["status"] == "warn" and "did not answer within 5 s" in codex["detail"], codex
    assert elapsed < 20, "the hanging --version is stopped after 5 s"
    assert checks["agent_codex"]["status"] == "warn" and "absent" in checks["agent_codex"]["detail"]
    assert "agent_gemini" not in checks and "agent_gemini_cli" not in checks
    for pid in pids.read_text().split():
        assert _gone(int(pid)), f"{pid} of the hanging --version outlived doctor"


def _gone(pid: int, timeout: float = 10) -> bool:
    """Whether `pid` has exited (a zombie waiting for its reaper counts), within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.05)
    return False


def _real_clis() -> None:
    missing = [p for p in ("claude", "codex", "gemini", "opencode") if not (AGENTS_BIN / p).exists()]
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"{AGENTS_BIN}: {', '.join(missing)} missing (`make agents-deps`)")
        pytest.skip(f"{AGENTS_BIN}: {', '.join(missing)} missing (run `make agents-deps`)")


def test_the_real_clis_versions_come_from_their_package_json_without_running_them(
    fake_workspace_env: FakeWorkspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, doctor: Doctor
) -> None:
    _real_clis()
    monkeypatch.setenv("PATH", f"{AGENTS_BIN}:/usr/bin:/bin")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    started = time.monotonic()
    _code, checks = doctor("--root", str(tmp_path / "home"), "--offline")
    elapsed = time.monotonic() - started
    packages = {"claude_code": "@anthropic-ai/claude-code", "codex": "@openai/codex"}
    packages |= {"gemini": "@google/gemini-cli", "opencode": "opencode-ai"}
    for agent, package in packages.items():
        check = checks[f"agent_{agent}_cli"]
        assert check["status"] == "ok" and check["source"] == "package.json", check
        assert check["version"] == PINS[package], check
    assert elapsed < 5, f"no CLI was started (doctor took {elapsed:.1f} s)"
    assert list((tmp_path / "home").iterdir()) == [], "nothing was written into HOME"


def test_package_json_holds_what_each_real_cli_prints_offline(tmp_path: Path) -> None:
    """The claim the shortcut rests on: `<cli> --version`, run in a network namespace with loopback only, prints
    the version its package.json states. Also the fallback itself, on the real CLIs."""
    _real_clis()
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("a network namespace needs root and unshare")
    from devbox_native import _ccr, _doctor_agents

    env = {"PATH": f"{AGENTS_BIN}:/usr/bin:/bin", "HOME": str(tmp_path), **_doctor_agents.QUIET_ENV}
    for agent, package in _doctor_agents.PACKAGES.items():
        program = str(AGENTS_BIN / {"claude-code": "claude"}.get(agent, agent))
        hit = _ccr._package_json_of(program, package)
        assert hit is not None and hit[0] == PINS[package]
        done = subprocess.run(
            ["unshare", "-n", program, "--version"],
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0 and hit[0] in done.stdout, (agent, done.stdout, done.stderr[-500:])
