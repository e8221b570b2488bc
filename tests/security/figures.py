"""Counts the security tests keep while they run; ``conftest.py`` prints them after the run."""

from collections import Counter, defaultdict

#: figure name → counter: ``schemathesis`` by (role, phase, status class), ``matrix`` by outcome, …
FIGURES: defaultdict[str, Counter] = defaultdict(Counter)
