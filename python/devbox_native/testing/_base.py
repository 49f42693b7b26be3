"""The state every part of the emulator shares: the configuration, the lock that guards it, the clock and the
addresses. `FakeWorkspace.__init__` sets every attribute declared here (and documents the public ones)."""

from __future__ import annotations

import socket
import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import ssl

    from devbox_native.testing._tokens import _Pat
    from devbox_native.testing._wire import RecordedRequest, _Fault


class _WorkspaceBase:
    """What the parts of `FakeWorkspace` (wire, OAuth, Token API, serving) read and write."""

    ssl_context: ssl.SSLContext | None
    client_id: str
    client_secret: str
    pat: str
    username: str
    password: str
    token_quota: int
    access_token_ttl: int
    workspace_id: str
    account_id: str
    reply_text: str
    federated_tokens: set[str]
    served_models: list[str]

    _port: int
    _lock: threading.Lock
    _requests: list[RecordedRequest]
    _abandoned: list[RecordedRequest]
    _invocations: list[dict[str, Any]]
    _faults: list[_Fault]
    _cancelled: list[str]
    _access_tokens: dict[str, float]
    _pats: dict[str, _Pat]
    _pats_by_id: dict[str, _Pat]
    _unrevoked: dict[str, _Pat]
    _clock_offset: float
    _stop_event: threading.Event
    _connections: dict[socket.socket, threading.Thread]

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

    def advance_clock(self, seconds: float) -> None:
        """Move the emulator's clock forward: token expiry and creation times use the shifted clock."""
        with self._lock:
            self._clock_offset += seconds

    def _now(self) -> float:
        return time.time() + self._clock_offset

    def _now_ms(self) -> int:
        return int(self._now() * 1000)
