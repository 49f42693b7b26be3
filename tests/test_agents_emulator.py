"""The emulator's routes for the coding agents: OpenAI Responses (JSON and the SSE events Codex reads) with its
models list, Anthropic Messages and chat completions under /ai-gateway, Gemini generateContent and
streamGenerateContent, HEAD of the Anthropic bases; each records the credential and refuses bad ones with 403."""

from __future__ import annotations

import http.client
import json
from typing import Any

import pytest
from devbox_native.testing import FakeWorkspace
from test_emulator import INVALID_TOKEN_BODY, MISSING_CREDENTIAL_BODY, call

GEMINI = "/ai-gateway/gemini/v1beta/models/databricks-gemini-2-5-pro"


def sse_events(body: bytes) -> list[tuple[str | None, Any]]:
    """Parse server-sent events into (event name, JSON data)."""
    events: list[tuple[str | None, Any]] = []
    for block in body.decode().split("\n\n"):
        if not block.strip():
            continue
        name, data = None, []
        for line in block.split("\n"):
            if line.startswith("event: "):
                name = line[len("event: ") :]
            elif line.startswith("data: "):
                data.append(line[len("data: ") :])
        events.append((name, json.loads("\n".join(data))))
    return events


@pytest.mark.parametrize("base", ["/serving-endpoints", "/ai-gateway/codex/v1"])
def test_responses_json(fake_workspace: FakeWorkspace, base: str) -> None:
    ws = fake_workspace
    r = call(ws, "POST", f"{base}/responses", token=ws.pat, json_body={"model": "databricks-gpt-5", "input": "hi"})
    assert r.status == 200
    body = r.json()
    assert body["object"] == "response" and body["status"] == "completed" and body["model"] == "databricks-gpt-5"
    assert body["output"][0]["content"][0] == {"type": "output_text", "text": ws.reply_text, "annotations": []}
    assert body["output_text"] == ws.reply_text
    assert body["usage"]["total_tokens"] == body["usage"]["input_tokens"] + body["usage"]["output_tokens"]
    (inv,) = ws.invocations
    assert inv["path"] == f"{base}/responses" and inv["authorization"] == f"Bearer {ws.pat}"


def test_responses_stream_has_the_events_codex_reads(fake_workspace: FakeWorkspace) -> None:
    ws = fake_workspace
    body = {"model": "databricks-gpt-5", "input": [{"role": "user", "content": "hi"}], "stream": True}
    r = call(ws, "POST", "/ai-gateway/codex/v1/responses", token=ws.pat, json_body=body)
    assert r.status == 200 and r.headers["content-type"] == "text/event-stream"
    events = sse_events(r.body)
    names = [n for n, _ in events]
    assert names[0] == "response.created" and names[-1] == "response.completed"
    assert {"response.output_text.delta", "response.output_item.done"} <= set(names)
    assert all(data["type"] == name for name, data in events)
    assert [data["sequence_number"] for _, data in events] == list(range(len(events)))
    delta = "".join(d["delta"] for n, d in events if n == "response.output_text.delta")
    assert delta == ws.reply_text
    done = events[-1][1]["response"]
    assert done["status"] == "completed" and done["id"] == events[0][1]["response"]["id"]
    assert done["output"][0]["content"][0]["text"] == ws.reply_text
    assert done["usage"]["output_tokens"] > 0


@pytest.mark.parametrize("base", ["/serving-endpoints", "/ai-gateway/codex/v1"])
def test_models_list(fake_workspace: FakeWorkspace, base: str) -> None:
    ws = fake_workspace
    r = call(ws, "GET", f"{base}/models?client_version=0.171.0", token=ws.pat)
    assert r.status == 200
    body = r.json()
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == ws.served_models
    assert ws.requests[-1].query == "client_version=0.171.0"


