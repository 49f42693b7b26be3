"""End to end with the real Claude Code Router 3.1.1 (installed by `make ccr3-deps`) and the workspace emulator:
the config form 3.x imports on its first start, our provider installed over its management RPC once it ran,
the errors when that RPC cannot be used, and gateway mode (for 3.x and for 1.0.73) where the gateway exists.

Every CCR started is stopped by `ccr stop` and then by PID (service.json's and its children); only 127.0.0.1 is
contacted."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import devbox_native
import pytest
from ccr_harness import CCR3_ROOT, Ccr, Ccr3, free_port, legacy_config, require_ccr3
from devbox_native import ConfigError
from devbox_native.testing import FakeWorkspace

MODEL = "databricks-claude-sonnet-4"
NEEDS_GATEWAY = pytest.mark.skipif(
    not hasattr(devbox_native, "start_gateway"), reason="needs the credential gateway (issue 10)"
)


def _request(stream: bool = False, model: str = "claude-sonnet-4-20250514") -> dict[str, Any]:
    return {
        "model": model,
        "max_tokens": 64,
        "stream": stream,
        "system": [{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hello"}]}],
    }


def _anthropic_calls(ws: FakeWorkspace) -> list[dict[str, Any]]:
    return [i for i in ws.invocations if i["path"] == "/serving-endpoints/anthropic/v1/messages"]


def _model_for(ccr: Ccr3 | Ccr) -> str:
    """The model a client asks CCR for: 3.x's router selects ours as `databricks/<model>`; 1.x routes any model by
    Router.default."""
    return f"databricks/{MODEL}" if isinstance(ccr, Ccr3) else "claude-sonnet-4-20250514"


def _check_plain_and_stream(ccr: Ccr3 | Ccr, ws: FakeWorkspace, bearer: str) -> None:
    """A plain and a streaming Messages request through CCR reach the emulator with ``Bearer <bearer>`` and
    come back as a valid Anthropic message and event stream."""
    before = len(ws.invocations)
    model = _model_for(ccr)
    status, raw = ccr.messages(_request(model=model))
    assert status == 200, raw
    reply = json.loads(raw)
    assert reply["type"] == "message" and reply["content"][0]["text"] == ws.reply_text, reply
    status, raw = ccr.messages(_request(stream=True, model=model))
    assert status == 200
    text = raw.decode()
    events = [line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("event:")]
    assert events[0] == "message_start" and events[-1] == "message_stop", text[:500]
    assert ws.reply_text in text
    plain, streamed = ws.invocations[before:]
    assert plain["authorization"] == streamed["authorization"] == f"Bearer {bearer}"
    assert streamed["body"]["stream"] is True
    assert plain["body"]["model"] == MODEL


def _set_port(config: Path, port: int) -> None:
    data = json.loads(config.read_text())
    data["PORT"] = port
    config.write_text(json.dumps(data, indent=2))


@pytest.fixture
def ccr3(tmp_path: Path) -> Iterator[Ccr3]:
    ccr = Ccr3(tmp_path / "home")
    try:
        yield ccr
    finally:
        ccr.stop()


def _run_with_legacy_config(ccr3: Ccr3, extra: dict[str, Any] | None = None) -> None:
    """Start CCR 3.x on a HOME whose 1.x-style config.json (the user's own openrouter provider, plus `extra`) it
    imports on this first start; its management RPC then answers."""
    legacy_config(ccr3.home, ccr3.port, extra)
    ccr3.start()


def _ccr3_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """The `ccr` on PATH is the real 3.1.1, as `setup` and `doctor` find it."""
    monkeypatch.setenv("PATH", f"{CCR3_ROOT / '.bin'}:{os.environ['PATH']}")


def _doctor(capsys: pytest.CaptureFixture[str], home: Path, cache: Path, *secrets: str) -> dict[str, dict[str, Any]]:
    """`devbox-native doctor --json` on `home`: its checks by name; none of `secrets` is in its output."""
    from devbox_native.cli import main

    capsys.readouterr()
    main("doctor", "--root", str(home), "--cache", str(cache), "--json")
    out = capsys.readouterr().out
    assert not [s for s in secrets if s in out], "doctor printed a secret"
    return {c["check"]: c for c in json.loads(out)["checks"]}


# ----------------------------------------------------------------------------------------- before first start


def test_fresh_home_config_is_imported_and_serves_anthropic_messages(
    ccr3: Ccr3, fake_workspace_env: FakeWorkspace
) -> None:
    ws = fake_workspace_env
    done = devbox_native.install_ccr3_provider(ws.pat, ccr3.home, host=ws.host, model=MODEL)
    assert done["mode"] == "config.json" and done["rpc_url"] is None
    config = Path(done["path"])
    assert config == ccr3.dir / "config.json" and config.stat().st_mode & 0o777 == 0o600
    written = json.loads(config.read_text())
    assert written["Providers"][0]["protocol"] == "anthropic_messages"
    assert written["Providers"][0]["api_base_url"] == f"{ws.host}/serving-endpoints/anthropic"
    _set_port(config, ccr3.port)
    ccr3.start()
    assert (ccr3.dir / "config.sqlite").exists()
    stored = ccr3.config()
    (ours,) = [p for p in stored["Providers"] if p["name"] == "databricks"]
    assert ours["capabilities"] == [{"baseUrl": f"{ws.host}/serving-endpoints/anthropic", "type": "anthropic_messages"}]
    assert stored["profile"]["claudeCode"]["model"] == f"databricks/{MODEL}"
    _check_plain_and_stream(ccr3, ws, ws.pat)
    assert _anthropic_calls(ws), "the Anthropic-messages endpoint was used"


# ------------------------------------------------------------------------------------------- over the RPC


def test_rpc_adds_our_provider_keeps_the_users_and_a_new_key_applies_live(
    ccr3: Ccr3, fake_workspace_env: FakeWorkspace, tmp_path: Path
) -> None:
    ws = fake_workspace_env
    _run_with_legacy_config(ccr3, {"theme": "dark"})
    pid = ccr3.pid()
    before = ccr3.config()
    sqlite = ccr3.dir / "config.sqlite"
    done = devbox_native.install_ccr3_provider(ws.pat, ccr3.home, host=ws.host, model=MODEL)
    assert done["mode"] == "rpc" and done["path"] is None
    assert done["rpc_url"] == f"http://127.0.0.1:{ccr3.web_port}/api/ccr/rpc"
    assert done["added"] is True and done["set_default"] is True
    assert not (ccr3.dir / "config.json").exists(), "nothing written for 3.x to ignore"
    after = ccr3.config()
    user = [p for p in after["Providers"] if p["name"] == "openrouter"]
    assert user == [p for p in before["Providers"] if p["name"] == "openrouter"]
    assert user[0]["api_key"] == "sk-or-user-own-key"
    assert (after["theme"], after["API_TIMEOUT_MS"], after["PORT"]) == ("dark", 123000, ccr3.port)
    assert after["profile"]["claudeCode"]["model"] == f"databricks/{MODEL}"
    _check_plain_and_stream(ccr3, ws, ws.pat)

    # A second install updates our provider in place (a new key), live: same CCR process, no restart.
    new = devbox_native.create_token(lifetime_seconds=600).token_value
    again = devbox_native.install_ccr3_provider(new, ccr3.home, host=ws.host, model=MODEL)
    assert again["added"] is False and again["set_default"] is False
    assert len([p for p in ccr3.config()["Providers"] if p["name"] == "databricks"]) == 1
    _check_plain_and_stream(ccr3, ws, new)
    assert ccr3.pid() == pid and sqlite.exists()


def test_a_chosen_profile_model_is_kept(ccr3: Ccr3, fake_workspace_env: FakeWorkspace) -> None:
    ws = fake_workspace_env
    _run_with_legacy_config(ccr3, {"profile": {"claudeCode": {"model": "openrouter/some/model"}}})
    done = devbox_native.install_ccr3_provider(ws.pat, ccr3.home, host=ws.host, model=MODEL)
    assert done["set_default"] is False
    assert ccr3.config()["profile"]["claudeCode"]["model"] == "openrouter/some/model"


def test_a_wrong_rpc_token_is_refused_and_nothing_changes(ccr3: Ccr3, fake_workspace_env: FakeWorkspace) -> None:
    ws = fake_workspace_env
    _run_with_legacy_config(ccr3)
    before = ccr3.config()
    with pytest.raises(ConfigError) as info:
        devbox_native.install_ccr3_provider(ws.pat, ccr3.home, host=ws.host, web_token="not-the-token")
    message = str(info.value)
    assert "refused the management token (HTTP 401)" in message and "nothing was changed" in message
    assert f"http://127.0.0.1:{ccr3.web_port}/api/ccr/rpc" in message
    assert "not-the-token" not in message and ws.pat not in message
    assert ccr3.config() == before
    # The right token given explicitly (as CCR_WEB_AUTH_TOKEN would) works.
    from urllib.parse import parse_qs, urlparse

    token = parse_qs(urlparse(ccr3.service()["url"]).query)["ccr_web_token"][0]
    assert devbox_native.install_ccr3_provider(ws.pat, ccr3.home, host=ws.host, web_token=token)["added"]


def test_a_stopped_ccr_gives_a_clear_error_and_nothing_changes(ccr3: Ccr3, fake_workspace_env: FakeWorkspace) -> None:
    ws = fake_workspace_env
    _run_with_legacy_config(ccr3)
    ccr3.stop()
    files = {p.name: p.read_bytes() for p in ccr3.dir.iterdir() if p.is_file()}
    with pytest.raises(ConfigError) as info:
        devbox_native.install_ccr3_provider(ws.pat, ccr3.home, host=ws.host)
    assert "`ccr start`" in str(info.value) and "service.json" in str(info.value)
    assert {p.name: p.read_bytes() for p in ccr3.dir.iterdir() if p.is_file()} == files


# ---------------------------------------------------------------------------- bad service.json, no CCR needed


def _sqlite_home(tmp_path: Path) -> Path:
    """A HOME whose CCR 3.x already ran (config.sqlite exists; its content does not matter here)."""
    d = tmp_path / "home" / ".claude-code-router"
    d.mkdir(parents=True)
    (d / "config.sqlite").write_bytes(b"SQLite format 3\x00 stand-in")
    return tmp_path / "home"


def _snapshot(home: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (home / ".claude-code-router").iterdir()}


@pytest.mark.parametrize(
    ("service", "want"),
    [
        (None, "service.json: missing, so CCR 3.x is not running"),
        ("{not json", "service.json: not valid JSON"),
        ('{"pid": 1}', 'service.json: has no "url"'),
        ('{"url": "http://127.0.0.1:1/"}', "CCR_WEB_AUTH_TOKEN"),
    ],
)
def test_bad_service_json_is_a_clear_error(tmp_path: Path, service: str | None, want: str) -> None:
    home = _sqlite_home(tmp_path)
    if service is not None:
        (home / ".claude-code-router" / "service.json").write_text(service)
    before = _snapshot(home)
    with pytest.raises(ConfigError) as info:
        devbox_native.install_ccr3_provider("k", home, host="http://127.0.0.1:9")
    assert want in str(info.value) and "`ccr start`" in str(info.value), info.value
    assert _snapshot(home) == before
    with pytest.raises(ConfigError):
        devbox_native.get_ccr3_config(home)


def test_an_rpc_that_does_not_answer_names_the_url(tmp_path: Path) -> None:
    home = _sqlite_home(tmp_path)
    port = free_port()
    secret = "web-s3cret"
    (home / ".claude-code-router" / "service.json").write_text(
        json.dumps({"pid": 999999, "url": f"http://127.0.0.1:{port}/?ccr_web_token={secret}"})
    )
    before = _snapshot(home)
    with pytest.raises(ConfigError) as info:
        devbox_native.install_ccr3_provider("k", home, host="http://127.0.0.1:9", timeout=5)
    message = str(info.value)
    assert f"http://127.0.0.1:{port}/api/ccr/rpc does not answer" in message and "`ccr start`" in message
    assert secret not in message
    assert _snapshot(home) == before


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"^api_key: "):
        devbox_native.install_ccr3_provider("a b", tmp_path, host="h")
    with pytest.raises(ValueError, match=r"^gateway_url: "):
        devbox_native.install_ccr3_provider("k", tmp_path, gateway_url="ftp://x")
    with pytest.raises(ValueError, match=r"^model: "):
        devbox_native.install_ccr3_provider("k", tmp_path, host="h", model="a/b")
    with pytest.raises(ValueError, match=r"^timeout: "):
        devbox_native.install_ccr3_provider("k", tmp_path, host="h", timeout=0)
    with pytest.raises(TypeError):
        devbox_native.install_ccr3_provider(1, tmp_path, host="h")  # type: ignore[arg-type]
    assert not (tmp_path / ".claude-code-router").exists()


# -------------------------------------------------------------------------------------- gateway mode, 1.x


def test_gateway_mode_1x_keeps_the_structure_and_holds_no_token(tmp_path: Path) -> None:
    plain = json.loads(devbox_native.write_ccr_config("dapi-plain", tmp_path / "a", host="h.example").read_text())
    path = devbox_native.write_ccr_config("gw-key", tmp_path / "b", gateway_url="http://127.0.0.1:8123/")
    gw = json.loads(path.read_text())
    assert gw["Providers"][0]["api_base_url"] == f"http://127.0.0.1:8123/serving-endpoints/{MODEL}/invocations"
    assert gw["Providers"][0]["api_key"] == "gw-key"
    plain["Providers"][0].update(api_base_url="", api_key="")
    gw["Providers"][0].update(api_base_url="", api_key="")
    plain["transformers"][0]["path"] = gw["transformers"][0]["path"] = ""
    assert json.dumps(gw) == json.dumps(plain), "same keys, order and values otherwise"
    # update_ccr_token in gateway mode moves an existing token config onto the gateway.
    old = tmp_path / "a"
    devbox_native.update_ccr_token("gw-key-2", old, gateway_url="http://127.0.0.1:8124")
    text = (old / ".claude-code-router" / "config.json").read_text()
    assert "dapi-plain" not in text and "h.example" not in text
    assert json.loads(text)["Providers"][0]["api_base_url"].startswith("http://127.0.0.1:8124/serving-endpoints/")


# ---------------------------------------------------------------------------------- with the gateway (issue 10)


@pytest.fixture
def gateway(tmp_path: Path, fake_workspace_env: FakeWorkspace) -> Iterator[Any]:
    start = getattr(devbox_native, "start_gateway")  # noqa: B009 - present once issue 10 is merged
    with start(0, kind="pat", cache_path=tmp_path / "cache" / "token.json") as gw:
        yield gw


def _gateway_key(tmp_path: Path) -> str:
    return (tmp_path / "cache" / "gateway.key").read_text().strip()


def _survives_a_revocation(ccr: Ccr3 | Ccr, ws: FakeWorkspace, key: str) -> None:
    """Through CCR and the gateway: a request, the token it carried upstream revoked server-side (never the gateway
    `key`), then a plain and a streamed request, both answered, with a new live token."""
    model = _model_for(ccr)
    status, _ = ccr.messages(_request(model=model))
    assert status == 200
    first = ws.invocations[-1]["authorization"]
    assert first.startswith("Bearer ") and key not in first
    ws.revoke_token(str(ws.token_id_of(first.removeprefix("Bearer "))))
    status, raw = ccr.messages(_request(model=model))
    assert status == 200, raw
    status, raw = ccr.messages(_request(stream=True, model=model))
    assert status == 200 and b"message_stop" in raw
    second = ws.invocations[-1]["authorization"]
    assert second != first and ws.is_live(second.removeprefix("Bearer ")) and key not in second


def _setup(home: Path, tmp_path: Path, gateway_url: str) -> None:
    from devbox_native.cli import main

    key = str(tmp_path / "cache" / "gateway.key")
    assert main("setup", "--root", str(home), "--gateway", gateway_url, "--gateway-key-file", key, "--json") == 0


@NEEDS_GATEWAY
def test_ccr3_through_the_gateway_survives_a_revoked_token_without_restart(
    ccr3: Ccr3,
    fake_workspace_env: FakeWorkspace,
    gateway: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ws = fake_workspace_env
    # `setup` finds CCR 3.1.1 (its package.json through the `ccr` on PATH) and writes the config 3.x imports.
    _ccr3_on_path(monkeypatch)
    _setup(ccr3.home, tmp_path, gateway.url)
    _set_port(ccr3.dir / "config.json", ccr3.port)
    ccr3.start()
    pid = ccr3.pid()
    _survives_a_revocation(ccr3, ws, _gateway_key(tmp_path))
    assert ccr3.pid() == pid, "CCR was not restarted"
    assert _gateway_key(tmp_path) in json.dumps(ccr3.config()) and "dapi" not in json.dumps(ccr3.config()["Providers"])
    # doctor: the provider points at the running gateway, which answers.
    checks = _doctor(capsys, ccr3.home, tmp_path / "cache" / "token.json")
    assert checks["ccr3_provider"]["status"] == "ok", checks["ccr3_provider"]
    assert checks["ccr3_gateway"]["status"] == "ok", checks["ccr3_gateway"]


@NEEDS_GATEWAY
def test_ccr1_in_gateway_mode_holds_no_token_and_survives_a_revoked_one(
    fake_workspace_env: FakeWorkspace, gateway: Any, tmp_path: Path
) -> None:
    ws = fake_workspace_env
    home = tmp_path / "home1"
    config = devbox_native.write_ccr_config(_gateway_key(tmp_path), home, gateway_url=gateway.url, model=MODEL)
    port = free_port()
    _set_port(config, port)
    assert "dapi" not in config.read_text()
    ccr = Ccr(home, port)
    try:
        ccr.start()
        pid = ccr.pid() or ccr.started[0]
        _survives_a_revocation(ccr, ws, _gateway_key(tmp_path))
        assert (ccr.pid() or ccr.started[0]) == pid and len(ccr.started) == 1, "no restart"
    finally:
        ccr.stop()


# ------------------------------------------------------------------------------------------------- doctor


def test_doctor_checks_the_store_the_rpc_and_our_provider(
    ccr3: Ccr3,
    fake_workspace_env: FakeWorkspace,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ws = fake_workspace_env
    _ccr3_on_path(monkeypatch)

    def doctor() -> dict[str, dict[str, Any]]:
        return _doctor(capsys, ccr3.home, tmp_path / "cache" / "token.json", ws.pat, "sk-or-user-own-key")

    legacy_config(ccr3.home, ccr3.port)
    assert doctor()["ccr3_store"]["status"] == "warn", "not started yet"
    ccr3.start()
    checks = doctor()
    assert checks["ccr"]["version"] == "3.1.1"
    assert checks["ccr3_store"]["status"] == "ok"
    assert checks["ccr3_rpc"]["status"] == "ok" and str(ccr3.web_port) in checks["ccr3_rpc"]["detail"]
    assert checks["ccr3_provider"]["status"] == "problem", "our provider is not there yet"
    assert checks["ccr3_gateway"]["status"] == "warn", "no gateway runs"
    devbox_native.install_ccr3_provider(ws.pat, ccr3.home, host=ws.host, model=MODEL)
    checks = doctor()
    assert (
        checks["ccr3_provider"]["status"] == "warn"
        and "not at the credential gateway" in checks["ccr3_provider"]["detail"]
    )
    ccr3.stop()
    checks = doctor()
    assert checks["ccr3_rpc"]["status"] == "warn" and "`ccr start`" in checks["ccr3_rpc"]["detail"]


# -------------------------------------------------------------------------------------------- setup --gateway


def _on_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, version: str) -> None:
    """`ccr` on PATH is the real 3.1.1 (for "3.1.1") or a package.json of `version` (1.x needs no real CCR)."""
    if version == "3.1.1":
        require_ccr3()
        _ccr3_on_path(monkeypatch)
        return
    pkg = tmp_path / "npm" / "claude-code-router"
    pkg.mkdir(parents=True)
    (pkg / "package.json").write_text(json.dumps({"name": "@musistudio/claude-code-router", "version": version}))
    (pkg / "cli.js").write_text("#!/bin/sh\nexit 0\n")
    (pkg / "cli.js").chmod(0o755)
    (tmp_path / "npm" / "bin").mkdir()
    (tmp_path / "npm" / "bin" / "ccr").symlink_to(pkg / "cli.js")
    monkeypatch.setenv("PATH", f"{tmp_path / 'npm' / 'bin'}:{os.environ['PATH']}")


GATEWAY_KEY = "ab" * 32  # a gateway key is 256 random bits as 64 hex digits


def _gateway_files(tmp_path: Path, port: int, pid: int) -> Path:
    """gateway.key and gateway.json (0600) as a running gateway leaves them; returns the broker cache path."""
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    for name, text in (
        ("gateway.key", GATEWAY_KEY + "\n"),
        ("gateway.json", json.dumps({"pid": pid, "port": port, "url": f"http://127.0.0.1:{port}", "started_at": 0})),
    ):
        (cache / name).write_text(text)
        (cache / name).chmod(0o600)
    return cache / "token.json"


@pytest.mark.parametrize("version", ["1.0.73", "3.1.1"])
def test_setup_gateway_auto_writes_the_config_for_that_ccr_without_a_token(
    fake_workspace_env: FakeWorkspace,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    version: str,
) -> None:
    from devbox_native.cli import main

    _on_path(monkeypatch, tmp_path, version)
    home = tmp_path / "home"
    with socket.create_server(("127.0.0.1", 0)) as listening:  # a running gateway's port answers
        port = listening.getsockname()[1]
        url = f"http://127.0.0.1:{port}"
        cache = _gateway_files(tmp_path, port, os.getpid())
        assert main("setup", "--root", str(home), "--gateway", "auto", "--cache", str(cache), "--json") == 0
    out = json.loads(capsys.readouterr().out)
    assert out["gateway"] == url and out["ccr_version"] == version
    config = json.loads((home / ".claude-code-router" / "config.json").read_text())
    (ours,) = config["Providers"]
    assert ours["api_key"] == GATEWAY_KEY
    if version == "3.1.1":
        assert out["mode"] == "config.json"
        assert (ours["protocol"], ours["api_base_url"]) == ("anthropic_messages", f"{url}/serving-endpoints/anthropic")
    else:
        assert ours["api_base_url"] == f"{url}/serving-endpoints/{MODEL}/invocations"
        assert list(config) == list(
            json.loads(devbox_native.write_ccr_config("t", tmp_path / "x", host="h").read_text())
        )
    assert not [r for r in fake_workspace_env.requests if r.path == "/api/2.0/token/create"], "no token minted"


def test_setup_refuses_ccr3_without_a_gateway_and_auto_needs_a_live_one(
    fake_workspace_env: FakeWorkspace,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from devbox_native.cli import main

    _on_path(monkeypatch, tmp_path, "3.1.1")
    home = tmp_path / "home"
    assert main("setup", "--root", str(home)) == 1
    assert "devbox-native gateway" in capsys.readouterr().err
    # A gateway.json whose pid is gone is not a running gateway.
    dead = subprocess.Popen(["true"])
    dead.wait()
    cache = _gateway_files(tmp_path, 8765, dead.pid)
    assert main("setup", "--root", str(home), "--gateway", "auto", "--cache", str(cache)) == 1
    assert "no running credential gateway" in capsys.readouterr().err
    assert not (home / ".claude-code-router").exists()
    assert not [r for r in fake_workspace_env.requests if r.path == "/api/2.0/token/create"]
