"""The loopback credential gateway (issue 10), through real HTTP against the emulator."""

from __future__ import annotations

import http.client
import itertools
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import devbox_native
import pytest
from conftest import mode
from devbox_native import Config, ConfigError, Gateway, start_gateway
from devbox_native.cli import main
from devbox_native.testing import FakeWorkspace, read_events

ANTHROPIC = "/serving-endpoints/anthropic/v1/messages"
CHAT = "/serving-endpoints/chat/completions"


@pytest.fixture
def ws() -> Iterator[FakeWorkspace]:
    with FakeWorkspace() as w:
        yield w


def _m2m(ws: FakeWorkspace) -> Config:
    return Config(host=ws.host, client_id=ws.client_id, client_secret=ws.client_secret)


@pytest.fixture
def gw(ws: FakeWorkspace, tmp_path: Path) -> Iterator[Gateway]:
    with start_gateway(config=_m2m(ws), cache_path=tmp_path / "cache" / "token.json") as g:
        yield g


def _key(gw: Gateway) -> str:
    return gw.key_path.read_text().strip()


def _conn(gw: Gateway, timeout: float = 30) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", gw.port, timeout=timeout)


def _post(
    gw: Gateway, path: str, body: dict[str, Any], headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    c = _conn(gw)
    try:
        c.request("POST", path, json.dumps(body), {"Content-Type": "application/json", **(headers or {})})
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


def _served(ws: FakeWorkspace, path: str) -> list[Any]:
    return [r for r in ws.requests if r.path == path]


def _bearer_is_oauth(ws: FakeWorkspace, header: str | None) -> bool:
    """A valid credential that is not a PAT: an OAuth access token."""
    assert header is not None and header.startswith("Bearer ")
    return ws.accepts(header[7:]) and ws.token_id_of(header[7:]) is None and header[7:] != ws.pat


def test_a_plain_request_is_forwarded_with_a_fresh_token(ws: FakeWorkspace, gw: Gateway) -> None:
    key = _key(gw)
    status, headers, body = _post(
        gw, ANTHROPIC + "?beta=true", {"model": "m", "messages": []}, {"x-api-key": key, "anthropic-version": "1"}
    )
    assert status == 200, body
    assert json.loads(body)["content"][0]["text"] == ws.reply_text
    assert headers["content-type"] == "application/json"
    (seen,) = _served(ws, ANTHROPIC)
    assert seen.query == "beta=true" and seen.headers["anthropic-version"] == "1"
    assert _bearer_is_oauth(ws, seen.headers.get("authorization"))
    assert "x-api-key" not in seen.headers and key not in json.dumps(seen.headers)
    # The same under /ai-gateway/..., with the key as Bearer or as x-goog-api-key.
    for h in ({"Authorization": f"Bearer {key}"}, {"x-goog-api-key": key}):
        status, _, body = _post(gw, "/ai-gateway/mlflow/v1/chat/completions", {"model": "m", "messages": []}, h)
        assert status == 200 and json.loads(body)["choices"][0]["message"]["content"] == ws.reply_text
    status, _, body = _post(gw, "/ai-gateway/anthropic/v1/messages", {"model": "m", "messages": []}, {"x-api-key": key})
    assert status == 200 and json.loads(body)["content"][0]["text"] == ws.reply_text
    seen = _served(ws, "/ai-gateway/mlflow/v1/chat/completions")[-1]
    assert "x-goog-api-key" not in seen.headers and _bearer_is_oauth(ws, seen.headers.get("authorization"))
    assert ws.live_tokens() == []  # auto with an OAuth identity: no PAT minted


def test_upstream_errors_pass_through_verbatim(ws: FakeWorkspace, gw: Gateway) -> None:
    ws.inject(CHAT, status=429, body={"error_code": "REQUEST_LIMIT_EXCEEDED", "message": "slow down"}, retry_after=7)
    status, headers, body = _post(gw, CHAT, {"model": "m"}, {"x-api-key": _key(gw)})
    assert status == 429 and headers["retry-after"] == "7"
    assert json.loads(body) == {"error_code": "REQUEST_LIMIT_EXCEEDED", "message": "slow down"}


def test_streaming_delivers_each_event_when_the_upstream_sends_it(ws: FakeWorkspace, gw: Gateway) -> None:
    ws.inject(CHAT, event_delay=1.0)
    c = _conn(gw)
    started = time.perf_counter()  # read_events' clock
    c.request("POST", CHAT, json.dumps({"model": "m", "stream": True}), {"x-api-key": _key(gw)})
    r = c.getresponse()
    assert r.status == 200 and r.getheader("content-type") == "text/event-stream"
    arrivals = list(read_events(r))
    c.close()
    assert len(arrivals) == 4 and arrivals[-1][1] == b"data: [DONE]"
    times = [started] + [t for t, _ in arrivals]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # Each event about 1 s after the previous one, not all at the end.
    assert all(0.7 < g < 2.5 for g in gaps), gaps
    assert arrivals[0][0] - started < times[-1] - started - 2


@pytest.mark.parametrize("streams", [100, 256])
def test_concurrent_streams(ws: FakeWorkspace, gw: Gateway, streams: int) -> None:
    # 256 streams put this process (client, gateway and emulator sockets) past descriptor 1023.
    ws.inject(CHAT, event_delay=0.3, times=None)
    key = _key(gw)
    results: list[int] = []
    errors: list[BaseException] = []

    def one() -> None:
        try:
            c = _conn(gw, timeout=60)
            c.request("POST", CHAT, json.dumps({"model": "m", "stream": True}), {"x-api-key": key})
            r = c.getresponse()
            results.append(len(list(read_events(r))))
            c.close()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(streams)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    assert not errors, errors[:3]
    assert results == [4] * streams
    assert time.monotonic() - started < 30  # concurrent: streams of ~1.2 s each, far from N x 1.2 s
    assert len(_served(ws, CHAT)) == streams


def test_an_expired_token_is_replaced_and_the_request_retried_once(ws: FakeWorkspace, gw: Gateway) -> None:
    key = _key(gw)
    assert _post(gw, CHAT, {"model": "m"}, {"x-api-key": key})[0] == 200
    first = _served(ws, CHAT)[-1].headers["authorization"]
    ws.expire_access_tokens()  # the workspace now answers the cached token with 403
    body = {"model": "m", "messages": [{"role": "user", "content": "x" * 100_000}]}
    status, _, reply = _post(gw, CHAT, body, {"x-api-key": key})
    assert status == 200, reply
    refused, retried = _served(ws, CHAT)[-2:]
    assert refused.headers["authorization"] == first
    assert retried.headers["authorization"] != first and _bearer_is_oauth(ws, retried.headers["authorization"])
    assert json.loads(retried.body) == body  # the same body, sent again
    # A second refusal is passed through, not retried again.
    ws.inject(CHAT, status=403, times=2, body={"error_code": 403, "message": "Invalid access token."})
    status, _, reply = _post(gw, CHAT, {"model": "m"}, {"x-api-key": key})
    assert status == 403 and json.loads(reply)["message"] == "Invalid access token."
    assert len(_served(ws, CHAT)) == 5


def test_a_token_refreshed_in_the_middle_of_a_stream_does_not_break_it(ws: FakeWorkspace, gw: Gateway) -> None:
    key = _key(gw)
    ws.inject(CHAT, event_delay=0.7)
    c = _conn(gw)
    c.request("POST", CHAT, json.dumps({"model": "m", "stream": True}), {"x-api-key": key})
    r = c.getresponse()
    events = read_events(r)
    got = [next(events)]
    ws.expire_access_tokens()
    assert _post(gw, CHAT, {"model": "m"}, {"x-api-key": key})[0] == 200  # a new token, mid-stream
    got.extend(events)
    c.close()
    assert len(got) == 4 and got[-1][1] == b"data: [DONE]"
    tokens = {r.headers["authorization"] for r in _served(ws, CHAT)}
    assert len(tokens) == 2


@pytest.mark.parametrize("headers", [{}, {"x-api-key": "0" * 64}, {"Authorization": "Bearer nope"}])
def test_a_missing_or_wrong_key_is_refused_and_nothing_is_forwarded(
    ws: FakeWorkspace, gw: Gateway, headers: dict[str, str]
) -> None:
    ws.clear_requests()
    status, _, body = _post(gw, CHAT, {"model": "m"}, headers)
    assert status == 401 and json.loads(body)["error_code"] == "UNAUTHENTICATED"
    assert ws.requests == []


def test_other_paths_are_404_and_not_forwarded(ws: FakeWorkspace, gw: Gateway) -> None:
    ws.clear_requests()
    key = _key(gw)
    for path in ("/api/2.0/token/list", "/serving-endpoints/../api/2.0/token/create", "/serving-endpoints/%2e%2e/x"):
        status, _, body = _post(gw, path, {}, {"x-api-key": key})
        assert status == 404 and json.loads(body)["error_code"] == "ENDPOINT_NOT_FOUND", path
    assert ws.requests == []


def test_nothing_listens_beyond_127_0_0_1(gw: Gateway) -> None:
    assert gw.url == f"http://127.0.0.1:{gw.port}"
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.2", gw.port), timeout=5).close()  # also loopback, not bound
    listening = Path("/proc/net/tcp").read_text().splitlines()[1:]
    ours = [line.split() for line in listening if line.split()[1].endswith(f":{gw.port:04X}")]
    assert ours and all(f[1] == f"0100007F:{gw.port:04X}" for f in ours if f[3] == "0A")
    assert f":{gw.port:04X}" not in Path("/proc/net/tcp6").read_text()


def test_upstream_down_gives_502_naming_the_cause(ws: FakeWorkspace, gw: Gateway) -> None:
    key = _key(gw)
    assert _post(gw, CHAT, {"model": "m"}, {"x-api-key": key})[0] == 200  # a token in hand
    ws.stop()
    status, _, body = _post(gw, CHAT, {"model": "m"}, {"x-api-key": key})
    assert status == 502
    err = json.loads(body)
    assert err["error_code"] == "BAD_GATEWAY" and "cannot connect" in err["message"]


def test_a_client_disconnect_cancels_the_upstream_request(ws: FakeWorkspace, gw: Gateway) -> None:
    ws.inject(CHAT, event_delay=1.0)
    c = _conn(gw)
    c.request("POST", CHAT, json.dumps({"model": "m", "stream": True}), {"x-api-key": _key(gw)})
    r = c.getresponse()
    next(read_events(r))
    r.close()
    c.close()
    deadline = time.monotonic() + 10
    while not ws.cancelled_streams() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ws.cancelled_streams() == [CHAT]


def test_health_needs_no_key_and_shows_no_token(ws: FakeWorkspace, gw: Gateway) -> None:
    c = _conn(gw)
    c.request("GET", "/health")
    r = c.getresponse()
    body = r.read()
    c.close()
    health = json.loads(body)
    assert r.status == 200 and health["status"] == "ok" and health["kind"] == "oauth"
    assert 900 < health["token_expires_in"] <= 3600
    assert "eyJ" not in body.decode()  # no token (the emulator's OAuth tokens are JWTs)


def test_one_info_line_per_request_without_secrets(
    ws: FakeWorkspace, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="devbox_native"):
        devbox_native.refresh_logging()
        with start_gateway(config=_m2m(ws), cache_path=tmp_path / "token.json") as g:
            key = _key(g)
            _post(g, CHAT + "?secret-query=1", {"model": "m"}, {"x-api-key": key})
            _post(g, CHAT, {"model": "m"}, {"x-api-key": "wrong"})
            deadline = time.monotonic() + 5
            while sum("POST /serving" in r.getMessage() for r in caplog.records) < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("POST ")]
    assert len(lines) == 2, lines
    assert lines[0].startswith(f"POST {CHAT} -> 200 (") and lines[0].endswith(" bytes)")
    assert lines[1].startswith(f"POST {CHAT} -> 401 (")
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "secret-query" not in text and key not in text and ws.client_secret not in text
    assert "eyJ" not in text


