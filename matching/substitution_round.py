"""One inference round's state for :mod:`matching.substitution`: candidates, node pool, placements,
and the two baselines' fills (nearest-first, cheapest-first). Pure Python + numpy."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import NamedTuple, cast

import numpy as np
from numpy.typing import NDArray

from matching import costs
from matching import substitution_select as select
from matching.problem import Problem
from matching.substitution_batch import AnyCandidates, Batch
from matching.substitution_index import OPEN, Index, first_per_token

#: (demand index, alternative index, listing index) → the node of each replica placed there.
Placements = dict[tuple[int, int, int], list[int]]
#: A run's statistics (:func:`matching.substitution.solve_inference` lists them).
Stats = dict[str, int | str | float]


class Pool:
    """Free GPUs per node of every listing, updated as replicas are placed (best fit) or removed."""

    def __init__(self, free: list[list[int]]) -> None:
        self.free = [list(f) for f in free]
        self.max_free = np.array([max(f, default=0) for f in free], dtype=np.int64)
        #: ``free`` as a matrix (listings × most nodes, 0 past a listing's nodes), for compiled code.
        self.nodes = np.zeros((len(free), max((len(f) for f in free), default=0)), dtype=np.int64)
        for j, f in enumerate(free):
            self.nodes[j, : len(f)] = f

    def fits(self, j: int, size: int) -> bool:
        return bool(self.max_free[j] >= size)

    def slots(self, j: int, size: int) -> int:
        """Replicas of ``size`` GPUs listing ``j``'s free nodes hold."""
        return int((self.nodes[j] // size).sum())

    def place(self, j: int, size: int, count: int) -> list[int]:
        """Put up to ``count`` replicas of ``size`` on the fullest nodes that still fit them
        (:func:`matching.packing.transport.best_fit`'s rule, compiled on :attr:`nodes`)."""
        nodes: list[int] = select.best_fit(self.nodes, self.max_free, j, size, count).tolist()
        free = self.free[j]
        for node in nodes:
            free[node] -= size
        return nodes

    def remove(self, j: int, size: int, node: int) -> None:
        """Take a replica of ``size`` off ``node`` of listing ``j``."""
        self._add(j, node, size)

    def take(self, j: int, size: int, node: int) -> None:
        """Put a replica of ``size`` back on ``node`` of listing ``j`` (which has room for it)."""
        self._add(j, node, -size)

    def _add(self, j: int, node: int, gpus: int) -> None:
        self.free[j][node] += gpus
        self.max_free[j] = max(self.free[j])
        self.nodes[j, node] += gpus


def replicas_below(target: float, placed: float, tps: float) -> int:
    """How many replicas of ``tps`` may still be placed: each only while placed tokens/s < target."""
    if placed >= target or tps <= 0:
        return 0
    n = max(1, math.ceil((target - placed) / tps))
    while n > 1 and placed + (n - 1) * tps >= target:
        n -= 1
    while placed + n * tps < target:
        n += 1
    return n


class Ranking(NamedTuple):
    """Every demand's alternatives with a listing, ranked (:meth:`Round.ranked_options`): where each
    demand's start (and, last, where they end), the pairs' numbers, and the arrays
    :meth:`Round.ranked_arrays` views."""

    at: NDArray[np.int64]
    pairs: NDArray[np.int64]
    floats: NDArray[np.float64]
    ints: NDArray[np.int64]


class PlanState(NamedTuple):
    """A round's plan: the node pool, the placements, each demand's placement keys, and each
    demand's tokens/s placed, spend per hour and cost to the engine (:meth:`Round.cost_of`)."""

    pool: Pool
    placements: Placements
    keys: dict[int, set[tuple[int, int, int]]]
    placed: list[float]
    spent: list[int]
    cost: list[int]


@dataclass
class Flat:
    """A demand's options as columns: alternative, listing, cost and price per hour of one replica
    (units), its tokens/s and GPUs."""

    k: NDArray[np.int64]
    j: NDArray[np.int64]
    cost: NDArray[np.int64]
    price: NDArray[np.int64]
    tps: NDArray[np.float64]
    size: NDArray[np.int64]


class Round:
    """One inference round's state: the candidates, the node pool and the placements so far."""

    def __init__(self, problem: Problem, node_free: dict[int, tuple[int, ...]] | None, *, batch: bool = True) -> None:
        """``batch`` False: every pair through the scalar rules (the reference the batch is tested on)."""
        free = [list(x.node_free if node_free is None else node_free.get(x.id, x.node_free)) for x in problem.listings]
        self.problem, self.demands = problem, problem.inference
        self.index = Index(problem, free)
        self.batch = Batch(self.index, self.demands) if batch else None
        self.options: Sequence[Sequence[AnyCandidates]] = (
            self.batch.options
            if self.batch is not None
            else [[self.index.candidates(d, k) for k in range(len(d.alternatives))] for d in self.demands]
        )
        # The plan (:class:`PlanState`; :meth:`clear` starts it): the node pool, the placements,
        # each demand's placement keys, tokens/s placed, spend (price units × GPUs per hour) and
        # cost to the engine (units × GPUs × hours; kept as replicas are placed and taken off).
        self.pool: Pool
        self.placements: Placements
        self.keys: dict[int, set[tuple[int, int, int]]]
        self.placed: list[float]
        self.spent: list[int]
        self.cost: list[int]
        self.clear()
        self.budget = [costs.money_units(d.budget_per_hour) for d in self.demands]
        self.hours = {d.id: d.duration_hours for d in self.demands}
        #: Each demand's most tokens/s in any placement (:func:`matching.substitution_bound.servable`).
        self.servable: NDArray[np.float64] | None = None
        self._ranked: dict[int, list[tuple[float, AnyCandidates]]] = {}
        self._rank: Ranking | None = None
        self._rank_views: list[tuple[NDArray[np.float64], NDArray[np.int64]] | None] | None = None
        self._items: tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.float64], NDArray[np.bool_]] | None = None
        self._frontier: tuple[NDArray[np.int64], list[int]] | None = None

    def option_counts(self) -> list[int]:
        """Each demand's options: (alternative, listing) pairs it may use before the round."""
        if self.batch is None:
            return [sum(c.count for c in opts) for opts in self.options]
        b = self.batch
        counts = np.bincount(b.pair_demand, weights=b.pair_count, minlength=len(self.demands)).astype(np.int64)
        return cast(list[int], counts.tolist())

    def ranked_options(self, i: int) -> list[tuple[float, AnyCandidates]]:
        """Demand ``i``'s alternatives with a listing, each with its cost per token/s of a replica at
        its cheapest listing before the round (units per hour), cheapest first (then alternative
        order): no listing of it costs less on what is left later. Cached (the order is the
        round's, not the plan's)."""
        if i not in self._ranked:
            if self.batch is not None:
                rank = self._ranking()
                lo, hi = rank.at[i], rank.at[i + 1]
                options = self.options[i]
                ks = rank.ints[lo:hi, 3].tolist()
                self._ranked[i] = list(zip(rank.floats[lo:hi, 0].tolist(), [options[k] for k in ks], strict=True))
            else:
                alts = self.demands[i].alternatives
                ranked = sorted(  # (alternatives are unique: no tie reaches the candidates)
                    (first_per_token(c.first_cost, alts[c.alt]), c.alt, c) for c in self.options[i] if c.count
                )
                self._ranked[i] = [(first, c) for first, _, c in ranked]
        return self._ranked[i]

    def _ranking(self) -> Ranking:
        """:meth:`ranked_options` for every demand at once, from the batch's pair columns."""
        if self._rank is None:
            b = cast(Batch, self.batch)
            has = np.flatnonzero(b.pair_count > 0)
            first = b.first_per_token[has]
            # Each demand's by (cost per token/s, alternative): its pairs are in alternative order.
            at = np.searchsorted(b.pair_demand[has], np.arange(len(self.demands) + 1))
            g = has[select.sort_segments(at, first, first)]
            floats = np.stack([b.first_per_token[g], b.pair_tokens[g]], axis=1)
            ints = np.stack([b.pair_row[g], b.pair_model[g], b.pair_gpus[g], b.pair_alt[g]], axis=1)
            self._rank = Ranking(at, g, floats, ints)
        return self._rank

    def cheapest_item_arrays(
        self,
    ) -> tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.float64], NDArray[np.bool_]]:
        """Every demand's :func:`matching.substitution_bound.cheapest_items` as columns, demand by
        demand: demand, cost × hours, tokens/s, and whether the batch matrices do not hold the
        alternative. Made once."""
        if self._items is None:
            b, hours = cast(Batch, self.batch), np.array([d.duration_hours for d in self.demands], dtype=np.int64)
            has = np.flatnonzero(b.pair_count > 0)
            d, tps = b.pair_demand[has], b.pair_tokens[has]
            # In Python's order of operations: float(cost) × GPUs × hours.
            cost = b.pair_first_cost[has].astype(np.float64) * b.pair_gpus[has] * hours[d]
            # Each demand's by (cost per token/s, cost, alternative): its pairs are in alternative order.
            at = np.searchsorted(d, np.arange(len(self.demands) + 1))
            order = select.sort_segments(at, cost / tps, cost)
            self._items = (d[order], cost[order], tps[order], b.pair_model[has][order] < 0)
        return self._items

    def frontier(self, i: int) -> list[int] | None:
        """The alternatives of demand ``i`` its explanation's frontier shows, one per GPU model
        (:func:`matching.substitution_explain.alternative_costs`' choice), from the batch's pair
        columns, every demand's at once on first use; None without the batch."""
        b = self.batch
        if b is None:
            return None
        if self._frontier is None:
            k, stage, model, d = b.pair_alt, b.pair_stage, b.pair_gpu_model, b.pair_demand
            is_open = stage == OPEN
            # Open: cost per token/s at the cheapest listing, least first; blocked: the stage
            # reached, furthest first. Then the first alternative.
            value = np.where(is_open, b.first_per_token, -stage.astype(np.float64))
            # Within each demand (its pairs come in alternative order): by model, open first, value.
            group = (model * 2 + ~is_open).astype(np.float64)
            order = select.sort_segments(b.offset, group, value)
            starts = np.flatnonzero(np.diff(d[order] * (int(model.max(initial=0)) + 1) + model[order], prepend=-1))
            chosen = order[starts]
            # Models in the order of their first alternative.
            first_k = np.minimum.reduceat(k[order], starts) if len(starts) else starts
            chosen = chosen[np.lexsort((first_k, d[chosen]))]
            self._frontier = (np.searchsorted(d[chosen], np.arange(len(self.demands) + 1)), k[chosen].tolist())
        at, ks = self._frontier
        return ks[int(at[i]) : int(at[i + 1])]

    def ranked_arrays(self, i: int) -> tuple[NDArray[np.float64], NDArray[np.int64]] | None:
        """:meth:`ranked_options` as arrays for compiled code (:func:`matching.substitution_select.cover_items`):
        (cost per token/s at the cheapest listing, tokens/s per replica) and (row of the batch's bit
        matrix, model number, GPUs per replica, alternative); None when some alternative is not in
        the batch (measured listings, a restricted voucher). Views of arrays made once."""
        if self.batch is None:
            return None
        if self._rank_views is None:
            rank = self._ranking()
            outside = np.bincount(self.batch.pair_demand[rank.pairs[rank.ints[:, 1] < 0]], minlength=len(self.demands))
            self._rank_views = [
                None if outside[n] else (rank.floats[lo:hi], rank.ints[lo:hi])
                for n, (lo, hi) in enumerate(pairwise(rank.at.tolist()))
            ]
        return self._rank_views[i]

    def state(self) -> PlanState:
        """The plan so far, as it is (to :meth:`restore` after :meth:`clear`, which replaces it)."""
        return PlanState(self.pool, self.placements, self.keys, self.placed, self.spent, self.cost)

    def restore(self, state: PlanState) -> None:
        self.pool, self.placements, self.keys, self.placed, self.spent, self.cost = state

    def save(self, group: Sequence[int]) -> dict[int, tuple[Placements, float, int, int]]:
        """What :meth:`put_back` needs to return ``group``'s demands to their placements now, when
        only they have been placed or taken off since (a copy of the whole plan cost ~10 ms at 10k)."""
        return {
            i: (
                {key: list(self.placements[key]) for key in self.keys.get(i, ())},
                self.placed[i],
                self.spent[i],
                self.cost[i],
            )
            for i in group
        }

    def put_back(self, saved: dict[int, tuple[Placements, float, int, int]]) -> None:
        """Return the demands of :meth:`save` to their placements then (their nodes as they were)."""
        for i in saved:
            self.unplace(i)
        for i, (placements, placed, spent, cost) in saved.items():
            alts = self.demands[i].alternatives
            for key in sorted(placements):
                for node in placements[key]:
                    self.pool.take(key[2], alts[key[1]].gpus_per_replica, node)
                self.placements[key] = list(placements[key])
            if placements:
                self.keys[i] = set(placements)
            self.placed[i], self.spent[i], self.cost[i] = placed, spent, cost

    def clear(self) -> None:
        """Back to no placement, on the capacity the round started with."""
        self.pool = Pool(self.index.free)
        self.placements, self.keys = {}, {}
        self.placed = [0.0] * len(self.demands)
        self.spent = [0] * len(self.demands)
        self.cost = [0] * len(self.demands)

    def unplace(self, i: int) -> None:
        """Take every replica of demand ``i`` off its nodes."""
        alts = self.demands[i].alternatives
        for key in sorted(self.keys.pop(i, set())):
            size = alts[key[1]].gpus_per_replica
            for node in self.placements.pop(key):
                self.pool.remove(key[2], size, node)
        self.placed[i], self.spent[i], self.cost[i] = 0.0, 0, 0

    def served(self, i: int) -> float:
        """Demand ``i``'s tokens/s served: min(placed, target)."""
        return min(self.placed[i], self.demands[i].tokens_per_second)

    def arrival_order(self) -> list[int]:
        """Demand indices in the order buyers act: higher priority first, then earlier id."""
        return sorted(range(len(self.demands)), key=lambda i: (-self.demands[i].priority, self.demands[i].id))

    def fill(self, i: int, k: int, j: int, most: int | None = None) -> int:
        """Place as many replicas of alternative ``k`` of demand ``i`` on listing ``j`` as the rules,
        the budget and the free nodes allow (at most ``most``); returns how many."""
        demand, alt = self.demands[i], self.demands[i].alternatives[k]
        size, tps = alt.gpus_per_replica, alt.tokens_per_second_per_replica
        n = replicas_below(demand.tokens_per_second, self.placed[i], tps)
        unit = int(self.index.price[j])
        price = unit * size
        if price > 0:
            n = min(n, (self.budget[i] - self.spent[i]) // price)
        if most is not None:
            n = min(n, most)
        if n <= 0 or not self.pool.fits(j, size):
            return 0
        nodes = self.pool.place(j, size, n)
        if nodes:
            self.placements.setdefault((i, k, j), []).extend(nodes)
            self.keys.setdefault(i, set()).add((i, k, j))
            self.placed[i] += len(nodes) * tps
            self.spent[i] += len(nodes) * price
            if demand.voucher is not None:  # (the engine's cost is the price less the subsidy)
                unit -= int(self.index.subsidy(demand)[j])
            self.cost[i] += unit * size * len(nodes) * demand.duration_hours
        return len(nodes)

    def cost_of(self, i: int) -> int:
        """What demand ``i``'s placements cost the engine so far: (price − subsidy) units × GPUs ×
        hours, summed over its replicas (kept by :meth:`fill` and :meth:`unplace`)."""
        return self.cost[i]

    def flat(self, i: int) -> Flat:
        """Every (alternative, listing) option of demand ``i`` as columns (alternative order)."""
        alts, parts = self.demands[i].alternatives, [c for c in self.options[i] if c.stage == OPEN]
        if not parts:
            z = np.zeros(0, dtype=np.int64)
            return Flat(z, z, z, z, np.zeros(0), z)
        k = np.concatenate([np.full(len(c.listings), c.alt, dtype=np.int64) for c in parts])
        size = np.array([a.gpus_per_replica for a in alts], dtype=np.int64)[k]
        tps = np.array([a.tokens_per_second_per_replica for a in alts], dtype=float)[k]
        cost = np.concatenate([c.cost for c in parts]) * size
        price = np.concatenate([c.price for c in parts]) * size
        return Flat(k, np.concatenate([c.listings for c in parts]), cost, price, tps, size)

    def cheapest_served(self, i: int) -> None:
        """Fill demand ``i`` replica by replica, each time with the option cheapest per token/s it
        adds to what is served (cost ÷ min(its tokens/s, what is still missing)), then fewer CNY,
        alternative and listing order."""
        arrays, batch, target = self.ranked_arrays(i), self.batch, self.demands[i].tokens_per_second
        if arrays is not None and batch is not None:  # all in the batch: picked by compiled code
            subsidy = self.index.subsidy(self.demands[i])
            while self.placed[i] < target:
                missing = target - self.placed[i]
                k, j = select.cheapest_option(
                    batch.bits, batch.cols_table, batch.n_cols, *arrays, self.index.price, subsidy,
                    self.pool.max_free, self.budget[i] - self.spent[i], missing,
                )  # fmt: skip
                if k < 0:
                    return
                tps = self.demands[i].alternatives[k].tokens_per_second_per_replica
                if not self.fill(i, k, j, max(1, int(missing // tps))):
                    return  # cannot happen: the pick fits (kept as a guard against a loop)
            return
        f = self.flat(i)
        while len(f.k) and self.placed[i] < target:
            missing = target - self.placed[i]
            ok = (self.pool.max_free[f.j] >= f.size) & (f.price <= self.budget[i] - self.spent[i])
            if not ok.any():
                return
            (at,) = np.nonzero(ok)
            score = f.cost[at] / np.minimum(f.tps[at], missing)
            best = int(at[np.lexsort((f.j[at], f.k[at], f.cost[at], score))[0]])
            k, j = int(f.k[best]), int(f.j[best])
            most = max(1, int(missing // f.tps[best]))
            if not self.fill(i, k, j, most):
                return  # cannot happen: the pool said it fits (kept as a guard against a loop)

    def fill_in_turn(self, i: int, pairs: Sequence[tuple[int, int]]) -> None:
        for k, j in pairs:
            if self.placed[i] >= self.demands[i].tokens_per_second:
                break
            self.fill(i, k, j)

    def budget_bound(self, i: int) -> bool:
        """A listing with room is left for an open alternative of demand ``i``, but its budget cannot
        pay one more replica there."""
        alts = self.demands[i].alternatives
        left = self.budget[i] - self.spent[i]
        for c in self.options[i]:
            alt = alts[c.alt]
            size = alt.gpus_per_replica
            if c.stage != OPEN or self.index.units(alt.max_price_per_gpu_hour) * size <= left:
                continue  # (every listing it may use is priced within its cap: the budget pays one more)
            if ((self.pool.max_free[c.listings] >= size) & (c.price * size > left)).any():
                return True
        return False


def nearest_policy(rnd: Round) -> None:
    """Each demand in arrival order fills its first-choice alternative from the nearest listing."""
    for i in rnd.arrival_order():
        if not rnd.options[i] or rnd.options[i][0].stage != OPEN:
            continue
        c = rnd.options[i][0]
        order = np.argsort(c.rtt, kind="stable")  # cheapest first among equal RTTs
        rnd.fill_in_turn(i, [(0, int(j)) for j in c.listings[order].tolist()])


def cheapest_policy(rnd: Round) -> None:
    """Each demand in arrival order takes the cheapest per million tokens served first, across
    alternatives (:meth:`Round.cheapest_served`)."""
    for i in rnd.arrival_order():
        rnd.cheapest_served(i)
