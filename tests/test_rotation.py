"""Token rotation against the emulator: what a rotation does and in which order, errors surfaced and retried
(mint, hook command, port, on_rotate), stop(), fork, the asyncio twin and argument checks. Timing assertions
use generous bounds only. The real CCR is in test_ccr_e2e.py, the `rotate` command in test_cli_rotate.py."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import devbox_native
import pytest
from ccr_harness import free_port
from conftest import age_cache, mode, run_py, wait_child
from devbox_native import Config, HookError, Rotation, TokenBroker, start_rotation, start_rotation_async
from devbox_native.errors import InternalError
from devbox_native.testing import FakeWorkspace

CREATE = "/api/2.0/token/create"


def wait_for(predicate: Callable[[], object], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout} s")
        time.sleep(0.02)


def _mints(ws: FakeWorkspace) -> int:
    return sum(1 for r in ws.requests if r.path == CREATE)


def _config(root: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((root / ".claude-code-router" / "config.json").read_text())
    return data


def _api_key(root: Path) -> str:
    return str(_config(root)["Providers"][0]["api_key"])


@pytest.fixture
def broker(fake_workspace_env: FakeWorkspace, tmp_path: Path) -> TokenBroker:
    """Without a grace period, so a token a rotation replaced is revoked right after the install."""
    return TokenBroker(cache_path=tmp_path / "cache" / "token.json", revoke_grace=0, kind="pat")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def rotations() -> Iterator[list[Rotation]]:
    """Rotations a test started; stopped even when it fails."""
    started: list[Rotation] = []
    yield started
    for r in started:
        r.stop()


def _start(rotations: list[Rotation], *args: Any, **kwargs: Any) -> Rotation:
    r = start_rotation(*args, **kwargs)
    rotations.append(r)
    return r


def test_first_rotation_writes_the_config_and_rotate_now_replaces_then_revokes(
    fake_workspace_env: FakeWorkspace, broker: TokenBroker, root: Path, rotations: list[Rotation]
) -> None:
    ws = fake_workspace_env
    events: list[dict[str, Any]] = []
    rot = _start(rotations, root, events.append, broker=broker)
    wait_for(lambda: rot.rotations == 1)
    (first,) = events
    token = _api_key(root)
    assert broker.is_current(token) and first["token_id"] == broker.token_id == ws.token_id_of(token)
    assert first["reason"] == "refresh" and first["replaced_token_id"] is None and first["rotation"] == 1
    assert first["config_path"] == rot.config_path == root / ".claude-code-router" / "config.json"
    assert "token" not in first and token not in repr(rot) and token not in repr(events)
    assert mode(rot.config_path) == 0o600
    assert rot.next_attempt_at is not None
    assert abs(rot.next_attempt_at - (first["expires_at"] - broker.refresh_margin)) < 5
    # A user's edit survives the rotation.
    cfg = _config(root)
    cfg["PORT"] = 4567
    rot.config_path.write_text(json.dumps(cfg, indent=2))

    second = rot.rotate_now(timeout=30)
    assert second["reason"] == "requested" and second["replaced_token_id"] == first["token_id"]
    assert second["rotation"] == 2 and rot.rotations == 2 and rot.last_rotation == second
    assert events == [first, second]
    new = _api_key(root)
    assert new != token and broker.is_current(new) and _config(root)["PORT"] == 4567
    assert first["token_id"] in ws.revoked_token_ids() and not ws.is_live(token) and ws.is_live(new)
    assert broker.pending_revocations == []
    assert rot.last_error is None and rot.failures == 0 and rot.last_error_stage is None


def test_events_carry_the_token_only_when_asked(
    fake_workspace_env: FakeWorkspace, broker: TokenBroker, root: Path, rotations: list[Rotation]
) -> None:
    rot = _start(rotations, root, broker=broker, include_token=True)
    event = rot.rotate_now(timeout=30)
    assert event["token"] == _api_key(root)


def test_a_config_holding_the_broker_token_is_left_alone_at_start(
    fake_workspace_env: FakeWorkspace, broker: TokenBroker, root: Path, rotations: list[Rotation]
) -> None:
    devbox_native.write_ccr_config(broker.get(), root)
    before = rot_config = (root / ".claude-code-router" / "config.json").read_bytes()
    rot = _start(rotations, root, broker=broker)
    wait_for(lambda: rot.next_attempt_at is not None)
    assert rot.rotations == 0 and _mints(fake_workspace_env) == 1
    assert rot_config == before == (root / ".claude-code-router" / "config.json").read_bytes()


def test_a_config_holding_another_token_is_synced_without_minting_or_revoking_it(
    fake_workspace_env: FakeWorkspace, broker: TokenBroker, root: Path, rotations: list[Rotation]
) -> None:
    ws = fake_workspace_env
    foreign = devbox_native.generate_spn_token()
    devbox_native.write_ccr_config(foreign, root)
    broker.get()
    events: list[dict[str, Any]] = []
    rot = _start(rotations, root, events.append, broker=broker)
    wait_for(lambda: rot.rotations == 1)
    assert events[0]["reason"] == "sync" and events[0]["replaced_token_id"] is None
    assert broker.is_current(_api_key(root)) and _mints(ws) == 2
    assert ws.is_live(foreign), "a token the broker did not mint is never revoked"


def test_a_token_inside_the_margin_is_rotated_at_once(
    fake_workspace_env: FakeWorkspace, broker: TokenBroker, root: Path, rotations: list[Rotation]
) -> None:
    old = broker.get()
    devbox_native.write_ccr_config(old, root)
    age_cache(broker.cache_path, seconds_left=300)  # margin 600
    events: list[dict[str, Any]] = []
    rot = _start(rotations, root, events.append, broker=broker)
    wait_for(lambda: rot.rotations == 1 and not fake_workspace_env.is_live(old))
    assert events[0]["reason"] == "refresh" and _api_key(root) != old


def test_short_lifetimes_rotate_again_and_again(
    fake_workspace_env: FakeWorkspace, root: Path, rotations: list[Rotation]
) -> None:
    events: list[dict[str, Any]] = []
    rot = _start(rotations, root, events.append, lifetime_seconds=3, refresh_margin=2)
    wait_for(lambda: rot.rotations >= 3)
    assert [e["rotation"] for e in events[:3]] == [1, 2, 3]
    assert events[1]["replaced_token_id"] == events[0]["token_id"]
    assert rot.broker.lifetime_seconds == 3 and rot.broker.refresh_margin == 2


@pytest.mark.parametrize("status", [500, 503])
def test_mint_errors_are_logged_surfaced_and_retried(
    fake_workspace_env: FakeWorkspace,
    tmp_path: Path,
    root: Path,
    rotations: list[Rotation],
    caplog: pytest.LogCaptureFixture,
    status: int,
) -> None:
    ws = fake_workspace_env
    # 503 is retried inside one call until its budget runs out; 500 is not retried there.
    broker = TokenBroker(cache_path=tmp_path / "c.json", config=Config(retry_timeout_seconds=1), kind="pat")
    ws.inject(CREATE, status=status, times=None)
    failures: list[dict[str, Any]] = []
    caplog.set_level(logging.WARNING, logger="devbox_native")
    rot = _start(rotations, root, broker=broker, on_error=failures.append, retry_delay=0.2, max_retry_delay=0.4)
    wait_for(lambda: len(failures) >= 3)
    assert [f["attempt"] for f in failures[:3]] == [1, 2, 3]
    assert {f["stage"] for f in failures} == {"mint"}
    error = failures[0]["error"]
    assert isinstance(error, InternalError if status == 500 else TimeoutError), repr(error)
    assert rot.last_error_stage == "mint" and rot.failures >= 3 and rot.rotations == 0
    assert isinstance(rot.last_error, type(error))
    assert rot.next_attempt_at is not None and rot.next_attempt_at <= time.time() + 5
    assert any("token rotation failed at step mint" in r.getMessage() for r in caplog.records)
    assert all(r.levelno == logging.WARNING for r in caplog.records if "rotation failed" in r.getMessage())
    ws.clear_faults()
    wait_for(lambda: rot.rotations == 1)
    assert rot.last_error is None and rot.failures == 0 and broker.is_current(_api_key(root))


def test_a_failing_command_is_retried_without_minting_again_and_never_shows_the_token(
    fake_workspace_env: FakeWorkspace, broker: TokenBroker, root: Path, tmp_path: Path, rotations: list[Rotation]
) -> None:
    flag = tmp_path / "ready"
    runs = tmp_path / "runs"
    # Prints config.json's api_key line (the token) and fails until the flag exists.
    script = f'echo run >> {runs}; grep api_key "$HOME/.claude-code-router/config.json" >&2; test -e {flag}'
    failures: list[dict[str, Any]] = []
    rot = _start(
        rotations, root, None, ["sh", "-c", script], broker=broker, port=0, on_error=failures.append, retry_delay=0.2
    )
    wait_for(lambda: len(failures) >= 2)
    error = failures[0]["error"]
    token = _api_key(root)
    assert isinstance(error, HookError) and failures[0]["stage"] == "command"
    assert "failed (exit status: 1)" in str(error) and '"api_key": "***"' in str(error)
    assert token not in str(error) and token not in repr(rot.last_error)
    flag.touch()
    wait_for(lambda: rot.rotations == 1)
    assert _mints(fake_workspace_env) == 1
    assert len(runs.read_text().splitlines()) >= 3
    assert rot.command == ["sh", "-c", script]


def test_a_port_that_never_answers_is_a_timeout_and_the_old_token_stays_live(
    fake_workspace_env: FakeWorkspace, broker: TokenBroker, root: Path, rotations: list[Rotation]
) -> None:
    old = broker.get()
    devbox_native.write_ccr_config(old, root)
    port = free_port()
    rot = _start(rotations, root, None, ["true"], broker=broker, port=port, restart_timeout=0.3, retry_delay=60)
    wait_for(lambda: rot.next_attempt_at is not None)
    with pytest.raises(TimeoutError, match=rf"port 127\.0\.0\.1:{port} did not answer within 0\.3 s"):
        rot.rotate_now(timeout=30)
    assert rot.last_error_stage == "port" and rot.rotations == 0
    assert fake_workspace_env.is_live(old), "not revoked while CCR may still use it"
    pending = broker.pending_revocations
    assert [p["token_id"] for p in pending] == [fake_workspace_env.token_id_of(old)]
    # Held: other users of the cache (another process's get(), a revocation round) leave it alone too.
    TokenBroker(cache_path=broker.cache_path, kind="pat").get()
    assert broker.revoke_pending() == [] and fake_workspace_env.is_live(old)


def test_rotate_now_gives_up_waiting_after_its_timeout(
    fake_workspace_env: FakeWorkspace, broker: TokenBroker, root: Path, rotations: list[Rotation]
) -> None:
    devbox_native.write_ccr_config(broker.get(), root)
    rot = _start(rotations, root, None, ["true"], broker=broker, port=free_port(), restart_timeout=60)
    with pytest.raises(TimeoutError, match=r"rotate_now: no answer within 0\.3 s"):
        rot.rotate_now(timeout=0.3)
    assert rot.running


def test_stop_waits_for_an_on_rotate_in_progress(
    fake_workspace_env: FakeWorkspace, broker: TokenBroker, root: Path, rotations: list[Rotation]
) -> None:
    inside, finished = threading.Event(), threading.Event()

    def on_rotate(event: dict[str, Any]) -> None:
        inside.set()
        time.sleep(0.5)
        finished.set()

    old = broker.get()
    devbox_native.write_ccr_config(old, root)
    rot = _start(rotations, root, on_rotate, broker=broker)
    answers: list[dict[str, Any]] = []
    rotating = threading.Thread(target=lambda: answers.append(rot.rotate_now()))
    rotating.start()
    assert inside.wait(30)
    rot.stop()
    rotating.join(10)
    assert finished.is_set() and rot.rotations == 1
    assert [a["rotation"] for a in answers] == [1], "rotate_now is answered by the token installed"
    assert not fake_workspace_env.is_live(old), "the revocation after on_rotate is not cut short"


def test_stop_lets_a_running_command_finish(
    fake_workspace_env: FakeWorkspace, broker: TokenBroker, root: Path, tmp_path: Path, rotations: list[Rotation]
) -> None:
    done = tmp_path / "done"
    started = tmp_path / "started"
    rot = _start(rotations, root, None, ["sh", "-c", f"touch {started}; sleep 1; touch {done}"], broker=broker, port=0)
    wait_for(started.exists)
    rot.stop()
    assert done.exists()


def test_the_port_comes_from_config_json(
    fake_workspace_env: FakeWorkspace, broker: TokenBroker, root: Path, rotations: list[Rotation]
) -> None:
    import socket

    devbox_native.write_ccr_config(broker.get(), root)
    listener = socket.create_server(("127.0.0.1", 0))
    cfg = _config(root)
    cfg["PORT"] = listener.getsockname()[1]
    (root / ".claude-code-router" / "config.json").write_text(json.dumps(cfg))
    try:
        rot = _start(rotations, root, None, ["true"], broker=broker, restart_timeout=5)
        assert rot.rotate_now(timeout=30)["rotation"] == 1
    finally:
        listener.close()


def test_a_failing_on_rotate_is_retried_alone_and_holds_the_revocation(
    fake_workspace_env: FakeWorkspace, broker: TokenBroker, root: Path, tmp_path: Path, rotations: list[Rotation]
) -> None:
    ws = fake_workspace_env
    old = broker.get()
    devbox_native.write_ccr_config(old, root)
    runs = tmp_path / "runs"
    calls: list[dict[str, Any]] = []

    def on_rotate(event: dict[str, Any]) -> None:
        calls.append(event)
        if len(calls) == 1:
            raise ValueError("not yet")

    rot = _start(
        rotations, root, on_rotate, ["sh", "-c", f"echo run >> {runs}"], broker=broker, port=0, retry_delay=0.2
    )
    with pytest.raises(HookError, match="on_rotate raised ValueError: not yet"):
        rot.rotate_now(timeout=30)
    assert rot.last_error_stage == "callback" and ws.is_live(old)
    wait_for(lambda: rot.rotations == 1, timeout=60)
    assert len(calls) == 2 and calls[0] == calls[1]
    assert runs.read_text() == "run\n", "CCR is not restarted again for the callback"
    wait_for(lambda: not ws.is_live(old))


def test_stop_is_prompt_idempotent_and_final(
    fake_workspace_env: FakeWorkspace, broker: TokenBroker, root: Path, rotations: list[Rotation]
) -> None:
    devbox_native.write_ccr_config(broker.get(), root)
    # Busy waiting for a port that never answers when stop() comes.
    rot = _start(rotations, root, None, ["true"], broker=broker, port=free_port(), restart_timeout=120)
    answers: list[object] = []

    def ask() -> None:
        try:
            answers.append(rot.rotate_now())
        except RuntimeError as exc:
            answers.append(exc)

    asking = threading.Thread(target=ask)
    asking.start()
    wait_for(lambda: _mints(fake_workspace_env) == 2)
    time.sleep(0.2)
    t0 = time.monotonic()
    rot.stop()
    assert time.monotonic() - t0 < 5
    asking.join(5)
    assert len(answers) == 1 and "stopped before rotating" in str(answers[0])
    rot.stop()
    assert not rot.running and "running=False" in repr(rot)
    with pytest.raises(RuntimeError, match="stopped"):
        rot.rotate_now()
    with start_rotation(root, broker=broker) as other:
        assert other.running
    assert not other.running


def test_stop_from_on_rotate_ends_the_rotation(
    fake_workspace_env: FakeWorkspace, broker: TokenBroker, root: Path, rotations: list[Rotation]
) -> None:
    holder: list[Rotation] = []
    rot = _start(rotations, root, lambda e: holder[0].stop(), broker=broker)
    holder.append(rot)
    wait_for(lambda: not rot.running)
    assert rot.rotations == 1


@pytest.mark.skipif(sys.platform != "linux", reason="fork semantics are tested on Linux")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Python 3.12+ warns about fork with threads
def test_a_forked_child_does_not_inherit_the_rotation(
    fake_workspace_env: FakeWorkspace, broker: TokenBroker, root: Path, rotations: list[Rotation]
) -> None:
    rot = _start(rotations, root, broker=broker)
    wait_for(lambda: rot.rotations == 1)
    pid = os.fork()
    if pid == 0:  # child: not running, stop() returns at once, rotate_now refuses; its own rotation works
        code = 1
        try:
            assert not rot.running and rot.rotations == 1
            t0 = time.monotonic()
            rot.stop()
            assert time.monotonic() - t0 < 1
            try:
                rot.rotate_now()
            except RuntimeError as exc:
                assert "parent process" in str(exc)
            else:
                raise AssertionError("rotate_now worked in the child")
            # One rotation per cache: the parent's still runs on this one, and its pid is named.
            try:
                start_rotation(root, broker=broker)
            except RuntimeError as exc:
                assert f"another rotation (pid {os.getppid()})" in str(exc)
            else:
                raise AssertionError("a second rotation started on the same cache")
            own = TokenBroker(kind="pat", cache_path=broker.cache_path.with_name("child.json"), revoke_grace=0)
            with start_rotation(root, broker=own) as mine:  # (its first turn mints too: an empty cache)
                assert mine.rotate_now(timeout=30)["reason"] == "requested"
            code = 0
        finally:
            os._exit(code)
    assert wait_child(pid, timeout=60) == 0
    assert rot.running and rot.rotate_now(timeout=30)["rotation"] == 2


@pytest.mark.asyncio
async def test_the_asyncio_twin_runs_coroutine_callbacks_on_the_loop(
    fake_workspace_env: FakeWorkspace, broker: TokenBroker, root: Path
) -> None:
    loop_thread = threading.get_ident()
    seen: list[tuple[int, int]] = []

    async def on_rotate(event: dict[str, Any]) -> None:
        await asyncio.sleep(0.01)
        seen.append((threading.get_ident(), event["rotation"]))

    async with await start_rotation_async(root, on_rotate, broker=broker) as rot:
        first = await rot.rotate_now_async(timeout=30)
        # The loop stays free while the rotation waits for the callback.
        ticks = 0
        while rot.rotations < 1 or ticks < 3:
            await asyncio.sleep(0.01)
            ticks += 1
        assert rot.running
    assert not rot.running
    assert first["rotation"] in (1, 2) and (loop_thread, first["rotation"]) in seen
    assert all(t == loop_thread for t, _ in seen)
    stopped = await start_rotation_async(root, broker=broker)
    await stopped.stop_async()
    assert not stopped.running


def test_a_coroutine_callback_needs_the_async_twin(
    fake_workspace_env: FakeWorkspace, broker: TokenBroker, root: Path, rotations: list[Rotation]
) -> None:
    async def on_rotate(event: dict[str, Any]) -> None:
        pass

    rot = _start(rotations, root, on_rotate, broker=broker, retry_delay=60)
    with pytest.raises(HookError, match="returned a coroutine: pass coroutine functions to start_rotation_async"):
        rot.rotate_now(timeout=30)


def test_bad_arguments_are_refused_before_starting(fake_workspace_env: FakeWorkspace, broker: TokenBroker) -> None:
    with pytest.raises(TypeError, match="command: expected a list"):
        start_rotation(command="ccr restart", broker=broker)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="command: must be a non-empty list"):
        start_rotation(command=[], broker=broker)
    with pytest.raises(TypeError, match="on_rotate: expected a callable"):
        start_rotation(on_rotate=42, broker=broker)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="port: must be 0 to 65535"):
        start_rotation(port=70000, broker=broker)
    with pytest.raises(ValueError, match="restart_timeout: must be a positive"):
        start_rotation(restart_timeout=0, broker=broker)
    with pytest.raises(ValueError, match="max_retry_delay: must be at least retry_delay"):
        start_rotation(retry_delay=10, max_retry_delay=1, broker=broker)
    with pytest.raises(ValueError, match="broker: pass lifetime_seconds"):
        start_rotation(broker=broker, lifetime_seconds=60)
    with pytest.raises(ValueError, match="refresh_margin: "):
        start_rotation(lifetime_seconds=60, refresh_margin=60)
    # Paths are fine in a command.
    with start_rotation(command=[Path("/bin/true")], broker=broker, port=0) as rot:
        assert rot.command == ["/bin/true"]


def test_a_dropped_rotation_keeps_running_and_the_interpreter_still_exits(
    fake_workspace_env: FakeWorkspace, root: Path
) -> None:
    script = """
