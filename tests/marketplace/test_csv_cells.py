"""CSV cells a spreadsheet would run as formulas are written as text (issue 14, finding 6)."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from decimal import Decimal

import pytest

from marketplace import csv_cells, services
from marketplace.models import Match
from marketplace.services.rounds import round_run

HYPERLINK = '=HYPERLINK("http://evil.example/claim","Claim your subsidy")'


@pytest.mark.parametrize(
    ("value", "written"),
    [
        (HYPERLINK, "'" + HYPERLINK),
        ("+1+cmd|' /C calc'!A0", "'+1+cmd|' /C calc'!A0"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1:A9)", "'@SUM(A1:A9)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("Qingyang compute voucher", "Qingyang compute voucher"),
        ("宁夏中卫云计算", "宁夏中卫云计算"),
        ("a=b", "a=b"),
        ("", ""),
    ],
)
def test_text_that_would_start_a_formula_gets_a_leading_apostrophe(value, written):
    assert csv_cells.cell(value) == written


@pytest.mark.parametrize("number", ["-12.5000", "-3", "0.0000", "1152.00", -7, Decimal("-1.25"), 2.5, None])
def test_numbers_negative_ones_included_are_written_as_they_are(number):
    assert csv_cells.cell(number) == number


def test_a_written_row_reads_back_as_data():
    buffer = io.StringIO()
    csv_cells.writer(buffer).writerow([1, HYPERLINK, "-5.0000", "=1+1"])
    assert next(csv.reader(io.StringIO(buffer.getvalue()))) == ["1", "'" + HYPERLINK, "-5.0000", "'=1+1"]


def test_a_promotion_named_like_a_formula_is_text_in_every_statement(
    make_listing, make_request, provider, buyer, clients, now
):
    """The probe's case: a provider's promotion named ``=HYPERLINK(…)`` lands in the buyer's and the
    provider's ``/statements/csv/`` as text, and the money columns still read as numbers."""
    make_listing(price_per_gpu_hour=Decimal("6.00"))
    program = services.voucher_program_create(
        name=HYPERLINK,
        sponsor=provider.name,
        sponsor_provider=provider,
        percent=Decimal(10),
        budget=Decimal(10000),
        valid_from=now - timedelta(days=1),
        valid_until=now + timedelta(days=30),
    )
    code = services.vouchers_issue(program_id=program.pk, sponsor_provider=provider, buyer=buyer)[0].code
    make_request(voucher_code=code, latency_class="batch", replicas=1, duration_hours=2)
    round_run(shard="h20", trigger="manual")
    match = Match.objects.get()
    services.lifecycle_tick(now=match.ends_at)
    for role in ("buyer", "provider"):
        response = clients[role].get(f"/api/v1/statements/csv/?month={match.ends_at:%Y-%m}")
        header, line, total = csv.reader(io.StringIO(response.content.decode()))
        row = dict(zip(header, line, strict=True))
        assert row["voucher_program"] == "'" + HYPERLINK
        assert Decimal(row["gross"]) == Decimal("12.0000")
        assert Decimal(row["subsidy"]) == Decimal("1.2000")
        assert total[0] == "total"
