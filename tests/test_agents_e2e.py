"""End to end with the real coding-agent CLIs pinned by tests/agents/package-lock.json (`make agents-deps`):
a temp HOME configured only by `configure_agents`, the agent run as a subprocess against the emulator, and
its credential coming from `devbox-native token get` (the broker, cache under that HOME).

What each test proves, per agent: a one-shot prompt returns the emulator's reply; the emulator saw
`Bearer <a live token of the service principal>` on the agent's route; no Databricks secret sits in any file
under HOME except the broker's 0600 cache; after the token expires (the emulator stops accepting it and the
broker's clock passes its expiry) the next prompt still succeeds, with a new token and no new setup; the
user's own settings survive `configure_agents` and `unconfigure_agents`. And all of it again in a network
namespace whose only interface is loopback: the agents need nothing beyond 127.0.0.1.

Gemini CLI and OpenCode read their key once and cannot refresh it: they go through a real credential gateway
started in the test (`start_gateway`, cache in the temp HOME) and present the gateway key; the emulator must see
the gateway's fresh Databricks token, never that key.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import devbox_native
import pytest
from conftest import age_cache
from devbox_native import Config, Gateway, start_gateway
from devbox_native.testing import FakeWorkspace

ROOT = Path(__file__).resolve().parent.parent
AGENTS_BIN = ROOT / ".cache/agents/node_modules/.bin"
PROMPT = "Reply with a greeting."


#: No models.dev catalogue, update check, default plugins (npm installs under HOME), LSP downloads or share links:
#: OpenCode then needs only the configured provider. It still installs @opencode-ai/plugin into its config folder,
#: with the npm it embeds: offline only.
OPENCODE_OFFLINE_ENV = {
    "OPENCODE_DISABLE_MODELS_FETCH": "1",
    "OPENCODE_DISABLE_AUTOUPDATE": "1",
    "OPENCODE_DISABLE_DEFAULT_PLUGINS": "1",
    "OPENCODE_PURE": "1",
    "OPENCODE_DISABLE_LSP_DOWNLOAD": "1",
    "OPENCODE_DISABLE_SHARE": "1",
    "npm_config_offline": "true",
}


def require_cli(program: str) -> Path:
    """The agent's CLI from `make agents-deps`; a missing install fails in CI and skips elsewhere."""
    path = AGENTS_BIN / program
    if not path.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{path} is missing: `make agents-deps` should have installed it")
        pytest.skip(f"{path} is missing: run `make agents-deps`")
    return path


def agent_env(ws: FakeWorkspace, home: Path) -> dict[str, str]:
    """A minimal environment: the app container's DATABRICKS_* variables, the agents' bin folder and the system
    folders on PATH (not our venv: the helper must be found by its absolute path), telemetry and updates off."""
    return {
        "PATH": f"{AGENTS_BIN}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        **ws.env(),
        # Claude Code: no telemetry, error reports, update checks or other non-essential traffic.
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "DISABLE_AUTOUPDATER": "1",
        # Codex: no OpenTelemetry export (off by default; explicit here); no update check, analytics or feedback
        # (the user's config.toml below).
        "OTEL_SDK_DISABLED": "true",
        "NO_COLOR": "1",
    }


