"""Provider agents: assignments, ready (metering from it, the buyer's endpoint), heartbeats, silent
nodes and late provisioning failing over, and the SLA credit on both parties' statements."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from rest_framework.test import APIClient

from marketplace import services
from marketplace.market_time import market_now
from marketplace.models import Listing, Match, NodeHeartbeat, Settlement
from marketplace.money import sla_credit
from marketplace.selectors import silence_since
from marketplace.services.market_clock import market_clock_freeze
from marketplace.services.rounds import round_run

ENDPOINT = "https://ningxia-zhongwei.example-provider.invalid/v1/matches/1"


def key_client(username: str, scopes: list[str]) -> APIClient:
    """An API client authenticated by a new key of ``username``'s organisation with ``scopes``."""
    user = get_user_model().objects.get(username=username)
    created = services.api_key_create(
        organisation=user.membership.organisation, user=user, name=f"{username} {scopes}", scopes=scopes
    )
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {created.secret}")
    return client


@pytest.fixture
def agents(clients):
    """Agent-scoped key clients of the provider and of the other provider, and a provider key
    without the agent scope."""
    return {
        "agent": key_client("prov", ["agent"]),
        "other_agent": key_client("prov2", ["agent"]),
        "trader": key_client("prov", ["read", "trade"]),
    }


@pytest.fixture
def placed(make_listing, make_request, clients):
    """A 24-hour request of 1 × 8 H20s (with a workload) placed on the provider's listing of one 8-GPU node,
    the market clock frozen at the match's planned start."""
    listing = make_listing(gpu_count=8, price_per_gpu_hour=Decimal("6.00"))
    request = make_request(
        gpus_per_replica=8, replicas=1, duration_hours=24, latency_class="batch", workload="vLLM serving qwen2.5-72b"
    )
    round_run(shard="h20", trigger="manual")
    match = Match.objects.get(request=request)
    market_clock_freeze(at=match.starts_at)
    yield listing, request, match
    market_clock_freeze(at=None)


def beat(client, listing, **nodes):
    body = {"listing": listing.pk, "nodes": {key.removeprefix("n"): value for key, value in nodes.items()}}
    return client.post("/api/v1/agent/heartbeats/", body, format="json")


def ready(client, match, endpoint=ENDPOINT):
    return client.post(f"/api/v1/agent/matches/{match.pk}/ready/", {"endpoint": endpoint}, format="json")


def test_assignments_list_the_matches_to_provision_with_nodes_workload_and_deadline(placed, agents):
    listing, _, match = placed
    response = agents["agent"].get(f"/api/v1/agent/assignments/?listing={listing.pk}")
    assert response.status_code == 200, response.content
    (assignment,) = response.json()["results"]
    assert assignment["id"] == match.pk
    assert (assignment["status"], assignment["nodes"], assignment["gpus"]) == ("reserved", match.nodes, 8)
    assert assignment["workload"] == "vLLM serving qwen2.5-72b"
    deadline = match.starts_at + timedelta(seconds=600)
    assert parse_datetime(assignment["provision_by"]) == deadline
    assert agents["other_agent"].get("/api/v1/agent/assignments/").json()["results"] == []
    assert agents["agent"].get("/api/v1/agent/assignments/?listing=x").status_code == 400
    listings = agents["agent"].get("/api/v1/agent/listings/").json()["results"]
    assert [(item["id"], item["node_count"], item["driven_by"]) for item in listings] == [(listing.pk, 1, "clock")]


def test_ready_makes_the_match_running_and_metering_starts_at_ready_not_at_the_planned_start(placed, agents):
    listing, _, match = placed
    assert beat(agents["agent"], listing, n0="ok").status_code == 200
    market_clock_freeze(at=match.starts_at + timedelta(hours=1))  # provisioning took an hour
    services.lifecycle_tick(now=market_now())
    match.refresh_from_db()
    assert match.status == "reserved", "an agent-driven listing's match waits for its agent"
    response = ready(agents["agent"], match)
    assert response.status_code == 200, response.content
    match.refresh_from_db()
    assert (match.status, match.ready_at, match.endpoint) == ("running", market_now(), ENDPOINT)
    assert ready(agents["agent"], match).status_code == 409
    services.lifecycle_tick(now=match.ends_at)
    line = Settlement.objects.get(match=match)
    assert line.gpu_hours == Decimal("184")  # 8 GPUs × 23 h: not the hour before ready
    assert (line.gross, line.sla_credit) == (Decimal("1104.00"), Decimal("0.00"))


