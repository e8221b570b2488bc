"""Issue 14's seven findings, replayed from outside against the stack production runs.

    .venv/bin/python bench/attacks.py [--only 1,2,3,4,5,6,7] [--json PATH]
        [--database-url postgres://postgres@127.0.0.1:5432/mkt_attacks]

Starts, on a fresh PostgreSQL database and a redis-server of its own (broker db 0, cache db 1, as
``docker-compose.yml`` has them): gunicorn exactly as the Dockerfile's ``CMD`` runs it (only the
bind address changed to loopback), and the Celery worker and beat exactly as ``docker-compose.yml``
runs them, all on production settings. Throttles and the open-request quota are raised, so that the
replay measures the attacks, not the limits. Then, each finding as the outside probe found it:

1. Voucher codes of one programme whose subsidies exceed what is left (2 codes against 0.20 CNY on
   H100, then 48 codes against 1 CNY on Ascend 910B), posted through the API; a bystander without
   a voucher posts after them. Figures: the bystander's POST-to-matched time, failed rounds, the
   programme's balance.
2. A listing from 9999-12-30 and a request to start by 9999-12-31 for 8,784 hours, written past the
   API and past the database constraints that now refuse them (dropped for the replay and put
   back after it); a bystander posts after them. Figures: as 1, and what the run left out. Then
   the probe's hostile inputs, each through the API: the status and the fields it names.
3. Redis killed (SIGKILL, restarted empty on the same port) three times while a buyer posts:
   whether the worker's process is still alive, and whether every accepted request was matched.
4. Three, then six clients trickling a request head one byte every half second at gunicorn:
   the slowest ``/healthz`` answer while they trickle.
5. A body nested 950 levels deep on every JSON endpoint, and ``Accept: text/html`` on the list
   endpoints: the statuses.
6. A provider's promotion named ``=HYPERLINK(…)``, used and settled: the first character of its
   cell in the buyer's and the provider's ``/statements/csv/``.
7. The probe's spoofed names at sign-up, and a provider's promotion claiming a government sponsor:
   the statuses and the fields named.

Prints one line per outcome; exits non-zero if any outcome is what the probe found (a 500, a
failed round, a dead worker, a bystander not matched, a frozen site, a formula cell, a spoof
accepted). Logs are in the run directory it prints.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import secrets
import shlex
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.load import api_call, database_prepare, healthy_wait, member_with_token, process_stop, server_env  # noqa: E402
from tests.slow_clients import gunicorn_args  # noqa: E402
from tests.workers import VENV_BIN, PrivateRedis, compose_services, free_port  # noqa: E402

FAR = datetime(9999, 12, 30, tzinfo=UTC)
HYPERLINK = '=HYPERLINK("http://evil.example/claim","Claim your subsidy")'
#: How long a bystander may wait: beat's sweep interval (production's default) and a round.
SWEEP_SECONDS = 30


class Stack:
    def __init__(self, args, run_dir: Path, redis_server: PrivateRedis):
        self.run_dir, self.port = run_dir, free_port()
        load_args = SimpleNamespace(
            secret_key=secrets.token_hex(32),
            database_url=args.database_url,
            broker_url=redis_server.url(0),
            cache_url=redis_server.url(1),
            conn_max_age=60,
        )
        # The containers' commands as written ("celery", "gunicorn"): the venv's executables first.
        self.env = server_env(load_args, run_dir) | {
            "PYTHONPATH": str(ROOT),
            "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}",
        }
        self.processes: dict[str, subprocess.Popen] = {}

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        web = gunicorn_args(self.port)
        services = compose_services()
        worker, beat = services["worker"]["command"], list(services["beat"]["command"])
        beat[beat.index("--schedule") + 1] = str(self.run_dir / "celerybeat-schedule")
        for name, command in (("web", web), ("worker", worker), ("beat", beat)):
            print(f"  {name}: {shlex.join(command)}", flush=True)
            with (self.run_dir / f"{name}.log").open("a") as log:
                self.processes[name] = subprocess.Popen(  # noqa: S603 - ours
                    command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
                )
        healthy_wait(self.base, self.processes, seconds=90)

    def stop(self) -> None:
        for process in self.processes.values():
            process_stop(process)


# --- the market's parties --------------------------------------------------------------------------


def listing_add(
    stack: Stack, provider_token: str, *, gpu_model: str, gpus: int, region: str = "gansu-qingyang"
) -> None:
    """The provider lists ``gpus`` GPUs through the API (from now, the default window)."""
    body = {"region": region, "gpu_model": gpu_model, "gpu_count": gpus, "gpus_per_node": 8,
            "price_per_gpu_hour": "5.00"}  # fmt: skip
    status, answer = api_call(stack.base, "/api/v1/listings/", token=provider_token, body=body)
    if status != 201:
        raise RuntimeError(f"listing refused: {status} {answer}")


def request_terms(gpu_model: str, **changes) -> dict:
    return {
        "gpu_model": gpu_model,
        "gpus_per_replica": 1,
        "replicas": 1,
        "origin": "shanghai",
        "latency_class": "batch",
        "max_price_per_gpu_hour": "9.00",
        "duration_hours": 2,
    } | changes


def request_post(stack: Stack, token: str, body: dict) -> int:
    """POST a request that must be accepted; its id."""
    status, answer = api_call(stack.base, "/api/v1/requests/", token=token, body=body)
    if status != 201:
        raise RuntimeError(f"request refused: {status} {answer}")
    return answer["id"]


def matched_within(base: str, token: str, request_id: int, seconds: float) -> float | None:
    """Seconds until the buyer's GET says ``matched``, or None if it did not within ``seconds``."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        status, body = api_call(base, f"/api/v1/requests/{request_id}/", token=token)
        if status == 200 and body["status"] == "matched":
            return time.monotonic() - started
        time.sleep(0.05)
    return None


