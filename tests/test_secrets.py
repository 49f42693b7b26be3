"""Secrets in text and in children, bounded reads, token value checks (issue 8, items 5, 6, 8, 9, 14, 15).

Every secret the process knows is masked in exception messages and log records, whichever text it came in
(a server's error body, a child's output); children do not inherit Databricks secret variables; files named
by the environment are read only when they are small regular files; tokens that could not be a header value
are refused by field name."""

from __future__ import annotations

import base64
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import devbox_native
import pytest
from devbox_native import Config
from devbox_native.errors import ApiError, AuthError, ConfigError
from devbox_native.testing import FakeWorkspace

LIST = "/api/2.0/token/list"
CREATE = "/api/2.0/token/create"


@pytest.fixture
def debug_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="devbox_native")
    devbox_native.refresh_logging()
    return caplog


def _echo(ws: FakeWorkspace, path: str, text: str, status: int = 400) -> None:
    ws.inject(path, status=status, body={"error_code": "BAD_REQUEST", "message": f"you sent {text}"})


def _bearer(ws: FakeWorkspace) -> str:
    header = [r for r in ws.requests if r.path == LIST][-1].headers["authorization"]
    return str(header).removeprefix("Bearer ")


# ------------------------------------------------------------------ item 5: echoed secrets are masked


def test_an_echoed_client_secret_is_masked_in_the_error_and_the_debug_log(
    fake_workspace_env: FakeWorkspace, debug_log: pytest.LogCaptureFixture
) -> None:
    ws = fake_workspace_env
    _echo(ws, LIST, ws.client_secret)
    with pytest.raises(ApiError) as exc:
        devbox_native.list_tokens()
    assert str(exc.value) == "you sent ***" and ws.client_secret not in repr(exc.value)
    assert "you sent ***" in debug_log.text and ws.client_secret not in debug_log.text


def test_an_echoed_access_token_is_masked_in_a_later_token_endpoint_error(
    fake_workspace_env: FakeWorkspace, debug_log: pytest.LogCaptureFixture
) -> None:
    ws = fake_workspace_env
    cfg = Config()
    devbox_native.list_tokens(config=cfg)
    access = _bearer(ws)
    ws.expire_access_tokens()
    ws.inject("/oidc/v1/token", status=400, body={"error": "invalid_request", "error_description": f"old {access}"})
    with pytest.raises(AuthError) as exc:
        devbox_native.list_tokens(config=cfg)
    assert "old ***" in str(exc.value) and access not in str(exc.value)
    assert access not in debug_log.text


def test_echoed_basic_credentials_are_masked(
    fake_workspace: FakeWorkspace, debug_log: pytest.LogCaptureFixture
) -> None:
    ws = fake_workspace
    cfg = Config(host=ws.host, username=ws.username, password=ws.password)
    encoded = base64.b64encode(f"{ws.username}:{ws.password}".encode()).decode()
    _echo(ws, LIST, f"{encoded} and {ws.password}", status=401)
    with pytest.raises(ApiError) as exc:
        devbox_native.list_tokens(config=cfg)
    assert str(exc.value).startswith("you sent *** and ***. Config: ")
    assert encoded not in debug_log.text and ws.password not in debug_log.text


def test_a_revocations_last_error_is_masked(fake_workspace_env: FakeWorkspace, tmp_path: Path) -> None:
    ws = fake_workspace_env
    broker = devbox_native.TokenBroker(kind="pat", cache_path=tmp_path / "token.json", revoke_grace=0)
    broker.get()
    ws.inject("/api/2.0/token/delete", status=400, times=None, body={"message": f"no: {ws.client_secret}"})
    broker.force_refresh()  # the old token's revocation fails and stays pending with its error
    (pending,) = broker.pending_revocations
    assert pending["last_error"] and "no: ***" in pending["last_error"], pending
    assert ws.client_secret not in pending["last_error"]


def _set_last_errors(node: object, text: str) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "last_error":
                node[key] = text
            else:
                _set_last_errors(value, text)
    elif isinstance(node, list):
        for item in node:
            _set_last_errors(item, text)


