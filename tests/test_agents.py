"""configure_agents / unconfigure_agents and `devbox-native setup --agents`: the files each agent gets, merged
with the user's, private and atomic, with no Databricks token in them; the helper command they run really
prints the broker's token; gateway agents without a gateway; bad input."""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import devbox_native
import pytest
from conftest import mode
from devbox_native import _agents
from devbox_native.cli import EXIT_ERROR, EXIT_OK, main
from devbox_native.testing import FakeWorkspace

AGENTS_BIN = Path(__file__).resolve().parent.parent / ".cache/agents/node_modules/.bin"
HOST = "https://ws.example.com"


@pytest.fixture
def gateway(tmp_path: Path, _private_cache_home: Path) -> Iterator[tuple[str, Path]]:
    """A gateway key in the cache folder and a gateway.json naming this (live) process and a port it listens on
    (what a running gateway looks like to the readers of gateway.json)."""
    folder = _private_cache_home / "devbox-native"
    folder.mkdir(mode=0o700)
    key = folder / "gateway.key"
    key.write_text("gw-" + "a1" * 32 + "\n")
    key.chmod(0o600)
    with socket.create_server(("127.0.0.1", 0)) as listening:
        port = listening.getsockname()[1]
        url = f"http://127.0.0.1:{port}"
        state = folder / "gateway.json"
        state.write_text(json.dumps({"pid": os.getpid(), "port": port, "url": url, "started_at": 0.0}))
        state.chmod(0o600)
        yield url, key


def test_claude_code_settings_and_the_helper_prints_the_brokers_token(
    tmp_path: Path, fake_workspace_env: FakeWorkspace
) -> None:
    ws = fake_workspace_env
    path = devbox_native.configure_agents(["claude-code"], root_dir=tmp_path, host=ws.host)["claude-code"]
    assert path == tmp_path / ".claude" / "settings.json"
    assert mode(path) == 0o600 and mode(path.parent) == 0o700
    settings = json.loads(path.read_text())
    assert settings["env"] == {
        "ANTHROPIC_CUSTOM_HEADERS": "x-databricks-use-coding-agent-mode: true",
        "ANTHROPIC_BASE_URL": f"{ws.host}/serving-endpoints/anthropic",
        "ANTHROPIC_MODEL": "databricks-claude-sonnet-4-5",
        "CLAUDE_CODE_API_KEY_HELPER_TTL_MS": "300000",
    }
    helper = settings["apiKeyHelper"]
    program = shlex.split(helper)[0]
    assert os.path.isabs(program) and shlex.split(helper)[1:] == ["token", "get"]
    # Claude Code runs it with /bin/sh and a PATH that need not hold our venv.
    env = {**os.environ, "PATH": "/usr/bin:/bin"}
    out = subprocess.run(["/bin/sh", "-c", helper], env=env, capture_output=True, text=True, timeout=60, check=True)
    token = out.stdout.strip()
    assert ws.accepts(token) and token not in path.read_text()


