"""The ``gpumkt`` CLI (and so the SDK) against a live server in the suite: pytest-django's
``live_server`` on the test database and a Celery worker in a thread of the test process
(``celery.contrib.testing``) on the in-memory broker, so a commit's matching round runs as in
production: the service enqueues it, the worker runs the task. Each party has its own config
directory."""

from __future__ import annotations

import csv
import io
import json
import os
import stat
from datetime import timedelta
from decimal import Decimal

import httpx
import pytest
from celery.contrib.testing.worker import start_worker
from click.testing import CliRunner
from django.conf import settings
from django.core.cache import cache

from config.celery_app import app as celery_app
from gpumkt import Client
from gpumkt.cli import EXIT_NOT_MATCHED, main
from marketplace import services
from marketplace.models import Listing, Match, Organisation
from marketplace.services.triggers import round_pending_key
from tests.conftest import member
from tests.workers import broker_reset

PASSWORD = "pw-for-tests-1"
BUYER_TERMS = [
    "--gpu-model", "h20", "--gpus-per-replica", "4", "--replicas", "2", "--origin", "shanghai",
    "--latency-class", "batch", "--max-price", "9.00", "--hours", "1",
]  # fmt: skip


@pytest.fixture
def worker(transactional_db):
    """A Celery worker (one thread, solo pool) consuming the test settings' broker (in memory, or
    CI's Redis). What earlier tests left is forgotten first: their queued rounds, and the cache's
    round-pending marks, while which a commit enqueues no round of its shard."""
    if settings.CELERY_BROKER_URL.startswith("redis://"):
        broker_reset(settings.CELERY_BROKER_URL)
    else:
        celery_app.control.purge()
        cache.delete_many([round_pending_key(model["code"]) for model in services.reference_read()["gpu_models"]])
    with start_worker(celery_app, pool="solo", perform_ping_check=False, shutdown_timeout=30):
        yield


@pytest.fixture
def market(transactional_db, reference, live_server, worker, tmp_path):
    """A provider and a buyer with their users (``prov``, ``buy``), and a CLI runner for each,
    pointed at the live server by GPUMKT_URL, each with its own config directory."""
    provider = Organisation.objects.create(name="Zhongwei Desert Compute", kind="provider")
    buyer = Organisation.objects.create(name="Huangpu Chat AI", kind="buyer")
    member("prov", provider)
    member("buy", buyer)

    def gpumkt(who: str):
        env = {"GPUMKT_URL": live_server.url, "XDG_CONFIG_HOME": str(tmp_path / who), "COLUMNS": "200"}

        def run(*args: str, input: str | None = None, expect: int = 0):
            result = CliRunner().invoke(main, list(args), env=env, input=input, catch_exceptions=False)
            assert result.exit_code == expect, (result.exit_code, result.stdout, result.stderr)
            return result

        return run

    return {"provider": gpumkt("provider"), "buyer": gpumkt("buyer"), "dir": tmp_path, "url": live_server.url}


def logged_in(market, who: str, username: str):
    run = market[who]
    run("login", input=f"{username}\n{PASSWORD}\n")
    return run


def test_a_provider_lists_a_buyer_quotes_submits_waits_for_the_match_and_gets_the_statement_as_csv(market):
    provider, buyer = logged_in(market, "provider", "prov"), logged_in(market, "buyer", "buy")
    config = market["dir"] / "buyer" / "gpumkt" / "config.json"
    assert stat.S_IMODE(os.stat(config).st_mode) == 0o600
    assert json.loads(config.read_text())["key"]

    listed = json.loads(
        provider(
            "listings", "create", "--region", "ningxia-zhongwei", "--gpu-model", "h20",
            "--gpus", "16", "--gpus-per-node", "8", "--price", "6.00", "--json",
        ).stdout
    )  # fmt: skip
    assert (listed["free_gpus"], listed["price_per_gpu_hour"]) == (16, "6.0000")

    quoted = buyer("quote", *BUYER_TERMS)
    assert "Quote: 2/2 replicas" in quoted.stdout
    assert "ningxia-zhongwei" in quoted.stdout

    submitted = buyer("request", "submit", *BUYER_TERMS, "--wait", "--timeout", "30")
    assert "Matches of request" in submitted.stdout
    assert "ningxia-zhongwei" in submitted.stdout
    match = Match.objects.get()
    assert match.listing_id == listed["id"]
    assert f"│ {match.id} " in submitted.stdout

    shown = json.loads(provider("matches", "--json").stdout)
    assert [(m["id"], m["listing"], m["gpus"]) for m in shown] == [(match.id, listed["id"], 8)]
    assert json.loads(provider("listings", "list", "--json").stdout)[0]["free_gpus"] == 8

    # The match runs its hour and settles (what the beat's lifecycle tick does).
    services.lifecycle_tick(now=match.ends_at + timedelta(minutes=1))
    month = f"{match.ends_at:%Y-%m}"
    rows = list(csv.reader(io.StringIO(buyer("statements", "--month", month, "--csv").stdout)))
    assert rows[0][:3] == ["match", "request", "listing"]
    assert rows[1][:3] == [str(match.id), str(match.request_id), str(listed["id"])]
    assert rows[-1][0] == "total"
    assert Decimal(rows[1][rows[0].index("buyer_pays")]) == Decimal("48.00")  # 8 GPUs × 1 h × 6.00
    statement = json.loads(buyer("statements", "--month", month, "--json").stdout)
    assert Decimal(statement["totals"]["buyer_pays"]) == Decimal("48.00")


