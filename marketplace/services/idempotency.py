"""Recording creating POSTs under an ``Idempotency-Key`` so that a retry gets the first answer.

Each step is its own short transaction on purpose: the claim must be visible to concurrent
attempts at once (the unique constraint picks one winner), and the recorded answer must survive
independently of the request's own work.
"""

from __future__ import annotations

from django.db import IntegrityError, transaction

from marketplace.models import IdempotencyKey


def idempotency_claim(*, user, key: str, fingerprint: str) -> tuple[IdempotencyKey, bool]:
    """The key's row, and whether this caller created it (and so must do the work)."""
    try:
        with transaction.atomic():
            return IdempotencyKey.objects.create(user=user, key=key, fingerprint=fingerprint), True
    except IntegrityError:
        return IdempotencyKey.objects.get(user=user, key=key), False


@transaction.atomic
def idempotency_record(*, row_id: int, status: int, body) -> None:
    """Store the answer the first attempt got; later attempts replay it."""
    IdempotencyKey.objects.filter(pk=row_id).update(
        state=IdempotencyKey.State.DONE, response_status=status, response_body=body
    )


@transaction.atomic
def idempotency_release(*, row_id: int) -> None:
    """The first attempt failed without an answer worth keeping (a server error): let a retry run."""
    IdempotencyKey.objects.filter(pk=row_id, state=IdempotencyKey.State.IN_PROGRESS).delete()
