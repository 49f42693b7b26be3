"""``devbox-native doctor``: the checks behind it, each one line of the report (and one object of ``--json``).

Every check is ``{"check": name, "status": "ok" | "warn" | "problem", "detail": text, ...}``; a ``problem`` makes
the exit code 3. No check prints or returns a secret.
"""

from __future__ import annotations

import sys

from devbox_native._entry import EXIT_OK
from devbox_native.cli import EXIT_PROBLEMS, _print_json

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from typing import Any

    from devbox_native import TokenBroker

#: The budget of doctor's one workspace call unless --timeout says otherwise: an answer within seconds.
DOCTOR_TIMEOUT = 5.0
#: How long doctor waits for the credential gateway's /health (it may mint a token first).
GATEWAY_HEALTH_TIMEOUT = 5.0
#: Where CCR listens unless its config says otherwise.
CCR_DEFAULT_HOST = "127.0.0.1"
CCR_DEFAULT_PORT = 3456


def _check(checks: list[dict[str, Any]], name: str, status: str, detail: str, **extra: Any) -> None:
    checks.append({"check": name, "status": status, "detail": detail, **extra})


def _mode_check(checks: list[dict[str, Any]], name: str, path: Any, want: int) -> None:
    import os
    import stat

    try:
        st = os.stat(path)
    except FileNotFoundError:
        _check(checks, name, "ok", f"{path}: absent", path=str(path), mode=None)
        return
    except OSError as exc:
        _check(checks, name, "problem", f"{path}: {exc}", path=str(path), mode=None)
        return
    mode = stat.S_IMODE(st.st_mode)
    loose = mode & ~want & 0o777
    status = "problem" if loose else "ok"
    detail = f"{path}: mode {mode:04o}" + (f" (looser than {want:04o})" if loose else "")
    _check(checks, name, status, detail, path=str(path), mode=f"{mode:04o}")


def _trust_check(checks: list[dict[str, Any]], name: str, path: Any, *, folder: bool = False) -> bool:
    """Flag every reason ``path`` is not trusted (another user's, writable by others, a foreign symlink, not a
    regular file). Returns whether it is safe to read (nothing but our own too-loose modes)."""
    from devbox_native import _native

    found = _native._check_path(path, folder=folder)
    if not found:
        _check(
            checks,
            name,
            "ok",
            f"{path}: trusted (yours or root's, not writable by others)",
            path=str(path),
            findings=[],
        )
        return True
    parts = [
        f"{p} is {problem}" + (" (the next write tightens it)" if fix else " (refused)") for p, problem, fix in found
    ]
    findings = [{"path": str(p), "problem": problem, "fixable": fix} for p, problem, fix in found]
    _check(checks, name, "problem", "; ".join(parts), path=str(path), findings=findings)
    return all(fix for _, _, fix in found)


def _ccr_version(checks: list[dict[str, Any]]) -> str | None:
    from devbox_native import _ccr

    found = _ccr.detect()
    version, source, path = found["version"], found["source"], found["path"]
    if version is None:
        detail = "ccr is not on PATH" if path is None else f"{path}: no version found (package.json, `ccr -v`)"
        _check(checks, "ccr", "warn", detail, version=None, source=None)
        return None
    note = _ccr.warning(version)
    if note is not None:
        _check(checks, "ccr", "warn", note, version=version, source=source)
    else:
        _check(
            checks, "ccr", "ok", f"CCR {version} ({source}: {path or 'not on PATH'})", version=version, source=source
        )
    return version


def _port_check(checks: list[dict[str, Any]], host: str, port: int) -> None:
    import socket

    try:
        socket.create_connection((host, port), timeout=0.5).close()
    except OSError as exc:
        _check(checks, "ccr_port", "warn", f"{host}:{port} does not answer ({exc.strerror or exc})", port=port)
    else:
        _check(checks, "ccr_port", "ok", f"{host}:{port} answers", port=port)


def _agent_token_check(checks: list[dict[str, Any]], broker: TokenBroker) -> None:
    """What `token get` hands out: kind, source strategy and remaining life (never the token)."""
    import time

    what = f"{broker.kind} tokens from {broker.strategy}"
    extra = {"kind": broker.kind, "strategy": broker.strategy, "expires_at": broker.expires_at}
    if broker.expires_at is None:
        _check(checks, "agent_token", "ok", f"{what}: none cached yet (the next `token get` gets one)", **extra)
        return
    left = broker.expires_at - time.time()
    state = f"expires in {left:.0f} s" if left > 0 else f"expired {-left:.0f} s ago"
    _check(checks, "agent_token", "ok", f"{what}: {state} (renewed {broker.refresh_margin} s before)", **extra)


