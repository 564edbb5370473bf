"""The package root: a fixed version, and `unlearn`/`evaluate` loaded lazily so submodules import light."""

import subprocess
import sys

import pytest

import ulmr


def _loaded_after(statement: str) -> set[str]:
    """The `ulmr.*` modules a fresh interpreter holds after running `statement`."""
    code = f"import sys; {statement}; print(' '.join(m for m in sys.modules if m.startswith('ulmr')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    return set(out.stdout.split())


def test_importing_a_submodule_does_not_import_the_api():
    loaded = _loaded_after("import ulmr.data.chat")
    assert "ulmr.data.chat" in loaded
    assert "ulmr.api" not in loaded and "ulmr.pipeline" not in loaded


def test_unlearn_and_evaluate_resolve_to_the_api_functions():
    from ulmr import api

    assert ulmr.unlearn is api.unlearn and ulmr.evaluate is api.evaluate
    assert ulmr.__version__ == "0.1.0" and set(ulmr.__all__) == {"unlearn", "evaluate", "__version__"}


def test_unknown_attribute_raises_attribute_error():
    with pytest.raises(AttributeError, match="module 'ulmr' has no attribute 'nope'"):
        ulmr.nope  # noqa: B018
