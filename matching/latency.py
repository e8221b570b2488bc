"""Latency classes and the RTT model: the one definition used by the engine, the API and the pages."""

from __future__ import annotations

import math
from decimal import Decimal
from enum import StrEnum


class LatencyClass(StrEnum):
    """How much round-trip latency a buyer's users tolerate, tightest first."""

    REALTIME = "realtime"
    INTERACTIVE = "interactive"
    STANDARD = "standard"
    BATCH = "batch"


#: Upper RTT bound of each class in ms; batch is unbounded.
LATENCY_CLASS_BOUND_MS: dict[LatencyClass, float | None] = {
    LatencyClass.REALTIME: 10.0,
    LatencyClass.INTERACTIVE: 30.0,
    LatencyClass.STANDARD: 60.0,
    LatencyClass.BATCH: None,
}

#: Light in fibre covers about 200 km per ms one way.
FIBRE_KM_PER_MS = 200.0
EARTH_RADIUS_KM = 6371.0


def latency_class_of(rtt_ms: float) -> LatencyClass:
    """The tightest latency class whose bound admits ``rtt_ms`` (bounds are inclusive)."""
    if rtt_ms < 0:
        raise ValueError(f"RTT cannot be negative: {rtt_ms}")
    for latency_class, bound in LATENCY_CLASS_BOUND_MS.items():
        if bound is None or rtt_ms <= bound:
            return latency_class
    raise AssertionError("batch is unbounded")  # pragma: no cover


def bound_of(latency_class: LatencyClass | str) -> float | None:
    """The RTT bound in ms of a latency class; ``None`` for batch (unbounded)."""
    return LATENCY_CLASS_BOUND_MS[LatencyClass(latency_class)]


def rtt_bound_ms(max_rtt_ms: Decimal | float | None, latency_class: LatencyClass | str) -> Decimal | None:
    """The RTT bound a request is held to: its explicit ``max_rtt_ms``, else its latency class's
    bound; ``None`` (unbounded) for batch."""
    if max_rtt_ms is not None:
        return Decimal(str(max_rtt_ms))
    bound = bound_of(latency_class)
    return None if bound is None else Decimal(str(bound))


def great_circle_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Haversine distance between two points in km."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(h))


def estimate_rtt_ms(
    distance_km: float,
    *,
    route_factor: float = 1.9,
    overhead_ms_metro: float = 1.0,
    overhead_ms_max: float = 4.5,
    overhead_ramp_km: float = 300.0,
) -> float:
    """Estimated RTT over a typical carrier backbone, per the reference data's model.

    RTT = 2 × route_factor × d / 200 km/ms + C(d), with C(d) rising linearly from the metro overhead
    to the inter-regional one over ``overhead_ramp_km``. Same-region distance 0 gives the metro
    overhead (1 ms). Rounded to 0.1 ms like the reference matrix.
    """
    if distance_km < 0:
        raise ValueError(f"distance cannot be negative: {distance_km}")
    ramp = min(1.0, distance_km / overhead_ramp_km)
    overhead = overhead_ms_metro + (overhead_ms_max - overhead_ms_metro) * ramp
    return round(2 * route_factor * distance_km / FIBRE_KM_PER_MS + overhead, 1)
