"""Typed views of the API's resources.

Each dataclass reads the fields of one response schema that the SDK and the CLI use, by the same
names (``tests/client/test_schema.py`` holds every field here to the server's OpenAPI schema).
Decimals (money, RTT bounds) arrive as strings and become ``Decimal``; times become aware
``datetime``. A field the server adds later is ignored; one it removes is a ``KeyError``, loudly.
A field with a default here is one the server added after the SDK's first release (the
interruptible tier's): a server from before it answers without the key, and the default is read.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Self


def _convert(value: Any, kind: Any) -> Any:
    """``value`` from JSON as ``kind`` (a field's annotation): ``X | None`` keeps None."""
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        if value is None:
            return None
        kind = next(arg for arg in typing.get_args(kind) if arg is not type(None))
    if kind is Decimal:
        return Decimal(str(value))
    if kind is datetime:
        return datetime.fromisoformat(value)
    if kind is float:
        return float(value)
    return value


class Resource:
    """``from_json`` for the dataclasses below: each field read from the key of its name."""

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        hints = typing.get_type_hints(cls)
        values = {
            f.name: _convert(data[f.name], hints[f.name])
            for f in dataclasses.fields(cls)  # type: ignore[arg-type]
            if f.name in data or f.default is dataclasses.MISSING
        }
        return cls(**values)

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]


@dataclass(frozen=True)
class Listing(Resource):
    """A provider's idle capacity (``ListingOut``)."""

    id: int
    provider: str
    region: str
    gpu_model: str
    gpu_count: int
    gpus_per_node: int
    free_gpus: int
    price_per_gpu_hour: Decimal
    available_from: datetime
    available_until: datetime
    status: str
    rtt_ms: float | None
    left_out_reason: str
    interruptible_floor_price_per_gpu_hour: Decimal | None = None


@dataclass(frozen=True)
class BuyerRequest(Resource):
    """A buyer's demand (``RequestOut``); ``left_out_reason`` says which rule kept it out of the
    latest round, "" when none did."""

    id: int
    gpu_model: str
    gpus_per_replica: int
    replicas: int
    origin: str
    latency_class: str
    max_rtt_ms: Decimal | None
    max_price_per_gpu_hour: Decimal
    duration_hours: int
    start_by: datetime
    status: str
    matched_replicas: int
    voucher_program: str | None
    left_out_reason: str
    interruptible: bool = False
    #: ``gpus`` or ``inference``; an inference request's terms and tokens/s placed are in ``inference``
    #: (its GPU-form fields are those of its first choice at submission).
    kind: str = "gpus"
    inference: dict[str, Any] | None = None
    #: While the look-ahead holds it for its call (its start_by is far off), when it is offered to
    #: the rounds again; None otherwise.
    held_until: datetime | None = None

    #: Statuses after which the request will never be matched further.
    FINAL_STATUSES: typing.ClassVar[frozenset[str]] = frozenset({"matched", "cancelled", "expired"})


@dataclass(frozen=True)
class Match(Resource):
    """Replicas of one request placed on one listing, with the cost breakdown (``MatchOut``)."""

    id: int
    request: int
    listing: int
    region: str
    provider: str
    gpu_model: str
    replicas: int
    gpus: int
    price_per_gpu_hour: Decimal
    subsidy_per_gpu_hour: Decimal
    cost_per_gpu_hour: Decimal
    rtt_ms: Decimal
    latency_class: str
    status: str
    status_reason: str
    starts_at: datetime
    ends_at: datetime
    explanation: Any
    #: An inference request's match: what its replicas serve (null on a GPU-form request's).
    precision: str | None = None
    tokens_per_second: Decimal | None = None
    ttft_ms: Decimal | None = None
    price_per_million_tokens: Decimal | None = None


@dataclass(frozen=True)
class QuotePlacement(Resource):
    """One listing of a quote's placement (``QuotePlacementOut``)."""

    listing_id: int
    region: str
    replicas: int
    gpus: int
    price_per_gpu_hour: Decimal
    subsidy_per_gpu_hour: Decimal
    cost_per_gpu_hour: Decimal
    rtt_ms: float
    latency_class: str