def test_a_request_nothing_can_serve_ends_the_wait_with_the_engines_reason(market):
    provider, buyer = logged_in(market, "provider", "prov"), logged_in(market, "buyer", "buy")
    provider("listings", "create", "--region", "ningxia-zhongwei", "--gpu-model", "h20", "--gpus", "8",
             "--gpus-per-node", "8", "--price", "6.00")  # fmt: skip
    terms = [t if t != "9.00" else "2.00" for t in BUYER_TERMS]
    waited = buyer("request", "submit", *terms, "--wait", "--timeout", "30", expect=EXIT_NOT_MATCHED)
    assert "Not matched: " in waited.stderr
    reason = waited.stderr.split("Not matched: ", 1)[1].strip()
    assert "2.00 CNY" in reason  # the engine's own words: nothing at or under the cap
    assert "open" in waited.stdout
    assert not Match.objects.exists()
    as_json = json.loads(buyer("request", "submit", *terms, "--wait", "--json", expect=EXIT_NOT_MATCHED).stdout)
    assert (as_json["matched"], as_json["request"]["status"], as_json["matches"]) == (False, "open", [])
    assert as_json["reason"] == reason


def test_bad_input_exits_non_zero_with_the_apis_field_messages(market):
    provider, buyer = logged_in(market, "provider", "prov"), logged_in(market, "buyer", "buy")
    refused = buyer("request", "submit", *[t if t != "shanghai" else "atlantis" for t in BUYER_TERMS], expect=1)
    assert "HTTP 400" in refused.stderr
    assert "origin:" in refused.stderr
    assert refused.stdout == ""
    refused = provider(
        "listings", "create", "--region", "ningxia-zhongwei", "--gpu-model", "h20", "--gpus", "12",
        "--gpus-per-node", "8", "--price", "6.00", expect=1,
    )  # fmt: skip
    assert "gpu_count:" in refused.stderr
    # A buyer has no listings of its own, and may not list capacity: the API's own messages.
    assert "mine: Only provider accounts have listings of their own." in buyer("listings", "list", expect=1).stderr
    forbidden = buyer(
        "listings", "create", "--region", "ningxia-zhongwei", "--gpu-model", "h20", "--gpus", "8",
        "--gpus-per-node", "8", "--price", "6.00", expect=1,
    )  # fmt: skip
    assert "HTTP 403" in forbidden.stderr


def test_a_wrong_password_is_refused_and_nothing_is_stored(market):
    run = market["buyer"]
    refused = run("login", input="buy\nnot-the-password\n", expect=1)
    assert "HTTP 400" in refused.stderr
    assert not (market["dir"] / "buyer" / "gpumkt" / "config.json").exists()


