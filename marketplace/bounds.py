"""The domain of each input, declared once with the reason for its limits.

The web forms and the API build their fields from these, so a page and the API accept the same
values. ``field_kwargs()`` speaks the keyword arguments Django's form fields and DRF's serializer
fields share (``min_value``, ``max_digits``, ``max_length``, ``regex``), so this module imports
neither. ``ALL`` holds every bound by name, for whatever must list or enforce them all.

Times: every time is aware, and lies in a window around the market's now (:class:`TimeWindow`)
and within :data:`CALENDAR`, the years the database holds at all. Decimals are written in ASCII
digits with at most one point and no exponent (:data:`DECIMAL_TEXT`): ``"1e5"`` and ``"٥"`` are
refused, not read as 100000 and 5.

Rules that relate several inputs (a request's GPUs in all, a window's order) are the rules of
``demand``, ``supply`` and the services.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from marketplace.money import LEDGER_AMOUNT, MONEY, SETTLED_AMOUNT


def _given(**kwargs) -> dict:
    """The keyword arguments that are set: an absent limit is the field's default, not ``None``."""
    return {name: value for name, value in kwargs.items() if value is not None}


@dataclass(frozen=True, kw_only=True)
class WholeNumber:
    """A whole number from ``minimum`` to ``maximum``, both included."""

    minimum: int
    maximum: int
    reason: str

    def field_kwargs(self) -> dict:
        return {"min_value": self.minimum, "max_value": self.maximum}

    def shown(self) -> str:
        return f"{self.minimum} … {self.maximum}"


@dataclass(frozen=True, kw_only=True)
class WholeNumberFrom:
    """A whole number of ``minimum`` or more, unbounded above (a count to filter by, an index)."""

    minimum: int
    reason: str

    def field_kwargs(self) -> dict:
        return {"min_value": self.minimum}

    def shown(self) -> str:
        return f"≥ {self.minimum}"


@dataclass(frozen=True, kw_only=True)
class DecimalNumber:
    """A decimal of at most ``max_digits`` digits, ``decimal_places`` of them after the point, from
    ``minimum`` to ``maximum``, both included."""

    max_digits: int
    decimal_places: int
    minimum: Decimal
    maximum: Decimal
    reason: str

    def field_kwargs(self) -> dict:
        return {
            "max_digits": self.max_digits,
            "decimal_places": self.decimal_places,
            "min_value": self.minimum,
            "max_value": self.maximum,
        }

    def shown(self) -> str:
        return f"{self.minimum} … {self.maximum} ({self.max_digits} digits, {self.decimal_places} after the point)"


@dataclass(frozen=True, kw_only=True)
class Text:
    """Text of at most ``max_length`` characters, matching ``pattern`` when there is one."""

    max_length: int | None = None
    pattern: str | None = None
    reason: str

    def field_kwargs(self) -> dict:
        return _given(max_length=self.max_length, regex=self.pattern)

    def shown(self) -> str:
        length = f"≤ {self.max_length} characters" if self.max_length else ""
        pattern = f"matching `{self.pattern}`" if self.pattern else ""
        return ", ".join(part for part in (length, pattern) if part)


@dataclass(frozen=True, kw_only=True)
class TimeWindow:
    """An aware time from ``before`` before the market's now to ``after`` after it, both included."""

    before: timedelta | None
    after: timedelta
    reason: str

    def contains(self, value: datetime, now: datetime) -> bool:
        if value.tzinfo is None or not CALENDAR.first <= value < CALENDAR.end:
            return False
        return (self.before is None or now - self.before <= value) and value <= now + self.after

    def shown(self) -> str:
        since = "any time since the calendar's start" if self.before is None else f"{self.before.days} days before now"
        return f"from {since} to {self.after.days} days after now, with its offset"

    def limits(self, now: datetime) -> dict[str, str]:
        """The window's first and last instant (UTC, to the minute) as an error message writes them:
        ``{"start": …, "end": …}``. The message's words are the caller's (``rule_messages.outside_window``)."""
        start = CALENDAR.first if self.before is None else max(CALENDAR.first, now - self.before)
        return {"start": f"{start:%Y-%m-%d %H:%M}", "end": f"{now + self.after:%Y-%m-%d %H:%M}"}


@dataclass(frozen=True, kw_only=True)
class Calendar:
    """The years the market's time columns may hold at all: ``first`` included, ``end`` not."""

    first: datetime
    end: datetime
    reason: str

    def shown(self) -> str:
        return f"{self.first:%Y-%m-%d} to before {self.end:%Y-%m-%d}"


CALENDAR = Calendar(
    first=datetime(2000, 1, 1, tzinfo=UTC),
    end=datetime(2200, 1, 1, tzinfo=UTC),
    reason=(
        "The database's own guard on every listing, request and programme time (a check constraint, "
        "not moving with now): far inside what a datetime holds, so no end time (start + a year's "
        "duration) can overflow, and no row from year 1 or 9999 can reach a round."
    ),
)
#: A decimal in a JSON body or a form: ASCII digits, an optional point and fraction, an optional
#: minus; no exponent, no other script's digits, no spaces.
DECIMAL_TEXT = r"^-?[0-9]+(\.[0-9]+)?$"