@dataclass(frozen=True)
class Quote(Resource):
    """Where the engine would place a request now (``QuoteOut``); nothing is written."""

    replicas_requested: int
    replicas_placed: int
    total_cost: Decimal
    unserved_reason: str
    placement: list[dict[str, Any]]

    @property
    def placements(self) -> list[QuotePlacement]:
        return [QuotePlacement.from_json(item) for item in self.placement]


@dataclass(frozen=True)
class CapacityRow(Resource):
    """Idle GPUs of one GPU model in one region, seen from an origin (``CapacityRowOut``)."""

    region: str
    latency_class: str
    rtt_ms: float
    gpu_model: str
    free_gpus: int
    min_price_per_gpu_hour: Decimal
    listings: int


@dataclass(frozen=True)
class RegionPrice(Resource):
    """A region's clearing price of one GPU model after its latest round (``CurrentPriceOut``):
    ask + scarcity rent, and the rent of its latency class from the origin (docs/economics.md)."""

    region: str
    gpu_model: str
    rtt_ms: float | None
    latency_class: str | None
    price_per_gpu_hour: Decimal | None
    rent_per_gpu_hour: Decimal | None
    latency_rent_per_gpu_hour: Decimal | None
    free_gpus: int
    listings: int
    saturated_listings: int
    unavailable_listings: int
    run_id: int
    recorded_at: datetime


@dataclass(frozen=True)
class PricePoint(Resource):
    """One round's clearing price in one region (``PricePointOut``)."""

    run_id: int
    recorded_at: datetime
    price_per_gpu_hour: Decimal | None
    rent_per_gpu_hour: Decimal | None
    free_gpus: int
    listings: int
    saturated_listings: int
    unavailable_listings: int


@dataclass(frozen=True)
class Guidance(Resource):
    """Why a listing's GPUs are idle and the highest price that would fill them (``GuidanceOut``)."""

    listing: int
    free_gpus: int
    price_per_gpu_hour: Decimal
    energy_cost_per_gpu_hour: Decimal
    next_round_gpu_hours: int
    suggested_price_per_gpu_hour: Decimal | None
    suggested_gpu_hours: int
    idle_reasons: list[str]
    reason_codes: list[str]
    probes: list[dict[str, Any]]
    solves: int


@dataclass(frozen=True)
class LlmModel(Resource):
    """An open-weight LLM the marketplace can serve (``LlmModelOut``)."""

    code: str
    name: str
    params_b: Decimal
    active_params_b: Decimal
    layers: int
    kv_heads: int
    head_dim: int
    max_context: int
    precisions: list[str]
    source: str


@dataclass(frozen=True)
class Voucher(Resource):
    """A buyer's voucher (``VoucherOut``)."""

    id: int
    code: str
    program: str
    sponsor: str
    kind: str
    percent: Decimal | None
    free_gpu_hours: Decimal | None
    remaining_value: Decimal | None
    status: str
    valid_until: datetime


@dataclass(frozen=True)
class StatementLine(Resource):
    """One settled match of a statement (``StatementLineOut``)."""

    match: int
    request: int
    region: str
    status: str
    gpu_hours: Decimal
    price_per_gpu_hour: Decimal
    gross: Decimal
    subsidy: Decimal
    buyer_pays: Decimal
    platform_fee: Decimal
    provider_earns: Decimal


@dataclass(frozen=True)
class Statement(Resource):
    """A month's settled matches and totals for the caller's organisation (``StatementOut``)."""

    organisation: str
    role: str
    month: str
    totals: dict[str, str]
    lines: list[dict[str, Any]]

    @property
    def line_items(self) -> list[StatementLine]:
        return [StatementLine.from_json(item) for item in self.lines]


@dataclass(frozen=True)
class Token(Resource):
    """``POST /auth/token/``'s answer (``AuthToken``)."""

    token: str
