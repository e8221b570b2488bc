"""Why each match was chosen, and what blocked each unserved request, in words and JSON.

Cost is bounded: alternatives are the cheapest listing of each region for the request's (GPU model,
origin), precomputed once per pair (at most one entry per region), so an explanation costs
O(regions), never O(listings). Unserved reasons use numpy over the model's listings.
"""

from __future__ import annotations

from collections.abc import Hashable
from datetime import datetime
from decimal import Decimal

import numpy as np

from matching import costs
from matching.graph.edges import HOUR_US, Arrays
from matching.problem import Assignment, Blocked, Explanation, Problem, Rejected, RequestSpec

#: At most this many cheaper alternatives per explanation.
MAX_REJECTED = 5


class ExplainIndex:
    """Per-model listing lists and per (model, origin) cheapest-per-region alternatives."""

    def __init__(self, problem: Problem, arrays: Arrays, residual: list[list[int]] | None = None) -> None:
        self.problem, self.arrays = problem, arrays
        self.residual = residual if residual is not None else [list(x.node_free) for x in problem.listings]
        self.by_model = {int(m): np.flatnonzero(arrays.listing_model == m) for m in np.unique(arrays.listing_model)}
        self._alternatives: dict[tuple[int, int], list[int]] = {}
        self._by_region: dict[int, list[int]] = {}
        self._rejected: dict[int, list[tuple[int, Rejected]]] = {}
        # Plain lists: scalar indexing of numpy arrays costs ~10x more in these per-entry paths.
        self.price: list[int] = arrays.listing_price.tolist()
        self.listing_region: list[int] = arrays.listing_region.tolist()
        self.listing_gpus_per_node: list[int] = arrays.listing_gpus_per_node.tolist()
        self.listing_start: list[int] = arrays.listing_start.tolist()
        self.listing_until: list[int] = arrays.listing_until.tolist()
        self.listing_reliability: list[int] = arrays.listing_reliability.tolist()
        self.request_min_reliability: list[int] = arrays.request_min_reliability.tolist()
        self.rtt_rows: list[list[float]] = arrays.rtt.tolist()
        self.subsidy: list[list[int]] = arrays.subsidy_units.tolist()
        self.latency: list[list[list[int]]] = arrays.latency_units.tolist()
        self.request_origin: list[int] = arrays.request_origin.tolist()
        self.request_size: list[int] = arrays.request_size.tolist()
        self.request_bound: list[float] = arrays.request_bound.tolist()
        self.request_cap: list[int] = arrays.request_cap.tolist()
        self.request_start_by: list[int] = arrays.request_start_by.tolist()
        self.request_duration_hours: list[int] = arrays.request_duration_hours.tolist()
        self.request_weight: list[int] = arrays.request_weight.tolist()
        self.request_voucher: list[int] = arrays.request_voucher.tolist()
        self.request_model: list[int] = arrays.request_model.tolist()
        # Largest free block per listing, initially and after the round (a replica needs one node).
        self.max_free = [max(x.node_free, default=0) for x in problem.listings]
        self.max_residual = [max(f, default=0) for f in self.residual]
        self._price_text: dict[int, str] = {}
        # Caches: money units by value; texts (money, ISO times, reasons) by tagged key; shared entries.
        self._units: dict[tuple[str, Decimal], int] = {}
        self._text: dict[tuple[Hashable, ...], str] = {}
        self._entries: dict[tuple[str, int, float, float | None], Rejected] = {}

    def alternatives(self, model: int, origin: int) -> list[int]:
        """The cheapest listing of each region (by price, then id), cheapest region first."""
        key = (model, origin)
        if key not in self._alternatives:
            self._alternatives[key] = self._cheapest_per_region(model)
        return self._alternatives[key]

    def _cheapest_per_region(self, model: int) -> list[int]:
        lsts = self.by_model.get(model, np.zeros(0, dtype=np.int64))
        if model not in self._by_region:
            a = self.arrays
            ids = np.array([self.problem.listings[j].id for j in lsts.tolist()], dtype=np.int64)
            ranked = lsts[np.lexsort((ids, a.listing_price[lsts]))]  # by price, then id
            _, first = np.unique(a.listing_region[ranked], return_index=True)  # cheapest of each region
            best = ranked[first]
            self._by_region[model] = best[np.lexsort((a.listing_region[best], a.listing_price[best]))].tolist()
        return self._by_region[model]

    def rtt(self, i: int, j: int) -> float | None:
        value = self.rtt_rows[self.request_origin[i]][self.listing_region[j]]
        return value if value != float("inf") else None

    def units(self, value: Decimal) -> int:
        """:func:`matching.costs.money_units`, cached by value."""
        key = ("units", value)
        if key not in self._units:
            self._units[key] = costs.money_units(value)
        return self._units[key]

    def money_text(self, units: int) -> str:
        """``units`` (0.0001 CNY) as :func:`matching.costs.fmt_cny` writes it, cached."""
        key = ("cny", units)
        if key not in self._text:
            self._text[key] = costs.fmt_cny(costs.from_units(units))
        return self._text[key]

    def iso(self, when: datetime) -> str:
        key = ("iso", when)
        if key not in self._text:
            self._text[key] = costs.utc_text(when)
        return self._text[key]

    def latency_text(self, weight: Decimal, rtt_ms: float) -> str:
        key = ("latency", weight, rtt_ms)
        if key not in self._text:
            self._text[key] = costs.money_text(costs.latency_cost_per_gpu_hour(weight, rtt_ms))
        return self._text[key]

    def price_text(self, j: int) -> str:
        if j not in self._price_text:
            self._price_text[j] = costs.money_text(costs.from_units(self.price[j]))
        return self._price_text[j]

    def cost_units(self, i: int, j: int) -> int:
        """Edge cost per GPU-hour in 0.0001 CNY, as :func:`matching.costs.edge_cost` computes it."""
        latency = self.latency[self.request_weight[i]][self.request_origin[i]][self.listing_region[j]]
        return self.price[j] - self.subsidy[self.request_voucher[i]][j] + latency

    def rejected(self, i: int, used: set[int], cost: Decimal) -> list[tuple[int, Rejected]]:
        """(price units, entry) for alternatives of request ``i`` priced below the dearest listing
        it uses (``used``; ``cost``: its dearest cost per GPU-hour).

        Computed once per request (for its dearest assignment) and filtered per assignment.
        """
        if i not in self._rejected:
            out: list[tuple[int, Rejected]] = []
            cost_units = self.units(cost)
            below_units = max(self.price[j] for j in used)
            for j in self.alternatives(self.request_model[i], self.request_origin[i]):
                if self.price[j] >= below_units or len(out) == MAX_REJECTED + len(used):
                    break
                if j not in used:
                    out.append((self.price[j], self._entry(i, j, cost_units)))
            self._rejected[i] = out
        return self._rejected[i]

    def _entry(self, i: int, j: int, cost: int) -> Rejected:
        rtt = self.rtt(i, j)
        if rtt is not None and rtt > self.request_bound[i] and self.listing_gpus_per_node[j] >= self.request_size[i]:
            # Beyond the request's bound: the entry depends on nothing else, and is the commonest
            # (cheap western listings too far for a real-time request), so it is built once and shared.
            key = ("entry", j, rtt, self.problem.requests[i].max_rtt_ms)
            if key not in self._entries:
                self._entries[key] = self._entry_of(j, rtt, self._infeasible(i, j, rtt))
            return self._entries[key]
        reason = _why_not(self, i, j, cost) if self._quick_feasible(i, j, rtt) else self._infeasible(i, j, rtt)
        return self._entry_of(j, rtt, reason)

    def _entry_of(self, j: int, rtt: float | None, reason: str) -> Rejected:
        listing = self.problem.listings[j]
        return {
            "region": listing.region,
            "listing_id": listing.id,
            "price_per_gpu_hour": self.price_text(j),
            "rtt_ms": rtt,
            "reason": reason,
        }

    def _infeasible(self, i: int, j: int, rtt: float | None) -> str:
        """:func:`matching.costs.infeasibility` of an alternative (same model), checked in the same
        order on integers, with the commonest texts (RTT bound, price cap) cached."""
        request, listing = self.problem.requests[i], self.problem.listings[j]
        if rtt is None or self.listing_gpus_per_node[j] < self.request_size[i]:
            return _known(costs.infeasibility(request, listing, rtt, self.problem.now))
        key: tuple[Hashable, ...]
        if rtt <= self.request_bound[i] and self.price[j] <= self.request_cap[i]:
            if self.listing_reliability[j] < self.request_min_reliability[i]:
                return _known(costs.reliability_reason(request, listing))
            key = ("window", j, self.request_start_by[i], self.request_duration_hours[i], self.request_size[i])
            if key not in self._text:  # what it depends on, of the request
                self._text[key] = _known(costs.window_or_capacity_reason(request, listing, self.problem.now))
            return self._text[key]
        if request.max_rtt_ms is not None and rtt > self.request_bound[i]:  # (the bound is inf when max_rtt_ms is None)
            key = ("rtt", listing.region, rtt, request.max_rtt_ms)
            if key not in self._text:
                self._text[key] = f"{listing.region}: {costs.fmt_ms(rtt)} > {costs.fmt_ms(request.max_rtt_ms)} bound"
            return self._text[key]
        return f"price {self.money_text(self.price[j])} > cap {self.money_text(self.request_cap[i])}"

    def _quick_feasible(self, i: int, j: int, rtt: float | None) -> bool:
        """The cheap integer pre-check of :func:`matching.costs.infeasibility` (same rules)."""
        size = self.request_size[i]
        if rtt is None or rtt > self.request_bound[i] or self.listing_gpus_per_node[j] < size:
            return False
        if self.price[j] > self.request_cap[i] or self.listing_reliability[j] < self.request_min_reliability[i]:
            return False
        start = self.listing_start[j]
        if start > self.request_start_by[i] or start + self.request_duration_hours[i] * HOUR_US > self.listing_until[j]:
            return False
        return self.max_free[j] >= size


