"""Helpers for the browser tests: what a user does on an example portal's login page."""

from __future__ import annotations

from typing import Any


def sign_in(page: Any, url: str, user: str) -> None:
    """Open the portal's login page at ``url`` and sign in as ``user`` (every demo user's password is "demo")."""
    page.goto(url)
    page.fill("#username", user)
    page.fill("#password", "demo")
    page.click("#submit")
    page.wait_for_load_state("load")