def failed_rounds(shard: str) -> int:
    from marketplace.models import MatchingRun

    return MatchingRun.objects.filter(shard=shard, status=MatchingRun.Status.FAILED).count()


class Outcomes:
    """What the replay saw, and whether each is what the probe found (a regression)."""

    def __init__(self):
        self.lines: list[dict] = []

    def say(self, finding: int, what: str, outcome: str, *, held: bool) -> None:
        self.lines.append({"finding": finding, "what": what, "outcome": outcome, "held": held})
        print(f"  [{'ok' if held else 'FAILED'}] {finding}. {what}: {outcome}", flush=True)

    @property
    def failures(self) -> int:
        return sum(not line["held"] for line in self.lines)


# --- the findings ----------------------------------------------------------------------------------


def finding_1(stack: Stack, parties: dict, out: Outcomes) -> None:
    from marketplace import services
    from marketplace.market_time import market_now

    attacker, bystander = parties["voucher-buyer"][1], parties["bystander"][1]
    for codes, budget, model in ((2, Decimal("0.20"), "h100"), (48, Decimal("1.00"), "ascend-910b")):
        listing_add(stack, parties["provider"][1], gpu_model=model, gpus=64)
        now = market_now()
        program = services.voucher_program_create(
            name=f"{model} voucher running low",
            sponsor="Qingyang government",
            percent=Decimal(30),
            budget=budget,
            valid_from=now - timedelta(days=1),
            valid_until=now + timedelta(days=30),
        )
        vouchers = services.vouchers_issue(
            program_id=program.pk, sponsor_provider=None, count=codes, buyer=parties["voucher-buyer"][0]
        )
        # All at once, as an attacker would, so that many share a round; once the budget is spent,
        # a code with nothing left is refused (400) at the door.
        bodies = [request_terms(model, voucher_code=voucher.code) for voucher in vouchers]
        with ThreadPoolExecutor(max_workers=8) as pool:
            statuses = list(
                pool.map(lambda body: api_call(stack.base, "/api/v1/requests/", token=attacker, body=body)[0], bodies)
            )
        request_id = request_post(stack, bystander, request_terms(model))
        seconds = matched_within(stack.base, bystander, request_id, SWEEP_SECONDS + 10)
        program.refresh_from_db()
        failed = failed_rounds(model)
        out.say(
            1,
            f"{codes} codes against {budget} CNY on {model}",
            f"requests with codes: {statuses.count(201)} accepted, {statuses.count(400)} refused (no value left), "
            f"{sum(s >= 500 for s in statuses)} 5xx; bystander matched in {seconds:.2f} s; {failed} rounds failed; "
            f"{program.remaining_budget} CNY left"
            if seconds is not None
            else f"bystander NOT matched within {SWEEP_SECONDS + 10} s; {failed} rounds failed",
            held=seconds is not None and failed == 0 and program.remaining_budget >= 0 and max(statuses) < 500,
        )