def run_agent(argv: list[str], env: dict[str, str], cwd: Path, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    """Run an agent in its own process group; the group is stopped by its id afterwards (the agents start
    helpers of their own), and killed if it outlives `timeout`."""
    proc = subprocess.Popen(
        argv,
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"{argv[0]} did not finish in {timeout} s:\n{err[-3000:]}")
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # anything it left behind in its group
        except ProcessLookupError:
            pass
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def user_home(tmp_path: Path, files: dict[str, str]) -> tuple[Path, Path, list[Path]]:
    """A temp HOME holding the user's own files (path under HOME -> text), and an empty project folder; returns
    both folders and the files' paths."""
    home, project = tmp_path / "home", tmp_path / "project"
    project.mkdir()
    paths = []
    for name, text in files.items():
        path = home / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        paths.append(path)
    return home, project, paths


def cache_file(home: Path) -> Path:
    return home / ".cache" / "devbox-native" / "token.json"


def cached_token(home: Path) -> str:
    data = json.loads(cache_file(home).read_text())
    (entry,) = data["entries"].values()
    return str(entry["token"])


def bearers_on(ws: FakeWorkspace, route: str) -> list[str]:
    """The Authorization headers of the model calls the emulator got on `route`."""
    return [str(i["authorization"]) for i in ws.invocations if str(i["path"]).startswith(route)]


def assert_no_secret_in_home(home: Path, secrets: set[str]) -> None:
    """No file under HOME holds a secret, except the broker's cache, which is 0600 in a 0700 folder."""
    cache = cache_file(home)
    assert cache.stat().st_mode & 0o777 == 0o600
    assert cache.parent.stat().st_mode & 0o777 == 0o700
    checked = 0
    for path in home.rglob("*"):
        if path == cache or not path.is_file() or path.is_symlink():
            continue
        data = path.read_bytes()
        checked += 1
        for secret in secrets:
            assert secret.encode() not in data, f"{path} holds a Databricks secret"
    assert checked > 0


def secrets_of(ws: FakeWorkspace, home: Path, bearers: list[str]) -> set[str]:
    return {ws.client_secret, ws.pat, cached_token(home), *(b.removeprefix("Bearer ") for b in bearers)}


def expire(ws: FakeWorkspace, home: Path, token: str) -> None:
    """The token expires: the workspace stops accepting it, and the broker's clock passes its expiry. `token get`
    hands out the service principal's OAuth token (kind auto), a minted PAT only for a PAT identity."""
    token_id = ws.token_id_of(token)
    if token_id is None:
        ws.expire_access_tokens()
    else:
        ws.revoke_token(token_id)
    assert not ws.accepts(token)
    age_cache(cache_file(home), -5)


def check_bearers(ws: FakeWorkspace, home: Path, route: str, since: int) -> str:
    """Every model call on `route` since the `since`-th carried the broker's cached token, which the workspace
    accepts (the service principal's OAuth token: kind auto); returns that token."""
    token = cached_token(home)
    seen = bearers_on(ws, route)[since:]
    assert seen and set(seen) == {f"Bearer {token}"}, seen
    assert ws.accepts(token)
    return token


def prompt_across_expiry(
    ws: FakeWorkspace,
    home: Path,
    argv: list[str],
    env: dict[str, str],
    cwd: Path,
    route: str,
    *,
    gw: Gateway | None = None,
    replied: Callable[[str], bool] | None = None,
) -> list[str]:
    """A prompt, the token's expiry, a second prompt with no new setup: both succeed with the emulator's reply
    (`replied` reads it from stdout; default: the text is in it), the model calls on `route` carry the current
    token (`check_bearers`, or through the gateway `check_gateway_bearers`), and the second round a new one; returns
    the two tokens."""
    tokens: list[str] = []
    for _ in range(2):
        if tokens:
            expire(ws, home, tokens[-1])
        since = len(bearers_on(ws, route))
        done = run_agent(argv, env, cwd)
        assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-3000:]
        assert replied(done.stdout) if replied is not None else ws.reply_text in done.stdout, done.stdout[-3000:]
        tokens.append(
            check_bearers(ws, home, route, since) if gw is None else check_gateway_bearers(ws, home, gw, route)
        )
    assert tokens[1] != tokens[0]
    return tokens


# ------------------------------------------------------------------------------------------------ Claude Code

CLAUDE_USER_SETTINGS: dict[str, Any] = {
    "permissions": {"allow": ["Bash(ls:*)"], "deny": ["Read(./.env)"]},
    "env": {"MY_TEAM_VAR": "blue", "ANTHROPIC_API_KEY": "sk-ant-leftover-would-win"},
    "includeCoAuthoredBy": False,
}


