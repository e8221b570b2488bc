"""Listings: the search anyone may run, and a provider's own capacity (create, change, withdraw,
report failed nodes)."""

from __future__ import annotations

from datetime import UTC

from django.http import Http404
from django.utils.translation import gettext as _
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import generics, serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from marketplace import bounds, selectors, services
from marketplace.api.fields import (
    LATENCY_CLASSES,
    AwareTime,
    DecimalText,
    IntegerNumber,
    NumberChoice,
    ReferenceCodeField,
    UtcTimeOut,
    gpu_model_field,
    region_field,
)
from marketplace.api.idempotency import IDEMPOTENCY_PARAMETER, idempotent
from marketplace.api.inputs import validated_body, validated_query
from marketplace.api.pagination import SearchPagination
from marketplace.api.permissions import IsProvider, KeyScopes, provider_of, scoped
from marketplace.api.schema import DOMAIN_RULE
from marketplace.market_time import market_now
from marketplace.models import NODE_SIZE_CHOICES, GpuModel, Listing, Region
from marketplace.models.listings import driven_by
from marketplace.money import MONEY
from marketplace.reliability import Reliability
from marketplace.supply import listing_window_default

LISTING_ORDERINGS = {
    "price": "price_per_gpu_hour",
    "-price": "-price_per_gpu_hour",
    "free_gpus": "free_gpus",
    "-free_gpus": "-free_gpus",
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
    latency_class = serializers.ChoiceField(
        choices=LATENCY_CLASSES,
        required=False,
        help_text=f"Listings within this class's RTT of origin. {DOMAIN_RULE} without origin it is a 400 naming it.",
    )
    max_price = DecimalText(**bounds.PRICE.field_kwargs(), required=False, help_text="The highest price shown.")
    min_free_gpus = serializers.IntegerField(**bounds.MIN_FREE_GPUS.field_kwargs(), required=False)
    status = serializers.ChoiceField(
        choices=Listing.Status.values, required=False, help_text="Only listings in this status (default: any shown)."
    )
    mine = serializers.BooleanField(
        required=False,
        default=False,
        help_text=f"Only the caller's own listings, withdrawn ones too. {DOMAIN_RULE} for a caller that is "
        "not a provider it is a 400 naming it.",
    )
    ordering = serializers.ChoiceField(
        choices=list(LISTING_ORDERINGS),
        required=False,
        default="id",
        help_text=f"Sort key, descending with a leading '-'. {DOMAIN_RULE} rtt without origin is a 400 naming it.",
    )

    def validate(self, attrs):
        if "origin" not in attrs:
            if "latency_class" in attrs:
                raise serializers.ValidationError({"latency_class": [_("Needs origin: latency is from a city.")]})
            if attrs["ordering"].lstrip("-") == "rtt":
                raise serializers.ValidationError({"ordering": [_("Ordering by rtt needs origin.")]})
        return attrs


#: A listing's GPUs come in whole nodes: a rule between two fields, which a schema cannot state.
WHOLE_NODES = f"{DOMAIN_RULE} a gpu_count that is not a multiple of gpus_per_node is a 400 naming gpu_count."


#: The interruptible tier's floor, in words (the rule: ``matching.interruptible``).
FLOOR_HELP = (
    "Offer idle GPUs as interruptible at this price (CNY per GPU-hour): interruptible requests whose "
    "bid is at least it pay it, and are pre-empted, with notice, when on-demand demand needs the GPUs. "
    f"Null or absent: not offered. {DOMAIN_RULE} a floor above price_per_gpu_hour is a 400 naming it."
)


class ListingIn(serializers.Serializer):
    region = region_field()
    gpu_model = gpu_model_field()
    gpu_count = IntegerNumber(**bounds.GPU_COUNT.field_kwargs(), help_text=WHOLE_NODES)
    gpus_per_node = NumberChoice(choices=NODE_SIZE_CHOICES)
    price_per_gpu_hour = DecimalText(**bounds.PRICE.field_kwargs())
    interruptible_floor_price_per_gpu_hour = DecimalText(
        **bounds.PRICE.field_kwargs(), required=False, allow_null=True, help_text=FLOOR_HELP
    )
    available_from = AwareTime(window=bounds.LISTING_TIMES, required=False)
    available_until = AwareTime(window=bounds.LISTING_TIMES, required=False)

    def validate(self, attrs):
        """Default window: ``listing_window_default``."""
        attrs["available_from"], attrs["available_until"] = listing_window_default(
            attrs.get("available_from"), attrs.get("available_until"), now=market_now()
        )
        return attrs


class ListingUpdateIn(serializers.Serializer):
    gpu_count = IntegerNumber(
        **bounds.GPU_COUNT.field_kwargs(),
        required=False,
        help_text=f"{WHOLE_NODES} So is fewer GPUs than the listing's matches hold (a 409).",
    )
    gpus_per_node = NumberChoice(choices=NODE_SIZE_CHOICES, required=False, help_text=WHOLE_NODES)
    price_per_gpu_hour = DecimalText(**bounds.PRICE.field_kwargs(), required=False)
    interruptible_floor_price_per_gpu_hour = DecimalText(
        **bounds.PRICE.field_kwargs(),
        required=False,
        allow_null=True,
        help_text=f"{FLOOR_HELP} null withdraws the tier.",
    )
    available_from = AwareTime(window=bounds.LISTING_TIMES, required=False)
    available_until = AwareTime(window=bounds.LISTING_TIMES, required=False)


class FailNodesIn(serializers.Serializer):
    nodes = serializers.ListField(
        child=IntegerNumber(**bounds.NODE_INDEX.field_kwargs()),
        min_length=bounds.FAILED_NODES.minimum,
        max_length=bounds.FAILED_NODES.maximum,
        help_text=f"Node indexes, from 0. {DOMAIN_RULE} an index past the listing's last node is a 400 naming it.",
    )


_MONEY_OUT = serializers.DecimalField(**MONEY)


def _money_or_null(value):
    return None if value is None else _MONEY_OUT.to_representation(value)


_TIME_OUT = UtcTimeOut(default_timezone=UTC)


#: The words of the listing's reliability fields (the definition: ``marketplace.reliability``).
RELIABILITY_HELP = (
    "30-day availability (0–1, 4 places, rounded down): 1 − GPU-hours lost to failures and missed "
    "provisioning deadlines ÷ GPU-hours its matches were scheduled in the window; null with too little history."
)


def reliability_context(listings, now=None) -> dict:
    """The serializer context holding the reliability of ``listings`` and their providers: one query."""
    listings = list(listings)
    index = selectors.reliability_index(
        listing_ids={listing.id for listing in listings},
        provider_ids={listing.provider_id for listing in listings},
        now=now or market_now(),
    )
    return {"reliability": index}


class ListingOut(serializers.ModelSerializer):
    provider = serializers.CharField(source="provider_name")
    region = serializers.SerializerMethodField()
    gpu_model = serializers.SerializerMethodField()
    free_gpus = serializers.IntegerField()
    energy_cost_per_gpu_hour = serializers.SerializerMethodField()
    rtt_ms = serializers.SerializerMethodField(help_text="RTT from the search's origin, when one was given.")
    left_out_reason = serializers.CharField(
        help_text='Why the latest matching round left this listing out ("" when it did not): a rule it breaks.'
    )
    driven_by = serializers.SerializerMethodField(
        help_text="agent: its provider's agent starts matches (ready) and reports node health; clock: "
        "matches start at their planned start and nodes fail only when the provider reports them."
    )
    reliability = serializers.SerializerMethodField(help_text=RELIABILITY_HELP)
    reliability_matches = serializers.SerializerMethodField(help_text="The matches behind reliability (30 days).")
    reliability_status = serializers.SerializerMethodField(
        help_text="scored, or new: fewer matches than RELIABILITY_MIN_MATCHES, so no score (never 1)."
    )
    reliability_note = serializers.SerializerMethodField(
        help_text='Why there is no score, e.g. "too little history (3 matches in 30 days)"; "" when scored.'
    )
    provider_reliability = serializers.SerializerMethodField(
        help_text="The same over all of its provider's listings; null with too little history."
    )
    provider_reliability_matches = serializers.SerializerMethodField(
        help_text="The matches behind provider_reliability (30 days)."
    )

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
            "interruptible_floor_price_per_gpu_hour",
            "energy_cost_per_gpu_hour",
            "available_from",
            "available_until",
            "status",
            "rtt_ms",
            "left_out_reason",
            "driven_by",
            "reliability",
            "reliability_matches",
            "reliability_status",
            "reliability_note",
            "provider_reliability",
            "provider_reliability_matches",
        ]

    def get_region(self, listing) -> str:
        return selectors.reference_by_id(Region, listing.region_id).code

    def get_gpu_model(self, listing) -> str:
        return selectors.reference_by_id(GpuModel, listing.gpu_model_id).code

    def get_energy_cost_per_gpu_hour(self, listing) -> str:
        return str(selectors.listing_shown_energy_cost(listing))

    @extend_schema_field(serializers.ChoiceField(choices=["agent", "clock"]))
    def get_driven_by(self, listing) -> str:
        return driven_by(listing.agent_since)

    def _scores(self, listing) -> tuple[Reliability, Reliability]:
        """(listing's, provider's) reliability: from the context (``reliability_context``, one query
        a page), else read for this listing alone."""
        index = self.context.get("reliability")
        if index is None or listing.id not in index.by_listing:
            index = reliability_context([listing])["reliability"]
            self.context["reliability"] = index
        return index.by_listing[listing.id], index.by_provider[listing.provider_id]

    @extend_schema_field(serializers.DecimalField(max_digits=5, decimal_places=4, allow_null=True))
    def get_reliability(self, listing) -> str | None:
        return self._scores(listing)[0].text

    def get_reliability_matches(self, listing) -> int:
        return self._scores(listing)[0].matches

    @extend_schema_field(serializers.ChoiceField(choices=["scored", "new"]))
    def get_reliability_status(self, listing) -> str:
        return self._scores(listing)[0].status

    def get_reliability_note(self, listing) -> str:
        return self._scores(listing)[0].note

    @extend_schema_field(serializers.DecimalField(max_digits=5, decimal_places=4, allow_null=True))
    def get_provider_reliability(self, listing) -> str | None:
        return self._scores(listing)[1].text

    def get_provider_reliability_matches(self, listing) -> int:
        return self._scores(listing)[1].matches

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
            "free_gpus": listing.free_gpus,
            "price_per_gpu_hour": _MONEY_OUT.to_representation(listing.price_per_gpu_hour),
            "interruptible_floor_price_per_gpu_hour": _money_or_null(listing.interruptible_floor_price_per_gpu_hour),
            "energy_cost_per_gpu_hour": energy,
            "available_from": _TIME_OUT.to_representation(listing.available_from),
            "available_until": _TIME_OUT.to_representation(listing.available_until),
            "status": listing.status,
            "rtt_ms": self.get_rtt_ms(listing),
            "left_out_reason": listing.left_out_reason,
            "driven_by": driven_by(listing.agent_since),
            **self._reliability_fields(listing),
        }

    def _reliability_fields(self, listing) -> dict:
        mine, provider = self._scores(listing)
        return {
            "reliability": mine.text,
            "reliability_matches": mine.matches,
            "reliability_status": mine.status,
            "reliability_note": mine.note,
            "provider_reliability": provider.text,
            "provider_reliability_matches": provider.matches,
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


class ListingListView(generics.GenericAPIView):
    serializer_class = ListingOut
    pagination_class = SearchPagination

    def get_permissions(self):
        return [KeyScopes(), IsProvider() if self.request.method == "POST" else AllowAny()]

    @extend_schema(parameters=[ListingQuery], responses=ListingOut(many=True))
    def get(self, request):
        query = validated_query(ListingQuery, request)
        viewer = provider_of(request)
        if query.pop("mine"):
            if viewer is None:
                raise ValidationError({"mine": [_("Only provider accounts have listings of their own.")]})
            query["provider"] = viewer
        query["ordering"] = LISTING_ORDERINGS[query["ordering"]]
        queryset = selectors.listing_search(selectors.ListingFilters(**query), viewer=viewer)
        page = self.paginate_queryset(queryset)
        rtts = selectors.rtts_from(query.get("origin"))
        context = {"rtt_ms_by_region": rtts, **reliability_context(page)}
        return self.get_paginated_response(ListingOut(page, many=True, context=context).data)

    @extend_schema(request=ListingIn, responses={201: ListingOut}, parameters=[IDEMPOTENCY_PARAMETER])
    @idempotent
    def post(self, request):
        provider = provider_of(request)
        listing = services.listing_create(provider=provider, **validated_body(ListingIn, request))
        listing = selectors.listing_visible(listing_id=listing.pk, viewer=provider)
        return Response(ListingOut(listing).data, status=status.HTTP_201_CREATED)


class ListingDetailView(APIView):
    """Anyone reads an active listing; only its provider changes or withdraws it (DELETE)."""

    def get_permissions(self):
        return [KeyScopes(), AllowAny() if self.request.method == "GET" else IsProvider()]

    def _visible(self, request, listing_id: int):
        listing = selectors.listing_visible(listing_id=listing_id, viewer=provider_of(request))
        if listing is None:
            raise Http404
        return listing

    @extend_schema(responses=ListingOut)
    def get(self, request, listing_id: int):
        return Response(ListingOut(self._visible(request, listing_id)).data)

    @extend_schema(request=ListingUpdateIn, responses=ListingOut)
    def patch(self, request, listing_id: int):
        changes = validated_body(ListingUpdateIn, request)
        provider = provider_of(request)
        services.listing_update(listing_id=listing_id, provider=provider, changes=changes)
        return Response(ListingOut(self._visible(request, listing_id)).data)

    @extend_schema(request=None, responses={200: OpenApiResponse(ListingOut, "The withdrawn listing.")})
    def delete(self, request, listing_id: int):
        services.listing_withdraw(listing_id=listing_id, provider=provider_of(request))
        return Response(ListingOut(self._visible(request, listing_id)).data)


class ListingFailNodesView(APIView):
    """The provider reports failed nodes: the matches on them fail over to other capacity."""

    permission_classes = scoped(IsProvider)

    @extend_schema(request=FailNodesIn, responses=ListingOut)
    def post(self, request, listing_id: int):
        nodes = validated_body(FailNodesIn, request)["nodes"]
        services.listing_nodes_fail(listing_id=listing_id, provider=provider_of(request), nodes=nodes)
        listing = selectors.listing_visible(listing_id=listing_id, viewer=provider_of(request))
        return Response(ListingOut(listing).data)
