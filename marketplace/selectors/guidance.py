"""Guidance for a provider's idle listing: why its free GPUs stay idle, and the highest price at which
the engine would fill them, with the GPU-hours it would sell there.

A read: the round's own snapshot of the listing's GPU model (``engine_problem``: the current open
demand and free capacity, through the same rules a round reads them by) and the engine
(:mod:`matching.guidance`, exact re-solves). Nothing is written. "Recent rounds" here means the
current open demand only: a past round's demand and capacity are not reconstructed (matched requests
no longer hold the capacity they had), so the guidance answers "at what price would the next round
fill it".

The engine returns reasons as codes with parameters; :func:`idle_reasons` words them in the active
language, naming regions and GPU models with the ``name`` given (the pages: the reader's language;
the API: English).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.utils.translation import gettext, ngettext

from marketplace.bounds import PRICE
from marketplace.market_time import market_now
from marketplace.models import Listing, Organisation
from marketplace.money import yuan_text
from marketplace.selectors.engine import engine_problem
from marketplace.selectors.market import listing_energy_cost
from matching import guidance as engine
from matching.guidance import Reason, Suggestion
from matching.problem import sold_gpu_hours
from matching.solver import solve

#: Reasons the marketplace adds before the engine sees the listing.
NOT_ACTIVE = "not_active"
NO_FREE_GPUS = "no_free_gpus"
LEFT_OUT = "left_out"


@dataclass(frozen=True)
class ListingGuidance:
    """The guidance of one listing at ``now``. ``suggestion`` is ``None`` when the engine was not
    asked (the listing is not offered, or no request may use it at any price); ``gpu_hours_at_price``
    is what the next round would sell on it at its own price."""

    listing: Listing
    now: Any
    free_gpus: int
    floor: Decimal
    gpu_hours_at_price: int
    reasons: tuple[Reason, ...]
    suggestion: Suggestion | None
    #: Time the re-solves took (at its own price, then the price search), ms.
    duration_ms: float = 0.0

    @property
    def suggested_price(self) -> Decimal | None:
        return None if self.suggestion is None else self.suggestion.price

    @property
    def suggested_gpu_hours(self) -> int:
        return 0 if self.suggestion is None or self.suggestion.price is None else self.suggestion.gpu_hours

    @property
    def probes(self) -> tuple[engine.PriceProbe, ...]:
        return () if self.suggestion is None else self.suggestion.probes

    @property
    def reason_codes(self) -> list[str]:
        return [reason.code for reason in self.reasons]

    @property
    def solves(self) -> int:
        return (1 if self.free_gpus > 0 else 0) + len(self.probes)


def listing_guidance(*, listing_id: int, provider: Organisation, now=None) -> ListingGuidance | None:
    """The guidance of ``provider``'s listing ``listing_id`` (``None``: no such listing of its own).

    At most 1 + :data:`matching.guidance.MAX_SOLVES` exact re-solves of the listing's GPU model; a
    constant number of queries."""
    listing = Listing.objects.select_related("region", "gpu_model").filter(pk=listing_id, provider=provider).first()
    if listing is None:
        return None
    now = now or market_now()
    floor = max(listing_energy_cost(listing), engine.FEN)
    if listing.status != Listing.Status.ACTIVE or listing.available_until <= now:
        return ListingGuidance(listing, now, 0, floor, 0, (Reason(NOT_ACTIVE, 0, {"status": listing.status}),), None)
    snapshot = engine_problem(gpu_model_code=listing.gpu_model.code, now=now)
    problem = snapshot.problem
    spec = engine.listing_in(problem, listing.pk)
    if spec is None:
        left = next((x for x in snapshot.left_out if x.kind == "listing" and x.id == listing.pk), None)
        reason = Reason(LEFT_OUT, 0, {"why": left.reason}) if left is not None else Reason(NO_FREE_GPUS, 0)
        return ListingGuidance(listing, now, 0, floor, 0, (reason,), None)
    started = time.perf_counter()
    at_price = sold_gpu_hours(problem, solve(problem), listing.pk)
    reasons = tuple(engine.diagnose(problem, listing.pk, at_price))
    ceiling = engine.price_ceiling(problem, listing.pk, PRICE.maximum)
    suggestion = None
    if ceiling is not None:
        suggestion = engine.suggest_price(problem, listing.pk, solve, floor=floor, ceiling=ceiling)
    took = round((time.perf_counter() - started) * 1000, 1)
    return ListingGuidance(listing, now, spec.free_gpus, floor, at_price, reasons, suggestion, took)


def idle_reasons(guidance: ListingGuidance, *, name: Callable[[Any], str]) -> list[str]:
    """The reasons as sentences in the active language; regions and GPU models named by ``name``."""
    listing = guidance.listing
    region, gpu = name(listing.region), name(listing.gpu_model)
    out = [_sentence(reason, region=region, gpu=gpu) for reason in guidance.reasons]
    if guidance.gpu_hours_at_price > 0:
        n = guidance.gpu_hours_at_price
        out.append(
            ngettext(
                "At your price the next round would sell %(n)s GPU-hour on it.",
                "At your price the next round would sell %(n)s GPU-hours on it.",
                n,
            )
            % {"n": n}
        )
    elif guidance.free_gpus > 0 and guidance.suggested_price is None:
        floor = yuan_text(guidance.floor)
        out.append(gettext("No price from your energy cost (%(floor)s) up would fill it now.") % {"floor": floor})
    return out


def _sentence(reason: Reason, *, region: str, gpu: str) -> str:
    p, n = reason.params, reason.count
    if reason.code == NOT_ACTIVE:
        return gettext("The listing is not on the market (withdrawn or its window has ended).")
    if reason.code == NO_FREE_GPUS:
        return gettext("Every GPU of the listing is in use: none is idle.")
    if reason.code == LEFT_OUT:
        return gettext("The latest round left the listing out: %(why)s") % {"why": p["why"]}
    if reason.code == engine.NO_DEMAND:
        return gettext("There is no open demand for %(gpu)s right now.") % {"gpu": gpu}
    if reason.code == engine.OUT_OF_REACH:
        if p["all"]:
            return gettext("No open demand can reach %(region)s within its latency bound.") % {"region": region}
        return ngettext(
            "%(n)s open request cannot reach %(region)s within its latency bound.",
            "%(n)s open requests cannot reach %(region)s within their latency bound.",
            n,
        ) % {"n": n, "region": region}
    if reason.code == engine.NODE_SIZE:
        sizes = ", ".join(str(s) for s in p["sizes"])  # type: ignore[attr-defined]
        return ngettext(
            "Your nodes have %(node)s GPUs but %(n)s request within reach wants %(sizes)s-GPU replicas.",
            "Your nodes have %(node)s GPUs but %(n)s requests within reach want %(sizes)s-GPU replicas.",
            n,
        ) % {"node": p["gpus_per_node"], "n": n, "sizes": sizes}
    if reason.code == engine.RELIABILITY:
        return ngettext(
            "%(n)s request within reach requires a reliability this listing does not have yet.",
            "%(n)s requests within reach require a reliability this listing does not have yet.",
            n,
        ) % {"n": n}
    if reason.code == engine.OPENS_LATE:
        return ngettext(
            "%(n)s request within reach must start before the listing opens.",
            "%(n)s requests within reach must start before the listing opens.",
            n,
        ) % {"n": n}
    if reason.code == engine.WINDOW_SHORT:
        return ngettext(
            "The window ends before %(n)s request within reach could run (%(hours)s h needed).",
            "The window ends before any of %(n)s requests within reach could run (at least %(hours)s h needed).",
            n,
        ) % {"n": n, "hours": p["hours"]}
    if reason.code == engine.NO_FREE_NODE:
        return ngettext(
            "%(n)s request within reach wants %(size)s GPUs on one node; your largest free block is %(free)s.",
            "%(n)s requests within reach want %(size)s GPUs on one node; your largest free block is %(free)s.",
            n,
        ) % {"n": n, "size": p["size"], "free": p["largest_free"]}
    if reason.code == engine.PRICE_ABOVE_CAP:
        return gettext("Demand within reach is capped at %(cap)s, your price is %(price)s.") % {
            "cap": yuan_text(p["cap"]),  # type: ignore[arg-type]
            "price": yuan_text(p["price"]),  # type: ignore[arg-type]
        }
    if reason.code == engine.OUTCOMPETED:
        return ngettext(
            "%(n)s request could use the listing but cheaper or nearer capacity serves it.",
            "%(n)s requests could use the listing but cheaper or nearer capacity serves them.",
            n,
        ) % {"n": n}
    raise ValueError(f"unknown reason {reason.code}")
