"""The config store: merge-preserving token updates of CCR's config.json and of .databrickscfg, under a
cross-process lock; crash consistency under SIGKILL; no lost update with concurrent writer processes."""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import devbox_native
import pytest
from conftest import expected_config, mode
from devbox_native.errors import ConfigError, MissingEnvVarError
from devbox_native.testing import FakeWorkspace

OLD = "old-token-value-1"
NEW = "new-token-value-2"


def _user_config(root: Path) -> Path:
    """A config as a user (and CCR) left it: our provider in the middle, other providers and unknown keys."""
    path = devbox_native.write_ccr_config(OLD, root, host="h.example")
    cfg: dict[str, Any] = json.loads(path.read_text())
    user: dict[str, Any] = {"zeta": 1, "LOG": True, "NON_INTERACTIVE_MODE": False}
    user |= {k: v for k, v in cfg.items() if k != "LOG"}
    user["Providers"] = [
        {"name": "openrouter", "api_base_url": "https://openrouter.ai/api/v1", "api_key": "$OPENROUTER_KEY"},
        {"api_key": OLD, **cfg["Providers"][0], "x-custom": {"retries": 3, "ratio": 0.25, "names": ["é", None]}},
        {"name": "ollama", "api_key": "ollama", "models": ["qwen"]},
    ]
    user["Router"] = {"default": "databricks,databricks-claude-sonnet-4", "background": "ollama,qwen"}
    user["alpha"] = "last"
    path.write_text(json.dumps(user, indent=4))
    path.chmod(0o600)
    return path


def test_update_replaces_only_our_api_key(tmp_path: Path) -> None:
    path = _user_config(tmp_path)
    before = json.loads(path.read_text())
    assert devbox_native.update_ccr_token(NEW, tmp_path) == path
    after = json.loads(path.read_text())
    assert after["Providers"][1]["api_key"] == NEW
    before["Providers"][1]["api_key"] = NEW
    assert after == before  # every other key, provider and value kept
    assert list(after) == list(before)  # key order kept, at every level
    assert [list(p) for p in after["Providers"]] == [list(p) for p in before["Providers"]]
    assert list(after["Providers"][1]["x-custom"]) == ["retries", "ratio", "names"]
    # Written as the app's json.dump(indent=2) writes it.
    assert path.read_text() == json.dumps(after, indent=2)
    assert mode(path) == 0o600


def test_update_keeps_every_number_as_the_file_wrote_it(tmp_path: Path) -> None:
    path = devbox_native.write_ccr_config(OLD, tmp_path, host="h.example")
    text = path.read_text().replace(
        '"PORT": 3456', '"PORT": 3456,\n  "big": 12345678901234567890123,\n  "tiny": 1e-07,\n  "ratio": 1.50'
    )
    path.write_text(text)
    devbox_native.update_ccr_token(NEW, tmp_path)
    # Byte for byte what the file had, but for our api_key (json.loads would read 1.2345678901234568e+22).
    assert path.read_text() == text.replace(OLD, NEW)


