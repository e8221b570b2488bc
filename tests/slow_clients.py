"""Slow clients against a real server, for the web tier's tests and figures.

A *trickler* opens a connection and sends its request a byte at a time, never finishing:

- ``head``: the request line and headers, one byte every ``interval`` seconds;
- ``body``: a whole head announcing a 1 MB body, then the body one byte every ``interval``;
- ``idle``: connects and sends nothing;
- ``linger``: sends a whole request asking to close, reads the answer, and does not close its end:
  it sends a byte now and then until the server's close resets the connection (``reset_after``).

``python -m tests.slow_clients trickle …`` runs N tricklers in a process of their own (a thread
each, blocking sockets), so they never hold the GIL of the process that times ``/healthz``. It
prints ``connected N`` once every connection is open and has sent its first byte, then, when the
server has closed them all or the time is up, one JSON line per connection: after how many seconds
the server closed it (``null``: never) and the first line the server answered.

``python -m tests.slow_clients measure`` gives the figures of docs/operations.md: how long
``/healthz`` stalls while tricklers hold gunicorn, under the old command line (3 sync workers),
gunicorn's own gthread worker, and as the image runs it now (config/gunicorn.py).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from tests.workers import ROOT, VENV_BIN, free_port

KINDS = ("head", "body", "idle", "linger")
#: The body a ``body`` trickler announces: under every limit (Django's 2.5 MB, nginx's, the
#: gunicorn worker's), so that servers read it rather than refuse it.
BODY_BYTES = 1_000_000


def shipped_gunicorn_command() -> list[str]:
    """The Dockerfile's CMD, as a list: the one way the image starts gunicorn."""
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("CMD "):
            return json.loads(line.removeprefix("CMD "))
    raise AssertionError("the Dockerfile has no CMD")


def gunicorn_args(port: int) -> list[str]:
    """The shipped command with this venv's gunicorn, bound to a loopback port instead of 0.0.0.0:8000."""
    command = shipped_gunicorn_command()
    assert command[0] == "gunicorn", command
    return [str(VENV_BIN / "gunicorn"), *command[1:], "--bind", f"127.0.0.1:{port}"]


#: The command line the image ran before config/gunicorn.py (sync workers facing the network).
OLD_GUNICORN_OPTIONS = ["config.wsgi:application", "--workers", "3", "--access-logfile", "-"]
#: gunicorn's own gthread worker, as many threads as config/gunicorn.py, without its worker class.
GTHREAD_GUNICORN_OPTIONS = [*OLD_GUNICORN_OPTIONS, "--worker-class", "gthread", "--threads", "8", "--no-control-socket"]


def web_env(tmp_path: Path, *, production: bool = False, **extra: str) -> dict[str, str]:
    """Test (or production) settings on an SQLite file of their own and the in-memory broker:
    /healthz needs no other server. The cache is in-process under the test settings, on disk in
    ``tmp_path`` (shared by gunicorn's workers, as throttles need) under the production ones."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_", "CELERY_", "CACHE_"))}
    env.update(
        DATABASE_URL=f"sqlite:///{tmp_path}/web.sqlite3",
        CELERY_BROKER_URL="memory://",
        MARKETPLACE_VAR_DIR=str(tmp_path),
    )
    if production:
        env.update(
            DJANGO_SETTINGS_MODULE="config.settings.production",
            DJANGO_SECRET_KEY="a-production-secret-key-that-is-long-and-random-0123456789abcdef",
            ALLOWED_HOSTS="127.0.0.1,localhost",
        )
    else:
        env.update(DJANGO_SETTINGS_MODULE="config.settings.test", CACHE_URL="locmem://")
    env.update(extra)
    return env


class Server:
    """A server process (gunicorn, nginx) logging to a file; stopped however the test ends."""

    def __init__(self, command: list[str], env: dict[str, str] | None, log_path: Path):
        self.command, self.log_path = command, log_path
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)

    def log(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


# --- nginx in front -----------------------------------------------------------------------------

NGINX_SITE = ROOT / "config" / "nginx" / "marketplace.conf"


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None)


def self_signed_certificate(directory: Path) -> None:
    """fullchain.pem and privkey.pem, as docs/operations.md makes them for a trial."""
    directory.mkdir(exist_ok=True)
    command = ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    command += ["-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"]
    command += ["-keyout", str(directory / "privkey.pem"), "-out", str(directory / "fullchain.pem")]
    subprocess.run(command, check=True, capture_output=True, timeout=60)


def nginx_config(directory: Path, *, http_port: int, https_port: int, web_port: int) -> Path:
    """The shipped site (config/nginx/marketplace.conf) with the container's ports, certificate
    directory and gunicorn's address replaced by the test's, each replacement checked, inside a
    main configuration of the test's own in ``directory``, as the nginx image's nginx.conf includes
    it (the pid file, logs and temporary files in ``directory``); its certificate is made here.
    Returns the main configuration's path."""
    site = NGINX_SITE.read_text()
    for old, new in {
        "listen 80;": f"listen 127.0.0.1:{http_port};",
        "listen 443 ssl;": f"listen 127.0.0.1:{https_port} ssl;",
        "/etc/nginx/certs/": f"{directory}/certs/",
        "http://web:8000": f"http://127.0.0.1:{web_port}",
    }.items():
        assert old in site, f"config/nginx/marketplace.conf no longer says {old!r}: update the test's template"
        site = site.replace(old, new)
    (directory / "marketplace.conf").write_text(site)
    self_signed_certificate(directory / "certs")
    temp = "\n".join(
        f"    {kind}_temp_path {directory}/{kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    main = f"""
worker_processes 1;
pid {directory}/nginx.pid;
error_log {directory}/error.log info;
{"user root root;" if os.geteuid() == 0 else ""}
events {{ worker_connections 1024; }}
http {{
    access_log {directory}/access.log;
{temp}
    include {directory}/marketplace.conf;
}}
"""
    (directory / "nginx.conf").write_text(main)
    return directory / "nginx.conf"


def nginx_command(binary: str, config: Path, *extra: str) -> list[str]:
    return [binary, "-p", str(config.parent), "-c", str(config), "-e", str(config.parent / "error.log"), *extra]


def https_context() -> ssl.SSLContext:
    """Tests talk TLS to nginx with a certificate they made themselves: no verification."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


@dataclass
class Answer:
    status: int
    body: bytes
    seconds: float


def get(
    port: int,
    path: str = "/healthz",
    *,
    tls: bool = False,
    timeout: float = 60,
    source: str = "127.0.0.1",
    method: str = "GET",
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> Answer:
    """One request on a new connection from ``source`` (any 127.x address), timed."""
    started = time.monotonic()
    if tls:
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            "127.0.0.1", port, timeout=timeout, source_address=(source, 0), context=https_context()
        )
    else:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout, source_address=(source, 0))
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return Answer(response.status, response.read(), time.monotonic() - started)
    finally:
        conn.close()