def test_claude_code_end_to_end(tmp_path: Path, fake_workspace: FakeWorkspace) -> None:
    claude = require_cli("claude")
    ws = fake_workspace
    home, project, [settings_path] = user_home(
        tmp_path, {".claude/settings.json": json.dumps(CLAUDE_USER_SETTINGS, indent=2)}
    )

    written = devbox_native.configure_agents(["claude-code"], root_dir=home, host=ws.host)
    assert written == {"claude-code": settings_path}
    settings = json.loads(settings_path.read_text())
    assert "ANTHROPIC_API_KEY" not in settings["env"]  # it would have overridden the helper
    assert settings["permissions"] == CLAUDE_USER_SETTINGS["permissions"]
    assert settings["env"]["MY_TEAM_VAR"] == "blue"
    assert settings["includeCoAuthoredBy"] is False
    assert settings["apiKeyHelper"].startswith("/") and settings["apiKeyHelper"].endswith(" token get")

    argv = [str(claude), "-p", PROMPT, "--output-format", "json"]
    route = "/serving-endpoints/anthropic/v1/messages"
    # The token expires between the prompts; the second gets a fresh one through the helper.
    env = agent_env(ws, home)
    tokens = prompt_across_expiry(
        ws, home, argv, env, project, route, replied=lambda out: json.loads(out)["result"] == ws.reply_text
    )
    calls = [i for i in ws.invocations if i["path"] == route]
    assert calls[-1]["body"]["model"] == "databricks-claude-sonnet-4-5"
    heads = [r for r in ws.requests if r.path.startswith(route)]
    assert all(r.headers.get("x-databricks-use-coding-agent-mode") == "true" for r in heads)
    assert all("x-api-key" not in r.headers or r.headers["x-api-key"] in tokens for r in heads)

    assert_no_secret_in_home(home, secrets_of(ws, home, bearers_on(ws, "/serving-endpoints/")))

    devbox_native.unconfigure_agents(["claude-code"], root_dir=home)
    after = json.loads(settings_path.read_text())
    expected = json.loads(json.dumps(CLAUDE_USER_SETTINGS))
    del expected["env"]["ANTHROPIC_API_KEY"]
    assert after == expected


# ------------------------------------------------------------------------------------------------------ Codex

CODEX_USER_CONFIG = """\
# my Codex settings: comments survive (and no update check, analytics or feedback upload)
check_for_update_on_startup = false
approval_policy = "never" # inline comment

[analytics]
enabled = false

[feedback]
enabled = false

[profiles.fast]
model = "o4-mini"

[model_providers.local]
name = "Local"
base_url = "http://127.0.0.1:9/v1"
"""


def test_codex_end_to_end(tmp_path: Path, fake_workspace: FakeWorkspace) -> None:
    codex = require_cli("codex")
    ws = fake_workspace
    home, project, [config_path] = user_home(tmp_path, {".codex/config.toml": CODEX_USER_CONFIG})

    written = devbox_native.configure_agents(["codex"], root_dir=home, host=ws.host, route="ai-gateway")
    assert written == {"codex": config_path}
    text = config_path.read_text()
    assert "# my Codex settings: comments survive" in text and 'approval_policy = "never" # inline comment' in text
    config = tomllib.loads(text)
    assert config["profiles"]["fast"]["model"] == "o4-mini"
    assert config["model_providers"]["local"]["name"] == "Local"
    auth = config["model_providers"]["databricks"]["auth"]
    assert Path(auth["command"]).is_absolute() and auth["args"][-2:] == ["token", "get"]

    argv = [str(codex), "exec", "--skip-git-repo-check", PROMPT]
    route = "/ai-gateway/codex/v1/responses"
    prompt_across_expiry(ws, home, argv, agent_env(ws, home), project, route)
    calls = [i for i in ws.invocations if i["path"] == route]
    assert calls[-1]["body"]["model"] == "databricks-gpt-5"
    posts = [r for r in ws.requests if r.path == route]
    assert all(r.headers.get("x-databricks-use-coding-agent-mode") == "true" for r in posts)

    assert_no_secret_in_home(home, secrets_of(ws, home, bearers_on(ws, "/ai-gateway/")))

    devbox_native.unconfigure_agents(["codex"], root_dir=home)
    assert config_path.read_text() == CODEX_USER_CONFIG