def far_future_rows(provider, buyer):
    """The probe's two rows, written past the API and past the database constraints that now refuse
    them (dropped here): a listing of ``provider`` from 9999-12-30, and a request of ``buyer`` to start
    by 9999-12-31 for 8,784 hours. Returns (listing, request, undo); ``undo`` deletes both and puts
    the constraints back. tests/reliability/test_attacks.py uses it too."""
    from django.db import connection

    from marketplace.models import BuyerRequest, GpuModel, Listing, Region

    guards = [
        (Listing, next(c for c in Listing._meta.constraints if c.name == "listing_on_offer_in_domain")),
        (BuyerRequest, next(c for c in BuyerRequest._meta.constraints if c.name == "request_live_in_domain")),
    ]
    with connection.schema_editor() as editor:
        for model, constraint in guards:
            editor.remove_constraint(model, constraint)
    h20 = GpuModel.objects.get(code="h20")
    listing = Listing.objects.create(
        provider=provider, region=Region.objects.get(code="ningxia-zhongwei"), gpu_model=h20,
        gpu_count=8, gpus_per_node=8, price_per_gpu_hour=Decimal("1.00"), available_from=FAR,
        available_until=FAR + timedelta(days=1),
    )  # fmt: skip
    request = BuyerRequest.objects.create(
        buyer=buyer, gpu_model=h20, gpus_per_replica=1, replicas=1,
        origin=Region.objects.get(code="shanghai"), latency_class="batch", max_price_per_gpu_hour=Decimal("9.00"),
        duration_hours=8784, start_by=FAR + timedelta(days=1),
    )  # fmt: skip

    def undo() -> None:
        BuyerRequest.objects.filter(pk=request.pk).delete()
        Listing.objects.filter(pk=listing.pk).delete()
        with connection.schema_editor() as editor:
            for model, constraint in guards:
                editor.add_constraint(model, constraint)

    return listing, request, undo


#: The probe's hostile inputs of finding 2: (who, path, body, the field a 400 must name).
HOSTILE_INPUTS = [
    ("provider", "listings/", {"available_from": "9999-12-31T00:00:00Z"}, "available_from"),
    ("provider", "listings/", {"available_from": "0001-01-01T00:00:00Z"}, "available_from"),
    ("provider", "listings/", {"available_from": "2027-01-01T09:00:00"}, "available_from"),
    ("provider", "listings/", {"gpu_count": 100_000}, "gpu_count"),
    ("provider", "listings/", {"price_per_gpu_hour": "1e5"}, "price_per_gpu_hour"),
    ("provider", "listings/", {"price_per_gpu_hour": "\u0665"}, "price_per_gpu_hour"),
    ("bystander", "requests/", {"start_by": "9999-12-31T00:00:00Z", "duration_hours": 8784}, "start_by"),
    ("bystander", "quotes/", {"start_by": "9999-12-31T00:00:00Z", "duration_hours": 8784}, "start_by"),
    ("bystander", "requests/", {"start_by": "2027-01-01T09:00:00"}, "start_by"),
    ("provider", "voucher-programs/", {"min_spend": "-5"}, "min_spend"),
    ("provider", "voucher-programs/", {"max_spend": "-5"}, "max_spend"),
    ("provider", "voucher-programs/", {"cap_per_buyer": "-1"}, "cap_per_buyer"),
]