def explain_assignment(index: ExplainIndex, i: int, a: Assignment, used: set[int], dearest: Decimal) -> Explanation:
    """JSON-ready explanation of assignment ``a`` of request index ``i``.

    ``used`` holds the listing indices this request was placed on (so they are not "rejected");
    ``dearest`` is the highest cost per GPU-hour among the request's assignments.
    """
    request = index.problem.requests[i]
    voucher = request.voucher
    below = index.units(a.price_per_gpu_hour)
    rejected = index.rejected(i, used, dearest)
    return {
        "region": a.region,
        "listing_id": a.listing_id,
        "replicas": a.replicas,
        "gpus": a.gpus,
        "price_per_gpu_hour": costs.money_text(a.price_per_gpu_hour),
        "energy_cost_per_gpu_hour": costs.money_text(a.energy_cost_per_gpu_hour),
        "subsidy_per_gpu_hour": costs.money_text(a.subsidy_per_gpu_hour),
        "voucher_program": voucher.program if voucher and a.subsidy_per_gpu_hour > 0 else "",
        "latency_cost_per_gpu_hour": index.latency_text(request.latency_weight, a.rtt_ms),
        "cost_per_gpu_hour": costs.money_text(a.cost_per_gpu_hour),
        "rtt_ms": a.rtt_ms,
        "latency_class": str(a.latency_class),
        "bound_ms": request.max_rtt_ms,
        "starts_at": index.iso(a.starts_at),
        "rejected": [entry for p, entry in rejected if p < below][:MAX_REJECTED],
    }


