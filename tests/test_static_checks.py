"""ruff and mypy stay clean: the core and the integrations are typed (py.typed) and the tree
lint-free."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _tool(name: str) -> str:
    exe = shutil.which(name, path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.fail(f"{name} is not installed: pip install -e '.[dev]' (scripts/bootstrap.sh does)")
    return exe


def test_ruff_is_clean():
    out = subprocess.run(
        [_tool("ruff"), "check", "."], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stdout[-3000:]


def test_mypy_is_clean_on_the_core():
    out = subprocess.run(
        [sys.executable, "-m", "mypy", "qlikauth"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout[-3000:]


def test_mypy_is_clean_on_the_integrations():
    """django_qlikauth and flask_qlikauth ship py.typed too: their types are checked like the
    core's."""
    out = subprocess.run(
        [sys.executable, "-m", "mypy", "integrations"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout[-3000:]


def test_no_importorskip_in_the_suite():
    """``pytest.importorskip`` skips even under QLIKAUTH_REQUIRE_ALL: import, and skip only when it
    is unset."""
    offenders = []
    for path in sorted((ROOT / "tests").rglob("*.py")):
        if "node_modules" in path.parts:
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if "importorskip(" in line and "offenders" not in line and '"importorskip(' not in line:
                offenders.append(f"{path.relative_to(ROOT)}:{number}")
    assert not offenders, offenders


def test_every_python_file_keeps_the_configured_line_length():
    """The 100 columns pyproject.toml configures hold in every Python file of the project: ruff's
    E501 is on everywhere (test_ruff_is_clean) and this counts them independently, by
    characters."""
    import tomllib

    limit = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["ruff"][
        "line-length"
    ]
    assert limit == 100
    # As ruff does, a trailing pragma (``# noqa``, ``# type: ignore``) is not counted: the code
    # before it must fit.
    pragma = re.compile(r"\s+#\s*(noqa|type:\s*ignore)\b.*$")
    long_lines = []
    for top in ("qlikauth", "integrations", "tests", "bench", "examples", "scripts"):
        for path in sorted((ROOT / top).rglob("*.py")):
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if len(pragma.sub("", line)) > limit:
                    long_lines.append(f"{path.relative_to(ROOT)}:{number}")
    assert not long_lines, long_lines[:20]
