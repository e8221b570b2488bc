"""Quotes: where the engine would place a request now, and the cheapest option per latency class.
Nothing is written.

Two kinds of money are in a quote. ``buyer_pays_*`` is what the buyer would pay: price − subsidy,
charged per line as its settlement would be (``money.buyer_charge``). ``cost_per_gpu_hour`` and
``total_cost`` are the engine's score: that plus the notional latency weight × RTT, which ranks
placements and is never charged."""

from __future__ import annotations

from drf_spectacular.utils import PolymorphicProxySerializer, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from marketplace import selectors
from marketplace.api.inference_form import InferenceQuoteIn, inference_form_body, is_inference_form
from marketplace.api.inputs import validated_body
from marketplace.api.permissions import IsBuyer, buyer_of, scoped
from marketplace.api.requests import RequestIn
from marketplace.money import MONEY, SETTLED_AMOUNT
from matching.inference_quote import quote_dict

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
BLOCKED_DETAIL = (
    "What blocked it, as data: kind (none_listed, node_size, too_far, price, reliability, window, "
    "node_free, capacity, other); too_far adds region and rtt_ms (the nearest), price adds cheapest "
    "(the lowest price within the bound, CNY per GPU-hour)."
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
    blocked_detail = serializers.JSONField(
        allow_null=True, help_text=f"{BLOCKED_DETAIL} Null when nothing blocked under this class."
    )


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
    unserved_detail = serializers.JSONField(
        allow_null=True, help_text=f"{BLOCKED_DETAIL} Null when every replica is placed."
    )
    placement = QuotePlacementOut(many=True)
    frontier = FrontierPointOut(many=True)
    tiers = TiersOut(help_text="The request's price now in each tier; placement is in its own tier.")


class InferenceAlternativeOut(serializers.Serializer):
    gpu_model = serializers.CharField()
    gpus_per_replica = serializers.IntegerField()
    precision = serializers.CharField()
    source = serializers.ChoiceField(
        choices=["measured", "modelled"], help_text="measured: a provider's profile of its listing; else the model."
    )
    tokens_per_second_per_replica = serializers.FloatField()
    prefill_ms = serializers.FloatField(help_text="Prefill of one prompt, ms (measured: the provider's TTFT).")
    rtt_bound_ms = serializers.FloatField(
        allow_null=True, help_text="TTFT target − prefill − queueing margin, ms; null when the model does not fit."
    )
    max_price_per_gpu_hour = serializers.DecimalField(
        **MONEY, allow_null=True, help_text="The cap per million tokens as a cap per GPU-hour of this setup."
    )
    replicas_needed = serializers.IntegerField(allow_null=True)
    replicas_placed = serializers.IntegerField()
    tokens_per_second = serializers.FloatField(help_text="Replicas placed × tokens/s per replica.")
    tokens_per_second_served = serializers.FloatField(
        help_text="tokens_per_second up to the tokens/s asked: what price_per_million_tokens is over."
    )
    regions = serializers.ListField(child=serializers.CharField())
    ttft_ms = serializers.FloatField(allow_null=True, help_text="Worst line's RTT + queueing margin + prefill.")
    price_per_million_tokens = serializers.DecimalField(
        **MONEY,
        allow_null=True,
        help_text="What the buyer pays, CNY (subsidy deducted), per million output tokens served.",
    )
    blocked = serializers.CharField(help_text='Why it placed nothing, in words ("" when it placed).')


class InferenceQuoteOut(serializers.Serializer):
    """Documents the inference quote's shape (``matching.inference_quote.quote_dict``)."""

    kind = serializers.ChoiceField(choices=["inference"])
    llm_model = serializers.CharField()
    tokens_per_second_asked = serializers.DecimalField(max_digits=10, decimal_places=1)
    tokens_per_second_placed = serializers.FloatField()
    ttft_p95_ms = serializers.DecimalField(max_digits=9, decimal_places=1, help_text="The TTFT target asked, ms.")
    queueing_margin_ms = serializers.FloatField(help_text="Added to every TTFT for the wait in a running batch, ms.")
    chosen = InferenceAlternativeOut(allow_null=True, help_text="The alternative placed; null when none places.")
    unserved_reason = serializers.CharField()
    buyer_pays_total = serializers.DecimalField(**SETTLED_AMOUNT, help_text=PAYS_TOTAL)
    placement = QuotePlacementOut(many=True)
    frontier = InferenceAlternativeOut(
        many=True, help_text="Per GPU model (by code): its cheapest placement, or what blocked it."
    )
    alternatives = InferenceAlternativeOut(many=True, help_text="Every (GPU model, GPUs per replica, precision).")


class QuoteView(APIView):
    """The placement the engine would choose for a request now, without committing anything.

    Two forms: the GPU form (``gpu_model``, replicas, an RTT bound, a cap per GPU-hour) or the
    inference form (``llm_model``, output tokens/s, a TTFT target, a cap per million tokens), which
    quotes every GPU model that can serve the model and answers the cheapest placement and the
    frontier by GPU model. Giving fields of both is a 400 naming the GPU form's fields."""

    permission_classes = scoped(IsBuyer)

    @extend_schema(
        request=PolymorphicProxySerializer("QuoteIn", [RequestIn, InferenceQuoteIn], resource_type_field_name=None),
        responses=PolymorphicProxySerializer(
            "QuoteAnswer", [QuoteOut, InferenceQuoteOut], resource_type_field_name=None
        ),
    )
    def post(self, request):
        if is_inference_form(request.data):
            return self._inference(request)
        terms = validated_body(RequestIn, request)
        quote = selectors.request_quote(buyer=buyer_of(request), **terms)
        return Response(with_buyer_pays(quote, duration_hours=terms["duration_hours"]))

    def _inference(self, request):
        terms = inference_form_body(InferenceQuoteIn, RequestIn, request)
        quote = selectors.inference_quote_for(buyer=buyer_of(request), **terms)
        return Response(inference_with_buyer_pays(quote, duration_hours=terms["duration_hours"]))


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


def inference_with_buyer_pays(quote, *, duration_hours: int) -> dict:
    """``quote_dict(quote)`` (a ``matching.inference_quote.InferenceQuote``) with what the buyer
    would pay over the duration: the placement's ``buyer_pays_total``, and each line's
    ``buyer_pays_total`` and ``buyer_pays_per_gpu_hour``, charged as the settlement charges them."""
    body = quote_dict(quote)
    lines = quote.best.assignments if quote.best is not None else ()
    body["buyer_pays_total"] = str(selectors.buyer_pays_of(lines, duration_hours=duration_hours).total)
    for line, assignment in zip(body["placement"], lines, strict=True):
        line.update(_pays(selectors.buyer_pays_of((assignment,), duration_hours=duration_hours)))
    return body
