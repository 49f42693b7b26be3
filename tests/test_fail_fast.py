"""Failing fast with the cause: a name that does not resolve, a refused port, Ctrl-C during a call, the CLI's
--timeout and token lifetime rule, strict host parsing, and errno values that say what happened.

DNS failures run inside `unshare -n` (a network namespace with only loopback), so no test ever leaves 127.0.0.1.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import devbox_native
import pytest
from devbox_native import Config
from devbox_native.testing import FakeWorkspace

EXE = str(Path(sys.executable).parent / "devbox-native")
CREATE = "/api/2.0/token/create"
LIFETIME_ENV = "CLAUDE_CODE_TOKEN_EXPIRY_SECONDS"


def _env(**extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DATABRICKS_", "CLAUDE_CODE_"))}
    return base | extra


def _can_unshare() -> bool:
    if shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "-n", "true"], capture_output=True, check=False).returncode == 0


needs_netns = pytest.mark.skipif(not _can_unshare(), reason="needs `unshare -n` (root or user namespaces)")


@needs_netns
def test_a_name_that_does_not_resolve_is_reported_at_once_with_the_cause(tmp_path: Path) -> None:
    script = (
        "import devbox_native, json, time\n"
        "t0 = time.monotonic()\n"
        "try:\n"
        "    devbox_native.create_token(60)\n"
        "except Exception as e:\n"
        "    print(json.dumps({'error': type(e).__name__, 'message': str(e), 's': time.monotonic() - t0}))\n"
    )
    env = _env(DATABRICKS_HOST="not-a-url", DATABRICKS_TOKEN="dapi-x", HOME=str(tmp_path))
    done = subprocess.run(
        ["unshare", "-n", sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    out = json.loads(done.stdout)
    assert out["error"] == "TransportError", out
    assert out["message"].startswith("cannot reach https://not-a-url: name not resolved (DNS)"), out
    assert out["s"] < 30, out  # reported then, not after the 300 s budget


@needs_netns
def test_token_get_reports_an_unresolvable_host_quickly(tmp_path: Path) -> None:
    env = _env(DATABRICKS_HOST="not-a-url", DATABRICKS_TOKEN="dapi-x", HOME=str(tmp_path))
    t0 = time.monotonic()
    done = subprocess.run(["unshare", "-n", EXE, "token", "get"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "cannot reach https://not-a-url: name not resolved (DNS)" in done.stderr, done.stderr
    assert time.monotonic() - t0 < 30


def test_a_refused_port_is_reported_after_the_refusal_window_not_the_budget(tmp_path: Path) -> None:
    with FakeWorkspace() as ws:
        port = ws.port
    config = Config(host=f"http://127.0.0.1:{port}", token="x-token", retry_timeout_seconds=120)
    t0 = time.monotonic()
    with pytest.raises(devbox_native.errors.TransportError) as exc:
        devbox_native.list_tokens(config=config)
    elapsed = time.monotonic() - t0
    assert str(exc.value).startswith(f"cannot reach http://127.0.0.1:{port}: connection refused (for ")
    assert 9 <= elapsed < 40, elapsed  # the 10 s window, well under the 120 s budget


def test_ctrl_c_interrupts_a_sync_call_and_aborts_the_request(tmp_path: Path) -> None:
    with FakeWorkspace() as ws:
        ws.inject(CREATE, action="hang")
        script = (
            "import devbox_native, sys, time\n"
            "print('ready', flush=True)\n"
            "try:\n"
            "    devbox_native.create_token(60)\n"
            "except KeyboardInterrupt:\n"
            "    print('interrupted', time.monotonic(), flush=True)\n"
        )
        env = _env(DATABRICKS_HOST=ws.host, DATABRICKS_TOKEN=ws.pat, HOME=str(tmp_path))
        child = subprocess.Popen(
            [sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "ready"
            deadline = time.monotonic() + 30
            while not any(r.path == CREATE for r in ws.requests) and time.monotonic() < deadline:
                time.sleep(0.02)
            sent = time.monotonic()
            child.send_signal(signal.SIGINT)
            out, err = child.communicate(timeout=30)
        finally:
            child.kill()
        assert child.returncode == 0, err
        word, when = out.split()
        assert word == "interrupted"
        assert float(when) - sent < 2  # about 100 ms; generous
        # The request was aborted: the emulator saw the client close the connection.
        deadline = time.monotonic() + 10
        while not ws.abandoned_requests and time.monotonic() < deadline:
            time.sleep(0.02)
        assert [r.path for r in ws.abandoned_requests] == [CREATE]


def _cli(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([EXE, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False)


@pytest.mark.parametrize(
    "command",
    [
        ["setup"],
        ["token", "get"],
        ["token", "create"],
        ["token", "list"],
        ["token", "revoke", "x"],
        ["token", "cleanup"],
        ["ccr", "write"],
        ["ccr", "update"],
        ["rotate"],
    ],
)
def test_every_command_that_talks_to_the_workspace_takes_timeout(command: list[str]) -> None:
    from devbox_native import cli

    with pytest.raises(SystemExit) as exc:
        cli.main(*command, "--help")
    assert exc.value.code == 0
    with pytest.raises(SystemExit) as exc:
        cli.main(*command, "--timeout", "0")
    assert exc.value.code == 2  # a usage error


def test_token_get_help_states_its_30_s_default(capsys: pytest.CaptureFixture[str]) -> None:
    from devbox_native import cli

    with pytest.raises(SystemExit):
        cli.main("token", "get", "--help")
    text = " ".join(capsys.readouterr().out.split())
    assert "Fails within 30 s unless --timeout says otherwise" in text
    assert "(default 30)" in text


def test_the_timeout_option_bounds_the_call(tmp_path: Path) -> None:
    with FakeWorkspace() as ws:
        ws.inject(CREATE, status=503, times=None)
        env = _env(DATABRICKS_HOST=ws.host, DATABRICKS_TOKEN=ws.pat, HOME=str(tmp_path))
        t0 = time.monotonic()
        done = _cli("token", "create", "--timeout", "1.5", env=env)
        assert done.returncode == 1
        assert "TimeoutError" in done.stderr and "timed out after 2 s of retries" in done.stderr, done.stderr
        assert time.monotonic() - t0 < 15


def test_token_get_gives_up_within_its_default_budget(tmp_path: Path) -> None:
    with FakeWorkspace() as ws:
        ws.inject(CREATE, status=503, times=None)
        env = _env(DATABRICKS_HOST=ws.host, DATABRICKS_TOKEN=ws.pat, HOME=str(tmp_path))
        t0 = time.monotonic()
        done = _cli("token", "get", env=env)
        elapsed = time.monotonic() - t0
        assert done.returncode == 1
        assert "timed out after 30 s of retries" in done.stderr, done.stderr
        assert elapsed < 30 + 15, elapsed  # the 30 s default, well under the library's 300 s


@pytest.mark.parametrize(
    "command",
    [
        ["token", "get"],
        ["token", "get", "--json"],
        ["token", "create", "--json"],
        ["token", "create", "--lifetime", "900"],  # the variable wins, as in the app
    ],
)
def test_the_lifetime_variable_is_honoured_by_every_command(tmp_path: Path, command: list[str]) -> None:
    with FakeWorkspace() as ws:
        env = _env(DATABRICKS_HOST=ws.host, DATABRICKS_TOKEN=ws.pat, HOME=str(tmp_path), **{LIFETIME_ENV: " +1_20 "})
        done = _cli(*command, env=env)
        assert done.returncode == 0, done.stderr
        (info,) = ws.live_tokens()
        lifetime_s = (info["expiry_time"] - info["creation_time"]) / 1000
        assert abs(lifetime_s - 120) < 5, info
        bad = _cli(*command, env=env | {LIFETIME_ENV: "2m"})
        assert bad.returncode == 1
        assert f"ValueError: {LIFETIME_ENV}: must be a whole number of seconds, got '2m'" in bad.stderr, bad.stderr


ACCEPTED = (" 3600 ", "+3600", "3_600", "\u0663\u0666\u0660\u0660", "\uff13\uff16\uff10\uff10", "\t120\n", "0120")
REJECTED = ("", "abc", "0", "-5", "1.5", "_3600", "3600_", "3__600", "+ 1", "1e3", "0x10", "\u00b2", "3600s")


@pytest.mark.parametrize("raw", [*ACCEPTED, *REJECTED])
def test_generate_spn_token_reads_the_lifetime_variable_like_int(
    fake_workspace: FakeWorkspace, monkeypatch: pytest.MonkeyPatch, raw: str
) -> None:
    monkeypatch.setenv(LIFETIME_ENV, raw)
    config = Config(host=fake_workspace.host, token=fake_workspace.pat)
    try:
        want: int | None = int(raw)
    except ValueError:
        want = None
    if want is None or want <= 0:
        with pytest.raises(ValueError, match=f"^{LIFETIME_ENV}: "):
            devbox_native.generate_spn_token(3600, config=config)
        assert fake_workspace.live_tokens() == []
        return
    devbox_native.generate_spn_token(3600, config=config)
    (info,) = fake_workspace.live_tokens()
    assert abs((info["expiry_time"] - info["creation_time"]) / 1000 - want) < 5


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("h\uff0eexample", "https://h.example"),  # a fullwidth dot: shown as the host contacted
        ("https://b\u00fccher.example", "https://xn--bcher-kva.example"),
        ("https://Dbc-X.Cloud.Databricks.com:443/", "https://Dbc-X.Cloud.Databricks.com"),
    ],
)
def test_hosts_are_shown_as_contacted(raw: str, shown: str) -> None:
    assert Config(host=raw, token="t").host == shown


@pytest.mark.parametrize(
    "raw", ["http://h:1\\@good.example", "//evil.example", "https://ev\u200bil.example", "https://u@h", "https://h?x=1"]
)
def test_hosts_that_are_not_scheme_host_port_path_are_refused(raw: str) -> None:
    with pytest.raises(ValueError, match=r"^host: "):
        Config(host=raw, token="t")


def test_a_nul_in_a_path_is_einval(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABRICKS_HOST", "https://h.example")
    monkeypatch.setenv("DATABRICKS_CLIENT_ID", "cid")
    monkeypatch.setenv("DATABRICKS_CLIENT_SECRET", "secret")
    with pytest.raises(OSError) as exc:
        devbox_native.setup_databricks_cfg(root_dir=f"{tmp_path}/a\0b")
    assert exc.value.errno == errno.EINVAL


@pytest.mark.skipif(os.geteuid() != 0 or not _can_unshare(), reason="mounting a tiny tmpfs needs root")
def test_a_full_disk_is_enospc(tmp_path: Path) -> None:
    script = (
        "import devbox_native, json, os, sys\n"
        "os.environ.update(DATABRICKS_HOST='https://h.example', DATABRICKS_CLIENT_ID='c',"
        " DATABRICKS_CLIENT_SECRET='s' * 100000)\n"
        "try:\n"
        "    devbox_native.setup_databricks_cfg(root_dir=sys.argv[1])\n"
        "except OSError as e:\n"
        "    print(json.dumps({'errno': e.errno}))\n"
    )
    mnt = tmp_path / "full"
    mnt.mkdir()
    shell = f'mount -t tmpfs -o size=16k,mode=0700 tmpfs "{mnt}" && exec "{sys.executable}" -c "$0" "{mnt}"'
    done = subprocess.run(
        ["unshare", "-m", "sh", "-c", shell.replace("$0", "$SCRIPT")],
        env=_env(SCRIPT=script),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert json.loads(done.stdout) == {"errno": errno.ENOSPC}, done.stderr
