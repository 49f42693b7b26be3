"""examples/app/vibe_code.py: the app's start-up file rewired to devbox_native, run against the emulator."""

from __future__ import annotations

import http.client
import importlib.util
import json
import os
import shlex
import subprocess
import sys
import tomllib
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import devbox_native
import pytest
from conftest import expected_config, mode
from devbox_native.testing import FakeWorkspace

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "app" / "vibe_code.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("vibe_code_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_app_never_imports_the_sdk() -> None:
    before = set(sys.modules)
    _load()
    assert not any(m.startswith("databricks") for m in set(sys.modules) - before)


@contextmanager
def _start_up(app: ModuleType) -> Iterator[dict[str, Path]]:
    """The example's start-up, its gateway stopped afterwards (as the app's exit does)."""
    try:
        yield app.start_tokens_and_configs()
    finally:
        app.stop_credential_gateway()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temp HOME for the app (the broker's cache and the gateway's files under it, as in the app)."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    return tmp_path


def _dotenv(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


def _get(url: str, path: str, headers: dict[str, str] | None = None, body: Any = None) -> tuple[int, Any]:
    parsed = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parsed.hostname or "", parsed.port, timeout=30)
    try:
        data = None if body is None else json.dumps(body)
        conn.request(
            "GET" if body is None else "POST", path, data, {"Content-Type": "application/json", **(headers or {})}
        )
        r = conn.getresponse()
        return r.status, json.loads(r.read() or b"null")
    finally:
        conn.close()


def test_token_and_config_steps_against_the_emulator(fake_workspace_env: FakeWorkspace, home: Path) -> None:
    ws = fake_workspace_env
    app = _load()
    with _start_up(app) as written:
        assert written == {
            "ccr": home / ".claude-code-router" / "config.json",
            "claude-code": home / ".claude" / "settings.json",
            "codex": home / ".codex" / "config.toml",
            "gemini": home / ".gemini" / ".env",
        }
        # CCR as before: the minted token in its config.
        config_path = written["ccr"]
        cfg = json.loads(config_path.read_text())
        ccr_token = cfg["Providers"][0]["api_key"]
        assert ws.is_live(ccr_token)
        assert cfg == expected_config(ccr_token, home, ws.host)
        assert mode(config_path) == 0o600 and mode(config_path.parent) == 0o700

        # Claude Code and Codex run `devbox-native token get`, which prints a token the workspace accepts.
        claude = json.loads(written["claude-code"].read_text())
        assert claude["env"]["ANTHROPIC_BASE_URL"] == f"{ws.host}/serving-endpoints/anthropic"
        helper = subprocess.run(["/bin/sh", "-c", claude["apiKeyHelper"]], capture_output=True, text=True, check=True)
        assert ws.accepts(helper.stdout.strip())
        provider = tomllib.loads(written["codex"].read_text())["model_providers"]["databricks"]
        assert provider["base_url"] == f"{ws.host}/serving-endpoints"
        auth = provider["auth"]
        assert auth["command"] == shlex.split(claude["apiKeyHelper"])[0] and auth["args"][-2:] == ["token", "get"]

        # Gemini CLI: the gateway started by the start-up, which answers and forwards with a fresh token.
        running = devbox_native.running_gateway()
        assert running is not None and running[0] == os.getpid()  # in the app's process
        gateway_url = running[2]
        env = _dotenv(written["gemini"])
        assert env["GOOGLE_GEMINI_BASE_URL"] == f"{gateway_url}/ai-gateway/gemini"
        key = (home / ".cache" / "devbox-native" / "gateway.key").read_text().strip()
        assert env["GEMINI_API_KEY"] == key and not ws.accepts(key)
        status, health = _get(gateway_url, "/health")
        assert status == 200 and health["status"] == "ok"
        body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
        model = env["GEMINI_MODEL"]
        path = f"/ai-gateway/gemini/v1beta/models/{model}:generateContent"
        status, reply = _get(gateway_url, path, {"Authorization": f"Bearer {key}"}, body)
        assert status == 200 and reply["candidates"][0]["content"]["parts"][0]["text"] == ws.reply_text
        (call,) = [i for i in ws.invocations if i["path"] == path]
        forwarded = str(call["authorization"]).removeprefix("Bearer ")
        assert ws.accepts(forwarded) and forwarded != key

        # No Databricks token (nor the client secret) in any agent's file.
        secrets = {ws.client_secret, ws.pat, ccr_token, helper.stdout.strip(), forwarded}
        for agent in ("claude-code", "codex", "gemini"):
            folder = written[agent].parent
            files = [f for f in folder.rglob("*") if f.is_file()]
            assert files
            for f in files:
                data = f.read_text()
                assert not any(secret in data for secret in secrets), f"{f} holds a Databricks secret"

        app.setup_databricks_cfg()
        assert mode(home / ".databrickscfg") == 0o600
    assert devbox_native.running_gateway() is None  # stopped with the app: its gateway.json is gone


