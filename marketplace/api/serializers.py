"""Input serializers validate shapes and look up referenced rows; output serializers shape data.

Domain rules (window order, node sizes, who may do what) live in the services, so the web forms
and the API share one set of rules.
"""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone
from rest_framework import serializers

from marketplace import selectors
from marketplace.models import (
    NODE_SIZE_CHOICES,
    BuyerRequest,
    GpuModel,
    Listing,
    Match,
    MatchingRun,
    Organisation,
    Region,
)
from matching.latency import LatencyClass, latency_class_of

MONEY = {"max_digits": 12, "decimal_places": 4}
LATENCY_CLASSES = [c.value for c in LatencyClass]


def region_field(**kwargs) -> serializers.SlugRelatedField:
    return serializers.SlugRelatedField(slug_field="code", queryset=Region.objects.all(), **kwargs)


def gpu_model_field(**kwargs) -> serializers.SlugRelatedField:
    return serializers.SlugRelatedField(slug_field="code", queryset=GpuModel.objects.all(), **kwargs)


# --- accounts -----------------------------------------------------------------------------------


class RegisterIn(serializers.Serializer):
    username = serializers.RegexField(r"^[\w.@+-]+\Z", max_length=150)
    password = serializers.CharField(write_only=True, max_length=128, style={"input_type": "password"})
    email = serializers.EmailField()
    role = serializers.ChoiceField(choices=Organisation.Kind.values)
    organisation = serializers.CharField(max_length=200)


class RegisterOut(serializers.Serializer):
    username = serializers.CharField()
    email = serializers.EmailField()
    role = serializers.CharField(source="membership.organisation.kind")
    organisation = serializers.CharField(source="membership.organisation.name")


# --- reference data -----------------------------------------------------------------------------


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
        fields = ["code", "name", "vram_gb", "tdp_w", "indicative_price_per_gpu_hour"]


# --- capacity -----------------------------------------------------------------------------------


class CapacityQuery(serializers.Serializer):
    origin = region_field()
    gpu_model = gpu_model_field(required=False)


class CapacityRowOut(serializers.Serializer):
    region = serializers.CharField()
    latency_class = serializers.CharField()
    rtt_ms = serializers.FloatField()
    gpu_model = serializers.CharField()
    free_gpus = serializers.IntegerField()
    min_price_per_gpu_hour = serializers.DecimalField(**MONEY)
    listings = serializers.IntegerField()


# --- listings -----------------------------------------------------------------------------------

LISTING_ORDERINGS = {
    "price": "price_per_gpu_hour",
    "-price": "-price_per_gpu_hour",
    "free_gpus": "free",
    "-free_gpus": "-free",
    "rtt": "rtt_ms",
    "-rtt": "-rtt_ms",
    "id": "id",
    "-id": "-id",
}


class ListingQuery(serializers.Serializer):
    """Query parameters of the listing search; unknown values are a 400, never ignored."""

    region = region_field(required=False)
    gpu_model = gpu_model_field(required=False)
    origin = region_field(required=False)
    latency_class = serializers.ChoiceField(choices=LATENCY_CLASSES, required=False)
    max_price = serializers.DecimalField(**MONEY, min_value=0, required=False)
    min_free_gpus = serializers.IntegerField(min_value=0, required=False)
    status = serializers.ChoiceField(choices=Listing.Status.values, required=False)
    mine = serializers.BooleanField(required=False, default=False)
    ordering = serializers.ChoiceField(choices=list(LISTING_ORDERINGS), required=False, default="id")

    def validate(self, attrs):
        if "origin" not in attrs:
            if "latency_class" in attrs:
                raise serializers.ValidationError({"latency_class": ["Needs origin: latency is from a city."]})
            if attrs["ordering"].lstrip("-") == "rtt":
                raise serializers.ValidationError({"ordering": ["Ordering by rtt needs origin."]})
        return attrs


class ListingIn(serializers.Serializer):
    region = region_field()
    gpu_model = gpu_model_field()
    gpu_count = serializers.IntegerField(min_value=1, max_value=100_000)
    gpus_per_node = serializers.ChoiceField(choices=NODE_SIZE_CHOICES)
    price_per_gpu_hour = serializers.DecimalField(**MONEY, min_value=0)
    available_from = serializers.DateTimeField(required=False)
    available_until = serializers.DateTimeField(required=False)

    def validate(self, attrs):
        """Default window: from now, for 30 days."""
        attrs.setdefault("available_from", timezone.now())
        attrs.setdefault("available_until", attrs["available_from"] + timedelta(days=30))
        return attrs


class ListingUpdateIn(serializers.Serializer):
    gpu_count = serializers.IntegerField(min_value=1, max_value=100_000, required=False)
    gpus_per_node = serializers.ChoiceField(choices=NODE_SIZE_CHOICES, required=False)
    price_per_gpu_hour = serializers.DecimalField(**MONEY, min_value=0, required=False)
    available_from = serializers.DateTimeField(required=False)
    available_until = serializers.DateTimeField(required=False)