def test_a_clock_driven_listing_still_starts_its_matches_at_the_planned_start(placed):
    listing, _, match = placed
    services.lifecycle_tick(now=market_now())
    match.refresh_from_db()
    assert (match.status, match.ready_at, match.endpoint) == ("running", match.starts_at, "")
    assert Listing.objects.get(pk=listing.pk).driven_by == "clock"


def test_only_the_buyer_sees_the_endpoint(placed, agents, clients):
    _, _, match = placed
    assert ready(agents["agent"], match).status_code == 200
    assert clients["buyer"].get(f"/api/v1/matches/{match.pk}/").json()["endpoint"] == ENDPOINT
    assert clients["buyer"].get("/api/v1/matches/").json()["results"][0]["endpoint"] == ENDPOINT
    for role in ("provider", "staff"):
        assert clients[role].get(f"/api/v1/matches/{match.pk}/").json()["endpoint"] is None, role
    pages = {username: Client() for username in ("buy", "prov")}
    for username, page in pages.items():
        page.force_login(get_user_model().objects.get(username=username))
    assert ENDPOINT in pages["buy"].get(reverse("web:buyer")).content.decode()
    provider_page = pages["prov"].get(reverse("web:provider")).content.decode()
    assert ENDPOINT not in provider_page
    assert "clock" in provider_page  # no heartbeat yet: the listing is clock-driven


@pytest.mark.parametrize(
    "endpoint",
    ["http://ningxia.example-provider.invalid/v1", "ftp://example.com/x", "not a url", "https://", "", 12],
)
def test_the_endpoint_must_be_an_https_url(placed, agents, endpoint):
    _, _, match = placed
    response = ready(agents["agent"], match, endpoint=endpoint)
    assert response.status_code == 400
    assert "endpoint" in response.json()
    match.refresh_from_db()
    assert (match.status, match.endpoint, match.ready_at) == ("reserved", "", None)


def test_a_heartbeat_names_its_listing_and_nodes_or_is_refused(placed, agents):
    listing, _, _ = placed
    assert beat(agents["agent"], listing, n1="ok").status_code == 400  # one node: 0
    assert "nodes" in beat(agents["agent"], listing, n0="sleepy").json()
    assert "nodes" in beat(agents["agent"], listing, **{"n-1": "ok"}).json()
    empty = {"listing": listing.pk, "nodes": {}}
    assert agents["agent"].post("/api/v1/agent/heartbeats/", empty, format="json").status_code == 400
    assert beat(agents["other_agent"], listing, n0="ok").status_code == 404
    assert not NodeHeartbeat.objects.exists()
    assert Listing.objects.get(pk=listing.pk).agent_since is None


def test_a_node_reported_failed_fails_over_and_credits_the_buyer_for_the_time_since_its_last_ok(
    placed, agents, make_listing, provider
):
    listing, request, match = placed
    other = make_listing(region="gansu-qingyang", gpu_count=8, price_per_gpu_hour=Decimal("6.50"))
    services.agent_heartbeat_record(
        listing_id=listing.pk, provider=provider, nodes={0: "ok"}, real_now=timezone.now() - timedelta(minutes=10)
    )
    assert ready(agents["agent"], match).status_code == 200
    market_clock_freeze(at=match.starts_at + timedelta(hours=2))
    node = match.nodes[0]
    response = beat(agents["agent"], listing, **{f"n{node}": "failed"})
    assert response.status_code == 200, response.content
    assert response.json()["newly_failed"] == [node]
    match.refresh_from_db()
    assert match.status == "failed"
    assert match.status_reason == f"node {node} of listing {listing.pk} reported failed by its agent"
    line = Settlement.objects.get(match=match)
    assert line.gpu_hours == Decimal("16")  # 8 GPUs × 2 h from ready
    # 8 GPUs × 10 min lost (plus the test's own seconds) × 6.00 × 3: just over 24.00
    assert Decimal("24.00") <= line.sla_credit < Decimal("24.20")
    assert line.buyer_pays == line.gross - line.subsidy - line.sla_credit
    assert line.provider_earns == line.gross - line.platform_fee - line.sla_credit
    round_run(shard="h20", trigger="manual")
    assert Match.objects.get(request=request, status="reserved").listing_id == other.pk


