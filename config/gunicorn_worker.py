"""gunicorn's gthread worker with deadlines for reading a request, configured in config/gunicorn.py.

The gthread worker hands a connection to a thread as soon as it is readable. The thread then reads
the request head from a blocking socket with no timeout, and the application reads the body the
same way: a client that sends its head or its body a byte at a time holds a thread for as long as
it likes, and a few dozen such clients hold them all. gunicorn has no setting against this (its
``timeout`` only restarts a worker whose main loop stops; a gthread worker's never does); its
advice is a buffering proxy in front, which docker-compose.yml has (nginx, config/nginx/). This
worker is the second line, for whatever reaches gunicorn directly. Like nginx's
``client_header_timeout``, and like Go's ``ReadHeaderTimeout``, its deadlines are totals, not
per-read timeouts that a byte every few seconds would keep resetting:

- the head (request line and headers) must arrive within ``head_seconds`` of the connection
  becoming readable (accepted, or back from the poller), time spent waiting for a thread included;
- the body, up to ``max_body_bytes``, is then read whole within ``body_seconds``, before the
  application runs, which reads it from memory (as it would from nginx's buffer);
- a client past either deadline is answered 408 and disconnected; a larger body 413;
- each write of the response must finish within ``send_seconds``;
- a new connection with nothing to read after ``first_data_seconds`` waits on the worker's poller
  (at most ``keepalive`` seconds), not in a thread (gunicorn waits 5 s in the thread);
- a connection that is closing reads and drops the client's last bytes (RFC 9112 section 9.6) until
  the client closes or ``linger_seconds`` pass, on the worker's poller, not blocking its main loop as
  gunicorn's gthread does, and with no cap on bytes, so that a client still sending a body refused
  with 413 reads the 413 instead of a reset.
"""

from __future__ import annotations

import contextlib
import io
import selectors
import socket
import time
from collections import deque
from concurrent.futures import Future
from functools import partial
from typing import Any, ClassVar

from gunicorn import util
from gunicorn.http.body import Body, LengthReader
from gunicorn.http.parser import RequestParser
from gunicorn.http.unreader import SocketUnreader
from gunicorn.workers.gthread import _DEFER, ThreadWorker


class RequestTimeout(Exception):
    """The client did not send its request head or body within the deadline."""


class RequestTooLarge(Exception):
    """The request body is larger than the worker reads."""


