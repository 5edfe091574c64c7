"""A loopback HTTP proxy in front of a real service, for retry tests: it answers the first ``fail`` GETs
with 503, holds the next ``slow`` ones for ``delay`` seconds (past the client's timeout), and forwards the
others (headers included, but Host: the service sees its own address)."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests

HOP_BY_HOP = ("content-length", "transfer-encoding", "connection", "content-encoding")


class FaultProxy:
    def __init__(self, target: str, fail: int, slow: int = 0, delay: float = 0, rewrite_links: bool = False) -> None:
        """``rewrite_links``: replace the service's own URL in answers with the proxy's (links the client follows)."""
        self.target, self.fail, self.slow, self.delay, self.seen = target.rstrip("/"), fail, slow, delay, 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                proxy.seen += 1
                if proxy.seen <= proxy.fail:
                    self.send_response(503)
                    self.send_header("Content-Length", "8")
                    self.end_headers()
                    self.wfile.write(b"injected")
                    return
                if proxy.seen <= proxy.fail + proxy.slow:
                    time.sleep(proxy.delay)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "accept-encoding")}
                answer = requests.get(proxy.target + self.path, headers=headers, timeout=60, allow_redirects=False)
                body = answer.content
                if rewrite_links:
                    body = body.replace(proxy.target.encode(), proxy.url.encode())
                self.send_response(answer.status_code)
                for key, value in answer.headers.items():
                    if key.lower() not in HOP_BY_HOP:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