def _known(reason: str | None) -> str:
    """The reason of an alternative the integer checks found infeasible. :mod:`matching.costs` always
    has one for it (the same rules on the same values), so ``None`` would be a bug."""
    if reason is None:
        raise AssertionError("matching.costs finds feasible an alternative the integer checks rejected")
    return reason


def _why_not(index: ExplainIndex, i: int, j: int, chosen_units: int) -> str:
    """Reason a feasible, cheaper-priced listing was not used (``chosen_units``: 0.0001 CNY)."""
    cost = index.cost_units(i, j)
    if cost >= chosen_units:
        region = index.problem.listings[j].region
        return f"{region}: costs {index.money_text(cost)} with latency and subsidy, not less"
    if index.max_residual[j] >= index.request_size[i]:
        return "not chosen by the packing heuristic"
    return "full: capacity taken by higher-priority or cheaper-placed requests"


def unserved_reason(index: ExplainIndex, i: int, placed: int, has_edge: bool) -> tuple[str, Blocked]:
    """What blocked the unplaced replicas of request index ``i``: in words, and as data."""
    request = index.problem.requests[i]
    if has_edge:
        head = f"{placed} of {request.replicas} replicas placed; " if placed else ""
        return head + "capacity taken by higher-priority or cheaper-placed requests", Blocked(kind="capacity")
    return _blocked(index, i, request)


