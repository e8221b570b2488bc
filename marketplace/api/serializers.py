"""Input serializers validate shapes and look up referenced rows; output serializers shape data.

Domain rules (window order, node sizes, who may do what) live in the services, so the web forms
and the API share one set of rules.
"""

from __future__ import annotations

from datetime import UTC, datetime

from rest_framework import serializers

from marketplace import selectors
from marketplace.clock import market_now
from marketplace.demand import start_by_default
from marketplace.models import (
    NODE_SIZE_CHOICES,
    BuyerRequest,
    GpuModel,
    Listing,
    Match,
    MatchingRun,
    Organisation,
    Region,
    Voucher,
    VoucherProgram,
)
from marketplace.services.listings import listing_window_default
from matching.latency import LatencyClass, latency_class_of

MONEY = {"max_digits": 12, "decimal_places": 4}
LATENCY_CLASSES = [c.value for c in LatencyClass]


def region_field(**kwargs) -> serializers.SlugRelatedField:
    return serializers.SlugRelatedField(slug_field="code", queryset=Region.objects.all(), **kwargs)


def gpu_model_field(**kwargs) -> serializers.SlugRelatedField:
    return serializers.SlugRelatedField(slug_field="code", queryset=GpuModel.objects.all(), **kwargs)


class JsonTypeMixin:
    """Bodies are JSON: a field takes only the JSON type its schema declares. DRF's text fields turn
    a number into a string (``"username": 1e-05`` would make a user named "1e-05"), and its number
    fields parse a string (``"replicas": "3"``); here either is a 400 naming the field."""

    takes_text = True  # the schema says string (else: number)

    def to_internal_value(self, data):
        if isinstance(data, str) != self.takes_text:
            self.fail("json_type")
        return super().to_internal_value(data)


class TextField(JsonTypeMixin, serializers.CharField):
    default_error_messages = {"json_type": "Not a valid string."}


class PatternField(JsonTypeMixin, serializers.RegexField):
    default_error_messages = {"json_type": "Not a valid string."}


class DecimalText(JsonTypeMixin, serializers.DecimalField):
    """A decimal in a body: a string such as "9.50", as the schema says; a JSON number, which would
    pass through a binary float, is a 400."""

    default_error_messages = {"json_type": 'A decimal number as a string, such as "9.50".'}


class IntegerNumber(JsonTypeMixin, serializers.IntegerField):
    takes_text = False
    default_error_messages = {"json_type": "A whole number, not a string."}


class NumberChoice(JsonTypeMixin, serializers.ChoiceField):
    takes_text = False
    default_error_messages = {"json_type": "A whole number, not a string."}


class ReferenceCodeField(serializers.SlugRelatedField):
    """A region or GPU model by code, read from the process's copy of the reference table.

    For search parameters, which only filter by the row: no query per parameter per request. Bodies
    that write keep ``region_field``/``gpu_model_field``, which read the row as it is now.
    """

    def __init__(self, model, **kwargs):
        super().__init__(slug_field="code", queryset=model.objects.all(), **kwargs)

    def to_internal_value(self, data):
        row = selectors.reference_by_code(self.queryset.model, str(data))
        if row is None:
            self.fail("does_not_exist", slug_name=self.slug_field, value=str(data))
        return row


# --- accounts -----------------------------------------------------------------------------------


class RegisterIn(serializers.Serializer):
    username = PatternField(r"^[\w.@+-]+\Z", max_length=150)
    password = TextField(write_only=True, max_length=128, style={"input_type": "password"})
    email = serializers.EmailField()
    role = serializers.ChoiceField(choices=Organisation.Kind.values)
    organisation = TextField(max_length=200)


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

    region = ReferenceCodeField(Region, required=False)
    gpu_model = ReferenceCodeField(GpuModel, required=False)
    origin = ReferenceCodeField(Region, required=False)
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
    gpu_count = IntegerNumber(min_value=1, max_value=100_000)
    gpus_per_node = NumberChoice(choices=NODE_SIZE_CHOICES)
    price_per_gpu_hour = DecimalText(**MONEY, min_value=0)
    available_from = serializers.DateTimeField(required=False)
    available_until = serializers.DateTimeField(required=False)

    def validate(self, attrs):
        """Default window: ``listing_window_default``."""
        attrs["available_from"], attrs["available_until"] = listing_window_default(
            attrs.get("available_from"), attrs.get("available_until"), now=market_now()
        )
        return attrs


