"""The ``devbox-native`` command (also ``python -m devbox_native``).

Commands:
    setup           mint a token and write the Claude Code Router config, as the DevBox app does at start-up;
                    ``setup --agents LIST`` configures coding agents instead (``--remove`` takes that out again)
    emulator        serve the local workspace emulator and print the environment that points at it
    token get       print the broker's token (cached, or minted once across processes): only the token, so it
                    works as Claude Code's ``apiKeyHelper``
    token create    mint a token (prints only its value; ``--json`` prints everything)
    token list      the identity's live tokens (metadata only), marked by who minted them
    token revoke    revoke tokens by id
    token cleanup   revoke the stale tokens devbox-native minted (never the broker's current token)
    ccr write       write the full CCR config (and plugin) with the broker's token
    ccr update      put the broker's token into an existing CCR config, changing nothing else
    rotate          keep the CCR config on a fresh token (a foreground daemon; SIGTERM or Ctrl-C stops it)
    gateway         the loopback credential gateway (foreground; SIGTERM or Ctrl-C drains and stops it)
    gateway key     print the gateway key local callers present (created when missing)
    doctor          report credentials (and whether the workspace accepts them, unless ``--offline``), the broker
                    cache, file modes, Claude Code Router's state and each coding agent's (config, helper or
                    gateway, CLI version)

Every command takes ``--json`` (one JSON object or list on stdout). ``token get``, ``token create``,
``ccr write`` and ``ccr update`` read the token from stdin with ``--token-stdin`` where it applies.

Every command that talks to the workspace takes ``--timeout SECONDS``: the budget of each call, retries
included (the ``Config``'s ``retry_timeout_seconds``; default 300 s, ``token get`` 30 s so that an agent waiting
for its ``apiKeyHelper`` gets an answer). Tokens a command mints live ``CLAUDE_CODE_TOKEN_EXPIRY_SECONDS``
seconds when that is set (read as the app reads it, with ``int()``), as in the app; otherwise ``--lifetime``,
otherwise the default. The broker refreshes 600 s before expiry (``--margin``), or at half the lifetime when
that is shorter.

Exit codes:
    0   success (``rotate``: stopped by SIGTERM or SIGINT)
    1   an error (printed to stderr; with ``--json`` also ``{"error": ..., "message": ...}`` on stdout)
    2   a usage error (bad command or option)
    3   ``doctor`` found a problem (no usable credentials, credentials or a CCR token the workspace refuses, a
        workspace that cannot be reached, a secret file readable by others, a CCR config that is not valid JSON
        or has no ``databricks`` provider)
    141 stdout was closed by its reader (``devbox-native token list --json | head -c 10``); nothing is printed

``devbox-native token get`` without options takes a fast path (``devbox_native._entry``, which the installed
command and ``python -m devbox_native`` run before this module is loaded): it imports neither argparse nor json
and, on a fresh cache hit, starts no async runtime and makes no network call.
"""

from __future__ import annotations

import sys

from devbox_native._entry import (  # re-exported: every exit code and default is importable from here
    DEFAULT_MARGIN as DEFAULT_MARGIN,
)
from devbox_native._entry import (
    EXIT_CLOSED_PIPE as EXIT_CLOSED_PIPE,
)
from devbox_native._entry import (
    EXIT_ERROR,
    EXIT_OK,
    LIFETIME_ENV,
    TOKEN_GET_TIMEOUT,
    guarded,
    token_get,
)
from devbox_native._entry import budget as _budget
from devbox_native._entry import lifetime as _lifetime
from devbox_native._entry import margin as _margin

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (cold start of `token get`)
if TYPE_CHECKING:
    import argparse
    from typing import Any

    from devbox_native import TokenBroker
    from devbox_native._native import RotationEvent, RotationFailure

#: Exit codes (0, 1 and 141 are `devbox_native._entry`'s).
EXIT_USAGE = 2
EXIT_PROBLEMS = 3


