"""Every Python block in docs/stores.md runs, against the run's real Redis (its URL substituted)."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "stores.md"


def _blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


def test_every_python_block_runs(redis_url):
    blocks = _blocks()
    assert len(blocks) == 3
    for block in blocks:
        code = block.replace("redis://127.0.0.1:6379/0", redis_url)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(code, str(DOC), "exec"), {})  # noqa: S102 - the documentation's own code
        for expected in re.findall(r"print\(.*?\)\s+# (\S+)", block):
            assert expected.rstrip(":") in out.getvalue(), (expected, out.getvalue())