def test_update_of_a_missing_file_writes_the_full_config(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(MissingEnvVarError):
        devbox_native.update_ccr_token(NEW, tmp_path)
    clean_env.setenv("DATABRICKS_HOST", "https://ws.example")
    path = devbox_native.update_ccr_token(NEW, tmp_path)
    assert json.loads(path.read_text()) == expected_config(NEW, tmp_path, "https://ws.example")
    assert (path.parent / "plugins" / "databricks-claude-transformers.js").is_file()
    other = tmp_path / "other"
    path = devbox_native.update_ccr_token(NEW, other, host="h2.example", model="databricks-claude-opus-4-5")
    want = expected_config(NEW, other, "https://h2.example", "databricks-claude-opus-4-5")
    assert path.read_text() == json.dumps(want, indent=2)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('{"Providers": [{"name": "databricks", "api_key": "' + OLD + '"', "not valid JSON"),
        ("", "not valid JSON"),
        ("[]", "the top level is not a JSON object"),
        ('{"Providers": [{"name": "openrouter", "api_key": "k"}]}', 'no provider named "databricks"'),
        ('{"Router": {}}', 'no "Providers" list'),
    ],
)
def test_a_bad_config_is_a_config_error_and_stays_untouched(tmp_path: Path, text: str, reason: str) -> None:
    path = tmp_path / ".claude-code-router" / "config.json"
    path.parent.mkdir(mode=0o700)
    path.write_text(text)
    path.chmod(0o600)
    with pytest.raises(ConfigError) as exc:
        devbox_native.update_ccr_token(NEW, tmp_path)
    assert str(path) in str(exc.value) and reason in str(exc.value)
    assert OLD not in str(exc.value) and NEW not in str(exc.value)
    assert path.read_text() == text
    assert sorted(p.name for p in path.parent.iterdir()) == ["config.json", "config.json.lock"]


def test_bad_tokens_are_refused_before_reading(tmp_path: Path) -> None:
    path = _user_config(tmp_path)
    before = path.read_bytes()
    for bad in ["", "two words", "line\nbreak"]:
        with pytest.raises(ValueError, match=r"^token: "):
            devbox_native.update_ccr_token(bad, tmp_path)
    assert path.read_bytes() == before


def test_a_looser_file_is_tightened_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="devbox_native")
    devbox_native.refresh_logging()
    path = _user_config(tmp_path)
    path.chmod(0o644)
    devbox_native.update_ccr_token(NEW, tmp_path)
    assert mode(path) == 0o600
    (record,) = [r for r in caplog.records if "0644" in r.getMessage()]
    assert record.levelno == logging.WARNING and record.name.startswith("devbox_native")
    assert str(path) in record.getMessage() and "now 0600" in record.getMessage()
    assert NEW not in caplog.text and OLD not in caplog.text

    cfg = tmp_path / ".databrickscfg"
    cfg.write_text("[DEFAULT]\nhost = https://h\n")
    cfg.chmod(0o660)
    devbox_native.update_databricks_cfg({"token": NEW}, root_dir=tmp_path)
    assert mode(cfg) == 0o600
    assert any("0660" in r.getMessage() for r in caplog.records)


def test_a_symlinked_config_is_written_through_to_its_target(tmp_path: Path) -> None:
    home = tmp_path / "home"
    real_root = tmp_path / "dotfiles"
    real = _user_config(real_root)
    link = home / ".claude-code-router" / "config.json"
    link.parent.mkdir(parents=True)
    link.symlink_to(real)
    devbox_native.update_ccr_token(NEW, home)
    assert link.is_symlink() and link.resolve() == real.resolve()
    assert json.loads(real.read_text())["Providers"][1]["api_key"] == NEW
    assert mode(real) == 0o600
    # The lock sits next to the target, so writers through the link and through the target exclude each other.
    assert (real.parent / "config.json.lock").exists()
    assert not (link.parent / "config.json.lock").exists()

    cfg_real = tmp_path / "dotfiles" / "databrickscfg"
    cfg_real.write_text("[DEFAULT]\nhost = https://h\n")
    (home / ".databrickscfg").symlink_to(cfg_real)
    devbox_native.update_databricks_cfg({"token": NEW}, root_dir=home)
    assert (home / ".databrickscfg").is_symlink()
    assert cfg_real.read_text() == f"[DEFAULT]\nhost = https://h\ntoken = {NEW}\n"


DATABRICKSCFG = """\
; written by hand
[DEFAULT]
host = https://a.example
# the pat below is rotated by devbox-native
token = dapi-old
  continuation-of-old

[staging]
host = https://staging.example
TOKEN: dapi-staging   ; not an inline comment for configparser

[prod.eu]
client_id = abc
"""


