"""Statements: a month's settled matches and totals for the caller's organisation, as JSON or CSV."""

from __future__ import annotations

from datetime import date

from django.http import HttpResponse
from django.utils.translation import gettext as _
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.exceptions import PermissionDenied
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from marketplace import bounds, csv_cells, selectors
from marketplace.api.inputs import validated_query
from marketplace.api.permissions import scoped
from marketplace.market_time import market_now
from marketplace.money import MONEY, SETTLED_AMOUNT


class StatementQuery(serializers.Serializer):
    month = serializers.RegexField(
        **bounds.STATEMENT_MONTH.field_kwargs(), required=False, help_text="YYYY-MM; default: this month"
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
    gross = serializers.DecimalField(**SETTLED_AMOUNT)
    subsidy = serializers.DecimalField(**SETTLED_AMOUNT)
    buyer_pays = serializers.DecimalField(**SETTLED_AMOUNT)
    platform_fee = serializers.DecimalField(**SETTLED_AMOUNT)
    provider_earns = serializers.DecimalField(**SETTLED_AMOUNT)
    sla_credit = serializers.DecimalField(
        **SETTLED_AMOUNT,
        help_text="What the buyer got back because capacity failed under the running match "
        "(money.sla_credit); already taken off buyer_pays and provider_earns.",
    )
    status_reason = serializers.CharField(source="match.status_reason", help_text="Why the match ended as it did.")


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
        statement = statement_of(request)
        response = HttpResponse(content_type="text/csv")
        response["Content-Disposition"] = f'attachment; filename="statement-{statement.month}.csv"'
        writer = csv_cells.writer(response)
        columns = list(StatementLineOut().fields)
        writer.writerow(columns)
        for line in StatementLineOut(statement.lines, many=True).data:
            writer.writerow([line[column] for column in columns])
        writer.writerow(["total", *[statement.totals.get(column, "") for column in columns[1:]]])
        return response
