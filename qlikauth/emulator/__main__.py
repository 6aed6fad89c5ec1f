"""``python -m qlikauth.emulator``: the same as ``qlikauth emulator``."""

from __future__ import annotations

import argparse
import sys

from ..exceptions import QlikAuthError
from .cli import add_arguments, run


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run the emulator."""
    parser = argparse.ArgumentParser(
        prog="python -m qlikauth.emulator",
        description="Run a local Qlik Proxy Service node and hub over real TLS.",
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except (QlikAuthError, OSError) as exc:
        print(f"qlikauth emulator: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