# --------------------------------------------------------------------------------------- gateway agents (shared)


def start_home_gateway(ws: FakeWorkspace, home: Path, monkeypatch: pytest.MonkeyPatch) -> Gateway:
    """A real credential gateway for the service principal, its cache (and gateway.key) under the temp HOME,
    which is also this process's HOME so that `configure_agents` finds that key."""
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    config = Config(host=ws.host, client_id=ws.client_id, client_secret=ws.client_secret)
    return start_gateway(config=config, cache_path=cache_file(home))


def check_gateway_bearers(ws: FakeWorkspace, home: Path, gw: Gateway, route: str) -> str:
    """Every model call on `route` carried the gateway's current Databricks token, never the gateway key."""
    key = gw.key_path.read_text().strip()
    token = cached_token(home)
    seen = bearers_on(ws, route)
    assert seen and seen[-1] == f"Bearer {token}", seen
    assert all(key not in b for b in seen)
    assert ws.accepts(token) and key != token
    return token


# ------------------------------------------------------------------------------------------------- Gemini CLI

GEMINI_USER_SETTINGS: dict[str, Any] = {
    "ui": {"theme": "GitHub"},
    "general": {"enableAutoUpdate": False, "enableAutoUpdateNotification": False},
    "privacy": {"usageStatisticsEnabled": False},
    "telemetry": {"enabled": False},
    "security": {"folderTrust": {"enabled": False}},
}
GEMINI_USER_ENV = "# my Gemini env: stays as it is\nMY_TEAM_VAR=blue\n"


def test_gemini_end_to_end(tmp_path: Path, fake_workspace: FakeWorkspace, monkeypatch: pytest.MonkeyPatch) -> None:
    gemini = require_cli("gemini")
    ws = fake_workspace
    home, project, [settings_path, env_path] = user_home(
        tmp_path, {".gemini/settings.json": json.dumps(GEMINI_USER_SETTINGS, indent=2), ".gemini/.env": GEMINI_USER_ENV}
    )

    with start_home_gateway(ws, home, monkeypatch) as gw:
        written = devbox_native.configure_agents(["gemini"], root_dir=home, host=ws.host, gateway_url=gw.url)
        assert written == {"gemini": env_path}
        settings = json.loads(settings_path.read_text())
        assert settings["security"]["auth"]["selectedType"] == "gemini-api-key"
        assert {k: v for k, v in settings.items() if k != "security"} == {
            k: v for k, v in GEMINI_USER_SETTINGS.items() if k != "security"
        }
        assert settings["security"]["folderTrust"] == {"enabled": False}
        dotenv = env_path.read_text()
        assert dotenv.startswith(GEMINI_USER_ENV)
        assert f"GOOGLE_GEMINI_BASE_URL={gw.url}/ai-gateway/gemini\n" in dotenv
        assert f"GEMINI_API_KEY={gw.key_path.read_text().strip()}\n" in dotenv

        # Headless, Gemini CLI only reads a trusted folder's .env (and refuses an untrusted one).
        env = {**agent_env(ws, home), "GEMINI_CLI_TRUST_WORKSPACE": "true"}
        argv = [str(gemini), "-p", PROMPT]
        route = "/ai-gateway/gemini/v1beta/models/databricks-gemini-2-5-pro:"
        # The token expires between the prompts: the gateway gets a fresh one, Gemini CLI is untouched.
        prompt_across_expiry(ws, home, argv, env, project, route, gw=gw)

    assert_no_secret_in_home(home, secrets_of(ws, home, bearers_on(ws, "/ai-gateway/")))

    devbox_native.unconfigure_agents(["gemini"], root_dir=home)
    assert json.loads(settings_path.read_text()) == GEMINI_USER_SETTINGS
    assert env_path.read_text() == GEMINI_USER_ENV


