"""The rules of :mod:`matching.substitution_index` applied to every (demand, alternative) pair at once.

One boolean matrix per GPU model (pairs of that model × its listings, listings by price), built with
the same rules in the same order as :meth:`matching.substitution_index.Index.candidates` (tests check
both agree), in chunks of at most :data:`CHUNK_CELLS` cells and kept bit-packed. Each pair's
candidates are unpacked only when a policy asks for them (:class:`LazyCandidates`); its blocking
stage, option count and cheapest cost are known from the start. Pairs the matrices cannot express
(measured ``listing_ids``, a voucher limited to some regions, providers or GPU models) go through
the scalar path.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from matching import costs
from matching.graph.edges import HOUR_US, us_since
from matching.problem import InferenceDemand
from matching.substitution_index import BUDGET, OPEN, STAGES, Candidates, Index

#: Cells (pairs × listings) evaluated at once: bounds the matrices' peak memory (~10 bytes a cell).
CHUNK_CELLS = 1_000_000
NO_PRICE = np.iinfo(np.int32).max
NONE_LISTED, NODE_SIZE, TOO_FAR, PRICE = (STAGES.index(s) for s in ("none_listed", "node_size", "too_far", "price"))
RELIABILITY, WINDOW, NODE_FREE = (STAGES.index(s) for s in ("reliability", "window", "node_free"))


class LazyCandidates:
    """A pair's candidates (same attributes as :class:`Candidates`), unpacked on first use."""

    __slots__ = (
        "_eager",
        "alt",
        "batch",
        "cheapest",
        "count",
        "demand",
        "first_cost",
        "model",
        "nearest",
        "row",
        "stage",
    )

    def __init__(
        self, batch: Batch, model: str, row: int, demand: int, alt: int, stage: int, count: int, first_cost: int
    ) -> None:
        self.batch, self.model, self.row, self.demand = batch, model, row, demand
        self.alt, self.stage, self.count, self.first_cost = alt, stage, count, first_cost
        self.nearest: tuple[str, float] | None = None
        self.cheapest: int | None = None
        self._eager: Candidates | None = None

    def eager(self) -> Candidates:
        if self._eager is None:
            self._eager = self.batch.unpack(self)
        return self._eager

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


AnyCandidates = Candidates | LazyCandidates


