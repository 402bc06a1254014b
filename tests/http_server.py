"""A tiny local HTTP server for recordings: serves files, can fail the first N requests."""
from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class RecordingServer:
    """Serve files from a directory on 127.0.0.1; `fail_first[name] = n` answers 404 n times."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.fail_first: dict[str, int] = {}
        self.hits: dict[str, int] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server API
                name = self.path.lstrip("/").split("?", 1)[0]
                server.hits[name] = server.hits.get(name, 0) + 1
                path = server.root / name
                if server.fail_first.get(name, 0) > 0 or not path.is_file():
                    server.fail_first[name] = server.fail_first.get(name, 0) - 1
                    self.send_response(404)
                    self.send_header("Content-Type", "text/html")
                    self.end_headers()
                    self.wfile.write(b"<html>not ready</html>")
                    return
                data = path.read_bytes()
                self.send_response(200)
                self.send_header("Content-Type", "audio/mpeg")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> "RecordingServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
