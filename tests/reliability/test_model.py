"""Model-based test: the marketplace driven through its REST API against an in-memory reference model.

Hypothesis's stateful testing plays providers listing and withdrawing capacity, buyers submitting
and cancelling requests and matches and claiming vouchers, real matching rounds
(``marketplace.services.rounds.round_run``) and the market clock moving on (``lifecycle_tick``), in any order.
The reference model below keeps, in plain Python, what must be true whatever the engine chooses:

- each listing's free GPUs are its count less what its live matches hold; no node holds more than
  its size; withdrawn and closed listings hold nothing and get no new matches;
- requests follow the lifecycle (open → partially matched → matched, cancelled and expired are
  final, a failed-over request goes back to open work one priority level up), and a request's
  live and ended matches add up to its matched replicas;
- every match the engine makes is one the rules allow (GPU model, node size, latency bound, price
  cap, windows) — which one it makes is the engine's choice, read and checked, not predicted; after
  a round no open request could still take a free slot (the engine serves all it can), and no
  unsubsidised replica could sit more cheaply on a slot left free (it is placed at least cost);
- voucher money: a match carries at most its programme's percent, only on eligible listings while
  the programme is valid, and the full percent while the budget lasts; what a voucher holds is its
  live matches' reservations plus what ended matches drew (settled to the fen by
  ``marketplace.money``'s rules), never above its cap or its programme's budget; the ledger
  reconciles;
- every party sees exactly its own objects and the market's active listings, with the model's
  figures; another party's objects are a 404.

Each example runs inside a savepoint rolled back at its end, so each starts from the same market.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal

import pytest
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Sum
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from marketplace import selectors, services
from marketplace.models import (
    BuyerRequest,
    GpuModel,
    Listing,
    Match,
    Organisation,
    Region,
    Rtt,
    Settlement,
    Voucher,
    VoucherLedgerEntry,
    VoucherProgram,
)
from marketplace.services.market_clock import market_clock_advance, market_clock_freeze
from marketplace.services.rounds import round_run
from matching.costs import default_latency_weight
from tests.conftest import client_for, member, scale

pytestmark = pytest.mark.django_db

#: The market stands still at this instant (plus what the test advances): examples repeat exactly.
T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
GPU_MODELS = ("h20", "a800")
HUBS = ("ningxia-zhongwei", "gansu-qingyang", "yrd-qingpu-wujiang-jiashan", "guangdong-shaoguan", "hebei-zhangjiakou")
ORIGINS = ("shanghai", "beijing", "shenzhen", "chengdu")
#: Demand is drawn loose more often than tight, so that rounds have work they can place.
LATENCY = ("standard", "standard", "batch", "interactive", "realtime", "max_rtt_ms=25.0")
CLASS_BOUND = {"realtime": Decimal(10), "interactive": Decimal(30), "standard": Decimal(60), "batch": None}
LISTING_PRICES = ("5.2000", "6.0000", "6.0000", "7.5000", "9.0000")
PRICE_CAPS = ("9.5000", "9.5000", "7.0000", "5.5000")
OPEN = ("open", "partially_matched")
LIVE = ("reserved", "running")
FINAL = ("cancelled", "expired")
FOUR = Decimal("0.0001")
FEN = Decimal("0.01")
PAGE = {"page_size": 200}


# --- the reference model ------------------------------------------------------------------------


@dataclass
class ListingM:
    id: int
    owner: int
    region: str
    gpu_model: str
    gpu_count: int
    gpus_per_node: int
    price: Decimal
    available_from: datetime
    available_until: datetime
    status: str = "active"

    @property
    def nodes(self) -> int:
        return self.gpu_count // self.gpus_per_node


@dataclass
class RequestM:
    id: int
    owner: int
    gpu_model: str
    size: int
    replicas: int
    origin: str
    latency_class: str
    bound: Decimal | None
    cap: Decimal
    duration: int
    start_by: datetime
    voucher: int | None
    status: str = "open"
    matched: int = 0
    priority: int = 0


@dataclass
class MatchM:
    id: int
    request: int
    listing: int
    replicas: int
    size: int
    nodes: list[int]
    price: Decimal
    subsidy: Decimal
    voucher: int | None
    duration: int
    starts_at: datetime
    ends_at: datetime
    status: str = "reserved"
    kept: Decimal | None = None  # subsidy drawn once ended; None while live

    @property
    def gpus(self) -> int:
        return self.replicas * self.size

    @property
    def reserved(self) -> Decimal:
        """What the round reserved in the ledger: the rate over every GPU-hour of the window."""
        return self.subsidy * self.gpus * self.duration

    @property
    def holds(self) -> Decimal:
        return self.reserved if self.kept is None else self.kept


@dataclass
class ProgramM:
    id: int
    budget: Decimal
    percent: Decimal
    regions: frozenset[str]
    gpu_models: frozenset[str]
    provinces: tuple[str, ...]
    valid_from: datetime
    valid_until: datetime

    def valid_at(self, now: datetime) -> bool:
        return self.valid_from <= now < self.valid_until


@dataclass
class VoucherM:
    id: int
    code: str
    program: int
    cap: Decimal | None
    holder: int | None  # buyer index


def held_subsidy(match: MatchM, ended_at: datetime) -> Decimal:
    """What an ended match draws from its reservation, by the rules ``marketplace.money`` states:
    GPU-hours metered to 4 places half-up, the subsidy to the fen rounded down and at most the gross
    (to the fen, half-up); never more than was reserved."""
    seconds = Decimal(str(max(0.0, (ended_at - match.starts_at).total_seconds())))
    hours = (Decimal(match.gpus) * seconds / 3600).quantize(FOUR, rounding=ROUND_HALF_UP)
    gross = (match.price * hours).quantize(FEN, rounding=ROUND_HALF_UP)
    subsidy = min(gross, (match.subsidy * hours).quantize(FEN, rounding=ROUND_DOWN))
    return min(match.reserved, subsidy)


@dataclass
class Model:
    """The market as plain data; every transition is what the rules say must happen."""

    rtt: dict[tuple[str, str], Decimal]
    programs: dict[int, ProgramM]
    vouchers: dict[int, VoucherM]
    provinces: tuple[str, ...]  # per buyer index
    now: datetime = T0
    listings: dict[int, ListingM] = field(default_factory=dict)
    requests: dict[int, RequestM] = field(default_factory=dict)
    matches: dict[int, MatchM] = field(default_factory=dict)

    # derived figures

    def live(self, **where) -> list[MatchM]:
        return [
            m for m in self.matches.values() if m.status in LIVE and all(getattr(m, k) == v for k, v in where.items())
        ]

    def node_use(self, listing_id: int) -> list[int]:
        use = [0] * self.listings[listing_id].nodes
        for match in self.live(listing=listing_id):
            for node in match.nodes:
                use[node] += match.size
        return use

    def free(self, listing_id: int) -> int:
        return self.listings[listing_id].gpu_count - sum(m.gpus for m in self.live(listing=listing_id))

    def voucher_spent(self, voucher_id: int) -> Decimal:
        return sum((m.holds for m in self.matches.values() if m.voucher == voucher_id), Decimal(0))

    def program_spent(self, program_id: int) -> Decimal:
        return sum((self.voucher_spent(v.id) for v in self.vouchers.values() if v.program == program_id), Decimal(0))

    def voucher_available(self, voucher_id: int) -> Decimal:
        voucher = self.vouchers[voucher_id]
        program = self.programs[voucher.program]
        limits = [program.budget - self.program_spent(program.id)]
        if voucher.cap is not None:
            limits.append(voucher.cap - self.voucher_spent(voucher_id))
        return max(Decimal(0), min(limits))

    def voucher_refusal(self, voucher_id: int | None, buyer: int, gpu_model: str | None = None) -> str | None:
        """Why ``buyer`` may not use the voucher now (for ``gpu_model`` when submitting), or None."""
        if voucher_id is None:
            return "unknown"
        voucher = self.vouchers[voucher_id]
        program = self.programs[voucher.program]
        spent = self.voucher_spent(voucher_id)
        if voucher.holder not in (None, buyer):
            return "another buyer's"
        if not program.valid_at(self.now):
            return "outside its window"
        if program.budget <= self.program_spent(program.id) or (voucher.cap is not None and spent >= voucher.cap):
            return "exhausted"
        if program.provinces and self.provinces[buyer] not in program.provinces:
            return "province"
        if gpu_model is not None and program.gpu_models and gpu_model not in program.gpu_models:
            return "GPU model"
        return None

    def placeable(self, request: RequestM) -> bool:
        """Whether rounds still consider ``request``: open work that may still start."""
        return request.status in OPEN and request.start_by >= self.now

    def infeasible(self, request: RequestM, listing: ListingM) -> str | None:
        """Why ``request`` may not use ``listing`` at ``now`` (capacity aside), or None."""
        rtt = self.rtt[request.origin, listing.region]
        start = max(self.now, listing.available_from)
        checks = {
            "not active": listing.status != "active" or listing.available_until <= self.now,
            "GPU model": listing.gpu_model != request.gpu_model,
            "node size": request.size > listing.gpus_per_node,
            "latency": request.bound is not None and rtt > request.bound,
            "price": listing.price > request.cap,
            "start": start > request.start_by,
            "window": start + timedelta(hours=request.duration) > listing.available_until,
        }
        return next((reason for reason, failed in checks.items() if failed), None)

    # transitions

    def request_status(self, request: RequestM) -> str:
        if request.status in FINAL:
            return request.status
        if request.matched == 0:
            return "open"
        return "matched" if request.matched == request.replicas else "partially_matched"

    def end(self, matches: list[MatchM], status: str) -> None:
        for match in matches:
            ended_at = min(max(self.now, match.starts_at), match.ends_at)
            match.status, match.kept = status, held_subsidy(match, ended_at)

    def fail_over(self, listing_id: int) -> None:
        failed = self.live(listing=listing_id)
        self.end(failed, "failed")
        for match in failed:
            request = self.requests[match.request]
            request.matched -= match.replicas
            request.priority = min(request.priority + 1, 100)
            request.start_by = max(request.start_by, self.now + timedelta(hours=1))
            request.status = self.request_status(request)

    def tick(self) -> None:
        """``lifecycle_tick`` at ``now``: start, complete, expire open requests, close listings."""
        for match in self.live():
            if match.ends_at <= self.now:
                self.end([match], "completed")
            elif match.starts_at <= self.now:
                match.status = "running"
        for request in self.requests.values():
            if request.status == "open" and request.start_by < self.now:
                request.status = "expired"
        for listing in self.listings.values():
            if listing.status == "active" and listing.available_until <= self.now:
                listing.status = "closed"


# --- the market the examples start from ---------------------------------------------------------


@dataclass
class Party:
    index: int
    org: Organisation
    client: object


@dataclass
class Market:
    providers: list[Party]
    buyers: list[Party]
    staff: object
    anonymous: object
    programs: dict[int, ProgramM]
    vouchers: dict[int, VoucherM]
    rtt: dict[tuple[str, str], Decimal]


def _program(name: str, **terms) -> ProgramM:
    program = services.voucher_program_create(name=name, sponsor=name, **terms)
    return ProgramM(
        id=program.pk,
        budget=program.budget,
        percent=program.percent,
        regions=frozenset(r.code for r in terms.get("eligible_regions", ())),
        gpu_models=frozenset(g.code for g in terms.get("eligible_gpu_models", ())),
        provinces=tuple(terms.get("eligible_buyer_provinces", ())),
        valid_from=program.valid_from,
        valid_until=program.valid_until,
    )


def _voucher(program: ProgramM, buyer: Party | None = None, cap: str | None = None) -> VoucherM:
    cap_value = None if cap is None else Decimal(cap)
    org = buyer.org if buyer else None
    (voucher,) = services.vouchers_issue(program_id=program.id, sponsor_provider=None, buyer=org, cap=cap_value)
    return VoucherM(voucher.pk, voucher.code, program.id, cap_value, buyer.index if buyer else None)


@pytest.fixture
def market(reference) -> Market:
    """Two providers, a Shanghai and a Gansu buyer, a city programme (30 % in two western hubs,
    small budget, valid for 2 h) and a promotion (50 % on H20s for Shanghai buyers), four codes."""
    market_clock_freeze(at=T0)
    providers = []
    for i, name in enumerate(("Zhongwei Desert Compute", "Ulanqab Green DC")):
        org = Organisation.objects.create(name=name, kind="provider")
        providers.append(Party(i, org, client_for(member(f"model-prov{i}", org))))
    buyers = []
    for i, (name, province) in enumerate((("Huangpu Chat AI", "Shanghai"), ("Longdong Agents", "Gansu"))):
        org = Organisation.objects.create(name=name, kind="buyer", province=province)
        buyers.append(Party(i, org, client_for(member(f"model-buy{i}", org))))
    staff = client_for(get_user_model().objects.create_user(username="model-staff", is_staff=True))
    city = _program(
        "Qingyang compute voucher",
        percent=Decimal(30),
        budget=Decimal(150),
        valid_from=T0 - timedelta(days=1),
        valid_until=T0 + timedelta(hours=2),
        eligible_regions=list(Region.objects.filter(code__in=["gansu-qingyang", "ningxia-zhongwei"])),
    )
    promo = _program(
        "Shanghai AI voucher",
        percent=Decimal(50),
        budget=Decimal(90),
        valid_from=T0 - timedelta(days=1),
        valid_until=T0 + timedelta(days=30),
        eligible_gpu_models=[GpuModel.objects.get(code="h20")],
        eligible_buyer_provinces=["Shanghai"],
    )
    vouchers = [_voucher(city, buyers[0]), _voucher(city, cap="40"), _voucher(promo), _voucher(promo, buyers[1])]
    rtt = {
        (a, b): Decimal(str(ms))
        for a, b, ms in Rtt.objects.values_list("source_region__code", "target_region__code", "rtt_ms")
    }
    return Market(
        providers=providers,
        buyers=buyers,
        staff=staff,
        anonymous=client_for(),
        programs={p.id: p for p in (city, promo)},
        vouchers={v.id: v for v in vouchers},
        rtt=rtt,
    )


#: A buyer's order: ``voucher`` indexes the market's codes (4: an unknown code; None: no voucher);
#: ``start_within`` hours (None: the default 24 h; 0: now, which is refused).
ORDERS = st.fixed_dictionaries(
    {
        "buyer": st.integers(0, 1),
        "gpu_model": st.sampled_from(GPU_MODELS),
        "size": st.sampled_from([1, 2, 4, 8]),
        "replicas": st.integers(1, 3),
        "origin": st.sampled_from(ORIGINS),
        "latency": st.sampled_from(LATENCY),
        "cap": st.sampled_from(PRICE_CAPS),
        "duration": st.sampled_from([1, 4, 24]),
        "start_within": st.sampled_from([None, None, None, 2, 0]),
        "voucher": st.none() | st.integers(0, 4),
        "aim": st.none() | st.integers(0, 50),
    }
)


# --- the machine --------------------------------------------------------------------------------


def class_of(rtt: Decimal) -> str:
    """The tightest latency class whose bound admits ``rtt`` (bounds inclusive)."""
    return next(c for c, bound in CLASS_BOUND.items() if bound is None or rtt <= bound)


def pick(items, index: int):
    """A stable choice among ``items`` by index (shrinks towards the first)."""
    items = sorted(items, key=lambda item: item.id)
    return items[index % len(items)]


def iso(moment: datetime) -> str:
    return moment.isoformat()


def when(text: str) -> datetime:
    return datetime.fromisoformat(text)


def results(response) -> list[dict]:
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["next"] is None, "a list spilled over one page of 200: the example is too long"
    return body["results"]


class MarketMachine(RuleBasedStateMachine):
    """Drives the real marketplace and the model side by side; ``market`` is set by the test."""

    market: Market
    examples = 0
    steps = 0
    seen: Counter

    def __init__(self):
        super().__init__()
        # Everything an example writes is undone at teardown: the next one starts from the fixture.
        self.savepoint = transaction.savepoint()
        market = self.market
        self.model = Model(
            rtt=market.rtt,
            programs=market.programs,
            vouchers={k: VoucherM(**vars(v)) for k, v in market.vouchers.items()},
            provinces=tuple(b.org.province for b in market.buyers),
        )
        self.last_match = 0  # the market starts with no matches
        MarketMachine.examples += 1

    def tally(self, what: str) -> None:
        """Count what the examples exercised (printed at the end, so a run shows its coverage)."""
        MarketMachine.seen[what] += 1

    def teardown(self):
        transaction.savepoint_rollback(self.savepoint)

    # --- providers ------------------------------------------------------------------------------

    @initialize(
        first=st.lists(
            st.tuples(st.integers(0, 1), st.sampled_from(HUBS), st.sampled_from(LISTING_PRICES)), min_size=4, max_size=4
        )
    )
    def first_listings(self, first):
        """Every example starts with two listings of each GPU model, so rounds have a choice."""
        for (provider, region, price), gpu_model in zip(first, GPU_MODELS * 2, strict=True):
            self.list_capacity(provider, region, gpu_model, 2, 8, price, 0, 24 * 30, valid=True)

    @rule(
        provider=st.integers(0, 1),
        region=st.sampled_from(HUBS),
        gpu_model=st.sampled_from(GPU_MODELS),
        nodes=st.integers(1, 4),
        node_size=st.sampled_from([1, 2, 4, 8]),
        price=st.sampled_from(LISTING_PRICES),
        opens_in=st.sampled_from([0, 0, 3]),
        window=st.sampled_from([6, 30, 24 * 30]),
        valid=st.sampled_from([True, True, True, False]),
    )
    def list_capacity(self, provider, region, gpu_model, nodes, node_size, price, opens_in, window, valid):
        party = self.market.providers[provider]
        gpu_count = nodes * node_size if valid or node_size == 1 else nodes * node_size + 1
        start = self.model.now + timedelta(hours=opens_in)
        body = {
            "region": region,
            "gpu_model": gpu_model,
            "gpu_count": gpu_count,
            "gpus_per_node": node_size,
            "price_per_gpu_hour": price,
            "available_until": iso(start + timedelta(hours=window)),
        }
        if opens_in:
            body["available_from"] = iso(start)
        response = party.client.post("/api/v1/listings/", body, format="json")
        if gpu_count % node_size:
            assert response.status_code == 400, response.content
            assert "gpu_count" in response.json(), response.content
            return
        assert response.status_code == 201, response.content
        out = response.json()
        assert (out["free_gpus"], out["status"], when(out["available_from"])) == (gpu_count, "active", start)
        self.model.listings[out["id"]] = ListingM(
            out["id"],
            provider,
            region,
            gpu_model,
            gpu_count,
            node_size,
            Decimal(price),
            start,
            start + timedelta(hours=window),
        )

    # Not the market's last capacity: examples that withdraw everything early exercise little else.
    @precondition(lambda self: sum(x.status == "active" for x in self.model.listings.values()) > 1)
    @rule(provider=st.integers(0, 1), index=st.integers(0, 50))
    def withdraw(self, provider, index):
        """DELETE a listing (maybe another provider's, or one already withdrawn or closed): its
        live matches fail over."""
        listing = pick(self.model.listings.values(), index)
        response = self.market.providers[provider].client.delete(f"/api/v1/listings/{listing.id}/")
        if listing.owner != provider:
            assert response.status_code == 404, response.content
        elif listing.status != "active":
            assert response.status_code == 409, response.content
        else:
            assert response.status_code == 200, response.content
            assert response.json()["status"] == "withdrawn", response.content
            listing.status = "withdrawn"
            self.tally(f"withdrawal failed over {len(self.model.live(listing=listing.id))} matches")
            self.model.fail_over(listing.id)

    # --- buyers ---------------------------------------------------------------------------------

    @initialize(orders=st.lists(ORDERS, min_size=1, max_size=3))
    def first_requests(self, orders):
        self.submit(orders)

    @rule(orders=st.lists(ORDERS, min_size=1, max_size=3))
    def submit(self, orders):
        """POST a few requests (a burst, so that rounds place several at once)."""
        for order in orders:
            self._submit(**order)

    def _aimed(self, aim: int | None, gpu_model: str, origin: str, latency: str, cap: str) -> tuple[str, str, str]:
        """Loosen an order's GPU model, latency and price cap so an active listing (by ``aim``)
        meets them: half the demand is drawn blind, half aimed at capacity that exists."""
        active = [x for x in self.model.listings.values() if x.status == "active"]
        if aim is None or not active:
            return gpu_model, latency, cap
        listing = pick(active, aim)
        rtt = self.model.rtt[origin, listing.region]
        bound = Decimal(latency.partition("=")[2] or 0) or CLASS_BOUND[latency]
        if bound is not None and rtt > bound:
            latency = class_of(rtt)
        return listing.gpu_model, latency, max(cap, str(listing.price), key=Decimal)

    def _submit(self, buyer, gpu_model, size, replicas, origin, latency, cap, duration, start_within, voucher, aim):
        """POST a request, with or without a voucher (own, claimable, another's, or unknown)."""
        model = self.model
        gpu_model, latency, cap = self._aimed(aim, gpu_model, origin, latency, cap)
        body = {
            "gpu_model": gpu_model,
            "gpus_per_replica": size,
            "replicas": replicas,
            "origin": origin,
            "max_price_per_gpu_hour": cap,
            "duration_hours": duration,
        }
        name, _, bound = latency.partition("=")
        body[name if bound else "latency_class"] = bound or latency
        start_by = model.now + timedelta(hours=24 if start_within is None else start_within)
        if start_within is not None:
            body["start_by"] = iso(start_by)
        voucher_id = None
        if voucher is not None:
            voucher_id = sorted(model.vouchers)[voucher] if voucher < len(model.vouchers) else None
            body["voucher_code"] = model.vouchers[voucher_id].code if voucher_id else "no-such-code"
        response = self.market.buyers[buyer].client.post("/api/v1/requests/", body, format="json")
        refusal = model.voucher_refusal(voucher_id, buyer, gpu_model) if voucher is not None else None
        self.tally(f"submit: voucher {refusal or ('none' if voucher is None else 'accepted')}")
        if start_within == 0:
            assert response.status_code == 400, response.content
            assert "start_by" in response.json(), response.content
            return
        if refusal:
            assert response.status_code == 400, (refusal, response.content)
            assert "voucher_code" in response.json(), (refusal, response.content)
            return
        assert response.status_code == 201, response.content
        out = response.json()
        latency_class = class_of(Decimal(bound)) if bound else latency
        assert (out["status"], out["matched_replicas"], out["latency_class"]) == ("open", 0, latency_class)
        if voucher_id:
            model.vouchers[voucher_id].holder = buyer
        model.requests[out["id"]] = RequestM(
            id=out["id"],
            owner=buyer,
            gpu_model=gpu_model,
            size=size,
            replicas=replicas,
            origin=origin,
            latency_class=latency_class,
            bound=Decimal(bound) if bound else CLASS_BOUND[latency],
            cap=Decimal(cap),
            duration=duration,
            start_by=start_by,
            voucher=voucher_id,
        )

    @rule(buyer=st.integers(0, 1), voucher=st.integers(0, 4))
    def claim(self, buyer, voucher):
        """POST /vouchers/claim/: a code becomes the buyer's if the rules let it."""
        model = self.model
        voucher_id = sorted(model.vouchers)[voucher] if voucher < len(model.vouchers) else None
        code = model.vouchers[voucher_id].code if voucher_id else "no-such-code"
        response = self.market.buyers[buyer].client.post("/api/v1/vouchers/claim/", {"code": code}, format="json")
        refusal = model.voucher_refusal(voucher_id, buyer)
        self.tally(f"claim: {refusal or 'accepted'}")
        if refusal:
            assert response.status_code == 400, (refusal, response.content)
            assert "code" in response.json(), (refusal, response.content)
            return
        assert response.status_code == 200, response.content
        model.vouchers[voucher_id].holder = buyer
        out = response.json()
        assert Decimal(out["spent"]) == model.voucher_spent(voucher_id), out
        assert Decimal(out["remaining_value"]) == model.voucher_available(voucher_id), out

    @precondition(lambda self: self.model.requests)
    @rule(actor=st.sampled_from(["buyer0", "buyer1", "provider0"]), index=st.integers(0, 50))
    def cancel_request(self, actor, index):
        request = pick(self.model.requests.values(), index)
        response = self._client(actor).post(f"/api/v1/requests/{request.id}/cancel/")
        if actor.startswith("provider"):
            assert response.status_code == 403, response.content
        elif request.owner != int(actor[-1]):
            assert response.status_code == 404, response.content
        elif request.status in FINAL:
            assert response.status_code == 409, response.content
        else:
            assert response.status_code == 200, response.content
            assert response.json()["status"] == "cancelled", response.content
            self.model.end(self.model.live(request=request.id), "cancelled")
            request.status = "cancelled"

    @precondition(lambda self: self.model.matches)
    @rule(buyer=st.integers(0, 1), index=st.integers(0, 50))
    def cancel_match(self, buyer, index):
        match = pick(self.model.matches.values(), index)
        response = self.market.buyers[buyer].client.post(f"/api/v1/matches/{match.id}/cancel/")
        if self.model.requests[match.request].owner != buyer:
            assert response.status_code == 404, response.content
        elif match.status not in LIVE:
            assert response.status_code == 409, response.content
        else:
            assert response.status_code == 200, response.content
            assert response.json()["status"] == "cancelled", response.content
            self.model.end([match], "cancelled")

    # --- the engine and the clock ---------------------------------------------------------------

    @rule(shard=st.sampled_from(GPU_MODELS))
    def match(self, shard):
        """A real round over one shard, run synchronously; its matches are checked, then taken in."""
        self._round(shard)

    # Hypothesis draws the first choice most often: 3 h, which closes the city programme (2 h).
    @rule(hours=st.sampled_from([3, 1, 12, 30]))
    def advance(self, hours):
        """Market time moves on; as beat's sweep does, the lifecycle catches up, then every shard
        with open work gets a round."""
        model = self.model
        market_clock_advance(by=timedelta(hours=hours))
        model.now += timedelta(hours=hours)
        services.lifecycle_tick(now=model.now)
        model.tick()
        shards = selectors.shards_with_open_work(now=model.now)
        assert shards == sorted({r.gpu_model for r in model.requests.values() if model.placeable(r)})
        for shard in shards:
            self._round(shard)

    def _round(self, shard: str) -> None:
        model = self.model
        before = {p.id: p.budget - model.program_spent(p.id) for p in model.programs.values()}
        run_id = round_run(shard=shard, trigger="manual")
        assert run_id is not None, f"shard {shard} is locked by another process (shared cache?)"
        new = list(Match.objects.filter(pk__gt=self.last_match).order_by("pk"))
        for row in new:
            self._take_match(row, shard)
        self.last_match = max([self.last_match, *(row.pk for row in new)])
        self.tally(f"round made {min(len(new), 3)}{'+' if len(new) >= 3 else ''} matches")
        self._check_nothing_left_to_place(shard)
        self._check_subsidy_paid_while_affordable(new, before)
        self._check_no_cheaper_free_slot(new, before)

    # --- what each party sees -------------------------------------------------------------------

    @rule(
        view=st.sampled_from(["buyer0", "buyer1", "provider0", "provider1", "market", "staff"]),
        origin=st.sampled_from(ORIGINS),
        latency=st.sampled_from(list(CLASS_BOUND)),
        gpu_model=st.sampled_from(GPU_MODELS),
    )
    def look(self, view, origin, latency, gpu_model):
        """GET what one party sees and compare it with the model."""
        if view.startswith("buyer"):
            self._look_as_buyer(int(view[-1]))
        elif view.startswith("provider"):
            self._look_as_provider(int(view[-1]))
        elif view == "market":
            self._look_at_market(origin, latency, gpu_model)
        else:
            self._look_as_staff()

    def _look_as_buyer(self, buyer):
        """A buyer's requests, matches and vouchers are exactly the model's; others' are 404."""
        client, model = self.market.buyers[buyer].client, self.model
        mine = {r.id: r for r in model.requests.values() if r.owner == buyer}
        got = {row["id"]: row for row in results(client.get("/api/v1/requests/", PAGE))}
        assert set(got) == set(mine)
        for request_id, row in got.items():
            request = mine[request_id]
            expected = (request.status, request.matched, request.priority, request.start_by)
            assert (row["status"], row["matched_replicas"], row["priority"], when(row["start_by"])) == expected, row
        matches = {m.id: m for m in model.matches.values() if model.requests[m.request].owner == buyer}
        got = {row["id"]: row for row in results(client.get("/api/v1/matches/", PAGE))}
        assert {k: row["status"] for k, row in got.items()} == {k: m.status for k, m in matches.items()}
        vouchers = {v.id: v for v in model.vouchers.values() if v.holder == buyer}
        got = {row["id"]: row for row in results(client.get("/api/v1/vouchers/", PAGE))}
        assert set(got) == set(vouchers)
        for voucher_id, row in got.items():
            assert Decimal(row["spent"]) == model.voucher_spent(voucher_id), row
            assert Decimal(row["remaining_value"]) == model.voucher_available(voucher_id), row
        for other in [r for r in model.requests.values() if r.owner != buyer][:2]:
            assert client.get(f"/api/v1/requests/{other.id}/").status_code == 404
        for other in [m for m in model.matches.values() if m.id not in matches][:2]:
            assert client.get(f"/api/v1/matches/{other.id}/").status_code == 404

    def _look_as_provider(self, provider):
        """A provider's listings (every status) with their free GPUs, and the matches on them;
        another provider's inactive listings and matches are 404."""
        client, model = self.market.providers[provider].client, self.model
        mine = {x.id: x for x in model.listings.values() if x.owner == provider}
        got = results(client.get("/api/v1/listings/", {"mine": "true", **PAGE}))
        assert {row["id"]: (row["status"], row["free_gpus"]) for row in got} == {
            x.id: (x.status, model.free(x.id)) for x in mine.values()
        }
        matches = {m.id for m in model.matches.values() if m.listing in mine}
        assert {row["id"] for row in results(client.get("/api/v1/matches/", PAGE))} == matches
        for other in [x for x in model.listings.values() if x.owner != provider and x.status != "active"][:2]:
            assert client.get(f"/api/v1/listings/{other.id}/").status_code == 404
        for other in [m for m in model.matches.values() if m.id not in matches][:2]:
            assert client.get(f"/api/v1/matches/{other.id}/").status_code == 404

    def _look_at_market(self, origin, latency, gpu_model):
        """Anyone's search and capacity board agree with the model's free GPUs and RTTs."""
        model, client = self.model, self.market.anonymous
        query = {"origin": origin, "latency_class": latency, "gpu_model": gpu_model, **PAGE}
        got = {
            row["id"]: (row["free_gpus"], Decimal(str(row["rtt_ms"])))
            for row in results(client.get("/api/v1/listings/", query))
        }
        bound = CLASS_BOUND[latency]
        expected = {
            x.id: (model.free(x.id), model.rtt[origin, x.region])
            for x in model.listings.values()
            if x.status == "active"
            and x.gpu_model == gpu_model
            and (bound is None or model.rtt[origin, x.region] <= bound)
        }
        assert got == expected
        response = client.get("/api/v1/capacity/", {"origin": origin, "gpu_model": gpu_model})
        assert response.status_code == 200, response.content
        board = defaultdict(lambda: [0, 0])
        for x in model.listings.values():
            free = model.free(x.id)
            if x.status == "active" and x.available_until > model.now and x.gpu_model == gpu_model and free > 0:
                board[x.region][0] += free
                board[x.region][1] += 1
        assert {row["region"]: [row["free_gpus"], row["listings"]] for row in response.json()} == dict(board)

    def _look_as_staff(self):
        """Each programme's remaining budget through the staff API is its budget less the model's spend."""
        for program in self.model.programs.values():
            response = self.market.staff.get(f"/api/v1/voucher-programs/{program.id}/")
            assert response.status_code == 200, response.content
            remaining = Decimal(response.json()["remaining_budget"])
            assert remaining == program.budget - self.model.program_spent(program.id) >= 0

    # --- invariants: the database agrees with the model after every step ------------------------

    @invariant()
    def listings_agree(self):
        MarketMachine.steps += 1  # invariants run once per step (and once after the initial rules)
        # Every row, not just the model's: a refused POST must have written nothing.
        got = {
            pk: (status, allocated)
            for pk, status, allocated in Listing.objects.values_list("pk", "status", "allocated_gpus")
        }
        assert got == {x.id: (x.status, x.gpu_count - self.model.free(x.id)) for x in self.model.listings.values()}
        for listing in self.model.listings.values():
            assert all(use <= listing.gpus_per_node for use in self.model.node_use(listing.id)), listing
            if listing.status != "active":
                assert not self.model.live(listing=listing.id), f"inactive listing {listing.id} holds GPUs"

    @invariant()
    def requests_agree(self):
        rows = BuyerRequest.objects.values_list("pk", "status", "matched_replicas", "priority", "start_by")
        got = {pk: rest for pk, *rest in rows}
        expected = {r.id: [r.status, r.matched, r.priority, r.start_by] for r in self.model.requests.values()}
        assert {pk: list(v) for pk, v in got.items()} == expected
        for request in self.model.requests.values():
            placed = sum(
                m.replicas for m in self.model.matches.values() if m.request == request.id and m.status != "failed"
            )
            assert placed == request.matched <= request.replicas, request
            assert request.status == self.model.request_status(request), request

    @invariant()
    def matches_and_settlements_agree(self):
        assert dict(Match.objects.values_list("pk", "status")) == {m.id: m.status for m in self.model.matches.values()}
        settled = list(Settlement.objects.values_list("match_id", flat=True))
        assert sorted(settled) == sorted(m.id for m in self.model.matches.values() if m.kept is not None)

    @invariant()
    def voucher_money_agrees(self):
        model = self.model
        spent = dict(Voucher.objects.filter(pk__in=model.vouchers).values_list("pk", "spent"))
        assert spent == {v: model.voucher_spent(v) for v in model.vouchers}
        for voucher in model.vouchers.values():
            assert voucher.cap is None or spent[voucher.id] <= voucher.cap
        ledger = defaultdict(Decimal)
        rows = VoucherLedgerEntry.objects.filter(program_id__in=model.programs).values_list("program_id", "kind")
        for program_id, kind, total in rows.annotate(total=Sum("amount")):
            ledger[program_id] += total if kind == "reserve" else -total
        for program_id, remaining in VoucherProgram.objects.filter(pk__in=model.programs).values_list(
            "pk", "remaining_budget"
        ):
            budget = model.programs[program_id].budget
            assert remaining == budget - model.program_spent(program_id) == budget - ledger[program_id] >= 0

    # --- helpers --------------------------------------------------------------------------------

    def _client(self, actor: str):
        parties = self.market.buyers if actor.startswith("buyer") else self.market.providers
        return parties[int(actor[-1])].client

    def _take_match(self, row: Match, shard: str) -> None:
        """Check one new match against the rules and the model's state before it, then record it."""
        model = self.model
        request, listing = model.requests[row.request_id], model.listings[row.listing_id]
        assert request.gpu_model == shard, request
        assert request.status in OPEN, request
        assert request.start_by >= model.now, request
        assert model.infeasible(request, listing) is None, (model.infeasible(request, listing), request, listing)
        assert row.replicas <= request.replicas - request.matched, (row, request)
        assert (row.gpus_per_replica, row.gpus, len(row.nodes)) == (
            request.size,
            row.replicas * request.size,
            row.replicas,
        )
        use = model.node_use(listing.id)
        for node in row.nodes:
            use[node] += request.size
        assert all(gpus <= listing.gpus_per_node for gpus in use), (row.nodes, use, listing)
        rtt = model.rtt[request.origin, listing.region]
        assert (row.price_per_gpu_hour, row.rtt_ms) == (listing.price, rtt)
        starts_at = max(model.now, listing.available_from)
        assert (row.starts_at, row.ends_at) == (starts_at, starts_at + timedelta(hours=request.duration))
        self._check_subsidy(row, request, listing)
        model.matches[row.pk] = MatchM(
            id=row.pk,
            request=request.id,
            listing=listing.id,
            replicas=row.replicas,
            size=row.gpus_per_replica,
            nodes=list(row.nodes),
            price=row.price_per_gpu_hour,
            subsidy=row.subsidy_per_gpu_hour,
            voucher=row.voucher_id,
            duration=request.duration,
            starts_at=row.starts_at,
            ends_at=row.ends_at,
        )
        request.matched += row.replicas
        request.status = model.request_status(request)

    def _check_subsidy(self, row: Match, request: RequestM, listing: ListingM) -> None:
        """A subsidy only from the request's voucher, while valid, on an eligible listing, at most the
        programme's percent of the price (to 0.0001 CNY, rounded down)."""
        if not row.subsidy_per_gpu_hour:
            assert row.voucher_id is None, row
            return
        assert request.voucher is not None, row
        assert row.voucher_id == request.voucher, row
        program = self.model.programs[self.model.vouchers[request.voucher].program]
        assert program.valid_at(self.model.now), "a subsidy from a programme outside its window"
        assert not program.regions or listing.region in program.regions, "a subsidy on an ineligible region"
        full = (listing.price * program.percent / 100).quantize(FOUR, rounding=ROUND_DOWN)
        assert 0 < row.subsidy_per_gpu_hour <= full, (row.subsidy_per_gpu_hour, full)

    def _full_rate(self, match: MatchM) -> Decimal:
        """The programme's full subsidy per GPU-hour for this match, or 0 where it does not apply."""
        request, listing = self.model.requests[match.request], self.model.listings[match.listing]
        if request.voucher is None:
            return Decimal(0)
        program = self.model.programs[self.model.vouchers[request.voucher].program]
        if not program.valid_at(self.model.now) or (program.regions and listing.region not in program.regions):
            return Decimal(0)
        return (listing.price * program.percent / 100).quantize(FOUR, rounding=ROUND_DOWN)

    def _check_subsidy_paid_while_affordable(self, rows: list[Match], before: dict[int, Decimal]) -> None:
        """Each programme pays the round's matches their full rate, or all it had left (less each
        match's rate rounded down to 0.0001 CNY): a voucher with money is never passed over.

        ``before``: each programme's remaining budget before the round. A voucher's own cap bounds
        what its matches are due."""
        model = self.model
        due, paid, slack = defaultdict(Decimal), defaultdict(Decimal), defaultdict(Decimal)
        for voucher_id in {model.requests[row.request_id].voucher for row in rows} - {None}:
            voucher = model.vouchers[voucher_id]
            mine = [model.matches[row.pk] for row in rows if model.requests[row.request_id].voucher == voucher_id]
            full = sum((self._full_rate(m) * m.gpus * m.duration for m in mine), Decimal(0))
            cap_left = (
                None
                if voucher.cap is None
                else voucher.cap - model.voucher_spent(voucher_id) + sum((m.reserved for m in mine), Decimal(0))
            )
            due[voucher.program] += full if cap_left is None else min(full, cap_left)
            paid[voucher.program] += sum((m.reserved for m in mine), Decimal(0))
            slack[voucher.program] += sum((FOUR * m.gpus * m.duration for m in mine), Decimal(0))
            for m in mine:
                self.tally(f"voucher match: {'subsidised' if m.subsidy else 'no subsidy'}")
        for program_id, owed in due.items():
            assert paid[program_id] >= min(owed, before[program_id]) - slack[program_id], (program_id, owed, paid)

    def _check_no_cheaper_free_slot(self, rows: list[Match], before: dict[int, Decimal]) -> None:
        """No replica the round placed without any subsidy to be had could sit more cheaply on a slot
        still free: the engine's cost (price + latency weight × RTT per GPU-hour) is minimal.

        Only requests that can draw no subsidy (no voucher, its programme outside its window or
        spent) are checked, so the cost is the engine's own without budgets in play."""
        model = self.model
        for row in rows:
            request, listing = model.requests[row.request_id], model.listings[row.listing_id]
            if request.voucher is not None:
                program = model.programs[model.vouchers[request.voucher].program]
                if program.valid_at(model.now) and before[program.id] > 0:
                    continue
            cost = self._cost(request, listing)
            for other in model.listings.values():
                if other.id == listing.id or model.infeasible(request, other) is not None:
                    continue
                free = any(other.gpus_per_node - use >= request.size for use in model.node_use(other.id))
                assert not (free and self._cost(request, other) < cost), (
                    f"match {row.pk} of request {request.id} on listing {listing.id} at {cost}/GPU-h while "
                    f"listing {other.id} has room at {self._cost(request, other)}"
                )

    def _cost(self, request: RequestM, listing: ListingM) -> Decimal:
        """The engine's cost per GPU-hour of an edge without subsidy: price + latency weight × RTT."""
        return (
            listing.price
            + default_latency_weight(request.latency_class) * self.model.rtt[request.origin, listing.region]
        )

    def _check_nothing_left_to_place(self, shard: str) -> None:
        """After a round, no open request of the shard fits a free slot it may use: the engine
        serves as many replicas as it can (its objective's first term)."""
        model = self.model
        for request in model.requests.values():
            if request.gpu_model != shard or not model.placeable(request) or request.matched == request.replicas:
                continue
            for listing in model.listings.values():
                if model.infeasible(request, listing) is None:
                    use = model.node_use(listing.id)
                    fits = any(listing.gpus_per_node - gpus >= request.size for gpus in use)
                    assert not fits, f"request {request.id} left unserved beside free nodes of listing {listing.id}"


def test_the_market_agrees_with_its_reference_model(market):
    """Submit / list / match / cancel / redeem / withdraw in any order: no divergence from the model."""
    machine = type("Market", (MarketMachine,), {"market": market})
    MarketMachine.examples, MarketMachine.steps, MarketMachine.seen = 0, 0, Counter()
    started = time.perf_counter()
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=scale(100, 1000),
            stateful_step_count=20,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
    elapsed = time.perf_counter() - started
    print(f"model test: {MarketMachine.examples} examples, {MarketMachine.steps} steps in {elapsed:.1f} s")
    for what, count in sorted(MarketMachine.seen.items()):
        print(f"  {what}: {count}")


def test_an_expired_voucher_does_not_steer_placement(market):
    """Regression: once its programme's window had closed, a request's voucher still entered the
    engine's costs, so the round placed it where the dead 30 % subsidy looked cheapest (Qingyang
    at 7.50) and the buyer paid full price there while a 6.00 listing next to Shanghai sat free."""
    provider, buyer = market.providers[0], market.buyers[0]
    for region, price in (("gansu-qingyang", "7.5000"), ("yrd-qingpu-wujiang-jiashan", "6.0000")):
        body = {"region": region, "gpu_model": "h20", "gpu_count": 8, "gpus_per_node": 8, "price_per_gpu_hour": price}
        assert provider.client.post("/api/v1/listings/", body, format="json").status_code == 201
    city = next(v for v in market.vouchers.values() if v.holder == buyer.index)  # Qingyang's, 2 h
    order = {"gpu_model": "h20", "gpus_per_replica": 1, "replicas": 1, "origin": "shanghai"}
    order |= {"max_price_per_gpu_hour": "9.5000", "duration_hours": 1, "voucher_code": city.code}
    assert buyer.client.post("/api/v1/requests/", order, format="json").status_code == 201
    market_clock_advance(by=timedelta(hours=6))
    round_run(shard="h20", trigger="manual")
    match = Match.objects.select_related("listing__region").get()
    assert (match.listing.region.code, match.price_per_gpu_hour) == ("yrd-qingpu-wujiang-jiashan", Decimal("6.0000"))
    assert (match.subsidy_per_gpu_hour, match.voucher_id) == (Decimal(0), None)
