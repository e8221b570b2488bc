"""Messages several domain rules share, in the reader's language (``gettext`` at raise time).

``marketplace.errors`` stays plain Python (``marketplace.names`` raises its errors and may not
import Django), so the sentences that need the translation machinery live here.
"""

from __future__ import annotations

from datetime import datetime

from django.utils.translation import gettext

from marketplace.bounds import TimeWindow


def outside_window(window: TimeWindow, now: datetime) -> str:
    """The message refusing a time outside ``window`` at ``now``: "Must be between … and … UTC."."""
    return gettext("Must be between %(start)s and %(end)s UTC.") % window.limits(now)


def outside_calendar(first_year: int, last_year: int) -> str:
    """The message refusing a time outside the calendar's years: "Must be in the years 2000–2199."."""
    return gettext("Must be in the years %(first)s–%(last)s.") % {"first": first_year, "last": last_year}
