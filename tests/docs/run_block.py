"""Run one manual code block as ``__main__`` and record what each ``print`` on each line printed.

Used by tests/docs/test_docs_blocks.py: ``python run_block.py BLOCK.py FIRST_LINE LABEL OUT.json``.
Line numbers are shifted to the Markdown file's, so a traceback names the manual's line.
"""

from __future__ import annotations

import ast
import builtins
import io
import json
import sys
import types

_records: list[tuple[int, str]] = []


def _doc_print(__line: int, *args: object, **kwargs: object) -> None:
    buffer = io.StringIO()
    kwargs.pop("file", None)
    builtins.print(*args, file=buffer, **kwargs)  # type: ignore[call-overload]
    text = buffer.getvalue()
    _records.append((__line, text[:-1] if text.endswith("\n") else text))
    sys.stdout.write(text)


class _Prints(ast.NodeTransformer):
    def visit_Call(self, node: ast.Call) -> ast.AST:
        self.generic_visit(node)
        if isinstance(node.func, ast.Name) and node.func.id == "print":
            return ast.Call(
                func=ast.Name("__doc_print__", ast.Load()),
                args=[ast.Constant(node.lineno), *node.args],
                keywords=node.keywords,
            )
        return node


def main() -> None:
    source_path, first_line, label, out_path = (
        sys.argv[1],
        int(sys.argv[2]),
        sys.argv[3],
        sys.argv[4],
    )
    with open(source_path, encoding="utf-8") as f:
        source = f.read()
    tree = ast.parse(source, filename=label)
    ast.increment_lineno(tree, first_line - 1)
    tree = ast.fix_missing_locations(_Prints().visit(tree))
    code = compile(tree, label, "exec")
    # A fresh __main__ (Django's ROOT_URLCONF=__name__ imports it), without this script's names.
    module = types.ModuleType("__main__")
    module.__file__ = source_path
    sys.modules["__main__"] = module
    namespace = module.__dict__
    namespace["__doc_print__"] = _doc_print
    try:
        exec(code, namespace)  # noqa: S102 - the manual's own code, which is what we test
    finally:
        with open(out_path, "w", encoding="utf-8") as f:
            json.dump(_records, f)


if __name__ == "__main__":
    main()