def test_codex_config_and_its_auth_command_prints_the_brokers_token(
    tmp_path: Path, fake_workspace_env: FakeWorkspace
) -> None:
    ws = fake_workspace_env
    path = devbox_native.configure_agents(
        ["codex"], root_dir=tmp_path, host=ws.host, route="ai-gateway", models={"codex": "databricks-gpt-5-1"}
    )["codex"]
    assert path == tmp_path / ".codex" / "config.toml" and mode(path) == 0o600
    config = tomllib.loads(path.read_text())
    assert config["model_provider"] == "databricks" and config["model"] == "databricks-gpt-5-1"
    provider = config["model_providers"]["databricks"]
    assert provider["base_url"] == f"{ws.host}/ai-gateway/codex/v1" and provider["wire_api"] == "responses"
    auth = provider["auth"]
    assert auth["timeout_ms"] > 5000 and 0 < auth["refresh_interval_ms"] < 600_000
    env = {**os.environ, "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [auth["command"], *auth["args"]], env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert ws.accepts(out.stdout.strip())


def test_remove_takes_out_exactly_what_we_added(tmp_path: Path) -> None:
    claude = tmp_path / ".claude" / "settings.json"
    claude.parent.mkdir()
    user = {"model": "opus", "env": {"FOO": "1", "ANTHROPIC_CUSTOM_HEADERS": "X-Team: a"}, "hooks": {}}
    claude.write_text(json.dumps(user))
    codex = tmp_path / ".codex" / "config.toml"
    codex.parent.mkdir()
    codex_user = '# comment\nsandbox_mode = "read-only"\n\n[tui]\nnotifications = true # inline\n'
    codex.write_text(codex_user)
    devbox_native.configure_agents(["claude-code", "codex"], root_dir=tmp_path, host=HOST)
    assert "x-databricks-use-coding-agent-mode" in json.loads(claude.read_text())["env"]["ANTHROPIC_CUSTOM_HEADERS"]
    # A second configure changes nothing more.
    first = (claude.read_bytes(), codex.read_bytes())
    devbox_native.configure_agents(["claude-code", "codex"], root_dir=tmp_path, host=HOST)
    assert (claude.read_bytes(), codex.read_bytes()) == first
    assert devbox_native.unconfigure_agents(["claude-code", "codex"], root_dir=tmp_path) == {
        "claude-code": claude,
        "codex": codex,
    }
    assert json.loads(claude.read_text()) == user
    assert codex.read_text() == codex_user


def test_writes_go_through_symlinks_and_bad_files_stay_untouched(tmp_path: Path) -> None:
    real = tmp_path / "dotfiles" / "claude-settings.json"
    real.parent.mkdir()
    real.write_text('{"theme": "dark"}')
    link = tmp_path / "home" / ".claude" / "settings.json"
    link.parent.mkdir(parents=True)
    link.symlink_to(real)
    devbox_native.configure_agents(["claude-code"], root_dir=tmp_path / "home", host=HOST)
    assert link.is_symlink() and json.loads(real.read_text())["theme"] == "dark"
    assert "apiKeyHelper" in json.loads(real.read_text()) and mode(real) == 0o600

    codex = tmp_path / "home" / ".codex" / "config.toml"
    codex.parent.mkdir()
    codex.write_bytes(b'model = "x\n')
    with pytest.raises(devbox_native.ConfigError, match=r"config\.toml: not valid TOML at line 1.*left untouched"):
        devbox_native.configure_agents(["codex"], root_dir=tmp_path / "home", host=HOST)
    assert codex.read_bytes() == b'model = "x\n'
    real.write_text("[1, 2]")
    with pytest.raises(devbox_native.ConfigError, match="not a JSON object"):
        devbox_native.configure_agents(["claude-code"], root_dir=tmp_path / "home", host=HOST)
    assert real.read_text() == "[1, 2]"


def test_gateway_agents_use_the_running_gateway_and_its_key_file(tmp_path: Path, gateway: tuple[str, Path]) -> None:
    url, key = gateway
    written = devbox_native.configure_agents(["gemini", "opencode"], root_dir=tmp_path, host=HOST, route="ai-gateway")
    env_file = written["gemini"]
    assert env_file == tmp_path / ".gemini" / ".env" and mode(env_file) == 0o600
    assert env_file.read_text() == (
        f"GOOGLE_GEMINI_BASE_URL={url}/ai-gateway/gemini\nGEMINI_API_KEY={key.read_text().strip()}\n"
        "GEMINI_API_KEY_AUTH_MECHANISM=bearer\nGEMINI_MODEL=databricks-gemini-2-5-pro\n"
    )
    settings = json.loads((tmp_path / ".gemini" / "settings.json").read_text())
    assert settings == {"security": {"auth": {"selectedType": "gemini-api-key"}}}
    opencode = json.loads(written["opencode"].read_text())
    provider = opencode["provider"]["databricks"]
    assert provider["options"]["baseURL"] == f"{url}/ai-gateway/mlflow/v1"
    assert provider["options"]["apiKey"] == f"{{file:{key}}}"  # read by OpenCode, never copied
    assert opencode["model"] == "databricks/databricks-claude-sonnet-4-5"
    devbox_native.unconfigure_agents(["gemini", "opencode"], root_dir=tmp_path)
    assert env_file.read_text() == ""
    assert json.loads(written["opencode"].read_text()) == {}


def test_gateway_agents_without_a_gateway_say_how_to_start_it(
    tmp_path: Path, _private_cache_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(devbox_native.ConfigError, match=r"gemini: needs the credential gateway.*devbox-native gateway"):
        devbox_native.configure_agents(["claude-code", "gemini"], root_dir=tmp_path, host=HOST)
    assert not (tmp_path / ".claude").exists()  # nothing written
    # A gateway.json of a dead process does not count.
    folder = _private_cache_home / "devbox-native"
    folder.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (folder / "gateway.json").write_text(json.dumps({"pid": dead.pid, "url": "http://127.0.0.1:1"}))
    assert _agents.running_gateway() is None

    code = main("setup", "--agents", "claude-code,gemini,opencode", "--root", str(tmp_path), "--host", HOST, "--json")
    assert code == EXIT_ERROR
    results = json.loads(capsys.readouterr().out)
    assert [(r["agent"], r["status"]) for r in results] == [
        ("claude-code", "configured"),
        ("gemini", "error"),
        ("opencode", "error"),
    ]
    assert "devbox-native gateway" in results[1]["message"]
    assert (tmp_path / ".claude" / "settings.json").exists()


def test_cli_setup_agents_models_and_remove(
    tmp_path: Path, gateway: tuple[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["setup", "--agents", "codex,gemini", "--root", str(tmp_path), "--host", HOST]
    assert main(*argv, "--model", "codex=databricks-gpt-5-2", "--route", "ai-gateway") == EXIT_OK
    out = capsys.readouterr().out
    assert f"configured codex: {tmp_path / '.codex' / 'config.toml'}" in out
    assert tomllib.loads((tmp_path / ".codex" / "config.toml").read_text())["model"] == "databricks-gpt-5-2"
    assert "GEMINI_MODEL=databricks-gemini-2-5-pro" in (tmp_path / ".gemini" / ".env").read_text()
    assert main("setup", "--remove", "--agents", "codex,gemini", "--root", str(tmp_path), "--json") == EXIT_OK
    results = json.loads(capsys.readouterr().out)
    assert [(r["agent"], r["status"]) for r in results] == [("codex", "removed"), ("gemini", "removed")]
    assert main("setup", "--remove", "--agents", "codex", "--root", str(tmp_path)) == EXIT_OK
    assert "codex: nothing of ours in" in capsys.readouterr().out


def test_warnings_are_shown(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / ".claude" / "settings.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"env": {"ANTHROPIC_AUTH_TOKEN": "dapi-secret-value"}}))
    path.chmod(0o600)
    assert main("setup", "--agents", "claude-code", "--root", str(tmp_path), "--host", HOST) == EXIT_OK
    err = capsys.readouterr().err
    assert "warning:" in err and "removed ANTHROPIC_AUTH_TOKEN" in err and "dapi-secret-value" not in err
    assert "ANTHROPIC_AUTH_TOKEN" not in path.read_text()


def test_agents_none_means_the_clis_on_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gateway: tuple[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    if not (AGENTS_BIN / "codex").exists():
        pytest.skip("run `make agents-deps`")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "codex").symlink_to(AGENTS_BIN / "codex")
    (bin_dir / "opencode").symlink_to(AGENTS_BIN / "opencode")
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    written = devbox_native.configure_agents(root_dir=tmp_path / "home", host=HOST)
    assert sorted(written) == ["codex", "opencode"]
    assert not (tmp_path / "home" / ".claude").exists()
    # A bare --agents is the same; the real Codex (0.171) has command auth: no warning.
    assert main("setup", "--agents", "--root", str(tmp_path / "cli"), "--host", HOST, "--json") == EXIT_OK
    results = json.loads(capsys.readouterr().out)
    assert [(r["agent"], r["warnings"]) for r in results] == [("codex", []), ("opencode", [])]


@pytest.mark.parametrize(("version", "warned"), [("0.98.0", True), ("0.117.0", True), ("0.118.0", False)])
def test_old_codex_gets_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], version: str, warned: bool
) -> None:
    # 0.118.0 is the first Codex with command auth (measured with the real 0.117.0 and 0.118.0; see _agents.py).
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    old = bin_dir / "codex"
    old.write_text(f"#!/bin/sh\necho 'codex-cli {version}'\n")
    old.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    assert _agents.codex_version() == tuple(int(x) for x in version.split("."))
    assert main("setup", "--agents", "codex", "--root", str(tmp_path), "--host", HOST) == EXIT_OK
    err = capsys.readouterr().err
    warning = f"warning: Codex {version} predates command auth (needs 0.118.0 or later)"
    assert (warning in err) == warned, err


def test_codex_version_is_read_from_its_package_without_running_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # An npm install: bin/codex links to the package's script; its package.json says the version (as doctor reads
    # it). Running the program would leave a mark (and print another version): setup must not start it.
    package = tmp_path / "lib" / "node_modules" / "@openai" / "codex"
    (package / "bin").mkdir(parents=True)
    (package / "package.json").write_text(json.dumps({"name": "@openai/codex", "version": "0.117.0"}))
    mark = tmp_path / "ran"
    script = package / "bin" / "codex.js"
    script.write_text(f"#!/bin/sh\ntouch {mark}\necho 'codex-cli 9.9.9'\n")
    script.chmod(0o755)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "codex").symlink_to(script)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    assert _agents.codex_version() == (0, 117, 0)
    assert main("setup", "--agents", "codex", "--root", str(tmp_path / "home"), "--host", HOST) == EXIT_OK
    assert "warning: Codex 0.117.0 predates command auth" in capsys.readouterr().err
    assert not mark.exists(), "setup ran codex --version although its package.json names the version"


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (
            {"agents": ["claude-code", "cursor"]},
            ValueError,
            r"agents: unknown agent 'cursor'; valid: claude-code, codex",
        ),
        ({"agents": "codex"}, TypeError, "agents: expected a list"),
        ({"agents": [1]}, TypeError, "agents: expected str"),
        ({"agents": ["codex"], "route": "v3"}, ValueError, "route: unknown route 'v3'; valid: serving-endpoints"),
        ({"agents": ["codex"], "models": {"vim": "m"}}, ValueError, "models: unknown agent 'vim'"),
        ({"agents": ["claude-code", "codex"], "models": {"codex": "a b"}}, ValueError, "models: bad model name"),
        ({"agents": ["claude-code"], "host": "https://"}, ValueError, "host: has no host name"),
        ({"agents": ["codex"], "models": ["codex"]}, TypeError, "models: expected a mapping"),
        ({"agents": ["gemini"], "gateway_url": "127.0.0.1:9"}, ValueError, "gateway_url: must be an http"),
    ],
)
def test_bad_arguments(tmp_path: Path, kwargs: dict[str, object], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        devbox_native.configure_agents(root_dir=tmp_path, **{"host": HOST, **kwargs})  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_cli_bad_agent_and_bad_model_are_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main("setup", "--agents", "claude-code,vim", "--root", str(tmp_path)) == EXIT_ERROR
    assert "unknown agent 'vim'; valid: claude-code, codex, gemini, opencode" in capsys.readouterr().err
    assert main("setup", "--agents", "codex", "--model", "gpt", "--root", str(tmp_path), "--host", HOST) == EXIT_ERROR
    assert "--model: expected AGENT=NAME" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------ setup's one --gateway option (agents)


def _gemini_base_url(root: Path) -> str:
    lines = dict(line.split("=", 1) for line in (root / ".gemini" / ".env").read_text().splitlines())
    return lines["GOOGLE_GEMINI_BASE_URL"]


def test_setup_gateway_auto_finds_the_running_gateway_of_the_cache(
    tmp_path: Path, fake_workspace_env: FakeWorkspace, capsys: pytest.CaptureFixture[str]
) -> None:
    """A real gateway on a cache of its own: `--gateway auto --cache FILE` finds it and its key there (neither
    is in the default cache folder, which holds nothing)."""
    cache = tmp_path / "gw-cache" / "token.json"
    root = tmp_path / "home"
    with devbox_native.start_gateway(cache_path=cache) as gw:
        argv = ["setup", "--agents", "gemini,opencode", "--root", str(root), "--host", HOST, "--json"]
        assert main(*argv, "--gateway", "auto", "--cache", str(cache)) == EXIT_OK
        results = json.loads(capsys.readouterr().out)
        assert [(r["agent"], r["status"]) for r in results] == [("gemini", "configured"), ("opencode", "configured")]
        assert _gemini_base_url(root) == f"{gw.url}/ai-gateway/gemini"
        assert f"GEMINI_API_KEY={gw.key_path.read_text().strip()}\n" in (root / ".gemini" / ".env").read_text()
        provider = json.loads(Path(results[1]["path"]).read_text())["provider"]["databricks"]
        assert provider["options"]["apiKey"] == f"{{file:{cache.parent / 'gateway.key'}}}"
        assert gw.key_path == cache.parent / "gateway.key"


def test_setup_gateway_url_for_agents_and_the_deprecated_alias(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An explicit `--gateway URL` (no gateway running anywhere) with its key file; `--gateway-url`, the old
    name, does the same and warns once on stderr, however often it is given; the two names disagreeing is an
    error."""
    key = tmp_path / "k" / "gateway.key"
    key.parent.mkdir(mode=0o700)
    key.write_text("b2" * 32 + "\n")
    key.chmod(0o600)
    url = "http://127.0.0.1:8765"
    for option in (["--gateway", url], ["--gateway-url", url, "--gateway-url", url]):
        root = tmp_path / option[0].strip("-")
        argv = ["setup", "--agents", "gemini", "--root", str(root), "--host", HOST, "--gateway-key-file", str(key)]
        assert main(*argv, *option) == EXIT_OK
        err = capsys.readouterr().err
        assert _gemini_base_url(root) == f"{url}/ai-gateway/gemini"
        assert f"GEMINI_API_KEY={'b2' * 32}\n" in (root / ".gemini" / ".env").read_text()
        warnings = [line for line in err.splitlines() if "--gateway-url is deprecated" in line]
        assert len(warnings) == (1 if option[0] == "--gateway-url" else 0), err
    assert warnings == ["devbox-native: warning: --gateway-url is deprecated, use --gateway URL (the same option)"]
    # Being --gateway, the alias serves plain setup too: CCR's gateway mode.
    ccr_root = tmp_path / "ccr"
    assert main("setup", "--root", str(ccr_root), "--gateway-url", url, "--gateway-key-file", str(key)) == EXIT_OK
    assert "--gateway-url is deprecated" in capsys.readouterr().err
    (provider,) = json.loads((ccr_root / ".claude-code-router" / "config.json").read_text())["Providers"]
    assert provider["api_base_url"].startswith(f"{url}/serving-endpoints/") and provider["api_key"] == "b2" * 32

    with pytest.raises(SystemExit):
        main("setup", "--help")
    assert "--gateway-url" not in capsys.readouterr().out  # hidden: --gateway is the one documented

    code = main("setup", "--agents", "gemini", "--root", str(tmp_path / "x"), "--gateway", url, "--gateway-url", "a")
    assert code == EXIT_ERROR
    assert "--gateway-url: the deprecated name of --gateway, given with another value" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_setup_gateway_auto_with_none_running_says_how_to_start_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["setup", "--agents", "claude-code,gemini,opencode", "--root", str(tmp_path), "--host", HOST]
    assert main(*argv, "--gateway", "auto") == EXIT_ERROR
    captured = capsys.readouterr()
    assert f"configured claude-code: {tmp_path / '.claude' / 'settings.json'}" in captured.out
    for name in ("gemini", "opencode"):
        assert (
            f"devbox-native: {name}: not configured: {name}: needs the credential gateway and none is running: "
            "start it with `devbox-native gateway` (or pass its URL: gateway_url= / --gateway URL)"
        ) in captured.err
    assert not (tmp_path / ".gemini").exists() and not (tmp_path / ".config").exists()


# ------------------------------------------------------------- where each agent reads (its variable, issue 11)

AGENT_VARS = ("CLAUDE_CONFIG_DIR", "CODEX_HOME", "GEMINI_CLI_HOME", "OPENCODE_CONFIG_DIR", "OPENCODE_CONFIG")


@pytest.fixture
def agent_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """HOME is a temp folder and none of the agents' variables is set."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for var in (*AGENT_VARS, "XDG_CONFIG_HOME"):
        monkeypatch.delenv(var, raising=False)
    return home


def test_without_a_root_each_agent_is_written_where_its_variable_says(
    tmp_path: Path, agent_home: Path, gateway: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    moved = tmp_path / "moved"
    monkeypatch.setenv("CODEX_HOME", str(moved / "codex"))  # Codex: the folder of config.toml (created 0700)
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(moved / "claude"))  # Claude Code: the folder of settings.json
    monkeypatch.setenv("GEMINI_CLI_HOME", str(moved / "gemini-home"))  # Gemini CLI: replaces HOME, .gemini stays
    monkeypatch.setenv("XDG_CONFIG_HOME", str(moved / "xdg"))  # OpenCode: $XDG_CONFIG_HOME/opencode
    user_codex = '# mine\nmodel_reasoning_effort = "high"\n'
    (moved / "codex").mkdir(parents=True, mode=0o700)
    (moved / "codex" / "config.toml").write_text(user_codex)
    want = {
        "claude-code": moved / "claude" / "settings.json",
        "codex": moved / "codex" / "config.toml",
        "gemini": moved / "gemini-home" / ".gemini" / ".env",
        "opencode": moved / "xdg" / "opencode" / "opencode.json",
    }
    for name, path in want.items():
        assert devbox_native._native.agent_config_file(name) == path
    written = devbox_native.configure_agents(list(want), host=HOST)
    assert written == want
    for path in want.values():
        assert mode(path) == 0o600 and mode(path.parent) & 0o077 == 0
    config = tomllib.loads(want["codex"].read_text())
    assert config["model_provider"] == "databricks" and config["model_reasoning_effort"] == "high"
    assert json.loads(want["claude-code"].read_text())["apiKeyHelper"].endswith(" token get")
    assert (want["gemini"].parent / "settings.json").exists()
    assert not any(agent_home.iterdir())  # nothing under the home default
    assert devbox_native.unconfigure_agents(list(want)) == want
    assert want["codex"].read_text() == user_codex  # exactly what we added is gone


def test_setup_and_remove_without_root_name_the_real_path(
    tmp_path: Path, agent_home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    codex_home = tmp_path / "codex-home"
    monkeypatch.setenv("CODEX_HOME", str(codex_home))
    opencode_file = tmp_path / "oc" / "mine.json"
    monkeypatch.setenv("OPENCODE_CONFIG", str(opencode_file))  # a file: written as it is named
    assert main("setup", "--agents", "codex,claude-code", "--host", HOST, "--json") == EXIT_OK
    results = {r["agent"]: r for r in json.loads(capsys.readouterr().out)}
    assert results["codex"]["path"] == str(codex_home / "config.toml")
    assert results["claude-code"]["path"] == str(agent_home / ".claude" / "settings.json")
    assert devbox_native._native.agent_config_file("opencode") == opencode_file
    monkeypatch.setenv("OPENCODE_CONFIG_DIR", str(tmp_path / "ocd"))  # a folder, loaded last by OpenCode
    assert devbox_native._native.agent_config_file("opencode") == tmp_path / "ocd" / "opencode.json"
    assert main("setup", "--remove", "--agents", "codex", "--json") == EXIT_OK
    [removed] = json.loads(capsys.readouterr().out)
    assert removed == {"agent": "codex", "status": "removed", "path": str(codex_home / "config.toml")}
    assert "databricks" not in (codex_home / "config.toml").read_text()


def test_an_explicit_root_keeps_its_layout_whatever_the_variables_say(
    tmp_path: Path, agent_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CODEX_HOME", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", "relative")  # not even looked at under a root
    root = tmp_path / "root"
    written = devbox_native.configure_agents(["codex", "claude-code"], root_dir=root, host=HOST)
    assert written == {"codex": root / ".codex" / "config.toml", "claude-code": root / ".claude" / "settings.json"}
    assert not (tmp_path / "elsewhere").exists()


@pytest.mark.parametrize(
    ("var", "value", "agent"),
    [
        ("CODEX_HOME", "rel/codex", "codex"),
        ("CLAUDE_CONFIG_DIR", "", "claude-code"),  # Claude Code would read settings.json in its working folder
        ("CLAUDE_CONFIG_DIR", "cfg", "claude-code"),
        ("GEMINI_CLI_HOME", "g", "gemini"),
        ("OPENCODE_CONFIG", "oc.json", "opencode"),
    ],
)
def test_a_relative_variable_is_refused_naming_it_and_nothing_is_written(
    agent_home: Path, gateway: tuple[str, Path], monkeypatch: pytest.MonkeyPatch, var: str, value: str, agent: str
) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ValueError, match=f"^{var}: must be an absolute path"):
        devbox_native.configure_agents(["claude-code", "codex", "gemini", "opencode"], host=HOST)
    assert not any(agent_home.iterdir())
    with pytest.raises(ValueError, match=f"^{var}: "):
        devbox_native.unconfigure_agents([agent])


def test_an_empty_variable_the_agent_ignores_means_the_home_default(
    agent_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CODEX_HOME", "")  # measured: Codex 0.171.0 then reads ~/.codex/config.toml
    monkeypatch.setenv("GEMINI_CLI_HOME", "")
    written = devbox_native.configure_agents(["codex"], host=HOST)
    assert written == {"codex": agent_home / ".codex" / "config.toml"}
    assert devbox_native._native.agent_config_file("gemini") == agent_home / ".gemini" / ".env"


def test_setup_with_a_relative_variable_reports_it_for_that_agent(
    agent_home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CODEX_HOME", "codex")
    assert main("setup", "--agents", "codex,claude-code", "--host", HOST, "--json") == EXIT_ERROR
    results = {r["agent"]: r for r in json.loads(capsys.readouterr().out)}
    assert results["codex"]["status"] == "error" and results["codex"]["error"] == "ValueError"
    assert results["codex"]["message"].startswith("CODEX_HOME: must be an absolute path")
    assert results["claude-code"]["status"] == "configured"
    assert not (agent_home / ".codex").exists()
