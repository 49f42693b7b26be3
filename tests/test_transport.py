"""The transport under faults, over real HTTP to the emulator: retries, budgets, timeouts, error bodies,
redirects, TLS, and that no secret reaches a message, a repr or a log line."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import devbox_native
import pytest
from devbox_native import Config
from devbox_native.errors import (
    ApiError,
    BadRequest,
    DeadlineExceeded,
    InternalError,
    TemporarilyUnavailable,
    TooManyRequests,
    TransportError,
    Unauthenticated,
)
from devbox_native.testing import FakeWorkspace

CREATE = "/api/2.0/token/create"
LIST = "/api/2.0/token/list"


@pytest.fixture
def ws() -> Iterator[FakeWorkspace]:
    with FakeWorkspace() as w:
        yield w


@pytest.fixture(autouse=True)
def _debug_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="devbox_native")
    devbox_native.refresh_logging()


def cfg(ws: FakeWorkspace, **kw: float) -> Config:
    return Config(host=ws.host, token=ws.pat, **kw)


def hits(ws: FakeWorkspace, path: str) -> int:
    return len([r for r in ws.requests if r.path == path])


def assert_no_secret(ws: FakeWorkspace, exc: BaseException | None, caplog: pytest.LogCaptureFixture) -> None:
    texts = [caplog.text]
    while exc is not None:
        texts += [str(exc), repr(exc)]
        exc = exc.__cause__
    for text in texts:
        assert ws.pat not in text
        assert ws.client_secret not in text


def test_429_with_retry_after_is_honoured(ws: FakeWorkspace, caplog: pytest.LogCaptureFixture) -> None:
    ws.inject(CREATE, status=429, retry_after=1)
    t0 = time.monotonic()
    created = devbox_native.create_token(60, "x", config=cfg(ws))
    elapsed = time.monotonic() - t0
    assert ws.is_live(created.token_value)
    assert hits(ws, CREATE) == 2
    assert 1.0 <= elapsed < 10
    assert_no_secret(ws, None, caplog)


def test_429_without_retry_after_backs_off_and_succeeds(ws: FakeWorkspace) -> None:
    ws.inject(CREATE, status=429)
    devbox_native.create_token(60, config=cfg(ws))
    assert hits(ws, CREATE) == 2


def test_retry_after_as_an_http_date(ws: FakeWorkspace) -> None:
    from email.utils import formatdate

    ws.inject(CREATE, status=503, retry_after=formatdate(time.time() + 1, usegmt=True))
    t0 = time.monotonic()
    devbox_native.create_token(60, config=cfg(ws))
    assert hits(ws, CREATE) == 2
    assert time.monotonic() - t0 < 10


def test_503_three_times_then_success(ws: FakeWorkspace) -> None:
    ws.inject(CREATE, status=503, times=3, retry_after=0)
    devbox_native.create_token(60, config=cfg(ws))
    assert hits(ws, CREATE) == 4


def test_budget_exhaustion_is_timeout_error_chained_to_the_last_error(
    ws: FakeWorkspace, caplog: pytest.LogCaptureFixture
) -> None:
    ws.inject(CREATE, status=503, times=None, retry_after=1)
    t0 = time.monotonic()
    with pytest.raises(TimeoutError) as exc:
        devbox_native.create_token(60, config=cfg(ws, retry_timeout_seconds=2.5))
    elapsed = time.monotonic() - t0
    assert 1.0 <= elapsed < 2.5 + 1.0  # never past the budget (plus scheduling slack)
    cause = exc.value.__cause__
    assert isinstance(cause, TemporarilyUnavailable)
    assert (cause.status_code, cause.error_code, cause.retry_after_secs) == (503, "TEMPORARILY_UNAVAILABLE", 1.0)
    assert 2 <= hits(ws, CREATE) <= 4
    assert_no_secret(ws, exc.value, caplog)


@pytest.mark.parametrize(
    ("status", "cls"), [(500, InternalError), (502, ApiError), (504, DeadlineExceeded), (400, BadRequest)]
)
def test_server_errors_are_typed_and_create_is_not_repeated(
    ws: FakeWorkspace, caplog: pytest.LogCaptureFixture, status: int, cls: type[ApiError]
) -> None:
    ws.inject(CREATE, status=status, times=None)
    with pytest.raises(cls) as exc:
        devbox_native.create_token(60, config=cfg(ws, retry_timeout_seconds=1))
    assert hits(ws, CREATE) == 1
    assert type(exc.value) is cls
    assert exc.value.status_code == status
    assert_no_secret(ws, exc.value, caplog)


def test_429_until_the_budget_ends(ws: FakeWorkspace) -> None:
    ws.inject(CREATE, status=429, times=None)
    with pytest.raises(TimeoutError) as exc:
        devbox_native.create_token(60, config=cfg(ws, retry_timeout_seconds=2))
    assert isinstance(exc.value.__cause__, TooManyRequests)
    assert hits(ws, CREATE) >= 2


def test_reset_mid_response_is_not_repeated_for_create(ws: FakeWorkspace, caplog: pytest.LogCaptureFixture) -> None:
    ws.inject(CREATE, action="reset")
    with pytest.raises(TransportError) as exc:
        devbox_native.create_token(60, config=cfg(ws))
    assert hits(ws, CREATE) == 1
    assert isinstance(exc.value, ConnectionError)
    assert_no_secret(ws, exc.value, caplog)


def test_reset_and_drop_are_retried_for_idempotent_calls(ws: FakeWorkspace) -> None:
    ws.inject(LIST, action="reset")
    ws.inject(LIST, action="drop")
    assert devbox_native.list_tokens(config=cfg(ws)) == []
    assert hits(ws, LIST) == 3


def test_a_server_that_never_answers_times_out(ws: FakeWorkspace, caplog: pytest.LogCaptureFixture) -> None:
    ws.inject(CREATE, action="hang")
    t0 = time.monotonic()
    with pytest.raises(TimeoutError) as exc:
        devbox_native.create_token(60, config=cfg(ws, http_timeout_seconds=1))
    assert 0.9 <= time.monotonic() - t0 < 5
    assert hits(ws, CREATE) == 1
    assert_no_secret(ws, exc.value, caplog)


def test_a_hang_on_an_idempotent_call_is_retried(ws: FakeWorkspace) -> None:
    ws.inject(LIST, action="hang")
    assert devbox_native.list_tokens(config=cfg(ws, http_timeout_seconds=0.5, retry_timeout_seconds=10)) == []
    assert hits(ws, LIST) == 2


def test_slow_body_within_the_timeout_succeeds(ws: FakeWorkspace) -> None:
    ws.inject(CREATE, action="slow_body", delay=0.01)
    created = devbox_native.create_token(60, config=cfg(ws))
    assert ws.is_live(created.token_value)


def test_slow_body_past_the_timeout_is_a_timeout(ws: FakeWorkspace) -> None:
    ws.inject(CREATE, action="slow_body", delay=0.3)
    with pytest.raises(TimeoutError):
        devbox_native.create_token(60, config=cfg(ws, http_timeout_seconds=0.5))
    assert hits(ws, CREATE) == 1


def test_html_error_page(ws: FakeWorkspace) -> None:
    page = "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"
    ws.inject(CREATE, status=502, body=page, content_type="text/html")
    with pytest.raises(ApiError) as exc:
        devbox_native.create_token(60, config=cfg(ws))
    assert (str(exc.value), exc.value.status_code, exc.value.error_code) == ("502 Bad Gateway", 502, None)


def test_text_code_message_body(ws: FakeWorkspace) -> None:
    ws.inject(CREATE, status=400, body="INVALID_PARAMETER_VALUE: lifetime too long")
    with pytest.raises(devbox_native.errors.InvalidParameterValue) as exc:
        devbox_native.create_token(60, config=cfg(ws))
    assert str(exc.value) == "lifetime too long"


def test_empty_body_gives_the_reason_phrase(ws: FakeWorkspace) -> None:
    ws.inject(CREATE, status=500, body=b"")
    with pytest.raises(InternalError) as exc:
        devbox_native.create_token(60, config=cfg(ws))
    assert str(exc.value) == "Internal Server Error"


def test_unparseable_body_never_echoes_the_request(ws: FakeWorkspace, caplog: pytest.LogCaptureFixture) -> None:
    # A proxy that echoes what it got, Authorization header included: the token must not surface.
    ws.inject(CREATE, status=500, body=f"upstream said: Authorization: Bearer {ws.pat}")
    with pytest.raises(InternalError) as exc:
        devbox_native.create_token(60, config=cfg(ws))
    assert "***" in str(exc.value)
    assert_no_secret(ws, exc.value, caplog)


def test_invalid_json_and_missing_token_value_are_api_errors(ws: FakeWorkspace) -> None:
    ws.inject(CREATE, status=200, body="{not json", content_type="application/json")
    with pytest.raises(ApiError, match="not JSON"):
        devbox_native.create_token(60, config=cfg(ws))
    ws.inject(CREATE, status=200, body={"token_info": {"token_id": "x"}})
    with pytest.raises(ApiError, match="no token_value"):
        devbox_native.create_token(60, config=cfg(ws))


def test_a_redirect_to_another_port_carries_no_authorization(ws: FakeWorkspace) -> None:
    with FakeWorkspace() as other:
        ws.inject(CREATE, action="redirect", status=307, location=other.url(CREATE))
        with pytest.raises(Unauthenticated):
            devbox_native.create_token(60, config=cfg(ws))
        (followed,) = [r for r in other.requests if r.path == CREATE]
        assert "authorization" not in followed.headers
        assert ws.pat not in str(followed.headers)


def test_a_same_origin_redirect_keeps_authorization(ws: FakeWorkspace) -> None:
    ws.inject("/api/2.0/token/old-create", action="redirect", status=307, location=CREATE)
    created = devbox_native.create_token(60, config=cfg(ws))
    assert ws.is_live(created.token_value)


@pytest.mark.parametrize("call", ["create", "list"])
def test_https_to_a_plain_http_port_fails_fast_with_a_tls_error(ws: FakeWorkspace, call: str) -> None:
    config = Config(host=f"https://127.0.0.1:{ws.port}", token=ws.pat)
    t0 = time.monotonic()
    with pytest.raises(TransportError, match="TLS failure"):
        if call == "create":
            devbox_native.create_token(60, config=config)
        else:  # idempotent: still not retried, a TLS failure does not heal
            devbox_native.list_tokens(config=config)
    assert time.monotonic() - t0 < 5


def test_connection_refused_is_retried_until_the_budget(ws: FakeWorkspace, caplog: pytest.LogCaptureFixture) -> None:
    port = ws.port
    ws.stop()
    config = Config(host=f"http://127.0.0.1:{port}", token="x-token", retry_timeout_seconds=1.5)
    t0 = time.monotonic()
    with pytest.raises(TimeoutError) as exc:
        devbox_native.create_token(60, config=config)
    assert 0.4 <= time.monotonic() - t0 < 6
    assert isinstance(exc.value.__cause__, TransportError)
    assert str(exc.value.__cause__) == f"cannot reach http://127.0.0.1:{port}: connection refused"
    # Never silently: one WARNING for the wave of retries, not one per attempt.
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [f"cannot reach http://127.0.0.1:{port}: connection refused; retrying for up to 2 s"]


def test_oauth_token_requests_get_the_same_retry_policy(clean_env: pytest.MonkeyPatch) -> None:
    with FakeWorkspace() as w:
        w.inject("/oidc/v1/token", status=503, retry_after=0)
        w.inject("/oidc/.well-known", action="reset")
        config = Config(host=w.host, client_id=w.client_id, client_secret=w.client_secret)
        created = devbox_native.create_token(60, config=config)
        assert w.is_live(created.token_value)
        assert hits(w, "/oidc/v1/token") == 2


def test_one_debug_line_per_round_trip(ws: FakeWorkspace, caplog: pytest.LogCaptureFixture) -> None:
    ws.inject(CREATE, status=503, retry_after=0)
    devbox_native.create_token(60, config=cfg(ws))
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("devbox_native") and "->" in r.getMessage()]
    assert len(lines) == 2, lines
    assert lines[0].startswith("POST /api/2.0/token/create -> 503 (attempt 1, ")
    assert lines[1].startswith("POST /api/2.0/token/create -> 200 (attempt 2, ")
    assert all(r.levelno == logging.DEBUG for r in caplog.records if "->" in r.getMessage())
    assert_no_secret(ws, None, caplog)


def test_a_redirect_loop_stops_after_ten_hops(ws: FakeWorkspace) -> None:
    ws.inject(LIST, action="redirect", status=307, location=LIST, times=None)
    with pytest.raises(TransportError, match=r"too many redirects$"):
        devbox_native.list_tokens(config=cfg(ws, retry_timeout_seconds=2))
    assert hits(ws, LIST) == 11  # the request and ten redirects


def test_each_attempt_is_capped_by_what_is_left_of_the_budget(ws: FakeWorkspace) -> None:
    # A server that never answers, a 60 s attempt timeout (the default) and a 2 s budget: the budget wins.
    ws.inject(LIST, action="hang", times=None)
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        devbox_native.list_tokens(config=cfg(ws, retry_timeout_seconds=2))
    assert time.monotonic() - t0 < 2 + 2  # well under the 60 s a whole attempt would take


def test_a_body_over_the_cap_is_too_large_not_truncated(ws: FakeWorkspace) -> None:
    big = b'{"token_infos": [' + b" " * (8 << 20) + b"]}"
    ws.inject(LIST, status=200, body=big, content_type="application/json", times=None)
    with pytest.raises(TransportError, match=r"response body too large \(more than 8 MiB\)"):
        devbox_native.list_tokens(config=cfg(ws))
    assert hits(ws, LIST) == 1  # permanent: not retried


@pytest.mark.parametrize(
    "headers",
    [{"X-Huge": "a" * 1_000_000}, {f"X-H{i}": "v" for i in range(5000)}],
    ids=["1 MB header", "5000 headers"],
)
def test_a_malformed_response_fails_at_once(ws: FakeWorkspace, headers: dict[str, str]) -> None:
    ws.inject(LIST, action="pass", headers=headers, times=None)
    t0 = time.monotonic()
    with pytest.raises(TransportError, match="malformed response"):
        devbox_native.list_tokens(config=cfg(ws, retry_timeout_seconds=30))
    assert hits(ws, LIST) == 1
    assert time.monotonic() - t0 < 5  # reported at once, not after the 30 s budget


def test_retry_after_longer_than_the_budget_says_so(ws: FakeWorkspace) -> None:
    ws.inject(CREATE, status=503, retry_after=99999999)
    t0 = time.monotonic()
    with pytest.raises(TimeoutError) as exc:
        devbox_native.create_token(60, config=cfg(ws))
    assert time.monotonic() - t0 < 5
    message = str(exc.value)
    assert "asked to wait 99999999 s before retrying (Retry-After)" in message, message
    assert "longer than the 300 s left of the 300 s budget" in message, message
    assert isinstance(exc.value.__cause__, TemporarilyUnavailable)


def test_the_oauth_path_raises_timeout_error_chained_to_the_last_error(clean_env: pytest.MonkeyPatch) -> None:
    with FakeWorkspace() as w:
        w.inject("/oidc/v1/token", status=503, times=None)
        config = Config(host=w.host, client_id=w.client_id, client_secret=w.client_secret, retry_timeout_seconds=1.5)
        t0 = time.monotonic()
        with pytest.raises(TimeoutError) as exc:
            devbox_native.list_tokens(config=config)
        assert time.monotonic() - t0 < 1.5 + 2
        assert not isinstance(exc.value, devbox_native.errors.AuthError)
        assert str(exc.value).startswith("oauth-m2m: POST /oidc/v1/token: timed out after 2 s of retries")
        assert isinstance(exc.value.__cause__, TemporarilyUnavailable)
        assert w.client_secret not in str(exc.value)


def test_waiters_share_one_failed_token_request(clean_env: pytest.MonkeyPatch) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with FakeWorkspace() as w:
        w.inject("/oidc/v1/token", status=401, body={"error": "invalid_client", "error_description": "no"}, delay=0.5)
        config = Config(host=w.host, client_id=w.client_id, client_secret=w.client_secret)

        def call(_: int) -> str:
            try:
                devbox_native.list_tokens(config=config)
            except devbox_native.errors.AuthError as exc:
                return str(exc)
            return "ok"

        t0 = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(call, range(8)))
        assert all(r.startswith("oauth-m2m: invalid_client: no") for r in results), results
        assert hits(w, "/oidc/v1/token") == 1
        assert time.monotonic() - t0 < 4  # one failure shared, not eight in a row
