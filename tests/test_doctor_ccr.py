"""`doctor` reads CCR's config.json with the reader rotation uses (`_native._ccr_view`, Rust's `CcrView`), so
the two cannot disagree: for each config that once split them (a port as a string, a boolean, out of range; no
`databricks` provider; not JSON; a FIFO; a file someone else planted) doctor says what a real rotation on that
file does: the port it waits on, or why it refuses the file."""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from devbox_native import TokenBroker, _native, start_rotation
from devbox_native.cli import main
from devbox_native.testing import FakeWorkspace


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _provider(key: str = "dapi-old") -> dict[str, str]:
    return {"name": "databricks", "api_base_url": "https://h/serving-endpoints/m/invocations", "api_key": key}


def _doctor(root: Path, cache: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, dict[str, Any]]:
    capsys.readouterr()
    main("doctor", "--json", "--offline", "--root", str(root), "--cache", str(cache))
    return {c["check"]: c for c in json.loads(capsys.readouterr().out)["checks"]}


def _rotation_answer(root: Path, cache: Path) -> tuple[str | None, str]:
    """One real rotation attempt on `root` (a hook command, then the wait on CCR's port, 0.5 s): the stage that
    failed (None: it succeeded) and the error's text."""
    failures: list[dict[str, Any]] = []
    rot = start_rotation(
        root,
        command=["/bin/true"],
        broker=TokenBroker(cache_path=cache, kind="pat"),
        restart_timeout=0.5,
        retry_delay=60,
        on_error=failures.append,
    )
    try:
        deadline = time.monotonic() + 30
        while not failures and rot.rotations == 0:
            assert time.monotonic() < deadline, "the rotation neither failed nor rotated within 30 s"
            time.sleep(0.05)
    finally:
        rot.stop()
    if not failures:
        return None, ""
    return str(failures[0]["stage"]), str(failures[0]["error"])


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, Path]]:
    """A root with an empty `.claude-code-router` and a broker cache; a PATH without ccr or npm."""
    (tmp_path / "bin").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    root = tmp_path / "home"
    (root / ".claude-code-router").mkdir(parents=True, mode=0o700)
    yield root, tmp_path / "cache" / "token.json"


def _write(root: Path, config: object) -> Path:
    path = root / ".claude-code-router" / "config.json"
    path.write_text(config if isinstance(config, str) else json.dumps(config))
    path.chmod(0o600)
    return path


@pytest.mark.parametrize(
    ("port", "want"),
    [("string", None), (True, 3456), (70000, 3456), (-1, 3456), ("12ab", 3456), (None, 3456)],
    ids=["digits-as-string", "true", "70000", "negative", "not-digits", "absent"],
)
def test_doctor_and_rotation_wait_on_the_same_port(
    fake_workspace_env: FakeWorkspace,
    home: tuple[Path, Path],
    capsys: pytest.CaptureFixture[str],
    port: object,
    want: int | None,
) -> None:
    root, cache = home
    if port == "string":
        want = _free_port()
        port = str(want)  # "PORT": "4000" as CCR's own docs write it
    config: dict[str, Any] = {"Providers": [_provider()]}
    if port is not None:
        config["PORT"] = port
    _write(root, config)
    checks = _doctor(root, cache, capsys)
    assert checks["ccr_config"]["status"] in ("ok", "warn"), checks["ccr_config"]
    assert checks["ccr_port"]["port"] == want, checks["ccr_port"]
    assert _native._ccr_view(root / ".claude-code-router" / "config.json")["port"] == want
    stage, error = _rotation_answer(root, cache)
    if stage is None:  # something else listens there (3456 is CCR's default): doctor saw it answer too
        assert checks["ccr_port"]["status"] == "ok"
    else:
        assert stage == "port" and f"127.0.0.1:{want} did not answer" in error, (stage, error)
        assert checks["ccr_port"]["status"] == "warn"


