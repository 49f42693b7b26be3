"""The main job, end to end, on the built-in workspace emulator (what `make demo` runs).

Starts the emulator on 127.0.0.1, then runs `devbox-native setup` against it in a separate process, exactly
as the DevBox app would at start-up with its service principal's environment, and prints where the Claude
Code Router config went (the token is redacted).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

from devbox_native.testing import FakeWorkspace


def main() -> int:
    root = os.environ.get("DEVBOX_DEMO_ROOT") or tempfile.mkdtemp(prefix="devbox-demo-")
    with FakeWorkspace() as ws:
        env = {**os.environ, **ws.env()}
        print(f"workspace emulator at {ws.host}")
        done = subprocess.run(
            [sys.executable, "-m", "devbox_native", "setup", "--root", root, "--databrickscfg"],
            env=env,
            check=False,
            timeout=120,
        )
        if done.returncode == 0:
            live = ws.live_tokens()
            print(f"the emulator holds {len(live)} live token(s) for {ws.client_id}")
        return done.returncode


if __name__ == "__main__":
    raise SystemExit(main())
