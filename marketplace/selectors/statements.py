"""Monthly statements: each ended match's settlement line, for its buyer or its provider."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal

from marketplace.models import Organisation, Settlement

AMOUNTS = ("gross", "subsidy", "buyer_pays", "platform_fee", "provider_earns", "sla_credit")


@dataclass(frozen=True)
class Statement:
    organisation: str
    role: str
    month: str
    lines: list[Settlement]
    totals: dict[str, Decimal]


def month_bounds(month: date) -> tuple[datetime, datetime]:
    start = datetime(month.year, month.month, 1, tzinfo=UTC)
    end = datetime(month.year + month.month // 12, month.month % 12 + 1, 1, tzinfo=UTC)
    return start, end


def statement_for(organisation: Organisation, month: date) -> Statement:
    """The organisation's settlement lines of ``month`` (by the market time each match ended) and
    their totals, in one query. A buyer's statement is what it pays; a provider's what it earns.
    Each line reconciles: gross = subsidy + buyer_pays + sla_credit = platform_fee + provider_earns +
    sla_credit (an SLA credit comes off both the buyer's charge and the provider's earnings).
    Totals are summed here from the lines' exact decimals (SQLite's SUM would go through floats)."""
    start, end = month_bounds(month)
    party = {"buyer": organisation} if organisation.kind == Organisation.Kind.BUYER else {"provider": organisation}
    settlements = Settlement.objects.filter(settled_at__gte=start, settled_at__lt=end, **party)
    lines = list(
        settlements.select_related("match__listing__region", "match__request", "program").order_by("settled_at", "id")
    )
    totals = {name: sum((getattr(line, name) for line in lines), Decimal("0")) for name in ("gpu_hours", *AMOUNTS)}
    return Statement(organisation.name, organisation.kind, f"{month:%Y-%m}", lines, totals)