def _redact(token: str) -> str:
    return f"{token[:4]}…({len(token)} chars)" if len(token) > 8 else "***"


def _print_json(obj: Any) -> None:
    import json

    print(json.dumps(obj, indent=None))


# ---------------------------------------------------------------------------------------------- setup, emulator


def _gateway_option(args: argparse.Namespace) -> None:
    """Fold the deprecated ``--gateway-url URL`` (once the agents' own option) into ``--gateway``, with one
    warning on stderr."""
    if args.gateway_url is None:
        return
    print("devbox-native: warning: --gateway-url is deprecated, use --gateway URL (the same option)", file=sys.stderr)
    if args.gateway is not None and args.gateway != args.gateway_url:
        raise ValueError("--gateway-url: the deprecated name of --gateway, given with another value: give --gateway")
    args.gateway = args.gateway_url


def _gateway_url(args: argparse.Namespace, value: str | None) -> str | None:
    """The gateway URL of ``--gateway``'s ``value``: a URL as given, ``auto`` the gateway running on the cache
    (None when none runs), None for None."""
    if value != "auto":
        return value
    from devbox_native import _ccr

    found = _ccr.running_gateway(args.cache)
    return None if found is None else str(found["url"])


def _gateway_key_file(args: argparse.Namespace) -> str:
    """``--gateway-key-file``, else ``gateway.key`` in the cache folder."""
    from devbox_native import _agents

    return str(args.gateway_key_file or _agents.cache_dir(args.cache) / "gateway.key")


def _gateway_for(args: argparse.Namespace) -> tuple[str, str] | None:
    """(url, key) of the credential gateway that setup points CCR at: ``--gateway URL``, or ``--gateway auto``
    (a running one from ``gateway.json``); None without ``--gateway``."""
    from devbox_native import _ccr
    from devbox_native.errors import ConfigError

    if not args.gateway:
        return None
    url = _gateway_url(args, args.gateway)
    if url is None:
        where = _ccr.gateway_dir(args.cache) / "gateway.json"
        raise ConfigError(f"no running credential gateway ({where}): start `devbox-native gateway` first")
    if args.gateway_key_file is not None:
        return url, _ccr.gateway_key(args.gateway_key_file)
    import devbox_native

    return url, devbox_native.gateway_key(args.cache)  # trust-checked, as every file beside the cache


def _setup_ccr3(args: argparse.Namespace, version: str, gateway: tuple[str, str] | None) -> int:
    import devbox_native
    from devbox_native.errors import ConfigError

    if gateway is None:
        raise ConfigError(
            f"CCR {version} keeps the token it was given in its own store and never re-reads it: "
            "run `devbox-native gateway` and then `devbox-native setup --gateway auto`"
        )
    done = devbox_native.install_ccr3_provider(gateway[1], args.root, gateway_url=gateway[0], model=args.model)
    result: dict[str, Any] = {
        "ccr_version": version,
        "mode": done["mode"],
        "config": str(done["path"]) if done["path"] else None,
        "rpc_url": done["rpc_url"],
        "gateway": gateway[0],
    }
    if args.json:
        _print_json(result)
    elif done["mode"] == "rpc":
        print(f"installed the databricks provider into the running CCR {version} through {done['rpc_url']}")
    else:
        print(f"wrote {done['path']} for CCR {version} to import on its first start (gateway {gateway[0]})")
    return EXIT_OK


