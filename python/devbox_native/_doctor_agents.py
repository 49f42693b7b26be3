"""``devbox-native doctor``, per coding agent (issue 11, item 3): the checks ``agent_<name>`` and ``agent_<name>_cli``.

For every agent that is configured or whose CLI is on ``PATH``, in the file the agent reads (under ``--root``, else
where ``CODEX_HOME``, ``CLAUDE_CONFIG_DIR``, ... put it: ``_native.agent_config_file``; a relative value is a
problem naming the variable):

* ``agent_<name>``: its file is present, trusted and points where ``setup --agents`` points it. Claude Code and
  Codex: at this workspace, with a ``devbox-native token get`` helper, which is run as the agent runs it (Claude
  Code through ``/bin/sh``, Codex directly within its ``timeout_ms``; not with ``--offline``) and must return the
  broker's cached token with more life left than the agent keeps a token before it runs the helper again
  (``CLAUDE_CODE_API_KEY_HELPER_TTL_MS``, ``refresh_interval_ms``; Databricks answers an expired token with 403,
  on which neither agent runs it again). Gemini CLI and OpenCode: at the running credential gateway, with its key
  (compared, never shown), and the gateway's ``/health`` answers (not asked with ``--offline``).
* ``agent_<name>_cli``: the CLI's version, from the ``package.json`` of the npm package the program on ``PATH``
  lives in (what ``--version`` prints, without starting the CLI), else from ``<program> --version`` with a
  timeout, stdin closed and telemetry and update checks off.

No check prints or returns a token or the gateway key.
"""

from __future__ import annotations

from typing import NamedTuple

from devbox_native._doctor import _check

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

    from devbox_native import TokenBroker

#: How long doctor waits for an agent's helper command when the agent's file gives no timeout (Claude Code
#: gives none; Codex's timeout_ms defaults to 5 s).
AGENT_HELPER_TIMEOUT = 30.0
CODEX_HELPER_TIMEOUT_MS = 5000
#: How long an agent keeps the helper's token unless its file says otherwise (both re-run it after 5 minutes).
DEFAULT_KEEP_MS = 300_000
#: How long `<program> --version` may take (it runs only when no package.json names the version).
VERSION_TIMEOUT = 5.0

#: The npm package each agent's CLI comes in (its package.json holds the version the CLI prints).
PACKAGES = {
    "claude-code": "@anthropic-ai/claude-code",
    "codex": "@openai/codex",
    "gemini": "@google/gemini-cli",
    "opencode": "opencode-ai",
}
#: Telemetry, error reports and update checks off for `--version` (and no colour codes in its output).
QUIET_ENV = {
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    "DISABLE_TELEMETRY": "1",
    "DISABLE_ERROR_REPORTING": "1",
    "DISABLE_AUTOUPDATER": "1",
    "OTEL_SDK_DISABLED": "true",
    "NO_UPDATE_NOTIFIER": "1",
    "OPENCODE_DISABLE_AUTOUPDATE": "true",
    "NO_COLOR": "1",
}


class _Unfit(Exception):
    """An agent's file is not as `setup --agents` leaves it: ``status`` and what to say."""

    def __init__(self, status: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status


def _read(path: Path) -> str:
    """The text of an agent's file, read only when it is trusted (a FIFO or another user's file is not read:
    it could block, or name any program as the helper)."""
    from devbox_native import _native

    refused = [f"{p} is {problem}" for p, problem, fixable in _native._check_path(path) if not fixable]
    if refused:
        raise _Unfit("problem", f"{path}: not read, not trusted ({'; '.join(refused)})")
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, ValueError) as exc:
        raise _Unfit("problem", f"{path}: {exc}") from None


def _ms(value: object, default: int, what: str) -> int:
    """A millisecond setting (a number, or a string of digits as Claude Code's `env` holds it)."""
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).strip().isdigit():
        raise _Unfit("problem", f"{what} is not a number of milliseconds ({value!r})")
    return int(value)


class _Helper(NamedTuple):
    """What an agent's file says about its credential helper."""

    url: str
    """The base URL the agent sends requests to."""
    tail: str
    """The helper's last two words (``token get`` for ours)."""
    argv: list[str]
    """The command the agent runs."""
    keep_ms: int
    """How long the agent keeps the helper's token before running it again (0: only after a 401)."""
    timeout: float
    """How long the agent waits for the helper, seconds."""
    setting: str
    """The setting that says `keep_ms`."""


