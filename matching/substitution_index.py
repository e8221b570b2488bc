"""Where each alternative of each inference demand may place replicas, and at what cost per token.

Pure Python + numpy, no Django. The rules are the GPU form's (:func:`matching.costs.blocking_rule`,
checked in the same order): the alternative's GPU model (and its measured ``listing_ids`` when it
has them), node size, RTT within the alternative's bound, price within its per-replica cap,
reliability, window (start by ``start_by``, the whole duration inside the listing's window) and a
node with ``gpus_per_replica`` free GPUs. A single replica must also fit the demand's budget.

Money is integer units of 0.0001 CNY (:data:`matching.costs.UNITS_PER_CNY`). An inference placement
costs the engine what the buyer pays: price − subsidy per GPU-hour (no latency weight: the TTFT
target is the buyer's whole latency value).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

import numpy as np
from numpy.typing import NDArray

from matching import costs
from matching.graph.edges import HOUR_US, us_since
from matching.problem import InferenceAlternative, InferenceDemand, Problem

#: Blocking stages of an alternative, in the order they are checked (the index of the first one
#: that leaves no listing is the alternative's stage; ``OPEN``: some listing passes them all).
STAGES = ("none_listed", "node_size", "too_far", "price", "reliability", "window", "node_free", "budget")
OPEN = len(STAGES)
NONE_LISTED, NODE_SIZE, TOO_FAR, PRICE, RELIABILITY, WINDOW, NODE_FREE, BUDGET = range(len(STAGES))


@dataclass
class Candidates:
    """The listings one alternative of one demand may use, cheapest per token first.

    ``stage`` is :data:`OPEN` when ``listings`` is not empty, else the index in :data:`STAGES` of
    the rule that emptied it; ``nearest`` (region, RTT ms) and ``cheapest`` (price units within
    the bound) describe the block.
    """

    alt: int
    listings: NDArray[np.int64]
    cost: NDArray[np.int64]  # price − subsidy per GPU-hour, units
    price: NDArray[np.int64]  # price per GPU-hour, units
    rtt: NDArray[np.float64]
    stage: int = OPEN
    nearest: tuple[str, float] | None = None
    cheapest: int | None = None

    @property
    def count(self) -> int:
        """How many listings the alternative may use."""
        return len(self.listings)

    @property
    def first_cost(self) -> int:
        """The cheapest listing's cost per GPU-hour, units (0 when there is none)."""
        return int(self.cost[0]) if len(self.cost) else 0


def first_per_token(first_cost: int, alt: InferenceAlternative) -> float:
    """What a replica of ``alt`` costs per token/s at its cheapest listing, units per hour:
    ``first_cost`` (per GPU-hour) × GPUs ÷ tokens/s, an int over a float
    (:attr:`matching.substitution_batch.Batch.first_per_token` is the same over every pair)."""
    return first_cost * alt.gpus_per_replica / alt.tokens_per_second_per_replica


