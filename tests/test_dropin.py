"""The drop-in token functions against the workspace emulator, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import os
import re
from typing import Any

import devbox_native
import pytest
from devbox_native.errors import ApiError, AuthError, ConfigError, QuotaExceeded
from devbox_native.testing import FakeWorkspace

NO_CREDENTIALS = (
    "default auth: cannot configure default credentials, please check "
    "https://docs.databricks.com/en/dev-tools/auth.html#databricks-client-unified-authentication to configure "
    "credentials for your preferred authentication method."
)


def _create_bodies(ws: FakeWorkspace) -> list[dict[str, Any]]:
    return [json.loads(r.body) for r in ws.requests if r.path == "/api/2.0/token/create"]


def test_m2m_mints_a_live_token_the_way_the_app_does(fake_workspace_env: FakeWorkspace) -> None:
    ws = fake_workspace_env
    token = devbox_native.generate_spn_token()
    assert ws.is_live(token)
    paths = [(r.method, r.path) for r in ws.requests]
    assert paths == [
        ("GET", "/oidc/.well-known/oauth-authorization-server"),
        ("POST", "/oidc/v1/token"),
        ("POST", "/api/2.0/token/create"),
    ]
    token_req = ws.requests[1]
    assert token_req.headers["authorization"].startswith("Basic ")
    assert token_req.body.decode() in (
        "grant_type=client_credentials&scope=all-apis",
        "scope=all-apis&grant_type=client_credentials",
    )
    (body,) = _create_bodies(ws)
    assert body["lifetime_seconds"] == 3600
    assert re.fullmatch(r"sdk-\d{18,}", body["comment"])
    ua = ws.requests[2].headers["user-agent"]
    assert re.fullmatch(r"devbox-native/\S+ python/3\.\d+\.\d+ os/\w+ auth/oauth-m2m", ua), ua


def test_the_oauth_token_is_cached_between_calls(fake_workspace_env: FakeWorkspace) -> None:
    ws = fake_workspace_env
    tokens = {devbox_native.generate_spn_token(60) for _ in range(3)}
    assert len(tokens) == 3
    token_calls = [r for r in ws.requests if r.path == "/oidc/v1/token"]
    discovery = [r for r in ws.requests if r.path.startswith("/oidc/.well-known")]
    assert (len(token_calls), len(discovery)) == (1, 1)


def test_pat_auth_from_databricks_token(clean_env: pytest.MonkeyPatch, fake_workspace: FakeWorkspace) -> None:
    clean_env.setenv("DATABRICKS_HOST", fake_workspace.host + "/")
    clean_env.setenv("DATABRICKS_TOKEN", fake_workspace.pat)
    token = devbox_native.generate_spn_token(120)
    assert fake_workspace.is_live(token)
    create = [r for r in fake_workspace.requests if r.path == "/api/2.0/token/create"]
    assert create[0].headers["authorization"] == f"Bearer {fake_workspace.pat}"
    assert not [r for r in fake_workspace.requests if r.path.startswith("/oidc")]


def test_env_var_overrides_duration(fake_workspace_env: FakeWorkspace, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLAUDE_CODE_TOKEN_EXPIRY_SECONDS", "900")
    devbox_native.generate_spn_token(duration_seconds=60)
    assert _create_bodies(fake_workspace_env)[0]["lifetime_seconds"] == 900


@pytest.mark.parametrize("value", ["", "abc", "0", "-3", "1.5"])
def test_bad_env_lifetime_names_the_variable(
    fake_workspace_env: FakeWorkspace, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("CLAUDE_CODE_TOKEN_EXPIRY_SECONDS", value)
    with pytest.raises(ValueError, match=r"^CLAUDE_CODE_TOKEN_EXPIRY_SECONDS: "):
        devbox_native.generate_spn_token()
    assert fake_workspace_env.requests == []


@pytest.mark.parametrize("value", [0, -1, True, False, 3600.0, 2**70])
def test_bad_duration_values_raise_value_error(fake_workspace_env: FakeWorkspace, value: object) -> None:
    with pytest.raises(ValueError, match=r"^duration_seconds: "):
        devbox_native.generate_spn_token(value)  # type: ignore[arg-type]
    assert fake_workspace_env.requests == []


@pytest.mark.parametrize("value", ["3600", b"1", [1], object(), None])
def test_wrong_duration_types_raise_type_error(fake_workspace_env: FakeWorkspace, value: object) -> None:
    with pytest.raises(TypeError, match="duration_seconds"):
        devbox_native.generate_spn_token(value)  # type: ignore[arg-type]
    assert fake_workspace_env.requests == []


@pytest.mark.parametrize("func", [devbox_native.generate_spn_token, devbox_native.generate_spn_token_async])
def test_signature_reads_like_the_apps(func: object) -> None:
    import inspect

    params = inspect.signature(func).parameters  # type: ignore[arg-type]
    assert list(params) == ["duration_seconds", "config"]
    assert params["duration_seconds"].default == 3600
    assert params["config"].kind is inspect.Parameter.KEYWORD_ONLY and params["config"].default is None


@pytest.mark.asyncio
async def test_async_twin_rejects_none_too(fake_workspace_env: FakeWorkspace) -> None:
    with pytest.raises(TypeError, match="duration_seconds"):
        await devbox_native.generate_spn_token_async(None)  # type: ignore[arg-type]


def test_no_credentials_is_the_sdk_error(clean_env: pytest.MonkeyPatch, fake_workspace: FakeWorkspace) -> None:
    clean_env.setenv("DATABRICKS_HOST", fake_workspace.host)
    with pytest.raises(ConfigError) as exc:
        devbox_native.generate_spn_token()
    assert str(exc.value) == f"{NO_CREDENTIALS} Config: host={fake_workspace.host}. Env: DATABRICKS_HOST"
    assert isinstance(exc.value, ValueError)


def test_two_methods_is_the_sdk_error(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("DATABRICKS_HOST", "example.cloud.databricks.com")
    clean_env.setenv("DATABRICKS_TOKEN", "secret-pat-value")
    clean_env.setenv("DATABRICKS_CLIENT_ID", "cid")
    with pytest.raises(ConfigError) as exc:
        devbox_native.generate_spn_token()
    assert str(exc.value) == (
        "validate: more than one authorization method configured: oauth and pat. "
        "Config: host=https://example.cloud.databricks.com, token=***, client_id=cid. "
        "Env: DATABRICKS_HOST, DATABRICKS_TOKEN, DATABRICKS_CLIENT_ID"
    )


def test_bad_client_secret_is_an_auth_error_without_the_secret(
    fake_workspace_env: FakeWorkspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABRICKS_CLIENT_SECRET", "wrong-secret-value")
    with pytest.raises(AuthError) as exc:
        devbox_native.generate_spn_token()
    msg = str(exc.value)
    assert msg.startswith("oauth-m2m: invalid_client: Client authentication failed. Config: host=")
    assert "wrong-secret-value" not in msg and "wrong-secret-value" not in repr(exc.value)
    assert "client_secret=***" in msg


def test_a_host_that_is_not_a_url_names_the_env_var(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("DATABRICKS_HOST", "ftp://example.com")
    clean_env.setenv("DATABRICKS_TOKEN", "x-token")
    with pytest.raises(ValueError, match=r"^DATABRICKS_HOST: "):
        devbox_native.generate_spn_token()


def test_quota_exceeded_is_typed_and_carries_the_error_code(clean_env: pytest.MonkeyPatch) -> None:
    with FakeWorkspace(token_quota=2) as ws:
        for k, v in ws.env().items():
            clean_env.setenv(k, v)
        devbox_native.generate_spn_token()
        devbox_native.generate_spn_token()
        with pytest.raises(QuotaExceeded) as exc:
            devbox_native.generate_spn_token()
    err = exc.value
    assert isinstance(err, ApiError) and isinstance(err, OSError)
    assert (err.status_code, err.error_code) == (400, "QUOTA_EXCEEDED")


def test_a_revoked_pat_is_permission_denied_with_masked_config(
    clean_env: pytest.MonkeyPatch, fake_workspace: FakeWorkspace
) -> None:
    clean_env.setenv("DATABRICKS_HOST", fake_workspace.host)
    clean_env.setenv("DATABRICKS_TOKEN", fake_workspace.pat)
    minted = devbox_native.create_token(lifetime_seconds=300, comment="to-revoke")
    clean_env.setenv("DATABRICKS_TOKEN", minted.token_value)
    devbox_native.delete_token(minted.token_id)
    with pytest.raises(devbox_native.errors.PermissionDenied) as exc:
        devbox_native.generate_spn_token()
    assert exc.value.status_code == 403
    assert minted.token_value not in str(exc.value)
    assert "token=***" in str(exc.value)


def test_create_list_delete_round_trip(fake_workspace_env: FakeWorkspace) -> None:
    created = devbox_native.create_token(lifetime_seconds=600, comment="round-trip")
    assert created.comment == "round-trip"
    assert created.token_value not in repr(created) and "token_value='***'" in repr(created)
    assert created.expiry_time - created.creation_time == 600_000
    ids = [t["token_id"] for t in devbox_native.list_tokens()]
    assert created.token_id in ids
    devbox_native.delete_token(created.token_id)
    assert created.token_id not in [t["token_id"] for t in devbox_native.list_tokens()]
    with pytest.raises(devbox_native.errors.ResourceDoesNotExist) as exc:
        devbox_native.delete_token(created.token_id)
    assert exc.value.error_code == "RESOURCE_DOES_NOT_EXIST"


def test_async_twins_are_coroutines(fake_workspace_env: FakeWorkspace) -> None:
    async def main() -> tuple[str, list[str]]:
        token, created = await asyncio.gather(
            devbox_native.generate_spn_token_async(), devbox_native.create_token_async(120, "async")
        )
        listed = [t["token_id"] for t in await devbox_native.list_tokens_async()]
        await devbox_native.delete_token_async(created.token_id)
        return token, [created.token_id, *listed]

    token, ids = asyncio.run(main())
    assert fake_workspace_env.is_live(token)
    assert ids[0] in ids[1:]
    assert ids[0] not in [t["token_id"] for t in fake_workspace_env.live_tokens()]


def test_async_errors_are_the_same_exceptions(
    fake_workspace_env: FakeWorkspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABRICKS_CLIENT_SECRET", "nope-nope")
    with pytest.raises(AuthError):
        asyncio.run(devbox_native.generate_spn_token_async())


def test_calls_release_the_gil_and_threads_agree(fake_workspace_env: FakeWorkspace) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(16) as pool:
        tokens = list(pool.map(lambda _: devbox_native.generate_spn_token(300), range(48)))
    assert len(set(tokens)) == 48
    assert all(fake_workspace_env.is_live(t) for t in tokens)
    assert len([r for r in fake_workspace_env.requests if r.path == "/oidc/v1/token"]) == 1


def test_no_environment_leaks_into_the_message(clean_env: pytest.MonkeyPatch) -> None:
    secret = "very-secret-client-secret"
    clean_env.setenv("DATABRICKS_CLIENT_ID", "cid")
    clean_env.setenv("DATABRICKS_CLIENT_SECRET", secret)
    with pytest.raises(ConfigError) as exc:
        devbox_native.generate_spn_token()
    assert secret not in str(exc.value) and secret not in repr(exc.value)
    assert os.environ["DATABRICKS_CLIENT_SECRET"] == secret


def test_an_access_token_near_expiry_is_refreshed(clean_env: pytest.MonkeyPatch) -> None:
    # Tokens living 30 s are always inside the 40 s refresh margin: every call fetches a new one.
    with FakeWorkspace(access_token_ttl=30) as ws:
        for k, v in ws.env().items():
            clean_env.setenv(k, v)
        devbox_native.generate_spn_token(60)
        devbox_native.generate_spn_token(60)
        assert len([r for r in ws.requests if r.path == "/oidc/v1/token"]) == 2
        # Discovery is remembered even when the token is not.
        assert len([r for r in ws.requests if r.path.startswith("/oidc/.well-known")]) == 1


def test_a_refused_access_token_is_replaced_once(clean_env: pytest.MonkeyPatch) -> None:
    with FakeWorkspace(access_token_ttl=3600) as ws:
        for k, v in ws.env().items():
            clean_env.setenv(k, v)
        devbox_native.generate_spn_token(60)
        ws.expire_access_tokens()  # the server forgets every access token: our cached one is now refused
        token = devbox_native.generate_spn_token(60)
        assert ws.is_live(token)
        assert len([r for r in ws.requests if r.path == "/oidc/v1/token"]) == 2
        refused, accepted = [r for r in ws.requests if r.path == "/api/2.0/token/create"][1:]
        assert refused.headers["authorization"] != accepted.headers["authorization"]


def test_a_refused_pat_is_not_retried(clean_env: pytest.MonkeyPatch, fake_workspace: FakeWorkspace) -> None:
    clean_env.setenv("DATABRICKS_HOST", fake_workspace.host)
    clean_env.setenv("DATABRICKS_TOKEN", "not-a-valid-token")
    with pytest.raises(devbox_native.errors.PermissionDenied):
        devbox_native.generate_spn_token(60)
    assert len([r for r in fake_workspace.requests if r.path == "/api/2.0/token/create"]) == 1
