"""Which Claude Code Router (CCR) is installed, and whether it is one that ignores config.json edits.

CCR 3.x imports config.json into its own store on first start and ignores later edits (CCR-CONFIG.md), so a
rotated token never reaches it. The version is found, in this order:

1. the ``package.json`` of the package that a hook command's program or script (its first two arguments), or
   ``ccr`` on ``PATH``, lives in (``npm install -g`` makes ``ccr`` a symlink into the package);
2. ``ccr -v`` (a wrapper script that is not inside the package);
3. the ``package.json`` in npm's global folder (``<prefix>/lib/node_modules``, the prefix from
   ``NPM_CONFIG_PREFIX``, ``~/.npmrc`` or where ``npm`` itself is installed): a global install not on ``PATH``;
4. ``npm ls -g``, only when no global folder was found (running npm takes about a second).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

#: The npm package.
PACKAGE = "@musistudio/claude-code-router"
#: How far up from a program's folder a package.json is looked for.
_MAX_DEPTH = 6


def _version_in(manifest: Path, package: str = PACKAGE) -> str | None:
    """The version a package.json of ``package`` (CCR's by default) states, or None (missing, unreadable, another
    package)."""
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    version = data.get("version") if isinstance(data, dict) and data.get("name") == package else None
    return version if isinstance(version, str) else None


def _package_json_of(path: str, package: str = PACKAGE) -> tuple[str, Path] | None:
    """The version and package.json of the ``package`` (CCR's by default) that ``path`` (followed through links)
    is inside."""
    real = Path(os.path.realpath(path))
    for folder in [real.parent, *real.parent.parents][:_MAX_DEPTH]:
        version = _version_in(folder / "package.json", package)
        if version is not None:
            return version, folder / "package.json"
    return None


def _npmrc_prefix() -> str | None:
    """``prefix=`` from ``~/.npmrc``, or None."""
    try:
        lines = (Path.home() / ".npmrc").read_text(encoding="utf-8").splitlines()
    except (OSError, ValueError):
        return None
    for line in lines:
        key, sep, value = line.partition("=")
        if sep and key.strip() == "prefix" and value.strip():
            return os.path.expanduser(value.strip())
    return None


def _global_folders(npm: str) -> list[Path]:
    """npm's global package folders that exist: the configured prefix's, else the one npm is installed in."""
    prefix = os.environ.get("NPM_CONFIG_PREFIX") or os.environ.get("npm_config_prefix") or _npmrc_prefix()
    if prefix:
        candidates = [Path(prefix) / "lib" / "node_modules"]
    else:
        real = Path(os.path.realpath(npm))  # <prefix>/lib/node_modules/npm/bin/npm-cli.js
        candidates = [p for p in real.parents if p.name == "node_modules"][:1]
        candidates.append(Path(npm).parent.parent / "lib" / "node_modules")
    return [p for p in candidates if p.is_dir()]


def _programs(command: Sequence[str | os.PathLike[str]] | None) -> list[str]:
    """Existing files named by the command's first two arguments, then ``ccr`` on PATH."""
    found: list[str] = []
    for arg in list(command or [])[:2]:
        name = os.fspath(arg)
        path = name if os.sep in name else shutil.which(name)
        if path and os.path.isfile(path):
            found.append(path)
    ccr = shutil.which("ccr")
    if ccr:
        found.append(ccr)
    return found


def _output(argv: list[str], timeout: float) -> str | None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout + done.stderr


def detect(command: Sequence[str | os.PathLike[str]] | None = None, timeout: float = 5.0) -> dict[str, str | None]:
    """The installed CCR: ``{"version", "source", "path"}``.

    ``source`` is ``"package.json"``, ``"ccr -v"`` or ``"npm ls -g"`` (None when nothing was found); ``path`` is the
    package.json or the ``ccr`` program (None when ``ccr`` is not on PATH).
    """
    for program in _programs(command):
        found = _package_json_of(program)
        if found is not None:
            return {"version": found[0], "source": "package.json", "path": str(found[1])}
    ccr = shutil.which("ccr")
    if ccr is not None:
        said = re.search(r"\d+\.\d+\.\d+", _output([ccr, "-v"], timeout) or "")
        if said:
            return {"version": said.group(0), "source": "ccr -v", "path": ccr}
    npm = shutil.which("npm")
    folders = _global_folders(npm) if npm is not None else []
    for folder in folders:
        manifest = folder / PACKAGE / "package.json"
        version = _version_in(manifest)
        if version is not None:
            return {"version": version, "source": "package.json", "path": str(manifest)}
    if npm is not None and not folders:
        try:
            listing = json.loads(_output([npm, "ls", "-g", "--json", "--depth=0", PACKAGE], timeout) or "{}")
        except ValueError:
            listing = {}
        version = listing.get("dependencies", {}).get(PACKAGE, {}).get("version") if isinstance(listing, dict) else None
        if isinstance(version, str):
            return {"version": version, "source": "npm ls -g", "path": ccr}
    return {"version": None, "source": None, "path": ccr}


def warning(version: str | None) -> str | None:
    """The warning for a CCR that ignores config.json edits (any version after 1.x), else None."""
    major = version.split(".")[0] if version else ""
    if not major.isdigit() or int(major) < 2:
        return None
    return (
        f"CCR {version} is not 1.x: CCR 3.x imports config.json into its own store on first start and ignores "
        "later edits (and has no `ccr restart`), so rotated tokens never reach it. Use gateway mode instead "
        "(`devbox-native gateway`, then `devbox-native setup --gateway auto`): CCR then holds the gateway key, which "
        f"never needs rotating. Or pin CCR 1.x: npm install -g {PACKAGE}@1.0.73"
    )


def major(version: str | None) -> int | None:
    """The major version number, or None."""
    head = version.split(".")[0] if version else ""
    return int(head) if head.isdigit() else None


def is_v3(version: str | None) -> bool:
    """Whether ``version`` is a CCR that keeps its config in SQLite (3.x and later)."""
    m = major(version)
    return m is not None and m >= 3


def gateway_dir(cache: Path | None = None) -> Path:
    """The credential gateway's folder: the broker cache's (``$XDG_CACHE_HOME/devbox-native``, else
    ``~/.cache/devbox-native``), or the folder of ``cache`` when given."""
    if cache is not None:
        return Path(cache).parent
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "devbox-native"


def running_gateway(cache: Path | None = None) -> dict[str, object] | None:
    """The running gateway of this cache (``pid``, ``port``, ``url``), or None: `devbox_native.running_gateway`,
    which reads ``gateway.json`` only when it is trusted and checks the process and its port."""
    from devbox_native import running_gateway as running

    found = running(cache)
    if found is None:
        return None
    pid, port, url, _started = found
    return {"pid": pid, "port": port, "url": url}


def gateway_key(path: Path) -> str:
    """The gateway key from its file (OSError names the path; ValueError when it is empty)."""
    key = Path(path).read_text(encoding="utf-8").strip()
    if not key:
        raise ValueError(f"gateway key file {path} is empty")
    return key
