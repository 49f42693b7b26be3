"""The wire: the HTTP/1.1 server and its connection handler, request recording and fault injection."""

from __future__ import annotations

import http
import json
import select
import selectors
import socket
import socketserver
import struct
import sys
import threading
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal, get_args

from devbox_native.testing._base import _WorkspaceBase

if TYPE_CHECKING:
    import ssl

    from devbox_native.testing._workspace import FakeWorkspace

FaultAction = Literal["drop", "reset", "hang", "slow_body", "redirect", "pass"]
"""What an injected fault does instead of (or around) the normal response; see `FakeWorkspace.inject`."""

_FAULT_ACTIONS: Final = frozenset(get_args(FaultAction))
_SLOW_BODY_CHUNK: Final = 4  # bytes per trickle step of the "slow_body" fault
_SLOW_BODY_DEFAULT_INTERVAL: Final = 0.02
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


def _json_response(status: int, obj: Any, headers: list[tuple[str, str]] | None = None) -> _Response:
    return _Response(status, json.dumps(obj).encode(), "application/json", headers or [])


def _api_error(status: int, error_code: str, message: str) -> _Response:
    return _json_response(status, {"error_code": error_code, "message": message})


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


class _Wire(_WorkspaceBase):
    """Request recording and the fault queue of `FakeWorkspace`."""

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

    def cancelled_streams(self) -> list[str]:
        """Paths of event streams (served with ``event_delay``) whose client closed the connection before the last
        event, in order."""
        with self._lock:
            return list(self._cancelled)

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

    def _track(self, conn: socket.socket) -> None:
        with self._lock:
            self._connections[conn] = threading.current_thread()

    def _untrack(self, conn: socket.socket) -> None:
        with self._lock:
            self._connections.pop(conn, None)


class _Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    # Not http.server's ThreadingHTTPServer: importing http.server (email, html, mimetypes, http.client, ssl) was
    # a quarter of the emulator's start-up, for a class that adds only these two settings and a DNS lookup.
    allow_reuse_address = True
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
    tls: bool
    """Whether the connection is wrapped in TLS (`ssl` is imported only by a caller that passes a context)."""

    def setup(self) -> None:
        context: ssl.SSLContext | None = self.server.workspace.ssl_context
        self.tls = context is not None
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
            if self.tls:
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
            if self.tls:
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
