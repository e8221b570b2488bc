"""The ``engine`` policy of :mod:`matching.substitution`: most tokens/s by priority, then least cost."""

from __future__ import annotations

from matching.substitution_round import Round, Stats, cheapest_policy


def engine_policy(rnd: Round) -> Stats:
    """Place ``rnd``'s demand; returns the solver's stats (its name and bounds)."""
    cheapest_policy(rnd)
    return {"solver": "substitution-greedy"}
