"""The matching engine.

The core modules (``latency``, ``problem``, ``costs``, ``solver``, ``explain``, ``greedy``) are pure
Python and import no Django: they are deterministic functions of their inputs, the clock included.
``matching.tasks`` is the only Django-aware module: it loads a snapshot, solves, and applies the plan.
"""
