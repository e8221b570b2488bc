"""A statement's lines as the API writes them, and its CSV download: one row per settled match,
then a totals row. The API (``GET /api/v1/statements/csv/``) and the statements page both answer
with :func:`statement_csv_response`, so the two files are the same byte for byte.

Times are UTC whatever zone the caller's page shows (the API's rule). Text cells that a spreadsheet
would run as formulas are escaped (``marketplace.csv_cells``).
"""

from __future__ import annotations

from datetime import UTC

from django.http import HttpResponse
from django.utils import timezone
from rest_framework import serializers

from marketplace import csv_cells
from marketplace.money import MONEY, SETTLED_AMOUNT
from marketplace.selectors import Statement


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


def statement_csv_response(statement: Statement) -> HttpResponse:
    """``statement`` as a CSV attachment named ``statement-YYYY-MM.csv``."""
    response = HttpResponse(content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="statement-{statement.month}.csv"'
    writer = csv_cells.writer(response)
    columns = list(StatementLineOut().fields)
    writer.writerow(columns)
    with timezone.override(UTC):
        lines = StatementLineOut(statement.lines, many=True).data
    for line in lines:
        writer.writerow([line[column] for column in columns])
    writer.writerow(["total", *[statement.totals.get(column, "") for column in columns[1:]]])
    return response
