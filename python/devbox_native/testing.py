"""A local Databricks workspace emulator for tests and benchmarks (pure standard library).

`FakeWorkspace` serves, on ``127.0.0.1``, the slice of a Databricks workspace that devbox_native talks to:

* OAuth discovery (``/oidc/.well-known/oauth-authorization-server``, ``.../openid-configuration``) and the host
  metadata probe of newer SDKs (``/.well-known/databricks-config``);
* the OAuth token endpoint ``/oidc/v1/token`` (``client_credentials`` with HTTP Basic or form credentials, and
  ``token-exchange`` for subject tokens listed in `FakeWorkspace.federated_tokens`);
* a Databricks metadata service at `FakeWorkspace.metadata_service_url` (``GET`` with
  ``X-Databricks-Metadata-Version: 1`` and ``X-Databricks-Host: <host>``, answering ``access_token``,
  ``token_type`` and ``expires_on``);
* legacy basic authentication (``Authorization: Basic``) with `FakeWorkspace.username` and
  `FakeWorkspace.password`;
* the Token API ``/api/2.0/token/{create,list,delete}`` with the real service's validation and quota errors;
* model serving: ``/serving-endpoints/<name>/invocations``, the OpenAI-compatible
  ``/serving-endpoints/chat/completions`` and the Anthropic Messages ``/serving-endpoints/anthropic/v1/messages``,
  each optionally streamed as server-sent events;
* what the coding agents call (recorded in `FakeWorkspace.invocations` too): OpenAI Responses
  (``POST .../responses``, JSON or the SSE events Codex reads) with its models list (``GET .../models``, in the
  OpenAI shape: Codex 0.171 logs that it cannot decode it as its own catalog and uses built-in metadata) at
  ``/serving-endpoints`` and ``/ai-gateway/codex/v1``; Anthropic Messages also at
  ``/ai-gateway/anthropic/v1/messages`` (and ``HEAD`` of both Anthropic bases, which Claude Code sends first);
  chat completions at ``/ai-gateway/mlflow/v1``; Gemini ``/ai-gateway/gemini/v1beta/models/<model>:generateContent``
  and ``:streamGenerateContent`` (``?alt=sse`` for server-sent events, else a JSON array). Every one takes only
  ``Authorization: Bearer`` and answers a bad credential with the same 403 as the rest of the workspace. A fault
  with ``event_delay`` writes a stream's events one by one (chunked, flushed), and a client that closes such a
  stream early is recorded (`FakeWorkspace.cancelled_streams`).

Every request is recorded (`FakeWorkspace.requests`), and faults can be queued per path prefix
(`FakeWorkspace.inject`): error statuses with ``Retry-After``, delays, dropped or reset connections, hanging or
trickling responses and redirects.

Error bodies follow what the real service sends. One deliberate detail: an unknown, expired or revoked bearer token
gets ``403 {"error_code": 403, "message": "Invalid access token."}`` with a *numeric* ``error_code`` and an
``X-Databricks-Reason-Phrase`` header, as recorded from real workspaces (databricks/databricks-sdk-go#873, #1046).

Cost: about 80 µs per request on a quiet 2-core machine (170-220 µs while other jobs load it), measured as 2000
``GET /api/2.0/token/list`` over one keep-alive ``http.client`` connection with the client in the same process
(CPython 3.11); the emulator's own CPU share is 25-60 µs per request. So benchmarks measure the client.

Example::

    with FakeWorkspace(token_quota=3) as ws:
        os.environ.update(ws.env())
        ...  # mint PATs against ws.host
        assert len(ws.live_tokens()) == 1
"""

from __future__ import annotations

import base64
import hmac
import http
import json
import secrets
import select
import selectors
import socket
import socketserver
import ssl
import struct
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from types import TracebackType
from typing import Any, Final, Literal, get_args

__all__ = ["FakeWorkspace", "FaultAction", "RecordedRequest"]

FaultAction = Literal["drop", "reset", "hang", "slow_body", "redirect", "pass"]
"""What an injected fault does instead of (or around) the normal response; see `FakeWorkspace.inject`."""

_FAULT_ACTIONS: Final = frozenset(get_args(FaultAction))
_TOKEN_EXCHANGE: Final = "urn:ietf:params:oauth:grant-type:token-exchange"
_TOKEN_PATH: Final = "/oidc/v1/token"
_METADATA_PATH: Final = "/metadata-service/token"
_SERVING_PREFIX: Final = "/serving-endpoints/"
_GATEWAY_PREFIX: Final = "/ai-gateway/"
_GEMINI_PREFIX: Final = "/ai-gateway/gemini/v1beta/models/"
_ANTHROPIC_BASES: Final = frozenset({"/serving-endpoints/anthropic", "/ai-gateway/anthropic"})
_SLOW_BODY_CHUNK: Final = 4  # bytes per trickle step of the "slow_body" fault
_SLOW_BODY_DEFAULT_INTERVAL: Final = 0.02
_STOP_JOIN_SECONDS: Final = 1.0
_MAX_LINE: Final = 65536
_MAX_HEADERS: Final = 200

