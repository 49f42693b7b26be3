"""`devbox-native rotate` as a real subprocess (SIGTERM and SIGINT end it with exit 0), and how the CCR version is
found (package.json, `ccr -v`, `npm ls -g`) for its warning and for `doctor`."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

import devbox_native
import pytest
from devbox_native import _ccr
from devbox_native.cli import main
from devbox_native.testing import FakeWorkspace


class Daemon:
    """`python -m devbox_native rotate ...`, its stdout and stderr read line by line."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "devbox_native", "rotate", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.lines: queue.Queue[tuple[str, str]] = queue.Queue()
        self.seen: list[tuple[str, str]] = []
        self.readers = [
            threading.Thread(target=self._read, args=(name, stream), daemon=True)
            for name, stream in (("out", self.proc.stdout), ("err", self.proc.stderr))
        ]
        for r in self.readers:
            r.start()

    def _read(self, name: str, stream: IO[str] | None) -> None:
        assert stream is not None
        for line in stream:
            self.lines.put((name, line.rstrip("\n")))

    def wait_line(self, predicate: Any, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                item = self.lines.get(timeout=0.1)
            except queue.Empty:
                if self.proc.poll() is not None and self.lines.empty():
                    break
                continue
            self.seen.append(item)
            if predicate(*item):
                return item[1]
        raise AssertionError(f"no such line within {timeout} s; seen: {self.seen}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=timeout)
        time.sleep(0.1)
        while not self.lines.empty():
            self.seen.append(self.lines.get())
        return code

    def close(self) -> None:
        """Kill it if it still runs; close its pipes."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for r in self.readers:
            r.join(5)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def daemons() -> Any:
    started: list[Daemon] = []
    yield started
    for d in started:
        d.close()


def test_rotate_json_prints_one_object_per_event_and_exits_0_on_sigterm(
    fake_workspace_env: FakeWorkspace, tmp_path: Path, daemons: list[Daemon]
) -> None:
    root = tmp_path / "home"
    daemon = Daemon("--root", str(root), "--command", "true", "--port", "0", "--json")
    daemons.append(daemon)
    started = json.loads(daemon.wait_line(lambda s, line: '"started"' in line))
    assert started["command"] == ["true"] and started["pid"] == daemon.proc.pid
    rotated = json.loads(daemon.wait_line(lambda s, line: '"rotated"' in line))
    assert rotated["rotation"] == 1 and rotated["reason"] == "refresh" and "token" not in rotated
    assert rotated["config_path"] == str(root / ".claude-code-router" / "config.json")
    token = json.loads(Path(rotated["config_path"]).read_text())["Providers"][0]["api_key"]
    assert fake_workspace_env.token_id_of(token) == rotated["token_id"]
    t0 = time.monotonic()
    assert daemon.stop(signal.SIGTERM) == 0
    assert time.monotonic() - t0 < 10
    out = [json.loads(line) for s, line in daemon.seen if s == "out"]
    assert [o["event"] for o in out] == ["started", "rotated", "stopped"]
    assert out[-1] == {"event": "stopped", "rotations": 1}
    assert all(token not in line for _, line in daemon.seen)


def test_rotate_prints_errors_and_exits_0_on_sigint(
    fake_workspace_env: FakeWorkspace, tmp_path: Path, daemons: list[Daemon]
) -> None:
    daemon = Daemon("--root", str(tmp_path), "--command", "sh -c 'exit 3'")
    daemons.append(daemon)
    daemon.wait_line(lambda s, line: s == "err" and line.startswith("rotating "))
    line = daemon.wait_line(lambda s, line: s == "out" and line.startswith("error: "))
    assert line.startswith("error: command: HookError: `sh -c exit 3` failed (exit status: 3)"), line
    assert "(failure 1 in a row; next attempt at " in line
    assert daemon.stop(signal.SIGINT) == 0
    assert ("err", "stopped after 0 rotation(s)") in daemon.seen
    # The WARNING log reaches stderr too.
    assert any(s == "err" and "token rotation failed at step command" in line for s, line in daemon.seen)


def test_a_second_rotate_on_the_same_cache_exits_1_naming_the_first_ones_pid(
    fake_workspace_env: FakeWorkspace, tmp_path: Path, daemons: list[Daemon]
) -> None:
    first = Daemon("--root", str(tmp_path / "a"), "--port", "0")
    daemons.append(first)
    first.wait_line(lambda s, line: s == "out" and line.startswith("rotated: "))
    second = Daemon("--root", str(tmp_path / "b"), "--port", "0")
    daemons.append(second)
    assert second.proc.wait(timeout=60) == 1
    line = second.wait_line(lambda s, line: s == "err" and "another rotation" in line)
    assert line.startswith(f"devbox-native: BusyError: another rotation (pid {first.proc.pid}) is running on"), line
    assert not (tmp_path / "b").exists(), "the second one wrote nothing"
    assert first.stop() == 0
    third = Daemon("--root", str(tmp_path / "b"), "--port", "0")  # the lock went with the first daemon
    daemons.append(third)
    third.wait_line(lambda s, line: s == "out" and line.startswith("rotated: "))
    assert third.stop() == 0


def _fake_ccr_package(tmp_path: Path, version: str) -> Path:
    """A global npm install of CCR `version`: <prefix>/lib/node_modules/<pkg>/{package.json,dist/cli.js} and a
    bin/ccr symlink to cli.js. Returns the bin folder."""
    pkg = tmp_path / "prefix" / "lib" / "node_modules" / "@musistudio" / "claude-code-router"
    (pkg / "dist").mkdir(parents=True)
    (pkg / "package.json").write_text(json.dumps({"name": _ccr.PACKAGE, "version": version}))
    cli = pkg / "dist" / "cli.js"
    cli.write_text("#!/bin/sh\nexit 0\n")
    cli.chmod(0o755)
    bin_dir = tmp_path / "prefix" / "bin"
    bin_dir.mkdir()
    (bin_dir / "ccr").symlink_to(cli)
    return bin_dir


def _script(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + text)
    path.chmod(0o755)


@pytest.mark.parametrize("as_json", [False, True])
def test_rotate_warns_about_ccr_3(
    fake_workspace_env: FakeWorkspace, tmp_path: Path, daemons: list[Daemon], as_json: bool
) -> None:
    bin_dir = _fake_ccr_package(tmp_path, "3.1.1")
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    args = ["--root", str(tmp_path / "home"), "--command", "ccr restart", "--port", "0"]
    daemon = Daemon(*args, *(["--json"] if as_json else []), env=env)
    daemons.append(daemon)
    if as_json:
        event = json.loads(daemon.wait_line(lambda s, line: s == "out" and '"warning"' in line))
        warning = event["message"]
        daemon.wait_line(lambda s, line: '"rotated"' in line)
    else:
        warning = daemon.wait_line(lambda s, line: s == "err" and "warning" in line)
        assert warning.startswith("devbox-native: warning: ")
        daemon.wait_line(lambda s, line: line.startswith("rotated: "))
    assert "CCR 3.1.1 is not 1.x: CCR 3.x imports config.json" in warning
    assert "@musistudio/claude-code-router@1.0.73" in warning
    assert daemon.stop() == 0


def test_the_ccr_version_comes_from_package_json_then_ccr_v_then_npm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert _ccr.detect() == {"version": None, "source": None, "path": None}
    # A hook command naming the script (as the e2e tests do: node <cli.js> restart).
    bin_dir = _fake_ccr_package(tmp_path / "a", "1.0.73")
    cli = (bin_dir / "ccr").resolve()
    found = _ccr.detect(["/bin/sh", cli, "restart"])
    assert found["version"] == "1.0.73" and found["source"] == "package.json"
    assert found["path"] == str(cli.parent.parent / "package.json")
    # `ccr` on PATH, through its symlink.
    monkeypatch.setenv("PATH", str(bin_dir))
    assert _ccr.detect()["source"] == "package.json"
    # A wrapper script outside the package: `ccr -v`.
    _script(tmp_path / "b" / "ccr", "echo 'claude-code-router version: 3.1.1'\n")
    monkeypatch.setenv("PATH", str(tmp_path / "b"))
    assert _ccr.detect() == {"version": "3.1.1", "source": "ccr -v", "path": str(tmp_path / "b" / "ccr")}
    # No ccr on PATH, but a global install npm knows about.
    listing = json.dumps({"dependencies": {_ccr.PACKAGE: {"version": "3.1.1"}}})
    _script(tmp_path / "c" / "npm", f"echo '{listing}'\n")
    monkeypatch.setenv("PATH", str(tmp_path / "c"))
    assert _ccr.detect() == {"version": "3.1.1", "source": "npm ls -g", "path": None}
    assert _ccr.warning("1.0.73") is None and _ccr.warning(None) is None and _ccr.warning("x") is None
    assert _ccr.warning("2.0.0") is not None


def test_doctor_names_where_the_version_came_from(
    fake_workspace_env: FakeWorkspace,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bin_dir = _fake_ccr_package(tmp_path, "3.1.1")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    devbox_native.write_ccr_config(devbox_native.TokenBroker(kind="pat").get(), tmp_path)
    assert main("doctor", "--root", str(tmp_path), "--json") == 0
    checks = {c["check"]: c for c in json.loads(capsys.readouterr().out)["checks"]}
    assert checks["ccr"]["status"] == "warn" and checks["ccr"]["source"] == "package.json"
    assert checks["ccr"]["version"] == "3.1.1" and "3.x" in checks["ccr"]["detail"]
