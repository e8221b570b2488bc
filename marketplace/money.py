"""Money rules, stated once. Amounts are ``Decimal`` CNY.

- Prices and per-GPU-hour rates carry 4 decimal places (0.0001 CNY).
- Metered GPU-hours carry 4 decimal places: held seconds × GPUs / 3600, rounded half-up.
- A settlement line is in fen (0.01 CNY): gross = price × GPU-hours rounded half-up; the subsidy
  is rate × GPU-hours rounded DOWN (it can never exceed what the voucher ledger reserved) and at
  most the gross; the buyer pays gross − subsidy; the platform fee is gross × fee rate rounded
  half-up; the provider earns gross − fee. Statement totals are sums of lines, so they reconcile
  with the ledger to the fen by construction.
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
    seconds = max(0.0, (end - start).total_seconds())
    return (Decimal(gpus) * Decimal(str(seconds)) / 3600).quantize(FOUR_PLACES, rounding=ROUND_HALF_UP)


def worst_case_charge(*, price_per_gpu_hour: Decimal, gpu_hours: Decimal, lines: int) -> Decimal:
    """The most ``gpu_hours`` at up to ``price_per_gpu_hour`` can ever be charged, in fen, billed as
    at most ``lines`` settlement lines.

    Each line's gross is rounded half-up to the fen on its own, so it gains at most half a fen over
    its exact price × hours (metered hours never exceed the window's, a whole number); a subsidy
    only lowers what the buyer pays. Rounded up, so the bound holds to the fen.
    """
    return (price_per_gpu_hour * gpu_hours + lines * FEN / 2).quantize(FEN, rounding=ROUND_CEILING)