# --- accounts -----------------------------------------------------------------------------------

USERNAME = Text(
    max_length=150,
    pattern=r"^[\w.@+-]+\Z",
    reason="What Django's user model takes: up to 150 letters, digits and @ . + - _ (NFKC, no look-alikes: names).",
)
PASSWORD = Text(max_length=128, reason="Room for any passphrase; a longer body is refused before it is hashed.")
NAME = Text(max_length=200, reason="Name columns' length: organisations, programmes, sponsors (characters: names.py).")
PROVINCE = Text(max_length=100, reason="The province columns' length (regions, organisations).")

# --- listings -----------------------------------------------------------------------------------

GPU_COUNT = WholeNumber(
    minimum=1,
    maximum=16_384,
    reason=(
        "At least one GPU; at most 2,048 nodes of 8, a whole large AI hall's idle block: more is several "
        "listings, and an extra digit is refused, not listed."
    ),
)
PRICE = DecimalNumber(
    **MONEY,
    minimum=Decimal("0.0001"),
    maximum=Decimal(1000),
    reason=(
        "CNY per GPU-hour to 0.0001 (money.MONEY), above 0 (the services' rule too); at most 1,000, about "
        "thirty times the dearest GPU-hour rented in China (an H100 at ~30 CNY), so a slipped decimal "
        "point is refused, not listed or bid."
    ),
)
LISTING_TIMES = TimeWindow(
    before=None,
    after=timedelta(days=731),
    reason=(
        "A listing's window ends within two years of now (idle capacity, not a forward contract) and "
        "after now (a window wholly past has nothing to offer); it may have opened any time since 2000."
    ),
)
MIN_FREE_GPUS = WholeNumberFrom(minimum=0, reason="A search's least free GPUs: 0 keeps every listing.")
FAILED_NODES = WholeNumber(
    minimum=1,
    maximum=1000,
    reason="Nodes one failure report names: at least one, and few enough that one transaction fails them over.",
)
NODE_INDEX = WholeNumberFrom(minimum=0, reason="A listing's nodes are numbered from 0.")
PROMPT_TOKENS = WholeNumber(
    minimum=1, maximum=1_048_576, reason="A prompt of at least one token, at most the longest context served (1M)."
)
CONCURRENCY = WholeNumber(
    minimum=1, maximum=100_000, reason="Sequences decoded at once on one replica in a measurement: one or more."
)
OUTPUT_TOKENS_PER_SECOND = DecimalNumber(
    max_digits=10,
    decimal_places=1,
    minimum=Decimal("0.1"),
    maximum=Decimal(10_000_000),
    reason="One replica's output tokens/s: positive, and below 10M (a whole rack does not reach it).",
)
TTFT_MS = DecimalNumber(
    max_digits=9,
    decimal_places=1,
    minimum=Decimal("0.1"),
    maximum=Decimal(1_000_000),
    reason="Time to first token in ms: positive, and at most 1,000 s (a power of ten, as the schema's pattern needs).",
)
PROFILE_TIMES = TimeWindow(
    before=timedelta(days=731),
    after=timedelta(0),
    reason="A measurement was taken in the last two years, and not after now.",
)

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
REQUEST_START = TimeWindow(
    before=timedelta(0),
    after=timedelta(days=731),
    reason="A request starts after now and by two years from now: later demand is a forward contract.",
)
MAX_RTT_MS = DecimalNumber(
    max_digits=7,
    decimal_places=1,
    minimum=Decimal("0.1"),
    maximum=Decimal(1000),
    reason=(
        "Tenths of a ms, above 0 (the rule of demand too); at most 1,000 ms, several times any RTT inside "
        "China (a batch request, unbounded, names no bound)."
    ),
)
LATENCY_WEIGHT = DecimalNumber(
    max_digits=8,
    decimal_places=4,
    minimum=Decimal(0),
    maximum=Decimal(10),
    reason=(
        "CNY per ms per GPU-hour: 0 or more (a negative weight would pay for latency), at most 10, two "
        "hundred times realtime's default of 0.05, where one ms already outweighs any GPU-hour."
    ),
)
OUTPUT_TOKENS = WholeNumber(
    minimum=1, maximum=1_048_576, reason="An answer of at least one token, at most the longest context served (1M)."
)
TOKENS_PER_SECOND_ASKED = DecimalNumber(
    max_digits=10,
    decimal_places=1,
    minimum=Decimal("0.1"),
    maximum=Decimal(10_000_000),
    reason="Output tokens/s an inference buyer asks for in all: positive, below 10M (thousands of replicas).",
)
PRICE_PER_MILLION_TOKENS = DecimalNumber(
    **MONEY,
    minimum=Decimal("0.0001"),
    maximum=Decimal(1000),
    reason=(
        "CNY per million output tokens to 0.0001, above 0; at most 1,000, about fifty times the dearest "
        "open model's list price in China (DeepSeek-R1 at 16 CNY/Mtok), so a slipped decimal point is refused."
    ),
)
MIN_RELIABILITY = DecimalNumber(
    max_digits=5,
    decimal_places=4,
    minimum=Decimal(0),
    maximum=Decimal(1),
    reason=(
        "A request's least 30-day reliability of a listing (marketplace.reliability): a fraction from 0 to 1, "
        "4 places as scores are shown; any bound, even 0, rules out listings with too little history."
    ),
)

