"""Every write to the marketplace's data, each in one transaction.

Services take keyword arguments, check the domain rules first (raising ``marketplace.errors``
naming the field), and rely on database constraints as the last guard.
"""

from marketplace.services.accounts import account_register
from marketplace.services.lifecycle import lifecycle_tick, match_cancel
from marketplace.services.listings import listing_create, listing_nodes_fail, listing_update, listing_withdraw
from marketplace.services.reference import reference_load, reference_read
from marketplace.services.requests import request_cancel, request_submit
from marketplace.services.vouchers import (
    voucher_claim,
    voucher_program_create,
    voucher_program_update,
    vouchers_issue,
)

__all__ = [
    "account_register",
    "lifecycle_tick",
    "listing_create",
    "listing_nodes_fail",
    "listing_update",
    "listing_withdraw",
    "match_cancel",
    "reference_load",
    "reference_read",
    "request_cancel",
    "request_submit",
    "voucher_claim",
    "voucher_program_create",
    "voucher_program_update",
    "vouchers_issue",
]