@dataclass
class Index:
    """Column arrays of the listings and the free GPUs per node left for inference demand."""

    problem: Problem
    free: list[list[int]]
    regions: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        lsts, now = self.problem.listings, self.problem.now
        origins = {d.origin for d in self.problem.inference}
        self.regions = sorted(origins | {x.region for x in lsts})
        rix = {code: k for k, code in enumerate(self.regions)}
        self.rix = rix
        self.rtt = np.full((len(self.regions), len(self.regions)), np.inf)
        for origin in origins:
            for region in {x.region for x in lsts}:
                value = costs.rtt_between(self.problem.rtt_ms, origin, region)
                if value is not None:
                    self.rtt[rix[origin], rix[region]] = value
        self.ids = np.array([x.id for x in lsts], dtype=np.int64)
        self.region = np.array([rix[x.region] for x in lsts], dtype=np.int64)
        self.gpn = np.array([x.gpus_per_node for x in lsts], dtype=np.int64)
        self.price = np.array([costs.money_units(x.price_per_gpu_hour) for x in lsts], dtype=np.int64)
        self.reliability = np.array([costs.reliability_units(x.reliability) for x in lsts], dtype=np.int64)
        self.start = np.array([max(0, us_since(now, x.available_from)) for x in lsts], dtype=np.int64)
        self.until = np.array([us_since(now, x.available_until) for x in lsts], dtype=np.int64)
        self.max_free = np.array([max(f, default=0) for f in self.free], dtype=np.int64)
        models = np.array([x.gpu_model for x in lsts], dtype=object)
        self.by_model: dict[str, NDArray[np.int64]] = {
            model: np.flatnonzero(models == model).astype(np.int64) for model in sorted({x.gpu_model for x in lsts})
        }
        self._subsidy: dict[tuple[object, ...], NDArray[np.int64]] = {}
        # Shared by every demand without a voucher (read only; not flagged so: numba compiles a
        # read-only array as another type).
        self._no_subsidy = np.zeros(len(lsts), dtype=np.int64)
        self._cache: dict[tuple[object, ...], Candidates] = {}
        self._units: dict[Decimal, int] = {}

    def units(self, value: Decimal) -> int:
        """:func:`matching.costs.money_units`, cached by value."""
        got = self._units.get(value)
        if got is None:
            got = self._units[value] = costs.money_units(value)
        return got

    def subsidy(self, demand: InferenceDemand) -> NDArray[np.int64]:
        """Full voucher subsidy per GPU-hour of ``demand`` on every listing, units (0: none)."""
        v = demand.voucher
        if v is None:
            return self._no_subsidy
        key = (v.percent, v.eligible_regions, v.eligible_providers, v.eligible_gpu_models)
        if key not in self._subsidy:
            self._subsidy[key] = np.array(
                [costs.money_units(costs.subsidy_per_gpu_hour(v, x)) for x in self.problem.listings], dtype=np.int64
            )
        return self._subsidy[key]

    def candidates(self, demand: InferenceDemand, k: int) -> Candidates:
        """The listings alternative ``k`` of ``demand`` may use (initial free capacity), by cost per
        token (cost × GPUs ÷ tokens/s, equal within one alternative to cost), then listing index."""
        alt = demand.alternatives[k]
        key = (demand.origin, alt, demand.start_by, demand.duration_hours, demand.min_reliability, demand.voucher)
        c = self._cache.get(key)
        if c is None:
            c = self._candidates(demand, alt)
            self._cache[key] = c
        if c.stage == OPEN:  # the budget is the demand's own: one replica must fit it
            fits = c.price * alt.gpus_per_replica <= costs.money_units(demand.budget_per_hour)
            if not fits.any():
                return Candidates(
                    k, c.listings[:0], c.cost[:0], c.price[:0], c.rtt[:0], BUDGET, cheapest=int(c.price.min())
                )
            if not fits.all():
                return Candidates(k, c.listings[fits], c.cost[fits], c.price[fits], c.rtt[fits])
        return Candidates(k, c.listings, c.cost, c.price, c.rtt, c.stage, c.nearest, c.cheapest)

    def _candidates(self, demand: InferenceDemand, alt: InferenceAlternative) -> Candidates:
        empty_i, empty_f = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=float)

        def blocked(stage: int, **extra: object) -> Candidates:
            return Candidates(-1, empty_i, empty_i, empty_i, empty_f, stage, **extra)  # type: ignore[arg-type]

        lsts = self.by_model.get(alt.gpu_model, empty_i)
        if alt.listing_ids is not None:
            lsts = lsts[np.isin(self.ids[lsts], np.array(alt.listing_ids, dtype=np.int64))]
        if alt.tokens_per_second_per_replica <= 0 or alt.gpus_per_replica <= 0 or not len(lsts):
            return blocked(STAGES.index("none_listed"))
        size = alt.gpus_per_replica
        lsts = lsts[self.gpn[lsts] >= size]
        if not len(lsts):
            return blocked(STAGES.index("node_size"))
        rtt = self.rtt[self.rix[demand.origin], self.region[lsts]]
        near = np.isfinite(rtt) & (rtt <= alt.rtt_bound_ms)
        if not near.any():
            finite = np.isfinite(rtt)
            nearest = None
            if finite.any():
                m = int(np.argmin(np.where(finite, rtt, np.inf)))
                nearest = (self.regions[int(self.region[lsts[m]])], float(rtt[m]))
            return blocked(STAGES.index("too_far"), nearest=nearest)
        lsts, rtt = lsts[near], rtt[near]
        ok = self.price[lsts] <= costs.money_units(alt.max_price_per_gpu_hour)
        if not ok.any():
            return blocked(STAGES.index("price"), cheapest=int(self.price[lsts].min()))
        lsts, rtt = lsts[ok], rtt[ok]
        ok = self.reliability[lsts] >= costs.reliability_units(demand.min_reliability)
        if not ok.any():
            return blocked(STAGES.index("reliability"))
        lsts, rtt = lsts[ok], rtt[ok]
        start_by = us_since(self.problem.now, demand.start_by)
        hours = demand.duration_hours * HOUR_US
        ok = (self.start[lsts] <= start_by) & (self.start[lsts] + hours <= self.until[lsts])
        if not ok.any():
            return blocked(STAGES.index("window"))
        lsts, rtt = lsts[ok], rtt[ok]
        ok = self.max_free[lsts] >= size
        if not ok.any():
            return blocked(STAGES.index("node_free"))
        lsts, rtt = lsts[ok], rtt[ok]
        price = self.price[lsts]
        cost = price - self.subsidy(demand)[lsts]
        order = np.lexsort((lsts, cost))
        return Candidates(-1, lsts[order], cost[order], price[order], rtt[order])
