"""The real Databricks SDK against the emulator: proof that the emulator speaks the wire protocol the SDK expects.

Works with databricks-sdk 0.67 (discovery, then token, then API) and with newer versions that first probe
``/.well-known/databricks-config``.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from devbox_native.testing import FakeWorkspace, RecordedRequest

sdk = pytest.importorskip("databricks.sdk")
errors = pytest.importorskip("databricks.sdk.errors")

PAT_RE = re.compile(r"dapi[0-9a-f]{32}")


@pytest.fixture
def ws(fake_workspace: FakeWorkspace, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeWorkspace]:
    """The emulator, with no Databricks settings leaking in from the environment or ~/.databrickscfg."""
    for name in list(os.environ):
        if name.startswith(("DATABRICKS_", "ARM_", "GOOGLE_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))
    yield fake_workspace


def m2m_client(ws: FakeWorkspace, secret: str | None = None) -> sdk.WorkspaceClient:
    return sdk.WorkspaceClient(
        host=ws.host, client_id=ws.client_id, client_secret=secret if secret is not None else ws.client_secret
    )


def summary(requests: list[RecordedRequest]) -> list[tuple[str, str]]:
    return [(r.method, r.path) for r in requests]


def test_m2m_create_list_delete(ws: FakeWorkspace) -> None:
    w = m2m_client(ws)
    created = w.tokens.create(comment="devbox", lifetime_seconds=7200)
    assert created.token_value is not None and PAT_RE.fullmatch(created.token_value)
    assert created.token_info is not None
    token_id = created.token_info.token_id
    assert created.token_info.comment == "devbox"
    assert created.token_info.expiry_time - created.token_info.creation_time == 7_200_000
    assert ws.is_live(created.token_value)
    assert ws.token_value_owner(created.token_value) == ws.client_id
    assert [t["token_id"] for t in ws.live_tokens()] == [token_id]

    # What went over the wire: (host metadata probe,) discovery, token with Basic auth, then the API call.
    calls = summary(ws.requests)
    if calls[0] == ("GET", "/.well-known/databricks-config"):
        calls = calls[1:]  # newer SDKs probe host metadata first
    assert calls == [
        ("GET", "/oidc/.well-known/oauth-authorization-server"),
        ("POST", "/oidc/v1/token"),
        ("POST", "/api/2.0/token/create"),
    ]
    token_request = next(r for r in ws.requests if r.path == "/oidc/v1/token")
    scheme, _, blob = token_request.headers["authorization"].partition(" ")
    assert scheme == "Basic"
    assert base64.b64decode(blob).decode() == f"{ws.client_id}:{ws.client_secret}"
    assert token_request.form() == {"grant_type": "client_credentials", "scope": "all-apis"}
    create_request = ws.requests[-1]
    assert create_request.headers["authorization"].startswith("Bearer ")
    assert create_request.json() == {"comment": "devbox", "lifetime_seconds": 7200}

    assert [info.token_id for info in w.tokens.list()] == [token_id]

    w.tokens.delete(token_id=token_id)
    assert not ws.is_live(created.token_value)
    assert ws.revoked_token_ids() == [token_id]
    assert list(w.tokens.list()) == []

    # The deleted PAT no longer authenticates; the SDK maps the 403 to PermissionDenied.
    with pytest.raises(errors.PermissionDenied, match="Invalid access token"):
        list(sdk.WorkspaceClient(host=ws.host, token=created.token_value).tokens.list())


def test_minted_pat_authenticates(ws: FakeWorkspace) -> None:
    created = m2m_client(ws).tokens.create(comment="c", lifetime_seconds=600)
    assert created.token_value is not None
    assert created.token_info is not None
    by_pat = sdk.WorkspaceClient(host=ws.host, token=created.token_value)
    assert [info.token_id for info in by_pat.tokens.list()] == [created.token_info.token_id]
    assert ws.requests[-1].headers["authorization"] == f"Bearer {created.token_value}"


def test_static_pat_auth(ws: FakeWorkspace) -> None:
    w = sdk.WorkspaceClient(host=ws.host, token=ws.pat)
    assert list(w.tokens.list()) == []
    api_calls = [r for r in ws.requests if r.path.startswith("/api/")]
    assert [r.headers["authorization"] for r in api_calls] == [f"Bearer {ws.pat}"]
    assert not any(r.path == "/oidc/v1/token" for r in ws.requests)


def test_bad_client_secret(ws: FakeWorkspace) -> None:
    w = m2m_client(ws, secret="not-the-secret")
    with pytest.raises(ValueError, match="invalid_client: Client authentication failed"):
        w.tokens.create(comment="x", lifetime_seconds=60)
    assert ws.live_tokens() == []


def test_env_m2m(fake_workspace_env: FakeWorkspace, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    created = sdk.WorkspaceClient().tokens.create(comment="from env")
    assert created.token_value is not None
    assert fake_workspace_env.is_live(created.token_value)
    assert fake_workspace_env.live_tokens()[0]["expiry_time"] == -1


def test_validation_and_quota_errors_map_to_sdk_classes(ws: FakeWorkspace) -> None:
    w = sdk.WorkspaceClient(host=ws.host, token=ws.pat)
    with pytest.raises(errors.InvalidParameterValue, match="Invalid timeout: 0"):
        w.tokens.create(lifetime_seconds=0)
    with pytest.raises(errors.ResourceDoesNotExist):
        w.tokens.delete(token_id="0" * 64)
    ws.token_quota = 1
    w.tokens.create(comment="only one")
    with pytest.raises(errors.BadRequest, match="Cannot create more than 1 tokens"):
        w.tokens.create(comment="one too many")


def test_sdk_retries_injected_503(ws: FakeWorkspace) -> None:
    ws.inject("/api/2.0/token/list", status=503, retry_after=0)
    w = sdk.WorkspaceClient(host=ws.host, token=ws.pat)
    assert list(w.tokens.list()) == []
    assert summary(ws.requests).count(("GET", "/api/2.0/token/list")) == 2
