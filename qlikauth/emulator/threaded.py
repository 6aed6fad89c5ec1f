"""A local http.server served from a thread: the demo and test identity providers' way to run."""

from __future__ import annotations

import threading
from http.server import HTTPServer
from typing import Self

__all__ = ["ServedInThread"]


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