def test_a_restart_starts_a_new_gateway_and_a_running_one_is_reused(
    fake_workspace_env: FakeWorkspace, home: Path
) -> None:
    app = _load()
    with _start_up(app) as written:
        first = _dotenv(written["gemini"])
    assert devbox_native.running_gateway() is None
    # The app's next start: a new gateway (the key stays), Gemini's .env rewritten with its URL.
    with _start_up(app) as written:
        second = _dotenv(written["gemini"])
        running = devbox_native.running_gateway()
        assert running is not None and second["GOOGLE_GEMINI_BASE_URL"] == f"{running[2]}/ai-gateway/gemini"
        assert second["GEMINI_API_KEY"] == first["GEMINI_API_KEY"]
        # Started again while it runs (a second start-up call in the same process): the same gateway.
        again = app.start_tokens_and_configs()
        assert _dotenv(again["gemini"]) == second and devbox_native.running_gateway() == running
    # A gateway someone else started on the same cache (`devbox-native gateway`) is used, not doubled.
    with devbox_native.start_gateway() as outside:
        with _start_up(app) as written:
            assert _dotenv(written["gemini"])["GOOGLE_GEMINI_BASE_URL"] == f"{outside.url}/ai-gateway/gemini"
        assert devbox_native.running_gateway() is not None  # the app did not stop what it did not start


def test_real_agents_through_the_examples_configuration(
    fake_workspace_env: FakeWorkspace, home: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """One prompt each with the pinned CLIs (`make agents-deps`) of the agents the app installs, configured only
    by the example's start-up (plus the user's own Codex and Gemini settings that keep them offline); the
    emulator saw a credential it accepts on each agent's route; no Databricks secret in any of their files."""
    from test_agents_e2e import (
        CODEX_USER_CONFIG,
        GEMINI_USER_SETTINGS,
        PROMPT,
        agent_env,
        bearers_on,
        require_cli,
        run_agent,
    )

    claude, codex, gemini = require_cli("claude"), require_cli("codex"), require_cli("gemini")
    ws = fake_workspace_env
    (home / ".gemini").mkdir()
    (home / ".gemini" / "settings.json").write_text(json.dumps(GEMINI_USER_SETTINGS))
    (home / ".codex").mkdir()
    (home / ".codex" / "config.toml").write_text(CODEX_USER_CONFIG)
    project = tmp_path_factory.mktemp("project")
    app = _load()
    with _start_up(app) as written:
        env = agent_env(ws, home)
        runs = [
            ([str(claude), "-p", PROMPT, "--output-format", "json"], env, "/serving-endpoints/anthropic/v1/messages"),
            ([str(codex), "exec", "--skip-git-repo-check", PROMPT], env, "/serving-endpoints/responses"),
            ([str(gemini), "-p", PROMPT], {**env, "GEMINI_CLI_TRUST_WORKSPACE": "true"}, "/ai-gateway/gemini/"),
        ]
        for argv, agent_environment, route in runs:
            done = run_agent(argv, agent_environment, project)
            assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-3000:]
            assert ws.reply_text in done.stdout
            seen = bearers_on(ws, route)
            assert seen and all(ws.accepts(b.removeprefix("Bearer ")) for b in seen), (argv[0], seen)
        key = _dotenv(written["gemini"])["GEMINI_API_KEY"]
        assert all(key not in b for b in bearers_on(ws, "/"))  # the gateway replaced it

        ccr_token = json.loads(written["ccr"].read_text())["Providers"][0]["api_key"]
        secrets = {b.removeprefix("Bearer ") for b in bearers_on(ws, "/")} | {ws.client_secret, ws.pat, ccr_token}
        for agent in ("claude-code", "codex", "gemini"):
            for f in (f for f in written[agent].parent.rglob("*") if f.is_file()):
                assert not any(t.encode() in f.read_bytes() for t in secrets), f"{f} holds a Databricks secret"
