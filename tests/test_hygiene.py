"""Token hygiene: `cleanup_tokens` revokes only stale tokens this library (or, when asked, the DevBox app)
minted, never the broker's current token; QUOTA_EXCEEDED says how many tokens are live and how to clean up."""

from __future__ import annotations

import asyncio
from pathlib import Path

import devbox_native
import pytest
from devbox_native import Config, TokenBroker
from devbox_native.errors import QuotaExceeded
from devbox_native.testing import FakeWorkspace


def _comments(ws: FakeWorkspace) -> list[str]:
    return sorted(t["comment"] or "" for t in ws.live_tokens())


def test_cleanup_revokes_only_our_stale_tokens(fake_workspace_env: FakeWorkspace) -> None:
    ws = fake_workspace_env
    ours = [devbox_native.create_token(3600, f"devbox-native-{i}") for i in range(3)]
    devbox_native.create_token(3600, "somebody-else")
    devbox_native.create_token(3600, "devbox-native")  # no dash: not our prefix
    app = devbox_native.generate_spn_token()  # comment sdk-<time_ns>
    broker_token = TokenBroker(kind="pat").get()  # default cache: kept
    revoked = devbox_native.cleanup_tokens()
    assert sorted(revoked) == sorted(t.token_id for t in ours)
    assert not any(ws.is_live(t.token_value) for t in ours)
    assert ws.is_live(app) and ws.is_live(broker_token)
    assert devbox_native.cleanup_tokens() == []
    assert devbox_native.cleanup_tokens(include_app_tokens=True) == [ws.token_id_of(app)]
    assert ws.is_live(broker_token) and not ws.is_live(app)
    assert [c for c in _comments(ws) if not c.startswith("devbox-native-broker-")] == ["devbox-native", "somebody-else"]


def test_cleanup_older_than_uses_creation_time(fake_workspace: FakeWorkspace) -> None:
    ws = fake_workspace
    config = Config(host=ws.host, token=ws.pat)  # the static PAT does not expire when the clock moves
    ws.advance_clock(-7200)  # minted "two hours ago"
    old = devbox_native.create_token(None, "devbox-native-old", config=config)
    ws.advance_clock(7200)
    young = devbox_native.create_token(None, "devbox-native-young", config=config)
    assert devbox_native.cleanup_tokens(older_than=3600, dry_run=True, config=config) == [old.token_id]
    assert ws.is_live(old.token_value)  # dry run
    assert devbox_native.cleanup_tokens(older_than=3600, config=config) == [old.token_id]
    assert ws.is_live(young.token_value) and not ws.is_live(old.token_value)


def test_cleanup_keeps_every_token_of_a_given_cache(fake_workspace_env: FakeWorkspace, tmp_path: Path) -> None:
    ws = fake_workspace_env
    cache = tmp_path / "elsewhere.json"
    kept = TokenBroker(cache_path=cache, kind="pat").get()
    other = devbox_native.create_token(60, "devbox-native-other")
    assert devbox_native.cleanup_tokens(cache_path=cache) == [other.token_id]
    assert ws.is_live(kept)


def test_cleanup_with_a_custom_prefix_and_bad_arguments(fake_workspace_env: FakeWorkspace) -> None:
    mine = devbox_native.create_token(60, "myapp-1")
    assert devbox_native.cleanup_tokens("myapp-") == [mine.token_id]
    with pytest.raises(ValueError, match=r"^comment_prefix: "):
        devbox_native.cleanup_tokens("")
    with pytest.raises(ValueError, match=r"^older_than: "):
        devbox_native.cleanup_tokens(older_than=-1)
    with pytest.raises(TypeError):
        devbox_native.cleanup_tokens(older_than="1")  # type: ignore[arg-type]


