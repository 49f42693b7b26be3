"""Tests of the Databricks workspace emulator (`devbox_native.testing`), over real HTTP with the standard library."""

from __future__ import annotations

import base64
import dataclasses
import http.client
import itertools
import json
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from devbox_native.testing import FakeWorkspace, RecordedRequest, read_events

PAT_RE = re.compile(r"dapi[0-9a-f]{32}")
TOKEN_ID_RE = re.compile(r"[0-9a-f]{64}")
INVALID_TOKEN_BODY = {"error_code": 403, "message": "Invalid access token."}
MISSING_CREDENTIAL_BODY = {
    "error_code": "UNAUTHENTICATED",
    "message": "Credential was not sent or was of an unsupported type for this API.",
}


@dataclasses.dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def call(
    ws: FakeWorkspace,
    method: str,
    path: str,
    *,
    body: bytes | str | None = None,
    json_body: Any = None,
    token: str | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
) -> Reply:
    """One request on a fresh connection; header names in the reply are lower-cased."""
    sent = dict(headers or {})
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    if json_body is not None:
        body = json.dumps(json_body)
        sent.setdefault("Content-Type", "application/json")
    conn = http.client.HTTPConnection("127.0.0.1", ws.port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=sent)
        resp = conn.getresponse()
        return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()


def oauth_token(ws: FakeWorkspace) -> str:
    reply = call(
        ws,
        "POST",
        "/oidc/v1/token",
        body="grant_type=client_credentials&scope=all-apis",
        headers={"Authorization": basic(ws.client_id, ws.client_secret)},
    )
    assert reply.status == 200, reply.body
    token: str = reply.json()["access_token"]
    return token


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def create_pat(ws: FakeWorkspace, token: str, **fields: Any) -> dict[str, Any]:
    reply = call(ws, "POST", "/api/2.0/token/create", json_body=fields, token=token)
    assert reply.status == 200, reply.body
    result: dict[str, Any] = reply.json()
    return result


def raw_exchange(ws: FakeWorkspace, request: bytes, timeout: float = 5.0) -> tuple[bytes, BaseException | None]:
    """Send raw bytes; collect what comes back until EOF or an error (returned, not raised)."""
    received = b""
    with socket.create_connection(("127.0.0.1", ws.port), timeout=timeout) as sock:
        sock.sendall(request)
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except OSError as exc:
            return received, exc
    return received, None


# ---------------------------------------------------------------------------------------------- lifecycle, config


def test_defaults_and_env() -> None:
    ws = FakeWorkspace()
    assert ws.client_id == "devbox-emulator-client"
    assert re.fullmatch(r"[0-9a-f]{64}", ws.client_secret)
    assert PAT_RE.fullmatch(ws.pat)
    assert FakeWorkspace().pat != ws.pat
    assert ws.workspace_id == "1234567890123456"
    with pytest.raises(RuntimeError):
        _ = ws.host
    with ws:
        assert ws.port > 0
        assert ws.host == f"http://127.0.0.1:{ws.port}"
        assert ws.env() == {
            "DATABRICKS_HOST": ws.host,
            "DATABRICKS_CLIENT_ID": ws.client_id,
            "DATABRICKS_CLIENT_SECRET": ws.client_secret,
        }
        with pytest.raises(RuntimeError):
            ws.start()
    ws.stop()  # idempotent
    assert not [t for t in threading.enumerate() if t.name == f"FakeWorkspace:{ws.port}"]  # accept loop ended
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", ws.port), timeout=2).close()


def test_explicit_credentials_are_used() -> None:
    with FakeWorkspace(client_id="sp-1", client_secret="s3cret", pat="static-pat") as ws:
        assert (ws.client_id, ws.client_secret, ws.pat) == ("sp-1", "s3cret", "static-pat")
        assert call(ws, "GET", "/api/2.0/token/list", token="static-pat").status == 200
        bad = call(
            ws,
            "POST",
            "/oidc/v1/token",
            body="grant_type=client_credentials&scope=all-apis",
            headers={"Authorization": basic("sp-1", "wrong")},
        )
        assert bad.status == 401


def test_fixture_is_started(fake_workspace: FakeWorkspace) -> None:
    assert call(fake_workspace, "GET", "/oidc/.well-known/oauth-authorization-server").status == 200


@pytest.fixture
def polluted_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("DATABRICKS_TOKEN", "leftover")
    monkeypatch.setenv("DATABRICKS_CONFIG_PROFILE", "prod")
    monkeypatch.setenv("CLAUDE_CODE_TOKEN_EXPIRY_SECONDS", "60")
    yield


def test_env_fixture_replaces_databricks_env(polluted_env: None, fake_workspace_env: FakeWorkspace) -> None:
    import os

    databricks_env = {k: v for k, v in os.environ.items() if k.startswith("DATABRICKS_")}
    assert databricks_env == fake_workspace_env.env()
    assert "CLAUDE_CODE_TOKEN_EXPIRY_SECONDS" not in os.environ


# ---------------------------------------------------------------------------------------------- discovery