def test_gateway_json_and_one_gateway_per_cache(
    ws: FakeWorkspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for k, v in ws.env().items():
        monkeypatch.setenv(k, v)
    cache = tmp_path / "c" / "token.json"
    state_file = cache.parent / "gateway.json"
    # A stale file (its process is gone) is replaced.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    state_file.parent.mkdir(mode=0o700)
    state_file.write_text(
        json.dumps({"pid": int(dead.stdout), "port": 1, "url": "http://127.0.0.1:1", "started_at": 0})
    )
    with start_gateway(config=_m2m(ws), cache_path=cache) as g:
        state = json.loads(state_file.read_text())
        assert state["pid"] == os.getpid() and state["port"] == g.port and state["url"] == g.url
        assert state["started_at"] <= time.time() and mode(state_file) == 0o600
        assert mode(g.key_path) == 0o600 and len(_key(g)) == 64 and mode(cache.parent) == 0o700
        running = devbox_native.running_gateway(cache)
        assert running is not None and running[:3] == (os.getpid(), g.port, g.url)
        assert running[3] == pytest.approx(state["started_at"])
        # The URL others are pointed at is derived from the port, never taken from the file: an edited
        # gateway.json cannot send CCR or an agent (and their prompts) elsewhere.
        state_file.write_text(json.dumps({**state, "url": "http://evil.example:80"}))
        running = devbox_native.running_gateway(cache)
        assert running is not None and running[2] == g.url
        state_file.write_text(json.dumps(state))
        with pytest.raises(ConfigError, match=rf"a gateway already runs .*pid {os.getpid()}, {g.url}"):
            start_gateway(config=_m2m(ws), cache_path=cache)
        key = _key(g)
        assert main("doctor", "--json", "--cache", str(cache), "--root", str(tmp_path)) in (0, 3)
    doctor = json.loads(capsys.readouterr().out)
    (check,) = [c for c in doctor["checks"] if c["check"] == "gateway"]
    assert check["url"] == g.url and check["pid"] == os.getpid() and key not in json.dumps(doctor)
    assert not state_file.exists() and devbox_native.running_gateway(cache) is None
    with start_gateway(config=_m2m(ws), cache_path=cache) as g2:
        assert _key(g2) == key  # the key survives restarts


def test_bad_arguments(ws: FakeWorkspace, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"^port: "):
        start_gateway(-1, config=_m2m(ws), cache_path=tmp_path / "t.json")
    with pytest.raises(ValueError, match=r"^port: "):
        start_gateway(70000, config=_m2m(ws), cache_path=tmp_path / "t.json")
    with pytest.raises(TypeError):
        start_gateway("8080", config=_m2m(ws), cache_path=tmp_path / "t.json")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^kind: "):
        start_gateway(config=_m2m(ws), kind="x", cache_path=tmp_path / "t.json")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"the pat strategy"):
        start_gateway(config=Config(host=ws.host, token=ws.pat), kind="oauth", cache_path=tmp_path / "t.json")
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    with pytest.raises(OSError, match=str(busy.getsockname()[1])):
        start_gateway(busy.getsockname()[1], config=_m2m(ws), cache_path=tmp_path / "t.json")
    busy.close()
    assert not (tmp_path / "gateway.json").exists()


