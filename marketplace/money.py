"""Money rules, stated once. Amounts are ``Decimal`` CNY.

- Prices and per-GPU-hour rates carry 4 decimal places (0.0001 CNY).
- Metered GPU-hours carry 4 decimal places: held seconds × GPUs / 3600, rounded half-up.
- A settlement line is in fen (0.01 CNY): gross = price × GPU-hours rounded half-up; the subsidy
  is rate × GPU-hours rounded DOWN (it can never exceed what the voucher ledger reserved) and at
  most the gross; the buyer pays gross − subsidy; the platform fee is gross × fee rate rounded
  half-up; the provider earns gross − fee. Statement totals are sums of lines, so they reconcile
  with the ledger to the fen by construction.
- An SLA credit (``sla_credit``), when capacity fails under a running match: the GPU-hours lost
  × the price per GPU-hour × ``SLA_CREDIT_MULTIPLE`` (default 3), rounded DOWN to the fen, at most
  the line's charge (what the buyer pays before it, and what the provider earns before it). It is
  taken off both: buyer pays gross − subsidy − credit, provider earns gross − fee − credit, the
  platform's fee is untouched. The GPU-hours lost are the match's GPUs × the real time from the
  last heartbeat that said its failed node was ok until the failover (0 with no such heartbeat).
- A spend cap counts a request's worst case (``worst_case_charge``) from submission until it
  closes, then what it was charged: whatever is matched, the buyer is never charged more.
"""

from __future__ import annotations

from datetime import datetime
from decimal import ROUND_CEILING, ROUND_DOWN, ROUND_HALF_UP, Decimal
from typing import TypedDict

#: A settlement's resolution: one fen.
FEN = Decimal("0.01")
#: The resolution of prices, rates, voucher amounts and metered GPU-hours.
FOUR_PLACES = Decimal("0.0001")


class DecimalShape(TypedDict):
    """A decimal's shape, as the keyword arguments Django's and DRF's decimal fields take."""

    max_digits: int
    decimal_places: int


# Decimal shapes of amounts in CNY, for database columns, form fields and API fields alike: what a
# form or the API accepts then always fits its column.
#: A price or a rate per GPU-hour: up to 99 999 999.9999 CNY.
MONEY: DecimalShape = {"max_digits": 12, "decimal_places": 4}
#: An amount on the voucher ledger: a programme's budget, a cap, a spend.
LEDGER_AMOUNT: DecimalShape = {"max_digits": 16, "decimal_places": 4}
#: An amount of a settlement line, in fen.
SETTLED_AMOUNT: DecimalShape = {"max_digits": 16, "decimal_places": 2}


def to_fen(value: Decimal) -> Decimal:
    return value.quantize(FEN, rounding=ROUND_HALF_UP)


def to_fen_down(value: Decimal) -> Decimal:
    return value.quantize(FEN, rounding=ROUND_DOWN)


def gpu_hours_held(*, gpus: int, start: datetime, end: datetime) -> Decimal:
    """GPU-hours of ``gpus`` held from ``start`` to ``end`` (0 if it ended before it started)."""
    return gpu_hours_of(gpus=gpus, seconds=(end - start).total_seconds())


def gpu_hours_of(*, gpus: int, seconds: float) -> Decimal:
    """GPU-hours of ``gpus`` held ``seconds`` (negative counts as 0), to four places."""
    return (Decimal(gpus) * Decimal(str(max(0.0, seconds))) / 3600).quantize(FOUR_PLACES, rounding=ROUND_HALF_UP)


def buyer_rate(*, price_per_gpu_hour: Decimal, subsidy_per_gpu_hour: Decimal) -> Decimal:
    """What the buyer pays per GPU-hour of a match: its price less its subsidy rate. Every page
    figure called a price paid is this (the engine's latency-weighted score is not)."""
    return price_per_gpu_hour - subsidy_per_gpu_hour


def buyer_charge(
    *, price_per_gpu_hour: Decimal, subsidy_per_gpu_hour: Decimal, gpu_hours: Decimal
) -> tuple[Decimal, Decimal, Decimal]:
    """One settlement line's (gross, subsidy, what the buyer pays before any SLA credit), in fen:
    gross = price × GPU-hours rounded half-up; subsidy = rate × GPU-hours rounded down, at most
    the gross; the buyer pays gross − subsidy. Settlements and quotes both use it, so a quoted
    "you pay" is what the settlement charges for the same hours."""
    gross = to_fen(price_per_gpu_hour * gpu_hours)
    subsidy = min(gross, to_fen_down(subsidy_per_gpu_hour * gpu_hours))
    return gross, subsidy, gross - subsidy


def sla_credit(
    *,
    price_per_gpu_hour: Decimal,
    gpu_hours_lost: Decimal,
    multiple: Decimal,
    buyer_charge: Decimal,
    provider_share: Decimal,
) -> Decimal:
    """The SLA credit of one settlement line, in fen: ``gpu_hours_lost`` × ``price_per_gpu_hour`` ×
    ``multiple`` rounded down, capped at the line's ``buyer_charge`` (gross − subsidy) and
    ``provider_share`` (gross − fee), so no amount of the line goes below zero: a credit gives
    back what was charged, and never pays out more than the match cost."""
    owed = to_fen_down(price_per_gpu_hour * gpu_hours_lost * multiple)
    return max(Decimal("0"), min(owed, buyer_charge, provider_share))


def worst_case_charge(*, price_per_gpu_hour: Decimal, gpu_hours: Decimal, lines: int) -> Decimal:
    """The most ``gpu_hours`` at up to ``price_per_gpu_hour`` can ever be charged, in fen, billed as
    at most ``lines`` settlement lines.

    Each line's gross is rounded half-up to the fen on its own, so it gains at most half a fen over
    its exact price × hours (metered hours never exceed the window's, a whole number); a subsidy
    only lowers what the buyer pays. Rounded up, so the bound holds to the fen.
    """
    return (price_per_gpu_hour * gpu_hours + lines * FEN / 2).quantize(FEN, rounding=ROUND_CEILING)


def yuan_text(amount: Decimal) -> str:
    """``¥1,234.56``: an amount to the fen (rounded half up, as :func:`to_fen`), with thousands
    separators and a minus sign before the ¥. The one way the pages and sentences write money."""
    fen = to_fen(Decimal(amount))
    sign = "-" if fen < 0 else ""
    return f"{sign}¥{abs(fen):,.2f}"