def test_silent_nodes_fail_in_the_sweep_and_their_matches_fail_over_to_another_listing(
    placed, agents, make_listing, provider
):
    listing, request, match = placed
    other = make_listing(region="gansu-qingyang", gpu_count=8, price_per_gpu_hour=Decimal("6.50"))
    assert ready(agents["agent"], match).status_code == 200
    last_heard = timezone.now() - timedelta(seconds=120)
    services.agent_heartbeat_record(listing_id=listing.pk, provider=provider, nodes={0: "ok"}, real_now=last_heard)
    market_clock_freeze(at=match.starts_at + timedelta(hours=1))
    counts = services.agents_sweep(now=market_now())
    assert counts.silent_nodes == 1
    match.refresh_from_db()
    assert match.status == "failed"
    assert "sent no heartbeat for 90 s" in match.status_reason
    assert Listing.objects.get(pk=listing.pk).failed_nodes == [0]
    # 8 GPUs × ~120 s × 6.00 × 3 = 4.80 CNY (and a little more for the test's own seconds)
    assert Decimal("4.80") <= Settlement.objects.get(match=match).sla_credit < Decimal("5.00")
    assert services.agents_sweep(now=market_now()).silent_nodes == 0, "a failed node is not failed again"
    round_run(shard="h20", trigger="manual")
    assert Match.objects.get(request=request, status="reserved").listing_id == other.pk


def test_a_node_that_keeps_beating_stays_up(placed, agents, provider):
    listing, _, _match = placed
    services.agent_heartbeat_record(
        listing_id=listing.pk, provider=provider, nodes={0: "ok"}, real_now=timezone.now() - timedelta(seconds=120)
    )
    assert beat(agents["agent"], listing, n0="ok").status_code == 200
    assert services.agents_sweep(now=market_now()).silent_nodes == 0
    assert Listing.objects.get(pk=listing.pk).failed_nodes == []


def test_a_match_not_ready_by_the_provisioning_deadline_fails_over(placed, agents, make_listing):
    listing, request, match = placed
    other = make_listing(region="gansu-qingyang", gpu_count=8, price_per_gpu_hour=Decimal("6.50"))
    assert beat(agents["agent"], listing, n0="ok").status_code == 200
    market_clock_freeze(at=match.starts_at + timedelta(seconds=599))
    assert services.agents_sweep(now=market_now()).late_listings == 0
    market_clock_freeze(at=match.starts_at + timedelta(seconds=601))
    assert services.agents_sweep(now=market_now()).late_listings == 1
    match.refresh_from_db()
    assert match.status == "failed"
    assert match.status_reason == (
        f"node 0 of listing {listing.pk} missed a provisioning deadline (600 s after a match's planned start)"
    )
    assert Listing.objects.get(pk=listing.pk).failed_nodes == [0], "nodes it cannot provision are offered to nobody"
    line = Settlement.objects.get(match=match)
    assert (line.gpu_hours, line.gross, line.sla_credit) == (Decimal("0"), Decimal("0.00"), Decimal("0.00"))
    round_run(shard="h20", trigger="manual")
    assert Match.objects.get(request=request, status="reserved").listing_id == other.pk