def _cmd_setup(args: argparse.Namespace) -> int:
    import devbox_native
    from devbox_native import _ccr

    _gateway_option(args)
    if args.agents is not None or args.remove:
        return _setup_agents(args)
    args.model = args.model[-1] if args.model else "databricks-claude-sonnet-4"
    gateway = _gateway_for(args)
    version = _ccr.detect()["version"]
    if _ccr.is_v3(version):
        return _setup_ccr3(args, str(version), gateway)
    if gateway is not None:
        config_path = devbox_native.write_ccr_config(gateway[1], args.root, model=args.model, gateway_url=gateway[0])
        if args.databrickscfg:
            devbox_native.setup_databricks_cfg(root_dir=args.root)
        if args.json:
            _print_json({"config": str(config_path), "gateway": gateway[0], "ccr_version": version})
        else:
            print(f"wrote {config_path} (gateway {gateway[0]}; no Databricks token in it)")
        return EXIT_OK
    config = _budget(args.timeout)
    # Omitted, the lifetime is the app's default (None is a TypeError, as int(None) is in the app).
    lifetime = () if args.lifetime is None else (args.lifetime,)
    token = devbox_native.generate_spn_token(*lifetime, config=config)
    config_path = devbox_native.write_ccr_config(token, args.root, model=args.model)
    plugin_path = config_path.parent / "plugins" / "databricks-claude-transformers.js"
    result: dict[str, Any] = {
        "config": str(config_path),
        "plugin": str(plugin_path),
        "token": _redact(token),
    }
    if args.databrickscfg:
        devbox_native.setup_databricks_cfg(root_dir=args.root)
        result["databrickscfg"] = str(config_path.parent.parent / ".databrickscfg")
    if args.json:
        _print_json(result)
    else:
        print(f"wrote {config_path} (token {result['token']})")
        print(f"wrote {plugin_path}")
        if args.databrickscfg:
            print(f"wrote {result['databrickscfg']} ([DEFAULT] host, client_id and the client secret; mode 0600)")
    return EXIT_OK


def _agent_models(values: list[str] | None) -> dict[str, str]:
    models: dict[str, str] = {}
    for value in values or []:
        agent, sep, model = value.partition("=")
        if not sep or not agent or not model:
            raise ValueError(f"--model: expected AGENT=NAME with --agents, got {value!r}")
        models[agent] = model
    return models


def _setup_agents(args: argparse.Namespace) -> int:
    """`setup --agents ...` (configure) and `setup --remove --agents ...`: one result per agent."""
    from devbox_native import _agents
    from devbox_native.errors import DevboxError

    if args.agents is None:  # --remove alone: every agent we know
        names = _agents.agent_names()
    elif args.agents == "":  # a bare --agents: every agent whose CLI is on PATH
        names = _agents._names(None, installed_only=not args.remove)
    else:
        names = _agents._names([n.strip() for n in args.agents.split(",") if n.strip()], installed_only=False)
    results: list[dict[str, Any]] = []
    if args.remove:
        from devbox_native._native import unconfigure_agent

        for name in names:
            path, changed = unconfigure_agent(name, root_dir=args.root)
            results.append({"agent": name, "status": "removed" if changed else "absent", "path": str(path)})
    else:
        _agents._check_route(args.route)
        models = _agents._check_models(_agent_models(args.model))
        # Without --gateway the agents that need one use the running one, as with --gateway auto.
        gateway_url = _gateway_url(args, args.gateway or "auto")
        needing = {n for n, _, gw in _agents._known() if gw}
        for name in names:
            if name in needing and gateway_url is None:
                msg = _agents._gateway_needed_message([name])
                results.append({"agent": name, "status": "error", "error": "ConfigError", "message": msg})
                continue
            try:
                r = _agents.configure_one(
                    name,
                    root_dir=args.root,
                    host=args.host,
                    route=args.route,
                    model=models.get(name),
                    gateway_url=gateway_url,
                    gateway_key_file=_gateway_key_file(args) if gateway_url is not None else None,
                )
            except (DevboxError, ValueError, OSError) as exc:
                results.append({"agent": name, "status": "error", "error": type(exc).__name__, "message": str(exc)})
            else:
                results.append({**r, "status": "configured", "path": str(r["path"])})
    failed = [r for r in results if r["status"] == "error"]
    if args.json:
        _print_json(results)
    else:
        for r in results:
            if r["status"] == "error":
                print(f"devbox-native: {r['agent']}: not configured: {r['message']}", file=sys.stderr)
                continue
            for warning in r.get("warnings", []):
                print(f"devbox-native: warning: {warning}", file=sys.stderr)
            verb = {"configured": "configured", "removed": "removed our settings from", "absent": "nothing of ours in"}
            if r["status"] == "configured":
                print(f"configured {r['agent']}: {r['path']}")
            else:
                print(f"{r['agent']}: {verb[r['status']]} {r['path']}")
    return EXIT_ERROR if failed else EXIT_OK


