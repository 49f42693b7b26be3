"""Trust boundaries for files: what another local user (uid 65534) can plant must never be used, followed or
written into; our own loose folders are tightened; a FIFO never freezes Python; paths stay bytes.

The second user is real: as root, a child process drops to uid 65534 with ``setpriv`` and plants files the way
an attacker would. Those tests are skipped (with the reason) when not run as root.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import devbox_native
import pytest
from conftest import mode
from devbox_native import TokenBroker
from devbox_native.cli import EXIT_PROBLEMS, main
from devbox_native.errors import ConfigError
from devbox_native.testing import FakeWorkspace

OTHER = 65534
CREATE = "/api/2.0/token/create"
TOKEN = "dapi-trust-test-token"

needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="needs root and setpriv to act as a second user (uid 65534)",
)


def as_other(code: str, *, wait: bool = True) -> subprocess.Popen[bytes]:
    """Run Python ``code`` as uid/gid 65534 (no site, no venv: only the standard library)."""
    argv = ["setpriv", f"--reuid={OTHER}", f"--regid={OTHER}", "--clear-groups", sys.executable, "-I", "-S"]
    proc = subprocess.Popen([*argv, "-c", code], cwd="/")
    if wait:
        assert proc.wait(timeout=60) == 0
    return proc


@pytest.fixture
def shared() -> Iterator[Path]:
    """A world-writable sticky folder (like /tmp) that the second user can reach."""
    d = Path(tempfile.mkdtemp(prefix="devbox-trust-", dir="/tmp"))
    d.chmod(0o1777)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def warned(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """The library's warnings (logger devbox_native), captured."""
    caplog.set_level(logging.WARNING, logger="devbox_native")
    devbox_native.refresh_logging()
    return caplog


def _plant_cache(ws: FakeWorkspace, broker: TokenBroker, cache: Path) -> str:
    """As the other user, write a cache entry for the victim's key that is inside the margin and claims the
    app's own `sdk-` token as minted by the broker: a victim that trusted it would revoke that token."""
    sdk = devbox_native.create_token(3600, "sdk-1700000000000000000")
    entry = {
        "host": broker.host,
        "identity": broker.identity,
        "token": "planted-token",
        "token_id": sdk.token_id,
        "created_at": time.time() - 3500,
        "expires_at": time.time() + 60,
        "minted": [{"token_id": sdk.token_id, "expires_at": time.time() + 3600}],
        "pending": [],
    }
    text = json.dumps({"version": 1, "entries": {f"{broker.host} {broker.identity}": entry}})
    as_other(
        f"import os\nos.makedirs({str(cache.parent)!r}, exist_ok=True)\n"
        f"open({str(cache)!r}, 'w').write({text!r})\nos.chmod({str(cache)!r}, 0o644)\n"
    )
    assert os.stat(cache).st_uid == OTHER
    return sdk.token_id


@needs_root
def test_a_cache_planted_in_our_loose_folder_is_not_used_and_its_ids_never_revoked(
    fake_workspace_env: FakeWorkspace, shared: Path, warned: pytest.LogCaptureFixture
) -> None:
    ws = fake_workspace_env
    folder = shared / "devbox-native"
    folder.mkdir()
    folder.chmod(0o777)  # our own folder, but anyone can add files to it
    cache = folder / "token.json"
    broker = TokenBroker(kind="pat", cache_path=cache)
    sdk_id = _plant_cache(ws, broker, cache)
    assert broker.expires_at is None  # the planted entry is not read
    token = broker.get()
    assert token != "planted-token" and ws.is_live(token)
    assert sdk_id not in ws.revoked_token_ids() and broker.pending_revocations == []
    assert "not using the token cache" in warned.text and "owned by uid 65534" in warned.text
    # Our folder was tightened, with a warning; the planted file was replaced by ours.
    assert mode(folder) == 0o700 and f"{folder} was writable by others (mode 0777); it is now 0700" in warned.text
    assert os.stat(cache).st_uid == 0 and mode(cache) == 0o600
    assert broker.get() == token


