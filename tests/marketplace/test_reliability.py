"""Reliability scores (marketplace.reliability) over hand-built histories, their query, the API
fields, and a request's ``min_reliability`` respected by a round."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from marketplace import selectors
from marketplace.models import BuyerRequest, Match, MatchingRun
from marketplace.reliability import MatchTime, reliability
from marketplace.services.rounds import round_run

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def done(days_ago: float, hours: int = 24, gpus: int = 1) -> MatchTime:
    start = NOW - timedelta(days=days_ago)
    return MatchTime(gpus, "completed", start, start + timedelta(hours=hours), start + timedelta(hours=hours), start)


def failed(days_ago: float, ran_hours: float | None, hours: int = 24, gpus: int = 1) -> MatchTime:
    """A failed match that ran ``ran_hours`` (None: never ready, e.g. a missed provisioning deadline)."""
    start = NOW - timedelta(days=days_ago)
    ended = start + timedelta(hours=ran_hours or 0)
    return MatchTime(gpus, "failed", start, start + timedelta(hours=hours), ended, None if ran_hours is None else start)


# --- the definition ------------------------------------------------------------------------------


def test_completed_matches_score_one():
    score = reliability([done(d) for d in range(2, 7)], now=NOW, min_matches=5)
    assert (score.text, score.matches, score.status, score.note) == ("1.0000", 5, "scored", "")


def test_a_node_failure_halfway_loses_the_remainder():
    # 4 completed × 24 GPU-h + one failed after 12 of its 24 h: 12 lost of 120 scheduled.
    score = reliability([*(done(d) for d in range(2, 6)), failed(8, ran_hours=12)], now=NOW, min_matches=5)
    assert score.score == Decimal("0.9000")
    assert (score.scheduled_gpu_hours, score.lost_gpu_hours) == (120, 12)


def test_a_missed_provisioning_deadline_loses_the_whole_match_weighted_by_gpus():
    # Never ready: all 24 h × 8 GPUs lost, of 4 × 24 × 1 + 24 × 8 = 288 GPU-h.
    score = reliability([*(done(d) for d in range(2, 6)), failed(8, ran_hours=None, gpus=8)], now=NOW, min_matches=5)
    assert score.score == Decimal(1 - Decimal(192) / 288).quantize(Decimal("0.0001"), rounding="ROUND_DOWN")
    assert score.text == "0.3333"


def test_only_the_window_counts_and_a_small_loss_never_rounds_up_to_one():
    old = failed(40, ran_hours=None)  # ended before the window: not counted
    scores = [done(d, hours=240) for d in range(11, 16)]
    tiny = failed(2, ran_hours=23.99)  # 0.01 h lost of 1224
    score = reliability([old, *scores, tiny], now=NOW, min_matches=5)
    assert score.matches == 6
    assert score.text == "0.9999"


def test_too_little_history_is_new_never_one():
    score = reliability([done(2), done(3), done(4)], now=NOW, min_matches=5)
    assert (score.score, score.text, score.status) == (None, None, "new")
    assert score.note == "too little history (3 matches in 30 days)"
    assert reliability([], now=NOW, min_matches=5).note == "too little history (0 matches in 30 days)"


# --- the query, the API --------------------------------------------------------------------------


def history(listing, request, now, *, statuses=("completed",) * 5, days_ago=3):
    """Past 24 h, 1-GPU matches on ``listing``: completed, or failed without ever running."""
    for k, status in enumerate(statuses):
        start = now - timedelta(days=days_ago + k)
        Match.objects.create(
            request=request,
            listing=listing,
            replicas=1,
            gpus_per_replica=1,
            gpus=1,
            nodes=[0],
            price_per_gpu_hour=listing.price_per_gpu_hour,
            energy_cost_per_gpu_hour=Decimal("0.3"),
            cost_per_gpu_hour=listing.price_per_gpu_hour,
            rtt_ms=Decimal("30"),
            latency_class="standard",
            status=status,
            starts_at=start,
            ends_at=start + timedelta(hours=24),
            ended_at=start + timedelta(hours=24 if status == "completed" else 1),
            ready_at=start if status == "completed" else None,
        )


def test_the_index_reads_any_number_of_listings_and_providers_in_one_query(
    make_listing, make_request, other_provider, now
):
    request = make_request()
    listings = [make_listing() for _ in range(3)]
    history(listings[0], request, now, statuses=("completed",) * 4 + ("failed",))
    history(listings[1], request, now, statuses=("completed",) * 2)
    listings.append(make_listing(provider=other_provider))
    with CaptureQueriesContext(connection) as queries:
        index = selectors.reliability_index(
            listing_ids=[x.pk for x in listings], provider_ids={x.provider_id for x in listings}, now=now
        )
    assert len(queries) == 1
    assert (index.by_listing[listings[0].pk].text, index.by_listing[listings[0].pk].matches) == ("0.8000", 5)
    assert index.by_listing[listings[1].pk].status == "new"
    assert index.by_listing[listings[3].pk].matches == 0
    provider = index.by_provider[listings[0].provider_id]
    assert (provider.text, provider.matches) == (str(1 - Decimal(24) / 168)[:6], 7)
    assert index.by_provider[other_provider.pk].status == "new"


def test_the_listing_search_and_detail_show_scores_in_constant_queries(clients, make_listing, make_request, now):
    request = make_request()
    scored = make_listing()
    history(scored, request, now)
    make_listing()

    def count(url):
        with CaptureQueriesContext(connection) as queries:
            body = clients["anonymous"].get(url).json()
        return len(queries), body

    count("/api/v1/listings/")  # (reference rows are cached by the first read)
    few, body = count("/api/v1/listings/")
    rows = {row["id"]: row for row in body["results"]}
    assert rows[scored.pk]["reliability"] == "1.0000"
    assert rows[scored.pk]["reliability_matches"] == 5
    assert rows[scored.pk]["provider_reliability"] == "1.0000"
    fresh = next(row for pk, row in rows.items() if pk != scored.pk)
    assert (fresh["reliability"], fresh["reliability_status"]) == (None, "new")
    assert fresh["reliability_note"] == "too little history (0 matches in 30 days)"
    for _ in range(5):
        history(make_listing(), request, now, statuses=("completed",))
    more, _ = count("/api/v1/listings/")
    assert more == few
    detail = clients["anonymous"].get(f"/api/v1/listings/{scored.pk}/").json()
    assert (detail["reliability"], detail["reliability_matches"]) == ("1.0000", 5)


@pytest.mark.parametrize("value", ["1.5", "-0.1", "0.99999", 0.99, "x"])
def test_min_reliability_out_of_its_domain_is_a_400_naming_it(clients, value):
    body = {
        "gpu_model": "h20",
        "gpus_per_replica": 1,
        "replicas": 1,
        "origin": "shanghai",
        "max_price_per_gpu_hour": "10",
        "duration_hours": 24,
        "min_reliability": value,
    }
    for url in ("/api/v1/requests/", "/api/v1/quotes/"):
        response = clients["buyer"].post(url, body, format="json")
        assert response.status_code == 400, (url, response.content)
        assert "min_reliability" in response.json(), response.json()


# --- the engine respects it ---------------------------------------------------------------------


def test_a_round_places_a_request_with_min_reliability_only_on_a_listing_that_meets_it(
    clients, make_listing, make_request, now
):
    past = make_request(replicas=1)
    reliable = make_listing(price_per_gpu_hour=Decimal("7.00"))
    shaky = make_listing(price_per_gpu_hour=Decimal("6.00"))
    new = make_listing(price_per_gpu_hour=Decimal("5.00"))
    history(reliable, past, now)
    history(shaky, past, now, statuses=("completed",) * 4 + ("failed",))
    BuyerRequest.objects.filter(pk=past.pk).update(status="expired")  # the history's request is done
    body = {
        "gpu_model": "h20",
        "gpus_per_replica": 1,
        "replicas": 1,
        "origin": "shanghai",
        "max_price_per_gpu_hour": "10",
        "duration_hours": 24,
        "min_reliability": "0.99",
    }
    quote = clients["buyer"].post("/api/v1/quotes/", body, format="json").json()
    assert [p["listing_id"] for p in quote["placement"]] == [reliable.pk]
    rejected = {r["listing_id"]: r["reason"] for r in quote["placement"][0]["explanation"]["rejected"]}
    assert "reliability" in " ".join(rejected.values())
    response = clients["buyer"].post("/api/v1/requests/", body, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["min_reliability"] == "0.9900"
    anyone = make_request(replicas=1)
    run = MatchingRun.objects.get(pk=round_run(shard="h20", trigger="manual"))
    assert (run.served_replicas, run.unserved_replicas) == (2, 0)
    bound = Match.objects.get(request_id=response.json()["id"])
    assert bound.listing_id == reliable.pk
    assert Match.objects.get(request=anyone, status="reserved").listing_id == new.pk
    matches = clients["buyer"].get(f"/api/v1/matches/{bound.pk}/").json()
    assert matches["listing_reliability"] == "1.0000"


def test_capacity_rows_show_their_best_listing_reliability(clients, make_listing, make_request, now):
    request = make_request()
    history(make_listing(region="ningxia-zhongwei"), request, now, statuses=("completed",) * 4 + ("failed",))
    make_listing(region="ningxia-zhongwei")
    make_listing(region="anhui-wuhu")
    rows = clients["anonymous"].get("/api/v1/capacity/?origin=shanghai&gpu_model=h20").json()
    best = {row["region"]: row["best_reliability"] for row in rows}
    assert best == {"ningxia-zhongwei": "0.8000", "anhui-wuhu": None}