def _cmd_emulator(args: argparse.Namespace) -> int:
    from devbox_native.testing._cli import serve

    return serve(args.port, json_output=args.json)


# ---------------------------------------------------------------------------------------------------- token


def _broker(args: argparse.Namespace) -> TokenBroker:
    from devbox_native import TokenBroker

    # `token get --kind` chooses; the CCR commands and `rotate` write PATs into CCR's config, as before.
    lifetime = _lifetime(args.lifetime)
    return TokenBroker(
        lifetime_seconds=lifetime,
        refresh_margin=_margin(lifetime, args.margin),
        cache_path=args.cache,
        config=_budget(args.timeout),
        auto_cleanup=getattr(args, "auto_cleanup", False),
        kind=getattr(args, "kind", "pat"),
    )


def _lease(broker: TokenBroker) -> dict[str, Any]:
    return {
        "token_id": broker.token_id,
        "expires_at": broker.expires_at,
        "cache": str(broker.cache_path),
        "kind": broker.kind,
        "strategy": broker.strategy,
    }


def _cmd_token_get(args: argparse.Namespace) -> int:
    broker = _broker(args)
    token = broker.force_refresh() if args.refresh else broker.get()
    if args.json:
        _print_json({"token": token, **_lease(broker)})
    else:
        print(token)
    return EXIT_OK


def _cmd_token_create(args: argparse.Namespace) -> int:
    import devbox_native

    created = devbox_native.create_token(
        _lifetime(args.lifetime), args.comment, config=_budget(args.timeout), auto_cleanup=args.auto_cleanup
    )
    if args.json:
        _print_json(
            {
                "token_value": created.token_value,
                "token_id": created.token_id,
                "creation_time": created.creation_time,
                "expiry_time": created.expiry_time,
                "comment": created.comment,
            }
        )
    else:
        print(created.token_value)
        print(f"token_id {created.token_id}", file=sys.stderr)
    return EXIT_OK


def _minted_by(comment: str | None, prefix: str) -> str:
    if comment and comment.startswith(prefix):
        return "devbox-native"
    if comment and comment.startswith("sdk-") and comment[4:].isdigit():
        return "app"
    return "other"


def _when(ms: Any) -> str:
    import time

    if not isinstance(ms, int) or ms < 0:
        return "never"
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))


def _cmd_token_list(args: argparse.Namespace) -> int:
    import devbox_native

    infos = devbox_native.list_tokens(config=_budget(args.timeout))
    rows = [{**info, "minted_by": _minted_by(info.get("comment"), args.prefix)} for info in infos]
    if args.json:
        _print_json(rows)
        return EXIT_OK
    for r in rows:
        print(
            f"{r['token_id']}  created {_when(r['creation_time'])}  expires {_when(r['expiry_time'])}  "
            f"{r['minted_by']:<13}  {r.get('comment') or ''}"
        )
    print(f"{len(rows)} live token(s)", file=sys.stderr)
    return EXIT_OK


def _cmd_token_revoke(args: argparse.Namespace) -> int:
    import devbox_native

    for token_id in args.token_ids:
        devbox_native.delete_token(token_id, config=_budget(args.timeout))
    if args.json:
        _print_json({"revoked": args.token_ids})
    else:
        for token_id in args.token_ids:
            print(f"revoked {token_id}")
    return EXIT_OK


