"""The `devbox-native` command: `setup` and `emulator`, as functions and as real subprocesses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import mode
from devbox_native.cli import EXIT_ERROR, EXIT_OK, main
from devbox_native.testing import FakeWorkspace


def test_setup_json_writes_config_and_redacts_the_token(
    fake_workspace_env: FakeWorkspace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main("setup", "--root", str(tmp_path), "--json") == EXIT_OK
    out = json.loads(capsys.readouterr().out)
    cfg_path = tmp_path / ".claude-code-router" / "config.json"
    assert out["config"] == str(cfg_path)
    token = json.loads(cfg_path.read_text())["Providers"][0]["api_key"]
    assert fake_workspace_env.is_live(token)
    assert token not in json.dumps(out) and out["token"].endswith("chars)")
    assert mode(cfg_path) == 0o600


def test_setup_with_databrickscfg_and_lifetime(
    fake_workspace_env: FakeWorkspace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main("setup", "--root", str(tmp_path), "--lifetime", "120", "--databrickscfg") == EXIT_OK
    text = capsys.readouterr().out
    assert f"wrote {tmp_path / '.claude-code-router' / 'config.json'}" in text
    assert (tmp_path / ".databrickscfg").read_text().startswith("\n[DEFAULT]\nhost = http://127.0.0.1:")
    (body,) = [json.loads(r.body) for r in fake_workspace_env.requests if r.path == "/api/2.0/token/create"]
    assert body["lifetime_seconds"] == 120


def test_setup_failure_is_exit_1_with_the_error(
    clean_env: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clean_env.setenv("DATABRICKS_HOST", "http://127.0.0.1:9")
    assert main("setup", "--root", str(tmp_path)) == EXIT_ERROR
    err = capsys.readouterr().err
    assert "ConfigError: default auth: cannot configure default credentials" in err
    assert not (tmp_path / ".claude-code-router").exists()


def test_usage_errors_exit_2() -> None:
    with pytest.raises(SystemExit) as exc:
        main("frobnicate")
    assert exc.value.code == 2


def test_emulator_command_serves_until_sigterm(tmp_path: Path) -> None:
    with subprocess.Popen(
        [sys.executable, "-m", "devbox_native", "emulator", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        _use_emulator(proc, tmp_path)
        assert proc.stderr is not None
        assert "; Ctrl-C to stop" in proc.stderr.read()


def _use_emulator(proc: subprocess.Popen[str], tmp_path: Path) -> None:
    try:
        assert proc.stdout is not None
        env = json.loads(proc.stdout.readline())
        assert env["DATABRICKS_HOST"].startswith("http://127.0.0.1:")
        child_env = {k: v for k, v in os.environ.items() if not k.startswith("DATABRICKS_")} | env
        done = subprocess.run(
            [sys.executable, "-m", "devbox_native", "setup", "--root", str(tmp_path), "--json"],
            env=child_env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["config"].endswith("config.json")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0


def test_console_script_is_installed() -> None:
    exe = Path(sys.executable).parent / "devbox-native"
    done = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and "setup" in done.stdout and "emulator" in done.stdout


def test_the_demo_runs_the_main_job_against_the_emulator(tmp_path: Path) -> None:
    demo = Path(__file__).resolve().parent.parent / "examples" / "demo.py"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATABRICKS_")} | {"DEVBOX_DEMO_ROOT": str(tmp_path)}
    done = subprocess.run([sys.executable, str(demo)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    cfg = tmp_path / ".claude-code-router" / "config.json"
    assert f"wrote {cfg} (token dapi…(36 chars))" in done.stdout
    token = json.loads(cfg.read_text())["Providers"][0]["api_key"]
    assert token not in done.stdout and token not in done.stderr
    assert "the emulator holds 1 live token(s)" in done.stdout
    assert mode(cfg) == 0o600 and mode(tmp_path / ".databrickscfg") == 0o600
    # Every file written is named, the one holding the client secret too, and the folder is kept.
    assert f"wrote {tmp_path / '.databrickscfg'} ([DEFAULT] host, client_id and the client secret" in done.stdout
    assert '"api_key": "<redacted>"' in done.stdout
    assert f"the files stay in {tmp_path}" in done.stdout


def test_the_demo_removes_its_temporary_folder(tmp_path: Path) -> None:
    demo = Path(__file__).resolve().parent.parent / "examples" / "demo.py"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABRICKS_", "DEVBOX_DEMO"))}
    done = subprocess.run(
        [sys.executable, str(demo)], env=env | {"TMPDIR": str(tmp_path)}, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "removed " in done.stdout and "DEVBOX_DEMO_ROOT" in done.stdout
    assert list(tmp_path.iterdir()) == []


def test_version_option(capsys: pytest.CaptureFixture[str]) -> None:
    import devbox_native

    with pytest.raises(SystemExit) as exc:
        main("--version")
    assert exc.value.code == 0
    assert capsys.readouterr().out == f"devbox-native {devbox_native.__version__}\n"


# argparse itself ignores a failed write of --help/--version and exits 0; our own output exits 141.
@pytest.mark.parametrize(
    ("argv", "expected"),
    [(["--version"], 0), (["--help"], 0), (["token", "list", "--json"], 141), (["token", "get"], 141)],
)
def test_a_closed_stdout_exits_quietly(fake_workspace: FakeWorkspace, argv: list[str], expected: int) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATABRICKS_")} | fake_workspace.env()
    with subprocess.Popen(
        [sys.executable, "-m", "devbox_native", *argv], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()  # the reader is gone before the command writes a byte (like `| head -c 0`)
        err = proc.stderr.read().decode()
        code = proc.wait(timeout=60)
    assert err == ""  # no BrokenPipeError traceback, not even from the interpreter's last flush
    assert code == expected
