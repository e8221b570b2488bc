"""Lexicographic max flow, then min-cost flow, used for both replica and GPU units.

A :class:`Network` has one hub node per priority level (index 0 = highest priority) feeding that
level's requests, and a sink (the last node). :func:`solve_lexicographic` first makes the flow out
of each hub as large as possible, highest level first, then minimises cost with those amounts fixed.

Why staged max flows instead of a big per-unit bonus: servable demand in a flow network is a
polymatroid, so an augmenting path never reduces the flow already leaving an earlier hub; the
lexicographic optimum of levels 1..k is therefore just the max flow of levels 1..k, and no big-M
constant can overflow int64 however many levels there are.

The max flows run on OR-tools; the min-cost stage on the network simplex of :mod:`matching.flow.simplex`,
which restarts from a previous solve's basis when only costs changed (:func:`reoptimize`).
For the simplex each request's demand becomes its node's supply and each hub absorbs what its level
leaves unserved, so the simplex starts with every supply on its own node, and the hub arcs carry no
capacities of their own.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from ortools.graph.python import max_flow

from matching.flow import simplex


@dataclass
class Network:
    """Arcs over nodes ``[hubs (n_levels) | inner nodes | sink]``; costs are int64 per unit.

    The first arcs are the hub arcs (hub → request, capacity = the request's demand). Capacities
    elsewhere should bind (see :mod:`matching.flow.simplex`); an arc bounded elsewhere may carry the total
    demand as its capacity.
    """

    n_levels: int
    n_nodes: int
    tails: NDArray[np.int64]
    heads: NDArray[np.int64]
    caps: NDArray[np.int64]
    costs: NDArray[np.int64]
    level_supply: NDArray[np.int64]  # the most each hub could send (sum of its requests' demand)

    @property
    def sink(self) -> int:
        return self.n_nodes - 1


@dataclass
class FlowResult:
    flows: NDArray[np.int64]
    cost: int
    served: NDArray[np.int64]  # flow out of each hub
    basis: simplex.Basis  # to restart from after a cost change (:func:`reoptimize`)


class FlowError(RuntimeError):
    """No flow meets the targets (they exceed the network's lexicographic max flow)."""


def solve_lexicographic(net: Network, targets: NDArray[np.int64] | None = None) -> FlowResult:
    """Min-cost flow sending ``targets[q]`` out of hub q, or the lexicographic max when ``None``."""
    if targets is None:
        targets = _lexicographic_max(net)
    targets = np.asarray(targets, dtype=np.int64)
    hub = net.tails < net.n_levels
    supplies = np.zeros(net.n_nodes, dtype=np.int64)
    np.add.at(supplies, net.heads[hub], net.caps[hub])
    supplies[: net.n_levels] = -(net.level_supply - targets)
    supplies[net.sink] = -int(targets.sum())
    tails, heads = np.where(hub, net.heads, net.tails), np.where(hub, net.tails, net.heads)
    caps = np.where(hub, simplex.UNBOUNDED, net.caps)
    try:
        flows, _, basis = simplex.min_cost_flow(net.n_nodes, tails, heads, caps, net.costs, supplies)
    except simplex.InfeasibleFlow as exc:
        raise FlowError(f"targets {targets.tolist()} cannot be met") from exc
    return _result(net, hub, flows, targets, basis)


def reoptimize(net: Network, first: FlowResult) -> FlowResult:
    """The min-cost flow of ``net`` at ``first``'s targets, restarted from ``first``'s basis.

    ``net`` must be ``first``'s network with only its costs changed.
    """
    hub = net.tails < net.n_levels
    flows, _, basis = simplex.reoptimize(first.basis, net.costs)
    return _result(net, hub, flows, first.served, basis)


def _result(
    net: Network, hub: NDArray[np.bool_], flows: NDArray[np.int64], targets: NDArray[np.int64], basis: simplex.Basis
) -> FlowResult:
    """Flows on ``net``'s own arcs: a hub arc carries its request's demand less what went unserved."""
    flows = np.where(hub, net.caps - flows, flows)
    return FlowResult(flows, int(np.dot(flows, net.costs)), targets, basis)


def _lexicographic_max(net: Network) -> NDArray[np.int64]:
    """Flow out of each hub at the lexicographic optimum: successive max flows of levels 0..k."""
    smf = max_flow.SimpleMaxFlow()
    source = net.n_nodes
    if len(net.tails):
        smf.add_arcs_with_capacity(net.tails.astype(np.int32), net.heads.astype(np.int32), net.caps.astype(np.int64))
    hub_arcs = [smf.add_arc_with_capacity(source, q, 0) for q in range(net.n_levels)]
    served, previous = np.zeros(net.n_levels, dtype=np.int64), 0
    for q, arc in enumerate(hub_arcs):
        smf.set_arc_capacity(arc, int(net.level_supply[q]))
        status = smf.solve(source, net.sink)
        if status != smf.OPTIMAL:
            raise FlowError(f"max flow status {status}")
        total = int(smf.optimal_flow())
        served[q], previous = total - previous, total
    return served
