"""Unified authentication.

* The shared scenarios of ``tests/testdata/auth_scenarios.json`` (also run by ``tests/auth_scenarios.rs``) through
  ``devbox_native.Config``, with the environment and HOME set by monkeypatch.
* The same scenarios through databricks-sdk 0.67 in this process with the same environment: both must choose the
  same ``auth_type`` and host, or both fail (differences are listed in the scenario, with the reason).
* Each strategy's success and failure against the workspace emulator over real HTTP.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import devbox_native
import pytest
from devbox_native import Config
from devbox_native.errors import ApiError, AuthError, ConfigError
from devbox_native.testing import FakeWorkspace

REPO = Path(__file__).resolve().parent.parent
SCENARIOS: list[dict[str, Any]] = json.loads((REPO / "tests/testdata/auth_scenarios.json").read_text())["scenarios"]
FAKE_CLI_SCRIPT = REPO / "tests/testdata/fake-databricks-cli.sh"
SENSITIVE = {"token", "password", "client_secret", "metadata_service_url"}
# Variables that could leak into a scenario from the machine running the tests.
_CLEARED_PREFIXES = ("DATABRICKS_", "ARM_", "GOOGLE_", "ACTIONS_ID_TOKEN_", "IS_IN_D", "FAKE_CLI_")
_CLEARED = {name for s in SCENARIOS for name in s["env"]}


def _executable(path: Path, text: bytes) -> Path:
    path.write_bytes(text)
    path.chmod(0o755)
    return path


@pytest.fixture(scope="module")
def cli_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``fakecli``: a fake ``databricks`` padded past 1 MiB; ``legacycli``: the same unpadded; ``emptydir``."""
    root = tmp_path_factory.mktemp("cli")
    script = FAKE_CLI_SCRIPT.read_bytes()
    dirs = {name: root / name for name in ("fakecli", "legacycli", "emptydir")}
    for d in dirs.values():
        d.mkdir()
    padding = b"# padding: the real CLI is a single binary of many megabytes\n"
    _executable(dirs["fakecli"] / "databricks", script + padding * (1024 * 1024 // len(padding) + 1))
    _executable(dirs["legacycli"] / "databricks", script)
    return dirs


Fill = Callable[[str], str]


@pytest.fixture
def scenario_env(
    monkeypatch: pytest.MonkeyPatch, cli_dirs: dict[str, Path], fake_workspace: FakeWorkspace
) -> Callable[[dict[str, Any]], dict[str, str]]:
    """Apply a scenario's HOME and environment (from the repository root); returns its keyword arguments."""

    def fill(text: str) -> str:
        text = text.replace("{emulator}", fake_workspace.host)
        for name, path in cli_dirs.items():
            text = text.replace("{" + name + "}", str(path))
        return text

    def apply(scenario: dict[str, Any]) -> dict[str, str]:
        monkeypatch.chdir(REPO)
        for name in list(os.environ):
            if name.startswith(_CLEARED_PREFIXES) or name in _CLEARED:
                monkeypatch.delenv(name)
        monkeypatch.setenv("HOME", scenario["home"])
        monkeypatch.setenv("PATH", str(cli_dirs["emptydir"]))
        for name, value in scenario["env"].items():
            monkeypatch.setenv(name, fill(value))
        scenario["_fill"] = fill
        return {k: fill(v) for k, v in scenario["args"].items()}

    return apply


def _expected(scenario: dict[str, Any], key: str = "want") -> tuple[str, str] | str:
    want = scenario[key]
    fill: Fill = scenario["_fill"]
    if "error" in want:
        return fill(want["error"])
    return (want["auth_type"], fill(want["host"]))


def _ours(args: dict[str, str]) -> tuple[str, str] | str:
    try:
        cfg = Config(**args)  # type: ignore[arg-type]
    except ConfigError as exc:
        return str(exc)
    assert cfg.auth_type is not None and cfg.host is not None
    return (cfg.auth_type, cfg.host)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s["name"] for s in SCENARIOS])
