"""Webhook endpoints of the caller's organisation and their delivery logs (docs/api.md#webhooks).

Any member reads them (an API key needs ``read``). Registering, changing, deleting an endpoint and
redelivering by hand are for owners, and a key needs ``admin``: an endpoint decides where the
organisation's events (its requests, matches, listings) are sent, which is the organisation's
configuration, like its keys and members, not a trade; a trading script's key should not be able to
send them elsewhere.
"""

from __future__ import annotations

from django.http import Http404
from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers, status
from rest_framework.permissions import SAFE_METHODS, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from marketplace import bounds
from marketplace.api.fields import UtcTimeOut
from marketplace.api.inputs import NoFilters, validated_body, validated_query
from marketplace.api.organisation import HasOrganisation, caller_organisation
from marketplace.api.permissions import IsOwner, scoped
from marketplace.api.schema import DOMAIN_RULE
from marketplace.models import WebhookDelivery, WebhookEndpoint
from marketplace.models.api_keys import Scope
from marketplace.selectors.webhooks import webhook_deliveries_of, webhook_endpoints_of
from marketplace.services.events import EVENT_TYPES
from marketplace.services.webhooks import (
    webhook_delivery_redeliver,
    webhook_endpoint_create,
    webhook_endpoint_delete,
    webhook_endpoint_update,
)

EVENTS_HELP = "Event types to receive: " + ", ".join(EVENT_TYPES) + "."
URL_HELP = (
    f"An https URL whose host resolves only to public addresses. {DOMAIN_RULE} a URL that is not https, "
    "whose host does not resolve, or that resolves to a loopback, private, link-local or otherwise "
    "non-public address is a 400 naming this field."
)


def _events_field(**kwargs) -> serializers.ListField:
    return serializers.ListField(
        child=serializers.ChoiceField(choices=EVENT_TYPES),
        min_length=1,
        max_length=len(EVENT_TYPES),
        help_text=EVENTS_HELP,
        **kwargs,
    )


class WebhookEndpointIn(serializers.Serializer):
    url = serializers.URLField(**bounds.WEBHOOK_URL.field_kwargs(), help_text=URL_HELP)
    events = _events_field()


class WebhookEndpointChangeIn(serializers.Serializer):
    url = serializers.URLField(**bounds.WEBHOOK_URL.field_kwargs(), required=False, help_text=URL_HELP)
    events = _events_field(required=False)
    enabled = serializers.BooleanField(
        required=False, help_text="false stops deliveries; true re-enables a disabled endpoint."
    )


class WebhookEndpointOut(serializers.ModelSerializer):
    """An endpoint as listed: never its secret, which only the creating call returns."""

    enabled = serializers.SerializerMethodField()
    created_at = UtcTimeOut()
    failing_since = UtcTimeOut(
        allow_null=True, help_text="The first failed attempt since the last success; null when healthy."
    )
    disabled_at = UtcTimeOut(allow_null=True)

    class Meta:
        model = WebhookEndpoint
        fields = ["id", "url", "events", "enabled", "created_at", "failing_since", "disabled_at", "disabled_reason"]

    def get_enabled(self, endpoint: WebhookEndpoint) -> bool:
        return endpoint.disabled_at is None


class WebhookEndpointCreatedOut(WebhookEndpointOut):
    secret = serializers.CharField(
        help_text="The Standard Webhooks signing secret (whsec_…). Shown this once: keep it to verify deliveries."
    )

    class Meta(WebhookEndpointOut.Meta):
        fields = [*WebhookEndpointOut.Meta.fields, "secret"]


class AttemptOut(serializers.Serializer):
    at = serializers.CharField()
    status_code = serializers.IntegerField(required=False, help_text="The receiver's HTTP status, when it answered.")
    error = serializers.CharField(required=False, help_text="Why the attempt failed.")
    duration_ms = serializers.FloatField()
    next_attempt_at = serializers.CharField(allow_null=True, help_text="When the next attempt was scheduled.")