class ListingOut(serializers.ModelSerializer):
    provider = serializers.CharField(source="provider.name")
    region = serializers.CharField(source="region.code")
    gpu_model = serializers.CharField(source="gpu_model.code")
    free_gpus = serializers.IntegerField(source="free")
    energy_cost_per_gpu_hour = serializers.SerializerMethodField()
    rtt_ms = serializers.SerializerMethodField(help_text="RTT from the search's origin, when one was given.")

    class Meta:
        model = Listing
        fields = [
            "id",
            "provider",
            "region",
            "gpu_model",
            "gpu_count",
            "gpus_per_node",
            "free_gpus",
            "price_per_gpu_hour",
            "energy_cost_per_gpu_hour",
            "available_from",
            "available_until",
            "status",
            "rtt_ms",
        ]

    def get_energy_cost_per_gpu_hour(self, listing) -> str:
        return str(selectors.listing_energy_cost(listing))

    def get_rtt_ms(self, listing) -> float | None:
        rtt = getattr(listing, "rtt_ms", None)
        return None if rtt is None else float(rtt)


# --- requests -----------------------------------------------------------------------------------


class RequestIn(serializers.Serializer):
    gpu_model = gpu_model_field()
    gpus_per_replica = serializers.ChoiceField(choices=NODE_SIZE_CHOICES)
    replicas = serializers.IntegerField(min_value=1, max_value=4096)
    origin = region_field()
    latency_class = serializers.ChoiceField(choices=LATENCY_CLASSES, required=False)
    max_rtt_ms = serializers.DecimalField(max_digits=7, decimal_places=1, min_value=0, required=False)
    latency_weight = serializers.DecimalField(max_digits=8, decimal_places=4, min_value=0, required=False)
    max_price_per_gpu_hour = serializers.DecimalField(**MONEY, min_value=0)
    duration_hours = serializers.IntegerField(min_value=1, max_value=24 * 366)
    start_by = serializers.DateTimeField(required=False)

    def validate(self, attrs):
        """Default: the request must start within 24 hours."""
        attrs.setdefault("start_by", timezone.now() + timedelta(hours=24))
        return attrs


class RequestOut(serializers.ModelSerializer):
    gpu_model = serializers.CharField(source="gpu_model.code")
    origin = serializers.CharField(source="origin.code")

    class Meta:
        model = BuyerRequest
        fields = [
            "id",
            "gpu_model",
            "gpus_per_replica",
            "replicas",
            "origin",
            "latency_class",
            "max_rtt_ms",
            "latency_weight",
            "max_price_per_gpu_hour",
            "duration_hours",
            "start_by",
            "status",
            "matched_replicas",
            "priority",
            "created_at",
        ]


class QuotePlacementOut(serializers.Serializer):
    listing_id = serializers.IntegerField()
    region = serializers.CharField()
    replicas = serializers.IntegerField()
    gpus = serializers.IntegerField()
    price_per_gpu_hour = serializers.DecimalField(**MONEY)
    subsidy_per_gpu_hour = serializers.DecimalField(**MONEY)
    energy_cost_per_gpu_hour = serializers.DecimalField(**MONEY)
    cost_per_gpu_hour = serializers.DecimalField(**MONEY)
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
    cost_per_gpu_hour = serializers.DecimalField(**MONEY, allow_null=True)
    total_cost = serializers.DecimalField(max_digits=18, decimal_places=4)
    blocked = serializers.CharField()


class QuoteOut(serializers.Serializer):
    """Documents the quote's shape (the engine's ``Quote.to_dict()``)."""

    request_id = serializers.IntegerField()
    replicas_requested = serializers.IntegerField()
    replicas_placed = serializers.IntegerField()
    total_cost = serializers.DecimalField(max_digits=18, decimal_places=4)
    unserved_reason = serializers.CharField()
    placement = QuotePlacementOut(many=True)
    frontier = FrontierPointOut(many=True)


# --- matches and runs ---------------------------------------------------------------------------


class MatchOut(serializers.ModelSerializer):
    request = serializers.IntegerField(source="request_id")
    listing = serializers.IntegerField(source="listing_id")
    region = serializers.CharField(source="listing.region.code")
    provider = serializers.CharField(source="listing.provider.name")
    gpu_model = serializers.CharField(source="listing.gpu_model.code")

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
            "energy_cost_per_gpu_hour",
            "cost_per_gpu_hour",
            "rtt_ms",
            "latency_class",
            "explanation",
            "status",
            "starts_at",
            "ends_at",
            "created_at",
        ]


class MatchingRunOut(serializers.ModelSerializer):
    class Meta:
        model = MatchingRun
        fields = [
            "id",
            "trigger",
            "shard",
            "status",
            "started_at",
            "finished_at",
            "solver",
            "request_count",
            "listing_count",
            "objective",
            "lower_bound",
            "gap",
            "served_replicas",
            "unserved_replicas",
            "unserved",
            "timings_ms",
            "error",
        ]