def test_a_string_host_is_where_both_look(
    fake_workspace_env: FakeWorkspace, home: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    root, cache = home
    port = _free_port()
    _write(root, {"HOST": "127.0.0.2", "PORT": port, "Providers": [_provider()]})
    checks = _doctor(root, cache, capsys)
    assert f"127.0.0.2:{port} does not answer" in checks["ccr_port"]["detail"]
    stage, error = _rotation_answer(root, cache)
    assert stage == "port" and f"127.0.0.2:{port} did not answer" in error


@pytest.mark.parametrize(
    ("config", "doctor_says", "rotation_says"),
    [
        ('{"Providers": [{"name": "databricks", "api_key": "s3cret"', "not valid JSON", "not valid JSON"),
        ("[1, 2]", "the top level is not a JSON object", "the top level is not a JSON object"),
        ({"Providers": [{"name": "openrouter", "api_key": "k"}]}, "no provider named databricks", "no provider"),
        ({"Providers": {"name": "databricks"}}, "no provider named databricks", '"Providers" is not a list'),
    ],
    ids=["not-json", "not-an-object", "no-databricks-provider", "providers-not-a-list"],
)
def test_a_config_rotation_refuses_is_a_problem_for_doctor(
    fake_workspace_env: FakeWorkspace,
    home: tuple[Path, Path],
    capsys: pytest.CaptureFixture[str],
    config: object,
    doctor_says: str,
    rotation_says: str,
) -> None:
    root, cache = home
    path = _write(root, config)
    before = path.read_bytes()
    checks = _doctor(root, cache, capsys)
    check = checks["ccr_config"]
    assert check["status"] == "problem" and doctor_says in check["detail"], check
    assert "s3cret" not in json.dumps(checks)
    stage, error = _rotation_answer(root, cache)
    assert stage == "write" and rotation_says in error and str(path) in error, (stage, error)
    assert path.read_bytes() == before


def _fifo(path: Path) -> None:
    os.mkfifo(path, 0o600)


def _planted(path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("planting another user's file needs root")
    path.write_text(json.dumps({"PORT": 1, "Providers": [_provider()]}))
    os.chown(path, 4321, 4321)


@pytest.mark.parametrize("make", [_fifo, _planted], ids=["fifo", "another-users-file"])
def test_a_file_rotation_will_not_read_is_not_read_by_doctor_either(
    fake_workspace_env: FakeWorkspace,
    home: tuple[Path, Path],
    capsys: pytest.CaptureFixture[str],
    make: Callable[[Path], None],
) -> None:
    root, cache = home
    path = root / ".claude-code-router" / "config.json"
    make(path)
    started = time.monotonic()
    checks = _doctor(root, cache, capsys)
    assert time.monotonic() - started < 30, "a FIFO is never opened for a blocking read"
    check = checks["ccr_config"]
    assert check["status"] == "problem" and str(path) in check["detail"], check
    assert checks["ccr_config_trust"]["status"] == "problem"
    assert checks["ccr_port"]["port"] == 3456, "nothing learnt from a file not read"
    with pytest.raises(OSError) as raised:
        _native._ccr_view(path)
    assert raised.value.filename == str(path)
    stage, error = _rotation_answer(root, cache)
    assert stage is not None and str(path) in error, (stage, error)
    # The same reason, word for word, in both.
    assert str(raised.value) in check["detail"] and str(raised.value) in error


def test_the_broker_token_in_every_databricks_provider_is_what_both_call_current(
    fake_workspace_env: FakeWorkspace, home: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """Two `databricks` providers, only the first on the broker's token: rotation installs the token again
    (reason `sync`), and doctor says the config holds another token (once: the first provider held it)."""
    root, cache = home
    broker = TokenBroker(cache_path=cache, kind="pat")
    token = broker.get()
    path = _write(root, {"PORT": _free_port(), "Providers": [_provider(token), _provider("dapi-other")]})
    view = _native._ccr_view(path, broker, key=True)
    assert view["holds"] is False and view["providers"] == 2 and view["api_key"] == "dapi-other"
    assert "api_key" not in _native._ccr_view(path, broker), "the key only when asked for"
    assert _native._ccr_view(path)["holds"] is None
    checks = _doctor(root, cache, capsys)
    assert checks["ccr_config"]["status"] == "warn" and "different token" in checks["ccr_config"]["detail"]
    assert token not in json.dumps(checks)
    events: list[dict[str, Any]] = []
    with start_rotation(root, events.append, broker=broker, restart_timeout=0.5) as rot:
        deadline = time.monotonic() + 30
        while rot.rotations == 0:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    assert events[0]["reason"] == "sync"
    assert _native._ccr_view(path, broker)["holds"] is True
    checks = _doctor(root, cache, capsys)
    assert checks["ccr_config"]["status"] == "ok" and checks["ccr_config"]["detail"].endswith("provider present")