def test_scenario(scenario: dict[str, Any], scenario_env: Callable[[dict[str, Any]], dict[str, str]]) -> None:
    args = scenario_env(scenario)
    assert _ours(args) == _expected(scenario)
    if "error" in scenario["want"]:
        return
    cfg = Config(**args)  # type: ignore[arg-type]
    for name, value in scenario.get("values", {}).items():
        assert cfg.get(name) == ("***" if name in SENSITIVE else value), name
    text = repr(cfg)
    for name in SENSITIVE & scenario.get("values", {}).keys():
        assert scenario["values"][name] not in text


def test_there_are_enough_scenarios() -> None:
    assert len(SCENARIOS) >= 40
    assert len({s["name"] for s in SCENARIOS}) == len(SCENARIOS)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s["name"] for s in SCENARIOS])
def test_sdk_chooses_the_same(
    scenario: dict[str, Any], scenario_env: Callable[[dict[str, Any]], dict[str, str]]
) -> None:
    core = pytest.importorskip("databricks.sdk.core")
    args = scenario_env(scenario)
    ours = _ours(args)
    sdk_error: Exception | None = None
    try:
        cfg = core.Config(**args)
        sdk: tuple[str, str] | None = (cfg.auth_type, cfg.host)
    except Exception as exc:
        sdk, sdk_error = None, exc
    if "sdk" in scenario:
        # A known, deliberate difference (sdk_note says why): the SDK does what the scenario says it does.
        assert sdk == _expected(scenario, "sdk"), scenario["sdk_note"]
        return
    if not isinstance(ours, str):
        assert sdk == ours
        return
    assert sdk is None, f"devbox_native failed ({ours}) but the SDK chose {sdk}"
    if "sdk_note" not in scenario and isinstance(sdk_error, ValueError):
        # Where both fail with a message of the SDK's own, it is the same message, masked suffix included.
        assert str(sdk_error) == ours


# ------------------------------------------------------------------ each strategy against the emulator


@pytest.fixture
def ws(fake_workspace: FakeWorkspace, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeWorkspace]:
    """The emulator, with no Databricks settings from the machine and an empty HOME."""
    for name in list(os.environ):
        if name.startswith(_CLEARED_PREFIXES) or name in _CLEARED:
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))
    yield fake_workspace


def _calls(ws: FakeWorkspace, path: str) -> list[Any]:
    return [r for r in ws.requests if r.path == path]


def test_pat_success_and_failure(ws: FakeWorkspace) -> None:
    assert devbox_native.list_tokens(config=Config(host=ws.host, token=ws.pat)) == []
    assert _calls(ws, "/api/2.0/token/list")[0].headers["authorization"] == f"Bearer {ws.pat}"
    with pytest.raises(ApiError, match=r"^Invalid access token") as exc:
        devbox_native.list_tokens(config=Config(host=ws.host, token="dapi-not-a-token"))
    assert exc.value.status_code == 403 and "dapi-not-a-token" not in str(exc.value)


def test_basic_success_and_failure(ws: FakeWorkspace) -> None:
    cfg = Config(host=ws.host, username=ws.username, password=ws.password)
    assert cfg.auth_type == "basic"
    assert devbox_native.list_tokens(config=cfg) == []
    assert _calls(ws, "/api/2.0/token/list")[0].headers["authorization"].startswith("Basic ")
    bad = Config(host=ws.host, username=ws.username, password="wrong-password")
    with pytest.raises(ApiError) as exc:
        devbox_native.list_tokens(config=bad)
    assert exc.value.status_code == 401
    assert "wrong-password" not in str(exc.value) and "password=***" in str(exc.value)


def test_basic_from_a_profile_with_hash_in_the_password(ws: FakeWorkspace, tmp_path: Path) -> None:
    (tmp_path / ".databrickscfg").write_text(
        f"[DEFAULT]\nhost = {ws.host}\nusername = {ws.username}\npassword = {ws.password} # a comment\n"
    )
    assert "#" in ws.password
    cfg = Config()
    assert (cfg.auth_type, cfg.host) == ("basic", ws.host)
    assert devbox_native.list_tokens(config=cfg) == []