def test_the_credit_line_reconciles_on_both_statements_and_the_csv(placed, agents, clients, provider):
    listing, _, match = placed
    services.agent_heartbeat_record(
        listing_id=listing.pk, provider=provider, nodes={0: "ok"}, real_now=timezone.now() - timedelta(minutes=30)
    )
    assert ready(agents["agent"], match).status_code == 200
    market_clock_freeze(at=match.starts_at + timedelta(hours=3))
    assert beat(agents["agent"], listing, **{f"n{match.nodes[0]}": "failed"}).status_code == 200
    month = f"{market_now():%Y-%m}"
    buyer = clients["buyer"].get(f"/api/v1/statements/?month={month}").json()
    provider_statement = clients["provider"].get(f"/api/v1/statements/?month={month}").json()
    (line,) = buyer["lines"]
    credit = Decimal(line["sla_credit"])
    assert credit > 0
    assert "reported failed" in line["status_reason"]
    totals, earned = buyer["totals"], provider_statement["totals"]
    gross = Decimal(totals["gross"])
    assert gross == Decimal(totals["subsidy"]) + Decimal(totals["buyer_pays"]) + Decimal(totals["sla_credit"])
    assert gross == Decimal(earned["platform_fee"]) + Decimal(earned["provider_earns"]) + Decimal(earned["sla_credit"])
    assert Decimal(earned["sla_credit"]) == credit
    text = clients["buyer"].get(f"/api/v1/statements/csv/?month={month}").content.decode()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert Decimal(rows[0]["sla_credit"]) == credit
    assert rows[-1]["match"] == "total"


@pytest.mark.parametrize(
    ("lost", "expected"),
    [
        (Decimal("1"), Decimal("18.00")),  # 1 GPU-hour × 6.00 × 3
        (Decimal("0.3333"), Decimal("5.99")),  # rounded down to the fen
        (Decimal("100"), Decimal("40.00")),  # capped at the buyer's charge
        (Decimal("0"), Decimal("0.00")),
    ],
)
def test_the_sla_credit_formula(lost, expected):
    assert (
        sla_credit(
            price_per_gpu_hour=Decimal("6.00"),
            gpu_hours_lost=lost,
            multiple=Decimal("3"),
            buyer_charge=Decimal("40.00"),
            provider_share=Decimal("45.00"),
        )
        == expected
    )


AGENT_CALLS = [
    ("get", "/api/v1/agent/listings/", None),
    ("get", "/api/v1/agent/assignments/", None),
    ("post", "/api/v1/agent/matches/{match}/ready/", {"endpoint": ENDPOINT}),
    ("post", "/api/v1/agent/heartbeats/", {"listing": "{listing}", "nodes": {"0": "ok"}}),
]


@pytest.mark.parametrize(("method", "path", "body"), AGENT_CALLS, ids=[f"{m} {p}" for m, p, _ in AGENT_CALLS])
def test_agent_endpoints_need_the_agent_scope_and_the_listings_provider(placed, agents, clients, method, path, body):
    """A provider key without the agent scope: 403 naming it; another provider's agent: 404 for
    the provider's match or listing (lists: nothing of it); a buyer: 403; anonymous: 401."""
    listing, _, match = placed
    url = path.format(match=match.pk, listing=listing.pk)
    if body is not None:
        body = {key: listing.pk if value == "{listing}" else value for key, value in body.items()}

    def call(client):
        return getattr(client, method)(url, body, format="json")

    refused = call(agents["trader"])
    assert refused.status_code == 403
    assert '"agent" scope' in refused.json()["detail"]
    assert call(clients["buyer"]).status_code == 403
    assert call(clients["anonymous"]).status_code == 401
    foreign = call(agents["other_agent"])
    if method == "get":
        assert foreign.status_code == 200
        assert foreign.json()["results"] == []
    else:
        assert foreign.status_code == 404
    match.refresh_from_db()
    assert (match.status, Listing.objects.get(pk=listing.pk).agent_since) == ("reserved", None)
    assert call(agents["agent"]).status_code == 200
    assert agents["agent"].get("/api/v1/listings/").status_code == 403, "an agent key reads nothing else"


def test_agent_key_command_prints_a_key_with_the_agent_scope_only(clients, capsys):
    from django.core.management import call_command

    from marketplace.models import ApiKey

    call_command("agent_key", username="prov", name="rack 7 agent")
    secret = capsys.readouterr().out.strip()
    key = ApiKey.objects.get(name="rack 7 agent")
    assert key.scope_list == ["agent"]
    assert key.prefix in secret
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {secret}")
    assert client.get("/api/v1/agent/assignments/").status_code == 200