def test_databrickscfg_update_keeps_other_profiles_and_comments(tmp_path: Path) -> None:
    cfg = tmp_path / ".databrickscfg"
    cfg.write_text(DATABRICKSCFG)
    cfg.chmod(0o600)
    path = devbox_native.update_databricks_cfg({"token": "dapi-new"}, root_dir=tmp_path)
    assert path == cfg
    assert cfg.read_text() == DATABRICKSCFG.replace("token = dapi-old\n  continuation-of-old\n", "token = dapi-new\n")
    devbox_native.update_databricks_cfg({"token": "t2", "auth_type": "pat"}, profile="staging", root_dir=tmp_path)
    devbox_native.update_databricks_cfg({"client_secret": "s"}, profile="prod.eu", root_dir=tmp_path)
    devbox_native.update_databricks_cfg({"host": "https://new.example"}, profile="new", root_dir=tmp_path)
    text = cfg.read_text()
    assert "; written by hand\n" in text and "# the pat below is rotated by devbox-native\n" in text
    assert "TOKEN: t2\nauth_type = pat\n" in text
    assert text.endswith("[prod.eu]\nclient_id = abc\nclient_secret = s\n\n[new]\nhost = https://new.example\n")

    # What the Databricks SDK (configparser) reads back.
    import configparser

    parser = configparser.ConfigParser()
    parser.read(cfg)
    assert parser.get("DEFAULT", "token") == "dapi-new"
    assert parser.get("staging", "token") == "t2"
    assert parser.get("prod.eu", "client_secret") == "s"
    assert parser.get("new", "host") == "https://new.example"
    # And what our own reader reads back.
    staging = devbox_native.Config(config_file=str(cfg), profile="staging")
    assert (staging.host, staging.auth_type) == ("https://staging.example", "pat")
    prod = devbox_native.Config(config_file=str(cfg), profile="prod.eu", host="https://p.example")
    assert (prod.get("client_id"), prod.auth_type) == ("abc", "oauth-m2m")
    assert devbox_native.Config(config_file=str(cfg), profile="new", token="t").host == "https://new.example"


def _read_back(path: Path, section: str) -> dict[str, str]:
    """What configparser (the Python SDK's reader) reads in a section, without interpolation."""
    import configparser

    parser = configparser.ConfigParser(interpolation=None)
    parser.read(path)
    return dict(parser[section])


def test_databrickscfg_edits_read_back_the_same_with_our_reader_and_configparser(
    fake_workspace: FakeWorkspace, tmp_path: Path
) -> None:
    ws = fake_workspace
    cfg = tmp_path / ".databrickscfg"
    # A padded header and an indented comment before a key: both readers and the editor agree on them.
    cfg.write_text(f"[ dev ]\nhost = {ws.host}\n  # the user name below\nusername = {ws.username}\n")
    ours = devbox_native.Config(config_file=str(cfg), profile="dev", password=ws.password)
    assert (ours.auth_type, ours.get("username")) == ("basic", ws.username)
    devbox_native.update_databricks_cfg({"token": ws.pat, "client_id": "id#1;x"}, profile="dev", root_dir=tmp_path)
    text = cfg.read_text()
    assert text.count("[") == 1 and text.endswith(f"username = {ws.username}\ntoken = {ws.pat}\nclient_id = id#1;x\n")
    cp = _read_back(cfg, " dev ")
    assert (cp["host"], cp["username"], cp["token"], cp["client_id"]) == (ws.host, ws.username, ws.pat, "id#1;x")
    ours = devbox_native.Config(config_file=str(cfg), profile="dev", auth_type="pat")
    assert ours.get("client_id") == "id#1;x" and ours.get("username") == ws.username
    assert devbox_native.list_tokens(config=ours) == []  # the token read back is the one written
    assert [r.headers["authorization"] for r in ws.requests] == [f"Bearer {ws.pat}"]