@pytest.mark.parametrize(
    "path", ["/oidc/.well-known/oauth-authorization-server", "/oidc/.well-known/openid-configuration"]
)
def test_oidc_discovery(fake_workspace: FakeWorkspace, path: str) -> None:
    reply = call(fake_workspace, "GET", path)
    assert reply.status == 200
    assert reply.headers["content-type"] == "application/json"
    doc = reply.json()
    host = fake_workspace.host
    assert doc["issuer"] == host + "/oidc"
    assert doc["token_endpoint"] == host + "/oidc/v1/token"
    assert doc["authorization_endpoint"] == host + "/oidc/v1/authorize"
    assert call(fake_workspace, "GET", doc["jwks_uri"].removeprefix(host)).status == 200


def test_host_metadata() -> None:
    with FakeWorkspace(workspace_id="42") as ws:
        doc = call(ws, "GET", "/.well-known/databricks-config").json()
        assert doc["oidc_endpoint"] == ws.host + "/oidc"
        assert doc["workspace_id"] == "42"
        assert doc["account_id"] == ws.account_id
        assert doc["cloud"] == "AWS"


# ---------------------------------------------------------------------------------------------- OAuth token endpoint


def test_client_credentials_basic(fake_workspace: FakeWorkspace) -> None:
    ws = fake_workspace
    reply = call(
        ws,
        "POST",
        "/oidc/v1/token",
        body="grant_type=client_credentials&scope=all-apis",
        headers={
            "Authorization": basic(ws.client_id, ws.client_secret),
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    assert reply.status == 200
    assert reply.headers["content-type"] == "application/json"
    doc = reply.json()
    assert doc["token_type"] == "Bearer"
    assert doc["expires_in"] == 3600
    assert doc["scope"] == "all-apis"
    assert doc["access_token"] != oauth_token(ws)  # every grant issues a new token
    assert call(ws, "GET", "/api/2.0/token/list", token=doc["access_token"]).status == 200


def test_client_credentials_form_fields(fake_workspace: FakeWorkspace) -> None:
    ws = fake_workspace
    form = f"grant_type=client_credentials&scope=all-apis&client_id={ws.client_id}&client_secret={ws.client_secret}"
    reply = call(ws, "POST", "/oidc/v1/token", body=form)
    assert reply.status == 200
    assert call(ws, "GET", "/api/2.0/token/list", token=reply.json()["access_token"]).status == 200


@pytest.mark.parametrize(
    "how",
    ["wrong-secret-basic", "wrong-id-basic", "wrong-secret-form", "no-credentials", "garbled-basic"],
)
def test_client_credentials_rejected(fake_workspace: FakeWorkspace, how: str) -> None:
    ws = fake_workspace
    form = "grant_type=client_credentials&scope=all-apis"
    headers: dict[str, str] = {}
    if how == "wrong-secret-basic":
        headers["Authorization"] = basic(ws.client_id, "nope")
    elif how == "wrong-id-basic":
        headers["Authorization"] = basic("someone-else", ws.client_secret)
    elif how == "wrong-secret-form":
        form += f"&client_id={ws.client_id}&client_secret=nope"
    elif how == "garbled-basic":
        headers["Authorization"] = "Basic !!!not-base64"
    reply = call(ws, "POST", "/oidc/v1/token", body=form, headers=headers)
    assert reply.status == 401
    assert reply.headers["content-type"] == "application/json"
    assert reply.json() == {"error": "invalid_client", "error_description": "Client authentication failed"}


def test_token_request_errors(fake_workspace: FakeWorkspace) -> None:
    ws = fake_workspace
    auth = {"Authorization": basic(ws.client_id, ws.client_secret)}
    no_scope = call(ws, "POST", "/oidc/v1/token", body="grant_type=client_credentials", headers=auth)
    assert no_scope.status == 400
    assert no_scope.json()["error"] == "invalid_request"
    odd = call(ws, "POST", "/oidc/v1/token", body="grant_type=password&scope=all-apis", headers=auth)
    assert odd.status == 400
    assert odd.json()["error"] == "unsupported_grant_type"
    missing = call(ws, "POST", "/oidc/v1/token", body="scope=all-apis", headers=auth)
    assert missing.status == 400


def test_token_exchange(fake_workspace: FakeWorkspace) -> None:
    ws = fake_workspace
    ws.federated_tokens.add("eyJ.federated.jwt")
    grant = "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange"
    jwt_type = "subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Ajwt"
    good = call(
        ws,
        "POST",
        "/oidc/v1/token",
        body=f"{grant}&{jwt_type}&subject_token=eyJ.federated.jwt&client_id={ws.client_id}&scope=all-apis",
    )
    assert good.status == 200
    assert call(ws, "GET", "/api/2.0/token/list", token=good.json()["access_token"]).status == 200
    unknown = call(
        ws, "POST", "/oidc/v1/token", body=f"{grant}&{jwt_type}&subject_token=eyJ.other&client_id={ws.client_id}"
    )
    assert unknown.status == 400
    assert unknown.json()["error"] == "invalid_grant"
    wrong_client = call(
        ws, "POST", "/oidc/v1/token", body=f"{grant}&{jwt_type}&subject_token=eyJ.federated.jwt&client_id=other"
    )
    assert wrong_client.status == 401


def test_access_token_expiry() -> None:
    with FakeWorkspace(access_token_ttl=60) as ws:
        token = oauth_token(ws)
        assert call(ws, "GET", "/api/2.0/token/list", token=token).status == 200
        ws.advance_clock(61)
        expired = call(ws, "GET", "/api/2.0/token/list", token=token)
        assert expired.status == 403
        assert expired.json() == INVALID_TOKEN_BODY
        fresh = oauth_token(ws)
        assert call(ws, "GET", "/api/2.0/token/list", token=fresh).status == 200
        ws.expire_access_tokens()
        assert call(ws, "GET", "/api/2.0/token/list", token=fresh).status == 403


# ---------------------------------------------------------------------------------------------- API authentication


def test_api_authentication(fake_workspace: FakeWorkspace) -> None:
    ws = fake_workspace
    missing = call(ws, "GET", "/api/2.0/token/list")
    assert missing.status == 401
    assert missing.json() == MISSING_CREDENTIAL_BODY
    wrong_scheme = call(ws, "GET", "/api/2.0/token/list", headers={"Authorization": basic("a", "b")})
    assert wrong_scheme.status == 401
    invalid = call(ws, "GET", "/api/2.0/token/list", token="dapi-not-a-real-token")
    assert invalid.status == 403
    assert invalid.json() == INVALID_TOKEN_BODY
    assert invalid.headers["x-databricks-reason-phrase"] == "Invalid access token."
    assert call(ws, "GET", "/api/2.0/token/list", token=ws.pat).status == 200


# ---------------------------------------------------------------------------------------------- Token API


def test_pat_lifecycle(fake_workspace: FakeWorkspace) -> None:
    ws = fake_workspace
    token = oauth_token(ws)
    before_ms = int(time.time() * 1000)
    created = create_pat(ws, token, comment="claude", lifetime_seconds=3600)
    value, info = created["token_value"], created["token_info"]
    assert PAT_RE.fullmatch(value)
    assert TOKEN_ID_RE.fullmatch(info["token_id"])
    assert info["comment"] == "claude"
    assert before_ms - 1000 <= info["creation_time"] <= int(time.time() * 1000) + 1000
    assert info["expiry_time"] == info["creation_time"] + 3_600_000

    assert ws.is_live(value)
    assert ws.token_value_owner(value) == ws.client_id
    assert ws.token_id_of(value) == info["token_id"]
    assert ws.live_tokens() == [{**info, "owner": ws.client_id}]
    listed = call(ws, "GET", "/api/2.0/token/list", token=token).json()
    assert listed == {"token_infos": [info]}

    # The new PAT authenticates, as the same identity: it sees itself in the list.
    assert call(ws, "GET", "/api/2.0/token/list", token=value).json() == listed

    deleted = call(ws, "POST", "/api/2.0/token/delete", json_body={"token_id": info["token_id"]}, token=token)
    assert (deleted.status, deleted.json()) == (200, {})
    assert not ws.is_live(value)
    assert ws.token_value_owner(value) is None
    assert ws.live_tokens() == []
    assert ws.revoked_token_ids() == [info["token_id"]]
    assert call(ws, "GET", "/api/2.0/token/list", token=token).json() == {"token_infos": []}
    rejected = call(ws, "GET", "/api/2.0/token/list", token=value)
    assert (rejected.status, rejected.json()) == (403, INVALID_TOKEN_BODY)

    again = call(ws, "POST", "/api/2.0/token/delete", json_body={"token_id": info["token_id"]}, token=token)
    assert again.status == 404
    assert again.json() == {
        "error_code": "RESOURCE_DOES_NOT_EXIST",
        "message": f"Token with id {info['token_id']} does not exist.",
    }


def test_pat_without_lifetime_or_comment(fake_workspace: FakeWorkspace) -> None:
    ws = fake_workspace
    created = create_pat(ws, ws.pat)
    assert created["token_info"]["expiry_time"] == -1
    assert "comment" not in created["token_info"]
    [live] = ws.live_tokens()
    assert live["comment"] is None
    assert live["expiry_time"] == -1
    ws.advance_clock(10 * 365 * 86400)
    assert ws.is_live(created["token_value"])


def test_pat_expires_after_lifetime(fake_workspace: FakeWorkspace) -> None:
    ws = fake_workspace
    created = create_pat(ws, ws.pat, lifetime_seconds=60)
    assert call(ws, "GET", "/api/2.0/token/list", token=created["token_value"]).status == 200
    ws.advance_clock(61)
    assert not ws.is_live(created["token_value"])
    assert ws.live_tokens() == []
    assert call(ws, "GET", "/api/2.0/token/list", token=created["token_value"]).status == 403
    assert call(ws, "GET", "/api/2.0/token/list", token=ws.pat).json() == {"token_infos": []}


def test_lifetime_as_proto_json_string(fake_workspace: FakeWorkspace) -> None:
    info = create_pat(fake_workspace, fake_workspace.pat, lifetime_seconds="120")["token_info"]
    assert info["expiry_time"] - info["creation_time"] == 120_000


def test_server_side_revocation(fake_workspace: FakeWorkspace) -> None:
    ws = fake_workspace
    created = create_pat(ws, ws.pat)
    ws.revoke_token(created["token_info"]["token_id"])
    assert call(ws, "GET", "/api/2.0/token/list", token=created["token_value"]).status == 403
    with pytest.raises(KeyError):
        ws.revoke_token("0" * 64)


@pytest.mark.parametrize(
    ("body", "error_code", "message"),
    [
        (json.dumps({"lifetime_seconds": 0}), "INVALID_PARAMETER_VALUE", "requirement failed: Invalid timeout: 0"),
        (json.dumps({"lifetime_seconds": -5}), "INVALID_PARAMETER_VALUE", "requirement failed: Invalid timeout: -5"),
        (json.dumps({"lifetime_seconds": 1.5}), "INVALID_PARAMETER_VALUE", None),
        (json.dumps({"lifetime_seconds": "soon"}), "INVALID_PARAMETER_VALUE", None),
        (json.dumps({"lifetime_seconds": True}), "INVALID_PARAMETER_VALUE", None),
        (json.dumps({"comment": 7}), "INVALID_PARAMETER_VALUE", None),
        ("{not json", "MALFORMED_REQUEST", None),
        ("[1, 2]", "MALFORMED_REQUEST", None),
    ],
)
def test_create_validation(fake_workspace: FakeWorkspace, body: str, error_code: str, message: str | None) -> None:
    reply = call(fake_workspace, "POST", "/api/2.0/token/create", body=body, token=fake_workspace.pat)
    assert reply.status == 400
    assert reply.json()["error_code"] == error_code
    if message is not None:
        assert reply.json()["message"] == message
    assert fake_workspace.live_tokens() == []


def test_delete_validation(fake_workspace: FakeWorkspace) -> None:
    ws = fake_workspace
    missing = call(ws, "POST", "/api/2.0/token/delete", json_body={}, token=ws.pat)
    assert (missing.status, missing.json()["error_code"]) == (400, "INVALID_PARAMETER_VALUE")
    unknown = call(ws, "POST", "/api/2.0/token/delete", json_body={"token_id": "abc"}, token=ws.pat)
    assert (unknown.status, unknown.json()["error_code"]) == (404, "RESOURCE_DOES_NOT_EXIST")


def test_quota() -> None:
    with FakeWorkspace(token_quota=3) as ws:
        ids = [create_pat(ws, ws.pat, comment=str(i))["token_info"]["token_id"] for i in range(3)]
        over = call(ws, "POST", "/api/2.0/token/create", json_body={"comment": "4"}, token=ws.pat)
        assert over.status == 400
        assert over.json() == {"error_code": "QUOTA_EXCEEDED", "message": "Cannot create more than 3 tokens."}
        assert len(ws.live_tokens()) == 3
        assert call(ws, "POST", "/api/2.0/token/delete", json_body={"token_id": ids[0]}, token=ws.pat).status == 200
        create_pat(ws, ws.pat, comment="after delete")
        assert [t["comment"] for t in ws.live_tokens()] == ["1", "2", "after delete"]


def test_quota_counts_only_unexpired_tokens() -> None:
    with FakeWorkspace(token_quota=1) as ws:
        create_pat(ws, ws.pat, lifetime_seconds=10)
        assert call(ws, "POST", "/api/2.0/token/create", json_body={}, token=ws.pat).status == 400
        ws.advance_clock(11)
        create_pat(ws, ws.pat)


def test_concurrent_creates_respect_quota() -> None:
    with FakeWorkspace(token_quota=5) as ws:
        statuses: list[int] = []
        lock = threading.Lock()

        def worker() -> None:
            reply = call(ws, "POST", "/api/2.0/token/create", json_body={}, token=ws.pat)
            with lock:
                statuses.append(reply.status)

        threads = [threading.Thread(target=worker) for _ in range(12)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(statuses) == [200] * 5 + [400] * 7
        assert len({t["token_id"] for t in ws.live_tokens()}) == 5


def test_chunked_request_body(fake_workspace: FakeWorkspace) -> None:
    ws = fake_workspace
    conn = http.client.HTTPConnection("127.0.0.1", ws.port, timeout=10)
    try:
        chunks = iter([b'{"comment": ', b'"chunked"}'])
        conn.request(
            "POST",
            "/api/2.0/token/create",
            body=chunks,
            headers={"Authorization": f"Bearer {ws.pat}", "Transfer-Encoding": "chunked"},
            encode_chunked=True,
        )
        resp = conn.getresponse()
        assert resp.status == 200
        assert json.loads(resp.read())["token_info"]["comment"] == "chunked"
    finally:
        conn.close()
    assert ws.requests[-1].body == b'{"comment": "chunked"}'


# ---------------------------------------------------------------------------------------------- recording, routing


def test_requests_are_recorded(fake_workspace: FakeWorkspace) -> None:
    ws = fake_workspace
    call(ws, "POST", "/api/2.0/token/create?x=1&y=2", json_body={"comment": "c"}, token=ws.pat,
         headers={"X-Custom": "v"})  # fmt: skip
    [req] = ws.requests
    assert isinstance(req, RecordedRequest)
    assert (req.method, req.path, req.query) == ("POST", "/api/2.0/token/create", "x=1&y=2")
    assert req.headers["authorization"] == f"Bearer {ws.pat}"
    assert req.headers["x-custom"] == "v"
    assert req.json() == {"comment": "c"}
    with pytest.raises(dataclasses.FrozenInstanceError):
        req.method = "GET"  # type: ignore[misc]
    snapshot = ws.requests
    snapshot.clear()
    assert len(ws.requests) == 1  # a copy
    ws.clear_requests()
    assert ws.requests == []


def test_form_helper(fake_workspace: FakeWorkspace) -> None:
    oauth_token(fake_workspace)
    assert fake_workspace.requests[0].form() == {"grant_type": "client_credentials", "scope": "all-apis"}


def test_unknown_paths(fake_workspace: FakeWorkspace) -> None:
    ws = fake_workspace
    reply = call(ws, "GET", "/api/2.0/clusters/list", token=ws.pat)
    assert reply.status == 404
    assert reply.json() == {
        "error_code": "ENDPOINT_NOT_FOUND",
        "message": "No API found for 'GET /api/2.0/clusters/list'",
    }
    assert call(ws, "GET", "/elsewhere").json()["error_code"] == "ENDPOINT_NOT_FOUND"
    assert call(ws, "GET", "/api/2.0/token/create", token=ws.pat).status == 404  # wrong method
    # Authentication comes before routing under /api/, as on the real service.
    assert call(ws, "GET", "/api/2.0/clusters/list").status == 401


def test_keep_alive(fake_workspace: FakeWorkspace) -> None:
    ws = fake_workspace
    conn = http.client.HTTPConnection("127.0.0.1", ws.port, timeout=10)
    try:
        socks = []
        for i in range(5):
            conn.request("POST", "/api/2.0/token/create", body=json.dumps({"comment": str(i)}),
                         headers={"Authorization": f"Bearer {ws.pat}"})  # fmt: skip
            resp = conn.getresponse()
            assert resp.status == 200
            assert resp.getheader("Content-Length") == str(len(resp.read()))
            socks.append(conn.sock)
        assert socks[0] is not None
        assert all(sock is socks[0] for sock in socks)  # one TCP connection served all five
        conn.request("GET", "/api/2.0/token/list", headers={"Authorization": f"Bearer {ws.pat}", "Connection": "close"})
        resp = conn.getresponse()
        assert resp.getheader("Connection") == "close"
        assert len(json.loads(resp.read())["token_infos"]) == 5
        assert conn.sock is None  # http.client closed it because the server said so
    finally:
        conn.close()


def test_http_1_0_closes(fake_workspace: FakeWorkspace) -> None:
    data, error = raw_exchange(fake_workspace, b"GET /oidc/.well-known/openid-configuration HTTP/1.0\r\n\r\n")
    assert error is None
    assert data.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"\r\nConnection: close\r\n" in data


def test_malformed_request_line(fake_workspace: FakeWorkspace) -> None:
    data, _ = raw_exchange(fake_workspace, b"NONSENSE\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 400 ")


# ---------------------------------------------------------------------------------------------- faults


def test_fault_status_retry_after_and_times(fake_workspace: FakeWorkspace) -> None:
    ws = fake_workspace
    ws.inject("/api/2.0/token/create", status=429, retry_after=7, times=2)
    for _ in range(2):
        reply = call(ws, "POST", "/api/2.0/token/create", json_body={}, token=ws.pat)
        assert reply.status == 429
        assert reply.headers["retry-after"] == "7"
        assert reply.json()["error_code"] == "REQUEST_LIMIT_EXCEEDED"
    assert ws.live_tokens() == []  # faulted requests never reach the handler
    assert call(ws, "POST", "/api/2.0/token/create", json_body={}, token=ws.pat).status == 200
    assert len(ws.requests) == 3  # faulted requests are recorded too


@pytest.mark.parametrize(
    ("status", "error_code"),
    [(503, "TEMPORARILY_UNAVAILABLE"), (500, "INTERNAL_ERROR"), (400, "BAD_REQUEST"), (502, "BAD_GATEWAY")],
)
def test_fault_error_codes(fake_workspace: FakeWorkspace, status: int, error_code: str) -> None:
    fake_workspace.inject("/api/", status=status)
    reply = call(fake_workspace, "GET", "/api/2.0/token/list", token=fake_workspace.pat)
    assert reply.status == status
    assert reply.json()["error_code"] == error_code
    assert "retry-after" not in reply.headers


def test_fault_default_is_503(fake_workspace: FakeWorkspace) -> None:
    fake_workspace.inject("/oidc/")
    assert call(fake_workspace, "GET", "/oidc/.well-known/oauth-authorization-server").status == 503
    assert call(fake_workspace, "GET", "/oidc/.well-known/oauth-authorization-server").status == 200


def test_fault_custom_bodies_and_headers(fake_workspace: FakeWorkspace) -> None:
    ws = fake_workspace
    date = "Wed, 21 Oct 2015 07:28:00 GMT"
    ws.inject("/api/", status=502, body="<html>bad gateway</html>", content_type="text/html", retry_after=date)
    ws.inject("/api/", status=400, body={"error_code": "CUSTOM", "message": "m"}, headers={"X-Extra": "1"})
    ws.inject("/api/", status=500, body=b"plain bytes")
    first = call(ws, "GET", "/api/2.0/token/list", token=ws.pat)
    assert (first.status, first.body, first.headers["content-type"]) == (502, b"<html>bad gateway</html>", "text/html")
    assert first.headers["retry-after"] == date
    second = call(ws, "GET", "/api/2.0/token/list", token=ws.pat)
    assert (second.status, second.json(), second.headers["x-extra"]) == (
        400,
        {"error_code": "CUSTOM", "message": "m"},
        "1",
    )
    third = call(ws, "GET", "/api/2.0/token/list", token=ws.pat)
    assert (third.status, third.body, third.headers["content-type"]) == (500, b"plain bytes", "text/plain")
    assert call(ws, "GET", "/api/2.0/token/list", token=ws.pat).status == 200


def test_fault_method_and_prefix_filters(fake_workspace: FakeWorkspace) -> None:
    ws = fake_workspace
    ws.inject("/api/2.0/token/", method="post", status=500)
    assert call(ws, "GET", "/api/2.0/token/list", token=ws.pat).status == 200
    assert call(ws, "GET", "/oidc/.well-known/openid-configuration").status == 200
    assert call(ws, "POST", "/api/2.0/token/create", json_body={}, token=ws.pat).status == 500
    assert call(ws, "POST", "/api/2.0/token/create", json_body={}, token=ws.pat).status == 200


def test_fault_unlimited_and_clear(fake_workspace: FakeWorkspace) -> None:
    ws = fake_workspace
    ws.inject("/api/", status=503, times=None)
    for _ in range(4):
        assert call(ws, "GET", "/api/2.0/token/list", token=ws.pat).status == 503
    ws.clear_faults()
    assert call(ws, "GET", "/api/2.0/token/list", token=ws.pat).status == 200


def test_fault_delay(fake_workspace: FakeWorkspace) -> None:
    ws = fake_workspace
    ws.inject("/api/", delay=0.3, action="pass", headers={"X-Delayed": "yes"})
    started = time.monotonic()
    reply = call(ws, "GET", "/api/2.0/token/list", token=ws.pat)
    assert time.monotonic() - started >= 0.25
    assert (reply.status, reply.headers["x-delayed"]) == (200, "yes")


def test_inject_validation(fake_workspace: FakeWorkspace) -> None:
    with pytest.raises(ValueError, match="unknown fault action"):
        fake_workspace.inject("/", action="explode")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="location"):
        fake_workspace.inject("/", action="redirect")
    with pytest.raises(ValueError, match="times"):
        fake_workspace.inject("/", times=0)


def test_fault_drop(fake_workspace: FakeWorkspace) -> None:
    ws = fake_workspace
    ws.inject("/api/", action="drop", times=2)
    data, error = raw_exchange(
        ws, f"GET /api/2.0/token/list HTTP/1.1\r\nAuthorization: Bearer {ws.pat}\r\n\r\n".encode()
    )
    assert (data, error) == (b"", None)  # a clean close with no response at all
    with pytest.raises(http.client.RemoteDisconnected):
        call(ws, "GET", "/api/2.0/token/list", token=ws.pat)
    assert call(ws, "GET", "/api/2.0/token/list", token=ws.pat).status == 200


def test_fault_reset(fake_workspace: FakeWorkspace) -> None:
    ws = fake_workspace
    ws.inject("/api/", action="reset", times=2)
    data, error = raw_exchange(
        ws, f"GET /api/2.0/token/list HTTP/1.1\r\nAuthorization: Bearer {ws.pat}\r\n\r\n".encode()
    )
    assert isinstance(error, ConnectionResetError)
    assert b"HTTP/1.1 200 OK\r\n".startswith(data[:17])  # at most a torn status line and headers arrived
    with pytest.raises(ConnectionResetError):
        call(ws, "GET", "/api/2.0/token/list", token=ws.pat)
    assert call(ws, "GET", "/api/2.0/token/list", token=ws.pat).status == 200


def test_fault_hang_then_stop_is_quick() -> None:
    ws = FakeWorkspace().start()
    try:
        ws.inject("/api/", action="hang")
        with pytest.raises(TimeoutError):
            call(ws, "GET", "/api/2.0/token/list", token=ws.pat, timeout=0.5)
        assert len(ws.requests) == 1  # the request was read before hanging
        # An idle keep-alive connection must not hold stop() up either.
        idle = socket.create_connection(("127.0.0.1", ws.port))
        hung = socket.create_connection(("127.0.0.1", ws.port))
        ws.inject("/api/", action="hang")
        hung.sendall(f"GET /api/2.0/token/list HTTP/1.1\r\nAuthorization: Bearer {ws.pat}\r\n\r\n".encode())
        while len(ws.requests) < 2:
            time.sleep(0.01)
    finally:
        started = time.monotonic()
        ws.stop()
        elapsed = time.monotonic() - started
    assert elapsed < 2.0
    assert not [t for t in threading.enumerate() if t.name == f"FakeWorkspace:{ws.port}"]
    hung.settimeout(5)
    assert hung.recv(100) == b""  # cut off without an answer
    idle.settimeout(5)
    assert idle.recv(100) == b""  # stop() closed the idle keep-alive connection too
    hung.close()
    idle.close()


def test_fault_slow_body(fake_workspace: FakeWorkspace) -> None:
    ws = fake_workspace
    expected = call(ws, "GET", "/api/2.0/token/list", token=ws.pat)
    ws.inject("/api/", action="slow_body", delay=0.05)
    started = time.monotonic()
    slow = call(ws, "GET", "/api/2.0/token/list", token=ws.pat)
    elapsed = time.monotonic() - started
    assert (slow.status, slow.body) == (200, expected.body)
    assert slow.headers["content-length"] == str(len(expected.body))
    chunks = -(-len(expected.body) // 4)
    assert elapsed >= 0.9 * chunks * 0.05  # the body really trickled


def test_fault_slow_body_with_client_timeout(fake_workspace: FakeWorkspace) -> None:
    ws = fake_workspace
    ws.inject("/api/", action="slow_body", delay=1.0)
    conn = http.client.HTTPConnection("127.0.0.1", ws.port, timeout=0.3)
    try:
        conn.request("GET", "/api/2.0/token/list", headers={"Authorization": f"Bearer {ws.pat}"})
        resp = conn.getresponse()  # the status line and headers come at once
        assert resp.status == 200
        with pytest.raises(TimeoutError):
            resp.read()
    finally:
        conn.close()


def test_fault_redirect(fake_workspace: FakeWorkspace) -> None:
    ws = fake_workspace
    ws.inject("/api/2.0/token/list", action="redirect", location="/api/2.0/token/list?redirected=1")
    direct = call(ws, "GET", "/api/2.0/token/list", token=ws.pat)
    assert direct.status == 307
    assert direct.headers["location"] == "/api/2.0/token/list?redirected=1"
    assert direct.headers["content-length"] == "0"

    ws.inject("/api/2.0/token/list", action="redirect", status=308, location=ws.url("/api/2.0/token/list?r=2"))
    request = urllib.request.Request(ws.url("/api/2.0/token/list"), headers={"Authorization": f"Bearer {ws.pat}"})  # noqa: S310
    with urllib.request.urlopen(request, timeout=10) as resp:  # noqa: S310 - an http:// URL of the emulator
        assert resp.status == 200
        assert json.loads(resp.read()) == {"token_infos": []}
    assert [(r.path, r.query) for r in ws.requests[-2:]] == [
        ("/api/2.0/token/list", ""),
        ("/api/2.0/token/list", "r=2"),
    ]


def test_fault_error_seen_by_urllib(fake_workspace: FakeWorkspace) -> None:
    ws = fake_workspace
    ws.inject("/api/", status=429, retry_after=3)
    request = urllib.request.Request(ws.url("/api/2.0/token/list"), headers={"Authorization": f"Bearer {ws.pat}"})  # noqa: S310
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=10).close()  # noqa: S310 - an http:// URL of the emulator
    with info.value as error:
        assert error.code == 429
        assert error.headers["Retry-After"] == "3"


# ---------------------------------------------------------------------------------------------- model serving


def test_invocation(fake_workspace: FakeWorkspace) -> None:
    ws = fake_workspace
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 10}
    reply = call(ws, "POST", "/serving-endpoints/databricks-claude-sonnet-4/invocations", json_body=body, token=ws.pat)
    assert reply.status == 200
    doc = reply.json()
    assert doc["object"] == "chat.completion"
    assert doc["model"] == "databricks-claude-sonnet-4"
    assert doc["choices"][0]["message"] == {"role": "assistant", "content": "Hello from the emulator"}
    assert doc["choices"][0]["finish_reason"] == "stop"
    assert doc["usage"]["total_tokens"] == doc["usage"]["prompt_tokens"] + doc["usage"]["completion_tokens"]
    assert ws.invocations == [
        {
            "endpoint": "databricks-claude-sonnet-4",
            "authorization": f"Bearer {ws.pat}",
            "body": body,
            "path": "/serving-endpoints/databricks-claude-sonnet-4/invocations",
        }
    ]


def test_invocation_requires_valid_token(fake_workspace: FakeWorkspace) -> None:
    ws = fake_workspace
    assert call(ws, "POST", "/serving-endpoints/e/invocations", json_body={}).status == 401
    assert call(ws, "POST", "/serving-endpoints/e/invocations", json_body={}, token="stale").status == 403
    assert ws.invocations == []
    bad = call(ws, "POST", "/serving-endpoints/e/invocations", body="{", token=ws.pat)
    assert (bad.status, bad.json()["error_code"]) == (400, "BAD_REQUEST")


def sse_data(body: bytes) -> list[str]:
    return [line.removeprefix("data: ") for line in body.decode().splitlines() if line.startswith("data: ")]


def test_invocation_streaming(fake_workspace: FakeWorkspace) -> None:
    ws = fake_workspace
    reply = call(ws, "POST", "/serving-endpoints/ep/invocations", json_body={"stream": True, "messages": []},
                 token=ws.pat)  # fmt: skip
    assert reply.status == 200
    assert reply.headers["content-type"] == "text/event-stream"
    *chunks, done = sse_data(reply.body)
    assert done == "[DONE]"
    parsed = [json.loads(chunk) for chunk in chunks]
    assert all(p["object"] == "chat.completion.chunk" and p["model"] == "ep" for p in parsed)
    text = "".join(p["choices"][0]["delta"].get("content", "") for p in parsed)
    assert text == "Hello from the emulator"
    assert parsed[-1]["choices"][0]["finish_reason"] == "stop"
    assert ws.invocations[0]["body"]["stream"] is True


def test_openai_compatible_chat(fake_workspace: FakeWorkspace) -> None:
    ws = fake_workspace
    ws.reply_text = "custom reply"
    reply = call(ws, "POST", "/serving-endpoints/chat/completions",
                 json_body={"model": "databricks-claude-opus-4-1", "messages": []}, token=ws.pat)  # fmt: skip
    assert reply.json()["choices"][0]["message"]["content"] == "custom reply"
    assert ws.invocations[0]["endpoint"] == "databricks-claude-opus-4-1"


def test_anthropic_messages(fake_workspace: FakeWorkspace) -> None:
    ws = fake_workspace
    path = "/serving-endpoints/anthropic/v1/messages"
    body = {"model": "databricks-claude-sonnet-4-5", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}
    doc = call(ws, "POST", path, json_body=body, token=ws.pat).json()
    assert doc["type"] == "message"
    assert doc["content"] == [{"type": "text", "text": "Hello from the emulator"}]
    assert doc["stop_reason"] == "end_turn"
    streamed = call(ws, "POST", path, json_body={**body, "stream": True}, token=ws.pat)
    events = [json.loads(d) for d in sse_data(streamed.body)]
    assert events[0]["type"] == "message_start"
    assert events[-1]["type"] == "message_stop"
    assert "".join(e["delta"].get("text", "") for e in events if e["type"] == "content_block_delta") == (
        "Hello from the emulator"
    )
    assert [i["endpoint"] for i in ws.invocations] == ["databricks-claude-sonnet-4-5"] * 2
    # count_tokens is not served by Databricks (anthropics/claude-code#14007)
    assert call(ws, "POST", path + "/count_tokens", json_body=body, token=ws.pat).status == 404


# ----------------------------------------------------------------------------------------------- the package


def test_the_package_shows_its_public_names_and_imports_no_http_server_or_ssl() -> None:
    """`devbox_native.testing` is a package of private modules: its public classes still read as
    ``devbox_native.testing.*`` (help, pickle), and importing it stays cheap (the emulator's start-up): no
    `http.server` (nor the `email`, `http.client` and `mimetypes` it pulls in), no `ssl` until a TLS context is
    given."""
    code = """if True:
        import json, pickle, pydoc, sys
        import devbox_native.testing as t
        req = t.RecordedRequest("GET", "/x", "", {}, b"")
        print(json.dumps({
            "all": sorted(t.__all__),
            "modules": sorted({t.FakeWorkspace.__module__, t.RecordedRequest.__module__, t.read_events.__module__}),
            "pickled": pickle.loads(pickle.dumps(req)) == req,
            "loaded": [m for m in ("http.server", "http.client", "email", "ssl") if m in sys.modules],
            "help": pydoc.render_doc(t, renderer=pydoc.plaintext),
        }))
    """
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    got = json.loads(done.stdout)
    assert got["all"] == ["FakeWorkspace", "FaultAction", "RecordedRequest", "read_events"]
    assert got["modules"] == ["devbox_native.testing"]
    assert got["pickled"] is True
    assert got["loaded"] == []
    assert "class FakeWorkspace(" in got["help"] and "class RecordedRequest(" in got["help"]


def test_the_emulator_command_stops_cleanly_on_a_signal_sent_the_moment_it_prints() -> None:
    """`devbox-native emulator` takes SIGTERM or SIGINT at any point after it printed the environment: exit 0,
    promptly. (Handlers installed after the print, then `signal.pause()`, died of an early signal or slept through
    one that came between the check and the pause.)"""
    for round_ in range(20):
        signum = signal.SIGTERM if round_ % 2 else signal.SIGINT
        with subprocess.Popen(
            [sys.executable, "-m", "devbox_native", "emulator", "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        ) as proc:
            assert proc.stdout is not None
            assert json.loads(proc.stdout.readline())["DATABRICKS_HOST"].startswith("http://127.0.0.1:")
            proc.send_signal(signum)
            try:
                code = proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                pytest.fail(f"round {round_}: the emulator slept through {signum.name}")
            assert code == 0, f"round {round_}: {signum.name} gave exit code {code}"


def test_read_events_yields_each_event_when_it_arrives_and_frees_the_connection(fake_workspace: FakeWorkspace) -> None:
    ws = fake_workspace
    chat = "/serving-endpoints/chat/completions"
    headers = {"Authorization": f"Bearer {ws.pat}", "Content-Type": "application/json"}
    conn = http.client.HTTPConnection("127.0.0.1", ws.port, timeout=30)
    try:
        ws.inject(chat, event_delay=0.5)  # chunked, one event every 0.5 s
        started = time.perf_counter()
        conn.request("POST", chat, json.dumps({"stream": True}), headers)
        arrivals = list(read_events(conn.getresponse()))
        assert [event[:7] for _, event in arrivals] == [b"data: {"] * 3 + [b"data: ["]
        times = [started] + [at for at, _ in arrivals]
        gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
        assert all(0.3 < gap < 5 for gap in gaps), gaps  # each as it was sent, not all at the end
        # A whole stream with a Content-Length, on the same keep-alive connection; read to the end, the response
        # is closed, so the connection takes the next request.
        conn.request("POST", chat, json.dumps({"stream": True}), headers)
        assert [event for _, event in read_events(conn.getresponse())][-1] == b"data: [DONE]"
        conn.request("GET", "/api/2.0/token/list", headers=headers)
        assert conn.getresponse().status == 200
    finally:
        conn.close()