def _blocked(index: ExplainIndex, i: int, r: RequestSpec) -> tuple[str, Blocked]:
    a, model = index.arrays, r.gpu_model
    lsts = index.by_model.get(int(a.request_model[i]), np.zeros(0, dtype=np.int64))
    if not len(lsts):
        return f"no {model} listed", Blocked(kind="none_listed")
    lsts = lsts[a.listing_gpus_per_node[lsts] >= r.gpus_per_replica]
    if not len(lsts):
        return f"no {model} with nodes of >= {r.gpus_per_replica} GPUs", Blocked(kind="node_size")
    rtt = a.rtt[a.request_origin[i], a.listing_region[lsts]]
    near = lsts[np.isfinite(rtt) & (rtt <= a.request_bound[i])]
    where = (
        f"within {costs.fmt_ms(r.max_rtt_ms)} of {r.origin}"
        if r.max_rtt_ms is not None
        else f"reachable from {r.origin}"
    )
    if not len(near):
        k = int(np.argmin(rtt))
        region, nearest_ms = str(a.regions[a.listing_region[lsts[k]]]), float(rtt[k])
        return (
            f"no {model} {where} (nearest: {region} at {costs.fmt_ms(nearest_ms)})",
            Blocked(kind="too_far", region=region, rtt_ms=nearest_ms),
        )
    cap = costs.fmt_cny(costs.money(r.max_price_per_gpu_hour))
    cheap = near[a.listing_price[near] <= a.request_cap[i]]
    if not len(cheap):
        lowest = costs.fmt_cny(costs.from_units(int(a.listing_price[near].min())))
        return f"no {model} {where} at <= {cap} CNY (cheapest there: {lowest})", Blocked(kind="price", cheapest=lowest)
    if r.min_reliability is not None:
        cheap = cheap[a.listing_reliability[cheap] >= a.request_min_reliability[i]]
        if not len(cheap):
            need = costs.reliability_text(r.min_reliability)
            return (
                f"no {model} {where} at <= {cap} CNY with reliability >= {need} "
                "(listings with too little history have no score)"
            ), Blocked(kind="reliability")
    fit = cheap[
        (a.listing_start[cheap] <= a.request_start_by[i])
        & (a.listing_start[cheap] + a.request_duration_hours[i] * HOUR_US <= a.listing_until[cheap])
    ]
    if not len(fit):
        by = f"{r.start_by:%Y-%m-%d %H:%M}"
        return (
            f"no {model} {where} at <= {cap} CNY free for {r.duration_hours} h starting by {by} UTC",
            Blocked(kind="window"),
        )
    return (
        f"no {model} {where} at <= {cap} CNY has a node with {r.gpus_per_replica} free GPUs",
        Blocked(kind="node_free"),
    )
