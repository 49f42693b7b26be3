"""The README's quickstart, run exactly as it is written (in a scratch folder with an empty HOME)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def _quickstart() -> str:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Quickstart") :]
    match = re.search(r"```sh\n(.*?)```", section, flags=re.S)
    assert match is not None, "the Quickstart has a sh block"
    return match.group(1)


def test_the_quickstart_runs_as_written(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABRICKS_", "XDG_", "CLAUDE_CODE_"))}
    env |= {"HOME": str(home), "PATH": f"{Path(sys.executable).parent}:{env.get('PATH', '/usr/bin:/bin')}"}
    # If a step fails, the emulator the block started in the background is stopped all the same.
    script = f"set -e\ntrap 'kill %1 2>/dev/null || true' EXIT\n{_quickstart()}"
    env["TMPDIR"] = str(tmp_path)  # the block's `mktemp -d` scratch HOME lands in pytest's folder
    done = subprocess.run(
        ["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (scratch,) = [p for p in tmp_path.iterdir() if p.name.startswith("tmp.")]
    assert f"wrote {scratch / '.claude-code-router' / 'config.json'} (token dapi…(36 chars))" in done.stdout
    assert list(home.iterdir()) == []  # the HOME the reader started with is left untouched
    assert "no problems found" in done.stderr  # doctor's verdict (exit 0)
    assert "oauth tokens from oauth-m2m" in done.stdout  # what `token get` handed out
    secret = next(line for line in (scratch / "emulator.env").read_text().splitlines() if "CLIENT_SECRET" in line)
    assert secret.split("=", 1)[1] not in done.stdout + done.stderr
