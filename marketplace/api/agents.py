"""Provider agents: the matches to provision, ready with an endpoint, and node heartbeats.

Called with an API key holding the ``agent`` scope (or a session or legacy token of one of the
provider's members, which hold every scope); a key without it gets a 403 naming the scope.
"""

from __future__ import annotations

from datetime import UTC

from django.core.validators import URLValidator
from django.utils.translation import gettext, gettext_lazy
from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from marketplace import bounds, selectors, services
from marketplace.api.fields import IntegerNumber, TextField, UtcTimeOut
from marketplace.api.inputs import NoFilters, validated_body, validated_query
from marketplace.api.permissions import IsProvider, provider_of, scoped
from marketplace.api.schema import DOMAIN_RULE
from marketplace.market_time import market_now
from marketplace.models import Listing, Match, NodeHeartbeat
from marketplace.models.api_keys import Scope


class AgentView:
    """Agent endpoints: a provider's, and a key needs the ``agent`` scope to read or write."""

    permission_classes = scoped(IsProvider)
    read_scope = Scope.AGENT
    write_scope = Scope.AGENT


class AgentListingOut(serializers.ModelSerializer):
    region = serializers.CharField(source="region.code")
    gpu_model = serializers.CharField(source="gpu_model.code")
    node_count = serializers.IntegerField()
    driven_by = serializers.ChoiceField(choices=["agent", "clock"])
    failed_nodes = serializers.ListField(child=serializers.IntegerField())

    class Meta:
        model = Listing
        fields = [
            "id",
            "region",
            "gpu_model",
            "gpu_count",
            "gpus_per_node",
            "node_count",
            "failed_nodes",
            "driven_by",
            "agent_since",
            "available_from",
            "available_until",
        ]


class AgentListingListView(AgentView, generics.ListAPIView):
    """The caller's active listings, with their nodes: what its agent heartbeats for."""

    serializer_class = AgentListingOut

    def get_queryset(self):
        validated_query(NoFilters, self.request)
        return selectors.agent_listings(provider=provider_of(self.request))


class AssignmentQuery(serializers.Serializer):
    listing = serializers.IntegerField(min_value=1, required=False, help_text="Only this listing's matches.")


class AssignmentOut(serializers.ModelSerializer):
    listing = serializers.IntegerField(source="listing_id")
    region = serializers.CharField(source="listing.region.code")
    workload = serializers.CharField(source="request.workload", help_text="What the buyer will run (may be blank).")
    provision_by = serializers.SerializerMethodField(
        help_text="Market time by which the match must be ready, or it fails over to other capacity."
    )
    nodes = serializers.ListField(child=serializers.IntegerField(), help_text="The node index of each replica.")

    class Meta:
        model = Match
        fields = [
            "id",
            "listing",
            "region",
            "status",
            "replicas",
            "gpus_per_replica",
            "gpus",
            "nodes",
            "workload",
            "starts_at",
            "provision_by",
            "ends_at",
            "ready_at",
            "endpoint",
        ]

    def get_provision_by(self, match) -> str:
        return UtcTimeOut(default_timezone=UTC).to_representation(selectors.provision_deadline(match))


class AssignmentListView(AgentView, generics.ListAPIView):
    """Live matches (reserved: to provision; running: to keep up) on the caller's listings."""

    serializer_class = AssignmentOut

    @extend_schema(parameters=[AssignmentQuery])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        query = validated_query(AssignmentQuery, self.request)
        return selectors.agent_assignments(provider=provider_of(self.request), listing_id=query.get("listing"))


class ReadyIn(serializers.Serializer):
    endpoint = TextField(
        **bounds.ENDPOINT_URL.field_kwargs(),
        validators=[URLValidator(schemes=["https"], message=gettext_lazy("Enter an https URL."))],
        help_text=f"Where the buyer reaches the running match: an https URL. {DOMAIN_RULE} a value that is not a "
        "valid https URL (scheme, host) is a 400 naming this field.",
    )
    note = TextField(**bounds.AGENT_NOTE.field_kwargs(), required=False, allow_blank=True, default="")


class MatchReadyView(AgentView, APIView):
    """The agent says a reserved match is provisioned: it runs (and is metered) from now."""

    @extend_schema(request=ReadyIn, responses=AssignmentOut)
    def post(self, request, match_id: int):
        body = validated_body(ReadyIn, request)
        provider = provider_of(request)
        services.match_ready(match_id=match_id, provider=provider, now=market_now(), **body)
        return Response(AssignmentOut(selectors.agent_assignments(provider=provider).get(pk=match_id)).data)


class HeartbeatIn(serializers.Serializer):
    listing = IntegerNumber(min_value=1)
    nodes = serializers.DictField(
        child=serializers.ChoiceField(choices=list(NodeHeartbeat.REPORTED)),
        allow_empty=False,
        help_text='Each node\'s health by its index: {"0": "ok", "1": "failed"}. '
        f"{DOMAIN_RULE} at least one node, each a node of the listing (0 to its node count − 1), else a 400 "
        "naming this field.",
    )

    def validate_nodes(self, nodes: dict) -> dict[int, str]:
        if len(nodes) > bounds.FAILED_NODES.maximum:
            raise serializers.ValidationError(
                gettext("At most %(n)s nodes per heartbeat.") % {"n": bounds.FAILED_NODES.maximum}
            )
        if not all(key.isdecimal() and key.isascii() for key in nodes):
            raise serializers.ValidationError(gettext("Node indices are whole numbers from 0, as strings."))
        return {int(key): health for key, health in nodes.items()}


class HeartbeatOut(serializers.Serializer):
    listing = serializers.IntegerField()
    driven_by = serializers.CharField()
    failed_nodes = serializers.ListField(child=serializers.IntegerField())
    newly_failed = serializers.ListField(
        child=serializers.IntegerField(), help_text="Nodes this heartbeat failed (their matches failed over)."
    )
    recovered = serializers.ListField(
        child=serializers.IntegerField(), help_text="Failed nodes this heartbeat reported ok: offered again."
    )


class HeartbeatView(AgentView, APIView):
    """One heartbeat for a listing: each node ok or failed. A failed node's matches fail over."""

    @extend_schema(request=HeartbeatIn, responses=HeartbeatOut)
    def post(self, request):
        body = validated_body(HeartbeatIn, request)
        result = services.agent_heartbeat_record(
            listing_id=body["listing"], provider=provider_of(request), nodes=body["nodes"]
        )
        listing = result.listing
        return Response(
            HeartbeatOut(
                {
                    "listing": listing.pk,
                    "driven_by": listing.driven_by,
                    "failed_nodes": listing.failed_nodes,
                    "newly_failed": result.newly_failed,
                    "recovered": result.recovered,
                }
            ).data
        )
