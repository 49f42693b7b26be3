"""Runs a real Claude Code Router (1.0.73, installed by `make ccr-deps`) for the end-to-end tests.

Every process it starts is stopped by PID: the foreground `ccr start` it launched, and whatever PID CCR
wrote to its PID file after a `ccr restart` (which detaches a new server), whoever ran the restart.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
CCR_CLI = Path(
    os.environ.get("DEVBOX_CCR_CLI", ROOT / ".cache/ccr/node_modules/@musistudio/claude-code-router/dist/cli.js")
)


def require_ccr() -> Path:
    """The CCR CLI script; a missing install fails in CI and skips elsewhere."""
    if not CCR_CLI.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CCR_CLI} is missing: `make ccr-deps` should have installed it")
        pytest.skip(f"{CCR_CLI} is missing: run `make ccr-deps`")
    return CCR_CLI


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


class Ccr:
    """One CCR installation under a temporary HOME."""

    def __init__(self, home: Path, port: int) -> None:
        self.cli = require_ccr()
        self.home = home
        self.port = port
        self.env = {**os.environ, "HOME": str(home)}
        self.config = home / ".claude-code-router" / "config.json"
        self.pid_file = home / ".claude-code-router" / ".claude-code-router.pid"
        self.log = home / "ccr.log"
        self.started: list[int] = []
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30) -> None:
        with open(self.log, "ab") as log:
            self._proc = subprocess.Popen(
                ["node", str(self.cli), "start"], env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        self.started.append(self._proc.pid)
        self.wait_listening(timeout)

    def restart(self, timeout: float = 30) -> None:
        """`ccr restart`, then wait until a new server answers (restart returns before it listens)."""
        old = self.pid()
        subprocess.run(
            ["node", str(self.cli), "restart"], env=self.env, check=True, timeout=timeout, capture_output=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            new = self.pid()
            if new is not None and new != old:
                self.started.append(new)
                break
            time.sleep(0.05)
        else:
            raise AssertionError(f"CCR did not restart within {timeout} s; log:\n{self.tail_log()}")
        if self._proc is not None:
            self._proc.wait(timeout=timeout)  # the old foreground server was killed by restart
        self.wait_listening(timeout)

    def pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def wait_listening(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if port_answers(self.port):
                return
            time.sleep(0.05)
        raise AssertionError(f"CCR did not listen on {self.port} within {timeout} s; log:\n{self.tail_log()}")

    def tail_log(self) -> str:
        try:
            return self.log.read_text()[-3000:]
        except OSError:
            return ""

    def stop(self) -> None:
        # A server started by a `ccr restart` we did not run ourselves (a rotation's hook) is in the PID file.
        current = self.pid()
        if current is not None and current not in self.started:
            self.started.append(current)
        for pid in reversed(self.started):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
        deadline = time.monotonic() + 10
        for pid in self.started:
            while time.monotonic() < deadline:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                if self._proc is not None and self._proc.pid == pid and self._proc.poll() is not None:
                    break
                time.sleep(0.05)
            else:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if self._proc is not None:
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()

    def messages(self, body: dict[str, Any], timeout: float = 30) -> tuple[int, bytes]:
        """POST an Anthropic Messages request to CCR."""
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/v1/messages",
            data=json.dumps(body).encode(),
            headers={"content-type": "application/json", "anthropic-version": "2023-06-01"},
        )
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - loopback only
            return resp.status, resp.read()


def deep_keys(value: Any) -> set[str]:
    """Every dict key at any depth."""
    keys: set[str] = set()
    if isinstance(value, dict):
        for k, v in value.items():
            keys.add(k)
            keys |= deep_keys(v)
    elif isinstance(value, list):
        for v in value:
            keys |= deep_keys(v)
    return keys