def _gateway_check(checks: list[dict[str, Any]], cache: Any) -> None:
    import devbox_native

    running = devbox_native.running_gateway(cache)
    if running is None:
        _check(checks, "gateway", "ok", "not running (`devbox-native gateway` starts it)", url=None, pid=None)
    else:
        pid, _port, url, _started = running
        _check(checks, "gateway", "ok", f"running at {url} (pid {pid})", url=url, pid=pid)


def _ccr3_gateway_check(checks: list[dict[str, Any]], cache: Any) -> str | None:
    """The credential gateway from gateway.json, and whether its /health answers; returns its url."""
    from devbox_native import _ccr

    found = _ccr.running_gateway(cache)
    if found is None:
        where = _ccr.gateway_dir(cache) / "gateway.json"
        _check(checks, "ccr3_gateway", "warn", f"no running credential gateway ({where}; `devbox-native gateway`)")
        return None
    url = str(found["url"]).rstrip("/")
    status, detail = _gateway_health(url)
    _check(checks, "ccr3_gateway", status, detail, url=url)
    return url


def _gateway_health(url: str) -> tuple[str, str]:
    """Whether the gateway at `url` answers ``GET /health`` (within `GATEWAY_HEALTH_TIMEOUT`): ``("ok", ...)``,
    ``("warn", ...)`` for an answer other than ``status ok``, ``("problem", ...)`` for none."""
    import json
    import urllib.request

    try:
        with urllib.request.urlopen(f"{url}/health", timeout=GATEWAY_HEALTH_TIMEOUT) as resp:  # noqa: S310 - loopback
            health = json.load(resp)
    except (OSError, ValueError) as exc:
        return "problem", f"{url}/health does not answer ({exc})"
    status = health.get("status") if isinstance(health, dict) else None
    return "ok" if status == "ok" else "warn", f"{url} answers (status {status})"


def _ccr3_checks(checks: list[dict[str, Any]], root: Any, cache: Any) -> None:
    """CCR 3.x: its store, its management RPC, our provider in it and the gateway that provider points at."""
    import devbox_native

    store = root / ".claude-code-router" / "config.sqlite"
    gateway = _ccr3_gateway_check(checks, cache)
    if not store.exists():
        _check(checks, "ccr3_store", "warn", f"{store}: missing (CCR 3.x imports config.json on its first start)")
        return
    _check(checks, "ccr3_store", "ok", f"{store}: present")
    try:
        found = devbox_native.get_ccr3_config(root)
    except (devbox_native.DevboxError, ValueError, OSError) as exc:
        _check(checks, "ccr3_rpc", "warn", str(exc))
        return
    _check(checks, "ccr3_rpc", "ok", f"{found['rpc_url']} answers (pid {found['pid']})", rpc_url=found["rpc_url"])
    providers = found["config"].get("Providers") if isinstance(found["config"], dict) else None
    ours = [p for p in providers or [] if isinstance(p, dict) and p.get("name") == "databricks"]
    if not ours:
        _check(
            checks, "ccr3_provider", "problem", "no provider named databricks (`devbox-native setup --gateway auto`)"
        )
        return
    caps = ours[0].get("capabilities") or [{}]
    url = str(caps[0].get("baseUrl") or ours[0].get("api_base_url") or "")
    if gateway is not None and url.startswith(gateway + "/"):
        _check(checks, "ccr3_provider", "ok", f"databricks provider points at the gateway ({url})", url=url)
    else:
        _check(
            checks,
            "ccr3_provider",
            "warn",
            f"databricks provider points at {url}, not at the credential gateway "
            "(`devbox-native setup --gateway auto`)",
            url=url,
        )