def _claude(path: Path) -> _Helper:
    """Claude Code's settings (it runs ``apiKeyHelper`` with ``/bin/sh``)."""
    import json
    import shlex

    try:
        data = json.loads(_read(path))
        env = data.get("env") or {}
        url, helper = str(env.get("ANTHROPIC_BASE_URL") or ""), data.get("apiKeyHelper")
        words = shlex.split(helper) if isinstance(helper, str) else []
    except (ValueError, AttributeError) as exc:
        raise _Unfit("problem", f"{path}: not readable as configured ({exc})") from None
    keep = _ms(env.get("CLAUDE_CODE_API_KEY_HELPER_TTL_MS"), DEFAULT_KEEP_MS, "CLAUDE_CODE_API_KEY_HELPER_TTL_MS")
    argv = ["/bin/sh", "-c", str(helper)] if words else []
    return _Helper(url, " ".join(words[-2:]), argv, keep, AGENT_HELPER_TIMEOUT, "CLAUDE_CODE_API_KEY_HELPER_TTL_MS")


def _codex(path: Path) -> _Helper:
    """Codex's config (it runs ``command`` with ``args``, no shell, within ``timeout_ms``)."""
    import tomllib

    try:
        data = tomllib.loads(_read(path))
        provider = (data.get("model_providers") or {}).get("databricks") or {}
        auth = provider.get("auth") or {}
        url = str(provider.get("base_url") or "") if data.get("model_provider") == "databricks" else ""
        argv = [str(auth["command"]), *map(str, auth.get("args") or [])] if auth.get("command") else []
    except (ValueError, AttributeError, TypeError) as exc:
        raise _Unfit("problem", f"{path}: not readable as configured ({exc})") from None
    keep = _ms(auth.get("refresh_interval_ms"), DEFAULT_KEEP_MS, "refresh_interval_ms")
    timeout = _ms(auth.get("timeout_ms"), CODEX_HELPER_TIMEOUT_MS, "timeout_ms") / 1000
    return _Helper(url, " ".join(argv[-2:]), argv, keep, min(timeout, AGENT_HELPER_TIMEOUT), "refresh_interval_ms")


def _helper_agent(
    checks: list[dict[str, Any]],
    name: str,
    agent: str,
    path: Path,
    host: str | None,
    broker: TokenBroker | None,
    offline: bool,
) -> None:
    """Claude Code or Codex: pointing at this workspace, and its helper returning a token with enough life."""
    from devbox_native import _agents

    helper = (_claude if agent == "claude-code" else _codex)(path)
    url = helper.url
    routes = [f"{host}/{route}" for route in _agents.ROUTES] if host else []
    if helper.tail != "token get":
        raise _Unfit("warn", f"{path}: no `devbox-native token get` helper in it")
    if not any(url == r or url.startswith(r + "/") for r in routes):
        raise _Unfit("warn", f"{path}: points at {url or 'nothing'}, not at {host}")
    if offline:
        _check(checks, name, "ok", f"{path}: points at {url}; its helper not run (--offline)", path=str(path), url=url)
        return
    _helper_check(checks, name, path, helper, broker)


def _helper_check(
    checks: list[dict[str, Any]], name: str, path: Path, helper: _Helper, broker: TokenBroker | None
) -> None:
    """Run the helper as the agent would (stdin closed, within its timeout): it must print one token (never
    shown), the broker's cached token (whose expiry the cache records; `token get` alone does not say it) with
    more than the agent's keep left. The file was found trusted before (someone else's file could name any
    program)."""
    import shlex
    import subprocess
    import time

    from devbox_native.errors import DevboxError

    url, argv, timeout, keep_ms, setting = helper.url, helper.argv, helper.timeout, helper.keep_ms, helper.setting
    extra: dict[str, Any] = {"path": str(path), "url": url, "keeps_token_s": keep_ms / 1000, "expires_in": None}
    try:
        code, out = _run(argv, timeout)
    except subprocess.TimeoutExpired:
        raise _Unfit("problem", f"{path}: its helper did not answer within {timeout:g} s") from None
    except OSError as exc:
        raise _Unfit("problem", f"{path}: its helper {argv[0]} did not run ({exc})") from None
    token = out.removesuffix("\n")
    if code != 0 or not token or "\n" in token:
        # Its output is not shown (it could hold a secret): the command, to run by hand, is.
        detail = f"{path}: its helper gave no token (exit {code}; run `{shlex.join(argv)}` to see why)"
        raise _Unfit("problem", detail)
    try:
        expires_at = broker.expires_at if broker is not None and broker.is_current(token) else None
    except (DevboxError, OSError):
        expires_at = None
    if expires_at is None:
        why = "no credentials to read the broker's cache with" if broker is None else "not the broker's cached one"
        detail = f"{path}: its helper returns a token, {why}: its life is unknown"
        _check(checks, name, "warn", detail, **extra)
        return
    left = expires_at - time.time()
    extra["expires_in"] = round(left)
    if keep_ms == 0:
        detail = (
            f"{path}: {setting} = 0: the agent runs its helper again only after a 401, and Databricks answers an "
            "expired token with 403 (`devbox-native setup --agents ...` sets it)"
        )
        _check(checks, name, "problem", detail, **extra)
    elif left <= keep_ms / 1000:
        detail = (
            f"{path}: its helper's token has {left:.0f} s left, but the agent keeps it {keep_ms / 1000:.0f} s "
            f"({setting}): it would send an expired token"
        )
        _check(checks, name, "problem", detail, **extra)
    else:
        detail = (
            f"{path}: points at {url}; its helper returns a token with {left:.0f} s left, more than the "
            f"{keep_ms / 1000:.0f} s the agent keeps it ({setting})"
        )
        _check(checks, name, "ok", detail, **extra)


