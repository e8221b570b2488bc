"""Every write to the marketplace's data, each in one transaction.

Services take keyword arguments, check the domain rules first (raising ``marketplace.errors``
naming the field), and rely on database constraints as the last guard.
"""

from marketplace.services.accounts import (
    account_register,
    organisation_name_check,
    password_check,
    user_create,
    username_check,
)
from marketplace.services.agents import agent_heartbeat_record, agents_sweep, match_ready
from marketplace.services.api_keys import CreatedKey, api_key_create, api_key_revoke, api_key_used
from marketplace.services.credentials import user_credentials_revoke
from marketplace.services.lifecycle import lifecycle_tick, match_cancel
from marketplace.services.listings import (
    listing_create,
    listing_nodes_fail,
    listing_update,
    listing_withdraw,
    measured_profile_record,
)
from marketplace.services.members import member_add, member_remove, member_role_change, organisation_spend_cap_set
from marketplace.services.reference import reference_load, reference_read
from marketplace.services.requests import request_cancel, request_submit, request_submit_inference
from marketplace.services.vouchers import (
    voucher_claim,
    voucher_program_create,
    voucher_program_update,
    vouchers_issue,
)

__all__ = [
    "CreatedKey",
    "account_register",
    "agent_heartbeat_record",
    "agents_sweep",
    "api_key_create",
    "api_key_revoke",
    "api_key_used",
    "lifecycle_tick",
    "listing_create",
    "listing_nodes_fail",
    "listing_update",
    "listing_withdraw",
    "match_cancel",
    "match_ready",
    "measured_profile_record",
    "member_add",
    "member_remove",
    "member_role_change",
    "organisation_name_check",
    "organisation_spend_cap_set",
    "password_check",
    "reference_load",
    "reference_read",
    "request_cancel",
    "request_submit",
    "request_submit_inference",
    "user_create",
    "user_credentials_revoke",
    "username_check",
    "voucher_claim",
    "voucher_program_create",
    "voucher_program_update",
    "vouchers_issue",
]