def test_metadata_service_success(ws: FakeWorkspace) -> None:
    cfg = Config(host=ws.host, metadata_service_url=ws.metadata_service_url)
    assert cfg.auth_type == "metadata-service"
    assert ws.metadata_service_url not in repr(cfg) and "metadata_service_url=***" in repr(cfg)
    assert not ws.requests  # nothing is fetched until the first call
    for _ in range(3):
        assert devbox_native.list_tokens(config=cfg) == []
    (meta,) = _calls(ws, "/metadata-service/token")
    assert meta.headers["x-databricks-metadata-version"] == "1"
    assert meta.headers["x-databricks-host"] == ws.host
    assert _calls(ws, "/api/2.0/token/list")[0].headers["authorization"].startswith("Bearer ")


def test_metadata_service_failure_names_the_strategy_and_hides_the_url(ws: FakeWorkspace) -> None:
    ws.inject("/metadata-service/token", status=404, times=None)
    with pytest.raises(AuthError) as exc:
        devbox_native.list_tokens(config=Config(host=ws.host, metadata_service_url=ws.metadata_service_url))
    msg = str(exc.value)
    assert msg.startswith("metadata-service: ") and "metadata_service_url=***" in msg
    assert ws.metadata_service_url not in msg and "/metadata-service/token" not in msg


def test_metadata_service_down_hides_the_url(ws: FakeWorkspace) -> None:
    ws.stop()
    with pytest.raises((AuthError, TimeoutError)) as exc:
        devbox_native.list_tokens(
            config=Config(host=ws.host, metadata_service_url=ws.metadata_service_url, retry_timeout_seconds=1)
        )
    assert "/metadata-service" not in str(exc.value)
    assert str(exc.value).startswith("metadata-service: ")


def _exchange_form(ws: FakeWorkspace) -> dict[str, str]:
    (req,) = _calls(ws, "/oidc/v1/token")
    assert "authorization" not in req.headers  # no client secret in the OIDC flow
    return req.form()


def test_env_oidc_success(ws: FakeWorkspace, monkeypatch: pytest.MonkeyPatch) -> None:
    ws.federated_tokens.add("ci-id-token-123")
    monkeypatch.setenv("DATABRICKS_OIDC_TOKEN", "ci-id-token-123")
    cfg = Config(host=ws.host, client_id=ws.client_id)
    assert cfg.auth_type == "env-oidc"
    assert devbox_native.list_tokens(config=cfg) == []
    assert _exchange_form(ws) == {
        "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
        "scope": "all-apis",
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "subject_token": "ci-id-token-123",
        "client_id": ws.client_id,
    }


def test_env_oidc_named_variable_without_client_id(ws: FakeWorkspace, monkeypatch: pytest.MonkeyPatch) -> None:
    ws.federated_tokens.add("gitlab-id-token")
    monkeypatch.setenv("MY_CI_ID_TOKEN", "gitlab-id-token")
    cfg = Config(host=ws.host, oidc_token_env="MY_CI_ID_TOKEN")
    assert cfg.auth_type == "env-oidc"
    assert devbox_native.list_tokens(config=cfg) == []
    form = _exchange_form(ws)
    assert form["subject_token"] == "gitlab-id-token" and "client_id" not in form  # account-wide federation


