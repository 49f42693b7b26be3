"""One error base: everything the library raises on purpose is a DevboxError and keeps its builtin base; the
package surface (lazy names, the async twins declared like their sync functions)."""

from __future__ import annotations

import ast
import errno
import inspect
import json
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Any

import devbox_native
import pytest
from devbox_native import _aio, _native, errors
from devbox_native.cli import EXIT_ERROR, LIFETIME_ENV, main
from devbox_native.errors import (
    ApiError,
    DevboxError,
    DevboxTimeoutError,
    FileError,
    HookError,
    NotRunningError,
)
from devbox_native.testing import FakeWorkspace

CREATE = "/api/2.0/token/create"


def test_every_exported_error_is_a_devbox_error() -> None:
    for name in errors.__all__:
        cls = getattr(errors, name)
        assert issubclass(cls, DevboxError), name
    assert issubclass(DevboxTimeoutError, TimeoutError)
    assert issubclass(NotRunningError, RuntimeError)
    assert issubclass(FileError, OSError)


def test_a_spent_retry_budget_is_a_devbox_timeout_chained_to_the_last_error(fake_workspace: FakeWorkspace) -> None:
    ws = fake_workspace
    ws.inject(CREATE, status=503, times=None)
    config = devbox_native.Config(host=ws.host, token=ws.pat, retry_timeout_seconds=1)
    with pytest.raises(DevboxError) as exc:
        devbox_native.create_token(60, config=config)
    assert isinstance(exc.value, DevboxTimeoutError) and isinstance(exc.value, TimeoutError)
    assert isinstance(exc.value.__cause__, ApiError)


def test_file_errors_are_devbox_errors_with_errno_and_filename(tmp_path: Path) -> None:
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x")
    with pytest.raises(DevboxError) as exc:
        devbox_native.write_ccr_config("tok-abc", not_a_folder, host="h")
    e = exc.value
    assert isinstance(e, FileError) and isinstance(e, NotADirectoryError)
    assert e.errno == errno.ENOTDIR and e.filename is not None and e.filename.startswith(str(not_a_folder))
    assert str(e).startswith(f"[Errno {errno.ENOTDIR}] cannot ") and repr(e).startswith("NotDirectoryError(")
    assert "tok-abc" not in str(e)


@pytest.mark.parametrize(
    ("number", "builtin"),
    [
        (errno.ENOENT, FileNotFoundError),
        (errno.EACCES, PermissionError),
        (errno.EPERM, PermissionError),
        (errno.EEXIST, FileExistsError),
        (errno.EISDIR, IsADirectoryError),
        (errno.ENOTDIR, NotADirectoryError),
    ],
)
def test_file_errors_are_the_oserror_subclass_of_their_errno(number: int, builtin: type[OSError]) -> None:
    # The factory the Rust core calls for every failed file operation.
    e = errors._file_error(number, "cannot open: boom", "/some/path")
    assert isinstance(e, builtin) and isinstance(e, FileError)
    assert (e.errno, e.strerror, e.filename) == (number, "cannot open: boom", "/some/path")
    assert type(errors._file_error(errno.ELOOP, "x", "/p")) is FileError


def test_wrong_argument_types_stay_plain_type_errors() -> None:
    with pytest.raises(TypeError) as exc:
        devbox_native.create_token("60")  # type: ignore[arg-type]
    assert not isinstance(exc.value, DevboxError)


def _event_loop_free_rotation(tmp_path: Path, ws: FakeWorkspace, **kw: Any) -> devbox_native.Rotation:
    root = tmp_path / "root"
    config = devbox_native.Config(host=ws.host, token=ws.pat)
    broker = devbox_native.TokenBroker(cache_path=tmp_path / "cache" / "token.json", config=config)
    devbox_native.write_ccr_config(broker.get(), root, host=ws.host)
    return devbox_native.start_rotation(root, broker=broker, port=0, retry_delay=60, **kw)


def test_a_stopped_rotation_raises_not_running(fake_workspace: FakeWorkspace, tmp_path: Path) -> None:
    rot = _event_loop_free_rotation(tmp_path, fake_workspace)
    rot.stop()
    with pytest.raises(NotRunningError, match="stopped") as exc:
        rot.rotate_now()
    assert isinstance(exc.value, RuntimeError)


def test_what_on_rotate_raised_is_the_cause_of_the_hook_error(fake_workspace: FakeWorkspace, tmp_path: Path) -> None:
    def on_rotate(event: dict[str, Any]) -> None:
        raise ValueError("not yet")

    rot = _event_loop_free_rotation(tmp_path, fake_workspace, on_rotate=on_rotate)
    try:
        with pytest.raises(HookError, match="on_rotate raised ValueError: not yet") as exc:
            rot.rotate_now(timeout=30)
    finally:
        rot.stop()
    cause = exc.value.__cause__
    assert isinstance(cause, ValueError) and str(cause) == "not yet"
    frames = [f.name for f in traceback.extract_tb(cause.__traceback__)]
    assert "on_rotate" in frames, frames


