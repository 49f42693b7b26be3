"""End to end with the real Claude Code Router 1.0.73: config and plugin written by devbox_native with the
broker's token, CCR forwarding to the emulator's serving endpoint, then token rotations by `start_rotation` with
`ccr restart` as the hook (on request, and when the token enters the refresh margin)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import devbox_native
import pytest
from ccr_harness import Ccr, deep_keys, free_port
from conftest import age_cache
from devbox_native import TokenBroker
from devbox_native.testing import FakeWorkspace

MODEL = "databricks-claude-sonnet-4"


def _request(stream: bool = False, tools: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": "claude-sonnet-4",
        "max_tokens": 64,
        "stream": stream,
        "system": [{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {
                "role": "user",
                "content": [{"type": "text", "text": "hello", "cache_control": {"type": "ephemeral"}}],
            }
        ],
    }
    if tools:
        body["tools"] = [
            {
                "name": "get_time",
                "description": "current time",
                "input_schema": {"type": "object", "properties": {}},
                "cache_control": {"type": "ephemeral"},
            }
        ]
        body["tool_choice"] = {"type": "auto", "disable_parallel_tool_use": True}
    return body


@pytest.fixture
def broker(tmp_path: Path, fake_workspace_env: FakeWorkspace) -> TokenBroker:
    # No grace period: the replaced token is revoked right after the rotation (what these tests check).
    return TokenBroker(kind="pat", cache_path=tmp_path / "cache" / "token.json", revoke_grace=0)


@pytest.fixture
def ccr(tmp_path: Path, fake_workspace_env: FakeWorkspace, broker: TokenBroker) -> Iterator[Ccr]:
    home = tmp_path / "home"
    config = devbox_native.write_ccr_config(broker.get(), home, host=fake_workspace_env.host, model=MODEL)
    # A user's own edit (another port) that later updates must keep.
    port = free_port()
    data = json.loads(config.read_text())
    data["PORT"] = port
    config.write_text(json.dumps(data, indent=2))
    router = Ccr(home, port)
    try:
        router.start()
        yield router
    finally:
        router.stop()


def _invocations(ws: FakeWorkspace) -> list[dict[str, Any]]:
    return [i for i in ws.invocations if i["endpoint"] == MODEL]


def _token(ccr: Ccr) -> str:
    cfg = json.loads((ccr.home / ".claude-code-router" / "config.json").read_text())
    return str(cfg["Providers"][0]["api_key"])


@pytest.mark.parametrize("tools", [False, True])
def test_ccr_forwards_with_our_token_and_the_plugin_cleans_the_body(
    ccr: Ccr, fake_workspace_env: FakeWorkspace, tools: bool
) -> None:
    status, raw = ccr.messages(_request(tools=tools))
    assert status == 200, raw
    reply = json.loads(raw)
    assert reply["content"][0]["text"] == fake_workspace_env.reply_text
    (inv,) = _invocations(fake_workspace_env)
    assert inv["authorization"] == f"Bearer {_token(ccr)}"
    keys = deep_keys(inv["body"])
    assert "cache_control" not in keys
    assert "parallel_tool_calls" not in keys


def test_ccr_streaming_request(ccr: Ccr, fake_workspace_env: FakeWorkspace) -> None:
    status, raw = ccr.messages(_request(stream=True))
    assert status == 200
    text = raw.decode()
    assert "event: message_stop" in text or "message_stop" in text, text[:500]
    (inv,) = _invocations(fake_workspace_env)
    assert inv["body"].get("stream") is True
    assert inv["authorization"] == f"Bearer {_token(ccr)}"
    assert "cache_control" not in deep_keys(inv["body"])


def _assert_rotated(ccr: Ccr, ws: FakeWorkspace, broker: TokenBroker, old: str, event: dict[str, Any]) -> None:
    """CCR runs with the broker's new token, the old one is revoked, the user's PORT survived."""
    new = _token(ccr)
    assert new != old and broker.is_current(new) and ws.token_id_of(new) == event["token_id"]
    assert event["replaced_token_id"] == ws.token_id_of(old)
    assert json.loads(ccr.config.read_text())["PORT"] == ccr.port
    status, _ = ccr.messages(_request())
    assert status == 200
    status, raw = ccr.messages(_request(stream=True))
    assert status == 200 and "message_stop" in raw.decode()
    *_, plain, streamed = _invocations(ws)
    assert plain["authorization"] == streamed["authorization"] == f"Bearer {new}"
    assert "cache_control" not in deep_keys(plain["body"]) | deep_keys(streamed["body"])
    assert ws.token_id_of(old) in ws.revoked_token_ids()
    assert not ws.is_live(old) and ws.is_live(new)
    assert broker.pending_revocations == []


def test_rotate_now_restarts_ccr_with_the_new_token_and_revokes_the_old(
    ccr: Ccr, fake_workspace_env: FakeWorkspace, broker: TokenBroker
) -> None:
    ws = fake_workspace_env
    old = _token(ccr)
    assert broker.is_current(old)
    ccr.messages(_request())
    (first,) = _invocations(ws)
    assert first["authorization"] == f"Bearer {old}"
    events: list[dict[str, Any]] = []
    command = ["node", ccr.cli, "restart"]
    with devbox_native.start_rotation(ccr.home, events.append, command, broker=broker) as rotation:
        assert rotation.rotations == 0, "the config already holds the broker's token"
        event = rotation.rotate_now(timeout=90)
    assert event["reason"] == "requested" and events == [event]
    assert ccr.pid() not in ccr.started[:1], "a new server runs"
    _assert_rotated(ccr, ws, broker, old, event)


def test_rotation_when_the_token_enters_the_margin(
    ccr: Ccr, fake_workspace_env: FakeWorkspace, broker: TokenBroker
) -> None:
    ws = fake_workspace_env
    old = _token(ccr)
    age_cache(broker.cache_path, seconds_left=broker.refresh_margin + 3)
    events: list[dict[str, Any]] = []
    with devbox_native.start_rotation(ccr.home, events.append, ["node", ccr.cli, "restart"], broker=broker) as rot:
        deadline = time.monotonic() + 90
        while not events and time.monotonic() < deadline and rot.last_error is None:
            time.sleep(0.05)
        assert rot.last_error is None, rot.last_error
    (event,) = events
    assert event["reason"] == "refresh"
    _assert_rotated(ccr, ws, broker, old, event)
