"""Every Python block in docs/stores.md (and the README's store block) runs, against the run's real
Redis (its URL substituted): the manual's own runner marks them norun, having no Redis."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "stores.md"
README = DOC.parents[1] / "README.md"


def _blocks(path: Path = DOC) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


def test_the_readme_store_block_runs(redis_url):
    (block,) = [b for b in _blocks(README) if "qlikauth.store" in b]
    namespace: dict = {}
    exec(
        compile(block.replace("redis://127.0.0.1:6379/0", redis_url), str(README), "exec"),
        namespace,
    )  # noqa: S102
    states, replay = namespace["states"], namespace["replay"]
    states.put("k", b"v", ttl=5)
    assert states.take("k") == b"v" and states.take("k") is None
    assert replay.add("_id", b"1", ttl=5) and not replay.add("_id", b"1", ttl=5)


def test_every_python_block_runs(redis_url):
    blocks = _blocks()
    assert len(blocks) == 5  # the store, namespaces, locks, sealed values, the replay cache
    for block in blocks:
        code = block.replace("redis://127.0.0.1:6379/0", redis_url)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(code, str(DOC), "exec"), {})  # noqa: S102 - the documentation's own code
        for expected in re.findall(r"print\(.*?\)\s+# (\S+)", block):
            assert expected.rstrip(":") in out.getvalue(), (expected, out.getvalue())
