"""Quotes: where the engine would place a request now, and the cheapest option per latency class.
Nothing is written.

Two kinds of money are in a quote. ``buyer_pays_*`` is what the buyer would pay: price − subsidy,
charged per line as its settlement would be (``money.buyer_charge``). ``cost_per_gpu_hour`` and
``total_cost`` are the engine's score: that plus the notional latency weight × RTT, which ranks
placements and is never charged."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from marketplace import selectors
from marketplace.api.inputs import validated_body
from marketplace.api.permissions import IsBuyer, buyer_of, scoped
from marketplace.api.requests import RequestIn
from marketplace.money import MONEY, SETTLED_AMOUNT

SCORE_RATE = (
    "The engine's score per GPU-hour, not a price: price − subsidy + latency weight × RTT. "
    "What the buyer pays is buyer_pays_per_gpu_hour."
)
SCORE_TOTAL = (
    "The engine's score over the duration, not a price: (price − subsidy + latency weight × RTT) × "
    "GPU-hours. What the buyer pays is buyer_pays_total."
)
PAYS_RATE = "What the buyer pays per GPU-hour: price − subsidy (no latency weight)."
PAYS_TOTAL = (
    "What the buyer would pay over the duration: per line, price × GPU-hours rounded half-up to the "
    "fen, less the subsidy rounded down, as the settlement charges it."
)


class QuotePlacementOut(serializers.Serializer):
    listing_id = serializers.IntegerField()
    region = serializers.CharField()
    replicas = serializers.IntegerField()
    gpus = serializers.IntegerField()
    price_per_gpu_hour = serializers.DecimalField(**MONEY)
    subsidy_per_gpu_hour = serializers.DecimalField(**MONEY)
    energy_cost_per_gpu_hour = serializers.DecimalField(**MONEY)
    cost_per_gpu_hour = serializers.DecimalField(**MONEY, help_text=SCORE_RATE)
    buyer_pays_per_gpu_hour = serializers.DecimalField(**MONEY, help_text=PAYS_RATE)
    buyer_pays_total = serializers.DecimalField(**SETTLED_AMOUNT, help_text=PAYS_TOTAL)
    rtt_ms = serializers.FloatField()
    latency_class = serializers.CharField()
    starts_at = serializers.DateTimeField()
    explanation = serializers.JSONField()


class FrontierPointOut(serializers.Serializer):
    latency_class = serializers.CharField()
    bound_ms = serializers.FloatField(allow_null=True)
    replicas_placed = serializers.IntegerField()
    region = serializers.CharField(allow_null=True)
    rtt_ms = serializers.FloatField(allow_null=True)
    price_per_gpu_hour = serializers.DecimalField(**MONEY, allow_null=True)
    subsidy_per_gpu_hour = serializers.DecimalField(**MONEY, allow_null=True)
    cost_per_gpu_hour = serializers.DecimalField(**MONEY, allow_null=True, help_text=SCORE_RATE)
    total_cost = serializers.DecimalField(max_digits=18, decimal_places=4, help_text=SCORE_TOTAL)
    buyer_pays_per_gpu_hour = serializers.DecimalField(
        **MONEY, allow_null=True, help_text=f"{PAYS_RATE} Of the cheapest line, as cost_per_gpu_hour; null when none."
    )
    buyer_pays_total = serializers.DecimalField(**SETTLED_AMOUNT, help_text=f"{PAYS_TOTAL} Of the whole placement.")
    blocked = serializers.CharField()


class TierPriceOut(serializers.Serializer):
    replicas_placed = serializers.IntegerField()
    price_per_gpu_hour = serializers.DecimalField(
        **MONEY, allow_null=True, help_text="Average price per GPU-hour over the tier's placement; null when none."
    )
    blocked = serializers.CharField(help_text='Why replicas are left unplaced in this tier ("" when none are).')


class TiersOut(serializers.Serializer):
    on_demand = TierPriceOut(help_text="The request as on-demand demand (interruptible: false).")
    interruptible = TierPriceOut(
        help_text="The request as interruptible demand: on listings offering the tier, at their floor."
    )


class QuoteOut(serializers.Serializer):
    """Documents the quote's shape (the engine's ``Quote.to_dict()``)."""

    request_id = serializers.IntegerField()
    replicas_requested = serializers.IntegerField()
    replicas_placed = serializers.IntegerField()
    total_cost = serializers.DecimalField(max_digits=18, decimal_places=4, help_text=SCORE_TOTAL)
    buyer_pays_total = serializers.DecimalField(**SETTLED_AMOUNT, help_text=PAYS_TOTAL)
    buyer_pays_per_gpu_hour = serializers.DecimalField(
        **MONEY, help_text=f"{PAYS_RATE} Over several lines: buyer_pays_total over their GPU-hours."
    )
    unserved_reason = serializers.CharField()
    placement = QuotePlacementOut(many=True)
    frontier = FrontierPointOut(many=True)
    tiers = TiersOut(help_text="The request's price now in each tier; placement is in its own tier.")


class QuoteView(APIView):
    """The placement the engine would choose for a request now, without committing anything."""

    permission_classes = scoped(IsBuyer)

    @extend_schema(request=RequestIn, responses=QuoteOut)
    def post(self, request):
        terms = validated_body(RequestIn, request)
        quote = selectors.request_quote(buyer=buyer_of(request), **terms)
        return Response(with_buyer_pays(quote, duration_hours=terms["duration_hours"]))


def _pays(pays: selectors.BuyerPays) -> dict[str, str]:
    return {"buyer_pays_total": str(pays.total), "buyer_pays_per_gpu_hour": str(pays.per_gpu_hour)}


def with_buyer_pays(quote, *, duration_hours: int) -> dict:
    """``quote.to_dict()`` with what the buyer would pay beside each score: the placement's, each
    line's and each frontier point's ``buyer_pays_total`` and ``buyer_pays_per_gpu_hour``."""
    summary = selectors.quote_summary(quote, duration_hours=duration_hours)
    body = quote.to_dict()
    body.update(_pays(summary.placement))
    for line, pays in zip(body["placement"], summary.lines, strict=True):
        line.update(_pays(pays))
    for point, pays in zip(body["frontier"], summary.frontier, strict=True):
        point.update(_pays(pays))
        if not point["replicas_placed"]:
            point["buyer_pays_per_gpu_hour"] = None
    return body