def test_the_cli_reports_a_file_error_as_exit_1(
    fake_workspace_env: FakeWorkspace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x")
    assert main("setup", "--root", str(not_a_folder)) == EXIT_ERROR
    err = capsys.readouterr().err
    assert f"NotDirectoryError: [Errno {errno.ENOTDIR}] cannot " in err, err


@pytest.mark.parametrize("value", ["0", "-5"])
def test_setup_lifetime_must_be_positive_even_when_the_env_var_wins(
    value: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(LIFETIME_ENV, "120")
    with pytest.raises(SystemExit) as exc:
        main("setup", "--lifetime", value)
    assert exc.value.code == 2
    assert "--lifetime: must be a positive number of seconds" in capsys.readouterr().err


def test_config_is_keyword_only_everywhere() -> None:
    seen = []
    for name in devbox_native.__all__:
        obj = getattr(devbox_native, name)
        if not callable(obj) or (isinstance(obj, type) and issubclass(obj, BaseException)):
            continue
        params = inspect.signature(obj).parameters
        if "config" in params:
            seen.append(name)
            assert params["config"].kind is inspect.Parameter.KEYWORD_ONLY, name
    assert {"TokenBroker", "cleanup_tokens", "cleanup_tokens_async", "start_rotation"} <= set(seen), seen


def test_no_private_future_helpers_on_the_public_classes() -> None:
    for cls in (devbox_native.TokenBroker, devbox_native.Rotation):
        assert [n for n in dir(cls) if n.endswith("_future")] == [], cls


# ------------------------------------------------------------------------------------------------ lazy imports


def test_import_loads_neither_asyncio_layer_nor_errors_until_used() -> None:
    code = (
        "import json, sys, devbox_native\n"
        "before = sorted(m for m in ('devbox_native._aio', 'devbox_native.errors', 'asyncio') if m in sys.modules)\n"
        "from devbox_native import DevboxError, create_token_async\n"
        "print(json.dumps({'before': before, 'after': [m in sys.modules for m in "
        "('devbox_native._aio', 'devbox_native.errors')], 'names': sorted(set(devbox_native.__all__) - "
        "set(dir(devbox_native)))}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    out = json.loads(done.stdout)
    assert out == {"before": [], "after": [True, True], "names": []}


def test_every_exported_name_resolves() -> None:
    for name in devbox_native.__all__:
        assert getattr(devbox_native, name) is not None, name
    assert devbox_native.DevboxError is errors.DevboxError
    assert devbox_native.start_rotation_async is _aio.start_rotation_async
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        devbox_native.nope  # type: ignore[attr-defined]  # noqa: B018


# ------------------------------------------------------------------------ the async twins, checked against one


TWINS = [
    "generate_spn_token",
    "create_token",
    "list_tokens",
    "delete_token",
    "cleanup_tokens",
    "start_rotation",
]
METHOD_TWINS = [
    ("TokenBroker", "get"),
    ("TokenBroker", "force_refresh"),
    ("Rotation", "stop"),
    ("Rotation", "rotate_now"),
]


def _shape(sig: inspect.Signature, drop: tuple[str, ...] = ()) -> list[tuple[str, Any, str]]:
    return [(p.name, p.kind, repr(p.default)) for p in sig.parameters.values() if p.name not in drop]


def _functions(path: Path) -> dict[str, ast.FunctionDef | ast.AsyncFunctionDef]:
    """The functions and methods declared in a source or stub file, by (qualified) name."""
    tree = ast.parse(path.read_text())
    found: dict[str, ast.FunctionDef | ast.AsyncFunctionDef] = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef):
                    found[f"{node.name}.{item.name}"] = item
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            found[node.name] = node
    return found


def _args(fn: ast.FunctionDef | ast.AsyncFunctionDef, drop: str = "event_loop") -> str:
    """The parameter list as written (names, annotations, defaults), without ``drop``."""
    a = fn.args
    kept = [(k, d) for k, d in zip(a.kwonlyargs, a.kw_defaults, strict=True) if k.arg != drop]
    return ast.unparse(
        ast.arguments(
            posonlyargs=a.posonlyargs,
            args=a.args,
            vararg=a.vararg,
            kwonlyargs=[k for k, _ in kept],
            kw_defaults=[d for _, d in kept],
            kwarg=a.kwarg,
            defaults=a.defaults,
        )
    )


STUB = _functions(Path(_native.__file__).with_name("_native.pyi"))
AIO = _functions(Path(_aio.__file__))


@pytest.mark.parametrize("name", TWINS)
def test_each_async_twin_takes_what_its_sync_function_takes(name: str) -> None:
    sync = _shape(inspect.signature(getattr(devbox_native, name)), drop=("event_loop",))
    # The public twin (a coroutine function in _aio), the native function behind it, and both stubs.
    assert inspect.iscoroutinefunction(getattr(devbox_native, f"{name}_async"))
    assert _shape(inspect.signature(getattr(_aio, f"{name}_async"))) == sync
    if name != "start_rotation":  # start_rotation_async calls start_rotation itself, with its event loop
        assert _shape(inspect.signature(getattr(_native, f"{name}_async"))) == sync
    else:
        assert "event_loop" in inspect.signature(_native.start_rotation).parameters
    # As declared: the stub of the sync function, the coroutine in _aio, the stub of the native twin.
    assert _args(AIO[f"{name}_async"]) == _args(STUB[name])
    if name != "start_rotation":
        assert _args(STUB[f"{name}_async"]) == _args(STUB[name])


@pytest.mark.parametrize(("cls", "method"), METHOD_TWINS)
def test_each_async_method_takes_what_its_sync_method_takes(cls: str, method: str) -> None:
    klass = getattr(devbox_native, cls)
    assert _shape(inspect.signature(getattr(klass, f"{method}_async"))) == _shape(
        inspect.signature(getattr(klass, method))
    )
    assert _args(STUB[f"{cls}.{method}_async"]) == _args(STUB[f"{cls}.{method}"])
