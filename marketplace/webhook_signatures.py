"""Standard Webhooks signatures (https://www.standardwebhooks.com/): signing our deliveries, and
``verify`` for receivers (and our tests) to check one.

A secret is ``whsec_`` and the base64 of 24–64 random bytes; the key is those bytes. A delivery
carries ``webhook-id``, ``webhook-timestamp`` (Unix seconds) and ``webhook-signature``:
space-separated ``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``. A receiver accepts a
delivery when one of the signatures matches and the timestamp is within ``TOLERANCE_SECONDS`` of its
clock, so a captured delivery cannot be replayed later. Plain Python, following the reference
implementation (standard-webhooks' ``libraries/python``), which is not installed here.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping

SECRET_PREFIX = "whsec_"  # noqa: S105  (the spec's prefix, not a secret)
SECRET_BYTES = 32
#: How far a delivery's timestamp may be from the receiver's clock, either way (the spec's 5 minutes).
TOLERANCE_SECONDS = 5 * 60


class WebhookVerificationError(Exception):
    """A delivery whose headers are missing, whose timestamp is too old or new, or whose signature
    does not match its body."""


def secret_generate() -> str:
    """A new endpoint secret, ``whsec_<base64 of 32 random bytes>``."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def _key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def signature(secret: str, *, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value of ``body`` sent as ``msg_id`` at ``timestamp``."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(secret: str, *, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers for ``body``."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(secret, msg_id=msg_id, timestamp=timestamp, body=body),
    }


def verify(secret: str, headers: Mapping[str, str], body: bytes, *, now: float | None = None) -> None:
    """Check a received delivery; raises :class:`WebhookVerificationError` unless ``body`` was signed
    with ``secret`` within ``TOLERANCE_SECONDS`` of ``now`` (default: the clock).

    ``headers`` is any mapping of the request's headers; names are matched case-insensitively.
    ``body`` is the raw request body, byte for byte (parse the JSON only after verifying).
    """
    lowered = {name.lower(): value for name, value in headers.items()}
    try:
        msg_id = lowered["webhook-id"]
        timestamp = int(lowered["webhook-timestamp"])
        received = lowered["webhook-signature"]
    except (KeyError, ValueError) as exc:
        raise WebhookVerificationError("missing or malformed webhook headers") from exc
    current = time.time() if now is None else now
    if abs(current - timestamp) > TOLERANCE_SECONDS:
        raise WebhookVerificationError("timestamp outside the tolerance: too old or too new")
    expected = signature(secret, msg_id=msg_id, timestamp=timestamp, body=body).partition(",")[2]
    for candidate in received.split(" "):
        version, _, value = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(value.encode(), expected.encode()):
            return
    raise WebhookVerificationError("no matching signature")