class WebhookDeliveryOut(serializers.ModelSerializer):
    attempts = AttemptOut(many=True)
    created_at = UtcTimeOut()
    next_attempt_at = UtcTimeOut(
        allow_null=True, help_text="When the next attempt is due; null once it succeeded or failed."
    )

    class Meta:
        model = WebhookDelivery
        fields = [
            "id",
            "event_id",
            "event_type",
            "status",
            "attempt_count",
            "attempts",
            "next_attempt_at",
            "created_at",
            "payload",
        ]


class WebhookAccess:
    """Members read (``read``); owners write (``admin``)."""

    read_scope = Scope.READ
    write_scope = Scope.ADMIN

    def get_permissions(self):
        if self.request.method in SAFE_METHODS:
            return [permission() for permission in scoped(IsAuthenticated, HasOrganisation)]
        return [permission() for permission in scoped(IsOwner)]


def endpoint_of(request, endpoint_id: int) -> WebhookEndpoint:
    endpoint = webhook_endpoints_of(caller_organisation(request)).filter(pk=endpoint_id).first()
    if endpoint is None:
        raise Http404
    return endpoint


class WebhookEndpointListView(WebhookAccess, generics.GenericAPIView):
    """The organisation's webhook endpoints (GET, newest first), or a new one (POST: its secret, once)."""

    serializer_class = WebhookEndpointOut

    @extend_schema(responses=WebhookEndpointOut(many=True))
    def get(self, request):
        validated_query(NoFilters, request)
        page = self.paginate_queryset(webhook_endpoints_of(caller_organisation(request)))
        return self.get_paginated_response(WebhookEndpointOut(page, many=True).data)

    @extend_schema(request=WebhookEndpointIn, responses={201: WebhookEndpointCreatedOut})
    def post(self, request):
        created = webhook_endpoint_create(
            organisation=caller_organisation(request), **validated_body(WebhookEndpointIn, request)
        )
        data = WebhookEndpointOut(created.endpoint).data | {"secret": created.secret}
        return Response(data, status=status.HTTP_201_CREATED)


class WebhookEndpointDetailView(WebhookAccess, APIView):
    """One endpoint (GET), a change (PATCH: url, events, enabled), or its deletion (DELETE, with its log)."""

    @extend_schema(responses=WebhookEndpointOut)
    def get(self, request, endpoint_id: int):
        return Response(WebhookEndpointOut(endpoint_of(request, endpoint_id)).data)

    @extend_schema(request=WebhookEndpointChangeIn, responses=WebhookEndpointOut)
    def patch(self, request, endpoint_id: int):
        changes = validated_body(WebhookEndpointChangeIn, request)
        endpoint = webhook_endpoint_update(
            organisation=caller_organisation(request), endpoint_id=endpoint_id, **changes
        )
        return Response(WebhookEndpointOut(endpoint).data)

    @extend_schema(responses={204: None})
    def delete(self, request, endpoint_id: int):
        webhook_endpoint_delete(organisation=caller_organisation(request), endpoint_id=endpoint_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class WebhookDeliveryListView(WebhookAccess, generics.GenericAPIView):
    """An endpoint's delivery log, newest first: each event's id, type, attempts and next retry."""

    serializer_class = WebhookDeliveryOut

    @extend_schema(responses=WebhookDeliveryOut(many=True))
    def get(self, request, endpoint_id: int):
        validated_query(NoFilters, request)
        page = self.paginate_queryset(webhook_deliveries_of(endpoint_of(request, endpoint_id)))
        return self.get_paginated_response(WebhookDeliveryOut(page, many=True).data)


class WebhookRedeliverView(WebhookAccess, APIView):
    """Send a logged delivery's event again, now (a new delivery with the same event id)."""

    @extend_schema(request=None, responses={202: WebhookDeliveryOut})
    def post(self, request, endpoint_id: int, delivery_id: int):
        delivery = webhook_delivery_redeliver(
            organisation=caller_organisation(request), endpoint_id=endpoint_id, delivery_id=delivery_id
        )
        return Response(WebhookDeliveryOut(delivery).data, status=status.HTTP_202_ACCEPTED)
