"""Issue 14's attacks on a real worker, beat and PostgreSQL: nobody can stop a GPU model's matching.

- Two, and many, voucher codes of one programme whose subsidies exceed what is left (finding 1).
- A listing from 9999-12-30 and a request to start by 9999-12-31 for 8,784 hours (finding 2),
  written past the API and past the database constraints that now refuse them.

In each, a bystander's ordinary request of the same GPU model, submitted after the attack, is
matched within the sweep interval, and every round succeeds; the far-future rows are left out with
their reasons on the run. Figures are printed (``-s``).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

import bench.attacks
from marketplace import services
from marketplace.models import BuyerRequest, MatchingRun, Region
from tests.conftest import scale
from tests.workers import broker_reset, celery_start, process_stop, wait_for, worker_start

#: Beat's sweep interval here: the bystander must be matched within it (plus a round).
SWEEP_SECONDS = 3
FAR = datetime(9999, 12, 30, tzinfo=UTC)


@pytest.fixture
def market_processes(postgres, redis_url, tmp_path):
    """A prefork worker and beat, as production runs them, on the test database and Redis."""
    broker_reset(redis_url)
    env = {"MATCHING_SWEEP_SECONDS": str(SWEEP_SECONDS)}
    worker = worker_start(
        broker_url=redis_url, log_path=tmp_path / "worker.log", name="attacks", pool="prefork", concurrency=2, env=env
    )
    beat = ["beat", "--loglevel", "INFO", "--schedule", str(tmp_path / "beat-schedule")]
    beat_process = celery_start(beat, broker_url=redis_url, log_path=tmp_path / "beat.log", env=env)
    assert wait_for(lambda: " ready." in (tmp_path / "worker.log").read_text(errors="replace"), 60)
    yield tmp_path
    process_stop(beat_process)
    process_stop(worker)


def bystander_matched_within(request: BuyerRequest, seconds: float, logs) -> float:
    started = time.monotonic()

    def matched() -> bool:
        request.refresh_from_db()
        return request.status == "matched"

    assert wait_for(matched, seconds, 0.1), (logs / "worker.log").read_text()[-4000:]
    return time.monotonic() - started


def no_round_failed() -> None:
    failed = list(MatchingRun.objects.filter(status=MatchingRun.Status.FAILED).values_list("shard", "error"))
    assert failed == []


@pytest.mark.django_db(transaction=True)
@pytest.mark.services
@pytest.mark.parametrize("codes", [2, scale(12, 48)])
def test_voucher_codes_of_one_programme_short_of_budget_stop_nobody(
    market_processes, make_listing, make_request, buyer, other_buyer, now, codes
):
    make_listing(gpu_count=8 * (codes + 2), region=Region.objects.get(code="gansu-qingyang"))
    program = services.voucher_program_create(
        name="Qingyang voucher running low",
        sponsor="Qingyang government",
        percent=Decimal(30),
        budget=Decimal("0.20") if codes == 2 else Decimal("1.00"),
        valid_from=now - timedelta(days=1),
        valid_until=now + timedelta(days=30),
    )
    for voucher in services.vouchers_issue(program_id=program.pk, sponsor_provider=None, count=codes, buyer=buyer):
        make_request(voucher_code=voucher.code, latency_class="batch", replicas=1)
    bystander = make_request(buyer=other_buyer, latency_class="batch", replicas=1)

    seconds = bystander_matched_within(bystander, SWEEP_SECONDS + 10, market_processes)

    assert wait_for(lambda: not BuyerRequest.objects.filter(status="open").exists(), SWEEP_SECONDS + 10)
    no_round_failed()
    program.refresh_from_db()
    assert program.remaining_budget >= 0
    print(f"\n{codes} codes against {program.budget} CNY: bystander matched in {seconds:.2f} s; "
          f"{MatchingRun.objects.count()} rounds, none failed; {program.remaining_budget} CNY left")  # fmt: skip


@pytest.fixture
def far_future_rows(postgres, reference, provider, buyer):
    """The attack's rows, committed past the API and past the constraints (dropped for the test and
    added back after it, once the rows are gone)."""
    listing, request, undo = bench.attacks.far_future_rows(provider, buyer)
    yield listing, request
    undo()


@pytest.mark.django_db(transaction=True)
@pytest.mark.services
def test_far_future_rows_stop_nobody(far_future_rows, market_processes, make_listing, make_request, other_buyer):
    poisoned_listing, poisoned_request = far_future_rows
    make_listing(gpu_count=16)
    bystander = make_request(buyer=other_buyer, latency_class="batch", replicas=1)

    seconds = bystander_matched_within(bystander, SWEEP_SECONDS + 10, market_processes)

    no_round_failed()
    run = MatchingRun.objects.filter(shard="h20", status="succeeded").latest("id")
    assert {(row["kind"], row["id"], row["reason"]) for row in run.left_out} == {
        ("request", poisoned_request.pk, "start_by: Must be in the years 2000–2199."),
        ("listing", poisoned_listing.pk, "available_from: Must be in the years 2000–2199."),
    }
    print(f"\nfar-future rows: bystander matched in {seconds:.2f} s; run #{run.pk} left out {run.left_out}")

