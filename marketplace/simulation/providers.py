"""Simulated providers that follow the guidance: once a simulated day, each reprices its idle
listings toward the suggested price, through the real listing-update service.

The rule (:func:`repriced`): a listing with idle GPUs and a suggested price moves **halfway** from its
price toward the suggestion, in whole fen, **never below its energy cost** (the guidance's floor) —
down when the market would fill it only cheaper, up when it would still be filled dearer. Halfway,
not all the way: the suggestion is exact for the open demand at that moment (the next round), and
tomorrow's demand is not today's; halving the gap each day converges on a stable suggestion without
chasing every swing. A listing with no idle GPUs, or for which no price fills it (demand out of
reach, node size, window), keeps its price: a cut would sell nothing.

When: the first step at or after :data:`REPRICE_HOUR_CST` each China Standard Time day, after the
step's rounds. At 22:00 the evening's real-time peak and the night's batch jobs are both open, so
the open demand left after the round is the day's hardest test of a listing's price.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal

from marketplace import selectors, services
from marketplace.models import Listing
from marketplace.simulation.scenario import CST

REPRICE_HOUR_CST = 22
#: The share of the gap to the suggested price a provider closes in one repricing.
REPRICE_STEP = Decimal("0.5")
FEN = Decimal("0.01")


def repriced(price: Decimal, suggested: Decimal, floor: Decimal) -> Decimal | None:
    """The listing's new price: ``price`` moved :data:`REPRICE_STEP` of the way to ``suggested``,
    rounded half up to a fen, at least ``floor`` rounded up to a fen; ``None`` when that is the
    price it has (nothing to change)."""
    target = price + (suggested - price) * REPRICE_STEP
    least = (floor / FEN).to_integral_value(rounding=ROUND_CEILING) * FEN
    new = max(target.quantize(FEN, rounding=ROUND_HALF_UP), least)
    return None if new == price else new


def interruptible_floor(price: Decimal, share: Decimal, energy_cost: Decimal) -> Decimal:
    """The interruptible floor a simulated provider asks beside ``price``: ``share`` of the price,
    rounded half up to a fen, never below the energy cost (rounded up to a fen) nor above the price."""
    least = (energy_cost / FEN).to_integral_value(rounding=ROUND_CEILING) * FEN
    return min(price, max((price * share).quantize(FEN, rounding=ROUND_HALF_UP), least))


def listing_floor_offer(*, listing: Listing, share: Decimal) -> None:
    """Offer ``listing``'s idle GPUs as interruptible at :func:`interruptible_floor` of its price
    (``services.listing_update`` as its provider)."""
    floor = interruptible_floor(listing.price_per_gpu_hour, share, selectors.listing_energy_cost(listing))
    services.listing_update(
        listing_id=listing.pk, provider=listing.provider, changes={"interruptible_floor_price_per_gpu_hour": floor}
    )


def reprice_due(now, last_day) -> bool:
    """Whether a step at ``now`` reprices, given the CST date of the last repricing (or ``None``)."""
    local = now.astimezone(CST)
    return local.hour >= REPRICE_HOUR_CST and local.date() != last_day


def providers_follow_guidance(*, listing_ids, now, counts, floor_share: Decimal | None = None) -> None:
    """Each active listing among ``listing_ids`` with idle GPUs and a suggested price is repriced by
    :func:`repriced` (``services.listing_update`` as its provider); with ``floor_share``, its
    interruptible floor follows (:func:`interruptible_floor` of the new price). Counts
    ``reprices_down``, ``reprices_up`` and ``reprices_kept`` (idle, no price would fill it) in ``counts``."""
    listings = (
        Listing.objects.filter(pk__in=listing_ids, status=Listing.Status.ACTIVE, available_until__gt=now)
        .select_related("provider")
        .order_by("pk")
    )
    for listing in listings:
        guidance = selectors.listing_guidance(listing_id=listing.pk, provider=listing.provider, now=now)
        if guidance is None or guidance.free_gpus == 0:
            continue
        if guidance.suggested_price is None:
            counts["reprices_kept"] += 1
            continue
        new = repriced(listing.price_per_gpu_hour, guidance.suggested_price, guidance.floor)
        if new is None:
            continue
        changes: dict[str, Decimal] = {"price_per_gpu_hour": new}
        if floor_share is not None and listing.interruptible_floor_price_per_gpu_hour is not None:
            energy = selectors.listing_energy_cost(listing)
            changes["interruptible_floor_price_per_gpu_hour"] = interruptible_floor(new, floor_share, energy)
        services.listing_update(listing_id=listing.pk, provider=listing.provider, changes=changes)
        counts["reprices_down" if new < listing.price_per_gpu_hour else "reprices_up"] += 1
