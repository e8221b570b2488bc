"""Forms of the web pages. They parse shapes (numbers, choices, dates) within the bounds of
``marketplace.bounds``, as the API does; the domain rules are the services', whose ``DomainError``
lands beside the field it names (``ServiceForm.add_domain_error``). One set of rules for the pages
and the API."""

from __future__ import annotations

import re
from datetime import datetime

from django import forms
from django.contrib.auth.password_validation import password_validators_help_texts
from django.forms.models import ModelChoiceIterator
from django.utils.functional import lazy
from django.utils.text import capfirst, format_lazy
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from marketplace import bounds, names
from marketplace.bounds import DECIMAL_TEXT
from marketplace.demand import start_by_default
from marketplace.errors import DomainError
from marketplace.market_time import market_now
from marketplace.models import (
    NODE_SIZE_CHOICES,
    GpuModel,
    LlmModel,
    Membership,
    Organisation,
    Region,
    VoucherProgram,
)
from marketplace.models.api_keys import Scope
from marketplace.services import organisation_name_check, password_check, username_check
from marketplace.supply import LISTING_DEFAULT_WINDOW, listing_window_default
from marketplace.web.formatting import cny, latency_class_name, local_name, time_zone_label
from matching.inference import PRECISIONS
from matching.latency import LATENCY_CLASS_BOUND_MS, LatencyClass

DATETIME_FORMAT = "%Y-%m-%dT%H:%M"


def with_time_zone(label: str) -> str:
    """A time field's label with the pages' zone: "Start by (CST)" / "开始时间（北京时间）"."""
    return _("%(label)s (%(zone)s)") % {"label": label, "zone": time_zone_label()}


def _datetime_field(label: str, help_text: str) -> forms.DateTimeField:
    """A date and time typed in China Standard Time (PageTimeZoneMiddleware makes it the current
    zone on pages), shown with the zone in its label."""
    widget = forms.DateTimeInput(attrs={"type": "datetime-local"}, format=DATETIME_FORMAT)
    label_with_zone = lazy(with_time_zone, str)(label)
    return forms.DateTimeField(label=label_with_zone, required=False, widget=widget, help_text=help_text)


class AsciiDecimalField(forms.DecimalField):
    """A decimal typed in the digits 0-9 (``bounds.DECIMAL_TEXT``), as the API takes it: Django's
    field would read "1e5" as 100000 and "٥" as 5."""

    default_error_messages = {"ascii": "Type a number in the digits 0-9, such as 9.50."}

    def to_python(self, value):
        text = value.strip() if isinstance(value, str) else value
        if isinstance(text, str) and text and not re.fullmatch(DECIMAL_TEXT, text):
            raise forms.ValidationError(self.error_messages["ascii"], code="ascii")
        return super().to_python(value)


class ReadableOrderIterator(ModelChoiceIterator):
    """A menu in the order of its English names (the pinyin of most Chinese ones), never the code."""

    def __iter__(self):
        if self.field.empty_label is not None:
            yield ("", self.field.empty_label)
        for obj in sorted(self.queryset, key=lambda thing: thing.name.casefold()):
            yield self.choice(obj)


class RegionChoiceField(forms.ModelChoiceField):
    """Regions by their name in the reader's language (the name already says which hub)."""

    iterator = ReadableOrderIterator

    def label_from_instance(self, obj: Region) -> str:
        return local_name(obj)


class GpuModelChoiceField(forms.ModelChoiceField):
    """GPU models by their name in the reader's language (the name already says the memory)."""

    iterator = ReadableOrderIterator

    def label_from_instance(self, obj: GpuModel) -> str:
        return local_name(obj)


def region_field(label: str, **kwargs) -> RegionChoiceField:
    return RegionChoiceField(Region.objects.all(), to_field_name="code", label=label, **kwargs)


def gpu_model_field(label: str | None = None, **kwargs) -> GpuModelChoiceField:
    return GpuModelChoiceField(GpuModel.objects.all(), to_field_name="code", label=label or _("GPU model"), **kwargs)


class ServiceForm(forms.Form):
    """A form whose domain rules are checked by a service."""

    def add_domain_error(self, error: DomainError) -> None:
        """Show ``error`` beside the field it names, or above the form when it names none here."""
        self.add_error(error.field if error.field in self.fields else None, error.message)


# --- accounts -----------------------------------------------------------------------------------