_ERROR_CODES: Final[Mapping[int, str]] = {
    400: "BAD_REQUEST",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "RESOURCE_CONFLICT",
    429: "REQUEST_LIMIT_EXCEEDED",
    499: "CANCELLED",
    500: "INTERNAL_ERROR",
    501: "NOT_IMPLEMENTED",
    502: "BAD_GATEWAY",
    503: "TEMPORARILY_UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the emulator received it."""

    method: str
    """HTTP method, upper case."""
    path: str
    """Request path without the query string."""
    query: str
    """Raw query string (without ``?``), empty when absent."""
    headers: dict[str, str]
    """Headers with lower-cased names; repeated headers are joined with ``", "``."""
    body: bytes
    """The request body (de-chunked)."""

    def json(self) -> Any:
        """Parse the body as JSON (raises `ValueError` when it is not JSON)."""
        return json.loads(self.body)

    def form(self) -> dict[str, str]:
        """Parse a form-encoded body; for a repeated field the last value wins."""
        return dict(urllib.parse.parse_qsl(self.body.decode("utf-8", "replace"), keep_blank_values=True))


@dataclass
class _Response:
    status: int
    body: bytes = b""
    content_type: str | None = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class _Fault:
    path: str
    method: str | None
    status: int | None
    remaining: int | None
    retry_after: int | str | None
    body: str | bytes | dict[str, Any] | list[Any] | None
    content_type: str | None
    headers: list[tuple[str, str]]
    delay: float
    action: FaultAction | None
    location: str | None
    event_delay: float = 0.0

    def matches(self, method: str, path: str) -> bool:
        return path.startswith(self.path) and (self.method is None or self.method == method)


@dataclass
class _Pat:
    value: str
    token_id: str
    creation_ms: int
    expiry_ms: int
    comment: str | None
    owner: str
    scopes: list[str] | None
    revoked: bool = False

    def is_live(self, now_ms: int) -> bool:
        return not self.revoked and (self.expiry_ms == -1 or self.expiry_ms > now_ms)

    def info(self) -> dict[str, Any]:
        """The ``token_info`` object as the Token API returns it."""
        info: dict[str, Any] = {
            "token_id": self.token_id,
            "creation_time": self.creation_ms,
            "expiry_time": self.expiry_ms,
        }
        if self.comment is not None:
            info["comment"] = self.comment
        if self.scopes is not None:
            info["scopes"] = list(self.scopes)
        return info


def _json_response(status: int, obj: Any, headers: list[tuple[str, str]] | None = None) -> _Response:
    return _Response(status, json.dumps(obj).encode(), "application/json", headers or [])


def _api_error(status: int, error_code: str, message: str) -> _Response:
    return _json_response(status, {"error_code": error_code, "message": message})


def _oauth_error(status: int, error: str, description: str) -> _Response:
    return _json_response(status, {"error": error, "error_description": description})


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _encode_head(resp: _Response, *, close: bool) -> bytes:
    try:
        reason = http.HTTPStatus(resp.status).phrase
    except ValueError:
        reason = "Unknown"
    lines = [f"HTTP/1.1 {resp.status} {reason}"]
    if resp.content_type is not None:
        lines.append(f"Content-Type: {resp.content_type}")
    lines.append(f"Content-Length: {len(resp.body)}")
    lines.extend(f"{name}: {value}" for name, value in resp.headers)
    if close:
        lines.append("Connection: close")
    lines.append("\r\n")
    return "\r\n".join(lines).encode("latin-1")


def _sse(events: list[tuple[str | None, Any]]) -> bytes:
    """Server-sent events; an event's data is JSON unless it is already a string (``[DONE]``)."""
    out: list[str] = []
    for name, data in events:
        if name is not None:
            out.append(f"event: {name}\n")
        out.append(f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n")
    return "".join(out).encode()


class FakeWorkspace:
    """A Databricks workspace on ``127.0.0.1``, for one service-principal identity.

    Every valid credential (an OAuth access token from ``/oidc/v1/token``, the static `pat`, or a PAT minted through
    ``/api/2.0/token/create``) authenticates as `client_id`, which is recorded as the owner of minted tokens.

    Use it as a context manager, or call `start` and `stop`. All methods are thread-safe.
    """

    reply_text: str
    """The assistant text that the serving endpoints answer with."""
    federated_tokens: set[str]
    """Subject tokens (JWT-ish strings) that the ``token-exchange`` grant accepts; add to it freely."""

    def __init__(
        self,
        *,
        client_id: str = "devbox-emulator-client",
        client_secret: str | None = None,
        pat: str | None = None,
        port: int = 0,
        token_quota: int = 600,
        access_token_ttl: int = 3600,
        workspace_id: str = "1234567890123456",
        account_id: str = "00000000-0000-4000-8000-000000000000",
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """Configure the emulator; nothing listens until `start`.

        Args:
            client_id: the service principal's OAuth client id (also the owner of every token).
            client_secret: its OAuth secret; random (``secrets.token_hex``) when None.
            pat: a static personal access token that always authenticates; a random ``dapi…`` value when None.
                It is not managed by the Token API (not listed, not counted against the quota).
            port: the port to listen on; 0 picks a free one.
            token_quota: how many live PATs the identity may hold before ``QUOTA_EXCEEDED``.
            access_token_ttl: lifetime in seconds of OAuth access tokens (``expires_in``).
            workspace_id: reported by ``/.well-known/databricks-config``.
            account_id: reported by ``/.well-known/databricks-config``.
            ssl_context: a server-side TLS context; when given the emulator speaks HTTPS (``host`` is
                ``https://127.0.0.1:<port>``), for testing CA bundles and TLS failures.
        """
        self.ssl_context = ssl_context
        self.client_id: str = client_id
        """The service principal's OAuth client id."""
        self.client_secret: str = client_secret if client_secret is not None else secrets.token_hex(32)
        """The service principal's OAuth client secret."""
        self.pat: str = pat if pat is not None else "dapi" + secrets.token_hex(16)
        """A static PAT for `client_id` that always authenticates."""
        self.username: str = "devbox-user@example.com"
        """The user that basic authentication accepts (as `client_id`'s identity)."""
        self.password: str = "pw-" + secrets.token_hex(8) + "#%$"
        """Its password (random, with characters that need care in a config file)."""
        self.token_quota: int = token_quota
        """Maximum number of live PATs per identity."""
        self.access_token_ttl: int = access_token_ttl
        """``expires_in`` of issued OAuth access tokens, in seconds."""
        self.workspace_id: str = workspace_id
        """The workspace id reported by the host metadata endpoint."""
        self.account_id: str = account_id
        """The account id reported by the host metadata endpoint."""
        self.reply_text = "Hello from the emulator"
        self.federated_tokens = set()

        self._port = port
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._abandoned: list[RecordedRequest] = []
        self._invocations: list[dict[str, Any]] = []
        self._faults: list[_Fault] = []
        self._cancelled: list[str] = []
        self._access_tokens: dict[str, float] = {}
        self._pats: dict[str, _Pat] = {}
        self._pats_by_id: dict[str, _Pat] = {}
        self._unrevoked: dict[str, _Pat] = {}  # by token id, oldest first; keeps quota checks O(live tokens)
        self._clock_offset = 0.0
        self._stop_event = threading.Event()
        self._connections: dict[socket.socket, threading.Thread] = {}
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._routes: dict[tuple[str, str], Callable[[RecordedRequest, str], _Response]] = {
            ("POST", "/api/2.0/token/create"): self._token_create,
            ("POST", "/api/2.0/token/delete"): self._token_delete,
            ("GET", "/api/2.0/token/list"): self._token_list,
            ("POST", "/serving-endpoints/chat/completions"): self._openai_compatible,
            ("POST", "/serving-endpoints/anthropic/v1/messages"): self._anthropic_messages,
            ("POST", "/ai-gateway/anthropic/v1/messages"): self._anthropic_messages,
            ("POST", "/ai-gateway/mlflow/v1/chat/completions"): self._openai_compatible,
            ("POST", "/serving-endpoints/responses"): self._responses,
            ("POST", "/ai-gateway/codex/v1/responses"): self._responses,
            ("GET", "/serving-endpoints/models"): self._models,
            ("GET", "/ai-gateway/codex/v1/models"): self._models,
        }
        self.served_models: list[str] = [
            "databricks-claude-sonnet-4-5",
            "databricks-claude-opus-4-6",
            "databricks-claude-sonnet-4-6",
            "databricks-claude-haiku-4-5",
            "databricks-gpt-5",
            "databricks-gemini-2-5-pro",
        ]
        """The model names the models list (``GET .../models``) reports."""

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> FakeWorkspace:
        """Bind the port and serve in a background thread; returns self."""
        if self._server is not None:
            raise RuntimeError("FakeWorkspace is already started")
        self._stop_event.clear()
        server = _Server(("127.0.0.1", self._port), self)
        self._port = int(server.socket.getsockname()[1])
        thread = threading.Thread(
            target=server.serve_until_woken,
            name=f"FakeWorkspace:{self._port}",
            daemon=True,
        )
        self._server, self._thread = server, thread
        thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and cut every open connection (hanging ones included). Idempotent and quick."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._stop_event.set()
        server.wake()
        if thread is not None:
            thread.join(_STOP_JOIN_SECONDS)
        server.server_close()
        with self._lock:
            connections = list(self._connections.items())
        for conn, _ in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed by its handler
        deadline = time.monotonic() + _STOP_JOIN_SECONDS
        for _, handler_thread in connections:
            handler_thread.join(max(0.0, deadline - time.monotonic()))
        self._server = self._thread = None

    def __enter__(self) -> FakeWorkspace:
        """Start the emulator."""
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Stop the emulator."""
        self.stop()

    # ------------------------------------------------------------------ addresses

    @property
    def port(self) -> int:
        """The listening port (the requested one before `start`; kept after `stop`)."""
        return self._port

    @property
    def host(self) -> str:
        """The workspace URL, ``http://127.0.0.1:<port>``; only valid once started (and kept after `stop`)."""
        if not self._port:
            raise RuntimeError("FakeWorkspace is not started")
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        """`host` joined with an absolute path such as ``/api/2.0/token/list``."""
        return self.host + path

    @property
    def metadata_service_url(self) -> str:
        """The URL of the emulated metadata service (for ``DATABRICKS_METADATA_SERVICE_URL``)."""
        return self.url(_METADATA_PATH)

    def env(self) -> dict[str, str]:
        """The environment a Databricks App would see: ``DATABRICKS_HOST``, ``_CLIENT_ID``, ``_CLIENT_SECRET``."""
        return {
            "DATABRICKS_HOST": self.host,
            "DATABRICKS_CLIENT_ID": self.client_id,
            "DATABRICKS_CLIENT_SECRET": self.client_secret,
        }

    # ------------------------------------------------------------------ inspection

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of every request received so far (faulted ones included), oldest first."""
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        """Forget the recorded requests."""
        with self._lock:
            self._requests.clear()
            self._abandoned.clear()

    @property
    def abandoned_requests(self) -> list[RecordedRequest]:
        """Requests held by a ``"hang"`` fault whose client closed the connection (gave up), oldest first."""
        with self._lock:
            return list(self._abandoned)

    @property
    def invocations(self) -> list[dict[str, Any]]:
        """Serving calls, oldest first: ``{"endpoint", "authorization", "body", "path"}`` each."""
        with self._lock:
            return [dict(item) for item in self._invocations]

    def live_tokens(self) -> list[dict[str, Any]]:
        """Minted PATs that are neither revoked nor expired, oldest first.

        Each is ``{"token_id", "creation_time", "expiry_time", "comment", "owner"}`` (times in epoch ms,
        ``expiry_time`` -1 when the token has no lifetime, ``comment`` None when none was given).
        """
        now_ms = self._now_ms()
        with self._lock:
            return [{**pat.info(), "comment": pat.comment, "owner": pat.owner} for pat in self._live_pats(now_ms)]

    def is_live(self, token_value: str) -> bool:
        """Whether a minted PAT value would authenticate now."""
        now_ms = self._now_ms()
        with self._lock:
            pat = self._pats.get(token_value)
            return pat is not None and pat.is_live(now_ms)

    def token_value_owner(self, token_value: str) -> str | None:
        """The owner of a minted PAT value while it is live, else None."""
        now_ms = self._now_ms()
        with self._lock:
            pat = self._pats.get(token_value)
            return pat.owner if pat is not None and pat.is_live(now_ms) else None

    def token_id_of(self, token_value: str) -> str | None:
        """The ``token_id`` of a minted PAT value (live or not), or None if it was never minted here."""
        with self._lock:
            pat = self._pats.get(token_value)
            return pat.token_id if pat is not None else None

    def accepts(self, credential: str) -> bool:
        """Whether ``Authorization: Bearer <credential>`` authenticates now (an OAuth access token, the static
        `pat` or a live minted PAT)."""
        return isinstance(self._authenticate(f"Bearer {credential}"), str)

    def cancelled_streams(self) -> list[str]:
        """Paths of event streams (served with ``event_delay``) whose client closed the connection before the last
        event, in order."""
        with self._lock:
            return list(self._cancelled)

    def revoked_token_ids(self) -> list[str]:
        """Ids of minted PATs that were deleted or revoked, in minting order."""
        with self._lock:
            return [pat.token_id for pat in self._pats.values() if pat.revoked]

    # ------------------------------------------------------------------ manipulation

    def revoke_token(self, token_id: str) -> None:
        """Revoke a minted PAT server-side (as an admin would); raises `KeyError` for an unknown id."""
        with self._lock:
            self._revoke(self._pats_by_id[token_id])

    def expire_access_tokens(self) -> None:
        """Make every OAuth access token issued so far expire now."""
        with self._lock:
            self._access_tokens.clear()

    def advance_clock(self, seconds: float) -> None:
        """Move the emulator's clock forward: token expiry and creation times use the shifted clock."""
        with self._lock:
            self._clock_offset += seconds

    def inject(
        self,
        path: str,
        *,
        method: str | None = None,
        status: int | None = None,
        times: int | None = 1,
        retry_after: int | str | None = None,
        body: str | bytes | dict[str, Any] | list[Any] | None = None,
        content_type: str | None = None,
        headers: Mapping[str, str] | None = None,
        delay: float = 0.0,
        action: FaultAction | None = None,
        location: str | None = None,
        event_delay: float = 0.0,
    ) -> None:
        """Queue a fault for requests whose path starts with `path` (and whose method is `method`, if given).

        Faults are consumed first-in first-out; the first queued fault that matches a request handles it, and is
        dropped after `times` uses (None: never). The request is recorded either way.

        Args:
            path: path prefix to match, e.g. ``/api/2.0/token/create`` or ``/oidc/``.
            method: HTTP method to match (any when None).
            status: status to answer with; default 503 (307 for ``action="redirect"``).
            times: how many requests the fault handles; None keeps it until `clear_faults`.
            retry_after: integer seconds or an HTTP-date string, sent as ``Retry-After``.
            body: the error body: None gives a Databricks-shaped ``{"error_code", "message"}`` derived from the
                status; a dict or list is sent as JSON; str or bytes are sent as they are with `content_type`
                (default ``text/plain``).
            content_type: overrides the ``Content-Type`` of the fault response.
            headers: extra response headers.
            delay: seconds to wait before responding (for ``slow_body``: between trickled chunks).
            action: None answers with `status` and `body`. ``"drop"`` closes the socket without answering;
                ``"reset"`` sends part of a status line and headers, then resets the connection (``SO_LINGER`` 0);
                ``"hang"`` reads the request and never answers until `stop` or until the client closes the
                connection (then the request is in `abandoned_requests`); ``"slow_body"`` serves the normal
                response but trickles its body a few bytes every `delay` seconds (0.02 s when `delay` is 0);
                ``"redirect"`` answers `status` (307) with ``Location: <location>``; ``"pass"`` serves the normal
                response after `delay`, with `headers` and `retry_after` added.
            location: the redirect target (an absolute URL or a path); required for ``"redirect"``.
            event_delay: seconds to wait before each server-sent event of the normal response (a streamed serving
                request): the events are written one by one, chunked and flushed, so a client sees each when it is
                sent. Without `status` or `action` the fault then serves the normal response (as ``"pass"``).
        """
        if action is not None and action not in _FAULT_ACTIONS:
            raise ValueError(f"unknown fault action {action!r}; expected one of {sorted(_FAULT_ACTIONS)}")
        if action == "redirect" and not location:
            raise ValueError("action='redirect' needs a location")
        if times is not None and times < 1:
            raise ValueError("times must be at least 1 (or None for unlimited)")
        if delay < 0:
            raise ValueError("delay must not be negative")
        if event_delay < 0:
            raise ValueError("event_delay must not be negative")
        fault = _Fault(
            path=path,
            method=method.upper() if method else None,
            status=status,
            remaining=times,
            retry_after=retry_after,
            body=body,
            content_type=content_type,
            headers=list((headers or {}).items()),
            delay=delay,
            action=action,
            location=location,
            event_delay=event_delay,
        )
        with self._lock:
            self._faults.append(fault)

    def clear_faults(self) -> None:
        """Drop every queued fault."""
        with self._lock:
            self._faults.clear()

    # ------------------------------------------------------------------ request handling (server threads)

    def _now(self) -> float:
        return time.time() + self._clock_offset

    def _now_ms(self) -> int:
        return int(self._now() * 1000)

    def _record(self, req: RecordedRequest) -> _Fault | None:
        """Record a request and take the fault that handles it, if any."""
        with self._lock:
            self._requests.append(req)
            for index, fault in enumerate(self._faults):
                if fault.matches(req.method, req.path):
                    if fault.remaining is not None:
                        fault.remaining -= 1
                        if fault.remaining == 0:
                            del self._faults[index]
                    return fault
        return None

    def _respond(self, req: RecordedRequest) -> _Response:
        """The normal (fault-free) response to a request."""
        method, path = req.method, req.path
        if method == "GET":
            if path in ("/oidc/.well-known/oauth-authorization-server", "/oidc/.well-known/openid-configuration"):
                return _json_response(200, self._oidc_metadata())
            if path == "/.well-known/databricks-config":
                return _json_response(200, self._host_metadata())
            if path == "/oidc/jwks.json":
                return _json_response(200, {"keys": []})
            if path == _METADATA_PATH:
                return self._metadata_token(req)
        elif method == "POST" and path == _TOKEN_PATH:
            return self._oauth_token(req)
        if path.startswith(("/api/", _SERVING_PREFIX, _GATEWAY_PREFIX)) or path in _ANTHROPIC_BASES:
            identity = self._authenticate(req.headers.get("authorization"))
            if isinstance(identity, _Response):
                return identity
            route = self._routes.get((method, path))
            if route is not None:
                return route(req, identity)
            if method == "HEAD" and path in _ANTHROPIC_BASES:
                return _Response(200, b"", None)
            if method == "POST" and path.startswith(_GEMINI_PREFIX):
                model, _, verb = path[len(_GEMINI_PREFIX) :].partition(":")
                if model and "/" not in model and verb in ("generateContent", "streamGenerateContent"):
                    return self._gemini(req, model, stream=verb == "streamGenerateContent")
            if method == "POST" and path.startswith(_SERVING_PREFIX) and path.endswith("/invocations"):
                name = path[len(_SERVING_PREFIX) : -len("/invocations")]
                if name and "/" not in name:
                    return self._invocation(req, name)
        return _api_error(404, "ENDPOINT_NOT_FOUND", f"No API found for '{method} {path}'")

    def _fault_response(self, fault: _Fault) -> _Response:
        status = fault.status if fault.status is not None else 503
        body = fault.body
        if body is None:
            code = _ERROR_CODES.get(status, "UNKNOWN")
            try:
                phrase = http.HTTPStatus(status).phrase
            except ValueError:
                phrase = "Error"
            return _api_error(status, code, f"Injected fault: {status} {phrase}")
        if isinstance(body, dict | list):
            return _json_response(status, body)
        raw = body.encode() if isinstance(body, str) else body
        return _Response(status, raw, "text/plain")

    def _oidc_metadata(self) -> dict[str, Any]:
        issuer = self.host + "/oidc"
        return {
            "issuer": issuer,
            "authorization_endpoint": issuer + "/v1/authorize",
            "token_endpoint": issuer + "/v1/token",
            "jwks_uri": issuer + "/jwks.json",
            "response_types_supported": ["code", "id_token"],
            "grant_types_supported": ["client_credentials", "authorization_code", "refresh_token", _TOKEN_EXCHANGE],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
            "scopes_supported": ["all-apis", "sql", "offline_access", "openid", "profile", "email"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "code_challenge_methods_supported": ["S256"],
        }

    def _host_metadata(self) -> dict[str, Any]:
        return {
            "oidc_endpoint": self.host + "/oidc",
            "account_id": self.account_id,
            "workspace_id": self.workspace_id,
            "cloud": "AWS",
            "host_type": "workspace",
        }

    # --- OAuth

    def _oauth_token(self, req: RecordedRequest) -> _Response:
        form = req.form()
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        auth = req.headers.get("authorization", "")
        if auth[:6].lower() == "basic ":
            try:
                decoded = base64.b64decode(auth[6:].strip(), validate=True).decode("utf-8")
            except ValueError:
                return _oauth_error(401, "invalid_client", "Client authentication failed")
            client_id, _, client_secret = decoded.partition(":")
        grant = form.get("grant_type")
        if grant == "client_credentials":
            if not (
                client_id == self.client_id
                and client_secret is not None
                and hmac.compare_digest(client_secret.encode(), self.client_secret.encode())
            ):
                return _oauth_error(401, "invalid_client", "Client authentication failed")
            scope = form.get("scope", "").strip()
            if not scope:
                return _oauth_error(400, "invalid_request", "Missing required parameter: scope")
        elif grant == _TOKEN_EXCHANGE:
            if client_id is not None and client_id != self.client_id:
                return _oauth_error(401, "invalid_client", "Client authentication failed")
            if form.get("subject_token") not in self.federated_tokens:
                return _oauth_error(400, "invalid_grant", "The subject token is not valid for token exchange")
            scope = form.get("scope", "").strip() or "all-apis"
        elif not grant:
            return _oauth_error(400, "invalid_request", "Missing required parameter: grant_type")
        else:
            return _oauth_error(400, "unsupported_grant_type", f"Grant type {grant!r} is not supported")
        return _json_response(
            200,
            {
                "access_token": self._issue_access_token(scope),
                "token_type": "Bearer",
                "expires_in": self.access_token_ttl,
                "scope": scope,
            },
            [("Cache-Control", "no-store")],
        )

    def _metadata_token(self, req: RecordedRequest) -> _Response:
        """The metadata service: a workspace access token for the host named in ``X-Databricks-Host``."""
        if req.headers.get("x-databricks-metadata-version") != "1":
            return _api_error(400, "INVALID_PARAMETER_VALUE", "Missing or unsupported X-Databricks-Metadata-Version")
        if req.headers.get("x-databricks-host") != self.host:
            return _api_error(404, "NOT_FOUND", "This metadata service does not serve that host")
        token = self._issue_access_token("all-apis")
        return _json_response(
            200,
            {"access_token": token, "token_type": "Bearer", "expires_on": int(self._now()) + self.access_token_ttl},
        )

    def _issue_access_token(self, scope: str) -> str:
        now = self._now()
        expiry = now + self.access_token_ttl
        header = {"alg": "RS256", "kid": "emulator", "typ": "at+jwt"}
        claims = {
            "iss": self.host + "/oidc",
            "sub": self.client_id,
            "client_id": self.client_id,
            "scope": scope,
            "iat": int(now),
            "exp": int(expiry),
            "jti": secrets.token_hex(8),
        }
        token = ".".join(
            [
                _b64url(json.dumps(header).encode()),
                _b64url(json.dumps(claims).encode()),
                _b64url(secrets.token_bytes(32)),
            ]
        )
        with self._lock:
            self._access_tokens[token] = expiry
        return token

    def _authenticate(self, header: str | None) -> str | _Response:
        """The caller's identity, or the error response for a missing or invalid credential."""
        scheme, _, credential = (header or "").partition(" ")
        credential = credential.strip()
        if scheme.lower() == "basic" and credential:
            try:
                user, _, password = base64.b64decode(credential, validate=True).decode("utf-8").partition(":")
            except ValueError:
                user, password = "", ""
            if user == self.username and hmac.compare_digest(password.encode(), self.password.encode()):
                return self.client_id
            return _api_error(401, "UNAUTHENTICATED", "Invalid username or password.")
        if scheme.lower() != "bearer" or not credential:
            return _api_error(
                401, "UNAUTHENTICATED", "Credential was not sent or was of an unsupported type for this API."
            )
        now = self._now()
        with self._lock:
            expiry = self._access_tokens.get(credential)
            if expiry is not None and expiry > now:
                return self.client_id
            if credential == self.pat:
                return self.client_id
            pat = self._pats.get(credential)
            if pat is not None and pat.is_live(int(now * 1000)):
                return pat.owner
        return _json_response(
            403,
            {"error_code": 403, "message": "Invalid access token."},
            [("X-Databricks-Reason-Phrase", "Invalid access token.")],
        )

    # --- Token API

    @staticmethod
    def _json_object(req: RecordedRequest) -> dict[str, Any] | _Response:
        if not req.body.strip():
            return {}
        try:
            obj = json.loads(req.body)
        except ValueError as exc:
            return _api_error(400, "MALFORMED_REQUEST", f"Invalid JSON given in the body of the request: {exc}")
        if not isinstance(obj, dict):
            return _api_error(400, "MALFORMED_REQUEST", "Invalid JSON given in the body of the request: expected a map")
        return obj

    def _token_create(self, req: RecordedRequest, identity: str) -> _Response:
        body = self._json_object(req)
        if isinstance(body, _Response):
            return body
        comment = body.get("comment")
        if comment is not None and not isinstance(comment, str):
            return _api_error(400, "INVALID_PARAMETER_VALUE", "Invalid value for comment: expected a string")
        raw_scopes = body.get("scopes")
        if raw_scopes is not None and not (
            isinstance(raw_scopes, list) and all(isinstance(s, str) for s in raw_scopes)
        ):
            return _api_error(400, "INVALID_PARAMETER_VALUE", "Invalid value for scopes: expected a list of strings")
        lifetime = body.get("lifetime_seconds")
        if lifetime is not None:
            # int64 fields also accept their proto3-JSON string form ("3600").
            if isinstance(lifetime, str) and lifetime.lstrip("-").isdigit():
                lifetime = int(lifetime)
            if isinstance(lifetime, bool) or not isinstance(lifetime, int):
                return _api_error(
                    400, "INVALID_PARAMETER_VALUE", f"Invalid value for lifetime_seconds: {json.dumps(lifetime)}"
                )
            if lifetime <= 0:
                return _api_error(400, "INVALID_PARAMETER_VALUE", f"requirement failed: Invalid timeout: {lifetime}")
        now_ms = self._now_ms()
        with self._lock:
            live = sum(1 for pat in self._live_pats(now_ms) if pat.owner == identity)
            if live >= self.token_quota:
                return _api_error(400, "QUOTA_EXCEEDED", f"Cannot create more than {self.token_quota} tokens.")
            pat = _Pat(
                value="dapi" + secrets.token_hex(16),
                token_id=secrets.token_hex(32),
                creation_ms=now_ms,
                expiry_ms=-1 if lifetime is None else now_ms + lifetime * 1000,
                comment=comment,
                owner=identity,
                scopes=list(raw_scopes) if raw_scopes is not None else None,
            )
            self._pats[pat.value] = pat
            self._pats_by_id[pat.token_id] = pat
            self._unrevoked[pat.token_id] = pat
        return _json_response(200, {"token_value": pat.value, "token_info": pat.info()})

    def _live_pats(self, now_ms: int) -> list[_Pat]:
        """Minted PATs that authenticate at `now_ms`, oldest first (call with the lock held)."""
        return [pat for pat in self._unrevoked.values() if pat.is_live(now_ms)]

    def _revoke(self, pat: _Pat) -> None:
        """Revoke a minted PAT (call with the lock held)."""
        pat.revoked = True
        self._unrevoked.pop(pat.token_id, None)

    def _token_delete(self, req: RecordedRequest, identity: str) -> _Response:
        body = self._json_object(req)
        if isinstance(body, _Response):
            return body
        token_id = body.get("token_id")
        if not isinstance(token_id, str) or not token_id:
            return _api_error(400, "INVALID_PARAMETER_VALUE", "Missing required field: token_id")
        with self._lock:
            pat = self._pats_by_id.get(token_id)
            if pat is None or pat.revoked or pat.owner != identity:
                return _api_error(404, "RESOURCE_DOES_NOT_EXIST", f"Token with id {token_id} does not exist.")
            self._revoke(pat)
        return _json_response(200, {})

    def _token_list(self, req: RecordedRequest, identity: str) -> _Response:
        now_ms = self._now_ms()
        with self._lock:
            infos = [pat.info() for pat in self._live_pats(now_ms) if pat.owner == identity]
        return _json_response(200, {"token_infos": infos})

    # --- model serving

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

    # --- connection bookkeeping (used by the handler)

    def _track(self, conn: socket.socket) -> None:
        with self._lock:
            self._connections[conn] = threading.current_thread()

    def _untrack(self, conn: socket.socket) -> None:
        with self._lock:
            self._connections.pop(conn, None)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], workspace: FakeWorkspace) -> None:
        self.workspace = workspace
        super().__init__(address, _Handler)
        self._wake_r, self._wake_w = socket.socketpair()

    def serve_until_woken(self) -> None:
        """Accept connections until `wake` is called.

        `serve_forever` polls for its shutdown flag (every 0.5 s by default), which would make every `stop` wait;
        this loop instead sleeps in select() on the listening socket and a wake-up socket.
        """
        with selectors.DefaultSelector() as selector:
            selector.register(self.socket, selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            while True:
                for key, _ in selector.select():
                    if key.fileobj is self._wake_r:
                        return
                    try:
                        request, client_address = self.get_request()
                    except OSError:
                        continue
                    try:
                        self.process_request(request, client_address)  # starts the connection's thread
                    except Exception:
                        self.handle_error(request, client_address)
                        self.shutdown_request(request)

    def wake(self) -> None:
        """Make `serve_until_woken` return."""
        self._wake_w.send(b"x")

    def server_close(self) -> None:
        super().server_close()
        self._wake_r.close()
        self._wake_w.close()

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn(), a DNS lookup that can take seconds; skip it.
        socketserver.TCPServer.server_bind(self)
        host, port = self.socket.getsockname()[:2]
        self.server_name, self.server_port = str(host), int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], OSError):
            return  # clients going away (or stop() cutting them off) is normal here
        super().handle_error(request, client_address)


class _BadRequest(Exception):
    """The request cannot be parsed; answer with this status and close the connection."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _Handler(socketserver.StreamRequestHandler):
    """One keep-alive HTTP/1.1 connection.

    It parses requests itself: `http.server.BaseHTTPRequestHandler` runs every header block through the `email`
    parser, which tripled the emulator's per-request cost.
    """

    disable_nagle_algorithm = True
    server: _Server
    close_connection: bool

    def setup(self) -> None:
        context = self.server.workspace.ssl_context
        if context is not None:
            # The handshake runs in the connection's own thread; a failed one ends just this connection.
            self.request = self.connection = context.wrap_socket(self.request, server_side=True)
        super().setup()
        self.close_connection = False
        self.server.workspace._track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.workspace._untrack(self.connection)
            if isinstance(self.connection, ssl.SSLSocket):
                # wrap_socket took over the accepted socket, so the server's own shutdown sees a closed one.
                self.connection.close()

    def handle(self) -> None:
        stop = self.server.workspace._stop_event  # a connection accepted just before stop() must not linger
        while not self.close_connection and not stop.is_set():
            try:
                req = self._read_request()
            except _BadRequest as exc:
                self.close_connection = True
                self._write(_api_error(exc.status, "MALFORMED_REQUEST", str(exc)))
                return
            if req is None:
                return
            fault = self.server.workspace._record(req)
            if fault is None:
                self._write(self._normal(req))
            else:
                self._apply(fault, req)

    def _read_request(self) -> RecordedRequest | None:
        """The next request on the connection, or None when the client closed it."""
        line = self.rfile.readline(_MAX_LINE + 1)
        while line in (b"\r\n", b"\n"):  # tolerate stray blank lines between requests (RFC 9112 2.2)
            line = self.rfile.readline(_MAX_LINE + 1)
        if not line:
            self.close_connection = True
            return None
        if len(line) > _MAX_LINE:
            raise _BadRequest(414, "Request line too long")
        parts = line.decode("latin-1").split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise _BadRequest(400, f"Bad request line {line[:100]!r}")
        method, target, version = parts
        headers: dict[str, str] = {}
        for _ in range(_MAX_HEADERS + 1):
            raw = self.rfile.readline(_MAX_LINE + 1)
            if raw in (b"\r\n", b"\n", b""):
                break
            name, sep, value = raw.decode("latin-1").partition(":")
            if not sep or len(raw) > _MAX_LINE:
                raise _BadRequest(400, f"Bad header line {raw[:100]!r}")
            key, value = name.strip().lower(), value.strip()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        else:
            raise _BadRequest(431, "Too many headers")
        connection = headers.get("connection", "").lower()
        if version == "HTTP/1.0":
            self.close_connection = "keep-alive" not in connection
        elif "close" in connection:
            self.close_connection = True
        if headers.get("expect", "").lower() == "100-continue":
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        path, _, query = target.partition("?")
        return RecordedRequest(method.upper(), path, query, headers, self._read_body(headers))

    def _read_body(self, headers: dict[str, str]) -> bytes:
        """The request body, de-chunked."""
        if "chunked" in headers.get("transfer-encoding", "").lower():
            parts: list[bytes] = []
            while True:
                size_line = self.rfile.readline(_MAX_LINE + 1)
                try:
                    size = int(size_line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    raise _BadRequest(400, "Bad chunk size") from None
                if size == 0:
                    while self.rfile.readline(_MAX_LINE + 1) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline(_MAX_LINE + 1)
        length = headers.get("content-length")
        if length is None:
            return b""
        if not length.isdigit():
            raise _BadRequest(400, f"Bad Content-Length {length!r}")
        body = self.rfile.read(int(length))
        if len(body) != int(length):
            raise _BadRequest(400, "Request body shorter than its Content-Length")
        return body

    def _normal(self, req: RecordedRequest) -> _Response:
        try:
            resp = self.server.workspace._respond(req)
            if req.method == "HEAD":  # headers only: a body would be read as the next response
                resp.body = b""
            return resp
        except Exception as exc:  # a bug in the emulator: answer 500 and print the traceback
            self.server.handle_error(self.connection, self.client_address)
            return _api_error(500, "INTERNAL_ERROR", f"emulator error: {exc!r}")

    def _apply(self, fault: _Fault, req: RecordedRequest) -> None:
        stop = self.server.workspace._stop_event
        if fault.action == "slow_body":
            self._write_slowly(self._normal(req), fault.delay or _SLOW_BODY_DEFAULT_INTERVAL)
            return
        if fault.delay and stop.wait(fault.delay):
            self.close_connection = True
            return
        if fault.action == "drop":
            self.close_connection = True
            return
        if fault.action == "reset":
            self._reset()
            return
        if fault.action == "hang":
            self._hang(req)
            return
        if fault.action == "redirect":
            assert fault.location is not None
            resp = _Response(fault.status or 307, b"", None, [("Location", fault.location)])
        elif fault.action == "pass" or (fault.event_delay and fault.status is None and fault.action is None):
            resp = self._normal(req)
        else:
            resp = self.server.workspace._fault_response(fault)
        if fault.content_type is not None:
            resp.content_type = fault.content_type
        resp.headers.extend(fault.headers)
        if fault.retry_after is not None:
            resp.headers.append(("Retry-After", str(fault.retry_after)))
        if fault.event_delay and (resp.content_type or "").startswith("text/event-stream"):
            self._write_events(resp, fault.event_delay, req.path)
            return
        self._write(resp)

    def _hang(self, req: RecordedRequest) -> None:
        """Never answer, until `stop` or until the client closes the connection (recorded as abandoned)."""
        stop = self.server.workspace._stop_event
        self.close_connection = True
        conn = self.connection
        while not stop.is_set():
            readable, _, _ = select.select([conn], [], [], 0.05)
            if not readable:
                continue
            try:
                data = conn.recv(1, socket.MSG_PEEK)
            except ValueError:  # TLS sockets cannot peek: just wait for stop()
                stop.wait()
                return
            except OSError:
                data = b""
            if not data:
                with self.server.workspace._lock:
                    self.server.workspace._abandoned.append(req)
                return
            stop.wait(0.05)  # the client sent more (a pipelined request): keep ignoring it

    def _write(self, resp: _Response) -> None:
        self.wfile.write(_encode_head(resp, close=self.close_connection) + resp.body)

    def _write_slowly(self, resp: _Response, interval: float) -> None:
        stop = self.server.workspace._stop_event
        self.wfile.write(_encode_head(resp, close=self.close_connection))
        for start in range(0, len(resp.body), _SLOW_BODY_CHUNK):
            if stop.wait(interval):
                self.close_connection = True
                return
            self.wfile.write(resp.body[start : start + _SLOW_BODY_CHUNK])

    def _write_events(self, resp: _Response, delay: float, path: str) -> None:
        """Write an event stream chunked, one event at a time, each after `delay` seconds; a client that closes the
        connection meanwhile is recorded in `FakeWorkspace.cancelled_streams`."""
        events = [e + b"\n\n" for e in resp.body.split(b"\n\n") if e.strip()]
        lines = [f"HTTP/1.1 {resp.status} {http.HTTPStatus(resp.status).phrase}", "Transfer-Encoding: chunked"]
        lines.append(f"Content-Type: {resp.content_type}")
        lines.extend(f"{name}: {value}" for name, value in resp.headers)
        self.wfile.write("\r\n".join([*lines, "\r\n"]).encode("latin-1"))
        self.wfile.flush()
        for event in events:
            if self._client_left(delay):
                self.close_connection = True
                with self.server.workspace._lock:
                    self.server.workspace._cancelled.append(path)
                return
            try:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
                self.wfile.flush()
            except OSError:
                self.close_connection = True
                with self.server.workspace._lock:
                    self.server.workspace._cancelled.append(path)
                return
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _client_left(self, seconds: float) -> bool:
        """Wait `seconds`; True as soon as the client closes the connection (or the emulator stops)."""
        stop = self.server.workspace._stop_event
        deadline = time.monotonic() + seconds
        poller = select.poll()  # not select(): descriptors above 1023 are common with hundreds of streams
        poller.register(self.connection, select.POLLIN)
        while (left := deadline - time.monotonic()) > 0:
            if stop.is_set():
                return True
            if isinstance(self.connection, ssl.SSLSocket):
                stop.wait(min(left, 0.05))
                continue
            if poller.poll(min(left, 0.05) * 1000):
                try:
                    if self.connection.recv(1, socket.MSG_PEEK) == b"":
                        return True
                except OSError:
                    return True
                stop.wait(min(left, 0.05))  # a pipelined request waits its turn
        return stop.is_set()

    def _reset(self) -> None:
        """Send a torn status line and headers, then close with SO_LINGER 0 so the peer gets a TCP RST."""
        self.close_connection = True
        self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Le")
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.rfile.close()  # the makefile() reader holds a reference that would keep the socket open
        self.connection.close()
