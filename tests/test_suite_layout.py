"""The test suite's own layout rules.

tests/ and tests/e2e/ each have a conftest.py; with `pythonpath = tests`, `from conftest
import …` binds to whichever of the two was imported first, so a test module doing it
passes alone and fails to import in the full run. Shared helpers live in plain modules
(tests/pgdb.py, tests/stack.py, tests/seaweed.py).
"""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def test_no_test_module_imports_from_a_conftest():
    offenders = []
    for path in sorted(TESTS.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "conftest":
                offenders.append(f"{path.relative_to(TESTS)}:{node.lineno}")
            elif isinstance(node, ast.Import) and any(a.name == "conftest" for a in node.names):
                offenders.append(f"{path.relative_to(TESTS)}:{node.lineno}")
    assert not offenders, f"import shared helpers from a plain module, not conftest: {offenders}"
