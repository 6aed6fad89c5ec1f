"""Every code block of the manual (docs/**/*.md, README.md) runs, and what its comments say it
prints is asserted.

The rules are in tests/docs/docblocks.py's docstring and in docs/design.md ("Code blocks in the
manual"). New pages are covered without touching this file.
"""

from __future__ import annotations

import ast
import io
import json
import os
import shlex
import subprocess
import sys
import tokenize
from pathlib import Path

import pytest

from tests.docs.docblocks import ROOT, Block, all_blocks, blocks_of, matches, shell_commands

RUNNER = Path(__file__).with_name("run_block.py")
BLOCKS = all_blocks()
PYTHON = [b for b in BLOCKS if b.lang in ("python", "py", "python3") and not b.norun]
SHELL = [b for b in BLOCKS if b.lang in ("sh", "bash", "shell", "console") and not b.norun]


def claims(block: Block) -> dict[int, tuple[int, str]]:
    """{print's line: (comment's line, comment)} for each print followed by a comment."""
    tree = ast.parse(block.code)
    comments: dict[int, str] = {}
    alone: set[int] = set()
    for tok in tokenize.generate_tokens(io.StringIO(block.code).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = tok.string[1:]
            if not tok.line[: tok.start[1]].strip():
                alone.add(tok.start[0])
    found: dict[int, tuple[int, str]] = {}
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "print"
        ):
            end = node.end_lineno or node.lineno
            if end in comments and end not in alone:
                found[node.lineno] = (end, comments[end])
            elif end + 1 in alone:
                found[node.lineno] = (end + 1, comments[end + 1])
    offset = block.line - 1
    return {line + offset: (cline + offset, text) for line, (cline, text) in found.items()}


def test_the_manual_has_runnable_blocks():
    # Guard against a parser that silently finds nothing (every test below would then pass).
    assert len(PYTHON) >= 10 and len(SHELL) >= 5
    assert any(claims(b) for b in PYTHON)


@pytest.mark.slow
@pytest.mark.parametrize("block", PYTHON, ids=[b.where for b in PYTHON])
def test_python_block_runs_and_prints_what_it_says(block, tmp_path):
    source = tmp_path / "block.py"
    source.write_text(block.code, encoding="utf-8")
    records_path = tmp_path / "prints.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "integrations")])}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    done = subprocess.run(
        [sys.executable, str(RUNNER), str(source), str(block.line), block.where, str(records_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"{block.where} failed:\n{done.stdout}\n{done.stderr}"
    records = json.loads(records_path.read_text())
    printed: dict[int, list[str]] = {}
    for line, text in records:
        printed.setdefault(line, []).append(text)
    problems = []
    for line, (comment_line, comment) in sorted(claims(block).items()):
        outputs = printed.get(line)
        if not outputs:
            problems.append(
                f"{block.path.name}:{line}: the print never ran (claimed {comment.strip()!r})"
            )
            continue
        for out in outputs:
            if not matches(comment, out):
                problems.append(
                    f"{block.path.name}:{comment_line}: says {comment.strip()!r}, printed {out!r}"
                )
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("block", SHELL, ids=[b.where for b in SHELL])
def test_shell_block_names_only_commands_and_options_that_exist(block):
    from qlikauth.cli import build_parser

    for command in shell_commands(block.code):
        argv = shlex.split(command)[1:]
        try:
            build_parser().parse_args(argv)
        except SystemExit as exc:  # argparse reports an unknown option or a bad value so
            pytest.fail(f"{block.where}: `{command}` does not parse (exit {exc.code})")


# -- the rules themselves ----------------------------------------------------------------------
def test_claims_match_only_what_they_say():
    assert matches(" 1 1", "1 1") and not matches(" 1 1", "1 2")
    assert matches(" True: the first healthy node", "True")
    assert matches(
        " https://localhost:PORT/portal/hub/ True", "https://localhost:50123/portal/hub/ True"
    )
    assert not matches(
        " https://localhost:PORT/portal/hub/ True", "https://evil.example/portal/hub/ True"
    )
    assert matches(
        " Certificates(client='QlikClient', expires=...)",
        "Certificates(client='QlikClient', expires=2028-01-01)",
    )
    assert matches(" ACME ACME\\jdoe   (trimmed)", "ACME ACME\\jdoe")
    assert not matches(" 0", "")


def test_norun_marker_and_comment_claims(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "text\n\n<!-- norun: needs a real site -->\n```python\nraise SystemExit(1)\n```\n\n"
        "```python\nx = 1\nprint(x)   # 1\nprint(x + 1)\n# 2\nprint(3)\n\n# not a claim\n```\n",
        encoding="utf-8",
    )
    first, second = blocks_of(page)
    assert first.norun and first.lang == "python" and first.line == 5
    assert not second.norun and second.line == 9
    found = claims(Block(ROOT / "x.md", second.line, second.lang, second.code, False))
    assert found == {10: (10, " 1"), 11: (12, " 2")}


def test_shell_commands_are_found():
    code = (
        "QLIKAUTH_CERT_PASSPHRASE='x' qlikauth certs check /etc \\\n    --json   # note\n# "
        "qlikauth no\npip install x\n"
    )
    assert shell_commands(code) == ["qlikauth certs check /etc --json"]
