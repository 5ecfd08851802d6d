"""An HTTP server on loopback in a thread of the test's own process (a stand-in index, the
built documentation site), shut down on exit."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def threaded_server(handler: Any) -> Iterator[str]:
    """Serve `handler` (a request handler class or factory) on a free loopback port; yield its
    base URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