def finding_2(stack: Stack, parties: dict, out: Outcomes) -> None:
    from marketplace.models import MatchingRun

    listing_add(stack, parties["provider"][1], gpu_model="h20", gpus=16, region="ningxia-zhongwei")
    *_, undo = far_future_rows(parties["attacker-provider"][0], parties["attacker-buyer"][0])
    try:
        token = parties["bystander"][1]
        seconds = matched_within(
            stack.base, token, request_post(stack, token, request_terms("h20")), SWEEP_SECONDS + 10
        )
        run = MatchingRun.objects.filter(shard="h20", status="succeeded").order_by("-id").first()
        left_out = run.left_out if run else []
        out.say(
            2,
            "far-future listing and request, then a bystander on H20",
            f"bystander matched in {seconds:.2f} s; {failed_rounds('h20')} rounds failed; run #{run.pk} left out "
            + "; ".join(f"{row['kind']} #{row['id']}: {row['reason']}" for row in left_out)
            if seconds is not None and run
            else "bystander NOT matched",
            held=seconds is not None and failed_rounds("h20") == 0 and len(left_out) == 2,
        )
    finally:
        undo()
    bodies = {
        "listings/": {"region": "ningxia-zhongwei", "gpu_model": "h20", "gpu_count": 8, "gpus_per_node": 8,
                      "price_per_gpu_hour": "5.80"},
        "requests/": request_terms("h20"),
        "quotes/": request_terms("h20"),
        "voucher-programs/": {"name": "Zhongwei promotion", "percent": "10", "budget": "100",
                              "valid_until": "2027-06-01T00:00:00Z"},
    }  # fmt: skip
    for who, path, change, field in HOSTILE_INPUTS:
        status, answer = api_call(stack.base, f"/api/v1/{path}", token=parties[who][1], body=bodies[path] | change)
        named = field in json.dumps(answer)
        out.say(2, f"POST {path} {json.dumps(change, ensure_ascii=False)}", f"{status}, names {field}: {named}",
                held=status == 400 and named)  # fmt: skip


def finding_3(stack: Stack, redis_server: PrivateRedis, parties: dict, out: Outcomes, kills: int = 3) -> None:
    listing_add(stack, parties["provider"][1], gpu_model="l40s", gpus=4096)
    token, accepted, answers = parties["bystander"][1], [], []
    stop = threading.Event()

    def post() -> None:
        while not stop.is_set():
            try:
                status, body = api_call(stack.base, "/api/v1/requests/", token=token, body=request_terms("l40s"))
            except OSError:
                status, body = 0, {}
            answers.append(status)
            if status == 201:
                accepted.append(body["id"])
            time.sleep(0.1)

    poster = threading.Thread(target=post)
    poster.start()
    try:
        for _ in range(kills):
            time.sleep(3)
            redis_server.kill()
            time.sleep(3)
            redis_server.start()
    finally:
        time.sleep(3)
        stop.set()
        poster.join()
    worker = stack.processes["worker"]
    alive = worker.poll() is None
    from marketplace.models import BuyerRequest

    def unmatched() -> int:
        return BuyerRequest.objects.filter(pk__in=accepted).exclude(status="matched").count()

    started = time.monotonic()
    while unmatched() and time.monotonic() - started < SWEEP_SECONDS + 30:
        time.sleep(0.5)
    left = unmatched()
    out.say(
        3,
        f"Redis killed {kills} times under the shipped worker command while a buyer posted",
        f"worker {'alive' if alive else f'EXITED with {worker.returncode}'}; {len(answers)} POSTs, "
        f"{answers.count(201)} accepted (201), {answers.count(503)} refused while Redis was down (503), "
        f"{sum(s >= 500 and s != 503 for s in answers)} other 5xx; "
        f"{len(accepted) - left}/{len(accepted)} accepted matched within "
        f"{time.monotonic() - started:.1f} s of the last restart (+3 s)",
        held=alive and not left and all(s < 500 or s == 503 for s in answers),
    )


def _trickle(port: int, stop: threading.Event) -> None:
    """One slow client: a request head, one byte every half second, never finished."""
    head = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X-Slow: " + b"a" * 1000
    with socket.create_connection(("127.0.0.1", port)) as sock:
        for byte in head:
            if stop.wait(0.5):
                return
            try:
                sock.send(bytes([byte]))
            except OSError:
                return  # the server cut it off