import gc, sys, time
import devbox_native
events = []
devbox_native.start_rotation(sys.argv[1], events.append, ["true"], port=0)  # the handle is dropped
gc.collect()
deadline = time.monotonic() + 30
while not events and time.monotonic() < deadline:
    time.sleep(0.02)
print(len(events))
"""
    t0 = time.monotonic()
    done = run_py(script, str(root), timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "1", done.stderr
    assert time.monotonic() - t0 < 30


def test_one_rotation_per_cache_the_second_names_the_first_ones_pid(
    fake_workspace_env: FakeWorkspace, broker: TokenBroker, root: Path, tmp_path: Path, rotations: list[Rotation]
) -> None:
    first = _start(rotations, root, broker=broker)
    wait_for(lambda: first.rotations == 1)
    again = TokenBroker(kind="pat", cache_path=broker.cache_path)  # another handle on the same cache file
    with pytest.raises(RuntimeError, match=rf"another rotation \(pid {os.getpid()}\) is running on the broker cache"):
        start_rotation(tmp_path / "elsewhere", broker=again)
    script = "import sys, devbox_native; devbox_native.start_rotation(sys.argv[1], port=0)"
    done = run_py(script, str(tmp_path / "elsewhere"), timeout=60)
    assert done.returncode == 0, done.stderr  # another cache (the default one): no conflict
    first.stop()
    second = _start(rotations, root, broker=again)  # the lock went with the first rotation
    assert second.rotate_now(timeout=30)["rotation"] == 1


_KILLED_DURING_HOOK = """
import os, sys, time, devbox_native
root, cache, started = sys.argv[1:4]
broker = devbox_native.TokenBroker(kind="pat", cache_path=cache, revoke_grace=0)
devbox_native.start_rotation(root, None, ["sh", "-c", f"touch {started}; sleep 600"], broker=broker, port=0,
                             restart_timeout=600)
