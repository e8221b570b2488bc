"""Statements: a month's settled matches and totals for the caller's organisation, as JSON or CSV."""

from __future__ import annotations

from datetime import date

from django.utils.translation import gettext as _
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.exceptions import PermissionDenied
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from marketplace import bounds, selectors
from marketplace.api.inputs import validated_query
from marketplace.api.permissions import scoped
from marketplace.market_time import market_now
from marketplace.statement_csv import StatementLineOut, statement_csv_response


class StatementQuery(serializers.Serializer):
    month = serializers.RegexField(
        **bounds.STATEMENT_MONTH.field_kwargs(), required=False, help_text="YYYY-MM; default: this month"
    )


class StatementOut(serializers.Serializer):
    organisation = serializers.CharField()
    role = serializers.CharField()
    month = serializers.CharField()
    totals = serializers.DictField(child=serializers.DecimalField(max_digits=18, decimal_places=4))
    lines = StatementLineOut(many=True)


def statement_of(request) -> selectors.Statement:
    organisation = selectors.organisation_of(request.user)
    if organisation is None:
        raise PermissionDenied(_("Statements are for buyer and provider accounts."))
    month = validated_query(StatementQuery, request).get("month")
    first = date.fromisoformat(f"{month}-01") if month else market_now().date().replace(day=1)
    return selectors.statement_for(organisation, first)


class StatementView(APIView):
    """This month's (or ``?month=YYYY-MM``'s) settled matches and totals for the caller's
    organisation: what a buyer pays, what a provider earns."""

    permission_classes = scoped(IsAuthenticated)

    @extend_schema(parameters=[StatementQuery], responses=StatementOut)
    def get(self, request):
        return Response(StatementOut(statement_of(request)).data)


class StatementCsvView(APIView):
    """The same statement as CSV: one row per match, then a totals row. Text cells that a
    spreadsheet would run as formulas are escaped (``marketplace.csv_cells``)."""

    permission_classes = scoped(IsAuthenticated)

    @extend_schema(parameters=[StatementQuery], responses={(200, "text/csv"): str})
    def get(self, request):
        return statement_csv_response(statement_of(request))