def test_env_oidc_failure_names_the_strategy(ws: FakeWorkspace, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABRICKS_OIDC_TOKEN", "untrusted-id-token")
    with pytest.raises(AuthError) as exc:
        devbox_native.list_tokens(config=Config(host=ws.host, client_id=ws.client_id))
    msg = str(exc.value)
    assert msg.startswith("env-oidc: invalid_grant: The subject token is not valid for token exchange. Config: ")
    assert "untrusted-id-token" not in msg


def test_env_oidc_many_threads_one_exchange(ws: FakeWorkspace, monkeypatch: pytest.MonkeyPatch) -> None:
    ws.federated_tokens.add("shared-id-token")
    monkeypatch.setenv("DATABRICKS_OIDC_TOKEN", "shared-id-token")
    cfg = Config(host=ws.host, client_id=ws.client_id)
    errors: list[BaseException] = []

    def call() -> None:
        try:
            devbox_native.list_tokens(config=cfg)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(_calls(ws, "/oidc/v1/token")) == 1
    assert len(_calls(ws, "/oidc/.well-known/oauth-authorization-server")) == 1


def test_file_oidc_success_and_rotation(ws: FakeWorkspace, tmp_path: Path) -> None:
    ws.access_token_ttl = 30  # shorter than the 40 s margin: every call exchanges again
    token_file = tmp_path / "id-token"
    token_file.write_text("k8s-token-1\n")
    ws.federated_tokens.update({"k8s-token-1", "k8s-token-2"})
    cfg = Config(host=ws.host, oidc_token_filepath=str(token_file))
    assert cfg.auth_type == "file-oidc"
    devbox_native.list_tokens(config=cfg)
    token_file.write_text("k8s-token-2")
    devbox_native.list_tokens(config=cfg)
    subjects = [r.form()["subject_token"] for r in _calls(ws, "/oidc/v1/token")]
    assert subjects == ["k8s-token-1", "k8s-token-2"]


def test_file_oidc_failures(ws: FakeWorkspace, tmp_path: Path) -> None:
    token_file = tmp_path / "id-token"
    token_file.write_text("not-federated")
    with pytest.raises(AuthError, match=r"^file-oidc: invalid_grant: "):
        devbox_native.list_tokens(config=Config(host=ws.host, oidc_token_filepath=str(token_file)))
    token_file.write_text("  \n")
    with pytest.raises(ConfigError, match=rf"^default auth: file-oidc: file {token_file} is empty\. Config: "):
        Config(host=ws.host, oidc_token_filepath=str(token_file))


@pytest.fixture
def fake_cli(cli_dirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The fake ``databricks`` on PATH; returns the file its calls are logged to."""
    monkeypatch.setenv("PATH", str(cli_dirs["fakecli"]))
    log = tmp_path / "cli-calls.log"
    monkeypatch.setenv("FAKE_CLI_LOG", str(log))
    return log


def test_databricks_cli_success(ws: FakeWorkspace, fake_cli: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_CLI_TOKEN", ws.pat)
    cfg = Config(host=ws.host)
    assert cfg.auth_type == "databricks-cli"
    assert not fake_cli.exists()  # the CLI runs at the first call, not in Config()
    for _ in range(2):
        assert devbox_native.list_tokens(config=cfg) == []
    assert fake_cli.read_text() == f"auth token --host {ws.host}\n"  # once: the token is cached until expiry
    assert _calls(ws, "/api/2.0/token/list")[0].headers["authorization"] == f"Bearer {ws.pat}"


def test_databricks_cli_failure(ws: FakeWorkspace, fake_cli: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_CLI_FAIL", "1")
    with pytest.raises(AuthError) as exc:
        devbox_native.list_tokens(config=Config(host=ws.host))
    assert str(exc.value) == (
        f"databricks-cli: cannot get access token: Error: cannot get access token: default auth: databricks-cli: "
        f"cannot find a login for {ws.host}. Run 'databricks auth login --host {ws.host}'. "
        f"Config: host={ws.host}, auth_type=databricks-cli"
    )


def test_databricks_cli_missing_binary_when_asked_for(ws: FakeWorkspace, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        Config(host=ws.host, databricks_cli_path=str(tmp_path / "no-such-cli"))
    assert str(exc.value).startswith(
        f"default auth: databricks-cli: databricks_cli_path {tmp_path / 'no-such-cli'} is not an executable file: "
        "install the Databricks CLI"
    )


def test_databricks_cli_is_found_through_the_path_attribute(
    ws: FakeWorkspace, cli_dirs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_CLI_TOKEN", ws.pat)
    cli = shutil.copy(cli_dirs["fakecli"] / "databricks", tmp_path / "my-databricks")
    cfg = Config(host=ws.host, databricks_cli_path=str(cli))
    assert cfg.auth_type == "databricks-cli"
    assert devbox_native.list_tokens(config=cfg) == []


def test_repr_masks_every_sensitive_attribute(ws: FakeWorkspace) -> None:
    secrets = {
        "token": "dapi-secret-token",
        "password": "secret-password",
        "client_secret": "secret-client-secret",
        "metadata_service_url": "http://127.0.0.1:9/secret-metadata",
    }
    cfg = Config(host=ws.host, username="u", client_id="c", auth_type="pat", **secrets)
    for name, value in secrets.items():
        assert value not in repr(cfg) and value not in cfg.debug_string()
        assert f"{name}=***" in repr(cfg)
        assert cfg.get(name) == "***"
