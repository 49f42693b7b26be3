"""The token broker against the emulator: caching, refresh inside the margin, one mint for 20 processes,
revocation of replaced tokens (with retries), never revoking a foreign token, and the cache file's privacy."""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import devbox_native
import pytest
from conftest import age_cache, mode, run_py
from devbox_native import Config, TokenBroker
from devbox_native.errors import ApiError, QuotaExceeded
from devbox_native.testing import FakeWorkspace

CREATE = "/api/2.0/token/create"
DELETE = "/api/2.0/token/delete"


def _hits(ws: FakeWorkspace, path: str) -> int:
    return sum(1 for r in ws.requests if r.path == path)


def _broker(tmp_path: Path, **kw: object) -> TokenBroker:
    """A broker on a private cache; without a grace period unless asked, so a replaced token is due at once."""
    kw.setdefault("revoke_grace", 0)
    kw.setdefault("kind", "pat")  # these tests are about minted PATs (the default kind is "auto")
    return TokenBroker(cache_path=tmp_path / "cache" / "token.json", **kw)  # type: ignore[arg-type]


def _edit_cache(path: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    """Change every entry of a broker cache file in place (the format is documented in README "Token broker")."""
    data = json.loads(path.read_text())
    for entry in data["entries"].values():
        edit(entry)
    path.write_text(json.dumps(data))
    path.chmod(0o600)


def test_get_mints_once_then_serves_the_cache(fake_workspace_env: FakeWorkspace, tmp_path: Path) -> None:
    ws = fake_workspace_env
    broker = _broker(tmp_path)
    t0 = time.time()
    token = broker.get()
    assert ws.is_live(token)
    assert broker.get() == token
    assert _broker(tmp_path).get() == token  # another broker on the same cache: no new mint
    assert _hits(ws, CREATE) == 1
    (body,) = [r.json() for r in ws.requests if r.path == CREATE]
    assert body["lifetime_seconds"] == 3600 and body["comment"].startswith("devbox-native-broker-")
    assert broker.token_id == ws.token_id_of(token)
    assert broker.expires_at is not None and t0 + 3590 < broker.expires_at < time.time() + 3601
    assert broker.created_at is not None and t0 - 1 < broker.created_at <= time.time()
    assert broker.pending_revocations == []
    assert broker.identity == f"oauth-m2m:{ws.client_id}" and broker.host == ws.host
    assert token not in repr(broker) and "TokenBroker(host=" in repr(broker)
    cache = tmp_path / "cache" / "token.json"
    assert mode(cache) == 0o600 and mode(cache.parent) == 0o700
    assert broker.is_current(token) and not broker.is_current("something-else")


def test_default_cache_path_is_under_xdg_cache_home(
    fake_workspace_env: FakeWorkspace, _private_cache_home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    broker = TokenBroker()
    assert broker.cache_path == _private_cache_home / "devbox-native" / "token.json"
    broker.get()
    assert mode(broker.cache_path) == 0o600 and mode(broker.cache_path.parent) == 0o700
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert TokenBroker().cache_path == tmp_path / ".cache" / "devbox-native" / "token.json"


def test_a_token_inside_the_margin_is_replaced_and_the_old_one_revoked(
    fake_workspace_env: FakeWorkspace, tmp_path: Path
) -> None:
    ws = fake_workspace_env
    broker = _broker(tmp_path, lifetime_seconds=900, refresh_margin=300)
    old = broker.get()
    old_id = broker.token_id
    age_cache(broker.cache_path, 301)  # still outside the margin
    assert broker.get() == old
    age_cache(broker.cache_path, 299)  # inside the margin
    new = broker.get()
    assert new != old and ws.is_live(new)
    assert not ws.is_live(old) and old_id in ws.revoked_token_ids()
    deletes = [r.json()["token_id"] for r in ws.requests if r.path == DELETE]
    assert deletes == [old_id]
    assert broker.pending_revocations == []
    assert [t["token_id"] for t in ws.live_tokens()] == [broker.token_id]


def test_a_replaced_token_stays_valid_for_the_grace_period_in_every_process(
    fake_workspace_env: FakeWorkspace, tmp_path: Path
) -> None:
    ws = fake_workspace_env
    broker = _broker(tmp_path, revoke_grace=None)  # the default
    assert broker.revoke_grace == 300
    old = broker.get()
    old_id = broker.token_id
    age_cache(broker.cache_path, 120)  # inside the margin: the next get() replaces it
    t0 = time.time()
    new = _broker(tmp_path, revoke_grace=None).get()
    assert new != old and ws.is_live(new)
    assert ws.is_live(old), "a CCR or agent that got the old token just before keeps working"
    (pending,) = broker.pending_revocations
    assert pending["token_id"] == old_id and not pending["held"]
    assert t0 - 1 < pending["replaced_at"] <= time.time()
    assert pending["next_attempt_at"] == pytest.approx(pending["replaced_at"] + 300)
    # Other processes' get(), force_refresh() of yet another token, revoke_pending(): not before the grace.
    script = "import sys, devbox_native; print(devbox_native.TokenBroker(kind='pat', cache_path=sys.argv[1]).get())"
    done = run_py(script, str(broker.cache_path))
    assert done.returncode == 0 and done.stdout.strip() == new, done.stderr
    assert broker.revoke_pending() == [] and ws.is_live(old)
    newer = broker.force_refresh()
    assert ws.is_live(old) and ws.is_live(new) and ws.is_live(newer)
    # Once the grace period is over, the next get() revokes both replaced tokens.
    _edit_cache(broker.cache_path, lambda e: [p.update(replaced_at=0, next_attempt_at=0) for p in e["pending"]])
    assert broker.get() == newer
    assert not ws.is_live(old) and not ws.is_live(new) and broker.pending_revocations == []
    with pytest.raises(ValueError, match=r"^revoke_grace: "):
        _broker(tmp_path, revoke_grace=-1)


def test_force_refresh_and_replacing(fake_workspace_env: FakeWorkspace, tmp_path: Path) -> None:
    ws = fake_workspace_env
    broker = _broker(tmp_path)
    first = broker.get()
    first_id = broker.token_id
    second = broker.force_refresh()
    assert second != first and not ws.is_live(first) and ws.is_live(second)
    # A caller that saw the first token asks to replace it: another caller already did, so no new mint.
    assert broker.force_refresh(replacing=first_id) == second
    assert _hits(ws, CREATE) == 2
    assert broker.force_refresh(replacing=broker.token_id) not in (first, second)
    assert _hits(ws, CREATE) == 3 and len(ws.live_tokens()) == 1


def test_a_failed_revocation_stays_pending_and_a_later_get_retries_it(
    fake_workspace_env: FakeWorkspace, tmp_path: Path
) -> None:
    ws = fake_workspace_env
    broker = _broker(tmp_path)
    old = broker.get()
    old_id = broker.token_id
    ws.inject(DELETE, status=503, times=None)
    t0 = time.monotonic()
    new = broker.force_refresh()  # the revoke fails: force_refresh still succeeds, within the short budget
    assert time.monotonic() - t0 < 6
    assert ws.is_live(old) and ws.is_live(new)
    (pending,) = broker.pending_revocations
    assert pending["token_id"] == old_id and pending["attempts"] == 1
    assert pending["last_error"] and "timed out" in pending["last_error"] and old not in pending["last_error"]
    # Still failing: get() answers anyway, and the retry is rescheduled with back-off.
    assert broker.get() == new
    (pending,) = broker.pending_revocations
    assert pending["attempts"] == 2 and pending["next_attempt_at"] > time.time() + 20
    # Not due yet: a get() makes no request at all.
    ws.clear_faults()
    ws.clear_requests()
    assert broker.get() == new and ws.requests == []
    assert ws.is_live(old)
    # Due again (here: forced), the revocation succeeds.
    assert broker.revoke_pending(force=True) == [old_id]
    assert not ws.is_live(old) and broker.pending_revocations == []


def test_the_next_get_after_a_failure_retries_at_once(fake_workspace_env: FakeWorkspace, tmp_path: Path) -> None:
    ws = fake_workspace_env
    broker = _broker(tmp_path)
    old = broker.get()
    ws.inject(DELETE, status=500)  # not retried by the transport: one failed attempt
    broker.force_refresh()
    assert ws.is_live(old) and broker.pending_revocations[0]["attempts"] == 1
    broker.get()  # the first retry is due at once
    assert not ws.is_live(old) and broker.pending_revocations == []


def test_a_pending_revocation_survives_the_process(fake_workspace_env: FakeWorkspace, tmp_path: Path) -> None:
    ws = fake_workspace_env
    cache = tmp_path / "cache" / "token.json"
    old = _broker(tmp_path).get()
    ws.inject(DELETE, status=500)
    _broker(tmp_path).force_refresh()
    assert ws.is_live(old)
    script = "import sys, devbox_native; print(devbox_native.TokenBroker(cache_path=sys.argv[1], kind='pat').get())"
    done = subprocess.run([sys.executable, "-c", script, str(cache)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert not ws.is_live(old)


def test_a_token_we_did_not_mint_is_never_revoked(fake_workspace_env: FakeWorkspace, tmp_path: Path) -> None:
    ws = fake_workspace_env
    foreign = devbox_native.create_token(3600, "someone-elses")
    broker = _broker(tmp_path)
    broker.get()
    # Tamper with the cache: its current token is now a foreign one (same id and value), about to expire.
    cache = broker.cache_path
    data = json.loads(cache.read_text())
    (entry,) = data["entries"].values()
    entry.update(token=foreign.token_value, token_id=foreign.token_id, expires_at=time.time() + 10)
    cache.write_text(json.dumps(data))
    new = broker.get()
    assert new != foreign.token_value
    broker.revoke_pending(force=True)
    assert ws.is_live(foreign.token_value)
    assert foreign.token_id not in [r.json()["token_id"] for r in ws.requests if r.path == DELETE]
    # And a pending entry naming a foreign id is dropped, not revoked.
    data = json.loads(cache.read_text())
    (entry,) = data["entries"].values()
    entry["pending"].append({"token_id": foreign.token_id, "expires_at": time.time() + 3600})
    cache.write_text(json.dumps(data))
    assert broker.revoke_pending(force=True) == []
    assert ws.is_live(foreign.token_value) and broker.pending_revocations == []
    # Nor by a get() that finds it due (next_attempt_at 0), nor after a planted rotation record naming it.
    _edit_cache(
        cache,
        lambda e: e.update(
            pending=[{"token_id": foreign.token_id, "expires_at": time.time() + 3600, "next_attempt_at": 0}],
            hook_pending={"token_id": e["token_id"], "replaced_token_id": foreign.token_id},
        ),
    )
    broker.get()
    assert ws.is_live(foreign.token_value) and broker.pending_revocations == []
    assert foreign.token_id not in [r.json()["token_id"] for r in ws.requests if r.path == DELETE]


def test_an_expired_pending_token_is_dropped_not_revoked(fake_workspace_env: FakeWorkspace, tmp_path: Path) -> None:
    ws = fake_workspace_env
    broker = _broker(tmp_path)
    old = broker.get()
    ws.inject(DELETE, status=500)
    broker.force_refresh()
    data = json.loads(broker.cache_path.read_text())
    (entry,) = data["entries"].values()
    entry["pending"][0]["expires_at"] = time.time() - 1  # it expired meanwhile: nothing left to revoke
    broker.cache_path.write_text(json.dumps(data))
    ws.clear_requests()
    assert broker.revoke_pending(force=True) == []
    assert broker.pending_revocations == [] and ws.requests == []
    assert ws.is_live(old)  # (the emulator's clock did not move: the token is still live there)


def test_a_fresh_cache_hit_needs_no_lock(fake_workspace_env: FakeWorkspace, tmp_path: Path) -> None:
    broker = _broker(tmp_path)
    token = broker.get()
    with open(str(broker.cache_path) + ".lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # another process would hold it while minting
        t0 = time.monotonic()
        assert broker.get() == token
        assert time.monotonic() - t0 < 1


def test_the_lock_wait_follows_the_calls_budget(fake_workspace_env: FakeWorkspace, tmp_path: Path) -> None:
    # Another process holds the cache lock (a hung mint): a call with a 2 s budget gives up after about 2 s,
    # not after the fixed 6-minute lock limit, and says which lock it waited for.
    broker = _broker(tmp_path, config=devbox_native.Config(retry_timeout_seconds=2))
    broker.cache_path.parent.mkdir(mode=0o700, parents=True)
    with open(str(broker.cache_path) + ".lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        t0 = time.monotonic()
        with pytest.raises(TimeoutError, match=r"token\.json\.lock"):
            broker.get()
        assert 1.5 < time.monotonic() - t0 < 30
    assert _hits(fake_workspace_env, CREATE) == 0


def test_mint_failure_inside_the_margin_returns_the_current_token(
    fake_workspace_env: FakeWorkspace, tmp_path: Path
) -> None:
    ws = fake_workspace_env
    broker = _broker(tmp_path)
    token = broker.get()
    age_cache(broker.cache_path, 120)  # inside the margin, not expired
    ws.inject(CREATE, status=500)
    assert broker.get() == token
    age_cache(broker.cache_path, -1)  # expired: nothing usable left
    ws.inject(CREATE, status=500)
    with pytest.raises(ApiError):
        broker.get()
    assert ws.is_live(broker.get())  # and it recovers


def test_two_workspaces_never_share_a_token(tmp_path: Path) -> None:
    cache = tmp_path / "token.json"
    with FakeWorkspace() as a, FakeWorkspace() as b:
        ta = TokenBroker(cache_path=cache, config=Config(host=a.host, token=a.pat)).get()
        tb = TokenBroker(cache_path=cache, config=Config(host=b.host, token=b.pat)).get()
        assert a.is_live(ta) and b.is_live(tb) and ta != tb
        assert TokenBroker(cache_path=cache, config=Config(host=a.host, token=a.pat)).get() == ta
    keys = list(json.loads(cache.read_text())["entries"])
    assert len(keys) == 2 and all(k.split(" ")[1].startswith("pat:") for k in keys)
    assert not any(a.pat in k or b.pat in k for k in keys)


def test_two_basic_users_on_one_host_never_share_a_token(tmp_path: Path) -> None:
    cache = tmp_path / "token.json"
    with FakeWorkspace() as ws:
        alice = TokenBroker(cache_path=cache, config=Config(host=ws.host, username=ws.username, password=ws.password))
        ta = alice.get()
        assert alice.identity == f"basic:{ws.username}" and ws.password not in alice.identity
        ws.username, ws.password = "bob@example.com", "pw-bob"  # now only bob can log in
        bob = TokenBroker(cache_path=cache, config=Config(host=ws.host, username=ws.username, password=ws.password))
        tb = bob.get()
        assert tb != ta and ws.is_live(tb) and bob.identity == "basic:bob@example.com"
        assert alice.get() == ta and bob.get() == tb  # each keeps its own entry
    keys = sorted(json.loads(cache.read_text())["entries"])
    assert keys == [f"{ws.host} pat:basic:bob@example.com", f"{ws.host} pat:basic:devbox-user@example.com"]


def test_a_mint_cancelled_after_the_server_created_the_token_is_recorded_and_revoked(
    fake_workspace_env: FakeWorkspace, tmp_path: Path
) -> None:
    ws = fake_workspace_env
    broker = _broker(tmp_path)
    ws.inject(CREATE, action="pass", delay=1.0)  # the server creates the token after the caller gave up

    async def main() -> None:
        task = asyncio.ensure_future(broker.get_async())
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    deadline = time.monotonic() + 30
    while not (ws.revoked_token_ids() and broker.pending_revocations == []) and time.monotonic() < deadline:
        time.sleep(0.05)
    (revoked,) = ws.revoked_token_ids()
    assert _hits(ws, CREATE) == 1 and ws.live_tokens() == []
    assert broker.token_id is None and broker.pending_revocations == []
    # The next caller mints normally.
    assert ws.is_live(broker.get()) and broker.token_id != revoked


def test_bad_arguments(fake_workspace_env: FakeWorkspace, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"^refresh_margin: "):
        _broker(tmp_path, lifetime_seconds=600, refresh_margin=600)
    with pytest.raises(ValueError, match=r"^lifetime_seconds: "):
        _broker(tmp_path, lifetime_seconds=0)
    with pytest.raises(ValueError, match=r"^lifetime_seconds: "):
        _broker(tmp_path, lifetime_seconds=1.5)
    with pytest.raises(ValueError, match=r"^comment_prefix: "):
        _broker(tmp_path, comment_prefix="")


def test_a_corrupt_cache_is_kept_aside_and_replaced(
    fake_workspace_env: FakeWorkspace, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="devbox_native")
    devbox_native.refresh_logging()
    cache = tmp_path / "cache" / "token.json"
    cache.parent.mkdir()
    # A foreign file whose type error would quote a token-like value.
    entry = {"host": "h", "identity": "i", "token": "t", "token_id": "x", "expires_at": 1}
    entry["created_at"] = "dapi-secret-looking"  # serde's message would be: invalid type: string "dapi-...
    cache.write_text(json.dumps({"version": 1, "entries": {"k": entry}}))
    cache.chmod(0o600)
    assert fake_workspace_env.is_live(_broker(tmp_path).get())
    assert "not a token cache (line 1, column" in caplog.text and "dapi-secret-looking" not in caplog.text
    cache.write_text("{torn")
    cache.chmod(0o644)
    leftover = cache.parent / ".token.json.Ab12Cd.tmp"  # what a writer killed mid-write leaves
    leftover.write_text("{partial")
    token = _broker(tmp_path).get()
    assert fake_workspace_env.is_live(token)
    assert json.loads(cache.read_text())["version"] == 1 and mode(cache) == 0o600
    # Each corrupt file was kept aside (0600, byte for byte) before the new cache replaced it.
    names = sorted(p.name for p in cache.parent.iterdir())
    aside = [n for n in names if n.startswith("token.json.corrupt-")]
    assert names == ["token.json", *aside, "token.json.lock"] and len(aside) == 2, names
    assert {(cache.parent / n).read_text()[:5] for n in aside} == {"{torn", '{"ver'}
    assert all(mode(cache.parent / n) == 0o600 for n in aside)


def test_quota_error_says_how_to_clean_up_and_auto_cleanup_retries(tmp_path: Path) -> None:
    with FakeWorkspace(token_quota=3) as ws:
        config = Config(host=ws.host, token=ws.pat)
        devbox_native.create_token(3600, "devbox-native-stale", config=config)
        devbox_native.create_token(3600, "sdk-1700000000000000000", config=config)
        devbox_native.create_token(3600, "mine", config=config)
        with pytest.raises(QuotaExceeded) as exc:
            _broker(tmp_path, config=config).get()
        msg = str(exc.value)
        assert "Cannot create more than 3 tokens" in msg
        assert "3 live tokens (1 minted by devbox-native, 1 by the DevBox app, 1 other)" in msg
        assert "devbox-native token cleanup" in msg and exc.value.error_code == "QUOTA_EXCEEDED"
        token = _broker(tmp_path, config=config, auto_cleanup=True).get()
        assert ws.is_live(token)
        comments = sorted(t["comment"] for t in ws.live_tokens())
        assert comments[1:] == ["mine", "sdk-1700000000000000000"]  # only our stale token was revoked
        assert comments[0].startswith("devbox-native-broker-")


def test_get_async(fake_workspace_env: FakeWorkspace, tmp_path: Path) -> None:
    broker = _broker(tmp_path)

    async def main() -> tuple[str, str, str]:
        a, b = await asyncio.gather(broker.get_async(), broker.get_async())
        c = await broker.force_refresh_async()
        return a, b, c

    a, b, c = asyncio.run(main())
    assert a == b and c != a
    assert asyncio.run(broker.get_async()) == c  # usable directly by asyncio.run
    assert fake_workspace_env.is_live(c) and not fake_workspace_env.is_live(a)


def test_sixteen_threads_with_a_stale_cache_mint_exactly_once(
    fake_workspace_env: FakeWorkspace, tmp_path: Path
) -> None:
    ws = fake_workspace_env
    brokers = [_broker(tmp_path) for _ in range(16)]
    old = brokers[0].get()
    age_cache(brokers[0].cache_path, 5)
    ws.clear_requests()
    ws.inject(CREATE, action="pass", delay=0.3)
    with ThreadPoolExecutor(16) as pool:
        tokens = set(pool.map(lambda b: b.get(), brokers))
    assert _hits(ws, CREATE) == 1 and len(tokens) == 1 and old not in tokens


_GETTER = """
import os, sys, time, devbox_native
cache, go = sys.argv[1], sys.argv[2]
broker = devbox_native.TokenBroker(cache_path=cache, revoke_grace=0, kind="pat")
while not os.path.exists(go):
    time.sleep(0.002)
print(broker.get())
"""


def test_twenty_processes_with_a_stale_cache_mint_exactly_once(
    fake_workspace_env: FakeWorkspace, tmp_path: Path
) -> None:
    ws = fake_workspace_env
    broker = _broker(tmp_path)
    old = broker.get()
    old_id = broker.token_id
    age_cache(broker.cache_path, 5)  # stale for all of them
    ws.clear_requests()
    ws.inject(CREATE, action="pass", delay=0.5)  # a slow mint widens the race window
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _GETTER, str(broker.cache_path), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(20)
    ]
    time.sleep(0.5)
    go.touch()
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 20, [e for _, e in outs]
    tokens = {out.strip() for out, _ in outs}
    assert _hits(ws, CREATE) == 1, "more than one process minted"
    (new,) = tokens
    assert new != old and ws.is_live(new)
    assert not ws.is_live(old) and [r.json()["token_id"] for r in ws.requests if r.path == DELETE] == [old_id]
    assert broker.get() == new