def wait_until_serving(port: int, server: Server, *, tls: bool = False, seconds: float = 60) -> None:
    """Until /healthz answers 200; then a few rounds of concurrent requests, so that every worker
    has served one (Django's first request in a process loads the URLs: a third of a second)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise AssertionError(f"{server.command[0]} exited {server.process.returncode}:\n{server.log()}")
        with contextlib.suppress(OSError, http.client.HTTPException):
            if get(port, tls=tls, timeout=2).status == 200:
                break
        time.sleep(0.2)
    else:
        raise AssertionError(f"nothing answered /healthz on port {port} within {seconds} s:\n{server.log()}")
    for _ in range(3):
        warming = [threading.Thread(target=get, args=(port,), kwargs={"tls": tls}) for _ in range(12)]
        for thread in warming:
            thread.start()
        for thread in warming:
            thread.join()


# --- the tricklers' process ---------------------------------------------------------------------


def _opening(kind: str, host: str) -> tuple[bytes, bytes]:
    """(what is sent at once, what is then sent a byte at a time) for a kind of trickler."""
    if kind == "head":
        return b"", f"GET /healthz HTTP/1.1\r\nHost: {host}\r\nX-Trickle: ".encode() + b"a" * 100_000
    if kind == "body":
        head = (
            f"POST /api/v1/auth/token/ HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {BODY_BYTES}\r\n\r\n"
        ).encode()
        return head, b'{"username": "' + b"a" * BODY_BYTES
    if kind == "linger":
        return f"GET /healthz HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode(), b""
    return b"", b""  # idle


def _trickle_one(kind: str, port: int, tls: bool, interval: float, until: float, result: dict, ready) -> None:
    started = time.monotonic()
    try:
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock = https_context().wrap_socket(raw) if tls else raw
        at_once, trickled = _opening(kind, "127.0.0.1")
        if at_once:
            sock.sendall(at_once)
        sent = 0
        if trickled:
            sock.sendall(trickled[:1])
            sent = 1
    except OSError as exc:
        result.update(error=repr(exc))
        ready.release()
        return
    ready.release()
    answer = b""
    try:
        while time.monotonic() < until:
            sock.settimeout(interval)
            try:
                data = sock.recv(4096)
            except (TimeoutError, ssl.SSLWantReadError):
                data = None
            if data == b"":
                result.update(closed_after=round(time.monotonic() - started, 2))
                if kind == "linger":
                    _linger(sock, interval, until, started, result)
                break
            if data:
                answer += data
            elif kind in ("idle", "linger") or sent >= len(trickled):
                continue
            else:
                sock.sendall(trickled[sent : sent + 1])
                sent += 1
    except OSError as exc:  # reset by the server, or a write to a closed connection
        result.update(closed_after=round(time.monotonic() - started, 2), error=type(exc).__name__)
    finally:
        result["answer"] = answer.split(b"\r\n", 1)[0].decode("latin-1")
        result["sent"] = sent
        sock.close()


def _linger(sock: socket.socket, interval: float, until: float, started: float, result: dict) -> None:
    """The server has closed its writing end: keep sending a byte now and then, as a client that
    never closes might, until a write fails (the server has closed the connection: reset)."""
    while time.monotonic() < until:
        time.sleep(interval)
        try:
            sock.sendall(b"x")
        except OSError:
            result.update(reset_after=round(time.monotonic() - started, 2))
            return


def trickle(kind: str, port: int, count: int, interval: float, seconds: float, tls: bool) -> list[dict]:
    until = time.monotonic() + seconds
    results: list[dict] = [{"closed_after": None} for _ in range(count)]
    ready = threading.Semaphore(0)
    threads = [
        threading.Thread(target=_trickle_one, args=(kind, port, tls, interval, until, result, ready), daemon=True)
        for result in results
    ]
    for thread in threads:
        thread.start()
    for _ in threads:
        ready.acquire()
    print(f"connected {count}", flush=True)
    for thread in threads:
        thread.join()
    return results


class Tricklers:
    """``count`` tricklers of one kind in a process of their own, for at most ``seconds``."""

    def __init__(self, kind: str, port: int, count: int, *, interval: float = 0.5, seconds: float, tls: bool = False):
        command = [sys.executable, "-m", "tests.slow_clients", "trickle", kind, str(port), str(count)]
        command += ["--interval", str(interval), "--seconds", str(seconds)] + (["--tls"] if tls else [])
        self.count = count
        self.started = time.monotonic()
        self.process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.process.stdout.readline()
        if line.strip() != f"connected {count}":
            self.process.kill()
            raise AssertionError(f"the tricklers did not connect: {line!r} {self.process.stderr.read()}")

    def results(self, timeout: float) -> list[dict]:
        """Wait for the process to end (every connection closed, or its time up); one dict each."""
        out, err = self.process.communicate(timeout=timeout)
        assert self.process.returncode == 0, err
        results = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        assert len(results) == self.count, out + err
        return results

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate()


# --- figures ------------------------------------------------------------------------------------


def stall(port: int, *, kind: str, count: int, window: float) -> dict:
    """Start ``count`` tricklers, then GET /healthz one after another for ``window`` seconds:
    the slowest answer, the first answer's time, and when the tricklers were cut off."""
    tricklers = Tricklers(kind, port, count, seconds=window + 30)
    latencies = []
    try:
        probing_until = time.monotonic() + window
        while time.monotonic() < probing_until:
            try:
                latencies.append(get(port, timeout=window + 30).seconds)
            except (OSError, http.client.HTTPException):
                latencies.append(float("inf"))
            time.sleep(0.2)
        cut = [r["closed_after"] for r in tricklers.results(timeout=window + 60)]
    finally:
        tricklers.stop()
    return {
        "tricklers": f"{count} {kind}",
        "probes": len(latencies),
        "first_s": round(latencies[0], 2),
        "slowest_s": round(max(latencies), 2),
        "cut_off_s": sorted(cut, key=lambda c: (c is None, c or 0)),
    }


