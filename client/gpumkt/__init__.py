"""The GPU compute marketplace's Python SDK: ``Client`` over the REST API, typed models of its
resources, and the ``gpumkt`` command line (``gpumkt.cli``). No Django: a client only."""

__version__ = "0.1.0"

from gpumkt.client import Client, WaitOutcome
from gpumkt.errors import ApiError, GpumktError, TransportError
from gpumkt.models import (
    BuyerRequest,
    CapacityRow,
    Guidance,
    Listing,
    LlmModel,
    Match,
    PricePoint,
    Quote,
    QuotePlacement,
    RegionPrice,
    Statement,
    StatementLine,
    Voucher,
)

__all__ = [
    "ApiError",
    "BuyerRequest",
    "CapacityRow",
    "Client",
    "GpumktError",
    "Guidance",
    "Listing",
    "LlmModel",
    "Match",
    "PricePoint",
    "Quote",
    "QuotePlacement",
    "RegionPrice",
    "Statement",
    "StatementLine",
    "TransportError",
    "Voucher",
    "WaitOutcome",
    "__version__",
]
