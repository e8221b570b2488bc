"""Every read the API, the pages and the engine need, each a constant number of queries.

Querysets come back with their joins (``select_related``) and computed columns (``free_gpus``,
``rtt_ms``) in place, so serialising a page never queries per row. Modules by topic:
``market`` (regions, listings, capacity, requests, matches) ``engine`` (the matching snapshot) and
``vouchers`` (ledger balances, programme reports).
"""

from marketplace.selectors.engine import (
    engine_free_listings,
    engine_listing_specs,
    engine_problem,
    engine_request_spec,
    live_nodes_by_listing,
    node_free_of,
    request_quote,
    shards_with_open_work,
)
from marketplace.selectors.market import (
    CapacityRow,
    ListingFilters,
    capacity_by_region,
    gpu_model_list,
    listing_energy_cost,
    listing_search,
    listing_visible,
    listings_visible_to,
    match_list_for,
    matching_run_list,
    organisation_of,
    region_list,
    region_with_rtts,
    request_list_for,
    rtt_map,
    with_free_gpus,
)
from marketplace.selectors.statements import Statement, statement_for
from marketplace.selectors.vouchers import (
    ProgramReport,
    buyer_year_net,
    free_hours_used,
    voucher_ledger_reconciles,
    voucher_program_report,
    voucher_programs_for,
    voucher_terms,
    vouchers_of,
)

__all__ = [
    "CapacityRow",
    "ListingFilters",
    "ProgramReport",
    "Statement",
    "buyer_year_net",
    "capacity_by_region",
    "engine_free_listings",
    "engine_listing_specs",
    "engine_problem",
    "engine_request_spec",
    "free_hours_used",
    "gpu_model_list",
    "listing_energy_cost",
    "listing_search",
    "listing_visible",
    "listings_visible_to",
    "live_nodes_by_listing",
    "match_list_for",
    "matching_run_list",
    "node_free_of",
    "organisation_of",
    "region_list",
    "region_with_rtts",
    "request_list_for",
    "request_quote",
    "rtt_map",
    "shards_with_open_work",
    "statement_for",
    "voucher_ledger_reconciles",
    "voucher_program_report",
    "voucher_programs_for",
    "voucher_terms",
    "vouchers_of",
    "with_free_gpus",
]
