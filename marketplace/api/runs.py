"""Matching runs, for staff: every round with its solver, objective, bound, timings and what it left
unserved."""

from __future__ import annotations

from rest_framework import generics, serializers
from rest_framework.permissions import IsAdminUser

from marketplace import selectors
from marketplace.api.inputs import NoFilters, validated_query
from marketplace.api.permissions import scoped
from marketplace.models import MatchingRun


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
            "left_out",
            "timings_ms",
            "error",
        ]


class MatchingRunListView(generics.ListAPIView):
    permission_classes = scoped(IsAdminUser)
    serializer_class = MatchingRunOut

    def get_queryset(self):
        validated_query(NoFilters, self.request)
        return selectors.matching_run_list()