def _ask_workspace(
    timeout: float, token: str | None = None, host: str | None = None
) -> tuple[str, str, dict[str, Any]]:
    """One cheap authenticated call (the token list), with the credentials the broker mints with or with
    `token`, within `timeout` seconds: ``("ok" | "refused" | "error" | "unreachable", detail, extra)``. The
    detail never holds a token (API messages are masked)."""
    import devbox_native

    extra: dict[str, Any] = {"status_code": None, "error_code": None}
    try:
        if token is None:
            cfg = devbox_native.Config(retry_timeout_seconds=timeout)
        else:
            cfg = devbox_native.Config(retry_timeout_seconds=timeout, host=host, token=token, auth_type="pat")
        devbox_native.list_tokens(config=cfg)
    except devbox_native.ApiError as exc:
        extra = {"status_code": exc.status_code, "error_code": exc.error_code}
        verdict = "refused" if exc.status_code in (401, 403) else "error"
        code = f"{exc.status_code} {exc.error_code}" if exc.error_code else f"{exc.status_code}"
        return verdict, f"{code}: {exc.message}", extra
    except devbox_native.AuthError as exc:
        return "refused", str(exc), extra
    except (devbox_native.DevboxError, OSError) as exc:
        cause = exc.__cause__ if isinstance(exc, devbox_native.DevboxTimeoutError) and exc.__cause__ else exc
        return "unreachable", str(cause), extra
    extra["status_code"] = 200
    return "ok", str(cfg.host), extra


def _workspace_check(checks: list[dict[str, Any]], host: str | None, timeout: float) -> None:
    """Whether the workspace accepts the credentials: ok, or a problem (refused 401/403, unreachable)."""
    verdict, detail, extra = _ask_workspace(timeout)
    if verdict == "ok":
        _check(checks, "workspace", "ok", f"{host} accepted the credentials", **extra)
    elif verdict == "refused":
        _check(checks, "workspace", "problem", f"{host} refused the credentials ({detail})", **extra)
    elif verdict == "error":
        _check(checks, "workspace", "warn", f"{host} answered {detail}", **extra)
    else:
        _check(checks, "workspace", "problem", f"{host} is unreachable: {detail}", **extra)


def _other_token_check(
    checks: list[dict[str, Any]], path: Any, token: str | None, host: str | None, timeout: float | None
) -> None:
    """config.json holds a token that is not the broker's (e.g. the app's `sdk-` token `setup` minted): fine
    while the workspace accepts it (asked unless `timeout` is None, i.e. --offline)."""
    if timeout is None:
        detail = f"{path}: holds a different token than the broker cache (not asked the workspace: --offline)"
        _check(checks, "ccr_config", "warn", detail)
        return
    if token is None:
        detail = f"{path}: a databricks provider has no api_key (`devbox-native ccr update` sets it)"
        _check(checks, "ccr_config", "problem", detail)
        return
    verdict, detail, extra = _ask_workspace(timeout, token, host)
    if verdict == "ok":
        detail = f"{path}: databricks provider present; its token (not the broker's, e.g. setup's) is accepted"
        _check(checks, "ccr_config", "ok", detail, **extra)
    elif verdict == "refused":
        detail = f"{path}: holds a token the workspace refuses ({detail}; `devbox-native ccr update`)"
        _check(checks, "ccr_config", "problem", detail, **extra)
    else:
        detail = f"{path}: holds a different token than the broker cache, not checked ({detail})"
        _check(checks, "ccr_config", "warn", detail, **extra)


def _ccr_config_check(
    checks: list[dict[str, Any]], path: Any, broker: TokenBroker | None, host: str | None, timeout: float | None
) -> tuple[str, int]:
    """``config.json`` through the reader rotation uses (`_native._ccr_view`), so that both say the same of it:
    missing, not a config, no ``databricks`` provider, the broker's token or another one (asked the workspace
    unless `timeout` is None). Returns where CCR listens."""
    from devbox_native import _native

    try:
        view = _native._ccr_view(path, broker, key=timeout is not None)
    except OSError as exc:
        _check(checks, "ccr_config", "problem", f"not read ({exc}; see ccr_config_trust)")
        return CCR_DEFAULT_HOST, CCR_DEFAULT_PORT
    if view["state"] == "missing":
        _check(checks, "ccr_config", "warn", f"{path}: not written yet (`devbox-native ccr write`)")
    elif view["state"] == "invalid":
        _check(checks, "ccr_config", "problem", f"{path}: {view['reason']}")
    elif not view["providers"]:
        _check(checks, "ccr_config", "problem", f"{path}: no provider named databricks")
    elif view["holds"] is False:
        _other_token_check(checks, path, view.get("api_key"), host, timeout)
    else:
        _check(checks, "ccr_config", "ok", f"{path}: databricks provider present")
    return str(view["host"]), int(view["port"])


