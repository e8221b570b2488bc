"""The marketplace's data, in the vocabulary of DESIGN.md, one module per topic.

Models hold fields and database constraints only: every write goes through ``services`` and every
read that a page or the engine needs goes through ``selectors``. Money is ``Decimal`` CNY.
"""

from marketplace.models.api_keys import ApiKey
from marketplace.models.idempotency import IdempotencyKey
from marketplace.models.listings import NODE_SIZE_CHOICES, NODE_SIZES, Listing, MeasuredProfile, NodeHeartbeat
from marketplace.models.market_clock import MarketClock
from marketplace.models.matches import Match, Settlement
from marketplace.models.organisations import Membership, Organisation
from marketplace.models.prices import ClearingPrice
from marketplace.models.reference import GpuModel, LlmModel, Region, Rtt
from marketplace.models.requests import BuyerRequest, RequestInference
from marketplace.models.runs import MatchingRun
from marketplace.models.vouchers import Voucher, VoucherLedgerEntry, VoucherProgram
from marketplace.models.webhooks import WebhookDelivery, WebhookEndpoint, WebhookNotice

__all__ = [
    "NODE_SIZES",
    "NODE_SIZE_CHOICES",
    "ApiKey",
    "BuyerRequest",
    "ClearingPrice",
    "GpuModel",
    "IdempotencyKey",
    "Listing",
    "LlmModel",
    "MarketClock",
    "Match",
    "MatchingRun",
    "MeasuredProfile",
    "Membership",
    "NodeHeartbeat",
    "Organisation",
    "Region",
    "RequestInference",
    "Rtt",
    "Settlement",
    "Voucher",
    "VoucherLedgerEntry",
    "VoucherProgram",
    "WebhookDelivery",
    "WebhookEndpoint",
    "WebhookNotice",
]
