"""Find the code blocks of the manual (docs/**/*.md and README.md) and check what they claim.

How a block is treated (docs/design.md, "Code blocks in the manual", says the same for doc writers):

* ```` ```python ```` blocks run, each in its own Python process (a fresh Django settings,
  a fresh Flask app), from a temporary directory. A ``print(...)`` followed by a comment,
  on its line or alone on the next line, states what it prints: the test asserts it.
  Leading and trailing blanks of the output are ignored. In the comment ``PORT`` stands for a port
  number and ``...`` for any text; after the
  stated output an explanation may follow, introduced by ``": "``, ``"  ("`` or three
  spaces (``# True: the first healthy node``).
* ```` ```sh ```` blocks: every ``qlikauth ...`` command line (after ``VAR=value``
  prefixes, with ``\\`` continuations joined) must parse with the real ``qlikauth``
  argument parser, so the manual names only options that exist.
* ``<!-- norun -->`` (or ``<!-- norun: why -->``) on the line before the fence marks a
  block that cannot run here (it needs a real Qlik site or is a fragment of settings).
  An HTML comment, not a word in the info string: Python-Markdown (mkdocs) no longer
  recognises a fence whose info string is ``python norun``.
* Other languages (``text``, ``nginx``, none) are shown, not run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

_FENCE = re.compile(r"^(?P<indent>[ ]{0,3})(?P<fence>`{3,}|~{3,})[ ]*(?P<info>[^`\n]*)$")
_NORUN = re.compile(r"^\s*<!--\s*norun\b(?P<why>[^>]*)-->\s*$")


@dataclass(frozen=True)
class Block:
    """One fenced code block of a Markdown file."""

    path: Path
    line: int  # 1-based line of the first line of code (after the fence)
    lang: str
    code: str
    norun: bool

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def manual_files() -> list[Path]:
    """Every Markdown file of the manual: docs/ (recursively) and the README."""
    return sorted((ROOT / "docs").rglob("*.md")) + [ROOT / "README.md"]


def blocks_of(path: Path) -> list[Block]:
    """The fenced blocks of one Markdown file, in order."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, info = m.group("fence"), m.group("info").strip()
        lang = info.split()[0].lower() if info else ""
        norun = i > 0 and bool(_NORUN.match(lines[i - 1]))
        start = i + 1
        j = start
        while j < len(lines) and not re.match(
            rf"^[ ]{{0,3}}{re.escape(fence[0])}{{{len(fence)},}}\s*$", lines[j]
        ):
            j += 1
        found.append(Block(path, start + 1, lang, "\n".join(lines[start:j]) + "\n", norun))
        i = j + 1
    return found


def all_blocks() -> list[Block]:
    """Every block of the manual."""
    return [b for p in manual_files() for b in blocks_of(p)]


# -- what a comment after a print claims ------------------------------------------------------
_EXPLANATION = re.compile(r": |  \(|   ")


def claim_patterns(comment: str) -> list[re.Pattern[str]]:
    """The outputs a ``# comment`` admits: the whole comment, or the part before an explanation."""
    text = comment.strip()
    candidates = [text]
    for m in _EXPLANATION.finditer(text):
        head = text[: m.start()].rstrip()
        if head:
            candidates.append(head)
    return [_pattern(c) for c in candidates]


def _pattern(expected: str) -> re.Pattern[str]:
    parts = re.split(r"(\bPORT\b|\.\.\.)", expected)
    out = []
    for part in parts:
        if part == "PORT":
            out.append(r"\d{1,5}")
        elif part == "...":
            out.append(r".*?")
        else:
            out.append(re.escape(part))
    return re.compile("".join(out), re.DOTALL)


def matches(comment: str, printed: str) -> bool:
    """True when ``printed`` is what ``comment`` says (see the module docstring)."""
    shown = printed.strip()  # a comment cannot show leading or trailing blanks
    return any(p.fullmatch(shown) for p in claim_patterns(comment))


def shell_commands(code: str) -> list[str]:
    """The ``qlikauth ...`` command lines of a shell block (continuations joined, comments cut)."""
    joined = re.sub(r"\\\n\s*", " ", code)
    commands = []
    for raw in joined.splitlines():
        line = raw.split(" #", 1)[0].strip()
        if line.startswith("#"):
            continue
        words = line.split()
        while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=\S*", words[0]):
            words.pop(0)
        if words and words[0] == "qlikauth":
            commands.append(" ".join(words))
    return commands
