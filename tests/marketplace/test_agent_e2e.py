"""The loop closed, live: a real Celery worker and beat on PostgreSQL and Redis, the API served by
``live_server``, and the reference agent (``manage.py provider_agent``) as its own process talking
HTTP. A match goes reserved → running when the agent says ready; the agent stops heartbeating
(``--fail-after``); within the (shortened) timeout the node fails, the match fails over to another
listing, and the buyer's statement carries the SLA credit and reconciles."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model

from marketplace import services
from marketplace.models import Listing, Match, Settlement
from tests.workers import ROOT, broker_reset, celery_start, process_stop, service_env, wait_for, worker_start

#: Short clocks for the test (the defaults are 90 s, 600 s and 30 s).
SETTINGS = {"NODE_HEARTBEAT_TIMEOUT_SECONDS": "3", "PROVISION_DEADLINE_SECONDS": "600", "MATCHING_SWEEP_SECONDS": "1"}
FAIL_AFTER_SECONDS = 6


@pytest.fixture
def processes(postgres, redis_url, tmp_path):
    """A worker and beat with the short clocks, on the test database and Redis; stopped afterwards."""
    broker_reset(redis_url)
    worker = worker_start(broker_url=redis_url, log_path=tmp_path / "worker.log", name="agent-e2e", env=SETTINGS)
    beat = ["beat", "--loglevel", "INFO", "--schedule", str(tmp_path / "beat-schedule")]
    beat_process = celery_start(beat, broker_url=redis_url, log_path=tmp_path / "beat.log", env=SETTINGS)
    assert wait_for(lambda: " ready." in (tmp_path / "worker.log").read_text(errors="replace"), 60)
    started = [worker, beat_process]
    yield started
    for process in reversed(started):
        process_stop(process)


def logs(tmp_path) -> str:
    return "\n".join(
        f"--- {name}\n{(tmp_path / name).read_text(errors='replace')[-3000:]}"
        for name in ("agent.log", "worker.log", "beat.log")
        if (tmp_path / name).exists()
    )


@pytest.mark.django_db(transaction=True)
@pytest.mark.services
def test_the_reference_agent_runs_a_match_then_goes_silent_and_the_match_fails_over_with_a_credit(
    processes, live_server, clients, make_listing, make_request, redis_url, tmp_path
):
    agent_listing = make_listing(region="ningxia-zhongwei", gpu_count=8, price_per_gpu_hour=Decimal("6.00"))
    spare = make_listing(region="gansu-qingyang", gpu_count=8, price_per_gpu_hour=Decimal("6.50"))
    owner = get_user_model().objects.get(username="prov")
    key = services.api_key_create(organisation=agent_listing.provider, user=owner, name="agent", scopes=["agent"])
    command = [sys.executable, "manage.py", "provider_agent", "--listing", str(agent_listing.pk)]
    command += ["--url", live_server.url, "--key", key.secret, "--interval", "0.5"]
    command += ["--fail-after", str(FAIL_AFTER_SECONDS)]
    with (tmp_path / "agent.log").open("a") as log:
        agent = subprocess.Popen(
            command, cwd=ROOT, env=service_env(redis_url, **SETTINGS), stdout=log, stderr=subprocess.STDOUT
        )
    processes.append(agent)

    assert wait_for(lambda: Listing.objects.get(pk=agent_listing.pk).agent_since is not None, 30), logs(tmp_path)
    request = make_request(gpus_per_replica=8, replicas=1, latency_class="batch", duration_hours=24)

    def first_match() -> Match | None:
        return Match.objects.filter(request=request).order_by("pk").first()

    assert wait_for(lambda: first_match() is not None, 30), logs(tmp_path)
    match = first_match()
    assert match.listing_id == agent_listing.pk, "the cheaper, agent-driven listing wins the round"
    assert wait_for(lambda: Match.objects.get(pk=match.pk).status == "running", 15), logs(tmp_path)
    match.refresh_from_db()
    assert match.endpoint == f"https://ningxia-zhongwei.example-provider.invalid/v1/matches/{match.pk}"
    assert match.ready_at is not None
    assert clients["buyer"].get(f"/api/v1/matches/{match.pk}/").json()["endpoint"] == match.endpoint

    # The agent goes silent after FAIL_AFTER_SECONDS; the node fails 3 s later, at the next sweep.
    assert wait_for(lambda: Match.objects.get(pk=match.pk).status == "failed", FAIL_AFTER_SECONDS + 20), logs(tmp_path)
    match.refresh_from_db()
    assert "sent no heartbeat for 3 s" in match.status_reason
    assert Listing.objects.get(pk=agent_listing.pk).failed_nodes == [0]
    assert wait_for(lambda: Match.objects.filter(request=request, listing=spare).exists(), 30), logs(tmp_path)

    line = Settlement.objects.get(match=match)
    assert line.sla_credit > 0
    month = f"{line.settled_at:%Y-%m}"
    statement = clients["buyer"].get(f"/api/v1/statements/?month={month}").json()
    (shown,) = [item for item in statement["lines"] if item["match"] == match.pk]
    assert Decimal(shown["sla_credit"]) == line.sla_credit
    totals = {name: Decimal(value) for name, value in statement["totals"].items()}
    assert totals["gross"] == totals["subsidy"] + totals["buyer_pays"] + totals["sla_credit"]
    earned = clients["provider"].get(f"/api/v1/statements/?month={month}").json()["totals"]
    parts = ("platform_fee", "provider_earns", "sla_credit")
    assert Decimal(earned["gross"]) == sum(Decimal(earned[name]) for name in parts)
    print(
        f"match {match.pk}: ready {match.ready_at:%H:%M:%S}, failed {match.ended_at:%H:%M:%S} "
        f"({match.status_reason}); {line.gpu_hours} GPU-h, gross {line.gross}, credit {line.sla_credit}"
    )
