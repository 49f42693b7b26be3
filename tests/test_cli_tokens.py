"""The `devbox-native` token, ccr and doctor commands: as functions (`cli.main`) and as real subprocesses."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import devbox_native
import pytest
from conftest import mode
from devbox_native.cli import EXIT_ERROR, EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE, main
from devbox_native.testing import FakeWorkspace

EXE = str(Path(sys.executable).parent / "devbox-native")


def _json(capsys: pytest.CaptureFixture[str]) -> Any:
    return json.loads(capsys.readouterr().out)


def test_token_get_prints_only_the_token_and_hits_the_cache(fake_workspace_env: FakeWorkspace) -> None:
    ws = fake_workspace_env
    first = subprocess.run([EXE, "token", "get"], capture_output=True, text=True, timeout=60)
    assert first.returncode == 0 and first.stderr == ""
    token = first.stdout.removesuffix("\n")
    assert first.stdout == token + "\n" and "\n" not in token and ws.accepts(token)  # OAuth: kind auto
    ws.clear_requests()
    again = subprocess.run([sys.executable, "-m", "devbox_native", "token", "get"], capture_output=True, text=True)
    assert again.stdout == first.stdout and again.returncode == 0
    assert ws.requests == []  # a cache hit makes no network call


def test_token_get_fast_path_imports_nothing_heavy(fake_workspace_env: FakeWorkspace) -> None:
    script = (
        "import sys\n"
        "before = set(sys.modules)\n"
        "from devbox_native.cli import main\n"
        "assert main('token', 'get') == 0\n"
        "heavy = {'argparse', 'asyncio', 'json', 'logging', 'typing', 'pathlib', 're', 'subprocess'}\n"
        "print(sorted(heavy & (set(sys.modules) - before)), file=sys.stderr)\n"
        "import os\n"
        "print(len(os.listdir('/proc/self/task')), file=sys.stderr)  # no async runtime threads\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, timeout=60)  # warm the cache
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stderr.split() == ["[]", "1"]


def test_the_installed_command_answers_token_get_without_the_cli_module(fake_workspace_env: FakeWorkspace) -> None:
    # The file agents run (`apiKeyHelper`, Codex's auth.command) is our launcher, not a console-script wrapper
    # (pip's imports `re`): on a cache hit it loads only the package and its small entry module.
    first = subprocess.run([EXE, "token", "get"], capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    fake_workspace_env.clear_requests()
    hit = subprocess.run([sys.executable, "-X", "importtime", EXE, "token", "get"], capture_output=True, text=True)
    assert hit.returncode == 0 and hit.stdout == first.stdout and fake_workspace_env.requests == []
    imported = {line.rsplit("|", 1)[-1].strip() for line in hit.stderr.splitlines() if line.startswith("import time:")}
    assert {"devbox_native", "devbox_native._native", "devbox_native._entry"} <= imported
    heavy = {"re", "argparse", "json", "typing", "__future__", "devbox_native.cli", "devbox_native.errors"}
    assert heavy & imported == set()
    # Everything else still reaches the full CLI, exit codes included.
    assert subprocess.run([EXE, "token", "nope"], capture_output=True, timeout=60).returncode == EXIT_USAGE
    version = subprocess.run([EXE, "--version"], capture_output=True, text=True, timeout=60)
    assert version.returncode == 0 and devbox_native.__version__ in version.stdout


def test_token_get_without_credentials_fails_cleanly(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("DATABRICKS_HOST", "http://127.0.0.1:9")
    done = subprocess.run([EXE, "token", "get"], capture_output=True, text=True, timeout=60)
    assert done.returncode == EXIT_ERROR and done.stdout == ""
    assert done.stderr.startswith("devbox-native: ConfigError: default auth: cannot configure default credentials")


def test_token_get_json_and_refresh(fake_workspace_env: FakeWorkspace, capsys: pytest.CaptureFixture[str]) -> None:
    ws = fake_workspace_env
    assert main("token", "get", "--kind", "pat", "--json", "--lifetime", "1200", "--margin", "100") == EXIT_OK
    got = _json(capsys)
    assert ws.is_live(got["token"]) and got["token_id"] == ws.token_id_of(got["token"])
    assert got["cache"].endswith("devbox-native/token.json") and got["expires_at"] > 0
    assert main("token", "get", "--kind", "pat", "--refresh") == EXIT_OK
    new = capsys.readouterr().out.strip()
    assert new != got["token"] and ws.is_live(new)
    # The replaced token stays valid for the grace period (a running CCR or agent may hold it), then goes.
    assert ws.is_live(got["token"])
    (pending,) = devbox_native.TokenBroker(kind="pat").pending_revocations
    assert pending["token_id"] == got["token_id"] and pending["next_attempt_at"] > time.time() + 250


def test_token_create_list_revoke(fake_workspace_env: FakeWorkspace, capsys: pytest.CaptureFixture[str]) -> None:
    ws = fake_workspace_env
    assert main("token", "create", "--lifetime", "60") == EXIT_OK
    out, err = capsys.readouterr()
    value = out.strip()
    assert ws.is_live(value) and err.startswith("token_id ")
    assert main("token", "create", "--comment", "hand-made", "--json") == EXIT_OK
    made = _json(capsys)
    assert made["comment"] == "hand-made" and ws.is_live(made["token_value"])
    assert main("token", "list", "--json") == EXIT_OK
    rows = {r["comment"]: r for r in _json(capsys)}
    assert rows["devbox-native-cli"]["minted_by"] == "devbox-native" and rows["hand-made"]["minted_by"] == "other"
    assert all("token_value" not in r for r in rows.values())
    assert main("token", "list") == EXIT_OK
    out, err = capsys.readouterr()
    assert "devbox-native-cli" in out and value not in out and err.strip() == "2 live token(s)"
    assert main("token", "revoke", made["token_id"], "--json") == EXIT_OK
    assert _json(capsys) == {"revoked": [made["token_id"]]}
    assert not ws.is_live(made["token_value"])
    assert main("token", "revoke", "no-such-id") == EXIT_ERROR
    assert "ResourceDoesNotExist" in capsys.readouterr().err


def test_token_cleanup(fake_workspace_env: FakeWorkspace, capsys: pytest.CaptureFixture[str]) -> None:
    ws = fake_workspace_env
    kept = devbox_native.TokenBroker(kind="pat").get()
    stale = devbox_native.create_token(60, "devbox-native-old")
    app = devbox_native.generate_spn_token()
    assert main("token", "cleanup", "--dry-run", "--json") == EXIT_OK
    assert _json(capsys) == {"would_revoke": [stale.token_id]}
    assert main("token", "cleanup") == EXIT_OK
    out, err = capsys.readouterr()
    assert out == f"revoked {stale.token_id}\n" and err == "revoked 1 token(s)\n"
    assert main("token", "cleanup", "--include-app-tokens", "--json") == EXIT_OK
    assert _json(capsys) == {"revoked": [ws.token_id_of(app)]}
    assert ws.is_live(kept)
    assert main("token", "create") == EXIT_OK  # comment devbox-native-cli: ours to clean up
    made = capsys.readouterr().out.strip()
    assert main("token", "cleanup", "--older-than", "3600") == EXIT_OK and ws.is_live(made)
    assert main("token", "cleanup") == EXIT_OK and not ws.is_live(made)
    assert ws.is_live(kept)


def test_quota_error_on_the_command_line(clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    with FakeWorkspace(token_quota=1) as ws:
        clean_env.setenv("DATABRICKS_HOST", ws.host)
        clean_env.setenv("DATABRICKS_TOKEN", ws.pat)
        assert main("token", "create") == EXIT_OK
        capsys.readouterr()
        assert main("token", "create", "--json") == EXIT_ERROR
        out, err = capsys.readouterr()
        assert json.loads(out)["error"] == "QuotaExceeded"
        assert "1 live tokens" in err and "`devbox-native token cleanup`" in err
        assert main("token", "create", "--auto-cleanup") == EXIT_OK  # cleans our old token, mints again
        assert len(ws.live_tokens()) == 1


def test_ccr_write_then_update(
    fake_workspace_env: FakeWorkspace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = fake_workspace_env
    assert main("ccr", "write", "--root", str(tmp_path), "--json") == EXIT_OK
    wrote = _json(capsys)
    path = Path(wrote["config"])
    cfg = json.loads(path.read_text())
    token = cfg["Providers"][0]["api_key"]
    assert wrote["source"] == "broker" and wrote["token_id"] == ws.token_id_of(token)
    assert token not in json.dumps(wrote)
    assert cfg["Providers"][0]["api_base_url"] == f"{ws.host}/serving-endpoints/databricks-claude-sonnet-4/invocations"
    cfg["MY_KEY"] = "kept"
    path.write_text(json.dumps(cfg, indent=2))
    assert main("token", "get", "--kind", "pat", "--refresh") == EXIT_OK
    fresh = capsys.readouterr().out.strip()
    assert main("ccr", "update", "--root", str(tmp_path)) == EXIT_OK
    assert "updated" in capsys.readouterr().out
    after = json.loads(path.read_text())
    assert after["Providers"][0]["api_key"] == fresh and after["MY_KEY"] == "kept"
    assert mode(path) == 0o600


def test_ccr_update_token_from_stdin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    devbox_native.write_ccr_config("first-token", tmp_path, host="h.example")
    monkeypatch.setattr(sys, "stdin", io.StringIO("second-token\n"))
    assert main("ccr", "update", "--root", str(tmp_path), "--token-stdin", "--json") == EXIT_OK
    assert _json(capsys)["source"] == "stdin"
    cfg = json.loads((tmp_path / ".claude-code-router" / "config.json").read_text())
    assert cfg["Providers"][0]["api_key"] == "second-token"
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    assert main("ccr", "update", "--root", str(tmp_path), "--token-stdin") == EXIT_ERROR
    (tmp_path / ".claude-code-router" / "config.json").write_text("{broken")
    monkeypatch.setattr(sys, "stdin", io.StringIO("third-token\n"))
    assert main("ccr", "update", "--root", str(tmp_path), "--token-stdin") == EXIT_ERROR
    assert "ConfigError" in capsys.readouterr().err


def _fake_ccr(bin_dir: Path, version: str) -> None:
    bin_dir.mkdir(exist_ok=True)
    exe = bin_dir / "ccr"
    exe.write_text(f"#!/bin/sh\necho 'claude-code-router version: {version}'\n")
    exe.chmod(0o755)


def _checks(capsys: pytest.CaptureFixture[str]) -> dict[str, dict[str, Any]]:
    return {c["check"]: c for c in _json(capsys)["checks"]}


def test_doctor_reports_a_healthy_setup(
    fake_workspace_env: FakeWorkspace,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _fake_ccr(tmp_path / "bin", "1.0.73")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    assert main("ccr", "write", "--root", str(tmp_path)) == EXIT_OK
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    path = tmp_path / ".claude-code-router" / "config.json"
    cfg = json.loads(path.read_text())
    cfg["PORT"] = port
    path.write_text(json.dumps(cfg, indent=2))
    capsys.readouterr()
    try:
        assert main("doctor", "--root", str(tmp_path), "--json") == EXIT_OK
    finally:
        listener.close()
    checks = _checks(capsys)
    assert checks["credentials"]["status"] == "ok" and checks["credentials"]["auth_type"] == "oauth-m2m"
    assert checks["token"]["status"] == "ok" and checks["token"]["expires_at"] > 0
    assert checks["ccr_config"]["status"] == "ok" and checks["ccr_config_mode"]["mode"] == "0600"
    assert checks["cache_mode"]["mode"] == "0600" and checks["cache_dir_mode"]["mode"] == "0700"
    assert checks["ccr"]["version"] == "1.0.73" and checks["ccr"]["status"] == "ok"
    assert checks["ccr_port"]["status"] == "ok" and checks["ccr_port"]["port"] == port
    token = cfg["Providers"][0]["api_key"]
    assert main("doctor", "--root", str(tmp_path)) == EXIT_OK
    out, err = capsys.readouterr()
    assert token not in out and "ok       credentials" in out and err == "no problems found\n"


def test_doctor_finds_problems(
    fake_workspace_env: FakeWorkspace,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _fake_ccr(tmp_path / "bin", "3.1.1")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    devbox_native.write_ccr_config("not-the-broker-token", tmp_path, host=fake_workspace_env.host)
    devbox_native.TokenBroker(kind="pat").get()
    # Warnings only (offline, the other token cannot be checked): exit 0.
    assert main("doctor", "--root", str(tmp_path), "--json", "--offline") == EXIT_OK
    checks = _checks(capsys)
    assert checks["ccr_config"]["status"] == "warn" and "different token" in checks["ccr_config"]["detail"]
    assert checks["ccr"]["status"] == "warn" and "3.x" in checks["ccr"]["detail"]
    # Online, the workspace refuses that token: a problem.
    assert main("doctor", "--root", str(tmp_path), "--json") == EXIT_PROBLEMS
    assert _checks(capsys)["ccr_config"]["status"] == "problem"
    cfg = tmp_path / ".databrickscfg"
    cfg.write_text("[DEFAULT]\n")
    cfg.chmod(0o644)
    assert main("doctor", "--root", str(tmp_path), "--json") == EXIT_PROBLEMS
    checks = _checks(capsys)
    assert checks["databrickscfg_mode"]["status"] == "problem" and checks["databrickscfg_mode"]["mode"] == "0644"
    (tmp_path / ".claude-code-router" / "config.json").write_text("{")
    assert main("doctor", "--root", str(tmp_path), "--json") == EXIT_PROBLEMS
    assert _checks(capsys)["ccr_config"]["status"] == "problem"


def test_doctor_without_credentials_is_exit_3(
    clean_env: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clean_env.setenv("PATH", str(tmp_path))  # no ccr
    done = subprocess.run(
        [sys.executable, "-m", "devbox_native", "doctor", "--root", str(tmp_path), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == EXIT_PROBLEMS, done.stderr
    checks = {c["check"]: c for c in json.loads(done.stdout)["checks"]}
    assert checks["credentials"]["status"] == "problem"
    assert "cannot configure default credentials" in checks["credentials"]["detail"]
    assert checks["ccr"]["status"] == "warn" and checks["ccr"]["version"] is None


@pytest.mark.parametrize("argv", [["token"], ["token", "frobnicate"], ["ccr"], ["token", "get", "--lifetime", "x"]])
def test_usage_errors_exit_2(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(*argv)
    assert exc.value.code == EXIT_USAGE


def test_help_lists_the_commands() -> None:
    done = subprocess.run([EXE, "--help"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0
    for command in ("setup", "emulator", "token", "ccr", "doctor"):
        assert command in done.stdout
    done = subprocess.run([EXE, "token", "--help"], capture_output=True, text=True, timeout=30)
    for command in ("get", "create", "list", "revoke", "cleanup"):
        assert command in done.stdout
