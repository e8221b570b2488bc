"""Matches: the caller's allocations with their cost breakdown and explanation; a buyer stops one."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from marketplace import selectors, services
from marketplace.api.inputs import NoFilters, validated_query
from marketplace.api.permissions import IsBuyer, buyer_of, scoped
from marketplace.market_time import market_now
from marketplace.models import Match


class MatchOut(serializers.ModelSerializer):
    voucher_program = serializers.CharField(source="voucher.program.name", allow_null=True, default=None)
    subsidy_total = serializers.SerializerMethodField(help_text="subsidy per GPU-hour × GPUs × hours, CNY")
    request = serializers.IntegerField(source="request_id")
    listing = serializers.IntegerField(source="listing_id")
    region = serializers.CharField(source="listing.region.code")
    provider = serializers.CharField(source="listing.provider.name")
    gpu_model = serializers.CharField(source="listing.gpu_model.code")

    endpoint = serializers.SerializerMethodField(
        help_text="Where the buyer reaches the running match (its provider's agent gave it at ready); "
        "shown to the match's buyer only, null to everyone else and before ready."
    )

    def get_endpoint(self, match) -> str | None:
        """The endpoint is the buyer's: a provider or staff reading the match sees null."""
        viewer = self.context.get("buyer_id")
        if viewer is None and "request" in self.context:
            buyer = buyer_of(self.context["request"])
            viewer = self.context["buyer_id"] = buyer.pk if buyer is not None else 0
        return (match.endpoint or None) if viewer == match.request.buyer_id else None

    def get_subsidy_total(self, match) -> str:
        return str(match.subsidy_per_gpu_hour * match.gpus * match.request.duration_hours)

    class Meta:
        model = Match
        fields = [
            "id",
            "request",
            "listing",
            "region",
            "provider",
            "gpu_model",
            "replicas",
            "gpus_per_replica",
            "gpus",
            "nodes",
            "price_per_gpu_hour",
            "subsidy_per_gpu_hour",
            "subsidy_total",
            "voucher_program",
            "energy_cost_per_gpu_hour",
            "cost_per_gpu_hour",
            "rtt_ms",
            "latency_class",
            "explanation",
            "status",
            "status_reason",
            "ready_at",
            "endpoint",
            "starts_at",
            "ends_at",
            "ended_at",
            "created_at",
        ]


class MatchListView(generics.ListAPIView):
    permission_classes = scoped(IsAuthenticated)
    serializer_class = MatchOut

    def get_queryset(self):
        validated_query(NoFilters, self.request)
        return selectors.match_list_for(self.request.user)


class MatchDetailView(generics.RetrieveAPIView):
    permission_classes = scoped(IsAuthenticated)
    serializer_class = MatchOut
    lookup_url_kwarg = "match_id"

    def get_queryset(self):
        return selectors.match_list_for(self.request.user)


class MatchCancelView(APIView):
    """The buyer stops a match: it pays for the GPU-hours it held (nothing if not yet started)."""

    permission_classes = scoped(IsBuyer)

    @extend_schema(request=None, responses=MatchOut)
    def post(self, request, match_id: int):
        services.match_cancel(match_id=match_id, buyer=buyer_of(request), now=market_now())
        match = selectors.match_list_for(request.user).get(pk=match_id)
        return Response(MatchOut(match, context={"request": request}).data)
