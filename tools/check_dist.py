"""Check what `make wheel` built: a portable wheel that installs and runs, and an sdist that builds.

- `auditwheel show` must name `manylinux_2_17_x86_64` (glibc 2.17: older app base images install it);
- the wheel installs into a fresh venv, imports, and its `devbox-native` is our launcher (`wheel-data/scripts`,
  its `#!python` line rewritten by pip to that venv's interpreter), not a console-script wrapper: `--version`
  runs, a usage error exits 2, `token get` against the emulator exits 0 and prints a token the emulator accepts,
  a second `token get` is a cache hit (no request) that imports neither `devbox_native.cli` nor `re`, and
  `token get` without credentials exits 1 with the error on stderr and nothing on stdout;
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
LAUNCHER = Path(__file__).resolve().parent.parent / "wheel-data" / "scripts" / "devbox-native"
#: Modules the `token get` fast path must not load (the CLI module, and what console-script wrappers import).
HEAVY = ("re", "argparse", "json", "typing", "devbox_native.cli", "devbox_native.errors")


def _run(*cmd: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800, check=False)
    if done.returncode != 0:
        sys.stderr.write(done.stdout + done.stderr)
        raise SystemExit(f"check_dist: {' '.join(cmd)} failed with exit code {done.returncode}")
    return done.stdout


def _exit_code(cmd: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120, check=False)
    return done.returncode, done.stdout, done.stderr


def check_command(venv: Path, home: Path) -> None:
    """The installed `devbox-native` is our launcher, and it works: exit codes and the `token get` fast path."""
    from devbox_native.testing import FakeWorkspace  # the emulator of the project's own venv (stdlib only)

    exe = venv / "bin" / "devbox-native"
    lines = exe.read_text().splitlines()
    expected = LAUNCHER.read_text().splitlines()
    if lines[0] != f"#!{venv / 'bin' / 'python'}" or lines[1:] != expected[1:]:
        raise SystemExit(f"check_dist: {exe} is not the launcher of {LAUNCHER}:\n" + "\n".join(lines[:8]))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABRICKS_", "PYTHON", "VIRTUAL_ENV"))}
    env |= {"HOME": str(home), "XDG_CACHE_HOME": str(home / "cache")}
    code, out, _ = _exit_code([str(exe), "--version"], env)
    if code != 0 or not out.startswith("devbox-native "):
        raise SystemExit(f"check_dist: `devbox-native --version` exited {code}: {out!r}")
    code, _, _ = _exit_code([str(exe), "token", "nope"], env)
    if code != 2:
        raise SystemExit(f"check_dist: a usage error exited {code}, not 2")
    code, out, err = _exit_code([str(exe), "token", "get"], {**env, "DATABRICKS_HOST": "http://127.0.0.1:9"})
    if code != 1 or out or not err.startswith("devbox-native: ConfigError: "):
        raise SystemExit(f"check_dist: `token get` without credentials exited {code}: {out!r} {err!r}")
    with FakeWorkspace() as ws:
        env |= ws.env()
        code, first, err = _exit_code([str(exe), "token", "get"], env)
        if code != 0 or not ws.accepts(first.strip()):
            raise SystemExit(f"check_dist: `token get` exited {code} or printed no valid token: {err}")
        ws.clear_requests()
        python = str(venv / "bin" / "python")
        code, again, err = _exit_code([python, "-X", "importtime", str(exe), "token", "get"], env)
        loaded = {line.rsplit("|", 1)[-1].strip() for line in err.splitlines() if line.startswith("import time:")}
        if code != 0 or again != first or ws.requests:
            raise SystemExit(
                f"check_dist: a second `token get` was no cache hit (exit {code}, {len(ws.requests)} requests)"
            )
        if "devbox_native._entry" not in loaded or loaded.intersection(HEAVY):
            raise SystemExit(f"check_dist: `token get` took the slow path: {sorted(loaded.intersection(HEAVY))}")


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
        check_command(venv, Path(tmp) / "home")
        print("ok: its devbox-native is the launcher: exit codes 0/1/2, `token get` mints, then hits the cache lightly")
        # Reuse the project's compiled dependencies; the sdist's own crate is still built from its files.
        env = {**os.environ, "CARGO_TARGET_DIR": str(Path("target").resolve() / "sdist")}
        _run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", tmp, str(sdist), env=env)
        (built,) = Path(tmp).glob("*.whl")
        print(f"ok: {sdist.name} builds ({built.name})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(Path(sys.argv[1] if len(sys.argv) > 1 else "dist")))