def test_pat_kind_forwards_a_minted_pat(ws: FakeWorkspace, tmp_path: Path) -> None:
    with start_gateway(config=Config(host=ws.host, token=ws.pat), cache_path=tmp_path / "t.json") as g:
        assert g.kind == "pat"
        assert _post(g, CHAT, {"model": "m"}, {"x-api-key": _key(g)})[0] == 200
    (pat,) = ws.live_tokens()
    token = _served(ws, CHAT)[-1].headers["authorization"][7:]
    assert ws.token_id_of(token) == pat["token_id"] and token != ws.pat


def _cli_env(ws: FakeWorkspace) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if not k.startswith("DATABRICKS_")}, **ws.env()}


def test_cli_gateway_drains_on_sigterm_and_a_second_one_exits_1(ws: FakeWorkspace, tmp_path: Path) -> None:
    cache = tmp_path / "token.json"
    argv = [sys.executable, "-m", "devbox_native", "gateway", "--json", "--cache", str(cache)]
    proc = subprocess.Popen(argv, env=_cli_env(ws), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        started = json.loads(proc.stdout.readline())
        assert started["event"] == "started" and started["kind"] == "oauth" and started["pid"] == proc.pid
        port, url = started["port"], started["url"]
        second = subprocess.run(argv, env=_cli_env(ws), capture_output=True, text=True, timeout=60)
        assert second.returncode == 1 and f"pid {proc.pid}, {url}" in second.stderr
        key = subprocess.run(
            [sys.executable, "-m", "devbox_native", "gateway", "key", "--cache", str(cache)],
            env=_cli_env(ws),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert key.returncode == 0 and key.stdout.strip() == (tmp_path / "gateway.key").read_text().strip()
        ws.inject(CHAT, event_delay=0.5)
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        c.request("POST", CHAT, json.dumps({"model": "m", "stream": True}), {"x-api-key": key.stdout.strip()})
        r = c.getresponse()
        events = read_events(r)
        got = [next(events)]
        proc.send_signal(signal.SIGTERM)
        got.extend(events)  # the running stream finishes
        c.close()
        assert len(got) == 4 and got[-1][1] == b"data: [DONE]"
        assert proc.wait(timeout=30) == 0
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
        out, err = proc.communicate(timeout=10)
        assert json.loads(out.strip().splitlines()[-1]) == {"event": "stopped"}
        assert f"POST {CHAT} -> 200" in err and key.stdout.strip() not in err
        assert not (tmp_path / "gateway.json").exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_cli_gateway_key_prints_and_creates_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cache = tmp_path / "k" / "token.json"
    assert main("gateway", "key", "--cache", str(cache)) == 0
    key = capsys.readouterr().out.strip()
    assert len(key) == 64 and (cache.parent / "gateway.key").read_text().strip() == key
    assert mode(cache.parent / "gateway.key") == 0o600
    assert main("gateway", "key", "--json", "--cache", str(cache)) == 0
    assert json.loads(capsys.readouterr().out) == {"key": key}


def test_stop_cuts_what_still_runs_after_the_drain(ws: FakeWorkspace, tmp_path: Path) -> None:
    g = start_gateway(config=_m2m(ws), cache_path=tmp_path / "token.json", drain_seconds=1)
    ws.inject(CHAT, action="hang")
    c = _conn(g)
    c.request("POST", CHAT, json.dumps({"model": "m"}), {"x-api-key": _key(g)})
    deadline = time.monotonic() + 10
    while not _served(ws, CHAT) and time.monotonic() < deadline:
        time.sleep(0.02)
    started = time.monotonic()
    g.stop()
    assert 0.8 < time.monotonic() - started < 10
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        c.getresponse()
    c.close()
    g.stop()  # idempotent
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", g.port), timeout=5).close()


def test_no_token_gives_502_and_an_unhealthy_health(ws: FakeWorkspace, tmp_path: Path) -> None:
    ws.inject("/api/2.0/token/create", status=500, times=None)
    with start_gateway(config=Config(host=ws.host, token=ws.pat), cache_path=tmp_path / "token.json") as g:
        status, _, body = _post(g, CHAT, {"model": "m"}, {"x-api-key": _key(g)})
        assert status == 502 and json.loads(body)["message"].startswith("cannot get a token: ")
        assert not _served(ws, CHAT)
        c = _conn(g)
        c.request("GET", "/health")
        r = c.getresponse()
        health = json.loads(r.read())
        c.close()
        assert r.status == 503 and health["status"] == "error" and health["kind"] == "pat"
        assert ws.pat not in json.dumps(health) and ws.pat not in body.decode()


def test_emulator_event_delay_must_not_be_negative(ws: FakeWorkspace) -> None:
    with pytest.raises(ValueError, match="event_delay"):
        ws.inject(CHAT, event_delay=-1)


def test_expect_100_continue_is_answered_by_the_gateway(ws: FakeWorkspace, gw: Gateway) -> None:
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "y" * 5000}]}).encode()
    head = (
        f"POST {CHAT} HTTP/1.1\r\nHost: 127.0.0.1\r\nx-api-key: {_key(gw)}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", gw.port), timeout=30) as s:
        s.sendall(head.encode())
        assert s.recv(100).startswith(b"HTTP/1.1 100 Continue")  # like curl: the body only after this
        s.sendall(body)
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 200 OK"), reply[:200]
    (seen,) = _served(ws, CHAT)
    assert "expect" not in seen.headers and json.loads(seen.body) == json.loads(body)


def test_a_body_over_8_mib_is_not_retried_the_refusal_passes_through(ws: FakeWorkspace, gw: Gateway) -> None:
    key = _key(gw)
    assert _post(gw, CHAT, {"model": "m"}, {"x-api-key": key})[0] == 200
    ws.expire_access_tokens()
    big = {"model": "m", "messages": [{"role": "user", "content": "z" * (8 << 20)}]}
    status, _, body = _post(gw, CHAT, big, {"x-api-key": key})
    assert status == 403 and json.loads(body)["message"] == "Invalid access token."
    assert len(_served(ws, CHAT)) == 2 and len(_served(ws, CHAT)[-1].body) > 8 << 20
    # The token was not replaced by that refusal; the next small request is retried and succeeds.
    assert _post(gw, CHAT, {"model": "m"}, {"x-api-key": key})[0] == 200
