"""The rules of :mod:`matching.substitution_index` applied to every (demand, alternative) pair at once.

One bit-packed matrix per GPU model (pairs of that model × its listings, listings by price), built
with the same rules in the same order as :meth:`matching.substitution_index.Index.candidates` (tests
check both agree) by one compiled pass (:func:`matching.substitution_matrix.rules_matrix`). Each
pair's figures are also kept as columns over all pairs (``pair_*``), for work on every pair at once
(:meth:`matching.substitution_round.Round.ranked_options`). Each pair's candidates are made from
those columns when first read (:class:`Options`), and unpacked from its row only when a policy asks
for its listings (:class:`LazyCandidates`); its blocking stage, option count and cheapest cost are
known from the start. Pairs the matrices cannot express
(measured ``listing_ids``, a voucher limited to some regions, providers or GPU models) go through
the scalar path.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Iterator, Sequence
from itertools import chain, repeat
from operator import attrgetter, itemgetter
from typing import cast, overload

import numpy as np
from numpy.typing import NDArray

from matching import cores, costs
from matching.graph.edges import HOUR_US, us_since
from matching.problem import InferenceDemand, VoucherTerms
from matching.substitution_index import BUDGET, OPEN, PRICE, TOO_FAR, Candidates, Index
from matching.substitution_matrix import rules_matrix


class LazyCandidates(tuple):  # type: ignore[type-arg]
    """A pair's candidates (same attributes as :class:`Candidates`), unpacked on first use.

    A tuple (batch, model, row, demand, alt, stage, count, first_cost, nearest, cheapest), made from
    one in C: a round makes one per pair, ~450k at 10k demands, and an object with ``__init__``
    cost a third of the round's set-up. The unpacked candidates are cached by the batch. The batch
    is held by a weak reference: a strong one would make every pair part of a reference cycle
    (batch → options → pair → batch), left for the cyclic collector, whose first pass after the
    solve then walked millions of objects."""

    __slots__ = ()

    @property
    def batch(self) -> Batch:
        batch: Batch | None = self[0]()
        if batch is None:
            raise RuntimeError("the round these candidates belong to is gone")
        return batch

    model: str = property(itemgetter(1))  # type: ignore[assignment]
    row: int = property(itemgetter(2))  # type: ignore[assignment]
    demand: int = property(itemgetter(3))  # type: ignore[assignment]
    alt: int = property(itemgetter(4))  # type: ignore[assignment]
    stage: int = property(itemgetter(5))  # type: ignore[assignment]
    count: int = property(itemgetter(6))  # type: ignore[assignment]
    first_cost: int = property(itemgetter(7))  # type: ignore[assignment]
    nearest: tuple[str, float] | None = property(itemgetter(8))  # type: ignore[assignment]
    cheapest: int | None = property(itemgetter(9))  # type: ignore[assignment]

    def eager(self) -> Candidates:
        batch, key = self.batch, (self.model, self.row)
        got = batch.unpacked.get(key)
        if got is None:
            got = batch.unpacked[key] = batch.unpack(self)
        return got

    @property
    def listings(self) -> NDArray[np.int64]:
        return self.eager().listings

    @property
    def cost(self) -> NDArray[np.int64]:
        return self.eager().cost

    @property
    def price(self) -> NDArray[np.int64]:
        return self.eager().price

    @property
    def rtt(self) -> NDArray[np.float64]:
        return self.eager().rtt

    def __eq__(self, other: object) -> bool:
        return self is other

    def __ne__(self, other: object) -> bool:
        return self is not other

    __hash__ = object.__hash__


AnyCandidates = Candidates | LazyCandidates
_FIELDS = attrgetter(
    "gpu_model", "gpus_per_replica", "tokens_per_second_per_replica", "rtt_bound_ms", "max_price_per_gpu_hour",
    "listing_ids",
)  # fmt: skip


class Options(Sequence[Sequence[AnyCandidates]]):
    """Each demand's candidates, one per alternative (``options[i][k]``), a matrix pair's made when
    first read and kept (so a pair's candidates are one object): a round reads few of its pairs'
    (the explanations read each demand's frontier, ~1 in 6 at 10k demands), and making all ~450k
    at once cost ~0.2 s and ~100 MB. Holds its batch weakly, as the candidates do."""

    __slots__ = ("_batch", "_offset", "slots")

    def __init__(self, batch: weakref.ref[Batch], slots: list[AnyCandidates | None], offset: NDArray[np.int64]) -> None:
        #: Each pair's candidates, None until made.
        self.slots = slots
        self._batch, self._offset = batch, offset.tolist()

    def __len__(self) -> int:
        return len(self._offset) - 1

    @overload
    def __getitem__(self, i: int) -> Sequence[AnyCandidates]: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[Sequence[AnyCandidates]]: ...
    def __getitem__(self, i: int | slice) -> Sequence[AnyCandidates] | Sequence[Sequence[AnyCandidates]]:
        if isinstance(i, slice):
            return [self[n] for n in range(len(self))[i]]
        n = range(len(self))[i]  # (an IndexError past the end, as a list's)
        return DemandOptions(self, self._offset[n], self._offset[n + 1])

    def pair(self, q: int) -> AnyCandidates:
        """Pair ``q``'s candidates (made on first use)."""
        got = self.slots[q]
        if got is None:
            self.make([q])
            got = self.slots[q]
        return cast(AnyCandidates, got)

    def make(self, pairs: list[int]) -> None:
        """Make the candidates of those of ``pairs`` not made yet, at once (one pair at a time costs
        ~2 µs more each: worth it when many will be read, as the explanations' frontier)."""
        slots = self.slots
        todo = [q for q in pairs if slots[q] is None]
        if not todo:
            return
        batch = self._batch()
        if batch is None:
            raise RuntimeError("the round these candidates belong to is gone")
        for q, c in zip(todo, batch.candidates(todo), strict=True):
            slots[q] = c

    def make_demands(self, demands: Iterable[int]) -> None:
        """:meth:`make` every pair of ``demands``."""
        at = self._offset
        self.make([q for i in demands for q in range(at[i], at[i + 1])])


class DemandOptions(Sequence[AnyCandidates]):
    """One demand's candidates (:class:`Options`), pairs ``lo`` to ``hi``."""

    __slots__ = ("_hi", "_lo", "_options")

    def __init__(self, options: Options, lo: int, hi: int) -> None:
        self._options, self._lo, self._hi = options, lo, hi

    def __len__(self) -> int:
        return self._hi - self._lo

    @overload
    def __getitem__(self, k: int) -> AnyCandidates: ...
    @overload
    def __getitem__(self, k: slice) -> list[AnyCandidates]: ...
    def __getitem__(self, k: int | slice) -> AnyCandidates | list[AnyCandidates]:
        if isinstance(k, slice):
            return [self._options.pair(self._lo + n) for n in range(len(self))[k]]
        if 0 <= k < self._hi - self._lo:  # (the common case, read often: no range made)
            got = self._options.slots[self._lo + k]
            return self._options.pair(self._lo + k) if got is None else got
        return self._options.pair(self._lo + range(len(self))[k])

    def __iter__(self) -> Iterator[AnyCandidates]:
        pair = self._options.pair
        for q in range(self._lo, self._hi):
            yield pair(q)


def _uniform(voucher: VoucherTerms | None) -> bool:
    """Whether ``voucher`` (if any) subsidises every listing alike (the matrices' columns)."""
    v = voucher
    return v is None or not (v.eligible_regions or v.eligible_providers or v.eligible_gpu_models)


class Batch:
    """Every (demand, alternative) pair's candidates of one round (module docstring)."""

    def __init__(self, index: Index, demands: tuple[InferenceDemand, ...]) -> None:
        self.index = index
        #: Per GPU model, its listings by price (then index): the matrices' columns.
        self.cols: dict[str, NDArray[np.int64]] = {}
        #: Every pair's row of its model's matrix, bit-packed, one row per pair: a pair of ``model``
        #: at its row r is row ``row_base[model] + r``; each model's number (``model_ix``) indexes
        #: ``cols_table`` (its columns, -1 past them) and ``n_cols``. Read by the covers' compiled
        #: selection (:mod:`matching.substitution_select`) without unpacking.
        self.bits = np.zeros((0, 1), dtype=np.uint8)
        self.row_base: dict[str, int] = {}
        self.model_ix: dict[str, int] = {}
        self.cols_table = np.zeros((0, 1), dtype=np.int64)
        self.n_cols = np.zeros(0, dtype=np.int64)
        #: No shadow price on any listing (the covers at market prices).
        self.no_shadow = np.zeros(len(index.problem.listings))
        #: Pairs' candidates unpacked so far, by (GPU model, row) (:meth:`LazyCandidates.eager`).
        self.unpacked: dict[tuple[str, int], Candidates] = {}
        self._self = weakref.ref(self)  # (what each pair's candidates hold: LazyCandidates)
        self.by_price = np.zeros((0, 1), dtype=np.int64)
        self._keyed_for: NDArray[np.float64] | None = None
        self._keyed: dict[float, NDArray[np.int64]] = {}
        self._subsidy: tuple[list[NDArray[np.int64]], NDArray[np.int64]] | None = None
        self._first_per_token: NDArray[np.float64] | None = None
        #: For the Lagrangian bound (:mod:`matching.substitution_bound`), per GPU model: its pairs
        #: (their numbers in the ``pair_*`` columns, in the order of its rows of :attr:`bits`), the
        #: free GPUs of each region's listings of the model (a *class*) and each pair's cheapest
        #: feasible price in each class (:data:`NO_PRICE`: none).
        self.model_pairs: dict[str, NDArray[np.int64]] = {}
        self.class_free: dict[str, NDArray[np.float64]] = {}
        #: Per GPU model, the class of each of its columns (listings by price).
        self.col_class: dict[str, NDArray[np.int64]] = {}
        #: Per GPU model, the free GPUs of each of its columns.
        self.col_free: dict[str, NDArray[np.float64]] = {}
        self.class_min: dict[str, NDArray[np.int32]] = {}
        now = index.problem.now
        self.d_origin = np.array([index.rix[d.origin] for d in demands], dtype=np.int64)
        self.d_rel = np.array([costs.reliability_units(d.min_reliability) for d in demands], dtype=np.int64)
        self.d_start_by = np.array([us_since(now, d.start_by) for d in demands], dtype=np.int64)
        self.d_hours = np.array([d.duration_hours for d in demands], dtype=np.int64) * HOUR_US
        self.d_budget = np.array([costs.money_units(d.budget_per_hour) for d in demands], dtype=np.int64)
        self.d_voucher = np.array([d.voucher is not None for d in demands], dtype=bool)
        # Every (demand, alternative) pair, demand by demand, its alternative's fields read at once
        # into columns (at 10k demands there are ~450k pairs: a Python statement per pair costs).
        lengths = np.array([len(d.alternatives) for d in demands], dtype=np.int64)
        offset = self.offset = np.concatenate([[0], np.cumsum(lengths)])
        fields = list(map(_FIELDS, chain.from_iterable(d.alternatives for d in demands)))
        models, sizes, tps, bounds, caps, ids = zip(*fields, strict=True) if fields else ((),) * 6
        pair_demand = np.repeat(np.arange(len(demands), dtype=np.int64), lengths)
        pair_alt = np.arange(len(fields), dtype=np.int64) - offset[pair_demand]
        size, tps_a = np.array(sizes, dtype=np.int64), np.array(tps, dtype=float)
        # The scalar path: measured ``listing_ids``, a voucher limited to some regions, providers
        # or GPU models, a GPU model not listed, or an alternative that cannot place a replica.
        uniform = np.array([_uniform(d.voucher) for d in demands], dtype=np.bool_)
        #: Every pair's GPU model (a number per model named by any alternative), and the number of
        #: its model in the listings' (-1: none listed).
        named = {m: n for n, m in enumerate(dict.fromkeys(models))}
        self.pair_gpu_model = np.fromiter(map(named.__getitem__, models), np.int64, len(models))
        listed = {m: n for n, m in enumerate(index.by_model)}
        code = np.array([listed.get(m, -1) for m in named], dtype=np.int64)[self.pair_gpu_model]
        matrix = uniform[pair_demand] & (code >= 0) & (tps_a > 0) & (size > 0)
        if ids.count(None) != len(ids):
            matrix &= np.array([x is None for x in ids], dtype=np.bool_)
        # Every pair's candidates, demand by demand: the scalar path's now, a matrix pair's when
        # first asked for (:class:`Options`).
        slots: list[AnyCandidates | None] = [None] * len(fields)
        #: Every pair, demand by demand (``offset[i]`` is demand i's first): its demand, alternative,
        #: GPUs and tokens/s per replica, listings it may use, cheapest cost (0 when none), and its
        #: row of :attr:`bits` and model number (-1 on the scalar path).
        self.pair_demand, self.pair_alt, self.pair_gpus, self.pair_tokens = pair_demand, pair_alt, size, tps_a
        self.pair_count = np.zeros(len(fields), dtype=np.int64)
        self.pair_first_cost = np.zeros(len(fields), dtype=np.int64)
        self.pair_row = np.full(len(fields), -1, dtype=np.int64)
        self.pair_model = np.full(len(fields), -1, dtype=np.int64)
        #: Every matrix pair's first column (by price) passing every rule (-1: none, or not in the matrix).
        self.pair_first_col = np.full(len(fields), -1, dtype=np.int64)
        #: Every pair's blocking stage.
        self.pair_stage = np.zeros(len(fields), dtype=np.int64)
        #: A matrix pair's least RTT to a listing of its model with nodes big enough, where the RTT
        #: rule stopped it (by pair), and its least price past the rule that stopped it (-1: none).
        self.pair_nearest: dict[int, tuple[str, float]] = {}
        self.pair_cheapest = np.full(len(fields), -1, dtype=np.int64)
        for q in np.flatnonzero(~matrix).tolist():
            c = slots[q] = index.candidates(demands[pair_demand[q]], int(pair_alt[q]))
            self.pair_count[q], self.pair_first_cost[q], self.pair_stage[q] = c.count, c.first_cost, c.stage
        bound_a = np.array(bounds, dtype=float)
        # Caps are at the money quantum (4 places), so float × 10,000 rounds back exactly.
        cap_a = np.rint(np.fromiter(map(float, caps), float, len(caps)) * costs.UNITS_PER_CNY).astype(np.int64)
        # The models in the order their first pair comes (the bound sums over them in this order),
        # each with its rows of the one bit matrix, as wide as the most listings of a model need.
        present, first_at = np.unique(np.where(matrix, code, -1), return_index=True)
        by_model = list(index.by_model)
        groups = [
            (by_model[number], np.flatnonzero(matrix & (code == number)))
            for number in present[np.argsort(first_at)].tolist()
            if number >= 0
        ]
        width = max((len(index.by_model[model]) + 7) // 8 for model, _ in groups) if groups else 1
        self.bits = np.zeros((sum(len(g) for _, g in groups), width), dtype=np.uint8)
        base = 0
        for number, (model, g) in enumerate(groups):
            self.model_ix[model], self.row_base[model] = number, base
            self._model(model, g, bound_a[g], cap_a[g], demands)
            base += len(g)
        #: Each demand's candidates, one per alternative (:class:`Options`).
        self.options = Options(self._self, slots, offset)
        self._columns()

    def _columns(self) -> None:
        """The models' columns as tables for compiled code (:attr:`cols_table`, :attr:`n_cols`)."""
        models = self.model_names = list(self.model_ix)
        #: Each model's first row of :attr:`bits` (by model number).
        self.model_base = np.array([self.row_base[m] for m in models], dtype=np.int64)
        self.n_cols = np.array([len(self.cols[m]) for m in models], dtype=np.int64)
        self.cols_table = np.full((len(models), max(1, int(self.n_cols.max(initial=0)))), -1, dtype=np.int64)
        for n, model in enumerate(models):
            self.cols_table[n, : self.n_cols[n]] = self.cols[model]
        #: Each model's columns in their own order (by price, then listing): :meth:`by_key` without
        #: a shadow price.
        self.by_price = np.tile(np.arange(self.cols_table.shape[1], dtype=np.int64), (len(models), 1))

    def _model(
        self,
        model: str,
        g: NDArray[np.int64],
        bound: NDArray[np.float64],
        cap: NDArray[np.int64],
        demands: tuple[InferenceDemand, ...],
    ) -> None:
        """The matrix of ``model``'s pairs (``g``, with their alternatives' RTT bounds and caps in
        units), and their figures into the ``pair_*`` columns."""
        ix = self.index
        di, size = self.pair_demand[g], self.pair_gpus[g]
        lsts = ix.by_model[model]
        cols = lsts[np.lexsort((lsts, ix.price[lsts]))]  # by price, then index
        self.cols[model] = cols
        price, gpn, region = ix.price[cols], ix.gpn[cols], ix.region[cols]
        rel, start, until, room = ix.reliability[cols], ix.start[cols], ix.until[cols], ix.max_free[cols]
        self.model_pairs[model] = g
        d_list, n = di.tolist(), len(di)
        classes, self.col_class[model] = np.unique(region, return_inverse=True)
        free = self.col_free[model] = np.array([sum(ix.free[j]) for j in cols.tolist()], dtype=float)
        self.class_free[model] = np.bincount(self.col_class[model], weights=free, minlength=len(classes)).astype(float)
        base = self.row_base[model]
        origin, need_rel, start_by, hours, budget = (
            self.d_origin[di], self.d_rel[di], self.d_start_by[di], self.d_hours[di], self.d_budget[di]
        )  # fmt: skip
        col_class = self.col_class[model].astype(np.int64)
        parts = cores.split(n, lambda lo, hi: rules_matrix(
            self.bits[base + lo : base + hi], size[lo:hi], bound[lo:hi], cap[lo:hi], origin[lo:hi], need_rel[lo:hi],
            start_by[lo:hi], hours[lo:hi], budget[lo:hi], ix.rtt, price, gpn, region, rel, start, until, room,
            col_class, len(classes),
        ))  # fmt: skip
        stage_a, count_a, first_a, class_min, nearest_a, cheapest_a = (
            np.concatenate(column) for column in zip(*parts, strict=True)
        )
        self.class_min[model] = class_min
        first = cols[first_a]
        first_cost = np.where(stage_a == OPEN, ix.price[first] - self._subsidy_at(demands, di, first), 0)
        self.pair_count[g], self.pair_first_cost[g], self.pair_stage[g] = count_a, first_cost, stage_a
        self.pair_first_col[g] = np.where(count_a > 0, first_a, -1)
        self.pair_row[g], self.pair_model[g] = base + np.arange(n), self.model_ix[model]
        # What blocked a pair, where the words need more than its stage.
        for r in np.flatnonzero((stage_a == TOO_FAR) & (nearest_a >= 0)).tolist():
            m = int(nearest_a[r])
            self.pair_nearest[int(g[r])] = (
                ix.regions[int(region[m])], float(ix.rtt[self.d_origin[d_list[r]], region[m]])
            )  # fmt: skip
        self.pair_cheapest[g] = np.where((stage_a == PRICE) | (stage_a == BUDGET), cheapest_a, -1)

    def candidates(self, pairs: list[int]) -> list[LazyCandidates]:
        """Matrix pairs' candidates, made from their columns, all at once (:class:`Options` keeps them)."""
        q = np.array(pairs, dtype=np.int64)
        model = self.pair_model[q]
        row = self.pair_row[q] - self.model_base[model]
        cheapest = self.pair_cheapest[q].tolist()
        fields = zip(
            repeat(self._self), map(self.model_names.__getitem__, model.tolist()), row.tolist(),
            self.pair_demand[q].tolist(), self.pair_alt[q].tolist(), self.pair_stage[q].tolist(),
            self.pair_count[q].tolist(), self.pair_first_cost[q].tolist(), map(self.pair_nearest.get, pairs),
            [None if c < 0 else c for c in cheapest],
        )  # fmt: skip
        return list(map(LazyCandidates, fields))

    def _subsidy_at(
        self, demands: tuple[InferenceDemand, ...], di: NDArray[np.int64], j: NDArray[np.int64]
    ) -> NDArray[np.int64]:
        """Demand ``di[r]``'s :meth:`~matching.substitution_index.Index.subsidy` on listing ``j[r]``,
        for every r: grouped by the demands' distinct subsidies (few: one per voucher's terms)."""
        if self._subsidy is None:
            rows: dict[int, int] = {}
            arrays: list[NDArray[np.int64]] = []
            row = np.full(len(demands), -1, dtype=np.int64)
            for i in np.flatnonzero(self.d_voucher).tolist():
                got = self.index.subsidy(demands[i])  # (cached by the voucher's terms)
                if id(got) not in rows:
                    rows[id(got)] = len(arrays)
                    arrays.append(got)
                row[i] = rows[id(got)]
            self._subsidy = (arrays, row)
        arrays, row = self._subsidy
        out = np.zeros(len(di), dtype=np.int64)
        mine = row[di]
        for q in np.unique(mine[mine >= 0]).tolist():
            at = np.flatnonzero(mine == q)
            out[at] = arrays[q][j[at]]
        return out

    @property
    def first_per_token(self) -> NDArray[np.float64]:
        """Every pair's :func:`matching.substitution_index.first_per_token` (0 where it has no
        listing; the same float: the cost × GPUs is an exact integer). Made once."""
        if self._first_per_token is None:
            has = self.pair_count > 0
            self._first_per_token = np.zeros(len(has))
            cost = (self.pair_first_cost * self.pair_gpus).astype(np.float64)
            np.divide(cost, self.pair_tokens, out=self._first_per_token, where=has)
        return self._first_per_token

    def by_key(self, shadow: NDArray[np.float64], hours: float) -> NDArray[np.int64]:
        """Each model's columns by (price × ``hours`` + ``shadow``, price, listing): the order in
        which a cover without subsidy picks listings (:func:`matching.substitution_select._select`).
        Kept for the last ``shadow`` (one per shadow pass), per duration."""
        if self._keyed_for is not shadow:
            self._keyed_for, self._keyed = shadow, {}
        got = self._keyed.get(hours)
        if got is None:
            got = self.by_price.copy()
            price = self.index.price
            for m in range(len(self.n_cols)):
                cols = self.cols_table[m, : self.n_cols[m]]
                key = price[cols].astype(np.float64) * hours + shadow[cols]
                got[m, : len(cols)] = np.lexsort((cols, price[cols], key))
            self._keyed[hours] = got
        return got

    def unpack(self, c: LazyCandidates) -> Candidates:
        """The eager candidates of a pair: its listings by cost (price − subsidy), then index."""
        cols = self.cols[c.model]
        lsts = cols[np.unpackbits(self.bits[self.row_base[c.model] + c.row], count=len(cols)).view(bool)]
        ix = self.index
        demand = ix.problem.inference[c.demand]
        price = ix.price[lsts]
        rtt = ix.rtt[ix.rix[demand.origin], ix.region[lsts]]
        if demand.voucher is None:  # the columns are by price, then index: already by cost
            return Candidates(c.alt, lsts, price, price, rtt, c.stage, c.nearest, c.cheapest)
        cost = price - ix.subsidy(demand)[lsts]
        order = np.lexsort((lsts, cost))
        return Candidates(c.alt, lsts[order], cost[order], price[order], rtt[order], c.stage, c.nearest, c.cheapest)