# --------------------------------------------------------------------------------------------------- OpenCode

OPENCODE_USER_CONFIG: dict[str, Any] = {
    "$schema": "https://opencode.ai/config.json",
    "theme": "tokyonight",
    "autoupdate": False,
    "share": "disabled",
    "provider": {"local": {"npm": "@ai-sdk/openai-compatible", "options": {"baseURL": "http://127.0.0.1:9/v1"}}},
}


def test_opencode_end_to_end(tmp_path: Path, fake_workspace: FakeWorkspace, monkeypatch: pytest.MonkeyPatch) -> None:
    opencode = require_cli("opencode")
    ws = fake_workspace
    home, project, [config_path] = user_home(
        tmp_path, {".config/opencode/opencode.json": json.dumps(OPENCODE_USER_CONFIG, indent=2)}
    )

    with start_home_gateway(ws, home, monkeypatch) as gw:
        written = devbox_native.configure_agents(["opencode"], root_dir=home, host=ws.host, gateway_url=gw.url)
        assert written == {"opencode": config_path}
        config = json.loads(config_path.read_text())
        assert {k: v for k, v in config.items() if k not in ("provider", "model")} == {
            k: v for k, v in OPENCODE_USER_CONFIG.items() if k != "provider"
        }
        assert config["provider"]["local"] == OPENCODE_USER_CONFIG["provider"]["local"]
        assert config["provider"]["databricks"]["options"]["apiKey"] == f"{{file:{gw.key_path}}}"

        env = {**agent_env(ws, home), **OPENCODE_OFFLINE_ENV}
        argv = [str(opencode), "run", PROMPT]
        route = "/serving-endpoints/chat/completions"
        prompt_across_expiry(ws, home, argv, env, project, route, gw=gw)
        calls = [i for i in ws.invocations if i["path"] == route]
        assert calls[-1]["body"]["model"] == config["model"].removeprefix("databricks/")

    assert_no_secret_in_home(home, secrets_of(ws, home, bearers_on(ws, "/serving-endpoints/")))

    fetched = [p for p in home.glob(".npm/_cacache/index-v5/**/*") if p.is_file()]
    assert not fetched, "OpenCode's npm fetched from a registry (it should run offline)"

    devbox_native.unconfigure_agents(["opencode"], root_dir=home)
    assert json.loads(config_path.read_text()) == OPENCODE_USER_CONFIG


# ------------------------------------------------------- a variable moves the agent's config (issue 11, item 2)


@pytest.mark.parametrize(
    ("agent", "program", "var", "folder", "file", "argv", "route"),
    [
        # The DevBox app sets CODEX_HOME: before this fix we wrote ~/.codex/config.toml, which Codex never read.
        ("codex", "codex", "CODEX_HOME", "codex-home", "config.toml", ["exec", "--skip-git-repo-check", PROMPT],
         "/serving-endpoints/responses"),
        ("claude-code", "claude", "CLAUDE_CONFIG_DIR", "claude-dir", "settings.json",
         ["-p", PROMPT, "--output-format", "json"], "/serving-endpoints/anthropic/v1/messages"),
    ],
)  # fmt: skip
def test_a_helper_agent_reads_our_config_where_its_variable_moves_it(
    tmp_path: Path,
    fake_workspace: FakeWorkspace,
    monkeypatch: pytest.MonkeyPatch,
    agent: str,
    program: str,
    var: str,
    folder: str,
    file: str,
    argv: list[str],
    route: str,
) -> None:
    cli = require_cli(program)
    ws = fake_workspace
    home, project, _ = user_home(tmp_path, {})
    home.mkdir()
    moved = tmp_path / folder
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv(var, str(moved))
    written = devbox_native.configure_agents([agent], host=ws.host)  # no root: where the agent reads
    assert written == {agent: moved / file}
    assert not (home / f".{folder.split('-')[0]}").exists()

    done = run_agent([str(cli), *argv], {**agent_env(ws, home), var: str(moved)}, project)
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-3000:]
    assert ws.reply_text in done.stdout, done.stdout[-3000:]
    check_bearers(ws, home, route, 0)

    devbox_native.unconfigure_agents([agent])
    assert "token get" not in (moved / file).read_text()


