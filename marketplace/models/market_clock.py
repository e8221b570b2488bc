"""The market clock: the offset (and freeze) ``manage.py advance_clock`` and the simulation set."""

from __future__ import annotations

from django.db import models
from django.db.models import Q


class MarketClock(models.Model):
    """The market's time: real (or frozen) time plus an offset that ``manage.py advance_clock``
    moves forward, so that tests and demos can run a day in seconds. One row."""

    offset_seconds = models.BigIntegerField(default=0)
    #: When set, the market ignores real time and stands at this instant (plus the offset): a
    #: simulation run as fast as possible then repeats to the last digit.
    frozen_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(offset_seconds__gte=0), name="clock_never_goes_back")]

    def __str__(self) -> str:
        return f"market clock +{self.offset_seconds} s"
