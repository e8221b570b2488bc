"""Clearing prices: each region's price of a GPU model after the latest round, and its history.

Anyone may read them (docs/economics.md says what they mean).
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from marketplace import selectors
from marketplace.api.fields import ReferenceCodeField
from marketplace.api.inputs import validated_query
from marketplace.api.permissions import scoped
from marketplace.market_time import market_now
from marketplace.models import ClearingPrice, GpuModel, Region
from marketplace.money import MONEY

#: The longest history one request may ask for.
MAX_HISTORY_HOURS = 720

_PRICE = dict(MONEY, allow_null=True)


class PricesQuery(serializers.Serializer):
    gpu_model = ReferenceCodeField(GpuModel)
    origin = ReferenceCodeField(Region)


class CurrentPriceOut(serializers.Serializer):
    region = serializers.CharField()
    gpu_model = serializers.CharField()
    rtt_ms = serializers.FloatField(allow_null=True, help_text="RTT from the origin; null when unknown.")
    latency_class = serializers.CharField(
        allow_null=True, help_text="The tightest latency class the RTT from the origin meets."
    )
    price_per_gpu_hour = serializers.DecimalField(
        **_PRICE,
        help_text="The clearing price: the lowest (ask + scarcity rent) among the region's listings of the model. "
        "Null when no listing there could be priced in that round.",
    )
    rent_per_gpu_hour = serializers.DecimalField(
        **_PRICE, help_text="The highest scarcity rent of a listing there (0: capacity left over)."
    )
    latency_rent_per_gpu_hour = serializers.DecimalField(
        **_PRICE, help_text="This region's price minus the lowest price of the model in any region of that round."
    )
    free_gpus = serializers.IntegerField(help_text="Free GPUs there after that round.")
    listings = serializers.IntegerField()
    saturated_listings = serializers.IntegerField(help_text="Listings with no unit free after the round.")
    unavailable_listings = serializers.IntegerField(help_text="Saturated listings beyond the round's re-solve budget.")
    run_id = serializers.IntegerField(help_text="The matching run that recorded the price.")
    recorded_at = serializers.DateTimeField()


class HistoryQuery(serializers.Serializer):
    gpu_model = ReferenceCodeField(GpuModel)
    region = ReferenceCodeField(Region)
    hours = serializers.IntegerField(
        min_value=1, max_value=MAX_HISTORY_HOURS, default=24, help_text="The window, ending now (market time)."
    )


class PricePointOut(serializers.ModelSerializer):
    run_id = serializers.IntegerField()

    class Meta:
        model = ClearingPrice
        fields = [
            "run_id",
            "recorded_at",
            "price_per_gpu_hour",
            "rent_per_gpu_hour",
            "free_gpus",
            "listings",
            "saturated_listings",
            "unavailable_listings",
        ]


class PriceListView(APIView):
    """The clearing price per region of one GPU model after its latest round, nearest to ``origin`` first."""

    permission_classes = scoped(AllowAny)

    @extend_schema(parameters=[PricesQuery], responses=CurrentPriceOut(many=True))
    def get(self, request):
        query = validated_query(PricesQuery, request)
        rows = selectors.latest_prices(gpu_model=query["gpu_model"], origin=query["origin"])
        return Response(CurrentPriceOut(rows, many=True).data)


class PriceHistoryView(generics.ListAPIView):
    """One region's clearing price of one GPU model over the last ``hours``, oldest first, paginated."""

    permission_classes = scoped(AllowAny)
    serializer_class = PricePointOut

    @extend_schema(parameters=[HistoryQuery])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        query = validated_query(HistoryQuery, self.request)
        return selectors.price_history(
            gpu_model=query["gpu_model"], region=query["region"], hours=query["hours"], now=market_now()
        )
