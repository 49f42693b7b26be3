"""Token kinds (issue 10): ``TokenBroker(kind=...)`` and ``devbox-native token get --kind``, against the emulator."""

from __future__ import annotations

import http.client
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import age_cache, mode
from devbox_native import Config, ConfigError, TokenBroker, refresh_logging
from devbox_native.cli import main
from devbox_native.testing import FakeWorkspace


def _m2m(ws: FakeWorkspace) -> Config:
    return Config(host=ws.host, client_id=ws.client_id, client_secret=ws.client_secret)


def _token_requests(ws: FakeWorkspace) -> int:
    return sum(1 for r in ws.requests if r.method == "POST" and r.path == "/oidc/v1/token")


def _serving_status(ws: FakeWorkspace, token: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", ws.port, timeout=10)
    try:
        body = json.dumps({"model": "m", "messages": []})
        conn.request("POST", "/serving-endpoints/chat/completions", body, {"Authorization": f"Bearer {token}"})
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def test_oauth_kind_hands_out_the_identitys_access_token_and_mints_nothing(tmp_path: Path) -> None:
    with FakeWorkspace() as ws:
        broker = TokenBroker(cache_path=tmp_path / "t.json", config=_m2m(ws), kind="oauth")
        assert (broker.kind, broker.strategy, broker.refresh_margin) == ("oauth", "oauth-m2m", 900)
        token = broker.get()
        assert ws.live_tokens() == [] and not any(r.path == "/api/2.0/token/create" for r in ws.requests)
        assert _serving_status(ws, token) == 200
        assert broker.expires_at is not None and broker.expires_at - time.time() > 900
        assert broker.is_current(token) and broker.token_id is not None and token not in broker.token_id
        # Cached: a second broker (another process would be the same) makes no request.
        before = _token_requests(ws)
        assert TokenBroker(cache_path=tmp_path / "t.json", config=_m2m(ws), kind="oauth").get() == token
        assert _token_requests(ws) == before
        assert mode(tmp_path / "t.json") == 0o600


def test_auto_is_oauth_when_the_strategy_yields_one_else_pat(tmp_path: Path) -> None:
    with FakeWorkspace() as ws:
        auto = TokenBroker(cache_path=tmp_path / "t.json", config=_m2m(ws))
        assert auto.kind == "oauth"
        pat = TokenBroker(cache_path=tmp_path / "t.json", config=Config(host=ws.host, token=ws.pat))
        assert (pat.kind, pat.strategy, pat.refresh_margin) == ("pat", "pat", 600)
        minted = pat.get()
        assert ws.is_live(minted)
        explicit = TokenBroker(cache_path=tmp_path / "t.json", config=_m2m(ws), kind="pat")
        assert explicit.kind == "pat" and ws.is_live(explicit.get())
        oauth_token = auto.get()
        assert not ws.is_live(oauth_token) and _serving_status(ws, oauth_token) == 200
        # One entry per kind: the key is "<host> <kind>:<identity>".
        keys = set(json.loads((tmp_path / "t.json").read_text())["entries"])
        assert keys == {
            f"{ws.host} oauth:oauth-m2m:{ws.client_id}",
            f"{ws.host} pat:oauth-m2m:{ws.client_id}",
            f"{ws.host} pat:{pat.identity}",
        }


def test_oauth_with_a_strategy_that_has_none_is_a_config_error_naming_it(tmp_path: Path) -> None:
    with FakeWorkspace() as ws:
        with pytest.raises(ConfigError, match=r"kind='oauth': the pat strategy yields no OAuth token"):
            TokenBroker(cache_path=tmp_path / "t.json", config=Config(host=ws.host, token=ws.pat), kind="oauth")
        basic = Config(host=ws.host, username=ws.username, password=ws.password)
        with pytest.raises(ConfigError, match=r"the basic strategy"):
            TokenBroker(cache_path=tmp_path / "t.json", config=basic, kind="oauth")
        with pytest.raises(ValueError, match=r"^kind: must be one of"):
            TokenBroker(cache_path=tmp_path / "t.json", config=_m2m(ws), kind="jwt")  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            TokenBroker(cache_path=tmp_path / "t.json", config=_m2m(ws), kind=1)  # type: ignore[arg-type]


def test_get_never_returns_a_token_inside_the_margin(tmp_path: Path) -> None:
    cache = tmp_path / "t.json"
    with FakeWorkspace() as ws:
        broker = TokenBroker(cache_path=cache, config=_m2m(ws), kind="oauth")
        first = broker.get()
        age_cache(cache, 901)
        before = _token_requests(ws)
        assert broker.get() == first and _token_requests(ws) == before
        age_cache(cache, 899)  # inside the 900 s margin: replaced, though it still works
        second = broker.get()
        assert second != first and _token_requests(ws) == before + 1
        assert broker.expires_at is not None and broker.expires_at - time.time() > 900
        # A refused token is replaced on request; nothing is revoked (there is nothing to revoke).
        third = broker.force_refresh(replacing=broker.token_id)
        assert third != second and broker.pending_revocations == [] and ws.revoked_token_ids() == []


def test_no_secret_in_any_log_line(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with FakeWorkspace() as ws, caplog.at_level(logging.DEBUG, logger="devbox_native"):
        refresh_logging()
        broker = TokenBroker(cache_path=tmp_path / "t.json", config=_m2m(ws), kind="oauth")
        token = broker.get()
        broker.force_refresh()
        text = "\n".join(r.getMessage() for r in caplog.records) + repr(broker)
        assert "fetched an OAuth token" in text
        assert token not in text and ws.client_secret not in text


def _cli_env(ws: FakeWorkspace) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATABRICKS_")}
    return {**env, **ws.env()}


def test_token_get_kind_oauth_from_20_processes_makes_one_token_request(tmp_path: Path) -> None:
    cache = tmp_path / "t.json"
    with FakeWorkspace() as ws:
        ws.clear_requests()
        argv = [sys.executable, "-m", "devbox_native", "token", "get", "--kind", "oauth", "--cache", str(cache)]
        procs = [
            subprocess.Popen(argv, env=_cli_env(ws), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(20)
        ]
        outs = [p.communicate(timeout=120) for p in procs]
        assert all(p.returncode == 0 for p in procs), [o[1] for o in outs]
        tokens = {o[0].strip() for o in outs}
        assert len(tokens) == 1
        assert _token_requests(ws) == 1
        assert ws.live_tokens() == []
        assert _serving_status(ws, tokens.pop()) == 200


def test_token_get_kind_flags_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cache = tmp_path / "t.json"
    with FakeWorkspace() as ws, pytest.MonkeyPatch.context() as mp:
        for k, v in ws.env().items():
            mp.setenv(k, v)
        assert main("token", "get", "--kind", "pat", "--json", "--cache", str(cache)) == 0
        out = json.loads(capsys.readouterr().out)
        assert (out["kind"], out["strategy"]) == ("pat", "oauth-m2m") and ws.is_live(out["token"])
        assert main("token", "get", "--json", "--cache", str(cache)) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["kind"] == "oauth" and not ws.is_live(out["token"])
        assert out["expires_at"] - time.time() > 900
        with pytest.raises(SystemExit):
            main("token", "get", "--kind", "jwt")
        # doctor: the kind, the strategy and the remaining life, never the token.
        assert main("doctor", "--json", "--cache", str(cache), "--root", str(tmp_path)) in (0, 3)
        text = capsys.readouterr().out
        check = next(c for c in json.loads(text)["checks"] if c["check"] == "agent_token")
        assert (check["kind"], check["strategy"]) == ("oauth", "oauth-m2m")
        assert "expires in" in check["detail"] and out["token"] not in text


def test_token_get_kind_oauth_with_a_pat_fails_naming_the_strategy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with FakeWorkspace() as ws, pytest.MonkeyPatch.context() as mp:
        mp.delenv("DATABRICKS_CLIENT_ID", raising=False)
        mp.delenv("DATABRICKS_CLIENT_SECRET", raising=False)
        mp.setenv("DATABRICKS_HOST", ws.host)
        mp.setenv("DATABRICKS_TOKEN", ws.pat)
        assert main("token", "get", "--kind", "oauth", "--cache", str(tmp_path / "t.json")) == 1
        err = capsys.readouterr().err
        assert "the pat strategy yields no OAuth token" in err and ws.pat not in err


def test_an_oauth_token_that_lives_little_longer_than_the_margin_is_renewed_in_time(tmp_path: Path) -> None:
    with FakeWorkspace(access_token_ttl=902) as ws:
        broker = TokenBroker(cache_path=tmp_path / "t.json", config=_m2m(ws), kind="oauth")
        first = broker.get()
        assert broker.get() == first  # still more than 900 s left
        time.sleep(2.5)
        second = broker.get()  # now inside the margin, though still valid: replaced before it expires
        assert second != first and ws.accepts(first) and ws.accepts(second)
        assert _token_requests(ws) == 2
