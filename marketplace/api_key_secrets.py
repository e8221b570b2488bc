"""API key secrets: how one is made, shown, found and checked.

A secret reads ``gmk_<prefix>_<random>``: ``gmk_`` tells it apart from a legacy DRF token (40 hex
digits), the prefix (12 hex digits, unique) finds its row, and the random part carries 256 bits
from ``secrets``. Only the SHA-256 of the whole secret is stored. A fast hash is the right one
here, as for GitHub's and Stripe's keys: a password needs a slow hash because people choose
guessable ones, but nobody can enumerate 2^256 random secrets, and a slow hash on every API call
would cost a PBKDF2 run per request.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

MARK = "gmk_"
PREFIX_HEX_DIGITS = 12


@dataclass(frozen=True)
class NewSecret:
    prefix: str
    secret: str
    sha256: str


def secret_new() -> NewSecret:
    prefix = secrets.token_hex(PREFIX_HEX_DIGITS // 2)
    secret = f"{MARK}{prefix}_{secrets.token_urlsafe(32)}"
    return NewSecret(prefix=prefix, secret=secret, sha256=secret_digest(secret))


def secret_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def is_api_key_secret(presented: str) -> bool:
    """Whether ``presented`` has a key's shape (else it may be a legacy token)."""
    return presented.startswith(MARK)


def prefix_of(presented: str) -> str | None:
    """The prefix of a key-shaped secret, or None when it has no well-formed one."""
    prefix, _, rest = presented.removeprefix(MARK).partition("_")
    if len(prefix) != PREFIX_HEX_DIGITS or not rest:
        return None
    return prefix


def secret_matches(presented: str, sha256: str) -> bool:
    """Compare in constant time, so timing tells an attacker nothing of the stored digest."""
    return hmac.compare_digest(secret_digest(presented), sha256)
