"""Django admin for every model: list columns, filters and search that staff actually use.

Reference data and matches are written by services and the engine; here they are read-only so
that nobody bypasses the checks that keep GPUs and budgets consistent.
"""

from django import forms
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm
from django.utils.translation import gettext

from marketplace import names, selectors, services
from marketplace.errors import DomainError
from marketplace.models import (
    ApiKey,
    BuyerRequest,
    ClearingPrice,
    GpuModel,
    IdempotencyKey,
    Listing,
    LlmModel,
    MarketClock,
    Match,
    MatchingRun,
    MeasuredProfile,
    Membership,
    NodeHeartbeat,
    Organisation,
    Region,
    RequestInference,
    Rtt,
    Settlement,
    Voucher,
    VoucherLedgerEntry,
    VoucherProgram,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookNotice,
)
from marketplace.services.vouchers import PROGRAM_TERMS, program_terms_check


def domain_rule(check, *args, **kwargs):
    """``check(*args, **kwargs)`` for a form's ``clean_<field>``: a ``DomainError`` becomes that
    field's error. The services apply the same rules; here they come before a save could fail."""
    try:
        return check(*args, **kwargs)
    except DomainError as error:
        raise forms.ValidationError(error.message) from None


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
    list_display = [
        "code",
        "name",
        "vram_gb",
        "tdp_w",
        "indicative_price_per_gpu_hour",
        "memory_bandwidth_gbps",
        "bf16_tflops",
        "fp8_tflops",
        "interconnect",
    ]
    search_fields = ["code", "name"]


@admin.register(LlmModel)
class LlmModelAdmin(admin.ModelAdmin):
    list_display = ["code", "name", "params_b", "active_params_b", "layers", "kv_heads", "head_dim", "max_context"]
    search_fields = ["code", "name"]


@admin.register(MeasuredProfile)
class MeasuredProfileAdmin(ReadOnlyAdmin):
    """Published by providers through the API (``services.measured_profile_record``); staff read them."""

    list_display = ["listing", "llm_model", "precision", "gpus_per_replica", "prompt_tokens", "concurrency",
                    "output_tokens_per_second", "ttft_ms", "measured_at"]  # fmt: skip
    list_filter = ["precision", "llm_model"]
    list_select_related = ["listing", "llm_model"]


@admin.register(ClearingPrice)
class ClearingPriceAdmin(ReadOnlyAdmin):
    """Written by each round (``services.prices``), pruned by beat after ``PRICE_HISTORY_DAYS``; staff read them."""

    list_display = ["recorded_at", "run", "region", "gpu_model", "price_per_gpu_hour", "rent_per_gpu_hour",
                    "free_gpus", "listings", "saturated_listings", "unavailable_listings"]  # fmt: skip
    list_filter = ["gpu_model", "region"]
    list_select_related = ["run", "region", "gpu_model"]
    date_hierarchy = "recorded_at"


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    raw_id_fields = ["user"]


class OrganisationForm(forms.ModelForm):
    """An organisation's name follows ``marketplace.names``, as at sign-up."""

    class Meta:
        model = Organisation
        fields = ["name", "kind", "province"]

    def clean_name(self):
        others = selectors.organisation_names_in_use(excluding_id=self.instance.pk)
        return domain_rule(names.distinct_name_check, self.cleaned_data["name"], existing=others, field="name")

    def clean_province(self):
        province = self.cleaned_data["province"]
        return domain_rule(names.name_check, province, field="province") if province else province


@admin.register(Organisation)
class OrganisationAdmin(admin.ModelAdmin):
    form = OrganisationForm
    list_display = ["name", "kind", "monthly_spend_cap", "created_at"]
    list_filter = ["kind"]
    search_fields = ["name"]
    inlines = [MembershipInline]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "organisation", "role"]
    list_filter = ["organisation__kind", "role"]
    search_fields = ["user__username", "organisation__name"]
    list_select_related = ["user", "organisation"]
    raw_id_fields = ["user"]


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


@admin.register(RequestInference)
class RequestInferenceAdmin(ReadOnlyAdmin):
    """The terms of inference requests (``services.request_submit_inference``); staff read them."""

    list_display = ["request", "llm_model", "output_tokens_per_second", "tokens_per_second_placed", "ttft_p95_ms",
                    "max_price_per_million_tokens", "precision"]  # fmt: skip
    list_filter = ["llm_model", "precision"]
    list_select_related = ["request", "llm_model"]


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


class VoucherProgramForm(forms.ModelForm):
    """Checks a programme's terms with the service's own rule, errors beside the field."""

    class Meta:
        model = VoucherProgram
        fields = [
            "name",
            "sponsor",
            "kind",
            "percent",
            "free_gpu_hours",
            "cap_per_buyer",
            "budget",
            "valid_from",
            "valid_until",
            "eligible_regions",
            "eligible_providers",
            "eligible_gpu_models",
            "eligible_buyer_provinces",
            "min_spend",
            "max_spend",
        ]

    def clean_name(self):
        others = selectors.voucher_program_names_in_use(excluding_id=self.instance.pk)
        return domain_rule(names.distinct_name_check, self.cleaned_data["name"], existing=others, field="name")

    def clean_sponsor(self):
        return domain_rule(names.name_check, self.cleaned_data["sponsor"], field="sponsor")

    def clean_eligible_buyer_provinces(self):
        provinces = self.cleaned_data["eligible_buyer_provinces"] or []
        if not isinstance(provinces, list) or not all(isinstance(p, str) for p in provinces):
            raise forms.ValidationError(gettext('A list of province names, e.g. ["Shanghai"].'))
        return [domain_rule(names.name_check, p, field="eligible_buyer_provinces") for p in provinces]

    def clean(self):
        data = super().clean()
        terms = {**{f: getattr(self.instance, f) for f in PROGRAM_TERMS}, **data}
        try:
            program_terms_check(**{key: terms.get(key) for key in PROGRAM_TERMS})
        except DomainError as error:
            self.add_error(error.field if error.field in self.fields else None, error.message)
        return data