def _cmd_token_cleanup(args: argparse.Namespace) -> int:
    import devbox_native

    revoked = devbox_native.cleanup_tokens(
        args.prefix,
        args.older_than,
        args.include_app_tokens,
        cache_path=args.cache,
        dry_run=args.dry_run,
        config=_budget(args.timeout),
    )
    if args.json:
        _print_json({"revoked" if not args.dry_run else "would_revoke": revoked})
    else:
        verb = "would revoke" if args.dry_run else "revoked"
        for token_id in revoked:
            print(f"{verb} {token_id}")
        print(f"{verb} {len(revoked)} token(s)", file=sys.stderr)
    return EXIT_OK


# ------------------------------------------------------------------------------------------------------ ccr


def _token_for(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """The token to write: from stdin with --token-stdin, else from the broker."""
    if args.token_stdin:
        token = sys.stdin.readline().strip()
        if not token:
            raise ValueError("--token-stdin: no token on stdin")
        return token, {"source": "stdin"}
    broker = _broker(args)
    token = broker.get()
    return token, {"source": "broker", **_lease(broker)}


def _cmd_ccr_write(args: argparse.Namespace) -> int:
    import devbox_native

    token, info = _token_for(args)
    path = devbox_native.write_ccr_config(token, args.root, host=args.host, model=args.model)
    if args.json:
        _print_json({"config": str(path), **info})
    else:
        print(f"wrote {path} (token {_redact(token)})")
    return EXIT_OK


def _cmd_ccr_update(args: argparse.Namespace) -> int:
    import devbox_native

    token, info = _token_for(args)
    path = devbox_native.update_ccr_token(token, args.root, host=args.host, model=args.model)
    if args.json:
        _print_json({"config": str(path), **info})
    else:
        print(f"updated {path} (token {_redact(token)}); restart CCR to use it (`ccr restart`)")
    return EXIT_OK


# --------------------------------------------------------------------------------------------------- doctor


def _cmd_doctor(args: argparse.Namespace) -> int:
    from devbox_native import _doctor

    return _doctor.run(args)


# --------------------------------------------------------------------------------------------------- rotate


def _iso(seconds: float | None) -> str:
    import time

    return "-" if seconds is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def _emit(as_json: bool, text: str, obj: dict[str, Any], *, stream: Any = None) -> None:
    """One line per event: ``text`` (on ``stream``, default stdout), or ``obj`` as JSON on stdout."""
    import json

    if as_json:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()
    else:
        out = stream or sys.stdout
        out.write(text + "\n")
        out.flush()


def _cmd_rotate(args: argparse.Namespace) -> int:
    import logging
    import os
    import shlex
    import signal
    import threading

    import devbox_native
    from devbox_native import _ccr

    # Failures are also logged at WARNING (logger devbox_native): show them on stderr.
    logging.basicConfig(level=logging.WARNING, format="devbox-native: %(levelname)s: %(message)s")

    command = shlex.split(args.command) if args.command else None
    note = _ccr.warning(_ccr.detect(command)["version"])
    if note is not None:
        _emit(args.json, f"devbox-native: warning: {note}", {"event": "warning", "message": note}, stream=sys.stderr)

    def on_rotate(e: RotationEvent) -> None:
        replaced = e["replaced_token_id"] or "none"
        _emit(
            args.json,
            f"rotated: token {e['token_id']} ({e['reason']}), expires {_iso(e['expires_at'])}, replaced {replaced}, "
            f"rotation {e['rotation']}",
            {"event": "rotated", **e, "config_path": str(e["config_path"])},
        )

    def on_error(f: RotationFailure) -> None:
        error = f["error"]
        _emit(
            args.json,
            f"error: {f['stage']}: {type(error).__name__}: {error} (failure {f['attempt']} in a row; next attempt at "
            f"{_iso(f['next_attempt_at'])})",
            {
                "event": "error",
                "stage": f["stage"],
                "error": type(error).__name__,
                "message": str(error),
                "attempt": f["attempt"],
                "next_attempt_at": f["next_attempt_at"],
            },
        )

    stopping = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        rotation = devbox_native.start_rotation(
            args.root,
            on_rotate,
            command,
            broker=_broker(args),
            port=args.port,
            restart_timeout=args.restart_timeout,
            on_error=on_error,
        )
    except RuntimeError as exc:  # another rotation runs on this cache (its pid is in the message)
        if args.json:
            _print_json({"error": type(exc).__name__, "message": str(exc)})
        print(f"devbox-native: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    with rotation:
        shown = shlex.join(command) if command else "none"
        _emit(
            args.json,
            f"rotating {rotation.config_path} (command: {shown}); pid {os.getpid()}",
            {"event": "started", "config": str(rotation.config_path), "command": command, "pid": os.getpid()},
            stream=sys.stderr,
        )
        while not stopping.wait(1.0):
            pass
    _emit(
        args.json,
        f"stopped after {rotation.rotations} rotation(s)",
        {"event": "stopped", "rotations": rotation.rotations},
        stream=sys.stderr,
    )
    return EXIT_OK


# -------------------------------------------------------------------------------------------------- gateway


def _cmd_gateway(args: argparse.Namespace) -> int:
    import logging
    import os
    import signal
    import threading

    import devbox_native

    if args.gateway_command == "key":
        key = devbox_native.gateway_key(args.cache)
        if args.json:
            _print_json({"key": key})
        else:
            print(key)
        return EXIT_OK
    # One INFO line per request (never a header value) and the warnings, on stderr.
    logger = logging.getLogger("devbox_native")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    devbox_native.refresh_logging()
    stopping = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    gateway = devbox_native.start_gateway(args.port, kind=args.kind, cache_path=args.cache)
    with gateway:
        _emit(
            args.json,
            f"gateway on {gateway.url} ({gateway.kind} tokens; key in {gateway.key_path}); pid {os.getpid()}",
            {
                "event": "started",
                "url": gateway.url,
                "port": gateway.port,
                "kind": gateway.kind,
                "key_file": str(gateway.key_path),
                "pid": os.getpid(),
            },
        )
        while not stopping.wait(1.0):
            pass
    _emit(args.json, "gateway stopped", {"event": "stopped"})
    return EXIT_OK


# --------------------------------------------------------------------------------------------------- parser


def _parser() -> argparse.ArgumentParser:
    import argparse
    from pathlib import Path

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print one JSON value on stdout")
    timed = argparse.ArgumentParser(add_help=False)
    timed.add_argument(
        "--timeout",
        type=_seconds,
        default=None,
        metavar="SECONDS",
        help="budget of each call to the workspace, retries included (default 300)",
    )
    brokered = argparse.ArgumentParser(add_help=False)
    brokered.add_argument(
        "--lifetime", type=int, default=None, help=f"token lifetime in seconds (default 3600; {LIFETIME_ENV} wins)"
    )
    brokered.add_argument("--margin", type=int, default=None, help="refresh this many seconds before expiry (600)")
    brokered.add_argument("--cache", type=Path, default=None, help="broker cache file (default under ~/.cache)")
    root = argparse.ArgumentParser(add_help=False)
    root.add_argument("--root", type=Path, default=None, help="folder that holds .claude-code-router (default HOME)")

    from devbox_native import __version__

    p = argparse.ArgumentParser(prog="devbox-native", description="Databricks credentials for coding assistants.")
    p.add_argument("--version", action="version", version=f"devbox-native {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser(
        "setup",
        parents=[common, timed, root],
        help="mint a token and write the Claude Code Router config; with --agents: configure coding agents",
    )
    s.add_argument(
        "--model",
        action="append",
        default=None,
        help="serving endpoint name (default databricks-claude-sonnet-4); with --agents: AGENT=NAME, repeatable",
    )
    s.add_argument(
        "--agents",
        nargs="?",
        const="",
        default=None,
        metavar="LIST",
        help="configure these agents (comma-separated: claude-code,codex,gemini,opencode; bare: those on PATH)",
    )
    s.add_argument("--remove", action="store_true", help="with --agents: take out what setup --agents added")
    s.add_argument(
        "--route", default="serving-endpoints", help="with --agents: serving-endpoints (default) or ai-gateway"
    )
    s.add_argument("--host", default=None, help="with --agents: workspace host (default DATABRICKS_HOST)")
    # The agents' gateway option before --gateway served both: a hidden alias that warns (CHANGELOG).
    s.add_argument("--gateway-url", default=None, help=argparse.SUPPRESS)
    s.add_argument(
        "--lifetime",
        type=_lifetime_option,
        default=None,
        help=f"token lifetime in seconds (default 3600; {LIFETIME_ENV} wins)",
    )
    s.add_argument("--databrickscfg", action="store_true", help="also write <root>/.databrickscfg")
    s.add_argument(
        "--gateway",
        default=None,
        metavar="URL",
        help="the credential gateway ('auto': the one running on --cache): CCR talks to it (gateway mode); with "
        "--agents, Gemini CLI and OpenCode do (default: auto)",
    )
    s.add_argument(
        "--gateway-key-file", type=Path, default=None, help="the gateway key (default <cache dir>/gateway.key)"
    )
    s.add_argument("--cache", type=Path, default=None, help="broker cache file whose folder holds the gateway's files")
    s.set_defaults(func=_cmd_setup)

    e = sub.add_parser("emulator", parents=[common], help="serve the local workspace emulator")
    e.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: any free port)")
    e.set_defaults(func=_cmd_emulator)

    t = sub.add_parser("token", help="the token broker and the Token API")
    tsub = t.add_subparsers(dest="token_command", required=True)
    g = tsub.add_parser(
        "get",
        parents=[common, brokered],
        help="print the broker's token (apiKeyHelper)",
        description=f"Print the broker's token. Fails within {TOKEN_GET_TIMEOUT:.0f} s unless --timeout says "
        "otherwise, so that an agent waiting for its apiKeyHelper gets an answer.",
    )
    g.add_argument(
        "--timeout",
        type=_seconds,
        default=TOKEN_GET_TIMEOUT,
        metavar="SECONDS",
        help=f"budget of each call to the workspace, retries included (default {TOKEN_GET_TIMEOUT:.0f})",
    )
    g.add_argument(
        "--refresh", action="store_true", help="mint a new token now (the old one is revoked after its grace period)"
    )
    g.add_argument("--kind", choices=["auto", "oauth", "pat"], default="auto", help="token kind (default auto)")
    g.set_defaults(func=_cmd_token_get)
    c = tsub.add_parser("create", parents=[common, timed], help="mint a token and print it")
    c.add_argument(
        "--lifetime",
        type=int,
        default=None,
        help=f"lifetime in seconds (default: the workspace's; {LIFETIME_ENV} wins)",
    )
    c.add_argument("--comment", default=None, help="comment (default: devbox-native-cli)")
    c.add_argument("--auto-cleanup", action="store_true", help="on QUOTA_EXCEEDED, clean up and retry once")
    c.set_defaults(func=_cmd_token_create, comment_default="devbox-native-cli")
    lst = tsub.add_parser("list", parents=[common, timed], help="list live tokens (metadata only)")
    lst.add_argument("--prefix", default="devbox-native-", help="comment prefix that marks our tokens")
    lst.set_defaults(func=_cmd_token_list)
    r = tsub.add_parser("revoke", parents=[common, timed], help="revoke tokens by id")
    r.add_argument("token_ids", nargs="+", metavar="TOKEN_ID")
    r.set_defaults(func=_cmd_token_revoke)
    cl = tsub.add_parser("cleanup", parents=[common, timed], help="revoke stale tokens devbox-native minted")
    cl.add_argument("--prefix", default="devbox-native-", help="comment prefix of the tokens to revoke")
    cl.add_argument("--older-than", type=int, default=None, metavar="SECONDS", help="only tokens at least this old")
    cl.add_argument("--include-app-tokens", action="store_true", help="also the DevBox app's sdk-<ns> tokens")
    cl.add_argument("--dry-run", action="store_true", help="list what would be revoked, revoke nothing")
    cl.add_argument("--cache", type=Path, default=None, help="broker cache whose tokens are kept")
    cl.set_defaults(func=_cmd_token_cleanup)

    k = sub.add_parser("ccr", help="the Claude Code Router config")
    ksub = k.add_subparsers(dest="ccr_command", required=True)
    for name, func, text in (
        ("write", _cmd_ccr_write, "write the full config and plugin with the broker's token"),
        ("update", _cmd_ccr_update, "put the broker's token into the existing config, changing nothing else"),
    ):
        w = ksub.add_parser(name, parents=[common, brokered, timed, root], help=text)
        w.add_argument("--host", default=None, help="workspace host (default DATABRICKS_HOST)")
        w.add_argument("--model", default="databricks-claude-sonnet-4", help="serving endpoint name")
        w.add_argument("--token-stdin", action="store_true", help="read the token from stdin instead")
        w.set_defaults(func=func)

    rot = sub.add_parser(
        "rotate", parents=[common, brokered, timed, root], help="keep the CCR config on a fresh token until SIGTERM"
    )
    rot.add_argument("--command", default=None, help='hook that restarts CCR, split like a shell does ("ccr restart")')
    rot.add_argument("--port", type=int, default=None, help="port to wait for after the command (default: PORT)")
    rot.add_argument("--restart-timeout", type=float, default=30.0, help="seconds for the command, then the port")
    rot.set_defaults(func=_cmd_rotate)

    gw = sub.add_parser("gateway", parents=[common], help="serve the loopback credential gateway until SIGTERM")
    gw.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: any free port)")
    gw.add_argument("--kind", choices=["auto", "oauth", "pat"], default="auto", help="token kind (default auto)")
    gw.add_argument("--cache", type=Path, default=None, help="broker cache file (default under ~/.cache)")
    gwsub = gw.add_subparsers(dest="gateway_command")
    gk = gwsub.add_parser("key", parents=[common], help="print the gateway key")
    gk.add_argument("--cache", type=Path, default=None, help="broker cache file (default under ~/.cache)")
    gw.set_defaults(func=_cmd_gateway)

    from devbox_native import _doctor

    d = sub.add_parser("doctor", parents=[common, root], help="check credentials, token, file modes and CCR")
    d.add_argument("--cache", type=Path, default=None, help="broker cache file (default under ~/.cache)")
    d.add_argument("--offline", action="store_true", help="skip the call that asks the workspace")
    d.add_argument(
        "--timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help=f"budget of the workspace call, retries included (default {_doctor.DOCTOR_TIMEOUT:g} s)",
    )
    d.set_defaults(func=_cmd_doctor)
    return p


