"""Runtime docstrings say what the stub says: `help()` on a `_native` function shows the stub's text.

The `///` comment above each `#[pyfunction]` in `src/py/` is that function's `__doc__`; it carries the stub's
docstring word for word, and this test keeps the two equal (edit both, or copy the stub's text over)."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest
from devbox_native import _native

_STUB_SOURCE = Path(__file__).resolve().parent.parent / "python" / "devbox_native" / "_native.pyi"


def _stub_docs() -> dict[str, str]:
    tree = ast.parse(_STUB_SOURCE.read_text(encoding="utf-8"))
    docs = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
            doc = ast.get_docstring(node, clean=True)
            if doc:
                docs[node.name] = doc
    return docs


DOCS = _stub_docs()


def _words(text: str) -> str:
    return " ".join(text.split())


def test_every_documented_function_is_checked() -> None:
    assert len(DOCS) >= 15 and "generate_spn_token" in DOCS


@pytest.mark.parametrize("name", sorted(DOCS))
def test_the_runtime_docstring_is_the_stubs(name: str) -> None:
    runtime = inspect.getdoc(getattr(_native, name))
    assert runtime is not None, name
    assert _words(runtime) == _words(DOCS[name])


def test_help_of_generate_spn_token_names_the_environment_override() -> None:
    assert "CLAUDE_CODE_TOKEN_EXPIRY_SECONDS" in (_native.generate_spn_token.__doc__ or "")