WORKLOAD = Text(
    max_length=2000,
    reason="What the buyer will run (model, image, serving stack), for the provider's agent: a note, not a spec.",
)

# --- provider agents ----------------------------------------------------------------------------

ENDPOINT_URL = Text(max_length=500, reason="The match's endpoint column's length; https URLs only.")
AGENT_NOTE = Text(max_length=300, reason="A provider agent's note on a ready match, shown to nobody but the record.")

# --- vouchers -----------------------------------------------------------------------------------

VOUCHER_CODE = Text(max_length=64, reason="The code column's length; issued codes have 24 characters.")
VOUCHER_PERCENT = DecimalNumber(
    max_digits=5,
    decimal_places=2,
    minimum=Decimal(0),
    maximum=Decimal(100),
    reason="A share of the rent: above 0 (the programme's rule) and at most 100.",
)
FREE_GPU_HOURS = DecimalNumber(
    max_digits=10,
    decimal_places=2,
    minimum=Decimal(0),
    maximum=Decimal(10_000_000),
    reason="GPU-hours to 0.01, above 0 (the programme's rule); ten million is a whole city's year of them.",
)
VOUCHER_AMOUNT = DecimalNumber(
    **LEDGER_AMOUNT,
    minimum=Decimal("0.0001"),
    maximum=Decimal(10_000_000_000),
    reason=(
        "A budget or a cap in CNY to 0.0001 (money.LEDGER_AMOUNT): above 0, and at most ten billion, "
        "some fifteen years of the largest city programme (Shanghai's 600 M CNY a year)."
    ),
)
VOUCHER_SPEND = DecimalNumber(
    **LEDGER_AMOUNT,
    minimum=Decimal(0),
    maximum=Decimal(10_000_000_000),
    reason="A programme's minimum or maximum spend per request in CNY: 0 or more, capped like a budget.",
)
PROGRAMME_TIMES = TimeWindow(
    before=timedelta(days=3653),
    after=timedelta(days=3653),
    reason="A programme's validity lies within ten years either side of now: city schemes run for years, not decades.",
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

# --- API keys and spend caps --------------------------------------------------------------------

SPEND_CAP = DecimalNumber(
    **SETTLED_AMOUNT,
    minimum=Decimal("0.01"),
    maximum=Decimal(10_000_000_000),
    reason=(
        "A monthly spend cap in CNY to the fen (money.SETTLED_AMOUNT, as charges are): above 0, and at "
        "most ten billion, like a budget."
    ),
)
API_KEY_NAME = Text(max_length=100, reason="A key's name, for people to tell keys apart: a short label.")
WEBHOOK_URL = Text(max_length=500, reason="The endpoint URL column's length: room for a path and a query token.")
WEBHOOK_ENDPOINTS = WholeNumber(
    minimum=0,
    maximum=20,
    reason="Webhook endpoints one organisation may register: each event is written once per endpoint.",
)

# --- filters ------------------------------------------------------------------------------------

OBJECT_ID = WholeNumber(
    minimum=1,
    maximum=2**63 - 1,
    reason=(
        "An object's id in a filter (?request=, ?listing=): the database's 64-bit keys, so a larger "
        "number is a 400, not a query the database cannot run."
    ),
)

# --- bodies -------------------------------------------------------------------------------------

JSON_DEPTH = WholeNumber(
    minimum=1,
    maximum=32,
    reason=(
        "Containers nested in one JSON body (marketplace.api.parsers): ours nest 2 deep, 32 leaves room to grow, "
        "and stays far below the ~1000 Python frames that reading, validating and echoing a body may use."
    ),
)

Bound = WholeNumber | WholeNumberFrom | DecimalNumber | Text | TimeWindow | Calendar

#: Every bound above by its name, in the order declared.
ALL: dict[str, Bound] = {name: bound for name, bound in globals().items() if isinstance(bound, Bound)}


def markdown() -> str:
    """Every bound as a Markdown table (name, value, reason): ``docs/api.md`` shows it, and a test
    holds the two equal. Print it with ``python -c "from marketplace import bounds; print(bounds.markdown())"``."""
    rows = ["| bound | value | reason |", "| --- | --- | --- |"]
    cell = lambda text: text.replace("|", "\\|")  # noqa: E731  (a pipe would end the cell)
    rows += [f"| `{name}` | {cell(bound.shown())} | {cell(bound.reason)} |" for name, bound in ALL.items()]
    return "\n".join(rows)