def test_a_heartbeat_landing_between_the_sweeps_read_and_its_write_saves_its_node(placed, agents, provider):
    """The sweep reads the silent nodes, then fails them under the listing's lock: a heartbeat in
    between (here: before the write) keeps its node up."""
    listing, _, match = placed
    assert ready(agents["agent"], match).status_code == 200
    assert beat(agents["agent"], listing, n0="ok").status_code == 200
    services.listing_nodes_fail(
        listing_id=listing.pk,
        provider=provider,
        nodes=[0],
        cause="sent no heartbeat for 90 s",
        unless_heard_since=silence_since(timezone.now()),
    )
    match.refresh_from_db()
    assert (match.status, Listing.objects.get(pk=listing.pk).failed_nodes) == ("running", [])


def test_driven_by_shows_in_the_api_on_the_provider_page_and_on_the_board(placed, agents, clients, make_listing):
    listing, _, _ = placed
    idle = make_listing(region="gansu-qingyang", gpu_count=8)  # the board shows listings with idle GPUs
    assert clients["anonymous"].get(f"/api/v1/listings/{listing.pk}/").json()["driven_by"] == "clock"
    assert beat(agents["agent"], listing, n0="ok").status_code == 200
    assert clients["anonymous"].get(f"/api/v1/listings/{listing.pk}/").json()["driven_by"] == "agent"
    found = clients["anonymous"].get("/api/v1/listings/?region=ningxia-zhongwei").json()["results"]
    assert [item["driven_by"] for item in found] == ["agent"]
    page = Client()
    page.force_login(get_user_model().objects.get(username="prov"))
    assert ">agent</span>" in page.get(reverse("web:provider")).content.decode()
    assert beat(agents["agent"], idle, n0="ok").status_code == 200
    board = Client().get(reverse("web:board") + "?origin=shanghai").content.decode()
    counts = re.findall(r'data-label="Agent-driven">(\d+)</td>', board)
    assert sorted(counts, key=int) == ["0"] * (len(counts) - 1) + ["1"], "one region has one agent-driven listing"


def test_a_failed_node_its_agent_reports_ok_is_offered_again(placed, agents):
    listing, request, match = placed
    assert beat(agents["agent"], listing, n0="failed").json()["newly_failed"] == [0]
    match.refresh_from_db()
    assert match.status == "failed"
    answer = beat(agents["agent"], listing, n0="ok").json()
    assert (answer["recovered"], answer["failed_nodes"]) == ([0], [])
    round_run(shard="h20", trigger="manual")
    replaced = Match.objects.get(request=request, status="reserved")
    assert replaced.listing_id == listing.pk, "the node is offered again, and it is still the cheapest"


def test_a_node_failed_by_its_provider_or_a_missed_deadline_stays_failed_whatever_its_agent_says(
    placed, agents, provider
):
    listing, _, match = placed
    assert beat(agents["agent"], listing, n0="ok").status_code == 200
    market_clock_freeze(at=match.starts_at + timedelta(seconds=601))
    assert services.agents_sweep(now=market_now()).late_listings == 1
    answer = beat(agents["agent"], listing, n0="ok").json()
    assert (answer["recovered"], answer["failed_nodes"]) == ([], [0]), "an agent that cannot provision stays out"
    assert beat(agents["agent"], listing, n0="silent").status_code == 400, "agents report ok or failed"


def test_a_node_failed_for_silence_comes_back_with_its_agents_next_ok(placed, agents, provider):
    listing, _, _ = placed
    stale = timezone.now() - timedelta(seconds=120)
    services.agent_heartbeat_record(listing_id=listing.pk, provider=provider, nodes={0: "ok"}, real_now=stale)
    assert services.agents_sweep(now=market_now()).silent_nodes == 1
    assert NodeHeartbeat.objects.get(listing=listing, node=0).health == "silent"
    answer = beat(agents["agent"], listing, n0="ok").json()
    assert (answer["recovered"], answer["failed_nodes"]) == ([0], [])