def test_databrickscfg_refuses_a_value_the_readers_would_cut(tmp_path: Path) -> None:
    cfg = tmp_path / ".databrickscfg"
    cfg.write_text("[DEFAULT]\nhost = https://h\n")
    for value in ("pw #secret-part", "pw ;secret-part"):
        with pytest.raises(ValueError, match="comment") as exc:
            devbox_native.update_databricks_cfg({"password": value}, root_dir=tmp_path)
        assert "secret-part" not in str(exc.value)
    assert cfg.read_text() == "[DEFAULT]\nhost = https://h\n"


def test_databrickscfg_update_creates_a_missing_file_privately(tmp_path: Path) -> None:
    path = devbox_native.update_databricks_cfg({"host": "https://h", "token": "t"}, root_dir=tmp_path / "home")
    assert path.read_text() == "[DEFAULT]\nhost = https://h\ntoken = t\n"
    assert mode(path) == 0o600 and mode(path.parent) == 0o700


def test_databrickscfg_refuses_injection_and_ambiguity(tmp_path: Path) -> None:
    cfg = tmp_path / ".databrickscfg"
    for values, profile in [
        ({"token": "x\n[evil]"}, "DEFAULT"),
        ({"bad key": "v"}, "DEFAULT"),
        ({"token": "v"}, "a]b"),
        ({}, "DEFAULT"),
    ]:
        with pytest.raises(ValueError) as exc:
            devbox_native.update_databricks_cfg(values, profile=profile, root_dir=tmp_path)
        assert "evil" not in str(exc.value)
    with pytest.raises(TypeError):
        devbox_native.update_databricks_cfg({"token": 1}, root_dir=tmp_path)  # type: ignore[dict-item]
    assert not cfg.exists()
    cfg.write_text("[DEFAULT]\ntoken = a\n[DEFAULT]\ntoken = b\n")
    with pytest.raises(ConfigError, match="appears more than once") as err:
        devbox_native.update_databricks_cfg({"token": "c"}, root_dir=tmp_path)
    assert str(cfg) in str(err.value)
    assert cfg.read_text() == "[DEFAULT]\ntoken = a\n[DEFAULT]\ntoken = b\n"


# --------------------------------------------------------------------------------------- crash consistency

_REWRITER = """
import sys, devbox_native
root, a, b = sys.argv[1:4]
sys.stdout.write("ready\\n"); sys.stdout.flush()
while True:
    devbox_native.update_ccr_token(a, root)
    devbox_native.update_ccr_token(b, root)
"""


def test_sigkill_at_random_moments_never_tears_the_config(tmp_path: Path) -> None:
    """300 times: a child rewrites the config in a loop and is SIGKILLed at a random moment; the file then
    parses, holds the old or the new token, keeps the user's keys and is 0600."""
    path = _user_config(tmp_path)
    rng = random.Random(20261129)  # noqa: S311 - timing jitter, not cryptography
    current = OLD
    started = time.monotonic()
    changed = 0
    for i in range(300):
        new = f"tok-{i:03d}"
        child = subprocess.Popen(
            [sys.executable, "-c", _REWRITER, str(tmp_path), new, current], stdout=subprocess.PIPE, text=True
        )
        assert child.stdout is not None and child.stdout.readline() == "ready\n"
        time.sleep(rng.uniform(0, 0.012))
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(timeout=10) == -signal.SIGKILL
        child.stdout.close()
        cfg = json.loads(path.read_text())  # parses: never a partial file
        token = cfg["Providers"][1]["api_key"]
        assert token in (current, new), (i, token)
        assert cfg["Providers"][0]["api_key"] == "$OPENROUTER_KEY" and cfg["alpha"] == "last"
        assert mode(path) == 0o600
        changed += token != current
        current = token
    elapsed = time.monotonic() - started
    assert changed > 30, f"only {changed} of 300 kills landed after a completed write: the test proves little"
    # A killed writer may leave its temporary file; the next locked writer sweeps it.
    devbox_native.update_ccr_token(NEW, tmp_path)
    assert sorted(p.name for p in path.parent.iterdir()) == ["config.json", "config.json.lock", "plugins"]
    assert elapsed < 60, f"300 kills took {elapsed:.0f} s"


