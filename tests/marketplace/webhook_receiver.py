"""A real HTTP receiver for webhook tests: http.server on 127.0.0.1 in a thread, recording every
request it gets and answering with the statuses it is told to."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    url: str
    received: list[Received] = field(default_factory=list)
    #: Statuses to answer in turn; the last one repeats.
    statuses: list[int] = field(default_factory=lambda: [200])


@contextmanager
def receiver_running(statuses: list[int] | None = None) -> Iterator[Receiver]:
    state = Receiver(url="", statuses=statuses or [200])

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # http.server calls it by this name
            length = int(self.headers.get("content-length", 0))
            state.received.append(
                Received(
                    self.path, {name.lower(): value for name, value in self.headers.items()}, self.rfile.read(length)
                )
            )
            status = state.statuses[min(len(state.received), len(state.statuses)) - 1]
            self.send_response(status)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):  # quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/market"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
