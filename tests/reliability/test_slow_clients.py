"""Slow clients (issue "Slow clients"): three clients sending their request a byte at a time froze
the site for ~30 s, when gunicorn's three sync workers faced the network.

gunicorn starts here as the image starts it (the Dockerfile's CMD, so config/gunicorn.py), with
only ``--bind`` moved to a loopback port, on the test settings (SQLite; /healthz needs no other
server). The tricklers run in a process of their own (``tests/slow_clients.py``), so that they never
hold the GIL of this process, which times ``/healthz`` meanwhile. Then nginx, when installed, with
the shipped config/nginx/marketplace.conf (ports, certificate and upstream replaced by the test's)
in front of that gunicorn: TLS, buffering, and the client address in ``X-Forwarded-For``.
"""

from __future__ import annotations

import http.client
import re
import runpy
import socket
import time
from pathlib import Path

import pytest

from config.gunicorn_worker import DeadlineThreadWorker
from tests.conftest import need_service
from tests.slow_clients import (
    NGINX_SITE,
    ROOT,
    Server,
    Tricklers,
    free_port,
    get,
    gunicorn_args,
    nginx_binary,
    nginx_command,
    nginx_config,
    wait_until_serving,
    web_env,
)

GUNICORN = runpy.run_path(str(ROOT / "config" / "gunicorn.py"))
WORKER = GUNICORN["worker_class"]
THREADS = GUNICORN["workers"] * GUNICORN["threads"]
#: More tricklers than the three sync workers the image ran before.
TRICKLERS = 8
#: The longest /healthz may take while they trickle.
HEALTHZ_BOUND_SECONDS = 1.0
#: Leeway on the moments a deadline cuts a trickler off: the worker's poll, the linger, a slow CI.
CUT_OFF_SLACK_SECONDS = 3.0


def healthz_while(port: int, *, probes: int = 5, pause: float = 0.5, tls: bool = False) -> list[float]:
    """/healthz several times, each on a new connection; each answer's seconds."""
    seconds = []
    for _ in range(probes):
        answer = get(port, tls=tls, timeout=30)
        assert answer.status == 200, answer
        seconds.append(answer.seconds)
        time.sleep(pause)
    return seconds


def start_gunicorn(tmp_path: Path, **env: str) -> tuple[Server, int]:
    port = free_port()
    server = Server(gunicorn_args(port), web_env(tmp_path, **env), tmp_path / "gunicorn.log")
    try:
        wait_until_serving(port, server)
    except BaseException:
        server.stop()
        raise
    return server, port


@pytest.fixture(scope="module")
def gunicorn(tmp_path_factory):
    """gunicorn as shipped; (server, port)."""
    server, port = start_gunicorn(tmp_path_factory.mktemp("gunicorn"))
    yield server, port
    server.stop()


def test_the_shipped_worker_is_the_threaded_one_with_deadlines():
    assert issubclass(WORKER, DeadlineThreadWorker)
    assert THREADS > TRICKLERS, "the tricklers must leave threads free for this test to mean anything"
    assert WORKER.head_seconds + CUT_OFF_SLACK_SECONDS < WORKER.body_seconds  # the tests tell them apart


@pytest.mark.parametrize("part", ["head", "body"])
def test_tricklers_leave_healthz_answering_and_are_cut_off_at_their_part_s_deadline(gunicorn, part):
    """A client trickling the request head (or, after a whole head, the body) a byte every half second."""
    server, port = gunicorn
    deadline = getattr(WORKER, f"{part}_seconds")
    tricklers = Tricklers(part, port, TRICKLERS, seconds=deadline + 20)
    try:
        latencies = healthz_while(port)
        results = tricklers.results(timeout=deadline + 40)
    finally:
        tricklers.stop()

    assert max(latencies) < HEALTHZ_BOUND_SECONDS, latencies
    for result in results:
        assert result["closed_after"] is not None, result
        assert deadline - 0.5 <= result["closed_after"] <= deadline + CUT_OFF_SLACK_SECONDS
        assert result["answer"] == "HTTP/1.1 408 Request Timeout", result
        assert result["sent"] >= deadline  # they did trickle: a byte every half second
    assert f"refused with 408: the request {part} did not arrive within {deadline:g} s" in server.log()
    print(
        f"\n{TRICKLERS} {part} tricklers: /healthz {max(latencies):.3f} s at most; cut off after "
        f"{min(r['closed_after'] for r in results)}–{max(r['closed_after'] for r in results)} s"
    )


