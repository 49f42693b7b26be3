"""The README's quickstart, run exactly as it is written (in a scratch folder with an empty HOME)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
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


def _agents_block() -> str:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Agents") :]
    match = re.search(r"```python\n(.*?)```", section, flags=re.S)
    assert match is not None, "the Agents section has a python block"
    return match.group(1)


def test_the_agents_block_runs_as_written(tmp_path: Path) -> None:
    """The Agents section's Python block in a fresh interpreter with a temp HOME: the first two calls write Claude
    Code's and Codex's files (the second, `agents=None`, only for the CLIs on PATH: here a fake `codex`), the
    last takes out all we added."""
    home, bin_dir = tmp_path / "home", tmp_path / "bin"
    home.mkdir(mode=0o700)
    bin_dir.mkdir()
    (bin_dir / "codex").write_text("#!/bin/sh\necho 'codex-cli 0.171.0'\n")
    (bin_dir / "codex").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABRICKS_", "XDG_"))}
    env |= {"HOME": str(home), "PATH": f"{bin_dir}:/usr/bin:/bin", "DATABRICKS_HOST": "ws.example.com"}
    lines = _agents_block().strip().splitlines()
    *configure, remove = lines
    done = subprocess.run(
        [sys.executable, "-c", "\n".join(configure)], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    claude = json.loads((home / ".claude" / "settings.json").read_text())
    assert claude["env"]["ANTHROPIC_BASE_URL"] == "https://ws.example.com/serving-endpoints/anthropic"
    codex = tomllib.loads((home / ".codex" / "config.toml").read_text())
    assert codex["model"] == "databricks-gpt-5"
    assert codex["model_providers"]["databricks"]["base_url"] == "https://ws.example.com/ai-gateway/codex/v1"
    done = subprocess.run(
        [sys.executable, "-c", f"{lines[0]}\n{remove}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads((home / ".claude" / "settings.json").read_text()) == {}
    assert (home / ".codex" / "config.toml").read_text() == ""