time.sleep(600)
"""


def test_a_rotation_killed_during_its_hook_is_resumed_by_the_next_one(
    fake_workspace_env: FakeWorkspace, broker: TokenBroker, root: Path, tmp_path: Path, rotations: list[Rotation]
) -> None:
    import signal
    import subprocess

    ws = fake_workspace_env
    old = broker.get()
    devbox_native.write_ccr_config(old, root)  # CCR runs the old token
    age_cache(broker.cache_path, seconds_left=300)  # inside the margin: the rotation mints at once
    started = tmp_path / "hook-started"
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED_DURING_HOOK, str(root), str(broker.cache_path), str(started)],
        start_new_session=True,
    )
    try:
        wait_for(started.exists)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the daemon and its `ccr restart`, mid-hook
        proc.wait(timeout=30)
    new = _api_key(root)
    assert new != old and broker.is_current(new), "config.json already holds the new token"
    assert ws.is_live(old), "CCR still runs the old token: it is held, not revoked"
    ran = tmp_path / "hook-ran"
    events: list[dict[str, Any]] = []
    rot = _start(rotations, root, events.append, ["sh", "-c", f"touch {ran}"], broker=broker, port=0)
    wait_for(lambda: rot.rotations == 1)
    (event,) = events
    assert ran.exists(), "the hook the killed rotation never finished was run"
    assert event["reason"] == "sync" and event["token_id"] == broker.token_id == ws.token_id_of(new)
    assert event["replaced_token_id"] == ws.token_id_of(old) and _mints(ws) == 2
    wait_for(lambda: not ws.is_live(old))
    assert ws.is_live(new) and broker.pending_revocations == []
    # Finished now: another rotation leaves it alone.
    rot.stop()
    ran.unlink()
    again = _start(rotations, root, None, ["sh", "-c", f"touch {ran}"], broker=broker, port=0)
    wait_for(lambda: again.next_attempt_at is not None)
    assert again.rotations == 0 and not ran.exists()


def test_a_rotated_token_stays_valid_for_the_grace_period(
    fake_workspace_env: FakeWorkspace, tmp_path: Path, root: Path, rotations: list[Rotation]
) -> None:
    ws = fake_workspace_env
    broker = TokenBroker(kind="pat", cache_path=tmp_path / "cache" / "token.json")  # default grace: 300 s
    rot = _start(rotations, root, broker=broker)
    wait_for(lambda: rot.rotations == 1)
    first = _api_key(root)
    agent = broker.get()  # another user of the cache got the same token
    assert agent == first
    rot.rotate_now(timeout=30)
    assert _api_key(root) != first and ws.is_live(agent), "not cut off right after the rotation"
    (pending,) = broker.pending_revocations
    assert not pending["held"] and pending["next_attempt_at"] == pytest.approx(pending["replaced_at"] + 300)
    assert rot.next_attempt_at is not None and rot.next_attempt_at <= pending["next_attempt_at"] + 1


def test_a_mint_cancelled_by_stop_is_recorded_and_revoked(
    fake_workspace_env: FakeWorkspace, broker: TokenBroker, root: Path
) -> None:
    ws = fake_workspace_env
    ws.inject(CREATE, action="pass", delay=1.0)
    rot = start_rotation(root, broker=broker)
    time.sleep(0.3)
    t0 = time.monotonic()
    rot.stop()
    assert time.monotonic() - t0 < 1, "stop() cancels the mint in flight"
    assert rot.rotations == 0
    wait_for(lambda: len(ws.revoked_token_ids()) == 1 and broker.pending_revocations == [])
    assert _mints(ws) == 1 and ws.live_tokens() == []