def test_idle_and_lingering_connections_beyond_the_thread_count_leave_healthz_answering(gunicorn):
    # Connections that send nothing wait on the poller, not in a thread, and are closed after the
    # keep-alive; connections that do not close after their answer wait on the poller too, for
    # at most the linger (gunicorn's gthread waited for each in its main loop).
    _, port = gunicorn
    count = THREADS + 6
    idle = Tricklers("idle", port, count, seconds=GUNICORN["keepalive"] + 10)
    lingering = Tricklers("linger", port, count, seconds=10)
    try:
        latencies = healthz_while(port)
        idle_results = idle.results(timeout=GUNICORN["keepalive"] + 30)
        lingering_results = lingering.results(timeout=30)
    finally:
        idle.stop()
        lingering.stop()

    assert max(latencies) < HEALTHZ_BOUND_SECONDS, latencies
    for result in idle_results:
        assert result["closed_after"] is not None, result
        assert result["closed_after"] <= GUNICORN["keepalive"] + CUT_OFF_SLACK_SECONDS, result
    for result in lingering_results:
        assert result["answer"] == "HTTP/1.1 200 OK", result
        assert result["closed_after"] < HEALTHZ_BOUND_SECONDS, result  # the answer, then the server's FIN
        assert result["reset_after"] <= WORKER.linger_seconds + CUT_OFF_SLACK_SECONDS, result


def test_more_tricklers_than_threads_stall_healthz_at_most_the_head_deadline(tmp_path):
    # gunicorn alone has a limit: tricklers enough to hold every thread hold them until the head
    # deadline cuts them all off (those that waited for a thread included). nginx, in front in
    # production, is what holds them instead (below).
    server, port = start_gunicorn(tmp_path, WEB_CONCURRENCY="1", WEB_THREADS="2")
    tricklers = Tricklers("head", port, 4, seconds=WORKER.head_seconds + 20)
    try:
        time.sleep(0.5)
        first = get(port, timeout=60).seconds
        after = healthz_while(port, probes=3)
        results = tricklers.results(timeout=WORKER.head_seconds + 40)
    finally:
        tricklers.stop()
        server.stop()

    assert WORKER.head_seconds - 2 <= first <= WORKER.head_seconds + CUT_OFF_SLACK_SECONDS, first
    assert max(after) < HEALTHZ_BOUND_SECONDS, after
    assert all(r["closed_after"] <= WORKER.head_seconds + CUT_OFF_SLACK_SECONDS for r in results), results
    print(f"\n4 head tricklers on 2 threads: /healthz waited {first:.1f} s, then {max(after):.3f} s")


def test_a_body_over_the_limit_is_refused_and_a_body_under_it_reaches_django(gunicorn):
    _, port = gunicorn
    too_big = get(port, "/api/v1/auth/token/", method="POST", body=b"x" * (WORKER.max_body_bytes + 1))
    assert too_big.status == 413
    fine = get(
        port,
        "/api/v1/auth/token/",
        method="POST",
        body=b'{"username": "' + b"u" * 100_000 + b'"}',
        headers={"Content-Type": "application/json", "Expect": "100-continue"},
    )
    assert fine.status == 400, fine  # Django read the body: it has no password
    assert b'"password":["This field is required."]' in fine.body


def test_a_client_still_sending_a_refused_body_reads_its_413_not_a_reset(gunicorn):
    """RFC 9112 section 9.6: the worker answers 413 on the head alone, then reads and drops what the
    client still sends until it stops, so that unread bytes do not turn the close into a reset that
    loses the answer. The body comes in pieces, as an upload over a real network does, so the answer
    is sent well before the client is done: a drain capped at 64 KiB (gunicorn's) reset it."""
    _, port = gunicorn
    size = WORKER.max_body_bytes + 1
    piece = 256 * 1024
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(f"POST /api/v1/auth/token/ HTTP/1.1\r\nHost: localhost\r\nContent-Length: {size}\r\n\r\n".encode())
        for start in range(0, size, piece):
            sock.sendall(b"x" * min(piece, size - start))
            time.sleep(0.02)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413 Content Too Large"), answer[:200]


# --- nginx in front, as docker-compose.yml has it ---------------------------------------------------

#: The login throttle's rate in the proxied stack: a few attempts per client address.
LOGIN_RATE = 3


def nginx_seconds(directive: str) -> float:
    """A timeout of the shipped site, in seconds (each is set once, to the same value, in it)."""
    values = set(re.findall(rf"^\s*{directive} (\d+)s;", NGINX_SITE.read_text(), re.MULTILINE))
    assert len(values) == 1, (directive, values)
    return float(values.pop())


