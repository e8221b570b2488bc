"""The feasibility graph of a round: which request may use which listing, at what cost.

``edges`` turns a :class:`~matching.problem.Problem` into column arrays and prices edges (the direct
definition); ``chains`` compresses the dense bipartite graph exactly; ``components`` splits it
into independent connected components.
"""