def test_the_other_commands_edit_withdraw_capacity_requests_and_vouchers(market, now):
    provider, buyer = logged_in(market, "provider", "prov"), logged_in(market, "buyer", "buy")
    listing = json.loads(
        provider(
            "listings", "create", "--region", "gansu-qingyang", "--gpu-model", "l40s", "--gpus", "8",
            "--gpus-per-node", "8", "--price", "3.10", "--json",
        ).stdout
    )  # fmt: skip
    capacity = json.loads(buyer("capacity", "--origin", "shanghai", "--gpu-model", "l40s", "--json").stdout)
    assert [(row["region"], row["free_gpus"]) for row in capacity] == [("gansu-qingyang", 8)]
    assert "gansu-qingyang" in buyer("capacity", "--origin", "shanghai").stdout

    edited = json.loads(provider("listings", "edit", str(listing["id"]), "--price", "2.90", "--json").stdout)
    assert edited["price_per_gpu_hour"] == "2.9000"
    assert "Give at least one of" in provider("listings", "edit", str(listing["id"]), expect=2).stderr
    withdrawn = provider("listings", "withdraw", str(listing["id"]))
    assert "withdrawn" in withdrawn.stdout
    assert json.loads(provider("listings", "list", "--status", "withdrawn", "--json").stdout)[0]["id"] == listing["id"]

    buyer("request", "submit", *BUYER_TERMS)
    listed = json.loads(buyer("requests", "--json").stdout)
    assert [(r["gpu_model"], r["replicas"], r["status"]) for r in listed] == [("h20", 2, "open")]
    assert "shanghai" in buyer("requests", "--status", "open").stdout

    program = services.voucher_program_create(
        name="Shanghai compute voucher", sponsor="Shanghai", budget=Decimal("100000"), percent=Decimal("30"),
        valid_from=now - timedelta(days=1), valid_until=now + timedelta(days=90),
    )  # fmt: skip
    (voucher,) = services.vouchers_issue(program_id=program.pk, sponsor_provider=None)
    claimed = json.loads(buyer("vouchers", "claim", voucher.code, "--json").stdout)
    assert (claimed["code"], claimed["program"]) == (voucher.code, "Shanghai compute voucher")
    assert voucher.code in buyer("vouchers", "list").stdout
    assert "code:" in buyer("vouchers", "claim", "no-such-code", expect=1).stderr


class AnswerLost(httpx.HTTPTransport):
    """The network between client and server: the first POST reaches the server, which does the
    work, but its answer is lost on the way back (a read timeout)."""

    lost = False

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        if request.method == "POST" and not self.lost:
            self.lost = True
            response.read()
            raise httpx.ReadTimeout("the answer was lost", request=request)
        return response


def test_a_creating_post_whose_answer_was_lost_is_retried_with_its_key_and_creates_one_listing(market):
    logged_in(market, "provider", "prov")
    key = json.loads((market["dir"] / "provider" / "gpumkt" / "config.json").read_text())["key"]
    network = AnswerLost()
    with Client(market["url"], key, transport=network, sleep=lambda seconds: None) as client:
        listing = client.listing_create(
            region="ningxia-zhongwei", gpu_model="h20", gpu_count=8, gpus_per_node=8, price_per_gpu_hour="6.00"
        )
    assert network.lost
    assert Listing.objects.count() == 1
    assert Listing.objects.get().pk == listing.id


