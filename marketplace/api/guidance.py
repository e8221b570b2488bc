"""Guidance for a provider's listing (``/listings/{id}/guidance/``): why its free GPUs are idle, and
the highest price at which the engine would fill them now (docs/guidance.md)."""

from __future__ import annotations

from datetime import UTC

from django.http import Http404
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from marketplace import selectors
from marketplace.api.inputs import NoFilters, validated_query
from marketplace.api.permissions import IsProvider, provider_of, scoped
from marketplace.api.schema import DOMAIN_RULE
from marketplace.money import MONEY

DEMAND_NOTE = (
    "Computed on the current open demand and free capacity of the listing's GPU model (the snapshot the "
    "next matching round solves), not on past rounds."
)


class PriceProbeOut(serializers.Serializer):
    price_per_gpu_hour = serializers.DecimalField(
        **MONEY, source="price", help_text="The listing's price in this re-solve."
    )
    gpu_hours = serializers.IntegerField(help_text="GPU-hours the re-solved plan sells on the listing at it.")


class GuidanceOut(serializers.Serializer):
    listing = serializers.IntegerField(source="listing.pk", help_text="The listing's id.")
    free_gpus = serializers.IntegerField(help_text="Its idle GPUs now (0 when it is not offered).")
    price_per_gpu_hour = serializers.DecimalField(
        **MONEY, source="listing.price_per_gpu_hour", help_text="Its price now."
    )
    energy_cost_per_gpu_hour = serializers.DecimalField(
        **MONEY, source="floor", help_text="The lowest price searched: its energy cost (at least 0.01)."
    )
    next_round_gpu_hours = serializers.IntegerField(
        source="gpu_hours_at_price",
        help_text=f"GPU-hours the next round would sell on it at its own price. {DEMAND_NOTE}"
    )
    suggested_price_per_gpu_hour = serializers.DecimalField(
        **MONEY,
        source="suggested_price",
        allow_null=True,
        help_text=f"{DOMAIN_RULE} the highest price, in whole fen between energy_cost_per_gpu_hour and the "
        "highest cap of any request that could use the listing, at which the engine's re-solved plan places "
        "at least one replica on it; one fen more places none. Found by exact re-solves (bisection; at most "
        f"20). null: no price from its energy cost up would fill it. {DEMAND_NOTE}",
    )
    suggested_gpu_hours = serializers.IntegerField(
        help_text="GPU-hours it would sell at suggested_price_per_gpu_hour (0 when that is null)."
    )
    idle_reasons = serializers.SerializerMethodField(
        help_text="Why its GPUs are idle, as sentences in the request's language (regions named in English)."
    )
    reason_codes = serializers.ListField(
        child=serializers.CharField(),
        help_text="The reasons' codes (no_demand, node_size, out_of_reach, reliability, opens_late, window_short, "
        "no_free_node, price_above_cap, outcompeted, not_active, no_free_gpus, left_out), in the order shown.",
    )
    probes = PriceProbeOut(
        many=True, help_text="Every re-solve of the price search, in order."
    )
    solves = serializers.IntegerField(help_text="Exact re-solves made (at its own price, then the search).")
    duration_ms = serializers.FloatField(help_text="Time the re-solves took.")
    computed_at = serializers.DateTimeField(source="now", default_timezone=UTC)

    @extend_schema_field(serializers.ListField(child=serializers.CharField()))
    def get_idle_reasons(self, guidance) -> list[str]:
        return selectors.idle_reasons(guidance, name=lambda thing: thing.name)


class ListingGuidanceView(APIView):
    """A listing's guidance: only its provider reads it (another's listing does not exist for the caller)."""

    permission_classes = scoped(IsProvider)

    @extend_schema(responses=GuidanceOut)
    def get(self, request, listing_id: int):
        validated_query(NoFilters, request)
        guidance = selectors.listing_guidance(listing_id=listing_id, provider=provider_of(request))
        if guidance is None:
            raise Http404
        return Response(GuidanceOut(guidance).data)
