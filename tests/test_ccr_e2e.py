"""End to end with the real Claude Code Router 1.0.73: config and plugin written by devbox_native, CCR
forwarding to the emulator's serving endpoint, then a token rotation with `ccr restart`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import devbox_native
import pytest
from ccr_harness import Ccr, deep_keys, free_port
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
def ccr(tmp_path: Path, fake_workspace_env: FakeWorkspace) -> Iterator[Ccr]:
    home = tmp_path / "home"
    token = devbox_native.generate_spn_token()
    config = devbox_native.write_ccr_config(token, home, host=fake_workspace_env.host, model=MODEL)
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


def test_rotation_by_update_and_restart(ccr: Ccr, fake_workspace_env: FakeWorkspace) -> None:
    ws = fake_workspace_env
    old = _token(ccr)
    ccr.messages(_request())
    new = devbox_native.create_token(3600, "rotated")
    config = ccr.home / ".claude-code-router" / "config.json"
    data = json.loads(config.read_text())
    data["Providers"][0]["api_key"] = new.token_value
    # What `update_ccr_token` does, by hand: atomic, private, keeping the user's PORT.
    devbox_native.write_ccr_config(new.token_value, ccr.home, host=ws.host, model=MODEL)
    written = json.loads(config.read_text())
    written["PORT"] = data["PORT"]
    config.write_text(json.dumps(written, indent=2))
    ccr.restart()
    old_id = ws.token_id_of(old)
    assert old_id is not None
    devbox_native.delete_token(old_id)
    ccr.messages(_request())
    first, second = _invocations(ws)
    assert first["authorization"] == f"Bearer {old}"
    assert second["authorization"] == f"Bearer {new.token_value}"
    assert not ws.is_live(old) and ws.is_live(new.token_value)
