"""Django admin for every model: list columns, filters and search that staff actually use.

Reference data and matches are written by services and the engine; here they are read-only so
that nobody bypasses the checks that keep GPUs and budgets consistent.
"""

from django.contrib import admin

from marketplace.models import (
    BuyerRequest,
    GpuModel,
    Listing,
    Match,
    MatchingRun,
    Membership,
    Organisation,
    Region,
    Rtt,
    Voucher,
    VoucherLedgerEntry,
    VoucherProgram,
)


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Region)
class RegionAdmin(admin.ModelAdmin):
    list_display = ["code", "name", "kind", "province", "power_price_cny_kwh", "pue", "is_west"]
    list_filter = ["kind", "is_west", "province"]
    search_fields = ["code", "name", "name_zh", "province"]


@admin.register(Rtt)
class RttAdmin(admin.ModelAdmin):
    list_display = ["source_region", "target_region", "rtt_ms", "source"]
    list_filter = ["source", "source_region"]
    search_fields = ["source_region__code", "target_region__code"]
    list_select_related = ["source_region", "target_region"]


@admin.register(GpuModel)
class GpuModelAdmin(admin.ModelAdmin):
    list_display = ["code", "name", "vram_gb", "tdp_w", "indicative_price_per_gpu_hour"]
    search_fields = ["code", "name"]


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    raw_id_fields = ["user"]


@admin.register(Organisation)
class OrganisationAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "created_at"]
    list_filter = ["kind"]
    search_fields = ["name"]
    inlines = [MembershipInline]


@admin.register(Listing)
class ListingAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "provider",
        "region",
        "gpu_model",
        "gpu_count",
        "allocated_gpus",
        "gpus_per_node",
        "price_per_gpu_hour",
        "status",
        "available_until",
    ]
    list_filter = ["status", "gpu_model", "region__is_west", "region"]
    search_fields = ["provider__name", "region__code"]
    list_select_related = ["provider", "region", "gpu_model"]


@admin.register(BuyerRequest)
class BuyerRequestAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "buyer",
        "gpu_model",
        "replicas",
        "gpus_per_replica",
        "origin",
        "latency_class",
        "max_price_per_gpu_hour",
        "status",
        "matched_replicas",
        "created_at",
    ]
    list_filter = ["status", "latency_class", "gpu_model", "origin"]
    search_fields = ["buyer__name", "origin__code"]
    list_select_related = ["buyer", "gpu_model", "origin"]


@admin.register(Match)
class MatchAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "request",
        "listing",
        "replicas",
        "gpus",
        "price_per_gpu_hour",
        "subsidy_per_gpu_hour",
        "rtt_ms",
        "latency_class",
        "status",
        "created_at",
    ]
    list_filter = ["status", "latency_class", "listing__region"]
    search_fields = ["request__buyer__name", "listing__provider__name"]
    list_select_related = ["request", "listing"]


@admin.register(MatchingRun)
class MatchingRunAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "trigger",
        "shard",
        "status",
        "solver",
        "request_count",
        "listing_count",
        "served_replicas",
        "unserved_replicas",
        "gap",
        "started_at",
    ]
    list_filter = ["status", "trigger", "shard", "solver"]


@admin.register(VoucherProgram)
class VoucherProgramAdmin(ReadOnlyAdmin):
    """Programmes are created and topped up through the API's services (budget moves need the ledger)."""

    list_display = [
        "name",
        "sponsor",
        "kind",
        "percent",
        "free_gpu_hours",
        "cap_per_buyer",
        "budget",
        "remaining_budget",
        "valid_until",
    ]
    list_filter = ["kind", "eligible_regions"]
    search_fields = ["name", "sponsor"]


@admin.register(Voucher)
class VoucherAdmin(ReadOnlyAdmin):
    list_display = ["id", "program", "buyer", "cap", "spent", "status", "claimed_at"]
    list_filter = ["status", "program"]
    search_fields = ["buyer__name", "program__name"]
    list_select_related = ["program", "buyer"]
    exclude = ["code"]  # codes are bearer secrets: shown to their holder and issuer through the API only


@admin.register(VoucherLedgerEntry)
class VoucherLedgerEntryAdmin(ReadOnlyAdmin):
    list_display = ["id", "program", "voucher", "buyer", "match", "kind", "amount", "gpu_hours", "created_at"]
    list_filter = ["kind", "program"]
    search_fields = ["buyer__name", "program__name"]
    list_select_related = ["program", "voucher", "buyer", "match"]
