"""Planning a round that one bad row cannot stop: find the rows that make a step raise, leave them out.

A round plans a whole shard at once, so an exception from one request or listing (a value the
engine cannot compute with, a bug that only one row's numbers reach) would fail the round for
everyone, and every retry and sweep after it the same way. :func:`plan_quarantined` plans; if the
planner raises, it finds the rows to leave out with :func:`rows_to_leave_out` and plans the rest.
The service that applies a plan uses the same search over requests when the database refuses one.

The search (:func:`minimal_failing`) grows a set of rows that fails on its own, one row per binary
search over the rest: ``m · log2(n)`` attempts for a failing set of ``m`` rows among ``n``, made
only after a first attempt failed. A failure usually needs two rows (a request and a listing it
could use), so each row of that set is then tried alone: if leaving out just one row makes the whole
round pass, only that row is left out. Every search is bounded (:data:`MAX_ATTEMPTS`); past the
bound the first error stands, so a failure that is not about particular rows (the solver itself
broken) still fails the round loudly instead of dropping half the market.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TypeVar

from matching.problem import InferenceDemand, ListingSpec, Problem, RequestSpec

P = TypeVar("P")
#: A row a search may leave out: a request in either form, or a listing.
Row = RequestSpec | InferenceDemand | ListingSpec

#: The most attempts one round's search makes before it gives up (a shard of 10k rows with three
#: bad requests needs about 3 · (2 · 14 + 2) = 90).
MAX_ATTEMPTS = 200


class SearchExhausted(Exception):
    """The rows to leave out could not be found within :data:`MAX_ATTEMPTS` attempts."""


@dataclass(frozen=True)
class LeftOut:
    """A row a round left out, and why: ``kind`` is ``"request"`` or ``"listing"``."""

    kind: str
    id: int
    reason: str


class Attempts:
    """A budget of attempts shared by one round's searches."""

    def __init__(self, fails: Callable[[Sequence[int]], BaseException | None], budget: int = MAX_ATTEMPTS):
        self.fails, self.left = fails, budget

    def __call__(self, subset: Sequence[int]) -> BaseException | None:
        """The error ``subset`` meets, or None."""
        if self.left <= 0:
            raise SearchExhausted(f"no rows isolated within {MAX_ATTEMPTS} attempts")
        self.left -= 1
        return self.fails(subset)


def minimal_failing(items: Sequence[int], fails: Callable[[Sequence[int]], BaseException | None]) -> list[int]:
    """A set of ``items`` that fails on its own and from which no single item can be dropped
    (assuming that adding items never cures a failure).

    Precondition: ``fails(items)`` is an error. Raises :class:`SearchExhausted` when the failure
    is not monotone in the items (no failing set can be built).
    """
    found: list[int] = []
    candidates = list(items)
    while not found or fails(found) is None:
        if not candidates:
            raise SearchExhausted("the failure is not caused by any set of these rows")
        low, high = 1, len(candidates)  # found + candidates[:high] fails
        while low < high:
            middle = (low + high) // 2
            if fails([*found, *candidates[:middle]]) is not None:
                high = middle
            else:
                low = middle + 1
        found.append(candidates[high - 1])
        candidates = candidates[: high - 1]
    return found


def rows_to_leave_out(count: int, fails: Callable[[Sequence[int]], BaseException | None]) -> dict[int, BaseException]:
    """``{index: error}`` of the rows (numbered ``0 … count − 1``) without which ``fails`` succeeds,
    given that ``fails`` of them all failed. When leaving out either of two rows would do, the one
    numbered first goes (``plan_quarantined`` numbers requests, of either form, before listings:
    leaving out a request costs its own buyer a round, a listing costs everyone its GPUs). Raises
    :class:`SearchExhausted` past :data:`MAX_ATTEMPTS` attempts in all."""
    attempt = Attempts(fails)
    left_out: dict[int, BaseException] = {}
    current = list(range(count))
    while (error := attempt(current)) is not None:
        failing = minimal_failing(current, attempt)
        alone = next((row for row in sorted(failing) if attempt([r for r in current if r != row]) is None), None)
        blamed = [alone] if alone is not None else failing
        why = attempt(failing) or error
        for row in blamed:
            left_out[row] = why
        current = [row for row in current if row not in blamed]
    return left_out


def plan_quarantined(
    plan_of: Callable[[Problem], P], problem: Problem, *, passthrough: tuple[type[BaseException], ...] = ()
) -> tuple[P, list[LeftOut]]:
    """``plan_of(problem)`` (a plan, or a quote); if it raises, the same without the requests (GPU-form
    and inference demand alike) and listings that make it raise, and those rows with the error they met.

    Raises the first error again when no such rows can be found (:class:`SearchExhausted`). Errors
    that are about the process, not the rows (``MemoryError``, and ``passthrough``: the caller's
    time limit, say), are raised at once, never searched for.
    """
    fatal: tuple[type[BaseException], ...] = (MemoryError, *passthrough)
    try:
        return plan_of(problem), []
    except fatal:
        raise
    except Exception as first:
        rows: list[Row] = [*problem.requests, *problem.inference, *problem.listings]

        def fails(indices: Sequence[int]) -> BaseException | None:
            try:
                plan_of(_with_rows(problem, [rows[i] for i in indices]))
            except fatal:
                raise
            except Exception as exc:
                return exc
            return None

        try:
            left_out = rows_to_leave_out(len(rows), fails)
        except SearchExhausted:
            raise first from None
    kept = [row for i, row in enumerate(rows) if i not in left_out]
    notes = [
        LeftOut(
            "listing" if isinstance(rows[i], ListingSpec) else "request",
            rows[i].id,
            f"the engine could not plan it: {error!r}"[:300],
        )
        for i, error in sorted(left_out.items())
    ]
    return plan_of(_with_rows(problem, kept)), notes


def _with_rows(problem: Problem, rows: Sequence[Row]) -> Problem:
    requests = tuple(row for row in rows if isinstance(row, RequestSpec))
    inference = tuple(row for row in rows if isinstance(row, InferenceDemand))
    listings = tuple(row for row in rows if isinstance(row, ListingSpec))
    return replace(problem, requests=requests, inference=inference, listings=listings)
