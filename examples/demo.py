"""The main job, end to end, on the built-in workspace emulator (what `make demo` runs).

Starts the emulator on 127.0.0.1, then runs `devbox-native setup` against it in a separate process, exactly
as the DevBox app would at start-up with its service principal's environment, and says every file it wrote
(the token redacted). The files go to `DEVBOX_DEMO_ROOT` when it is set, and are kept there; otherwise to a
temporary folder that is removed at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile

from devbox_native.testing import FakeWorkspace


def main() -> int:
    kept = os.environ.get("DEVBOX_DEMO_ROOT")
    root = kept or tempfile.mkdtemp(prefix="devbox-demo-")
    try:
        return _run(root)
    finally:
        if kept:
            print(f"the files stay in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
            print(f"removed {root} (set DEVBOX_DEMO_ROOT=DIR to keep the files)")


def _run(root: str) -> int:
    with FakeWorkspace() as ws:
        env = {**os.environ, **ws.env()}
        print(f"workspace emulator at {ws.host}")
        done = subprocess.run(
            [sys.executable, "-m", "devbox_native", "setup", "--root", root, "--databrickscfg"],
            env=env,
            check=False,
            timeout=120,
        )
        if done.returncode != 0:
            return done.returncode
        live = ws.live_tokens()
        print(f"the emulator holds {len(live)} live token(s) for {ws.client_id}")
        with open(os.path.join(root, ".claude-code-router", "config.json"), encoding="utf-8") as f:
            config = json.load(f)
        for provider in config["Providers"]:
            provider["api_key"] = "<redacted>"
        print("config.json, token redacted:")
        print(json.dumps(config, indent=2))
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
