"""Model serving: the Anthropic Messages, OpenAI Responses, chat completions, Gemini and models-list answers, on both
route families (``/serving-endpoints`` and ``/ai-gateway``)."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Final

from devbox_native.testing._base import _WorkspaceBase
from devbox_native.testing._wire import RecordedRequest, _api_error, _json_response, _Response

if TYPE_CHECKING:
    import http.client

_SERVING_PREFIX: Final = "/serving-endpoints/"
_GATEWAY_PREFIX: Final = "/ai-gateway/"
_GEMINI_PREFIX: Final = "/ai-gateway/gemini/v1beta/models/"
_ANTHROPIC_BASES: Final = frozenset({"/serving-endpoints/anthropic", "/ai-gateway/anthropic"})


def _sse(events: list[tuple[str | None, Any]]) -> bytes:
    """Server-sent events; an event's data is JSON unless it is already a string (``[DONE]``)."""
    out: list[str] = []
    for name, data in events:
        if name is not None:
            out.append(f"event: {name}\n")
        out.append(f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n")
    return "".join(out).encode()


def read_events(response: http.client.HTTPResponse) -> Iterator[tuple[float, bytes]]:
    """Each server-sent event of a streamed response as it arrives: ``(time.perf_counter() at arrival, the event's
    bytes without the blank line that ends it)``.

    It reads what has arrived (`read1`), so a test sees an event when the server sent it (see ``event_delay`` in
    `FakeWorkspace.inject`). Read to the end, it closes `response`: the keep-alive connection can send the next
    request.
    """
    buf = b""
    while chunk := response.read1(65536):
        buf += chunk
        while b"\n\n" in buf:
            event, buf = buf.split(b"\n\n", 1)
            yield time.perf_counter(), event
    response.close()  # read1 never marks a Content-Length body as done


class _Serving(_WorkspaceBase):
    """The serving endpoints of `FakeWorkspace`."""

    @property
    def invocations(self) -> list[dict[str, Any]]:
        """Serving calls, oldest first: ``{"endpoint", "authorization", "body", "path"}`` each."""
        with self._lock:
            return [dict(item) for item in self._invocations]

    def _serving_body(self, req: RecordedRequest, endpoint: str | None) -> dict[str, Any] | _Response:
        try:
            body = json.loads(req.body)
        except ValueError:
            return _api_error(400, "BAD_REQUEST", "Request body is not valid JSON")
        if not isinstance(body, dict):
            return _api_error(400, "BAD_REQUEST", "Request body must be a JSON object")
        with self._lock:
            self._invocations.append(
                {
                    "endpoint": endpoint if endpoint is not None else body.get("model"),
                    "authorization": req.headers.get("authorization"),
                    "body": body,
                    "path": req.path,
                }
            )
        return body

    def _invocation(self, req: RecordedRequest, endpoint: str) -> _Response:
        body = self._serving_body(req, endpoint)
        return body if isinstance(body, _Response) else self._chat_completion(body, endpoint)

    def _openai_compatible(self, req: RecordedRequest, identity: str) -> _Response:
        body = self._serving_body(req, None)
        return body if isinstance(body, _Response) else self._chat_completion(body, str(body.get("model", "")))

    def _chat_completion(self, body: dict[str, Any], model: str) -> _Response:
        completion_id, created = "chatcmpl-" + secrets.token_hex(12), int(self._now())
        prompt_tokens = len(json.dumps(body.get("messages", []))) // 4
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": 5, "total_tokens": prompt_tokens + 5}
        if body.get("stream") is True:
            head, _, tail = self.reply_text.partition(" ")
            base = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model}
            deltas: list[tuple[dict[str, Any], str | None]] = [
                ({"role": "assistant", "content": head}, None),
                ({"content": " " + tail if tail else ""}, None),
                ({}, "stop"),
            ]
            events: list[tuple[str | None, Any]] = [
                (None, {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
                for delta, finish in deltas
            ]
            events[-1][1]["usage"] = usage
            events.append((None, "[DONE]"))
            return _Response(200, _sse(events), "text/event-stream")
        return _json_response(
            200,
            {
                "id": completion_id,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": self.reply_text},
                        "finish_reason": "stop",
                    }
                ],
                "usage": usage,
            },
        )

    def _anthropic_messages(self, req: RecordedRequest, identity: str) -> _Response:
        body = self._serving_body(req, None)
        if isinstance(body, _Response):
            return body
        model = str(body.get("model", ""))
        message_id = "msg_" + secrets.token_hex(12)
        input_tokens = len(json.dumps(body.get("messages", []))) // 4
        if body.get("stream") is True:
            start: dict[str, Any] = {
                "id": message_id,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": input_tokens, "output_tokens": 1},
            }
            events: list[tuple[str | None, Any]] = [
                ("message_start", {"type": "message_start", "message": start}),
                (
                    "content_block_start",
                    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
                ),
                (
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": 0,
                        "delta": {"type": "text_delta", "text": self.reply_text},
                    },
                ),
                ("content_block_stop", {"type": "content_block_stop", "index": 0}),
                (
                    "message_delta",
                    {
                        "type": "message_delta",
                        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                        "usage": {"output_tokens": 5},
                    },
                ),
                ("message_stop", {"type": "message_stop"}),
            ]
            return _Response(200, _sse(events), "text/event-stream")
        return _json_response(
            200,
            {
                "id": message_id,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [{"type": "text", "text": self.reply_text}],
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": {"input_tokens": input_tokens, "output_tokens": 5},
            },
        )

    def _responses(self, req: RecordedRequest, identity: str) -> _Response:
        """OpenAI Responses: the response object, or (``stream``) the SSE events Codex reads, ending with
        ``response.completed`` (Codex treats a stream that ends without it as a failure)."""
        body = self._serving_body(req, None)
        if isinstance(body, _Response):
            return body
        model, text = str(body.get("model", "")), self.reply_text
        input_tokens = len(json.dumps(body.get("input", ""))) // 4
        response_id, item_id, created = (
            "resp_" + secrets.token_hex(12),
            "msg_" + secrets.token_hex(12),
            int(self._now()),
        )
        part = {"type": "output_text", "text": text, "annotations": []}
        item = {"id": item_id, "type": "message", "status": "completed", "role": "assistant", "content": [part]}
        usage = {
            "input_tokens": input_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": 5,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": input_tokens + 5,
        }

        def response(status: str, output: list[Any], usage: Any) -> dict[str, Any]:
            return {
                "id": response_id,
                "object": "response",
                "created_at": created,
                "status": status,
                "model": model,
                "output": output,
                "usage": usage,
            }

        if body.get("stream") is not True:
            return _json_response(200, {**response("completed", [item], usage), "output_text": text})
        at = {"item_id": item_id, "output_index": 0, "content_index": 0}
        steps: list[tuple[str, dict[str, Any]]] = [
            ("response.created", {"response": response("in_progress", [], None)}),
            ("response.in_progress", {"response": response("in_progress", [], None)}),
            (
                "response.output_item.added",
                {"output_index": 0, "item": {**item, "status": "in_progress", "content": []}},
            ),
            ("response.content_part.added", {**at, "part": {**part, "text": ""}}),
            ("response.output_text.delta", {**at, "delta": text}),
            ("response.output_text.done", {**at, "text": text}),
            ("response.content_part.done", {**at, "part": part}),
            ("response.output_item.done", {"output_index": 0, "item": item}),
            ("response.completed", {"response": response("completed", [item], usage)}),
        ]
        events: list[tuple[str | None, Any]] = [
            (name, {"type": name, "sequence_number": n, **data}) for n, (name, data) in enumerate(steps)
        ]
        return _Response(200, _sse(events), "text/event-stream")

    def _models(self, req: RecordedRequest, identity: str) -> _Response:
        """The OpenAI models list (Codex asks for it with ``?client_version=...``)."""
        data = [{"id": m, "object": "model", "created": 0, "owned_by": "databricks"} for m in self.served_models]
        return _json_response(200, {"object": "list", "data": data})

    def _gemini(self, req: RecordedRequest, model: str, *, stream: bool) -> _Response:
        """Gemini ``generateContent`` (one JSON response) and ``streamGenerateContent`` (``alt=sse``: server-sent
        events; otherwise a JSON array of the same chunks)."""
        body = self._serving_body(req, model)
        if isinstance(body, _Response):
            return body
        prompt_tokens = len(json.dumps(body.get("contents", []))) // 4
        usage = {"promptTokenCount": prompt_tokens, "candidatesTokenCount": 5, "totalTokenCount": prompt_tokens + 5}
        chunk = {
            "candidates": [
                {"content": {"role": "model", "parts": [{"text": self.reply_text}]}, "finishReason": "STOP", "index": 0}
            ],
            "usageMetadata": usage,
            "modelVersion": model,
            "responseId": secrets.token_hex(8),
        }
        if not stream:
            return _json_response(200, chunk)
        if "alt=sse" in req.query.split("&"):
            return _Response(200, _sse([(None, chunk)]), "text/event-stream")
        return _json_response(200, [chunk])
