"""The package's plan: the public names where README.md says they are, the layering kept."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

import flowseg

ROOT = Path(__file__).resolve().parents[1]


def test_every_public_name_imports_from_flowseg():
    for name in flowseg.__all__:
        assert getattr(flowseg, name) is not None, name
    assert "segment" in flowseg.__all__ and "read_image" in flowseg.__all__


def readme_imports() -> list[tuple[str, list[str]]]:
    """Every ``from flowseg... import ...`` line of README.md's code, as (module, names)."""
    found = []
    for module, names in re.findall(r"^\s*from (flowseg[\w.]*) import ([\w, ]+)$",
                                     (ROOT / "README.md").read_text(), re.M):
        found.append((module, [n.strip() for n in names.split(",") if n.strip()]))
    return found


def test_readme_imports_resolve():
    imports = readme_imports()
    assert len(imports) >= 2, "README.md's examples import from flowseg"
    for module, names in imports:
        home = importlib.import_module(module)
        for name in names:
            assert hasattr(home, name), f"README: from {module} import {name}"


def test_readme_dotted_paths_resolve():
    # Module paths the README names in prose (``flowseg.apps.slides.segment_large``, say).
    text = (ROOT / "README.md").read_text()
    paths = set(re.findall(r"`(flowseg(?:\.[a-z_]\w*)+)", text))
    assert paths
    for path in sorted(paths):
        parts = path.split(".")
        for cut in range(len(parts), 0, -1):
            try:
                obj = importlib.import_module(".".join(parts[:cut]))
            except ImportError:
                continue
            for attribute in parts[cut:]:
                obj = getattr(obj, attribute)
            break
        else:  # pragma: no cover - the loop always imports "flowseg"
            pytest.fail(path)


def test_layers_contracts_kept():
    pytest.importorskip("importlinter.cli", reason="import-linter is in the test extra")
    # In a process of its own: import-linter reconfigures logging where it runs.
    code = ("import sys; from importlinter.cli import lint_imports; "
            f"sys.exit(lint_imports(config_filename={str(ROOT / 'pyproject.toml')!r}))")
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=False)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "BROKEN" not in run.stdout and run.stdout.count("KEPT") == 3