def finding_4(stack: Stack, out: Outcomes) -> None:

    for clients in (3, 6):
        stop = threading.Event()
        tricklers = [threading.Thread(target=_trickle, args=(stack.port, stop)) for _ in range(clients)]
        for trickler in tricklers:
            trickler.start()
        time.sleep(1)
        slowest, errors = 0.0, 0
        started = time.monotonic()
        while time.monotonic() - started < 20:
            sent = time.monotonic()
            try:
                with urllib.request.urlopen(f"{stack.base}/healthz", timeout=60) as response:  # noqa: S310 - loopback
                    response.read()
            except OSError:
                errors += 1
            slowest = max(slowest, time.monotonic() - sent)
            time.sleep(0.2)
        stop.set()
        for trickler in tricklers:
            trickler.join()
        out.say(4, f"{clients} clients trickling a request head for 20 s", f"slowest /healthz {slowest:.2f} s, "
                f"{errors} errors", held=slowest < 2 and not errors)  # fmt: skip


def _nested(depth: int):
    value: object = 1
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


def finding_5(stack: Stack, parties: dict, out: Outcomes) -> None:

    deep = json.dumps(_nested(950)).encode()
    endpoints = [(None, "auth/register/"), (None, "auth/token/"), ("bystander", "requests/"),
                 ("bystander", "quotes/"), ("provider", "listings/"), ("provider", "voucher-programs/")]  # fmt: skip
    lists = ["listings/", "requests/", "matches/", "vouchers/", "voucher-programs/", "matching-runs/"]
    calls = [("POST", path, who, deep, "application/json") for who, path in endpoints]
    calls += [("GET", path, "staff" if path == "matching-runs/" else "bystander", None, "text/html") for path in lists]
    statuses = []
    for method, path, who, data, accept in calls:
        headers = {"Accept": accept, "Content-Type": "application/json"}
        if who:
            headers["Authorization"] = f"Token {parties[who][1]}"
        request = urllib.request.Request(f"{stack.base}/api/v1/{path}", data=data, headers=headers, method=method)  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
                statuses.append((method, path, accept, response.status))
        except urllib.error.HTTPError as exc:
            statuses.append((method, path, accept, exc.code))
    deep_statuses = sorted({s for m, _, _, s in statuses if m == "POST"})
    html_statuses = sorted({s for m, _, _, s in statuses if m == "GET"})
    out.say(5, f"950-deep JSON on {len(endpoints)} endpoints", f"statuses {deep_statuses}", held=deep_statuses == [400])
    out.say(5, f"Accept: text/html on {len(lists)} list endpoints", f"statuses {html_statuses}",
            held=all(s < 500 for s in html_statuses))  # fmt: skip


def finding_6(stack: Stack, parties: dict, out: Outcomes) -> None:
    from marketplace import services
    from marketplace.market_time import market_now
    from marketplace.models import Match

    provider, provider_token = parties["provider"]
    listing_add(stack, provider_token, gpu_model="a800", gpus=8)
    body = {
        "name": HYPERLINK,
        "percent": "10",
        "budget": "1000",
        "valid_until": f"{market_now().year + 1}-06-01T00:00:00Z",
    }
    status, program = api_call(stack.base, "/api/v1/voucher-programs/", token=provider_token, body=body)
    assert status == 201, program
    buyer, buyer_token = parties["bystander"]
    code = services.vouchers_issue(program_id=program["id"], sponsor_provider=provider, buyer=buyer)[0].code
    request_id = request_post(stack, buyer_token, request_terms("a800", voucher_code=code))
    if matched_within(stack.base, buyer_token, request_id, SWEEP_SECONDS + 10) is None:
        raise RuntimeError("the promotion's request was not matched")
    match = Match.objects.get(request_id=request_id)
    services.lifecycle_tick(now=match.ends_at)

    for who, token in (("buyer", buyer_token), ("provider", provider_token)):
        url = f"{stack.base}/api/v1/statements/csv/?month={match.ends_at:%Y-%m}"
        request_ = urllib.request.Request(url, headers={"Authorization": f"Token {token}"})  # noqa: S310 - loopback
        with urllib.request.urlopen(request_, timeout=10) as response:  # noqa: S310 - loopback
            rows = list(csv.DictReader(io.StringIO(response.read().decode())))
        cells = [row["voucher_program"] for row in rows if "HYPERLINK" in row.get("voucher_program", "")]
        shown = f"cell starts {cells[0][:2]!r}" if cells else "no row"
        out.say(6, f"promotion named =HYPERLINK(…) in the {who}'s statement CSV", shown,
                held=bool(cells) and cells[0][0] == "'")  # fmt: skip


