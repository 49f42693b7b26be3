"""The ``devbox-native`` command (also ``python -m devbox_native``).

Commands:
    setup      mint a token and write the Claude Code Router config, as the DevBox app does at start-up
    emulator   serve the local workspace emulator and print the environment that points at it
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path
from typing import Any

#: Exit codes.
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2


def _redact(token: str) -> str:
    return f"{token[:4]}…({len(token)} chars)" if len(token) > 8 else "***"


def _cmd_setup(args: argparse.Namespace) -> int:
    import devbox_native

    token = devbox_native.generate_spn_token(args.lifetime) if args.lifetime else devbox_native.generate_spn_token()
    config_path = devbox_native.write_ccr_config(token, args.root, model=args.model)
    plugin_path = config_path.parent / "plugins" / "databricks-claude-transformers.js"
    if args.databrickscfg:
        devbox_native.setup_databricks_cfg(root_dir=args.root)
    result: dict[str, Any] = {
        "config": str(config_path),
        "plugin": str(plugin_path),
        "token": _redact(token),
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"wrote {config_path} (token {result['token']})")
        print(f"wrote {plugin_path}")
    return EXIT_OK


def _cmd_emulator(args: argparse.Namespace) -> int:
    from devbox_native.testing import FakeWorkspace

    ws = FakeWorkspace(port=args.port)
    ws.start()
    try:
        env = ws.env()
        if args.json:
            print(json.dumps(env), flush=True)
        else:
            for k, v in env.items():
                print(f"export {k}={v}", flush=True)
        stop = False

        def _on_signal(signum: int, frame: object) -> None:
            nonlocal stop
            stop = True

        signal.signal(signal.SIGTERM, _on_signal)
        signal.signal(signal.SIGINT, _on_signal)
        while not stop:
            signal.pause()
    finally:
        ws.stop()
    return EXIT_OK


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="devbox-native", description="Databricks credentials for coding assistants.")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("setup", help="mint a token and write the Claude Code Router config")
    s.add_argument("--root", type=Path, default=None, help="folder that holds .claude-code-router (default: HOME)")
    s.add_argument("--model", default="databricks-claude-sonnet-4", help="serving endpoint name")
    s.add_argument("--lifetime", type=int, default=None, help="token lifetime in seconds (default 3600)")
    s.add_argument("--databrickscfg", action="store_true", help="also write <root>/.databrickscfg")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.set_defaults(func=_cmd_setup)

    e = sub.add_parser("emulator", help="serve the local workspace emulator")
    e.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: any free port)")
    e.add_argument("--json", action="store_true", help="print the environment as one JSON object")
    e.set_defaults(func=_cmd_emulator)
    return p


def main(*argv: str) -> int:
    """Run the CLI with ``argv`` (default: ``sys.argv[1:]``) and return the exit code."""
    args = _parser().parse_args(list(argv) if argv else sys.argv[1:])
    from devbox_native.errors import DevboxError

    try:
        code: int = args.func(args)
    except (DevboxError, ValueError, OSError, TimeoutError) as exc:
        if getattr(args, "json", False):
            print(json.dumps({"error": type(exc).__name__, "message": str(exc)}))
        print(f"devbox-native: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    return code


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
