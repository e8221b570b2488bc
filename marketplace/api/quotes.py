"""Quotes: where the engine would place a request now, and the cheapest option per latency class.
Nothing is written."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from marketplace import selectors
from marketplace.api.inputs import validated_body
from marketplace.api.permissions import IsBuyer, buyer_of, scoped
from marketplace.api.requests import RequestIn
from marketplace.money import MONEY


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


class QuoteView(APIView):
    """The placement the engine would choose for a request now, without committing anything."""

    permission_classes = scoped(IsBuyer)

    @extend_schema(request=RequestIn, responses=QuoteOut)
    def post(self, request):
        quote = selectors.request_quote(buyer=buyer_of(request), **validated_body(RequestIn, request))
        return Response(quote.to_dict())