@admin.register(VoucherProgram)
class VoucherProgramAdmin(admin.ModelAdmin):
    """Staff create programmes and change their name, window, caps and budget here; every save goes
    through the voucher services (the remaining budget moves with the ledger, never by hand)."""

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
    readonly_fields = ["remaining_budget", "sponsor_provider"]
    filter_horizontal = ["eligible_regions", "eligible_providers", "eligible_gpu_models"]
    actions = ["issue_ten_codes"]
    form = VoucherProgramForm
    #: What a change may touch (the rest is fixed once vouchers exist).
    CHANGEABLE = ("name", "budget", "valid_from", "valid_until", "cap_per_buyer")

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return self.readonly_fields
        fixed = [f.name for f in self.model._meta.fields if f.name not in self.CHANGEABLE and f.name != "id"]
        return [*fixed, "eligible_regions", "eligible_providers", "eligible_gpu_models"]

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        if change:
            changes = {field: data[field] for field in self.CHANGEABLE if field in form.changed_data}
            services.voucher_program_update(program_id=obj.pk, sponsor_provider=None, changes=changes)
            return
        fields = {k: v for k, v in data.items() if k not in ("remaining_budget", "sponsor_provider")}
        obj.pk = services.voucher_program_create(**fields).pk

    def save_related(self, request, form, formsets, change):
        """Eligibility was set by the service on create and is fixed afterwards."""

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.action(description="Issue 10 claimable codes in each selected programme")
    def issue_ten_codes(self, request, queryset):
        for program in queryset:
            services.vouchers_issue(program_id=program.pk, sponsor_provider=None, count=10)
        self.message_user(request, f"Issued 10 codes in each of {queryset.count()} programme(s).")


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


@admin.register(Settlement)
class SettlementAdmin(ReadOnlyAdmin):
    list_display = [
        "match",
        "buyer",
        "provider",
        "settled_at",
        "gpu_hours",
        "gross",
        "subsidy",
        "buyer_pays",
        "platform_fee",
        "provider_earns",
        "sla_credit",
    ]
    list_filter = ["program", "provider"]
    search_fields = ["buyer__name", "provider__name"]
    list_select_related = ["match", "buyer", "provider"]
    date_hierarchy = "settled_at"


@admin.register(MarketClock)
class MarketClockAdmin(ReadOnlyAdmin):
    """Moved by ``manage.py advance_clock`` only."""

    list_display = ["id", "offset_seconds"]


@admin.register(NodeHeartbeat)
class NodeHeartbeatAdmin(ReadOnlyAdmin):
    """Written by provider agents' heartbeats only (``services.agents``); staff read them."""

    list_display = ["listing", "node", "health", "seen_at", "ok_at"]
    list_filter = ["health"]
    list_select_related = ["listing"]


@admin.register(ApiKey)
class ApiKeyAdmin(ReadOnlyAdmin):
    """Keys are made and revoked by their organisation's owners (API, web page); staff read them.
    The secret's hash is left out: it is of no use to a reader."""

    list_display = ["name", "prefix", "organisation", "user", "scopes", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["scopes"]
    search_fields = ["name", "prefix", "organisation__name", "user__username"]
    list_select_related = ["organisation", "user"]
    exclude = ["secret_sha256"]


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(ReadOnlyAdmin):
    """Endpoints are registered by their organisation's owners (API); staff read them. The signing
    secret is left out: staff have no use for it, and it would let them forge deliveries."""

    list_display = ["url", "organisation", "events", "created_at", "failing_since", "disabled_at"]
    search_fields = ["url", "organisation__name"]
    list_select_related = ["organisation"]
    exclude = ["secret"]


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    list_display = ["event_type", "event_id", "endpoint", "status", "attempt_count", "next_attempt_at", "created_at"]
    list_filter = ["status", "event_type"]
    search_fields = ["event_id", "endpoint__url"]
    list_select_related = ["endpoint__organisation"]


@admin.register(WebhookNotice)
class WebhookNoticeAdmin(ReadOnlyAdmin):
    list_display = ["event_type", "object_id", "state", "changed_at"]
    list_filter = ["event_type", "state"]


@admin.register(IdempotencyKey)
class IdempotencyKeyAdmin(ReadOnlyAdmin):
    list_display = ["user", "key", "state", "response_status", "created_at"]
    list_filter = ["state"]
    search_fields = ["user__username", "key"]
    list_select_related = ["user"]


class UsernameRule(forms.ModelForm):
    """Usernames follow ``marketplace.names`` in the admin as at sign-up: NFKC, no look-alikes."""

    def clean_username(self):
        parent = getattr(super(), "clean_username", None)
        username = parent() if parent else self.cleaned_data["username"]
        username = domain_rule(names.username_normalise, username)
        others = selectors.usernames_in_use(excluding_id=self.instance.pk)
        domain_rule(names.lookalike_check, username, existing=others, field="username")
        return username


class UserCreationWithNames(UsernameRule, AdminUserCreationForm):
    pass


class UserChangeWithNames(UsernameRule, UserChangeForm):
    pass


admin.site.unregister(get_user_model())


@admin.register(get_user_model())
class UserWithNamesAdmin(UserAdmin):
    """Django's user admin, with the username rule."""

    add_form = UserCreationWithNames
    form = UserChangeWithNames
