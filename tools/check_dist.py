"""Check what `make wheel` built: a portable wheel that installs and runs, and an sdist that builds.

- `auditwheel show` must name `manylinux_2_17_x86_64` (glibc 2.17: older app base images install it);
- the wheel installs into a fresh venv, imports, and its `devbox-native --version` runs;
- the sdist builds a wheel with pip (`pip wheel --no-deps`), so `pip install` from source works too.

Run by `make wheel` (and so by `make test`); prints one line per check and exits 1 on the first failure.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

PLATFORM = "manylinux_2_17_x86_64"


def _run(*cmd: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800, check=False)
    if done.returncode != 0:
        sys.stderr.write(done.stdout + done.stderr)
        raise SystemExit(f"check_dist: {' '.join(cmd)} failed with exit code {done.returncode}")
    return done.stdout


def main(dist: Path) -> int:
    (wheel,) = dist.glob("*.whl")
    (sdist,) = dist.glob("*.tar.gz")
    shown = _run(sys.executable, "-m", "auditwheel", "show", str(wheel))
    if f'"{PLATFORM}"' not in shown:
        raise SystemExit(f"check_dist: {wheel.name} is not {PLATFORM}:\n{shown}")
    print(f"ok: {wheel.name} is {PLATFORM}")
    with tempfile.TemporaryDirectory(prefix="devbox-dist-") as tmp:
        venv = Path(tmp) / "venv"
        _run(sys.executable, "-m", "venv", str(venv))
        _run(str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-deps", str(wheel))
        version = _run(str(venv / "bin" / "devbox-native"), "--version").strip()
        print(f"ok: the wheel installs and runs ({version})")
        # Reuse the project's compiled dependencies; the sdist's own crate is still built from its files.
        env = {**os.environ, "CARGO_TARGET_DIR": str(Path("target").resolve() / "sdist")}
        _run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", tmp, str(sdist), env=env)
        (built,) = Path(tmp).glob("*.whl")
        print(f"ok: {sdist.name} builds ({built.name})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(Path(sys.argv[1] if len(sys.argv) > 1 else "dist")))