@pytest.fixture(scope="module")
def proxied(tmp_path_factory):
    """nginx with the shipped site (TLS, a certificate made here) in front of gunicorn as shipped,
    on the production settings with NUM_PROXIES=1 as docker-compose.yml sets them; (gunicorn,
    nginx, https port, http port)."""
    binary = nginx_binary()
    if binary is None:
        need_service("nginx is not installed (make tools installs Debian's): the proxy tests run it")
    tmp = tmp_path_factory.mktemp("proxied")
    web_port, http_port, https_port = free_port(), free_port(), free_port()
    env = web_env(tmp, production=True, NUM_PROXIES="1", THROTTLE_LOGIN=f"{LOGIN_RATE}/min")
    web = Server(gunicorn_args(web_port), env, tmp / "gunicorn.log")
    proxy = None
    try:
        wait_until_serving(web_port, web)
        config = nginx_config(tmp, http_port=http_port, https_port=https_port, web_port=web_port)
        proxy = Server(nginx_command(binary, config, "-g", "daemon off;"), None, tmp / "nginx.out")
        wait_until_serving(https_port, proxy, tls=True)
        yield web, proxy, https_port, http_port
    finally:
        if proxy is not None:
            proxy.stop()
        web.stop()


def test_behind_nginx_tricklers_beyond_gunicorns_threads_never_reach_it(proxied):
    web, _, https_port, _ = proxied
    count = THREADS + 8
    header_timeout = nginx_seconds("client_header_timeout")
    seconds = header_timeout + 5
    gunicorn_log_before = len(web.log_path.read_bytes())
    heads = Tricklers("head", https_port, count, seconds=seconds, tls=True)
    bodies = Tricklers("body", https_port, count, seconds=seconds, tls=True)
    try:
        latencies = healthz_while(https_port, tls=True)
        head_results = heads.results(timeout=seconds + 30)
        body_results = bodies.results(timeout=seconds + 30)
    finally:
        heads.stop()
        bodies.stop()

    assert max(latencies) < HEALTHZ_BOUND_SECONDS, latencies
    # nginx cuts the heads off at its client_header_timeout…
    for result in head_results:
        assert result["closed_after"] is not None, result
        assert header_timeout - 0.5 <= result["closed_after"] <= header_timeout + CUT_OFF_SLACK_SECONDS, result
    # …and holds the bodies (its client_body_timeout counts between two reads, and a byte comes every
    # half second) without passing them on: they cost nginx a connection each, gunicorn nothing.
    assert all(result["closed_after"] is None and result["sent"] > 10 for result in body_results), body_results
    during = web.log_path.read_bytes()[gunicorn_log_before:].decode(errors="replace")
    assert "POST" not in during, during
    assert "408" not in during, during
    assert during.count("GET /healthz") == len(latencies)
    print(
        f"\nbehind nginx, {count} head and {count} body tricklers: /healthz {max(latencies):.3f} s at most; "
        f"heads cut off after {min(r['closed_after'] for r in head_results)}–"
        f"{max(r['closed_after'] for r in head_results)} s"
    )


def test_behind_nginx_throttles_tell_clients_apart_by_the_address_nginx_saw(proxied):
    # Both clients reach gunicorn from nginx's address; Django (DRF's throttles, NUM_PROXIES=1)
    # tells them apart by the address nginx appends to X-Forwarded-For, which a client cannot forge.
    _, _, https_port, _ = proxied

    def login(source: str, **headers: str) -> int:
        answer = get(
            https_port,
            "/api/v1/auth/token/",
            tls=True,
            source=source,
            method="POST",
            body=b"{}",
            headers={"Content-Type": "application/json", **headers},
        )
        return answer.status

    assert [login("127.0.0.3") for _ in range(LOGIN_RATE)] == [400] * LOGIN_RATE  # no credentials
    assert login("127.0.0.3") == 429
    assert login("127.0.0.3", **{"X-Forwarded-For": "203.0.113.9"}) == 429  # a forged address changes nothing
    assert login("127.0.0.4") == 400  # another client: not throttled


def test_nginx_redirects_http_to_https_and_refuses_a_body_over_djangos_limit(proxied):
    _, _, https_port, http_port = proxied
    redirect = http.client.HTTPConnection("127.0.0.1", http_port, timeout=10)
    redirect.request("GET", "/api/v1/capacity/", headers={"Host": "localhost"})
    response = redirect.getresponse()
    assert (response.status, response.getheader("Location")) == (301, "https://localhost/api/v1/capacity/")
    redirect.close()
    too_big = get(https_port, "/api/v1/auth/token/", tls=True, method="POST", body=b"x" * (WORKER.max_body_bytes + 1))
    assert too_big.status == 413
    assert b"nginx" in too_big.body  # refused by nginx, before gunicorn
    assert get(https_port, "/healthz", tls=True).status == 200
