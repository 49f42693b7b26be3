"""Threads, asyncio (including cancellation) and fork: the runtime and HTTP client behave in each."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import devbox_native
import pytest
from conftest import wait_child
from devbox_native import Config
from devbox_native.testing import FakeWorkspace

CREATE = "/api/2.0/token/create"


def test_64_threads_are_correct_and_do_not_serialize(fake_workspace: FakeWorkspace) -> None:
    config = Config(host=fake_workspace.host, token=fake_workspace.pat)
    # Every create waits 0.3 s in the server: serialized, 64 calls would take 19 s.
    fake_workspace.inject(CREATE, action="pass", delay=0.3, times=None)
    barrier_start = time.monotonic()
    with ThreadPoolExecutor(64) as pool:
        created = list(pool.map(lambda i: devbox_native.create_token(60, f"t{i}", config=config), range(64)))
    elapsed = time.monotonic() - barrier_start
    assert sorted(c.comment or "" for c in created) == sorted(f"t{i}" for i in range(64))
    assert len({c.token_value for c in created}) == 64
    assert all(fake_workspace.is_live(c.token_value) for c in created)
    assert elapsed < 8, f"64 concurrent calls took {elapsed:.1f} s: they were serialized"


def test_async_calls_run_concurrently_on_one_loop(fake_workspace: FakeWorkspace) -> None:
    config = Config(host=fake_workspace.host, token=fake_workspace.pat)
    fake_workspace.inject(CREATE, action="pass", delay=0.3, times=None)

    async def main() -> list[devbox_native.CreatedToken]:
        return await asyncio.gather(*(devbox_native.create_token_async(60, f"a{i}", config=config) for i in range(20)))

    t0 = time.monotonic()
    created = asyncio.run(main())
    assert len({c.token_id for c in created}) == 20
    assert time.monotonic() - t0 < 5


def test_cancelling_an_async_call_aborts_the_request(fake_workspace: FakeWorkspace) -> None:
    config = Config(host=fake_workspace.host, token=fake_workspace.pat)
    fake_workspace.inject(CREATE, action="hang")

    async def main() -> float:
        task = asyncio.create_task(devbox_native.create_token_async(60, config=config))
        await asyncio.sleep(0.3)
        t0 = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # The request itself was aborted (the Rust future dropped): the emulator saw the client close the connection.
        deadline = time.monotonic() + 10
        while not fake_workspace.abandoned_requests and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert [r.path for r in fake_workspace.abandoned_requests] == [CREATE]
        # The loop and the library still work after a cancellation.
        after = await devbox_native.create_token_async(60, config=config)
        assert fake_workspace.is_live(after.token_value)
        return time.monotonic() - t0

    assert asyncio.run(asyncio.wait_for(main(), timeout=30)) < 5


def test_wait_for_timeout_cancels_cleanly(fake_workspace: FakeWorkspace) -> None:
    config = Config(host=fake_workspace.host, token=fake_workspace.pat)
    fake_workspace.inject(CREATE, action="hang")

    async def main() -> None:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(devbox_native.create_token_async(60, config=config), timeout=0.3)

    asyncio.run(main())
    deadline = time.monotonic() + 10
    while not fake_workspace.abandoned_requests and time.monotonic() < deadline:
        time.sleep(0.02)
    assert [r.path for r in fake_workspace.abandoned_requests] == [CREATE]


@pytest.mark.skipif(sys.platform != "linux", reason="fork semantics are tested on Linux")
def test_os_fork_child_builds_its_own_runtime(fake_workspace: FakeWorkspace) -> None:
    config = Config(host=fake_workspace.host, token=fake_workspace.pat)
    devbox_native.create_token(60, "parent-before", config=config)  # the parent's runtime and pool exist
    pid = os.fork()
    if pid == 0:  # child: must neither hang nor panic
        code = 1
        try:
            devbox_native.create_token(60, "child", config=config)
            code = 0
        finally:
            os._exit(code)
    assert wait_child(pid, timeout=30) == 0
    devbox_native.create_token(60, "parent-after", config=config)
    comments = {t["comment"] for t in fake_workspace.live_tokens()}
    assert {"parent-before", "child", "parent-after"} <= comments


def _mint_in_worker(args: tuple[str, str, int]) -> str:
    host, pat, i = args
    return devbox_native.create_token(60, f"mp-{i}", config=Config(host=host, token=pat)).token_id


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Python 3.12+ warns about fork with threads
def test_multiprocessing_fork_pool(fake_workspace: FakeWorkspace) -> None:
    devbox_native.create_token(60, "warm-parent", config=Config(host=fake_workspace.host, token=fake_workspace.pat))
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(4) as pool:
        ids = pool.map(_mint_in_worker, [(fake_workspace.host, fake_workspace.pat, i) for i in range(8)], chunksize=1)
    assert len(set(ids)) == 8
    comments = {t["comment"] for t in fake_workspace.live_tokens()}
    assert {f"mp-{i}" for i in range(8)} <= comments
