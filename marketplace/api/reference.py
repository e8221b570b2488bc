"""Reference data: regions with their RTTs, GPU models, and idle capacity seen from a city."""

from __future__ import annotations

from django.http import Http404
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import generics, serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from marketplace import selectors
from marketplace.api.fields import ReferenceCodeField
from marketplace.api.inputs import NoFilters, validated_query
from marketplace.api.permissions import scoped
from marketplace.market_time import market_now
from marketplace.models import GpuModel, Region
from marketplace.money import MONEY
from matching.latency import latency_class_of


class RegionOut(serializers.ModelSerializer):
    class Meta:
        model = Region
        fields = ["code", "name", "name_zh", "kind", "province", "lat", "lon", "power_price_cny_kwh", "pue", "is_west"]


class RttOut(serializers.Serializer):
    region = serializers.CharField(source="target_region.code")
    rtt_ms = serializers.DecimalField(max_digits=7, decimal_places=1)
    latency_class = serializers.SerializerMethodField()
    source = serializers.CharField()

    def get_latency_class(self, rtt) -> str:
        return latency_class_of(float(rtt.rtt_ms)).value


class RegionDetailOut(RegionOut):
    rtts = RttOut(many=True, source="rtts_out.all")

    class Meta(RegionOut.Meta):
        fields = [*RegionOut.Meta.fields, "rtts"]


class GpuModelOut(serializers.ModelSerializer):
    class Meta:
        model = GpuModel
        fields = [
            "code",
            "name",
            "name_zh",
            "vram_gb",
            "tdp_w",
            "indicative_price_per_gpu_hour",
            "memory_bandwidth_gbps",
            "bf16_tflops",
            "fp8_tflops",
            "interconnect",
        ]
        extra_kwargs = {
            "bf16_tflops": {"help_text": "Dense BF16 tensor TFLOPS (no sparsity)."},
            "fp8_tflops": {"help_text": "Dense FP8 tensor TFLOPS; null where the GPU has no FP8."},
            "interconnect": {"help_text": "How a node's GPUs talk: nvlink, pcie or hccs (Huawei)."},
        }


class CapacityQuery(serializers.Serializer):
    origin = ReferenceCodeField(Region)
    gpu_model = ReferenceCodeField(GpuModel, required=False)


class CapacityRowOut(serializers.Serializer):
    region = serializers.CharField()
    latency_class = serializers.CharField()
    rtt_ms = serializers.FloatField()
    gpu_model = serializers.CharField()
    free_gpus = serializers.IntegerField()
    min_price_per_gpu_hour = serializers.DecimalField(**MONEY)
    listings = serializers.IntegerField()
    best_reliability = serializers.SerializerMethodField(
        help_text="The highest 30-day reliability (0–1, 4 places) among these listings; null when none has a "
        "score (too little history)."
    )

    @extend_schema_field(serializers.DecimalField(max_digits=5, decimal_places=4, allow_null=True))
    def get_best_reliability(self, row) -> str | None:
        """From the scores in the context (``reliability``: every row's listings, one query)."""
        scores = [self.context["reliability"].by_listing[pk].score for pk in row.listing_ids]
        best = max((score for score in scores if score is not None), default=None)
        return None if best is None else str(best)


class RegionListView(generics.ListAPIView):
    permission_classes = scoped(AllowAny)
    serializer_class = RegionOut

    def get_queryset(self):
        validated_query(NoFilters, self.request)
        return selectors.region_list()


class RegionDetailView(APIView):
    permission_classes = scoped(AllowAny)

    @extend_schema(responses=RegionDetailOut)
    def get(self, request, code: str):
        region = selectors.region_with_rtts(code=code)
        if region is None:
            raise Http404
        return Response(RegionDetailOut(region).data)


class GpuModelListView(generics.ListAPIView):
    permission_classes = scoped(AllowAny)
    serializer_class = GpuModelOut

    def get_queryset(self):
        validated_query(NoFilters, self.request)
        return selectors.gpu_model_list()


class CapacityView(APIView):
    """Idle GPUs by region and latency class as seen from ``origin``, nearest first."""

    permission_classes = scoped(AllowAny)

    @extend_schema(parameters=[CapacityQuery], responses=CapacityRowOut(many=True))
    def get(self, request):
        query = validated_query(CapacityQuery, request)
        now = market_now()
        rows = selectors.capacity_by_region(origin=query["origin"], gpu_model=query.get("gpu_model"), now=now)
        index = selectors.reliability_index(listing_ids=[pk for row in rows for pk in row.listing_ids], now=now)
        return Response(CapacityRowOut(rows, many=True, context={"reliability": index}).data)
