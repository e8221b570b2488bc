"""The matching engine: a pure function from a market snapshot to a plan. No Django, no database.

Deterministic given its inputs, the clock included (``Problem.now``); import-linter checks that
nothing here imports ``django``, ``celery``, ``rest_framework`` or ``marketplace``. The marketplace
builds a :class:`~matching.problem.Problem` (``marketplace.selectors.engine``), calls a planner and
applies the :class:`~matching.problem.Plan` (``marketplace.services.rounds``).

A map, entry points first:

- ``problem``   the vocabulary: ``Problem`` (requests, listings, RTTs, now) in, ``Plan`` out.
- ``latency``   latency classes and the RTT model, shared with the API and the pages.
- ``costs``     one edge's cost (price − subsidy + latency weight × RTT) and why an edge is infeasible.
- ``solver``    ``solve(problem)``: serve the most by priority, then at least cost, exactly.
- ``prices``    clearing prices: each listing's scarcity rent, an exact re-solve with one more unit
  (docs/economics.md).
- ``lookahead`` rounds that look ahead: listings' reservations (recent rents), the one rule by which
  a request pays them in the engine's cost, and the call that holds far-off requests.
- ``quote``     one request against free capacity, and its price–latency frontier.
- ``inference`` the throughput model: tokens/s and prefill of (LLM, GPU model, GPUs, precision).
- ``inference_quote`` an LLM at tokens/s under a TTFT target, quoted per (GPU model, GPUs per
  replica, precision) through ``quote``; the frontier by GPU model (docs/inference.md).
- ``substitution`` inference demand (a tokens/s target under a TTFT bound) placed across GPU models
  and regions on what the GPU-form plan left: ``with_inference`` wraps every planner
  (``substitution_*``: candidates, batch rules, round state, exact MILP, fast engine, bounds, words).
- ``policies``  the planners a round can use: the engine and the two baselines buyers use by hand.
- ``greedy``    the cheapest-first baseline.
- ``explain``   why a match was chosen and why a request is unserved, in words.
- ``assemble``  placements → a priced, voucher-capped, explained ``Plan`` (shared by every planner).
- ``timings``   phase timings, the only non-deterministic output.

Then the parts a reader can skip until needed:

- ``graph/``    the feasibility graph: ``edges`` (column arrays, pricing, explicit edges), ``chains``
  (the compressed request → price chain → listing graph) and ``components`` (its connected
  components, solved apart).
- ``flow/``     ``lexicographic`` (max flow by priority, then min cost), ``simplex`` and
  ``spanning_tree`` (the compiled network simplex it runs on).
- ``packing/``  replicas onto nodes: ``transport`` (node pools, exact transportation and the GPU-unit
  relaxation), ``repair`` (whole replicas from the relaxation for mixed sizes), ``exact`` (small mixed
  components by integer programming) and ``budgets`` (re-plans when a voucher budget binds).

Words: a *shard* is one GPU model's round in the marketplace; a *component* is a connected piece of
one round's graph.
"""
