"""`devbox-native emulator`: serve a `FakeWorkspace` in the foreground until SIGTERM or SIGINT."""

from __future__ import annotations

import json
import signal
import sys

from devbox_native.testing._workspace import FakeWorkspace

_STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT})


def serve(port: int = 0, *, json_output: bool = False) -> int:
    """Start the emulator on `port` (0: a free one), print the environment that points at it (``export`` lines, or
    one JSON object), and serve until SIGTERM or SIGINT; returns the exit code (0).

    The stop signals are blocked before anything starts and then taken with `signal.sigwait`: one sent the moment
    the environment is printed stops the emulator cleanly, with no window in which it kills the process or is lost
    (a handler plus `signal.pause` misses a signal that lands between its check and the pause, and waits forever).
    """
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)  # the server threads inherit the mask
    try:
        with FakeWorkspace(port=port) as ws:
            env = ws.env()
            if json_output:
                print(json.dumps(env), flush=True)
            else:
                for k, v in env.items():
                    print(f"export {k}={v}", flush=True)
            print(f"workspace emulator at {ws.host}; Ctrl-C to stop", file=sys.stderr, flush=True)
            signal.sigwait(_STOP_SIGNALS)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    return 0