def measure(options: list[str], label: str, runs: list[tuple[str, int]], window: float, tmp: Path) -> None:
    for kind, count in runs:
        port = free_port()
        command = [str(VENV_BIN / "gunicorn"), *options, "--bind", f"127.0.0.1:{port}"]
        server = Server(command, web_env(tmp), tmp / f"gunicorn-{label}-{kind}-{count}.log")
        try:
            wait_until_serving(port, server)
            print(json.dumps({"config": label, **stall(port, kind=kind, count=count, window=window)}), flush=True)
        finally:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    one = sub.add_parser("trickle", help="run tricklers (see the module's docstring)")
    one.add_argument("kind", choices=KINDS)
    one.add_argument("port", type=int)
    one.add_argument("count", type=int)
    one.add_argument("--interval", type=float, default=0.5)
    one.add_argument("--seconds", type=float, default=60)
    one.add_argument("--tls", action="store_true")
    figures = sub.add_parser("measure", help="/healthz under tricklers: the old command line and config/gunicorn.py")
    figures.add_argument("--window", type=float, default=45, help="seconds of probing per run")
    figures.add_argument("--only", choices=("old", "gthread", "new"))
    args = parser.parse_args()
    if args.command == "trickle":
        for result in trickle(args.kind, args.port, args.count, args.interval, args.seconds, args.tls):
            print(json.dumps(result))
        return
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        if args.only in (None, "old"):
            measure(OLD_GUNICORN_OPTIONS, "old", [("head", 3), ("head", 6)], args.window, Path(tmp))
        if args.only in (None, "gthread"):
            runs = [("head", 8), ("idle", 30), ("linger", 30)]
            measure(GTHREAD_GUNICORN_OPTIONS, "gthread", runs, args.window, Path(tmp))
        if args.only in (None, "new"):
            new = shipped_gunicorn_command()[1:]
            runs = [("head", 3), ("head", 6), ("head", 8), ("body", 8), ("idle", 30), ("linger", 30)]
            measure(new, "new", runs, args.window, Path(tmp))


if __name__ == "__main__":
    main()