def _lifetime_option(text: str) -> int:
    """An argparse type: a token lifetime, a whole number of seconds more than 0 (checked even when
    ``LIFETIME_ENV`` wins, so a mistyped option is never silently ignored)."""
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of seconds, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {value}")
    return value


def _seconds(text: str) -> float:
    """An argparse type: a number of seconds, more than 0 and at most a day."""
    import argparse

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not 0 < value <= 86400:
        raise argparse.ArgumentTypeError(f"must be more than 0 and at most 86400 seconds, got {text}")
    return value


def main(*argv: str) -> int:
    """Run the CLI with ``argv`` (default: ``sys.argv[1:]``) and return the exit code."""
    args_list = list(argv) if argv else sys.argv[1:]
    return guarded(lambda: _main(args_list))


def _main(args_list: list[str]) -> int:
    if args_list == ["token", "get"]:
        return token_get()
    args = _parser().parse_args(args_list)
    if getattr(args, "comment_default", None) and args.comment is None:
        args.comment = args.comment_default
    from devbox_native.errors import DevboxError

    try:
        code: int = args.func(args)
    except BrokenPipeError:
        raise
    except (DevboxError, ValueError) as exc:
        if getattr(args, "json", False):
            _print_json({"error": type(exc).__name__, "message": str(exc)})
        print(f"devbox-native: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    return code


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