class Batch:
    """Every (demand, alternative) pair's candidates of one round (module docstring)."""

    def __init__(self, index: Index, demands: tuple[InferenceDemand, ...]) -> None:
        self.index = index
        self.options: list[list[AnyCandidates]] = [[] for _ in demands]
        # Per GPU model while the matrices are built: its chunks (first row, bit-packed rows).
        self.packed: dict[str, list[tuple[int, NDArray[np.uint8]]]] = {}
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
        #: For the Lagrangian bound (:mod:`matching.substitution_bound`), per GPU model: its pairs
        #: ((demand, alternative) rows), the free GPUs of each region's listings of the model (a
        #: *class*) and each pair's cheapest feasible price in each class (:data:`NO_PRICE`: none).
        self.pairs: dict[str, NDArray[np.int64]] = {}
        #: Per GPU model, each pair's GPUs and tokens/s per replica.
        self.pair_size: dict[str, NDArray[np.int64]] = {}
        self.pair_tps: dict[str, NDArray[np.float64]] = {}
        self.class_free: dict[str, NDArray[np.float64]] = {}
        #: Per GPU model, the class of each of its columns (listings by price).
        self.col_class: dict[str, NDArray[np.int64]] = {}
        self.class_min: dict[str, list[NDArray[np.int32]]] = {}
        # Pairs by model; the scalar path for pairs the matrices cannot express.
        rows: dict[str, list[tuple[int, int]]] = {}
        now = index.problem.now
        self.d_origin = np.array([index.rix[d.origin] for d in demands], dtype=np.int64)
        self.d_rel = np.array([costs.reliability_units(d.min_reliability) for d in demands], dtype=np.int64)
        self.d_start_by = np.array([us_since(now, d.start_by) for d in demands], dtype=np.int64)
        self.d_hours = np.array([d.duration_hours for d in demands], dtype=np.int64) * HOUR_US
        self.d_budget = np.array([costs.money_units(d.budget_per_hour) for d in demands], dtype=np.int64)
        self.d_voucher = np.array([d.voucher is not None for d in demands], dtype=bool)
        slots: list[list[AnyCandidates | None]] = [[None] * len(d.alternatives) for d in demands]
        for i, d in enumerate(demands):
            uniform = d.voucher is None or not (
                d.voucher.eligible_regions or d.voucher.eligible_providers or d.voucher.eligible_gpu_models
            )
            for k, alt in enumerate(d.alternatives):
                scalar = not uniform or alt.listing_ids is not None or alt.gpu_model not in index.by_model
                if scalar or alt.tokens_per_second_per_replica <= 0 or alt.gpus_per_replica <= 0:
                    slots[i][k] = index.candidates(d, k)
                else:
                    rows.setdefault(alt.gpu_model, []).append((i, k))
        for model, pairs in rows.items():
            self._model(model, pairs, demands, slots)
        self.options = [[c for c in row if c is not None] for row in slots]
        self._one_matrix()

    def _one_matrix(self) -> None:
        """The models' chunks as one bit matrix (:attr:`bits`), each row padded to the widest."""
        models = list(self.packed)
        width = max((b.shape[1] for chunks in self.packed.values() for _, b in chunks), default=1)
        parts, base = [], 0
        for n, model in enumerate(models):
            self.model_ix[model], self.row_base[model] = n, base
            for _, b in self.packed[model]:
                parts.append(np.pad(b, ((0, 0), (0, width - b.shape[1]))))
                base += len(b)
        self.packed = {}
        if parts:
            self.bits = np.vstack(parts)
        self.n_cols = np.array([len(self.cols[m]) for m in models], dtype=np.int64)
        self.cols_table = np.full((len(models), max(1, int(self.n_cols.max(initial=0)))), -1, dtype=np.int64)
        for n, model in enumerate(models):
            self.cols_table[n, : self.n_cols[n]] = self.cols[model]

    def _model(
        self,
        model: str,
        pairs: list[tuple[int, int]],
        demands: tuple[InferenceDemand, ...],
        slots: list[list[AnyCandidates | None]],
    ) -> None:
        ix = self.index
        lsts = ix.by_model[model]
        cols = lsts[np.lexsort((lsts, ix.price[lsts]))]  # by price, then index
        self.cols[model] = cols
        n_cols = len(cols)
        price, gpn, region = ix.price[cols], ix.gpn[cols], ix.region[cols]
        rel, start, until, room = ix.reliability[cols], ix.start[cols], ix.until[cols], ix.max_free[cols]
        alts = [demands[i].alternatives[k] for i, k in pairs]
        size = self.pair_size[model] = np.array([a.gpus_per_replica for a in alts], dtype=np.int64)
        self.pair_tps[model] = np.array([a.tokens_per_second_per_replica for a in alts], dtype=float)
        bound = np.array([a.rtt_bound_ms for a in alts], dtype=float)
        # Caps are at the money quantum (4 places), so float × 10,000 rounds back exactly.
        cap = np.rint(np.array([float(a.max_price_per_gpu_hour) for a in alts]) * costs.UNITS_PER_CNY).astype(np.int64)
        di = np.array([i for i, _ in pairs], dtype=np.int64)
        origin, need_rel, start_by = self.d_origin[di], self.d_rel[di], self.d_start_by[di]
        hours, budget, vouchered = self.d_hours[di], self.d_budget[di], self.d_voucher[di]
        self.packed[model] = []
        self.pairs[model] = np.array(pairs, dtype=np.int64).reshape(-1, 2)
        classes, self.col_class[model] = np.unique(region, return_inverse=True)
        class_cols = [self.col_class[model] == c for c in range(len(classes))]
        self.class_free[model] = np.array([sum(sum(ix.free[j]) for j in cols[m].tolist()) for m in class_cols], float)
        self.class_min[model] = []
        price32 = np.minimum(price, NO_PRICE - 1).astype(np.int32)  # (a price that high blocks nothing real)
        step = max(1, CHUNK_CELLS // max(1, n_cols))
        col = np.newaxis
        for lo in range(0, len(pairs), step):
            s = slice(lo, lo + step)
            ok = gpn[None, :] >= size[s, col]
            stage = np.where(ok.any(axis=1), OPEN, NODE_SIZE)
            rtt = ix.rtt[origin[s, col], region[None, :]]
            near = ok & (rtt <= bound[s, col])
            nearest_rtt = np.where(ok, rtt, np.inf)
            stage = np.where((stage == OPEN) & ~near.any(axis=1), TOO_FAR, stage)
            ok = near & (price[None, :] <= cap[s, col])
            cheapest_near = np.where(near, price[None, :], np.iinfo(np.int64).max).min(axis=1)
            stage = np.where((stage == OPEN) & ~ok.any(axis=1), PRICE, stage)
            ok &= rel[None, :] >= need_rel[s, col]
            stage = np.where((stage == OPEN) & ~ok.any(axis=1), RELIABILITY, stage)
            ok &= (start[None, :] <= start_by[s, col]) & (start[None, :] + hours[s, col] <= until[None, :])
            stage = np.where((stage == OPEN) & ~ok.any(axis=1), WINDOW, stage)
            ok &= room[None, :] >= size[s, col]
            stage = np.where((stage == OPEN) & ~ok.any(axis=1), NODE_FREE, stage)
            cheapest_free = np.where(ok, price[None, :], np.iinfo(np.int64).max).min(axis=1)
            ok &= price[None, :] * size[s, col] <= budget[s, col]
            stage = np.where((stage == OPEN) & ~ok.any(axis=1), BUDGET, stage)
            self.class_min[model].append(
                np.stack([np.where(ok[:, m], price32[m][None, :], NO_PRICE).min(axis=1) for m in class_cols], axis=1)
                if class_cols
                else np.zeros((ok.shape[0], 0), dtype=np.int32)
            )
            counts = ok.sum(axis=1).tolist()
            first = cols[np.argmax(ok, axis=1)]
            subsidy = np.zeros(len(first), dtype=np.int64)
            for r in vouchered[s].nonzero()[0].tolist():
                subsidy[r] = ix.subsidy(demands[pairs[lo + r][0]])[first[r]]
            first_cost = np.where(stage == OPEN, ix.price[first] - subsidy, 0).tolist()
            self.packed[model].append((lo, np.packbits(ok, axis=1)))
            mine = pairs[lo : lo + step]
            made = [
                LazyCandidates(self, model, g, i, k, st, n, cost)
                for g, (i, k), st, n, cost in zip(
                    range(lo, lo + len(mine)), mine, stage.tolist(), counts, first_cost, strict=True
                )
            ]
            for (i, k), c in zip(mine, made, strict=True):
                slots[i][k] = c
            # What blocked a pair, where the words need more than its stage.
            for r in np.flatnonzero(stage == TOO_FAR).tolist():
                m = int(np.argmin(nearest_rtt[r]))
                if np.isfinite(nearest_rtt[r, m]):
                    made[r].nearest = (ix.regions[int(region[m])], float(nearest_rtt[r, m]))
            for r in np.flatnonzero(stage == PRICE).tolist():
                made[r].cheapest = int(cheapest_near[r])
            for r in np.flatnonzero(stage == BUDGET).tolist():
                made[r].cheapest = int(cheapest_free[r])

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
