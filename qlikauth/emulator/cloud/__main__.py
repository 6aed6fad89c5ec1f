"""``python -m qlikauth.emulator.cloud``: run an emulated Qlik Cloud tenant."""

from . import main

raise SystemExit(main())
