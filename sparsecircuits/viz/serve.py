"""Serve a rendered report on http://127.0.0.1:PORT (the same page `viz --out` writes)."""
from __future__ import annotations

from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def make_server(page: str = "", port: int = 0) -> ThreadingHTTPServer:
    """A loopback server answering every GET with `page` (settable later as `server.page`, so the
    port is taken, or refused, before the page is built); port 0 picks a free port."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            host = (self.headers.get("Host") or "").rsplit(":", 1)[0]
            if host not in ("127.0.0.1", "localhost"):  # no DNS-rebinding reads from other sites
                self.send_error(403)
                return
            if self.path.split("?")[0] not in ("/", "/index.html"):
                self.send_error(404)
                return
            body = self.server.page.encode("utf-8")
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            """No line per request on the terminal."""

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.page = page
    return server
