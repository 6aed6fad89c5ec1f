"""What the demo and test identity providers share: a local http.server served from a thread,
and the cookie of their own sign-in."""

from __future__ import annotations

import threading
from http.cookies import CookieError, SimpleCookie
from http.server import HTTPServer
from typing import Self

__all__ = ["ServedInThread", "read_cookie", "session_cookie"]


class ServedInThread:
    """``start()`` serves ``self._httpd`` in a daemon thread named :attr:`thread_name`;
    ``stop()`` shuts it down and closes its socket (subclasses add their own clean-up)."""

    _httpd: HTTPServer
    _thread: threading.Thread | None = None
    thread_name = "qlikauth-local-server"

    def start(self) -> Self:
        """Serve in a thread; returns ``self``."""
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name=self.thread_name, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the listening socket."""
        thread = self._thread
        if thread is not None:
            self._httpd.shutdown()
            thread.join(5)
            self._thread = None
        self._httpd.server_close()


def read_cookie(cookie_header: str | None, name: str) -> str | None:
    """The value of cookie ``name`` in a request's ``Cookie`` header, or None (absent, empty or
    unparseable)."""
    try:
        morsel = SimpleCookie(cookie_header or "").get(name)
    except CookieError:
        return None
    return morsel.value if morsel is not None and morsel.value else None


def session_cookie(name: str, value: str, *, secure: bool, max_age: int | None = None) -> str:
    """A ``Set-Cookie`` value for a local IdP's own sign-in (HttpOnly, SameSite=Lax, Secure over
    https); ``max_age=0`` clears it."""
    flags = ("; Secure" if secure else "") + ("" if max_age is None else f"; Max-Age={max_age}")
    return f"{name}={value}; Path=/; HttpOnly; SameSite=Lax{flags}"
