"""Coding agents wired to Databricks: which agents, which helper command, which gateway.

The files themselves are written by the Rust core (``_native.configure_agent``, one agent per call). This module
picks the agents (``None``: every agent whose CLI is on ``PATH``), finds the absolute ``devbox-native`` the agents
run as their credential helper, and finds the loopback gateway for the agents that need it. Imports are lazy:
``import devbox_native`` stays cheap for ``devbox-native token get``.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    import os
    from collections.abc import Iterable, Mapping
    from pathlib import Path
    from typing import Any

#: Where the agents' model requests go: the classic serving routes or the AI Gateway (v2) routes.
ROUTES = ("serving-endpoints", "ai-gateway")

#: Codex releases before this one have no command auth (``[model_providers.<id>.auth]``); they ignore our
#: ``auth`` table and send no credential. Command auth came with openai/codex#16288 (merge commit 20f43c1e,
#: 2026-03-31); the first release with it is 0.118.0 (tag ``rust-v0.118.0``; npm has no 0.119.0). Measured with
#: the npm packages ``@openai/codex@0.117.0-linux-x64`` and ``@0.118.0-linux-x64`` against the emulator, configured
#: by ``configure_agents``: 0.117.0 sent no ``Authorization`` (401), 0.118.0 sent the broker's token (and its
#: binary is the first to carry the ``ModelProviderAuthInfo`` config type).
CODEX_COMMAND_AUTH_SINCE = (0, 118, 0)


def _known() -> list[tuple[str, str, bool]]:
    from devbox_native._native import known_agents

    return known_agents()


def agent_names() -> list[str]:
    """Every agent name ``configure_agents`` takes."""
    return [name for name, _, _ in _known()]


def _names(agents: Iterable[str] | None, *, installed_only: bool) -> list[str]:
    """The agents to act on, checked: every name known (ValueError naming it and the valid ones)."""
    import shutil

    known = _known()
    if agents is None:
        return [name for name, program, _ in known if not installed_only or shutil.which(program)]
    if isinstance(agents, str):
        raise TypeError("agents: expected a list of agent names (or None), not a str")
    names = list(agents)
    valid = [name for name, _, _ in known]
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"agents: expected str names, got {type(name).__name__}")
        if name not in valid:
            raise ValueError(f"agents: unknown agent {name!r}; valid: {', '.join(valid)}")
    return list(dict.fromkeys(names))


def helper_command() -> list[str]:
    """The absolute command that prints a token (``token get`` is appended): the ``devbox-native`` next to this
    interpreter (a venv's ``bin``), else the one on ``PATH``, else this interpreter with ``-m devbox_native``."""
    import os
    import shutil
    import sys

    beside = os.path.join(os.path.dirname(os.path.abspath(sys.executable)), "devbox-native")
    if os.access(beside, os.X_OK):
        return [beside]
    found = shutil.which("devbox-native")
    if found:
        return [os.path.abspath(found)]
    return [os.path.abspath(sys.executable), "-m", "devbox_native"]


def cache_dir(cache: str | os.PathLike[str] | None = None) -> Path:
    """The broker's cache folder: that of the cache file ``cache``, else ``$XDG_CACHE_HOME/devbox-native`` when
    absolute, else ``~/.cache/devbox-native``; the gateway keeps ``gateway.key`` and ``gateway.json`` there."""
    import os
    from pathlib import Path

    if cache is not None:
        return Path(cache).parent
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "devbox-native"


def running_gateway() -> str | None:
    """The URL of the gateway running on the default broker cache, else None (`devbox_native.running_gateway`:
    a ``gateway.json`` that is not trusted, or whose process or port is gone, reads as none)."""
    from devbox_native import running_gateway as running

    found = running(None)
    return None if found is None else found[2]


def _gateway_needed_message(names: list[str]) -> str:
    return (
        f"{', '.join(names)}: {'needs' if len(names) == 1 else 'need'} the credential gateway and none is running: "
        "start it with `devbox-native gateway` (or pass its URL: gateway_url= / --gateway URL), then configure "
        "again"
    )


def codex_version() -> tuple[int, ...] | None:
    """The installed Codex's version: from the package.json of the ``codex`` on PATH (no process started), else
    ``codex --version`` (what doctor reports too); None when it is not on PATH or says nothing."""
    import re
    import shutil

    from devbox_native._doctor_agents import cli_version

    program = shutil.which("codex")
    if program is None:
        return None
    version = cli_version("codex", program)[0]
    match = re.match(r"(\d+)\.(\d+)\.(\d+)", version or "")
    return tuple(int(x) for x in match.groups()) if match else None


def configure_one(
    name: str,
    *,
    root_dir: str | os.PathLike[str] | None,
    host: str | None,
    route: str,
    model: str | None,
    gateway_url: str | None,
    gateway_key_file: str | None = None,
) -> dict[str, Any]:
    """Configure one agent; ``{"agent", "path", "changed", "warnings"}``. The gateway key's file defaults to
    ``gateway.key`` in the default cache folder."""
    from devbox_native._native import configure_agent

    key_file = (gateway_key_file or str(cache_dir() / "gateway.key")) if gateway_url is not None else None
    path, changed, warnings = configure_agent(
        name,
        helper=helper_command(),
        root_dir=root_dir,
        host=host,
        route=route,
        model=model,
        gateway_url=gateway_url,
        gateway_key_file=key_file,
    )
    if name == "codex":
        version = codex_version()
        if version is not None and version < CODEX_COMMAND_AUTH_SINCE:
            since = ".".join(map(str, CODEX_COMMAND_AUTH_SINCE))
            shown = ".".join(map(str, version))
            warnings.append(f"Codex {shown} predates command auth (needs {since} or later): upgrade @openai/codex")
    return {"agent": name, "path": path, "changed": changed, "warnings": warnings}


def check_places(names: Iterable[str], root_dir: str | os.PathLike[str] | None) -> None:
    """Resolve every agent's file first: a bad ``CODEX_HOME`` (relative, ...) fails before any agent is written."""
    from devbox_native._native import agent_config_file

    for name in names:
        agent_config_file(name, root_dir=root_dir)


def _check_models(models: Mapping[str, str] | None) -> dict[str, str]:
    if models is None:
        return {}
    if not hasattr(models, "items"):
        raise TypeError("models: expected a mapping of agent name to model name")
    valid = agent_names()
    out: dict[str, str] = {}
    for agent, model in models.items():
        if not isinstance(agent, str) or not isinstance(model, str):
            raise TypeError("models: expected a mapping of str to str")
        if agent not in valid:
            raise ValueError(f"models: unknown agent {agent!r}; valid: {', '.join(valid)}")
        if not model or any(c.isspace() or not c.isprintable() for c in model):
            raise ValueError(f"models: bad model name {model!r} for {agent}")
        out[agent] = model
    return out


def _check_route(route: str) -> str:
    if not isinstance(route, str):
        raise TypeError("route: expected a str")
    if route not in ROUTES:
        raise ValueError(f"route: unknown route {route!r}; valid: {', '.join(ROUTES)}")
    return route


def configure_agents(
    agents: Iterable[str] | None = None,
    *,
    root_dir: str | os.PathLike[str] | None = None,
    host: str | None = None,
    route: str = "serving-endpoints",
    models: Mapping[str, str] | None = None,
    gateway_url: str | None = None,
) -> dict[str, Path]:
    """Wire coding agents to the workspace with credentials that refresh themselves (README "Agents").

    Each agent's files are merged, never overwritten, atomically and 0600 (see
    :func:`devbox_native._native.configure_agent`). No Databricks token is written: Claude Code and Codex run
    this installation's ``devbox-native token get`` by absolute path; Gemini CLI and OpenCode go through the
    loopback credential gateway with its key. Warnings (e.g. a removed ``ANTHROPIC_API_KEY``) are logged on the
    ``devbox_native`` logger.

    Args:
        agents: Names among ``claude-code``, ``codex``, ``gemini``, ``opencode`` (None: every agent whose CLI is
            on ``PATH``).
        root_dir: The folder holding the agents' folders, as a home folder: ``<root>/.codex/config.toml``, ...
            (the agents' variables do not apply). None: the file each agent reads, moved by its variable when set
            (``CLAUDE_CONFIG_DIR``, ``CODEX_HOME``, ``GEMINI_CLI_HOME``, ``OPENCODE_CONFIG_DIR``, ``OPENCODE_CONFIG``,
            ``XDG_CONFIG_HOME``), else under the home folder (:func:`devbox_native._native.agent_config_file`).
        host: The workspace (None: ``DATABRICKS_HOST``).
        route: ``serving-endpoints`` (classic model serving) or ``ai-gateway`` (AI Gateway v2).
        models: Agent name -> model, for the agents whose default you do not want.
        gateway_url: The credential gateway (None: the running one, from ``<cache dir>/gateway.json``).

    Returns:
        Agent name -> the main file written for it.

    Raises:
        TypeError: ``agents`` is a str, or a name or model is not a str.
        ValueError: an unknown agent, route or ``models`` key (naming it and listing the valid ones), a bad
            host, model or gateway URL, or (``root_dir`` None) an agent's variable holding a relative path (named);
            nothing is written.
        ConfigError: Gemini CLI or OpenCode asked for with no gateway (the message says how to start one; nothing
            is written), or an agent's file is not valid JSON/TOML (named, left untouched).
        OSError: a file cannot be read or written.
    """
    import logging

    names = _names(agents, installed_only=True)
    _check_route(route)
    chosen = _check_models(models)
    if host is not None:
        from devbox_native._native import ensure_https_url

        try:
            ensure_https_url(host)  # a bad host fails here, before any agent is written
        except ValueError as exc:
            raise ValueError(f"host: {str(exc).removeprefix('url: ')}") from None
    if gateway_url is None:
        gateway_url = running_gateway()
    needing = [n for n, _, gw in _known() if gw and n in names]
    if needing and gateway_url is None:
        from devbox_native.errors import ConfigError

        raise ConfigError(_gateway_needed_message(needing))
    check_places(names, root_dir)
    log = logging.getLogger("devbox_native")
    written: dict[str, Path] = {}
    for name in names:
        result = configure_one(
            name, root_dir=root_dir, host=host, route=route, model=chosen.get(name), gateway_url=gateway_url
        )
        for warning in result["warnings"]:
            log.warning("%s", warning)
        written[name] = result["path"]
    return written


def unconfigure_agents(
    agents: Iterable[str] | None = None, *, root_dir: str | os.PathLike[str] | None = None
) -> dict[str, Path]:
    """Take out what ``configure_agents`` added (``None``: every known agent), from the same files (``root_dir`` as
    there); returns each agent's main file."""
    from devbox_native._native import unconfigure_agent

    names = _names(agents, installed_only=False)
    return {name: unconfigure_agent(name, root_dir=root_dir)[0] for name in names}
