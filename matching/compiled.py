"""The engine's compiled (numba) code, loaded at once: what a process calls before its first round
(the worker before its pool forks, the image build, the benchmarks), so that no round pays for it."""

from __future__ import annotations

from matching import substitution_bound, substitution_matrix, substitution_select
from matching.flow import simplex


def warm_up() -> None:
    """Compile (or load from numba's cache, ``NUMBA_CACHE_DIR``) every compiled function: the
    min-cost-flow simplex, the inference pairs' rules, the covers' selection and search, and the
    inference bound's searches."""
    simplex.warm_up()
    substitution_matrix.warm_up()
    substitution_select.warm_up()
    substitution_bound.warm_up()