def run(args: argparse.Namespace) -> int:
    """`devbox-native doctor`: every check, printed as a table (or one JSON object); the exit code."""
    import time
    from pathlib import Path

    import devbox_native

    checks: list[dict[str, Any]] = []
    root = Path(args.root) if args.root else Path.home()
    timeout = args.timeout if args.timeout is not None else DOCTOR_TIMEOUT

    # Credentials.
    broker: TokenBroker | None = None
    helper_broker: TokenBroker | None = None  # the one `token get` uses (the default cache)
    host: str | None = None
    try:
        cfg = devbox_native.Config()
        host = cfg.host
        _check(checks, "credentials", "ok", f"{cfg.auth_type} for {cfg.host}", auth_type=cfg.auth_type, host=cfg.host)
        broker = devbox_native.TokenBroker(cache_path=args.cache, config=cfg, kind="pat")
        _agent_token_check(checks, devbox_native.TokenBroker(cache_path=args.cache, config=cfg))
        helper_broker = devbox_native.TokenBroker(config=cfg)
    except (devbox_native.DevboxError, ValueError) as exc:
        _check(checks, "credentials", "problem", str(exc), auth_type=None, host=None)
    if broker is not None and not args.offline:
        _workspace_check(checks, host, timeout)
    _gateway_check(checks, args.cache)

    # The broker's cache: expiry and pending revocations of this identity.
    cache_path = Path(args.cache) if args.cache else None
    if broker is not None:
        cache_path = broker.cache_path
        expires_at = broker.expires_at
        if expires_at is None:
            _check(checks, "token", "ok", "no cached token yet (the next `token get` mints one)", expires_at=None)
        else:
            left = expires_at - time.time()
            state = f"expires in {left:.0f} s" if left > 0 else f"expired {-left:.0f} s ago"
            detail = f"token {broker.token_id}: {state} (refreshed {broker.refresh_margin} s before expiry)"
            _check(checks, "token", "ok", detail, token_id=broker.token_id, expires_at=expires_at)
        pending = broker.pending_revocations
        failing = [p for p in pending if p["attempts"] > 0]
        if failing:
            last = failing[-1]["last_error"]
            _check(checks, "revocations", "warn", f"{len(failing)} revocation(s) failing: {last}", pending=pending)
        else:
            _check(checks, "revocations", "ok", f"{len(pending)} pending", pending=pending)
    if cache_path is not None:
        _mode_check(checks, "cache_mode", cache_path, 0o600)
        _mode_check(checks, "cache_dir_mode", cache_path.parent, 0o700)
        _trust_check(checks, "cache_trust", cache_path)
        _trust_check(checks, "cache_lock_trust", cache_path.with_name(cache_path.name + ".lock"))

    # Files that hold secrets, and whether anyone else controls them (or a folder above them).
    ccr_config = root / ".claude-code-router" / "config.json"
    _mode_check(checks, "ccr_config_mode", ccr_config, 0o600)
    _mode_check(checks, "databrickscfg_mode", root / ".databrickscfg", 0o600)
    _trust_check(checks, "ccr_config_trust", ccr_config)
    _trust_check(checks, "ccr_plugin_trust", ccr_config.parent / "plugins" / "databricks-claude-transformers.js")
    _trust_check(checks, "databrickscfg_trust", root / ".databrickscfg")

    # The CCR config itself, read as rotation reads it (never when someone else controls it: a FIFO, their file).
    ccr_host, ccr_port = _ccr_config_check(checks, ccr_config, broker, host, None if args.offline else timeout)

    # CCR itself.
    version = _ccr_version(checks)
    _port_check(checks, ccr_host, ccr_port)
    from devbox_native import _ccr

    if _ccr.is_v3(version):
        _ccr3_checks(checks, root, args.cache)
    from devbox_native import _doctor_agents

    _doctor_agents.agent_checks(checks, args.root and Path(args.root), host, helper_broker, args.cache, args.offline)

    problems = [c for c in checks if c["status"] == "problem"]
    if args.json:
        _print_json({"ok": not problems, "checks": checks})
    else:
        for c in checks:
            print(f"{c['status']:<8} {c['check']:<19} {c['detail']}")
        print(f"{len(problems)} problem(s)" if problems else "no problems found", file=sys.stderr)
    return EXIT_PROBLEMS if problems else EXIT_OK
