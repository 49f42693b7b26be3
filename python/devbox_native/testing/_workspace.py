"""`FakeWorkspace`: the emulator's configuration, its lifecycle and the router that sends each request to its part."""

from __future__ import annotations

import secrets
import socket
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final

from devbox_native.testing._oauth import _METADATA_PATH, _TOKEN_PATH, _OAuth
from devbox_native.testing._serving import _ANTHROPIC_BASES, _GATEWAY_PREFIX, _GEMINI_PREFIX, _SERVING_PREFIX, _Serving
from devbox_native.testing._tokens import _Pat, _TokenApi
from devbox_native.testing._wire import RecordedRequest, _api_error, _Fault, _json_response, _Response, _Server, _Wire

if TYPE_CHECKING:
    import ssl

_STOP_JOIN_SECONDS: Final = 1.0


class FakeWorkspace(_Wire, _OAuth, _TokenApi, _Serving):
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

    def env(self) -> dict[str, str]:
        """The environment a Databricks App would see: ``DATABRICKS_HOST``, ``_CLIENT_ID``, ``_CLIENT_SECRET``."""
        return {
            "DATABRICKS_HOST": self.host,
            "DATABRICKS_CLIENT_ID": self.client_id,
            "DATABRICKS_CLIENT_SECRET": self.client_secret,
        }

    # ------------------------------------------------------------------ request handling (server threads)

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
