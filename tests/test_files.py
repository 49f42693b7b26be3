"""CCR config, plugin and .databrickscfg writes: exact content, private modes, atomic replacement."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import devbox_native
import pytest
from conftest import expected_config, mode
from devbox_native.errors import MissingEnvVarError

TOKEN = "test-token-value-123"


@pytest.mark.parametrize(
    "host",
    ["example.cloud.databricks.com", "https://example.cloud.databricks.com", "https://example.cloud.databricks.com/"],
)
def test_config_is_the_exact_structure_with_one_scheme(tmp_path: Path, host: str) -> None:
    path = devbox_native.write_ccr_config(TOKEN, tmp_path, host=host)
    assert isinstance(path, Path)
    assert path == tmp_path / ".claude-code-router" / "config.json"
    want = expected_config(TOKEN, tmp_path, "https://example.cloud.databricks.com")
    # Byte-identical to what the app's json.dump(config, f, indent=2) writes.
    assert path.read_text() == json.dumps(want, indent=2)
    assert "https://https://" not in path.read_text()


def test_model_and_http_host_are_honoured(tmp_path: Path) -> None:
    path = devbox_native.write_ccr_config(
        TOKEN, tmp_path, host="http://127.0.0.1:8080", model="databricks-claude-opus-4-5"
    )
    cfg = json.loads(path.read_text())
    assert cfg == expected_config(TOKEN, tmp_path, "http://127.0.0.1:8080", "databricks-claude-opus-4-5")


def test_make_config_matches_the_file_and_keeps_key_order(tmp_path: Path) -> None:
    cfg = devbox_native.make_config(TOKEN, tmp_path, host="h.example")
    want = expected_config(TOKEN, tmp_path, "https://h.example")
    assert cfg == want
    assert list(cfg) == list(want)
    assert list(cfg["Providers"][0]) == list(want["Providers"][0])


def test_files_are_private_from_the_first_byte_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        path = devbox_native.write_ccr_config(TOKEN, tmp_path / "home", host="h")
    finally:
        os.umask(old)
    plugin = path.parent / "plugins" / "databricks-claude-transformers.js"
    assert mode(path) == 0o600 and mode(plugin) == 0o600
    assert mode(path.parent) == 0o700 and mode(plugin.parent) == 0o700 and mode(tmp_path / "home") == 0o700


def test_a_looser_existing_file_is_replaced_private(tmp_path: Path) -> None:
    cfg = tmp_path / ".claude-code-router" / "config.json"
    cfg.parent.mkdir()
    cfg.write_text("{}")
    cfg.chmod(0o644)
    devbox_native.write_ccr_config(TOKEN, tmp_path, host="h")
    assert mode(cfg) == 0o600
    assert json.loads(cfg.read_text())["Providers"][0]["api_key"] == TOKEN


def test_plugin_file_is_the_embedded_plugin_and_root_dir_is_honoured(tmp_path: Path) -> None:
    path = devbox_native.write_ccr_config(TOKEN, tmp_path, host="h")
    plugin = json.loads(path.read_text())["transformers"][0]["path"]
    assert plugin == str(tmp_path / ".claude-code-router" / "plugins" / "databricks-claude-transformers.js")
    assert Path(plugin).read_text() == devbox_native.get_databricks_transformers_js()
    assert "databricks-custom" in devbox_native.get_databricks_transformers_js()


def test_relative_root_is_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = devbox_native.write_ccr_config(TOKEN, "rel", host="h")
    assert path.is_absolute() and path == tmp_path / "rel" / ".claude-code-router" / "config.json"
    assert json.loads(path.read_text())["transformers"][0]["path"].startswith(str(tmp_path))


def test_none_root_means_home_and_host_comes_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("DATABRICKS_HOST", "adb-1.2.azuredatabricks.net")
    devbox_native.materialize_configs(TOKEN)
    cfg = json.loads((tmp_path / ".claude-code-router" / "config.json").read_text())
    assert cfg == expected_config(TOKEN, tmp_path, "https://adb-1.2.azuredatabricks.net")


def test_missing_host_env_is_a_key_error_naming_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABRICKS_HOST", raising=False)
    with pytest.raises(KeyError) as exc:
        devbox_native.write_ccr_config(TOKEN, tmp_path)
    assert isinstance(exc.value, MissingEnvVarError) and exc.value.env_var == "DATABRICKS_HOST"
    assert "DATABRICKS_HOST" in str(exc.value)
    assert not (tmp_path / ".claude-code-router").exists()


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"databricks_token": ""}, "databricks_token"),
        ({"databricks_token": "secret-part other-part"}, "databricks_token"),
        ({"databricks_token": "secret-part\n"}, "databricks_token"),
        ({"model": "../etc"}, "model"),
        ({"model": ""}, "model"),
        ({"host": "ftp://x"}, "host"),
        ({"host": "https://"}, "host"),
    ],
)
def test_bad_values_name_the_parameter_and_write_nothing(tmp_path: Path, kwargs: dict[str, str], param: str) -> None:
    cfg = tmp_path / ".claude-code-router" / "config.json"
    cfg.parent.mkdir()
    cfg.write_text("previous")
    args = {"databricks_token": TOKEN, "host": "h", **kwargs}
    token = args.pop("databricks_token")
    with pytest.raises(ValueError, match=rf"^{param}: ") as exc:
        devbox_native.write_ccr_config(token, tmp_path, **args)
    assert cfg.read_text() == "previous"
    assert sorted(p.name for p in cfg.parent.iterdir()) == ["config.json"]
    assert "secret-part" not in str(exc.value)


@pytest.mark.parametrize("bad", [123, None, b"bytes"])
def test_wrong_types_raise_type_error(tmp_path: Path, bad: object) -> None:
    with pytest.raises(TypeError):
        devbox_native.write_ccr_config(bad, tmp_path, host="h")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        devbox_native.write_ccr_config(TOKEN, 42, host="h")  # type: ignore[arg-type]


def test_a_failed_write_keeps_the_old_file_byte_identical(tmp_path: Path) -> None:
    path = devbox_native.write_ccr_config("old-token", tmp_path, host="h")
    before = path.read_bytes()
    # The plugin folder is replaced by a file: creating/writing the plugin fails before config.json is touched.
    plugins = path.parent / "plugins"
    for p in plugins.iterdir():
        p.unlink()
    plugins.rmdir()
    plugins.write_text("in the way")
    with pytest.raises(OSError) as exc:
        devbox_native.write_ccr_config("new-token", tmp_path, host="h")
    assert str(plugins) in str(exc.value)
    assert path.read_bytes() == before
    assert "new-token" not in str(exc.value)
    # config.json.lock is the sidecar lock of every writer (left in place, empty, 0600).
    assert sorted(p.name for p in path.parent.iterdir()) == ["config.json", "config.json.lock", "plugins"]


@pytest.mark.parametrize("call", ["write_ccr_config", "update_ccr_token"])
def test_a_refused_target_leaves_the_folder_as_it_found_it(tmp_path: Path, call: str) -> None:
    ccr = tmp_path / ".claude-code-router"
    (ccr / "config.json").mkdir(parents=True)  # a folder where the file should go
    (ccr / "config.json" / "keep").write_text("x")
    with pytest.raises(OSError) as exc:
        getattr(devbox_native, call)(TOKEN, tmp_path, host="h")
    assert exc.value.filename == str(ccr / "config.json")
    assert "not a regular file" in str(exc.value)
    # Every target is checked before anything is written: no plugin, no plugins folder, no lock file.
    assert sorted(p.name for p in ccr.iterdir()) == ["config.json"]
    assert (ccr / "config.json" / "keep").read_text() == "x"


def test_a_failed_first_write_removes_what_it_created(tmp_path: Path) -> None:
    # The plugin is written, then config.json cannot be: its lock path is a folder nobody may replace.
    ccr = tmp_path / ".claude-code-router"
    (ccr / "config.json.lock" / "busy").mkdir(parents=True)
    with pytest.raises(OSError):
        devbox_native.write_ccr_config(TOKEN, tmp_path, host="h")
    assert sorted(p.name for p in ccr.iterdir()) == ["config.json.lock"]


def test_symlinked_config_is_written_through(tmp_path: Path) -> None:
    real = tmp_path / "dotfiles" / "ccr-config.json"
    real.parent.mkdir()
    real.write_text("{}")
    ccr = tmp_path / "home" / ".claude-code-router"
    ccr.mkdir(parents=True)
    (ccr / "config.json").symlink_to(real)
    devbox_native.write_ccr_config(TOKEN, tmp_path / "home", host="h")
    assert (ccr / "config.json").is_symlink()
    assert json.loads(real.read_text())["Providers"][0]["api_key"] == TOKEN
    assert mode(real) == 0o600


def test_concurrent_writers_never_show_a_partial_file(tmp_path: Path) -> None:
    script = (
        "import sys, devbox_native\n"
        "for i in range(150):\n"
        "    devbox_native.write_ccr_config(f'tok-{sys.argv[1]}-{i}', sys.argv[2], host='h')\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", script, str(n), str(tmp_path)]) for n in range(3)]
    cfg = tmp_path / ".claude-code-router" / "config.json"
    seen = 0
    while any(p.poll() is None for p in procs):
        if cfg.exists():
            json.loads(cfg.read_text())  # always a whole file
            seen += 1
    assert [p.wait(timeout=60) for p in procs] == [0, 0, 0]
    assert seen > 0  # the reader really raced the writers
    assert json.loads(cfg.read_text())["Providers"][0]["api_key"].startswith("tok-")
    assert sorted(p.name for p in cfg.parent.iterdir()) == ["config.json", "config.json.lock", "plugins"]


def test_setup_databricks_cfg_writes_the_apps_file_privately(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABRICKS_HOST", "adb-1.2.azuredatabricks.net")
    monkeypatch.setenv("DATABRICKS_CLIENT_ID", "client-id")
    monkeypatch.setenv("DATABRICKS_CLIENT_SECRET", "client-secret")
    assert devbox_native.setup_databricks_cfg(root_dir=tmp_path) is None
    cfg = tmp_path / ".databrickscfg"
    assert cfg.read_text() == (
        "\n[DEFAULT]\nhost = https://adb-1.2.azuredatabricks.net\n"
        "client_id = client-id\nclient_secret = client-secret\n"
    )
    assert mode(cfg) == 0o600


def test_setup_databricks_cfg_defaults_to_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("DATABRICKS_HOST", "https://h.example/")
    monkeypatch.setenv("DATABRICKS_CLIENT_ID", "c")
    monkeypatch.setenv("DATABRICKS_CLIENT_SECRET", "s")
    devbox_native.setup_databricks_cfg()
    assert "host = https://h.example\n" in (tmp_path / ".databrickscfg").read_text()


@pytest.mark.parametrize("missing", ["DATABRICKS_HOST", "DATABRICKS_CLIENT_ID", "DATABRICKS_CLIENT_SECRET"])
def test_setup_databricks_cfg_missing_env_is_key_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, missing: str
) -> None:
    for name in ("DATABRICKS_HOST", "DATABRICKS_CLIENT_ID", "DATABRICKS_CLIENT_SECRET"):
        monkeypatch.setenv(name, "v")
    monkeypatch.delenv(missing)
    with pytest.raises(KeyError, match=missing):
        devbox_native.setup_databricks_cfg(root_dir=tmp_path)
    assert not (tmp_path / ".databrickscfg").exists()


def test_setup_databricks_cfg_rejects_line_breaks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABRICKS_HOST", "h")
    monkeypatch.setenv("DATABRICKS_CLIENT_ID", "c")
    monkeypatch.setenv("DATABRICKS_CLIENT_SECRET", "s3cr3t\n[other]\ntoken = x")
    with pytest.raises(ValueError, match=r"^DATABRICKS_CLIENT_SECRET: ") as exc:
        devbox_native.setup_databricks_cfg(root_dir=tmp_path)
    assert "s3cr3t" not in str(exc.value)


@pytest.mark.parametrize(
    ("url", "want"),
    [
        ("adb-1.2.azuredatabricks.net", "https://adb-1.2.azuredatabricks.net"),
        ("https://x.cloud.databricks.com", "https://x.cloud.databricks.com"),
        ("https://x.cloud.databricks.com/", "https://x.cloud.databricks.com"),
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
    ],
)
def test_ensure_https_url(url: str, want: str) -> None:
    assert devbox_native.ensure_https_url(url) == want


def test_ensure_https_url_rejects_non_urls() -> None:
    with pytest.raises(ValueError, match=r"^url: "):
        devbox_native.ensure_https_url("")
    with pytest.raises(TypeError):
        devbox_native.ensure_https_url(None)  # type: ignore[arg-type]
