"""Matches: the caller's allocations with their cost breakdown and explanation; a buyer stops one."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import generics, serializers
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from marketplace import bounds, selectors, services
from marketplace.api.fields import AwareTime
from marketplace.api.inputs import validated_query
from marketplace.api.permissions import IsBuyer, buyer_of, scoped
from marketplace.api.schema import DOMAIN_RULE
from marketplace.market_time import market_now
from marketplace.models import Match
from marketplace.money import MONEY
from marketplace.reliability import Reliability


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

    listing_reliability = serializers.SerializerMethodField(
        help_text="The listing's 30-day reliability now (0–1, 4 places; see the listing's reliability); "
        "null with too little history."
    )
    listing_reliability_matches = serializers.SerializerMethodField(
        help_text="The matches behind listing_reliability (30 days)."
    )

    def _reliability(self, match) -> Reliability:
        """The listing's score at read time: for a page, all its listings in one query."""
        index = self.context.get("reliability")
        if index is None or match.listing_id not in index.by_listing:
            page = self.parent.instance if isinstance(self.parent, serializers.ListSerializer) else [match]
            ids = {m.listing_id for m in page} | {match.listing_id}
            index = self.context["reliability"] = selectors.reliability_index(listing_ids=ids, now=market_now())
        return index.by_listing[match.listing_id]

    @extend_schema_field(serializers.DecimalField(max_digits=5, decimal_places=4, allow_null=True))
    def get_listing_reliability(self, match) -> str | None:
        return self._reliability(match).text

    def get_listing_reliability_matches(self, match) -> int:
        return self._reliability(match).matches

    precision = serializers.SerializerMethodField(
        help_text="An inference request's match: the precision its replicas serve at; null on a GPU-form match."
    )
    tokens_per_second = serializers.DecimalField(
        max_digits=12,
        decimal_places=1,
        allow_null=True,
        read_only=True,
        help_text="An inference request's match: output tokens/s all its replicas make; null on a GPU-form match.",
    )
    ttft_ms = serializers.DecimalField(
        max_digits=8,
        decimal_places=1,
        allow_null=True,
        read_only=True,
        help_text="An inference request's match: its estimated TTFT (network RTT + queueing margin + prefill), "
        "ms; null on a GPU-form match.",
    )
    price_per_million_tokens = serializers.DecimalField(
        **MONEY,
        allow_null=True,
        read_only=True,
        help_text="An inference request's match: what the buyer pays, CNY (subsidy deducted), per million output "
        "tokens it makes; null on a GPU-form match.",
    )

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_precision(self, match) -> str | None:
        return match.precision or None

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
            "preempt_at",
            "created_at",
            "listing_reliability",
            "listing_reliability_matches",
            "precision",
            "tokens_per_second",
            "ttft_ms",
            "price_per_million_tokens",
        ]


#: What a filter's time must be, beyond the date-time format the schema states.
UTC_RULE = (
    f"ISO 8601 with its offset (…Z, or …%2B08:00 in a query). {DOMAIN_RULE} a time without an offset, or "
    "one that leaves the years 1–9999 once in UTC, is a 400 naming the parameter."
)


class MatchQuery(serializers.Serializer):
    """Filters of the match list; each narrows what the caller may see, never widens it."""

    request = serializers.IntegerField(
        **bounds.OBJECT_ID.field_kwargs(),
        required=False,
        help_text="Only this request's matches (one of the caller's; else none).",
    )
    listing = serializers.IntegerField(
        **bounds.OBJECT_ID.field_kwargs(),
        required=False,
        help_text="Only this listing's matches (one of the caller's; else none).",
    )
    status = serializers.ChoiceField(
        choices=Match.Status.values, required=False, help_text="Only matches in this status."
    )
    created_after = AwareTime(required=False, help_text=f"Only matches created at or after this time. {UTC_RULE}")
    created_before = AwareTime(required=False, help_text=f"Only matches created before this time. {UTC_RULE}")


class MatchListView(generics.ListAPIView):
    """The caller's matches (a buyer's on its requests, a provider's on its listings, staff all),
    narrowed by the filters."""

    permission_classes = scoped(IsAuthenticated)
    serializer_class = MatchOut

    def get_queryset(self):
        query = validated_query(MatchQuery, self.request)
        return selectors.match_list_filtered(
            self.request.user,
            request_id=query.get("request"),
            listing_id=query.get("listing"),
            status=query.get("status"),
            created_after=query.get("created_after"),
            created_before=query.get("created_before"),
        )

    @extend_schema(parameters=[MatchQuery])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


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