class DeadlineUnreader(SocketUnreader):
    """Reads the socket as gunicorn's own does, but each read must end before ``deadline``."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(sock)
        self.deadline: float | None = None

    def chunk(self, size_hint: int | None = None) -> bytes:
        if self.deadline is not None:
            # Past the deadline only what has already arrived is read (a request that waited for a
            # thread while its whole head sat in the socket is still served).
            self.sock.settimeout(max(self.deadline - time.monotonic(), 0.0))
        try:
            return super().chunk(size_hint)
        except (TimeoutError, BlockingIOError):
            raise RequestTimeout from None


class DeadlineThreadWorker(ThreadWorker):
    """See the module's docstring; the numbers come from :meth:`configured`."""

    head_seconds: ClassVar[float] = 10
    body_seconds: ClassVar[float] = 20
    send_seconds: ClassVar[float] = 30
    max_body_bytes: ClassVar[int] = 2_621_440
    first_data_seconds: ClassVar[float] = 0.1
    linger_seconds: ClassVar[float] = 2

    @classmethod
    def configured(cls, **limits: float) -> type[DeadlineThreadWorker]:
        """This worker with other limits (a subclass, which gunicorn's ``worker_class`` accepts)."""
        unknown = set(limits) - {name for name in vars(DeadlineThreadWorker) if name.endswith(("_seconds", "_bytes"))}
        if unknown:
            raise TypeError(f"unknown limits: {sorted(unknown)}")
        return type(cls.__name__, (cls,), dict(limits))

    def init_process(self) -> None:
        self.lingering: deque[Any] = deque()  # closing connections, oldest first
        super().init_process()

    def finish_request(self, conn: Any, fs: Future) -> None:
        if fs.cancelled() or fs.exception() is not None or fs.result() is not False:
            super().finish_request(conn, fs)
            return
        # The connection closes. gunicorn would linger for the client's last bytes (RFC 9112
        # section 9.6: so that unread bytes do not turn the close into a reset that loses the
        # answer) right here, up to 2 s, in the main loop, which accepts and dispatches every
        # connection: clients that do not close their end held it 2 s each, one after another
        # (thirty of them stalled /healthz up to 9 s on three workers). Here the poller waits.
        try:
            conn.sock.shutdown(socket.SHUT_WR)
            conn.sock.setblocking(False)
            self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._lingering_readable, conn))
        except (OSError, ValueError, KeyError):
            self._lingering_close(conn)
            return
        conn.timeout = time.monotonic() + self.linger_seconds
        self.lingering.append(conn)

    def _lingering_readable(self, conn: Any, sock: socket.socket) -> None:
        # Bounded by time alone, as nginx's lingering_time: gunicorn also stops after 64 KiB, which
        # reset a client still sending a body refused with 413 on its head (so it never read the
        # 413). gunicorn's cap bounds a linger that blocks its main loop; this one waits on the poller.
        try:
            data = sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.lingering.remove(conn)
            self.poller.unregister(sock)
            self._lingering_close(conn)

    def _lingering_close(self, conn: Any) -> None:
        self.nr_conns -= 1
        conn.close()

    def murder_keepalived(self, force: bool = False) -> None:
        super().murder_keepalived(force)
        now = time.monotonic()
        while self.lingering and (force or self.lingering[0].timeout <= now):
            conn = self.lingering.popleft()
            with contextlib.suppress(OSError, KeyError, ValueError):
                self.poller.unregister(conn.sock)
            self._lingering_close(conn)

    def enqueue_req(self, conn: Any) -> None:
        # When the connection became readable (or was accepted): the head's deadline runs from here,
        # so waiting for a thread counts, and N slow clients queued behind each other cannot hold
        # one thread for N deadlines.
        conn.ready_at = time.monotonic()
        super().enqueue_req(conn)

    def handle(self, conn: Any) -> Any:
        if not conn.initialized:
            if not conn.data_ready and not conn.wait_for_data(self.first_data_seconds):
                return _DEFER  # to the poller, which hands it back once the client sends
            conn.sock.setblocking(True)
            conn.init()
            if type(conn.parser) is RequestParser and type(conn.parser.unreader) is SocketUnreader:
                conn.parser.unreader = DeadlineUnreader(conn.sock)
        unreader = getattr(conn.parser, "unreader", None)
        if isinstance(unreader, DeadlineUnreader):
            unreader.deadline = conn.ready_at + self.head_seconds
        return super().handle(conn)

    def handle_request(self, req: Any, conn: Any) -> bool:
        unreader = conn.parser.unreader
        if isinstance(unreader, DeadlineUnreader) and req.body is not None:
            req.body = self._body_read(req, conn.sock, unreader)
        conn.sock.settimeout(self.send_seconds)
        return super().handle_request(req, conn)

    def _body_read(self, req: Any, sock: socket.socket, unreader: DeadlineUnreader) -> Body:
        """The whole body, read within ``body_seconds``, as a body read from memory."""
        reader = req.body.reader
        if isinstance(reader, LengthReader) and reader.length > self.max_body_bytes:
            raise RequestTooLarge(f"a body of {reader.length} bytes")
        if req._expected_100_continue:
            # The client waits for this before it sends the body; gunicorn would send it later.
            sock.settimeout(self.send_seconds)
            sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            req._expected_100_continue = False
        unreader.deadline = time.monotonic() + self.body_seconds
        body, size = [], 0
        while data := req.body.read(64 * 1024):
            size += len(data)
            if size > self.max_body_bytes:
                raise RequestTooLarge(f"a chunked body of more than {self.max_body_bytes} bytes")
            body.append(data)
        unreader.deadline = None
        return Body(io.BytesIO(b"".join(body)))

    def handle_error(self, req: Any, client: socket.socket, addr: Any, exc: BaseException) -> None:
        if isinstance(exc, RequestTimeout):
            status, reason, seconds = 408, "Request Timeout", self.body_seconds if req else self.head_seconds
            message = f"the request {'body' if req else 'head'} did not arrive within {seconds:g} s"
        elif isinstance(exc, RequestTooLarge):
            status, reason, message = 413, "Content Too Large", f"{exc} is over {self.max_body_bytes}"
        else:
            super().handle_error(req, client, addr, exc)
            return
        peer = addr[0] if isinstance(addr, tuple) else addr
        self.log.warning("Request from ip=%s refused with %s: %s", peer, status, message)
        try:
            util.write_error(client, status, reason, message)
        except OSError:
            self.log.debug("Failed to send error message.")