#: The probe's spoofs: (field, value, what it is).
SPOOFS = [
    ("username", "demo-\u0430dmin", "Cyrillic а"),
    ("username", "\uff44\uff45\uff4d\uff4f-admin", "fullwidth ｄｅｍｏ"),
    ("organisation", "Li Inference\u202e", "bidi override"),
    ("organisation", "Li\u200bInference", "zero-width space"),
    ("organisation", "Li\nInference", "newline"),
    ("organisation", "<b>Li</b>", "markup"),
]


def finding_7(stack: Stack, parties: dict, out: Outcomes) -> None:
    from django.contrib.auth import get_user_model

    get_user_model().objects.create_user(username="demo-admin", is_staff=True)
    base = {"username": "li", "password": "a-long-pass-phrase", "email": "li@example.com", "role": "buyer",
            "organisation": "Li Inference"}  # fmt: skip
    for field, value, what in SPOOFS:
        status, answer = api_call(stack.base, "/api/v1/auth/register/", body=base | {field: value})
        named = field in json.dumps(answer)
        out.say(7, f"sign-up {field} with a {what}", f"{status}, names {field}: {named}", held=status == 400 and named)
    body = {"name": "Shanghai compute voucher", "sponsor": "Shanghai Municipal Government", "percent": "10",
            "budget": "100", "valid_until": "2027-06-01T00:00:00Z"}  # fmt: skip
    status, answer = api_call(stack.base, "/api/v1/voucher-programs/", token=parties["provider"][1], body=body)
    named = "sponsor" in json.dumps(answer)
    out.say(7, "provider promotion claiming a government sponsor", f"{status}, names sponsor: {named}",
            held=status == 400 and named)  # fmt: skip


# --- the run ---------------------------------------------------------------------------------------


def arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/mkt_attacks")
    parser.add_argument("--only", default="1,2,3,4,5,6,7", help="findings to replay, comma-separated")
    parser.add_argument("--json", type=Path, help="also write the outcomes here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv)
    only = {int(n) for n in args.only.split(",")}
    run_dir = Path(tempfile.mkdtemp(prefix="mkt-attacks-"))
    print(f"run directory (logs): {run_dir}", flush=True)
    database_prepare(args.database_url)
    redis_server = PrivateRedis("redis-server", run_dir / "redis.log")
    redis_server.start()
    stack = Stack(args, run_dir, redis_server)
    os.environ.update(stack.env)
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", "--noinput", verbosity=0)
    call_command("load_reference", verbosity=0)
    parties = {
        name: member_with_token(name, "shanghai", kind=kind, staff=name == "staff")
        for name, kind in (("provider", "provider"), ("attacker-provider", "provider"), ("voucher-buyer", "buyer"),
                           ("bystander", "buyer"), ("attacker-buyer", "buyer"), ("staff", "buyer"))
    }  # fmt: skip
    out = Outcomes()
    print("starting the shipped commands:", flush=True)
    stack.start()
    try:
        for number, replay in (
            (1, lambda: finding_1(stack, parties, out)),
            (2, lambda: finding_2(stack, parties, out)),
            (5, lambda: finding_5(stack, parties, out)),
            (6, lambda: finding_6(stack, parties, out)),
            (7, lambda: finding_7(stack, parties, out)),
            (4, lambda: finding_4(stack, out)),
            (3, lambda: finding_3(stack, redis_server, parties, out)),
        ):
            if number in only:
                replay()
    finally:
        stack.stop()
        redis_server.kill()
    print(f"{len(out.lines) - out.failures} of {len(out.lines)} outcomes hold", flush=True)
    if args.json:
        args.json.write_text(json.dumps(out.lines, indent=2, ensure_ascii=False) + "\n")
    return 1 if out.failures else 0


if __name__ == "__main__":
    sys.exit(main())