# ------------------------------------------------------------------------------------------------ concurrency

_UPDATER = """
import os, sys, time, devbox_native
root, who, go = sys.argv[1], sys.argv[2], sys.argv[3]
while not os.path.exists(go):
    time.sleep(0.002)
for j in range(100):
    devbox_native.update_databricks_cfg({f"key_{j:03d}": f"{who}-{j}"}, profile=who, root_dir=root)
    if j % 10 == 0:
        devbox_native.update_ccr_token(f"{who}-{j}", root)
"""


def test_eight_processes_times_100_updates_lose_nothing(tmp_path: Path) -> None:
    cfg = tmp_path / ".databrickscfg"
    cfg.write_text("# shared by 8 writers\n[DEFAULT]\nhost = https://h\n")
    _user_config(tmp_path)
    go = tmp_path / "go"
    procs = [
        subprocess.Popen([sys.executable, "-c", _UPDATER, str(tmp_path), f"w{n}", str(go)], stderr=subprocess.PIPE)
        for n in range(8)
    ]
    time.sleep(0.3)  # let every interpreter start, then release them together
    go.touch()
    seen = 0
    while any(p.poll() is None for p in procs):
        json.loads((tmp_path / ".claude-code-router" / "config.json").read_text())  # readers never see a torn file
        seen += 1
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 8, errors
    import configparser

    parser = configparser.ConfigParser()
    parser.read(cfg)
    for n in range(8):
        assert {k: v for k, v in parser.items(f"w{n}") if k.startswith("key_")} == {
            f"key_{j:03d}": f"w{n}-{j}" for j in range(100)
        }
    assert cfg.read_text().startswith("# shared by 8 writers\n[DEFAULT]\nhost = https://h\n")
    final = json.loads((tmp_path / ".claude-code-router" / "config.json").read_text())
    assert final["Providers"][1]["api_key"].endswith("-90") and final["alpha"] == "last"
    assert mode(cfg) == 0o600
    assert seen > 0


def test_databrickscfg_update_writes_the_file_config_reads(
    fake_workspace: FakeWorkspace, tmp_path: Path, clean_env: pytest.MonkeyPatch
) -> None:
    ws = fake_workspace
    home = Path(os.environ["HOME"])
    elsewhere = tmp_path / "cfg" / "databricks.ini"
    elsewhere.parent.mkdir(mode=0o700)
    clean_env.setenv("DATABRICKS_CONFIG_FILE", str(elsewhere))
    path = devbox_native.update_databricks_cfg({"host": ws.host, "token": ws.pat}, profile="dev")
    assert path == elsewhere and not (home / ".databrickscfg").exists()
    cfg = devbox_native.Config(profile="dev")
    assert (cfg.host, cfg.auth_type) == (ws.host, "pat")
    assert devbox_native.list_tokens(config=cfg) == []  # the token Config() read is the one written
    # The keyword wins over the variable, and `~` is the home folder, as for Config(config_file=...).
    path = devbox_native.update_databricks_cfg({"host": ws.host}, profile="p", config_file="~/other.cfg")
    assert path == home / "other.cfg"
    assert devbox_native.Config(config_file="~/other.cfg", profile="p", token=ws.pat).host == ws.host
    # root_dir (an explicit folder) also beats the variable; both keywords together are refused.
    assert devbox_native.update_databricks_cfg({"token": "t"}, root_dir=tmp_path) == tmp_path / ".databrickscfg"
    with pytest.raises(ValueError, match="config_file"):
        devbox_native.update_databricks_cfg({"token": "t"}, root_dir=tmp_path, config_file=elsewhere)
    # Without the variable, the default is ~/.databrickscfg, where Config() looks.
    clean_env.delenv("DATABRICKS_CONFIG_FILE")
    assert devbox_native.update_databricks_cfg({"token": "t"}) == home / ".databrickscfg"