@pytest.mark.parametrize(
    ("agent", "program", "var", "value", "main_file", "argv", "route", "extra_env"),
    [
        ("gemini", "gemini", "GEMINI_CLI_HOME", "moved", "moved/.gemini/.env", ["-p", PROMPT],
         "/ai-gateway/gemini/v1beta/models/databricks-gemini-2-5-pro:", {"GEMINI_CLI_TRUST_WORKSPACE": "true"}),
        ("opencode", "opencode", "XDG_CONFIG_HOME", "moved", "moved/opencode/opencode.json", ["run", PROMPT],
         "/serving-endpoints/chat/completions", OPENCODE_OFFLINE_ENV),
        ("opencode", "opencode", "OPENCODE_CONFIG", "oc/mine.json", "oc/mine.json", ["run", PROMPT],
         "/serving-endpoints/chat/completions", OPENCODE_OFFLINE_ENV),
        ("opencode", "opencode", "OPENCODE_CONFIG_DIR", "ocd", "ocd/opencode.json", ["run", PROMPT],
         "/serving-endpoints/chat/completions", OPENCODE_OFFLINE_ENV),
    ],
)  # fmt: skip
def test_a_gateway_agent_reads_our_config_where_its_variable_moves_it(
    tmp_path: Path,
    fake_workspace: FakeWorkspace,
    monkeypatch: pytest.MonkeyPatch,
    agent: str,
    program: str,
    var: str,
    value: str,
    main_file: str,
    argv: list[str],
    route: str,
    extra_env: dict[str, str],
) -> None:
    cli = require_cli(program)
    ws = fake_workspace
    home, project, _ = user_home(tmp_path, {})
    home.mkdir()
    monkeypatch.setenv(var, str(tmp_path / value))
    with start_home_gateway(ws, home, monkeypatch) as gw:
        written = devbox_native.configure_agents([agent], host=ws.host, gateway_url=gw.url)
        assert written == {agent: tmp_path / main_file}
        assert not (home / ".gemini").exists() and not (home / ".config" / "opencode" / "opencode.json").exists()
        env = {**agent_env(ws, home), var: str(tmp_path / value), **extra_env}
        done = run_agent([str(cli), *argv], env, project)
        assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-3000:]
        assert ws.reply_text in done.stdout, done.stdout[-3000:]
        check_gateway_bearers(ws, home, gw, route)
    devbox_native.unconfigure_agents([agent])
    assert "databricks" not in (tmp_path / main_file).read_text().lower()


# ----------------------------------------------------------------------------------------------- loopback only


def test_agents_need_nothing_beyond_loopback() -> None:
    """Every end-to-end test again, in a new network namespace with only `lo` up (`unshare -n`): every connection
    the agents (and the helpers they start) try outside 127.0.0.1 fails at once, so passing proves they need none."""
    for program in ("claude", "codex", "gemini", "opencode"):
        require_cli(program)
    if os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("ip") is None:
        pytest.skip("needs root, unshare and ip (CI runs as root)")
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__, "-k", "end_to_end"]
    proc = subprocess.run(
        ["unshare", "-n", "--", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-2000:]
    assert "4 passed" in proc.stdout, proc.stdout[-3000:]
