"""The domain of each input, declared once with the reason for its limits.

The web forms and the API build their fields from these, so a page and the API accept the same
values. ``field_kwargs()`` speaks the keyword arguments Django's form fields and DRF's serializer
fields share (``min_value``, ``max_digits``, ``max_length``, ``regex``), so this module imports
neither. ``ALL`` holds every bound by name, for whatever must list or enforce them all.

Rules that relate several inputs (a request's GPUs in all, a window's order) are the services'.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from marketplace.money import LEDGER_AMOUNT, MONEY


def _given(**kwargs) -> dict:
    """The keyword arguments that are set: an absent limit is the field's default, not ``None``."""
    return {name: value for name, value in kwargs.items() if value is not None}


@dataclass(frozen=True, kw_only=True)
class WholeNumber:
    """A whole number from ``minimum`` to ``maximum``, both included; no ``maximum``: unbounded above."""

    minimum: int
    maximum: int | None = None
    reason: str

    def field_kwargs(self) -> dict:
        return _given(min_value=self.minimum, max_value=self.maximum)


@dataclass(frozen=True, kw_only=True)
class DecimalNumber:
    """A decimal of at most ``max_digits`` digits, ``decimal_places`` of them after the point, from
    ``minimum`` to ``maximum`` (either may be absent)."""

    max_digits: int
    decimal_places: int
    minimum: Decimal | None = None
    maximum: Decimal | None = None
    reason: str

    def field_kwargs(self) -> dict:
        return _given(
            max_digits=self.max_digits,
            decimal_places=self.decimal_places,
            min_value=self.minimum,
            max_value=self.maximum,
        )


@dataclass(frozen=True, kw_only=True)
class Text:
    """Text of at most ``max_length`` characters, matching ``pattern`` when there is one."""

    max_length: int | None = None
    pattern: str | None = None
    reason: str

    def field_kwargs(self) -> dict:
        return _given(max_length=self.max_length, regex=self.pattern)


# --- accounts -----------------------------------------------------------------------------------

USERNAME = Text(
    max_length=150,
    pattern=r"^[\w.@+-]+\Z",
    reason="What Django's user model takes: up to 150 letters, digits and @ . + - _.",
)
PASSWORD = Text(max_length=128, reason="Room for any passphrase; a longer body is refused before it is hashed.")
NAME = Text(max_length=200, reason="The name columns' length: organisations, voucher programmes, sponsors.")
PROVINCE = Text(max_length=100, reason="The province columns' length (regions, organisations).")

# --- listings -----------------------------------------------------------------------------------

GPU_COUNT = WholeNumber(
    minimum=1,
    maximum=100_000,
    reason="At least one GPU; 100 000 is past the largest clusters, so an extra digit is refused, not listed.",
)
PRICE = DecimalNumber(
    **MONEY,
    minimum=Decimal(0),
    reason="CNY per GPU-hour to 0.0001 (money.MONEY); 0 is free, and no price is below it.",
)
MIN_FREE_GPUS = WholeNumber(minimum=0, reason="A search's least free GPUs: 0 keeps every listing.")
FAILED_NODES = WholeNumber(
    minimum=1,
    maximum=1000,
    reason="Nodes one failure report names: at least one, and few enough that one transaction fails them over.",
)
NODE_INDEX = WholeNumber(minimum=0, reason="A listing's nodes are numbered from 0.")

# --- requests -----------------------------------------------------------------------------------

GPUS_PER_REQUEST = WholeNumber(minimum=1, maximum=4096, reason="A larger job is several requests.")
REPLICAS = WholeNumber(
    minimum=1,
    maximum=GPUS_PER_REQUEST.maximum,
    reason="A replica has at least one GPU, so no request has more replicas than GPUS_PER_REQUEST allows GPUs.",
)
DURATION_HOURS = WholeNumber(
    minimum=1,
    maximum=24 * 366,
    reason="Whole hours, up to a year (366 days, so a leap year fits): longer demand is a contract, not a request.",
)
MAX_RTT_MS = DecimalNumber(
    max_digits=7,
    decimal_places=1,
    minimum=Decimal(0),
    reason="The RTT columns' shape (tenths of a ms); a bound below 0 ms is meaningless.",
)
LATENCY_WEIGHT = DecimalNumber(
    max_digits=8,
    decimal_places=4,
    minimum=Decimal(0),
    reason="CNY per ms per GPU-hour, as its column holds it; a negative weight would pay for latency.",
)

# --- vouchers -----------------------------------------------------------------------------------

VOUCHER_CODE = Text(max_length=64, reason="The code column's length; issued codes have 24 characters.")
VOUCHER_PERCENT = DecimalNumber(
    max_digits=5,
    decimal_places=2,
    reason="The percent column's shape; above 0 and at most 100 is the programme's rule (its service).",
)
FREE_GPU_HOURS = DecimalNumber(max_digits=10, decimal_places=2, reason="The column's shape: GPU-hours to 0.01.")
VOUCHER_AMOUNT = DecimalNumber(
    **LEDGER_AMOUNT,
    reason="A budget, cap or spend, shaped as the voucher ledger holds it (money.LEDGER_AMOUNT).",
)
VOUCHERS_PER_ISSUE = WholeNumber(
    minimum=1,
    maximum=1000,
    reason="Codes one call issues: a larger batch is several calls, each a short transaction.",
)

# --- statements ---------------------------------------------------------------------------------

STATEMENT_MONTH = Text(
    pattern=r"^[12]\d{3}-(0[1-9]|1[0-2])$",
    reason="YYYY-MM in years 1000–2999: a month whose bounds are valid dates (no year 0, none after 9999-12).",
)

#: Every bound above by its name, in the order declared.
ALL: dict[str, WholeNumber | DecimalNumber | Text] = {
    name: bound for name, bound in globals().items() if isinstance(bound, WholeNumber | DecimalNumber | Text)
}
