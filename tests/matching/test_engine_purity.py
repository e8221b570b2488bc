"""The engine core imports no Django: checked by import graph and in a fresh interpreter."""

import ast
import subprocess
import sys
from pathlib import Path

CORE = [
    "latency",
    "problem",
    "costs",
    "edges",
    "flow",
    "simplex",
    "spanning_tree",
    "packing",
    "shards",
    "solver",
    "assemble",
    "explain",
    "greedy",
    "quote",
    "chains",
    "repair",
    "budgets",
]
MATCHING = Path(__file__).resolve().parents[2] / "matching"


def test_core_modules_do_not_import_django_in_source():
    for name in CORE:
        tree = ast.parse((MATCHING / f"{name}.py").read_text())
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            assert not any(n.split(".")[0] in {"django", "rest_framework", "celery"} for n in names), (name, names)


def test_importing_the_core_loads_no_django():
    code = "import sys; " + "; ".join(f"import matching.{m}" for m in CORE) + "; print('django' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=MATCHING.parent, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
