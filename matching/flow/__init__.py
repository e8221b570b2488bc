"""Flows: lexicographic max flow by priority level, then min-cost flow on a compiled network simplex.

``lexicographic`` is the entry point (:func:`~matching.flow.lexicographic.solve_lexicographic`);
``simplex`` and ``spanning_tree`` are the min-cost stage it runs on.
"""