class ListingUpdateIn(serializers.Serializer):
    gpu_count = IntegerNumber(min_value=1, max_value=100_000, required=False)
    gpus_per_node = NumberChoice(choices=NODE_SIZE_CHOICES, required=False)
    price_per_gpu_hour = DecimalText(**MONEY, min_value=0, required=False)
    available_from = serializers.DateTimeField(required=False)
    available_until = serializers.DateTimeField(required=False)


class ListingOut(serializers.ModelSerializer):
    provider = serializers.CharField(source="provider_name")
    region = serializers.SerializerMethodField()
    gpu_model = serializers.SerializerMethodField()
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

    def get_region(self, listing) -> str:
        return selectors.reference_by_id(Region, listing.region_id).code

    def get_gpu_model(self, listing) -> str:
        return selectors.reference_by_id(GpuModel, listing.gpu_model_id).code

    def get_energy_cost_per_gpu_hour(self, listing) -> str:
        return str(selectors.listing_shown_energy_cost(listing))

    def get_rtt_ms(self, listing) -> float | None:
        """From the search's origin: its RTTs by region id come in the context (``rtt_ms_by_region``)."""
        rtt = self.context.get("rtt_ms_by_region", {}).get(listing.region_id)
        return None if rtt is None else float(rtt)

    def to_representation(self, listing) -> dict:
        """The declared fields, written out: a search page holds up to 200 listings, and DRF's
        field-by-field walk was most of its cost. ``field_by_field`` is that walk, which the tests
        hold this equal to. What depends only on the region and GPU model is worked out once per
        pair a page shows."""
        region, gpu_model, energy = self._by_place(listing)
        return {
            "id": listing.id,
            "provider": listing.provider_name,
            "region": region,
            "gpu_model": gpu_model,
            "gpu_count": listing.gpu_count,
            "gpus_per_node": listing.gpus_per_node,
            "free_gpus": listing.free,
            "price_per_gpu_hour": _MONEY_OUT.to_representation(listing.price_per_gpu_hour),
            "energy_cost_per_gpu_hour": energy,
            "available_from": _TIME_OUT.to_representation(listing.available_from),
            "available_until": _TIME_OUT.to_representation(listing.available_until),
            "status": listing.status,
            "rtt_ms": self.get_rtt_ms(listing),
        }

    def _by_place(self, listing) -> tuple[str, str, str]:
        key = (listing.region_id, listing.gpu_model_id)
        shown = self.__dict__.setdefault("_places", {})
        if key not in shown:
            energy = self.get_energy_cost_per_gpu_hour(listing)
            shown[key] = (self.get_region(listing), self.get_gpu_model(listing), energy)
        return shown[key]

    def field_by_field(self, listing) -> dict:
        return super().to_representation(listing)


class UtcTimeOut(serializers.DateTimeField):
    """What ``DateTimeField`` writes of an aware time in UTC (this project's only time zone), at a
    tenth of the cost: DRF looks the time zone and the output format up in the settings for every
    value, which showed at two times per listing and up to 200 listings a page."""

    def to_representation(self, value):
        if not isinstance(value, datetime) or value.tzinfo is None:
            return super().to_representation(value)
        text = value.astimezone(UTC).isoformat()
        return text[:-6] + "Z" if text.endswith("+00:00") else text


_MONEY_OUT = serializers.DecimalField(**MONEY)
_TIME_OUT = UtcTimeOut(default_timezone=UTC)


# --- requests -----------------------------------------------------------------------------------


class RequestIn(serializers.Serializer):
    gpu_model = gpu_model_field()
    gpus_per_replica = NumberChoice(choices=NODE_SIZE_CHOICES)
    replicas = IntegerNumber(min_value=1, max_value=4096)
    origin = region_field()
    latency_class = serializers.ChoiceField(choices=LATENCY_CLASSES, required=False)
    max_rtt_ms = DecimalText(max_digits=7, decimal_places=1, min_value=0, required=False)
    latency_weight = DecimalText(max_digits=8, decimal_places=4, min_value=0, required=False)
    max_price_per_gpu_hour = DecimalText(**MONEY, min_value=0)
    duration_hours = IntegerNumber(min_value=1, max_value=24 * 366)
    start_by = serializers.DateTimeField(required=False)
    voucher_code = TextField(max_length=64, required=False, allow_blank=True)

    def validate(self, attrs):
        """Default ``start_by``: ``start_by_default``."""
        attrs["start_by"] = start_by_default(attrs.get("start_by"), now=market_now())
        return attrs


