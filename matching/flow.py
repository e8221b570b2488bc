"""Lexicographic max-flow / min-cost flow on OR-tools, used for both replica and GPU units.

A :class:`Network` has one hub node per priority level (index 0 = highest priority) feeding that
level's requests, and a sink (the last node). :func:`solve_lexicographic` first makes the flow out
of each hub as large as possible, highest level first, then minimises cost with those amounts fixed.

Why staged max flows instead of a big per-unit bonus: servable demand in a flow network is a
polymatroid, so an augmenting path never reduces the flow already leaving an earlier hub; the
lexicographic optimum of levels 1..k is therefore just the max flow of levels 1..k, and no big-M
constant can overflow int64 however many levels there are.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ortools.graph.python import max_flow, min_cost_flow


@dataclass
class Network:
    """Arcs over nodes ``[hubs (n_levels) | inner nodes | sink]``; costs are int64 per unit."""

    n_levels: int
    n_nodes: int
    tails: np.ndarray
    heads: np.ndarray
    caps: np.ndarray
    costs: np.ndarray
    level_supply: np.ndarray  # the most each hub could send (sum of its requests' demand)

    @property
    def sink(self) -> int:
        return self.n_nodes - 1


@dataclass
class FlowResult:
    flows: np.ndarray
    cost: int
    served: np.ndarray  # flow out of each hub


class FlowError(RuntimeError):
    """OR-tools did not return an optimal flow (bad input ranges or an internal error)."""


def solve_lexicographic(net: Network, targets: np.ndarray | None = None) -> FlowResult:
    """Min-cost flow sending ``targets[q]`` out of hub q, or the lexicographic max when ``None``."""
    if targets is None and net.n_levels == 1:
        return _max_flow_min_cost(net)
    if targets is None:
        targets = _lexicographic_max(net)
    smcf = _min_cost_flow(net)
    supplies = np.zeros(net.n_nodes, dtype=np.int64)
    supplies[: net.n_levels] = targets
    supplies[net.sink] = -int(np.sum(targets))
    smcf.set_nodes_supplies(np.arange(net.n_nodes, dtype=np.int32), supplies)
    status = smcf.solve()
    if status != smcf.OPTIMAL:
        raise FlowError(f"min cost flow status {status}")
    return FlowResult(_flows(smcf, net), int(smcf.optimal_cost()), np.asarray(targets, dtype=np.int64))


def _min_cost_flow(net: Network) -> min_cost_flow.SimpleMinCostFlow:
    smcf = min_cost_flow.SimpleMinCostFlow()
    if len(net.tails):
        smcf.add_arcs_with_capacity_and_unit_cost(
            net.tails.astype(np.int32),
            net.heads.astype(np.int32),
            net.caps.astype(np.int64),
            net.costs.astype(np.int64),
        )
    # Make sure every node exists even when it has no arc.
    smcf.set_node_supply(net.sink, 0)
    return smcf


def _flows(smcf, net: Network) -> np.ndarray:
    if not len(net.tails):
        return np.zeros(0, dtype=np.int64)
    return np.asarray(smcf.flows(np.arange(len(net.tails), dtype=np.int32)), dtype=np.int64)


def _max_flow_min_cost(net: Network) -> FlowResult:
    smcf = _min_cost_flow(net)
    total = int(net.level_supply[0])
    smcf.set_node_supply(0, total)
    smcf.set_node_supply(net.sink, -total)
    status = smcf.solve_max_flow_with_min_cost()
    if status != smcf.OPTIMAL:
        raise FlowError(f"max flow with min cost status {status}")
    served = np.array([smcf.maximum_flow()], dtype=np.int64)
    return FlowResult(_flows(smcf, net), int(smcf.optimal_cost()), served)


def _lexicographic_max(net: Network) -> np.ndarray:
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