def _dotenv(text: str) -> dict[str, str]:
    """``KEY=value`` lines of a ``.env`` (``export`` and matching quotes allowed; the first of a key wins, as
    dotenv does)."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        line = line.removeprefix("export ").lstrip() if line.startswith("export ") else line
        key, sep, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or key.startswith("#"):
            continue
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values.setdefault(key, value)
    return values


def _gateway_agent(checks: list[dict[str, Any]], name: str, agent: str, path: Path, gateway: _Gateway) -> None:
    """Gemini CLI or OpenCode: pointing at the running gateway with its key, and the gateway answering."""
    import hmac
    import json

    if gateway.url is None:
        raise _Unfit("problem", f"{path}: no credential gateway runs for it (`devbox-native gateway`)")
    if agent == "gemini":
        env = _dotenv(_read(path))
        url, want = env.get("GOOGLE_GEMINI_BASE_URL", ""), f"{gateway.url}/ai-gateway/gemini"
        if url != want:
            raise _Unfit("problem", f"{path}: GOOGLE_GEMINI_BASE_URL is {url or 'unset'}, not {want}")
        key = gateway.key()
        if key is None or not hmac.compare_digest(env.get("GEMINI_API_KEY", "").encode(), key.encode()):
            raise _Unfit("problem", f"{path}: GEMINI_API_KEY is not the gateway's key (`devbox-native setup`)")
        settings = path.with_name("settings.json")
        try:
            data = json.loads(_read(settings))
            selected = data["security"]["auth"]["selectedType"]
        except (ValueError, KeyError, TypeError):
            selected = None
        if selected != "gemini-api-key":
            raise _Unfit("problem", f"{settings}: security.auth.selectedType is not gemini-api-key")
    else:
        try:
            options = json.loads(_read(path))["provider"]["databricks"]["options"]
            url, api_key = str(options.get("baseURL") or ""), options.get("apiKey")
        except (ValueError, KeyError, TypeError, AttributeError):
            raise _Unfit("problem", f"{path}: no databricks provider with options in it") from None
        if not url.startswith(gateway.url + "/"):
            raise _Unfit("problem", f"{path}: the databricks provider points at {url or 'nothing'}, not the gateway")
        if api_key != f"{{file:{gateway.key_file}}}":
            raise _Unfit("problem", f"{path}: the databricks provider's apiKey is not {{file:{gateway.key_file}}}")
    status, answer = gateway.health()
    detail = f"{path}: points at the gateway ({url}), with its key; {answer}"
    _check(checks, name, status, detail, path=str(path), url=url)


class _Gateway:
    """The credential gateway of the cache, looked up once for every agent that needs it."""

    def __init__(self, cache: Any, offline: bool) -> None:
        import devbox_native
        from devbox_native import _ccr

        running = devbox_native.running_gateway(cache)
        self.url = None if running is None else str(running[2]).rstrip("/")
        self.key_file = _ccr.gateway_dir(cache) / "gateway.key"
        self._cache, self._offline = cache, offline
        self._health: tuple[str, str] | None = None

    def key(self) -> str | None:
        """The gateway key (trust-checked read; only called while a gateway runs, so it exists)."""
        import devbox_native

        try:
            return devbox_native.gateway_key(self._cache)
        except (devbox_native.DevboxError, OSError, ValueError):
            return None

    def health(self) -> tuple[str, str]:
        from devbox_native._doctor import _gateway_health

        if self._offline:
            return "ok", "its /health not asked (--offline)"
        if self._health is None:
            assert self.url is not None
            self._health = _gateway_health(self.url)
        return self._health


def cli_version(agent: str, program: str) -> tuple[str | None, str | None, str]:
    """The version of `agent`'s CLI at `program`: ``(version, "package.json", manifest path)`` from the package
    the program belongs to (no process started), else ``(version, "--version", "")`` from running it (up to
    `VERSION_TIMEOUT`), else ``(None, None, why)``."""
    from devbox_native import _ccr

    hit = _ccr._package_json_of(program, PACKAGES[agent])
    if hit is not None:
        return hit[0], "package.json", str(hit[1])
    printed, why = _version_of(program)
    return (printed, "--version", "") if printed is not None else (None, None, why)


def _cli_check(checks: list[dict[str, Any]], name: str, agent: str, program: str, found: str | None) -> None:
    """The CLI's version (`cli_version`): its package.json (free), else `--version`."""
    if found is None:
        _check(checks, name, "warn", f"{program} is not on PATH", version=None, source=None, program=None)
        return
    version, source, where = cli_version(agent, found)
    if version is None:
        _check(checks, name, "warn", f"{found}: no version ({where})", version=None, source=None, program=found)
        return
    shown = where if source == "package.json" else f"`{found} --version`"
    _check(checks, name, "ok", f"{program} {version} ({shown})", version=version, source=source, program=found)