class RequestOut(serializers.ModelSerializer):
    gpu_model = serializers.CharField(source="gpu_model.code")
    origin = serializers.CharField(source="origin.code")
    voucher_program = serializers.CharField(source="voucher.program.name", allow_null=True, default=None)

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
            "voucher_program",
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
    voucher_program = serializers.CharField(source="voucher.program.name", allow_null=True, default=None)
    subsidy_total = serializers.SerializerMethodField(help_text="subsidy per GPU-hour × GPUs × hours, CNY")
    request = serializers.IntegerField(source="request_id")
    listing = serializers.IntegerField(source="listing_id")
    region = serializers.CharField(source="listing.region.code")
    provider = serializers.CharField(source="listing.provider.name")
    gpu_model = serializers.CharField(source="listing.gpu_model.code")

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
            "starts_at",
            "ends_at",
            "ended_at",
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


# --- vouchers -----------------------------------------------------------------------------------


class ClaimIn(serializers.Serializer):
    code = TextField(max_length=64)


class VoucherOut(serializers.ModelSerializer):
    """A buyer's own voucher: the code is shown to its holder only."""

    program = serializers.CharField(source="program.name")
    sponsor = serializers.CharField(source="program.sponsor")
    kind = serializers.CharField(source="program.kind")
    percent = serializers.DecimalField(source="program.percent", max_digits=5, decimal_places=2, allow_null=True)
    free_gpu_hours = serializers.DecimalField(
        source="program.free_gpu_hours", max_digits=10, decimal_places=2, allow_null=True
    )
    valid_until = serializers.DateTimeField(source="program.valid_until")
    eligible_regions = serializers.SlugRelatedField(
        source="program.eligible_regions", slug_field="code", many=True, read_only=True
    )
    eligible_gpu_models = serializers.SlugRelatedField(
        source="program.eligible_gpu_models", slug_field="code", many=True, read_only=True
    )
    remaining_value = serializers.DecimalField(max_digits=16, decimal_places=4, read_only=True, allow_null=True)

    class Meta:
        model = Voucher
        fields = [
            "id",
            "code",
            "program",
            "sponsor",
            "kind",
            "percent",
            "free_gpu_hours",
            "cap",
            "spent",
            "remaining_value",
            "status",
            "valid_until",
            "eligible_regions",
            "eligible_gpu_models",
            "claimed_at",
        ]


class VoucherProgramIn(serializers.Serializer):
    name = TextField(max_length=200)
    sponsor = TextField(max_length=200, required=False)
    kind = serializers.ChoiceField(choices=VoucherProgram.Kind.choices, default=VoucherProgram.Kind.PERCENT)
    percent = DecimalText(max_digits=5, decimal_places=2, required=False, allow_null=True)
    free_gpu_hours = DecimalText(max_digits=10, decimal_places=2, required=False, allow_null=True)
    cap_per_buyer = DecimalText(max_digits=16, decimal_places=4, required=False, allow_null=True)
    budget = DecimalText(max_digits=16, decimal_places=4)
    valid_from = serializers.DateTimeField(required=False)
    valid_until = serializers.DateTimeField()
    eligible_regions = region_field(many=True, required=False)
    eligible_gpu_models = gpu_model_field(many=True, required=False)
    eligible_buyer_provinces = serializers.ListField(child=TextField(max_length=100), required=False)
    min_spend = DecimalText(max_digits=16, decimal_places=4, required=False, allow_null=True)
    max_spend = DecimalText(max_digits=16, decimal_places=4, required=False, allow_null=True)

    def validate(self, attrs):
        attrs.setdefault("valid_from", market_now())
        return attrs


class VoucherProgramUpdateIn(serializers.Serializer):
    name = TextField(max_length=200, required=False)
    budget = DecimalText(max_digits=16, decimal_places=4, required=False)
    valid_from = serializers.DateTimeField(required=False)
    valid_until = serializers.DateTimeField(required=False)
    cap_per_buyer = DecimalText(max_digits=16, decimal_places=4, required=False, allow_null=True)