def test_cleanup_async_and_already_revoked_tokens(fake_workspace_env: FakeWorkspace) -> None:
    ws = fake_workspace_env
    a = devbox_native.create_token(60, "devbox-native-a")
    b = devbox_native.create_token(60, "devbox-native-b")
    # The first delete answers RESOURCE_DOES_NOT_EXIST, as when someone else revoked the token between our
    # list and our delete: it counts as revoked.
    ws.inject("/api/2.0/token/delete", status=404, body={"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "gone"})
    revoked = asyncio.run(devbox_native.cleanup_tokens_async())
    assert sorted(revoked) == sorted([a.token_id, b.token_id])


def test_a_failing_revocation_is_raised_after_trying_the_others(fake_workspace_env: FakeWorkspace) -> None:
    ws = fake_workspace_env
    a = devbox_native.create_token(60, "devbox-native-a")
    b = devbox_native.create_token(60, "devbox-native-b")
    ws.inject("/api/2.0/token/delete", status=400, body={"error_code": "INVALID_STATE", "message": "nope"})
    with pytest.raises(devbox_native.ApiError, match="nope"):
        devbox_native.cleanup_tokens()
    assert [ws.is_live(a.token_value), ws.is_live(b.token_value)] == [True, False]


def test_quota_exceeded_says_how_many_and_how_to_clean_up() -> None:
    with FakeWorkspace(token_quota=4) as ws:
        config = Config(host=ws.host, token=ws.pat)
        for comment in ["devbox-native-1", "devbox-native-2", "sdk-1700000000000000000", "other"]:
            devbox_native.create_token(3600, comment, config=config)
        with pytest.raises(QuotaExceeded) as exc:
            devbox_native.create_token(60, "devbox-native-3", config=config)
        msg = str(exc.value)
        assert msg.startswith("Cannot create more than 4 tokens. This identity has 4 live tokens")
        assert "(2 minted by devbox-native, 1 by the DevBox app, 1 other)" in msg
        assert "`devbox-native token cleanup`" in msg and "--include-app-tokens" in msg
        assert "auto_cleanup=True" in msg and exc.value.status_code == 400
        assert ws.pat not in msg and ws.pat not in repr(exc.value)


def test_auto_cleanup_cleans_and_retries_once() -> None:
    with FakeWorkspace(token_quota=2) as ws:
        config = Config(host=ws.host, token=ws.pat)
        devbox_native.create_token(3600, "devbox-native-stale", config=config)
        devbox_native.create_token(3600, "other", config=config)
        created = devbox_native.create_token(60, "devbox-native-new", config=config, auto_cleanup=True)
        assert ws.is_live(created.token_value)
        assert _comments(ws) == ["devbox-native-new", "other"]
        devbox_native.create_token(60, "x", config=config, auto_cleanup=True)
        assert _comments(ws) == ["other", "x"]
        # Nothing of ours left to clean: the quota error, with the advice.
        with pytest.raises(QuotaExceeded, match="2 live tokens"):
            asyncio.run(devbox_native.create_token_async(60, "y", config=config, auto_cleanup=True))
        assert _comments(ws) == ["other", "x"]


def test_generate_spn_token_explains_the_quota_too() -> None:
    with FakeWorkspace(token_quota=1) as ws:
        config = Config(host=ws.host, token=ws.pat)
        devbox_native.generate_spn_token(config=config)
        with pytest.raises(QuotaExceeded, match=r"1 live tokens \(0 minted by devbox-native, 1 by the DevBox app"):
            devbox_native.generate_spn_token(config=config)


def test_cleanup_never_revokes_a_replaced_token_still_in_its_grace_period(
    fake_workspace_env: FakeWorkspace, tmp_path: Path
) -> None:
    ws = fake_workspace_env
    cache = tmp_path / "cache.json"
    broker = TokenBroker(kind="pat", cache_path=cache)
    first = broker.get()
    second = broker.force_refresh()  # `first` is pending (grace period), still in use elsewhere
    stale = devbox_native.create_token(3600, "devbox-native-stale")
    assert devbox_native.cleanup_tokens(cache_path=cache, dry_run=True) == [stale.token_id]
    assert devbox_native.cleanup_tokens(cache_path=cache) == [stale.token_id]
    assert ws.is_live(first) and ws.is_live(second)


def test_create_token_auto_cleanup_keeps_the_tokens_of_the_cache_it_is_given(tmp_path: Path) -> None:
    with FakeWorkspace(token_quota=3) as ws:
        config = Config(host=ws.host, token=ws.pat)
        cache = tmp_path / "app-cache.json"
        broker = TokenBroker(kind="pat", cache_path=cache, config=config)
        held = broker.get()
        replaced = broker.force_refresh()  # `held` is pending now
        stale = devbox_native.create_token(3600, "devbox-native-stale", config=config)
        created = devbox_native.create_token(
            60, "devbox-native-new", config=config, auto_cleanup=True, cache_path=cache
        )
        assert ws.is_live(created.token_value) and not ws.is_live(stale.token_value)
        assert ws.is_live(held) and ws.is_live(replaced)
        # A cache that cannot be read protects nothing we can see: no automatic cleanup at all.
        (tmp_path / "dir-cache").mkdir()
        with pytest.raises(QuotaExceeded):
            devbox_native.create_token(60, "x", config=config, auto_cleanup=True, cache_path=tmp_path / "dir-cache")
        assert ws.is_live(created.token_value) and ws.is_live(held) and ws.is_live(replaced)