def test_prices_guidance_and_the_llm_catalogue_from_the_terminal(market):
    """After a round, anyone reads the clearing prices; the provider reads its listing's guidance
    (the idle half of its GPUs, with a reason); the LLM catalogue lists the inference form's models.
    The interruptible flags reach the API."""
    provider, buyer = logged_in(market, "provider", "prov"), logged_in(market, "buyer", "buy")
    listed = json.loads(
        provider(
            "listings", "create", "--region", "ningxia-zhongwei", "--gpu-model", "h20", "--gpus", "16",
            "--gpus-per-node", "8", "--price", "6.00", "--interruptible-floor", "2.50", "--json",
        ).stdout
    )  # fmt: skip
    assert listed["interruptible_floor_price_per_gpu_hour"] == "2.5000"
    buyer("request", "submit", *BUYER_TERMS, "--wait", "--timeout", "30")

    shown = json.loads(buyer("prices", "--gpu-model", "h20", "--origin", "shanghai", "--json").stdout)
    zhongwei = next(row for row in shown if row["region"] == "ningxia-zhongwei")
    assert zhongwei["listings"] == 1
    assert zhongwei["free_gpus"] == 8
    assert Decimal(zhongwei["price_per_gpu_hour"]) == Decimal("6.00")  # capacity left over: no rent
    table_out = buyer("prices", "--gpu-model", "h20", "--origin", "shanghai").stdout
    assert "ningxia-zhongwei" in table_out
    assert "Clearing prices of h20" in table_out
    history = json.loads(buyer("price-history", "--gpu-model", "h20", "--region", "ningxia-zhongwei", "--json").stdout)
    # Oldest first, ending with the latest round (listing the capacity may have run one before it).
    assert history[-1]["run_id"] == zhongwei["run_id"]
    assert [point["run_id"] for point in history] == sorted(point["run_id"] for point in history)

    guidance = provider("listings", "guidance", str(listed["id"])).stdout
    assert f"Guidance for listing {listed['id']}" in guidance
    assert "\n- " in guidance  # at least one idle reason, as a sentence
    assert json.loads(provider("listings", "guidance", str(listed["id"]), "--json").stdout)["free_gpus"] == 8
    buyer("listings", "guidance", str(listed["id"]), expect=1)  # the provider's only

    catalogue = json.loads(buyer("llm-models", "--json").stdout)
    assert "deepseek-r1-distill-qwen-32b" in {model["code"] for model in catalogue}

    # The SDK's typed calls read the same answers.
    key = json.loads((market["dir"] / "provider" / "gpumkt" / "config.json").read_text())["key"]
    with Client(market["url"], key) as sdk:
        assert [p.region for p in sdk.prices(gpu_model="h20", origin="shanghai")] == [row["region"] for row in shown]
        assert [p.run_id for p in sdk.price_history(gpu_model="h20", region="ningxia-zhongwei")] == [
            point["run_id"] for point in history
        ]
        assert sdk.listing_guidance(listed["id"]).free_gpus == 8
        assert sdk.listing(listed["id"]).interruptible_floor_price_per_gpu_hour == Decimal("2.5000")
        assert any(m.code == "deepseek-r1-distill-qwen-32b" and m.params_b > 30 for m in sdk.llm_models())

    bid = json.loads(
        buyer("request", "submit", *BUYER_TERMS[:-4], "--max-price", "3.00", "--hours", "1", "--interruptible",
              "--json").stdout
    )  # fmt: skip
    assert bid["interruptible"] is True


SERVE_TERMS = [
    "--llm-model", "deepseek-r1-distill-qwen-32b", "--tokens-per-second", "2000", "--ttft-ms", "1500",
    "--origin", "shanghai", "--max-price", "9", "--hours", "1", "--prompt-tokens", "2000", "--output-tokens", "500",
]  # fmt: skip


def test_serve_quotes_then_submits_in_the_inference_form_and_the_worker_matches_it(market):
    """``gpumkt serve`` quotes the inference form (the frontier by GPU model), and with --submit files
    the request, which the worker's round serves on whichever GPU model is cheapest per token."""
    provider, buyer = logged_in(market, "provider", "prov"), logged_in(market, "buyer", "buy")
    for model in ("h20", "rtx4090"):
        provider(
            "listings", "create", "--region", "guizhou-guian", "--gpu-model", model, "--gpus", "8",
            "--gpus-per-node", "8", "--price", "0.95" if model == "rtx4090" else "6.00",
        )  # fmt: skip
    quoted = json.loads(buyer("serve", *SERVE_TERMS, "--gpu-model", "h20", "--gpu-model", "rtx4090", "--json").stdout)
    assert quoted["kind"] == "inference"
    assert {row["gpu_model"] for row in quoted["frontier"]} == {"h20", "rtx4090"}
    assert quoted["chosen"]["gpu_model"] == "rtx4090"  # 0.95 a GPU-hour beats 6.00 per token served
    shown = buyer("serve", *SERVE_TERMS).stdout
    assert "Quote: rtx4090" in shown
    assert "CNY per million tokens" in shown

    submitted = json.loads(buyer("serve", *SERVE_TERMS, "--submit", "--json").stdout)
    assert submitted["kind"] == "inference"
    assert Decimal(submitted["inference"]["output_tokens_per_second"]) == 2000
    key = json.loads((market["dir"] / "buyer" / "gpumkt" / "config.json").read_text())["key"]
    with Client(market["url"], key) as sdk:
        done = sdk.request_wait(submitted["id"], timeout=30, interval=0.2)
        assert done.matched, done.reason
        assert done.request.kind == "inference"
        assert Decimal(done.request.inference["tokens_per_second_placed"]) >= 2000
        [match] = sdk.matches(request=submitted["id"])
        assert match.gpu_model == "rtx4090"
        assert match.ttft_ms is not None
        assert match.ttft_ms <= 1500
        assert match.price_per_million_tokens is not None
        assert match.price_per_million_tokens <= 9
    refused = buyer("serve", "--llm-model", "nope", *SERVE_TERMS[2:], expect=1)  # an unknown LLM: the API's 400
    assert "llm_model" in refused.stderr
