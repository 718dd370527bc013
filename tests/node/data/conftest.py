"""A local HTTP server, so the real download code runs against archives the tests build."""

from __future__ import annotations

import functools
import http.server
import threading

import pytest


@pytest.fixture
def http_folder(tmp_path):
    """(folder, base_url): files put in `folder` are served at `base_url/<name>`."""
    folder = tmp_path / "served"
    folder.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