@needs_root
def test_a_cache_folder_of_another_user_is_refused_before_anything_is_minted(
    fake_workspace_env: FakeWorkspace, shared: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = fake_workspace_env
    monkeypatch.setenv("XDG_CACHE_HOME", str(shared))
    broker = TokenBroker(kind="pat")
    cache = shared / "devbox-native" / "token.json"
    assert broker.cache_path == cache
    sdk_id = _plant_cache(ws, broker, cache)  # the other user made the folder, too
    ws.clear_requests()
    with pytest.raises(OSError) as exc:
        broker.get()
    assert exc.value.filename == str(cache.parent)
    assert "owned by uid 65534, not by you (uid 0) or root" in str(exc.value)
    assert not [r for r in ws.requests if r.path == CREATE] and sdk_id not in ws.revoked_token_ids()
    assert "planted-token" not in str(exc.value)
    # doctor flags it (exit 3).
    capsys.readouterr()
    assert main("doctor", "--root", str(shared), "--json") == EXIT_PROBLEMS
    checks = {c["check"]: c for c in json.loads(capsys.readouterr().out)["checks"]}
    assert checks["cache_trust"]["status"] == "problem"
    assert checks["cache_trust"]["findings"][0]["path"] == str(cache.parent)
    assert "owned by uid 65534" in checks["cache_trust"]["detail"]


@needs_root
def test_a_lock_file_another_user_holds_does_not_block_get(
    fake_workspace_env: FakeWorkspace, shared: Path, warned: pytest.LogCaptureFixture
) -> None:
    folder = shared / "cache"
    folder.mkdir()
    folder.chmod(0o777)
    lock, ready = folder / "token.json.lock", shared / "ready"
    holder = as_other(
        "import fcntl, time\n"
        f"f = open({str(lock)!r}, 'w')\nfcntl.flock(f, fcntl.LOCK_EX)\nopen({str(ready)!r}, 'w').close()\n"
        "time.sleep(120)\n",
        wait=False,
    )
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert time.monotonic() < deadline and holder.poll() is None
            time.sleep(0.01)
        started = time.monotonic()
        token = TokenBroker(kind="pat", cache_path=folder / "token.json").get()
        assert time.monotonic() - started < 30, "well under the 360 s lock wait"
        assert fake_workspace_env.is_live(token)
        assert os.stat(lock).st_uid == 0 and "token.json.lock was owned by uid 65534" in warned.text
    finally:
        holder.kill()
        holder.wait()


@needs_root
@pytest.mark.parametrize("call", ["write_ccr_config", "update_ccr_token"])
def test_a_config_symlink_another_user_planted_is_refused(tmp_path: Path, shared: Path, call: str) -> None:
    victim = tmp_path / "victim.txt"  # a root-only file the attacker wants overwritten
    victim.write_text("keep")
    ccr = shared / "home" / ".claude-code-router"
    ccr.mkdir(parents=True)
    ccr.chmod(0o777)
    as_other(f"import os\nos.symlink({str(victim)!r}, {str(ccr / 'config.json')!r})\n")
    with pytest.raises(OSError) as exc:
        getattr(devbox_native, call)(TOKEN, shared / "home", host="h.example")
    assert exc.value.filename == str(ccr / "config.json")
    assert "a symlink owned by uid 65534" in str(exc.value) and TOKEN not in str(exc.value)
    assert victim.read_text() == "keep"
    # Nothing was changed or created: not even the mode of the folder.
    assert sorted(p.name for p in ccr.iterdir()) == ["config.json"] and mode(ccr) == 0o777


@needs_root
def test_a_planted_config_keeps_neither_its_endpoint_nor_gets_our_token(shared: Path) -> None:
    ccr = shared / "home" / ".claude-code-router"
    ccr.mkdir(parents=True)
    ccr.chmod(0o777)
    planted = {"Providers": [{"name": "databricks", "api_base_url": "https://evil.example/x", "api_key": ""}]}
    path = ccr / "config.json"
    as_other(f"open({str(path)!r}, 'w').write({json.dumps(planted)!r})\n")
    before = path.read_bytes()
    with pytest.raises(OSError) as exc:
        devbox_native.update_ccr_token(TOKEN, shared / "home", host="h.example")
    assert exc.value.filename == str(path) and "owned by uid 65534" in str(exc.value)
    assert path.read_bytes() == before


@needs_root
def test_folders_of_another_user_are_refused_and_doctor_flags_them(
    tmp_path: Path, shared: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # ~/.claude-code-router made by the other user.
    home = shared / "home"
    home.mkdir()
    home.chmod(0o1777)  # shared, like /tmp: they can add a folder, not take ours
    as_other(f"import os\nos.mkdir({str(home / '.claude-code-router')!r}, 0o755)\n")
    with pytest.raises(OSError) as exc:
        devbox_native.write_ccr_config(TOKEN, home, host="h.example")
    assert exc.value.filename == str(home / ".claude-code-router") and "owned by uid 65534" in str(exc.value)
    assert list((home / ".claude-code-router").iterdir()) == []
    capsys.readouterr()
    assert main("doctor", "--root", str(home), "--cache", str(tmp_path / "c" / "token.json"), "--json") == 3
    checks = {c["check"]: c for c in json.loads(capsys.readouterr().out)["checks"]}
    assert checks["ccr_config_trust"]["status"] == "problem" and checks["ccr_plugin_trust"]["status"] == "problem"
    assert checks["ccr_config"]["status"] == "problem" and "not read" in checks["ccr_config"]["detail"]
    # Our own folder as a symlink into theirs.
    theirs = shared / "theirs"
    as_other(f"import os\nos.mkdir({str(theirs)!r}, 0o777)\n")
    home2 = tmp_path / "home2"
    home2.mkdir()
    (home2 / ".claude-code-router").symlink_to(theirs)
    with pytest.raises(OSError) as exc:
        devbox_native.update_ccr_token(TOKEN, home2, host="h.example")
    assert exc.value.filename == str(theirs) and list(theirs.iterdir()) == []
    # A .databrickscfg in a folder of theirs.
    with pytest.raises(OSError) as exc:
        devbox_native.update_databricks_cfg({"host": "https://h.example"}, root_dir=theirs)
    assert exc.value.filename == str(theirs) and list(theirs.iterdir()) == []


def test_our_own_loose_folder_is_tightened_with_a_warning_and_doctor_flags_it_first(
    tmp_path: Path, warned: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    ccr = tmp_path / ".claude-code-router"
    ccr.mkdir()
    ccr.chmod(0o777)
    assert main("doctor", "--root", str(tmp_path), "--cache", str(tmp_path / "c" / "t.json"), "--json") == 3
    checks = {c["check"]: c for c in json.loads(capsys.readouterr().out)["checks"]}
    found = checks["ccr_config_trust"]["findings"]
    assert found == [{"path": str(ccr), "problem": "writable by others (mode 0777)", "fixable": True}]
    devbox_native.write_ccr_config(TOKEN, tmp_path, host="h.example")
    assert mode(ccr) == 0o700 and f"{ccr} was writable by others (mode 0777); it is now 0700" in warned.text
    # A shared (sticky) folder is never chmod-ed: refused as the folder of a secret.
    sticky = tmp_path / "sticky"
    sticky.mkdir()
    sticky.chmod(0o1777)
    with pytest.raises(OSError) as exc:
        devbox_native.update_databricks_cfg({"host": "https://h.example"}, root_dir=sticky)
    assert "writable by others (mode 1777)" in str(exc.value) and stat.S_IMODE(sticky.stat().st_mode) == 0o1777


def test_a_provider_url_off_the_workspace_host_is_warned_about(
    tmp_path: Path, warned: pytest.LogCaptureFixture
) -> None:
    path = devbox_native.write_ccr_config("old", tmp_path, host="https://good.example")
    devbox_native.update_ccr_token("t2", tmp_path, host="good.example")
    assert "not to the configured workspace" not in warned.text
    cfg = json.loads(path.read_text())
    cfg["Providers"][0]["api_base_url"] = "https://user:pw@evil.example:8443/serving-endpoints/m/invocations"
    path.write_text(json.dumps(cfg))
    devbox_native.update_ccr_token("t3", tmp_path, host="https://good.example/")
    assert (
        "the databricks provider sends the token to https://evil.example:8443, "
        "not to the configured workspace https://good.example"
    ) in warned.text
    assert "pw" not in warned.text.replace("pytest", "")


_FIFO = """
import os, sys, threading, time, devbox_native
cache = sys.argv[1]
os.mkfifo(cache, 0o600)
ticks = []
t = threading.Thread(target=lambda: [ticks.append(time.sleep(0.01)) for _ in range(50)], daemon=True)
t.start()
b = devbox_native.TokenBroker(cache_path=cache, config=devbox_native.Config(host="http://127.0.0.1:9", token="x"))
assert b.expires_at is None and b.token_id is None
try:
    b.get()
except OSError as e:
    print(e.filename, e.strerror)
t.join(10)
print(len(ticks))
"""


def test_a_fifo_as_the_cache_neither_blocks_nor_freezes_other_threads(tmp_path: Path) -> None:
    cache = tmp_path / "c" / "token.json"
    cache.parent.mkdir(mode=0o700)
    out = subprocess.run(
        [sys.executable, "-c", _FIFO, str(cache)], capture_output=True, text=True, timeout=60, check=True
    ).stdout.splitlines()
    assert out[0] == f"{cache} cannot use: it is not a regular file", out
    assert out[1] == "50"


_PATH = """
import os, devbox_native
b = devbox_native.TokenBroker(config=devbox_native.Config(host="h.example", token="x"))
print(os.fsencode(b.cache_path).hex())
"""


@pytest.mark.parametrize("var", ["HOME", "XDG_CACHE_HOME"])
def test_a_non_utf8_home_or_cache_folder_is_kept_as_bytes(tmp_path: Path, var: str) -> None:
    base = os.fsencode(tmp_path) + b"/h\xff\xfe"
    env: dict[bytes, bytes] = {k: v for k, v in os.environb.items() if k not in (b"HOME", b"XDG_CACHE_HOME")}
    env[var.encode()] = base
    if var == "XDG_CACHE_HOME":
        env[b"HOME"] = os.fsencode(tmp_path)
    out = subprocess.run([sys.executable, "-c", _PATH], env=env, capture_output=True, check=True, timeout=60).stdout
    tail = b"/.cache/devbox-native/token.json" if var == "HOME" else b"/devbox-native/token.json"
    assert bytes.fromhex(out.decode().strip()) == base + tail


_UNSYNCABLE = """
import os, sys, logging, devbox_native
logging.basicConfig(level=logging.WARNING)
devbox_native.refresh_logging()
d = sys.argv[1]
os.mkdir(d, 0o700)
os.chmod(d, 0o300)  # we may add and rename files, but not open the folder to sync it
print(devbox_native.update_databricks_cfg({"host": "https://h.example"}, root_dir=d))
"""


@needs_root
def test_a_failing_folder_sync_after_the_rename_is_logged_not_reported(shared: Path) -> None:
    # Root may open any folder: the folder sync can only be made to fail as another user.
    d = shared / "home"
    argv = ["setpriv", f"--reuid={OTHER}", f"--regid={OTHER}", "--clear-groups", sys.executable, "-c"]
    if subprocess.run([*argv, "import devbox_native"], capture_output=True, timeout=60, cwd="/").returncode:
        pytest.skip("uid 65534 cannot import devbox_native from this checkout (a private folder above it)")
    argv.append(_UNSYNCABLE)
    done = subprocess.run([*argv, str(d)], capture_output=True, text=True, timeout=60, cwd="/")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(d / ".databrickscfg")
    assert "was written, but syncing its folder failed" in done.stderr
    assert (d / ".databrickscfg").read_text() == "[DEFAULT]\nhost = https://h.example\n"


def _check_path(path: Path, **kw: Any) -> list[tuple[Path, str, bool]]:
    from devbox_native import _native

    return _native._check_path(path, **kw)


def test_check_path_reports_nothing_for_our_private_files(tmp_path: Path) -> None:
    path = devbox_native.write_ccr_config(TOKEN, tmp_path, host="h.example")
    assert _check_path(path) == [] and _check_path(path.parent, folder=True) == []
    path.chmod(0o644)
    assert _check_path(path) == [(path, "readable or writable by others (mode 0644)", True)]


def test_a_cache_of_a_newer_version_is_never_overwritten(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "c" / "token.json"
    cache.parent.mkdir(mode=0o700)
    newer = '{"version": 2, "entries": {}, "what": "an upgrade wrote this"}'
    cache.write_text(newer)
    cache.chmod(0o600)
    broker = TokenBroker(cache_path=cache, config=devbox_native.Config(host="http://127.0.0.1:9", token="x"))
    with pytest.raises(ConfigError, match=r"format 2, newer than this build's 1; it was left untouched"):
        broker.get()
    assert cache.read_text() == newer and sorted(p.name for p in cache.parent.iterdir()) == ["token.json"]