def domain_rule(check, *args, **kwargs):
    """``check``'s answer, its ``DomainError`` as a ``ValidationError``: a service's read-only rule
    run in a form's ``clean_<field>``, so its refusal shows with the other fields' errors."""
    try:
        return check(*args, **kwargs)
    except DomainError as error:
        raise forms.ValidationError(error.message) from None


class NewUserForm(ServiceForm):
    """A form creating a user (``username``, ``email``, ``password``): the password rules
    (``AUTH_PASSWORD_VALIDATORS``' help texts, in the reader's language) are the password's help
    before the first submit, and the username's and password's service rules run with the form's."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["password"].help_text = " ".join(password_validators_help_texts())

    def clean_username(self) -> str:
        return domain_rule(username_check, self.cleaned_data["username"])

    def clean(self):
        data = super().clean()
        if "password" in data:
            try:
                password_check(data["password"], username=data.get("username", ""), email=data.get("email", ""))
            except DomainError as error:
                self.add_error("password", error.message)
        return data


class SignUpForm(NewUserForm):
    """``account_register``'s keyword arguments. Every field's rules run on one submit, the
    services' too (the organisation name taken, the username's, the password validators'), so every
    refusal shows at once; ``account_register`` checks them again in its transaction."""

    role = forms.ChoiceField(
        label=_("I am a"),
        choices=[
            (Organisation.Kind.PROVIDER, _("provider (I list idle GPUs)")),
            (Organisation.Kind.BUYER, _("buyer (I rent GPUs)")),
        ],
        widget=forms.RadioSelect,
    )
    organisation = forms.CharField(
        label=_("Organisation"),
        **bounds.NAME.field_kwargs(),
        help_text=_("A new name: names in use are refused. No < or > and no control characters."),
    )
    username = forms.RegexField(**bounds.USERNAME.field_kwargs(), label=_("Username"))
    email = forms.EmailField(label=_("Email"))
    password = forms.CharField(
        label=_("Password"),
        **bounds.PASSWORD.field_kwargs(),
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )

    def clean_organisation(self) -> str:
        return domain_rule(organisation_name_check, self.cleaned_data["organisation"])


# --- listings -----------------------------------------------------------------------------------


class ListingShapeFields(ServiceForm):
    gpu_count = forms.IntegerField(label=_("GPUs"), **bounds.GPU_COUNT.field_kwargs())
    gpus_per_node = forms.TypedChoiceField(label=_("GPUs per node"), choices=NODE_SIZE_CHOICES, coerce=int, initial=8)
    price_per_gpu_hour = AsciiDecimalField(label=_("Price per GPU-hour (CNY)"), **bounds.PRICE.field_kwargs())
    interruptible_floor_price_per_gpu_hour = AsciiDecimalField(
        label=_("Interruptible floor per GPU-hour (CNY)"),
        **bounds.PRICE.field_kwargs(),
        required=False,
        help_text=_(
            "Sell idle GPUs cheaper to work that accepts pre-emption: it pays this floor (at most your price) "
            "and is stopped, after a notice, when on-demand demand needs the GPUs. Empty: not offered."
        ),
    )
    available_from = _datetime_field(_("Available from"), _("Empty: now."))
    available_until = _datetime_field(
        _("Available until"),
        format_lazy(_("Empty: {days} days after the start."), days=LISTING_DEFAULT_WINDOW.days),
    )


class ListingForm(ListingShapeFields):
    """A new listing; ``terms()`` are ``listing_create``'s keyword arguments (provider aside). A
    window wholly in the past is refused by ``listing_create`` (``supply.listing_terms_check``),
    beside ``available_until``."""

    region = region_field(_("Region"))
    gpu_model = gpu_model_field()
    field_order = ["region", "gpu_model", "gpu_count", "gpus_per_node", "price_per_gpu_hour"]

    def terms(self, *, now: datetime | None = None) -> dict:
        terms = dict(self.cleaned_data)
        terms["available_from"], terms["available_until"] = listing_window_default(
            terms["available_from"], terms["available_until"], now=now or market_now()
        )
        return terms


class ListingEditForm(ListingShapeFields):
    """Changes to an existing listing; ``changes()`` is what ``listing_update`` takes."""

    def __init__(self, *args, listing, **kwargs):
        # Minutes, as the inputs show them: an untouched date is then not a change.
        initial = {
            "gpu_count": listing.gpu_count,
            "gpus_per_node": listing.gpus_per_node,
            "price_per_gpu_hour": listing.price_per_gpu_hour,
            "interruptible_floor_price_per_gpu_hour": listing.interruptible_floor_price_per_gpu_hour,
            "available_from": listing.available_from.replace(second=0, microsecond=0),
            "available_until": listing.available_until.replace(second=0, microsecond=0),
        }
        super().__init__(*args, initial=initial, **kwargs)
        self.fields["available_from"].help_text = _("Empty: unchanged.")
        self.fields["available_until"].help_text = _("Empty: unchanged.")

    def changes(self) -> dict:
        """The changed fields; an emptied floor is a change too (it withdraws the interruptible tier)."""
        return {
            name: self.cleaned_data[name]
            for name in self.changed_data
            if self.cleaned_data.get(name) is not None or name == "interruptible_floor_price_per_gpu_hour"
        }


class FailedNodesForm(ServiceForm):
    """Nodes of one listing to report failed: ``listing_nodes_fail``'s ``nodes`` (numbered from 0;
    the service refuses a number the listing does not have, beside this field)."""

    nodes = forms.CharField(label=_("Failed nodes"), max_length=4000)

    def __init__(self, *args, listing, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["nodes"].help_text = _("Node numbers, separated by commas: 0 to %(last)s.") % {
            "last": listing.node_count - 1
        }

    def clean_nodes(self) -> list[int]:
        parts = [part.strip() for part in re.split(r"[,，\s]+", self.cleaned_data["nodes"]) if part.strip()]
        if not parts or not all(re.fullmatch(r"[0-9]{1,6}", part) for part in parts):
            raise forms.ValidationError(_("Type node numbers in the digits 0-9, separated by commas, such as 0, 3."))
        nodes = sorted({int(part) for part in parts})
        if len(nodes) > bounds.FAILED_NODES.maximum:
            raise forms.ValidationError(
                _("At most %(count)s nodes in one report.") % {"count": bounds.FAILED_NODES.maximum}
            )
        return nodes


class PromotionForm(ServiceForm):
    """A provider's promotion: ``voucher_program_create``'s keyword arguments (the provider, its
    sponsor, aside). The service checks the terms (``program_terms_check``) beside their fields."""

    name = forms.CharField(label=_("Name"), **bounds.NAME.field_kwargs())
    kind = forms.ChoiceField(
        label=_("Kind"),
        choices=[
            (VoucherProgram.Kind.PERCENT, _("a percent of the rent")),
            (VoucherProgram.Kind.FREE_GPU_HOURS, _("free GPU-hours")),
        ],
        widget=forms.RadioSelect,
        initial=VoucherProgram.Kind.PERCENT,
    )
    percent = AsciiDecimalField(
        label=_("Percent off (%)"),
        **bounds.VOUCHER_PERCENT.field_kwargs(),
        required=False,
        help_text=_("For a percent promotion, e.g. 20."),
    )
    free_gpu_hours = AsciiDecimalField(
        label=_("Free GPU-hours"),
        **bounds.FREE_GPU_HOURS.field_kwargs(),
        required=False,
        help_text=_("For a free GPU-hours promotion."),
    )
    budget = AsciiDecimalField(
        label=_("Budget (CNY)"),
        **bounds.VOUCHER_AMOUNT.field_kwargs(),
        help_text=_("The most the promotion pays out in all; you pay it."),
    )
    cap_per_buyer = AsciiDecimalField(
        label=_("Cap per buyer a year (CNY)"),
        **bounds.VOUCHER_AMOUNT.field_kwargs(),
        required=False,
        help_text=_("Empty: no cap per buyer."),
    )
    valid_from = _datetime_field(_("Valid from"), _("Empty: now."))
    valid_until = _datetime_field(_("Valid until"), "")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["valid_until"].required = True

    def terms(self, *, now: datetime | None = None) -> dict:
        terms = dict(self.cleaned_data)
        terms["valid_from"] = terms["valid_from"] or now or market_now()
        if terms["kind"] == VoucherProgram.Kind.PERCENT:
            terms["free_gpu_hours"] = None
        else:
            terms["percent"] = None
        return terms


# --- requests -----------------------------------------------------------------------------------


def latency_choice_label(latency_class: LatencyClass) -> str:
    """A latency class in a menu: "Interactive (≤ 30 ms)", "Batch (no bound)"."""
    bound = LATENCY_CLASS_BOUND_MS[latency_class]
    name = capfirst(latency_class_name(latency_class))
    if bound is None:
        return gettext("%(name)s (no bound)") % {"name": name}
    return gettext("%(name)s (≤ %(bound)s ms)") % {"name": name, "bound": f"{bound:g}"}


def _latency_choices() -> list[tuple[str, str]]:
    custom = (CUSTOM_BOUND, gettext("Custom bound (max RTT below)"))
    return [(c.value, latency_choice_label(c)) for c in LatencyClass] + [custom]


#: The latency menu's value for "my own bound": the max RTT field then says it.
CUSTOM_BOUND = "custom"


def voucher_choice_label(voucher) -> str:
    """A voucher in the picker: its programme and what it can still pay."""
    return gettext("%(program)s · %(remaining)s left · %(code)s") % {
        "program": voucher.program.name,
        "remaining": cny(voucher.remaining_value),
        "code": voucher.code,
    }


def voucher_fields() -> tuple[forms.ChoiceField, forms.CharField]:
    """A demand form's ``voucher`` menu (the buyer's usable vouchers, filled by ``offer_vouchers``)
    and ``voucher_code`` (a code typed instead)."""
    return (
        forms.ChoiceField(
            label=_("My vouchers"),
            required=False,
            help_text=_("A voucher of yours that can still pay; or type a new code below."),
        ),
        forms.CharField(
            label=_("Voucher code"),
            **bounds.VOUCHER_CODE.field_kwargs(),
            required=False,
            help_text=_("A subsidy voucher (算力券) or promotion."),
        ),
    )


def offer_vouchers(form: forms.Form, vouchers: list) -> None:
    """Fill ``form``'s voucher menu with ``vouchers``; hide it when there are none."""
    voucher_field = form.fields["voucher"]
    voucher_field.choices = [("", gettext("none"))] + [  # type: ignore[attr-defined]
        (v.code, voucher_choice_label(v)) for v in vouchers
    ]
    if not vouchers:
        voucher_field.widget = forms.HiddenInput()