class VoucherProgramOut(serializers.ModelSerializer):
    sponsor_provider = serializers.CharField(source="sponsor_provider.name", allow_null=True, default=None)
    eligible_regions = serializers.SlugRelatedField(slug_field="code", many=True, read_only=True)
    eligible_gpu_models = serializers.SlugRelatedField(slug_field="code", many=True, read_only=True)
    eligible_providers = serializers.SlugRelatedField(slug_field="name", many=True, read_only=True)
    spent = serializers.SerializerMethodField()

    class Meta:
        model = VoucherProgram
        fields = [
            "id",
            "name",
            "sponsor",
            "sponsor_provider",
            "kind",
            "percent",
            "free_gpu_hours",
            "cap_per_buyer",
            "budget",
            "remaining_budget",
            "spent",
            "valid_from",
            "valid_until",
            "eligible_regions",
            "eligible_gpu_models",
            "eligible_providers",
            "eligible_buyer_provinces",
            "min_spend",
            "max_spend",
        ]

    def get_spent(self, program) -> str:
        return str(program.budget - program.remaining_budget)


class IssueIn(serializers.Serializer):
    count = IntegerNumber(min_value=1, max_value=1000, default=1)
    buyer = serializers.SlugRelatedField(
        slug_field="name", queryset=Organisation.objects.filter(kind=Organisation.Kind.BUYER), required=False
    )
    cap = DecimalText(max_digits=16, decimal_places=4, required=False, allow_null=True)


class IssuedVoucherOut(serializers.ModelSerializer):
    buyer = serializers.CharField(source="buyer.name", allow_null=True, default=None)

    class Meta:
        model = Voucher
        fields = ["id", "code", "buyer", "cap", "spent", "status", "claimed_at"]


class ProgramReportOut(serializers.Serializer):
    program = serializers.CharField()
    budget = serializers.DecimalField(max_digits=16, decimal_places=4)
    spent = serializers.DecimalField(max_digits=16, decimal_places=4)
    remaining_budget = serializers.DecimalField(max_digits=16, decimal_places=4)
    buyers_served = serializers.IntegerField()
    matches_subsidised = serializers.IntegerField()
    gpu_hours_by_region = serializers.DictField(child=serializers.DecimalField(max_digits=16, decimal_places=4))
    west_gpu_hours = serializers.DecimalField(max_digits=16, decimal_places=4)
    west_share = serializers.FloatField()


# --- lifecycle and statements ------------------------------------------------------------------


class FailNodesIn(serializers.Serializer):
    nodes = serializers.ListField(child=IntegerNumber(min_value=0), min_length=1, max_length=1000)


class StatementQuery(serializers.Serializer):
    #: Years 1000–2999: a month whose bounds are valid dates (no year 0, no year 10000 after 9999-12).
    month = serializers.RegexField(
        r"^[12]\d{3}-(0[1-9]|1[0-2])$", required=False, help_text="YYYY-MM; default: this month"
    )


class StatementLineOut(serializers.Serializer):
    match = serializers.IntegerField(source="match_id")
    request = serializers.IntegerField(source="match.request_id")
    listing = serializers.IntegerField(source="match.listing_id")
    region = serializers.CharField(source="match.listing.region.code")
    status = serializers.CharField(source="match.status")
    settled_at = serializers.DateTimeField()
    gpu_hours = serializers.DecimalField(max_digits=14, decimal_places=4)
    price_per_gpu_hour = serializers.DecimalField(**MONEY)
    voucher_program = serializers.CharField(source="program.name", allow_null=True, default=None)
    gross = serializers.DecimalField(max_digits=16, decimal_places=2)
    subsidy = serializers.DecimalField(max_digits=16, decimal_places=2)
    buyer_pays = serializers.DecimalField(max_digits=16, decimal_places=2)
    platform_fee = serializers.DecimalField(max_digits=16, decimal_places=2)
    provider_earns = serializers.DecimalField(max_digits=16, decimal_places=2)


class StatementOut(serializers.Serializer):
    organisation = serializers.CharField()
    role = serializers.CharField()
    month = serializers.CharField()
    totals = serializers.DictField(child=serializers.DecimalField(max_digits=18, decimal_places=4))
    lines = StatementLineOut(many=True)
