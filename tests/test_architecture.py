"""The architecture's rules hold: import-linter's contracts and mypy's types (``pyproject.toml``), and a
pure engine."""

import pkgutil
import subprocess
import sys
from pathlib import Path

import matching

ROOT = Path(__file__).resolve().parents[1]


def test_the_import_contracts_are_kept():
    lint_imports = Path(sys.executable).parent / "lint-imports"
    out = subprocess.run([str(lint_imports), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "0 broken" in out.stdout


def test_mypy_is_clean():
    # [tool.mypy]: the engine strict; services and selectors (and what they import) at the default
    # level. The cache in .mypy_cache makes a run after a small change take seconds.
    mypy = Path(sys.executable).parent / "mypy"
    out = subprocess.run([str(mypy)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert out.stdout.startswith("Success"), out.stdout[-4000:]


def test_importing_every_engine_module_loads_no_django():
    # What the forbidden contract says statically, checked at run time in a fresh interpreter,
    # over every module the package holds (found by walking it, not from a list kept by hand).
    modules = [m.name for m in pkgutil.walk_packages(matching.__path__, "matching.")]
    assert "matching.flow.simplex" in modules
    assert "matching.graph.components" in modules
    code = "import sys; " + "; ".join(f"import {m}" for m in modules)
    code += "; print(sorted({'django', 'celery', 'rest_framework', 'marketplace'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