def voucher_pick_check(form: forms.Form, data: dict) -> None:
    """A voucher picked from the menu and another code typed is an error on ``voucher_code``."""
    picked, typed = data.get("voucher"), data.get("voucher_code")
    if picked and typed and picked != typed:
        form.add_error("voucher_code", gettext("Pick a voucher or type a code, not both."))


def voucher_code_of(terms: dict) -> str | None:
    """The one voucher code of a demand form's cleaned data (removing its ``voucher`` menu value):
    the code typed, else the one picked, else None."""
    picked = terms.pop("voucher", "")
    return terms.get("voucher_code") or picked or None


class RequestForm(ServiceForm):
    """Demand; ``terms()`` are ``request_submit``'s (and ``request_quote``'s) keyword arguments.

    ``vouchers``: the buyer's usable vouchers, offered in a menu that fills ``voucher_code`` (a new
    code is typed instead). A custom bound ("custom", or empty as the API's null) needs its max RTT."""

    gpu_model = gpu_model_field()
    gpus_per_replica = forms.TypedChoiceField(
        label=_("GPUs per replica"),
        choices=NODE_SIZE_CHOICES,
        coerce=int,
        initial=1,
        help_text=_("A replica runs on one node."),
    )
    replicas = forms.IntegerField(label=_("Replicas"), **bounds.REPLICAS.field_kwargs(), initial=1)
    origin = region_field(_("Users are near"), help_text=_("Latency is measured from this city."), initial="shanghai")
    latency_class = forms.ChoiceField(
        label=_("Latency class"),
        choices=_latency_choices,
        required=False,
        initial=LatencyClass.STANDARD.value,
    )
    max_rtt_ms = AsciiDecimalField(
        label=_("Max RTT (ms)"),
        **bounds.MAX_RTT_MS.field_kwargs(),
        required=False,
        help_text=_("For a custom bound: the longest round trip your users accept."),
    )
    max_price_per_gpu_hour = AsciiDecimalField(label=_("Price cap per GPU-hour (CNY)"), **bounds.PRICE.field_kwargs())
    duration_hours = forms.IntegerField(label=_("Duration (hours)"), **bounds.DURATION_HOURS.field_kwargs(), initial=24)
    start_by = _datetime_field(_("Start by"), _("Empty: within 24 hours."))
    interruptible = forms.BooleanField(
        label=_("Interruptible"),
        required=False,
        help_text=_(
            "Cheaper: runs on listings' interruptible floors, after all on-demand demand, and pays the floor "
            "(your price cap is your bid). On-demand demand may stop it after a notice; you pay for the time "
            "it ran and it is placed again."
        ),
    )
    voucher, voucher_code = voucher_fields()
    latency_weight = AsciiDecimalField(
        label=_("Latency weight (CNY per ms per GPU-hour)"),
        **bounds.LATENCY_WEIGHT.field_kwargs(),
        required=False,
        help_text=_("Empty: the latency class's default."),
    )
    min_reliability = AsciiDecimalField(
        label=_("Least listing reliability (0–1)"),
        **bounds.MIN_RELIABILITY.field_kwargs(),
        required=False,
        help_text=_(
            "A listing's 30-day availability; e.g. 0.99. Empty: any listing. Any value rules out new listings "
            "with too little history."
        ),
    )

    def __init__(self, *args, vouchers=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.vouchers = list(vouchers)
        offer_vouchers(self, self.vouchers)

    def clean(self):
        data = super().clean()
        custom = data.get("latency_class") in ("", CUSTOM_BOUND)
        if custom and data.get("max_rtt_ms") is None and "max_rtt_ms" not in self.errors:
            self.add_error("max_rtt_ms", gettext("A custom bound needs its max RTT, e.g. 31."))
        voucher_pick_check(self, data)
        return data

    def terms(self, *, now: datetime | None = None) -> dict:
        terms = dict(self.cleaned_data)
        terms["voucher_code"] = voucher_code_of(terms)
        latency_class = terms["latency_class"]
        terms["latency_class"] = None if latency_class in ("", CUSTOM_BOUND) else latency_class
        terms["start_by"] = start_by_default(terms["start_by"], now=now or market_now())
        return terms


class LlmModelChoiceField(forms.ModelChoiceField):
    """LLMs of the reference catalogue by their name in the reader's language, where it has one."""

    iterator = ReadableOrderIterator

    def label_from_instance(self, obj: LlmModel) -> str:
        return local_name(obj)


class GpuModelsField(forms.ModelMultipleChoiceField):
    """An allow-list of GPU models, ticked by their names in the reader's language."""

    iterator = ReadableOrderIterator

    def label_from_instance(self, obj: GpuModel) -> str:
        return local_name(obj)


def _precision_choices() -> list[tuple[str, str]]:
    return [("", gettext("any the model is served at"))] + [(code, code) for code in PRECISIONS]


class InferenceForm(ServiceForm):
    """Demand in the inference form: an LLM at a throughput under a TTFT target. ``terms()`` are
    ``selectors.inference_quote_for``'s keyword arguments, so the page quotes what
    ``POST /api/v1/quotes/`` quotes, with the same rules and the same fields named."""

    llm_model = LlmModelChoiceField(
        LlmModel.objects.all(), to_field_name="code", label=_("Model to serve"), initial="deepseek-r1-distill-qwen-32b"
    )
    output_tokens_per_second = AsciiDecimalField(
        label=_("Output tokens/s"),
        **bounds.TOKENS_PER_SECOND_ASKED.field_kwargs(),
        initial=2000,
        help_text=_("Over all replicas together."),
    )
    prompt_tokens = forms.IntegerField(
        label=_("Prompt tokens"), **bounds.PROMPT_TOKENS.field_kwargs(), initial=2000, help_text=_("A typical prompt.")
    )
    output_tokens = forms.IntegerField(
        label=_("Output tokens"), **bounds.OUTPUT_TOKENS.field_kwargs(), initial=500, help_text=_("A typical answer.")
    )
    ttft_p95_ms = AsciiDecimalField(
        label=_("Time to first token, p95 (ms)"),
        **bounds.TTFT_MS.field_kwargs(),
        initial=1500,
        help_text=_("As your users see it: network round trip, queueing and prefill."),
    )
    origin = region_field(_("Users are near"), help_text=_("Latency is measured from this city."), initial="shanghai")
    max_price_per_million_tokens = AsciiDecimalField(
        label=_("Price cap per million output tokens (CNY)"), **bounds.PRICE_PER_MILLION_TOKENS.field_kwargs()
    )
    duration_hours = forms.IntegerField(label=_("Duration (hours)"), **bounds.DURATION_HOURS.field_kwargs(), initial=24)
    gpu_models = GpuModelsField(
        GpuModel.objects.all(),
        to_field_name="code",
        label=_("Only these GPU models"),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text=_("None ticked: every GPU model."),
    )
    precision = forms.ChoiceField(label=_("Precision"), choices=_precision_choices, required=False)
    start_by = _datetime_field(_("Start by"), _("Empty: within 24 hours."))
    voucher, voucher_code = voucher_fields()

    def __init__(self, *args, vouchers=(), **kwargs):
        super().__init__(*args, **kwargs)
        offer_vouchers(self, list(vouchers))

    def clean(self):
        data = super().clean()
        voucher_pick_check(self, data)
        return data

    def terms(self) -> dict:
        terms = dict(self.cleaned_data)
        terms["voucher_code"] = voucher_code_of(terms)
        terms["gpu_models"] = list(terms["gpu_models"]) or None
        terms["precision"] = terms["precision"] or None
        return terms

    def submit_terms(self) -> dict:
        """``services.request_submit_inference``'s keyword arguments: the quote's terms, with
        codes for the reference rows, as the API passes them."""
        terms = self.terms()
        return {
            **terms,
            "llm_model": terms["llm_model"].code,
            "origin": terms["origin"].code,
            "gpu_models": [row.code for row in terms["gpu_models"] or ()],
            "precision": terms["precision"] or "",
        }


# --- capacity board -----------------------------------------------------------------------------


class BoardForm(forms.Form):
    """The board's filters: the buyers' city the latency is seen from, and one GPU model or all."""

    origin = region_field(_("Seen from"), initial="shanghai")
    gpu_model = gpu_model_field(required=False, empty_label=_("every GPU model"))


# --- the organisation: members, API keys, spend cap ---------------------------------------------

#: Roles and scopes in the reader's language; the values are the API's.
ROLE_CHOICES = [(Membership.Role.OWNER.value, _("owner")), (Membership.Role.MEMBER.value, _("member"))]
SCOPE_CHOICES = [
    (Scope.READ.value, _("read: see everything, change nothing")),
    (Scope.TRADE.value, _("trade: listings, requests, quotes, vouchers")),
    (Scope.AGENT.value, _("agent: provider agents")),
    (Scope.ADMIN.value, _("admin: keys, members, spend cap")),
]


class MemberForm(NewUserForm):
    """A new user acting for the owner's organisation: ``member_add``'s keyword arguments."""

    username = forms.RegexField(**bounds.USERNAME.field_kwargs(), label=_("Username"))
    email = forms.EmailField(label=_("Email"))
    password = forms.CharField(
        label=_("Password"),
        **bounds.PASSWORD.field_kwargs(),
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )
    role = forms.ChoiceField(label=_("Role"), choices=ROLE_CHOICES, initial=Membership.Role.MEMBER)


class RoleForm(ServiceForm):
    role = forms.ChoiceField(label=_("Role"), choices=ROLE_CHOICES)


class ApiKeyForm(ServiceForm):
    """A new API key: ``api_key_create``'s keyword arguments (organisation and user aside)."""

    name = forms.CharField(
        label=_("Name"), **bounds.API_KEY_NAME.field_kwargs(), help_text=_("No < or > and no control characters.")
    )
    scopes = forms.MultipleChoiceField(
        label=_("Scopes"), choices=SCOPE_CHOICES, widget=forms.CheckboxSelectMultiple, initial=[Scope.READ]
    )
    expires_at = _datetime_field(_("Expires at"), _("Empty: never."))
    monthly_spend_cap = AsciiDecimalField(
        label=_("Monthly spend cap (CNY)"),
        **bounds.SPEND_CAP.field_kwargs(),
        required=False,
        help_text=_("Empty: only the organisation's cap applies."),
    )

    def clean_name(self) -> str:
        return domain_rule(names.name_check, self.cleaned_data["name"], field="name")


class SpendCapForm(ServiceForm):
    monthly_spend_cap = AsciiDecimalField(
        label=_("Monthly spend cap (CNY)"),
        **bounds.SPEND_CAP.field_kwargs(),
        required=False,
        help_text=_("Reserved worst cases and charges per calendar month (UTC). Empty: no cap."),
    )
