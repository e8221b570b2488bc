"""Reliability scores: a listing's or a provider's availability over the last 30 days, defined once.

The window is the 30 days of market time up to ``now`` (``marketplace.market_time.market_now``).
The matches behind a score are the listing's (for a provider: its listings') matches that were
meant to run in the window: status running, completed or failed, and planned time
``[starts_at, ends_at]`` overlapping the window. Reserved matches (not started yet) and cancelled
ones (the buyer's choice) say nothing about the capacity and are left out. Then::

    scheduled = Σ gpus × hours of [starts_at, ends_at] inside the window
    lost      = Σ over failed matches: gpus × hours of [lost_from, ends_at] inside the window
    score     = 1 − lost / scheduled, rounded *down* to 4 places

where ``lost_from`` is when the match stopped (``ended_at``) if it ever ran (``ready_at`` set), else
its planned start: a match that missed its provisioning deadline, or whose node failed before it
started, lost all of its time. A failure of any cause counts (a node reported failed by the
provider or its agent, silence past the heartbeat timeout, a missed provisioning deadline, the
listing withdrawn under a live match): each is capacity the buyer was sold and did not get.
Running and completed matches delivered their time. Rounding down: a listing that lost anything
never shows 1.0000.

Too little history: with fewer than ``RELIABILITY_MIN_MATCHES`` (a setting, default 5) matches the
score is ``None`` and the status ``new`` ("too little history (3 matches in 30 days)"), never 1: a
request's ``min_reliability`` rules such a listing out.

Plain Python over plain rows; the query is ``marketplace.selectors.reliability``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_DOWN, Decimal

from django.utils.translation import ngettext

#: How far back a score looks, in market time.
WINDOW = timedelta(days=30)
#: A score's resolution: 4 places, as the API writes it.
QUANTUM = Decimal("0.0001")
#: The statuses of the matches behind a score.
COUNTED_STATUSES = ("running", "completed", "failed")
SCORED, NEW = "scored", "new"


@dataclass(frozen=True)
class MatchTime:
    """What a score needs of one match."""

    gpus: int
    status: str
    starts_at: datetime
    ends_at: datetime
    ended_at: datetime | None
    ready_at: datetime | None


@dataclass(frozen=True)
class Reliability:
    """A score (``None``: too little history), the matches behind it and the GPU-hours it weighs."""

    score: Decimal | None
    matches: int
    scheduled_gpu_hours: Decimal
    lost_gpu_hours: Decimal

    @property
    def status(self) -> str:
        return NEW if self.score is None else SCORED

    @property
    def note(self) -> str:
        """Why there is no score, in words ("" when there is one)."""
        if self.score is not None:
            return ""
        return ngettext(
            "too little history (%(n)s match in 30 days)", "too little history (%(n)s matches in 30 days)", self.matches
        ) % {"n": self.matches}

    @property
    def text(self) -> str | None:
        """The score as the API writes it ("0.9650"), or ``None``."""
        return None if self.score is None else str(self.score)


def _hours_inside(start: datetime, end: datetime, since: datetime, now: datetime) -> Decimal:
    """Hours of ``[start, end]`` inside ``[since, now]`` (0 when they do not overlap), exact to the µs."""
    span = min(end, now) - max(start, since)
    if span <= timedelta(0):
        return Decimal(0)
    return Decimal(span // timedelta(microseconds=1)) / Decimal(3_600_000_000)


def window_start(now: datetime) -> datetime:
    """The first instant of the window ending at ``now``."""
    return now - WINDOW


def reliability(matches: Iterable[MatchTime], *, now: datetime, min_matches: int) -> Reliability:
    """The score of the given matches (a listing's, or all of a provider's listings') at ``now``.

    Matches outside the window or of other statuses are ignored, so callers may pass a superset.
    """
    since = window_start(now)
    count, scheduled, lost = 0, Decimal(0), Decimal(0)
    for m in matches:
        if m.status not in COUNTED_STATUSES:
            continue
        hours = _hours_inside(m.starts_at, m.ends_at, since, now)
        if hours <= 0:
            continue
        count += 1
        scheduled += m.gpus * hours
        if m.status == "failed":
            lost_from = m.ended_at if m.ready_at is not None and m.ended_at is not None else m.starts_at
            lost += m.gpus * _hours_inside(lost_from, m.ends_at, since, now)
    score = None
    if count >= min_matches and scheduled > 0:
        score = max(Decimal(0), 1 - lost / scheduled).quantize(QUANTUM, rounding=ROUND_DOWN)
    return Reliability(score=score, matches=count, scheduled_gpu_hours=scheduled, lost_gpu_hours=lost)
