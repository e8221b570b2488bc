"""``gpumkt``: the marketplace from a terminal. Each command calls the SDK (``gpumkt.Client``)
and prints a Rich table, or with ``--json`` the API's JSON for scripts. One module per topic;
importing them registers their commands on ``main``.

Exit codes: 0 done; 1 the API refused (its message, field errors included, on stderr) or could
not be reached; 2 bad usage (Click's); 3 ``request submit --wait`` ended without a full match.
"""

from gpumkt.cli import accounts, demand, listings, market, money, serve  # noqa: F401  (they register the commands)
from gpumkt.cli.base import EXIT_NOT_MATCHED, main

__all__ = ["EXIT_NOT_MATCHED", "main"]
