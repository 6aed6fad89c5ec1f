"""docs/api.md is generated from the docstrings (scripts/gen_api_reference.py) and cannot drift."""

from __future__ import annotations

import importlib.util

from tests.docs.docblocks import ROOT


def _generator():
    spec = importlib.util.spec_from_file_location(
        "gen_api_reference", ROOT / "scripts" / "gen_api_reference.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_page_is_what_the_docstrings_generate():
    page = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    assert page == _generator().api_reference(), (
        "docs/api.md differs from the docstrings: regenerate it with "
        ".venv/bin/python scripts/gen_api_reference.py > docs/api.md"
    )


def test_every_public_name_is_on_the_page():
    import qlikauth
    import qlikauth.doctor

    page = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    for name in [n for n in qlikauth.__all__ if not n.startswith("__")] + qlikauth.doctor.__all__:
        assert f"### `{name}" in page, name


def test_docstring_markup_becomes_markdown():
    gen = _generator()
    lines = gen._markdown(
        "See :class:`~qlikauth.QpsClient` and ``x``.\n\n:param node: a URL\n\n"
        "Example::\n\n    qlikauth doctor\n"
    )
    assert "See `qlikauth.QpsClient` and `x`." in lines
    assert "- `node`: a URL" in lines
    assert lines[lines.index("```text") + 1] == "qlikauth doctor"