def test_anthropic_and_chat_under_ai_gateway(fake_workspace: FakeWorkspace) -> None:
    ws = fake_workspace
    msg = {"model": "databricks-claude-sonnet-4-5", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
    r = call(ws, "POST", "/ai-gateway/anthropic/v1/messages?beta=true", token=ws.pat, json_body=msg)
    assert r.status == 200 and r.json()["content"][0]["text"] == ws.reply_text
    chat = {"model": "databricks-gpt-5", "messages": [{"role": "user", "content": "hi"}]}
    r = call(ws, "POST", "/ai-gateway/mlflow/v1/chat/completions", token=ws.pat, json_body=chat)
    assert r.status == 200 and r.json()["choices"][0]["message"]["content"] == ws.reply_text
    assert [i["path"] for i in ws.invocations] == [
        "/ai-gateway/anthropic/v1/messages",
        "/ai-gateway/mlflow/v1/chat/completions",
    ]


@pytest.mark.parametrize("base", ["/serving-endpoints/anthropic", "/ai-gateway/anthropic"])
def test_head_of_the_anthropic_base_has_no_body(fake_workspace: FakeWorkspace, base: str) -> None:
    """Claude Code sends HEAD <base> first; a body after a HEAD answer would be read as the next response."""
    ws = fake_workspace
    conn = http.client.HTTPConnection("127.0.0.1", ws.port, timeout=10)
    try:
        conn.request("HEAD", base, headers={"Authorization": f"Bearer {ws.pat}"})
        head = conn.getresponse()
        assert head.status == 200 and head.read() == b""
        # The same connection still works: nothing stray was left on it.
        conn.request("GET", "/serving-endpoints/models", headers={"Authorization": f"Bearer {ws.pat}"})
        assert conn.getresponse().status == 200
    finally:
        conn.close()


def test_gemini_generate_and_stream(fake_workspace: FakeWorkspace) -> None:
    ws = fake_workspace
    body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    r = call(ws, "POST", f"{GEMINI}:generateContent", token=ws.pat, json_body=body)
    assert r.status == 200
    cand = r.json()["candidates"][0]
    assert cand["content"] == {"role": "model", "parts": [{"text": ws.reply_text}]} and cand["finishReason"] == "STOP"
    assert r.json()["modelVersion"] == "databricks-gemini-2-5-pro"
    r = call(ws, "POST", f"{GEMINI}:streamGenerateContent?alt=sse", token=ws.pat, json_body=body)
    assert r.status == 200 and r.headers["content-type"] == "text/event-stream"
    (event,) = sse_events(r.body)
    assert event[0] is None and event[1]["candidates"][0]["content"]["parts"][0]["text"] == ws.reply_text
    r = call(ws, "POST", f"{GEMINI}:streamGenerateContent", token=ws.pat, json_body=body)
    assert r.status == 200 and isinstance(r.json(), list)
    assert [i["endpoint"] for i in ws.invocations] == ["databricks-gemini-2-5-pro"] * 3
    r = call(ws, "POST", f"{GEMINI}:countTokens", token=ws.pat, json_body=body)
    assert r.status == 404


AGENT_ROUTES = [
    ("POST", "/serving-endpoints/responses"),
    ("POST", "/ai-gateway/codex/v1/responses"),
    ("GET", "/ai-gateway/codex/v1/models"),
    ("POST", "/ai-gateway/anthropic/v1/messages"),
    ("POST", f"{GEMINI}:streamGenerateContent"),
]


@pytest.mark.parametrize(("method", "path"), AGENT_ROUTES)
def test_bad_credentials_get_databricks_403(fake_workspace: FakeWorkspace, method: str, path: str) -> None:
    ws = fake_workspace
    body = json.dumps({"model": "m", "input": "hi"}) if method == "POST" else None
    r = call(ws, method, path, token="dapi" + "0" * 32, body=body)
    assert r.status == 403 and r.json() == INVALID_TOKEN_BODY
    assert r.headers["x-databricks-reason-phrase"] == "Invalid access token."
    # Gemini's default header is not a Databricks credential.
    r = call(ws, method, path, headers={"x-goog-api-key": ws.pat}, body=body)
    assert r.status == 401 and r.json() == MISSING_CREDENTIAL_BODY
    assert ws.invocations == []