def _run(argv: list[str], timeout: float, env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run `argv` in a process group of its own, stdin closed: its exit code and stdout (stderr is dropped: it
    could hold a secret). Once it exits, or after `timeout` seconds (`subprocess.TimeoutExpired`), the group is
    killed by its id (anything it left behind goes too)."""
    import os
    import signal
    import subprocess

    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        proc.communicate()
    return proc.returncode, out


def _version_of(program: str) -> tuple[str | None, str]:
    """``program --version`` (`_run`, within `VERSION_TIMEOUT`), telemetry and update checks off: the first
    ``N.N.N`` it prints, or None and why."""
    import os
    import re
    import subprocess

    try:
        code, out = _run([program, "--version"], VERSION_TIMEOUT, {**os.environ, **QUIET_ENV})
    except subprocess.TimeoutExpired:
        return None, f"`--version` did not answer within {VERSION_TIMEOUT:g} s"
    except OSError as exc:
        return None, str(exc)
    match = re.search(r"\d+\.\d+\.\d+[\w.+-]*", out)
    return (match.group(0), "") if match else (None, f"`--version` printed no version (exit {code})")


def agent_checks(
    checks: list[dict[str, Any]],
    root: Path | None,
    host: str | None,
    broker: TokenBroker | None,
    cache: Any,
    offline: bool,
) -> None:
    """Every agent that is configured or whose CLI is on PATH (see the module doc), each in the file it reads:
    under `root` (`--root`), else where its variable (``CODEX_HOME``, ...) or the home folder puts it
    (`_native.agent_config_file`). `broker` is the one `token get` uses (the default cache), None without
    credentials."""
    import os
    import shutil

    from devbox_native import _native

    gateway: _Gateway | None = None
    for agent, program, needs_gateway in _native.known_agents():
        name = "agent_" + agent.replace("-", "_")
        found = shutil.which(program)
        try:
            path = _native.agent_config_file(agent, root_dir=root)
        except ValueError as exc:  # its variable holds a path the agent resolves from wherever it starts
            _check(checks, name, "problem", f"{agent}: {exc}")
            _cli_check(checks, name + "_cli", agent, program, found)
            continue
        present = os.path.lexists(path)
        if not present and found is None:
            continue
        try:
            if not present:
                raise _Unfit("warn", f"{path}: absent (`devbox-native setup --agents {agent}`)")
            if needs_gateway:
                gateway = gateway or _Gateway(cache, offline)
                _gateway_agent(checks, name, agent, path, gateway)
            else:
                _helper_agent(checks, name, agent, path, host, broker, offline)
        except _Unfit as unfit:
            _check(checks, name, unfit.status, str(unfit), path=str(path))
        _cli_check(checks, name + "_cli", agent, program, found)