def test_doctor_masks_a_secret_in_a_stored_last_error(fake_workspace_env: FakeWorkspace, tmp_path: Path) -> None:
    ws = fake_workspace_env
    cache = tmp_path / "cache" / "token.json"
    broker = devbox_native.TokenBroker(kind="pat", cache_path=cache)
    broker.get()
    ws.inject("/api/2.0/token/delete", status=400, times=None)
    broker.force_refresh()
    assert broker.pending_revocations
    # As an older version (or another tool) could have stored it: the client secret verbatim.
    data = json.loads(cache.read_text())
    _set_last_errors(data, f"server said {ws.client_secret}")
    cache.write_text(json.dumps(data))
    cmd = [sys.executable, "-m", "devbox_native", "doctor", "--root", str(tmp_path), "--cache", str(cache), "--json"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert "server said ***" in out.stdout, out
    assert ws.client_secret not in out.stdout and ws.client_secret not in out.stderr


# ------------------------------------------------------------------ item 6: children and their output


def _cli(tmp_path: Path, script: str) -> Path:
    path = tmp_path / "databricks"
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(0o755)
    return path


def test_the_cli_gets_no_databricks_secrets_and_its_output_is_masked(
    fake_workspace: FakeWorkspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = fake_workspace
    seen = tmp_path / "env"
    # A client secret this process knows, echoed by the failing CLI, with a token it printed itself.
    Config(host=ws.host, client_id="c", client_secret="known-client-secret-42")
    cli = _cli(
        tmp_path,
        f'env > {seen}\necho \'{{"access_token": "cli-own-token-xyz-1"}} known-client-secret-42\' >&2\n'
        'echo \'{"access_token": "cli-own-token-xyz-1"}\'\nexit 1\n',
    )
    cfg = Config(host=ws.host, databricks_cli_path=str(cli))
    # The CLI runs at the first call, with the environment of that moment.
    monkeypatch.setenv("DATABRICKS_CLIENT_SECRET", "cli-test-client-secret-1")
    monkeypatch.setenv("DATABRICKS_TOKEN", "dapi-cli-test-token-1")
    monkeypatch.setenv("DATABRICKS_PASSWORD", "cli-test-password-1")
    monkeypatch.setenv("DATABRICKS_OIDC_TOKEN", "cli-test-oidc-token-1")
    monkeypatch.setenv("DATABRICKS_OIDC_TOKEN_ENV", "MY_ID_TOKEN")
    monkeypatch.setenv("MY_ID_TOKEN", "cli-test-named-oidc-token-1")
    monkeypatch.setenv("KEEP_ME", "1")
    with pytest.raises(AuthError) as exc:
        devbox_native.list_tokens(config=cfg)
    env = seen.read_text()
    for name in ("DATABRICKS_CLIENT_SECRET", "DATABRICKS_TOKEN", "DATABRICKS_PASSWORD", "DATABRICKS_OIDC_TOKEN"):
        assert f"{name}=" not in env
    assert "MY_ID_TOKEN=" not in env and "KEEP_ME=1" in env
    assert "cli-own-token-xyz-1" not in str(exc.value) and "known-client-secret-42" not in str(exc.value)
    assert '"access_token": "***"' in str(exc.value)


def test_a_cli_flooding_its_output_is_stopped(fake_workspace: FakeWorkspace, tmp_path: Path) -> None:
    ws = fake_workspace
    for stream in ("", " >&2"):
        cli = _cli(tmp_path, f"exec cat /dev/zero{stream}\n")
        cfg = Config(host=ws.host, databricks_cli_path=str(cli))
        t0 = time.monotonic()
        with pytest.raises(AuthError, match=r"printed more than 1 MiB on std(out|err); it was stopped"):
            devbox_native.list_tokens(config=cfg)
        assert time.monotonic() - t0 < 30


def test_a_cli_token_that_is_not_a_header_value_is_refused(fake_workspace: FakeWorkspace, tmp_path: Path) -> None:
    answer = tmp_path / "answer.json"
    answer.write_text('{"access_token": "evil value\\r\\nX: y", "expiry": "2999-01-01T00:00:00Z"}')
    cli = _cli(tmp_path, f"cat {answer}\n")
    with pytest.raises(AuthError, match="access_token contains whitespace") as exc:
        devbox_native.list_tokens(config=Config(host=fake_workspace.host, databricks_cli_path=str(cli)))
    assert "evil" not in str(exc.value)


def test_the_rotation_hook_gets_no_databricks_secrets_and_its_output_is_masked(
    fake_workspace_env: FakeWorkspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    ws = fake_workspace_env  # DATABRICKS_CLIENT_SECRET is in our environment
    monkeypatch.setenv("DATABRICKS_OIDC_TOKEN", "hook-test-oidc-token-1")
    monkeypatch.setenv("KEEP_ME", "1")
    seen = tmp_path / "env"
    caplog.set_level(logging.WARNING, logger="devbox_native")
    devbox_native.refresh_logging()
    # The hook prints the client secret it was handed under another name, and fails.
    monkeypatch.setenv("LEAKED", ws.client_secret)
    script = f'env > {seen}; echo "secret: $LEAKED" >&2; exit 1'
    failures: list[dict[str, object]] = []
    broker = devbox_native.TokenBroker(kind="pat", cache_path=tmp_path / "cache" / "token.json")
    rot = devbox_native.start_rotation(
        tmp_path / "home", None, ["sh", "-c", script], broker=broker, port=0, on_error=failures.append
    )
    try:
        deadline = time.monotonic() + 30
        while not failures and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        rot.stop()
    error = str(failures[0]["error"])
    assert error.endswith("secret: ***") and ws.client_secret not in error
    assert ws.client_secret not in caplog.text
    env = seen.read_text()
    assert "DATABRICKS_CLIENT_SECRET=" not in env and "DATABRICKS_OIDC_TOKEN=" not in env
    assert f"DATABRICKS_HOST={ws.host}" in env and "KEEP_ME=1" in env


def test_the_rotation_hook_gets_exactly_an_explicit_env(fake_workspace_env: FakeWorkspace, tmp_path: Path) -> None:
    seen = tmp_path / "env"
    failures: list[dict[str, object]] = []
    broker = devbox_native.TokenBroker(kind="pat", cache_path=tmp_path / "cache" / "token.json")
    env = {"PATH": os.environ["PATH"], "DATABRICKS_CLIENT_SECRET": "passed-on-purpose"}
    with devbox_native.start_rotation(
        tmp_path / "home", None, ["sh", "-c", f"env > {seen}"], broker=broker, port=0, env=env, on_error=failures.append
    ) as rot:
        deadline = time.monotonic() + 30
        while rot.rotations < 1 and not failures and time.monotonic() < deadline:
            time.sleep(0.02)
    assert not failures and rot.rotations == 1
    lines = set(seen.read_text().splitlines())
    assert "DATABRICKS_CLIENT_SECRET=passed-on-purpose" in lines and f"HOME={tmp_path / 'home'}" in lines
    assert not any(line.startswith("DATABRICKS_HOST=") for line in lines)
    with pytest.raises(TypeError, match="env: expected a mapping"):
        devbox_native.start_rotation(tmp_path / "home", command=["true"], broker=broker, env={"A": 1})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="env: "):
        devbox_native.start_rotation(tmp_path / "home", command=["true"], broker=broker, env={"A=B": "1"})


# ------------------------------------------------------------------ item 8: bounded reads


@pytest.mark.parametrize("special", ["/dev/zero", "/dev/urandom", "fifo"])
def test_a_config_file_that_is_not_a_regular_file_fails_fast(
    special: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(os.environ):
        if name.startswith("DATABRICKS_"):
            monkeypatch.delenv(name)
    path = special
    if special == "fifo":
        path = str(tmp_path / "fifo")
        os.mkfifo(path)
    monkeypatch.setenv("DATABRICKS_CONFIG_FILE", path)
    t0 = time.monotonic()
    with pytest.raises(ConfigError, match=rf"cannot read {path}: it is not a regular file"):
        Config()
    assert time.monotonic() - t0 < 5


def test_a_config_file_over_the_limit_is_refused(tmp_path: Path) -> None:
    big = tmp_path / "cfg"
    big.write_text("[DEFAULT]\n" + "; padding\n" * 110_000)
    with pytest.raises(ConfigError, match=rf"cannot read {big}: it is larger than the limit of 1 MiB"):
        Config(config_file=str(big), profile="DEFAULT")


def test_an_oidc_token_file_that_is_a_device_fails_fast(fake_workspace: FakeWorkspace) -> None:
    t0 = time.monotonic()
    with pytest.raises(ConfigError, match="file-oidc: cannot read /dev/zero: it is not a regular file"):
        Config(host=fake_workspace.host, oidc_token_filepath="/dev/zero")
    assert time.monotonic() - t0 < 5


# ------------------------------------------------------------------ item 9: token values


def test_a_minted_token_with_a_bad_value_is_revoked_and_refused(fake_workspace_env: FakeWorkspace) -> None:
    ws = fake_workspace_env
    ws.inject(
        CREATE,
        status=200,
        body={"token_value": "dapi bad\r\nvalue", "token_info": {"token_id": "bad-id-1", "expiry_time": -1}},
    )
    with pytest.raises(ApiError, match="token_value contains whitespace") as exc:
        devbox_native.generate_spn_token(3600)
    assert "dapi bad" not in str(exc.value)
    deletes = [r.json() for r in ws.requests if r.path == "/api/2.0/token/delete"]
    assert deletes == [{"token_id": "bad-id-1"}]


def test_an_oauth_access_token_with_a_line_break_is_refused(fake_workspace_env: FakeWorkspace) -> None:
    fake_workspace_env.inject(
        "/oidc/v1/token",
        status=200,
        body={"access_token": "abc\ndef", "token_type": "Bearer", "expires_in": 3600},
    )
    with pytest.raises(AuthError, match="access_token contains a line feed") as exc:
        devbox_native.list_tokens()
    assert "abc" not in str(exc.value)


# ------------------------------------------------------------------ item 15: secrets must be UTF-8


@pytest.mark.parametrize("var", ["DATABRICKS_CLIENT_SECRET", "DATABRICKS_TOKEN", "DATABRICKS_OIDC_TOKEN"])
def test_a_secret_variable_that_is_not_utf8_is_refused_by_name(var: str, fake_workspace: FakeWorkspace) -> None:
    env = {k: v for k, v in os.environb.items() if not k.startswith(b"DATABRICKS_")}
    env[b"DATABRICKS_HOST"] = fake_workspace.host.encode()
    env[var.encode()] = b"secret-\xff-value"
    code = "import devbox_native\ntry:\n    devbox_native.Config()\nexcept ValueError as e:\n    print(e)\n"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=60, check=True)
    assert out.stdout.decode().startswith(f"{var}: is not valid UTF-8"), out
    assert b"secret-" not in out.stdout
